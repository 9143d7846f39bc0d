//! The state machine of a replication group: applies committed log entries
//! to the context stores of this replica, deterministically, so that every
//! replica accepts or refuses the same transactions and assigns the same
//! tokens.
//!
//! Each transaction is written with its store position — its log index
//! shifted left by 16 bits, plus its slot inside a batched entry
//! ([`store_position`]) — (see `store::format`), so the stores themselves
//! record how far the log has been applied; replaying an entry after a
//! restart is refused by the store as already applied and changes nothing,
//! and an entry whose transactions a crash cut in the middle is completed
//! from the first one missing. A batched entry (`GroupCommand::Batch`)
//! answers each of its transactions on its own. `applied.json` (last
//! applied log id and membership) is only a hint written after the stores:
//! it may lag, never lead.
//!
//! The `_admin` group's state machine also holds the cluster model
//! (`cluster::model`): admin commands change it, and the hint then carries
//! the model and is written (and fsync'd) before the batch is answered, so
//! an admin entry at or below the hint's applied index is already in the
//! model and is skipped on replay. Every change is published on a watch
//! channel for the node's reconciler.
//!
//! Stores answer the writes of applied entries before their fsync (the log
//! holds those entries durably), so the hint and every snapshot are
//! written only after a sync of the group's stores: neither ever claims
//! more than the stores hold on disk.
//!
//! Snapshots: the state of a group is its context stores, durable up to
//! the applied index once synced, so a snapshot is only metadata — the
//! last applied log id, the membership, the contexts the group stores, the
//! `_admin` model, and the internal address of the node that built it —
//! kept in `snapshot.json`.
//! Once openraft has one it may purge the log before it. A replica that
//! installs a snapshot (it lags behind the purged log) streams the stored
//! transactions it lacks from that node's stores ([`TransactionSource`]),
//! each with its log index, so later log entries it also receives are
//! recognised as already applied.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_stream::{Stream, StreamExt};

use super::log_store::{read_json, write_atomically};
use super::types::{Entry, GroupCommand, GroupResponse, LogId, TypeConfig};
use crate::cluster::model::ClusterModel;
use crate::store::{ContextStore, SegmentStore, StoreError};

/// How often, at most, the applied hint is rewritten.
const HINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Finds the store of a context on this replica.
pub trait ContextStores: Send + Sync + 'static {
    /// The context's store — opened (created) if this replica has none yet,
    /// since a committed entry must be applied the same way everywhere — or
    /// why it cannot be.
    fn store(&self, context: &str) -> Result<ContextStore, String>;

    /// The context's store when it is open, never opening one (so that a
    /// store closed or deleted since is left alone).
    fn open_store(&self, context: &str) -> Option<ContextStore> {
        self.store(context).ok()
    }
}

impl ContextStores for crate::contexts::Contexts {
    fn store(&self, context: &str) -> Result<ContextStore, String> {
        self.ensure(context)
    }

    fn open_store(&self, context: &str) -> Option<ContextStore> {
        self.get(context).and_then(Result::ok)
    }
}

/// Where a replica that installs a snapshot gets the transactions it lacks.
pub trait TransactionSource: Send + Sync + 'static {
    /// This node's internal address (written into the snapshots it builds).
    fn address(&self) -> String;
    /// The stored events (or snapshots) of `context` at the node at `addr`,
    /// from token `from` to its end, each with its transaction's log index.
    fn fetch(&self, addr: String, context: String, snapshots: bool, from: u64) -> TransactionStream;
}

/// Chunks of (event, log index) in token order.
pub type TransactionStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Vec<(bytes::Bytes, u64)>, String>> + Send + 'static>>;

/// What a snapshot holds besides its metadata.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SnapshotData {
    /// Internal address of the node whose stores back the snapshot.
    source: String,
    /// The contexts the group stores.
    contexts: BTreeSet<String>,
    /// The cluster model (`_admin` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<ClusterModel>,
}

