//! The server side: one acceptor per port, serving the port's current
//! certificate ([`super::ServedCert`]) to each handshake. No client
//! certificates are asked for: clients prove who they are with tokens.

use std::sync::Arc;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{ServedCert, TlsError, provider};

/// Accepts TLS connections on one port.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: TlsAcceptor,
    served: Arc<ServedCert>,
}

impl Acceptor {
    /// An acceptor serving `served`, offering the application protocols
    /// `alpn` (`h2` for gRPC, `http/1.1` for REST).
    pub fn new(served: Arc<ServedCert>, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(served.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Acceptor { acceptor: TlsAcceptor::from(Arc::new(config)), served })
    }

    /// The TLS handshake on an accepted connection.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> std::io::Result<TlsStream<S>> {
        self.acceptor.accept(stream).await
    }

    /// The certificate served now.
    pub fn served(&self) -> &Arc<ServedCert> {
        &self.served
    }
}
