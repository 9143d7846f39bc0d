//! Controllers: one per custom resource. Each reconcile is idempotent
//! (server-side apply under one field manager), writes `status` with
//! `observedGeneration` and conditions, and publishes Events for what a
//! user must act on. What every controller shares lives here: the
//! `Context`, how nodes' admin APIs are addressed, Events and status
//! writes.

pub mod backup;
pub mod backup_schedule;
pub mod cluster;
pub mod replication_group;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;
use crate::names::{self, MANAGER};

/// Where a node's admin REST API answers.
#[derive(Debug, Clone, Default)]
pub enum AdminEndpoints {
    /// At the node's pod DNS name under the cluster's headless Service
    /// (the operator runs in the Kubernetes cluster).
    #[default]
    PodDns,
    /// At fixed `host:port` addresses by node name (an operator outside
    /// the cluster, or a test); a node not listed is not called.
    Fixed(BTreeMap<String, String>),
}

impl AdminEndpoints {
    /// The admin address of node `pod` of `cluster` in `namespace`, whose
    /// HTTP port is `port`.
    pub fn address(&self, cluster: &str, namespace: &str, pod: &str, port: i32) -> Option<String> {
        match self {
            AdminEndpoints::PodDns => Some(format!("{}:{port}", names::pod_dns(cluster, pod, namespace))),
            AdminEndpoints::Fixed(addresses) => addresses.get(pod).cloned(),
        }
    }
}

/// What every reconcile needs.
#[derive(Clone)]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// Publishes Events on the reconciled resources.
    pub recorder: Recorder,
    /// Where nodes' admin APIs answer.
    pub admin: AdminEndpoints,
    /// Reconcile counts and failures by category.
    pub metrics: Arc<Metrics>,
    /// Retry delays of objects whose reconciles fail.
    pub backoff: Arc<Backoff>,
}

impl Context {
    /// A context on `client`, reporting as `ranvier-operator` (`instance`:
    /// the operator's pod, when known), reaching nodes at their pod DNS
    /// names.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            admin: AdminEndpoints::default(),
            metrics: Arc::new(Metrics::default()),
            backoff: Arc::default(),
        }
    }

    /// The same context reaching nodes' admin APIs at `admin`.
    pub fn with_admin(mut self, admin: AdminEndpoints) -> Self {
        self.admin = admin;
        self
    }

    /// Publishes an Event on `object` (a failure to publish is logged:
    /// the status already says the same).
    pub async fn publish<K>(&self, object: &K, warning: bool, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_owned(),
            note: Some(message.chars().take(1000).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "failed to publish an Event");
        }
    }

    /// Writes `status` as the status of `object` (server-side apply of
    /// the status subresource under the operator's field manager).
    pub async fn write_status<K>(&self, object: &K, status: &impl Serialize) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + DeserializeOwned,
    {
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let namespace = object.namespace().unwrap_or_else(|| "default".to_owned());
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.patch_status(&object.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
        Ok(())
    }
}

/// A failed call to the API server, and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct KubeCall {
    /// What was being done.
    pub step: String,
    /// The cause.
    #[source]
    pub source: kube::Error,
}

impl KubeCall {
    /// A stable label for metrics.
    pub fn category(&self) -> &'static str {
        "kube_api"
    }
}

/// Runs one reconcile of `object` for `controller`: counted, and its
/// object's retry delay forgotten once it succeeds.
pub async fn counted<K, E>(
    controller: &'static str,
    object: &K,
    ctx: &Context,
    reconcile: impl std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
) -> Result<kube::runtime::controller::Action, E>
where
    K: Resource<DynamicType = ()>,
{
    ctx.metrics.reconciled(controller);
    let result = reconcile.await;
    if result.is_ok() {
        ctx.backoff.after_success(&object_key(object));
    }
    result
}

