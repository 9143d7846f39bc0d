//! `SegmentStore`: one append-only token space of one context (its events, or
//! its snapshots) as a directory of segment files. It owns recovery at open,
//! the shared state that readers and the single writer see, and every read.
//!
//! Invariants: closed segments are immutable and their side files (`.index`,
//! `.tindex`, `.bloom`) describe them exactly; the active (last) segment has
//! exactly one writer (see `writer.rs`) and readers never read past its
//! committed length, which grows once a round is written (after its fsync,
//! or before it for replicated rounds, which the replication log holds).
//! A closed segment may be retired to a lower tier (see `tier.rs`): its data
//! file is gone, its side files stay, and reads of its events go to the
//! tier.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::StoreOptions;
use super::bloom::Bloom;
use super::cache::{Cached, IndexCache, Part};
use super::error::StoreError;
use super::event_fields;
use super::format::{self, FrameProblem, HEADER_LEN, StoreKind};
use super::index::{AggregateIndex, IndexEntry, TokenIndex, TokenMark};
use super::metrics::StoreMetrics;
use super::scan::{ScanResult, find_later_group, read_at_most, scan_segment};

/// Bytes read per step when streaming events (a larger frame is read whole).
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// A closed segment: immutable, with side files on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedSegment {
    /// Token of its first event (its name).
    pub first_token: u64,
    /// Token after its last event (the next segment's name).
    pub next_token: u64,
    /// Length of its data file in bytes (0 once retired).
    pub len: u64,
    /// Its data file was retired to the lower tier.
    pub retired: bool,
}

/// The segment being written, with its in-memory indexes.
#[derive(Debug)]
pub struct ActiveSegment {
    /// Token of its first event (its name).
    pub first_token: u64,
    /// Token the next committed event will get.
    pub next_token: u64,
    /// Committed length in bytes; readers stop here.
    pub len: u64,
    /// Aggregate index of its committed events.
    pub aggregates: AggregateIndex,
    /// Token marks of its committed frames.
    pub tokens: TokenIndex,
}

/// What readers and the writer share.
#[derive(Debug)]
pub struct State {
    /// Closed segments, ascending by first token.
    pub closed: Vec<ClosedSegment>,
    /// The active segment.
    pub active: ActiveSegment,
    /// Set when the writer met a failure it cannot undo; writes are refused.
    pub failed: Option<String>,
    /// The highest replication log index applied to this store (0: none).
    pub last_log_index: u64,
}

/// Files of one segment, for backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFiles {
    /// Token of the segment's first event.
    pub first_token: u64,
    /// Closed segments never change again; the active one still grows.
    pub closed: bool,
    /// The data file, then the side files of a closed segment.
    pub paths: Vec<PathBuf>,
}

/// State shared between the store handle, its readers and its writer thread.
pub struct Shared {
    /// The context this store belongs to (for errors and logs).
    pub context: String,
    /// Events or snapshots.
    pub kind: StoreKind,
    /// The directory holding the segment files.
    pub dir: PathBuf,
    /// Limits and sizes.
    pub options: StoreOptions,
    /// Segments and the active index.
    pub state: RwLock<State>,
    /// Closed-segment side files in memory, bounded in bytes.
    pub cache: IndexCache,
    /// The token after the last committed event; tailing readers wait on it.
    pub committed: watch::Sender<u64>,
    /// Counters and histograms.
    pub metrics: StoreMetrics,
    /// Where events of retired segments are read, when set.
    pub tier: RwLock<Option<Arc<dyn super::tier::LowerTier>>>,
    /// Closed segments a backup is copying, with the end of its lease: they
    /// are not retired (deleted here) before it.
    pub pins: std::sync::Mutex<std::collections::BTreeMap<u64, std::time::Instant>>,
    /// Keeps the directory lock for the store's lifetime.
    _lock: File,
}

