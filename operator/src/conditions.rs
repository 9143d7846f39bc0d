//! Status conditions: each reconcile states every condition type anew, and
//! a condition keeps its `lastTransitionTime` while its status does not
//! change (so `kubectl get` shows how long a cluster has been Available).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// One condition as a reconcile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `Available`, `Progressing` or `Degraded`.
    pub type_: &'static str,
    /// Whether it holds.
    pub holds: bool,
    /// PascalCase reason.
    pub reason: String,
    /// For a person.
    pub message: String,
}

impl Observed {
    /// A condition that holds or not, with its reason and message.
    pub fn new(type_: &'static str, holds: bool, reason: &str, message: impl Into<String>) -> Self {
        Observed { type_, holds, reason: reason.to_owned(), message: message.into() }
    }
}

/// The conditions to write: `observed` in order, each keeping the
/// transition time of the `previous` condition of its type when its status
/// is unchanged, else stamped `now`.
pub fn merge(
    previous: &[Condition],
    observed: Vec<Observed>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|o| {
            let status = if o.holds { "True" } else { "False" }.to_owned();
            let since = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map_or(Time(now), |p| p.last_transition_time.clone());
            Condition {
                type_: o.type_.to_owned(),
                status,
                reason: o.reason,
                message: o.message,
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let t0 = Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let t1 = Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let first = merge(&[], vec![Observed::new("Available", false, "Starting", "0/3 ready")], Some(1), t0);
        assert_eq!(first[0].last_transition_time, Time(t0));
        let same = merge(&first, vec![Observed::new("Available", false, "Starting", "1/3 ready")], Some(1), t1);
        assert_eq!((same[0].last_transition_time.clone(), same[0].message.as_str()), (Time(t0), "1/3 ready"));
        let flipped = merge(&same, vec![Observed::new("Available", true, "AllNodesReady", "3/3")], Some(2), t1);
        assert_eq!((flipped[0].status.as_str(), flipped[0].last_transition_time.clone()), ("True", Time(t1)));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }
}
