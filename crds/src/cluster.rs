//! `RanvierCluster`: a Ranvier cluster's nodes, grouped in node sets (one
//! StatefulSet each), and what every node shares: image, ports, the
//! internal token, access control, extra `axonserver.properties` entries
//! and the contexts created when the cluster forms.
//!
//! A cluster with no `ReplicationGroup` is a working cluster: its `default`
//! context (and the initial `contexts`) is served by every node as PRIMARY.
//! The first pod of the first node set founds it (autocluster); the others
//! join.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretKeyRef;

/// The desired state of a Ranvier cluster.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ranvier.io",
    version = "v1alpha1",
    kind = "RanvierCluster",
    namespaced,
    status = "RanvierClusterStatus",
    shortname = "rvc",
    category = "ranvier",
    derive = "PartialEq",
    doc = "A Ranvier cluster: event store and message router nodes run as StatefulSets, one per node set.",
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.nodes", description = "nodes asked for"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes", description = "nodes ready"),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RanvierClusterSpec {
    /// The container image of the nodes (it runs `ranvier`).
    pub image: String,
    /// When the kubelet pulls the image: Always, IfNotPresent or Never.
    /// Default: IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The nodes, in sets of alike nodes (each a StatefulSet). The first
    /// pod of the first set founds the cluster.
    #[x_kube(validation = Rule::new("size(self) >= 1").message("a cluster needs at least one node set"))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, a.name == b.name))").message("node set names must be unique")
    )]
    pub node_sets: Vec<NodeSet>,
    /// The ports every node listens on.
    #[serde(default)]
    pub ports: Ports,
    /// The Secret key holding the token every node-to-node call carries
    /// (`axoniq.axonserver.accesscontrol.internal-token`). When absent, the
    /// operator generates a Secret `<cluster>-internal-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_token: Option<SecretKeyRef>,
    /// Access control (`axoniq.axonserver.accesscontrol.enabled`): every
    /// client and REST call must carry a token. When present, the nodes take
    /// their static tokens from a Secret with the keys `token` (for
    /// applications) and `admin-token` (for administrators; the operator
    /// uses it for its own admin calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_control: Option<AccessControl>,
    /// Extra `axonserver.properties` entries for every node (key to value),
    /// passed through as they are. The operator sets the node's names,
    /// ports, storage paths, autocluster and internal token itself: those
    /// keys are refused here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Contexts created with the cluster besides `default`, each in a
    /// replication group of its own with every node as PRIMARY
    /// (`axoniq.axonserver.autocluster.contexts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
    /// How the cluster's data begins: empty, or restored from a backup.
    /// Read only when the cluster is first made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
}

/// How a new cluster's data begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    /// Restore a backup (made by a Backup or BackupSchedule) onto the node
    /// that founds the cluster before any node starts; the other nodes
    /// catch up from it as they join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// The backup a new cluster starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromBackup {
    /// The PersistentVolumeClaim (in the same namespace) holding backups.
    pub volume_claim: String,
    /// The backup's folder in it (`backup-<milliseconds>`). Default: the
    /// newest complete backup in the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// Access control of the cluster's client and REST calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessControl {
    /// The Secret holding the keys `token` and `admin-token`. When absent,
    /// the operator generates a Secret `<cluster>-access-tokens` with random
    /// tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
}

/// When the kubelet pulls an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// On every pod start.
    Always,
    /// Only when the node does not have it.
    IfNotPresent,
    /// Never: the image must be on the node.
    Never,
}

/// A set of alike nodes: one StatefulSet whose pods are the nodes
/// `<cluster>-<set>-0`, `-1`, ….
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSet {
    /// The set's name: part of every pod's name (a DNS label).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 30")
        .message("a lower-case DNS label of at most 30 characters"))]
    pub name: String,
    /// How many nodes. Default: 3.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// The volume of the event and snapshot segments.
    pub events_storage: Storage,
    /// The volume of the replication logs. Default: 1Gi, the cluster's
    /// default storage class.
    #[serde(default = "default_log_storage")]
    pub log_storage: Storage,
    /// CPU and memory of each node's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Labels a Kubernetes node must have to run these nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints these nodes tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling constraints; when absent, pods of the set prefer
    /// different Kubernetes nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// A persistent volume of every node of a set.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// The volume's size, as a Kubernetes quantity (`10Gi`).
    pub size: String,
    /// The storage class; the cluster's default when absent. It cannot be
    /// changed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("the storage class cannot be changed"))]
    pub storage_class: Option<String>,
}

/// The ports of every node (Axon Server's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// Client gRPC (the Axon protocol). Default 8124.
    #[serde(default = "default_client_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub client: i32,
    /// HTTP: health, readiness, metrics, admin API. Default 8024.
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
    /// Node-to-node gRPC. Default 8224.
    #[serde(default = "default_internal_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub internal: i32,
}

impl Default for Ports {
    fn default() -> Self {
        Ports { client: default_client_port(), http: default_http_port(), internal: default_internal_port() }
    }
}

/// What the operator last saw of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RanvierClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Progressing and Degraded, with reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Nodes the spec asks for.
    #[serde(default)]
    pub nodes: i32,
    /// Nodes that report ready (members of the cluster with their groups
    /// up).
    #[serde(default)]
    pub ready_nodes: i32,
}

fn default_replicas() -> i32 {
    3
}

fn default_log_storage() -> Storage {
    Storage { size: "1Gi".to_owned(), storage_class: None }
}

fn default_client_port() -> i32 {
    8124
}

fn default_http_port() -> i32 {
    8024
}

fn default_internal_port() -> i32 {
    8224
}
