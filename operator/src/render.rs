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
    let properties = config::properties(cluster);
    let hash = config::config_hash(&properties, token);
    let config_map = config::config_map(cluster, properties);
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
    /// The objects as one multi-document YAML text (each carries its own
    /// `apiVersion` and `kind`).
    pub fn to_yaml(&self) -> Result<String, WriteError> {
        let mut out = String::new();
        push(&mut out, &self.config_map)?;
        push(&mut out, &self.headless)?;
        push(&mut out, &self.client)?;
        for set in &self.statefulsets {
            push(&mut out, set)?;
        }
        if let Some(budget) = &self.disruption_budget {
            push(&mut out, budget)?;
        }
        Ok(out)
    }
}

fn push<K: k8s_openapi::Resource + Serialize>(out: &mut String, object: &K) -> Result<(), WriteError> {
    let yaml = serde_saphyr::to_string(object).map_err(|e| WriteError { what: K::KIND, reason: e.to_string() })?;
    out.push_str("---\n");
    out.push_str(&yaml);
    Ok(())
}
