//! The event store of one context: its events and its snapshots, each an
//! append-only token space of **segment files** in the context's directory.
//!
//! What it owns: the files under `<storage>/<context>/`, their format
//! (documented in [`format`]), group commit (in [`writer`]), crash recovery,
//! the per-segment indexes and bloom filters, and every read. What it does not
//! own: the wire protocol (`api::grpc`) and which contexts exist (`node`).
//!
//! Layout of a context directory:
//!
//! ```text
//! 00000000000000000000.events   closed segment: immutable once a newer one exists
//! 00000000000000000000.index    its aggregate index   (aggregate id -> seq, position)
//! 00000000000000000000.tindex   its sparse token index (token -> position, timestamp)
//! 00000000000000000000.bloom    its bloom filter over aggregate ids
//! 00000000000000000000.retired  marker: the segment's data lives in the lower tier ([`tier`])
//! 00000000000001048576.events   the active segment: named by its first token
//! 0000000000000000000*.snapshots (+ .sindex .stindex .sbloom)  the snapshot store
//! ```
//!
//! Invariants: tokens have no gaps and a segment's name is the token of its
//! first event; closed segments never change (one may be retired whole, its
//! indexes kept); the active segment has one writer and is read only up to
//! its committed length (fsync'd, or written for replicated rounds, which
//! the replication log holds durably); every record carries a CRC-32 that
//! is checked on every read.
//!
//! Recovery at open: the active segment is scanned, its indexes rebuilt and a
//! torn tail (an unconfirmed transaction cut short by a crash) is cut off and
//! logged; the last `validation_segments` closed segments are verified in
//! full, and any closed segment whose side files are missing is rebuilt. A
//! checksum failure in a closed segment fails the open with an error naming
//! the file and offset — the store never starts over damaged data silently.

pub mod bloom;
pub mod cache;
pub mod error;
pub mod event_fields;
pub mod format;
pub mod index;
pub mod metrics;
pub mod scan;
pub mod segments;
pub mod tier;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use error::StoreError;
pub use format::StoreKind;
pub use index::IndexEntry;
pub use metrics::StoreMetrics;
pub use segments::{Cursor, SegmentFiles};

/// Sizes and limits of one store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A segment rolls over when the next transaction would make it larger.
    pub segment_size_bytes: u64,
    /// Closed segments (newest first) fully verified at open.
    pub validation_segments: u32,
    /// Budget of the closed-segment index/bloom cache.
    pub index_cache_bytes: u64,
    /// The active segment rolls over once its index holds this many aggregates.
    pub active_index_aggregates_max: u32,
    /// Most event bytes one group commit takes.
    pub append_batch_bytes_max: u64,
    /// Submissions queued for the writer (a submission is one transaction,
    /// or one replica's batch of applied log entries); senders wait when it
    /// is full.
    pub write_queue_transactions_max: usize,
    /// Writes are refused while free disk is below this many bytes (0: off).
    pub disk_reserve_bytes: u64,
    /// Check aggregate sequence numbers (events) or not (snapshots).
    pub validate_sequences: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            segment_size_bytes: 256 * 1024 * 1024,
            validation_segments: 10,
            index_cache_bytes: 32 * 1024 * 1024,
            active_index_aggregates_max: 200_000,
            append_batch_bytes_max: 8 * 1024 * 1024,
            write_queue_transactions_max: 4096,
            disk_reserve_bytes: 0,
            validate_sequences: true,
        }
    }
}

/// Tells how much disk space is free; injected so that tests can make a
/// disk "full" without filling one.
pub trait DiskSpace: Send + Sync {
    /// Bytes available to this process on the file system holding `path`.
    fn available_bytes(&self, path: &Path) -> std::io::Result<u64>;
}

/// The real file system's free space.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsSpace;

impl DiskSpace for FsSpace {
    fn available_bytes(&self, path: &Path) -> std::io::Result<u64> {
        fs4::available_space(path)
    }
}

