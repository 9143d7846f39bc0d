//! Replication groups on openraft: the type configuration (`types`), the
//! entry encoding shared by disk and wire (`codec`), the durable Raft log
//! (`log_store`), the state machine that applies committed entries to the
//! context stores and, in `_admin`, to the cluster model (`state_machine`),
//! and the Raft RPCs over the internal gRPC port with the internal token
//! (`network`). Which groups run where is decided by `cluster`. A snapshot
//! is metadata over the stores; a replica that installs one streams the
//! transactions it lacks from the snapshot's node, and the log before a
//! snapshot is purged.

pub mod codec;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

/// A replication group's Raft instance on this node.
pub type GroupRaft = openraft::Raft<types::TypeConfig, state_machine::GroupStateMachine>;

#[cfg(test)]
mod cluster_tests;
