//! The ConfigMap with every node's `axonserver.properties`, and the hash
//! that rolls the pods when it (or the internal token) changes.
//!
//! Per-pod settings (the node's name and host names) come from the pod's
//! environment (the downward API), so one file serves every node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::meta;
use crate::names;
use crate::validate::ValidCluster;

/// The file name of the properties in the ConfigMap and in the pod.
pub const PROPERTIES_FILE: &str = "axonserver.properties";
/// Where the ConfigMap is mounted in a node's container.
pub const CONFIG_DIR: &str = "/config";
/// Where the events volume is mounted.
pub const EVENTS_DIR: &str = "/data";
/// Where the replication log volume is mounted.
pub const LOG_DIR: &str = "/log";

/// `axonserver.properties` of every node of the cluster, one `key=value`
/// a line, the operator's keys first, then the spec's passthrough entries
/// (sorted).
pub fn properties(cluster: &ValidCluster) -> String {
    let spec = &cluster.resource.spec;
    let mut lines = vec![
        "# Written by ranvier-operator from the RanvierCluster; edit the resource, not this file.".to_owned(),
        format!("axoniq.axonserver.port={}", spec.ports.client),
        format!("server.port={}", spec.ports.http),
        format!("axoniq.axonserver.internal-port={}", spec.ports.internal),
        format!("axoniq.axonserver.event.storage={EVENTS_DIR}/events"),
        format!("axoniq.axonserver.snapshot.storage={EVENTS_DIR}/events"),
        format!("axoniq.axonserver.replication.log-storage-folder={LOG_DIR}"),
    ];
    if let Some(first) = first_node(cluster) {
        lines.push(format!("axoniq.axonserver.autocluster.first={first}:{}", spec.ports.internal));
    }
    if !spec.contexts.is_empty() {
        lines.push(format!("axoniq.axonserver.autocluster.contexts={}", spec.contexts.join(",")));
    }
    for (key, value) in &spec.properties {
        lines.push(format!("{}={}", key.trim(), escape(value)));
    }
    lines.join("\n") + "\n"
}

/// The DNS name of the node that founds the cluster: pod 0 of the first
/// node set.
pub fn first_node(cluster: &ValidCluster) -> Option<String> {
    first_set_nodes(cluster).into_iter().next()
}

/// The DNS names of every pod of the first node set (the founding node's,
/// whose nodes store the contexts), in ordinal order.
pub fn first_set_nodes(cluster: &ValidCluster) -> Vec<String> {
    let Some(set) = cluster.node_sets().first() else { return Vec::new() };
    (0..set.replicas.max(1))
        .map(|ordinal| {
            names::pod_dns(&cluster.name, &names::pod(&cluster.name, &set.name, ordinal), &cluster.namespace)
        })
        .collect()
}

/// A property value as the properties syntax reads it back: backslashes
/// and line breaks escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r")
}

/// The ConfigMap holding `properties` (what [`properties`] rendered).
pub fn config_map(cluster: &ValidCluster, properties: String) -> ConfigMap {
    ConfigMap {
        metadata: meta::of_cluster(cluster, names::config_map(&cluster.name)),
        data: Some(BTreeMap::from([(PROPERTIES_FILE.to_owned(), properties)])),
        ..ConfigMap::default()
    }
}

/// SHA-256 over the rendered properties and the internal token, each
/// length-prefixed (so no two different inputs hash alike), in hex.
pub fn config_hash(properties: &str, token: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [properties.as_bytes(), token] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    ranvier_wire::hex(&hasher.finalize())
}
