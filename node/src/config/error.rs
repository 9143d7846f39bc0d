//! The configuration loader's error type and [`Origin`], the place a setting came from.
//!
//! Owns how a start-up configuration failure is reported. Does not own which keys exist
//! (`keys`) or how values are parsed (`value`). Invariant: every error names the key or
//! environment variable at fault and, for a file, the path and 1-based line number.

use std::fmt;
use std::path::PathBuf;

/// Where a setting's effective value came from. Errors and warnings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default in [`super::keys`].
    Default,
    /// A line of a properties file.
    File {
        /// The file as it was given (not canonicalised), so the message matches the flag.
        path: PathBuf,
        /// 1-based line on which the entry starts (the first line of a continued entry).
        line: usize,
    },
    /// An environment variable.
    Env {
        /// The variable's name, e.g. `AXONIQ_AXONSERVER_PORT`.
        var: String,
    },
    /// A `--set KEY=VALUE` (or `-D KEY=VALUE`) command-line flag.
    Flag,
}

impl Origin {
    /// Precedence of the source: defaults < file < env < flags. Cross-field errors blame the
    /// key whose value came from the higher-ranked source, since that is the one to fix.
    pub(super) fn rank(&self) -> u8 {
        match self {
            Origin::Default => 0,
            Origin::File { .. } => 1,
            Origin::Env { .. } => 2,
            Origin::Flag => 3,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the built-in default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Flag => f.write_str("--set"),
        }
    }
}

/// Why the configuration could not be loaded. The node must not start on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The properties file named by `--config`/`RANVIER_CONFIG` (or found in a default
    /// location) could not be read. The I/O cause is in the message too, because the binary
    /// prints only this error's `Display` before exiting.
    #[error("failed to read config file {}: {source}", path.display())]
    ReadFile {
        /// The file as it was given.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A line of the properties file is not valid `.properties` syntax (a bad `\uXXXX` escape).
    #[error("failed to parse {}:{line}: {reason}", path.display())]
    ParseLine {
        /// The file as it was given.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file entry or `--set` flag names a key that is neither implemented nor a recognised
    /// Axon Server / Spring key.
    #[error("unknown key {key} at {origin}")]
    UnknownKey {
        /// The key as it was written.
        key: String,
        /// Where it was written.
        origin: Origin,
    },
    /// An `AXONIQ_AXONSERVER_*` or `RANVIER_*` environment variable maps to no key.
    #[error("unknown environment variable {var}: it names no axoniq.axonserver.* or ranvier.* key")]
    UnknownEnvVar {
        /// The variable's name.
        var: String,
    },
    /// A value does not parse, is out of range, or conflicts with another key.
    #[error("invalid value {value:?} for {key} at {origin}: {reason}")]
    InvalidValue {
        /// The canonical key name.
        key: &'static str,
        /// Where the value came from.
        origin: Origin,
        /// The value as given (trimmed).
        value: String,
        /// What was expected, or which other key it conflicts with.
        reason: String,
    },
    /// A security setting of Axon Server or Spring that Ranvier cannot honour.
    #[error("{key} at {origin} is not supported: {reason}; remove it")]
    Refused {
        /// The key as it was written.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// Why, and what to use instead.
        reason: &'static str,
    },
}
