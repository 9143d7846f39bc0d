//! Three nodes started exactly as StatefulSet pods start them: each container
//! has its pod name as host name, is known to the others only by its DNS name
//! under the headless Service (`POD.SERVICE.NAMESPACE.svc.cluster.local`), and
//! gets its settings from the environment (`AXONIQ_AXONSERVER_NAME=$(POD_NAME)`,
//! fully qualified host and internal host names, `autocluster.first` naming
//! pod 0 by its fully qualified name). The cluster forms by autocluster, and
//! `/ready` answers 503 with what a node waits for until it has joined.
//!
//! Needs Docker and the `ranvier:test` image (`scripts/build-image.sh`), like
//! the partition test.

use std::time::Duration;

use ranvier_proto::event::GetEventsRequest;
use ranvier_tests::docker::{self, ContainerSpec, DockerCluster};
use ranvier_tests::{event, eventually};
use tokio_stream::StreamExt;

const SERVICE: &str = "ranvier-internal";
const NAMESPACE: &str = "ranvier-test";

fn fqdn(pod: &str) -> String {
    format!("{pod}.{SERVICE}.{NAMESPACE}.svc.cluster.local")
}

/// A pod's container as the StatefulSet's template would make it.
fn pod(name: &str) -> ContainerSpec {
    let env = [
        ("AXONIQ_AXONSERVER_NAME", name.to_owned()),
        ("AXONIQ_AXONSERVER_HOSTNAME", fqdn(name)),
        ("AXONIQ_AXONSERVER_INTERNAL_HOSTNAME", fqdn(name)),
        ("AXONIQ_AXONSERVER_AUTOCLUSTER_FIRST", format!("{}:8224", fqdn("ranvier-0"))),
        ("AXONIQ_AXONSERVER_ACCESSCONTROL_INTERNAL_TOKEN", "pod-secret".to_owned()),
        ("AXONIQ_AXONSERVER_REPLICATION_MIN_ELECTION_TIMEOUT", "300".to_owned()),
        ("AXONIQ_AXONSERVER_REPLICATION_MAX_ELECTION_TIMEOUT", "600".to_owned()),
        ("AXONIQ_AXONSERVER_REPLICATION_HEARTBEAT_TIMEOUT", "100".to_owned()),
    ];
    ContainerSpec {
        node: name.to_owned(),
        hostname: Some(name.to_owned()),
        aliases: vec![fqdn(name)],
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ..ContainerSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_with_fully_qualified_names_form_a_cluster_and_report_readiness_honestly() {
    if !docker::required() {
        return;
    }
    let mut cluster = DockerCluster::empty("pods").unwrap();

    // Pods 1 and 2 come up first (pod 0's start is slow): they cannot join
    // yet, and must say so instead of reporting ready.
    for name in ["ranvier-1", "ranvier-2"] {
        let index = cluster.add(&pod(name)).unwrap();
        cluster.nodes[index].wait_ready().unwrap();
    }
    for node in &cluster.nodes {
        let first = fqdn("ranvier-0");
        eventually(Duration::from_secs(30), "a joining pod to say what it waits for", || async {
            node.readiness().is_some_and(|(code, body)| {
                let reason = body["cluster"]["reason"].as_str().unwrap_or_default();
                code == 503
                    && body["status"] == "DOWN"
                    && reason.contains(&format!("joining the cluster through {first}"))
            })
        })
        .await
        .unwrap();
    }

    // Pod 0 starts: it recognises itself in `autocluster.first` (its internal
    // address is not its domain appended twice), founds the cluster, and the
    // others join it.
    let index = cluster.add(&pod("ranvier-0")).unwrap();
    cluster.nodes[index].wait_ready().unwrap();
    let nodes = &cluster.nodes;
    for node in nodes {
        eventually(Duration::from_secs(60), "every pod to report ready", || async {
            node.readiness().is_some_and(|(code, body)| {
                code == 200
                    && body["cluster"]["status"] == "UP"
                    && body["replicationGroups"]["_admin"]["status"] == "UP"
                    && body["replicationGroups"]["default"]["status"] == "UP"
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}: {:?}\n{}", node.node, node.readiness(), node.logs()));
    }
    let founder = &nodes[index];
    assert!(founder.logs().contains("founded the cluster (autocluster)"), "{}", founder.logs());
    assert!(!founder.logs().contains(".svc.cluster.local.ranvier-internal"), "a doubled domain:\n{}", founder.logs());

    // The cluster model lists each pod by its pod name at its DNS name.
    let listed: serde_json::Value = serde_json::from_str(&founder.http_get("/v1/public").unwrap()).unwrap();
    let mut seen: Vec<(String, String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let text = |key: &str| n[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("hostName"), text("internalHostName"))
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String, String)> =
        ["ranvier-0", "ranvier-1", "ranvier-2"].iter().map(|p| ((*p).to_owned(), fqdn(p), fqdn(p))).collect();
    assert_eq!(seen, expected);
    eventually(Duration::from_secs(30), "every pod to vote in default", || async { founder.default_voters() == 3 })
        .await
        .unwrap();

    // A client appends through each pod and reads everything on each.
    for (seq, node) in nodes.iter().enumerate() {
        let mut client = node.event_store().await.unwrap();
        client.append_event(tokio_stream::iter(vec![event("pod-order", seq as i64, 64)])).await.unwrap();
    }
    for node in nodes {
        eventually(Duration::from_secs(10), "every pod to hold the three events", || async {
            node.last_token().await == 2
        })
        .await
        .unwrap();
        let mut client = node.event_store().await.unwrap();
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let request = GetEventsRequest { tracking_token: 0, number_of_permits: 3, ..Default::default() };
        sender.send(request).await.unwrap();
        let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
        let mut stream = client.list_events(requests).await.unwrap().into_inner();
        for seq in 0..3 {
            let item = stream.next().await.unwrap().unwrap();
            let stored = item.decode_event().unwrap();
            assert_eq!((item.token, stored.aggregate_sequence_number), (seq, seq), "on {}", node.node);
        }
    }
}
