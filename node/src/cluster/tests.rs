//! Cluster formation, the model and role changes in one process, over real
//! internal gRPC servers and real stores in temporary directories.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::model::{ADMIN, AdminCommand};
use super::roles::Role;
use super::*;
use crate::contexts::{ContextOptions, Contexts};
use crate::store::{DiskSpace, StoreOptions};
use crate::telemetry::Metrics;

struct Member {
    cluster: Arc<Cluster>,
    contexts: Arc<Contexts>,
    dir: tempfile::TempDir,
    space: Arc<Space>,
}

/// A member's free disk space: plenty, until a test fills the disk.
#[derive(Default)]
struct Space {
    full: std::sync::atomic::AtomicBool,
}

impl Space {
    fn set_full(&self, full: bool) {
        self.full.store(full, std::sync::atomic::Ordering::SeqCst);
    }
}

impl DiskSpace for Space {
    fn available_bytes(&self, _: &std::path::Path) -> std::io::Result<u64> {
        Ok(if self.full.load(std::sync::atomic::Ordering::SeqCst) { 4096 } else { u64::MAX })
    }
}

/// Every member keeps this much free.
const RESERVE_BYTES: u64 = 1 << 20;

async fn member(
    name: &str,
    listener: tokio::net::TcpListener,
    first: &str,
    stopping: &watch::Receiver<bool>,
) -> Member {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ClusterSettings {
        node: NodeInfo {
            name: name.into(),
            internal_addr: addr.to_string(),
            host_name: "localhost".into(),
            grpc_port: 1,
            http_port: 2,
        },
        first: Some(first.into()),
        first_is_me: first == addr.to_string(),
        contexts: vec!["default".into()],
        token: Some("t".into()),
        tls: None,
        log_dir: dir.path().join("log"),
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        wait_for_leader_ms: 1200,
        heartbeat_ms: 100,
        min_active_backups: 1,
        snapshot_interval_entries: 40,
        log_entries_kept: 5,
        log_cache_bytes: 32 << 20,
        event_retention_ms: 7 * 24 * 3600 * 1000,
        tier_check_interval_ms: 10_000,
    };
    let store = StoreOptions { disk_reserve_bytes: RESERVE_BYTES, ..StoreOptions::default() };
    let options = ContextOptions { events: store.clone(), snapshots: store };
    let data = dir.path().join("data");
    let space = Arc::new(Space::default());
    let contexts = Arc::new(Contexts::open(
        &[],
        &data.join("events"),
        &data.join("snapshots"),
        &options,
        Arc::new(Metrics::new()),
        space.clone(),
    ));
    let cluster = Cluster::start(settings, contexts.clone()).await.unwrap();
    let (raft, forwarding) = cluster.services();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder().add_service(raft).add_service(forwarding).serve_with_incoming(incoming),
    );
    cluster.spawn(stopping.clone());
    Member { cluster, contexts, dir, space }
}

/// `node`'s role in `group` as (model role, Raft shape) seen by `on`.
fn member_state(on: &Cluster, group: &str, node: &str) -> Option<(String, String)> {
    let status = serde_json::to_value(on.status()).ok()?;
    let group = status.as_array()?.iter().find(|g| g["name"] == group)?;
    let member = group["members"].as_array()?.iter().find(|m| m["node"] == node)?;
    Some((member["role"].as_str()?.to_owned(), member["raft"].as_str().unwrap_or("?").to_owned()))
}

fn leader_of(members: &[&Member], group: &str) -> Option<usize> {
    members.iter().position(|m| {
        m.cluster.group(group).is_some_and(|raft| {
            use openraft::type_config::async_runtime::WatchReceiver;
            raft.metrics().borrow_watched().current_leader == Some(m.cluster.node_id())
        })
    })
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `member`'s own store of `context` holds events up to
/// `next_token` (exclusive).
async fn holds(member: &Member, context: &str, next_token: u64) {
    let what = format!("{} to hold {context} up to token {next_token}", member.cluster.name());
    until(&what, || {
        member.contexts.get(context).and_then(Result::ok).is_some_and(|s| s.events.next_token() == next_token)
    })
    .await;
}

async fn bind_listeners(count: usize) -> Vec<tokio::net::TcpListener> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    out
}