impl SnapshotData {
    /// A context or group name in it that could not have been created
    /// (names become paths: a crafted `../x` must never reach the disk).
    fn bad_name(&self) -> Option<&str> {
        let model = self
            .model
            .iter()
            .flat_map(|m| m.groups.keys().chain(m.contexts.keys()).chain(m.contexts.values().map(|c| &c.group)));
        self.contexts.iter().chain(model).map(String::as_str).find(|name| !ranvier_wire::valid_stored_name(name))
    }
}

/// `snapshot.json`: the last snapshot this node built or installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf<TypeConfig>,
    data: SnapshotData,
}

/// Transactions handed to the stores before waiting for their fsyncs.
const CATCH_UP_IN_FLIGHT: usize = 256;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AppliedHint {
    applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    /// The contexts this group has stored transactions for.
    #[serde(default)]
    contexts: BTreeSet<String>,
    /// The cluster model, in the `_admin` group only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<ClusterModel>,
}

/// The cluster model of the `_admin` group's state machine.
#[derive(Clone)]
struct AdminState {
    model: ClusterModel,
    /// Admin entries up to this index are in the model already.
    durable_index: u64,
    publish: Arc<watch::Sender<Arc<ClusterModel>>>,
}

/// The state machine of one group on this node.
#[derive(Clone)]
pub struct GroupStateMachine {
    stores: Arc<dyn ContextStores>,
    hint_path: PathBuf,
    /// When the hint was last written; it is rewritten at most every
    /// [`HINT_INTERVAL`] (or on a membership change), since it only bounds
    /// how much a restart replays.
    hint_written: Option<tokio::time::Instant>,
    applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    admin: Option<AdminState>,
    contexts: BTreeSet<String>,
    /// Stores written since they were last synced (by key: holding the
    /// stores themselves would keep a closed one's writer alive).
    written: BTreeSet<StoreKey>,
    source: Option<Arc<dyn TransactionSource>>,
    snapshot_path: PathBuf,
}

/// A store of this replica: (context, snapshot store?).
type StoreKey = (String, bool);

/// One store's share of an applied batch: its transactions (events, store
/// position) and the places they answer.
type StoreBatch = (StoreKey, SegmentStore, Vec<(Vec<bytes::Bytes>, u64)>, Vec<Place>);

/// What a store answered for one entry, awaited after the whole batch was
/// handed to the stores (so one group commit can take many entries).
enum Pending {
    Store(oneshot::Receiver<Result<u64, StoreError>>),
    Ready(GroupResponse),
    Failed(StoreError),
    /// A batched entry: the answers of its transactions, in order.
    Many(Vec<Pending>),
}

/// Bits of a store position that number the transactions of one entry.
const SLOT_BITS: u32 = 16;
/// Transactions one batched entry may carry, at most.
pub const BATCH_SLOTS: usize = 1 << SLOT_BITS;

/// The position a store records for the `slot`-th transaction of log
/// entry `index` (see the module docs): increasing in log order, so a
/// store refuses what it already holds — also within an entry that a
/// crash cut in the middle.
pub fn store_position(index: u64, slot: usize) -> u64 {
    (index << SLOT_BITS) | (slot as u64 & (BATCH_SLOTS as u64 - 1))
}

/// The log index a store position belongs to.
pub fn log_index_of(position: u64) -> u64 {
    position >> SLOT_BITS
}

/// Where in an applied batch a transaction's answer goes: (entry, slot
/// inside a batched entry).
type Place = (usize, Option<usize>);

fn refused(code: &str, message: impl Into<String>) -> GroupResponse {
    GroupResponse::Refused { code: code.into(), message: message.into() }
}

impl GroupStateMachine {
    /// The state machine of the group whose files live in `dir`.
    pub fn open(dir: &Path, stores: Arc<dyn ContextStores>) -> io::Result<Self> {
        crate::durable::create_dir_all(dir)?;
        let hint_path = dir.join("applied.json");
        let hint: AppliedHint = read_json(&hint_path)?.unwrap_or_default();
        let snapshot_path = dir.join("snapshot.json");
        let (mut applied, mut membership, mut model) = (hint.applied, hint.membership, hint.model);
        let mut contexts = hint.contexts;
        // A snapshot newer than the hint: the stores hold everything up to it
        // (the log before it may be purged, so the hint must not win).
        if let Some(snapshot) = read_json::<StoredSnapshot>(&snapshot_path)?
            && snapshot.meta.last_log_id > applied
        {
            applied = snapshot.meta.last_log_id;
            membership = snapshot.meta.last_membership.clone();
            contexts.extend(snapshot.data.contexts);
            if snapshot.data.model.is_some() {
                model = snapshot.data.model;
            }
        }
        let admin = model.map(|model| AdminState {
            durable_index: applied.map_or(0, |id| id.index),
            publish: Arc::new(watch::channel(Arc::new(model.clone())).0),
            model,
        });
        Ok(Self {
            stores,
            hint_path,
            hint_written: None,
            applied,
            membership,
            admin,
            contexts,
            written: BTreeSet::new(),
            source: None,
            snapshot_path,
        })
    }

