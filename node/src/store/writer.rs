//! The single writer of a store: a dedicated thread that takes transactions
//! from a bounded queue and commits them in groups. Each round it drains what
//! is queued (up to `append_batch_bytes_max`), validates aggregate sequence
//! numbers in arrival order, frames the accepted transactions into one
//! buffer, writes it with one `pwrite` and one `fdatasync`, then publishes the
//! new committed length and answers every caller. Many concurrent
//! transactions therefore cost one fsync.
//!
//! Transactions of replication log entries (a log index above 0) are held
//! durably by the replication log already, so their rounds are answered
//! once written and fsync'd afterwards: `SYNC_DEFER_MAX_TIME` after the
//! first unsynced write (or past `SYNC_DEFER_MAX_BYTES`), so that one fsync
//! takes many rounds, and before a segment is closed. A `Sync` request
//! waits for that fsync (a replica asks before it records how far it has
//! applied the log, at most once a second, so that is usually what
//! triggers it). Only the
//! first frame written after an fsync starts a group commit, so recovery
//! still treats damage after the last fsync as a torn tail.
//!
//! Failure rules: below the disk reserve client transactions are not
//! written and get `DiskFull`, while transactions of replication log
//! entries still are (they are committed already; on a cluster the reserve
//! is kept by the leader, which takes no new transactions, and by replicas,
//! which take no new log entries, while below it); a failed write is cut
//! off again (`ftruncate` to the committed length) and reported, so the
//! file never keeps a partial frame;
//! a failed fsync leaves the page cache in an unknown state, so the store
//! refuses all further writes until a restart re-verifies the files.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cached, Part};
use super::error::StoreError;
use super::event_fields;
use super::format::{self, HEADER_LEN};
use super::index::{AggregateIndex, IndexEntry, TokenIndex};
use super::scan::is_indexed;
use super::segments::{ActiveSegment, ClosedSegment, Shared, create_segment, write_side_files};
use super::{DiskReserve, DiskSpace};

/// Unsynced bytes of replicated rounds after which the writer fsyncs even
/// while more work is queued.
const SYNC_DEFER_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time replicated rounds stay unsynced. Nothing waits for their
/// fsync but a `Sync` request, so a long window costs no latency; a short
/// one cost a replica an fsync every few batches (with 10 ms: about 70 a
/// second under load, on the disk its log fsyncs wait for too).
const SYNC_DEFER_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// What the writer is asked to do.
pub enum Request {
    /// Transactions submitted together: they always share a round.
    Append(Vec<Append>),
    /// Answer once everything written before is fsync'd.
    Sync(oneshot::Sender<Result<(), StoreError>>),
}

/// A transaction handed to the writer.
pub struct Append {
    /// The encoded `Event`s, in order.
    pub events: Vec<Bytes>,
    /// The replication log entry they come from; 0 when not replicated.
    /// Must be above every log index the store already holds.
    pub log_index: u64,
    /// Receives the first token of the transaction, or why it was refused.
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// A transaction accepted in this round, not yet on disk.
struct Pending {
    reply: oneshot::Sender<Result<u64, StoreError>>,
    first_token: u64,
    /// Its indexed events.
    index: TxIndex,
    frame_pos: u32,
    first_timestamp: i64,
    events: u64,
    bytes: u64,
    log_index: u64,
}

/// The indexed events of one transaction, without an allocation per event:
/// their aggregate ids share one string, and consecutive events of one
/// aggregate (the usual transaction) share one copy of its id.
#[derive(Default)]
struct TxIndex {
    ids: String,
    /// (start, end) of the id in `ids`, sequence number, record position.
    events: Vec<(u32, u32, i64, u32)>,
}

impl TxIndex {
    fn push(&mut self, id: &str, seq: i64, pos: u32) {
        let range = match self.events.last() {
            Some(&(start, end, _, _)) if &self.ids[start as usize..end as usize] == id => (start, end),
            _ => {
                let start = self.ids.len() as u32;
                self.ids.push_str(id);
                (start, self.ids.len() as u32)
            }
        };
        self.events.push((range.0, range.1, seq, pos));
    }

