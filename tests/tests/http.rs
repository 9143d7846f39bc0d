//! The HTTP port: liveness, readiness, node info and the metrics that show
//! what the node did.

use ranvier_tests::{Node, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_node_info_and_metrics_reflect_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["axoniq.axonserver.autocluster.contexts=orders"]).unwrap();

    let (code, body) = node.http_get("/health").unwrap();
    assert_eq!((code, body.contains("UP")), (200, true), "{body}");
    let (code, body) = node.http_get("/actuator/health/readiness").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"orders\""), "readiness lists every context: {body}");

    let (code, body) = node.http_get("/v1/public").unwrap();
    assert_eq!(code, 200);
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(nodes[0]["name"], "test-node");
    let grpc_port: u64 = node.client_addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(nodes[0]["grpcPort"], grpc_port);
    // The internal port under both names: Axon's for this call
    // (`grpcInternalPort`) and /v1/cluster's (`internalGrpcPort`).
    assert!(nodes[0]["grpcInternalPort"].as_u64().is_some_and(|p| p > 0), "{body}");
    assert_eq!(nodes[0]["grpcInternalPort"], nodes[0]["internalGrpcPort"], "{body}");
    let (_, me) = node.http_get("/v1/public/me").unwrap();
    let me: serde_json::Value = serde_json::from_str(&me).unwrap();
    assert_eq!(me["grpcInternalPort"], nodes[0]["grpcInternalPort"], "{me}");

    let mut client = node.event_store().await.unwrap();
    client.append_event(tokio_stream::iter((0..3).map(|s| event("m", s, 10)).collect::<Vec<_>>())).await.unwrap();
    let (code, metrics) = node.http_get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"ranvier_append_events_total{context="default",store="events"} 3"#),
        "appended events are counted: {metrics}"
    );
    assert!(metrics.contains(r#"ranvier_append_transactions_total{context="default",store="events"} 1"#));
    assert!(metrics.contains("ranvier_fsync_seconds_count"), "fsync latency is measured");
    let (code, _) = node.http_get("/actuator/prometheus").unwrap();
    assert_eq!(code, 200);
}
