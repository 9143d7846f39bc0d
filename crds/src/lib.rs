//! Custom resources of the Ranvier operator, group `ranvier.io`, version
//! `v1alpha1`: `RanvierCluster` (`cluster`), `ReplicationGroup`
//! (`replication_group`), `Backup` and `BackupSchedule` (`backup`), with
//! their shared pieces (`common`). Doc comments
//! on spec fields are what `kubectl explain` shows.
//!
//! Rules that a schema can hold are in it (enums, minimums, CEL rules for
//! API servers that evaluate them); the operator checks the same rules
//! itself, because older API servers ignore CEL.
//!
//! The CRD YAML is generated from these types ([`crd_yaml`]) and committed
//! as `crds/yaml/crds.yaml` (and in the operator's chart); a test fails when
//! the committed file drifts from the types.

// kube's `printcolumn(name = …, type_ = …)` repeats `type_ = "string"` across
// columns, which clippy reads as a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod backup;
pub mod cluster;
pub mod common;
pub mod replication_group;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use backup::{Backup, BackupSchedule, BackupScheduleSpec, BackupScheduleStatus, BackupSpec, BackupStatus};
pub use cluster::{RanvierCluster, RanvierClusterSpec, RanvierClusterStatus};
pub use replication_group::{ReplicationGroup, ReplicationGroupSpec, ReplicationGroupStatus};

/// The API group of every Ranvier resource.
pub const GROUP: &str = "ranvier.io";

/// Why the CRD YAML could not be written.
#[derive(Debug)]
pub struct YamlError(String);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed to write the CRD YAML: {}", self.0)
    }
}

impl std::error::Error for YamlError {}

/// Every CustomResourceDefinition of the operator.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![RanvierCluster::crd(), ReplicationGroup::crd(), Backup::crd(), BackupSchedule::crd()]
}

/// The CRDs as one multi-document YAML file.
pub fn crd_yaml() -> Result<String, YamlError> {
    yaml_of(crds().into_iter().map(|crd| serde_json::to_value(crd).map_err(|e| YamlError(e.to_string()))))
}

/// The CRDs without their CEL rules, for API servers before 1.25: their
/// schema knows no `x-kubernetes-validations`, and clients that validate
/// against it (helm) refuse the field. The operator checks the same rules.
pub fn crd_yaml_without_cel() -> Result<String, YamlError> {
    yaml_of(crds().into_iter().map(|crd| {
        let mut value = serde_json::to_value(crd).map_err(|e| YamlError(e.to_string()))?;
        strip_cel(&mut value);
        Ok(value)
    }))
}

fn yaml_of(crds: impl Iterator<Item = Result<serde_json::Value, YamlError>>) -> Result<String, YamlError> {
    let mut out = String::from("# Generated from the ranvier-crds types by `make crds`: do not edit.\n");
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd?).map_err(|e| YamlError(e.to_string()))?);
    }
    Ok(out)
}

fn strip_cel(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(strip_cel);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_cel),
        _ => {}
    }
}
