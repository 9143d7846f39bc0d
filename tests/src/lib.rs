//! Harness for black-box tests: starts real `ranvier` node processes with
//! their own data directories and ports, waits for them to report ready,
//! and kills them on drop. Clients talk to them over real gRPC.
//!
//! The node binary is `$RANVIER_BIN`, else `ranvier` next to the test
//! binary's target directory (`make test` builds it first).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use prost::Message;
use ranvier_proto::common::SerializedObject;
use ranvier_proto::event::Event;
use ranvier_proto::event::event_store_client::EventStoreClient;
use tonic::transport::Channel;

/// How long a node may take to report ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the node binary under test.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("RANVIER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/ranvier
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary has no target directory")?;
    let candidate = profile_dir.join("ranvier");
    if !candidate.exists() {
        bail!(
            "{} does not exist: build it first (`cargo build -p ranvier-node --bin ranvier`) or set RANVIER_BIN",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Runs `ranvierctl` (built next to the node binary) with `args`; returns
/// its exit code, standard output and standard error.
pub fn ranvierctl(args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    ranvierctl_in(Path::new("."), args)
}

/// [`ranvierctl`] run in the working directory `cwd`.
pub fn ranvierctl_in(cwd: &Path, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let binary = node_binary()?.with_file_name("ranvierctl");
    let output = Command::new(&binary)
        .current_dir(cwd)
        .args(args)
        .output()
        .with_context(|| format!("run {}", binary.display()))?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A command that runs the node binary without the test tools' own
/// `RANVIER_*` variables (`RANVIER_BIN`, `RANVIER_SKIP_CONTAINER_TESTS`, …):
/// the node refuses variables that name none of its settings.
pub fn node_command() -> anyhow::Result<Command> {
    let mut command = Command::new(node_binary()?);
    for (name, _) in std::env::vars() {
        if (name.starts_with("RANVIER_") && name != "RANVIER_LOG") || name.starts_with("AXONIQ_") {
            command.env_remove(name);
        }
    }
    Ok(command)
}

/// A running node process.
pub struct Node {
    child: Option<Child>,
    /// The node's working directory (its data lives under `data/`).
    pub dir: PathBuf,
    /// Client gRPC address (`127.0.0.1:port`).
    pub client_addr: String,
    /// HTTP address.
    pub http_addr: String,
    settings: Vec<String>,
    stderr_log: PathBuf,
    name: String,
    internal_addr: Option<String>,
}

impl Node {
    /// Starts a node in `dir` with extra `--set key=value` settings.
    pub fn start(dir: &Path, settings: &[&str]) -> anyhow::Result<Node> {
        let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        Self::spawn(dir.to_path_buf(), settings)
    }

    fn spawn(dir: PathBuf, settings: Vec<String>) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&dir)?;
        let stderr_log = dir.join("node.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_log)?;
        let mut command = node_command()?;
        command
            .current_dir(&dir)
            .args(["--set", "axoniq.axonserver.port=0", "--set", "server.port=0"])
            .args(["--set", "ranvier.bind-address=127.0.0.1", "--set", "axoniq.axonserver.name=test-node"])
            .args(["--set", "axoniq.axonserver.hostname=localhost"])
            .env("RANVIER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for setting in &settings {
            command.args(["--set", setting]);
        }
        let mut child = command.spawn().context("failed to start ranvier")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY ") {
                    let _ = sender.send(line);
                }
            }
        });
        let line = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
                bail!("the node did not report ready; its log:\n{log}");
            }
        };
        let field = |name: &str| -> anyhow::Result<String> {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
                .with_context(|| format!("no {name}= in {line}"))
        };
        Ok(Node {
            client_addr: field("client")?,
            http_addr: field("http")?,
            name: field("node")?,
            internal_addr: field("internal").ok(),
            child: Some(child),
            dir,
            settings,
            stderr_log,
        })
    }

    /// A gRPC channel to the node.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.client_addr))?.connect().await?)
    }

    /// An EventStore client.
    pub async fn event_store(&self) -> anyhow::Result<EventStoreClient<Channel>> {
        Ok(EventStoreClient::new(self.channel().await?))
    }

    /// GETs an HTTP path; returns status code and body.
    pub fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.http_addr, path)
    }

    /// The value of the metric line `name{…}` whose labels include every
    /// one of `labels` (`key="value"`), if the node exposes it.
    pub fn metric(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let (_, text) = self.http_get("/metrics").ok()?;
        text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) || !labels.iter().all(|l| rest.contains(l)) {
                return None;
            }
            value.parse().ok()
        })
    }

    /// Sends an HTTP request without a body (`PATCH`, `DELETE`, …).
    pub fn http(&self, method: &str, path: &str) -> anyhow::Result<HttpReply> {
        http_call(&self.http_addr, method, path)
    }

    /// The internal `host:port` from its READY line (clustered nodes).
    pub fn internal_addr(&self) -> Option<&str> {
        self.internal_addr.as_deref()
    }

    /// The node's name, from its READY line.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's process id (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("not running") };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        Ok(child.wait()?)
    }

    /// Starts the node again on the same directory and settings.
    pub fn restart(mut self) -> anyhow::Result<Node> {
        self.kill9()?;
        Self::spawn(self.dir.clone(), self.settings.clone())
    }

    /// Starts the node again on the same directory, with `changed`
    /// `key=value` settings in place of the ones it had for those keys.
    pub fn restart_with(mut self, changed: &[&str]) -> anyhow::Result<Node> {
        self.kill9()?;
        let mut settings = self.settings.clone();
        for setting in changed {
            let key = setting.split_once('=').map_or(*setting, |(key, _)| key);
            settings.retain(|s| s.split_once('=').map_or(s.as_str(), |(k, _)| k) != key);
            settings.push((*setting).to_owned());
        }
        Self::spawn(self.dir.clone(), settings)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The last token of the node's `default` context (-1 while it is empty).
pub async fn last_token(node: &Node) -> anyhow::Result<i64> {
    let mut client = node.event_store().await?;
    Ok(client.get_last_token(ranvier_proto::event::GetLastTokenRequest {}).await?.into_inner().token)
}

/// The first `count` events of the node's `default` context, read with
/// ListEvents from token 0.
pub async fn read_events(node: &Node, count: i64) -> anyhow::Result<Vec<ranvier_proto::wire::EventWithToken>> {
    use tokio_stream::StreamExt;
    let mut client = node.event_store().await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let request =
        ranvier_proto::event::GetEventsRequest { tracking_token: 0, number_of_permits: count, ..Default::default() };
    sender.send(request).await?;
    let mut stream = client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?.into_inner();
    let mut events = Vec::new();
    while (events.len() as i64) < count {
        events.push(stream.next().await.context("the stream ended early")??);
    }
    Ok(events)
}

/// A domain event of `aggregate` at `seq` with a payload of `payload_len` bytes.
pub fn event(aggregate: &str, seq: i64, payload_len: usize) -> Event {
    Event {
        message_identifier: format!("{aggregate}/{seq}"),
        aggregate_identifier: aggregate.into(),
        aggregate_sequence_number: seq,
        aggregate_type: "Order".into(),
        timestamp: 1_700_000_000_000 + seq,
        payload: Some(SerializedObject {
            r#type: "OrderEvent".into(),
            revision: "1".into(),
            data: Bytes::from(vec![b'e'; payload_len]),
        }),
        ..Default::default()
    }
}

/// Adds the context header to a request.
pub fn in_context<T>(message: T, context: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = context.parse() {
        request.metadata_mut().insert("axoniq-context", value);
    }
    request
}

/// The `AxonIQ-ErrorCode` of a status.
pub fn error_code(status: &tonic::Status) -> Option<String> {
    status.metadata().get("axoniq-errorcode").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A TCP port that was free a moment ago on 127.0.0.1 (for settings that
/// other nodes must know before the node starts, like the internal port).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `condition` holds, checking every 20 ms, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Starts `count` nodes on loopback that form a cluster by autocluster
/// (node-1 is the first), with the internal token set and election timeouts
/// of 300-600 ms, plus `extra` settings for every node.
pub fn start_cluster(dir: &Path, count: usize, extra: &[&str]) -> anyhow::Result<Vec<Node>> {
    start_nodes(dir, count, true, extra)
}

/// Starts `count` clustered nodes on loopback (internal token set, election
/// timeouts of 300-600 ms); with `autocluster` node-1 founds the cluster and
/// the others join, else they wait for `ranvierctl init-cluster` and
/// `register-node`.
pub fn start_nodes(dir: &Path, count: usize, autocluster: bool, extra: &[&str]) -> anyhow::Result<Vec<Node>> {
    let ports: Vec<u16> = (0..count).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
    let first = format!("127.0.0.1:{}", ports[0]);
    let mut nodes = Vec::with_capacity(count);
    for (i, port) in ports.iter().enumerate() {
        let formation = if autocluster {
            format!("axoniq.axonserver.autocluster.first={first}")
        } else {
            "ranvier.clustered=true".to_owned()
        };
        nodes.push(start_clustered(dir, &format!("node-{}", i + 1), *port, formation, extra)?);
    }
    Ok(nodes)
}

/// Starts node `name` in `dir/name` with the clustered test settings
/// (internal port `port` on loopback, internal token, 300-600 ms election
/// timeouts), its `formation` setting and `extra` settings.
fn start_clustered(dir: &Path, name: &str, port: u16, formation: String, extra: &[&str]) -> anyhow::Result<Node> {
    let mut settings = vec![
        format!("axoniq.axonserver.name={name}"),
        "axoniq.axonserver.internal-hostname=127.0.0.1".to_owned(),
        format!("axoniq.axonserver.internal-port={port}"),
        formation,
        "axoniq.axonserver.accesscontrol.internal-token=cluster-secret".to_owned(),
        "axoniq.axonserver.replication.min-election-timeout=300".to_owned(),
        "axoniq.axonserver.replication.max-election-timeout=600".to_owned(),
        "axoniq.axonserver.replication.heartbeat-timeout=100".to_owned(),
    ];
    settings.extend(extra.iter().map(|s| s.to_string()));
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    Node::start(&dir.join(name), &settings)
}

/// Starts one more node, `name`, that joins the cluster founded at internal
/// `first` by autocluster (same test settings as [`start_nodes`]).
pub fn join_node(dir: &Path, name: &str, first: &str, extra: &[&str]) -> anyhow::Result<Node> {
    start_clustered(dir, name, free_port()?, format!("axoniq.axonserver.autocluster.first={first}"), extra)
}

/// Waits until `via` sees `voters` voting members and a leader in `group`
/// (autocluster adds the other nodes one membership step at a time).
pub async fn wait_voters(via: &Node, group: &str, voters: usize) -> anyhow::Result<()> {
    eventually(Duration::from_secs(30), &format!("{voters} voters in {group}"), || async {
        let Ok((_, body)) = via.http_get("/v1/public/replicationgroups") else { return false };
        let Ok(groups) = serde_json::from_str::<serde_json::Value>(&body) else { return false };
        let Some(found) = groups.as_array().and_then(|g| g.iter().find(|g| g["name"] == group).cloned()) else {
            return false;
        };
        let counted = found["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["raft"] == "voter").count());
        counted == voters && found["leader"].is_string()
    })
    .await
}

/// The leader of replication group `group` as node `via` sees it.
pub fn leader_of(via: &Node, group: &str) -> Option<String> {
    let (_, body) = via.http_get("/v1/public/replicationgroups").ok()?;
    let groups: serde_json::Value = serde_json::from_str(&body).ok()?;
    groups.as_array()?.iter().find(|g| g["name"] == group)?["leader"].as_str().map(str::to_owned)
}

/// GETs `path` from the HTTP server at `address` (`host:port`); returns
/// the status code and body.
pub fn http_get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let reply = http_call(address, "GET", path)?;
    Ok((reply.code, reply.body))
}

/// An HTTP answer.
#[derive(Debug)]
pub struct HttpReply {
    /// The status code.
    pub code: u16,
    /// The header lines, lower-cased names: `name: value`.
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim().to_ascii_lowercase() == name).then_some(value.trim())
        })
    }
}