impl Shared {
    /// Opens (creating if needed) the store in `dir` and recovers it to the
    /// last complete transaction.
    pub fn open(
        context: &str,
        kind: StoreKind,
        dir: &Path,
        options: StoreOptions,
        metrics: StoreMetrics,
    ) -> Result<(Shared, File), StoreError> {
        crate::durable::create_dir_all(dir)?;
        let lock = lock_dir(dir, kind)?;
        remove_temp_files(dir, kind)?;
        let mut firsts = list_segments(dir, kind)?;
        if firsts.is_empty() {
            create_segment(dir, kind, 0, 0)?;
            firsts.push(0);
        }
        let closed = recover_closed(dir, kind, &firsts, options.validation_segments)?;
        let active_first = *firsts.last().unwrap_or(&0);
        let (active, last_log_index, file) = recover_active(context, dir, kind, active_first)?;
        let active = (active, last_log_index);
        metrics.segments_closed.set(closed.len() as i64);
        let (committed, _) = watch::channel(active.0.next_token);
        let state = State { closed, last_log_index: active.1, active: active.0, failed: None };
        let shared = Shared {
            context: context.to_owned(),
            kind,
            dir: dir.to_path_buf(),
            cache: IndexCache::new(options.index_cache_bytes as usize),
            options,
            state: RwLock::new(state),
            committed,
            metrics,
            tier: RwLock::new(None),
            pins: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            _lock: lock,
        };
        Ok((shared, file))
    }

    /// Read access to the state; a poisoned lock still holds valid data
    /// because every update is a plain assignment after the I/O succeeded.
    pub fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access to the state (the writer thread only).
    pub fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Path of a file of a segment.
    pub fn path(&self, first_token: u64, suffix: &str) -> PathBuf {
        format::segment_file(&self.dir, first_token, suffix)
    }

    /// The token of the oldest stored event.
    pub fn first_token(&self) -> u64 {
        let state = self.read_state();
        state.closed.first().map_or(state.active.first_token, |s| s.first_token)
    }

    /// The token the next event will get (= number of events ever stored).
    pub fn next_token(&self) -> u64 {
        self.read_state().active.next_token
    }

    fn load_part(&self, segment: u64, part: Part) -> Result<Cached, StoreError> {
        self.cache.get_or_load(segment, part, || {
            let suffix = match part {
                Part::Bloom => self.kind.bloom_suffix(),
                Part::Aggregates => self.kind.index_suffix(),
                Part::Tokens => self.kind.token_index_suffix(),
            };
            let path = self.path(segment, suffix);
            let bytes = fs::read(&path).map_err(StoreError::io("read", &path))?;
            let corrupt = || StoreError::Corrupt { path: path.clone(), offset: 0, reason: "checksum mismatch".into() };
            Ok(match part {
                Part::Bloom => Cached::Bloom(Arc::new(Bloom::decode(&bytes).ok_or_else(corrupt)?)),
                Part::Aggregates => Cached::Aggregates(Arc::new(AggregateIndex::decode(&bytes).ok_or_else(corrupt)?)),
                Part::Tokens => Cached::Tokens(Arc::new(TokenIndex::decode(&bytes).ok_or_else(corrupt)?)),
            })
        })
    }

    /// The aggregate index of a closed segment, unless its bloom filter says
    /// the aggregate is not there.
    fn closed_index(&self, segment: u64, id: &str) -> Result<Option<Arc<AggregateIndex>>, StoreError> {
        if let Cached::Bloom(bloom) = self.load_part(segment, Part::Bloom)?
            && !bloom.may_contain(id)
        {
            return Ok(None);
        }
        match self.load_part(segment, Part::Aggregates)? {
            Cached::Aggregates(index) => Ok(Some(index)),
            _ => Ok(None),
        }
    }

    /// The entries of `id` in a closed segment.
    fn closed_entries(&self, segment: u64, id: &str) -> Result<Option<Vec<IndexEntry>>, StoreError> {
        Ok(self.closed_index(segment, id)?.and_then(|index| index.get(id).map(<[IndexEntry]>::to_vec)))
    }

