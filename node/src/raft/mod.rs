//! Replication groups on openraft (work in progress): the type configuration,
//! the durable Raft log (`log_store`) and the state machine that applies
//! committed entries to the context stores (`state_machine`). The internal
//! network, group management and snapshots (catch-up by segment files)
//! follow.

pub mod log_store;
pub mod state_machine;
pub mod types;

/// A replication group's Raft instance on this node.
pub type GroupRaft = openraft::Raft<types::TypeConfig, state_machine::GroupStateMachine>;

#[cfg(test)]
mod cluster_tests;
