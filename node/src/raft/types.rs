//! The openraft type configuration of Ranvier's replication groups: what a
//! log entry carries ([`GroupCommand`]), what applying one answers
//! ([`GroupResponse`]) and how a member is addressed ([`MemberNode`]).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cluster::model::AdminCommand;

openraft::declare_raft_types!(
    /// Type configuration of every replication group.
    pub TypeConfig:
        D = GroupCommand,
        R = GroupResponse,
        NodeId = u64,
        Node = MemberNode,
        // One leader per term, as in the Raft paper and Axon Server.
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// The id of a log entry (term and index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// Group membership.
pub type Membership = openraft::Membership<u64, MemberNode>;

/// What a replication group's log carries besides membership changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// One client transaction for a context's event store: all its events
    /// are applied atomically, or none (sequence conflict).
    AppendEvents {
        /// The context.
        context: String,
        /// The encoded `Event`s.
        events: Vec<Bytes>,
    },
    /// One snapshot for a context's snapshot store.
    AppendSnapshot {
        /// The context.
        context: String,
        /// The encoded `Event` holding the snapshot.
        snapshot: Bytes,
    },
    /// A change to the cluster model (only in the `_admin` group).
    Admin(AdminCommand),
    /// Client transactions (`AppendEvents`, `AppendSnapshot`) that a
    /// leader proposed together as one entry: each is validated, applied
    /// and answered on its own, in order (see `cluster::batch`).
    Batch(Vec<GroupCommand>),
}

impl fmt::Display for GroupCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupCommand::AppendEvents { context, events } => write!(f, "append {} events to {context}", events.len()),
            GroupCommand::AppendSnapshot { context, .. } => write!(f, "append a snapshot to {context}"),
            GroupCommand::Admin(command) => write!(f, "{command}"),
            GroupCommand::Batch(commands) => write!(f, "a batch of {} transactions", commands.len()),
        }
    }
}

/// The outcome of applying a [`GroupCommand`], the same on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupResponse {
    /// An entry with nothing to store (blank, membership) was applied.
    Applied,
    /// Stored; the token of the first event.
    Appended {
        /// First token of the transaction.
        first_token: u64,
    },
    /// The answers to a [`GroupCommand::Batch`], one per transaction.
    Batch(Vec<GroupResponse>),
    /// Refused deterministically (e.g. a sequence conflict): nothing stored.
    Refused {
        /// The Axon error code (`AXONIQ-2000`, …).
        code: String,
        /// The message for the client.
        message: String,
    },
}

/// How the members of a group reach each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// The node's name.
    pub name: String,
    /// `host:port` of its internal gRPC endpoint.
    pub internal_addr: String,
}
