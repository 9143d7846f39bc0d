//! The durable Raft log of one replication group: **log entry segment files**
//! in `<log-storage-folder>/<group>/`, plus the vote and the last purged log
//! id in small files written atomically.
//!
//! Invariants: entries are contiguous by index (no holes); an `append` writes
//! its entries (readable at once) and hands the fsync to the log's flusher
//! thread, which syncs every file touched since its last round with one
//! `fdatasync` each and only then tells openraft the entries are flushed, in
//! order — so the leader replicates while its own fsync runs, and concurrent
//! appends share one fsync. A vote is durable before `save_vote` returns;
//! purged entries are never read again; after an fsync failure the log
//! refuses further appends.
//! Recovery at open cuts a torn record off the last segment (an append that
//! was never reported flushed) and fails on damage anywhere else.
//!
//! The newest entries are also kept in memory, up to `TAIL_CACHE_BYTES` of
//! their records per group and a node-wide [`TailBudget`] for all groups
//! together, so replication and apply — which read what was just appended —
//! do not read it back from the file; older entries are read from their
//! segments.
//!
//! ```text
//! segment := magic "RNVRLOG1" | first_index u64 | record*
//! record  := len u32 | crc u32 (CRC-32 of body) | body
//! body    := an entry in the encoding of `raft::codec`
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::{self, File};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::vote::leader_id_std::CommittedLeaderId;

use super::codec::{decode_entry, encode_entry_into, encoded_len_hint, put_u64};
use super::types::{Entry, LogId, TypeConfig, Vote};

const MAGIC: [u8; 8] = *b"RNVRLOG1";
const SEGMENT_HEADER_LEN: u64 = 16;
const RECORD_HEADER_LEN: usize = 8;
/// Bytes of records the in-memory tail of one group's log holds, at most.
pub const TAIL_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// An entry written to the buffer of an append, and where it goes.
struct Placed {
    location: Location,
    entry: Entry,
    record_len: usize,
}

/// Where an entry sits.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    pos: u64,
    term: u64,
}

#[derive(Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
    len: u64,
}

struct LogFiles {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Ascending by first index; the last one is appended to.
    segments: Vec<Segment>,
    active: Option<Arc<File>>,
    /// Files written since the last hand-over to the flusher.
    unsynced: Vec<Arc<File>>,
    entries: BTreeMap<u64, Location>,
    tail: Tail,
    vote: Option<Vote>,
    last_purged: Option<LogId>,
}

/// The bytes of in-memory log tails all groups of a node may hold together;
/// clones share the count. A group over its share evicts its own oldest
/// entries (an idle group keeps what it has until it writes or purges).
#[derive(Clone, Debug)]
pub struct TailBudget {
    total: usize,
    used: Arc<AtomicUsize>,
}

impl TailBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        Self { total, used: Arc::new(AtomicUsize::new(0)) }
    }

    /// Bytes the tails hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.total
    }
}

/// The newest entries in memory: contiguous by index and ending at the
/// log's last entry; bounded by the bytes of their records, per group and
/// by the node's budget.
struct Tail {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    bytes_max: usize,
    budget: TailBudget,
}

