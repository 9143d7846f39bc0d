//! The RanvierCluster controller: validate → token Secret → build →
//! apply → status.
//!
//! An invalid spec changes nothing: the status says why (`Degraded`,
//! reason `InvalidSpec`), a Warning Event is published, and the resource
//! waits for an edit. Otherwise the internal token Secret is made when the
//! spec names none, every built object is applied (server-side, one field
//! manager, owned by the cluster so that deleting it deletes them), and
//! the status counts the ready nodes from the StatefulSets. A cluster made
//! with `bootstrap.fromBackup` first restores the backup onto its founding
//! node's volume (a Job); no StatefulSet exists until that succeeded. A
//! PodDisruptionBudget goes out as `policy/v1`, else `policy/v1beta1` on
//! API servers before 1.21, else is skipped with an Event.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use ranvier_crds::common::condition::{AVAILABLE, DEGRADED, PROGRESSING};
use ranvier_crds::{RanvierCluster, RanvierClusterStatus};

use super::{Context, JobOutcome, KubeCall, apply_served, job_outcome, kube};
use crate::builders::{backup, meta, statefulset};
use crate::conditions::{Observed, merge};
use crate::names;
use crate::render::{Rendered, render};
use crate::validate::{ValidCluster, validate};

/// This controller's name in metrics.
pub const CONTROLLER: &str = "ranviercluster";
/// Bytes of a generated internal token (hex-encoded in the Secret).
const TOKEN_BYTES: usize = 32;
/// How soon a cluster that is not fully ready is looked at again (pod
/// changes also wake it, through the StatefulSets it owns).
const RECHECK_PROGRESSING: Duration = Duration::from_secs(15);
/// How soon a cluster whose backup is being restored is looked at again.
const RECHECK_RESTORE: Duration = Duration::from_secs(5);
/// How soon a ready cluster is looked at again.
const RECHECK_AVAILABLE: Duration = Duration::from_secs(300);

/// Why a reconcile failed (it is retried, later each time).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error(transparent)]
    Kube(#[from] KubeCall),
    /// The referenced Secret has no such key.
    #[error("Secret {secret} has no key {key}")]
    MissingTokenKey {
        /// The Secret.
        secret: String,
        /// The key the spec names.
        key: String,
    },
    /// The API server refused an object as invalid: most often a change
    /// to a field Kubernetes does not allow to change, such as a node
    /// set's storage (a StatefulSet's volume claim templates).
    #[error("the API server refused {object}: {message}")]
    Rejected {
        /// Kind and name.
        object: String,
        /// The API server's reason.
        message: String,
    },
    /// No random bytes for a token.
    #[error("failed to generate the internal token: {0}")]
    Random(#[source] std::io::Error),
}

impl Error {
    /// A stable label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::MissingTokenKey { .. } => "token_secret",
            Error::Random(_) => "token_generation",
            Error::Rejected { .. } => "rejected",
        }
    }
}

/// Reconciles one RanvierCluster.
pub async fn reconcile(cluster: Arc<RanvierCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::counted(CONTROLLER, &*cluster, &ctx, reconcile_once(cluster.clone(), &ctx)).await
}

