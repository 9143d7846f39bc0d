//! The operator's own metrics: reconciles and failed reconciles per
//! controller, failures by a stable category, in Prometheus' text format.
//! The label values are fixed strings of the code, so the set of series is
//! bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counters since the operator started.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    reconciles: BTreeMap<&'static str, u64>,
    failures: BTreeMap<(&'static str, &'static str), u64>,
}

impl Metrics {
    /// A reconcile of `controller` began.
    pub fn reconciled(&self, controller: &'static str) {
        *self.lock().reconciles.entry(controller).or_default() += 1;
    }

    /// A reconcile of `controller` failed with an error of `category`.
    pub fn failed(&self, controller: &'static str, category: &'static str) {
        *self.lock().failures.entry((controller, category)).or_default() += 1;
    }

    /// Failures of `controller` in `category` so far.
    pub fn failures(&self, controller: &str, category: &str) -> u64 {
        let counters = self.lock();
        counters.failures.iter().filter(|((c, k), _)| *c == controller && *k == category).map(|(_, n)| *n).sum()
    }

    /// Every counter in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let counters = self.lock();
        let mut out = String::new();
        out.push_str("# HELP ranvier_operator_reconciles_total Reconciles begun, by controller.\n");
        out.push_str("# TYPE ranvier_operator_reconciles_total counter\n");
        for (controller, n) in &counters.reconciles {
            let _ = writeln!(out, "ranvier_operator_reconciles_total{{controller=\"{controller}\"}} {n}");
        }
        out.push_str("# HELP ranvier_operator_reconcile_failures_total Failed reconciles, by controller and cause.\n");
        out.push_str("# TYPE ranvier_operator_reconcile_failures_total counter\n");
        for ((controller, category), n) in &counters.failures {
            let _ = writeln!(
                out,
                "ranvier_operator_reconcile_failures_total{{controller=\"{controller}\",category=\"{category}\"}} {n}"
            );
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        // A panic while counting cannot leave a counter half-written.
        self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_controller_and_category() {
        let metrics = Metrics::default();
        metrics.reconciled("ranviercluster");
        metrics.reconciled("ranviercluster");
        metrics.failed("replicationgroup", "admin_unreachable");
        metrics.failed("replicationgroup", "admin_unreachable");
        metrics.failed("ranviercluster", "kube_api");
        assert_eq!(metrics.failures("replicationgroup", "admin_unreachable"), 2);
        assert_eq!(metrics.failures("replicationgroup", "kube_api"), 0);
        let text = metrics.render();
        assert!(text.contains("ranvier_operator_reconciles_total{controller=\"ranviercluster\"} 2\n"), "{text}");
        assert!(
            text.contains(
                "ranvier_operator_reconcile_failures_total{controller=\"replicationgroup\",category=\"admin_unreachable\"} 2\n"
            ),
            "{text}"
        );
    }
}
