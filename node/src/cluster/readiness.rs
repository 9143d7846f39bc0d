//! Whether a clustered node is ready to serve, and when not, what it waits
//! for. Pure: it reads the cluster model and what this node's own groups
//! report, and is tested as a table.
//!
//! A node is ready once it is registered in an initialised cluster, `_admin`
//! has a leader it knows, and every group the model makes it a member of
//! (except as MESSAGING_ONLY, which forwards and hosts nothing) is open on
//! this node, with this node in the group's Raft membership in the shape its
//! role asks for (a PRIMARY is a voter, the other storing roles at least
//! learners) and a leader it knows. Before the cluster exists, "every group
//! has a leader" is true of no groups: that is not ready.

use std::collections::BTreeMap;

use super::model::{ADMIN, ClusterModel};
use super::roles::{RaftOf, RaftShape};

/// This node's own view of one group it hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGroup {
    /// The leader's name, when this node knows one.
    pub leader: Option<String>,
    /// This node's place in the group's Raft membership as it knows it.
    pub shape: RaftShape,
}

/// The verdict, with one entry per group that has to be up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `Err(reason)` while this node is not a registered member of an
    /// initialised cluster.
    pub cluster: Result<(), String>,
    /// Group → its leader, or why it is not up on this node.
    pub groups: BTreeMap<String, Result<String, String>>,
}

impl Readiness {
    /// Ready to serve: a member of the cluster with every group up.
    pub fn is_ready(&self) -> bool {
        self.cluster.is_ok() && self.groups.values().all(Result::is_ok)
    }
}

/// Assesses readiness of node `me`. `formation` says what forming or
/// joining the cluster is doing, when it is under way.
pub fn assess(
    model: &ClusterModel,
    me: &str,
    local: &BTreeMap<String, LocalGroup>,
    formation: Option<&str>,
) -> Readiness {
    let waiting = |reason: &str| match formation {
        Some(doing) => format!("{reason} ({doing})"),
        None => reason.to_owned(),
    };
    if !model.initialized() {
        let reason = waiting("not a member of a cluster yet: waiting for autocluster, init-cluster or register-node");
        return Readiness { cluster: Err(reason), groups: BTreeMap::new() };
    }
    if !model.nodes.contains_key(me) {
        let reason = waiting("not registered in the cluster yet");
        return Readiness { cluster: Err(reason), groups: BTreeMap::new() };
    }
    let mut groups = BTreeMap::new();
    groups.insert(ADMIN.to_owned(), group_state(local.get(ADMIN), RaftShape::Voter));
    for (name, info) in &model.groups {
        let Some(role) = info.members.get(me) else { continue };
        let wanted = role.raft_shape();
        if name == ADMIN || wanted == RaftShape::None {
            continue;
        }
        groups.insert(name.clone(), group_state(local.get(name), wanted));
    }
    Readiness { cluster: Ok(()), groups }
}

