//! Helpers shared by the unit tests of several modules (compiled for tests only).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use ranvier_proto::event::Event;

use crate::store::{ContextStore, FsSpace, StoreMetrics, StoreOptions};

/// An encoded domain event of `aggregate` at `seq` (message id `aggregate/seq`)
/// with a payload of `payload_len` bytes; an empty aggregate gives a
/// non-domain event.
pub fn event(aggregate: &str, seq: i64, payload_len: usize) -> Bytes {
    let event = Event {
        message_identifier: format!("{aggregate}/{seq}"),
        aggregate_identifier: aggregate.into(),
        aggregate_sequence_number: seq,
        aggregate_type: if aggregate.is_empty() { String::new() } else { "Order".into() },
        timestamp: 1_000 + seq,
        payload: Some(ranvier_proto::common::SerializedObject {
            r#type: "Placed".into(),
            revision: String::new(),
            data: Bytes::from(vec![b'x'; payload_len]),
        }),
        ..Default::default()
    };
    Bytes::from(event.encode_to_vec())
}

/// A context store named `context` with events and snapshots in `dir`.
pub fn context_store(dir: &Path, context: &str) -> ContextStore {
    let metrics = (StoreMetrics::detached(), StoreMetrics::detached());
    let options = StoreOptions::default();
    ContextStore::open(context, dir, dir, options.clone(), options, metrics, Arc::new(FsSpace)).unwrap()
}
