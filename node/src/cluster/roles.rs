//! The roles a node can have in a replication group, and what each role
//! means, as pure decisions (no I/O): whether it stores events, votes, may
//! lead, serves clients, and which Raft shape it takes. Also the commit and
//! election rule of Axon Server's replication groups (a majority of primaries
//! plus `min-active-backups` active backups).
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

/// Whether enough members hold something (an entry, for a commit; a vote,
/// for an election) under Axon's rule: a strict majority of the primaries,
/// and — when the group has active backups — at least `min_active_backups`
/// of them (fewer backups than that make the group unavailable, as in Axon).
///
/// `members` pairs each member's role with whether it holds the thing.
pub fn quorum_holds(members: &[(Role, bool)], min_active_backups: usize) -> bool {
    let primaries = members.iter().filter(|(role, _)| *role == Role::Primary).count();
    let primaries_holding = members.iter().filter(|(role, holds)| *role == Role::Primary && *holds).count();
    let backups = members.iter().filter(|(role, _)| *role == Role::ActiveBackup).count();
    let backups_holding = members.iter().filter(|(role, holds)| *role == Role::ActiveBackup && *holds).count();
    let majority = primaries > 0 && primaries_holding > primaries / 2;
    let backups_ok = backups == 0 || backups_holding >= min_active_backups;
    majority && backups_ok
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

    #[test]
    fn quorum_needs_a_primary_majority_and_the_active_backups() {
        let p = |holds| (Primary, holds);
        let a = |holds| (ActiveBackup, holds);
        let passive = |holds| (PassiveBackup, holds);
        // Three primaries: two make a majority, one does not.
        assert!(quorum_holds(&[p(true), p(true), p(false)], 1));
        assert!(!quorum_holds(&[p(true), p(false), p(false)], 1));
        // Four primaries need three (a strict majority).
        assert!(!quorum_holds(&[p(true), p(true), p(false), p(false)], 1));
        assert!(quorum_holds(&[p(true), p(true), p(true), p(false)], 1));
        // With active backups, at least min-active-backups of them must hold.
        assert!(!quorum_holds(&[p(true), p(true), a(false), a(false)], 1));
        assert!(quorum_holds(&[p(true), p(true), a(true), a(false)], 1));
        assert!(!quorum_holds(&[p(true), p(true), a(true), a(false)], 2));
        // Fewer active backups than min-active-backups: no commit at all.
        assert!(!quorum_holds(&[p(true), a(true)], 3));
        // Passive backups never matter; a group without primaries has no quorum.
        assert!(quorum_holds(&[p(true), passive(false), passive(false)], 1));
        assert!(!quorum_holds(&[a(true), passive(true)], 1));
    }
}