    /// The highest sequence of `id` in a closed segment.
    fn closed_highest(&self, segment: u64, id: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.closed_index(segment, id)?.and_then(|index| index.highest(id)))
    }

    /// The highest sequence number stored for an aggregate.
    pub fn highest_sequence(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let closed: Vec<u64> = {
            let state = self.read_state();
            if let Some(highest) = state.active.aggregates.highest(id) {
                return Ok(Some(highest));
            }
            state.closed.iter().map(|s| s.first_token).collect()
        };
        for segment in closed.into_iter().rev() {
            if let Some(highest) = self.closed_highest(segment, id)? {
                return Ok(Some(highest));
            }
        }
        Ok(None)
    }

    /// Where the aggregate's events with `min_seq <= seq < max_seq` are, in
    /// ascending sequence order (for snapshots: in the order written).
    pub fn aggregate_plan(&self, id: &str, min_seq: i64, max_seq: i64) -> Result<Vec<(u64, IndexEntry)>, StoreError> {
        let in_range = |e: &IndexEntry| e.seq >= min_seq && e.seq < max_seq;
        let mut parts: Vec<Vec<(u64, IndexEntry)>> = Vec::new();
        let closed: Vec<u64> = {
            let state = self.read_state();
            if let Some(entries) = state.active.aggregates.get(id) {
                let first = state.active.first_token;
                parts.push(entries.iter().filter(|e| in_range(e)).map(|e| (first, *e)).collect());
                if self.kind == StoreKind::Events && entries.first().is_some_and(|e| e.seq <= min_seq) {
                    return Ok(parts.concat());
                }
            }
            state.closed.iter().map(|s| s.first_token).collect()
        };
        for segment in closed.into_iter().rev() {
            let Some(entries) = self.closed_entries(segment, id)? else { continue };
            parts.push(entries.iter().filter(|e| in_range(e)).map(|e| (segment, *e)).collect());
            if self.kind == StoreKind::Events && entries.first().is_some_and(|e| e.seq <= min_seq) {
                break;
            }
        }
        parts.reverse();
        Ok(parts.concat())
    }

    /// Reads the records of aggregate `id` at the given places, verifying
    /// each checksum; those in retired segments come from the lower tier.
    /// Without `tiered`, records of retired segments are an error instead.
    pub fn read_records(&self, id: &str, places: &[(u64, IndexEntry)], tiered: bool) -> Result<Vec<Bytes>, StoreError> {
        let mut out = Vec::with_capacity(places.len());
        let mut open: Option<(u64, File, PathBuf, u64)> = None;
        let mut at = 0;
        while at < places.len() {
            let (segment, entry) = &places[at];
            if let Some(retired) = self.retired_segment(*segment) {
                // The run of places in this segment, read from the tier at once.
                let run = places[at..].iter().take_while(|(s, _)| s == segment).count();
                let seqs = places[at..at + run].iter().map(|(_, e)| e.seq);
                let (min, max) = (seqs.clone().min().unwrap_or(entry.seq), seqs.max().unwrap_or(entry.seq) + 1);
                let records = self.tier_aggregate(retired, id, min, max, tiered)?;
                if records.len() != run {
                    return Err(self.retired_error(
                        retired.first_token,
                        format!("it returned {} of the {run} events of aggregate {id} in that segment", records.len()),
                    ));
                }
                out.extend(records);
                at += run;
                continue;
            }
            if open.as_ref().is_none_or(|(s, _, _, _)| s != segment) {
                let path = self.path(*segment, self.kind.data_suffix());
                // Retired since it was looked up: the next pass reads it from the tier.
                let Some(file) = self.open_data(*segment, &path)? else { continue };
                let len = file.metadata().map_err(StoreError::io("stat", &path))?.len();
                open = Some((*segment, file, path, len));
            }
            at += 1;
            let Some((_, file, path, len)) = open.as_ref() else { continue };
            out.push(read_record(file, path, u64::from(entry.pos), *len)?);
        }
        Ok(out)
    }

    /// Opens the data file of `segment` at `path`; `None` when it is gone
    /// because the segment was retired since its state was read.
    fn open_data(&self, segment: u64, path: &Path) -> Result<Option<File>, StoreError> {
        match File::open(path) {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && self.retired_segment(segment).is_some() => {
                Ok(None)
            }
            Err(error) => Err(StoreError::io("open", path)(error)),
        }
    }

    /// Finds the segment holding `token` and the frame position to start
    /// scanning from. Returns `None` when `token` is not committed yet.
    fn locate(&self, token: u64) -> Result<Option<Located>, StoreError> {
        let (segment, limit, active_mark) = {
            let state = self.read_state();
            if token >= state.active.next_token {
                return Ok(None);
            }
            if token >= state.active.first_token {
                let mark = state.active.tokens.mark_for(token);
                (state.active.first_token, None, Some(mark))
            } else {
                let first = state.closed.first().map_or(state.active.first_token, |s| s.first_token);
                if token < first {
                    return Err(StoreError::TokenGone { token, first });
                }
                let at = state.closed.partition_point(|s| s.first_token <= token).saturating_sub(1);
                let closed = state.closed[at];
                if closed.retired {
                    return Ok(Some(Located::Retired(closed)));
                }
                (closed.first_token, Some(closed.len), None)
            }
        };
        let mark = match active_mark {
            Some(mark) => mark,
            None => match self.load_part(segment, Part::Tokens)? {
                Cached::Tokens(tokens) => tokens.mark_for(token),
                _ => None,
            },
        };
        let path = self.path(segment, self.kind.data_suffix());
        let Some(file) = self.open_data(segment, &path)? else {
            // Retired since the state was read: read it from the tier.
            return Ok(self.retired_segment(segment).map(Located::Retired));
        };
        let pos = mark.map_or(HEADER_LEN, |m| u64::from(m.pos));
        Ok(Some(Located::Local(SegmentRead { first_token: segment, file, path, pos, closed_len: limit })))
    }

    /// Reads committed events from `cursor.next_token` on: at most
    /// `max_events` events and about `max_bytes` bytes. An empty result means
    /// the cursor has reached the committed end.
    pub fn read_batch(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        self.read_batch_into(cursor, max_events, max_bytes, None, true)
    }

    /// [`Self::read_batch`], also giving each event's replication log index
    /// (the transaction it was stored by), for catching up a replica.
    /// Without `tiered`, events of retired segments are an error instead.
    pub fn read_batch_tagged(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
        tiered: bool,
    ) -> Result<Vec<(u64, Bytes, u64)>, StoreError> {
        let mut tags = Vec::new();
        let events = self.read_batch_into(cursor, max_events, max_bytes, Some(&mut tags), tiered)?;
        Ok(events.into_iter().zip(tags).map(|((token, bytes), tag)| (token, bytes, tag)).collect())
    }

    fn read_batch_into(
        &self,
        cursor: &mut Cursor,
        max_events: usize,
        max_bytes: usize,
        mut tags: Option<&mut Vec<u64>>,
        tiered: bool,
    ) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_events && bytes < max_bytes {
            if cursor.segment.is_none() {
                match self.locate(cursor.next_token)? {
                    Some(Located::Local(read)) => cursor.segment = Some(read),
                    Some(Located::Retired(retired)) => {
                        let (events, size) = (max_events - out.len(), max_bytes - bytes.min(max_bytes));
                        let got = self.tier_read(retired, cursor.next_token, events, size.max(1), tiered)?;
                        for (token, event, tag) in got {
                            bytes += event.len();
                            out.push((token, event));
                            if let Some(tags) = tags.as_deref_mut() {
                                tags.push(tag);
                            }
                            cursor.next_token = token + 1;
                        }
                        continue;
                    }
                    None => break,
                }
            }
            let Some(read) = cursor.segment.as_mut() else { break };
            let limit = match read.closed_len {
                Some(len) => len,
                None => {
                    let state = self.read_state();
                    if state.active.first_token == read.first_token {
                        state.active.len
                    } else {
                        // The writer closed this segment since the cursor opened it.
                        let len = state.closed.iter().find(|s| s.first_token == read.first_token).map_or(0, |s| s.len);
                        read.closed_len = Some(len);
                        len
                    }
                }
            };
            if read.pos >= limit {
                if read.closed_len.is_some() {
                    cursor.segment = None;
                    continue;
                }
                break;
            }
            let got = read_frames(
                read,
                limit,
                &mut cursor.next_token,
                &mut out,
                tags.as_deref_mut(),
                max_events,
                max_bytes - bytes.min(max_bytes),
            )?;
            bytes += got;
            if got == 0 && out.len() < max_events {
                break;
            }
        }
        Ok(out)
    }

    /// Every segment's files, oldest first, for backups.
    pub fn segment_files(&self) -> Vec<SegmentFiles> {
        let state = self.read_state();
        let mut out: Vec<SegmentFiles> = state
            .closed
            .iter()
            .filter(|s| !s.retired)
            .map(|s| SegmentFiles {
                first_token: s.first_token,
                closed: true,
                paths: vec![
                    self.path(s.first_token, self.kind.data_suffix()),
                    self.path(s.first_token, self.kind.index_suffix()),
                    self.path(s.first_token, self.kind.token_index_suffix()),
                    self.path(s.first_token, self.kind.bloom_suffix()),
                ],
            })
            .collect();
        out.push(SegmentFiles {
            first_token: state.active.first_token,
            closed: false,
            paths: vec![self.path(state.active.first_token, self.kind.data_suffix())],
        });
        out
    }

    /// The token marks of a segment (the active one's from memory).
    fn token_marks(&self, segment: u64) -> Result<Vec<TokenMark>, StoreError> {
        {
            let state = self.read_state();
            if state.active.first_token == segment {
                return Ok(state.active.tokens.marks().to_vec());
            }
        }
        match self.load_part(segment, Part::Tokens)? {
            Cached::Tokens(tokens) => Ok(tokens.marks().to_vec()),
            _ => Ok(Vec::new()),
        }
    }

    /// The timestamp of the first event of the segment starting at `segment`.
    pub fn first_timestamp(&self, segment: u64) -> Result<Option<i64>, StoreError> {
        Ok(self.token_marks(segment)?.first().map(|mark| mark.timestamp))
    }

    /// The first token whose event has `timestamp >= instant` (epoch ms),
    /// assuming timestamps grow with tokens; the next token when none does.
    pub fn token_at(&self, instant: i64) -> Result<u64, StoreError> {
        let (segments, next) = {
            let state = self.read_state();
            let mut segments: Vec<u64> = state.closed.iter().map(|s| s.first_token).collect();
            segments.push(state.active.first_token);
            (segments, state.active.next_token)
        };
        // Newest segment whose first event is older than the instant.
        let mut start = segments[0];
        for segment in segments.iter().rev() {
            if *segment >= next {
                continue;
            }
            let mut cursor = Cursor::at(*segment);
            let first = self.read_batch(&mut cursor, 1, 1)?;
            let older = first.first().and_then(|(_, e)| event_fields::parse(e)).is_some_and(|f| f.timestamp < instant);
            if older {
                start = *segment;
                break;
            }
        }
        // Within it, start at the last token mark older than the instant, so
        // that at most one mark's spacing is scanned rather than the segment.
        let marks = self.token_marks(start)?;
        let from = marks.iter().take_while(|m| m.timestamp < instant).last().map_or(start, |m| m.token);
        let mut cursor = Cursor::at(from);
        loop {
            let batch = self.read_batch(&mut cursor, 4096, READ_CHUNK_BYTES)?;
            if batch.is_empty() {
                return Ok(next.max(cursor.next_token));
            }
            for (token, event) in batch {
                if event_fields::parse(&event).is_some_and(|f| f.timestamp >= instant) {
                    return Ok(token);
                }
            }
        }
    }
}

