//! Clustering of this node (work in progress): runs one replication group per
//! context on openraft, forms the cluster by autocluster, and routes client
//! writes to each group's leader.
//!
//! Formation (`axoniq.axonserver.autocluster.first`): on a clean start the
//! node whose internal `host:port` is the configured first initialises every
//! group with itself as the only member; every other node asks the first to
//! join, and is added as a learner, caught up, then made a voter (PRIMARY).
//! A node whose groups already have a membership (a restart) does neither.
//!
//! Writes: a client's transaction is proposed on this node's group; when
//! another node leads, it is forwarded to the leader over the internal API;
//! while no leader is known the node waits up to the election timeout, then
//! answers that no leader is available. Reads are served from the local
//! replica.
//!
//! Not yet: the `_admin` group and its model, roles other than PRIMARY,
//! role changes, the admin REST API and `ranvierctl` (all in the clustering
//! issue).

pub mod roles;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::ChangeMembers;
use ranvier_proto::cluster::cluster_service_client::ClusterServiceClient;
use ranvier_proto::cluster::cluster_service_server::{ClusterService, ClusterServiceServer};
use ranvier_proto::cluster::raft_service_server::RaftServiceServer;
use ranvier_proto::cluster::{ForwardedAppend, ForwardedReply, JoinReply, JoinRequest};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::raft::GroupRaft;
use crate::raft::log_store::LogStore;
use crate::raft::network::{Groups, GrpcNetwork, RaftRpcService, attach_internal_token, check_internal_token};
use crate::raft::state_machine::{ContextStores, GroupStateMachine};
use crate::raft::types::{GroupCommand, GroupResponse, MemberNode};

/// Size of one replication log segment file.
const LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Attempts of a write while leadership settles.
const WRITE_ATTEMPTS: u32 = 50;
/// A write not committed within this time is answered with a timeout (it
/// may still commit later; it was never confirmed). Bounds how long a node
/// cut off from its group's majority keeps clients waiting.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between join attempts, at most.
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the cluster needs from the node's configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's name.
    pub name: String,
    /// This node's internal `host:port`.
    pub internal_addr: String,
    /// The internal `host:port` of the node that forms the cluster.
    pub first: String,
    /// Required on node-to-node calls, when set.
    pub token: Option<String>,
    /// Replication logs, one directory per group.
    pub log_dir: PathBuf,
    /// The groups (one per context).
    pub groups: Vec<String>,
    /// Election timeout range and heartbeat interval, in ms.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout.
    pub election_timeout_max_ms: u64,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A group's log or state machine could not be opened.
    #[error("failed to open replication group {group}: {source}")]
    Open {
        /// The group.
        group: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// openraft refused the configuration or failed to start.
    #[error("failed to start replication group {group}: {reason}")]
    Raft {
        /// The group.
        group: String,
        /// The cause.
        reason: String,
    },
}

/// Why a clustered write did not store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Refused the same way on every replica (Axon error code and message).
    Refused {
        /// `AXONIQ-2000`, …
        code: String,
        /// For the client.
        message: String,
    },
    /// No leader became known in time.
    NoLeader(String),
    /// Proposed but not committed in time (e.g. cut off from the majority).
    Timeout(String),
    /// Anything else (network, storage).
    Failed(String),
}

