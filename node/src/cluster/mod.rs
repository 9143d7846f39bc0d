//! Clustering of this node: the `_admin` replication group and the cluster
//! model it replicates, one openraft group per replication group this node
//! stores, and where writes and reads go. This file holds the [`Cluster`]
//! itself (its start, its groups, its services); each job has a file:
//!
//! - `model`: the cluster model (nodes, groups, roles, contexts) and the
//!   admin commands that change it; `roles`: the five roles and their Raft
//!   shapes;
//! - `formation`: founding or joining the cluster (autocluster,
//!   init-cluster, register-node) and admin changes;
//! - `reconcile`: makes local groups, stores and Raft memberships follow
//!   the model;
//! - `writes`: a client transaction or admin change to its group's leader
//!   (batched there by `batch`, forwarded from a follower in batches by
//!   `forwarding`, relayed from a node without a replica), and Axon's
//!   commit rule; `rpc` serves the forwarded calls;
//! - `reads`: where clients connect, and read-your-writes on any replica;
//! - `tier`: with SECONDARY members, primaries retire old segments and
//!   read them back from a secondary;
//! - `fetch`: copying stored transactions from another node (snapshots);
//! - `status`: every group's status as this node sees it; `readiness`:
//!   whether this node is ready, and why not.
//!
//! Node-to-node calls go through the node's `transport`.
//!
//! Roles map onto Raft like this (see `roles`): PRIMARY members are voters;
//! ACTIVE_BACKUP, PASSIVE_BACKUP and SECONDARY members are learners;
//! MESSAGING_ONLY nodes are not members. Axon's commit rule — a majority of
//! primaries **and** `min-active-backups` active backups — is kept as: Raft
//! commits on the primaries' majority, and the leader confirms a write to
//! its client only once `min-active-backups` active backups hold it (and
//! refuses new writes while fewer are in sync). Axon's active backups grant
//! every vote unconditionally, so their votes carry no information and
//! leaving them out of elections changes nothing.

mod batch;
mod fetch;
mod formation;
mod forwarding;
pub mod model;
pub mod readiness;
mod reads;
mod reconcile;
pub mod roles;
mod rpc;
mod status;
#[cfg(test)]
mod tests;
mod tier;
mod writes;

pub use status::node_state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ranvier_proto::cluster::cluster_service_server::ClusterServiceServer;
use ranvier_proto::cluster::raft_service_server::RaftServiceServer;
use ranvier_proto::cluster::{AdminProposal, FetchRequest, ForwardedAppend, MembershipQuery, TransactionChunk};
use tokio::sync::watch;
use tonic::{Request, Status};

use crate::contexts::Contexts;
use crate::raft::GroupRaft;
use crate::raft::log_store::{LogStore, TAIL_CACHE_BYTES, TailBudget};
use crate::raft::network::{Addresses, Groups, GrpcNetwork, MAX_PAYLOAD_ENTRIES, RaftRpcService};
use crate::raft::state_machine::GroupStateMachine;
use crate::raft::types::{GroupCommand, GroupResponse, MemberNode};
use crate::store::DiskReserve;
use crate::transport::{BadAddress, INTERNAL_MESSAGE_MAX, Transport};
use fetch::GrpcSource;
use model::{ADMIN, AdminCommand, ClusterModel, NodeInfo};
use ranvier_wire::admin::{GroupStatus, MemberRole, MemberStatus};
use reads::read_index;
use roles::Role;
pub use rpc::ClusterRpc;
use status::{leader_name, raft_place};
use writes::{COMMIT_TIMEOUT, Proposed, applied};

/// Size of one replication log segment file.
const LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// What the cluster needs from the node's configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node as the cluster model lists it (name, addresses, ports).
    pub node: NodeInfo,
    /// The internal `host:port` of the node that forms the cluster by
    /// autocluster; `None` to form it by hand (init-cluster, register-node).
    pub first: Option<String>,
    /// `first` names this node (in any spelling of its addresses): it
    /// founds the cluster instead of joining it.
    pub first_is_me: bool,
    /// Contexts to create (first node) or join (the others) by autocluster.
    pub contexts: Vec<String>,
    /// Required on node-to-node calls, when set.
    pub token: Option<String>,
    /// How node-to-node calls speak TLS; `None`: plain text.
    pub tls: Option<crate::tls::client::Trust>,
    /// Replication logs, one directory per group.
    pub log_dir: PathBuf,
    /// Election timeout range and heartbeat interval, in ms.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout.
    pub election_timeout_max_ms: u64,
    /// How long a write waits for a reachable leader of its group.
    pub wait_for_leader_ms: u64,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Active backups that must hold a write before it is confirmed.
    pub min_active_backups: usize,
    /// A group snapshots (and may purge its log) after this many entries.
    pub snapshot_interval_entries: u64,
    /// Log entries kept behind a snapshot for members slightly behind.
    pub log_entries_kept: u64,
    /// Memory for the newest log entries of all groups together.
    pub log_cache_bytes: usize,
    /// With SECONDARY members in a group, its primaries keep events younger
    /// than this (ms) on their own disk; older segments are retired.
    pub event_retention_ms: u64,
    /// How often a primary looks for segments to retire (ms).
    pub tier_check_interval_ms: u64,
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