/// A reader's position in the token space, kept between batches so that a
/// stream does not look its place up again for every batch.
#[derive(Debug)]
pub struct Cursor {
    /// The next token to return.
    pub next_token: u64,
    segment: Option<SegmentRead>,
}

impl Cursor {
    /// A cursor whose first event will be `token`.
    pub fn at(token: u64) -> Self {
        Self { next_token: token, segment: None }
    }
}

/// Where a token's segment is.
enum Located {
    /// On this node's disk.
    Local(SegmentRead),
    /// Retired: its events are read from the lower tier.
    Retired(ClosedSegment),
}

#[derive(Debug)]
struct SegmentRead {
    first_token: u64,
    file: File,
    path: PathBuf,
    /// Offset of the next frame to look at.
    pos: u64,
    /// Set once the segment is known to be closed.
    closed_len: Option<u64>,
}

/// Reads whole frames from `read.pos` up to `limit`, pushing the events from
/// `*next_token` on (and, into `tags`, each one's log index). Returns the
/// event bytes pushed.
fn read_frames(
    read: &mut SegmentRead,
    limit: u64,
    next_token: &mut u64,
    out: &mut Vec<(u64, Bytes)>,
    mut tags: Option<&mut Vec<u64>>,
    max_events: usize,
    max_bytes: usize,
) -> Result<usize, StoreError> {
    let want = READ_CHUNK_BYTES.max(format::FRAME_HEADER_LEN).min((limit - read.pos) as usize);
    let mut chunk = BytesMut::zeroed(want);
    let got = read_at_most(&read.file, &mut chunk, read.pos).map_err(StoreError::io("read", &read.path))?;
    chunk.truncate(got);
    let corrupt = |offset: u64, reason: String| StoreError::Corrupt { path: read.path.clone(), offset, reason };
    // A frame larger than the chunk: read exactly that frame.
    if let Ok(frame) = format::decode_frame_header(&chunk)
        && frame.total_len() > chunk.len()
    {
        if read.pos + frame.total_len() as u64 > limit {
            return Err(corrupt(read.pos, "frame runs past the committed end".into()));
        }
        chunk = BytesMut::zeroed(frame.total_len());
        let got = read_at_most(&read.file, &mut chunk, read.pos).map_err(StoreError::io("read", &read.path))?;
        chunk.truncate(got);
    }
    let chunk = chunk.freeze();
    let mut at = 0usize;
    let mut pushed = 0usize;
    while at < chunk.len() && out.len() < max_events && pushed < max_bytes {
        let frame = match format::decode_frame_header(&chunk[at..]) {
            Ok(frame) if at + frame.total_len() <= chunk.len() => frame,
            Ok(_) | Err(FrameProblem::Incomplete) if at > 0 => break,
            Ok(_) | Err(FrameProblem::Incomplete) => {
                return Err(corrupt(read.pos, "frame runs past the committed end".into()));
            }
            Err(problem) => return Err(corrupt(read.pos + at as u64, format!("{problem:?}"))),
        };
        let frame_end_token = frame.first_token + u64::from(frame.event_count);
        if frame.first_token > *next_token {
            return Err(corrupt(
                read.pos + at as u64,
                format!("frame starts at token {}, expected {}", frame.first_token, next_token),
            ));
        }
        if frame_end_token > *next_token {
            let body = chunk.slice(at + format::FRAME_HEADER_LEN..at + frame.total_len());
            let mut token = frame.first_token;
            let mut stop = false;
            format::for_each_record(&frame, &body, |offset, data| {
                if stop || token < *next_token {
                    token += 1;
                    return;
                }
                let start = offset - format::FRAME_HEADER_LEN + format::RECORD_HEADER_LEN;
                out.push((token, body.slice(start..start + data.len())));
                if let Some(tags) = tags.as_deref_mut() {
                    tags.push(frame.log_index);
                }
                pushed += data.len();
                token += 1;
                *next_token = token;
                stop = out.len() >= max_events || pushed >= max_bytes;
            })
            .map_err(|p| corrupt(read.pos + at as u64, format!("{p:?}")))?;
            if *next_token < frame_end_token {
                // Stopped inside this frame: resume at its start next time.
                read.pos += at as u64;
                return Ok(pushed);
            }
        }
        at += frame.total_len();
    }
    read.pos += at as u64;
    Ok(pushed)
}

