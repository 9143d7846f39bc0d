//! Object metadata: name, namespace, the operator's labels and the owner
//! reference to the RanvierCluster, or to the Backup or BackupSchedule a
//! run belongs to (absent when rendering a manifest that was never stored,
//! which has no uid).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::names;
use crate::validate::ValidCluster;

/// Metadata of an object named `name` that belongs to `cluster`.
pub fn owned(cluster: &ValidCluster, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    owned_by(cluster, name, labels, cluster.resource.controller_owner_ref(&()))
}

/// Metadata of an object named `name` in `cluster`'s namespace that
/// belongs to `owner` (a Backup's Job outlives the cluster it backs up).
pub fn owned_by(
    cluster: &ValidCluster,
    name: String,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels),
        owner_references: owner.map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Metadata of a cluster-wide object of `cluster` (its labels only).
pub fn of_cluster(cluster: &ValidCluster, name: String) -> ObjectMeta {
    owned(cluster, name, names::cluster_labels(&cluster.name))
}
