//! Raft RPCs between nodes over the internal gRPC port (8224): the client
//! side that openraft uses to reach the other members of a group
//! ([`GrpcNetwork`]) and the service that receives their RPCs for every
//! group hosted here ([`RaftRpcService`]). Replication is pipelined: each
//! leader→follower stream of AppendEntries travels on one `StreamAppend`
//! gRPC stream with several requests in flight, answered in order.
//!
//! Links take their connections from the node's [`Transport`] (one lane
//! per group, keepalive, the internal token on every call; calls without
//! the token are refused here); tonic re-establishes them after failures,
//! and an unreachable member is reported as such, so openraft backs off.
//! A replica below its disk reserve refuses new entries and snapshots the
//! same way (heartbeats still pass), and catches up once space returns.
//! Entries of `_admin` pass all the same: the model is small, and it is how
//! an operator moves a member off a full disk.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use ranvier_proto::cluster::raft_service_client::RaftServiceClient;
use ranvier_proto::cluster::raft_service_server::RaftService;
use ranvier_proto::cluster::{AppendEntriesMessage, RaftReply, RaftRequest, SnapshotMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::GroupRaft;
use crate::store::{DiskReserve, StoreError};
use crate::transport::{INTERNAL_MESSAGE_MAX, Transport};

/// AppendEntries requests (and answers) buffered per replication stream.
const STREAM_APPEND_REPLIES_MAX: usize = 64;
/// Entry bytes per message of a replication stream, about: a larger
/// request goes out in parts (one entry may make a part larger).
const APPEND_PART_BYTES: usize = 2 * 1024 * 1024;
/// Log entries in one AppendEntries request, at most (openraft's
/// `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 64;
/// Entry bytes a follower gathers for one request sent in parts, at most:
/// no valid request is larger (the leader holds the same entries).
const APPEND_REQUEST_MAX: usize = MAX_PAYLOAD_ENTRIES as usize * INTERNAL_MESSAGE_MAX;
use super::codec::{decode_entry, encode_entry};
use super::types::{MemberNode, TypeConfig};

type C = TypeConfig;

/// Where each node (by Raft node id) is reached now, as the cluster model
/// says, and which nodes refuse new log entries for lack of disk space.
/// Shared by every group's links, so a node that comes back on another
/// address is reached there without rebuilding replication, and a leader
/// of one group knows what its links in another learnt (a node's disk
/// reserve is the same for all its groups but `_admin`).
#[derive(Clone, Default)]
pub struct Addresses {
    by_id: Arc<RwLock<HashMap<u64, String>>>,
    /// Node → its latest refusal for lack of disk space, until it takes
    /// entries again.
    full: Arc<RwLock<HashMap<u64, std::time::Instant>>>,
}

/// How a replica below its disk reserve starts its refusal of new entries.
const REPLICA_FULL: &str = "this replica takes no new entries";
/// A member that refused entries for lack of disk space is retried after
/// this, then twice as late each time, up to [`FULL_RETRY_MAX`].
const FULL_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(250);
const FULL_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// A refusal counts this long when no entries are sent to that node to
/// find out (every group that sends it any retries it more often).
const FULL_MARK_TTL: std::time::Duration = std::time::Duration::from_secs(10);

impl Addresses {
    /// Whether node `id` refuses new log entries for lack of disk space:
    /// it refused them lately, and has taken none since.
    pub fn refuses_entries(&self, id: u64) -> bool {
        let full = self.full.read().unwrap_or_else(|p| p.into_inner());
        full.get(&id).is_some_and(|at| at.elapsed() <= FULL_MARK_TTL)
    }

    /// Notes a refusal from node `id` when it was one for lack of disk space.
    fn note_refusal(&self, id: u64, status: &Status) {
        if status.code() == Code::Unavailable && status.message().starts_with(REPLICA_FULL) {
            self.full.write().unwrap_or_else(|p| p.into_inner()).insert(id, std::time::Instant::now());
        }
    }

    /// Notes that node `id` took new entries (or a snapshot) sent at
    /// `sent`: a refusal noted after that still counts.
    fn note_taken(&self, id: u64, sent: std::time::Instant) {
        if !self.full.read().unwrap_or_else(|p| p.into_inner()).contains_key(&id) {
            return;
        }
        let mut full = self.full.write().unwrap_or_else(|p| p.into_inner());
        if full.get(&id).is_some_and(|refused| *refused < sent) {
            full.remove(&id);
        }
    }

    /// Records where node `id` is reached.
    pub fn set(&self, id: u64, addr: &str) {
        let mut by_id = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        if by_id.get(&id).is_none_or(|known| known != addr) {
            by_id.insert(id, addr.to_owned());
        }
    }

    /// Where node `id` is reached, when known.
    pub fn get(&self, id: u64) -> Option<String> {
        self.by_id.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }
}

/// Creates the links of one group to the other members.
#[derive(Clone)]
pub struct GrpcNetwork {
    group: String,
    transport: Arc<Transport>,
    addresses: Addresses,
    /// Whether members take this group's entries below their disk
    /// reserve too (`_admin`): then an entry taken says nothing of it.
    reserve_exempt: bool,
}

impl GrpcNetwork {
    /// The network of `group`, calling through `transport` and reaching
    /// each member where `addresses` says (else where its membership entry
    /// says).
    pub fn new(group: &str, transport: Arc<Transport>, addresses: Addresses) -> Self {
        Self { group: group.to_owned(), transport, addresses, reserve_exempt: false }
    }

    /// The network of a group whose entries members take below their disk
    /// reserve too (as [`RaftRpcService::with_reserve`] exempts it).
    pub fn reserve_exempt(self) -> Self {
        Self { reserve_exempt: true, ..self }
    }
}

/// The link to one member.
pub struct GrpcLink {
    group: String,
    transport: Arc<Transport>,
    reserve_exempt: bool,
    target: u64,
    addr: String,
    addresses: Addresses,
    client: Result<RaftServiceClient<Channel>, String>,
}

fn connect(transport: &Transport, group: &str, target: u64, addr: &str) -> Result<RaftServiceClient<Channel>, String> {
    transport.raft_client(addr, group).map_err(|e| format!("node {target}: {e}"))
}

impl RaftNetworkFactory<C> for GrpcNetwork {
    type Network = GrpcLink;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> GrpcLink {
        let addr = self.addresses.get(target).unwrap_or_else(|| node.internal_addr.clone());
        let client = connect(&self.transport, &self.group, target, &addr);
        GrpcLink {
            group: self.group.clone(),
            transport: self.transport.clone(),
            reserve_exempt: self.reserve_exempt,
            target,
            addr,
            addresses: self.addresses.clone(),
            client,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, NetworkError<C>> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| NetworkError::new(&e))
}

/// Sorts a failed call: a member that cannot be reached (so openraft backs
/// off) or another network failure.
fn status_error(target: u64, status: &Status) -> RPCError<C> {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {}", status.message())))
        }
        _ => RPCError::Network(NetworkError::from_string(format!("node {target}: {status}"))),
    }
}