/// Where to ask for `dir`'s free space: a directory not made yet will be
/// on its nearest existing parent's file system.
fn existing(dir: &Path) -> &Path {
    dir.ancestors().find(|p| p.exists()).unwrap_or(dir)
}

/// The free-space rule for new writes: refused while a file system holding
/// one of `dirs` has fewer than `bytes` free (0: off). The reserve is room
/// for what was already accepted: the store's writer checks it only for
/// new client writes, never for the transactions of committed log entries.
#[derive(Clone)]
pub struct DiskReserve {
    space: Arc<dyn DiskSpace>,
    bytes: u64,
    dirs: Vec<PathBuf>,
}

impl DiskReserve {
    /// The rule for `dirs` (checked in order).
    pub fn new(space: Arc<dyn DiskSpace>, bytes: u64, dirs: Vec<PathBuf>) -> Self {
        Self { space, bytes, dirs }
    }

    /// The reserve in bytes (0: off).
    pub fn reserve_bytes(&self) -> u64 {
        self.bytes
    }

    /// The bytes free on the fullest file system holding one of the
    /// directories.
    pub fn least_free(&self) -> std::io::Result<u64> {
        let mut least = u64::MAX;
        for dir in &self.dirs {
            least = least.min(self.space.available_bytes(existing(dir))?);
        }
        Ok(least)
    }

    /// `Ok` while every directory's file system has the reserve free;
    /// else `DiskFull` for the first that has not.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.bytes == 0 {
            return Ok(());
        }
        for dir in &self.dirs {
            match self.space.available_bytes(existing(dir)) {
                Ok(available) if available < self.bytes => {
                    return Err(StoreError::DiskFull {
                        path: dir.clone(),
                        available_bytes: available,
                        reserve_bytes: self.bytes,
                    });
                }
                Ok(_) => {}
                Err(source) => return Err(StoreError::Io { op: "check free space of", path: dir.clone(), source }),
            }
        }
        Ok(())
    }
}

/// One store (events or snapshots of a context): cheap to clone, safe to use
/// from many tasks. Reads are blocking file I/O; call them from
/// `spawn_blocking` in async code.
#[derive(Clone)]
pub struct SegmentStore {
    shared: Arc<segments::Shared>,
    queue: mpsc::Sender<writer::Request>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl SegmentStore {
    /// Opens the store in `dir`, recovering it, and starts its writer thread.
    pub fn open(
        context: &str,
        kind: StoreKind,
        dir: &Path,
        options: StoreOptions,
        metrics: StoreMetrics,
        space: Arc<dyn DiskSpace>,
    ) -> Result<Self, StoreError> {
        let queue_len = options.write_queue_transactions_max.max(1);
        let (shared, file) = segments::Shared::open(context, kind, dir, options, metrics)?;
        let shared = Arc::new(shared);
        let (queue, receiver) = mpsc::channel(queue_len);
        let writer = writer::Writer::new(shared.clone(), file, space);
        let name = format!("writer-{context}-{}", kind.name());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || writer.run(receiver))
            .map_err(StoreError::io("start writer thread for", dir))?;
        Ok(Self { shared, queue, thread: Arc::new(Mutex::new(Some(thread))) })
    }

    /// Appends one transaction atomically and waits until it is durable.
    /// Returns the token of its first event.
    pub async fn append(&self, events: Vec<Bytes>) -> Result<u64, StoreError> {
        self.append_tagged(events, 0).await
    }

    /// Appends the transaction of replication log entry `log_index`, which
    /// must be above [`Self::last_log_index`]; the index is stored with the
    /// events, atomically. Answered once written; durable after the next
    /// [`Self::sync`] (or the writer's own fsync soon after).
    pub async fn append_tagged(&self, events: Vec<Bytes>, log_index: u64) -> Result<u64, StoreError> {
        let answer = self.submit(events, log_index).await?;
        answer.await.map_err(|_| self.closed())?
    }

