//! Replication groups on openraft (work in progress): the type configuration
//! (`types`), the entry encoding shared by disk and wire (`codec`), the
//! durable Raft log (`log_store`), the state machine that applies committed
//! entries to the context stores (`state_machine`) and the Raft RPCs over the
//! internal gRPC port with the internal token (`network`). Still to come:
//! running groups inside the node (the `_admin` model, autocluster, roles),
//! client routing to leaders, and snapshots (catch-up by segment files).

pub mod codec;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

/// A replication group's Raft instance on this node.
pub type GroupRaft = openraft::Raft<types::TypeConfig, state_machine::GroupStateMachine>;

#[cfg(test)]
mod cluster_tests;
