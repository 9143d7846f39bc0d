//! Three replicas of one group in one process, over an in-memory network:
//! entries committed through the leader land identically in every replica's
//! context store, and after the leader is lost the others elect a new one
//! and go on — over an in-memory network and over the internal gRPC API.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::errors::{RPCError, StreamingError, Unreachable};
use openraft::network::{NetSnapshot, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{Config, SnapshotPolicy};

use super::GroupRaft;
use super::log_store::LogStore;
use super::network::{Groups, GrpcNetwork, RaftRpcService};
use super::state_machine::{ContextStores, GroupStateMachine};
use super::types::{GroupCommand, GroupResponse, MemberNode, TypeConfig};
use crate::store::{ContextStore, FsSpace, StoreMetrics, StoreOptions};
use crate::transport::Transport;

type C = TypeConfig;

/// Delivers RPCs straight to the target's Raft; nodes in `down` are unreachable.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, GroupRaft>>>,
    down: Arc<Mutex<BTreeSet<u64>>>,
}

struct Link {
    target: u64,
    router: Router,
}

impl Router {
    fn reach(&self, target: u64) -> Result<GroupRaft, Unreachable<C>> {
        let down = self.down.lock().unwrap().contains(&target);
        match self.nodes.lock().unwrap().get(&target) {
            Some(raft) if !down => Ok(raft.clone()),
            _ => Err(Unreachable::from_string(format!("node {target} is down"))),
        }
    }
}

impl RaftNetworkFactory<C> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &MemberNode) -> Link {
        Link { target, router: self.clone() }
    }
}

impl RaftNetworkV2<C> for Link {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let raft = self.router.reach(self.target)?;
        raft.append_entries(rpc).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, _option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let raft = self.router.reach(self.target)?;
        raft.vote(rpc).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Cursor<Vec<u8>>>,
        _cancel: impl std::future::Future<Output = openraft::errors::ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let raft = self.router.reach(self.target)?;
        raft.install_full_snapshot(vote, snapshot).await.map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}

struct OneContext(ContextStore);

impl ContextStores for OneContext {
    fn store(&self, context: &str) -> Result<ContextStore, String> {
        if context == "orders" { Ok(self.0.clone()) } else { Err(format!("No eventstore found for context {context}")) }
    }
}

struct Replica {
    raft: GroupRaft,
    store: ContextStore,
    _dir: tempfile::TempDir,
}

async fn start_replica<N>(id: u64, network: N) -> Replica
where
    N: RaftNetworkFactory<C>,
    N::Network: NetSnapshot<C, SnapshotData = Cursor<Vec<u8>>>,
{
    let dir = tempfile::tempdir().unwrap();
    let metrics = (StoreMetrics::detached(), StoreMetrics::detached());
    let data = dir.path().join("data");
    let store = ContextStore::open(
        "orders",
        &data,
        &data,
        StoreOptions::default(),
        StoreOptions::default(),
        metrics,
        Arc::new(FsSpace),
    )
    .unwrap();
    let log = LogStore::open(&dir.path().join("log"), 1 << 20).unwrap();
    let machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(OneContext(store.clone()))).unwrap();
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    }
    .validate()
    .unwrap();
    let raft = GroupRaft::new(id, Arc::new(config), network, log, machine).await.unwrap();
    Replica { raft, store, _dir: dir }
}

/// Three replicas reachable through `router`.
async fn in_memory_replicas(router: &Router) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for id in 1..=3 {
        let replica = start_replica(id, router.clone()).await;
        router.nodes.lock().unwrap().insert(id, replica.raft.clone());
        replicas.push(replica);
    }
    replicas
}

fn event(aggregate: &str, seq: i64) -> Bytes {
    crate::test_util::event(aggregate, seq, 0)
}