    /// Lets the state machine build snapshots (naming this node as their
    /// source) and install them (fetching from their source).
    pub fn with_source(mut self, source: Arc<dyn TransactionSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The `_admin` group's state machine: also holds the cluster model,
    /// published on the returned channel after every change.
    pub fn open_admin(
        dir: &Path,
        stores: Arc<dyn ContextStores>,
    ) -> io::Result<(Self, watch::Receiver<Arc<ClusterModel>>)> {
        let mut machine = Self::open(dir, stores)?;
        let admin = machine.admin.take().unwrap_or_else(|| AdminState {
            model: ClusterModel::default(),
            durable_index: 0,
            publish: Arc::new(watch::channel(Arc::new(ClusterModel::default())).0),
        });
        let receiver = admin.publish.subscribe();
        machine.admin = Some(admin);
        Ok((machine, receiver))
    }

    /// Applies an admin command to the model, or refuses it the same way
    /// on every replica. Entries already in the durable model are skipped.
    fn apply_admin(&mut self, index: u64, command: &crate::cluster::model::AdminCommand) -> (GroupResponse, bool) {
        let Some(admin) = self.admin.as_mut() else {
            return (refused("AXONIQ-2309", "admin commands belong to the _admin replication group"), false);
        };
        if index <= admin.durable_index {
            return (GroupResponse::Applied, false);
        }
        match admin.model.apply(command) {
            Ok(()) => (GroupResponse::Applied, true),
            Err(refusal) => (refused(refusal.code, refusal.message), false),
        }
    }

    /// The store and events a data command goes to, or its answer when it
    /// cannot be stored here (the same on every replica).
    fn target(&self, command: GroupCommand) -> Result<(StoreKey, SegmentStore, Vec<bytes::Bytes>), GroupResponse> {
        let (context, events, snapshot) = match command {
            GroupCommand::AppendEvents { context, events } => (context, events, false),
            GroupCommand::AppendSnapshot { context, snapshot } => (context, vec![snapshot], true),
            GroupCommand::Admin(_) | GroupCommand::Batch(_) => {
                return Err(refused("AXONIQ-2309", "not a client transaction"));
            }
        };
        let store = self.stores.store(&context).map_err(|reason| refused("AXONIQ-6000", reason))?;
        let target = if snapshot { store.snapshots } else { store.events };
        Ok(((context, snapshot), target, events))
    }

    /// Queues one client transaction for its store at `position`, to be
    /// answered at `place` (and adds its context to the group's).
    fn stage(&mut self, command: GroupCommand, position: u64, place: Place, batches: &mut Vec<StoreBatch>) -> Pending {
        if let GroupCommand::AppendEvents { context, .. } | GroupCommand::AppendSnapshot { context, .. } = &command
            && !self.contexts.contains(context)
        {
            self.contexts.insert(context.clone());
        }
        match self.target(command) {
            Ok((key, store, events)) => {
                let at = match batches.iter().position(|(k, ..)| *k == key) {
                    Some(at) => at,
                    None => {
                        batches.push((key, store, Vec::new(), Vec::new()));
                        batches.len() - 1
                    }
                };
                batches[at].2.push((events, position));
                batches[at].3.push(place);
                Pending::Ready(GroupResponse::Applied)
            }
            Err(response) => Pending::Ready(response),
        }
    }

    /// Applies committed entries in log order and answers each. All store
    /// writes of the batch are queued before any is awaited.
    pub async fn apply_batch(&mut self, entries: Vec<Entry>) -> io::Result<Vec<GroupResponse>> {
        let mut started = Vec::with_capacity(entries.len());
        // Per store, the transactions of this batch: submitted together, so
        // one write and one fsync take them all.
        let mut batches: Vec<StoreBatch> = Vec::new();
        let mut last = None;
        let mut membership_changed = false;
        let mut model_changed = false;
        let contexts_before = self.contexts.len();
        for entry in entries {
            last = Some(entry.log_id);
            let index = entry.log_id.index;
            let slot = started.len();
            let pending = match entry.payload {
                EntryPayload::Blank => Pending::Ready(GroupResponse::Applied),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), membership);
                    membership_changed = true;
                    Pending::Ready(GroupResponse::Applied)
                }
                EntryPayload::Normal(GroupCommand::Admin(command)) => {
                    let (response, changed) = self.apply_admin(index, &command);
                    model_changed |= changed;
                    Pending::Ready(response)
                }
                EntryPayload::Normal(GroupCommand::Batch(commands)) => {
                    let mut parts = Vec::with_capacity(commands.len());
                    for (i, command) in commands.into_iter().enumerate().take(BATCH_SLOTS) {
                        parts.push(self.stage(command, store_position(index, i), (slot, Some(i)), &mut batches));
                    }
                    Pending::Many(parts)
                }
                EntryPayload::Normal(command) => {
                    self.stage(command, store_position(index, 0), (slot, None), &mut batches)
                }
            };
            started.push(pending);
        }
        // A context stored for the first time is recorded in the hint at once.
        membership_changed |= self.contexts.len() != contexts_before;
        for (key, store, transactions, places) in batches {
            self.written.insert(key);
            match store.submit_many(transactions).await {
                Ok(answers) => {
                    for (place, answer) in places.into_iter().zip(answers) {
                        *pending_at(&mut started, place) = Pending::Store(answer);
                    }
                }
                Err(error) => {
                    for place in places {
                        *pending_at(&mut started, place) = Pending::Failed(error.duplicate());
                    }
                }
            }
        }
        let mut responses = Vec::with_capacity(started.len());
        for pending in started {
            responses.push(finish(pending).await?);
        }
        if last.is_some() {
            self.applied = last;
            let due = self.hint_written.is_none_or(|at| at.elapsed() >= HINT_INTERVAL);
            if due || membership_changed || model_changed {
                self.write_hint().await?;
                self.hint_written = Some(tokio::time::Instant::now());
            }
            if let Some(admin) = self.admin.as_mut() {
                admin.durable_index = self.applied.map_or(0, |id| id.index).max(admin.durable_index);
                if model_changed {
                    admin.publish.send_replace(Arc::new(admin.model.clone()));
                }
            }
        }
        Ok(responses)
    }

    /// Waits until every store of the group holds what was applied on disk
    /// (stores answer replicated writes before their fsync).
    async fn sync_stores(&mut self) -> io::Result<()> {
        for (context, snapshots) in &self.written {
            // A store closed since has fsync'd what it held.
            let Some(store) = self.stores.open_store(context) else { continue };
            let target = if *snapshots { store.snapshots } else { store.events };
            target.sync().await.map_err(|e| io::Error::other(format!("failed to sync a store: {e}")))?;
        }
        // Forgotten only once all are synced: after a failure, every one is tried again.
        self.written.clear();
        Ok(())
    }

    /// Writes the hint atomically and durably, once the stores hold
    /// everything it claims.
    async fn write_hint(&mut self) -> io::Result<()> {
        self.sync_stores().await?;
        let model = self.admin.as_ref().map(|admin| admin.model.clone());
        let hint = AppliedHint {
            applied: self.applied,
            membership: self.membership.clone(),
            contexts: self.contexts.clone(),
            model,
        };
        write_atomically(&self.hint_path, &serde_json::to_vec(&hint).map_err(io::Error::other)?)
    }

    /// Catches the stores up from `data.source` (everything after what they
    /// hold), in log order, waiting for the fsyncs.
    async fn catch_up(&self, data: &SnapshotData) -> io::Result<()> {
        let Some(source) = self.source.as_ref() else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "this replica cannot fetch transactions"));
        };
        for context in &data.contexts {
            let store = self.stores.store(context).map_err(io::Error::other)?;
            for (snapshots, target) in [(false, &store.events), (true, &store.snapshots)] {
                let from = target.next_token();
                let mut stream = source.fetch(data.source.clone(), context.clone(), snapshots, from);
                let mut pending = Vec::new();
                let mut group: Vec<bytes::Bytes> = Vec::new();
                let mut group_index = 0u64;
                let mut moved = 0u64;
                while let Some(chunk) = stream.next().await {
                    for (event, index) in chunk.map_err(io::Error::other)? {
                        if index != group_index && !group.is_empty() {
                            pending.push(target.submit(std::mem::take(&mut group), group_index).await);
                        }
                        group_index = index;
                        group.push(event);
                        moved += 1;
                    }
                    if pending.len() >= CATCH_UP_IN_FLIGHT {
                        settle(std::mem::take(&mut pending)).await?;
                    }
                }
                if !group.is_empty() {
                    pending.push(target.submit(group, group_index).await);
                }
                settle(pending).await?;
                target.sync().await.map_err(|e| io::Error::other(format!("failed to sync a store: {e}")))?;
                if moved > 0 {
                    tracing::info!(%context, snapshots, from, events = moved, source = %data.source, "caught up from another replica");
                }
            }
        }
        Ok(())
    }
}

