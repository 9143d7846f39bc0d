//! Access control against real node processes: with
//! `accesscontrol.enabled`, every client gRPC call and every REST call
//! needs a token — the applications' token for client calls and REST
//! reads, the administrators' for everything — and a refused call changes
//! nothing; `/health` stays open, `/ready` and `/metrics` follow
//! `ranvier.accesscontrol.open-probes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ranvier_proto::command::Command;
use ranvier_proto::command::command_service_client::CommandServiceClient;
use ranvier_proto::control::ClientIdentification;
use ranvier_proto::control::platform_service_client::PlatformServiceClient;
use ranvier_proto::event::event_store_client::EventStoreClient;
use ranvier_proto::event::{GetAggregateEventsRequest, GetLastTokenRequest, ReadHighestSequenceNrRequest};
use ranvier_proto::query::QueryRequest;
use ranvier_proto::query::query_service_client::QueryServiceClient;
use ranvier_tests::{Node, error_code, event};
use tonic::transport::Channel;

const APP: &str = "app-token-1";
const ADMIN: &str = "admin-token-1";

fn settings(open_probes: bool) -> Vec<String> {
    vec![
        "axoniq.axonserver.accesscontrol.enabled=true".into(),
        format!("axoniq.axonserver.accesscontrol.token={APP}"),
        format!("axoniq.axonserver.accesscontrol.admin-token={ADMIN}"),
        format!("ranvier.accesscontrol.open-probes={open_probes}"),
    ]
}

fn start(dir: &std::path::Path, open_probes: bool) -> Node {
    let owned = settings(open_probes);
    let settings: Vec<&str> = owned.iter().map(String::as_str).collect();
    Node::start(dir, &settings).unwrap()
}

/// `message` carrying `token` (none: no header), in the legacy header
/// when `legacy`.
fn with_token<T>(message: T, token: Option<&str>, legacy: bool) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let key = if legacy { "access-token" } else { "axoniq-access-token" };
        request.metadata_mut().insert(key, token.parse().unwrap());
    }
    request
}

/// Names the context of a call.
trait InContext {
    fn in_context(self, context: &str) -> Self;
}

impl<T> InContext for tonic::Request<T> {
    fn in_context(mut self, context: &str) -> Self {
        self.metadata_mut().insert("axoniq-context", context.parse().unwrap());
        self
    }
}

/// What one call with `token` came to: `Ok` when it got past access control
/// (whatever the service then said), else the refusal's code.
async fn call(channel: &Channel, rpc: &str, token: Option<&str>) -> Result<(), String> {
    call_in(channel, rpc, token, "default").await
}

