//! `Backup` and `BackupSchedule`: backups of a `RanvierCluster` written by
//! `ranvierctl backup` to a PersistentVolumeClaim. A `Backup` is one run (a
//! Job); its spec cannot change once made, and its status says how it went
//! and what it covers. A `BackupSchedule` is a CronJob of such runs that
//! keeps the newest `keep` complete backups in its claim.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to back up, and where to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTarget {
    /// The RanvierCluster (in the same namespace) to back up.
    pub cluster: String,
    /// The PersistentVolumeClaim (in the same namespace) the backups are
    /// written to, each in a folder `backup-<milliseconds>`.
    pub volume_claim: String,
    /// The contexts to back up. Default: every context of the cluster's
    /// first node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<String>,
    /// Copy only the closed segments the newest complete backup in the
    /// claim lacks, and refer to it for the rest.
    #[serde(default)]
    pub incremental: bool,
}

/// One backup of a cluster.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ranvier.io",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "rvb",
    category = "ranvier",
    derive = "PartialEq",
    doc = "One backup of a RanvierCluster, written by a Job to a PersistentVolumeClaim.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".status.backup"),
    printcolumn(name = "Bytes", type_ = "integer", json_path = ".status.bytes"),
    printcolumn(name = "Error", type_ = "string", json_path = ".status.error"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Backup's spec cannot change: make a new Backup"))]
pub struct BackupSpec {
    /// What to back up, and where to.
    #[serde(flatten)]
    pub target: BackupTarget,
}

/// Where a backup run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BackupPhase {
    /// Waiting for its cluster or claim, or for its Job to start.
    Pending,
    /// The Job runs.
    Running,
    /// The backup is complete and verified.
    Completed,
    /// The Job failed; `error` says why.
    Failed,
}

/// How a backup went and what it covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Where the run stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// The Job that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// The backup's folder in the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Bytes the backup holds (with what an incremental one refers to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Bytes this run copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_bytes: Option<u64>,
    /// SHA-256 of the backup's `manifest.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// Where each store's copy ends: every event before `nextToken`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<BackupPosition>,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every event (or snapshot) of a store before `nextToken` is in the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPosition {
    /// The context.
    pub context: String,
    /// `EVENT` or `SNAPSHOT`.
    pub kind: String,
    /// The first token the backup does not hold.
    pub next_token: u64,
}

/// Backups of a cluster on a schedule.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "ranvier.io",
    version = "v1alpha1",
    kind = "BackupSchedule",
    namespaced,
    status = "BackupScheduleStatus",
    shortname = "rvbs",
    category = "ranvier",
    derive = "PartialEq",
    doc = "Backups of a RanvierCluster on a cron schedule (a CronJob), keeping the newest `keep`.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last backup", type_ = "string", json_path = ".status.lastBackup"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// What to back up, and where to.
    #[serde(flatten)]
    pub target: BackupTarget,
    /// When, in cron syntax (five fields: minute hour day-of-month month
    /// day-of-week, or `@hourly`, `@daily`, …).
    pub schedule: String,
    /// The time zone of the schedule (`Europe/Amsterdam`); served by
    /// Kubernetes 1.27 and later. Default: the controller manager's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Start no new runs while true (a run already going finishes).
    #[serde(default)]
    pub suspend: bool,
    /// How many complete backups to keep in the claim, at least 1; the
    /// newest complete one is never removed. Default: 7.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1))]
    pub keep: u32,
}

fn default_keep() -> u32 {
    7
}

/// What the operator last saw of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available (the CronJob is in place), Progressing and Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The CronJob, and the API version it was made with (`batch/v1`, or
    /// `batch/v1beta1` where only that is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_job: Option<String>,
    /// The CronJob's API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// When a run was last started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The newest backup a run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// When that run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// Why the newest run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}
