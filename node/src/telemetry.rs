//! Logging set-up and the node's metric registry. Every metric family is
//! created here; modules get labelled children (e.g. [`StoreMetrics`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::{StoreKind, StoreMetrics, metrics::fsync_buckets};

/// Labels of store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// The context.
    pub context: String,
    /// `events` or `snapshots`.
    pub store: String,
}

type HistogramFamily = Family<StoreLabels, Histogram, fn() -> Histogram>;

/// The node's metric families.
pub struct Metrics {
    registry: Registry,
    transactions: Family<StoreLabels, Counter>,
    events: Family<StoreLabels, Counter>,
    event_bytes: Family<StoreLabels, Counter>,
    bytes_written: Family<StoreLabels, Counter>,
    fsync_seconds: HistogramFamily,
    segments_closed: Family<StoreLabels, Gauge>,
    commands: CommandMetrics,
    queries: QueryMetrics,
}

/// Labels of one handler client's metrics: a client that reconnects (with
/// the same id) continues its series rather than starting a second one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    /// The context.
    pub context: String,
    /// `command` or `query`.
    pub kind: String,
    /// The client's component.
    pub component: String,
    /// The client's id.
    pub client: String,
}

/// Labels of handler counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The context.
    pub context: String,
    /// `command` or `query`.
    pub kind: String,
}

/// Metrics of the handler clients connected to this node, shared by both
/// buses. A series lives while its client has a stream here.
#[derive(Clone)]
pub struct HandlerMetrics {
    /// Messages a handler answered (commands; queries completed).
    pub answered: Family<HandlerLabels, Counter>,
    /// Time from dispatch to a handler's answer (its queue wait included).
    pub seconds: Family<HandlerLabels, Histogram, fn() -> Histogram>,
    /// Distinct handler clients connected here (not streams).
    pub connected: Family<KindLabels, Gauge>,
}

impl Default for HandlerMetrics {
    fn default() -> Self {
        HandlerMetrics {
            answered: Family::default(),
            seconds: Family::new_with_constructor(command_histogram as fn() -> Histogram),
            connected: Family::default(),
        }
    }
}

/// The query bus's metrics.
#[derive(Clone)]
pub struct QueryMetrics {
    /// Queries dispatched, per context.
    pub dispatched: Family<CommandLabels, Counter>,
    /// Queries that ended with an error raised by the node and no result
    /// (no handler, timeout, duplicate), per context.
    pub failed: Family<CommandLabels, Counter>,
    /// Queries under way now.
    pub active: Gauge,
    /// Time from dispatch to completion, per context.
    pub seconds: Family<CommandLabels, Histogram, fn() -> Histogram>,
    /// The handlers' own metrics.
    pub handlers: HandlerMetrics,
}

/// Labels of command metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The context.
    pub context: String,
}

/// The command bus's metrics.
#[derive(Clone)]
pub struct CommandMetrics {
    /// Commands dispatched, per context.
    pub dispatched: Family<CommandLabels, Counter>,
    /// Commands answered with an error raised by the node (no handler,
    /// handler gone, timeout, duplicate, full queue), per context.
    pub failed: Family<CommandLabels, Counter>,
    /// Dispatches waiting for their answer now.
    pub pending: Gauge,
    /// Time from dispatch to answer, per context.
    pub seconds: Family<CommandLabels, Histogram, fn() -> Histogram>,
    /// The handlers' own metrics.
    pub handlers: HandlerMetrics,
}

/// Buckets of command round trips: 100 µs to about 13 s.
fn command_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_1, 2.0, 18))
}

impl Default for CommandMetrics {
    fn default() -> Self {
        CommandMetrics {
            dispatched: Family::default(),
            failed: Family::default(),
            pending: Gauge::default(),
            seconds: Family::new_with_constructor(command_histogram as fn() -> Histogram),
            handlers: HandlerMetrics::default(),
        }
    }
}

fn fsync_histogram() -> Histogram {
    Histogram::new(fsync_buckets())
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ranvier");
        let commands = CommandMetrics::default();
        let metrics = Self {
            transactions: Family::default(),
            events: Family::default(),
            event_bytes: Family::default(),
            bytes_written: Family::default(),
            fsync_seconds: Family::new_with_constructor(fsync_histogram as fn() -> Histogram),
            segments_closed: Family::default(),
            queries: QueryMetrics {
                dispatched: Family::default(),
                failed: Family::default(),
                active: Gauge::default(),
                seconds: Family::new_with_constructor(command_histogram as fn() -> Histogram),
                // One set of handler families, for both buses.
                handlers: commands.handlers.clone(),
            },
            commands,
            registry: Registry::default(),
        };
        registry.register("append_transactions", "Committed transactions", metrics.transactions.clone());
        registry.register("append_events", "Committed events", metrics.events.clone());
        registry.register("append_event_bytes", "Bytes of committed events", metrics.event_bytes.clone());
        registry.register("segment_bytes_written", "Bytes written to segment files", metrics.bytes_written.clone());
        registry.register("fsync_seconds", "Duration of group-commit fsyncs", metrics.fsync_seconds.clone());
        registry.register("segments_closed", "Closed segment files", metrics.segments_closed.clone());
        registry.register("commands_dispatched", "Commands dispatched", metrics.commands.dispatched.clone());
        registry.register(
            "commands_failed",
            "Commands answered with a node-raised error",
            metrics.commands.failed.clone(),
        );
        registry.register("commands_pending", "Dispatches waiting for their answer", metrics.commands.pending.clone());
        registry.register("command_seconds", "Time from dispatch to answer", metrics.commands.seconds.clone());
        let queries = &metrics.queries;
        registry.register("queries_dispatched", "Queries dispatched", queries.dispatched.clone());
        registry.register("queries_failed", "Queries ended by a node-raised error alone", queries.failed.clone());
        registry.register("queries_active", "Queries under way", queries.active.clone());
        registry.register("query_seconds", "Time from dispatch to completion", queries.seconds.clone());
        let handlers = &metrics.commands.handlers;
        registry.register("handler_answered", "Messages a handler client answered", handlers.answered.clone());
        registry.register("handler_seconds", "Time from dispatch to a handler's answer", handlers.seconds.clone());
        registry.register("handlers_connected", "Distinct handler clients connected here", handlers.connected.clone());
        Self { registry, ..metrics }
    }

    /// The children for one store.
    pub fn store(&self, context: &str, kind: StoreKind) -> StoreMetrics {
        let labels = StoreLabels { context: context.to_owned(), store: kind.name().to_owned() };
        StoreMetrics {
            transactions: self.transactions.get_or_create_owned(&labels),
            events: self.events.get_or_create_owned(&labels),
            event_bytes: self.event_bytes.get_or_create_owned(&labels),
            bytes_written: self.bytes_written.get_or_create_owned(&labels),
            fsync_seconds: self.fsync_seconds.get_or_create_owned(&labels),
            segments_closed: self.segments_closed.get_or_create_owned(&labels),
        }
    }

    /// The command bus's metrics.
    pub fn commands(&self) -> CommandMetrics {
        self.commands.clone()
    }

    /// The query bus's metrics.
    pub fn queries(&self) -> QueryMetrics {
        self.queries.clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the log subscriber: `RANVIER_LOG` (or `RUST_LOG`) filter syntax,
/// default `info`, to stderr.
pub fn init_logging(filter: Option<String>) {
    let filter = filter.unwrap_or_else(|| "info".to_owned());
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(env_filter).with_writer(std::io::stderr).try_init();
}
