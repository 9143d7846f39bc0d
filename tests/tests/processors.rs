//! Event processors against real node processes, with real gRPC clients
//! standing in for an Axon application's platform connection: the
//! processors clients report are listed over REST (cluster-wide), and
//! pause, start, split and merge are relayed to the clients that run the
//! processor, answered with their acknowledgement or error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;
use ranvier_tests::processors::App;
use ranvier_tests::{HttpReply, Node};
use ranvier_wire::admin::{ProcessorInstance, ProcessorInstructed};

/// PATCHes a processor action on `node` off the test's runtime threads (the
/// call waits for the clients' acks, which this runtime sends).
fn patch(node: &Node, action: &str) -> tokio::task::JoinHandle<HttpReply> {
    let address = node.http_addr.clone();
    let path = format!("/v1/components/shop/processors/orders/{action}?context=default&tokenStoreIdentifier=store-1");
    tokio::task::spawn_blocking(move || ranvier_tests::http_call(&address, "PATCH", &path).unwrap())
}

fn listing(node: &Node, path: &str) -> Vec<ProcessorInstance> {
    let (code, body) = node.http_get(path).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn instructed(reply: &HttpReply) -> Vec<(String, String, Option<i32>)> {
    assert_eq!(reply.code, 200, "{reply:?}");
    let done: ProcessorInstructed = serde_json::from_str(&reply.body).unwrap();
    done.instructed.into_iter().map(|i| (i.client_id, i.instruction, i.segment)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processors_are_listed_and_pause_split_and_merge_reach_the_clients_that_run_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let channel = node.channel().await.unwrap();
    let mut first = App::connect(&channel, "app-1", &[(0, 2)]).await;
    let mut second = App::connect(&channel, "app-2", &[(1, 2)]).await;

    // Both instances are listed, with what they reported.
    let all = listing(&node, "/v1/processors?context=default");
    assert_eq!(all.iter().map(|i| i.client_id.as_str()).collect::<Vec<_>>(), ["app-1", "app-2"]);
    assert!(all.iter().all(|i| i.processor == "orders" && i.component == "shop" && i.running && i.streaming));
    assert_eq!(all[1].segments[0].segment_id, 1);
    assert_eq!(all[1].segments[0].one_part_of, 2);
    assert_eq!(all[1].segments[0].token_position, 41);
    assert_eq!(listing(&node, "/v1/components/shop/processors?context=default").len(), 2);
    assert!(listing(&node, "/v1/components/billing/processors?context=default").is_empty());
    assert!(listing(&node, "/v1/processors?context=other").is_empty());

    // Pause reaches every instance, and is answered once both acked.
    let call = patch(&node, "pause");
    for app in [&mut first, &mut second] {
        let instruction = app.next().await;
        match &instruction.request {
            Some(Outbound::PauseEventProcessor(p)) => assert_eq!(p.processor_name, "orders"),
            other => panic!("expected pause, got {other:?}"),
        }
        app.answer(&instruction, None).await;
    }
    let reply = call.await.unwrap();
    let mut paused = instructed(&reply);
    paused.sort();
    assert_eq!(paused, [("app-1".into(), "pause".into(), None), ("app-2".into(), "pause".into(), None)]);

    // Split: the largest segment (both are halves: the lower id, 0).
    let call = patch(&node, "split");
    let instruction = first.next().await;
    match &instruction.request {
        Some(Outbound::SplitEventProcessorSegment(s)) => {
            assert_eq!((s.processor_name.as_str(), s.segment_identifier), ("orders", 0))
        }
        other => panic!("expected split, got {other:?}"),
    }
    first.answer(&instruction, None).await;
    assert_eq!(instructed(&call.await.unwrap()), [("app-1".into(), "split".into(), Some(0))]);

    // Merge of halves held by two clients: app-2 releases segment 1 first,
    // then app-1 is asked to merge 0; its refusal is the answer.
    let call = patch(&node, "merge");
    let release = second.next().await;
    match &release.request {
        Some(Outbound::ReleaseSegment(s)) => assert_eq!(s.segment_identifier, 1),
        other => panic!("expected release, got {other:?}"),
    }
    second.answer(&release, None).await;
    let merge = first.next().await;
    match &merge.request {
        Some(Outbound::MergeEventProcessorSegment(s)) => assert_eq!(s.segment_identifier, 0),
        other => panic!("expected merge, got {other:?}"),
    }
    first.answer(&merge, Some(("APP-0042", "segment 1 is still claimed"))).await;
    let reply = call.await.unwrap();
    assert_eq!(reply.code, 409, "{reply:?}");
    assert_eq!(reply.header("AxonIQ-ErrorCode"), Some("APP-0042"));
    assert!(reply.body.contains("segment 1 is still claimed"), "{}", reply.body);

    // Unknown processors and actions are refused plainly.
    let reply = node.http("PATCH", "/v1/components/shop/processors/invoices/pause?context=default").unwrap();
    assert_eq!((reply.code, reply.header("AxonIQ-ErrorCode")), (404, Some("AXONIQ-2800")), "{reply:?}");
    let reply = node.http("PATCH", "/v1/components/shop/processors/orders/reset?context=default").unwrap();
    assert_eq!(reply.code, 400, "{reply:?}");

    // A client that goes away with an instruction unanswered fails it at
    // once (not after the ack timeout), and leaves the listing.
    let call = patch(&node, "start");
    let (a, b) = (first.next().await, second.next().await);
    assert!(matches!(a.request, Some(Outbound::StartEventProcessor(_))), "{a:?}");
    assert!(matches!(b.request, Some(Outbound::StartEventProcessor(_))), "{b:?}");
    let left = std::time::Instant::now();
    drop(first);
    second.answer(&b, None).await;
    let reply = call.await.unwrap();
    assert_eq!(reply.code, 504, "{reply:?}");
    assert!(reply.body.contains("app-1"), "{}", reply.body);
    assert!(left.elapsed() < Duration::from_secs(5), "the failure waited {:?}", left.elapsed());
    ranvier_tests::eventually(Duration::from_secs(10), "app-1 leaves the listing", || async {
        listing(&node, "/v1/processors?context=default").len() == 1
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_on_another_node_is_listed_and_instructed_through_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    let mut far = App::connect(&nodes[2].channel().await.unwrap(), "far-app", &[(0, 1)]).await;

    let all = listing(&nodes[0], "/v1/processors?context=default");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].client_id.as_str(), all[0].node.as_str()), ("far-app", nodes[2].name()));

    let call = patch(&nodes[0], "split");
    let instruction = far.next().await;
    assert!(matches!(&instruction.request, Some(Outbound::SplitEventProcessorSegment(s)) if s.segment_identifier == 0));
    far.answer(&instruction, None).await;
    let reply = call.await.unwrap();
    let done: ProcessorInstructed = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(done.instructed[0].node, nodes[2].name());
    assert_eq!(instructed(&reply), [("far-app".into(), "split".into(), Some(0))]);

    // Its refusal travels back through the other node.
    let call = patch(&nodes[1], "merge");
    let reply = call.await.unwrap();
    assert_eq!(reply.code, 400, "one segment cannot merge: {reply:?}");
    let call = patch(&nodes[1], "pause");
    let instruction = far.next().await;
    far.answer(&instruction, Some(("APP-7", "not now"))).await;
    let reply = call.await.unwrap();
    assert_eq!((reply.code, reply.header("AxonIQ-ErrorCode")), (409, Some("APP-7")), "{reply:?}");
}
