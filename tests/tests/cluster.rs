//! Three real node processes form a cluster by autocluster alone; a client
//! appends through any node and reads identical events on every node.

use std::time::Duration;

use ranvier_tests::{Node, error_code, event, eventually, last_token};
use tokio_stream::StreamExt;

fn start_cluster(dir: &std::path::Path) -> Vec<Node> {
    ranvier_tests::start_cluster(dir, 3, &[]).unwrap()
}

async fn read_all(node: &Node, count: i64) -> Vec<bytes::Bytes> {
    ranvier_tests::read_events(node, count).await.unwrap().into_iter().map(|e| e.event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_by_autocluster_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path());
    // The first node founds the cluster; the leaders add the others.
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }

    // Through a node that is not the first: the write reaches the group's leader.
    let mut client = nodes[1].event_store().await.unwrap();
    let events: Vec<_> = (0..5).map(|s| event("order-1", s, 64)).collect();
    eventually(Duration::from_secs(10), "the cluster to take a write", || {
        let (mut client, events) = (client.clone(), events.clone());
        async move { client.append_event(tokio_stream::iter(events)).await.is_ok() }
    })
    .await
    .unwrap();

    // Every node applies it, at the same tokens, byte for byte.
    for node in &nodes {
        eventually(Duration::from_secs(10), "every replica to apply the write", || async {
            last_token(node).await.unwrap() == 4
        })
        .await
        .unwrap();
    }
    assert!(nodes[0].log().contains("founded the cluster"), "node-1 founded the cluster");
    for node in &nodes {
        eventually(Duration::from_secs(10), "every node to report ready", || async {
            node.http_get("/ready").is_ok_and(|(code, body)| code == 200 && body.contains("replicationGroups"))
        })
        .await
        .unwrap();
    }
    for node in &nodes[1..] {
        eventually(Duration::from_secs(10), "the others to report joining", || async {
            node.log().contains("joined the cluster")
        })
        .await
        .unwrap();
    }
    let first = read_all(&nodes[0], 5).await;
    for node in &nodes[1..] {
        assert_eq!(read_all(node, 5).await, first, "replicas hold identical events");
    }

    // A snapshot through a follower is stored on every replica's snapshot store.
    let mut snapshot = event("order-1", 4, 16);
    snapshot.message_identifier = "snapshot-4".into();
    client.append_snapshot(snapshot).await.unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(10), "the snapshot on every replica", || async {
            let mut store = node.event_store().await.unwrap();
            let request = ranvier_proto::event::GetAggregateSnapshotsRequest {
                aggregate_id: "order-1".into(),
                initial_sequence: 0,
                max_sequence: 100,
                max_results: 0,
            };
            let listed: Vec<_> = store.list_aggregate_snapshots(request).await.unwrap().into_inner().collect().await;
            listed.len() == 1 && listed[0].as_ref().is_ok_and(|e| e.message_identifier == "snapshot-4")
        })
        .await
        .unwrap();
    }

    // A conflict is refused the same way whichever node the client uses.
    let conflict = client.append_event(tokio_stream::iter(vec![event("order-1", 2, 8)])).await.unwrap_err();
    assert_eq!(error_code(&conflict).as_deref(), Some("AXONIQ-2000"), "{conflict:?}");
    let mut third = nodes[2].event_store().await.unwrap();
    third.append_event(tokio_stream::iter(vec![event("order-1", 5, 8)])).await.unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(10), "the second write everywhere", || async {
            last_token(node).await.unwrap() == 5
        })
        .await
        .unwrap();
    }
    drop(client);
}

fn leader_of(via: &Node) -> Option<String> {
    ranvier_tests::leader_of(via, "default")
}

