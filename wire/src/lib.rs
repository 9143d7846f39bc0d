//! The wire contract of Ranvier's admin surface, defined once: the JSON
//! shapes of the admin REST API (requests, listings, replication group
//! status), the five node roles, and Axon Server's error codes. The node
//! serves these shapes, `ranvierctl` sends and reads them, and the
//! operator (which never depends on the node crate) reads them too.
//!
//! Serde only, and no I/O (`http` reads answers from bytes; each client
//! does its own networking), so every side can use it.

pub mod admin;
pub mod codes;
pub mod http;
mod role;

pub use codes::ErrorCode;
pub use role::{Role, UnknownRole, quorum_holds};
