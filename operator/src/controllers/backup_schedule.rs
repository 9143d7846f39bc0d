//! The BackupSchedule controller: one CronJob per schedule, and the status
//! read back from it and its Jobs.
//!
//! The CronJob goes out as `batch/v1`, else as `batch/v1beta1` (Kubernetes
//! before 1.21), with `concurrencyPolicy: Forbid` and a starting deadline
//! (after downtime at most the newest missed run starts); each run prunes
//! the claim to `keep` complete backups (`ranvierctl backup --keep`). A
//! `timeZone` the API server cannot honour (before 1.25; never on
//! `v1beta1`) is refused rather than dropped. The status names the newest
//! backup a run completed and why the newest run failed, if it did.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ranvier_crds::common::condition::{AVAILABLE, DEGRADED, PROGRESSING};
use ranvier_crds::{BackupSchedule, BackupScheduleStatus};
use ranvier_wire::backup::Summary;

use super::backup::ready_to_start;
use super::{Context, JobOutcome, KubeCall, apply_served, counted, job_outcome, kube, retry_later};
use crate::builders::backup::backup_cron_job;
use crate::conditions::{Observed, merge};
use crate::names;
use crate::validate::{backup_problems, is_cron};

/// This controller's name in metrics.
pub const CONTROLLER: &str = "backupschedule";
/// How often a schedule's status is refreshed from its runs.
const RECHECK: Duration = Duration::from_secs(20);
/// The first Kubernetes minor version whose CronJobs take `timeZone`.
const TIME_ZONE_SINCE_MINOR: u32 = 25;

/// Reconciles one BackupSchedule.
pub async fn reconcile(schedule: Arc<BackupSchedule>, ctx: Arc<Context>) -> Result<Action, KubeCall> {
    counted(CONTROLLER, &*schedule, &ctx, reconcile_once(&schedule, &ctx)).await
}

/// After a failed reconcile: count and log it, and try again later.
pub fn error_policy(schedule: Arc<BackupSchedule>, error: &KubeCall, ctx: Arc<Context>) -> Action {
    retry_later(CONTROLLER, &*schedule, error.category(), error, &ctx)
}

async fn reconcile_once(schedule: &BackupSchedule, ctx: &Context) -> Result<Action, KubeCall> {
    let namespace = schedule.namespace().unwrap_or_else(|| "default".to_owned());
    let name = schedule.name_any();
    let spec = &schedule.spec;
    let mut problems = backup_problems("BackupSchedule", &name, &spec.target);
    if !is_cron(&spec.schedule) {
        problems
            .push(format!("schedule {:?} is not a cron schedule (five fields, or @hourly, @daily, …)", spec.schedule));
    }
    if spec.keep < 1 {
        problems.push("keep must be at least 1".to_owned());
    }
    if spec.time_zone.is_some() && !time_zone_served(ctx).await {
        problems.push(format!("timeZone needs Kubernetes 1.{TIME_ZONE_SINCE_MINOR} or later"));
    }
    if !problems.is_empty() {
        refuse(ctx, schedule, "InvalidSpec", format!("invalid BackupSchedule: {}", problems.join("; "))).await?;
        return Ok(Action::await_change());
    }
    let cluster = match ready_to_start(ctx, &namespace, &spec.target).await? {
        Ok(cluster) => cluster,
        Err(waiting) => {
            refuse(ctx, schedule, "Waiting", waiting).await?;
            return Ok(Action::requeue(RECHECK));
        }
    };
    let cron_job = backup_cron_job(&cluster, &name, spec, schedule.controller_owner_ref(&()));
    // A timeZone passed the check above only where batch/v1 is served.
    let Some((applied, version)) = apply_served(ctx, &namespace, &cron_job, "batch/v1beta1").await? else {
        let message = "this API server serves neither batch/v1 nor batch/v1beta1 CronJobs".to_owned();
        refuse(ctx, schedule, "CronJobNotServed", message).await?;
        return Ok(Action::requeue(RECHECK));
    };
    let last_schedule_time: Option<Time> =
        serde_json::from_value(applied["status"]["lastScheduleTime"].clone()).unwrap_or(None);
    let runs = runs(ctx, &namespace, &name).await?;
    let cron_name = names::backup_cron_job(&name);
    let (state, summary) =
        if spec.suspend { ("Suspended", "runs are suspended") } else { ("Scheduled", "runs on schedule") };
    let failing = runs.last_failure.is_some();
    let observed = vec![
        Observed::new(AVAILABLE, !spec.suspend, state, format!("CronJob {cron_name} ({version}) {summary}")),
        Observed::new(PROGRESSING, false, state, "the CronJob matches the spec"),
        match &runs.last_failure {
            Some(message) => Observed::new(DEGRADED, true, "LastRunFailed", message.clone()),
            None => Observed::new(DEGRADED, false, state, "no failed run since the last backup"),
        },
    ];
    let status = BackupScheduleStatus {
        observed_generation: schedule.metadata.generation,
        conditions: merge(&previous(schedule), observed, schedule.metadata.generation, Timestamp::now()),
        cron_job: Some(cron_name),
        api_version: Some(version),
        last_schedule_time,
        last_backup: runs.last_backup,
        last_success_time: runs.last_success_time,
        last_failure: runs.last_failure,
    };
    if failing && schedule.status.as_ref().and_then(|s| s.last_failure.as_ref()) != status.last_failure.as_ref() {
        ctx.publish(schedule, true, "RunFailed", status.last_failure.as_deref().unwrap_or_default()).await;
    }
    write(ctx, schedule, &status).await?;
    Ok(Action::requeue(RECHECK))
}