    /// Runs of consecutive events of one aggregate: its id and their
    /// (sequence number, record position).
    fn runs(&self) -> impl Iterator<Item = (&str, &[(u32, u32, i64, u32)])> {
        self.events
            .chunk_by(|a, b| (a.0, a.1) == (b.0, b.1))
            .map(|run| (&self.ids[run[0].0 as usize..run[0].1 as usize], run))
    }
}

/// The writer thread's own state.
pub struct Writer {
    shared: Arc<Shared>,
    reserve: DiskReserve,
    file: File,
    /// File length including everything written this round.
    len: u64,
    next_token: u64,
    /// Highest log index staged or committed.
    last_log_index: u64,
    buffer: Vec<u8>,
    pending: Vec<Pending>,
    /// Highest sequence per aggregate among this round's accepted transactions.
    round_sequences: HashMap<String, i64>,
    /// Since when written data waits for its fsync, and how much of it.
    unsynced: Option<(Instant, u64)>,
}

impl Writer {
    /// A writer for the recovered store.
    pub fn new(shared: Arc<Shared>, file: File, space: Arc<dyn DiskSpace>) -> Self {
        let (len, next_token, last_log_index) = {
            let state = shared.read_state();
            (state.active.len, state.active.next_token, state.last_log_index)
        };
        let reserve = DiskReserve::new(space, shared.options.disk_reserve_bytes, vec![shared.dir.clone()]);
        Self {
            shared,
            reserve,
            file,
            len,
            next_token,
            last_log_index,
            buffer: Vec::new(),
            pending: Vec::new(),
            round_sequences: HashMap::new(),
            unsynced: None,
        }
    }

