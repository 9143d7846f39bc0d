//! From desired members and roles to an ordered list of admin API calls,
//! one membership change at a time, refusing any plan that would leave the
//! group without a PRIMARY or, at any step, without a majority of its
//! PRIMARY members reachable.
//!
//! Order: new members join first (so a promotion never waits on a node
//! that is not there), then role changes — promotions to PRIMARY before
//! demotions from it (the primaries' majority grows before it shrinks) —
//! then removals, then the group's own min-active-backups. A member counts
//! as reachable when the group's leader reports it caught up and answering
//! recently (or it leads).

use std::collections::{BTreeMap, BTreeSet};

use ranvier_crds::ReplicationGroupSpec;
use ranvier_wire::admin::GroupStatus;
use ranvier_wire::{Role, quorum_holds};

use crate::names;

/// Entries a member may be behind its leader and still count as caught
/// up (reachable) for the quorum rule.
pub const CAUGHT_UP_LAG_MAX: u64 = 1_000;
/// Longest time since a member's last acknowledgement for it to count as
/// reachable (a few heartbeats and an election timeout).
pub const REACHABLE_ACK_MS_MAX: u64 = 3_000;

/// One admin API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// register-replication-group with its first members.
    CreateGroup {
        /// Members and roles.
        members: BTreeMap<String, Role>,
    },
    /// register-context in the group.
    CreateContext(String),
    /// add-node-to-replication-group: adds the node, or changes its role.
    SetRole {
        /// The node.
        node: String,
        /// Its role after the call.
        role: Role,
    },
    /// delete-node-from-replication-group (keeping nothing).
    Remove(String),
    /// The group's own min-active-backups (`None`: its leader's).
    SetMinActiveBackups(Option<u32>),
}

/// Why a plan is refused: nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The spec names no PRIMARY (or only nodes that do not exist).
    #[error("the group would have no PRIMARY member")]
    NoPrimary,
    /// A step would leave fewer than a majority of primaries reachable.
    #[error("{step} would leave {reachable} of {primaries} PRIMARY members reachable, not a majority")]
    NoMajority {
        /// The call that would do it.
        step: String,
        /// Reachable primaries after it.
        reachable: usize,
        /// Primaries after it.
        primaries: usize,
    },
    /// A member names a node set the cluster does not have.
    #[error("node set {0} is not in the cluster")]
    UnknownNodeSet(String),
    /// A member names both a node set and a node, or neither (the CRD's
    /// rule, which API servers before 1.25 do not check).
    #[error("member {0} must name either a nodeSet or a node")]
    AmbiguousMember(usize),
}

impl Refused {
    /// Whether the spec itself is wrong (rather than the change unsafe
    /// for the group as it stands).
    pub fn is_invalid_spec(&self) -> bool {
        matches!(self, Refused::UnknownNodeSet(_) | Refused::AmbiguousMember(_))
    }
}

/// The members the spec asks for, by node name: a node set stands for its
/// pods (`replicas` of them); a node named on its own takes its role over
/// its set's. `sets` maps each of the cluster's node sets to its replicas.
pub fn desired_members(
    cluster: &str,
    spec: &ReplicationGroupSpec,
    sets: &BTreeMap<String, i32>,
) -> Result<BTreeMap<String, Role>, Refused> {
    if let Some(index) = spec.members.iter().position(|m| m.node.is_some() == m.node_set.is_some()) {
        return Err(Refused::AmbiguousMember(index));
    }
    let mut members = BTreeMap::new();
    for member in spec.members.iter().filter(|m| m.node.is_none()) {
        let Some(set) = &member.node_set else { continue };
        let replicas = *sets.get(set).ok_or_else(|| Refused::UnknownNodeSet(set.clone()))?;
        for ordinal in 0..replicas {
            members.insert(names::pod(cluster, set, ordinal), member.role);
        }
    }
    for member in &spec.members {
        if let Some(node) = &member.node {
            members.insert(node.clone(), member.role);
        }
    }
    Ok(members)
}

/// The nodes of `status` that count as reachable: its leader, and members
/// the leader reports caught up and answering.
pub fn reachable(status: &GroupStatus) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = status
        .members
        .iter()
        .filter(|m| m.lag.is_some_and(|lag| lag <= CAUGHT_UP_LAG_MAX))
        .filter(|m| m.last_ack_ms.is_some_and(|ms| ms <= REACHABLE_ACK_MS_MAX))
        .map(|m| m.node.clone())
        .collect();
    out.extend(status.leader.clone());
    out
}

