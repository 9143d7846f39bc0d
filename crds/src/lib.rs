//! Custom resource types for the Ranvier operator (`RanvierCluster`,
//! `ReplicationGroup`, `Backup`, `BackupSchedule`).
//!
//! Not started: the operator work fills this crate (kube + schemars types and
//! the generated CRD YAML). It holds no types yet, so nothing can depend on a
//! resource shape that has not been designed.
