//! Controllers: one per custom resource. Each reconcile is idempotent
//! (server-side apply under one field manager), writes `status` with
//! `observedGeneration` and conditions, and publishes Events for what a
//! user must act on. What every controller shares lives here: the
//! `Context`, how nodes' admin APIs are addressed, Events and status
//! writes.

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

/// Turns a kube error into a [`KubeCall`] that says it happened while
/// doing `step` (`?` makes it the controller's error).
pub fn kube(step: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeCall {
    let step = step.into();
    move |source| KubeCall { step, source }
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
/// by changes to the StatefulSets they own) and ReplicationGroups (woken
/// by changes to their cluster), in `namespace` (every namespace when
/// `None`).
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{Controller, watcher};
    use ranvier_crds::{RanvierCluster, ReplicationGroup};

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
        .run(replication_group::reconcile, replication_group::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(group = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        });
    futures::join!(clusters, groups);
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
