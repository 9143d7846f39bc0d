//! A segment file's contents as recovery reads them: frames, their
//! records and the indexed fields of each event. The checksums are
//! recomputed over the input first, so the fuzzer explores what lies
//! behind them (a corrupt file with valid checksums is what a bug in a
//! writer, or a disk that lies, would leave). Any bytes: answers or
//! errors, never a panic, never a read outside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ranvier_node::store::event_fields;
use ranvier_node::store::format::{
    FRAME_HEADER_LEN, FrameProblem, RECORD_HEADER_LEN, decode_frame_header, for_each_record,
};

/// Writes valid checksums into the frame header at `at` and the records
/// it claims (as far as the bytes reach).
fn fix_checksums(bytes: &mut [u8], at: usize) {
    let Some(header) = bytes.get_mut(at..at + FRAME_HEADER_LEN) else { return };
    let crc = crc32fast::hash(&header[..24]).to_le_bytes();
    header[24..28].copy_from_slice(&crc);
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) & 0x7fff_ffff;
    let mut record = at + FRAME_HEADER_LEN;
    for _ in 0..count.min(1024) {
        let Some(head) = bytes.get(record..record + RECORD_HEADER_LEN) else { return };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(data) = bytes.get(record + RECORD_HEADER_LEN..record + RECORD_HEADER_LEN + len) else { return };
        let crc = crc32fast::hash(data).to_le_bytes();
        bytes[record + 4..record + 8].copy_from_slice(&crc);
        record += RECORD_HEADER_LEN + len;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    let mut at = 0usize;
    while at < bytes.len() {
        fix_checksums(&mut bytes, at);
        let frame = match decode_frame_header(&bytes[at..]) {
            Ok(frame) => frame,
            Err(FrameProblem::Incomplete | FrameProblem::Empty | FrameProblem::Corrupt(_)) => return,
        };
        let Some(body) = bytes.get(at + FRAME_HEADER_LEN..at + frame.total_len()) else { return };
        let walked = for_each_record(&frame, body, |_, event| {
            if let Some(fields) = event_fields::parse(event) {
                let _ = fields.is_domain_event();
            }
        });
        if walked.is_err() {
            return;
        }
        at += frame.total_len();
    }
});