/// [`call`] in `context`.
async fn call_in(channel: &Channel, rpc: &str, token: Option<&str>, context: &str) -> Result<(), String> {
    let result = match rpc {
        "GetPlatformServer" => PlatformServiceClient::new(channel.clone())
            .get_platform_server(with_token(ClientIdentification::default(), token, false).in_context(context))
            .await
            .map(|_| ()),
        "AppendEvent" => EventStoreClient::new(channel.clone())
            .append_event(
                with_token(tokio_stream::iter(vec![event("order-1", 0, 32)]), token, false).in_context(context),
            )
            .await
            .map(|_| ()),
        "ListAggregateEvents" => {
            let request = GetAggregateEventsRequest { aggregate_id: "order-1".into(), ..Default::default() };
            match EventStoreClient::new(channel.clone())
                .list_aggregate_events(with_token(request, token, false).in_context(context))
                .await
            {
                Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
        "GetLastToken" => EventStoreClient::new(channel.clone())
            .get_last_token(with_token(GetLastTokenRequest {}, token, true).in_context(context))
            .await
            .map(|_| ()),
        "ReadHighestSequenceNr" => {
            let request = ReadHighestSequenceNrRequest { aggregate_id: "order-1".into(), ..Default::default() };
            EventStoreClient::new(channel.clone())
                .read_highest_sequence_nr(with_token(request, token, false).in_context(context))
                .await
                .map(|_| ())
        }
        "Dispatch" => {
            let command = Command { message_identifier: "c-1".into(), name: "Ship".into(), ..Default::default() };
            CommandServiceClient::new(channel.clone())
                .dispatch(with_token(command, token, false).in_context(context))
                .await
                .map(|_| ())
        }
        "Query" => {
            let query = QueryRequest { message_identifier: "q-1".into(), query: "Find".into(), ..Default::default() };
            match QueryServiceClient::new(channel.clone())
                .query(with_token(query, token, false).in_context(context))
                .await
            {
                Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
        other => panic!("no case for {other}"),
    };
    match result {
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            Err(error_code(&status).unwrap_or_else(|| format!("no code: {status:?}")))
        }
        _ => Ok(()),
    }
}

async fn last_token(channel: &Channel) -> i64 {
    EventStoreClient::new(channel.clone())
        .get_last_token(with_token(GetLastTokenRequest {}, Some(APP), false))
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_call_needs_a_token_and_a_refused_call_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), false);
    let channel = node.channel().await.unwrap();
    let rpcs =
        ["GetPlatformServer", "ListAggregateEvents", "GetLastToken", "ReadHighestSequenceNr", "Dispatch", "Query"];
    for rpc in rpcs {
        assert_eq!(call(&channel, rpc, None).await, Err("AXONIQ-1000".into()), "{rpc} without a token");
        assert_eq!(call(&channel, rpc, Some("guess")).await, Err("AXONIQ-1001".into()), "{rpc} with a wrong token");
        assert_eq!(call(&channel, rpc, Some(APP)).await, Ok(()), "{rpc} with the applications' token");
        assert_eq!(call(&channel, rpc, Some(ADMIN)).await, Ok(()), "{rpc} with the administrators' token");
    }

    // A refused append writes nothing; an allowed one writes.
    assert_eq!(call(&channel, "AppendEvent", None).await, Err("AXONIQ-1000".into()));
    assert_eq!(call(&channel, "AppendEvent", Some("guess")).await, Err("AXONIQ-1001".into()));
    assert_eq!(last_token(&channel).await, -1, "a refused append wrote an event");
    assert_eq!(call(&channel, "AppendEvent", Some(APP)).await, Ok(()));
    assert_eq!(last_token(&channel).await, 0);
}

/// `(status, error code header)` of `method path` with `token`.
fn rest(node: &Node, method: &str, path: &str, token: Option<&str>) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("AxonIQ-Access-Token", t)).into_iter().collect();
    let reply = ranvier_tests::http_call_with(&node.http_addr, method, path, &headers).unwrap();
    (reply.code, reply.header("AxonIQ-ErrorCode").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_reads_need_a_token_changes_need_the_admin_token_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), false);
    let refused = |code: &str| (403, Some(code.to_owned()));

    let reads =
        ["/v1/public", "/v1/public/me", "/v1/components?context=default", "/v1/processors", "/ready", "/metrics"];
    for path in reads {
        assert_eq!(rest(&node, "GET", path, None), refused("AXONIQ-1000"), "GET {path}");
        assert_eq!(rest(&node, "GET", path, Some("guess")), refused("AXONIQ-1001"), "GET {path}");
        assert_ne!(rest(&node, "GET", path, Some(APP)).0, 403, "GET {path} with the applications' token");
        assert_ne!(rest(&node, "GET", path, Some(ADMIN)).0, 403, "GET {path} with the administrators' token");
    }
    let changes = [
        ("DELETE", "/v1/context/default"),
        ("POST", "/v1/context/init"),
        ("POST", "/v1/cluster"),
        ("POST", "/v1/replicationgroups"),
        ("DELETE", "/v1/replicationgroups/default"),
        ("PATCH", "/v1/components/shop/processors/orders/pause?context=default"),
    ];
    for (method, path) in changes {
        assert_eq!(rest(&node, method, path, None), refused("AXONIQ-1000"), "{method} {path}");
        assert_eq!(rest(&node, method, path, Some(APP)), refused("AXONIQ-1001"), "{method} {path} as an app");
        assert_ne!(rest(&node, method, path, Some(ADMIN)).0, 403, "{method} {path} as an administrator");
    }
    assert_eq!(rest(&node, "GET", "/health", None).0, 200);
    assert_eq!(rest(&node, "GET", "/actuator/health", None).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_stay_open_by_default_and_ranvierctl_sends_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(true);
    settings.pop();
    let owned: Vec<&str> = settings.iter().map(String::as_str).collect();
    let nodes = ranvier_tests::start_cluster(dir.path(), 1, &owned).unwrap();
    let node = &nodes[0];
    // Ready or not yet, a probe is answered without a token.
    assert_ne!(rest(node, "GET", "/ready", None).0, 403, "a probe needs no token by default");
    assert_eq!(rest(node, "GET", "/metrics", None).0, 200, "nor does a scraper");
    assert_eq!(rest(node, "GET", "/v1/public", None).0, 403);

    let server = format!("http://{}", node.http_addr);
    let ctl = |args: &[&str]| ranvier_tests::ranvierctl(args).unwrap();
    let contexts = |token: &str| ctl(&["contexts", "-S", &server, "-t", token, "-o", "json"]);
    ranvier_tests::eventually(std::time::Duration::from_secs(20), "the cluster to list default", || async {
        contexts(APP).1.contains("default")
    })
    .await
    .unwrap();

    // An application's token cannot change the cluster, and nothing changes.
    let register =
        |token: &str| ctl(&["register-context", "-S", &server, "-t", token, "-c", "audit", "-n", node.name()]);
    let (code, out, err) = register(APP);
    assert_ne!(code, 0, "{out}{err}");
    assert!(format!("{out}{err}").contains("AXONIQ-1001"), "{out}{err}");
    let (code, out, err) = ctl(&["register-context", "-S", &server, "-c", "audit", "-n", node.name()]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(format!("{out}{err}").contains("AXONIQ-1000"), "{out}{err}");
    assert!(!contexts(APP).1.contains("audit"));

    let (code, out, err) = register(ADMIN);
    assert_eq!(code, 0, "{out}{err}");
    ranvier_tests::eventually(std::time::Duration::from_secs(20), "the context audit", || async {
        contexts(APP).1.contains("audit")
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_and_cannot_hold_the_connection_slots() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // One connection slot; a connection must speak within 300 ms.
    let node = Node::start(dir.path(), &["ranvier.max-connections=1", "ranvier.handshake-timeout=300"]).unwrap();
    let address = node.client_addr.clone();
    let silent = std::net::TcpStream::connect(&address).unwrap();
    let opened = std::time::Instant::now();

    // A real client waits in the backlog until the silent one is closed,
    // then is served.
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let channel = node.channel().await.unwrap();
        let request = with_token(GetLastTokenRequest {}, None, false);
        EventStoreClient::new(channel).get_last_token(request).await
    })
    .await
    .expect("the client was never served");
    assert_eq!(served.unwrap().into_inner().token, -1);

    let mut silent = silent;
    silent.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    // The node may say goodbye (HTTP/2 frames), then closes it.
    let mut said = Vec::new();
    let read = silent.read_to_end(&mut said);
    let still_open =
        matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    assert!(!still_open, "the silent connection is still open: {read:?}");
    assert!(opened.elapsed() >= std::time::Duration::from_millis(250), "closed before its timeout");
}

/// Waits until `rpc` with `token` in `context` on every node comes to `expected`.
async fn everywhere(nodes: &[Node], rpc: &str, token: &str, context: &str, expected: Result<(), String>) {
    for node in nodes {
        let channel = node.channel().await.unwrap();
        let what = format!("{rpc} in {context} on {} to come to {expected:?}", node.name());
        ranvier_tests::eventually(std::time::Duration::from_secs(20), &what, || async {
            call_in(&channel, rpc, Some(token), context).await == expected
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_tokens_allow_their_roles_in_their_contexts_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut owned = settings(true);
    owned.push("axoniq.axonserver.accesscontrol.systemtokenfile=security/.token".into());
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &owned).unwrap();
    let home = dir.path().join("node-1");
    let token_file = home.join("security/.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);

    // ranvierctl in node-1's directory administers with the system token,
    // without -t.
    let server = format!("http://{}", nodes[0].http_addr);
    let ctl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-S", server.as_str()]);
        ranvier_tests::ranvierctl_in(&home, &all).unwrap()
    };
    ranvier_tests::eventually(std::time::Duration::from_secs(30), "three nodes in the cluster", || async {
        ctl(&["cluster", "-o", "json"]).1.matches("\"name\"").count() == 3
    })
    .await
    .unwrap();
    let (code, out, err) = ctl(&["register-context", "-c", "orders", "-n", "node-1,node-2,node-3"]);
    assert_eq!(code, 0, "{out}{err}");
    let register = |name: &str, roles: &str| {
        let (code, out, err) = ctl(&["register-application", "-a", name, "-r", roles, "-d", "test app"]);
        assert_eq!(code, 0, "{out}{err}");
        out.trim().to_owned()
    };
    let reader = register("reader", "READ_EVENTS@default");
    let writer = register("writer", "PUBLISH_EVENTS@default,READ_EVENTS@default");
    let orders = register("orders-app", "USE_CONTEXT@orders");
    let owner = register("orders-owner", "CONTEXT_ADMIN@orders");
    assert_eq!(reader.len(), 64, "a generated token: {reader}");

    // Listed with their roles, never with a token or its hash.
    let (code, listed, err) = ctl(&["applications"]);
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("reader") && listed.contains("READ_EVENTS@default"), "{listed}");
    assert!(listed.contains("USE_CONTEXT@orders"), "{listed}");
    let json = ranvier_tests::http_call_with(
        &nodes[1].http_addr,
        "GET",
        "/v1/public/applications",
        &[("AxonIQ-Access-Token", ADMIN)],
    )
    .unwrap();
    let json = json.body;
    for secret in [&reader, &writer, &orders, &owner] {
        assert!(!listed.contains(secret.as_str()) && !json.contains(secret.as_str()), "a token was listed");
    }
    assert!(!json.contains("argon2") && !json.contains("\"token\""), "{json}");

    // Every node knows every application (through `_admin`).
    everywhere(&nodes, "GetLastToken", &reader, "default", Ok(())).await;
    everywhere(&nodes, "GetLastToken", &orders, "orders", Ok(())).await;
    let denied = || Err("AXONIQ-1001".to_owned());
    let table: [(&str, &str, &str, Result<(), String>); 12] = [
        (&reader, "ListAggregateEvents", "default", Ok(())),
        (&reader, "AppendEvent", "default", denied()),
        (&reader, "Dispatch", "default", denied()),
        (&reader, "Query", "default", denied()),
        (&reader, "GetLastToken", "orders", denied()),
        (&orders, "Dispatch", "orders", Ok(())),
        (&orders, "Query", "orders", Ok(())),
        (&orders, "GetPlatformServer", "orders", Ok(())),
        (&orders, "GetLastToken", "default", denied()),
        (&orders, "GetPlatformServer", "default", denied()),
        (&owner, "GetLastToken", "orders", denied()),
        (&writer, "Dispatch", "default", denied()),
    ];
    for node in &nodes {
        let channel = node.channel().await.unwrap();
        for (token, rpc, context, expected) in &table {
            let got = call_in(&channel, rpc, Some(token), context).await;
            assert_eq!(&got, expected, "{rpc} in {context} on {} with {}", node.name(), &token[..8]);
        }
        assert_eq!(last_token(&channel).await, -1, "a refused append wrote an event");
    }
    let channel = nodes[1].channel().await.unwrap();
    assert_eq!(call_in(&channel, "AppendEvent", Some(&writer), "default").await, Ok(()));
    assert_eq!(last_token(&channel).await, 0);

    // REST: a context's admin administers that context only; applications
    // are the cluster administrators' business.
    let refused = (403, Some("AXONIQ-1001".to_owned()));
    assert_ne!(rest(&nodes[2], "GET", "/v1/components?context=orders", Some(&owner)).0, 403);
    assert_eq!(rest(&nodes[2], "GET", "/v1/public", Some(&owner)), refused);
    assert_eq!(rest(&nodes[2], "DELETE", "/v1/context/default", Some(&owner)), refused);
    assert_eq!(rest(&nodes[2], "GET", "/v1/public/applications", Some(&reader)), refused);
    assert_eq!(rest(&nodes[2], "PATCH", "/v1/applications/reader", Some(&orders)), refused);
    assert_eq!(rest(&nodes[2], "GET", "/v1/public/applications", Some(APP)), refused);

    // Bad requests are refused with their reasons.
    let (code, out, err) = ctl(&["register-application", "-a", "bad", "-r", "WRITE_EVERYTHING@default"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("AXONIQ-2510") && err.contains("READ_EVENTS"), "{err}");
    let (code, _, err) = ctl(&["register-application", "-a", "bad", "-r", "ADMIN@default"]);
    assert!(code == 1 && err.contains("ADMIN@*"), "{err}");
    let (code, _, err) = ctl(&["register-application", "-a", "bad", "-r", "MONITOR", "-T", "short"]);
    assert!(code == 1 && err.contains("16 characters"), "{err}");
    let (code, _, err) = ctl(&["renew-application-token", "-a", "nobody"]);
    assert!(code == 1 && err.contains("AXONIQ-1300"), "{err}");

    // A renewed token replaces the old one on every node; a deleted
    // application's token stops working.
    let (code, renewed, err) = ctl(&["renew-application-token", "-a", "reader"]);
    assert_eq!(code, 0, "{err}");
    let renewed = renewed.trim().to_owned();
    assert_ne!(renewed, reader);
    everywhere(&nodes, "GetLastToken", &reader, "default", denied()).await;
    everywhere(&nodes, "GetLastToken", &renewed, "default", Ok(())).await;
    // A change of roles keeps the token.
    let (code, out, err) =
        ctl(&["register-application", "-a", "reader", "-r", "READ_EVENTS@default,READ_EVENTS@orders"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unchanged"), "{out}");
    everywhere(&nodes, "GetLastToken", &renewed, "orders", Ok(())).await;
    let (code, _, err) = ctl(&["delete-application", "-a", "reader"]);
    assert_eq!(code, 0, "{err}");
    everywhere(&nodes, "GetLastToken", &renewed, "default", denied()).await;

    // The context's admin may delete its context.
    assert_eq!(rest(&nodes[0], "DELETE", "/v1/context/orders", Some(&owner)).0, 200);
}

type Frames = tokio::sync::mpsc::Sender<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>>;

/// A raw HTTP/2 gRPC call to `address` whose body announces a 60 MB
/// message, sends 1 KiB of it and then stalls (it ends only when the
/// returned sender is dropped).
async fn stalled_call(
    address: &str,
    path: &str,
    token: Option<&str>,
) -> (Frames, impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>> + use<>) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    let (frames, receiver) = tokio::sync::mpsc::channel(1);
    let mut prefix = vec![0u8];
    prefix.extend((60u32 << 20).to_be_bytes());
    prefix.extend(vec![7u8; 1024]);
    frames.send(Ok(hyper::body::Frame::data(bytes::Bytes::from(prefix)))).await.unwrap();
    let mut request = hyper::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("axoniq-internaltoken", token);
    }
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    (frames, sender.send_request(request.body(body).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_call_without_the_token_is_refused_before_its_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ranvier_tests::start_cluster(dir.path(), 1, &[]).unwrap();
    let internal = nodes[0].internal_addr().unwrap().to_owned();
    let path = "/ranvier.cluster.ClusterService/Append";
    for token in [None, Some("not-the-cluster-secret")] {
        let (_frames, answer) = stalled_call(&internal, path, token).await;
        // Answered while the body is still open: nothing of it was waited for.
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), answer)
            .await
            .expect("the refusal waited for the body")
            .unwrap();
        let status = answer.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(status.as_deref(), Some("7"), "PERMISSION_DENIED with {token:?}: {:?}", answer.headers());
    }
    // With the token the call is taken, and its body read to the end first.
    let (frames, answer) = stalled_call(&internal, path, Some("cluster-secret")).await;
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), answer).await;
    assert!(early.is_err(), "a call with the token was answered before its body ended");
    drop(frames);
}

/// Every rpc of the client API, as `/package.Service/Method`, read from the
/// .proto files the node is built from (so a new rpc joins the table).
fn every_client_rpc() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/axon");
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let package = text.lines().find_map(|l| l.trim().strip_prefix("package ")).unwrap().trim_end_matches(';');
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_owned);
            } else if let (Some(rest), Some(service)) = (line.strip_prefix("rpc "), &service) {
                let method = rest.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap();
                paths.push(format!("/{package}.{service}/{method}"));
            }
        }
    }
    paths.sort();
    paths
}