impl Tail {
    fn new(bytes_max: usize, budget: TailBudget) -> Self {
        Self { entries: VecDeque::new(), bytes: 0, bytes_max, budget }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    fn push(&mut self, entry: Entry, record_len: usize) {
        self.bytes += record_len;
        self.budget.used.fetch_add(record_len, Ordering::Relaxed);
        self.entries.push_back((entry, record_len));
        while (self.bytes > self.bytes_max || self.budget.over()) && self.pop_front() {}
    }

    /// Forgets the oldest entry; false when there is none.
    fn pop_front(&mut self) -> bool {
        let Some((_, len)) = self.entries.pop_front() else { return false };
        self.forget(len);
        true
    }

    fn forget(&mut self, len: usize) {
        self.bytes -= len;
        self.budget.used.fetch_sub(len, Ordering::Relaxed);
    }

    /// Forgets entries from index `from` on.
    fn cut_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|(entry, _)| entry.log_id.index >= from) {
            if let Some((_, len)) = self.entries.pop_back() {
                self.forget(len);
            }
        }
    }

    /// Forgets entries up to and including index `upto`.
    fn cut_upto(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|(entry, _)| entry.log_id.index <= upto) {
            self.pop_front();
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The log store of one group; clones share it (openraft's log readers).
#[derive(Clone)]
pub struct LogStore {
    files: Arc<Mutex<LogFiles>>,
    flusher: std::sync::mpsc::SyncSender<Flush>,
    failed: Arc<Mutex<Option<String>>>,
}

/// Files to fsync before telling openraft that an append is durable.
struct Flush {
    files: Vec<Arc<File>>,
    callback: IOFlushed<TypeConfig>,
}

/// Appends handed to the flusher and not yet synced, at most.
const FLUSH_QUEUE_MAX: usize = 1024;

/// The flusher thread: syncs in arrival order, many appends per round.
fn run_flusher(queue: std::sync::mpsc::Receiver<Flush>, failed: Arc<Mutex<Option<String>>>) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        while let Ok(next) = queue.try_recv() {
            round.push(next);
        }
        let mut files: Vec<Arc<File>> = Vec::new();
        for flush in &round {
            for file in &flush.files {
                if !files.iter().any(|f| Arc::ptr_eq(f, file)) {
                    files.push(file.clone());
                }
            }
        }
        let synced = files.iter().try_for_each(|file| file.sync_data());
        if let Err(error) = &synced {
            let reason = format!("fsync of the replication log failed: {error}");
            tracing::error!(%reason, "the replication log stops accepting entries");
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        }
        for flush in round {
            let result = match &synced {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            };
            flush.callback.io_completed(result);
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn with_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:020}.log"))
}

/// Writes a small file atomically and durably, directory included (see
/// [`crate::durable`]); the state machine's files use it too.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::durable::replace_file(path, bytes).map_err(durable_error)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::durable::sync_dir(dir).map_err(durable_error)
}

fn durable_error(crate::durable::Failed { op, path, source }: crate::durable::Failed) -> io::Error {
    io::Error::new(source.kind(), format!("failed to {op} {}: {source}", path.display()))
}

