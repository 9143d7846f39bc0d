//! A Raft log entry as a peer sends it or the log file holds it: decoding
//! any bytes answers an entry or an error, never a panic; an entry that
//! decodes encodes again to bytes that decode to the same entry.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ranvier_node::raft::codec::{decode_entry, encode_entry};

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = decode_entry(Bytes::copy_from_slice(data)) else { return };
    let Ok(encoded) = encode_entry(&entry) else { return };
    let again = decode_entry(Bytes::from(encoded)).expect("an encoded entry decodes");
    assert_eq!(format!("{again:?}"), format!("{entry:?}"), "decode(encode(entry)) differs");
});
