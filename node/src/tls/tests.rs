#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

use super::client::{Trust, client_config};
use super::server::Acceptor;
use super::{Reload, ServedCert, TlsError};
use crate::config::{CertFiles, Verification};

/// A certificate authority made for a test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A leaf certificate for `names` (PEM) and its key (PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write_pair(dir: &Path, (chain, key): &(String, String)) -> CertFiles {
    let files = CertFiles { chain: dir.join("chain.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.chain, chain).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

/// Serves TLS on a local port: each connection echoes what it reads.
async fn echo_server(acceptor: Acceptor) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut buffer = [0u8; 64];
                while let Ok(n) = tls.read(&mut buffer).await {
                    if n == 0 || tls.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(address: std::net::SocketAddr, ca_pem: &str, name: &str) -> std::io::Result<ClientTls> {
    let config =
        client_config(Some(&"ca.pem".into()), ca_pem.as_bytes(), Verification::CertificateAndHostName).unwrap();
    let stream = TcpStream::connect(address).await?;
    tokio_rustls::TlsConnector::from(config).connect(ServerName::try_from(name.to_owned()).unwrap(), stream).await
}

fn served_leaf(tls: &ClientTls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

fn leaf_of(pem: &str) -> CertificateDer<'static> {
    super::certificates(Path::new("x"), pem.as_bytes()).unwrap().remove(0)
}

async fn echo(tls: &mut ClientTls, text: &[u8]) -> Vec<u8> {
    tls.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tls.read_exact(&mut back).await.unwrap();
    back
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_the_next_connection_and_open_ones_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.leaf(&["localhost", "127.0.0.1"]);
    let files = write_pair(dir.path(), &first);
    let served = ServedCert::load(&files).unwrap();
    let address = echo_server(Acceptor::new(served.clone(), &[b"h2"]).unwrap()).await;

    let mut open = connect(address, &ca.pem, "localhost").await.unwrap();
    assert_eq!(served_leaf(&open), leaf_of(&first.0));
    assert!(!served.reload().unwrap(), "unchanged files are not reloaded");

    // Rotated on disk: the next connection gets the new certificate, the
    // open one keeps working.
    let second = ca.leaf(&["localhost", "127.0.0.1"]);
    write_pair(dir.path(), &second);
    assert!(served.reload().unwrap());
    let fresh = connect(address, &ca.pem, "127.0.0.1").await.unwrap();
    assert_eq!(served_leaf(&fresh), leaf_of(&second.0));
    assert_eq!(echo(&mut open, b"still here").await, b"still here");

    // A half-written chain, or a key that does not belong to the chain,
    // leaves the last good pair in use.
    let third = ca.leaf(&["localhost"]);
    std::fs::write(&files.chain, &third.0[..third.0.len() / 2]).unwrap();
    assert!(matches!(served.reload(), Err(TlsError::Bad { .. })), "a torn file is refused");
    std::fs::write(&files.chain, &third.0).unwrap();
    assert!(matches!(served.reload(), Err(TlsError::Mismatch { .. })), "old key with new chain");
    let still = connect(address, &ca.pem, "localhost").await.unwrap();
    assert_eq!(served_leaf(&still), leaf_of(&second.0));
    std::fs::write(&files.key, &third.1).unwrap();
    assert!(served.reload().unwrap());
    let last = connect(address, &ca.pem, "localhost").await.unwrap();
    assert_eq!(served_leaf(&last), leaf_of(&third.0));
}

#[tokio::test]
async fn bad_files_stop_the_start_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let files = write_pair(dir.path(), &ca.leaf(&["localhost"]));
    let missing = CertFiles { chain: dir.path().join("nope.pem"), key: files.key.clone() };
    let error = ServedCert::load(&missing).unwrap_err().to_string();
    assert!(error.contains("nope.pem"), "{error}");
    let swapped = CertFiles { chain: files.key.clone(), key: files.chain.clone() };
    let error = ServedCert::load(&swapped).unwrap_err().to_string();
    assert!(error.contains("key.pem") && error.contains("no PEM certificate"), "{error}");
    let other = write_pair(&tempfile::tempdir().unwrap().keep(), &ca.leaf(&["localhost"]));
    let mixed = CertFiles { chain: files.chain.clone(), key: other.key };
    assert!(matches!(ServedCert::load(&mixed), Err(TlsError::Mismatch { .. })));
    let error = Trust::load(None, Verification::CertificateOnly).err().unwrap().to_string();
    assert!(error.contains("internal-trust-manager-file"), "{error}");
}

#[tokio::test]
async fn node_to_node_calls_check_certificates_as_the_verification_mode_says() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    // The node's certificate names node-1, but it is called at 127.0.0.1.
    let served = ServedCert::load(&write_pair(dir.path(), &ca.leaf(&["node-1"]))).unwrap();
    let address = echo_server(Acceptor::new(served, &[b"h2"]).unwrap()).await;
    let uri: tonic::codegen::http::Uri = format!("http://{address}").parse().unwrap();
    let trust_file = dir.path().join("trust.pem");
    let stranger = Ca::new("someone else");

    let attempt = |trusted: &str, mode| {
        std::fs::write(&trust_file, trusted).unwrap();
        let trust = Trust::load(Some(trust_file.clone()), mode).unwrap();
        let mut connector = trust.connector();
        let uri = uri.clone();
        async move { connector.call(uri).await.map(|_| ()) }
    };
    assert!(attempt(&ca.pem, Verification::CertificateAndHostName).await.is_err(), "wrong name accepted");
    assert!(attempt(&ca.pem, Verification::CertificateOnly).await.is_ok());
    assert!(attempt(&stranger.pem, Verification::CertificateOnly).await.is_err(), "untrusted CA accepted");
    assert!(attempt(&stranger.pem, Verification::InsecurelySkipAll).await.is_ok());

    // The trust file is read again: the cluster's CA added, calls succeed.
    std::fs::write(&trust_file, &stranger.pem).unwrap();
    let trust = Trust::load(Some(trust_file.clone()), Verification::CertificateOnly).unwrap();
    assert!(trust.connector().call(uri.clone()).await.is_err());
    std::fs::write(&trust_file, format!("{}{}", stranger.pem, ca.pem)).unwrap();
    assert!(trust.reloadable().reload().unwrap());
    let mut tls = trust.connector().call(uri.clone()).await.unwrap().into_inner();
    assert_eq!(echo(&mut tls, b"hello").await, b"hello");
}