    /// Runs until every sender of `queue` is dropped (then fsyncs what
    /// waits for it).
    pub fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let batch_max = self.shared.options.append_batch_bytes_max as usize;
        let bytes_of = |appends: &[Append]| appends.iter().flat_map(|a| a.events.iter()).map(Bytes::len).sum::<usize>();
        // Only waits for the next request or the deferred fsync, whichever
        // comes first; without it, the writer fsyncs as soon as it is idle.
        let timer = tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
        while let Some(request) = self.next_request(&mut queue, timer.as_ref()) {
            let first = match request {
                Request::Append(first) => first,
                Request::Sync(reply) => {
                    let _ = reply.send(self.sync());
                    continue;
                }
            };
            let mut round_bytes = bytes_of(&first);
            let mut round = first;
            let mut sync_after = None;
            while round_bytes < batch_max {
                match queue.try_recv() {
                    Ok(Request::Append(next)) => {
                        round_bytes += bytes_of(&next);
                        round.extend(next);
                    }
                    Ok(Request::Sync(reply)) => {
                        sync_after = Some(reply);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_round(round);
            if let Some(reply) = sync_after {
                let _ = reply.send(self.sync());
            }
        }
        let _ = self.sync();
    }

    /// The next request; while written data waits for its fsync, the fsync
    /// comes once the data has waited `SYNC_DEFER_MAX_TIME` (or grew past
    /// `SYNC_DEFER_MAX_BYTES`) without a request asking for it first.
    fn next_request(&mut self, queue: &mut mpsc::Receiver<Request>, timer: Option<&Runtime>) -> Option<Request> {
        if let Some((since, bytes)) = self.unsynced {
            let left = SYNC_DEFER_MAX_TIME.saturating_sub(since.elapsed());
            if bytes < SYNC_DEFER_MAX_BYTES && !left.is_zero() {
                if let Ok(request) = queue.try_recv() {
                    return Some(request);
                }
                if let Some(timer) = timer
                    && let Ok(next) = timer.block_on(async { tokio::time::timeout(left, queue.recv()).await })
                {
                    return next;
                }
            }
            let _ = self.sync();
        }
        queue.blocking_recv()
    }

    /// Fsyncs data written since the last fsync; a failure stops the store.
    fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(reason) = self.shared.read_state().failed.clone() {
            return Err(StoreError::Unavailable { context: self.shared.context.clone(), reason });
        }
        if self.unsynced.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        if let Err(source) = self.file.sync_data() {
            let path = self.shared.path(self.shared.read_state().active.first_token, self.shared.kind.data_suffix());
            let reason = format!("fsync of {} failed: {source}", path.display());
            self.fail(reason.clone());
            return Err(StoreError::Unavailable { context: self.shared.context.clone(), reason });
        }
        self.shared.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.unsynced = None;
        Ok(())
    }

    fn commit_round(&mut self, round: Vec<Append>) {
        // Client writes are refused below the disk reserve; replicated ones
        // (committed log entries) are not: the reserve is their room.
        let room = match round.iter().any(|a| a.log_index == 0) {
            true => self.reserve.check(),
            false => Ok(()),
        };
        for append in round {
            if let (Err(error), 0) = (&room, append.log_index) {
                let _ = append.reply.send(Err(error.duplicate()));
                continue;
            }
            if let Some(error) = self.failure() {
                let _ = append.reply.send(Err(error));
                continue;
            }
            if self.needs_roll(&append) {
                self.flush();
                // The flush may have failed: never roll (or write) past it.
                if let Some(error) = self.failure() {
                    let _ = append.reply.send(Err(error));
                    continue;
                }
                if let Err(error) = self.roll() {
                    self.fail(format!("failed to roll over to a new segment: {error}"));
                    let _ = append.reply.send(Err(error));
                    continue;
                }
            }
            self.stage(append);
        }
        self.flush();
    }

    /// The error every write gets once the store has failed.
    fn failure(&self) -> Option<StoreError> {
        let reason = self.shared.read_state().failed.clone()?;
        Some(StoreError::Unavailable { context: self.shared.context.clone(), reason })
    }

    fn needs_roll(&self, append: &Append) -> bool {
        let frame = format::frame_len(append.events.iter().map(Bytes::len)) as u64;
        let len = self.len + self.buffer.len() as u64;
        let has_data = len > HEADER_LEN;
        let full = len + frame > self.shared.options.segment_size_bytes;
        let many = {
            let state = self.shared.read_state();
            state.active.aggregates.aggregate_count() >= self.shared.options.active_index_aggregates_max as usize
        };
        has_data && (full || many)
    }

    /// Validates one transaction and, if accepted, frames it into the buffer.
    fn stage(&mut self, append: Append) {
        if append.log_index != 0 && append.log_index <= self.last_log_index {
            let error = StoreError::AlreadyApplied { log_index: append.log_index, last: self.last_log_index };
            let _ = append.reply.send(Err(error));
            return;
        }
        let frame_pos = self.len + self.buffer.len() as u64;
        let mut index = TxIndex::default();
        let mut first_timestamp = 0;
        // The aggregate of the latest indexed event and its sequence number;
        // the others seen earlier in this transaction, with their last one.
        let mut current: Option<(&str, i64)> = None;
        let mut earlier: HashMap<&str, i64> = HashMap::new();
        let mut record_pos = frame_pos + format::FRAME_HEADER_LEN as u64;
        for (i, event) in append.events.iter().enumerate() {
            let Some(fields) = event_fields::parse(event) else {
                let _ = append.reply.send(Err(StoreError::Malformed { index: i }));
                return;
            };
            if i == 0 {
                first_timestamp = fields.timestamp;
            }
            if is_indexed(self.shared.kind, &fields) {
                let id = fields.aggregate_id;
                if self.shared.options.validate_sequences {
                    let expected = match current {
                        Some((current_id, seq)) if current_id == id => Ok(seq + 1),
                        _ => match earlier.get(id) {
                            Some(seq) => Ok(seq + 1),
                            None => self.expected_sequence(id),
                        },
                    };
                    let expected = match expected {
                        Ok(expected) => expected,
                        Err(error) => {
                            let _ = append.reply.send(Err(error));
                            return;
                        }
                    };
                    if fields.sequence != expected {
                        let _ = append.reply.send(Err(StoreError::InvalidSequence {
                            aggregate_id: id.to_owned(),
                            sequence: fields.sequence,
                            expected,
                        }));
                        return;
                    }
                    if let Some((current_id, seq)) = current
                        && current_id != id
                    {
                        earlier.insert(current_id, seq);
                    }
                    current = Some((id, fields.sequence));
                }
                index.push(id, fields.sequence, record_pos as u32);
            }
            record_pos += (format::RECORD_HEADER_LEN + event.len()) as u64;
        }
        // The latest event of an aggregate counts: `current` comes last.
        for (id, seq) in earlier.into_iter().chain(current) {
            match self.round_sequences.get_mut(id) {
                Some(last) => *last = seq,
                None => {
                    self.round_sequences.insert(id.to_owned(), seq);
                }
            }
        }
        let first_token = self.next_token;
        let bytes: u64 = append.events.iter().map(|e| e.len() as u64).sum();
        let events = append.events.len() as u64;
        if events > 0 {
            // A group commit starts only where everything before is fsync'd.
            let group_start = self.buffer.is_empty() && self.unsynced.is_none();
            let records = append.events.iter().map(|e| &e[..]);
            format::encode_frame(&mut self.buffer, first_token, append.log_index, group_start, records);
            self.next_token += events;
        }
        self.pending.push(Pending {
            reply: append.reply,
            first_token,
            index,
            frame_pos: frame_pos as u32,
            first_timestamp,
            events,
            bytes,
            log_index: append.log_index,
        });
        self.last_log_index = self.last_log_index.max(append.log_index);
    }

    /// The next sequence number of an aggregate not yet in this transaction:
    /// after this round's transactions, else after the store's.
    fn expected_sequence(&self, id: &str) -> Result<i64, StoreError> {
        if let Some(seq) = self.round_sequences.get(id) {
            return Ok(seq + 1);
        }
        Ok(self.shared.highest_sequence(id)?.map_or(0, |seq| seq + 1))
    }

    /// Writes and fsyncs the buffer, publishes, and answers the round.
    fn flush(&mut self) {
        self.round_sequences.clear();
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return;
        }
        if self.buffer.is_empty() {
            // Only empty transactions: nothing to write.
            for p in pending {
                let _ = p.reply.send(Ok(p.first_token));
            }
            return;
        }
        let path = self.shared.path(self.shared.read_state().active.first_token, self.shared.kind.data_suffix());
        if let Err(source) = self.file.write_all_at(&self.buffer, self.len) {
            self.undo_write(&path);
            self.buffer.clear();
            let reason = source.to_string();
            for p in pending {
                let _ = p.reply.send(Err(StoreError::Io {
                    op: "write",
                    path: path.clone(),
                    source: std::io::Error::new(source.kind(), reason.clone()),
                }));
            }
            return;
        }
        // Replicated rounds are answered now and fsync'd soon after.
        if pending.iter().all(|p| p.log_index != 0) {
            let written = self.buffer.len() as u64;
            let (since, bytes) = self.unsynced.unwrap_or((Instant::now(), 0));
            self.unsynced = Some((since, bytes + written));
            self.publish(pending);
            return;
        }
        let started = Instant::now();
        if let Err(source) = self.file.sync_data() {
            let reason = format!("fsync of {} failed: {source}", path.display());
            self.fail(reason.clone());
            self.buffer.clear();
            self.rewind();
            for p in pending {
                let _ = p.reply.send(Err(StoreError::Unavailable {
                    context: self.shared.context.clone(),
                    reason: reason.clone(),
                }));
            }
            return;
        }
        self.shared.metrics.fsync_seconds.observe(started.elapsed().as_secs_f64());
        self.unsynced = None;
        self.publish(pending);
    }