async fn reconcile_once(cluster: Arc<RanvierCluster>, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().unwrap_or_else(|| "default".to_owned());
    let valid = match validate(&cluster, &namespace) {
        Ok(valid) => valid,
        Err(invalid) => {
            let refusal = Refusal { reason: "InvalidSpec", waiting_for: "the spec to be fixed", nodes: 0 };
            refuse(ctx, &cluster, refusal, invalid.to_string()).await?;
            return Ok(Action::await_change());
        }
    };
    let token = match secrets(ctx, &valid).await {
        Ok(token) => token,
        Err(error @ Error::MissingTokenKey { .. }) => {
            let refusal =
                Refusal { reason: "TokenSecretMissing", waiting_for: "the Secret", nodes: valid.node_count() };
            refuse(ctx, &cluster, refusal, error.to_string()).await?;
            return Ok(Action::requeue(RECHECK_PROGRESSING));
        }
        Err(error) => return Err(error),
    };
    match restore_first(ctx, &valid).await? {
        None => {}
        Some(Restoring::Waiting(message)) => {
            let nodes = valid.node_count();
            let observed = vec![
                Observed::new(AVAILABLE, false, "Restoring", "no node runs before the backup is restored"),
                Observed::new(PROGRESSING, true, "Restoring", message),
                Observed::new(DEGRADED, false, "Restoring", "the restore is going"),
            ];
            write_status(ctx, &cluster, observed, nodes, 0).await?;
            return Ok(Action::requeue(RECHECK_RESTORE));
        }
        Some(Restoring::Failed(message)) => {
            let refusal = Refusal { reason: "RestoreFailed", waiting_for: "a person", nodes: valid.node_count() };
            refuse(ctx, &cluster, refusal, message).await?;
            return Ok(Action::await_change());
        }
    }
    let rendered = render(&valid, &token);
    let ready = match apply(ctx, &valid, &rendered).await {
        Ok(ready) => ready,
        Err(error @ Error::Rejected { .. }) => {
            let refusal =
                Refusal { reason: "ChangeRejected", waiting_for: "the spec to be fixed", nodes: valid.node_count() };
            refuse(ctx, &cluster, refusal, error.to_string()).await?;
            return Ok(Action::await_change());
        }
        Err(error) => return Err(error),
    };
    let nodes = valid.node_count();
    let available = ready >= nodes;
    let summary = format!("{ready} of {nodes} nodes ready");
    let observed = vec![
        Observed::new(AVAILABLE, available, if available { "AllNodesReady" } else { "NodesNotReady" }, &summary),
        Observed::new(PROGRESSING, !available, if available { "Reconciled" } else { "NodesStarting" }, &summary),
        Observed::new(DEGRADED, false, "Reconciled", "the cluster's objects match the spec"),
    ];
    write_status(ctx, &cluster, observed, nodes, ready).await?;
    Ok(Action::requeue(if available { RECHECK_AVAILABLE } else { RECHECK_PROGRESSING }))
}

/// A reconcile that changes nothing and says why.
struct Refusal {
    reason: &'static str,
    waiting_for: &'static str,
    nodes: i32,
}

/// Publishes the refusal as a Warning Event and writes it as `Degraded`.
async fn refuse(ctx: &Context, cluster: &RanvierCluster, refusal: Refusal, message: String) -> Result<(), Error> {
    ctx.publish(cluster, true, refusal.reason, &message).await;
    let observed = vec![
        Observed::new(AVAILABLE, false, refusal.reason, "nothing was changed"),
        Observed::new(PROGRESSING, false, refusal.reason, format!("waiting for {}", refusal.waiting_for)),
        Observed::new(DEGRADED, true, refusal.reason, message),
    ];
    write_status(ctx, cluster, observed, refusal.nodes, 0).await
}

/// After a failed reconcile: log it with its category and try again soon
/// (sooner the first time, later each time it fails again).
pub fn error_policy(cluster: Arc<RanvierCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    super::retry_later(CONTROLLER, &*cluster, error.category(), error, &ctx)
}

/// The secret material of the nodes (the internal token, and the access
/// tokens when access control is on), read from the Secrets the spec
/// names, else from the operator's own, made with random tokens on first
/// use. A change of it rolls the pods.
async fn secrets(ctx: &Context, cluster: &ValidCluster) -> Result<Vec<u8>, Error> {
    let (name, key) = statefulset::token_ref(cluster);
    let spec = &cluster.resource.spec;
    let mut material = secret_values(ctx, cluster, &name, &[&key], spec.internal_token.is_some()).await?.concat();
    if let Some(tokens) = statefulset::access_tokens_secret(&cluster.resource) {
        let named = spec.access_control.as_ref().is_some_and(|access| access.token_secret.is_some());
        let keys = [names::ACCESS_TOKEN_KEY, names::ADMIN_TOKEN_KEY];
        for value in secret_values(ctx, cluster, &tokens, &keys, named).await? {
            material.push(0);
            material.extend(value);
        }
    }
    Ok(material)
}