/// After a failed reconcile of `object` by `controller`: counts it by
/// category, logs it, and tries again later (the object's backoff).
pub fn retry_later<K>(
    controller: &'static str,
    object: &K,
    category: &'static str,
    error: &dyn std::fmt::Display,
    ctx: &Context,
) -> kube::runtime::controller::Action
where
    K: Resource<DynamicType = ()>,
{
    ctx.metrics.failed(controller, category);
    tracing::warn!(controller, object = %object.name_any(), category, %error, "reconcile failed; retrying");
    kube::runtime::controller::Action::requeue(ctx.backoff.after_failure(&object_key(object)))
}

/// Turns a kube error into a [`KubeCall`] that says it happened while
/// doing `step` (`?` makes it the controller's error).
pub fn kube(step: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeCall {
    let step = step.into();
    move |source| KubeCall { step, source }
}

/// A namespaced object the operator applies server-side ([`apply`]).
pub trait Applicable:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
{
}

impl<K> Applicable for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned
{
}

/// Applies `object` server-side under the operator's field manager, taking
/// over fields other managers set; answers it as the API server holds it.
pub async fn apply<K: Applicable>(ctx: &Context, namespace: &str, object: &K) -> Result<K, kube::Error> {
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object)).await
}

/// Applies `object` at its own API version (server-side, under the
/// operator's field manager); where the API server does not serve that
/// version, applies the same body as `older` (`group/version`: the
/// `v1beta1` of Kubernetes before 1.21). Answers the object as applied and
/// the version used, or `None` when neither version is served.
pub async fn apply_served<K: Applicable>(
    ctx: &Context,
    namespace: &str,
    object: &K,
    older: &str,
) -> Result<Option<(serde_json::Value, String)>, KubeCall> {
    use kube::api::DynamicObject;
    use kube::core::{ApiResource, GroupVersionKind};
    let name = object.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&()).into_owned();
    match apply(ctx, namespace, object).await {
        Ok(applied) => {
            let value = serde_json::to_value(applied).unwrap_or_default();
            return Ok(Some((value, K::api_version(&()).into_owned())));
        }
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(source) => return Err(kube(format!("applying {kind} {name}"))(source)),
    }
    let params = PatchParams::apply(MANAGER).force();
    let (group, version) = older.split_once('/').unwrap_or(("", older));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let mut body = serde_json::to_value(object).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), older.into());
    }
    match api.patch(&name, &params, &Patch::Apply(&body)).await {
        Ok(applied) => Ok(Some((serde_json::to_value(applied).unwrap_or_default(), older.to_owned()))),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(kube(format!("applying {kind} {name} ({older})"))(source)),
    }
}

/// How a Job ended, if it has.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Not finished.
    Running,
    /// It succeeded; its last pod's termination message, if its pod is
    /// still there.
    Succeeded {
        /// The message.
        message: Option<String>,
        /// When.
        at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    },
    /// It failed for good: the last failed pod's message, else the Job's.
    Failed {
        /// Why.
        message: String,
        /// When.
        at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    },
}

/// How `job` ended, with its pods' termination messages (read from the
/// pods the Job controller labels with the Job's name).
pub async fn job_outcome(
    ctx: &Context,
    namespace: &str,
    job: &k8s_openapi::api::batch::v1::Job,
) -> Result<JobOutcome, KubeCall> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    let status = job.status.clone().unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    let succeeded = status.succeeded.unwrap_or(0) > 0 || holds("Complete").is_some();
    let failed = holds("Failed");
    if !succeeded && failed.is_none() {
        return Ok(JobOutcome::Running);
    }
    let name = job.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{}={name}", names::LABEL_JOB_NAME)))
        .await
        .map_err(kube(format!("listing the pods of Job {name}")))?;
    let mut ended: Vec<(Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, i32, Option<String>)> = listed
        .items
        .into_iter()
        .flat_map(|pod| pod.status.and_then(|s| s.container_statuses).unwrap_or_default())
        .filter_map(|container| container.state.and_then(|state| state.terminated))
        .map(|t| (t.finished_at, t.exit_code, t.message.map(|m| m.trim().to_owned())))
        .collect();
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    if succeeded {
        let message = ended.iter().rev().find(|(_, code, _)| *code == 0).and_then(|(_, _, m)| m.clone());
        return Ok(JobOutcome::Succeeded { message, at: status.completion_time });
    }
    let from_pod = ended.iter().rev().find(|(_, code, _)| *code != 0).and_then(|(_, _, m)| m.clone());
    let condition =
        failed.map(|c| format!("{}: {}", c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()));
    let message = from_pod.filter(|m| !m.is_empty()).or(condition).unwrap_or_else(|| "the Job failed".to_owned());
    Ok(JobOutcome::Failed { message, at: failed.and_then(|c| c.last_transition_time.clone()) })
}