    /// Forgets what was staged but not committed.
    fn rewind(&mut self) {
        let state = self.shared.read_state();
        self.next_token = state.active.next_token;
        self.last_log_index = state.last_log_index;
    }

    /// Removes a partly written buffer so the file ends at the committed length.
    fn undo_write(&mut self, path: &std::path::Path) {
        self.rewind();
        if let Err(error) = self.file.set_len(self.len) {
            self.fail(format!("failed to cut a failed write off {}: {error}", path.display()));
        }
    }

    fn publish(&mut self, pending: Vec<Pending>) {
        let written = self.buffer.len() as u64;
        {
            let mut state = self.shared.write_state();
            let active = &mut state.active;
            for p in &pending {
                if p.events > 0 {
                    active.tokens.offer(p.first_token, p.frame_pos, p.first_timestamp);
                }
                for (id, run) in p.index.runs() {
                    active.aggregates.add_run(id, run.iter().map(|&(_, _, seq, pos)| IndexEntry { seq, pos }));
                }
            }
            active.len += written;
            active.next_token = self.next_token;
            let highest = pending.iter().map(|p| p.log_index).max().unwrap_or(0);
            state.last_log_index = state.last_log_index.max(highest);
        }
        self.len += written;
        self.buffer.clear();
        self.shared.committed.send_replace(self.next_token);
        let metrics = &self.shared.metrics;
        metrics.bytes_written.inc_by(written);
        metrics.transactions.inc_by(pending.len() as u64);
        metrics.events.inc_by(pending.iter().map(|p| p.events).sum());
        metrics.event_bytes.inc_by(pending.iter().map(|p| p.bytes).sum());
        for p in pending {
            let _ = p.reply.send(Ok(p.first_token));
        }
    }

