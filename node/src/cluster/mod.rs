//! Clustering of this node: the `_admin` replication group and the cluster
//! model it replicates (`model`), one openraft group per replication group
//! this node stores, formation (autocluster, init-cluster, register-node),
//! the reconciler that makes local groups, stores and Raft memberships
//! follow the model (`reconcile`), and routing of client writes and admin
//! changes to the leader of their group (`rpc` serves the forwarded calls).
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
//!
//! Writes: a client transaction goes to its group's leader (forwarded by
//! other nodes), where concurrent ones share one log entry (`batch`).
//! Reads: a replica that does not lead first waits until it has applied
//! what its leader had ([`Cluster::await_current`]). With SECONDARY
//! members, primaries retire old segments and read them back from a
//! secondary (`tier`).
//!
//! Formation (`axoniq.axonserver.autocluster.first`) acts on a clean start
//! only: the first node initialises `_admin` with itself and founds the
//! cluster with the configured contexts in one admin entry; every other node
//! asks the first to register it as a PRIMARY of those contexts, and the
//! leaders then add it to the groups' Raft memberships.

mod batch;
pub mod model;
pub mod readiness;
mod reconcile;
pub mod roles;
mod rpc;
#[cfg(test)]
mod tests;
mod tier;

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
use model::{ADMIN, AdminCommand, ClusterModel, NodeInfo};
use ranvier_wire::admin::{GroupStatus, MemberRole, MemberStatus};
use roles::Role;
pub use rpc::ClusterRpc;

/// Size of one replication log segment file.
const LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Attempts of a write while leadership settles.
const WRITE_ATTEMPTS: u32 = 50;
/// A write not committed within this time is answered with a timeout (it
/// may still commit later; it was never confirmed). Bounds how long a node
/// cut off from its group's majority keeps clients waiting.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before retrying a write that a leader in transition did not take
/// (`WRITE_ATTEMPTS` of them bound the wait to about a second).
const LEADERSHIP_SETTLE_PAUSE: Duration = Duration::from_millis(20);
/// Longest wait for the answer to a forwarded command: longer than a
/// commit (`COMMIT_TIMEOUT`) plus a leader change at the receiving end, so
/// it only ends calls that would otherwise wait forever.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait of a read on a replica for being as current as its leader.
const READ_CURRENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between join attempts, at most.
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The Axon error code of a write refused for lack of disk space (as on a
/// single node: a data file cannot be written).
const DISK_FULL_CODE: &str = "AXONIQ-9100";

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
    /// Replication logs, one directory per group.
    pub log_dir: PathBuf,
    /// Election timeout range and heartbeat interval, in ms.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout.
    pub election_timeout_max_ms: u64,
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
}

/// Records every node's internal address from the model.
fn record_addresses(addresses: &Addresses, model: &ClusterModel) {
    for (name, node) in &model.nodes {
        addresses.set(node_id(name), &node.internal_addr);
    }
}

/// Longest install of a snapshot (streaming the missing transactions).
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 30 * 60 * 1000;

/// Fetches stored transactions from another node's stores over the
/// internal API, for a replica installing a snapshot.
struct GrpcSource {
    address: String,
    transport: Arc<Transport>,
}

impl crate::raft::state_machine::TransactionSource for GrpcSource {
    fn address(&self) -> String {
        self.address.clone()
    }

    fn fetch(
        &self,
        addr: String,
        context: String,
        snapshots: bool,
        from: u64,
    ) -> crate::raft::state_machine::TransactionStream {
        use tokio_stream::StreamExt;
        let client = self.transport.cluster_client(&addr);
        let request = self.transport.request(FetchRequest {
            context,
            snapshots,
            from_token: from,
            to_token: 0,
            local_only: false,
        });
        let stream = async_stream_of(client, request, addr);
        Box::pin(stream.map(|chunk| {
            chunk.map(|chunk: TransactionChunk| chunk.events.into_iter().zip(chunk.log_indexes).collect())
        }))
    }
}

