//! The ReplicationGroup controller's decisions: which admin API calls
//! bring a group from what the cluster reports to what the spec asks
//! (`plan`), and whether each step keeps the group available. Pure: the
//! controller that reads the cluster and makes the calls comes next.

pub mod plan;