/// Founds a group in `dir` over stores that already hold transactions up
/// to log entry `index` — restored from a backup, or kept when their
/// context was deleted — instead of at an empty log: a snapshot at `index`
/// of those stores, served by this node (internal address `source`), with
/// `members` as voters. The group's log then starts after `index`, so the
/// stores never meet a log index they hold already, and members that join
/// later install the snapshot and catch up from this node's stores.
/// `me` starts with a vote for itself in term 1 (the snapshot's term).
pub fn found_over_stores(
    dir: &Path,
    index: u64,
    me: u64,
    members: std::collections::BTreeMap<u64, super::types::MemberNode>,
    contexts: BTreeSet<String>,
    source: String,
) -> io::Result<()> {
    crate::durable::create_dir_all(dir)?;
    let log_id = LogId::new(openraft::vote::leader_id_std::CommittedLeaderId::new(1), index);
    let voters = members.keys().copied().collect::<BTreeSet<u64>>();
    let membership = super::types::Membership::new(vec![voters], members).map_err(io::Error::other)?;
    let membership = StoredMembershipOf::<TypeConfig>::new(Some(log_id), membership);
    let meta = SnapshotMetaOf::<TypeConfig> { last_log_id: Some(log_id), last_membership: membership.clone() };
    let data = SnapshotData { source, contexts: contexts.clone(), model: None };
    write_snapshot(&dir.join("snapshot.json"), &StoredSnapshot { meta, data })?;
    let hint = AppliedHint { applied: Some(log_id), membership, contexts, model: None };
    write_atomically(&dir.join("applied.json"), &serde_json::to_vec(&hint).map_err(io::Error::other)?)?;
    super::log_store::start_after(dir, log_id, super::types::Vote::new(1, me))
}

