//! The client API of a real node process, through a real tonic client over
//! loopback: every EventStore RPC and the platform service, with the error
//! codes Axon clients depend on.

use std::time::Duration;

use ranvier_proto::control::platform_inbound_instruction::Request as Inbound;
use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;
use ranvier_proto::control::platform_service_client::PlatformServiceClient;
use ranvier_proto::control::{ClientIdentification, Heartbeat, PlatformInboundInstruction};
use ranvier_proto::event::{
    Event, GetAggregateEventsRequest, GetAggregateSnapshotsRequest, GetEventsRequest, GetFirstTokenRequest,
    GetLastTokenRequest, GetTokenAtRequest, PayloadDescription, ReadHighestSequenceNrRequest,
};
use ranvier_tests::{Node, error_code, event, in_context};
use tokio_stream::StreamExt;
use tonic::Code;

async fn append(node: &Node, context: &str, events: Vec<Event>) -> Result<(), tonic::Status> {
    let mut client = node.event_store().await.map_err(|e| tonic::Status::unknown(e.to_string()))?;
    client.append_event(in_context(tokio_stream::iter(events), context)).await.map(|_| ())
}

async fn aggregate(node: &Node, context: &str, id: &str, from: i64, snapshots: bool) -> Vec<Event> {
    let mut client = node.event_store().await.unwrap();
    let request = GetAggregateEventsRequest {
        aggregate_id: id.into(),
        initial_sequence: from,
        allow_snapshots: snapshots,
        ..Default::default()
    };
    let stream = client.list_aggregate_events(in_context(request, context)).await.unwrap().into_inner();
    stream.map(|r| r.unwrap()).collect().await
}

async fn last_token(node: &Node, context: &str) -> i64 {
    let mut client = node.event_store().await.unwrap();
    client.get_last_token(in_context(GetLastTokenRequest {}, context)).await.unwrap().into_inner().token
}

fn start() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["axoniq.axonserver.autocluster.contexts=orders"]).unwrap();
    (dir, node)
}

#[tokio::test]
async fn platform_server_names_this_node_and_the_stream_acks_instructions() {
    let (_dir, node) = start();
    let mut platform = PlatformServiceClient::new(node.channel().await.unwrap());
    let identification =
        ClientIdentification { client_id: "c1".into(), component_name: "test".into(), ..Default::default() };
    let info = platform.get_platform_server(identification.clone()).await.unwrap().into_inner();
    let primary = info.primary.unwrap();
    assert_eq!(primary.node_name, "test-node");
    assert_eq!(primary.host_name, "localhost");
    assert_eq!(primary.grpc_port.to_string(), node.client_addr.rsplit(':').next().unwrap());
    assert!(info.same_connection);

    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies =
        platform.open_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    sender
        .send(PlatformInboundInstruction {
            instruction_id: "reg-1".into(),
            request: Some(Inbound::Register(identification)),
        })
        .await
        .unwrap();
    let Some(Outbound::Ack(ack)) = replies.next().await.unwrap().unwrap().request else { panic!("expected an ack") };
    assert_eq!(ack.instruction_id, "reg-1");
    assert!(ack.success);
    // Heartbeats are off by default: Axon answers them as unsupported.
    sender
        .send(PlatformInboundInstruction {
            instruction_id: "hb-1".into(),
            request: Some(Inbound::Heartbeat(Heartbeat {})),
        })
        .await
        .unwrap();
    let Some(Outbound::Ack(ack)) = replies.next().await.unwrap().unwrap().request else { panic!("expected an ack") };
    assert_eq!(ack.instruction_id, "hb-1");
    assert!(!ack.success);
    assert_eq!(ack.error.unwrap().error_code, "AXONIQ-1002");

    // A node that stops tells its clients to reconnect before it goes.
    let stopped = std::process::Command::new("kill").args(["-TERM", &node.pid().to_string()]).status().unwrap();
    assert!(stopped.success());
    let reconnect = tokio::time::timeout(std::time::Duration::from_secs(10), replies.next()).await.unwrap();
    let request = reconnect.unwrap().unwrap().request;
    assert!(matches!(request, Some(Outbound::RequestReconnect(_))), "{request:?}");
}

