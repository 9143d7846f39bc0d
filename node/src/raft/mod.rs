//! Replication groups on openraft (work in progress): the type configuration
//! and the durable Raft log. The state machine (applying entries to context
//! stores), the internal network and group management follow.

pub mod log_store;
pub mod types;