/// The index in `nodes` of the leader of `default`, once node 1 knows it.
async fn known_leader(nodes: &[Node]) -> usize {
    let mut leader_name = None;
    eventually(Duration::from_secs(10), "a known leader", || {
        leader_name = leader_of(&nodes[0]);
        let known = leader_name.is_some();
        async move { known }
    })
    .await
    .unwrap();
    nodes.iter().position(|n| Some(n.name()) == leader_name.as_deref()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_under_load_loses_nothing_and_it_catches_up() {
    use ranvier_proto::event::ReadHighestSequenceNrRequest;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path());
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    let probe = nodes[0].event_store().await.unwrap();
    eventually(Duration::from_secs(30), "the cluster to form", || {
        let mut probe = probe.clone();
        async move { probe.append_event(tokio_stream::iter(vec![event("probe", 0, 1)])).await.is_ok() }
    })
    .await
    .unwrap();
    let leader = known_leader(&nodes).await;
    drop(probe);

    // Writers on the two followers, each with its own aggregate. A write that
    // fails is not confirmed; the writer re-reads its aggregate and goes on.
    let confirmed: Arc<Mutex<Vec<(String, i64, tokio::time::Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for (w, node) in nodes.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, n)| n).cycle().take(4).enumerate()
    {
        let mut client = node.event_store().await.unwrap();
        let (confirmed, stop) = (confirmed.clone(), stop.clone());
        writers.spawn(async move {
            let aggregate = format!("writer-{w}");
            let mut seq = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let tx = vec![event(&aggregate, seq, 100), event(&aggregate, seq + 1, 100)];
                match client.append_event(tokio_stream::iter(tx)).await {
                    Ok(_) => {
                        confirmed.lock().unwrap().push((aggregate.clone(), seq, tokio::time::Instant::now()));
                        seq += 2;
                    }
                    Err(_) => {
                        let request =
                            ReadHighestSequenceNrRequest { aggregate_id: aggregate.clone(), from_sequence_nr: 0 };
                        if let Ok(highest) = client.read_highest_sequence_nr(request).await {
                            seq = highest.into_inner().to_sequence_nr + 1;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
    }
    eventually(Duration::from_secs(30), "writes before the kill", || async { confirmed.lock().unwrap().len() >= 40 })
        .await
        .unwrap();

    let killed_at = tokio::time::Instant::now();
    nodes[leader].kill9().unwrap();
    eventually(Duration::from_secs(30), "writes after the kill", || async {
        confirmed.lock().unwrap().iter().filter(|(_, _, at)| *at > killed_at).count() >= 40
    })
    .await
    .unwrap();
    let resumed = confirmed.lock().unwrap().iter().map(|(_, _, at)| *at).filter(|at| *at > killed_at).min().unwrap();
    assert!(resumed - killed_at < Duration::from_secs(2), "writes resumed {:?} after the kill", resumed - killed_at);
    stop.store(true, Ordering::SeqCst);
    while writers.join_next().await.is_some() {}
    let confirmed = confirmed.lock().unwrap().clone();

    // The killed node comes back and catches up.
    let restarted = nodes.remove(leader).restart().unwrap();
    nodes.push(restarted);
    let last = last_token(&nodes[0]).await.unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(30), "every node to hold every event", || async {
            last_token(node).await.unwrap() == last
        })
        .await
        .unwrap();
    }
    let all = read_all(&nodes[0], last + 1).await;
    for node in &nodes[1..] {
        assert_eq!(read_all(node, last + 1).await, all, "replicas hold identical events");
    }
    let mut ids = std::collections::HashSet::new();
    for bytes in &all {
        let stored = <ranvier_proto::event::Event as prost::Message>::decode(bytes.clone()).unwrap();
        assert!(ids.insert(stored.message_identifier.clone()), "duplicate {}", stored.message_identifier);
    }
    for (aggregate, seq, _) in &confirmed {
        for s in [*seq, seq + 1] {
            assert!(ids.contains(&format!("{aggregate}/{s}")), "confirmed event {aggregate}/{s} lost");
        }
    }
}

/// The token after the last event of `node`'s own store of `default`.
fn stored_next_token(node: &Node) -> Option<i64> {
    let (_, body) = node.http_get("/ready").ok()?;
    let ready: serde_json::Value = serde_json::from_str(&body).ok()?;
    ready["contexts"]["default"]["nextToken"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_on_another_internal_port_is_replicated_to_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path());
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    let leads = |node: &Node, group: &str| ranvier_tests::leader_of(node, group).as_deref() == Some(node.name());
    // A node that leads neither group moves.
    let moving = (0..3).find(|i| !leads(&nodes[*i], "default") && !leads(&nodes[*i], "_admin")).unwrap();
    let writer = (moving + 1) % 3;
    let mut client = nodes[writer].event_store().await.unwrap();
    let events = |from: i64| (from..from + 5).map(|s| event("moved", s, 64)).collect::<Vec<_>>();
    client.append_event(tokio_stream::iter(events(0))).await.unwrap();

    let node = nodes.remove(moving);
    let port = ranvier_tests::free_port().unwrap();
    let node = node.restart_with(&[&format!("axoniq.axonserver.internal-port={port}")]).unwrap();
    assert!(node.internal_addr().is_some_and(|addr| addr.ends_with(&format!(":{port}"))), "{:?}", node.internal_addr());
    // Writes made after the move reach it at its new address…
    client.append_event(tokio_stream::iter(events(5))).await.unwrap();
    eventually(Duration::from_secs(30), "the moved node to hold every event", || async {
        stored_next_token(&node) == Some(10)
    })
    .await
    .unwrap();
    // …and writes through it reach the leader.
    let mut moved = node.event_store().await.unwrap();
    moved.append_event(tokio_stream::iter(events(10))).await.unwrap();
    assert_eq!(last_token(&nodes[0]).await.unwrap(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_downtime_catches_up_while_its_group_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path());
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    let leads = |node: &Node| ranvier_tests::leader_of(node, "default").as_deref() == Some(node.name());
    let down = (0..3).find(|i| !leads(&nodes[*i])).unwrap();
    let writer = (down + 1) % 3;
    let mut client = nodes[writer].event_store().await.unwrap();
    let events = |from: i64| (from..from + 10).map(|s| event("idle", s, 64)).collect::<Vec<_>>();
    client.append_event(tokio_stream::iter(events(0))).await.unwrap();
    eventually(Duration::from_secs(30), "every node to hold the first write", || async {
        nodes.iter().all(|n| stored_next_token(n) == Some(10))
    })
    .await
    .unwrap();

    // A follower is down while writes go on, then the group goes idle.
    let mut follower = nodes.remove(down);
    follower.kill9().unwrap();
    for from in (10..100).step_by(10) {
        client.append_event(tokio_stream::iter(events(from))).await.unwrap();
    }
    // Back, it is caught up with nothing more written.
    let follower = follower.restart().unwrap();
    eventually(Duration::from_secs(30), "the follower to catch up without another write", || async {
        stored_next_token(&follower) == Some(100)
    })
    .await
    .unwrap();
    assert_eq!(read_all(&follower, 100).await, read_all(&nodes[0], 100).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_sent_to_the_survivors_while_the_leader_is_gone_wait_for_the_next_leader() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path());
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    let leader = known_leader(&nodes).await;

    // Writers on both survivors-to-be: each write is recorded with when it
    // was sent and how it ended.
    type Outcome = (tokio::time::Instant, Result<(), String>);
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    let followers: Vec<&Node> = nodes.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, n)| n).collect();
    for (w, node) in followers.iter().cycle().take(4).enumerate() {
        let mut client = node.event_store().await.unwrap();
        let (outcomes, stop) = (outcomes.clone(), stop.clone());
        writers.spawn(async move {
            // After a failure the writer goes on with a new aggregate (the
            // failed write may or may not be stored), without waiting.
            let (mut aggregate, mut seq, mut round) = (format!("waiter-{w}-0"), 0i64, 0);
            while !stop.load(Ordering::SeqCst) {
                let sent = tokio::time::Instant::now();
                let result = client.append_event(tokio_stream::iter(vec![event(&aggregate, seq, 100)])).await;
                let ended = result.as_ref().map(|_| ()).map_err(|s| format!("{:?}: {}", error_code(s), s.message()));
                outcomes.lock().unwrap().push((sent, ended.clone()));
                match ended {
                    Ok(()) => seq += 1,
                    Err(_) => {
                        round += 1;
                        (aggregate, seq) = (format!("waiter-{w}-{round}"), 0);
                    }
                }
            }
        });
    }
    let succeeded_since = |since: tokio::time::Instant| {
        outcomes.lock().unwrap().iter().filter(|(sent, ended)| *sent > since && ended.is_ok()).count()
    };
    let started = tokio::time::Instant::now();
    eventually(Duration::from_secs(30), "writes before the kill", || async { succeeded_since(started) >= 20 })
        .await
        .unwrap();

    let killed_at = tokio::time::Instant::now();
    nodes[leader].kill9().unwrap();
    eventually(Duration::from_secs(30), "writes after the kill", || async { succeeded_since(killed_at) >= 40 })
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    while writers.join_next().await.is_some() {}

    // A write in flight to the old leader when it died may fail (it may or
    // may not have been stored); every write sent after that waited for the
    // next leader and succeeded.
    let settled = killed_at + Duration::from_millis(100);
    let outcomes = outcomes.lock().unwrap().clone();
    let during: Vec<&Outcome> = outcomes.iter().filter(|(sent, _)| *sent > settled).collect();
    let failed: Vec<&Outcome> = during.iter().copied().filter(|(_, ended)| ended.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes sent during the election failed: {failed:?}",
        failed.len(),
        during.len()
    );
    let slowest = outcomes.iter().filter(|(sent, _)| *sent > settled).count();
    eprintln!("{slowest} writes sent after the kill, all confirmed");
}