/// Whether `dir` holds no Raft log yet: no vote and no segment (a group
/// never initialised here, or one whose [`start_after`] was cut before its
/// vote: doing it again is safe).
pub fn is_fresh(dir: &Path) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(with_path(dir, e)),
    };
    for item in entries {
        let name = item.map_err(|e| with_path(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name == "vote.json" || name.ends_with(".log") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes `dir` the log of a group whose entries up to `purged` are held
/// elsewhere (by a snapshot): everything before it counts as purged, and
/// `vote` is the vote it starts from. Written vote last, since a vote is
/// what makes a log initialised.
pub fn start_after(dir: &Path, purged: LogId, vote: Vote) -> io::Result<()> {
    crate::durable::create_dir_all(dir)?;
    write_atomically(&dir.join("purged.json"), &serde_json::to_vec(&purged).map_err(io::Error::other)?)?;
    write_atomically(&dir.join("vote.json"), &serde_json::to_vec(&vote).map_err(io::Error::other)?)
}

/// Reads a JSON file; `None` when it does not exist.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_path(path, e)),
    }
}

/// Appends one entry to `out` as a record (header included); returns the
/// record's length.
fn encode_record_into(out: &mut Vec<u8>, entry: &Entry) -> io::Result<usize> {
    let at = out.len();
    out.reserve(RECORD_HEADER_LEN + encoded_len_hint(entry));
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    if let Err(error) = encode_entry_into(out, entry) {
        out.truncate(at);
        return Err(error);
    }
    let body_len = out.len() - at - RECORD_HEADER_LEN;
    let crc = crc32fast::hash(&out[at + RECORD_HEADER_LEN..]);
    out[at..at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(out.len() - at)
}

/// Reads a record at `pos`: its body, or why it is not a whole record.
fn read_record(file: &File, pos: u64, file_len: u64) -> Result<Bytes, String> {
    if pos + RECORD_HEADER_LEN as u64 > file_len {
        return Err("a record header is cut short".into());
    }
    let mut header = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut header, pos).map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if pos + RECORD_HEADER_LEN as u64 + len > file_len {
        return Err("a record is cut short".into());
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, pos + RECORD_HEADER_LEN as u64).map_err(|e| e.to_string())?;
    if crc32fast::hash(&body) != crc {
        return Err("a record's checksum does not match".into());
    }
    Ok(Bytes::from(body))
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`, recovering it.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> io::Result<Self> {
        Self::open_with_tail(dir, segment_bytes_max, TAIL_CACHE_BYTES, TailBudget::new(TAIL_CACHE_BYTES))
    }

    /// Opens the log keeping at most `tail_bytes` of the newest records in
    /// memory, within the node's `budget`.
    pub fn open_with_tail(
        dir: &Path,
        segment_bytes_max: u64,
        tail_bytes: usize,
        budget: TailBudget,
    ) -> io::Result<Self> {
        crate::durable::create_dir_all(dir)?;
        let vote = read_json(&dir.join("vote.json"))?;
        let last_purged: Option<LogId> = read_json(&dir.join("purged.json"))?;
        let mut firsts = Vec::new();
        for item in fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
            let name = item.map_err(|e| with_path(dir, e))?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".temp") {
                fs::remove_file(dir.join(name)).map_err(|e| with_path(&dir.join(name), e))?;
            } else if let Some(first) = name.strip_suffix(".log").and_then(|s| s.parse::<u64>().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut files = LogFiles {
            dir: dir.to_path_buf(),
            segment_bytes_max,
            segments: Vec::new(),
            active: None,
            unsynced: Vec::new(),
            entries: BTreeMap::new(),
            tail: Tail::new(tail_bytes, budget),
            vote,
            last_purged,
        };
        for (i, first) in firsts.iter().enumerate() {
            files.recover_segment(*first, i + 1 == firsts.len())?;
        }
        let purged_up_to = files.last_purged.map(|id| id.index);
        if let Some(purged) = purged_up_to {
            files.entries.retain(|index, _| *index > purged);
        }
        let (flusher, queue) = std::sync::mpsc::sync_channel(FLUSH_QUEUE_MAX);
        let failed = Arc::new(Mutex::new(None));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || run_flusher(queue, flag))
            .map_err(|e| with_path(dir, e))?;
        Ok(Self { files: Arc::new(Mutex::new(files)), flusher, failed })
    }

    fn lock(&self) -> MutexGuard<'_, LogFiles> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_range(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry>> {
        let files = self.lock();
        // As the half-open range [low, high).
        let low = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let high = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        if low >= high {
            return Ok(Vec::new());
        }
        // What the tail holds comes from memory, the rest (a prefix of the
        // range) from the segment files.
        let tail_first = files.tail.first_index().unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut open: Option<(u64, File, u64)> = None;
        for (index, location) in files.entries.range(low..high.min(tail_first).max(low)) {
            if open.as_ref().is_none_or(|(s, _, _)| *s != location.segment) {
                let path = segment_path(&files.dir, location.segment);
                let file = File::open(&path).map_err(|e| with_path(&path, e))?;
                let len = file.metadata().map_err(|e| with_path(&path, e))?.len();
                open = Some((location.segment, file, len));
            }
            let Some((_, file, len)) = open.as_ref() else { continue };
            let body = read_record(file, location.pos, *len).map_err(|reason| {
                invalid(format!(
                    "log entry {index} in {}: {reason}",
                    segment_path(&files.dir, location.segment).display()
                ))
            })?;
            out.push(decode_entry(body)?);
        }
        if high > tail_first {
            let skip = usize::try_from(low.saturating_sub(tail_first)).unwrap_or(usize::MAX);
            let take = usize::try_from(high - low.max(tail_first)).unwrap_or(usize::MAX);
            out.extend(files.tail.entries.iter().skip(skip).take(take).map(|(entry, _)| entry.clone()));
        }
        Ok(out)
    }
}

impl LogFiles {
    /// Scans one segment into the index. The last segment may end in a torn
    /// record (cut off); any other damage is an error.
    fn recover_segment(&mut self, first: u64, last: bool) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| with_path(&path, e))?;
        let file_len = file.metadata().map_err(|e| with_path(&path, e))?.len();
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        let header_ok = file_len >= SEGMENT_HEADER_LEN
            && file.read_exact_at(&mut header, 0).is_ok()
            && header[..8] == MAGIC
            && u64::from_le_bytes(header[8..16].try_into().unwrap_or_default()) == first;
        if !header_ok {
            return Err(invalid(format!("{}: not a log segment starting at entry {first}", path.display())));
        }
        let mut pos = SEGMENT_HEADER_LEN;
        let mut expected = first;
        while pos < file_len {
            let body = match read_record(&file, pos, file_len) {
                Ok(body) => body,
                Err(reason) if last => {
                    tracing::warn!(segment = %path.display(), offset = pos, %reason, "cut a torn log record (never reported flushed)");
                    file.set_len(pos).and_then(|()| file.sync_all()).map_err(|e| with_path(&path, e))?;
                    break;
                }
                Err(reason) => return Err(invalid(format!("{} at offset {pos}: {reason}", path.display()))),
            };
            let entry = decode_entry(body.clone())?;
            if entry.log_id.index != expected {
                return Err(invalid(format!(
                    "{} at offset {pos}: entry {} where {expected} was expected",
                    path.display(),
                    entry.log_id.index
                )));
            }
            let len = (RECORD_HEADER_LEN + body.len()) as u32;
            self.entries.insert(expected, Location { segment: first, pos, term: entry.log_id.leader_id.term });
            pos += u64::from(len);
            expected += 1;
        }
        self.segments.push(Segment { first_index: first, path, len: pos });
        if last {
            self.active = Some(Arc::new(file));
        }
        Ok(())
    }

    fn log_id_at(&self, index: u64) -> Option<LogId> {
        self.entries.get(&index).map(|l| LogId::new(CommittedLeaderId::new(l.term), index))
    }

    fn last_log_id(&self) -> Option<LogId> {
        match self.entries.last_key_value() {
            Some((index, l)) => Some(LogId::new(CommittedLeaderId::new(l.term), *index)),
            None => self.last_purged,
        }
    }

    fn start_segment(&mut self, first_index: u64) -> io::Result<()> {
        let path = segment_path(&self.dir, first_index);
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC);
        put_u64(&mut header, first_index);
        write_atomically(&path, &header)?;
        let file = fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| with_path(&path, e))?;
        self.segments.push(Segment { first_index, path, len: SEGMENT_HEADER_LEN });
        self.active = Some(Arc::new(file));
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut next = self.entries.last_key_value().map(|(i, _)| i + 1);
        let mut buffer: Vec<u8> = Vec::new();
        let mut placed: Vec<Placed> = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            if next.is_some_and(|n| n != index) {
                return Err(invalid(format!("log entry {index} would leave a hole (next is {next:?})")));
            }
            next = Some(index + 1);
            // Encoded straight into the write buffer unless it starts a new segment.
            let at = buffer.len();
            let record_len = encode_record_into(&mut buffer, &entry)?;
            let active_len = self.segments.last().map(|s| s.len);
            let full = active_len.is_some_and(|len| {
                let used = len + at as u64;
                used > SEGMENT_HEADER_LEN && used + record_len as u64 > self.segment_bytes_max
            });
            if self.active.is_none() || full {
                // What comes before this record fills the current segment.
                self.flush(&mut buffer, at, &mut placed)?;
                self.start_segment(index)?;
            }
            let segment = self.segments.last().map_or(index, |s| s.first_index);
            let pos = self.segments.last().map_or(SEGMENT_HEADER_LEN, |s| s.len) + (buffer.len() - record_len) as u64;
            let location = Location { segment, pos, term: entry.log_id.leader_id.term };
            placed.push(Placed { location, entry, record_len });
        }
        let len = buffer.len();
        self.flush(&mut buffer, len, &mut placed)
    }

    /// Writes the first `len` buffered bytes — the records in `placed` — to
    /// the active segment and drops them from the buffer (the fsync is the
    /// flusher's).
    fn flush(&mut self, buffer: &mut Vec<u8>, len: usize, placed: &mut Vec<Placed>) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let (Some(file), Some(segment)) = (self.active.as_ref(), self.segments.last_mut()) else {
            return Err(invalid("no active log segment".into()));
        };
        if let Err(error) = file.write_all_at(&buffer[..len], segment.len) {
            // Never leave half a batch behind a short write.
            let _ = file.set_len(segment.len);
            return Err(with_path(&segment.path, error));
        }
        if !self.unsynced.iter().any(|f| Arc::ptr_eq(f, file)) {
            self.unsynced.push(file.clone());
        }
        segment.len += len as u64;
        for Placed { location, entry, record_len } in placed.drain(..) {
            self.entries.insert(entry.log_id.index, location);
            self.tail.push(entry, record_len);
        }
        buffer.drain(..len);
        Ok(())
    }

    /// Deletes every entry after `last` (all of them for `None`).
    fn truncate_after(&mut self, last: Option<u64>) -> io::Result<()> {
        let from = last.map_or(0, |l| l + 1);
        let Some(first_cut) = self.entries.range(from..).next().map(|(_, l)| *l) else { return Ok(()) };
        self.entries.split_off(&from);
        self.tail.cut_from(from);
        while let Some(segment) = self.segments.last() {
            if segment.first_index < first_cut.segment {
                break;
            }
            if segment.first_index == first_cut.segment && first_cut.pos > SEGMENT_HEADER_LEN {
                let Some(file) = self.active.as_ref() else { break };
                let segment_path = segment.path.clone();
                file.set_len(first_cut.pos).and_then(|()| file.sync_all()).map_err(|e| with_path(&segment_path, e))?;
                if let Some(segment) = self.segments.last_mut() {
                    segment.len = first_cut.pos;
                }
                break;
            }
            let path = segment.path.clone();
            fs::remove_file(&path).map_err(|e| with_path(&path, e))?;
            self.segments.pop();
            self.reopen_last()?;
        }
        sync_dir(&self.dir)
    }

    fn reopen_last(&mut self) -> io::Result<()> {
        self.active = match self.segments.last() {
            Some(segment) => Some(Arc::new(
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&segment.path)
                    .map_err(|e| with_path(&segment.path, e))?,
            )),
            None => None,
        };
        Ok(())
    }

    /// Forgets every entry up to and including `upto`; deletes segments that
    /// hold nothing newer.
    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        write_atomically(&self.dir.join("purged.json"), &serde_json::to_vec(&upto).map_err(io::Error::other)?)?;
        self.last_purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        self.tail.cut_upto(upto.index);
        loop {
            let whole = match (self.segments.first(), self.segments.get(1)) {
                (Some(_), Some(next)) => next.first_index <= upto.index + 1,
                (Some(only), None) => self.entries.is_empty() && only.first_index <= upto.index + 1,
                _ => false,
            };
            if !whole {
                break;
            }
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path).map_err(|e| with_path(&segment.path, e))?;
            if self.segments.is_empty() {
                self.active = None;
            }
        }
        sync_dir(&self.dir)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        self.read_range(range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.lock().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let files = self.lock();
        Ok(LogState { last_purged_log_id: files.last_purged, last_log_id: files.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut files = self.lock();
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        write_atomically(&files.dir.join("vote.json"), &bytes)?;
        files.vote = Some(*vote);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        if let Some(reason) = self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            callback.io_completed(Err(io::Error::other(reason.clone())));
            return Err(io::Error::other(reason));
        }
        let result = {
            let mut files = self.lock();
            files.append(entries.into_iter().collect()).map(|()| std::mem::take(&mut files.unsynced))
        };
        match result {
            Ok(files) => {
                if let Err(std::sync::mpsc::SendError(flush)) = self.flusher.send(Flush { files, callback }) {
                    flush.callback.io_completed(Err(io::Error::other("the replication log flusher stopped")));
                }
                Ok(())
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.lock().truncate_after(last_log_id.map(|id| id.index))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.lock().purge(log_id)
    }
}

impl LogStore {
    /// The log id of the entry at `index`, if the log holds it.
    pub fn log_id_at(&self, index: u64) -> Option<LogId> {
        self.lock().log_id_at(index)
    }
}

#[cfg(test)]
mod tests;