    /// Closes the active segment and starts a new one at the next token.
    ///
    /// The side files are written while readers still see the segment as
    /// active with its full index (the writer only reads the state here);
    /// then, in one step under the write lock, the segment moves to the
    /// closed list and a new active segment begins. A reader therefore never
    /// sees the segment's events without an index.
    fn roll(&mut self) -> Result<(), StoreError> {
        // A closed segment is immutable and whole on disk.
        self.sync()?;
        let (first, bloom) = {
            let state = self.shared.read_state();
            if state.active.next_token != self.next_token || state.active.len != self.len {
                // Something was staged but not committed: closing now would
                // leave a gap or garbage in a closed segment.
                return Err(StoreError::Unavailable {
                    context: self.shared.context.clone(),
                    reason: "the active segment holds uncommitted data; not closing it".into(),
                });
            }
            let first = state.active.first_token;
            let bloom = write_side_files(
                &self.shared.dir,
                self.shared.kind,
                first,
                &state.active.aggregates,
                &state.active.tokens,
            )?;
            (first, bloom)
        };
        let file = create_segment(&self.shared.dir, self.shared.kind, self.next_token, self.last_log_index)?;
        let (aggregates, tokens, closed) = {
            let mut state = self.shared.write_state();
            state.closed.push(ClosedSegment {
                first_token: first,
                next_token: self.next_token,
                len: self.len,
                retired: false,
            });
            let old = std::mem::replace(
                &mut state.active,
                ActiveSegment {
                    first_token: self.next_token,
                    next_token: self.next_token,
                    len: HEADER_LEN,
                    aggregates: AggregateIndex::default(),
                    tokens: TokenIndex::default(),
                },
            );
            (old.aggregates, old.tokens, state.closed.len())
        };
        self.file = file;
        self.len = HEADER_LEN;
        let cache = &self.shared.cache;
        let _ = cache.get_or_load(first, Part::Bloom, || Ok::<_, ()>(Cached::Bloom(Arc::new(bloom))));
        let _ = cache.get_or_load(first, Part::Aggregates, || Ok::<_, ()>(Cached::Aggregates(Arc::new(aggregates))));
        let _ = cache.get_or_load(first, Part::Tokens, || Ok::<_, ()>(Cached::Tokens(Arc::new(tokens))));
        self.shared.metrics.segments_closed.set(closed as i64);
        tracing::info!(context = %self.shared.context, store = self.shared.kind.name(), segment = first, "closed segment");
        Ok(())
    }

