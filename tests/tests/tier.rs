//! The SECONDARY tier with real node processes: once a group has a
//! secondary, its primaries retire old segments (the secondary keeps
//! everything), clients of a primary still read the whole history, and
//! while no secondary answers, reads of retired events fail clearly while
//! recent ones go on; a secondary made a primary again serves them.

use std::time::Duration;

use prost::Message;
use ranvier_proto::event::{Event, GetAggregateEventsRequest, GetEventsRequest};
use ranvier_tests::{Node, error_code, event, eventually, ranvierctl, start_cluster, wait_voters};
use tokio_stream::StreamExt;

const EVENTS: i64 = 400;
const AGGREGATES: i64 = 8;

/// Files of `suffix` in `node`'s store of `default`, by first token.
fn files(node: &Node, suffix: &str) -> Vec<u64> {
    let dir = node.dir.join("data").join("default");
    let mut out: Vec<u64> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(&format!(".{suffix}"))?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// `count` events from `from` through `node`, or the first error.
async fn read_events(node: &Node, from: i64, count: i64) -> Result<Vec<(i64, Event)>, tonic::Status> {
    let mut client = node.event_store().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let request = GetEventsRequest { tracking_token: from, number_of_permits: count, ..Default::default() };
    sender.send(request).await.map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut stream = client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?.into_inner();
    let mut out = Vec::new();
    while out.len() < count as usize {
        let Some(next) = stream.next().await else { break };
        let next = next?;
        let decoded = Event::decode(next.event).map_err(|e| tonic::Status::internal(e.to_string()))?;
        out.push((next.token, decoded));
    }
    Ok(out)
}

async fn aggregate(node: &Node, id: &str) -> Result<Vec<i64>, tonic::Status> {
    let mut client = node.event_store().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = GetAggregateEventsRequest { aggregate_id: id.into(), ..Default::default() };
    let mut stream = client.list_aggregate_events(request).await?.into_inner();
    let mut seqs = Vec::new();
    while let Some(next) = stream.next().await {
        seqs.push(next?.aggregate_sequence_number);
    }
    Ok(seqs)
}

fn written(token: i64) -> (String, i64) {
    (format!("order-{}", token % AGGREGATES), token / AGGREGATES)
}

async fn fill(node: &Node) {
    let mut client = node.event_store().await.unwrap();
    for token in 0..EVENTS {
        let (id, seq) = written(token);
        client.append_event(tokio_stream::iter(vec![event(&id, seq, 900)])).await.unwrap();
    }
}

fn assert_whole(read: &[(i64, Event)], on: &str) {
    assert_eq!(read.len(), EVENTS as usize, "{on}: events read");
    for (i, (token, event)) in read.iter().enumerate() {
        let (id, seq) = written(i as i64);
        assert_eq!(
            (*token, event.aggregate_identifier.as_str(), event.aggregate_sequence_number),
            (i as i64, id.as_str(), seq),
            "{on}"
        );
    }
}

fn retired_on_primaries(nodes: &[Node]) -> bool {
    nodes[..2].iter().all(|n| files(n, "retired").len() >= 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primaries_retire_old_segments_to_a_secondary_and_still_serve_the_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "axoniq.axonserver.event.segment-size=64KB",
        "ranvier.max-transaction-size=32KB",
        "ranvier.tier.check-interval=200ms",
    ];
    let mut nodes = start_cluster(dir.path(), 3, &settings).unwrap();
    wait_voters(&nodes[0], "default", 3).await.unwrap();
    let server = format!("http://{}", nodes[0].http_addr);
    let (code, out, err) =
        ranvierctl(&["change-role", "-S", &server, "-g", "default", "-n", "node-3", "-r", "SECONDARY"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    wait_voters(&nodes[0], "default", 2).await.unwrap();
    let leader = ranvier_tests::leader_of(&nodes[0], "default").unwrap();
    let leader = nodes.iter().position(|n| n.name() == leader).unwrap();
    fill(&nodes[leader]).await;

    // The events are 2023's: older than the 7 days kept, so every closed
    // segment the secondary holds retires on both primaries.
    eventually(Duration::from_secs(30), "both primaries to retire segments", || async { retired_on_primaries(&nodes) })
        .await
        .unwrap();
    let on_secondary = files(&nodes[2], "events");
    assert!(files(&nodes[2], "retired").is_empty(), "the secondary keeps everything");
    for primary in &nodes[..2] {
        let (retired, kept) = (files(primary, "retired"), files(primary, "events"));
        assert!(retired.iter().all(|first| !kept.contains(first)), "{}: a retired data file is gone", primary.name());
        assert!(files(primary, "index").len() >= retired.len(), "{}: indexes stay", primary.name());
        let mut all = [retired, kept].concat();
        all.sort_unstable();
        assert_eq!(all, on_secondary, "{}: the same segments as the secondary", primary.name());
    }

    // Clients of either primary read the whole history, in order.
    for primary in &nodes[..2] {
        assert_whole(&read_events(primary, 0, EVENTS).await.unwrap(), primary.name());
        let seqs = aggregate(primary, "order-3").await.unwrap();
        assert_eq!(seqs, (0..EVENTS / AGGREGATES).collect::<Vec<_>>(), "{}", primary.name());
    }
    // Sequence checks still see the retired events.
    let mut client = nodes[leader].event_store().await.unwrap();
    let stale = client.append_event(tokio_stream::iter(vec![event("order-3", 0, 10)])).await.unwrap_err();
    assert_eq!(error_code(&stale).as_deref(), Some("AXONIQ-2000"), "{stale:?}");

    // The secondary is down: retired events cannot be read, and the error
    // says why; recent ones still can.
    let mut secondary = nodes.remove(2);
    secondary.kill9().unwrap();
    let primary = &nodes[0];
    let failed = read_events(primary, 0, EVENTS).await.unwrap_err();
    assert_eq!(error_code(&failed).as_deref(), Some("AXONIQ-9000"), "{failed:?}");
    assert!(failed.message().contains("secondary tier"), "{}", failed.message());
    let active = *files(primary, "events").last().unwrap() as i64;
    let recent = read_events(primary, active, EVENTS - active).await.unwrap();
    assert_eq!(recent.len() as i64, EVENTS - active);

    // Back: the whole history again.
    let secondary = secondary.restart().unwrap();
    eventually(Duration::from_secs(30), "retired reads to work again", || async {
        read_events(primary, 0, EVENTS).await.is_ok_and(|read| read.len() == EVENTS as usize)
    })
    .await
    .unwrap();
    assert_whole(&read_events(primary, 0, EVENTS).await.unwrap(), primary.name());

    // node-3 a PRIMARY again: no secondary is left, yet the retired events
    // are still read — from node-3, which holds them all (node-2 retired
    // them too and says so).
    let (code, out, err) =
        ranvierctl(&["change-role", "-S", &server, "-g", "default", "-n", "node-3", "-r", "PRIMARY"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    wait_voters(primary, "default", 3).await.unwrap();
    for primary in &nodes {
        assert_whole(&read_events(primary, 0, EVENTS).await.unwrap(), primary.name());
        assert_eq!(aggregate(primary, "order-5").await.unwrap().len() as i64, EVENTS / AGGREGATES);
    }
    drop(secondary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_a_backup_listed_stay_on_the_node_while_the_same_segments_retire_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "axoniq.axonserver.event.segment-size=64KB",
        "ranvier.max-transaction-size=32KB",
        "ranvier.tier.check-interval=200ms",
    ];
    let nodes = start_cluster(dir.path(), 3, &settings).unwrap();
    wait_voters(&nodes[0], "default", 3).await.unwrap();
    let leader = ranvier_tests::leader_of(&nodes[0], "default").unwrap();
    fill(nodes.iter().find(|n| n.name() == leader).unwrap()).await;
    eventually(Duration::from_secs(30), "node-1 to hold every event", || async {
        read_events(&nodes[0], 0, EVENTS).await.is_ok_and(|read| read.len() == EVENTS as usize)
    })
    .await
    .unwrap();

    // A backup lists node-1's files; then node-3 becomes a SECONDARY, and
    // the primaries may retire what it holds.
    let path = "/v1/backup/eventstore?targetContext=default&type=EVENT&lastClosedSegmentBackedUp=-1";
    let listed = ranvier_tests::http_get_bytes(&nodes[0].http_addr, path, &[]).unwrap();
    assert_eq!(listed.status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    let copied: Vec<String> =
        listed["filenames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect();
    assert!(copied.iter().filter(|f| f.ends_with(".events")).count() >= 4, "{copied:?}");
    let server = format!("http://{}", nodes[0].http_addr);
    let (code, out, err) =
        ranvierctl(&["change-role", "-S", &server, "-g", "default", "-n", "node-3", "-r", "SECONDARY"]).unwrap();
    assert_eq!(code, 0, "{out}{err}");
    eventually(Duration::from_secs(30), "node-2 to retire segments", || async {
        files(&nodes[1], "retired").len() >= 2
    })
    .await
    .unwrap();

    // node-1 keeps every file the backup listed, whole, while node-2 has
    // retired the same segments.
    assert!(files(&nodes[0], "retired").is_empty(), "node-1 retired a listed segment");
    for file in &copied {
        let copy = ranvier_tests::http_get_bytes(
            &nodes[0].http_addr,
            &format!("/v1/backup/file?path={}", ranvier_wire::http::encode(file)),
            &[],
        )
        .unwrap();
        assert_eq!(copy.status, 200, "{file} vanished");
        assert!(std::fs::read(file).unwrap().starts_with(&copy.body), "{file}");
    }
}
