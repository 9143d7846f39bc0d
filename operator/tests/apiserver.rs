//! The RanvierCluster controller against a real API server and controller
//! manager (Kubernetes 1.20, built by `scripts/k8s-env.sh build`): the CRDs
//! install, a cluster manifest becomes its objects with the status written
//! by the status subresource, a PodDisruptionBudget falls back to
//! policy/v1beta1, an invalid edit is refused with its condition and a
//! Warning Event, and deleting the cluster lets the garbage collector
//! remove what the operator made.
//!
//! Without the built control plane the test fails, unless
//! RANVIER_SKIP_K8S_TESTS=1 says to skip it (`make test` reports that loudly).

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use ranvier_crds::RanvierCluster;
use ranvier_operator::controllers::{Context, cluster};

const EXAMPLE: &str = include_str!("../../examples/cluster.yaml");
const NS: &str = "shop";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s-env.sh")
}

/// The control plane of one test, stopped on drop.
struct ControlPlane {
    dir: tempfile::TempDir,
}

impl ControlPlane {
    fn start() -> Option<ControlPlane> {
        let cache = std::env::var("RANVIER_K8S_CACHE").unwrap_or_else(|_| "/var/cache/ranvier-k8s".into());
        if !Path::new(&cache).join("bin/kube-apiserver").exists() {
            if std::env::var("RANVIER_SKIP_K8S_TESTS").as_deref() == Ok("1") {
                eprintln!("SKIPPED: API server test (no control plane built: scripts/k8s-env.sh build)");
                return None;
            }
            panic!("the Kubernetes control plane is not built: run scripts/k8s-env.sh build");
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("bash").arg(script()).arg("start").arg(dir.path()).status().unwrap();
        assert!(status.success(), "the control plane did not start");
        Some(ControlPlane { dir })
    }

    async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.dir.path().join("kubeconfig")).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        Client::try_from(config).unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path()).status();
    }
}

/// Polls `check` every 100 ms until it gives a value, for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_manifest_becomes_its_objects_on_a_real_api_server() {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(plane) = ControlPlane::start() else { return };
    let client = plane.client().await;

    // The CRDs install and become established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ranvier_crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    until(Duration::from_secs(30), "the CRDs to be served", || {
        let api: Api<RanvierCluster> = Api::namespaced(client.clone(), "default");
        async move { api.list(&Default::default()).await.ok() }
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(NS.into()), ..Default::default() },
        ..Default::default()
    };
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();

    // The example manifest, as `kubectl apply -f examples/cluster.yaml` would create it.
    let clusters: Api<RanvierCluster> = Api::namespaced(client.clone(), NS);
    let manifest: RanvierCluster = serde_saphyr::from_str(EXAMPLE).unwrap();
    clusters.create(&PostParams::default(), &manifest).await.unwrap();
    let ctx = Arc::new(Context::new(client.clone(), None));
    let stored = Arc::new(clusters.get("demo").await.unwrap());
    cluster::reconcile(stored, ctx.clone()).await.unwrap();

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let set = sets.get("demo-node").await.unwrap();
    let spec = set.spec.unwrap();
    assert_eq!((spec.replicas, spec.service_name.as_deref()), (Some(3), Some("demo-internal")));
    assert_eq!(set.metadata.owner_references.unwrap()[0].kind, "RanvierCluster");
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let headless = services.get("demo-internal").await.unwrap();
    assert_eq!(headless.spec.unwrap().publish_not_ready_addresses, Some(true));
    services.get("demo").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let properties = maps.get("demo-config").await.unwrap().data.unwrap()["axonserver.properties"].clone();
    assert!(properties.contains("autocluster.first=demo-node-0.demo-internal.shop.svc.cluster.local:8224"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let token = secrets.get("demo-internal-token").await.unwrap();
    assert_eq!(token.data.unwrap()["internal-token"].0.len(), 64);
    // The example turns access control on: the operator made its tokens.
    let tokens = secrets.get("demo-access-tokens").await.unwrap().data.unwrap();
    assert_eq!((tokens["token"].0.len(), tokens["admin-token"].0.len()), (64, 64));
    assert_ne!(tokens["token"], tokens["admin-token"]);
    // Kubernetes 1.20 serves only policy/v1beta1 budgets.
    let budget_resource = ApiResource::from_gvk(&GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"));
    let budgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &budget_resource);
    let budget = budgets.get("demo").await.unwrap();
    assert_eq!(budget.data["spec"]["maxUnavailable"], 1);
    // The real StatefulSet controller makes the pods (no kubelet runs them here).
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    until(Duration::from_secs(30), "the StatefulSet controller to create the pods", || {
        let pods = pods.clone();
        async move { (pods.list(&Default::default()).await.ok()?.items.len() == 3).then_some(()) }
    })
    .await;
    // Status through the status subresource: 0 of 3 ready, not Available.
    let status = clusters.get("demo").await.unwrap().status.unwrap();
    assert_eq!((status.nodes, status.ready_nodes, status.observed_generation), (3, 0, Some(1)));
    let available = status.conditions.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!((available.status.as_str(), available.reason.as_str()), ("False", "NodesNotReady"));

    // Reconciling again changes nothing (server-side apply is idempotent):
    // the StatefulSet's spec generation and the ConfigMap's version stay
    // (the StatefulSet controller's status writes move its own version).
    let generation = || async { sets.get("demo-node").await.unwrap().metadata.generation };
    let config_version = || async { maps.get("demo-config").await.unwrap().metadata.resource_version };
    let before = (generation().await, config_version().await);
    cluster::reconcile(Arc::new(clusters.get("demo").await.unwrap()), ctx.clone()).await.unwrap();
    assert_eq!((generation().await, config_version().await), before);

    // An invalid edit (1.20 ignores CEL) is refused by the operator: nothing
    // changes, the status says why and a Warning Event is written.
    let edit = serde_json::json!({"spec": {"properties": {"axoniq.axonserver.name": "x"}}});
    clusters.patch("demo", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    cluster::reconcile(Arc::new(clusters.get("demo").await.unwrap()), ctx.clone()).await.unwrap();
    assert_eq!((generation().await, config_version().await), before);
    let status = clusters.get("demo").await.unwrap().status.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "InvalidSpec"));
    assert_eq!(status.observed_generation, Some(2));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let warnings = events.list(&Default::default()).await.unwrap().items;
    assert!(warnings.iter().any(|e| e.reason.as_deref() == Some("InvalidSpec")), "{warnings:?}");

    // Deleting the cluster deletes what the operator made.
    clusters.delete("demo", &DeleteParams::background()).await.unwrap();
    until(Duration::from_secs(90), "the garbage collector to remove the owned objects", || {
        let (sets, maps, secrets) = (sets.clone(), maps.clone(), secrets.clone());
        async move {
            let gone = sets.get_opt("demo-node").await.ok()?.is_none()
                && maps.get_opt("demo-config").await.ok()?.is_none()
                && secrets.get_opt("demo-internal-token").await.ok()?.is_none()
                && secrets.get_opt("demo-access-tokens").await.ok()?.is_none();
            gone.then_some(())
        }
    })
    .await;
}