    fn fail(&self, reason: String) {
        tracing::error!(context = %self.shared.context, store = self.shared.kind.name(), %reason, "store stopped accepting writes");
        self.shared.write_state().failed = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::store::format::StoreKind;
    use crate::store::metrics::StoreMetrics;
    use crate::store::{FsSpace, SegmentStore, StoreOptions};
    use crate::test_util::event;

    fn writer(dir: &Path) -> Writer {
        let options = StoreOptions::default();
        let (shared, file) =
            Shared::open("default", StoreKind::Events, dir, options, StoreMetrics::detached()).unwrap();
        Writer::new(Arc::new(shared), file, Arc::new(FsSpace))
    }

    /// One transaction of aggregate "a" at `seq`, from log position `index`.
    fn round(writer: &mut Writer, seq: i64, index: u64) -> oneshot::Receiver<Result<u64, StoreError>> {
        let (reply, answer) = oneshot::channel();
        writer.commit_round(vec![Append { events: vec![event("a", seq, 40)], log_index: index, reply }]);
        answer
    }

    /// (offset, group start) of every frame in the active segment.
    fn frames(dir: &Path) -> Vec<(usize, bool)> {
        let bytes = std::fs::read(format::segment_file(dir, 0, "events")).unwrap();
        let mut at = HEADER_LEN as usize;
        let mut out = Vec::new();
        while let Ok(frame) = format::decode_frame_header(&bytes[at..]) {
            out.push((at, frame.group_start));
            at += frame.total_len();
        }
        out
    }

    #[test]
    fn sequences_continue_per_aggregate_across_interleaved_events_and_transactions_of_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path());
        let tx = |events: Vec<Bytes>| {
            let (reply, answer) = oneshot::channel();
            (Append { events, log_index: 0, reply }, answer)
        };
        // a and b interleaved in one transaction; the next ones in the same
        // round continue each aggregate, or are refused with its next number.
        let (first, first_answer) =
            tx(vec![event("a", 0, 10), event("b", 0, 10), event("a", 1, 10), event("b", 1, 10)]);
        let (second, second_answer) = tx(vec![event("b", 2, 10), event("a", 2, 10), event("a", 3, 10)]);
        let (gap, gap_answer) = tx(vec![event("a", 4, 10), event("b", 2, 10)]);
        let (third, third_answer) = tx(vec![event("a", 4, 10), event("c", 0, 10), event("b", 3, 10)]);
        writer.commit_round(vec![first, second, gap, third]);
        assert_eq!(first_answer.blocking_recv().unwrap().unwrap(), 0);
        assert_eq!(second_answer.blocking_recv().unwrap().unwrap(), 4);
        let refused = gap_answer.blocking_recv().unwrap().unwrap_err();
        assert!(matches!(refused, StoreError::InvalidSequence { sequence: 2, expected: 3, .. }), "{refused}");
        assert_eq!(third_answer.blocking_recv().unwrap().unwrap(), 7);
        // The index holds every event of each aggregate, in order.
        let state = writer.shared.read_state();
        let seqs = |id: &str| state.active.aggregates.get(id).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs("a"), vec![0, 1, 2, 3, 4]);
        assert_eq!(seqs("b"), vec![0, 1, 2, 3]);
        assert_eq!(seqs("c"), vec![0]);
        assert_eq!(state.active.aggregates.highest("a"), Some(4));
    }

    #[test]
    fn replicated_rounds_are_answered_before_their_fsync_and_only_a_round_after_one_starts_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path());
        let mut first = round(&mut writer, 0, 1);
        assert_eq!(first.try_recv().unwrap().unwrap(), 0, "answered at once");
        assert!(writer.unsynced.is_some(), "not fsync'd yet");
        round(&mut writer, 1, 2).try_recv().unwrap().unwrap();
        writer.sync().unwrap();
        assert!(writer.unsynced.is_none());
        round(&mut writer, 2, 3).try_recv().unwrap().unwrap();
        // A store that is not replicated fsyncs every round before answering.
        round(&mut writer, 3, 0).try_recv().unwrap().unwrap();
        assert!(writer.unsynced.is_none());
        drop(writer);
        let starts: Vec<bool> = frames(dir.path()).into_iter().map(|(_, start)| start).collect();
        assert_eq!(starts, vec![true, false, true, false]);
    }

    #[test]
    fn replicated_rounds_lost_before_their_fsync_are_a_torn_tail_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(dir.path());
        round(&mut writer, 0, 1);
        writer.sync().unwrap();
        for (seq, index) in [(1, 2), (2, 3), (3, 4)] {
            round(&mut writer, seq, index);
        }
        drop(writer);
        // A crash lost the page of the second unsynced round, not the third.
        let path = format::segment_file(dir.path(), 0, "events");
        let mut bytes = std::fs::read(&path).unwrap();
        let lost = frames(dir.path())[2].0;
        bytes[lost + format::FRAME_HEADER_LEN + 12] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let store = SegmentStore::open(
            "default",
            StoreKind::Events,
            dir.path(),
            StoreOptions::default(),
            StoreMetrics::detached(),
            Arc::new(FsSpace),
        )
        .unwrap();
        assert_eq!(store.next_token(), 2, "kept what is whole before the damage");
        assert_eq!(store.last_log_index(), 2, "the replica re-applies the log from entry 3");
    }
}
