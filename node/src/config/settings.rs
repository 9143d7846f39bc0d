//! The layered, untyped settings: every implemented key's winning text and where it came from,
//! and typed reads of them.
//!
//! Owns precedence (defaults < file < environment < `--set`) and the unknown/ignored-key rules
//! for files and flags. Does not own what a value means (`value`, `mod.rs`). Invariant: a key
//! is stored only if it is implemented; a read falls back to the key's default, so every
//! implemented key always has a value and an [`Origin`].

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, Origin};
use super::keys::{self, Key};
use super::{Sources, env, properties};

/// One key's value as given, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Setting {
    /// The value, trimmed.
    pub(super) value: String,
    /// Where it came from.
    pub(super) origin: Origin,
}

/// The winning setting per implemented key, by canonical name.
#[derive(Debug, Default)]
pub(super) struct Settings {
    explicit: BTreeMap<&'static str, Setting>,
}

impl Settings {
    /// Reads every source in precedence order; a later source overwrites an earlier one.
    pub(super) fn collect(sources: &Sources<'_>) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = &sources.file {
            settings.extend(file_settings(path)?);
        }
        settings.extend(env::env_settings(sources.env)?);
        for flag in &sources.overrides {
            let setting = Setting { value: flag.value.trim().to_owned(), origin: Origin::Flag };
            if let Some(key) = resolve_key(&flag.key, &setting.origin)? {
                settings.explicit.insert(key.name, setting);
            }
        }
        Ok(settings)
    }

    fn extend(&mut self, found: Vec<(&'static Key, Setting)>) {
        for (key, setting) in found {
            self.explicit.insert(key.name, setting);
        }
    }

    /// The effective text of `key`: the winning setting, else the default.
    pub(super) fn text(&self, key: &'static Key) -> &str {
        self.explicit.get(key.name).map_or(key.default, |setting| &setting.value)
    }

    /// Where the effective text of `key` came from.
    pub(super) fn origin(&self, key: &'static Key) -> Origin {
        self.explicit.get(key.name).map_or(Origin::Default, |setting| setting.origin.clone())
    }

    /// Parses the effective text of `key`.
    pub(super) fn read<T>(
        &self,
        key: &'static Key,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parse(self.text(key)).map_err(|reason| self.invalid(key, reason))
    }

    /// Parses the effective text of `key`; an empty value means "not set" (derive it).
    pub(super) fn read_opt<T>(
        &self,
        key: &'static Key,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.text(key) {
            "" => Ok(None),
            _ => self.read(key, parse).map(Some),
        }
    }

    /// An error blaming the effective value of `key`.
    pub(super) fn invalid(&self, key: &'static Key, reason: String) -> ConfigError {
        ConfigError::InvalidValue { key: key.name, origin: self.origin(key), value: self.text(key).to_owned(), reason }
    }

    /// Of two keys in conflict, the one to blame: the one from the higher-precedence source
    /// (the user's most deliberate choice), else the first.
    pub(super) fn blame(&self, first: &'static Key, second: &'static Key) -> (&'static Key, &'static Key) {
        if self.origin(second).rank() > self.origin(first).rank() { (second, first) } else { (first, second) }
    }
}

/// Reads and parses the properties file into implemented keys.
fn file_settings(path: &Path) -> Result<Vec<(&'static Key, Setting)>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.to_path_buf(), source })?;
    let mut found = Vec::new();
    for entry in properties::parse(&text, path)? {
        let origin = Origin::File { path: path.to_path_buf(), line: entry.line };
        if let Some(key) = resolve_key(&entry.key, &origin)? {
            found.push((key, Setting { value: entry.value, origin }));
        }
    }
    Ok(found)
}

/// Maps a key as written in a file or flag to an implemented key. A recognised but
/// unimplemented key is logged and skipped; anything else is an error.
fn resolve_key(raw: &str, origin: &Origin) -> Result<Option<&'static Key>, ConfigError> {
    let name = keys::canonical(raw);
    if let Some(key) = keys::find(&name) {
        return Ok(Some(key));
    }
    if let Some(reason) = keys::refusal(&name) {
        return Err(ConfigError::Refused { key: raw.to_owned(), origin: origin.clone(), reason });
    }
    if keys::is_ignored(&name) {
        warn_ignored(raw, origin);
        return Ok(None);
    }
    Err(ConfigError::UnknownKey { key: raw.to_owned(), origin: origin.clone() })
}

/// Logs a recognised Axon Server or Spring setting that Ranvier does not implement.
pub(super) fn warn_ignored(setting: &str, origin: &Origin) {
    tracing::warn!(
        setting,
        origin = %origin,
        "ignored: Axon Server setting that Ranvier does not implement"
    );
}
