//! The Ranvier Kubernetes operator: turns `RanvierCluster` resources (of
//! `ranvier-crds`) into the objects that run a cluster, `ReplicationGroup`s
//! into roles, and `Backup` / `BackupSchedule` into Jobs and CronJobs that
//! run `ranvierctl backup`.
//!
//! Layout: `validate` checks a spec by the same rules as the CRD's CEL (API
//! servers before 1.25 ignore CEL) and yields a `ValidCluster`, the only
//! input of the `builders` (pure functions: ConfigMap, Services,
//! StatefulSets, PodDisruptionBudget; the backup and restore Jobs and the
//! schedule's CronJob); `render` composes a cluster's, for the controller
//! and for `ranvier-operator render`; `names` holds every name and label;
//! `conditions` merges status conditions. `controllers` holds the
//! RanvierCluster controller (restoring a backup first when asked), the
//! ReplicationGroup controller with its planner (desired roles to ordered
//! admin calls), and the Backup and BackupSchedule controllers; `admin_client` calls
//! a node's admin REST API; `metrics` counts reconciles and failures by
//! category, which `serve` exposes with the health endpoints. Nothing here depends on the node crate: the admin API's shapes
//! come from `ranvier-wire`.

pub mod admin_client;
pub mod builders;
pub mod conditions;
pub mod controllers;
pub mod metrics;
pub mod names;
pub mod render;
pub mod serve;
pub mod validate;