async fn three_nodes(stopping: &watch::Receiver<bool>) -> Vec<Member> {
    let listeners = bind_listeners(3).await;
    let first = listeners[0].local_addr().unwrap().to_string();
    let mut members = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        members.push(member(&format!("node-{}", i + 1), listener, &first, stopping).await);
    }
    for group in [ADMIN, "default"] {
        for node in ["node-1", "node-2", "node-3"] {
            let want = Some(("PRIMARY".to_string(), "voter".to_string()));
            until(&format!("{node} to vote in {group}"), || {
                members
                    .iter()
                    .any(|m| leader_of(&[m], group).is_some() && member_state(&m.cluster, group, node) == want)
            })
            .await;
        }
    }
    members
}

fn event(aggregate: &str, seq: i64) -> Bytes {
    crate::test_util::event(aggregate, seq, 64)
}

/// Inode of every event segment file of `context` on a member.
fn segment_inodes(member: &Member, context: &str) -> Vec<(String, u64)> {
    let dir = member.dir.path().join("data/events").join(context);
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".events"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().ino()))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocluster_builds_the_model_and_every_member_stores_the_writes() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    // A follower applies the last registration once it learns it was
    // committed (the leader's next message), so its model may lag briefly.
    for member in &members {
        until("every member's model to hold the three nodes", || member.cluster.model().nodes.len() == 3).await;
    }
    let model = members[2].cluster.model();
    assert_eq!(model.group_of("default"), Some("default"));
    // A write through any node lands on every replica.
    let token = members[2].cluster.append("default", vec![event("a", 0), event("a", 1)], false).await.unwrap();
    assert_eq!(token, 0);
    for member in &members {
        holds(member, "default", 2).await;
    }
    // Unknown contexts are refused as Axon does.
    let refused = members[0].cluster.append("nope", vec![event("b", 0)], false).await.unwrap_err();
    assert!(matches!(refused, WriteError::Refused { ref code, .. } if code == "AXONIQ-6000"), "{refused:?}");
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_disk_reserve_a_leader_refuses_new_writes_and_a_replica_lags_and_both_resume() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let all: Vec<&Member> = members.iter().collect();
    until("a leader of default", || leader_of(&all, "default").is_some()).await;
    let leader = leader_of(&all, "default").unwrap();
    let (low, other) = ((leader + 1) % 3, (leader + 2) % 3);
    members[leader].cluster.append("default", vec![event("a", 0)], false).await.unwrap();
    for member in &members {
        holds(member, "default", 1).await;
    }

    // A replica's disk fills: the other two go on committing, and it takes
    // no new entries (instead of failing its store, and with it the group,
    // on this node) ...
    let name = |i: usize| members[i].cluster.name().to_owned();
    members[low].space.set_full(true);
    for seq in 1..=20 {
        members[leader].cluster.append("default", vec![event("a", seq)], false).await.unwrap();
    }
    holds(&members[other], "default", 21).await;
    let lagging = members[low].contexts.get("default").unwrap().unwrap().events.next_token();
    assert_eq!(lagging, 1, "the replica below its reserve stored new entries");
    // The leader's status says why it lags (and only of that replica).
    let below_reserve = |node: usize| {
        let status = members[leader].cluster.status();
        let group = status.into_iter().find(|g| g.name == "default").unwrap();
        let member = group.members.into_iter().find(|m| m.node == name(node)).unwrap();
        json!(member.below_disk_reserve)
    };
    until("the leader to see the replica refuse entries", || below_reserve(low) == json!(true)).await;
    assert_eq!(below_reserve(other), json!(false));
    // The cluster model still reaches it (what an operator changes to move
    // a member off a full disk).
    let roles = BTreeMap::from([(name(leader), Role::Primary), (name(other), Role::Primary)]);
    members[leader].cluster.admin(AdminCommand::CreateGroup { name: "audit".into(), members: roles }).await.unwrap();
    until("the full replica's model to hold the new group", || {
        members[low].cluster.model().groups.contains_key("audit")
    })
    .await;
    // (It took those entries below its reserve: that says nothing of
    // whether it takes others.)
    assert_eq!(below_reserve(low), json!(true));
    // ... until space returns: then it catches up, and the leader sees it
    // take entries (sooner than the mark would expire on its own).
    let returned = std::time::Instant::now();
    members[low].space.set_full(false);
    holds(&members[low], "default", 21).await;
    assert_eq!(stored_events(&members[low], "default"), stored_events(&members[leader], "default"));
    until("the leader to see the replica take entries", || below_reserve(low) == json!(false)).await;
    assert!(returned.elapsed() < Duration::from_secs(9), "the mark only expired");

    // The leader's disk fills (whoever leads now): writes are refused with
    // Axon's data-file error, whichever node the client is on, and nothing
    // is stored.
    until("a leader of default", || leader_of(&all, "default").is_some()).await;
    let leader = leader_of(&all, "default").unwrap();
    members[leader].space.set_full(true);
    for via in &members {
        let refused = via.cluster.append("default", vec![event("a", 21)], false).await.unwrap_err();
        assert!(
            matches!(&refused, WriteError::Refused { code, message }
                if code == "AXONIQ-9100" && message.contains("reserve") && message.contains(&name(leader))),
            "{refused:?}"
        );
    }
    assert_eq!(members[leader].contexts.get("default").unwrap().unwrap().events.next_token(), 21);
    assert_eq!(leader_of(&all, "default"), Some(leader), "the leadership moved during the test");
    // Space returns: the same leader takes writes again.
    members[leader].space.set_full(false);
    assert_eq!(members[(leader + 1) % 3].cluster.append("default", vec![event("a", 21)], false).await.unwrap(), 21);
    for member in &members {
        holds(member, "default", 22).await;
    }
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_backup_below_its_disk_reserve_stops_writes_before_they_are_stored() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all, "default").unwrap();
    let backup = (leader + 1) % 3;
    let name = members[backup].cluster.name().to_owned();
    let set = AdminCommand::SetMember { group: "default".into(), node: name.clone(), role: Role::ActiveBackup };
    members[leader].cluster.admin(set).await.unwrap();
    let want = Some(("ACTIVE_BACKUP".to_string(), "learner".to_string()));
    until("the active backup", || member_state(&members[leader].cluster, "default", &name) == want).await;
    let leader = leader_of(&all, "default").unwrap();
    // (The leader counts the new backup in sync once it has answered.)
    append_once_accepted(&members[leader], event("a", 0)).await;
    holds(&members[backup], "default", 1).await;

    // The backup's disk fills. The leader learns it when the backup first
    // refuses an entry: that write is stored on the primaries and reported
    // not confirmed in time (as when a backup dies under it) ...
    members[backup].space.set_full(true);
    let first = members[leader].cluster.append("default", vec![event("a", 1)], false).await;
    assert!(matches!(&first, Err(WriteError::Timeout(m)) if m.contains("not confirmed")), "{first:?}");
    let stored = || members[leader].contexts.get("default").unwrap().unwrap().events.next_token();
    let before = stored();
    // ... and from then on refuses writes up front, for as long as the disk
    // stays full (here past the longest pause between the leader's retries
    // of the backup): nothing more is stored that clients were told failed,
    // and the error says why.
    let full_until = tokio::time::Instant::now() + Duration::from_secs(7);
    let mut seq = 2;
    while tokio::time::Instant::now() < full_until {
        let refused = members[leader].cluster.append("default", vec![event("a", seq)], false).await.unwrap_err();
        let message = format!("{refused:?}");
        assert!(message.contains("accepts no writes") && message.contains(&name), "{message}");
        assert!(message.contains("disk reserve"), "{message}");
        assert_eq!(stored(), before, "a refused write was stored");
        seq += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Space returns: writes are confirmed again once the backup takes
    // entries, and it holds them all.
    members[backup].space.set_full(false);
    let token = append_once_accepted(&members[leader], event("b", 0)).await;
    holds(&members[backup], "default", token + 1).await;
    assert_eq!(stored_events(&members[backup], "default"), stored_events(&members[leader], "default"));
    stop_all(stop, &members).await;
}

