//! The TLS settings of the node's ports and of its calls to other nodes: which
//! certificate files each port serves, what a node trusts when it calls
//! another, and how often the files are read again. Owns their defaults
//! and the rules between them; reading the files is `crate::tls`'s job.

use std::path::PathBuf;

use super::error::ConfigError;
use super::keys;
use super::settings::Settings;
use super::value;

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain, leaf first.
    pub chain: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
}

/// How a node checks the certificate of another node it calls
/// (`axoniq.axonserver.ssl.trust-manager-verification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// The chain must lead to a trusted certificate and name the host called.
    #[default]
    CertificateAndHostName,
    /// The chain must lead to a trusted certificate; any name.
    CertificateOnly,
    /// Anything is accepted: encryption without authentication.
    InsecurelySkipAll,
}

impl Verification {
    /// The Axon name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Verification::CertificateAndHostName => "CERTIFICATE_AND_HOST_NAME_VERIFICATION",
            Verification::CertificateOnly => "CERTIFICATE_ONLY_VERIFICATION",
            Verification::InsecurelySkipAll => "INSECURELY_SKIP_ALL_VERIFICATION",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        [Verification::CertificateAndHostName, Verification::CertificateOnly, Verification::InsecurelySkipAll]
            .into_iter()
            .find(|mode| mode.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                "expected CERTIFICATE_AND_HOST_NAME_VERIFICATION, CERTIFICATE_ONLY_VERIFICATION or \
                 INSECURELY_SKIP_ALL_VERIFICATION"
                    .to_owned()
            })
    }
}

/// TLS of the three ports and of node-to-node calls. A port without
/// certificate files speaks plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The client gRPC port's certificate (`ssl.enabled`).
    pub client: Option<CertFiles>,
    /// The internal port's certificate; calls to other nodes use TLS too.
    pub internal: Option<CertFiles>,
    /// What a node trusts when it calls another (with internal TLS).
    pub internal_trust: Option<PathBuf>,
    /// How it checks the certificate it is shown.
    pub verification: Verification,
    /// The HTTP port's certificate (`server.ssl.enabled`).
    pub http: Option<CertFiles>,
    /// How often the files are read again, in milliseconds.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            client: None,
            internal: None,
            internal_trust: None,
            verification: Verification::default(),
            http: None,
            reload_interval_ms: 5_000,
        }
    }
}

impl TlsConfig {
    /// The effective TLS settings, in property syntax, for the start-up log.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let path = |path: Option<&PathBuf>| path.map(|p| p.display().to_string()).unwrap_or_default();
        let chain = |files: &Option<CertFiles>| path(files.as_ref().map(|f| &f.chain));
        let key = |files: &Option<CertFiles>| path(files.as_ref().map(|f| &f.key));
        vec![
            (keys::SSL_ENABLED.name, self.client.is_some().to_string()),
            (keys::SSL_CERT_CHAIN_FILE.name, chain(&self.client)),
            (keys::SSL_PRIVATE_KEY_FILE.name, key(&self.client)),
            (keys::SSL_INTERNAL_ENABLED.name, (self.internal.is_some() || self.client.is_none()).to_string()),
            (keys::SSL_INTERNAL_CERT_CHAIN_FILE.name, chain(&self.internal)),
            (keys::SSL_INTERNAL_PRIVATE_KEY_FILE.name, key(&self.internal)),
            (keys::SSL_INTERNAL_TRUST_FILE.name, path(self.internal_trust.as_ref())),
            (keys::SSL_TRUST_VERIFICATION.name, self.verification.name().to_owned()),
            (keys::SERVER_SSL_ENABLED.name, self.http.is_some().to_string()),
            (keys::SERVER_SSL_CERTIFICATE.name, chain(&self.http)),
            (keys::SERVER_SSL_PRIVATE_KEY.name, key(&self.http)),
            (keys::SSL_RELOAD_INTERVAL.name, self.reload_interval_ms.to_string()),
        ]
    }
}

fn file(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// Reads the TLS keys; `clustered` nodes with internal TLS must say what
/// they trust.
pub(super) fn tls_config(s: &Settings, clustered: bool) -> Result<TlsConfig, ConfigError> {
    let chain = s.read_opt(&keys::SSL_CERT_CHAIN_FILE, file)?;
    let key = s.read_opt(&keys::SSL_PRIVATE_KEY_FILE, file)?;
    let required = |setting: &'static keys::Key, switch: &'static keys::Key| {
        s.invalid(setting, format!("must be set when {} is true", switch.name))
    };
    let client = if s.read(&keys::SSL_ENABLED, value::boolean)? {
        let chain = chain.clone().ok_or_else(|| required(&keys::SSL_CERT_CHAIN_FILE, &keys::SSL_ENABLED))?;
        let key = key.clone().ok_or_else(|| required(&keys::SSL_PRIVATE_KEY_FILE, &keys::SSL_ENABLED))?;
        Some(CertFiles { chain, key })
    } else {
        None
    };
    let internal = match &client {
        Some(files) if s.read(&keys::SSL_INTERNAL_ENABLED, value::boolean)? => Some(CertFiles {
            chain: s.read_opt(&keys::SSL_INTERNAL_CERT_CHAIN_FILE, file)?.unwrap_or_else(|| files.chain.clone()),
            key: s.read_opt(&keys::SSL_INTERNAL_PRIVATE_KEY_FILE, file)?.unwrap_or_else(|| files.key.clone()),
        }),
        _ => None,
    };
    let verification = s.read(&keys::SSL_TRUST_VERIFICATION, Verification::parse)?;
    let internal_trust = s.read_opt(&keys::SSL_INTERNAL_TRUST_FILE, file)?;
    if internal.is_some() && clustered && internal_trust.is_none() && verification != Verification::InsecurelySkipAll {
        let reason = format!(
            "must name the certificates (CA) this node trusts when it calls other nodes over TLS, \
             because {} and {} are true",
            keys::SSL_ENABLED.name,
            keys::SSL_INTERNAL_ENABLED.name
        );
        return Err(s.invalid(&keys::SSL_INTERNAL_TRUST_FILE, reason));
    }
    let http = if s.read(&keys::SERVER_SSL_ENABLED, value::boolean)? {
        let chain = s.read_opt(&keys::SERVER_SSL_CERTIFICATE, file)?.or(chain);
        let key = s.read_opt(&keys::SERVER_SSL_PRIVATE_KEY, file)?.or(key);
        let chain = chain.ok_or_else(|| required(&keys::SERVER_SSL_CERTIFICATE, &keys::SERVER_SSL_ENABLED))?;
        let key = key.ok_or_else(|| required(&keys::SERVER_SSL_PRIVATE_KEY, &keys::SERVER_SSL_ENABLED))?;
        Some(CertFiles { chain, key })
    } else {
        None
    };
    let reload_interval_ms = s.read(&keys::SSL_RELOAD_INTERVAL, value::duration_ms)?;
    if reload_interval_ms == 0 {
        return Err(s.invalid(&keys::SSL_RELOAD_INTERVAL, "must be more than 0".into()));
    }
    Ok(TlsConfig { client, internal, internal_trust, verification, http, reload_interval_ms })
}
