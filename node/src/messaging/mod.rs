//! Messaging: Ranvier as a message router for commands and queries, per
//! context, and the relay of event-processor instructions to the
//! applications.
//!
//! - `commands`: the command bus of this node (subscriptions, routing by a
//!   weighted consistent-hash `ring`, permits, bounded queues, one answer
//!   per dispatch).
//! - `queries`: the query bus (one handler per component, fan-out,
//!   streaming queries); `subscriptions`: subscription queries.
//! - `processors`: the event processors clients report, and the pause,
//!   start, split and merge instructions relayed to them.
//! - `peers`: the same across the cluster, over the node's `transport`
//!   (handler announcements, forwarded commands, queries, subscriptions
//!   and processor instructions).
//!
//! The client API (`api::grpc::{command, query, platform}`) speaks the
//! Axon protocol on top of these.

/// A future another node answers (forwarded calls).
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// What a handler's stream sends next.
#[derive(Debug)]
pub enum Next<T> {
    /// This message (a permit was used for it).
    Send(Box<T>),
    /// Nothing now: wait to be woken.
    Wait,
    /// The handler is gone.
    Closed,
}

/// An error this node raises for a message (its location is the node).
pub fn node_error(node: &str, code: ranvier_wire::ErrorCode, message: String) -> ranvier_proto::common::ErrorMessage {
    ranvier_proto::common::ErrorMessage {
        message,
        location: node.to_owned(),
        details: vec![],
        error_code: code.as_str().to_owned(),
    }
}

/// The metric series of one handler client, per kind (`command`,
/// `query`): keyed by client id, so streams of one client (a reconnect)
/// share them.
pub(crate) struct HandlerSeries<'a> {
    metrics: &'a crate::telemetry::HandlerMetrics,
    kind: &'static str,
}

impl<'a> HandlerSeries<'a> {
    pub(crate) fn new(metrics: &'a crate::telemetry::HandlerMetrics, kind: &'static str) -> Self {
        HandlerSeries { metrics, kind }
    }

    fn labels(&self, context: &str, component: &str, client: &str) -> crate::telemetry::HandlerLabels {
        crate::telemetry::HandlerLabels {
            context: context.to_owned(),
            kind: self.kind.to_owned(),
            component: component.to_owned(),
            client: client.to_owned(),
        }
    }

    /// The series of one client, to keep with its stream (so that an
    /// answer costs no lookup).
    pub(crate) fn of(&self, context: &str, component: &str, client: &str) -> Answered {
        let labels = self.labels(context, component, client);
        Answered {
            count: self.metrics.answered.get_or_create_owned(&labels),
            seconds: self.metrics.seconds.get_or_create_owned(&labels),
        }
    }

    /// The clients of `context` with a stream here now are `clients`; the
    /// series of `left` (a client whose stream ended) go unless it is
    /// still among them.
    pub(crate) fn recount<'c>(
        &self,
        context: &str,
        clients: impl Iterator<Item = &'c str>,
        left: Option<(&str, &str)>,
    ) {
        let clients: std::collections::BTreeSet<&str> = clients.filter(|c| !c.is_empty()).collect();
        let kind = crate::telemetry::KindLabels { context: context.to_owned(), kind: self.kind.to_owned() };
        self.metrics.connected.get_or_create(&kind).set(i64::try_from(clients.len()).unwrap_or(i64::MAX));
        if let Some((component, client)) = left.filter(|(_, client)| !clients.contains(client)) {
            let labels = self.labels(context, component, client);
            self.metrics.answered.remove(&labels);
            self.metrics.seconds.remove(&labels);
        }
    }
}

/// One handler client's answer counter and latency histogram.
#[derive(Clone)]
pub(crate) struct Answered {
    count: prometheus_client::metrics::counter::Counter,
    seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Answered {
    /// The client answered a message dispatched `since`.
    pub(crate) fn answered(&self, since: std::time::Instant) {
        self.count.inc();
        self.seconds.observe(since.elapsed().as_secs_f64());
    }
}

/// The components with handlers in `context`, from both buses (GET
/// `/v1/components`).
pub fn components(
    commands: &commands::CommandBus,
    queries: &queries::QueryBus,
    context: &str,
) -> Vec<ranvier_wire::admin::ComponentListing> {
    use std::collections::BTreeMap;
    let mut by_name: BTreeMap<String, ranvier_wire::admin::ComponentListing> = BTreeMap::new();
    fn entry<'a>(
        by_name: &'a mut BTreeMap<String, ranvier_wire::admin::ComponentListing>,
        component: &str,
    ) -> &'a mut ranvier_wire::admin::ComponentListing {
        by_name.entry(component.to_owned()).or_insert_with(|| ranvier_wire::admin::ComponentListing {
            component: component.to_owned(),
            ..Default::default()
        })
    }
    for (node, client, component, command, load) in commands.handlers_of(context) {
        let listing = entry(&mut by_name, &component);
        listing.commands.insert(command, load);
        let clients = listing.clients.entry(node).or_default();
        if !clients.contains(&client) {
            clients.push(client);
        }
    }
    for (node, component, query) in queries.handlers_of(context) {
        let listing = entry(&mut by_name, &component);
        if !listing.queries.contains(&query) {
            listing.queries.push(query);
        }
        if let Some(node) = node {
            listing.clients.entry(node).or_default();
        }
    }
    by_name.into_values().collect()
}

pub mod commands;
pub mod peers;
pub mod processors;
pub mod queries;
pub mod ring;
pub mod subscriptions;
