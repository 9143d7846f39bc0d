//! The client side of node-to-node calls: what a node trusts
//! (`ssl.internal-trust-manager-file`, read again when it changes), how it
//! checks the certificate it is shown (`ssl.trust-manager-verification`),
//! and the connector that gives tonic TLS connections.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Reload, TlsError, certificates, provider, read};
use crate::config::Verification;

/// What a node trusts when it calls another, kept fresh from its file.
#[derive(Clone)]
pub struct Trust {
    state: Arc<TrustState>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("file", &self.state.file)
            .field("verification", &self.state.verification)
            .finish_non_exhaustive()
    }
}

struct TrustState {
    file: Option<PathBuf>,
    verification: Verification,
    current: RwLock<(Vec<u8>, Arc<ClientConfig>)>,
}

impl Trust {
    /// Reads the trust file (none only with INSECURELY_SKIP_ALL_VERIFICATION).
    pub fn load(file: Option<PathBuf>, verification: Verification) -> Result<Trust, TlsError> {
        let bytes = match &file {
            Some(path) => read(path)?,
            None => Vec::new(),
        };
        let config = client_config(file.as_ref(), &bytes, verification)?;
        Ok(Trust { state: Arc::new(TrustState { file, verification, current: RwLock::new((bytes, config)) }) })
    }

    /// The client configuration in use now.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.state.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }

    /// What [`super::keep_fresh`] reloads: lives as long as this trust.
    pub fn reloadable(&self) -> Arc<dyn Reload> {
        self.state.clone()
    }

    /// A connector for tonic that makes TLS connections with this trust.
    pub fn connector(&self) -> Connector {
        Connector { trust: self.clone() }
    }
}

impl Reload for TrustState {
    fn reload(&self) -> Result<bool, TlsError> {
        let Some(path) = &self.file else { return Ok(false) };
        let bytes = read(path)?;
        if self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0 == bytes {
            return Ok(false);
        }
        let config = client_config(Some(path), &bytes, self.verification)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (bytes, config);
        Ok(true)
    }

    fn describe(&self) -> String {
        match &self.file {
            Some(path) => format!("trusted certificates {}", path.display()),
            None => "trusted certificates (none)".into(),
        }
    }
}

/// A client configuration trusting the certificates in `bytes` (read from
/// `file`), checking as `verification` says, offering the application
/// protocol `alpn`.
pub fn client_config_for(
    file: Option<&PathBuf>,
    bytes: &[u8],
    verification: Verification,
    alpn: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (verification, file) {
        (Verification::InsecurelySkipAll, _) => Arc::new(Relaxed { chain: None, provider }),
        (mode, Some(path)) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path, bytes)? {
                roots.add(certificate).map_err(|e| TlsError::Bad {
                    path: path.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Bad { path: path.clone(), reason: e.to_string() })?;
            match mode {
                Verification::CertificateOnly => Arc::new(Relaxed { chain: Some(webpki), provider }),
                _ => webpki,
            }
        }
        (_, None) => {
            return Err(TlsError::Bad {
                path: PathBuf::new(),
                reason: "no trusted certificates given (ssl.internal-trust-manager-file)".into(),
            });
        }
    };
    let mut config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// [`client_config_for`] gRPC: HTTP/2.
pub fn client_config(
    file: Option<&PathBuf>,
    bytes: &[u8],
    verification: Verification,
) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_for(file, bytes, verification, b"h2")
}

/// The two relaxed modes: CERTIFICATE_ONLY_VERIFICATION (`chain` set: the
/// chain must be trusted, the name in it is not compared with the host
/// called) and INSECURELY_SKIP_ALL_VERIFICATION (no chain check). Either
/// way the handshake's signatures are checked, so the session is with the
/// holder of the certificate's key.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes TLS connections for tonic channels: TCP (no Nagle), then the
/// handshake with the host of the URI as the name checked.
#[derive(Clone)]
pub struct Connector {
    trust: Trust,
}

impl tower::Service<tonic::codegen::http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let config = self.trust.config();
        Box::pin(async move {
            let invalid = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason.to_owned());
            let host = uri.host().ok_or_else(|| invalid("no host in the address"))?;
            let port = uri.port_u16().ok_or_else(|| invalid("no port in the address"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let name = ServerName::try_from(host.clone()).map_err(|_| invalid("not a host name or IP address"))?;
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(name, stream).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
