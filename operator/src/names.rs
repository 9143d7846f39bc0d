//! The names and labels of everything the operator makes for a cluster,
//! in one place: object names derive from the cluster's and node set's
//! names, and every object carries the same label set so the operator
//! finds (and only finds) its own.

use std::collections::BTreeMap;

/// The field manager of every server-side apply, and `managed-by`.
pub const MANAGER: &str = "ranvier-operator";
/// The Kubernetes cluster domain pods' DNS names end with.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `app.kubernetes.io/name` of every object.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the RanvierCluster's name.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The node set a pod belongs to.
pub const LABEL_NODE_SET: &str = "ranvier.io/node-set";
/// The pod template annotation holding the hash of the rendered
/// configuration and the referenced Secret: a change rolls the pods.
pub const CONFIG_HASH: &str = "ranvier.io/config-hash";

/// The StatefulSet of a node set (and the prefix of its pods' names).
pub fn statefulset(cluster: &str, set: &str) -> String {
    format!("{cluster}-{set}")
}

/// The pod `ordinal` of a node set: also the node's name in the cluster.
pub fn pod(cluster: &str, set: &str, ordinal: i32) -> String {
    format!("{}-{ordinal}", statefulset(cluster, set))
}

/// The headless Service that gives every pod its DNS name.
pub fn headless_service(cluster: &str) -> String {
    format!("{cluster}-internal")
}

/// The client Service (gRPC and HTTP).
pub fn client_service(cluster: &str) -> String {
    cluster.to_owned()
}

/// The ConfigMap with `axonserver.properties`.
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The Secret the operator generates when the spec names none.
pub fn token_secret(cluster: &str) -> String {
    format!("{cluster}-internal-token")
}

/// The Secret with the access tokens the operator generates when the spec
/// names none.
pub fn access_tokens_secret(cluster: &str) -> String {
    format!("{cluster}-access-tokens")
}

/// The key of the applications' static token in the access tokens Secret.
pub const ACCESS_TOKEN_KEY: &str = "token";
/// The key of the administrators' token in the access tokens Secret.
pub const ADMIN_TOKEN_KEY: &str = "admin-token";

/// The label naming the cluster a backup or restore run works on.
pub const LABEL_CLUSTER: &str = "ranvier.io/cluster";
/// The label naming the Backup a Job runs.
pub const LABEL_BACKUP: &str = "ranvier.io/backup";
/// The label naming the BackupSchedule a CronJob and its Jobs run.
pub const LABEL_BACKUP_SCHEDULE: &str = "ranvier.io/backup-schedule";
/// The label naming the cluster a restore Job fills.
pub const LABEL_RESTORE: &str = "ranvier.io/restore";
/// The label the Job controller puts on a Job's pods.
pub const LABEL_JOB_NAME: &str = "job-name";

/// The Job of a Backup.
pub fn backup_job(backup: &str) -> String {
    format!("{backup}-backup")
}

/// The CronJob of a BackupSchedule.
pub fn backup_cron_job(schedule: &str) -> String {
    format!("{schedule}-backup")
}

/// The Job that restores a backup for a new cluster.
pub fn restore_job(cluster: &str) -> String {
    format!("{cluster}-restore")
}

/// The events volume claim of node `pod`, as its StatefulSet names it
/// (`<template>-<pod>`).
pub fn events_claim(pod: &str) -> String {
    format!("events-{pod}")
}

/// The PodDisruptionBudget of the cluster's nodes.
pub fn disruption_budget(cluster: &str) -> String {
    cluster.to_owned()
}

/// A pod's fully qualified DNS name under the headless Service.
pub fn pod_dns(cluster: &str, pod: &str, namespace: &str) -> String {
    format!("{pod}.{}.{namespace}.svc.{CLUSTER_DOMAIN}", headless_service(cluster))
}

/// The labels of every object of `cluster`.
pub fn cluster_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "ranvier".to_owned()),
        (LABEL_INSTANCE.to_owned(), cluster.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ])
}

/// The labels of the pods of one node set (a superset of the cluster's).
pub fn node_set_labels(cluster: &str, set: &str) -> BTreeMap<String, String> {
    let mut labels = cluster_labels(cluster);
    labels.insert(LABEL_NODE_SET.to_owned(), set.to_owned());
    labels
}

/// The selector of every node pod of `cluster`.
pub fn cluster_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_NAME.to_owned(), "ranvier".to_owned()), (LABEL_INSTANCE.to_owned(), cluster.to_owned())])
}

/// The selector of the pods of one node set.
pub fn node_set_selector(cluster: &str, set: &str) -> BTreeMap<String, String> {
    let mut selector = cluster_selector(cluster);
    selector.insert(LABEL_NODE_SET.to_owned(), set.to_owned());
    selector
}