fn parse_reply<T: DeserializeOwned>(target: u64, reply: RaftReply) -> Result<T, RPCError<C>> {
    if !reply.error.is_empty() {
        return Err(RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {}", reply.error))));
    }
    serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// An AppendEntries request of `group` in its wire form.
fn append_message(group: &str, rpc: &AppendEntriesRequest<C>) -> Result<AppendEntriesMessage, RPCError<C>> {
    let entries = rpc
        .entries
        .iter()
        .map(|entry| encode_entry(entry).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    Ok(AppendEntriesMessage {
        group: group.to_owned(),
        vote_json: to_json(&rpc.vote)?,
        prev_log_id_json: to_json(&rpc.prev_log_id)?,
        leader_commit_json: to_json(&rpc.leader_commit)?,
        entries,
        more: false,
    })
}

/// A request as one or more messages of about `part_bytes` entry bytes
/// each, all but the last marked `more`.
fn append_parts(mut message: AppendEntriesMessage, part_bytes: usize) -> Vec<AppendEntriesMessage> {
    let total: usize = message.entries.iter().map(Bytes::len).sum();
    if total <= part_bytes {
        return vec![message];
    }
    let mut parts = Vec::new();
    let mut current: Vec<Bytes> = Vec::new();
    let mut size = 0;
    for entry in std::mem::take(&mut message.entries) {
        if size + entry.len() > part_bytes && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            size = 0;
        }
        size += entry.len();
        current.push(entry);
    }
    parts.push(current);
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, entries)| AppendEntriesMessage { entries, more: i + 1 < count, ..message.clone() })
        .collect()
}