/// Reads and verifies the record at `pos` of a file `file_len` bytes long.
fn read_record(file: &File, path: &Path, pos: u64, file_len: u64) -> Result<Bytes, StoreError> {
    let mut header = [0u8; format::RECORD_HEADER_LEN];
    file.read_exact_at(&mut header, pos).map_err(StoreError::io("read", path))?;
    let len = format::read_u32(&header, 0) as usize;
    // The length is not covered by the checksum: bound it before allocating.
    if pos + (format::RECORD_HEADER_LEN + len) as u64 > file_len {
        let reason = format!("record length {len} runs past the end of the file");
        return Err(StoreError::Corrupt { path: path.to_path_buf(), offset: pos, reason });
    }
    let mut record = BytesMut::zeroed(format::RECORD_HEADER_LEN + len);
    file.read_exact_at(&mut record, pos).map_err(StoreError::io("read", path))?;
    match format::decode_record(&record) {
        Ok(_) => Ok(record.freeze().slice(format::RECORD_HEADER_LEN..)),
        Err(problem) => {
            Err(StoreError::Corrupt { path: path.to_path_buf(), offset: pos, reason: format!("{problem:?}") })
        }
    }
}

fn lock_dir(dir: &Path, kind: StoreKind) -> Result<File, StoreError> {
    let path = dir.join(format!(".{}.lock", kind.name()));
    let file = File::create(&path).map_err(StoreError::io("create", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io("lock", &path)(e)),
    }
}

