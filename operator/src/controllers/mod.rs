//! Controllers: one per custom resource. Each reconcile is idempotent
//! (server-side apply under one field manager), writes `status` with
//! `observedGeneration` and conditions, and publishes Events for what a
//! user must act on.

pub mod cluster;
pub mod replication_group;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::names::MANAGER;

/// What every reconcile needs.
#[derive(Clone)]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// Publishes Events on the reconciled resources.
    pub recorder: Recorder,
}

impl Context {
    /// A context on `client`, reporting as `ranvier-operator` (`instance`:
    /// the operator's pod, when known).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: MANAGER.to_owned(), instance };
        Context { recorder: Recorder::new(client.clone(), reporter), client }
    }
}

/// Runs the controllers until a termination signal: RanvierClusters in
/// `namespace` (every namespace when `None`), woken by changes to the
/// StatefulSets they own.
pub async fn run(client: Client, namespace: Option<&str>, instance: Option<String>) {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::StatefulSet;
    use kube::Api;
    use kube::runtime::{Controller, watcher};
    use ranvier_crds::RanvierCluster;

    let (clusters, sets): (Api<RanvierCluster>, Api<StatefulSet>) = match namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let context = std::sync::Arc::new(Context::new(client, instance));
    Controller::new(clusters, watcher::Config::default())
        .owns(sets, watcher::Config::default())
        .shutdown_on_signal()
        .run(cluster::reconcile, cluster::error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile did not run"),
            }
        })
        .await;
}
