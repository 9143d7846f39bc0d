//! Axon Server's error codes that Ranvier answers with (PROTOCOL.md §2.11):
//! the `AxonIQ-ErrorCode` header or trailer carries [`ErrorCode::as_str`].

use std::fmt;

/// The header (REST) and trailer (gRPC) that carries the error code.
pub const ERROR_CODE_HEADER: &str = "AxonIQ-ErrorCode";

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// An Axon error code, by Axon's name for it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code Ranvier knows.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code as it travels: `AXONIQ-2000`, …
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $code,)*
                }
            }
        }
    };
}

codes! {
    /// Anything else.
    Other = "AXONIQ-0001",
    /// The call carried no access token.
    AuthenticationTokenMissing = "AXONIQ-1000",
    /// The call's access token does not allow it.
    AuthenticationInvalidToken = "AXONIQ-1001",
    /// A request Ranvier does not support.
    UnsupportedInstruction = "AXONIQ-1002",
    /// No node by that name.
    NoSuchNode = "AXONIQ-1301",
    /// No context by that name.
    ContextNotFound = "AXONIQ-1302",
    /// The context exists already.
    ContextExists = "AXONIQ-1304",
    /// The replication group exists already.
    ReplicationGroupExists = "AXONIQ-1305",
    /// A bounded queue is full.
    TooManyRequests = "AXONIQ-1900",
    /// An aggregate's sequence numbers do not continue the stored ones.
    InvalidSequence = "AXONIQ-2000",
    /// A transaction over the size limit.
    PayloadTooLarge = "AXONIQ-2001",
    /// A transaction over the event count limit.
    TooManyEvents = "AXONIQ-2002",
    /// The group has no leader (or cannot take writes now).
    NoLeaderAvailable = "AXONIQ-2100",
    /// The node runs standalone.
    ClusterNotAllowed = "AXONIQ-2301",
    /// `_admin` cannot be deleted.
    CannotDeleteInternalContext = "AXONIQ-2304",
    /// The node is already a member of a cluster.
    AlreadyMemberOfCluster = "AXONIQ-2306",
    /// The node is not a member of the cluster (not founded yet).
    NotAMember = "AXONIQ-2307",
    /// A bad name or a malformed request.
    InvalidContextName = "AXONIQ-2308",
    /// The nodes chosen for a group or context are not acceptable.
    SelectNodesForContext = "AXONIQ-2309",
    /// A property with a value out of range.
    InvalidPropertyValue = "AXONIQ-2311",
    /// No client runs an event processor by that name.
    EventProcessorNotFound = "AXONIQ-2800",
    /// No handler subscribed to the command.
    NoHandlerForCommand = "AXONIQ-4000",
    /// The handler the command was sent to went away.
    ConnectionToHandlerLost = "AXONIQ-4001",
    /// The command was not answered in time.
    CommandTimeout = "AXONIQ-4002",
    /// A command with the same id is in flight.
    CommandDuplicated = "AXONIQ-4005",
    /// No handler subscribed to the query.
    NoHandlerForQuery = "AXONIQ-5000",
    /// A query could not reach a handler, or its handler went away.
    QueryDispatchError = "AXONIQ-5002",
    /// The query did not complete in time.
    QueryTimeout = "AXONIQ-5006",
    /// A query with the same id is in flight.
    QueryDuplicated = "AXONIQ-5007",
    /// No event store for the context.
    NoEventStore = "AXONIQ-6000",
    /// The client went away.
    ClientDisconnected = "AXONIQ-6001",
    /// Reading a data file failed (or a retired segment's tier is down).
    DatafileReadError = "AXONIQ-9000",
    /// Writing a data file failed (the disk reserve, a full disk).
    DatafileWriteError = "AXONIQ-9100",
    /// Not confirmed in time (it may still be stored).
    ReplicationTimeout = "AXONIQ-10003",
}

impl ErrorCode {
    /// The code `text` names, if Ranvier knows it.
    pub fn from_code(text: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_reads_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(*code));
            assert!(code.as_str().starts_with("AXONIQ-"), "{code}");
        }
        let mut all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_code("AXONIQ-4711"), None);
    }
}
