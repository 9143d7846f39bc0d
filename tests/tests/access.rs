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

/// What one call with `token` came to: `Ok` when it got past access control
/// (whatever the service then said), else the refusal's code.
async fn call(channel: &Channel, rpc: &str, token: Option<&str>) -> Result<(), String> {
    let result = match rpc {
        "GetPlatformServer" => PlatformServiceClient::new(channel.clone())
            .get_platform_server(with_token(ClientIdentification::default(), token, false))
            .await
            .map(|_| ()),
        "AppendEvent" => EventStoreClient::new(channel.clone())
            .append_event(with_token(tokio_stream::iter(vec![event("order-1", 0, 32)]), token, false))
            .await
            .map(|_| ()),
        "ListAggregateEvents" => {
            let request = GetAggregateEventsRequest { aggregate_id: "order-1".into(), ..Default::default() };
            match EventStoreClient::new(channel.clone()).list_aggregate_events(with_token(request, token, false)).await
            {
                Ok(mut stream) => stream.get_mut().message().await.map(|_| ()),
                Err(status) => Err(status),
            }
        }
        "GetLastToken" => EventStoreClient::new(channel.clone())
            .get_last_token(with_token(GetLastTokenRequest {}, token, true))
            .await
            .map(|_| ()),
        "ReadHighestSequenceNr" => {
            let request = ReadHighestSequenceNrRequest { aggregate_id: "order-1".into(), ..Default::default() };
            EventStoreClient::new(channel.clone())
                .read_highest_sequence_nr(with_token(request, token, false))
                .await
                .map(|_| ())
        }
        "Dispatch" => {
            let command = Command { message_identifier: "c-1".into(), name: "Ship".into(), ..Default::default() };
            CommandServiceClient::new(channel.clone()).dispatch(with_token(command, token, false)).await.map(|_| ())
        }
        "Query" => {
            let query = QueryRequest { message_identifier: "q-1".into(), query: "Find".into(), ..Default::default() };
            match QueryServiceClient::new(channel.clone()).query(with_token(query, token, false)).await {
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