/// A stable node id for Raft from the node's name (FNV-1a, never 0).
pub fn node_id(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

/// This node's part of the cluster.
pub struct Cluster {
    settings: ClusterSettings,
    node_id: u64,
    groups: Groups,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Cluster {
    /// Opens every group's log and state machine and starts its Raft.
    pub async fn start(settings: ClusterSettings, stores: Arc<dyn ContextStores>) -> Result<Arc<Self>, ClusterError> {
        let node_id = node_id(&settings.name);
        let raft_config = openraft::Config {
            cluster_name: "ranvier".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft { group: String::new(), reason: e.to_string() })?;
        let raft_config = Arc::new(raft_config);
        let groups = Groups::default();
        for group in &settings.groups {
            let open = |source| ClusterError::Open { group: group.clone(), source };
            let dir = settings.log_dir.join(group);
            let log = LogStore::open(&dir, LOG_SEGMENT_BYTES).map_err(open)?;
            let machine = GroupStateMachine::open(&dir, stores.clone()).map_err(open)?;
            let network = GrpcNetwork::new(group, settings.token.clone());
            let raft = GroupRaft::new(node_id, raft_config.clone(), network, log, machine)
                .await
                .map_err(|e| ClusterError::Raft { group: group.clone(), reason: e.to_string() })?;
            groups.insert(group, raft);
        }
        tracing::info!(node = %settings.name, node_id, groups = ?settings.groups, "replication groups started");
        Ok(Arc::new(Self { settings, node_id, groups, channels: Mutex::new(HashMap::new()) }))
    }

    /// The internal gRPC services: Raft traffic and cluster membership/forwarding.
    pub fn services(self: &Arc<Self>) -> (RaftServiceServer<RaftRpcService>, ClusterServiceServer<ClusterRpc>) {
        let raft = RaftServiceServer::new(RaftRpcService::new(self.groups.clone(), self.settings.token.clone()));
        (raft, ClusterServiceServer::new(ClusterRpc { cluster: self.clone() }))
    }

    fn me(&self) -> MemberNode {
        MemberNode { name: self.settings.name.clone(), internal_addr: self.settings.internal_addr.clone() }
    }

    /// Forms the cluster in the background (see the module docs); stops
    /// trying when `stopping` turns true.
    pub fn spawn_formation(self: &Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cluster.form() => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        });
    }

    async fn form(&self) {
        use openraft::type_config::async_runtime::WatchReceiver;
        let first = self.settings.internal_addr == self.settings.first;
        let mut pending = Vec::new();
        for group in &self.settings.groups {
            let Some(raft) = self.groups.get(group) else { continue };
            let initialized = raft.is_initialized().await.unwrap_or(false);
            // A node stopped between being added as a learner and being made
            // a voter comes back initialized but still a learner: it asks
            // again. A node absent from the membership (removed) does not.
            let learner = {
                let metrics = raft.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership();
                membership.learner_ids().any(|id| id == self.node_id)
            };
            if !initialized || (!first && learner) {
                pending.push((group.clone(), raft));
            }
        }
        if pending.is_empty() {
            return;
        }
        if first {
            for (group, raft) in pending {
                let members = BTreeMap::from([(self.node_id, self.me())]);
                match raft.initialize(members).await {
                    Ok(()) => tracing::info!(%group, "formed replication group with this node"),
                    Err(error) => tracing::warn!(%group, %error, "failed to form replication group"),
                }
            }
            return;
        }
        let groups: Vec<String> = pending.into_iter().map(|(group, _)| group).collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.join(&groups).await {
                Ok(joined) => {
                    tracing::info!(first = %self.settings.first, groups = ?joined, "joined the cluster");
                    return;
                }
                Err(error) => {
                    tracing::info!(first = %self.settings.first, %error, "joining the cluster; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
    }

    async fn join(&self, groups: &[String]) -> Result<Vec<String>, Status> {
        let request = JoinRequest {
            node_name: self.settings.name.clone(),
            internal_addr: self.settings.internal_addr.clone(),
            groups: groups.to_vec(),
        };
        let mut client = ClusterServiceClient::new(self.channel(&self.settings.first)?);
        let reply = client.join(self.with_token(request)).await?;
        Ok(reply.into_inner().joined)
    }

    fn channel(&self, addr: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::invalid_argument(format!("bad internal address {addr}: {e}")))?;
        let channel = endpoint.tcp_nodelay(true).connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    fn with_token<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        attach_internal_token(&mut request, self.settings.token.as_deref());
        request
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_internal_token(request, self.settings.token.as_deref())
    }

    /// This node's Raft of a group.
    pub fn group(&self, name: &str) -> Option<GroupRaft> {
        self.groups.get(name)
    }

    /// This node's Raft node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Stores a client transaction through the context's group: here when
    /// this node leads, else at the leader.
    pub async fn append(&self, context: &str, events: Vec<Bytes>, snapshot: bool) -> Result<u64, WriteError> {
        let Some(raft) = self.groups.get(context) else {
            let message = format!("No eventstore found for context {context}");
            return Err(WriteError::Refused { code: "AXONIQ-6000".into(), message });
        };
        let command = if snapshot {
            let event = events.into_iter().next().unwrap_or_default();
            GroupCommand::AppendSnapshot { context: context.to_owned(), snapshot: event }
        } else {
            GroupCommand::AppendEvents { context: context.to_owned(), events }
        };
        let wait = Duration::from_millis(self.settings.election_timeout_max_ms);
        for _ in 0..WRITE_ATTEMPTS {
            let error = match tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command.clone())).await {
                Ok(Ok(written)) => return outcome(written.data),
                Ok(Err(error)) => error,
                Err(_) => {
                    let message = format!("not committed within {} s for context {context}", COMMIT_TIMEOUT.as_secs());
                    return Err(WriteError::Timeout(message));
                }
            };
            let Some(forward) = error.forward_to_leader() else { return Err(WriteError::Failed(error.to_string())) };
            match (&forward.leader_id, &forward.leader_node) {
                (Some(leader), Some(node)) if *leader != self.node_id => {
                    return self.forward(&node.internal_addr, context, &command).await;
                }
                (Some(_), _) => tokio::time::sleep(Duration::from_millis(20)).await,
                (None, _) => {
                    let known = raft.wait(Some(wait)).metrics(|m| m.current_leader.is_some(), "a leader").await;
                    if known.is_err() {
                        return Err(WriteError::NoLeader(format!("no leader for context {context}")));
                    }
                }
            }
        }
        Err(WriteError::NoLeader(format!("no leader accepted the write for context {context}")))
    }

    async fn forward(&self, leader: &str, context: &str, command: &GroupCommand) -> Result<u64, WriteError> {
        let (events, snapshot) = match command {
            GroupCommand::AppendEvents { events, .. } => (events.clone(), false),
            GroupCommand::AppendSnapshot { snapshot, .. } => (vec![snapshot.clone()], true),
        };
        let message = ForwardedAppend { context: context.to_owned(), events, snapshot };
        let channel = self.channel(leader).map_err(|s| WriteError::Failed(s.message().to_owned()))?;
        let reply = ClusterServiceClient::new(channel)
            .append(self.with_token(message))
            .await
            .map_err(|s| {
                WriteError::NoLeader(format!("the leader at {leader} did not take the write: {}", s.message()))
            })?
            .into_inner();
        if reply.error_code.is_empty() {
            Ok(reply.first_token as u64)
        } else {
            Err(WriteError::Refused { code: reply.error_code, message: reply.message })
        }
    }

    /// What this node sees of each group: leader, term, log position and
    /// members with their roles (Axon's `/v1/public/replicationgroups` shape).
    pub fn status(&self) -> Vec<serde_json::Value> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let mut out = Vec::new();
        for group in &self.settings.groups {
            let Some(raft) = self.groups.get(group) else { continue };
            let metrics = raft.metrics().borrow_watched().clone();
            let membership = metrics.membership_config.membership();
            let name_of = |id: &u64| membership.get_node(id).map(|n| n.name.clone());
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let roles: Vec<serde_json::Value> = membership
                .nodes()
                .map(|(id, node)| {
                    let role = if voters.contains(id) { "PRIMARY" } else { "LEARNER" };
                    serde_json::json!({ "node": node.name, "role": role })
                })
                .collect();
            out.push(serde_json::json!({
                "name": group,
                "leader": metrics.current_leader.as_ref().and_then(name_of),
                "term": metrics.current_term,
                "lastLogIndex": metrics.last_log_index,
                "appliedIndex": metrics.last_applied.map(|id| id.index),
                "roles": roles,
            }));
        }
        out
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        for group in &self.settings.groups {
            if let Some(raft) = self.groups.get(group)
                && let Err(error) = raft.shutdown().await
            {
                tracing::warn!(%group, %error, "replication group did not stop cleanly");
            }
        }
    }
}

