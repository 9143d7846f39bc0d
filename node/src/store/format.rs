//! The on-disk format of segment files and their side files: names, the
//! segment header, transaction frames and event records, with the checksums
//! that are written with the data and checked on every read.
//!
//! All integers are little-endian.
//!
//! ```text
//! segment  := header frame*
//! header   := magic "RNVRSEG1" (8) | version u16 = 1 | kind u16 (1 events, 2 snapshots)
//!             | reserved u32 = 0 | first_token u64 | base_log_index u64    (32 bytes)
//! frame    := body_len u32 | flags_count u32 | first_token u64 | log_index u64
//!             | header_crc u32 (CRC-32 of the 24 bytes before it)          (28 bytes)
//!             record{event_count}
//! record   := len u32 | crc u32 (CRC-32 of data) | data[len]   (an encoded `Event`)
//! ```
//!
//! `flags_count` holds the event count in its low 31 bits; the top bit marks
//! the first frame of a group commit (one write + one fsync). A frame from a
//! later group commit proves the earlier ones were fsync'd, which is how
//! recovery tells a torn tail from damage to confirmed data.
//!
//! `log_index` is the replication log entry the transaction came from (0 on a
//! node that does not replicate), and a segment's `base_log_index` is the
//! last one applied before the segment began: so the store itself records,
//! atomically with the events, how far the replicated log has been applied.
//!
//! `body_len` is the sum of the records' sizes (8 + len each). One frame is
//! one client transaction, so a frame is either wholly valid or is the torn
//! tail of a crash. The token of the i-th record of a frame is the frame's
//! `first_token + i`; frames follow each other with no gap in tokens, and a
//! segment is named by the token of its first event (`%020d.events`).

use std::path::{Path, PathBuf};

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RNVRSEG1";
/// The segment format written by this version.
pub const SEGMENT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const HEADER_LEN: u64 = 32;
/// Size of a frame header in bytes.
pub const FRAME_HEADER_LEN: usize = 28;
/// Size of a record header in bytes (length and checksum).
pub const RECORD_HEADER_LEN: usize = 8;
/// Top bit of a frame's count field: first frame of a group commit.
pub const GROUP_START_FLAG: u32 = 1 << 31;

/// Which of a context's two stores a segment belongs to. Each has its own
/// token space and its own file suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// The event stream: tokens are visible to clients.
    Events,
    /// Aggregate snapshots: tokens are internal.
    Snapshots,
}

impl StoreKind {
    /// The code written in the segment header.
    pub fn code(self) -> u16 {
        match self {
            StoreKind::Events => 1,
            StoreKind::Snapshots => 2,
        }
    }

    /// Suffix of the data files.
    pub fn data_suffix(self) -> &'static str {
        match self {
            StoreKind::Events => "events",
            StoreKind::Snapshots => "snapshots",
        }
    }

    /// Suffix of the aggregate index of a closed segment.
    pub fn index_suffix(self) -> &'static str {
        match self {
            StoreKind::Events => "index",
            StoreKind::Snapshots => "sindex",
        }
    }

    /// Suffix of the bloom filter of a closed segment.
    pub fn bloom_suffix(self) -> &'static str {
        match self {
            StoreKind::Events => "bloom",
            StoreKind::Snapshots => "sbloom",
        }
    }

    /// Suffix of the sparse token index of a closed segment.
    pub fn token_index_suffix(self) -> &'static str {
        match self {
            StoreKind::Events => "tindex",
            StoreKind::Snapshots => "stindex",
        }
    }

    /// Suffix of the marker of a segment whose data file was retired to
    /// the lower tier (its side files stay).
    pub fn retired_suffix(self) -> &'static str {
        match self {
            StoreKind::Events => "retired",
            StoreKind::Snapshots => "sretired",
        }
    }

    /// A lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Events => "events",
            StoreKind::Snapshots => "snapshots",
        }
    }
}

/// The path of a file of the segment that starts at `first_token`.
pub fn segment_file(dir: &Path, first_token: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{first_token:020}.{suffix}"))
}

/// Parses a data file name (`%020d.<suffix>`) into its first token.
pub fn parse_segment_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Encodes a segment header.
pub fn encode_header(kind: StoreKind, first_token: u64, base_log_index: u64) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[10..12].copy_from_slice(&kind.code().to_le_bytes());
    header[16..24].copy_from_slice(&first_token.to_le_bytes());
    header[24..32].copy_from_slice(&base_log_index.to_le_bytes());
    header
}

/// The `base_log_index` of a header that passed [`check_header`].
pub fn header_base_log_index(header: &[u8]) -> u64 {
    read_u64(header, 24)
}