/// Why a clustered write (or admin change) did not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Refused the same way on every replica (Axon error code and message).
    Refused {
        /// `AXONIQ-2000`, …
        code: String,
        /// For the client.
        message: String,
    },
    /// No leader became known in time, or the group cannot accept writes
    /// (too few active backups in sync).
    NoLeader(String),
    /// Another node leads the group and this proposal may not be passed
    /// on: nothing was proposed.
    NotLeader(String),
    /// The node it was to be passed to could not be reached at all (the
    /// connection was refused): it provably never got it.
    Unreached(String),
    /// Proposed but not confirmed in time (cut off from the majority, or
    /// committed without its active backups): it may be stored, so it is
    /// never proposed again on the client's behalf.
    Timeout(String),
    /// Anything else (network, storage).
    Failed(String),
}

impl WriteError {
    fn message(&self) -> &str {
        match self {
            WriteError::Refused { message, .. }
            | WriteError::NoLeader(message)
            | WriteError::NotLeader(message)
            | WriteError::Unreached(message)
            | WriteError::Timeout(message)
            | WriteError::Failed(message) => message,
        }
    }
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
    raft_config: Arc<openraft::Config>,
    groups: Groups,
    contexts: Arc<Contexts>,
    model: watch::Receiver<Arc<ClusterModel>>,
    /// Connections to other nodes, and the internal token.
    transport: Arc<Transport>,
    /// Group → contexts whose stores this node opened for it.
    hosted: tokio::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Fetches stored transactions from other nodes (snapshot installs).
    source: Arc<GrpcSource>,
    /// Where this node leads a group: the queue of its next batched entry.
    batchers: batch::Batchers,
    /// Where this node follows a group: the queue of the next call to its leader.
    forwarders: forwarding::Forwarders,
    /// This cluster, for the tasks it spawns.
    me: std::sync::Weak<Cluster>,
    /// Where each node is reached now (from the model): Raft links follow
    /// a node that came back on another address.
    addresses: Addresses,
    /// Memory for the newest log entries, shared by every group's log.
    log_cache: TailBudget,
    /// Free space below which this node takes no new transactions (as a
    /// leader) and no new log entries (as a replica): the stores' and the
    /// logs' file systems.
    reserve: DiskReserve,
    /// What forming or joining the cluster is doing while it is under way
    /// (for readiness), `None` once done or when not started.
    formation: Mutex<Option<String>>,
    /// When this runtime started (a node's uptime, as the console shows it).
    started: std::time::Instant,
}

/// Records every node's internal address from the model.
fn record_addresses(addresses: &Addresses, model: &ClusterModel) {
    for (name, node) in &model.nodes {
        addresses.set(node_id(name), &node.internal_addr);
    }
}

/// Longest install of a snapshot (streaming the missing transactions).
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 30 * 60 * 1000;

