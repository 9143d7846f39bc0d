//! Environment variables as a configuration source, behind the [`EnvSource`] trait so tests
//! feed a map instead of touching the process environment.
//!
//! Owns Spring's relaxed binding for environment names (a key's variable is its name upper-cased
//! with `.` and `-` replaced by `_`: `axoniq.axonserver.internal-port` ↔
//! `AXONIQ_AXONSERVER_INTERNAL_PORT`) and the system host name lookup. Does not own key names
//! (`keys`) or precedence (`settings`). Invariant: every `AXONIQ_AXONSERVER_*` or `RANVIER_*`
//! variable is either a key, a recognised-but-ignored key, one of the binary's own variables
//! ([`CONFIG_VAR`], [`LOG_VAR`]), or an error; other variables are ignored unless they name a key
//! (`SERVER_PORT`) or an ignored Spring key (`LOGGING_*`, which warns).

use std::collections::BTreeMap;

use super::error::{ConfigError, Origin};
use super::keys::{self, Key};
use super::settings::{Setting, warn_ignored};

/// The binary's variable naming the properties file (same as `--config`).
pub const CONFIG_VAR: &str = "RANVIER_CONFIG";
/// The binary's variable holding the log filter.
pub const LOG_VAR: &str = "RANVIER_LOG";
/// Variables in these namespaces must name a key.
const OWN_PREFIXES: [&str; 2] = ["AXONIQ_AXONSERVER_", "RANVIER_"];
/// Where Linux exposes the host name without a syscall.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// A source of environment variables.
pub trait EnvSource {
    /// The value of one variable, if set.
    fn get(&self, name: &str) -> Option<String>;
    /// Every variable, as (name, value).
    fn vars(&self) -> Vec<(String, String)>;
}

/// The real process environment. Names and values that are not UTF-8 are converted lossily,
/// so a mangled value of a known key fails validation rather than being skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    }

    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .map(|(name, value)| (name.to_string_lossy().into_owned(), value.to_string_lossy().into_owned()))
            .collect()
    }
}

/// An environment backed by a map, for tests and embedding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv {
    vars: BTreeMap<String, String>,
}

impl MapEnv {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the environment with `name` set to `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let vars = iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self { vars }
    }
}

impl EnvSource for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn vars(&self) -> Vec<(String, String)> {
        self.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The environment variable name of a key (or of an ignored pattern's prefix).
pub fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The settings found in the environment, sorted by variable name. Ignored keys are logged.
pub(super) fn env_settings(env: &dyn EnvSource) -> Result<Vec<(&'static Key, Setting)>, ConfigError> {
    let mut vars = env.vars();
    vars.sort();
    let mut found = Vec::new();
    for (var, value) in vars {
        if let Some(key) = keys::ALL.iter().find(|key| env_name(key.name) == var) {
            let origin = Origin::Env { var };
            found.push((key, Setting { value: value.trim().to_owned(), origin }));
        } else if let Some(reason) = refused_var(&var) {
            return Err(ConfigError::Refused { key: var.clone(), origin: Origin::Env { var }, reason });
        } else if is_ignored_var(&var) {
            warn_ignored(&var, &Origin::Env { var: var.clone() });
        } else if is_own_unknown_var(&var) {
            return Err(ConfigError::UnknownEnvVar { var });
        }
    }
    Ok(found)
}

/// The system host name: the kernel's, else `$HOSTNAME`, else `localhost`.
pub fn system_hostname(env: &dyn EnvSource) -> String {
    std::fs::read_to_string(HOSTNAME_FILE)
        .ok()
        .or_else(|| env.get("HOSTNAME"))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn refused_var(var: &str) -> Option<&'static str> {
    keys::REFUSED.iter().find_map(|(pattern, reason)| {
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => var.starts_with(&env_name(prefix)),
            None => var == env_name(pattern),
        };
        matches.then_some(*reason)
    })
}

fn is_ignored_var(var: &str) -> bool {
    keys::ignored_patterns().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => var.starts_with(&env_name(prefix)),
        None => var == env_name(&pattern),
    })
}

fn is_own_unknown_var(var: &str) -> bool {
    let own = OWN_PREFIXES.iter().any(|prefix| var.starts_with(prefix));
    own && var != CONFIG_VAR && var != LOG_VAR
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn env_names_follow_relaxed_binding() {
        assert_eq!(env_name("axoniq.axonserver.internal-port"), "AXONIQ_AXONSERVER_INTERNAL_PORT");
        assert_eq!(env_name("server.port"), "SERVER_PORT");
        assert_eq!(env_name("ranvier.disk-reserve"), "RANVIER_DISK_RESERVE");
    }

    #[test]
    fn env_names_are_unique_and_not_ignored_or_reserved() {
        let mut seen = HashSet::new();
        for key in keys::ALL {
            let var = env_name(key.name);
            assert!(seen.insert(var.clone()), "two keys share {var}");
            assert!(!is_ignored_var(&var), "{var} is both a key and ignored");
            assert!(var != CONFIG_VAR && var != LOG_VAR, "{var} is reserved");
        }
    }

    #[test]
    fn known_ignored_foreign_and_unknown_variables() {
        let env = MapEnv::new()
            .with("SERVER_PORT", " 9000 ")
            .with("AXONIQ_AXONSERVER_INTERNAL_PORT", "9001")
            .with("AXONIQ_AXONSERVER_ACCESSCONTROL_CACHE_TTL", "30s")
            .with("AXONIQ_AXONSERVER_EVENT_BLOOM_INDEX_FPP", "0.01")
            .with("RANVIER_CONFIG", "x.properties")
            .with("RANVIER_LOG", "debug")
            .with("PATH", "/bin");
        let found = env_settings(&env).unwrap();
        let names: Vec<_> = found.iter().map(|(key, s)| (key.name, s.value.as_str())).collect();
        assert_eq!(names, vec![("axoniq.axonserver.internal-port", "9001"), ("server.port", "9000")]);
    }

    #[test]
    fn unknown_own_variable_is_an_error_naming_it() {
        for var in ["AXONIQ_AXONSERVER_X", "RANVIER_DISK_RESERVED"] {
            let err = env_settings(&MapEnv::new().with(var, "1")).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn system_hostname_is_never_empty() {
        assert!(!system_hostname(&MapEnv::new()).is_empty());
    }
}
