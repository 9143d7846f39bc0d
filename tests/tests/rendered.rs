//! Render, then run: the StatefulSet and ConfigMap that `ranvier-operator`
//! builds for `examples/cluster.yaml` are started exactly as a kubelet
//! would start their pods — each container gets its pod name as host name
//! and its DNS name under the headless Service on the network, the
//! container's own arguments, its environment with the downward API and
//! the Secret resolved (and `$(VAR)` expanded, as the kubelet does), and
//! the ConfigMap's file at its mount path. The nodes must form the cluster
//! by autocluster, report ready, and serve appends and reads on every pod.
//!
//! Needs Docker and the `ranvier:test` image, like the partition test.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as PodContainer, EnvVar};
use ranvier_crds::RanvierCluster;
use ranvier_operator::names;
use ranvier_operator::render::render;
use ranvier_operator::validate::validate;
use ranvier_tests::docker::{self, ContainerSpec, DockerCluster};
use ranvier_tests::{event, eventually};

const EXAMPLE: &str = include_str!("../../examples/cluster.yaml");
const NAMESPACE: &str = "shop";
const TOKEN: &str = "rendered-secret";

/// `$(NAME)` references to variables defined before, as the kubelet
/// expands them.
fn expand(text: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in defined {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

/// The container's environment in pod `pod`, resolved.
fn environment(container: &PodContainer, pod: &str) -> Vec<(String, String)> {
    let mut defined = BTreeMap::new();
    let mut out = Vec::new();
    for EnvVar { name, value, value_from } in container.env.clone().unwrap_or_default() {
        let resolved = match (value, value_from) {
            (Some(value), _) => expand(&value, &defined),
            (None, Some(source)) => match (source.field_ref, source.secret_key_ref) {
                (Some(field), _) if field.field_path == "metadata.name" => pod.to_owned(),
                (Some(field), _) if field.field_path == "metadata.namespace" => NAMESPACE.to_owned(),
                (None, Some(secret)) if secret.name == names::token_secret("demo") => TOKEN.to_owned(),
                other => panic!("{name}: a source this test does not play: {other:?}"),
            },
            (None, None) => String::new(),
        };
        defined.insert(name.clone(), resolved.clone());
        out.push((name, resolved));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_statefulset_runs_as_a_cluster() {
    if !docker::required() {
        return;
    }
    let mut cluster: RanvierCluster = serde_saphyr::from_str(EXAMPLE).unwrap();
    // This test plays the pods with the helpers of plain nodes; access
    // control on rendered pods is shown on a real Kubernetes
    // (tests/kubernetes.rs) and by the builder tests.
    cluster.spec.access_control = None;
    let valid = validate(&cluster, NAMESPACE).unwrap();
    let rendered = render(&valid, TOKEN.as_bytes());
    let config = tempfile::tempdir().unwrap();
    for (file, text) in rendered.config_map.data.clone().unwrap() {
        std::fs::write(config.path().join(file), text).unwrap();
    }
    let set = &rendered.statefulsets[0];
    let spec = set.spec.clone().unwrap();
    let pod_spec = spec.template.spec.clone().unwrap();
    let container = &pod_spec.containers[0];
    let config_mount = container.volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "config").unwrap();
    let set_name = &valid.node_sets()[0].name;

    let mut nodes = DockerCluster::empty("rendered").unwrap();
    let replicas = spec.replicas.unwrap();
    for ordinal in 0..replicas {
        let pod = names::pod("demo", set_name, ordinal);
        let spec = ContainerSpec {
            node: pod.clone(),
            hostname: Some(pod.clone()),
            aliases: vec![names::pod_dns("demo", &pod, NAMESPACE)],
            env: environment(container, &pod),
            args: container.args.clone().unwrap_or_default(),
            mounts: vec![(config.path().display().to_string(), config_mount.mount_path.clone())],
            settings: Vec::new(),
        };
        nodes.add(&spec).unwrap();
    }
    for node in &nodes.nodes {
        node.wait_ready().unwrap();
    }
    let nodes = &nodes.nodes;
    for node in nodes {
        eventually(Duration::from_secs(90), "every pod to pass its readiness probe", || async {
            node.readiness().is_some_and(|(code, body)| {
                code == 200
                    && body["replicationGroups"]["default"]["status"] == "UP"
                    && body["replicationGroups"]["orders"]["status"] == "UP"
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}: {:?}\n{}", node.node, node.readiness(), node.logs()));
    }
    assert!(nodes[0].logs().contains("founded the cluster (autocluster)"), "{}", nodes[0].logs());
    eventually(Duration::from_secs(30), "every pod to vote in default", || async { nodes[0].default_voters() == 3 })
        .await
        .unwrap();

    for (seq, node) in nodes.iter().enumerate() {
        let mut client = node.event_store().await.unwrap();
        client.append_event(tokio_stream::iter(vec![event("rendered", seq as i64, 32)])).await.unwrap();
    }
    for node in nodes {
        eventually(Duration::from_secs(10), "every pod to hold the events", || async { node.last_token().await == 2 })
            .await
            .unwrap();
    }
}