/// Joins the parts of requests back together, in order.
#[derive(Default)]
struct PartJoiner {
    pending: Option<AppendEntriesMessage>,
    bytes: usize,
}

impl PartJoiner {
    /// Takes one message; a whole request once its last part is in.
    fn push(&mut self, message: AppendEntriesMessage) -> Result<Option<AppendEntriesMessage>, Status> {
        self.bytes += message.entries.iter().map(Bytes::len).sum::<usize>();
        if self.bytes > APPEND_REQUEST_MAX {
            return Err(Status::resource_exhausted(format!(
                "a replication request in parts is over {APPEND_REQUEST_MAX} bytes"
            )));
        }
        let more = message.more;
        let joined = match self.pending.take() {
            None => message,
            Some(mut first) => {
                first.entries.extend(message.entries);
                first
            }
        };
        if more {
            self.pending = Some(joined);
            return Ok(None);
        }
        self.bytes = 0;
        Ok(Some(AppendEntriesMessage { more: false, ..joined }))
    }
}

/// A replica's disk-reserve gate for new entries; it logs when it closes
/// and when it opens again.
struct Room {
    reserve: DiskReserve,
    /// Groups whose entries pass all the same (the `_admin` model: small,
    /// and what an operator changes to move a member off a full disk).
    exempt: Vec<String>,
    refusing: AtomicBool,
}

impl Room {
    /// The gate for `group` (`None`: it has none).
    fn of(room: Option<Arc<Room>>, group: &str) -> Option<Arc<Room>> {
        room.filter(|room| !room.exempt.iter().any(|g| g == group))
    }

    /// `Err(unavailable)` while this replica is below its disk reserve: the
    /// leader counts it unreachable and backs off.
    fn check(&self) -> Result<(), Status> {
        match self.reserve.check() {
            Ok(()) => {
                if self.refusing.swap(false, Ordering::Relaxed) {
                    tracing::info!("free disk space is above the reserve again: this replica takes new log entries");
                }
                Ok(())
            }
            Err(error) => {
                if !self.refusing.swap(true, Ordering::Relaxed) {
                    match error {
                        StoreError::DiskFull { .. } => tracing::warn!(
                            %error,
                            "below the disk reserve: this replica takes no new log entries until space returns"
                        ),
                        _ => tracing::warn!(
                            %error,
                            "free disk space is unknown: this replica takes no new log entries until it can read it"
                        ),
                    }
                }
                Err(Status::unavailable(format!("{REPLICA_FULL}: {error}")))
            }
        }
    }
}

fn check_room(room: Option<&Room>) -> Result<(), Status> {
    room.map_or(Ok(()), Room::check)
}

/// An AppendEntries request from its wire form.
fn append_request(message: AppendEntriesMessage) -> Result<AppendEntriesRequest<C>, Status> {
    let entries = message
        .entries
        .into_iter()
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("malformed log entry: {e}")))?;
    Ok(AppendEntriesRequest {
        vote: from_json(&message.vote_json, "vote")?,
        prev_log_id: from_json(&message.prev_log_id_json, "previous log id")?,
        leader_commit: from_json(&message.leader_commit_json, "leader commit")?,
        entries,
    })
}

/// What a link learns of its member's disk from the answers to its calls
/// (also from within a replication stream's tasks).
#[derive(Clone)]
struct DiskNotes {
    addresses: Addresses,
    target: u64,
    reserve_exempt: bool,
}

impl DiskNotes {
    /// A failed call as openraft sorts it, noted first when the member
    /// refused it for lack of disk space.
    fn failed(&self, status: &Status) -> RPCError<C> {
        self.addresses.note_refusal(self.target, status);
        status_error(self.target, status)
    }

    /// The member took entries sent at `sent` (says nothing for a group
    /// exempt from the reserve).
    fn taken(&self, sent: std::time::Instant) {
        if !self.reserve_exempt {
            self.addresses.note_taken(self.target, sent);
        }
    }
}

/// The small Raft RPCs that travel as JSON in a `RaftRequest`.
enum JsonRpc {
    Vote,
    PreVote,
    TransferLeader,
}

