//! Command-line flags for configuration: `--config FILE` and repeated `--set KEY=VALUE`.
//!
//! Owns the clap definition ([`NodeArgs`], flattened into the binary's parser) and the search
//! for a default properties file. Does not check keys or values (`settings` does, so flags get
//! the same errors as the file). Invariant: `--set` values win over every other source.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::env::CONFIG_VAR;

/// Default file names, relative to the working directory, tried in order when no `--config`
/// is given (the places Axon Server looks).
const DEFAULT_CONFIG_FILES: [&str; 2] = ["axonserver.properties", "config/axonserver.properties"];

/// Configuration flags of the `ranvier` binary.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct NodeArgs {
    /// Properties file with `axoniq.axonserver.*` and `ranvier.*` keys. Default:
    /// ./axonserver.properties if it exists, else ./config/axonserver.properties if it exists.
    #[arg(long, value_name = "FILE", env = CONFIG_VAR)]
    pub config: Option<PathBuf>,
    /// Sets one property, overriding the file and environment (repeatable),
    /// e.g. `--set axoniq.axonserver.port=8124` or `-Daxoniq.axonserver.port=8124`.
    #[arg(long = "set", short = 'D', value_name = "KEY=VALUE")]
    pub set: Vec<Override>,
}

impl NodeArgs {
    /// The properties file to read: `--config`, else the first default file that exists.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| default_config_file(Path::new(".")))
    }
}

/// The first of the default properties files that exists under `dir`.
pub fn default_config_file(dir: &Path) -> Option<PathBuf> {
    DEFAULT_CONFIG_FILES.iter().map(|name| dir.join(name)).find(|path| path.is_file())
}

/// One `--set KEY=VALUE` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The key as written (canonicalised when applied).
    pub key: String,
    /// The value, trimmed when applied.
    pub value: String,
}

impl FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(Override { key: key.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err(format!("expected KEY=VALUE, got {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeArgs,
    }

    fn parse(argv: &[&str]) -> Result<NodeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("ranvier").chain(argv.iter().copied())).map(|cli| cli.args)
    }

    fn set(key: &str, value: &str) -> Override {
        Override { key: key.to_owned(), value: value.to_owned() }
    }

    #[test]
    fn set_flags_repeat_and_accept_the_java_style_alias() {
        let args = parse(&[
            "--config",
            "my.properties",
            "--set",
            "axoniq.axonserver.port=1",
            "-Dserver.port=2",
            "-D",
            "ranvier.bind-address=::1",
            "--set=axoniq.axonserver.name=a=b",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("my.properties")));
        assert_eq!(
            args.set,
            vec![
                set("axoniq.axonserver.port", "1"),
                set("server.port", "2"),
                set("ranvier.bind-address", "::1"),
                set("axoniq.axonserver.name", "a=b"),
            ]
        );
    }

    #[test]
    fn set_without_equals_is_rejected() {
        assert!(parse(&["--set", "axoniq.axonserver.port"]).is_err());
        assert!(parse(&["--set", "=1"]).is_err());
    }

    #[test]
    fn explicit_config_wins_over_defaults() {
        let args = NodeArgs { config: Some(PathBuf::from("x.properties")), set: vec![] };
        assert_eq!(args.config_file(), Some(PathBuf::from("x.properties")));
    }

    #[test]
    fn default_config_file_search_order() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(default_config_file(dir.path()), None);
        std::fs::create_dir(dir.path().join("config")).unwrap();
        let nested = dir.path().join("config/axonserver.properties");
        std::fs::write(&nested, "").unwrap();
        assert_eq!(default_config_file(dir.path()), Some(nested));
        let top = dir.path().join("axonserver.properties");
        std::fs::write(&top, "").unwrap();
        assert_eq!(default_config_file(dir.path()), Some(top));
    }
}
