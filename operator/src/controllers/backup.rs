//! The Backup controller: one Job per Backup, and the status read back
//! from it.
//!
//! A Backup whose cluster or claim is missing waits (`Pending`, with what
//! it waits for); an invalid one fails at once. Its Job runs `ranvierctl
//! backup` against the cluster's first node (see `builders::backup`); the
//! summary `ranvierctl` leaves as the pod's termination message becomes
//! the status (backup folder, bytes, positions, manifest checksum), and a
//! failure's last lines become `error`. A finished Backup is not looked at
//! again. Its spec cannot change (CEL where the API server evaluates it):
//! a change is reported by a Warning Event and ignored, the Job carrying a
//! hash of the spec it was made from.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ranvier_crds::backup::{BackupPhase, BackupPosition, BackupTarget};
use ranvier_crds::{Backup, BackupStatus, RanvierCluster};
use ranvier_wire::backup::Summary;
use sha2::{Digest, Sha256};

use super::{Context, JobOutcome, KubeCall, counted, job_outcome, kube, retry_later};
use crate::builders::backup::backup_job;
use crate::validate::{ValidCluster, backup_problems, validate};

/// This controller's name in metrics.
pub const CONTROLLER: &str = "backup";
/// The Job annotation holding the hash of the spec it was made from.
const SPEC_HASH: &str = "ranvier.io/spec-hash";
/// How soon a waiting or running Backup is looked at again (its Job's
/// changes also wake it).
const RECHECK: Duration = Duration::from_secs(10);

/// Reconciles one Backup.
pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, KubeCall> {
    counted(CONTROLLER, &*backup, &ctx, reconcile_once(&backup, &ctx)).await
}

/// After a failed reconcile: count and log it, and try again later.
pub fn error_policy(backup: Arc<Backup>, error: &KubeCall, ctx: Arc<Context>) -> Action {
    retry_later(CONTROLLER, &*backup, error.category(), error, &ctx)
}