/// Why a segment header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// Not a Ranvier segment.
    Magic,
    /// Written by an unknown format version.
    Version(u16),
    /// A snapshot segment among event segments or the reverse.
    Kind(u16),
    /// The header names another first token than the file name.
    FirstToken { header: u64, name: u64 },
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Short => write!(f, "the file is shorter than a segment header"),
            HeaderProblem::Magic => write!(f, "the file does not start with the segment magic"),
            HeaderProblem::Version(v) => write!(f, "unknown segment format version {v}"),
            HeaderProblem::Kind(k) => write!(f, "unexpected segment kind {k}"),
            HeaderProblem::FirstToken { header, name } => {
                write!(f, "header says first token {header}, file name says {name}")
            }
        }
    }
}

/// Checks a segment header against what its name and place promise.
pub fn check_header(bytes: &[u8], kind: StoreKind, first_token: u64) -> Result<(), HeaderProblem> {
    if bytes.len() < HEADER_LEN as usize {
        return Err(HeaderProblem::Short);
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err(HeaderProblem::Magic);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != SEGMENT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    let code = u16::from_le_bytes([bytes[10], bytes[11]]);
    if code != kind.code() {
        return Err(HeaderProblem::Kind(code));
    }
    let header = read_u64(bytes, 16);
    if header != first_token {
        return Err(HeaderProblem::FirstToken { header, name: first_token });
    }
    Ok(())
}

/// Appends one frame holding `events` (each an encoded `Event`) to `out`;
/// `group_start` marks the first frame of a group commit.
pub fn encode_frame<'a>(
    out: &mut Vec<u8>,
    first_token: u64,
    log_index: u64,
    group_start: bool,
    events: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
) {
    let count = events.len();
    let flags = if group_start { GROUP_START_FLAG } else { 0 };
    let body_len: usize = events.clone().map(|e| RECORD_HEADER_LEN + e.len()).sum();
    out.reserve(FRAME_HEADER_LEN + body_len);
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&(count as u32 | flags).to_le_bytes());
    out.extend_from_slice(&first_token.to_le_bytes());
    out.extend_from_slice(&log_index.to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 24]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    for event in events {
        out.extend_from_slice(&(event.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(event).to_le_bytes());
        out.extend_from_slice(event);
    }
}

/// The size a frame of events of these lengths takes on disk.
pub fn frame_len(event_lens: impl Iterator<Item = usize>) -> usize {
    FRAME_HEADER_LEN + event_lens.map(|l| RECORD_HEADER_LEN + l).sum::<usize>()
}

/// A frame header that passed its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of records after the header.
    pub body_len: u32,
    /// Number of records.
    pub event_count: u32,
    /// Token of the first record.
    pub first_token: u64,
    /// First frame of a group commit.
    pub group_start: bool,
    /// The replication log entry this transaction came from (0: none).
    pub log_index: u64,
}

impl FrameHeader {
    /// Total bytes of the frame, header included.
    pub fn total_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len as usize
    }
}

/// What is wrong with bytes that should hold a frame or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameProblem {
    /// The bytes end before the frame does (normal at the end of the data;
    /// a torn write when it is the tail of a crashed segment).
    Incomplete,
    /// The bytes are all zero where a frame should start: nothing written.
    Empty,
    /// A checksum or a length does not match.
    Corrupt(String),
}

/// Decodes the frame header at the start of `bytes`.
pub fn decode_frame_header(bytes: &[u8]) -> Result<FrameHeader, FrameProblem> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(FrameProblem::Incomplete);
    }
    let header = &bytes[..FRAME_HEADER_LEN];
    if header.iter().all(|b| *b == 0) {
        return Err(FrameProblem::Empty);
    }
    let stored_crc = read_u32(header, 24);
    if crc32fast::hash(&header[..24]) != stored_crc {
        return Err(FrameProblem::Corrupt("frame header checksum mismatch".into()));
    }
    let flags_count = read_u32(header, 4);
    let frame = FrameHeader {
        body_len: read_u32(header, 0),
        event_count: flags_count & !GROUP_START_FLAG,
        first_token: read_u64(header, 8),
        group_start: flags_count & GROUP_START_FLAG != 0,
        log_index: read_u64(header, 16),
    };
    if (frame.event_count as u64) * (RECORD_HEADER_LEN as u64) > frame.body_len as u64 {
        return Err(FrameProblem::Corrupt("frame holds more records than bytes".into()));
    }
    Ok(frame)
}

/// Decodes the record at the start of `bytes`: the event data and the
/// record's total size. The data's checksum is verified.
pub fn decode_record(bytes: &[u8]) -> Result<(&[u8], usize), FrameProblem> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(FrameProblem::Incomplete);
    }
    let len = read_u32(bytes, 0) as usize;
    let crc = read_u32(bytes, 4);
    let end = RECORD_HEADER_LEN + len;
    if bytes.len() < end {
        return Err(FrameProblem::Incomplete);
    }
    let data = &bytes[RECORD_HEADER_LEN..end];
    if crc32fast::hash(data) != crc {
        return Err(FrameProblem::Corrupt("event checksum mismatch".into()));
    }
    Ok((data, end))
}

