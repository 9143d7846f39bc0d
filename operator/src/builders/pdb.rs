//! The PodDisruptionBudget: at most one node of the cluster down by
//! voluntary disruption (a drain), so a majority of voters stays. A
//! single-node cluster gets none, so that a drain can still go on.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta;
use crate::names;
use crate::validate::ValidCluster;

/// The budget, or `None` for a cluster of fewer than two nodes.
pub fn disruption_budget(cluster: &ValidCluster) -> Option<PodDisruptionBudget> {
    if cluster.node_count() < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: meta::of_cluster(cluster, names::disruption_budget(&cluster.name)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(names::cluster_selector(&cluster.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
