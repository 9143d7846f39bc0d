//! The Ranvier node: an Axon Server compatible event store and (later)
//! message router.
//!
//! Module map:
//! - [`config`]: every setting, typed, from properties files, env and flags.
//! - [`store`]: the event store of one context (segment files, group commit,
//!   indexes, recovery).
//! - [`contexts`]: which contexts this node stores, and their stores.
//! - [`transport`]: node-to-node calls: the pool of channels to other
//!   nodes (connect timeout, keepalive, one lane per group's Raft traffic)
//!   and the internal token, for Raft, forwarding and proxying alike.
//! - [`raft`]: replication groups on openraft: the durable log, the state
//!   machine that applies it to the stores, the Raft RPCs.
//! - [`cluster`]: the `_admin` model, formation, the reconciler that opens
//!   groups and stores and moves roles, and where writes and reads go.
//! - [`messaging`]: the command bus (and, to come, queries): handlers'
//!   subscriptions, routing by weighted consistent hashing, permits.
//! - [`durable`]: whole-file replacement shared by the store and the log.
//! - [`api::grpc`]: the client gRPC API (Axon protocol) on port 8124.
//! - [`api::http`]: health, readiness, metrics and node info on port 8024.
//! - [`server`]: wires them together and drains on shutdown.
//! - [`telemetry`]: logging and the metric registry.

pub mod access;
pub mod api;
pub mod cluster;
pub mod config;
pub mod contexts;
pub mod durable;
pub mod messaging;
pub mod raft;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;

#[cfg(test)]
pub(crate) mod test_util;
