//! The roles a node can have in a replication group (`Role`, with what it
//! means for a member and Axon's quorum rule, lives in `ranvier-wire`), and
//! the node-side decision of which Raft shape each role takes.
//!
//! The reconciler (`cluster::reconcile`) turns roles into Raft membership
//! with [`RaftOf::raft_shape`]; the leader applies the active-backup part of
//! the commit rule before it confirms a write (`cluster` module docs).

pub use ranvier_wire::{Role, UnknownRole};

/// How a role takes part in Raft: voter, learner or not a member (the
/// same three places the group status reports).
pub use ranvier_wire::admin::RaftMembership as RaftShape;

/// A role's place in its group's Raft (node-side: the operator and
/// `ranvierctl` never need it).
pub trait RaftOf {
    /// Only primaries vote: Axon's active backups grant every vote
    /// unconditionally, so Ranvier keeps them as learners and enforces
    /// `min-active-backups` at the leader instead.
    fn raft_shape(self) -> RaftShape;
}

impl RaftOf for Role {
    fn raft_shape(self) -> RaftShape {
        match self {
            Role::Primary => RaftShape::Voter,
            Role::ActiveBackup | Role::PassiveBackup | Role::Secondary => RaftShape::Learner,
            Role::MessagingOnly => RaftShape::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn only_primaries_vote_in_raft_and_messaging_only_nodes_are_not_members() {
        let table = [
            (Primary, RaftShape::Voter),
            (ActiveBackup, RaftShape::Learner),
            (PassiveBackup, RaftShape::Learner),
            (Secondary, RaftShape::Learner),
            (MessagingOnly, RaftShape::None),
        ];
        for (role, shape) in table {
            assert_eq!(role.raft_shape(), shape, "{role} raft shape");
        }
    }
}
