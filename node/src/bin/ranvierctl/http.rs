//! ranvierctl's HTTP/1.1 client (plain or TLS): one call per connection,
//! and downloads streamed to a writer with their SHA-256.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ranvier_node::config::Verification;
use ranvier_node::tls::client::client_config_for;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Call, Options, Usage};

/// A server answer.
pub struct Answer {
    pub status: u16,
    pub error_code: Option<String>,
    pub body: String,
}

/// Why the server could not be asked.
pub struct Unreachable(pub String);

/// `http://host:port` → (host, port).
/// Where the server is, and how to speak to it.
pub struct Server {
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// CA bundles of common Linux distributions, for HTTPS without --ca-file.
const SYSTEM_CA_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

pub fn server(url: &str, options: &Options) -> Result<Server, Usage> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (options.flag("-s"), rest),
        _ => return Err(Usage(format!("-S {url}: expected http://host:port or https://host:port"))),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| Usage(format!("-S {url}: bad port")))?),
        None if !authority.is_empty() => (authority, if https { 443 } else { 80 }),
        None => return Err(Usage(format!("-S {url}: no host"))),
    };
    let tls = if https { Some(tls_config(options)?) } else { None };
    Ok(Server { host: host.to_owned(), port, tls })
}

fn tls_config(options: &Options) -> Result<Arc<rustls::ClientConfig>, Usage> {
    if options.flag("-i") {
        return client_config_for(None, &[], Verification::InsecurelySkipAll, b"http/1.1")
            .map_err(|e| Usage(e.to_string()));
    }
    let file = match options.get("--ca-file") {
        Some(file) => PathBuf::from(file),
        None => SYSTEM_CA_BUNDLES.iter().map(PathBuf::from).find(|p| p.exists()).ok_or_else(|| {
            Usage("HTTPS needs the CA that signed the node's certificate: --ca-file <pem> (or -i)".into())
        })?,
    };
    let bytes = ranvier_node::tls::read(&file).map_err(|e| Usage(format!("--ca-file: {e}")))?;
    client_config_for(Some(&file), &bytes, Verification::CertificateAndHostName, b"http/1.1")
        .map_err(|e| Usage(format!("--ca-file: {e}")))
}

pub fn send(server: &Server, token: Option<&str>, request: &Call) -> Result<Answer, Unreachable> {
    let (host, port) = (server.host.as_str(), server.port);
    let unreachable = |e: std::io::Error| Unreachable(format!("{host}:{port}: {e}"));
    let stream = connect(server)?;
    let body = request.body.as_ref().map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        request.method,
        request.path,
        body.len()
    );
    if request.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("AxonIQ-Access-Token: {token}\r\n"));
    }
    head.push_str("\r\n");
    let raw = exchange(stream, &head, &body).map_err(unreachable)?;
    parse_answer(&raw).ok_or_else(|| Unreachable(format!("{host}:{port}: not an HTTP answer")))
}

/// Writes the request and reads the answer until the server closes. A TLS
/// peer that closes without close_notify after a whole answer is fine
/// (the answer carries its own length).
fn exchange(mut stream: Box<dyn Connection>, head: &str, body: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let answer = ranvier_wire::http::parse_answer(raw)?;
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    Some(Answer { status: answer.status, error_code: answer.error_code, body })
}

/// A connection to the server, plain or TLS.
pub trait Connection: Read + Write {}
impl<T: Read + Write> Connection for T {}

/// Connects to the server (5 s), with a 120 s read timeout.
pub fn connect(server: &Server) -> Result<Box<dyn Connection>, Unreachable> {
    let (host, port) = (server.host.as_str(), server.port);
    let unreachable = |e: std::io::Error| Unreachable(format!("{host}:{port}: {e}"));
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| Unreachable(format!("{host}: no address")))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(unreachable)?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(unreachable)?;
    match &server.tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                .map_err(|_| Unreachable(format!("{host}: not a host name for TLS")))?;
            let connection = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| Unreachable(format!("{host}:{port}: TLS: {e}")))?;
            Ok(Box::new(rustls::StreamOwned::new(connection, stream)))
        }
    }
}

/// A file downloaded whole.
pub struct Downloaded {
    /// Its bytes.
    pub size: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

/// Why a download failed.
pub enum DownloadFailed {
    /// The server could not be reached, or the transfer broke off.
    Unreachable(String),
    /// The server refused (status, error code, message).
    Refused(u16, Option<String>, String),
    /// Writing the copy failed.
    Write(std::io::Error),
}

/// GETs `path` and writes its body to `sink` as it arrives (bounded memory),
/// with its SHA-256; a body shorter than its Content-Length is an error.
pub fn download(
    server: &Server,
    token: Option<&str>,
    path: &str,
    sink: &mut dyn Write,
) -> Result<Downloaded, DownloadFailed> {
    let (host, port) = (server.host.as_str(), server.port);
    let broken = |e: std::io::Error| DownloadFailed::Unreachable(format!("{host}:{port}: {e}"));
    let mut stream = connect(server).map_err(|Unreachable(m)| DownloadFailed::Unreachable(m))?;
    let token = token.map(|t| format!("AxonIQ-Access-Token: {t}\r\n")).unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n{token}\r\n");
    stream.write_all(head.as_bytes()).map_err(broken)?;
    stream.flush().map_err(broken)?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let (mut status, mut length, mut code) = (0u16, None, None);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(broken)? == 0 {
            return Err(DownloadFailed::Unreachable(format!("{host}:{port}: the answer ended in its head")));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if status == 0 {
            status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        } else if let Some((name, value)) = text.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse::<u64>().ok(),
                "axoniq-errorcode" => code = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    if status != 200 {
        let mut rest = Vec::new();
        let _ = reader.take(1 << 20).read_to_end(&mut rest);
        let message = serde_json::from_slice::<Value>(&rest)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&rest).into_owned());
        return Err(DownloadFailed::Refused(status, code, message));
    }
    let Some(length) = length else {
        return Err(DownloadFailed::Unreachable(format!("{host}:{port}: no Content-Length")));
    };
    let mut hasher = Sha256::new();
    let mut left = length;
    let mut buffer = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match reader.read(&mut buffer[..want]) {
            Ok(0) => {
                return Err(DownloadFailed::Unreachable(format!("{host}:{port}: the file ended {left} bytes early")));
            }
            Ok(n) => n,
            Err(e) => return Err(broken(e)),
        };
        hasher.update(&buffer[..n]);
        sink.write_all(&buffer[..n]).map_err(DownloadFailed::Write)?;
        left -= n as u64;
    }
    Ok(Downloaded { size: length, sha256: ranvier_wire::hex(&hasher.finalize()) })
}