/// The answer slot of a transaction in an applied batch.
fn pending_at(started: &mut [Pending], (entry, inner): Place) -> &mut Pending {
    match (inner, &mut started[entry]) {
        (Some(i), Pending::Many(parts)) => &mut parts[i],
        (_, single) => single,
    }
}

/// Waits for queued catch-up transactions; one already stored is fine.
async fn settle(pending: Vec<Result<oneshot::Receiver<Result<u64, StoreError>>, StoreError>>) -> io::Result<()> {
    for submitted in pending {
        let answer = submitted.map_err(|e| io::Error::other(e.to_string()))?;
        match answer.await.map_err(|_| io::Error::other("a store stopped while catching up"))? {
            Ok(_) | Err(StoreError::AlreadyApplied { .. }) => {}
            Err(error) => return Err(io::Error::other(format!("failed to store a fetched transaction: {error}"))),
        }
    }
    Ok(())
}

fn write_snapshot(path: &Path, snapshot: &StoredSnapshot) -> io::Result<()> {
    write_atomically(path, &serde_json::to_vec(snapshot).map_err(io::Error::other)?)
}

fn snapshot_of(stored: StoredSnapshot) -> io::Result<SnapshotOf<TypeConfig, std::io::Cursor<Vec<u8>>>> {
    let data = serde_json::to_vec(&stored.data).map_err(io::Error::other)?;
    Ok(openraft::Snapshot { meta: stored.meta, snapshot: std::io::Cursor::new(data) })
}