/// Sends `method path` without a body to the HTTP server at `address`.
pub fn http_call(address: &str, method: &str, path: &str) -> anyhow::Result<HttpReply> {
    http_call_with(address, method, path, &[])
}

/// [`http_call`] with extra request `headers` (name, value).
pub fn http_call_with(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<HttpReply> {
    let raw = raw_http(address, method, path, headers)?;
    let response = String::from_utf8_lossy(&raw);
    let code = response.split_whitespace().nth(1).context("no status line")?.parse()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let headers = head.lines().skip(1).map(str::to_owned).collect();
    Ok(HttpReply { code, headers, body: body.to_owned() })
}

/// GETs `path` with request `headers`: the status, the `AxonIQ-ErrorCode`
/// and the body as bytes (identity or chunked).
pub fn http_get_bytes(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<ranvier_wire::http::Answer> {
    let raw = raw_http(address, "GET", path, headers)?;
    ranvier_wire::http::parse_answer(&raw).context("not an HTTP answer")
}

/// One HTTP/1.1 exchange without a request body: the answer's bytes.
fn raw_http(address: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// A client's platform stream, as an Axon application opens it.
pub struct Platform {
    /// What the client sends.
    pub to_server: tokio::sync::mpsc::Sender<ranvier_proto::control::PlatformInboundInstruction>,
    /// What the server sends.
    pub from_server: tonic::Streaming<ranvier_proto::control::PlatformOutboundInstruction>,
}

impl Platform {
    /// Opens a platform stream on `channel` and registers as `client` of
    /// `component` (the register instruction carries id `register`).
    pub async fn open(channel: &Channel, client: &str, component: &str) -> anyhow::Result<Platform> {
        use ranvier_proto::control::platform_inbound_instruction::Request;
        use ranvier_proto::control::platform_service_client::PlatformServiceClient;
        use ranvier_proto::control::{ClientIdentification, PlatformInboundInstruction};
        let (to_server, outbound) = tokio::sync::mpsc::channel(16);
        let from_server = PlatformServiceClient::new(channel.clone())
            .open_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
            .await?
            .into_inner();
        let identity = ClientIdentification {
            client_id: client.to_owned(),
            component_name: component.to_owned(),
            ..Default::default()
        };
        let register = PlatformInboundInstruction {
            instruction_id: "register".into(),
            request: Some(Request::Register(identity)),
        };
        to_server.send(register).await?;
        Ok(Platform { to_server, from_server })
    }
}

/// Encoded size of an event (for byte budgets in tests).
pub fn encoded_len(event: &Event) -> usize {
    event.encoded_len()
}

/// Whether a test needing something outside the project can run: true
/// when it is `present`; false, said loudly as `SKIPPED: {skipped}`, when
/// `{skip_var}=1` allows skipping it; otherwise the test fails with
/// `missing`.
pub fn present_or_skipped(present: bool, skip_var: &str, skipped: &str, missing: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var(skip_var).as_deref() == Ok("1") {
        eprintln!("SKIPPED: {skipped}");
        return false;
    }
    panic!("{missing}");
}

pub mod browser;
pub mod docker;
pub mod kube;
pub mod processors;
pub mod tls;

pub mod raw {
    //! A codec that sends and receives message bytes as they are: to put
    //! malformed messages on the wire, and for a load generator that encodes
    //! its events before the clock starts.
    use bytes::{Buf, BufMut, Bytes};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    /// Bytes in, bytes out.
    pub struct RawCodec;
    /// Writes the bytes as the message.
    pub struct RawEncoder;
    /// Reads the message as bytes.
    pub struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawDecoder {
        type Item = Bytes;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            let len = src.remaining();
            Ok(Some(src.copy_to_bytes(len)))
        }
    }
}