impl GrpcLink {
    /// Sends a small request as JSON and parses the member's JSON answer.
    async fn json_call<T: DeserializeOwned>(
        &mut self,
        rpc: JsonRpc,
        message: &impl Serialize,
        option: &RPCOption,
    ) -> Result<T, RPCError<C>> {
        let message = RaftRequest { group: self.group.clone(), json: to_json(message)? };
        let request = self.request(message, option);
        let mut client = self.client()?;
        let reply = match rpc {
            JsonRpc::Vote => client.vote(request).await,
            JsonRpc::PreVote => client.pre_vote(request).await,
            JsonRpc::TransferLeader => client.transfer_leader(request).await,
        };
        parse_reply(self.target, reply.map_err(|s| status_error(self.target, &s))?.into_inner())
    }

    fn disk_notes(&self) -> DiskNotes {
        DiskNotes { addresses: self.addresses.clone(), target: self.target, reserve_exempt: self.reserve_exempt }
    }

    fn request<T>(&self, message: T, option: &RPCOption) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(option.soft_ttl());
        self.transport.attach(&mut request);
        request
    }

    /// The client, reconnected first when the member moved to another address.
    fn client(&mut self) -> Result<RaftServiceClient<Channel>, RPCError<C>> {
        if let Some(addr) = self.addresses.get(self.target)
            && addr != self.addr
        {
            tracing::info!(group = %self.group, target = self.target, from = %self.addr, to = %addr, "a member moved; reconnecting");
            self.client = connect(&self.transport, &self.group, self.target, &addr);
            self.addr = addr;
        }
        self.client.clone().map_err(|reason| RPCError::Unreachable(Unreachable::from_string(reason)))
    }
}

impl RaftNetworkV2<C> for GrpcLink {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let message = append_message(&self.group, &rpc)?;
        let request = self.request(message, &option);
        let sent = std::time::Instant::now();
        let reply = self.client()?.append_entries(request).await.map_err(|s| self.disk_notes().failed(&s))?;
        let answer: AppendEntriesResponse<C> = parse_reply(self.target, reply.into_inner())?;
        if !rpc.entries.is_empty() && answer.is_success() {
            self.disk_notes().taken(sent);
        }
        Ok(answer)
    }

    /// Pipelined: every request goes out on one gRPC stream as openraft
    /// produces it; the follower answers each in order.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> openraft::base::BoxFuture<
        's,
        Result<openraft::base::BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>,
    >
    where
        S: tokio_stream::Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
    {
        use tokio_stream::StreamExt;
        let group = self.group.clone();
        let target = self.target;
        let transport = self.transport.clone();
        let notes = self.disk_notes();
        let client = self.client();
        Box::pin(async move {
            let mut client = client?;
            // A request that cannot be encoded goes out empty: the follower
            // refuses it and the stream ends with that error.
            // Each request goes out in parts of bounded size, through a
            // bounded queue.
            let (parts, outbound) = tokio::sync::mpsc::channel(STREAM_APPEND_REPLIES_MAX);
            // When each request in flight that carries entries was sent
            // (answers come in order, one per request): an answer to one
            // says the member took entries again.
            let carried = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
            let carries = carried.clone();
            // openraft's request stream holds its replication state while
            // it waits for the next entries: it must be dropped as soon as
            // this session ends (the call failed, or openraft dropped the
            // answers), not at the next write, or a member that dropped out
            // of an idle group is not caught up until something is written.
            let (session, mut ended) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let mut input = input;
                loop {
                    let next = tokio::select! {
                        next = input.next() => next,
                        () = parts.closed() => None,
                        _ = &mut ended => None,
                    };
                    let Some(rpc) = next else { return };
                    let sent = (!rpc.entries.is_empty()).then(std::time::Instant::now);
                    carries.lock().unwrap_or_else(|p| p.into_inner()).push_back(sent);
                    let message = append_message(&group, &rpc).unwrap_or_default();
                    for part in append_parts(message, APPEND_PART_BYTES) {
                        tokio::select! {
                            result = parts.send(part) => if result.is_err() { return },
                            _ = &mut ended => return,
                        }
                    }
                }
            });
            let outbound = tokio_stream::wrappers::ReceiverStream::new(outbound);
            let mut request = Request::new(outbound);
            transport.attach(&mut request);
            let inbound = client.stream_append(request).await.map_err(|s| notes.failed(&s))?.into_inner();
            let results = inbound.map(move |reply| {
                // The session lasts while openraft holds these answers.
                let _session = &session;
                match reply {
                    Ok(reply) => {
                        let answer = parse_reply::<StreamAppendResult<C>>(target, reply);
                        let sent = carried.lock().unwrap_or_else(|p| p.into_inner()).pop_front().flatten();
                        if let Some(sent) = sent.filter(|_| matches!(answer, Ok(Ok(_)))) {
                            notes.taken(sent);
                        }
                        answer
                    }
                    Err(status) => Err(notes.failed(&status)),
                }
            });
            Ok(Box::pin(results) as openraft::base::BoxStream<'s, _>)
        })
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.json_call(JsonRpc::Vote, &rpc, &option).await
    }

    async fn pre_vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        self.json_call(JsonRpc::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.json_call(JsonRpc::TransferLeader, &rpc, &option).await
    }

    /// A member that refused entries for lack of disk space is retried
    /// less and less often (its disk fills no faster for being asked, and
    /// each refusal is logged on both sides); any other failure is retried
    /// as openraft's config says. openraft asks once per streak of
    /// failures, so the policy chosen at its start holds until the member
    /// answers again: one that is full and then also goes down is retried
    /// every 5 s, and catches up at most that late after it returns.
    fn backoff(&self) -> Option<Backoff> {
        if !self.addresses.refuses_entries(self.target) {
            return None;
        }
        let series = std::iter::successors(Some(FULL_RETRY_FIRST), |delay| Some((*delay * 2).min(FULL_RETRY_MAX)));
        Some(Backoff::new(series))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Cursor<Vec<u8>>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let message = SnapshotMessage {
            group: self.group.clone(),
            vote_json: to_json(&vote)?,
            meta_json: to_json(&snapshot.meta)?,
            data: Bytes::from(snapshot.snapshot.into_inner()),
        };
        let request = self.request(message, &option);
        let sent = std::time::Instant::now();
        let reply = self.client()?.install_snapshot(request).await.map_err(|s| self.disk_notes().failed(&s))?;
        let answer = parse_reply(self.target, reply.into_inner())?;
        self.disk_notes().taken(sent);
        Ok(answer)
    }
}

