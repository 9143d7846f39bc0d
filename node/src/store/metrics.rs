//! The metrics one store updates. They are children of the node's metric
//! families (see `crate::telemetry`), labelled with context and store kind.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Metrics of one store (a context's events or its snapshots).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// Committed transactions.
    pub transactions: Counter,
    /// Committed events.
    pub events: Counter,
    /// Bytes of committed events (as sent by clients).
    pub event_bytes: Counter,
    /// Bytes written to segment files (framing included).
    pub bytes_written: Counter,
    /// Duration of each group commit's fdatasync, in seconds.
    pub fsync_seconds: Histogram,
    /// Closed segments on disk (there is always one active segment besides).
    pub segments_closed: Gauge,
}

impl StoreMetrics {
    /// Metrics registered nowhere (tests, tools).
    pub fn detached() -> Self {
        Self {
            transactions: Counter::default(),
            events: Counter::default(),
            event_bytes: Counter::default(),
            bytes_written: Counter::default(),
            fsync_seconds: Histogram::new(fsync_buckets()),
            segments_closed: Gauge::default(),
        }
    }
}

/// Histogram buckets for fsync latency: 50 µs to about 1.6 s.
pub fn fsync_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16)
}
