//! The Ranvier Kubernetes operator: turns `RanvierCluster` resources (of
//! `ranvier-crds`) into the objects that run a cluster.
//!
//! Layout: `validate` checks a spec by the same rules as the CRD's CEL (API
//! servers before 1.25 ignore CEL) and yields a `ValidCluster`, the only
//! input of the `builders` (pure functions: ConfigMap, Services,
//! StatefulSets, PodDisruptionBudget); `render` composes them, for the
//! controller and for `ranvier-operator render`; `names` holds every name
//! and label. The controllers that apply them and drive the admin API for
//! `ReplicationGroup` come next; they never depend on the node crate, only
//! on `ranvier-wire` for the admin API's shapes.

pub mod builders;
pub mod conditions;
pub mod controllers;
pub mod names;
pub mod render;
pub mod validate;