/// What the schedule's finished runs say.
#[derive(Debug, Default)]
struct Runs {
    last_backup: Option<String>,
    last_success_time: Option<Time>,
    /// The newest run's failure, when it is newer than the newest success.
    last_failure: Option<String>,
}

async fn runs(ctx: &Context, namespace: &str, schedule: &str) -> Result<Runs, KubeCall> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{}={schedule}", names::LABEL_BACKUP_SCHEDULE);
    let mut listed = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube(format!("listing the Jobs of BackupSchedule {schedule}")))?
        .items;
    listed.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
    let mut runs = Runs::default();
    for job in listed.iter().rev() {
        match job_outcome(ctx, namespace, job).await? {
            JobOutcome::Running => continue,
            JobOutcome::Succeeded { message, at } => {
                runs.last_backup = message.and_then(|m| serde_json::from_str::<Summary>(&m).ok()).map(|s| s.name);
                runs.last_success_time = at;
                break;
            }
            JobOutcome::Failed { message, .. } => {
                if runs.last_failure.is_none() {
                    runs.last_failure = Some(format!("Job {}: {message}", job.name_any()));
                }
            }
        }
    }
    Ok(runs)
}

/// Whether the API server's CronJobs take `timeZone`.
async fn time_zone_served(ctx: &Context) -> bool {
    let Ok(info) = ctx.client.apiserver_version().await else { return false };
    let minor: String = info.minor.chars().take_while(char::is_ascii_digit).collect();
    info.major == "1" && minor.parse::<u32>().is_ok_and(|m| m >= TIME_ZONE_SINCE_MINOR)
}

fn previous(schedule: &BackupSchedule) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    schedule.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
}

/// Writes a schedule that makes no CronJob (yet), and says why.
async fn refuse(ctx: &Context, schedule: &BackupSchedule, reason: &str, message: String) -> Result<(), KubeCall> {
    ctx.publish(schedule, true, reason, &message).await;
    let observed = vec![
        Observed::new(AVAILABLE, false, reason, "no backups are scheduled"),
        Observed::new(PROGRESSING, reason == "Waiting", reason, message.clone()),
        Observed::new(DEGRADED, reason != "Waiting", reason, message),
    ];
    let status = BackupScheduleStatus {
        observed_generation: schedule.metadata.generation,
        conditions: merge(&previous(schedule), observed, schedule.metadata.generation, Timestamp::now()),
        ..schedule.status.clone().unwrap_or_default()
    };
    write(ctx, schedule, &status).await
}

async fn write(ctx: &Context, schedule: &BackupSchedule, status: &BackupScheduleStatus) -> Result<(), KubeCall> {
    let step = format!("writing the status of BackupSchedule {}", schedule.name_any());
    ctx.write_status(schedule, status).await.map_err(kube(step))
}