fn group_state(local: Option<&LocalGroup>, wanted: RaftShape) -> Result<String, String> {
    let Some(local) = local else {
        return Err("a member in the cluster model, but not open on this node yet".into());
    };
    let in_shape = match wanted {
        RaftShape::Voter => local.shape == RaftShape::Voter,
        RaftShape::Learner => local.shape != RaftShape::None,
        RaftShape::None => true,
    };
    if !in_shape {
        let shape = if wanted == RaftShape::Voter { "a voter" } else { "a member" };
        return Err(format!("waiting for the group's leader to make this node {shape} of its Raft membership"));
    }
    local.leader.clone().ok_or_else(|| "no leader known (forming, or cut off from the majority)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::{GroupInfo, NodeInfo};
    use crate::cluster::roles::Role;

    fn node(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            internal_addr: format!("{name}:8224"),
            host_name: name.into(),
            grpc_port: 8124,
            http_port: 8024,
        }
    }

    /// `_admin` and `default` with `members`, every member registered.
    fn model(members: &[(&str, Role)]) -> ClusterModel {
        let mut model = ClusterModel::default();
        let all: BTreeMap<String, Role> = members.iter().map(|(n, r)| ((*n).to_owned(), *r)).collect();
        let admin = all.keys().map(|n| (n.clone(), Role::Primary)).collect();
        model.groups.insert(ADMIN.into(), GroupInfo { members: admin, ..GroupInfo::default() });
        model.groups.insert("default".into(), GroupInfo { members: all, ..GroupInfo::default() });
        for (name, _) in members {
            model.nodes.insert((*name).to_owned(), node(name));
        }
        model
    }

    /// A hosted group: its name, the leader known, this node's Raft shape.
    type Hosted<'a> = (&'a str, Option<&'a str>, RaftShape);

    fn local(entries: &[Hosted<'_>]) -> BTreeMap<String, LocalGroup> {
        entries
            .iter()
            .map(|(g, leader, shape)| {
                ((*g).to_owned(), LocalGroup { leader: leader.map(str::to_owned), shape: *shape })
            })
            .collect()
    }

    #[test]
    fn readiness_table() {
        use RaftShape::{Learner, None as Out, Voter};
        let trio = model(&[("n1", Role::Primary), ("n2", Role::Primary), ("n3", Role::Primary)]);
        let with_backup = model(&[("n1", Role::Primary), ("n3", Role::PassiveBackup)]);
        let with_messaging = model(&[("n1", Role::Primary), ("n3", Role::MessagingOnly)]);
        let up = [("_admin", Some("n1"), Voter), ("default", Some("n1"), Voter)];
        // (case, model, local groups, ready, the reason that must be given)
        let cases: Vec<(&str, ClusterModel, Vec<Hosted<'_>>, bool, &str)> = vec![
            ("no cluster yet", ClusterModel::default(), vec![], false, "not a member of a cluster yet"),
            ("no cluster, _admin open", ClusterModel::default(), vec![up[0]], false, "not a member of a cluster"),
            ("cluster without this node", model(&[("n1", Role::Primary)]), vec![], false, "not registered"),
            ("all up", trio.clone(), up.to_vec(), true, ""),
            ("group not open", trio.clone(), vec![up[0]], false, "not open on this node"),
            ("no leader", trio.clone(), vec![up[0], ("default", None, Voter)], false, "no leader known"),
            ("_admin without leader", trio.clone(), vec![("_admin", None, Voter), up[1]], false, "no leader"),
            ("primary still a learner", trio.clone(), vec![up[0], ("default", Some("n1"), Learner)], false, "a voter"),
            ("not yet added", trio.clone(), vec![up[0], ("default", None, Out)], false, "of its Raft membership"),
            ("backup as learner", with_backup.clone(), vec![up[0], ("default", Some("n1"), Learner)], true, ""),
            ("backup not added", with_backup, vec![up[0], ("default", Some("n1"), Out)], false, "a member"),
            ("messaging only hosts nothing", with_messaging, vec![up[0]], true, ""),
        ];
        for (case, model, groups, ready, reason) in cases {
            let verdict = assess(&model, "n3", &local(&groups), None);
            assert_eq!(verdict.is_ready(), ready, "{case}: {verdict:?}");
            let reasons: Vec<String> = verdict
                .cluster
                .clone()
                .err()
                .into_iter()
                .chain(verdict.groups.values().filter_map(|g| g.as_ref().err().cloned()))
                .collect();
            assert_eq!(reasons.is_empty(), ready, "{case}: {reasons:?}");
            if !ready {
                assert!(reasons.iter().any(|r| r.contains(reason)), "{case}: {reasons:?} lacks {reason:?}");
            }
        }
    }

    #[test]
    fn formation_progress_is_named_while_waiting() {
        let verdict =
            assess(&ClusterModel::default(), "n3", &BTreeMap::new(), Some("joining through n1:8224: refused"));
        let reason = verdict.cluster.unwrap_err();
        assert!(reason.contains("joining through n1:8224: refused"), "{reason}");
    }
}
