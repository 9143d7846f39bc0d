//! The roles a node can have in a replication group (Axon Server's five),
//! their names and numbers as Axon spells them, and what each means for a
//! member: whether it stores events, votes, may lead, serves clients; and
//! Axon's quorum rule over them (`quorum_holds`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node's role in one replication group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Stores events, votes, can lead, serves clients.
    #[default]
    Primary,
    /// Stores events and votes, never leads; commits also need
    /// `min-active-backups` of them.
    ActiveBackup,
    /// Stores events on a best-effort basis; never votes or blocks a commit.
    PassiveBackup,
    /// Stores the whole history (primaries may then keep only recent
    /// segments); never votes or blocks a commit.
    Secondary,
    /// No event store and no Raft membership; serves clients by forwarding.
    MessagingOnly,
}

impl Role {
    /// Every role, in Axon's numbering order.
    pub const ALL: [Role; 5] =
        [Role::Primary, Role::ActiveBackup, Role::PassiveBackup, Role::MessagingOnly, Role::Secondary];

    /// The role's name as Axon Server spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "PRIMARY",
            Role::ActiveBackup => "ACTIVE_BACKUP",
            Role::PassiveBackup => "PASSIVE_BACKUP",
            Role::Secondary => "SECONDARY",
            Role::MessagingOnly => "MESSAGING_ONLY",
        }
    }

    /// The role's number in Axon's protos (raft.proto `Role`).
    pub fn number(self) -> i32 {
        match self {
            Role::Primary => 0,
            Role::ActiveBackup => 2,
            Role::PassiveBackup => 3,
            Role::MessagingOnly => 4,
            Role::Secondary => 5,
        }
    }

    /// Keeps an event store for the group's contexts.
    pub fn stores_events(self) -> bool {
        self != Role::MessagingOnly
    }

    /// Counts in elections and commits.
    pub fn votes(self) -> bool {
        matches!(self, Role::Primary | Role::ActiveBackup)
    }

    /// May become the group's leader.
    pub fn may_lead(self) -> bool {
        self == Role::Primary
    }

    /// Clients may connect to it for the group's contexts.
    pub fn serves_clients(self) -> bool {
        matches!(self, Role::Primary | Role::MessagingOnly)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one of the five (Axon's AXONIQ-2510).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected PRIMARY, ACTIVE_BACKUP, PASSIVE_BACKUP, SECONDARY or MESSAGING_ONLY")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Accepts Axon's names in any case, with or without admin.proto's
    /// `ROLE_` prefix.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("ROLE_").unwrap_or(&upper);
        Role::ALL.into_iter().find(|role| role.name() == name).ok_or_else(|| UnknownRole(text.to_owned()))
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
    fn role_table_matches_the_documented_semantics() {
        // (role, stores, votes, may lead, serves clients)
        let table = [
            (Primary, true, true, true, true),
            (ActiveBackup, true, true, false, false),
            (PassiveBackup, true, false, false, false),
            (Secondary, true, false, false, false),
            (MessagingOnly, false, false, false, true),
        ];
        for (role, stores, votes, leads, serves) in table {
            assert_eq!(role.stores_events(), stores, "{role} stores");
            assert_eq!(role.votes(), votes, "{role} votes");
            assert_eq!(role.may_lead(), leads, "{role} leads");
            assert_eq!(role.serves_clients(), serves, "{role} serves clients");
        }
    }

    #[test]
    fn names_and_numbers_are_axons() {
        let numbers: Vec<i32> = Role::ALL.iter().map(|r| r.number()).collect();
        assert_eq!(numbers, vec![0, 2, 3, 4, 5]);
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
            assert_eq!(format!("role_{}", role.name().to_lowercase()).parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).ok(), Some(format!("\"{}\"", role.name())));
        }
        let unknown = "LEADER".parse::<Role>().unwrap_err();
        assert!(unknown.to_string().contains("LEADER"));
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
