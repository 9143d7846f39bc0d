//! The Ranvier Kubernetes operator: controllers that reconcile the custom
//! resources of `ranvier-crds` into StatefulSets, Services, Jobs and CronJobs.
//!
//! Not started: the operator work fills this crate. There is no binary yet,
//! so nothing claims to reconcile anything.
