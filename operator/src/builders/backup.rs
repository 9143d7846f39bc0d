//! The Jobs that back up and restore a cluster, all running `ranvierctl`
//! from the cluster's own image: a `Backup` becomes one Job, a
//! `BackupSchedule` a CronJob of the same Job, and a cluster bootstrapped
//! from a backup a restore Job that fills the founding node's events
//! volume (made here, named as its StatefulSet will claim it) before the
//! StatefulSet exists.
//!
//! A backup Job names the HTTP port of every node of the cluster's first
//! node set (ranvierctl backs up the first that is ready) with the admin
//! token (mounted from the access tokens Secret, never on the
//! command line), writes into the claim the resource names, and leaves
//! `ranvierctl`'s summary as its termination message, which the
//! controllers read back into the status.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use ranvier_crds::backup::BackupTarget;

use super::config::{EVENTS_DIR, first_set_nodes};
use super::meta;
use super::statefulset::{access_tokens_secret, claim, pull_policy};
use crate::names;
use crate::validate::ValidCluster;

/// Where the backups claim is mounted in a Job's container.
pub const BACKUPS_DIR: &str = "/backups";
/// Where the admin token is mounted.
const TOKEN_DIR: &str = "/secrets";
/// The file a container's termination message is read from.
const TERMINATION_LOG: &str = "/dev/termination-log";
/// The longest a backup run may take before Kubernetes stops it (so a
/// hung run cannot hold a schedule's `Forbid` forever).
const BACKUP_DEADLINE_SECONDS: i64 = 6 * 3600;
/// How late a missed scheduled run may still start: after downtime the
/// CronJob controller starts at most the newest missed run, and only
/// within this window.
pub const STARTING_DEADLINE_SECONDS: i64 = 300;
/// Finished runs of a schedule whose Jobs are kept, of each outcome.
const JOB_HISTORY: i32 = 3;

/// The Job of the Backup named `backup` (`owner`: its owner reference).
pub fn backup_job(cluster: &ValidCluster, backup: &str, target: &BackupTarget, owner: Option<OwnerReference>) -> Job {
    let labels = run_labels(cluster, names::LABEL_BACKUP, backup);
    Job {
        metadata: meta::owned_by(cluster, names::backup_job(backup), labels.clone(), owner),
        spec: Some(backup_job_spec(cluster, target, None, labels)),
        status: None,
    }
}

/// The CronJob of the BackupSchedule named `schedule`, as `batch/v1`; the
/// caller changes `apiVersion` where only `batch/v1beta1` is served (the
/// same shape, without `timeZone`).
pub fn backup_cron_job(
    cluster: &ValidCluster,
    schedule: &str,
    spec: &ranvier_crds::BackupScheduleSpec,
    owner: Option<OwnerReference>,
) -> CronJob {
    let labels = run_labels(cluster, names::LABEL_BACKUP_SCHEDULE, schedule);
    CronJob {
        metadata: meta::owned_by(cluster, names::backup_cron_job(schedule), labels.clone(), owner),
        spec: Some(CronJobSpec {
            schedule: spec.schedule.clone(),
            time_zone: spec.time_zone.clone(),
            suspend: Some(spec.suspend),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(JOB_HISTORY),
            failed_jobs_history_limit: Some(JOB_HISTORY),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..ObjectMeta::default() }),
                spec: Some(backup_job_spec(cluster, &spec.target, Some(spec.keep), labels)),
            },
        }),
        status: None,
    }
}

/// The labels of a run's objects: the operator's, the cluster it runs
/// against, and `key` naming the resource that asked for it. Not the
/// cluster's own label set: a Backup's Job and pod belong to the Backup and
/// outlive the cluster.
fn run_labels(cluster: &ValidCluster, key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_MANAGED_BY.to_owned(), names::MANAGER.to_owned()),
        (names::LABEL_CLUSTER.to_owned(), cluster.name.clone()),
        (key.to_owned(), value.to_owned()),
    ])
}