/// Appends `event` to `default` through `member`, again while the group
/// refuses it up front for want of active backups (at most 30 s); its token.
async fn append_once_accepted(member: &Member, event: Bytes) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match member.cluster.append("default", vec![event.clone()], false).await {
            Ok(token) => return token,
            Err(WriteError::NoLeader(message)) if message.contains("accepts no writes") => {
                assert!(tokio::time::Instant::now() < deadline, "the write was not accepted: {message}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("the write failed: {error:?}"),
        }
    }
}

/// Every event of `context` in `member`'s own store, in token order.
fn stored_events(member: &Member, context: &str) -> Vec<Bytes> {
    let store = member.contexts.get(context).unwrap().unwrap().events;
    let mut cursor = crate::store::Cursor::at(0);
    let mut out = Vec::new();
    loop {
        let batch = store.read_batch(&mut cursor, 1000, 64 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|(_, event)| event));
    }
}

/// Waits until every member holds `default` up to `next_token`, checks that
/// each holds exactly the leader's events, and returns them.
async fn agree_with_leader(members: &[Member], leader: usize, next_token: u64) -> Vec<Bytes> {
    for member in members {
        holds(member, "default", next_token).await;
    }
    let on_leader = stored_events(&members[leader], "default");
    for member in members {
        assert!(stored_events(member, "default") == on_leader, "{} differs from the leader", member.cluster.name());
    }
    on_leader
}

