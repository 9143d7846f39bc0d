//! The Ranvier node: an Axon Server compatible event store and (later)
//! message router.
//!
//! Module map:
//! - [`config`]: every setting, typed, from properties files, env and flags.
//! - [`store`]: the event store of one context (segment files, group commit,
//!   indexes, recovery).
//! - `api::grpc`: the client gRPC API on port 8124.
//! - `api::http`: health, readiness, metrics and node info on port 8024.

pub mod store;
