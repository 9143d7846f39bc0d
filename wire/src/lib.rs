//! The wire contract of Ranvier's admin surface, defined once: the JSON
//! shapes of the admin REST API (requests, listings, replication group
//! status), the five node roles, Axon Server's error codes, and the rule
//! for context and group names. The node
//! serves these shapes, `ranvierctl` sends and reads them, and the
//! operator (which never depends on the node crate) reads them too.
//!
//! Serde only, and no I/O (`http` reads answers from bytes; each client
//! does its own networking), so every side can use it.

pub mod admin;
pub mod backup;
pub mod codes;
pub mod http;
mod role;

/// Axon's rule for context and replication group names:
/// `[a-zA-Z][a-zA-Z@_\-0-9]*`, at most 128 characters. Internal names
/// (`_admin`) are the same after a leading `_`, and cannot be created by users.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-'));
    first_ok && rest_ok && name.len() <= 128
}

/// [`valid_name`], or an internal name (`_` then a valid name).
pub fn valid_stored_name(name: &str) -> bool {
    valid_name(name.strip_prefix('_').unwrap_or(name))
}

pub use codes::ErrorCode;
pub use role::{Role, UnknownRole, quorum_holds};

/// `bytes` in lower-case hex, as tokens and digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