type ClusterClient = ranvier_proto::cluster::cluster_service_client::ClusterServiceClient<tonic::transport::Channel>;

/// The chunks of one FetchTransactions call, errors as text.
fn async_stream_of(
    client: Result<ClusterClient, BadAddress>,
    request: Request<FetchRequest>,
    addr: String,
) -> impl tokio_stream::Stream<Item = Result<TransactionChunk, String>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let failed = |e: String| format!("fetching from {addr}: {e}");
        let mut client = match client {
            Ok(client) => client,
            Err(error) => {
                let _ = sender.send(Err(failed(error.to_string()))).await;
                return;
            }
        };
        let context = request.get_ref().context.clone();
        let mut stream = match client.fetch_transactions(request).await {
            Ok(response) => response.into_inner(),
            // The source no longer stores the context (it was deleted): nothing to copy.
            Err(status) if status.code() == tonic::Code::NotFound => {
                tracing::warn!(%context, %addr, "the snapshot's source no longer stores the context; skipping it");
                return;
            }
            Err(status) => {
                let _ = sender.send(Err(failed(status.message().to_owned()))).await;
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(chunk)) => {
                    if sender.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(status) => {
                    let _ = sender.send(Err(failed(status.message().to_owned()))).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

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
        let transport = Arc::new(Transport::new(settings.token.clone()));
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

    async fn form(&self) {
        let Some(admin) = self.groups.get(ADMIN) else { return };
        if admin.is_initialized().await.unwrap_or(true) {
            self.refresh_registration().await;
            return;
        }
        let Some(first) = self.settings.first.clone() else { return };
        let founder = self.settings.first_is_me;
        let mut backoff = Duration::from_millis(100);
        let doing = if founder {
            format!("founding the cluster as {first}")
        } else {
            format!("joining the cluster through {first}")
        };
        self.set_formation(Some(doing.clone()));
        loop {
            let result = if founder {
                self.init_cluster(self.settings.contexts.clone()).await
            } else {
                self.join(&first, self.settings.contexts.clone()).await
            };
            match result {
                Ok(()) if founder => {
                    tracing::info!(contexts = ?self.settings.contexts, "founded the cluster (autocluster)");
                    break;
                }
                Ok(()) => {
                    tracing::info!(%first, contexts = ?self.settings.contexts, "joined the cluster (autocluster)");
                    break;
                }
                Err(WriteError::Refused { code, message }) if code == "AXONIQ-2306" => {
                    tracing::info!(%message, "this node is already part of the cluster");
                    break;
                }
                // The first node has not founded the cluster yet: ask again.
                Err(WriteError::Refused { code, message }) if code != "AXONIQ-2307" => {
                    tracing::error!(%code, %message, "autocluster refused; fix the configuration or use ranvierctl");
                    self.set_formation(Some(format!("autocluster through {first} was refused: {code} {message}")));
                    return;
                }
                Err(error) => {
                    tracing::info!(%first, error = error.message(), "forming the cluster; retrying");
                    self.set_formation(Some(format!("{doing}, retrying: {}", error.message())));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
        self.set_formation(None);
    }

    fn set_formation(&self, doing: Option<String>) {
        *self.formation.lock().unwrap_or_else(|p| p.into_inner()) = doing;
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

    /// After a restart: when this node's addresses or ports changed since it
    /// registered, registers them again (clients are sent to them).
    async fn refresh_registration(&self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let model = self.model();
            match model.nodes.get(&self.settings.node.name) {
                Some(known) if *known != self.settings.node => {}
                _ => return,
            }
            match self.admin(AdminCommand::RegisterNode(self.settings.node.clone())).await {
                Ok(()) => {
                    tracing::info!("registered this node's new addresses");
                    return;
                }
                Err(WriteError::Refused { code, message }) => {
                    tracing::error!(%code, %message, "could not register this node's new addresses");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
                }
            }
        }
    }

    /// Founds the cluster on this node (init-cluster): `_admin` with this
    /// node as its only member, and the given contexts.
    pub async fn init_cluster(&self, contexts: Vec<String>) -> Result<(), WriteError> {
        let admin = self.groups.get(ADMIN).ok_or_else(|| WriteError::Failed("no _admin group".into()))?;
        if self.model().initialized() {
            return Err(WriteError::Refused {
                code: "AXONIQ-2306".into(),
                message: "this node is already a member of a cluster".into(),
            });
        }
        if !admin.is_initialized().await.map_err(|e| WriteError::Failed(e.to_string()))? {
            let members = BTreeMap::from([(self.node_id, Self::member_node(&self.settings.node))]);
            admin.initialize(members).await.map_err(|e| WriteError::Failed(e.to_string()))?;
        }
        let command = AdminCommand::InitCluster { node: self.settings.node.clone(), contexts };
        let proposed = self.propose(ADMIN, GroupCommand::Admin(command), true).await?;
        self.settled(proposed).await
    }

    /// Waits until this node's replica of the model holds an applied admin
    /// change (so the caller reads its own change here), then answers it.
    async fn settled(&self, proposed: Proposed) -> Result<(), WriteError> {
        applied(proposed.response)?;
        if let Some(admin) = self.groups.get(ADMIN) {
            let waiter = admin.wait(Some(COMMIT_TIMEOUT));
            if waiter.applied_index_at_least(Some(proposed.index), "the change").await.is_err() {
                let message = "the change was applied, but has not reached this node yet".to_owned();
                return Err(WriteError::Timeout(message));
            }
        }
        Ok(())
    }

    /// Asks the cluster, through the node at internal `addr`, to register
    /// this node as a PRIMARY of `contexts` (register-node).
    pub async fn join(&self, addr: &str, contexts: Vec<String>) -> Result<(), WriteError> {
        if self.model().nodes.contains_key(&self.settings.node.name) {
            return Err(WriteError::Refused {
                code: "AXONIQ-2306".into(),
                message: "this node is already a member of a cluster".into(),
            });
        }
        let command = AdminCommand::JoinCluster { node: self.settings.node.clone(), contexts };
        let proposed = self.forward(addr, &GroupCommand::Admin(command), true).await?;
        applied(proposed.response)
    }

    /// Proposes a change of the cluster model, wherever `_admin` leads.
    pub async fn admin(&self, command: AdminCommand) -> Result<(), WriteError> {
        if !self.model().initialized() {
            return Err(WriteError::Refused {
                code: "AXONIQ-2307".into(),
                message: "this node is not part of an initialised cluster (run init-cluster or register-node)".into(),
            });
        }
        let proposed = self.propose(ADMIN, GroupCommand::Admin(command), true).await?;
        self.settled(proposed).await
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

    /// Stores a client transaction through the context's group: here when
    /// this node leads, else at the leader.
    pub async fn append(&self, context: &str, events: Vec<Bytes>, snapshot: bool) -> Result<u64, WriteError> {
        let command = if snapshot {
            let event = events.into_iter().next().unwrap_or_default();
            GroupCommand::AppendSnapshot { context: context.to_owned(), snapshot: event }
        } else {
            GroupCommand::AppendEvents { context: context.to_owned(), events }
        };
        match self.propose_write(context, command, true).await?.response {
            GroupResponse::Appended { first_token } => Ok(first_token),
            GroupResponse::Refused { code, message } => Err(WriteError::Refused { code, message }),
            GroupResponse::Applied | GroupResponse::Batch(_) => {
                Err(WriteError::Failed("the entry stored nothing".into()))
            }
        }
    }

    /// Waits up to `wait` until this node's model lists `context`.
    async fn await_context(&self, context: &str, wait: Duration) {
        let mut model = self.model.clone();
        let _ = tokio::time::timeout(wait, model.wait_for(|m| m.group_of(context).is_some())).await;
    }

    async fn propose_write(&self, context: &str, command: GroupCommand, relay: bool) -> Result<Proposed, WriteError> {
        let model = self.model();
        let Some(group) = model.group_of(context).filter(|_| context != ADMIN) else {
            let message = format!("No eventstore found for context {context}");
            return Err(WriteError::Refused { code: "AXONIQ-6000".into(), message });
        };
        self.propose(group, command, relay).await
    }

    /// Proposes a command to `group`: on this node when it leads (client
    /// transactions in the group's next batch), else at the leader (when
    /// `relay`); from a node that hosts no replica, at a member that does.
    async fn propose(&self, group: &str, command: GroupCommand, relay: bool) -> Result<Proposed, WriteError> {
        let transaction = matches!(command, GroupCommand::AppendEvents { .. } | GroupCommand::AppendSnapshot { .. });
        if transaction && self.leads(group) {
            return self.propose_batched(group, command, relay).await;
        }
        self.propose_now(group, command, relay).await
    }

    /// Whether this node leads `group`, as its Raft metrics say now.
    fn leads(&self, group: &str) -> bool {
        use openraft::type_config::async_runtime::WatchReceiver;
        self.groups.get(group).is_some_and(|raft| raft.metrics().borrow_watched().current_leader == Some(self.node_id))
    }

    /// `Err(AXONIQ-9100)` while this node is below its disk reserve: as a
    /// leader it then proposes no new transactions, so that what was
    /// committed before still has the reserve to land in.
    fn check_reserve(&self, group: &str) -> Result<(), WriteError> {
        self.reserve.check().map_err(|full| WriteError::Refused {
            code: DISK_FULL_CODE.into(),
            message: format!("node {}, leader of replication group {group}: {full}", self.name()),
        })
    }

    /// [`Self::propose`] of this command alone, as one entry.
    async fn propose_now(&self, group: &str, command: GroupCommand, relay: bool) -> Result<Proposed, WriteError> {
        let Some(raft) = self.groups.get(group) else {
            if !relay {
                return Err(WriteError::NoLeader(format!("replication group {group} is not hosted here")));
            }
            return self.relay_to_member(group, &command).await;
        };
        let wait = Duration::from_millis(self.settings.election_timeout_max_ms);
        let mut last_refusal = String::new();
        // Client data (not admin changes) is subject to the active-backup rule.
        let data = !matches!(command, GroupCommand::Admin(_));
        for _ in 0..WRITE_ATTEMPTS {
            if data {
                // Where this node leads (a follower's write goes to the
                // leader, which checks its own). One that took office so
                // lately that its metrics do not say so yet may propose an
                // entry unchecked: the reserve has room for it.
                if self.leads(group) {
                    self.check_reserve(group)?;
                }
                self.check_active_backups(group, &raft)?;
            }
            let error = match tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command.clone())).await {
                Ok(Ok(written)) => {
                    if data {
                        self.await_active_backups(group, &raft, written.log_id.index).await?;
                    }
                    return Ok(Proposed { response: written.data, index: written.log_id.index });
                }
                Ok(Err(error)) => error,
                Err(_) => {
                    let message = format!("not committed within {} s in group {group}", COMMIT_TIMEOUT.as_secs());
                    return Err(WriteError::Timeout(message));
                }
            };
            let Some(forward) = error.forward_to_leader() else { return Err(WriteError::Failed(error.to_string())) };
            match (&forward.leader_id, &forward.leader_node) {
                (Some(leader), Some(node)) if *leader != self.node_id => {
                    if !relay {
                        return Err(WriteError::NotLeader(format!("this node does not lead group {group}")));
                    }
                    let addr = self.addresses.get(*leader).unwrap_or_else(|| node.internal_addr.clone());
                    return self.forward(&addr, &command, false).await;
                }
                (Some(_), _) => {
                    last_refusal = error.to_string();
                    tokio::time::sleep(LEADERSHIP_SETTLE_PAUSE).await
                }
                (None, _) => {
                    let known = raft.wait(Some(wait)).metrics(|m| m.current_leader.is_some(), "a leader").await;
                    if known.is_err() {
                        return Err(WriteError::NoLeader(format!("no leader for replication group {group}")));
                    }
                    // A leader is known but did not take the write (it is
                    // still taking office, or stepping down): give it a moment.
                    last_refusal = error.to_string();
                    tokio::time::sleep(LEADERSHIP_SETTLE_PAUSE).await;
                }
            }
        }
        Err(WriteError::NoLeader(format!(
            "no leader accepted the write for replication group {group} ({last_refusal})"
        )))
    }

    /// From a node without a replica of `group` (MESSAGING_ONLY, or not a
    /// member): hands the command to a storing member, which forwards it
    /// to the leader.
    async fn relay_to_member(&self, group: &str, command: &GroupCommand) -> Result<Proposed, WriteError> {
        let model = self.model();
        let mut members = model.member_nodes(group, |role| role == Role::Primary);
        // A primary that has not opened the group yet must not hand the
        // command back to itself.
        members.retain(|node| node.name != self.settings.node.name);
        let mut last = WriteError::NoLeader(format!("replication group {group} has no reachable primary"));
        for member in members {
            match self.forward(&member.internal_addr, command, true).await {
                Err(error @ WriteError::NoLeader(_)) => last = error,
                other => return other,
            }
        }
        Err(last)
    }

    /// Where clients of `context` should connect instead of this node: a
    /// PRIMARY of the context's group (its leader when known here), when
    /// this node's role there does not serve clients (a backup or a
    /// secondary). `None`: this node serves them (as a primary, a
    /// messaging-only member, or a node outside the group that passes
    /// their calls on).
    pub fn redirect_clients(&self, context: &str) -> Option<NodeInfo> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let model = self.model();
        let group = model.group_of(context)?;
        let role = model.role(group, &self.settings.node.name)?;
        if role.serves_clients() {
            return None;
        }
        let leader = self.groups.get(group).and_then(|raft| leader_name(&raft.metrics().borrow_watched()));
        let primaries = model.groups.get(group)?.members.iter().filter(|(_, r)| **r == Role::Primary);
        let chosen = leader
            .filter(|name| model.role(group, name) == Some(Role::Primary))
            .or_else(|| primaries.map(|(name, _)| name.clone()).next())?;
        model.nodes.get(&chosen).cloned()
    }

    /// Waits until this node's replica of `context` is as current as its
    /// group's leader: it has applied what the leader had applied when
    /// asked, so a client reads its own confirmed writes on any replica.
    /// The leader waits for its own read index (see [`read_index`]); a
    /// node without a replica (its reads are passed on to one) answers at
    /// once. Fails when no leader answers, or
    /// this replica does not catch up, within `READ_CURRENT_TIMEOUT`.
    pub async fn await_current(&self, context: &str) -> Result<(), WriteError> {
        let model = self.model();
        let Some(group) = model.group_of(context).filter(|_| context != ADMIN) else { return Ok(()) };
        let Some(raft) = self.groups.get(group) else { return Ok(()) };
        let behind = |what: String| WriteError::NoLeader(format!("reads of {context} wait for {what}"));
        let deadline = tokio::time::Instant::now() + READ_CURRENT_TIMEOUT;
        // Leadership may move while asking (a new election, a restarted
        // node's higher term): ask again whoever leads then, until the deadline.
        let applied = loop {
            let (leader, addr, term) = {
                use openraft::type_config::async_runtime::WatchReceiver;
                let watched = raft.metrics();
                let metrics = watched.borrow_watched();
                let leader = metrics.current_leader;
                let addr = leader.and_then(|id| {
                    let listed = metrics.membership_config.membership().get_node(&id).map(|n| n.internal_addr.clone());
                    self.addresses.get(id).or(listed)
                });
                (leader, addr, metrics.current_term)
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failed = match (leader, addr) {
                // This node leads: its own read index (a new leader may not
                // have applied its predecessor's last confirmed writes yet).
                (Some(id), _) if id == self.node_id => match read_index(&raft).await {
                    Some(index) => break index,
                    None => format!("this node to confirm it leads replication group {group}"),
                },
                (Some(_), Some(addr)) => {
                    let mut client =
                        self.transport.cluster_client(&addr).map_err(|e| WriteError::Failed(e.to_string()))?;
                    let query = MembershipQuery { group: group.to_owned(), skip_read_index: false };
                    match tokio::time::timeout(left, client.membership(self.with_token(query))).await {
                        Ok(Ok(reply)) if reply.get_ref().leader => break reply.into_inner().read_index,
                        _ => format!("an answer from the leader of replication group {group}"),
                    }
                }
                _ => format!("a leader of replication group {group}"),
            };
            // Wait for the leadership to change (or a short while, for a
            // leader that could not reach its quorum for a moment).
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(behind(failed));
            }
            let pause = left.min(Duration::from_millis(self.settings.election_timeout_max_ms));
            let changed = |m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>| {
                m.current_leader.is_some() && (m.current_leader != leader || m.current_term != term)
            };
            let _ = raft.wait(Some(pause)).metrics(changed, "a change of leader").await;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match raft.wait(Some(left)).applied_index_at_least(Some(applied), "the leader's read index").await {
            Ok(_) => Ok(()),
            Err(_) => Err(behind(format!("this replica to catch up with its leader (log index {applied})"))),
        }
    }

    /// Active backups of `group`, as Raft node ids.
    fn active_backups(&self, group: &str) -> Vec<u64> {
        let model = self.model();
        model
            .groups
            .get(group)
            .map(|g| g.members.iter().filter(|(_, r)| **r == Role::ActiveBackup).map(|(n, _)| node_id(n)).collect())
            .unwrap_or_default()
    }

    fn backup_wait(&self) -> Duration {
        Duration::from_millis(self.settings.election_timeout_max_ms * 2)
    }

    /// On the leader: refuses a new write while fewer than
    /// `min-active-backups` active backups answered heartbeats recently.
    fn check_active_backups(&self, group: &str, raft: &GroupRaft) -> Result<(), WriteError> {
        use openraft::Instant;
        use openraft::type_config::async_runtime::WatchReceiver;
        let backups = self.active_backups(group);
        let need = self.settings.min_active_backups;
        if backups.is_empty() || need == 0 {
            return Ok(());
        }
        let metrics = raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.node_id) {
            return Ok(());
        }
        // In sync: holds the whole log, or answered recently (openraft
        // refreshes the heartbeat metric lazily, so an idle group relies on
        // the first test).
        let last = metrics.last_log_index.unwrap_or(0);
        let recent = backups
            .iter()
            .filter(|id| {
                let holds_all = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .is_some_and(|matched| matched.index >= last);
                let answered = metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .is_some_and(|at| at.elapsed() <= self.backup_wait());
                // A replica below its disk reserve answers heartbeats but
                // takes no entries: it would not hold this write either.
                !self.addresses.refuses_entries(**id) && (holds_all || answered)
            })
            .count();
        if recent >= need { Ok(()) } else { Err(self.too_few_backups(group, recent, need, false)) }
    }

    /// Why a write is not confirmed: too few active backups in sync (and
    /// which are below their disk reserve). `committed`: the primaries
    /// already hold it, so it is a replication timeout (never proposed
    /// again by a relay), not a refusal.
    fn too_few_backups(&self, group: &str, have: usize, need: usize, committed: bool) -> WriteError {
        let model = self.model();
        let full: Vec<&str> = model.groups.get(group).map_or_else(Vec::new, |g| {
            g.members
                .iter()
                .filter(|(name, role)| **role == Role::ActiveBackup && self.addresses.refuses_entries(node_id(name)))
                .map(|(name, _)| name.as_str())
                .collect()
        });
        let why = match full.is_empty() {
            true => String::new(),
            false => format!(" ({} below the disk reserve)", full.join(", ")),
        };
        let backups = "required active backup(s) (axoniq.axonserver.replication.min-active-backups)";
        match committed {
            false => WriteError::NoLeader(format!(
                "replication group {group} accepts no writes: {have} of {need} {backups} are in sync{why}; \
                 writes resume when they are"
            )),
            true => WriteError::Timeout(format!(
                "the write is not confirmed: the primaries of replication group {group} hold it, but {have} \
                 of {need} {backups} do{why}"
            )),
        }
    }

    /// On the leader, after the commit: waits until `min-active-backups`
    /// active backups hold the entry before the write is confirmed.
    async fn await_active_backups(&self, group: &str, raft: &GroupRaft, index: u64) -> Result<(), WriteError> {
        let backups = self.active_backups(group);
        let need = self.settings.min_active_backups;
        if backups.is_empty() || need == 0 {
            return Ok(());
        }
        let holding = |m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>| {
            let Some(replication) = m.replication.as_ref() else { return 0 };
            backups
                .iter()
                .filter(|id| replication.get(id).and_then(|l| l.as_ref()).is_some_and(|l| l.index >= index))
                .count()
        };
        let waited = raft.wait(Some(self.backup_wait())).metrics(|m| holding(m) >= need, "active backups").await;
        match waited {
            Ok(_) => Ok(()),
            Err(_) => {
                use openraft::type_config::async_runtime::WatchReceiver;
                let have = holding(&raft.metrics().borrow_watched().clone());
                Err(self.too_few_backups(group, have, need, true))
            }
        }
    }

    /// Sends a command to the node at internal `addr`, waiting at most
    /// `FORWARD_TIMEOUT` for its answer.
    async fn forward(&self, addr: &str, command: &GroupCommand, relay: bool) -> Result<Proposed, WriteError> {
        match tokio::time::timeout(FORWARD_TIMEOUT, self.forward_once(addr, command, relay)).await {
            Ok(answer) => answer,
            Err(_) => Err(WriteError::Timeout(format!(
                "the node at {addr} did not answer within {} s; the change may or may not have been made",
                FORWARD_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn forward_once(&self, addr: &str, command: &GroupCommand, relay: bool) -> Result<Proposed, WriteError> {
        let mut client = self.transport.cluster_client(addr).map_err(|e| WriteError::Failed(e.to_string()))?;
        // A proposal that timed out there may be stored: it stays a
        // timeout here, so that no relay proposes it again.
        let unreachable = |s: Status| match s.code() {
            tonic::Code::DeadlineExceeded => WriteError::Timeout(format!("the node at {addr}: {}", s.message())),
            _ => WriteError::NoLeader(format!("the node at {addr} did not take the request: {}", s.message())),
        };
        match command {
            GroupCommand::Batch(_) => Err(WriteError::NotLeader("a batch is proposed where it was made".into())),
            GroupCommand::AppendEvents { context, events } => {
                let message =
                    ForwardedAppend { context: context.clone(), events: events.clone(), snapshot: false, relay };
                let reply = client.append(self.with_token(message)).await.map_err(unreachable)?.into_inner();
                Ok(Proposed { response: rpc::append_response(reply), index: 0 })
            }
            GroupCommand::AppendSnapshot { context, snapshot } => {
                let events = vec![snapshot.clone()];
                let message = ForwardedAppend { context: context.clone(), events, snapshot: true, relay };
                let reply = client.append(self.with_token(message)).await.map_err(unreachable)?.into_inner();
                Ok(Proposed { response: rpc::append_response(reply), index: 0 })
            }
            GroupCommand::Admin(admin) => {
                let command_json = serde_json::to_vec(admin).map_err(|e| WriteError::Failed(e.to_string()))?;
                let message = AdminProposal { command_json: command_json.into(), relay };
                let reply = client.propose(self.with_token(message)).await.map_err(unreachable)?.into_inner();
                let response = if reply.error_code.is_empty() {
                    GroupResponse::Applied
                } else {
                    GroupResponse::Refused { code: reply.error_code, message: reply.message }
                };
                Ok(Proposed { response, index: reply.log_index })
            }
        }
    }

    /// Every replication group of the model as this node sees it: leader,
    /// members with roles (Axon's `/v1/public/replicationgroups` shape),
    /// contexts and, where this node hosts a replica, its Raft state; where
    /// it leads, each member's match index and lag.
    pub fn status(&self) -> Vec<GroupStatus> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let model = self.model();
        let mut out = Vec::new();
        for (group, info) in &model.groups {
            let raft = self.groups.get(group);
            let metrics = raft.as_ref().map(|r| r.metrics().borrow_watched().clone());
            let leader = metrics.as_ref().and_then(leader_name);
            let last = metrics.as_ref().and_then(|m| m.last_log_index);
            // What this node's links learnt as the group's leader
            // (`_admin` entries pass a full disk).
            let leads = metrics.as_ref().is_some_and(|m| m.current_leader == Some(self.node_id));
            let members = info
                .members
                .iter()
                .map(|(node, role)| {
                    let id = node_id(node);
                    let raft = metrics.as_ref().map(|m| raft_place(m, id));
                    let match_index = metrics
                        .as_ref()
                        .and_then(|m| m.replication.as_ref())
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map(|l| l.index);
                    let last_ack_ms = metrics
                        .as_ref()
                        .and_then(|m| m.heartbeat.as_ref())
                        .and_then(|h| h.get(&id).cloned().flatten())
                        .map(|at| u64::try_from(openraft::Instant::elapsed(&*at).as_millis()).unwrap_or(u64::MAX));
                    MemberStatus {
                        node: node.clone(),
                        role: *role,
                        raft,
                        match_index,
                        lag: match_index.zip(last).map(|(m, l)| l.saturating_sub(m)),
                        last_ack_ms,
                        below_disk_reserve: (leads && group != ADMIN && id != self.node_id)
                            .then(|| self.addresses.refuses_entries(id)),
                    }
                })
                .collect();
            out.push(GroupStatus {
                name: group.clone(),
                leader,
                hosted: raft.is_some(),
                term: metrics.as_ref().map(|m| m.current_term),
                last_log_index: last,
                applied_index: metrics.as_ref().and_then(|m| m.last_applied.map(|id| id.index)),
                roles: info.members.iter().map(|(node, role)| MemberRole { node: node.clone(), role: *role }).collect(),
                members,
                contexts: model.contexts_of(group),
            });
        }
        out
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

/// On a group's leader: the log index a read must see applied to include
/// every confirmed write (openraft's read index, at least the leader's
/// first entry of its term), with leadership confirmed by its lease, else
/// by a round of heartbeats. `None` when this node does not lead.
async fn read_index(raft: &GroupRaft) -> Option<u64> {
    use openraft::ReadPolicy;
    match raft.get_read_log_id(ReadPolicy::LeaseRead).await {
        Ok((read, _)) => Some(read.index()),
        Err(_) => raft.get_read_log_id(ReadPolicy::ReadIndex).await.ok().map(|(read, _)| read.index()),
    }
}

/// What a proposal came to, and where in its group's log.
struct Proposed {
    response: GroupResponse,
    /// The entry's log index (0 when a forwarded write does not say).
    index: u64,
}

/// The name of the group's leader, as these metrics know it.
/// `id`'s place in the group's Raft membership as `metrics` know it.
fn raft_place(metrics: &openraft::RaftMetrics<crate::raft::types::TypeConfig>, id: u64) -> roles::RaftShape {
    let membership = metrics.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        roles::RaftShape::Voter
    } else if membership.learner_ids().any(|l| l == id) {
        roles::RaftShape::Learner
    } else {
        roles::RaftShape::None
    }
}

fn leader_name(metrics: &openraft::RaftMetrics<crate::raft::types::TypeConfig>) -> Option<String> {
    let membership = metrics.membership_config.membership();
    metrics.current_leader.and_then(|id| membership.get_node(&id).map(|n| n.name.clone()))
}

fn applied(response: GroupResponse) -> Result<(), WriteError> {
    match response {
        GroupResponse::Refused { code, message } => Err(WriteError::Refused { code, message }),
        GroupResponse::Applied | GroupResponse::Appended { .. } | GroupResponse::Batch(_) => Ok(()),
    }
}