/// Removes this store's `.temp` files: writes that a crash interrupted
/// before their rename, so never part of the store.
fn remove_temp_files(dir: &Path, kind: StoreKind) -> Result<(), StoreError> {
    let suffixes = [kind.data_suffix(), kind.index_suffix(), kind.token_index_suffix(), kind.bloom_suffix()];
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".temp")) else { continue };
        if suffixes.iter().any(|suffix| format::parse_segment_name(stem, suffix).is_some()) {
            tracing::warn!(file = %entry.path().display(), "removing an unfinished write left by a crash");
            fs::remove_file(entry.path()).map_err(StoreError::io("remove", entry.path()))?;
        }
    }
    Ok(())
}

/// The first tokens of every segment: data files and retired markers.
fn list_segments(dir: &Path, kind: StoreKind) -> Result<Vec<u64>, StoreError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        for suffix in [kind.data_suffix(), kind.retired_suffix()] {
            if let Some(first) = format::parse_segment_name(&name, suffix) {
                firsts.push(first);
            }
        }
    }
    firsts.sort_unstable();
    firsts.dedup();
    Ok(firsts)
}

/// Creates an empty segment file (header only), durably.
pub fn create_segment(dir: &Path, kind: StoreKind, first_token: u64, base_log_index: u64) -> Result<File, StoreError> {
    let path = format::segment_file(dir, first_token, kind.data_suffix());
    if path.exists() {
        let error = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a segment with this name exists");
        return Err(StoreError::io("create", &path)(error));
    }
    // Header first, under a temporary name: a crash never leaves a segment
    // file without its header.
    write_durably(&path, &format::encode_header(kind, first_token, base_log_index))?;
    sync_dir(dir)?;
    fs::OpenOptions::new().read(true).write(true).open(&path).map_err(StoreError::io("open", &path))
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::durable::sync_dir(dir).map_err(StoreError::from)
}

