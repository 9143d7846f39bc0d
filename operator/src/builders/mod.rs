//! Builders: pure functions from a [`ValidCluster`](crate::validate::ValidCluster)
//! to the Kubernetes objects it becomes. They never call the API server, so
//! `ranvier-operator render` and the tests use them as they are.

pub mod backup;
pub mod config;
pub mod meta;
pub mod pdb;
pub mod services;
pub mod statefulset;