/// What the spec asks of a group: its members with their roles, its
/// contexts, and its own min-active-backups (`None`: its leader's).
pub struct Desired<'a> {
    /// Node → role.
    pub members: &'a BTreeMap<String, Role>,
    /// The contexts it stores.
    pub contexts: &'a [String],
    /// Active backups that must hold a write.
    pub min_active_backups: Option<u32>,
}

/// The calls that move the group from `actual` (its status, `None` when
/// it does not exist yet) to `desired`, or why they must not be made.
/// `reachable` are the nodes that count for the quorum rule (for a new
/// group: the nodes whose pods are ready).
pub fn plan(
    actual: Option<&GroupStatus>,
    desired: &Desired<'_>,
    reachable: &BTreeSet<String>,
) -> Result<Vec<Call>, Refused> {
    let Desired { members: desired, contexts, min_active_backups } = *desired;
    if !desired.values().any(|role| *role == Role::Primary) {
        return Err(Refused::NoPrimary);
    }
    let setting = Call::SetMinActiveBackups(min_active_backups);
    let Some(actual) = actual else {
        let mut calls = vec![Call::CreateGroup { members: desired.clone() }];
        calls.extend(contexts.iter().map(|c| Call::CreateContext(c.clone())));
        calls.extend(min_active_backups.is_some().then_some(setting));
        return Ok(calls);
    };
    let mut current: BTreeMap<String, Role> = actual.roles.iter().map(|m| (m.node.clone(), m.role)).collect();
    let mut calls = Vec::new();
    let joins = desired.iter().filter(|(node, _)| !current.contains_key(*node));
    let promotions =
        desired.iter().filter(|(node, role)| **role == Role::Primary && current.get(*node).is_some_and(|r| r != *role));
    let others =
        desired.iter().filter(|(node, role)| **role != Role::Primary && current.get(*node).is_some_and(|r| r != *role));
    let steps: Vec<Call> = joins
        .chain(promotions)
        .chain(others)
        .map(|(node, role)| Call::SetRole { node: node.clone(), role: *role })
        .chain(current.keys().filter(|node| !desired.contains_key(*node)).map(|node| Call::Remove(node.clone())))
        .collect();
    for step in steps {
        match &step {
            Call::SetRole { node, role } => current.insert(node.clone(), *role),
            Call::Remove(node) => current.remove(node),
            Call::CreateGroup { .. } | Call::CreateContext(_) | Call::SetMinActiveBackups(_) => None,
        };
        check_majority(&current, reachable, &step)?;
        calls.push(step);
    }
    for context in contexts.iter().filter(|c| !actual.contexts.contains(c)) {
        calls.push(Call::CreateContext(context.clone()));
    }
    if actual.min_active_backups != min_active_backups {
        calls.push(setting);
    }
    Ok(calls)
}

/// Axon's quorum rule on the primaries (`quorum_holds`; active backups
/// are not the planner's to judge, so none are required).
fn check_majority(members: &BTreeMap<String, Role>, reachable: &BTreeSet<String>, step: &Call) -> Result<(), Refused> {
    let held: Vec<(Role, bool)> = members.iter().map(|(node, role)| (*role, reachable.contains(node))).collect();
    let primaries = held.iter().filter(|(role, _)| *role == Role::Primary).count();
    if primaries == 0 {
        return Err(Refused::NoPrimary);
    }
    if !quorum_holds(&held, 0) {
        let up = held.iter().filter(|(role, up)| *role == Role::Primary && *up).count();
        return Err(Refused::NoMajority { step: describe(step), reachable: up, primaries });
    }
    Ok(())
}