/// Calls `each(offset_in_frame, data)` for every record of a frame whose
/// header is `frame` and whose body is `body` (exactly `body_len` bytes).
pub fn for_each_record(
    frame: &FrameHeader,
    body: &[u8],
    mut each: impl FnMut(usize, &[u8]),
) -> Result<(), FrameProblem> {
    let mut at = 0usize;
    for _ in 0..frame.event_count {
        let (data, size) = decode_record(&body[at..]).map_err(|p| match p {
            FrameProblem::Incomplete => FrameProblem::Corrupt("record runs past its frame".into()),
            other => other,
        })?;
        each(FRAME_HEADER_LEN + at, data);
        at += size;
    }
    if at != body.len() {
        return Err(FrameProblem::Corrupt("frame length does not match its records".into()));
    }
    Ok(())
}

/// Wraps a side file's body as `magic | body | crc32(magic | body)`.
pub fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(magic);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The body of a sealed side file, or `None` when the magic or checksum is off.
pub fn unseal<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Option<&'a [u8]> {
    if bytes.len() < 12 || bytes[..8] != *magic {
        return None;
    }
    let end = bytes.len() - 4;
    (crc32fast::hash(&bytes[..end]) == read_u32(bytes, end)).then(|| &bytes[8..end])
}

/// Reads a little-endian u32 at `at`; the caller has checked the length.
pub fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// Reads a little-endian u64 at `at`; the caller has checked the length.
pub fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_strangers() {
        let dir = Path::new("/x");
        let path = segment_file(dir, 14, "events");
        assert_eq!(path, Path::new("/x/00000000000000000014.events"));
        assert_eq!(parse_segment_name("00000000000000000014.events", "events"), Some(14));
        assert_eq!(parse_segment_name("00000000000000000014.index", "events"), None);
        assert_eq!(parse_segment_name("14.events", "events"), None);
        assert_eq!(parse_segment_name("0000000000000000001a.events", "events"), None);
    }

    #[test]
    fn header_checks_every_field() {
        let header = encode_header(StoreKind::Events, 7, 3);
        assert_eq!(header_base_log_index(&header), 3);
        assert_eq!(check_header(&header, StoreKind::Events, 7), Ok(()));
        assert_eq!(check_header(&header, StoreKind::Snapshots, 7), Err(HeaderProblem::Kind(1)));
        assert_eq!(check_header(&header, StoreKind::Events, 8), Err(HeaderProblem::FirstToken { header: 7, name: 8 }));
        assert_eq!(check_header(&header[..10], StoreKind::Events, 7), Err(HeaderProblem::Short));
        let mut bad = header;
        bad[0] = b'X';
        assert_eq!(check_header(&bad, StoreKind::Events, 7), Err(HeaderProblem::Magic));
    }

    #[test]
    fn frame_round_trips_and_detects_flips() {
        let events: Vec<&[u8]> = vec![b"one", b"", b"three"];
        let mut out = Vec::new();
        encode_frame(&mut out, 100, 42, true, events.iter().copied());
        assert_eq!(out.len(), frame_len(events.iter().map(|e| e.len())));
        let frame = decode_frame_header(&out).unwrap();
        assert_eq!(frame.first_token, 100);
        assert_eq!(frame.event_count, 3);
        assert!(frame.group_start);
        assert_eq!(frame.log_index, 42);
        assert_eq!(frame.total_len(), out.len());
        let mut seen = Vec::new();
        for_each_record(&frame, &out[FRAME_HEADER_LEN..], |_, d| seen.push(d.to_vec())).unwrap();
        assert_eq!(seen, vec![b"one".to_vec(), vec![], b"three".to_vec()]);

        for at in 0..out.len() {
            let mut flipped = out.clone();
            flipped[at] ^= 0x40;
            let result = decode_frame_header(&flipped).and_then(|f| {
                if f.total_len() > flipped.len() {
                    return Err(FrameProblem::Incomplete);
                }
                for_each_record(&f, &flipped[FRAME_HEADER_LEN..f.total_len()], |_, _| {})
            });
            assert!(result.is_err(), "a flipped byte at {at} went unnoticed");
        }
    }

    #[test]
    fn zeroes_are_empty_and_short_is_incomplete() {
        assert_eq!(decode_frame_header(&[0u8; 32]), Err(FrameProblem::Empty));
        assert_eq!(decode_frame_header(&[1u8; 5]), Err(FrameProblem::Incomplete));
    }
}