fn backup_job_spec(
    cluster: &ValidCluster,
    target: &BackupTarget,
    keep: Option<u32>,
    labels: BTreeMap<String, String>,
) -> JobSpec {
    let spec = &cluster.resource.spec;
    // Any node of the first set will do: ranvierctl backs up the first
    // that is ready, so one pod down does not fail the run.
    let server = first_set_nodes(cluster)
        .iter()
        .map(|node| format!("http://{node}:{}", spec.ports.http))
        .collect::<Vec<_>>()
        .join(",");
    let mut args: Vec<String> =
        ["backup", "--target", BACKUPS_DIR, "-S", &server, "--summary", TERMINATION_LOG].map(str::to_owned).into();
    if !target.contexts.is_empty() {
        args.extend(["-c".to_owned(), target.contexts.join(",")]);
    }
    if target.incremental {
        args.push("--incremental".to_owned());
    }
    if let Some(keep) = keep {
        args.extend(["--keep".to_owned(), keep.to_string()]);
    }
    let mut mounts = vec![mount("backups", BACKUPS_DIR, false)];
    let mut volumes = vec![claim_volume("backups", &target.volume_claim, false)];
    if let Some(secret) = access_tokens_secret(&cluster.resource) {
        args.extend(["--token-file".to_owned(), format!("{TOKEN_DIR}/{}", names::ADMIN_TOKEN_KEY)]);
        mounts.push(mount("admin-token", TOKEN_DIR, true));
        volumes.push(Volume {
            name: "admin-token".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(vec![KeyToPath {
                    key: names::ADMIN_TOKEN_KEY.to_owned(),
                    path: names::ADMIN_TOKEN_KEY.to_owned(),
                    mode: Some(0o400),
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    JobSpec {
        backoff_limit: Some(1),
        active_deadline_seconds: Some(BACKUP_DEADLINE_SECONDS),
        template: run_pod(cluster, "backup", args, mounts, volumes, labels),
        ..JobSpec::default()
    }
}

/// The events volume claim of the cluster's founding node, made before its
/// StatefulSet (which then uses it as its own), and the Job, owned by the
/// cluster, that restores `backup` (a folder in `backups_claim`, or the
/// newest there) into it.
pub fn restore(
    cluster: &ValidCluster,
    backups_claim: &str,
    backup: Option<&str>,
) -> Option<(PersistentVolumeClaim, Job)> {
    let set = cluster.node_sets().first()?;
    let pod = names::pod(&cluster.name, &set.name, 0);
    let mut data = claim("events", &set.events_storage);
    data.metadata = ObjectMeta {
        name: Some(names::events_claim(&pod)),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(names::node_set_labels(&cluster.name, &set.name)),
        ..ObjectMeta::default()
    };
    let from = match backup {
        Some(backup) => format!("{BACKUPS_DIR}/{backup}"),
        None => BACKUPS_DIR.to_owned(),
    };
    let args = ["restore", "--from", &from, "--data-dir", &format!("{EVENTS_DIR}/events")].map(str::to_owned).to_vec();
    let mounts = vec![mount("backups", BACKUPS_DIR, true), mount("events", EVENTS_DIR, false)];
    let volumes =
        vec![claim_volume("backups", backups_claim, true), claim_volume("events", &names::events_claim(&pod), false)];
    let labels = run_labels(cluster, names::LABEL_RESTORE, &cluster.name);
    let job = Job {
        metadata: meta::owned(cluster, names::restore_job(&cluster.name), labels.clone()),
        spec: Some(JobSpec {
            // A second try would find the first one's files and refuse:
            // a failed restore is for a person to look at.
            backoff_limit: Some(0),
            template: run_pod(cluster, "restore", args, mounts, volumes, labels),
            ..JobSpec::default()
        }),
        status: None,
    };
    Some((data, job))
}

fn run_pod(
    cluster: &ValidCluster,
    name: &str,
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
    labels: BTreeMap<String, String>,
) -> PodTemplateSpec {
    let spec = &cluster.resource.spec;
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            containers: vec![Container {
                name: name.to_owned(),
                image: Some(spec.image.clone()),
                image_pull_policy: Some(pull_policy(spec.image_pull_policy).to_owned()),
                command: Some(vec!["/ranvierctl".to_owned()]),
                args: Some(args),
                volume_mounts: Some(mounts),
                // The summary on success, the error's last lines on failure.
                termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            read_only: Some(read_only),
        }),
        ..Volume::default()
    }
}