/// The values of `keys` in Secret `name`; a Secret the spec does not
/// name (`named` false) is made with a random value per key when missing.
async fn secret_values(
    ctx: &Context,
    cluster: &ValidCluster,
    name: &str,
    keys: &[&str],
    named: bool,
) -> Result<Vec<Vec<u8>>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.namespace);
    let found = secrets.get_opt(name).await.map_err(kube(format!("reading Secret {name}")))?;
    let missing = |key: &str| Error::MissingTokenKey { secret: name.to_owned(), key: key.to_owned() };
    match found {
        Some(secret) => {
            let data = secret.data.unwrap_or_default();
            keys.iter().map(|key| data.get(*key).map(|value| value.0.clone()).ok_or_else(|| missing(key))).collect()
        }
        None if named => Err(missing(keys.first().copied().unwrap_or_default())),
        None => {
            let values = keys.iter().map(|_| random_token()).collect::<Result<Vec<_>, _>>()?;
            let data = keys.iter().map(|key| (*key).to_owned()).zip(values.iter().cloned().map(ByteString)).collect();
            let secret =
                Secret { metadata: meta::of_cluster(cluster, name.to_owned()), data: Some(data), ..Secret::default() };
            secrets.create(&PostParams::default(), &secret).await.map_err(kube(format!("creating Secret {name}")))?;
            Ok(values)
        }
    }
}

/// The administrators' token of `cluster` (`None`: no access control, or
/// its Secret is not there yet), for the operator's own admin calls.
pub async fn admin_token(
    client: &kube::Client,
    cluster: &RanvierCluster,
    namespace: &str,
) -> Result<Option<String>, kube::Error> {
    let Some(name) = statefulset::access_tokens_secret(cluster) else { return Ok(None) };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&name).await?;
    let value = secret.and_then(|s| s.data).and_then(|mut data| data.remove(names::ADMIN_TOKEN_KEY));
    Ok(value.map(|v| String::from_utf8_lossy(&v.0).trim().to_owned()))
}

fn random_token() -> Result<Vec<u8>, Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(Error::Random)?;
    Ok(ranvier_wire::hex(&bytes).into_bytes())
}

/// What a cluster made from a backup waits for before its nodes start.
enum Restoring {
    /// The backups claim, or the restore Job.
    Waiting(String),
    /// The restore Job failed: nothing starts until a person looks.
    Failed(String),
}