async fn stop_all(stop: watch::Sender<bool>, members: &[Member]) {
    let _ = stop.send(true);
    for member in members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_larger_than_a_grpc_message_are_forwarded_and_replicated() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let leader = leader_of(&members.iter().collect::<Vec<_>>(), "default").unwrap();
    let follower = &members[(leader + 1) % 3];
    // Two transactions of 6 MiB each (gRPC's default limit is 4 MiB),
    // sent through a follower at once, so that the leader may also carry
    // both in one AppendEntries request.
    let big = |aggregate: &str| (0..96).map(|seq| crate::test_util::event(aggregate, seq, 64 * 1024)).collect();
    let (first, second) = tokio::join!(
        follower.cluster.append("default", big("big-1"), false),
        follower.cluster.append("default", big("big-2"), false)
    );
    let mut tokens = vec![first.unwrap(), second.unwrap()];
    tokens.sort();
    assert_eq!(tokens, vec![0, 96]);
    assert_eq!(agree_with_leader(&members, leader, 192).await.len(), 192);
    stop_all(stop, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_share_log_entries_yet_each_gets_its_own_answer() {
    use openraft::type_config::async_runtime::WatchReceiver;
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let leader = leader_of(&members.iter().collect::<Vec<_>>(), "default").unwrap();
    let raft = members[leader].cluster.group("default").unwrap();
    let before = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
    // 40 aggregates, each written twice at sequence 0 at the same time:
    // exactly one write of each pair is accepted.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..80 {
        let cluster = members[leader].cluster.clone();
        writes.spawn(async move {
            let aggregate = format!("agg-{}", i % 40);
            (i % 40, cluster.append("default", vec![event(&aggregate, 0), event(&aggregate, 1)], false).await)
        });
    }
    let mut accepted = BTreeMap::new();
    let mut tokens = Vec::new();
    while let Some(done) = writes.join_next().await {
        let (aggregate, answer) = done.unwrap();
        match answer {
            Ok(token) => {
                assert!(accepted.insert(aggregate, token).is_none(), "both writes of aggregate {aggregate} accepted");
                tokens.push(token);
            }
            Err(WriteError::Refused { code, .. }) => assert_eq!(code, "AXONIQ-2000"),
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(accepted.len(), 40);
    tokens.sort();
    assert_eq!(tokens, (0..40).map(|i| i * 2).collect::<Vec<u64>>(), "each accepted write has its own tokens");
    let entries = raft.metrics().borrow_watched().last_log_index.unwrap_or(0) - before;
    assert!(entries < 80, "80 concurrent transactions took {entries} log entries");
    agree_with_leader(&members, leader, 80).await;
    stop_all(stop, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_forwarded_by_a_follower_travel_together_yet_each_gets_its_own_answer() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let term = |member: &Member| {
        use openraft::type_config::async_runtime::WatchReceiver;
        member.cluster.group("default").map(|raft| raft.metrics().borrow_watched().current_term)
    };
    // A run counts when one leader held its term throughout (on a loaded
    // machine an election may come between: every answer must still be
    // right, but the follower may then have led part of the run).
    for round in 0..5u64 {
        let leader = leader_of(&members.iter().collect::<Vec<_>>(), "default").unwrap();
        let term_before = term(&members[leader]);
        let follower = members[(leader + 1) % 3].cluster.clone();
        // Forwarding is what is measured: the follower hosts its replica
        // and knows the leader before the writes begin (before that, it
        // relays each write to a member on its own, which is not batched).
        let leader_id = members[leader].cluster.node_id();
        until("the follower to know the leader", || {
            use openraft::type_config::async_runtime::WatchReceiver;
            follower
                .group("default")
                .is_some_and(|raft| raft.metrics().borrow_watched().current_leader == Some(leader_id))
        })
        .await;
        let (calls_before, carried_before) = follower.forwarders.counts();
        // 200 aggregates, each written twice at sequence 0 at the same
        // time through the follower: exactly one write of each pair is
        // accepted.
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..400 {
            let cluster = follower.clone();
            writes.spawn(async move {
                let aggregate = format!("r{round}-agg-{}", i % 200);
                (i % 200, cluster.append("default", vec![event(&aggregate, 0), event(&aggregate, 1)], false).await)
            });
        }
        let mut accepted = BTreeMap::new();
        while let Some(done) = writes.join_next().await {
            let (aggregate, answer) = done.unwrap();
            match answer {
                Ok(token) => {
                    assert!(accepted.insert(aggregate, token).is_none(), "both writes of {aggregate} accepted")
                }
                Err(WriteError::Refused { code, .. }) => assert_eq!(code, "AXONIQ-2000"),
                Err(other) => panic!("unexpected answer {other:?}"),
            }
        }
        assert_eq!(accepted.len(), 200);
        let first = round * 400;
        let mut tokens: Vec<u64> = accepted.into_values().collect();
        tokens.sort();
        let expected: Vec<u64> = (0..200).map(|i| first + i * 2).collect();
        assert_eq!(tokens, expected, "each accepted write has its own tokens");
        let stored = agree_with_leader(&members, leader, first + 400).await;
        assert_eq!(stored.len() as u64, first + 400);
        let (calls, carried) = follower.forwarders.counts();
        let (calls, carried) = (calls - calls_before, carried - carried_before);
        let same_leader = leader_of(&members.iter().collect::<Vec<_>>(), "default") == Some(leader);
        if !same_leader || term(&members[leader]) != term_before {
            continue;
        }
        assert_eq!(carried, 400, "every transaction was forwarded once");
        assert!(calls < 400, "400 concurrent transactions took {calls} calls to the leader");
        stop_all(stop, &members).await;
        return;
    }
    panic!("the leader changed during each of five runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_reads_only_once_it_holds_every_confirmed_write() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let leader = leader_of(&members.iter().collect::<Vec<_>>(), "default").unwrap();
    let follower = &members[(leader + 1) % 3];
    // The reconciler opens the follower's store on its own time.
    until("the follower's store to open", || follower.contexts.get("default").is_some_and(|s| s.is_ok())).await;
    let store = follower.contexts.get("default").unwrap().unwrap();
    for seq in 0..30 {
        // Confirmed on the leader; the follower learns of the commit only
        // with the leader's next message.
        members[leader].cluster.append("default", vec![event("r", seq)], false).await.unwrap();
        follower.cluster.await_current("default").await.unwrap();
        assert_eq!(store.events.highest_sequence("r").unwrap(), Some(seq), "a stale read after write {seq}");
    }
    // The leader answers at once; so does a context no group stores here.
    members[leader].cluster.await_current("default").await.unwrap();
    follower.cluster.await_current("unknown").await.unwrap();
    stop_all(stop, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_a_read_index_only_to_callers_that_ask_for_it() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let leader = leader_of(&members.iter().collect::<Vec<_>>(), "default").unwrap();
    for seq in 0..5 {
        members[leader].cluster.append("default", vec![event("m", seq)], false).await.unwrap();
    }
    let last = {
        use openraft::type_config::async_runtime::WatchReceiver;
        let raft = members[leader].cluster.group("default").unwrap();
        raft.metrics().borrow_watched().last_applied.map_or(0, |id| id.index)
    };
    assert!(last > 0);
    let addr = format!("http://{}", members[leader].cluster.settings.node.internal_addr);
    let mut client = ranvier_proto::cluster::cluster_service_client::ClusterServiceClient::connect(addr).await.unwrap();
    let on = &members[leader].cluster;
    let ask = |skip_read_index| on.with_token(MembershipQuery { group: "default".into(), skip_read_index });
    let full = client.membership(ask(false)).await.unwrap().into_inner();
    assert!(full.leader);
    assert!(full.read_index >= last, "read index {} below the last confirmed write {last}", full.read_index);
    let members_only = client.membership(ask(true)).await.unwrap().into_inner();
    assert!(members_only.leader);
    assert_eq!(members_only.read_index, 0, "no read index was asked for");
    assert_eq!(members_only.members, full.members);
    stop_all(stop, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_through_a_leadership_move_instead_of_failing() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (stop, stopping) = watch::channel(false);
    let members = Arc::new(three_nodes(&stopping).await);
    members[0].cluster.append("default", vec![event("m", 0)], false).await.unwrap();
    for member in members.iter() {
        holds(member, "default", 1).await;
    }
    // Readers on every node, asking over and over while the leadership moves.
    let moving = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..3 {
        let (members, moving, reads) = (members.clone(), moving.clone(), reads.clone());
        readers.spawn(async move {
            while moving.load(Ordering::SeqCst) {
                members[i].cluster.await_current("default").await.map_err(|e| format!("node-{}: {e:?}", i + 1))?;
                reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), String>(())
        });
    }
    let refs: Vec<&Member> = members.iter().collect();
    for _ in 0..6 {
        let from = leader_of(&refs, "default").unwrap();
        let to = (from + 1) % 3;
        let raft = members[from].cluster.group("default").unwrap();
        raft.trigger().transfer_leader(members[to].cluster.node_id()).await.unwrap();
        until("the leadership to move", || leader_of(&refs, "default") == Some(to)).await;
    }
    moving.store(false, Ordering::SeqCst);
    while let Some(read) = readers.join_next().await {
        read.unwrap().unwrap();
    }
    assert!(reads.load(Ordering::SeqCst) > 0);
    let members = Arc::into_inner(members).unwrap();
    stop_all(stop, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_change_in_place_without_copying_the_store() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    for seq in 0..20 {
        members[0].cluster.append("default", vec![event("a", seq)], false).await.unwrap();
    }
    let third = &members[2];
    holds(third, "default", 20).await;
    let before = segment_inodes(third, "default");
    assert!(!before.is_empty());

    let set = |node: &str, role| AdminCommand::SetMember { group: "default".into(), node: node.into(), role };
    let mut seq = 20;
    for (role, shape) in [
        (Role::Secondary, "learner"),
        (Role::Primary, "voter"),
        (Role::ActiveBackup, "learner"),
        (Role::Primary, "voter"),
    ] {
        members[1].cluster.admin(set("node-3", role)).await.unwrap();
        let want = Some((role.name().to_string(), shape.to_string()));
        until(&format!("node-3 to be {role} ({shape})"), || {
            members
                .iter()
                .any(|m| leader_of(&[m], "default").is_some() && member_state(&m.cluster, "default", "node-3") == want)
        })
        .await;
        // Writes go on through every change.
        members[0].cluster.append("default", vec![event("a", seq)], false).await.unwrap();
        seq += 1;
    }
    holds(third, "default", seq as u64).await;
    assert_eq!(segment_inodes(third, "default"), before, "the store was not copied again");
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_role_changes_hands_over_first() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs, "default").unwrap();
    let name = format!("node-{}", leader + 1);
    let command = AdminCommand::SetMember { group: "default".into(), node: name.clone(), role: Role::PassiveBackup };
    members[0].cluster.admin(command).await.unwrap();
    let want = Some(("PASSIVE_BACKUP".to_string(), "learner".to_string()));
    until("the old leader to become a learner", || {
        members
            .iter()
            .any(|m| leader_of(&[m], "default").is_some() && member_state(&m.cluster, "default", &name) == want)
    })
    .await;
    assert_ne!(leader_of(&refs, "default"), Some(leader), "a learner does not lead");
    members[leader].cluster.append("default", vec![event("x", 0)], false).await.unwrap();
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_deletes_its_files_unless_preserved_and_reuses_them_when_added_back() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    members[0].cluster.append("default", vec![event("a", 0)], false).await.unwrap();
    let third = &members[2];
    holds(third, "default", 1).await;
    let before = segment_inodes(third, "default");
    let remove = |preserve| AdminCommand::RemoveMember { group: "default".into(), node: "node-3".into(), preserve };

    members[0].cluster.admin(remove(true)).await.unwrap();
    until("node-3 to close the group and its store", || {
        third.cluster.group("default").is_none() && third.contexts.get("default").is_none()
    })
    .await;
    assert_eq!(segment_inodes(third, "default"), before, "preserved files stay");
    members[0].cluster.append("default", vec![event("a", 1)], false).await.unwrap();

    let add = AdminCommand::SetMember { group: "default".into(), node: "node-3".into(), role: Role::Primary };
    members[1].cluster.admin(add.clone()).await.unwrap();
    holds(third, "default", 2).await;
    assert_eq!(segment_inodes(third, "default")[0], before[0], "the preserved segment was reused");

    members[0].cluster.admin(remove(false)).await.unwrap();
    let (events, log) = (third.dir.path().join("data/events/default"), third.dir.path().join("log/default"));
    until("node-3 to delete its files (no preserve)", || !events.exists() && !log.exists()).await;
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_and_groups_are_created_and_deleted_through_the_model() {
    let (stop, stopping) = watch::channel(false);
    let members = three_nodes(&stopping).await;
    let roles = BTreeMap::from([
        ("node-1".to_string(), Role::Primary),
        ("node-2".to_string(), Role::Primary),
        ("node-3".to_string(), Role::MessagingOnly),
    ]);
    members[2].cluster.admin(AdminCommand::CreateGroup { name: "sales".into(), members: roles }).await.unwrap();
    members[2]
        .cluster
        .admin(AdminCommand::CreateContext { name: "orders".into(), group: "sales".into() })
        .await
        .unwrap();
    // A messaging-only member stores nothing but its clients can write.
    let mut token = None;
    for _ in 0..100 {
        match members[2].cluster.append("orders", vec![event("o", 0)], false).await {
            Ok(first) => {
                token = Some(first);
                break;
            }
            Err(WriteError::NoLeader(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(token, Some(0));
    assert!(members[2].cluster.group("sales").is_none());
    assert!(members[2].contexts.get("orders").is_none());
    assert!(!members[2].dir.path().join("data/events/orders").exists());
    holds(&members[1], "orders", 1).await;

    let refused = members[0].cluster.admin(AdminCommand::DeleteGroup { name: "sales".into(), preserve: false }).await;
    assert!(matches!(refused, Err(WriteError::Refused { ref code, .. }) if code == "AXONIQ-2309"), "{refused:?}");
    members[0].cluster.admin(AdminCommand::DeleteContext { name: "orders".into(), preserve: false }).await.unwrap();
    members[0].cluster.admin(AdminCommand::DeleteGroup { name: "sales".into(), preserve: false }).await.unwrap();
    for member in &members[..2] {
        until("the group to close", || member.cluster.group("sales").is_none()).await;
        assert!(!member.dir.path().join("data/events/orders").exists());
    }
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_after_the_log_was_purged_catches_up_from_a_snapshot() {
    use openraft::type_config::async_runtime::WatchReceiver;
    let (stop, stopping) = watch::channel(false);
    let mut members = three_nodes(&stopping).await;
    // 120 two-event transactions through every node.
    for seq in 0..120 {
        members[seq as usize % 3]
            .cluster
            .append("default", vec![event("a", seq), event("b", seq)], false)
            .await
            .unwrap();
    }
    let refs: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&refs, "default").unwrap();
    let raft = members[leader].cluster.group("default").unwrap();
    until("the leader to purge its log", || {
        raft.metrics().borrow_watched().purged.is_some_and(|purged| purged.index > 10)
    })
    .await;
    let expected = members[leader].contexts.get("default").unwrap().unwrap().events.next_token();
    assert!(expected > 100, "{expected}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = members[0].cluster.settings.node.internal_addr.clone();
    let fourth = member("node-4", listener, &first, &stopping).await;
    holds(&fourth, "default", expected).await;
    // It got there through a snapshot (the log before it is gone).
    let raft = fourth.cluster.group("default").unwrap();
    until("node-4 to record the installed snapshot", || raft.metrics().borrow_watched().snapshot.is_some()).await;
    // Byte for byte the same events at the same tokens.
    let read = |member: &Member| {
        let store = member.contexts.get("default").unwrap().unwrap().events;
        let mut cursor = crate::store::Cursor::at(0);
        store.read_batch(&mut cursor, 100_000, usize::MAX).unwrap()
    };
    assert_eq!(read(&fourth), read(&members[leader]));
    // And it goes on replicating from the log.
    members[0].cluster.append("default", vec![event("after", 0)], false).await.unwrap();
    holds(&fourth, "default", expected + 1).await;
    members.push(fourth);
    let _ = stop.send(true);
    for member in &members {
        member.cluster.shutdown().await;
    }
}