/// Writes a file atomically and durably (see [`crate::durable`]); the
/// caller fsyncs the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::durable::replace_file(path, bytes).map_err(StoreError::from)
}

/// Writes the side files of a segment whose scan or in-memory indexes are given.
pub fn write_side_files(
    dir: &Path,
    kind: StoreKind,
    first_token: u64,
    aggregates: &AggregateIndex,
    tokens: &TokenIndex,
) -> Result<Bloom, StoreError> {
    let mut bloom = Bloom::with_capacity(aggregates.aggregate_count());
    for id in aggregates.ids() {
        bloom.insert(id);
    }
    write_durably(&format::segment_file(dir, first_token, kind.index_suffix()), &aggregates.encode())?;
    write_durably(&format::segment_file(dir, first_token, kind.token_index_suffix()), &tokens.encode())?;
    write_durably(&format::segment_file(dir, first_token, kind.bloom_suffix()), &bloom.encode())?;
    sync_dir(dir)?;
    Ok(bloom)
}

fn recover_closed(
    dir: &Path,
    kind: StoreKind,
    firsts: &[u64],
    validation_segments: u32,
) -> Result<Vec<ClosedSegment>, StoreError> {
    let closed_count = firsts.len().saturating_sub(1);
    let validate_from = closed_count.saturating_sub(validation_segments as usize);
    let mut closed = Vec::with_capacity(closed_count);
    for i in 0..closed_count {
        let (first, next) = (firsts[i], firsts[i + 1]);
        let path = format::segment_file(dir, first, kind.data_suffix());
        let side_missing = [kind.index_suffix(), kind.token_index_suffix(), kind.bloom_suffix()]
            .iter()
            .any(|suffix| !format::segment_file(dir, first, suffix).exists());
        if format::segment_file(dir, first, kind.retired_suffix()).exists() {
            closed.push(super::tier::recover_retired(dir, kind, first, next, side_missing)?);
            continue;
        }
        let len = if i >= validate_from || side_missing {
            let scan = scan_segment(&path, kind, first)?;
            check_closed_scan(&path, &scan, next)?;
            if side_missing {
                tracing::warn!(segment = %path.display(), "rebuilding the index files of a closed segment");
                write_side_files(dir, kind, first, &scan.aggregates, &scan.tokens)?;
            }
            scan.file_len
        } else {
            fs::metadata(&path).map_err(StoreError::io("stat", &path))?.len()
        };
        closed.push(ClosedSegment { first_token: first, next_token: next, len, retired: false });
    }
    Ok(closed)
}