#[tokio::test]
async fn appended_events_read_back_by_aggregate_and_by_token() {
    let (_dir, node) = start();
    let mut client = node.event_store().await.unwrap();
    assert_eq!(last_token(&node, "default").await, -1, "an empty store has last token -1");
    let first = client.get_first_token(GetFirstTokenRequest {}).await.unwrap().into_inner().token;
    assert_eq!(first, 0);

    let events: Vec<Event> = (0..5).map(|s| event("order-1", s, 100)).collect();
    append(&node, "default", events.clone()).await.unwrap();
    append(&node, "default", vec![event("order-2", 0, 10), event("order-1", 5, 10)]).await.unwrap();

    let read = aggregate(&node, "default", "order-1", 0, false).await;
    assert_eq!(read.len(), 6);
    assert_eq!(&read[..5], &events[..]);
    assert!(read.iter().all(|e| !e.snapshot));
    assert_eq!(aggregate(&node, "default", "order-1", 3, false).await.len(), 3);
    assert!(aggregate(&node, "default", "nobody", 0, false).await.is_empty());

    let highest = client
        .read_highest_sequence_nr(ReadHighestSequenceNrRequest { aggregate_id: "order-1".into(), from_sequence_nr: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(highest.to_sequence_nr, 5);
    let missing = client
        .read_highest_sequence_nr(ReadHighestSequenceNrRequest { aggregate_id: "nobody".into(), from_sequence_nr: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.to_sequence_nr, -1);
    assert_eq!(last_token(&node, "default").await, 6);
}

#[tokio::test]
async fn a_sequence_conflict_is_axoniq_2000_and_stores_nothing() {
    let (_dir, node) = start();
    append(&node, "default", vec![event("a", 0, 10), event("a", 1, 10)]).await.unwrap();
    let conflict = append(&node, "default", vec![event("b", 0, 10), event("a", 1, 10)]).await.unwrap_err();
    assert_eq!(conflict.code(), Code::OutOfRange);
    assert_eq!(error_code(&conflict).as_deref(), Some("AXONIQ-2000"));
    assert!(conflict.message().contains("expected 2"), "{}", conflict.message());
    assert_eq!(last_token(&node, "default").await, 1, "the refused transaction left nothing behind");
    assert!(aggregate(&node, "default", "b", 0, false).await.is_empty());

    // Two writers racing for the same sequence number: exactly one wins.
    let client = node.event_store().await.unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut client = client.clone();
        racers.spawn(async move { client.append_event(tokio_stream::iter(vec![event("a", 2, i)])).await.map(|_| ()) });
    }
    let results = racers.join_all().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(error_code(refused).as_deref(), Some("AXONIQ-2000"));
    }
}

#[tokio::test]
async fn list_events_sends_no_more_than_the_permits_and_then_tails() {
    let (_dir, node) = start();
    let events: Vec<Event> = (0..20).map(|s| event("t", s, 20)).collect();
    append(&node, "default", events).await.unwrap();

    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let first =
        GetEventsRequest { tracking_token: 3, number_of_permits: 5, client_id: "c".into(), ..Default::default() };
    sender.send(first.clone()).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(stream.next().await.unwrap().unwrap().token);
    }
    assert_eq!(tokens, vec![3, 4, 5, 6, 7], "the first request's token is the first delivered");
    // With the permits used up, nothing more may arrive.
    let extra = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(extra.is_err(), "an event was sent beyond the granted permits: {extra:?}");

    // dendrite re-sends its first request to add permits: the token is ignored.
    sender.send(GetEventsRequest { number_of_permits: 100, ..first }).await.unwrap();
    for expected in 8..20 {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(item.token, expected);
        assert_eq!(item.decode_event().unwrap().aggregate_sequence_number, expected);
    }
    // Live tailing: an append after the reader caught up is delivered.
    append(&node, "default", vec![event("t", 20, 5)]).await.unwrap();
    let live = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(live.token, 20);
    assert_eq!(live.decode_event().unwrap(), event("t", 20, 5));
}