/// First delay before a failed reconcile is tried again.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest delay between tries of a reconcile that keeps failing.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// Retry delays after failed reconciles, per object: `RETRY_FIRST`,
/// doubling with each further failure up to `RETRY_MAX`, forgotten after
/// a success. The map holds an entry per object whose last reconcile
/// failed, and nothing else.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// The delay before the next try of `object`, which just failed.
    pub fn after_failure(&self, object: &str) -> Duration {
        let mut failures = self.lock();
        let count = failures.entry(object.to_owned()).or_default();
        *count = count.saturating_add(1);
        let factor = 1u32.checked_shl(count.saturating_sub(1)).unwrap_or(u32::MAX);
        RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX)
    }

    /// `object` reconciled: its next failure starts again at `RETRY_FIRST`.
    pub fn after_success(&self, object: &str) {
        self.lock().remove(object);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The key of `object` in `Backoff`: kind, namespace and name.
pub fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), object.namespace().unwrap_or_default(), object.name_any())
}

/// Runs the controllers until a termination signal: RanvierClusters (woken
/// by changes to the StatefulSets and restore Jobs they own),
/// ReplicationGroups (woken by changes to their cluster), Backups (woken by
/// their Jobs) and BackupSchedules, in `namespace` (every namespace when
/// `None`).
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::batch::v1::Job;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{Controller, watcher};
    use ranvier_crds::{Backup, BackupSchedule, RanvierCluster, ReplicationGroup};

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope>>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = ctx.client.clone();
    let clusters = Controller::new(api::<RanvierCluster>(&client, namespace), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, namespace), watcher::Config::default())
        .owns(api::<Job>(&client, namespace), watcher::Config::default())
        .shutdown_on_signal()
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        });
    let groups_controller = Controller::new(api::<ReplicationGroup>(&client, namespace), watcher::Config::default());
    let store = groups_controller.store();
    let groups = groups_controller
        .watches(api::<RanvierCluster>(&client, namespace), watcher::Config::default(), move |cluster| {
            let namespace = cluster.namespace();
            let name = cluster.name_any();
            store
                .state()
                .into_iter()
                .filter(|group| group.namespace() == namespace && group.spec.cluster == name)
                .map(|group| ObjectRef::from_obj(&*group))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(replication_group::reconcile, replication_group::error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(group = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        });
    let backups = Controller::new(api::<Backup>(&client, namespace), watcher::Config::default())
        .owns(api::<Job>(&client, namespace), watcher::Config::default())
        .shutdown_on_signal()
        .run(backup::reconcile, backup::error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(backup = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        });
    let schedules = Controller::new(api::<BackupSchedule>(&client, namespace), watcher::Config::default())
        .shutdown_on_signal()
        .run(backup_schedule::reconcile, backup_schedule::error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(schedule = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        });
    futures::join!(clusters, groups, backups, schedules);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_of_a_failing_object_double_up_to_a_limit_and_start_over_after_a_success() {
        let backoff = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| backoff.after_failure("RanvierCluster/shop/demo").as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff.after_failure("RanvierCluster/shop/other"), RETRY_FIRST, "each object on its own");
        backoff.after_success("RanvierCluster/shop/demo");
        assert_eq!(backoff.after_failure("RanvierCluster/shop/demo"), RETRY_FIRST);
        for _ in 0..100 {
            backoff.after_failure("RanvierCluster/shop/stuck");
        }
        assert_eq!(backoff.after_failure("RanvierCluster/shop/stuck"), RETRY_MAX, "no overflow");
    }
}
