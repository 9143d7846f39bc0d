//! Kill -9 during concurrent appends: after a restart every confirmed
//! transaction is there, whole; no transaction is there in part; tokens run
//! without gaps or duplicates.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ranvier_proto::event::{GetEventsRequest, GetLastTokenRequest};
use ranvier_tests::{Node, event};
use tokio_stream::StreamExt;

const WRITERS: usize = 16;
const EVENTS_PER_TRANSACTION: i64 = 3;
const CONFIRMED_BEFORE_KILL: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_appends_keeps_every_confirmed_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments so the kill can also land during a roll-over.
    let mut node =
        Node::start(dir.path(), &["axoniq.axonserver.event.segment-size=64KB", "ranvier.max-transaction-size=32KB"])
            .unwrap();
    let confirmed: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let client = node.event_store().await.unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let mut client = client.clone();
        let confirmed = confirmed.clone();
        writers.spawn(async move {
            let aggregate = format!("writer-{writer}");
            for tx in 0.. {
                let first = tx * EVENTS_PER_TRANSACTION;
                let events: Vec<_> =
                    (first..first + EVENTS_PER_TRANSACTION).map(|s| event(&aggregate, s, 200)).collect();
                if client.append_event(tokio_stream::iter(events)).await.is_err() {
                    return;
                }
                confirmed.lock().unwrap().push((aggregate.clone(), first));
            }
        });
    }
    tracing_wait(|| confirmed.lock().unwrap().len() >= CONFIRMED_BEFORE_KILL).await;
    node.kill9().unwrap();
    while writers.join_next().await.is_some() {}
    let confirmed = confirmed.lock().unwrap().clone();

    let node = node.restart().unwrap();
    let mut client = node.event_store().await.unwrap();
    let last = client.get_last_token(GetLastTokenRequest {}).await.unwrap().into_inner().token;
    assert!(last + 1 >= confirmed.len() as i64 * EVENTS_PER_TRANSACTION);

    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender
        .send(GetEventsRequest { tracking_token: 0, number_of_permits: last + 1, ..Default::default() })
        .await
        .unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let mut ids = HashSet::new();
    let mut by_aggregate: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for expected in 0..=last {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(item.token, expected, "tokens run without gaps");
        let stored = item.decode_event().unwrap();
        assert!(ids.insert(stored.message_identifier.clone()), "duplicate event {}", stored.message_identifier);
        by_aggregate.entry(stored.aggregate_identifier).or_default().push(stored.aggregate_sequence_number);
    }
    for (aggregate, seqs) in &by_aggregate {
        let expected: Vec<i64> = (0..seqs.len() as i64).collect();
        assert_eq!(seqs, &expected, "{aggregate}: sequence numbers in order without gaps");
        assert_eq!(seqs.len() as i64 % EVENTS_PER_TRANSACTION, 0, "{aggregate}: a transaction is stored in part");
    }
    for (aggregate, first) in &confirmed {
        let stored = by_aggregate.get(aggregate).map_or(0, Vec::len) as i64;
        assert!(stored >= first + EVENTS_PER_TRANSACTION, "{aggregate}: confirmed transaction at {first} lost");
    }
    // The store takes new writes where it left off.
    let next = by_aggregate.get("writer-0").map_or(0, Vec::len) as i64;
    client.append_event(tokio_stream::iter(vec![event("writer-0", next, 10)])).await.unwrap();
}

/// Waits for a condition, polling; fails after a minute.
async fn tracing_wait(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
