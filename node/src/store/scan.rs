//! Sequential scans of a segment file, used by recovery (to rebuild the
//! indexes and find the end of the valid data) and by the validation of
//! closed segments. Reads in bounded chunks, never the whole file at once.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::StoreError;
use super::event_fields;
use super::format::{self, FrameProblem, HEADER_LEN, StoreKind};
use super::index::{AggregateIndex, TokenIndex};

/// Bytes read per step of a scan (a larger frame is read whole).
const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// The token after the last complete frame.
    pub next_token: u64,
    /// End of the last complete frame: the length of the valid data.
    pub valid_len: u64,
    /// The file's length on disk.
    pub file_len: u64,
    /// Aggregate index of the valid frames.
    pub aggregates: AggregateIndex,
    /// Token marks of the valid frames.
    pub tokens: TokenIndex,
    /// Where and why the scan stopped before the end of the file, if it did.
    pub stopped: Option<(u64, FrameProblem)>,
    /// The highest replication log index of the header and the valid frames.
    pub last_log_index: u64,
}

/// Whether an event of this kind is indexed by aggregate id.
pub fn is_indexed(kind: StoreKind, fields: &event_fields::EventFields<'_>) -> bool {
    match kind {
        StoreKind::Events => fields.is_domain_event(),
        StoreKind::Snapshots => !fields.aggregate_id.is_empty(),
    }
}

/// Scans the segment at `path`, which must start at `first_token`, checking
/// every checksum and that tokens run on without a gap.
pub fn scan_segment(path: &Path, kind: StoreKind, first_token: u64) -> Result<ScanResult, StoreError> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let file_len = file.metadata().map_err(StoreError::io("stat", path))?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    let got = read_at_most(&file, &mut header, 0).map_err(StoreError::io("read", path))?;
    format::check_header(&header[..got], kind, first_token).map_err(|problem| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: problem.to_string(),
    })?;
    let mut result = ScanResult {
        next_token: first_token,
        valid_len: HEADER_LEN,
        file_len,
        last_log_index: format::header_base_log_index(&header),
        ..Default::default()
    };
    let mut chunk = Vec::new();
    let mut chunk_start = HEADER_LEN;
    loop {
        let at = result.valid_len;
        if at >= file_len {
            return Ok(result);
        }
        let offset_in_chunk = (at - chunk_start) as usize;
        let view = &chunk[offset_in_chunk.min(chunk.len())..];
        let frame = match format::decode_frame_header(view) {
            Ok(frame) if frame.total_len() <= view.len() => frame,
            Ok(frame) if at + frame.total_len() as u64 > file_len => {
                result.stopped = Some((at, FrameProblem::Incomplete));
                return Ok(result);
            }
            Ok(frame) => {
                chunk_start = at;
                chunk = read_chunk(&file, path, at, frame.total_len().max(SCAN_CHUNK_BYTES), file_len)?;
                continue;
            }
            Err(FrameProblem::Incomplete) if (view.len() as u64) < file_len - at => {
                chunk_start = at;
                chunk = read_chunk(&file, path, at, SCAN_CHUNK_BYTES, file_len)?;
                continue;
            }
            Err(problem) => {
                result.stopped = Some((at, problem));
                return Ok(result);
            }
        };
        if frame.first_token != result.next_token {
            let reason = format!("frame starts at token {}, expected {}", frame.first_token, result.next_token);
            result.stopped = Some((at, FrameProblem::Corrupt(reason)));
            return Ok(result);
        }
        let body = &view[format::FRAME_HEADER_LEN..frame.total_len()];
        let mut fields_problem = None;
        let mut token = frame.first_token;
        let mut first_timestamp = None;
        let indexed = format::for_each_record(&frame, body, |offset, data| {
            match event_fields::parse(data) {
                Some(fields) => {
                    first_timestamp.get_or_insert(fields.timestamp);
                    if is_indexed(kind, &fields) {
                        result.aggregates.add(fields.aggregate_id, fields.sequence, (at as usize + offset) as u32);
                    }
                }
                None => fields_problem = Some(token),
            }
            token += 1;
        });
        if let Err(problem) = indexed {
            result.stopped = Some((at, problem));
            return Ok(result);
        }
        if let Some(bad) = fields_problem {
            let reason = format!("event with token {bad} is not a valid Event message");
            result.stopped = Some((at, FrameProblem::Corrupt(reason)));
            return Ok(result);
        }
        result.tokens.offer(frame.first_token, at as u32, first_timestamp.unwrap_or(0));
        result.next_token = frame.first_token + u64::from(frame.event_count);
        result.last_log_index = result.last_log_index.max(frame.log_index);
        result.valid_len = at + frame.total_len() as u64;
    }
}

/// Looks past a damaged frame at `from` for an intact frame that starts a
/// later group commit (tokens beyond `after_token`). Finding one means the
/// damaged frame had been fsync'd and confirmed: the damage is not a torn
/// tail. Returns that frame's offset. Reads in bounded chunks.
pub fn find_later_group(path: &Path, from: u64, after_token: u64) -> Result<Option<u64>, StoreError> {
    let file = File::open(path).map_err(StoreError::io("open", path))?;
    let file_len = file.metadata().map_err(StoreError::io("stat", path))?.len();
    let mut start = from + 1;
    while start < file_len {
        let chunk = read_chunk(&file, path, start, SCAN_CHUNK_BYTES, file_len)?;
        for at in 0..chunk.len() {
            let Ok(frame) = format::decode_frame_header(&chunk[at..]) else { continue };
            if !frame.group_start || frame.first_token <= after_token {
                continue;
            }
            let offset = start + at as u64;
            let whole = read_chunk(&file, path, offset, frame.total_len(), file_len)?;
            if whole.len() == frame.total_len()
                && format::for_each_record(&frame, &whole[format::FRAME_HEADER_LEN..], |_, _| {}).is_ok()
            {
                return Ok(Some(offset));
            }
        }
        if chunk.len() <= format::FRAME_HEADER_LEN {
            break;
        }
        // Overlap so a header across the chunk edge is seen.
        start += (chunk.len() - format::FRAME_HEADER_LEN) as u64;
    }
    Ok(None)
}

fn read_chunk(file: &File, path: &Path, at: u64, len: usize, file_len: u64) -> Result<Vec<u8>, StoreError> {
    let len = len.min((file_len - at) as usize);
    let mut chunk = vec![0u8; len];
    let got = read_at_most(file, &mut chunk, at).map_err(StoreError::io("read", path))?;
    chunk.truncate(got);
    Ok(chunk)
}

/// Fills `buf` from `offset` as far as the file goes; returns the bytes read.
pub fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
