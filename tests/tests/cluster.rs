//! Three real node processes form a cluster by autocluster alone; a client
//! appends through any node and reads identical events on every node.

use std::time::Duration;

use ranvier_proto::event::{GetEventsRequest, GetLastTokenRequest};
use ranvier_tests::{Node, error_code, event, eventually, free_port};
use tokio_stream::StreamExt;

fn start_cluster(dir: &std::path::Path) -> Vec<Node> {
    let ports: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let first = format!("127.0.0.1:{}", ports[0]);
    (0..3)
        .map(|i| {
            let settings = [
                format!("axoniq.axonserver.name=node-{}", i + 1),
                "axoniq.axonserver.internal-hostname=127.0.0.1".to_owned(),
                format!("axoniq.axonserver.internal-port={}", ports[i]),
                format!("axoniq.axonserver.autocluster.first={first}"),
                "axoniq.axonserver.accesscontrol.internal-token=cluster-secret".to_owned(),
                "axoniq.axonserver.replication.min-election-timeout=300".to_owned(),
                "axoniq.axonserver.replication.max-election-timeout=600".to_owned(),
                "axoniq.axonserver.replication.heartbeat-timeout=100".to_owned(),
            ];
            let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
            Node::start(&dir.join(format!("node-{}", i + 1)), &settings).unwrap()
        })
        .collect()
}

async fn last_token(node: &Node) -> i64 {
    let mut client = node.event_store().await.unwrap();
    client.get_last_token(GetLastTokenRequest {}).await.unwrap().into_inner().token
}

async fn read_all(node: &Node, count: i64) -> Vec<bytes::Bytes> {
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(GetEventsRequest { tracking_token: 0, number_of_permits: count, ..Default::default() }).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(stream.next().await.unwrap().unwrap().event);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_by_autocluster_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path());

    // Through a node that is not the first: the write reaches the group's
    // leader. Until the cluster has formed there is no leader to take it.
    let mut client = nodes[1].event_store().await.unwrap();
    let events: Vec<_> = (0..5).map(|s| event("order-1", s, 64)).collect();
    eventually(Duration::from_secs(30), "the cluster to take a write", || {
        let (mut client, events) = (client.clone(), events.clone());
        async move {
            match client.append_event(tokio_stream::iter(events)).await {
                Ok(_) => true,
                Err(status) => {
                    assert_eq!(error_code(&status).as_deref(), Some("AXONIQ-2100"), "{status:?}");
                    false
                }
            }
        }
    })
    .await
    .unwrap();

    // Every node applies it, at the same tokens, byte for byte.
    for node in &nodes {
        eventually(Duration::from_secs(10), "every replica to apply the write", || async {
            last_token(node).await == 4
        })
        .await
        .unwrap();
    }
    assert!(nodes[0].log().contains("formed replication group"), "node-1 formed the groups");
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

    // A conflict is refused the same way whichever node the client uses.
    let conflict = client.append_event(tokio_stream::iter(vec![event("order-1", 2, 8)])).await.unwrap_err();
    assert_eq!(error_code(&conflict).as_deref(), Some("AXONIQ-2000"), "{conflict:?}");
    let mut third = nodes[2].event_store().await.unwrap();
    third.append_event(tokio_stream::iter(vec![event("order-1", 5, 8)])).await.unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(10), "the second write everywhere", || async { last_token(node).await == 5 })
            .await
            .unwrap();
    }
    drop(client);
}
