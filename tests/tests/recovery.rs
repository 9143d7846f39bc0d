//! Restarts over damaged files, as an operator would meet them: a torn tail
//! is cut and reported, a flipped byte in a closed segment stops the context
//! with the file and offset, a clean stop exits 0, and bad configuration
//! fails before any port is bound.

use std::path::PathBuf;

use ranvier_proto::event::{GetAggregateEventsRequest, GetLastTokenRequest};
use ranvier_tests::{Node, error_code, event};
use tokio_stream::StreamExt;

fn segment_files(dir: &std::path::Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("data/default"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == suffix))
        .collect();
    files.sort();
    files
}

async fn append_many(node: &Node, aggregate: &str, count: i64) {
    let mut client = node.event_store().await.unwrap();
    for seq in 0..count {
        client.append_event(tokio_stream::iter(vec![event(aggregate, seq, 300)])).await.unwrap();
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_reported_and_the_node_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]).unwrap();
    append_many(&node, "a", 10).await;
    node.kill9().unwrap();
    let active = segment_files(dir.path(), "events").pop().unwrap();
    let mut bytes = std::fs::read(&active).unwrap();
    let committed = bytes.len();
    // A frame header promising more bytes than follow: a write cut by the crash.
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]);
    std::fs::write(&active, &bytes).unwrap();

    let node = node.restart().unwrap();
    assert!(node.log().contains("cut an incomplete transaction"), "the cut is reported: {}", node.log());
    assert_eq!(std::fs::metadata(&active).unwrap().len(), committed as u64);
    let mut client = node.event_store().await.unwrap();
    assert_eq!(client.get_last_token(GetLastTokenRequest {}).await.unwrap().into_inner().token, 9);
    client.append_event(tokio_stream::iter(vec![event("a", 10, 5)])).await.unwrap();
}

// Multi-threaded so the dropped clients' connections close while the test
// thread blocks in `stop()`: a clean stop waits for open calls to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_closed_segment_stops_the_context_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ["axoniq.axonserver.event.segment-size=64KB", "ranvier.max-transaction-size=32KB"];
    let mut node = Node::start(dir.path(), &settings).unwrap();
    append_many(&node, "a", 400).await;
    let status = node.stop().unwrap();
    assert!(status.success(), "a clean stop exits 0: {status}");
    let closed = segment_files(dir.path(), "events");
    assert!(closed.len() > 2, "segments rolled: {closed:?}");
    let victim = &closed[0];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[5000] ^= 0x20;
    std::fs::write(victim, &bytes).unwrap();

    let node = Node::start(dir.path(), &settings).unwrap();
    let (code, body) = node.http_get("/ready").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(&victim.display().to_string()), "readiness names the file: {body}");
    assert!(body.contains("offset"), "{body}");
    let mut client = node.event_store().await.unwrap();
    let refused = client
        .list_aggregate_events(GetAggregateEventsRequest { aggregate_id: "a".into(), ..Default::default() })
        .await
        .expect_err("a stopped context serves nothing");
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-6000"));
    assert!(refused.message().contains("corrupt"), "{}", refused.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_keeps_everything_and_restarts_where_it_left_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]).unwrap();
    append_many(&node, "a", 20).await;
    assert!(node.stop().unwrap().success());
    let node = Node::start(dir.path(), &[]).unwrap();
    let mut client = node.event_store().await.unwrap();
    let request = GetAggregateEventsRequest { aggregate_id: "a".into(), ..Default::default() };
    let events: Vec<_> = client.list_aggregate_events(request).await.unwrap().into_inner().collect().await;
    assert_eq!(events.len(), 20);
    client.append_event(tokio_stream::iter(vec![event("a", 20, 1)])).await.unwrap();
}

#[test]
fn a_malformed_property_fails_start_up_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("axonserver.properties"),
        "# node\naxoniq.axonserver.name=n1\naxoniq.axonserver.port=eighty\n",
    )
    .unwrap();
    let output = ranvier_tests::node_command().unwrap().current_dir(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("axoniq.axonserver.port"), "{stderr}");
    assert!(stderr.contains("axonserver.properties:3"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created before the settings were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_tailing_streams_and_exits_cleanly() {
    use ranvier_proto::event::GetEventsRequest;
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), &[]).unwrap();
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(GetEventsRequest { tracking_token: 0, number_of_permits: 10, ..Default::default() }).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    // The tracker is tailing an empty store when the node is told to stop.
    let stopping = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let status = node.stop().unwrap();
        (status, started.elapsed())
    });
    let end = stream.next().await;
    let (status, took) = stopping.await.unwrap();
    assert!(status.success(), "{status}");
    assert!(took < std::time::Duration::from_secs(5), "stopping took {took:?}: open streams held it up");
    // The client is told to reconnect, not that its stream completed.
    match end {
        Some(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    drop(sender);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_is_not_a_context_name_is_left_alone_and_stored_contexts_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // A volume's root as a file system leaves it, and a context stored
    // earlier that the configuration no longer names.
    std::fs::create_dir_all(dir.path().join("data/lost+found")).unwrap();
    std::fs::create_dir_all(dir.path().join("data/orders")).unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let (code, body) = node.http_get("/ready").unwrap();
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut contexts: Vec<&String> = ready["contexts"].as_object().unwrap().keys().collect();
    contexts.sort();
    assert_eq!(contexts, ["default", "orders"], "{body}");
    let untouched = std::fs::read_dir(dir.path().join("data/lost+found")).unwrap().count();
    assert_eq!(untouched, 0, "nothing was written into lost+found");
    assert!(node.log().contains("not a context name: folder ignored"), "{}", node.log());
}
