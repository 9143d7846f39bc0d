//! Cluster formation in one process, over real internal gRPC servers.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::raft::state_machine::ContextStores;
use crate::store::ContextStore;

struct Stores(ContextStore);

impl ContextStores for Stores {
    fn store(&self, context: &str) -> Result<ContextStore, String> {
        if context == "default" { Ok(self.0.clone()) } else { Err(format!("no context {context}")) }
    }
}

struct Member {
    cluster: Arc<Cluster>,
    _dir: tempfile::TempDir,
}

async fn member(name: &str, listener: tokio::net::TcpListener, first: &str) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let settings = ClusterSettings {
        name: name.into(),
        internal_addr: listener.local_addr().unwrap().to_string(),
        first: first.into(),
        token: Some("t".into()),
        log_dir: dir.path().join("log"),
        groups: vec!["default".into()],
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        heartbeat_ms: 100,
    };
    let store = crate::test_util::context_store(&dir.path().join("data"), "default");
    let cluster = Cluster::start(settings, Arc::new(Stores(store))).await.unwrap();
    let (raft, membership) = cluster.services();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder().add_service(raft).add_service(membership).serve_with_incoming(incoming),
    );
    Member { cluster, _dir: dir }
}

fn role_of(cluster: &Cluster, node: &str) -> Option<String> {
    let status = cluster.status();
    let roles = status.first()?["roles"].as_array()?.clone();
    roles.iter().find(|r| r["node"] == node).and_then(|r| r["role"].as_str().map(str::to_owned))
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_left_as_a_learner_asks_again_and_becomes_primary() {
    let listeners = bind_listeners(3).await;
    let first = listeners[0].local_addr().unwrap().to_string();
    let mut listeners = listeners.into_iter();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let one = member("node-1", listeners.next().unwrap(), &first).await;
    let two = member("node-2", listeners.next().unwrap(), &first).await;
    one.cluster.spawn_formation(stopping.clone());
    two.cluster.spawn_formation(stopping.clone());
    until("node-2 to join as PRIMARY", || role_of(&one.cluster, "node-2").as_deref() == Some("PRIMARY")).await;

    // node-3 stops half-way through joining: added as a learner only.
    let three = member("node-3", listeners.next().unwrap(), &first).await;
    let leader = one.cluster.group("default").unwrap();
    let node = MemberNode { name: "node-3".into(), internal_addr: three.cluster.settings.internal_addr.clone() };
    // (An earlier membership change may still be settling: retry while so.)
    let mut added = false;
    for _ in 0..200 {
        if leader.add_learner(three.cluster.node_id(), node.clone(), true).await.is_ok() {
            added = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(added, "node-3 could not be added as a learner");
    until("node-3 to see itself as a learner", || role_of(&three.cluster, "node-3").as_deref() == Some("LEARNER"))
        .await;

    // Its formation (as after a restart) asks to join again.
    three.cluster.spawn_formation(stopping.clone());
    until("node-3 to become PRIMARY", || role_of(&one.cluster, "node-3").as_deref() == Some("PRIMARY")).await;
    let _ = stop.send(true);
    for member in [&one, &two, &three] {
        member.cluster.shutdown().await;
    }
}

async fn bind_listeners(count: usize) -> Vec<tokio::net::TcpListener> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    out
}
