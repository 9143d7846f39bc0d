//! Certificates made for a test (a CA and certificates it signs, as PEM
//! files) and a TLS gRPC client that trusts that CA, as an Axon client
//! with TLS configured would.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

/// A certificate authority whose files live in one directory.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Ranvier test CA");
        std::fs::write(dir.join("ca.pem"), params.self_signed(&key)?.pem())?;
        Ok(Pki { dir: dir.to_path_buf(), issuer: Issuer::new(params, key) })
    }

    /// The CA's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `names` (host names or IP addresses) and
    /// writes it and its key to `dir/<file>.pem` and `dir/<file>.key`,
    /// replacing what was there; returns the two paths.
    pub fn issue(&self, file: &str, names: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)?.signed_by(&key, &self.issuer)?;
        let (chain, key_file) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        // Written beside and renamed, as a Secret volume swaps its files.
        for (path, text) in [(&key_file, key.serialize_pem()), (&chain, cert.pem())] {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, text)?;
            std::fs::rename(&temporary, path)?;
        }
        Ok((chain, key_file))
    }

    /// Node settings for TLS on all three ports with the certificate
    /// `file` (issued before), trusting this CA on node-to-node calls.
    pub fn node_settings(&self, file: &str) -> Vec<String> {
        let (chain, key) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        vec![
            "axoniq.axonserver.ssl.enabled=true".into(),
            format!("axoniq.axonserver.ssl.cert-chain-file={}", chain.display()),
            format!("axoniq.axonserver.ssl.private-key-file={}", key.display()),
            format!("axoniq.axonserver.ssl.internal-trust-manager-file={}", self.ca_file().display()),
            "server.ssl.enabled=true".into(),
        ]
    }
}

/// The first certificate in a PEM file.
pub fn leaf_in(file: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(file)?.next().context("no certificate")?.context("bad PEM")
}

fn client_config(ca_file: &Path, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file)? {
        roots.add(certificate?)?;
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A TLS handshake with `address` as `name`, trusting `ca_file` and
/// offering HTTP/2 and HTTP/1.1: the certificate the server shows.
pub async fn served_certificate(address: &str, name: &str, ca_file: &Path) -> anyhow::Result<CertificateDer<'static>> {
    let config = client_config(ca_file, &[b"h2", b"http/1.1"])?;
    let stream = tokio::net::TcpStream::connect(address).await?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from(name.to_owned())?, stream).await?;
    let certificates = tls.get_ref().1.peer_certificates().context("no certificate shown")?;
    Ok(certificates.first().context("empty chain")?.clone().into_owned())
}

/// A gRPC channel over TLS to `address`, checking that the server's
/// certificate is signed by `ca_file` and names `name`.
pub async fn channel(address: &str, name: &str, ca_file: &Path) -> anyhow::Result<Channel> {
    let config = client_config(ca_file, &[b"h2"])?;
    let (address, name) = (address.to_owned(), ServerName::try_from(name.to_owned())?);
    let connector = tower::service_fn(move |_: Uri| {
        let (config, address, name) = (config.clone(), address.clone(), name.clone());
        async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(Endpoint::from_static("http://ranvier.invalid").connect_with_connector(connector).await?)
}