#[tokio::test]
async fn blacklisted_payload_types_are_skipped_without_using_permits() {
    let (_dir, node) = start();
    let mut noisy = event("n", 0, 5);
    noisy.payload.as_mut().unwrap().r#type = "Noise".into();
    let mut events = vec![noisy];
    events.push(event("n", 1, 5));
    append(&node, "default", events).await.unwrap();
    let mut client = node.event_store().await.unwrap();
    let request = GetEventsRequest {
        tracking_token: 0,
        number_of_permits: 1,
        blacklist: vec![PayloadDescription { r#type: "Noise".into(), revision: "1".into() }],
        ..Default::default()
    };
    // The request stream stays open: a half-close ends the tracker.
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(request).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.token, 1, "the blacklisted event at token 0 was skipped");
}

#[tokio::test]
async fn an_oversized_blacklist_is_refused() {
    let (_dir, node) = start();
    let mut client = node.event_store().await.unwrap();
    let blacklist =
        (0..1025).map(|i| PayloadDescription { r#type: format!("T{i}"), revision: String::new() }).collect();
    let request = GetEventsRequest { number_of_permits: 1, blacklist, ..Default::default() };
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(request).await.unwrap();
    let refused = client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-2311"));
}

#[tokio::test]
async fn snapshots_are_checked_listed_and_served_before_later_events() {
    let (_dir, node) = start();
    append(&node, "default", (0..10).map(|s| event("s", s, 10)).collect()).await.unwrap();
    let mut client = node.event_store().await.unwrap();
    let mut too_far = event("s", 10, 50);
    too_far.aggregate_type = "Order".into();
    let refused = client.append_snapshot(too_far).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-2000"));
    for seq in [3, 7] {
        let mut snapshot = event("s", seq, 50);
        snapshot.message_identifier = format!("snap-{seq}");
        client.append_snapshot(snapshot).await.unwrap();
    }

    let read = aggregate(&node, "default", "s", 0, true).await;
    assert!(read[0].snapshot, "the latest snapshot comes first");
    assert_eq!(read[0].aggregate_sequence_number, 7);
    assert_eq!(read[0].message_identifier, "snap-7");
    let rest: Vec<i64> = read[1..].iter().map(|e| e.aggregate_sequence_number).collect();
    assert_eq!(rest, vec![8, 9]);

    let request = GetAggregateSnapshotsRequest {
        aggregate_id: "s".into(),
        initial_sequence: 0,
        max_sequence: 100,
        max_results: 0,
    };
    let listed: Vec<Event> =
        client.list_aggregate_snapshots(request).await.unwrap().into_inner().map(|r| r.unwrap()).collect().await;
    let seqs: Vec<i64> = listed.iter().map(|e| e.aggregate_sequence_number).collect();
    assert_eq!(seqs, vec![7, 3], "highest sequence first");
    let request = GetAggregateSnapshotsRequest {
        aggregate_id: "s".into(),
        initial_sequence: 0,
        max_sequence: 100,
        max_results: 1,
    };
    let limited: Vec<Event> =
        client.list_aggregate_snapshots(request).await.unwrap().into_inner().map(|r| r.unwrap()).collect().await;
    assert_eq!(limited.len(), 1);
    // Snapshots do not take event tokens.
    assert_eq!(last_token(&node, "default").await, 9);
}

#[tokio::test]
async fn contexts_are_separate_stores_and_unknown_ones_are_refused() {
    let (_dir, node) = start();
    append(&node, "orders", vec![event("o", 0, 10), event("o", 1, 10)]).await.unwrap();
    assert_eq!(last_token(&node, "orders").await, 1);
    assert_eq!(last_token(&node, "default").await, -1);
    assert!(aggregate(&node, "default", "o", 0, false).await.is_empty());
    assert_eq!(aggregate(&node, "orders", "o", 0, false).await.len(), 2);

    let mut client = node.event_store().await.unwrap();
    let unknown = client.get_last_token(in_context(GetLastTokenRequest {}, "nope")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(error_code(&unknown).as_deref(), Some("AXONIQ-6000"));
}

#[tokio::test]
async fn token_at_finds_the_first_event_at_or_after_an_instant() {
    let (_dir, node) = start();
    append(&node, "default", (0..10).map(|s| event("ts", s, 10)).collect()).await.unwrap();
    let mut client = node.event_store().await.unwrap();
    let at = |instant| GetTokenAtRequest { instant };
    assert_eq!(client.get_token_at(at(1_700_000_000_004)).await.unwrap().into_inner().token, 4);
    assert_eq!(client.get_token_at(at(0)).await.unwrap().into_inner().token, 0);
    assert_eq!(client.get_token_at(at(1_800_000_000_000)).await.unwrap().into_inner().token, 10);
}

#[tokio::test]
async fn a_transaction_over_the_event_limit_is_axoniq_2002_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["axoniq.axonserver.max-events-per-transaction=3"]).unwrap();
    let refused = append(&node, "default", (0..4).map(|s| event("big", s, 1)).collect()).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-2002"));
    assert_eq!(last_token(&node, "default").await, -1);
    append(&node, "default", (0..3).map(|s| event("big", s, 1)).collect()).await.unwrap();
}

#[tokio::test]
async fn an_abandoned_transaction_stores_nothing() {
    let (_dir, node) = start();
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Event>(4);
    let call =
        tokio::spawn(async move { client.append_event(tokio_stream::wrappers::ReceiverStream::new(receiver)).await });
    sender.send(event("gone", 0, 10)).await.unwrap();
    sender.send(event("gone", 1, 10)).await.unwrap();
    // The client goes away before half-closing: cancel the call.
    call.abort();
    let _ = call.await;
    drop(sender);
    // The node still serves, and nothing of the transaction is visible.
    append(&node, "default", vec![event("after", 0, 1)]).await.unwrap();
    assert_eq!(last_token(&node, "default").await, 0);
    assert!(aggregate(&node, "default", "gone", 0, false).await.is_empty());
}

#[tokio::test]
async fn malformed_bytes_get_an_error_not_a_crash() {
    let (_dir, node) = start();
    let channel = node.channel().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/io.axoniq.axonserver.grpc.event.EventStore/AppendEvent");
    let garbage = vec![bytes::Bytes::from_static(&[0x12, 0xff, 0xff, 0xff, 0x0f, 0x01])];
    let result = grpc
        .client_streaming(tonic::Request::new(tokio_stream::iter(garbage)), path, ranvier_tests::raw::RawCodec)
        .await;
    let status = result.expect_err("garbage must be refused");
    assert!(error_code(&status).is_some(), "every error carries AxonIQ-ErrorCode: {status:?}");
    append(&node, "default", vec![event("ok", 0, 1)]).await.unwrap();
    assert_eq!(last_token(&node, "default").await, 0);

    // A unary request that does not decode fails before any handler runs.
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/io.axoniq.axonserver.grpc.event.EventStore/GetTokenAt");
    let bad = bytes::Bytes::from_static(&[0x08, 0xff, 0xff]);
    let status = grpc.unary(tonic::Request::new(bad), path, ranvier_tests::raw::RawCodec).await.unwrap_err();
    assert!(error_code(&status).is_some(), "{status:?}");

    // A service this node does not serve (Axon's gRPC admin API).
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/io.axoniq.axonserver.grpc.admin.ContextAdminService/GetContexts",
    );
    let status =
        grpc.unary(tonic::Request::new(bytes::Bytes::new()), path, ranvier_tests::raw::RawCodec).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(error_code(&status).as_deref(), Some("AXONIQ-1002"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_never_ends_is_cut_off_at_its_deadline_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["ranvier.transaction-timeout=500"]).unwrap();
    let mut client = node.event_store().await.unwrap();

    // Never idle (an event every 50 ms), never finished.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let trickle = tokio::spawn(async move {
        for seq in 0.. {
            if sender.send(event("slow-1", seq, 16)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.append_event(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
    .await
    .expect("the transaction was never cut off");
    let status = answer.unwrap_err();
    assert!(status.message().contains("ranvier.transaction-timeout"), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(450), "cut off after {:?}", started.elapsed());
    trickle.abort();

    let last = client.get_last_token(ranvier_proto::event::GetLastTokenRequest {}).await.unwrap().into_inner();
    assert_eq!(last.token, -1, "nothing of the cut-off transaction was stored");
    client.append_event(tokio_stream::iter(vec![event("quick-1", 0, 16)])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_taking_its_stream_is_cut_off_and_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["ranvier.response-send-timeout=1s"]).unwrap();
    // 16 MiB of events: more than the connection's flow-control windows
    // and the node's stream buffer hold.
    let total = 4_000i64;
    for first in (0..total).step_by(500) {
        let events: Vec<Event> = (first..first + 500).map(|seq| event("big", seq, 4096)).collect();
        append(&node, "default", events).await.unwrap();
    }
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(GetEventsRequest { tracking_token: 0, number_of_permits: 1_000_000, ..Default::default() })
        .await
        .unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    // The client takes nothing until the node has given up on it.
    ranvier_tests::eventually(Duration::from_secs(20), "the node cuts off the reader", || async {
        node.log().contains("stopped reading its response stream")
    })
    .await
    .unwrap();
    let mut received = 0i64;
    let error = loop {
        match stream.next().await {
            Some(Ok(item)) => {
                assert_eq!(item.token, received, "what was sent arrives in order");
                received += 1;
            }
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why after {received} events"),
        }
    };
    assert_eq!(error_code(&error).as_deref(), Some("AXONIQ-6001"), "{error:?}");
    assert!(received < total, "the whole store was delivered: the reader was never cut off");
    // Another reader is served as usual.
    let tokens: Vec<i64> = ranvier_tests::read_events(&node, 3).await.unwrap().iter().map(|e| e.token).collect();
    assert_eq!(tokens, vec![0, 1, 2]);
    drop(sender);
}