/// A call as a person reads it ("making demo-node-2 PASSIVE_BACKUP").
pub fn describe(step: &Call) -> String {
    match step {
        Call::SetRole { node, role } => format!("making {node} {role}"),
        Call::Remove(node) => format!("removing {node}"),
        Call::CreateGroup { .. } => "creating the group".to_owned(),
        Call::CreateContext(context) => format!("creating context {context}"),
        Call::SetMinActiveBackups(Some(n)) => format!("requiring {n} active backup(s) to hold each write"),
        Call::SetMinActiveBackups(None) => "letting the leader's min-active-backups apply".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;
    use ranvier_wire::admin::{MemberRole, MemberStatus};

    fn status(members: &[(&str, Role, Option<u64>)], leader: &str) -> GroupStatus {
        GroupStatus {
            name: "orders".into(),
            leader: Some(leader.into()),
            hosted: true,
            term: Some(1),
            last_log_index: Some(10),
            applied_index: Some(10),
            roles: members.iter().map(|(n, r, _)| MemberRole { node: (*n).into(), role: *r }).collect(),
            members: members
                .iter()
                .map(|(n, r, lag)| MemberStatus {
                    node: (*n).into(),
                    role: *r,
                    raft: None,
                    match_index: None,
                    lag: *lag,
                    last_ack_ms: lag.map(|_| 50),
                    below_disk_reserve: None,
                })
                .collect(),
            contexts: vec!["orders".into()],
            min_active_backups: None,
            leader_silent_ms: Some(20),
        }
    }

    fn roles(members: &[(&str, Role)]) -> BTreeMap<String, Role> {
        members.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect()
    }

    fn json_member(text: &str) -> ranvier_crds::replication_group::Member {
        serde_json::from_str(text).unwrap()
    }

    fn set_role(node: &str, role: Role) -> Call {
        Call::SetRole { node: node.into(), role }
    }

    #[test]
    fn role_change_plans() {
        let healthy = status(&[("n0", Primary, Some(0)), ("n1", Primary, Some(0)), ("n2", Primary, Some(3))], "n0");
        let n2_down = status(&[("n0", Primary, Some(0)), ("n1", Primary, Some(0)), ("n2", Primary, None)], "n0");
        let with_backup =
            status(&[("n0", Primary, Some(0)), ("n1", Primary, Some(0)), ("n2", PassiveBackup, Some(0))], "n0");
        let all = roles(&[("n0", Primary), ("n1", Primary), ("n2", Primary)]);
        // (case, actual, desired, expected calls or the refusal's words)
        type Expected = Result<Vec<Call>, &'static str>;
        let cases: Vec<(&str, &GroupStatus, BTreeMap<String, Role>, Expected)> = vec![
            ("nothing to do", &healthy, all.clone(), Ok(vec![])),
            (
                "demote one of three in place",
                &healthy,
                roles(&[("n0", Primary), ("n1", Primary), ("n2", PassiveBackup)]),
                Ok(vec![set_role("n2", PassiveBackup)]),
            ),
            ("promote it back", &with_backup, all.clone(), Ok(vec![set_role("n2", Primary)])),
            (
                "promotions before demotions",
                &with_backup,
                roles(&[("n0", Secondary), ("n1", Primary), ("n2", Primary)]),
                Ok(vec![set_role("n2", Primary), set_role("n0", Secondary)]),
            ),
            (
                "joins first, removals last",
                &healthy,
                roles(&[("n0", Primary), ("n1", Primary), ("n3", Primary)]),
                Ok(vec![set_role("n3", Primary), Call::Remove("n2".into())]),
            ),
            (
                "demoting a reachable primary while another is down",
                &n2_down,
                roles(&[("n0", Primary), ("n1", PassiveBackup), ("n2", Primary)]),
                Err("1 of 2 PRIMARY members reachable"),
            ),
            ("no primary at all", &healthy, roles(&[("n0", Secondary), ("n1", MessagingOnly)]), Err("no PRIMARY")),
            (
                "demoting the down one is safe",
                &n2_down,
                roles(&[("n0", Primary), ("n1", Primary), ("n2", PassiveBackup)]),
                Ok(vec![set_role("n2", PassiveBackup)]),
            ),
        ];
        for (case, actual, desired, expected) in cases {
            let wanted = Desired { members: &desired, contexts: &["orders".into()], min_active_backups: None };
            let result = plan(Some(actual), &wanted, &reachable(actual));
            match (result, expected) {
                (Ok(calls), Ok(expected)) => assert_eq!(calls, expected, "{case}"),
                (Err(refused), Err(words)) => assert!(refused.to_string().contains(words), "{case}: {refused}"),
                (result, expected) => panic!("{case}: got {result:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_new_group_is_created_with_its_members_then_its_contexts() {
        let desired = roles(&[("n0", Primary), ("n1", ActiveBackup)]);
        let contexts = ["orders".into(), "billing".into()];
        let calls =
            plan(None, &Desired { members: &desired, contexts: &contexts, min_active_backups: None }, &BTreeSet::new())
                .unwrap();
        assert_eq!(
            calls,
            vec![
                Call::CreateGroup { members: desired.clone() },
                Call::CreateContext("orders".into()),
                Call::CreateContext("billing".into())
            ]
        );
        // A group that sets its own min-active-backups gets it once it exists.
        let wanted = Desired { members: &desired, contexts: &contexts, min_active_backups: Some(1) };
        let calls = plan(None, &wanted, &BTreeSet::new()).unwrap();
        assert_eq!(calls.last(), Some(&Call::SetMinActiveBackups(Some(1))));
        assert_eq!(calls.len(), 4);
    }

    #[test]
    fn min_active_backups_follows_the_spec_after_the_members() {
        let healthy = status(&[("n0", Primary, Some(0)), ("n1", Primary, Some(0)), ("n2", Primary, Some(0))], "n0");
        let with_backup = roles(&[("n0", Primary), ("n1", Primary), ("n2", ActiveBackup)]);
        let contexts = ["orders".into()];
        let wanted = |min_active_backups| Desired { members: &with_backup, contexts: &contexts, min_active_backups };
        let calls = plan(Some(&healthy), &wanted(Some(1)), &reachable(&healthy)).unwrap();
        assert_eq!(calls, vec![set_role("n2", ActiveBackup), Call::SetMinActiveBackups(Some(1))]);
        // Set already: nothing to do; set but no longer asked for: cleared.
        let mut settled =
            status(&[("n0", Primary, Some(0)), ("n1", Primary, Some(0)), ("n2", ActiveBackup, Some(0))], "n0");
        settled.min_active_backups = Some(1);
        assert_eq!(plan(Some(&settled), &wanted(Some(1)), &reachable(&settled)).unwrap(), vec![]);
        assert_eq!(
            plan(Some(&settled), &wanted(None), &reachable(&settled)).unwrap(),
            vec![Call::SetMinActiveBackups(None)]
        );
        assert_eq!(
            plan(Some(&settled), &wanted(Some(2)), &reachable(&settled)).unwrap(),
            vec![Call::SetMinActiveBackups(Some(2))]
        );
    }

    #[test]
    fn node_sets_stand_for_their_pods_and_a_named_node_overrides_its_set() {
        let spec: ReplicationGroupSpec = serde_json::from_value(serde_json::json!({
            "cluster": "demo",
            "members": [
                {"nodeSet": "node", "role": "PRIMARY"},
                {"node": "demo-node-2", "role": "PASSIVE_BACKUP"},
                {"nodeSet": "edge", "role": "MESSAGING_ONLY"}
            ]
        }))
        .unwrap();
        let sets = BTreeMap::from([("node".to_owned(), 3), ("edge".to_owned(), 1)]);
        let members = desired_members("demo", &spec, &sets).unwrap();
        assert_eq!(
            members,
            roles(&[
                ("demo-edge-0", MessagingOnly),
                ("demo-node-0", Primary),
                ("demo-node-1", Primary),
                ("demo-node-2", PassiveBackup)
            ])
        );
        let unknown = desired_members("demo", &spec, &BTreeMap::from([("node".to_owned(), 3)]));
        assert_eq!(unknown, Err(Refused::UnknownNodeSet("edge".into())));
        for member in [
            json_member(r#"{"role": "PRIMARY"}"#),
            json_member(r#"{"nodeSet": "node", "node": "demo-node-1", "role": "PRIMARY"}"#),
        ] {
            let mut ambiguous = spec.clone();
            ambiguous.members.insert(1, member);
            let refused = desired_members("demo", &ambiguous, &sets).unwrap_err();
            assert_eq!(refused, Refused::AmbiguousMember(1));
            assert!(refused.is_invalid_spec() && !Refused::NoPrimary.is_invalid_spec());
        }
    }

    #[test]
    fn members_far_behind_silent_or_unknown_do_not_count_as_reachable() {
        let mut group = status(
            &[("n0", Primary, Some(0)), ("n1", Primary, Some(5_000)), ("n2", Primary, None), ("n3", Primary, Some(0))],
            "n0",
        );
        // n3 is caught up but has not answered for 10 s (it stopped).
        group.members[3].last_ack_ms = Some(10_000);
        assert_eq!(reachable(&group), BTreeSet::from(["n0".to_owned()]));
        group.members[3].last_ack_ms = Some(200);
        assert_eq!(reachable(&group), BTreeSet::from(["n0".to_owned(), "n3".to_owned()]));
    }
}