async fn reconcile_once(backup: &Backup, ctx: &Context) -> Result<Action, KubeCall> {
    let status = backup.status.clone().unwrap_or_default();
    if matches!(status.phase, Some(BackupPhase::Completed | BackupPhase::Failed)) {
        return Ok(Action::await_change());
    }
    let namespace = backup.namespace().unwrap_or_else(|| "default".to_owned());
    let name = backup.name_any();
    let target = &backup.spec.target;
    let problems = backup_problems("Backup", &name, target);
    if !problems.is_empty() {
        let message = format!("invalid Backup: {}", problems.join("; "));
        ctx.publish(backup, true, "InvalidSpec", &message).await;
        let failed = BackupStatus { phase: Some(BackupPhase::Failed), error: Some(message), ..status };
        write(ctx, backup, &failed).await?;
        return Ok(Action::await_change());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_name = crate::names::backup_job(&name);
    let job = match jobs.get_opt(&job_name).await.map_err(kube(format!("reading Job {job_name}")))? {
        Some(job) => job,
        None => {
            let cluster = match ready_to_start(ctx, &namespace, target).await? {
                Ok(cluster) => cluster,
                Err(waiting) => {
                    let pending = BackupStatus { phase: Some(BackupPhase::Pending), error: Some(waiting), ..status };
                    write(ctx, backup, &pending).await?;
                    return Ok(Action::requeue(RECHECK));
                }
            };
            let mut job = backup_job(&cluster, &name, target, backup.controller_owner_ref(&()));
            job.metadata.annotations = Some([(SPEC_HASH.to_owned(), spec_hash(target))].into());
            let made =
                jobs.create(&PostParams::default(), &job).await.map_err(kube(format!("creating Job {job_name}")))?;
            ctx.publish(backup, false, "Started", &format!("Job {job_name} backs up cluster {}", target.cluster)).await;
            made
        }
    };
    let recorded = job.metadata.annotations.as_ref().and_then(|a| a.get(SPEC_HASH));
    if recorded.is_some_and(|hash| *hash != spec_hash(target)) {
        let message = "a Backup's spec cannot change: the run goes on as first asked; make a new Backup";
        ctx.publish(backup, true, "SpecChanged", message).await;
    }
    let started_at = job.status.as_ref().and_then(|s| s.start_time.clone());
    let next = match job_outcome(ctx, &namespace, &job).await? {
        JobOutcome::Running => BackupStatus {
            phase: Some(BackupPhase::Running),
            job: Some(job_name),
            started_at,
            error: None,
            ..BackupStatus::default()
        },
        JobOutcome::Succeeded { message, at } => {
            let mut done = BackupStatus {
                phase: Some(BackupPhase::Completed),
                job: Some(job_name),
                started_at,
                completed_at: at.or_else(|| Some(Time(Timestamp::now()))),
                ..BackupStatus::default()
            };
            match message.as_deref().map(serde_json::from_str::<Summary>) {
                Some(Ok(summary)) => {
                    ctx.publish(backup, false, "Completed", &format!("{} ({} bytes)", summary.name, summary.bytes))
                        .await;
                    with_summary(&mut done, summary);
                }
                _ => done.error = Some("the backup completed, but its Job's pod left no summary".to_owned()),
            }
            done
        }
        JobOutcome::Failed { message, at } => {
            ctx.publish(backup, true, "Failed", &message).await;
            BackupStatus {
                phase: Some(BackupPhase::Failed),
                job: Some(job_name),
                started_at,
                completed_at: at.or_else(|| Some(Time(Timestamp::now()))),
                error: Some(message),
                ..BackupStatus::default()
            }
        }
    };
    let finished = matches!(next.phase, Some(BackupPhase::Completed | BackupPhase::Failed));
    write(ctx, backup, &next).await?;
    Ok(if finished { Action::await_change() } else { Action::requeue(RECHECK) })
}

/// The cluster to back up, once it and the claim exist; else what is
/// missing.
pub async fn ready_to_start(
    ctx: &Context,
    namespace: &str,
    target: &BackupTarget,
) -> Result<Result<ValidCluster, String>, KubeCall> {
    let clusters: Api<RanvierCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let step = format!("reading RanvierCluster {}", target.cluster);
    let Some(cluster) = clusters.get_opt(&target.cluster).await.map_err(kube(step))? else {
        return Ok(Err(format!("waiting for RanvierCluster {}", target.cluster)));
    };
    let cluster = match validate(&cluster, namespace) {
        Ok(valid) => valid,
        Err(invalid) => return Ok(Err(format!("RanvierCluster {} is not valid: {invalid}", target.cluster))),
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let step = format!("reading PersistentVolumeClaim {}", target.volume_claim);
    if claims.get_opt(&target.volume_claim).await.map_err(kube(step))?.is_none() {
        return Ok(Err(format!("waiting for PersistentVolumeClaim {}", target.volume_claim)));
    }
    Ok(Ok(cluster))
}

/// The summary's figures in a status.
fn with_summary(status: &mut BackupStatus, summary: Summary) {
    status.backup = Some(summary.name);
    status.bytes = Some(summary.bytes);
    status.copied_bytes = Some(summary.copied_bytes);
    status.manifest_sha256 = Some(summary.manifest_sha256);
    status.positions = summary
        .positions
        .into_iter()
        .map(|p| BackupPosition { context: p.context, kind: p.kind, next_token: p.next_token })
        .collect();
}

fn spec_hash(target: &BackupTarget) -> String {
    let text = serde_json::to_vec(target).unwrap_or_default();
    ranvier_wire::hex(&Sha256::digest(&text)[..8])
}

async fn write(ctx: &Context, backup: &Backup, status: &BackupStatus) -> Result<(), KubeCall> {
    ctx.write_status(backup, status).await.map_err(kube(format!("writing the status of Backup {}", backup.name_any())))
}