impl Cluster {
    /// Opens the `_admin` group (with the cluster model) and starts its Raft;
    /// the other groups are opened by the reconciler as the model lists them.
    pub async fn start(settings: ClusterSettings, contexts: Arc<Contexts>) -> Result<Arc<Self>, ClusterError> {
        let node_id = node_id(&settings.node.name);
        let raft_config = openraft::Config {
            cluster_name: "ranvier".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_interval_entries.max(1)),
            // Entries are batches of up to ~1 MiB: this bounds one request.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            max_in_snapshot_log_to_keep: settings.log_entries_kept,
            // Installing a snapshot streams the missing transactions first.
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            // A node back from a crash or a partition asks first whether it
            // could win, instead of raising the term and unseating a healthy
            // leader (whose clients would wait out a needless election).
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft { group: String::new(), reason: e.to_string() })?;
        let raft_config = Arc::new(raft_config);
        let open = |source| ClusterError::Open { group: ADMIN.into(), source };
        let dir = settings.log_dir.join(ADMIN);
        let log_cache = TailBudget::new(settings.log_cache_bytes);
        let log =
            LogStore::open_with_tail(&dir, LOG_SEGMENT_BYTES, TAIL_CACHE_BYTES, log_cache.clone()).map_err(open)?;
        let transport = Arc::new(Transport::new(settings.token.clone()).with_tls(settings.tls.clone()));
        let source =
            Arc::new(GrpcSource { address: settings.node.internal_addr.clone(), transport: transport.clone() });
        let (machine, model) = GroupStateMachine::open_admin(&dir, contexts.clone()).map_err(open)?;
        let machine = machine.with_source(source.clone());
        let addresses = Addresses::default();
        record_addresses(&addresses, &model.borrow());
        let network = GrpcNetwork::new(ADMIN, transport.clone(), addresses.clone()).reserve_exempt();
        let admin = GroupRaft::new(node_id, raft_config.clone(), network, log, machine)
            .await
            .map_err(|e| ClusterError::Raft { group: ADMIN.into(), reason: e.to_string() })?;
        let groups = Groups::default();
        groups.insert(ADMIN, admin);
        tracing::info!(node = %settings.node.name, node_id, "cluster runtime started");
        let reserve = contexts.reserve(std::slice::from_ref(&settings.log_dir));
        Ok(Arc::new_cyclic(|me| Self {
            started: std::time::Instant::now(),
            reserve,
            settings,
            node_id,
            raft_config,
            groups,
            contexts,
            model,
            transport,
            hosted: tokio::sync::Mutex::new(BTreeMap::new()),
            source,
            batchers: batch::Batchers::default(),
            forwarders: forwarding::Forwarders::default(),
            me: me.clone(),
            addresses,
            log_cache,
            formation: Mutex::new(None),
        }))
    }

    /// Opens a data group's log and state machine and starts its Raft.
    async fn open_group(&self, group: &str) -> Result<GroupRaft, ClusterError> {
        let open = |source| ClusterError::Open { group: group.to_owned(), source };
        let dir = self.settings.log_dir.join(group);
        let log = LogStore::open_with_tail(&dir, LOG_SEGMENT_BYTES, TAIL_CACHE_BYTES, self.log_cache.clone())
            .map_err(open)?;
        let machine =
            GroupStateMachine::open(&dir, self.contexts.clone()).map_err(open)?.with_source(self.source.clone());
        let network = GrpcNetwork::new(group, self.transport.clone(), self.addresses.clone());
        let raft = GroupRaft::new(self.node_id, self.raft_config.clone(), network, log, machine)
            .await
            .map_err(|e| ClusterError::Raft { group: group.to_owned(), reason: e.to_string() })?;
        self.groups.insert(group, raft.clone());
        tracing::info!(%group, "replication group opened");
        Ok(raft)
    }

    /// The internal gRPC services: Raft traffic and forwarding.
    pub fn services(self: &Arc<Self>) -> (RaftServiceServer<RaftRpcService>, ClusterServiceServer<ClusterRpc>) {
        let service = RaftRpcService::new(self.groups.clone(), self.transport.clone())
            .with_reserve(self.reserve.clone(), &[ADMIN]);
        let raft = RaftServiceServer::new(service)
            .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
            .max_encoding_message_size(INTERNAL_MESSAGE_MAX);
        let cluster = ClusterServiceServer::new(ClusterRpc::new(self.clone()))
            .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
            .max_encoding_message_size(INTERNAL_MESSAGE_MAX);
        (raft, cluster)
    }

    fn member_node(info: &NodeInfo) -> MemberNode {
        MemberNode { name: info.name.clone(), internal_addr: info.internal_addr.clone() }
    }

    /// The cluster model as it changes (for work that follows the nodes).
    pub fn model_changes(&self) -> watch::Receiver<Arc<ClusterModel>> {
        self.model.clone()
    }

    /// Where the replication logs live (one folder per group).
    pub fn log_dir(&self) -> &std::path::Path {
        &self.settings.log_dir
    }

    /// The cluster model as this node's `_admin` replica holds it.
    pub fn model(&self) -> Arc<ClusterModel> {
        self.model.borrow().clone()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.settings.node.name
    }

    /// Forms the cluster in the background (see the module docs) and runs
    /// the reconciler; both stop when `stopping` turns true.
    pub fn spawn(self: &Arc<Self>, stopping: watch::Receiver<bool>) {
        let cluster = self.clone();
        let mut stop = stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cluster.form() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
        let cluster = self.clone();
        let tier_stopping = stopping.clone();
        tokio::spawn(async move { cluster.run_reconciler(stopping).await });
        let cluster = self.clone();
        tokio::spawn(async move { cluster.run_tier(tier_stopping).await });
    }

    /// Whether this node is ready to serve, and what it waits for if not
    /// (see [`readiness`]).
    pub fn readiness(&self) -> readiness::Readiness {
        use openraft::type_config::async_runtime::WatchReceiver;
        let mut local = BTreeMap::new();
        for group in self.groups.names() {
            let Some(raft) = self.groups.get(&group) else { continue };
            let metrics = raft.metrics().borrow_watched().clone();
            let shape = raft_place(&metrics, self.node_id);
            local.insert(group, readiness::LocalGroup { leader: leader_name(&metrics), shape });
        }
        let formation = self.formation.lock().unwrap_or_else(|p| p.into_inner()).clone();
        readiness::assess(&self.model(), &self.settings.node.name, &local, formation.as_deref())
    }

    fn with_token<T>(&self, message: T) -> Request<T> {
        self.transport.request(message)
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.transport.check(request)
    }

    /// Connections to other nodes, for the parts of the node that call
    /// them (the context proxy; messaging).
    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// This node's Raft of a group.
    pub fn group(&self, name: &str) -> Option<GroupRaft> {
        self.groups.get(name)
    }

    /// This node's Raft node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        for group in self.groups.names() {
            if let Some(raft) = self.groups.get(&group)
                && let Err(error) = raft.shutdown().await
            {
                tracing::warn!(%group, %error, "replication group did not stop cleanly");
            }
        }
    }
}