/// The groups hosted on this node, by name, and when each last heard
/// from a leader.
#[derive(Clone, Default)]
pub struct Groups {
    groups: Arc<RwLock<HashMap<String, GroupRaft>>>,
    /// Group → when a leader's AppendEntries (entries or heartbeat) last
    /// succeeded here, or when the group was opened here if none has.
    contact: Arc<Mutex<HashMap<String, std::time::Instant>>>,
}

impl Groups {
    /// Hosts a group.
    pub fn insert(&self, name: &str, raft: GroupRaft) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), raft);
        self.contact.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), std::time::Instant::now());
    }

    /// Notes that a leader's AppendEntries to `name` just succeeded here.
    fn heard(&self, name: &str) {
        if let Some(at) = self.contact.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name) {
            *at = std::time::Instant::now();
        }
    }

    /// How long the replica of `name` here has gone without a leader's
    /// AppendEntries: since the last one succeeded, or since the group was
    /// opened here if none has (`None` where it is not hosted).
    pub fn leader_silence(&self, name: &str) -> Option<std::time::Duration> {
        self.contact.lock().unwrap_or_else(|p| p.into_inner()).get(name).map(std::time::Instant::elapsed)
    }

    /// A hosted group.
    pub fn get(&self, name: &str) -> Option<GroupRaft> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Stops hosting a group (the caller shuts its Raft down).
    pub fn remove(&self, name: &str) -> Option<GroupRaft> {
        self.contact.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.groups.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    /// The hosted groups' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }
}

/// Receives the Raft RPCs of every group hosted here.
pub struct RaftRpcService {
    groups: Groups,
    transport: Arc<Transport>,
    room: Option<Arc<Room>>,
}

impl RaftRpcService {
    /// Serves `groups`, requiring the internal token of `transport`.
    pub fn new(groups: Groups, transport: Arc<Transport>) -> Self {
        Self { groups, transport, room: None }
    }

    /// Refuses new log entries and snapshots while `reserve` is not free
    /// (heartbeats still pass), except for the `exempt` groups: the leader
    /// backs off and retries, so this replica lags instead of filling its
    /// disk, and catches up once space returns.
    pub fn with_reserve(self, reserve: DiskReserve, exempt: &[&str]) -> Self {
        let exempt = exempt.iter().map(|g| g.to_string()).collect();
        Self { room: Some(Arc::new(Room { reserve, exempt, refusing: AtomicBool::new(false) })), ..self }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.transport.check(request)
    }