fn check_closed_scan(path: &Path, scan: &ScanResult, next: u64) -> Result<(), StoreError> {
    if let Some((offset, problem)) = &scan.stopped {
        let reason = match problem {
            FrameProblem::Corrupt(reason) => reason.clone(),
            FrameProblem::Incomplete => "the last frame is cut short".into(),
            FrameProblem::Empty => "zero bytes where a frame should be".into(),
        };
        return Err(StoreError::Corrupt { path: path.to_path_buf(), offset: *offset, reason });
    }
    if scan.next_token != next {
        let reason = format!("segment ends at token {}, but the next segment starts at {next}", scan.next_token);
        return Err(StoreError::Corrupt { path: path.to_path_buf(), offset: scan.valid_len, reason });
    }
    Ok(())
}

fn recover_active(
    context: &str,
    dir: &Path,
    kind: StoreKind,
    first: u64,
) -> Result<(ActiveSegment, u64, File), StoreError> {
    let path = format::segment_file(dir, first, kind.data_suffix());
    for suffix in [kind.index_suffix(), kind.token_index_suffix(), kind.bloom_suffix()] {
        // Side files of the active segment are left over from a roll that
        // did not finish; the segment is still being written, so drop them.
        let stale = format::segment_file(dir, first, suffix);
        if stale.exists() {
            fs::remove_file(&stale).map_err(StoreError::io("remove", &stale))?;
        }
    }
    let scan = scan_segment(&path, kind, first)?;
    if let Some((offset, problem @ (FrameProblem::Corrupt(_) | FrameProblem::Empty))) = &scan.stopped
        && let Some(later) = find_later_group(&path, *offset, scan.next_token)?
    {
        let reason =
            format!("{problem:?}; an intact later group commit at offset {later} shows this data was confirmed");
        return Err(StoreError::Corrupt { path, offset: *offset, reason });
    }
    let file = fs::OpenOptions::new().read(true).write(true).open(&path).map_err(StoreError::io("open", &path))?;
    if scan.valid_len < scan.file_len {
        let (offset, problem) = scan.stopped.clone().unwrap_or((scan.valid_len, FrameProblem::Incomplete));
        tracing::warn!(
            context,
            store = kind.name(),
            segment = %path.display(),
            offset,
            cut_bytes = scan.file_len - scan.valid_len,
            problem = ?problem,
            last_token = scan.next_token as i64 - 1,
            "cut an incomplete transaction off the end of the active segment (it was never confirmed)"
        );
        file.set_len(scan.valid_len).map_err(StoreError::io("truncate", &path))?;
        file.sync_all().map_err(StoreError::io("fsync", &path))?;
    }
    let active = ActiveSegment {
        first_token: first,
        next_token: scan.next_token,
        len: scan.valid_len,
        aggregates: scan.aggregates,
        tokens: scan.tokens,
    };
    Ok((active, scan.last_log_index, file))
}