/// Turns a store's answer into the entry's response. Failures that are not
/// the same on every replica (I/O, a full disk) must not become a refusal:
/// they stop the state machine instead.
async fn finish(pending: Pending) -> io::Result<GroupResponse> {
    let answer = match pending {
        Pending::Ready(response) => return Ok(response),
        Pending::Many(parts) => {
            let mut responses = Vec::with_capacity(parts.len());
            for part in parts {
                responses.push(Box::pin(finish(part)).await?);
            }
            return Ok(GroupResponse::Batch(responses));
        }
        Pending::Failed(error) => Err(error),
        Pending::Store(answer) => answer.await.map_err(|_| io::Error::other("a store stopped while applying"))?,
    };
    match answer {
        Ok(first_token) => Ok(GroupResponse::Appended { first_token }),
        Err(error @ StoreError::InvalidSequence { .. }) => Ok(refused("AXONIQ-2000", error.to_string())),
        Err(error @ StoreError::Malformed { .. }) => Ok(refused("AXONIQ-2311", error.to_string())),
        Err(StoreError::AlreadyApplied { last, .. }) => {
            Ok(refused("AXONIQ-0001", format!("already applied (the store holds entries up to {last})")))
        }
        Err(error) => Err(io::Error::other(format!("failed to apply a log entry: {error}"))),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for GroupStateMachine {
    type SnapshotData = std::io::Cursor<Vec<u8>>;

    /// A snapshot at the applied index: the stores already hold it durably.
    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Self::SnapshotData>, io::Error> {
        let Some(source) = self.source.as_ref() else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "this replica builds no snapshots"));
        };
        let index = self.applied.map_or(0, |id| id.index);
        let stored = StoredSnapshot {
            meta: SnapshotMetaOf::<TypeConfig> { last_log_id: self.applied, last_membership: self.membership.clone() },
            data: SnapshotData {
                source: source.address(),
                contexts: self.contexts.clone(),
                model: self.admin.as_ref().map(|admin| admin.model.clone()),
            },
        };
        // The log before the snapshot may be purged once it exists.
        self.sync_stores().await?;
        write_snapshot(&self.snapshot_path, &stored)?;
        tracing::debug!(index, "snapshot built");
        snapshot_of(stored)
    }
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = std::io::Cursor<Vec<u8>>;
    type SnapshotBuilder = GroupStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch.push(entry);
            responders.push(responder);
        }
        let responses = self.apply_batch(batch).await?;
        for (response, responder) in responses.into_iter().zip(responders) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// Fetches what the stores lack from the snapshot's source, then takes
    /// the snapshot's position (and, in `_admin`, its model).
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data: SnapshotData = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot data: {e}")))?;
        if let Some(bad) = data.bad_name() {
            let message = format!("snapshot data names {bad:?}, which is not a context or group name");
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        self.catch_up(&data).await?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.contexts.extend(data.contexts.iter().cloned());
        if let (Some(admin), Some(model)) = (self.admin.as_mut(), data.model.clone()) {
            admin.model = model;
            admin.durable_index = meta.last_log_id.map_or(0, |id| id.index);
            admin.publish.send_replace(Arc::new(admin.model.clone()));
        }
        let own = self.source.as_ref().map(|s| s.address()).unwrap_or_default();
        write_snapshot(
            &self.snapshot_path,
            &StoredSnapshot { meta: meta.clone(), data: SnapshotData { source: own, ..data } },
        )?;
        self.write_hint().await?;
        tracing::info!(index = meta.last_log_id.map_or(0, |id| id.index), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        match read_json::<StoredSnapshot>(&self.snapshot_path)? {
            Some(stored) => snapshot_of(stored).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
