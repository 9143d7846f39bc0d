//! A properties file as the node reads it at start: any text answers
//! entries or an error naming the line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ranvier_node::config::parse_properties;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(entries) = parse_properties(text, std::path::Path::new("fuzz.properties")) {
        for entry in entries {
            assert!(entry.line >= 1, "lines count from 1");
        }
    }
});
