//! The state machine of a replication group: applies committed log entries
//! to the context stores of this replica, deterministically, so that every
//! replica accepts or refuses the same transactions and assigns the same
//! tokens.
//!
//! Each transaction is written with its log index (see `store::format`), so
//! the stores themselves record how far the log has been applied; replaying
//! an entry after a restart is refused by the store as already applied and
//! changes nothing. `applied.json` (last applied log id and membership) is
//! only a hint written after the stores: it may lag, never lead.
//!
//! The `_admin` group's state machine also holds the cluster model
//! (`cluster::model`): admin commands change it, and the hint then carries
//! the model and is written (and fsync'd) before the batch is answered, so
//! an admin entry at or below the hint's applied index is already in the
//! model and is skipped on replay. Every change is published on a watch
//! channel for the node's reconciler.
//!
//! Not yet: snapshots. Groups run with openraft's snapshot policy `Never`
//! and keep their whole log, so a new member catches up by replaying it;
//! streaming segment files to far-behind members comes with log purging.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_stream::{Stream, StreamExt};

use super::types::{Entry, GroupCommand, GroupResponse, LogId, TypeConfig};
use crate::cluster::model::ClusterModel;
use crate::store::{ContextStore, StoreError};

/// How often, at most, the applied hint is rewritten.
const HINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Finds the store of a context on this replica.
pub trait ContextStores: Send + Sync + 'static {
    /// The context's store — opened (created) if this replica has none yet,
    /// since a committed entry must be applied the same way everywhere — or
    /// why it cannot be.
    fn store(&self, context: &str) -> Result<ContextStore, String>;
}

impl ContextStores for crate::contexts::Contexts {
    fn store(&self, context: &str) -> Result<ContextStore, String> {
        self.ensure(context)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct AppliedHint {
    applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
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
}

/// What a store answered for one entry, awaited after the whole batch was
/// handed to the stores (so one group commit can take many entries).
enum Pending {
    Store(oneshot::Receiver<Result<u64, StoreError>>),
    Ready(GroupResponse),
    Failed(StoreError),
}

fn refused(code: &str, message: impl Into<String>) -> GroupResponse {
    GroupResponse::Refused { code: code.into(), message: message.into() }
}

impl GroupStateMachine {
    /// The state machine of the group whose files live in `dir`.
    pub fn open(dir: &Path, stores: Arc<dyn ContextStores>) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let hint_path = dir.join("applied.json");
        let hint: AppliedHint = match std::fs::read(&hint_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => AppliedHint::default(),
            Err(e) => return Err(e),
        };
        let admin = hint.model.map(|model| AdminState {
            durable_index: hint.applied.map_or(0, |id| id.index),
            publish: Arc::new(watch::channel(Arc::new(model.clone())).0),
            model,
        });
        Ok(Self { stores, hint_path, hint_written: None, applied: hint.applied, membership: hint.membership, admin })
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

    /// Queues one command at its store without waiting for the fsync.
    async fn start(&self, index: u64, command: GroupCommand) -> Pending {
        let (context, events, snapshot) = match command {
            GroupCommand::AppendEvents { context, events } => (context, events, false),
            GroupCommand::AppendSnapshot { context, snapshot } => (context, vec![snapshot], true),
            GroupCommand::Admin(_) => return Pending::Ready(refused("AXONIQ-2309", "not an admin group")),
        };
        let store = match self.stores.store(&context) {
            Ok(store) => store,
            Err(reason) => return Pending::Ready(refused("AXONIQ-6000", reason)),
        };
        let target = if snapshot { store.snapshots } else { store.events };
        match target.submit(events, index).await {
            Ok(answer) => Pending::Store(answer),
            Err(error) => Pending::Failed(error),
        }
    }

    /// Applies committed entries in log order and answers each. All store
    /// writes of the batch are queued before any is awaited.
    pub async fn apply_batch(&mut self, entries: Vec<Entry>) -> io::Result<Vec<GroupResponse>> {
        let mut started = Vec::with_capacity(entries.len());
        let mut last = None;
        let mut membership_changed = false;
        let mut model_changed = false;
        for entry in entries {
            last = Some(entry.log_id);
            let pending = match entry.payload {
                EntryPayload::Blank => Pending::Ready(GroupResponse::Applied),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), membership);
                    membership_changed = true;
                    Pending::Ready(GroupResponse::Applied)
                }
                EntryPayload::Normal(GroupCommand::Admin(command)) => {
                    let (response, changed) = self.apply_admin(entry.log_id.index, &command);
                    model_changed |= changed;
                    Pending::Ready(response)
                }
                EntryPayload::Normal(command) => self.start(entry.log_id.index, command).await,
            };
            started.push(pending);
        }
        let mut responses = Vec::with_capacity(started.len());
        for pending in started {
            responses.push(finish(pending).await?);
        }
        if last.is_some() {
            self.applied = last;
            let due = self.hint_written.is_none_or(|at| at.elapsed() >= HINT_INTERVAL);
            if due || membership_changed || model_changed {
                self.write_hint()?;
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

    /// Writes the hint atomically and durably (temp file, fsync, rename).
    fn write_hint(&self) -> io::Result<()> {
        use std::io::Write;
        let model = self.admin.as_ref().map(|admin| admin.model.clone());
        let hint = AppliedHint { applied: self.applied, membership: self.membership.clone(), model };
        let bytes = serde_json::to_vec(&hint).map_err(io::Error::other)?;
        let temp = self.hint_path.with_extension("json.temp");
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        std::fs::rename(&temp, &self.hint_path)
    }
}

/// Turns a store's answer into the entry's response. Failures that are not
/// the same on every replica (I/O, a full disk) must not become a refusal:
/// they stop the state machine instead.
async fn finish(pending: Pending) -> io::Result<GroupResponse> {
    let answer = match pending {
        Pending::Ready(response) => return Ok(response),
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

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Self::SnapshotData>, io::Error> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "replication group snapshots are not supported yet"))
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

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMetaOf<TypeConfig>,
        _snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "replication group snapshots are not supported yet"))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
