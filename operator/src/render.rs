//! Everything a RanvierCluster becomes, built without an API server: what
//! the controller applies and what `ranvier-operator render` prints.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Serialize;

use crate::builders::{config, pdb, services, statefulset};
use crate::validate::ValidCluster;

/// The objects of one cluster, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `axonserver.properties`.
    pub config_map: ConfigMap,
    /// The headless Service (pod DNS names).
    pub headless: Service,
    /// The client Service.
    pub client: Service,
    /// One per node set, in spec order.
    pub statefulsets: Vec<StatefulSet>,
    /// At most one node down at a time (none for a single node).
    pub disruption_budget: Option<PodDisruptionBudget>,
}

/// Builds the objects of `cluster`; `token` is the internal token's value
/// (it goes into the pods' configuration hash only).
pub fn render(cluster: &ValidCluster, token: &[u8]) -> Rendered {
    let config_map = config::config_map(cluster);
    let hash = config::config_hash(&config::properties(cluster), token);
    Rendered {
        config_map,
        headless: services::headless(cluster),
        client: services::client(cluster),
        statefulsets: cluster.node_sets().iter().map(|set| statefulset::statefulset(cluster, set, &hash)).collect(),
        disruption_budget: pdb::disruption_budget(cluster),
    }
}

/// Why the objects could not be written out.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {what} as YAML: {reason}")]
pub struct WriteError {
    what: &'static str,
    reason: String,
}

impl Rendered {
    /// The objects as one multi-document YAML text, each with its
    /// `apiVersion` and `kind`.
    pub fn to_yaml(&self) -> Result<String, WriteError> {
        let mut out = String::new();
        push(&mut out, "v1", "ConfigMap", &self.config_map)?;
        push(&mut out, "v1", "Service", &self.headless)?;
        push(&mut out, "v1", "Service", &self.client)?;
        for set in &self.statefulsets {
            push(&mut out, "apps/v1", "StatefulSet", set)?;
        }
        if let Some(budget) = &self.disruption_budget {
            push(&mut out, "policy/v1", "PodDisruptionBudget", budget)?;
        }
        Ok(out)
    }
}

fn push(out: &mut String, api_version: &str, kind: &'static str, object: &impl Serialize) -> Result<(), WriteError> {
    let failed = |reason: String| WriteError { what: kind, reason };
    let mut value = serde_json::to_value(object).map_err(|e| failed(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    out.push_str("---\n");
    out.push_str(&serde_saphyr::to_string(&value).map_err(|e| failed(e.to_string()))?);
    Ok(())
}
