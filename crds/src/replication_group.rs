//! `ReplicationGroup`: a replication group of a `RanvierCluster`, its
//! contexts and its members with their roles. Editing a member's `role`
//! changes it in place on the running cluster; the status is read back
//! from the cluster, not copied from the spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use ranvier_wire::Role;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a replication group.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ranvier.io",
    version = "v1alpha1",
    kind = "ReplicationGroup",
    namespaced,
    status = "ReplicationGroupStatus",
    shortname = "rvg",
    category = "ranvier",
    derive = "PartialEq",
    doc = "A replication group of a RanvierCluster: its contexts and its members with their roles.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationGroupSpec {
    /// The RanvierCluster (in the same namespace) the group belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("a group cannot move to another cluster"))]
    pub cluster: String,
    /// The contexts the group stores. Default: one context named like the
    /// group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
    /// Active backups that must hold a write before it is confirmed, for
    /// this group alone. Unset: each leader applies its node's
    /// `axoniq.axonserver.replication.min-active-backups` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_active_backups: Option<i32>,
    /// The members with their roles: a whole node set, or one node by its
    /// pod name. A node named on its own takes that role over its set's.
    #[x_kube(validation = Rule::new("self.exists(m, m.role == 'PRIMARY')").message("a group needs a PRIMARY member"))]
    pub members: Vec<Member>,
}

/// Nodes of the group and their role.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.nodeSet) != has(self.node)").message("name either a nodeSet or a node"))]
pub struct Member {
    /// Every node of this node set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_set: Option<String>,
    /// One node, by its pod name (`<cluster>-<set>-<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// PRIMARY, ACTIVE_BACKUP, PASSIVE_BACKUP, SECONDARY or MESSAGING_ONLY.
    pub role: Role,
}

/// What the operator last read of the group from the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationGroupStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Progressing and Degraded, with reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The group's leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Each member as the cluster has it.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Changes still to make, in order (for example "node-2: PRIMARY →
    /// PASSIVE_BACKUP").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Why the last change asked for was refused, while it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One member as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The node's name (its pod name).
    pub node: String,
    /// Its current role.
    pub role: Role,
    /// The role the spec asks for, while it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_role: Option<Role>,
    /// Log entries it is behind the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}
