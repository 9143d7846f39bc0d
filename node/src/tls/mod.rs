//! TLS (rustls with ring) of the node's three ports and of its calls to
//! other nodes. Owns reading the PEM files, serving the current
//! certificate to each new connection, and reading the files again while
//! the node runs.
//!
//! Certificates are **reloaded without a restart**: every
//! `ranvier.ssl.reload-interval` (5 s) the chain, key and trust files are
//! read again, and when their bytes changed (a Kubernetes Secret volume
//! swaps them by symlink, cert-manager renews them) the new ones are
//! checked (parsable, the key belongs to the certificate) and served to the
//! next handshake. Connections already open keep their session, so no
//! client stream drops. A file caught half-written, or a key that does not
//! match its certificate yet, leaves the old certificate in use and is
//! tried again at the next interval, with a warning.
//!
//! [`server`] holds the acceptors of the ports; [`client`] the connector
//! of node-to-node calls and the three verification modes of
//! `ssl.trust-manager-verification`.

pub mod client;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::{CertFiles, TlsConfig};

/// Largest certificate, key or trust file read, in bytes (a chain of a
/// dozen certificates is ~20 KiB).
pub const FILE_MAX: u64 = 1024 * 1024;

/// Why TLS could not be set up, or a file not (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or holds nothing of the kind expected.
    #[error("{}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the first certificate of the chain.
    #[error("the private key in {} does not belong to the certificate in {}", key.display(), chain.display())]
    Mismatch {
        /// The chain file.
        chain: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the setup.
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every TLS config here uses (no process-wide default).
/// rustls 0.23.48 marks ring deprecated for lacking post-quantum key
/// exchange; aws-lc-rs would need a C/CMake build on every machine, and kube
/// (in the operator) uses ring too. Classical X25519/ECDHE stays sound.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes of a certificate, key or trust file (at most [`FILE_MAX`]).
pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let failed = |source| TlsError::Read { path: path.to_path_buf(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(failed)?.take(FILE_MAX + 1).read_to_end(&mut bytes).map_err(failed)?;
    if bytes.len() as u64 > FILE_MAX {
        return Err(TlsError::Bad { path: path.to_path_buf(), reason: format!("larger than {FILE_MAX} bytes") });
    }
    Ok(bytes)
}

/// The certificates in PEM `bytes` read from `path`: at least one.
pub fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::Bad { path: path.to_path_buf(), reason };
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(bad("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(chain)
}

fn certified_key(files: &CertFiles, chain: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&files.chain, chain)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Bad {
        path: files.key.clone(),
        reason: format!("holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    match CertifiedKey::from_der(chain, key, &provider()) {
        Ok(certified) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(TlsError::Mismatch { chain: files.chain.clone(), key: files.key.clone() })
        }
        Err(error) => Err(TlsError::Bad { path: files.key.clone(), reason: error.to_string() }),
    }
}

/// Something read from files that may change while the node runs.
pub trait Reload: Send + Sync + 'static {
    /// Reads the files again; `Ok(true)` when something new is now in use.
    /// On an error the old contents stay in use.
    fn reload(&self) -> Result<bool, TlsError>;
    /// What it is, for the log.
    fn describe(&self) -> String;
}

/// A certificate chain and key served by a port: the current pair, swapped
/// when the files change.
pub struct ServedCert {
    files: CertFiles,
    current: RwLock<(Vec<u8>, Vec<u8>, Arc<CertifiedKey>)>,
}

impl std::fmt::Debug for ServedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ServedCert {
    /// Reads and checks the pair now.
    pub fn load(files: &CertFiles) -> Result<Arc<Self>, TlsError> {
        let (chain, key) = (read(&files.chain)?, read(&files.key)?);
        let certified = certified_key(files, &chain, &key)?;
        Ok(Arc::new(ServedCert { files: files.clone(), current: RwLock::new((chain, key, certified)) }))
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).2.clone()
    }
}

impl Reload for ServedCert {
    fn reload(&self) -> Result<bool, TlsError> {
        let (chain, key) = (read(&self.files.chain)?, read(&self.files.key)?);
        {
            let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.0 == chain && current.1 == key {
                return Ok(false);
            }
        }
        let certified = certified_key(&self.files, &chain, &key)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (chain, key, certified);
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("certificate {} with key {}", self.files.chain.display(), self.files.key.display())
    }
}

impl rustls::server::ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reads `item` again every `interval` for as long as anything else holds
/// it, logging what changed and what failed (a failure once until it
/// changes, so a broken file does not flood the log).
pub fn keep_fresh(item: Arc<dyn Reload>, interval: Duration) {
    let weak: Weak<dyn Reload> = Arc::downgrade(&item);
    drop(item);
    tokio::spawn(async move {
        let mut last_error = None;
        loop {
            tokio::time::sleep(interval).await;
            let Some(item) = weak.upgrade() else { return };
            let described = item.describe();
            let result = tokio::task::spawn_blocking(move || item.reload()).await;
            match result {
                Ok(Ok(true)) => {
                    tracing::info!(what = %described, "TLS files changed: serving the new ones to new connections");
                    last_error = None;
                }
                Ok(Ok(false)) => last_error = None,
                Ok(Err(error)) => {
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!(what = %described, %message, "TLS files not reloaded; the previous ones stay in use");
                        last_error = Some(message);
                    }
                }
                Err(error) => tracing::warn!(%error, "TLS reload task failed"),
            }
        }
    });
}

/// The TLS of a node: an acceptor per port that has a certificate, and the
/// connector of node-to-node calls when the internal port uses TLS.
#[derive(Clone, Default)]
pub struct Tls {
    /// The client gRPC port's.
    pub client: Option<server::Acceptor>,
    /// The internal port's.
    pub internal: Option<server::Acceptor>,
    /// The HTTP port's.
    pub http: Option<server::Acceptor>,
    /// How this node calls others.
    pub connector: Option<client::Trust>,
}

impl Tls {
    /// Reads every configured file now (a bad one stops the start with its
    /// reason) and keeps them fresh from then on. Needs a Tokio runtime.
    pub fn start(config: &TlsConfig) -> Result<Tls, TlsError> {
        let interval = Duration::from_millis(config.reload_interval_ms);
        let acceptor = |files: &Option<CertFiles>, alpn: &[&[u8]]| -> Result<Option<server::Acceptor>, TlsError> {
            let Some(files) = files else { return Ok(None) };
            let served = ServedCert::load(files)?;
            let acceptor = server::Acceptor::new(served.clone(), alpn)?;
            keep_fresh(served, interval);
            Ok(Some(acceptor))
        };
        let connector = match &config.internal {
            Some(_) => {
                let trust = client::Trust::load(config.internal_trust.clone(), config.verification)?;
                keep_fresh(trust.reloadable(), interval);
                Some(trust)
            }
            None => None,
        };
        let client = acceptor(&config.client, &[b"h2"])?;
        // The internal port takes the client port's files unless given its
        // own: then it serves the same certificate, read and reloaded once.
        let internal =
            if config.internal == config.client { client.clone() } else { acceptor(&config.internal, &[b"h2"])? };
        Ok(Tls { client, internal, http: acceptor(&config.http, &[b"http/1.1"])?, connector })
    }
}

#[cfg(test)]
mod tests;