/// For a cluster with `bootstrap.fromBackup` whose first StatefulSet does
/// not exist yet: makes the founding node's events claim and the Job that
/// restores the backup into it, and answers what the cluster waits for;
/// `None` once the restore is done (or none was asked for, or the cluster
/// runs already: the bootstrap is read only when the cluster is made).
async fn restore_first(ctx: &Context, cluster: &ValidCluster) -> Result<Option<Restoring>, Error> {
    let Some(from) = cluster.resource.spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()) else {
        return Ok(None);
    };
    let Some(set) = cluster.node_sets().first() else { return Ok(None) };
    let ns = cluster.namespace.as_str();
    let first = names::statefulset(&cluster.name, &set.name);
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    if sets.get_opt(&first).await.map_err(kube(format!("reading StatefulSet {first}")))?.is_some() {
        return Ok(None);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let step = format!("reading PersistentVolumeClaim {}", from.volume_claim);
    if claims.get_opt(&from.volume_claim).await.map_err(kube(step))?.is_none() {
        return Ok(Some(Restoring::Waiting(format!(
            "waiting for PersistentVolumeClaim {} (the backups)",
            from.volume_claim
        ))));
    }
    let Some((data, job)) = backup::restore(cluster, &from.volume_claim, from.backup.as_deref()) else {
        return Ok(None);
    };
    let what = from.backup.clone().unwrap_or_else(|| "the newest backup".to_owned());
    let data_name = data.metadata.name.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let Some(found) = jobs.get_opt(&job_name).await.map_err(kube(format!("reading Job {job_name}")))? else {
        if claims
            .get_opt(&data_name)
            .await
            .map_err(kube(format!("reading PersistentVolumeClaim {data_name}")))?
            .is_none()
        {
            let step = format!("creating PersistentVolumeClaim {data_name}");
            claims.create(&PostParams::default(), &data).await.map_err(kube(step))?;
        }
        jobs.create(&PostParams::default(), &job).await.map_err(kube(format!("creating Job {job_name}")))?;
        let message = format!("Job {job_name} restores {what} of claim {} into {data_name}", from.volume_claim);
        ctx.publish(&cluster.resource, false, "Restoring", &message).await;
        return Ok(Some(Restoring::Waiting(message)));
    };
    Ok(match job_outcome(ctx, ns, &found).await? {
        JobOutcome::Running => Some(Restoring::Waiting(format!("Job {job_name} restores {what} into {data_name}"))),
        JobOutcome::Succeeded { message, .. } => {
            let said = message.unwrap_or_default();
            ctx.publish(&cluster.resource, false, "Restored", &format!("{what} restored into {data_name}. {said}"))
                .await;
            None
        }
        JobOutcome::Failed { message, .. } => {
            Some(Restoring::Failed(format!("the restore Job {job_name} failed: {message}")))
        }
    })
}

/// Applies every object; returns the nodes the StatefulSets report ready.
async fn apply(ctx: &Context, cluster: &ValidCluster, rendered: &Rendered) -> Result<i32, Error> {
    let ns = cluster.namespace.as_str();
    apply_one::<ConfigMap>(ctx, ns, &rendered.config_map).await?;
    apply_one::<Service>(ctx, ns, &rendered.headless).await?;
    apply_one::<Service>(ctx, ns, &rendered.client).await?;
    let mut ready = 0;
    for set in &rendered.statefulsets {
        let applied = apply_one::<StatefulSet>(ctx, ns, set).await?;
        ready += applied.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    }
    if let Some(budget) = &rendered.disruption_budget {
        apply_budget(ctx, cluster, budget).await?;
    }
    Ok(ready)
}

async fn apply_one<K: super::Applicable>(ctx: &Context, namespace: &str, object: &K) -> Result<K, Error> {
    let name = object.meta().name.clone().unwrap_or_default();
    let kind = K::kind(&());
    super::apply(ctx, namespace, object).await.map_err(|source| match source {
        kube::Error::Api(status) if status.code == 422 => {
            Error::Rejected { object: format!("{kind} {name}"), message: status.message }
        }
        source => Error::Kube(KubeCall { step: format!("applying {kind} {name}"), source }),
    })
}

/// `policy/v1`, else `policy/v1beta1` (Kubernetes before 1.21), else an
/// Event saying the cluster runs without a budget.
async fn apply_budget(ctx: &Context, cluster: &ValidCluster, budget: &PodDisruptionBudget) -> Result<(), Error> {
    if apply_served(ctx, &cluster.namespace, budget, "policy/v1beta1").await?.is_none() {
        let message = "this API server serves neither policy/v1 nor policy/v1beta1 PodDisruptionBudgets";
        ctx.publish(&cluster.resource, true, "PodDisruptionBudgetSkipped", message).await;
    }
    Ok(())
}

async fn write_status(
    ctx: &Context,
    cluster: &RanvierCluster,
    observed: Vec<Observed>,
    nodes: i32,
    ready: i32,
) -> Result<(), Error> {
    let previous = cluster.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let generation = cluster.metadata.generation;
    let status = RanvierClusterStatus {
        observed_generation: generation,
        conditions: merge(&previous, observed, generation, Timestamp::now()),
        nodes,
        ready_nodes: ready,
    };
    ctx.write_status(cluster, &status).await.map_err(kube(format!("writing the status of {}", cluster.name_any())))?;
    Ok(())
}