/// Calls the rpc at `path` with one empty message in `context`: `Err` with
/// the code when access control refused it, `Ok` when it got past (whatever
/// the service then answered).
async fn raw_call(channel: &Channel, path: &str, token: Option<&str>, context: &str) -> Result<(), String> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(bytes::Bytes::new());
    if let Some(token) = token {
        request.metadata_mut().insert("axoniq-access-token", token.parse().unwrap());
    }
    let request = request.in_context(context);
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).unwrap();
    let call = grpc.server_streaming(request, path, ranvier_tests::raw::RawCodec);
    match tokio::time::timeout(std::time::Duration::from_secs(10), call).await.expect("no answer in 10 s") {
        Err(status) => match error_code(&status).as_deref() {
            Some(code @ ("AXONIQ-1000" | "AXONIQ-1001")) => Err(code.to_owned()),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}

/// Every REST route of the node as (method, path template), read from the
/// router's source (so a new route joins the table).
fn every_rest_route() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/api/http");
    let mut files = vec![];
    let mut dirs = vec![dir];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut routes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter_map(|l| l.trim().strip_prefix(".route(\"")) {
            let (path, handlers) = line.split_once('"').unwrap();
            for method in ["get", "post", "put", "patch", "delete"] {
                if handlers.contains(&format!("{method}(")) {
                    routes.push((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes.sort();
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_and_every_rest_route_is_refused_without_the_right_token_and_a_refusal_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let owned = settings(false);
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    let nodes = ranvier_tests::start_cluster(dir.path(), 1, &owned).unwrap();
    let node = &nodes[0];
    ranvier_tests::eventually(std::time::Duration::from_secs(30), "the node ready", || async {
        let ready = ranvier_tests::http_call_with(&node.http_addr, "GET", "/ready", &[("AxonIQ-Access-Token", ADMIN)]);
        ready.is_ok_and(|reply| reply.code == 200)
    })
    .await
    .unwrap();
    let server = format!("http://{}", node.http_addr);
    let register = |name: &str, roles: &str| {
        let args = ["register-application", "-a", name, "-r", roles, "-S", &server, "-t", ADMIN];
        let (code, out, err) = ranvier_tests::ranvierctl(&args).unwrap();
        assert_eq!(code, 0, "{out}{err}");
        out.trim().to_owned()
    };
    let user = register("user", "USE_CONTEXT@default");
    let reader = register("reader", "READ_EVENTS@default");
    let monitor = register("monitor", "MONITOR@*");
    let owner = register("owner", "CONTEXT_ADMIN@default");
    let channel = node.channel().await.unwrap();
    let rpcs = every_client_rpc();
    assert!(rpcs.len() >= 20, "{rpcs:?}");

    // Refused: no token, a wrong one, a token of another context, a
    // read-only token on anything but reads, a monitor's or a context
    // admin's token on client calls.
    let denied = |code: &str| Err(code.to_owned());
    for path in &rpcs {
        let read = path.starts_with("/io.axoniq.axonserver.grpc.event.EventStore/")
            && !path.ends_with("/AppendEvent")
            && !path.ends_with("/AppendSnapshot");
        let platform = path.starts_with("/io.axoniq.axonserver.grpc.control.PlatformService/");
        assert_eq!(raw_call(&channel, path, None, "default").await, denied("AXONIQ-1000"), "{path}");
        assert_eq!(raw_call(&channel, path, Some("guess"), "default").await, denied("AXONIQ-1001"), "{path}");
        assert_eq!(raw_call(&channel, path, Some(&user), "orders").await, denied("AXONIQ-1001"), "{path} elsewhere");
        assert_eq!(raw_call(&channel, path, Some(&monitor), "default").await, denied("AXONIQ-1001"), "{path}");
        assert_eq!(raw_call(&channel, path, Some(&owner), "default").await, denied("AXONIQ-1001"), "{path}");
        if !read && !platform {
            assert_eq!(raw_call(&channel, path, Some(&reader), "default").await, denied("AXONIQ-1001"), "{path}");
        }
    }
    let rest = |method: &str, path: &str, token: Option<&str>| {
        let headers: Vec<(&str, &str)> = token.map(|t| ("AxonIQ-Access-Token", t)).into_iter().collect();
        let reply = ranvier_tests::http_call_with(&node.http_addr, method, path, &headers).unwrap();
        // The console's pages send a refused browser to its sign-in page.
        let signin = reply.code == 303 && reply.header("location") == Some("/console/login");
        match (reply.code == 403 || signin, reply.header("AxonIQ-ErrorCode")) {
            (true, Some(code @ ("AXONIQ-1000" | "AXONIQ-1001"))) => Err(code.to_owned()),
            _ => Ok(()),
        }
    };
    let routes = every_rest_route();
    assert!(routes.len() >= 30, "{routes:?}");
    let fill = |template: &str| {
        let mut path = template.replace("{action}", "pause");
        for placeholder in ["{name}", "{group}", "{node}", "{component}", "{processor}"] {
            path = path.replace(placeholder, "nosuch");
        }
        assert!(!path.contains('{'), "a placeholder the table does not fill: {template}");
        path
    };
    for (method, template) in &routes {
        let path = fill(template);
        let open =
            ["/health", "/actuator/health", "/actuator/health/liveness", "/", "/console/login", "/console/logout"]
                .contains(&path.as_str());
        if open {
            assert_eq!(rest(method, &path, None), Ok(()), "{method} {path} is open");
            continue;
        }
        if path == "/console/events" {
            // The event browser shows events: reading them is what it needs.
            assert_eq!(rest(method, &path, None), denied("AXONIQ-1000"), "{method} {path}");
            assert_eq!(rest(method, &path, Some("guess")), denied("AXONIQ-1001"), "{method} {path}");
            assert_eq!(rest(method, &path, Some(&monitor)), denied("AXONIQ-1001"), "a monitor reads no events");
            assert_eq!(rest(method, &path, Some(&owner)), denied("AXONIQ-1001"), "a context admin reads no events");
            for token in [APP, &user, &reader] {
                assert_eq!(rest(method, &path, Some(token)), Ok(()), "{method} {path} with a reading token");
            }
            continue;
        }
        let admin_only =
            ["/v1/public/applications", "/v1/applications", "/v1/backup/"].iter().any(|p| path.starts_with(p));
        let monitored = method == "GET" && !admin_only;
        // What a context's admin may do in it (the default context when
        // the call names none): its processors, and deleting it.
        let owned = path.ends_with("/pause")
            || (method == "POST" && ["/console/contexts/delete", "/console/processors"].contains(&path.as_str()));
        assert_eq!(rest(method, &path, None), denied("AXONIQ-1000"), "{method} {path}");
        assert_eq!(rest(method, &path, Some("guess")), denied("AXONIQ-1001"), "{method} {path}");
        assert_eq!(rest(method, &path, Some(&user)), denied("AXONIQ-1001"), "{method} {path} with a client token");
        let by_static = rest(method, &path, Some(APP));
        assert_eq!(by_static.is_ok(), monitored, "{method} {path} with the static client token: {by_static:?}");
        let by_monitor = rest(method, &path, Some(&monitor));
        assert_eq!(by_monitor.is_ok(), monitored, "{method} {path} with a monitor's token: {by_monitor:?}");
        let by_owner = rest(method, &path, Some(&owner));
        assert_eq!(by_owner.is_ok(), owned, "{method} {path} with the default context's admin token: {by_owner:?}");
    }

    // Nothing changed: no event, the same contexts and applications.
    assert_eq!(last_token(&channel).await, -1, "a refused call wrote an event");
    let (_, listed, _) = ranvier_tests::ranvierctl(&["applications", "-S", &server, "-t", ADMIN]).unwrap();
    for name in ["user", "reader", "monitor", "owner"] {
        assert!(listed.contains(name), "{listed}");
    }
    let (_, contexts, _) = ranvier_tests::ranvierctl(&["contexts", "-S", &server, "-t", ADMIN]).unwrap();
    assert!(contexts.contains("default"), "{contexts}");

    // Allowed: every rpc with the administrators' token and with an
    // application's own context; reads with a reader's; every route with
    // the administrators' token.
    for path in &rpcs {
        assert_eq!(raw_call(&channel, path, Some(ADMIN), "default").await, Ok(()), "{path} as admin");
        assert_eq!(raw_call(&channel, path, Some(&user), "default").await, Ok(()), "{path} in its context");
    }
    for path in rpcs.iter().filter(|p| p.contains(".event.EventStore/Get") || p.contains("/ListEvents")) {
        assert_eq!(raw_call(&channel, path, Some(&reader), "default").await, Ok(()), "{path} read");
    }
    for (method, template) in &routes {
        let path = fill(template);
        assert_eq!(rest(method, &path, Some(ADMIN)), Ok(()), "{method} {path} as admin");
    }
}
