//! The StatefulSet of one node set: pods that run `ranvier`, named by the
//! pod name, reached by their DNS names under the headless Service, with
//! the properties from the ConfigMap, the internal token from a Secret,
//! an events volume and a replication log volume each.
//!
//! Pods start in parallel: a cluster restarted whole needs a majority of
//! its nodes up before any is ready, so OrderedReady would never start
//! the second pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSpec,
    PodTemplateSpec, Probe, SecretKeySelector, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use ranvier_crds::RanvierCluster;
use ranvier_crds::cluster::{NodeSet, PullPolicy, Storage};

use super::config::{CONFIG_DIR, EVENTS_DIR, LOG_DIR, PROPERTIES_FILE};
use super::meta;
use crate::names;
use crate::validate::ValidCluster;

/// The container's name in every node pod.
pub const CONTAINER: &str = "ranvier";
/// Seconds a stopping node has to commit what it holds.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// The Secret key holding the internal token: the spec's, else the one the
/// operator generates.
pub fn token_ref(cluster: &ValidCluster) -> (String, String) {
    match &cluster.resource.spec.internal_token {
        Some(reference) => (reference.name.clone(), reference.key.clone()),
        None => (names::token_secret(&cluster.name), ranvier_crds::common::default_token_key()),
    }
}

/// The Secret holding the access tokens (keys `token` and `admin-token`)
/// when the spec turns access control on.
pub fn access_tokens_secret(cluster: &RanvierCluster) -> Option<String> {
    let access = cluster.spec.access_control.as_ref()?;
    Some(access.token_secret.clone().unwrap_or_else(|| names::access_tokens_secret(&cluster.name_any())))
}

/// The StatefulSet of `set`; `config_hash` goes into the pod template so
/// that a changed configuration or token rolls the pods.
pub fn statefulset(cluster: &ValidCluster, set: &NodeSet, config_hash: &str) -> StatefulSet {
    let labels = names::node_set_labels(&cluster.name, &set.name);
    StatefulSet {
        metadata: meta::owned(cluster, names::statefulset(&cluster.name, &set.name), labels.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(set.replicas),
            service_name: Some(names::headless_service(&cluster.name)),
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(names::node_set_selector(&cluster.name, &set.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(names::CONFIG_HASH.to_owned(), config_hash.to_owned())])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster, set)),
            },
            volume_claim_templates: Some(vec![claim("events", &set.events_storage), claim("log", &set.log_storage)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(cluster: &ValidCluster, set: &NodeSet) -> PodSpec {
    PodSpec {
        containers: vec![container(cluster, set)],
        volumes: Some(vec![Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&cluster.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        node_selector: (!set.node_selector.is_empty()).then(|| set.node_selector.clone()),
        tolerations: (!set.tolerations.is_empty()).then(|| set.tolerations.clone()),
        affinity: Some(set.affinity.clone().unwrap_or_else(|| spread(cluster, set))),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        ..PodSpec::default()
    }
}

/// Pods of one node set prefer different Kubernetes nodes.
fn spread(cluster: &ValidCluster, set: &NodeSet) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(names::node_set_selector(&cluster.name, &set.name)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn container(cluster: &ValidCluster, set: &NodeSet) -> Container {
    let spec = &cluster.resource.spec;
    let ports = &spec.ports;
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    };
    Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy).to_owned()),
        args: Some(vec!["--config".to_owned(), format!("{CONFIG_DIR}/{PROPERTIES_FILE}")]),
        env: Some(environment(cluster)),
        ports: Some(vec![port("grpc", ports.client), port("http", ports.http), port("internal", ports.internal)]),
        volume_mounts: Some(vec![mount("config", CONFIG_DIR), mount("events", EVENTS_DIR), mount("log", LOG_DIR)]),
        resources: set.resources.clone(),
        // Liveness is the process answering; readiness is cluster
        // membership with every group up (the node's /ready). Start-up
        // (recovery of large stores) gets up to 10 minutes.
        startup_probe: Some(probe("/health", 5, 120)),
        liveness_probe: Some(probe("/health", 10, 6)),
        readiness_probe: Some(probe("/ready", 5, 2)),
        ..Container::default()
    }
}

/// The node's identity from the downward API: its name is the pod's, its
/// host names the pod's DNS name under the headless Service.
fn environment(cluster: &ValidCluster) -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.to_owned(), ..ObjectFieldSelector::default() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let value = |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), ..EnvVar::default() };
    let dns = format!(
        "$(POD_NAME).{}.$(POD_NAMESPACE).svc.{}",
        names::headless_service(&cluster.name),
        names::CLUSTER_DOMAIN
    );
    let (secret, key) = token_ref(cluster);
    let from_secret = |name: &str, secret: String, key: String| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret, key, optional: Some(false) }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut environment = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        value("AXONIQ_AXONSERVER_NAME", "$(POD_NAME)".to_owned()),
        value("AXONIQ_AXONSERVER_HOSTNAME", dns.clone()),
        value("AXONIQ_AXONSERVER_INTERNAL_HOSTNAME", dns),
        from_secret("AXONIQ_AXONSERVER_ACCESSCONTROL_INTERNAL_TOKEN", secret, key),
    ];
    if let Some(tokens) = access_tokens_secret(&cluster.resource) {
        environment.extend([
            value("AXONIQ_AXONSERVER_ACCESSCONTROL_ENABLED", "true".to_owned()),
            from_secret("AXONIQ_AXONSERVER_ACCESSCONTROL_TOKEN", tokens.clone(), names::ACCESS_TOKEN_KEY.to_owned()),
            from_secret("AXONIQ_AXONSERVER_ACCESSCONTROL_ADMIN_TOKEN", tokens, names::ADMIN_TOKEN_KEY.to_owned()),
        ]);
    }
    environment
}

fn probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(3),
        ..Probe::default()
    }
}

/// The pull policy as Kubernetes spells it (default IfNotPresent).
pub fn pull_policy(policy: Option<PullPolicy>) -> &'static str {
    match policy {
        Some(PullPolicy::Always) => "Always",
        Some(PullPolicy::Never) => "Never",
        Some(PullPolicy::IfNotPresent) | None => "IfNotPresent",
    }
}

/// A volume claim (template) named `name` of `storage`'s size and class.
pub fn claim(name: &str, storage: &Storage) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(storage.size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