fn outcome(response: GroupResponse) -> Result<u64, WriteError> {
    match response {
        GroupResponse::Appended { first_token } => Ok(first_token),
        GroupResponse::Refused { code, message } => Err(WriteError::Refused { code, message }),
        GroupResponse::Applied => Err(WriteError::Failed("the entry stored nothing".into())),
    }
}

/// The internal ClusterService.
pub struct ClusterRpc {
    cluster: Arc<Cluster>,
}

#[tonic::async_trait]
impl ClusterService for ClusterRpc {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        self.cluster.authorize(&request)?;
        let request = request.into_inner();
        let id = node_id(&request.node_name);
        let node = MemberNode { name: request.node_name.clone(), internal_addr: request.internal_addr.clone() };
        let mut joined = Vec::new();
        for group in &request.groups {
            let Some(raft) = self.cluster.groups.get(group) else { continue };
            raft.add_learner(id, node.clone(), true).await.map_err(|e| Status::unavailable(e.to_string()))?;
            let voters = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            raft.change_membership(voters, false).await.map_err(|e| Status::unavailable(e.to_string()))?;
            tracing::info!(%group, node = %request.node_name, "node joined replication group as PRIMARY");
            joined.push(group.clone());
        }
        Ok(Response::new(JoinReply { joined }))
    }

    async fn append(&self, request: Request<ForwardedAppend>) -> Result<Response<ForwardedReply>, Status> {
        self.cluster.authorize(&request)?;
        let request = request.into_inner();
        let Some(raft) = self.cluster.groups.get(&request.context) else {
            return Err(Status::not_found(format!("context {} is not hosted here", request.context)));
        };
        let command = if request.snapshot {
            let snapshot = request.events.into_iter().next().unwrap_or_default();
            GroupCommand::AppendSnapshot { context: request.context, snapshot }
        } else {
            GroupCommand::AppendEvents { context: request.context, events: request.events }
        };
        let written = tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command))
            .await
            .map_err(|_| Status::deadline_exceeded("not committed in time"))?
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let reply = match outcome(written.data) {
            Ok(first_token) => ForwardedReply { first_token: first_token as i64, ..Default::default() },
            Err(WriteError::Refused { code, message }) => ForwardedReply { first_token: -1, error_code: code, message },
            Err(WriteError::NoLeader(message) | WriteError::Failed(message) | WriteError::Timeout(message)) => {
                return Err(Status::unavailable(message));
            }
        };
        Ok(Response::new(reply))
    }
}