async fn leader_among(replicas: &[&Replica]) -> u64 {
    let metrics = replicas[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

/// Writes through a node that has become leader. A fresh leader may refuse
/// writes briefly (its lease); clients retry on "forward to leader", and so
/// does this, a bounded number of times.
async fn write_through(raft: &GroupRaft, command: GroupCommand) -> openraft::raft::ClientWriteResponse<C> {
    raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leader").await.unwrap();
    for _ in 0..100 {
        match raft.client_write(command.clone()).await {
            Ok(done) => return done,
            Err(error) if error.forward_to_leader().is_some() => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(error) => panic!("write failed: {error}"),
        }
    }
    panic!("the leader never accepted the write");
}

/// Waits until `replica` has applied the log up to `index`.
async fn applied(replica: &Replica, index: u64) {
    replica.raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(index), "applied").await.unwrap();
}

fn read_all(store: &ContextStore) -> Vec<Bytes> {
    let mut cursor = crate::store::Cursor::at(0);
    store.events.read_batch(&mut cursor, 10_000, 1 << 24).unwrap().into_iter().map(|(_, e)| e).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_commit_identically_and_survive_losing_the_leader() {
    let router = Router::default();
    let replicas = in_memory_replicas(&router).await;
    let addresses = vec![String::new(); 3];
    scenario(replicas, addresses, |leader| {
        router.down.lock().unwrap().insert(leader);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_over_the_internal_grpc_api() {
    use ranvier_proto::cluster::raft_service_server::RaftServiceServer;
    let token = Some("s3cret".to_owned());
    let mut replicas = Vec::new();
    let mut addresses = Vec::new();
    let mut servers = Vec::new();
    for id in 1..=3 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap().to_string());
        let replica =
            start_replica(id, GrpcNetwork::new("default", Arc::new(Transport::new(token.clone())), Default::default()))
                .await;
        let groups = Groups::default();
        groups.insert("default", replica.raft.clone());
        let service = RaftServiceServer::new(RaftRpcService::new(groups, Arc::new(Transport::new(token.clone()))));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        servers
            .push(tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming)));
        replicas.push(replica);
    }
    // A caller without the internal token is refused.
    let mut stranger =
        ranvier_proto::cluster::raft_service_client::RaftServiceClient::connect(format!("http://{}", addresses[0]))
            .await
            .unwrap();
    let refused = stranger
        .vote(ranvier_proto::cluster::RaftRequest { group: "default".into(), json: Bytes::from_static(b"{}") })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    scenario(replicas, addresses, |leader| servers[(leader - 1) as usize].abort()).await;
}

/// Forms the group, commits through the leader, checks every replica, cuts
/// the leader off with `cut_off`, and commits through the new leader.
async fn scenario(replicas: Vec<Replica>, addresses: Vec<String>, cut_off: impl FnOnce(u64)) {
    let members: BTreeMap<u64, MemberNode> = (1..=3)
        .map(|id| (id, MemberNode { name: format!("node-{id}"), internal_addr: addresses[(id - 1) as usize].clone() }))
        .collect();
    replicas[0].raft.initialize(members).await.unwrap();
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = leader_among(&all).await;
    // Writes go through the leader and are answered once applied there.
    let leader_raft = &replicas[(leader - 1) as usize].raft;
    let write = |events| GroupCommand::AppendEvents { context: "orders".into(), events };
    let first = write_through(leader_raft, write(vec![event("a", 0), event("a", 1)])).await;
    assert_eq!(first.data, GroupResponse::Appended { first_token: 0 });
    let conflict = write_through(leader_raft, write(vec![event("a", 1)])).await;
    assert!(matches!(conflict.data, GroupResponse::Refused { ref code, .. } if code == "AXONIQ-2000"));
    let third = write_through(leader_raft, write(vec![event("a", 2)])).await;
    assert_eq!(third.data, GroupResponse::Appended { first_token: 2 });

    for replica in &replicas {
        applied(replica, third.log_id.index).await;
    }
    let expected = vec![event("a", 0), event("a", 1), event("a", 2)];
    for replica in &replicas {
        assert_eq!(read_all(&replica.store), expected, "every replica holds the same events at the same tokens");
    }

    // The leader goes away: the other two elect a new leader and go on.
    cut_off(leader);
    replicas[(leader - 1) as usize].raft.shutdown().await.unwrap();
    let survivors: Vec<&Replica> =
        replicas.iter().enumerate().filter(|(i, _)| *i as u64 + 1 != leader).map(|(_, r)| r).collect();
    let new_leader = survivors[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some_and(|l| l != leader), "a new leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();
    let new_leader_raft = &replicas[(new_leader - 1) as usize].raft;
    let after = write_through(new_leader_raft, write(vec![event("a", 3)])).await;
    assert_eq!(after.data, GroupResponse::Appended { first_token: 3 });
    for replica in &survivors {
        applied(replica, after.log_id.index).await;
        assert_eq!(read_all(&replica.store).len(), 4);
    }
    for replica in &survivors {
        replica.raft.shutdown().await.unwrap();
    }
}

/// Not a timing assertion: prints the in-process write latency, to tell the
/// Raft path's own cost from the cost of three processes on two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "diagnostic; run with --ignored --nocapture"]
async fn print_in_process_write_latency() {
    let router = Router::default();
    let replicas = in_memory_replicas(&router).await;
    let members: BTreeMap<u64, MemberNode> =
        (1..=3).map(|id| (id, MemberNode { name: format!("node-{id}"), internal_addr: String::new() })).collect();
    replicas[0].raft.initialize(members).await.unwrap();
    let all: Vec<&Replica> = replicas.iter().collect();
    let leader = leader_among(&all).await;
    let raft = &replicas[(leader - 1) as usize].raft;
    write_through(raft, GroupCommand::AppendEvents { context: "orders".into(), events: vec![event("w", 0)] }).await;
    let started = std::time::Instant::now();
    for seq in 1..=300 {
        raft.client_write(GroupCommand::AppendEvents { context: "orders".into(), events: vec![event("w", seq)] })
            .await
            .unwrap();
    }
    println!("in-process write latency: {:?} per write", started.elapsed() / 300);
}
