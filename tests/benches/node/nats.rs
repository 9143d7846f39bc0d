//! The same writes against NATS JetStream R3, for the side-by-side figures
//! of `spread`: three `nats-server` processes (Debian's package) clustered
//! on loopback, a file-storage stream with three replicas, one subject per
//! client, every publish checked against the subject's last sequence (as
//! an event store's append checks the aggregate's), clients spread over
//! the servers, each waiting for its acknowledgement before the next.
//!
//! The client is the NATS text protocol written out here (INFO, CONNECT,
//! PING/PONG, SUB, HPUB, MSG/HMSG), one connection per client: enough for
//! request and reply, and no extra crate. What each side syncs: Ranvier
//! fsyncs every write on every replica before it answers; JetStream 2.9
//! answers once a majority holds the write, and fsyncs its files every
//! `sync_interval` (2 minutes by default).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Three clustered JetStream servers, stopped when dropped.
pub struct Servers {
    children: Vec<Child>,
    /// Client addresses, by server.
    pub addresses: Vec<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Servers {
    /// The servers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

/// `nats-server` on the PATH (or in /usr/sbin), if installed.
pub fn binary() -> Option<std::path::PathBuf> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"].iter().map(std::path::PathBuf::from).find(|p| p.exists())
}

/// Starts three clustered servers with JetStream on file storage in `dir`,
/// and makes the stream `BENCH` (subjects `bench.>`, three replicas).
pub async fn start(binary: &Path, dir: &Path) -> Servers {
    let clients: Vec<u16> = (0..3).map(|_| ranvier_tests::free_port().unwrap()).collect();
    let routes: Vec<u16> = (0..3).map(|_| ranvier_tests::free_port().unwrap()).collect();
    let route_list = routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(", ");
    let mut children = Vec::new();
    for i in 0..3 {
        let store = dir.join(format!("nats-{i}"));
        std::fs::create_dir_all(&store).unwrap();
        let config = format!(
            "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
             cluster {{ name: bench, listen: 127.0.0.1:{}, routes: [{route_list}] }}\n",
            clients[i],
            store.display(),
            routes[i]
        );
        let path = dir.join(format!("nats-{i}.conf"));
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join(format!("nats-{i}.log"))).unwrap();
        let child = Command::new(binary).arg("-c").arg(&path).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        children.push(child);
    }
    let servers = Servers { children, addresses: clients.iter().map(|p| format!("127.0.0.1:{p}")).collect() };
    // The stream, once the servers have elected their JetStream leader.
    let config = br#"{"name":"BENCH","subjects":["bench.>"],"storage":"file","num_replicas":3}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = match Connection::open(&servers.addresses[0]).await {
            Ok(mut connection) => {
                let sent = connection.request("$JS.API.STREAM.CREATE.BENCH", None, config);
                tokio::time::timeout(Duration::from_secs(3), sent).await.ok().and_then(Result::ok)
            }
            Err(_) => None,
        };
        let text = answer.map(|a| String::from_utf8_lossy(&a).into_owned()).unwrap_or_default();
        if text.contains("\"config\"") && !text.contains("\"error\"") {
            break;
        }
        assert!(Instant::now() < deadline, "JetStream did not make the stream: {text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    servers
}

/// One client connection, one request at a time.
pub struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    inbox: String,
    line: String,
}

impl Connection {
    /// Connects, says CONNECT (with headers), and subscribes its inbox.
    pub async fn open(address: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        // Unique per connection: the servers route replies by inbox.
        let inbox = format!("_INBOX.{}.{}", std::process::id(), NEXT_INBOX.fetch_add(1, Ordering::Relaxed));
        let mut connection = Connection { reader: BufReader::new(read), writer, inbox, line: String::new() };
        connection.read_line().await?; // INFO
        let hello = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}}\r\n\
             SUB {} 1\r\nPING\r\n",
            connection.inbox
        );
        connection.writer.write_all(hello.as_bytes()).await?;
        loop {
            let line = connection.read_line().await?;
            if line.starts_with("PONG") {
                return Ok(connection);
            }
            if line.starts_with("-ERR") {
                return Err(std::io::Error::other(line));
            }
        }
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        Ok(self.line.trim_end().to_owned())
    }

    /// Publishes `payload` to `subject` with `header` lines, and answers
    /// the reply's payload.
    pub async fn request(&mut self, subject: &str, header: Option<&str>, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(payload.len() + 128);
        match header {
            Some(header) => {
                let headers = format!("NATS/1.0\r\n{header}\r\n\r\n");
                let total = headers.len() + payload.len();
                out.extend_from_slice(
                    format!("HPUB {subject} {} {} {total}\r\n", self.inbox, headers.len()).as_bytes(),
                );
                out.extend_from_slice(headers.as_bytes());
            }
            None => out.extend_from_slice(format!("PUB {subject} {} {}\r\n", self.inbox, payload.len()).as_bytes()),
        }
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        self.writer.write_all(&out).await?;
        loop {
            let line = self.read_line().await?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.first().copied() {
                Some("PING") => self.writer.write_all(b"PONG\r\n").await?,
                Some("MSG") | Some("HMSG") => {
                    let sizes: Vec<usize> = fields.iter().rev().take(2).filter_map(|f| f.parse().ok()).collect();
                    let total = sizes.first().copied().unwrap_or(0);
                    let headers = if fields[0] == "HMSG" { sizes.get(1).copied().unwrap_or(0) } else { 0 };
                    let mut body = vec![0u8; total + 2];
                    self.reader.read_exact(&mut body).await?;
                    body.truncate(total);
                    return Ok(body.split_off(headers.min(total)));
                }
                Some("-ERR") => return Err(std::io::Error::other(line)),
                _ => {}
            }
        }
    }
}

/// Numbers the connections' inboxes.
static NEXT_INBOX: AtomicU64 = AtomicU64::new(0);

/// `clients` clients spread over `servers`, each publishing 256-byte
/// messages to its own subject with the last-sequence check, until `total`
/// are acknowledged.
pub async fn publish_load(servers: &Servers, clients: usize, total: u64, tag: &str) -> super::spread::Measured {
    let mut connections = Vec::with_capacity(clients);
    for c in 0..clients {
        connections.push(Connection::open(&servers.addresses[c % servers.addresses.len()]).await.unwrap());
    }
    let clock = super::spread::Clock::start(servers.pids());
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut connection) in connections.into_iter().enumerate() {
        let (done, subject) = (done.clone(), format!("bench.{tag}.{c}"));
        tasks.spawn(async move {
            let payload = vec![b'x'; super::EVENT_BYTES];
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let mut last = 0u64;
            while done.load(Ordering::Relaxed) < total {
                let header = format!("Nats-Expected-Last-Subject-Sequence: {last}");
                let sent = Instant::now();
                let ack = connection.request(&subject, Some(&header), &payload).await.unwrap();
                latency.record(sent.elapsed().as_micros() as u64).unwrap();
                let ack: serde_json::Value = serde_json::from_slice(&ack).unwrap();
                last = ack["seq"].as_u64().unwrap_or_else(|| panic!("JetStream refused a publish: {ack}"));
                done.fetch_add(1, Ordering::Relaxed);
            }
            latency
        });
    }
    clock.measure(tasks, &done).await
}
