//! A network partition between node containers: the node cut off from the
//! majority confirms nothing; the majority elects a leader and goes on; after
//! healing, all replicas converge to identical stores; a follower back from
//! a partition does not unseat the leader.
//!
//! Needs Docker and the `ranvier:test` image (`scripts/build-image.sh`;
//! `make test` builds it). Without them the test fails with that message,
//! unless RANVIER_SKIP_CONTAINER_TESTS=1 says to skip it (reported loudly).

use std::time::Duration;

use ranvier_proto::event::GetEventsRequest;
use ranvier_tests::docker::{self, Container, DockerCluster};
use ranvier_tests::{event, eventually};
use tokio_stream::StreamExt;

async fn checksum(node: &Container, count: i64) -> u32 {
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(GetEventsRequest { tracking_token: 0, number_of_permits: count, ..Default::default() }).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let mut hasher = crc32fast::Hasher::new();
    for expected in 0..count {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(item.token, expected);
        hasher.update(&item.event);
    }
    hasher.finalize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_confirms_nothing_and_replicas_converge_after_healing() {
    if !docker::required() {
        return;
    }
    let cluster = DockerCluster::start(3).unwrap();
    let nodes = &cluster.nodes;
    let first = nodes[0].event_store().await.unwrap();
    eventually(Duration::from_secs(60), "the cluster to form", || {
        let mut client = first.clone();
        async move { client.append_event(tokio_stream::iter(vec![event("before", 0, 32)])).await.is_ok() }
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "every node to vote in default", || async { nodes[0].default_voters() == 3 })
        .await
        .unwrap();
    let mut leader_name = None;
    eventually(Duration::from_secs(10), "a known leader", || {
        leader_name = nodes[0].leader();
        let known = leader_name.is_some();
        async move { known }
    })
    .await
    .unwrap();
    let leader = nodes.iter().position(|n| Some(n.node.as_str()) == leader_name.as_deref()).unwrap();
    let majority: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // Cut the leader off: alone, it must not confirm a write.
    cluster.isolate(leader).unwrap();
    let mut minority = nodes[leader].event_store().await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        minority.append_event(tokio_stream::iter(vec![event("minority", 0, 32)])),
    )
    .await;
    assert!(!matches!(refused, Ok(Ok(_))), "the minority confirmed a write: {refused:?}");

    // The majority elects a leader and keeps writing.
    let mut majority_client = nodes[majority[0]].event_store().await.unwrap();
    eventually(Duration::from_secs(30), "the majority to take writes", || {
        let mut client = majority_client.clone();
        async move { client.append_event(tokio_stream::iter(vec![event("majority", 0, 32)])).await.is_ok() }
    })
    .await
    .unwrap();
    for seq in 1..20 {
        majority_client.append_event(tokio_stream::iter(vec![event("majority", seq, 32)])).await.unwrap();
    }

    // Heal: every replica converges to the same events.
    cluster.heal(leader).unwrap();
    let last = nodes[majority[0]].last_token().await;
    assert_eq!(last, 20, "one event before the partition, twenty after");
    for node in nodes {
        eventually(Duration::from_secs(30), "replicas to converge", || async { node.last_token().await == last })
            .await
            .unwrap();
    }
    let sums: Vec<u32> = checksums(nodes, last + 1).await;
    assert!(sums.windows(2).all(|w| w[0] == w[1]), "replica checksums differ: {sums:?}");

    // A follower cut off for many election timeouts asks for votes in vain;
    // back, it must not unseat the leader (pre-vote: it raised no term).
    let (new_leader, term) = (nodes[majority[0]].leader(), nodes[majority[0]].term());
    let follower = (0..3).find(|i| Some(nodes[*i].node.as_str()) != new_leader.as_deref()).unwrap();
    cluster.isolate(follower).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.heal(follower).unwrap();
    majority_client.append_event(tokio_stream::iter(vec![event("majority", 20, 32)])).await.unwrap();
    eventually(Duration::from_secs(30), "the follower to catch up", || async {
        nodes[follower].last_token().await == last + 1
    })
    .await
    .unwrap();
    for node in nodes {
        assert_eq!((node.leader(), node.term()), (new_leader.clone(), term), "{} sees the same leadership", node.node);
    }
}

async fn checksums(nodes: &[Container], count: i64) -> Vec<u32> {
    let mut sums = Vec::new();
    for node in nodes {
        sums.push(checksum(node, count).await);
    }
    sums
}