    fn group(&self, name: &str) -> Result<GroupRaft, Status> {
        self.groups.get(name).ok_or_else(|| Status::not_found(format!("replication group {name} is not hosted here")))
    }
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

fn reply<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let reply = match result {
        Ok(value) => RaftReply {
            json: serde_json::to_vec(&value).map(Bytes::from).map_err(|e| Status::internal(e.to_string()))?,
            error: String::new(),
        },
        Err(error) => RaftReply { json: Bytes::new(), error: error.to_string() },
    };
    Ok(Response::new(reply))
}

#[tonic::async_trait]
impl RaftService for RaftRpcService {
    async fn append_entries(&self, request: Request<AppendEntriesMessage>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        if !message.entries.is_empty() {
            check_room(Room::of(self.room.clone(), &message.group).as_deref())?;
        }
        let group = message.group.clone();
        let rpc = append_request(message)?;
        let answer = raft.append_entries(rpc).await;
        if answer.as_ref().is_ok_and(|a| a.is_success()) {
            self.groups.heard(&group);
        }
        reply(answer)
    }

    type StreamAppendStream = tokio_stream::wrappers::ReceiverStream<Result<RaftReply, Status>>;

    /// Pipelined replication of one group: requests are handed to openraft
    /// as they arrive, answers go back in order. A malformed request or a
    /// different group ends the stream with an error.
    async fn stream_append(
        &self,
        request: Request<tonic::Streaming<AppendEntriesMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        use tokio_stream::StreamExt;
        self.authorize(&request)?;
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Err(Status::invalid_argument("an empty replication stream"));
        };
        let group = first.group.clone();
        let raft = self.group(&group)?;
        let room = Room::of(self.room.clone(), &group);
        let (groups, heard) = (self.groups.clone(), group.clone());
        let (replies, receiver) = tokio::sync::mpsc::channel(STREAM_APPEND_REPLIES_MAX);
        let (requests, requests_in) = tokio::sync::mpsc::channel(STREAM_APPEND_REPLIES_MAX);
        // Decode incoming messages into requests for openraft.
        let decode_replies = replies.clone();
        tokio::spawn(async move {
            let mut next = Some(first);
            let mut parts = PartJoiner::default();
            loop {
                let message = match next.take() {
                    Some(message) => message,
                    None => match inbound.message().await {
                        Ok(Some(message)) => message,
                        Ok(None) => return,
                        Err(status) => {
                            let _ = decode_replies.send(Err(status)).await;
                            return;
                        }
                    },
                };
                let decoded = if message.group == group {
                    match parts.push(message) {
                        Ok(Some(whole)) => append_request(whole),
                        Ok(None) => continue,
                        Err(status) => Err(status),
                    }
                } else {
                    Err(Status::invalid_argument("a replication stream carries one group"))
                };
                let room = |rpc: &AppendEntriesRequest<C>| match rpc.entries.is_empty() {
                    true => Ok(()),
                    false => check_room(room.as_deref()),
                };
                match decoded.and_then(|rpc| room(&rpc).map(|()| rpc)) {
                    Ok(rpc) => {
                        if requests.send(rpc).await.is_err() {
                            return;
                        }
                    }
                    Err(status) => {
                        let _ = decode_replies.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        tokio::spawn(async move {
            let mut results =
                std::pin::pin!(raft.stream_append(tokio_stream::wrappers::ReceiverStream::new(requests_in)));
            while let Some(result) = results.next().await {
                if matches!(result, Ok(Ok(_))) {
                    groups.heard(&heard);
                }
                let reply = match result {
                    Ok(result) => match serde_json::to_vec(&result) {
                        Ok(json) => RaftReply { json: json.into(), error: String::new() },
                        Err(error) => RaftReply { json: Bytes::new(), error: error.to_string() },
                    },
                    Err(fatal) => RaftReply { json: Bytes::new(), error: fatal.to_string() },
                };
                if replies.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        reply(raft.vote(from_json(&message.json, "vote request")?).await)
    }

    async fn pre_vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        reply(raft.pre_vote(from_json(&message.json, "pre-vote request")?).await)
    }

    async fn transfer_leader(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        reply(raft.handle_transfer_leader(from_json(&message.json, "transfer leader request")?).await)
    }

    async fn install_snapshot(&self, request: Request<SnapshotMessage>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        check_room(Room::of(self.room.clone(), &message.group).as_deref())?;
        let vote = from_json(&message.vote_json, "vote")?;
        let meta = from_json(&message.meta_json, "snapshot metadata")?;
        let snapshot = openraft::Snapshot { meta, snapshot: Cursor::new(message.data.to_vec()) };
        reply(raft.install_full_snapshot(vote, snapshot).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(entry_sizes: &[usize]) -> AppendEntriesMessage {
        AppendEntriesMessage {
            group: "g".into(),
            vote_json: Bytes::from_static(b"{\"v\":1}"),
            prev_log_id_json: Bytes::from_static(b"null"),
            leader_commit_json: Bytes::from_static(b"null"),
            entries: entry_sizes.iter().enumerate().map(|(i, n)| Bytes::from(vec![i as u8; *n])).collect(),
            more: false,
        }
    }

    #[tokio::test]
    async fn a_member_out_of_disk_space_is_retried_less_and_less_often() {
        let addresses = Addresses::default();
        let mut network = GrpcNetwork::new("g", Arc::new(Transport::new(None)), addresses.clone());
        let node = |n: &str| MemberNode { name: n.into(), internal_addr: "127.0.0.1:1".into() };
        let (full, down) = (network.new_client(1, &node("full")).await, network.new_client(2, &node("down")).await);
        addresses.note_refusal(1, &Status::unavailable(format!("{REPLICA_FULL}: refusing writes: 1 byte free")));
        addresses.note_refusal(2, &Status::unavailable("connection refused"));
        assert!(addresses.refuses_entries(1) && !addresses.refuses_entries(2));
        let delays: Vec<u64> = full.backoff().unwrap().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        // A member that is merely unreachable keeps openraft's own policy.
        assert!(down.backoff().is_none());
        // Entries sent before its latest refusal say nothing; once it takes
        // entries sent after it, it is no longer counted full.
        let before = std::time::Instant::now() - std::time::Duration::from_secs(1);
        addresses.note_taken(1, before);
        assert!(addresses.refuses_entries(1));
        addresses.note_taken(1, std::time::Instant::now());
        assert!(!addresses.refuses_entries(1) && full.backoff().is_none());
    }

    #[test]
    fn a_large_request_goes_in_bounded_parts_and_is_joined_back_exactly() {
        let original = message(&[400, 300, 500, 200, 900, 100]);
        let parts = append_parts(original.clone(), 1000);
        assert!(parts.len() > 1, "split into {} parts", parts.len());
        for part in &parts {
            let bytes: usize = part.entries.iter().map(Bytes::len).sum();
            assert!(bytes <= 1000, "a part of {bytes} bytes");
            assert_eq!((part.group.as_str(), &part.vote_json), ("g", &original.vote_json));
        }
        assert!(parts[..parts.len() - 1].iter().all(|p| p.more) && !parts[parts.len() - 1].more);
        let mut joiner = PartJoiner::default();
        let mut whole = Vec::new();
        for part in parts {
            whole.extend(joiner.push(part).unwrap());
        }
        assert_eq!(whole, vec![original]);
    }

    #[test]
    fn an_entry_larger_than_a_part_travels_alone_and_small_requests_stay_whole() {
        let parts = append_parts(message(&[10, 5000, 10]), 1000);
        let sizes: Vec<Vec<usize>> = parts.iter().map(|p| p.entries.iter().map(Bytes::len).collect()).collect();
        assert_eq!(sizes, vec![vec![10], vec![5000], vec![10]]);
        assert_eq!(append_parts(message(&[10, 20]), 1000), vec![message(&[10, 20])]);
    }

    #[test]
    fn parts_of_consecutive_requests_are_not_joined_together() {
        let (first, second) = (message(&[700, 700]), message(&[600, 600, 600]));
        let mut joiner = PartJoiner::default();
        let mut whole = Vec::new();
        for part in append_parts(first.clone(), 1000).into_iter().chain(append_parts(second.clone(), 1000)) {
            whole.extend(joiner.push(part).unwrap());
        }
        assert_eq!(whole, vec![first, second]);
    }
}
