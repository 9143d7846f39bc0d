//! Errors of the event store. Expected outcomes a client can cause (a
//! sequence conflict, a full disk) are variants of their own, apart from
//! I/O failures and corruption, which name the file and offset.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("failed to {op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `write`, `fsync`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes do not match their checksum or framing.
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged frame or record.
        offset: u64,
        /// What did not match.
        reason: String,
    },
    /// A transaction's aggregate sequence numbers do not follow the stored ones.
    #[error("Invalid sequence number {sequence} for aggregate {aggregate_id}, expected {expected}")]
    InvalidSequence {
        /// The aggregate.
        aggregate_id: String,
        /// The number sent.
        sequence: i64,
        /// The number that would have been accepted.
        expected: i64,
    },
    /// An event is not a valid protobuf `Event`.
    #[error("event {index} of the transaction is not a valid Event message")]
    Malformed {
        /// Position of the event in its transaction.
        index: usize,
    },
    /// Free disk space is below the configured reserve; writes resume when
    /// space returns.
    #[error(
        "refusing writes: {available_bytes} bytes free on the disk of {path}, below the reserve of {reserve_bytes} bytes"
    )]
    DiskFull {
        /// The store directory.
        path: PathBuf,
        /// Free bytes seen.
        available_bytes: u64,
        /// The configured reserve.
        reserve_bytes: u64,
    },
    /// The store stopped accepting writes after a failure it cannot undo
    /// (an fsync error); a restart re-verifies the files.
    #[error("the {context} store is unavailable: {reason}")]
    Unavailable {
        /// The context.
        context: String,
        /// The failure that stopped it.
        reason: String,
    },
    /// The requested token lies before the first one still stored.
    #[error("token {token} is before the first stored token {first}")]
    TokenGone {
        /// The token asked for.
        token: u64,
        /// The first token on disk.
        first: u64,
    },
    /// A replicated transaction whose log entry the store already holds
    /// (a re-applied entry after a restart); nothing was written.
    #[error("log entry {log_index} is already applied (the store holds up to {last})")]
    AlreadyApplied {
        /// The entry offered.
        log_index: u64,
        /// The highest entry the store holds.
        last: u64,
    },
    /// The events asked for are in a segment moved to the lower tier (a
    /// secondary's copy), and that tier could not serve them.
    #[error(
        "events of the {context} store from token {from_token} on are kept by the secondary tier, which could not serve them: {reason}"
    )]
    Retired {
        /// The context.
        context: String,
        /// The first token asked for.
        from_token: u64,
        /// Why the tier did not serve them.
        reason: String,
    },
    /// Another process holds the store directory.
    #[error("the store directory {path} is in use by another process")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A backup is copying the segment: it stays until the backup's lease ends.
    #[error("segment {segment} is being copied by a backup")]
    Pinned {
        /// The segment's first token.
        segment: u64,
    },
}

impl StoreError {
    /// A copy for answering several callers with one failure (the OS error
    /// keeps its kind and message).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Io { op, path, source } => StoreError::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Corrupt { path, offset, reason } => {
                StoreError::Corrupt { path: path.clone(), offset: *offset, reason: reason.clone() }
            }
            StoreError::InvalidSequence { aggregate_id, sequence, expected } => StoreError::InvalidSequence {
                aggregate_id: aggregate_id.clone(),
                sequence: *sequence,
                expected: *expected,
            },
            StoreError::Malformed { index } => StoreError::Malformed { index: *index },
            StoreError::DiskFull { path, available_bytes, reserve_bytes } => StoreError::DiskFull {
                path: path.clone(),
                available_bytes: *available_bytes,
                reserve_bytes: *reserve_bytes,
            },
            StoreError::Unavailable { context, reason } => {
                StoreError::Unavailable { context: context.clone(), reason: reason.clone() }
            }
            StoreError::TokenGone { token, first } => StoreError::TokenGone { token: *token, first: *first },
            StoreError::Locked { path } => StoreError::Locked { path: path.clone() },
            StoreError::Retired { context, from_token, reason } => {
                StoreError::Retired { context: context.clone(), from_token: *from_token, reason: reason.clone() }
            }
            StoreError::AlreadyApplied { log_index, last } => {
                StoreError::AlreadyApplied { log_index: *log_index, last: *last }
            }
            StoreError::Pinned { segment } => StoreError::Pinned { segment: *segment },
        }
    }

    /// An I/O error with its operation and path.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

impl From<crate::durable::Failed> for StoreError {
    fn from(crate::durable::Failed { op, path, source }: crate::durable::Failed) -> Self {
        StoreError::Io { op, path, source }
    }
}