    /// Queues a transaction for the writer and returns as soon as it is
    /// queued (in order with every other submission), with the receiver of
    /// its outcome: callers can queue many and then wait, so that one group
    /// commit takes them all.
    pub async fn submit(
        &self,
        events: Vec<Bytes>,
        log_index: u64,
    ) -> Result<oneshot::Receiver<Result<u64, StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(writer::Request::Append(vec![writer::Append { events, log_index, reply }]))
            .await
            .map_err(|_| self.closed())?;
        Ok(answer)
    }

    /// Queues several transactions as one unit: the writer commits them in
    /// the same round (one write, one fsync), in order.
    pub async fn submit_many(
        &self,
        transactions: Vec<(Vec<Bytes>, u64)>,
    ) -> Result<Vec<oneshot::Receiver<Result<u64, StoreError>>>, StoreError> {
        let mut appends = Vec::with_capacity(transactions.len());
        let mut answers = Vec::with_capacity(transactions.len());
        for (events, log_index) in transactions {
            let (reply, answer) = oneshot::channel();
            appends.push(writer::Append { events, log_index, reply });
            answers.push(answer);
        }
        self.queue.send(writer::Request::Append(appends)).await.map_err(|_| self.closed())?;
        Ok(answers)
    }

    /// Waits until everything submitted before this call is on disk
    /// (fsync'd). Transactions of replication log entries are answered once
    /// written, before their fsync (the replication log holds them
    /// durably); a replica calls this before it records how far it has
    /// applied the log.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(writer::Request::Sync(reply)).await.map_err(|_| self.closed())?;
        answer.await.map_err(|_| self.closed())?
    }

    /// The highest replication log index whose transaction this store holds
    /// (0 when none).
    pub fn last_log_index(&self) -> u64 {
        self.shared.read_state().last_log_index
    }

    fn closed(&self) -> StoreError {
        StoreError::Unavailable { context: self.shared.context.clone(), reason: "the store is closed".into() }
    }

    /// Appends from a thread that is not a tokio task (tests, tools).
    pub fn append_blocking(&self, events: Vec<Bytes>) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .blocking_send(writer::Request::Append(vec![writer::Append { events, log_index: 0, reply }]))
            .map_err(|_| self.closed())?;
        answer.blocking_recv().map_err(|_| self.closed())?
    }

    /// The context this store belongs to.
    pub fn context(&self) -> &str {
        &self.shared.context
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The oldest stored token (0 for a fresh store).
    pub fn first_token(&self) -> u64 {
        self.shared.first_token()
    }

    /// The token the next event will get; the last stored token is one less.
    pub fn next_token(&self) -> u64 {
        self.shared.next_token()
    }

    /// Follows the committed end: changes after every group commit.
    pub fn watch_next_token(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    /// The highest stored sequence number of an aggregate.
    pub fn highest_sequence(&self, aggregate_id: &str) -> Result<Option<i64>, StoreError> {
        self.shared.highest_sequence(aggregate_id)
    }

    /// Where an aggregate's events with `min_seq <= seq < max_seq` are.
    pub fn aggregate_plan(
        &self,
        aggregate_id: &str,
        min_seq: i64,
        max_seq: i64,
    ) -> Result<Vec<(u64, IndexEntry)>, StoreError> {
        self.shared.aggregate_plan(aggregate_id, min_seq, max_seq)
    }

    /// Reads records found by [`Self::aggregate_plan`].
    pub fn read_records(&self, id: &str, places: &[(u64, IndexEntry)]) -> Result<Vec<Bytes>, StoreError> {
        self.shared.read_records(id, places, true)
    }

    /// [`Self::read_records`] from this node's own segments only: records
    /// of retired segments are an error, not a read from the lower tier
    /// (the answer a node gives when it serves as another's tier).
    pub fn read_records_here(&self, id: &str, places: &[(u64, IndexEntry)]) -> Result<Vec<Bytes>, StoreError> {
        self.shared.read_records(id, places, false)
    }

    /// Retires a closed segment to the lower tier (see `tier`): its data
    /// file is deleted, its indexes stay. Blocking file I/O.
    pub fn retire(&self, first_token: u64) -> Result<(), StoreError> {
        self.shared.retire(first_token)
    }

    /// Keeps closed segments on disk until `until` (see `Shared::pin`).
    pub fn pin(&self, segments: &[u64], until: std::time::Instant) {
        self.shared.pin(segments, until)
    }

    /// The committed length of the active segment, when `first_token` names
    /// it (a backup copies that much of it: whole transactions only).
    pub fn active_len(&self, first_token: u64) -> Option<u64> {
        let state = self.shared.read_state();
        (state.active.first_token == first_token).then_some(state.active.len)
    }

    /// Sets where events of retired segments are read.
    pub fn set_lower_tier(&self, tier: std::sync::Arc<dyn tier::LowerTier>) {
        *self.shared.tier.write().unwrap_or_else(|p| p.into_inner()) = Some(tier);
    }

    /// The timestamp of the first event of the segment starting at `segment`
    /// (closed or active; `None` while it is empty). Blocking file I/O.
    pub fn first_timestamp(&self, segment: u64) -> Result<Option<i64>, StoreError> {
        self.shared.first_timestamp(segment)
    }

    /// The closed segments, oldest first (retired ones included).
    pub fn closed_segments(&self) -> Vec<segments::ClosedSegment> {
        self.shared.read_state().closed.clone()
    }

    /// Reads the next committed events after the cursor.
    pub fn read_batch(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.shared.read_batch(cursor, max_events, max_bytes)
    }

    /// [`Self::read_batch`] with each event's replication log index.
    pub fn read_batch_tagged(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes, u64)>, StoreError> {
        self.shared.read_batch_tagged(cursor, max_events, max_bytes, true)
    }

    /// [`Self::read_batch_tagged`] from this node's own segments only (see
    /// [`Self::read_records_here`]).
    pub fn read_batch_tagged_here(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes, u64)>, StoreError> {
        self.shared.read_batch_tagged(cursor, max_events, max_bytes, false)
    }

    /// The first token with a timestamp at or after `instant` (epoch ms).
    pub fn token_at(&self, instant: i64) -> Result<u64, StoreError> {
        self.shared.token_at(instant)
    }

    /// Every segment's files, oldest first; the last one is active.
    pub fn segment_files(&self) -> Vec<SegmentFiles> {
        self.shared.segment_files()
    }

    /// Why writes are refused, if the store stopped accepting them.
    pub fn failure(&self) -> Option<String> {
        self.shared.read_state().failed.clone()
    }

    /// Drops this handle; the last handle to close stops the writer after
    /// the queued transactions and waits for it.
    pub fn close(self) {
        let Self { shared: _, queue, thread } = self;
        drop(queue);
        if Arc::strong_count(&thread) != 1 {
            return;
        }
        let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// A context's two stores.
#[derive(Clone)]
pub struct ContextStore {
    /// The event stream.
    pub events: SegmentStore,
    /// The snapshots.
    pub snapshots: SegmentStore,
}

impl ContextStore {
    /// Opens both stores of `context` under their storage directories.
    pub fn open(
        context: &str,
        events_root: &Path,
        snapshots_root: &Path,
        events_options: StoreOptions,
        snapshot_options: StoreOptions,
        metrics: (StoreMetrics, StoreMetrics),
        space: Arc<dyn DiskSpace>,
    ) -> Result<Self, StoreError> {
        let events_dir: PathBuf = events_root.join(context);
        let snapshots_dir: PathBuf = snapshots_root.join(context);
        let events =
            SegmentStore::open(context, StoreKind::Events, &events_dir, events_options, metrics.0, space.clone())?;
        let snapshot_options = StoreOptions { validate_sequences: false, ..snapshot_options };
        let snapshots =
            SegmentStore::open(context, StoreKind::Snapshots, &snapshots_dir, snapshot_options, metrics.1, space)?;
        Ok(Self { events, snapshots })
    }
}

#[cfg(test)]
pub(crate) mod tests;
