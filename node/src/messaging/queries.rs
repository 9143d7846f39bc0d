//! The query bus of one node: handler clients subscribe to query names per
//! context; a query goes to one handler of each component that handles
//! it (round-robin within a component), every response streams back to
//! the caller, and the query completes when every chosen handler has said
//! so (`query_complete`), or on timeout.
//!
//! - **Flow control**: a handler receives a query only against a permit it
//!   granted; until then its queries wait in its queue, at most
//!   `command-queue-capacity-per-client` of them (one more is AXONIQ-1900
//!   for that handler).
//! - **Answers**: successful responses are passed on as they come; error
//!   responses are held back and passed on only if no handler succeeded.
//!   No handler: one AXONIQ-5000 response, then the stream completes.
//!   Duplicate id in flight: AXONIQ-5007. No completion within the TIMEOUT
//!   instruction or `default-query-timeout`: AXONIQ-5006, then complete.
//!   A handler that leaves counts as complete, with a held AXONIQ-5002.
//! - **Streaming queries**: a caller that sets `CLIENT_SUPPORTS_STREAMING`
//!   gets one handler, told `SERVER_SUPPORTS_STREAMING=true`; it sends
//!   results only against the caller's demand (`query_flow_control`: the
//!   caller's buffer at first, then what the caller has taken), and a
//!   caller that goes away before the end sends it `query_cancel`. Other
//!   queries go out with `SERVER_SUPPORTS_STREAMING=false` and are answered
//!   whole.
//! - Every caller's stream is bounded: a slow caller slows the handlers'
//!   streams that answer it, instead of the node buffering without limit.
//!   A caller that goes away ends its query at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ranvier_proto::common::meta_data_value::Data;
use ranvier_proto::common::{MetaDataValue, ProcessingInstruction, ProcessingKey};
use ranvier_proto::query::{
    QueryFlowControl, QueryReference, QueryRequest, QueryResponse, QuerySubscription, SubscriptionQueryRequest,
};
use ranvier_wire::ErrorCode;
use tokio::sync::{Notify, mpsc, watch};

use crate::telemetry::{CommandLabels, QueryMetrics};

/// The bus's limits.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Queries waiting for one handler's permits, at most.
    pub queue_per_client: usize,
    /// How long a query may take without a TIMEOUT instruction.
    pub default_timeout: Duration,
}

/// Responses buffered towards one caller.
const CALLER_BUFFER: usize = 32;

/// One handler client's query stream.
pub type HandlerId = u64;

/// What a handler's stream sends next.
pub type Next = super::Next<Outgoing>;

/// A message for a handler.
#[derive(Debug)]
pub enum Outgoing {
    /// A query (sent against a permit).
    Query(QueryRequest),
    /// A subscription query's subscribe or unsubscribe (sent at once).
    Subscription(SubscriptionQueryRequest),
    /// More results wanted by a streaming query's caller (sent at once).
    Flow(QueryFlowControl),
    /// A streaming query's caller went away (sent at once).
    Cancel(QueryReference),
}

/// Control messages (subscription queries, a streaming query's flow
/// control and cancel) waiting for one handler, at most.
const CONTROL_QUEUE_MAX: usize = 10_000;

struct Handler {
    context: String,
    component: String,
    /// The client's id (for its metrics).
    client_id: String,
    /// Its client's metric series, once it subscribed (handlers here only).
    series: Option<super::Answered>,
    /// A node whose handlers of this component stand behind this entry
    /// (queries go there instead of into a queue).
    remote: Option<String>,
    permits: i64,
    queue: VecDeque<QueryRequest>,
    /// Control messages, sent before queries and without permits.
    control: VecDeque<Outgoing>,
    /// Query names it handles.
    queries: BTreeSet<String>,
    wake: Arc<Notify>,
}

/// A query under way.
struct Active {
    /// Tells this query from an earlier one with the same id.
    serial: u64,
    /// The caller takes results as a stream, as it asks for them.
    streaming: bool,
    /// Chosen handlers that have not completed.
    waiting: BTreeSet<HandlerId>,
    caller: mpsc::Sender<QueryResponse>,
    /// Error responses held until the end.
    errors: Vec<QueryResponse>,
    succeeded: bool,
    /// Dropped with the query, however it ends: its timer and forwards
    /// stop then.
    _over: watch::Sender<()>,
    /// When it was dispatched.
    started: std::time::Instant,
}

#[derive(Default)]
struct State {
    next_handler: HandlerId,
    next_message: u64,
    next_serial: u64,
    handlers: HashMap<HandlerId, Handler>,
    /// (context, query name) → its handlers.
    routes: HashMap<(String, String), BTreeSet<HandlerId>>,
    /// (context, query name, component) → the next handler's turn.
    turns: HashMap<(String, String, String), usize>,
    /// (context, request id) → the query under way.
    active: HashMap<(String, String), Active>,
}

/// Sends a query to another node's handlers of one component; streams
/// their responses until they complete.
pub trait QueryForwarder: Send + Sync {
    /// Dispatches `request` of `context` to `node`'s handlers of `component`.
    fn forward(
        &self,
        node: &str,
        context: &str,
        component: &str,
        request: QueryRequest,
        timeout: Duration,
    ) -> mpsc::Receiver<Result<QueryResponse, String>>;
}

/// One query handler (a component) as another node announced it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteQueryHandler {
    /// Its context.
    pub context: String,
    /// The query name.
    pub query: String,
    /// Its component.
    pub component: String,
}

/// The query bus.
pub struct QueryBus {
    node: String,
    limits: QueryLimits,
    metrics: QueryMetrics,
    state: Mutex<State>,
    forwarder: Option<Arc<dyn QueryForwarder>>,
    /// Woken when this node's own handlers change (for announcing them).
    changed: Notify,
}

fn number(request: &QueryRequest, key: ProcessingKey) -> Option<i64> {
    request.processing_instructions.iter().find(|i| i.key == key as i32).and_then(|i| match i.value.as_ref()?.data {
        Some(Data::NumberValue(n)) => Some(n),
        _ => None,
    })
}

/// A boolean processing instruction; absent is false.
fn boolean(request: &QueryRequest, key: ProcessingKey) -> bool {
    request.processing_instructions.iter().any(|i| {
        i.key == key as i32 && matches!(i.value.as_ref().and_then(|v| v.data.as_ref()), Some(Data::BooleanValue(true)))
    })
}

impl QueryBus {
    /// An empty bus on node `node` (the location of its errors).
    pub fn new(node: impl Into<String>, limits: QueryLimits, metrics: QueryMetrics) -> Self {
        QueryBus {
            node: node.into(),
            limits,
            metrics,
            state: Mutex::new(State::default()),
            forwarder: None,
            changed: Notify::new(),
        }
    }

    fn series(&self) -> super::HandlerSeries<'_> {
        super::HandlerSeries::new(&self.metrics.handlers, "query")
    }

    /// Counts this node's query clients of `context` again; `left` is the
    /// client whose stream just ended.
    fn recount(&self, state: &State, context: &str, left: Option<(&str, &str)>) {
        let clients = state
            .handlers
            .values()
            .filter(|h| h.context == context && h.remote.is_none())
            .map(|h| h.client_id.as_str());
        self.series().recount(context, clients, left);
    }

    /// `active`, of `context`, has ended (it is out of the state).
    fn ended(&self, state: &State, context: &str, active: &Active, timed_out: bool) {
        let labels = CommandLabels { context: context.to_owned() };
        self.metrics.seconds.get_or_create(&labels).observe(active.started.elapsed().as_secs_f64());
        self.metrics.active.set(i64::try_from(state.active.len()).unwrap_or(i64::MAX));
        let ours = |e: &QueryResponse| e.error_message.as_ref().is_some_and(|m| m.location == self.node);
        if !active.succeeded && (timed_out || active.errors.iter().any(ours)) {
            self.metrics.failed.get_or_create(&labels).inc();
        }
    }

    /// The same bus, reaching other nodes' handlers through `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Arc<dyn QueryForwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    /// Woken whenever this node's own handlers change.
    pub fn local_changes(&self) -> &Notify {
        &self.changed
    }

    /// This node's own handlers, one entry per (context, query, component).
    pub fn local_handlers(&self) -> Vec<RemoteQueryHandler> {
        let state = self.lock();
        let mut out: BTreeSet<RemoteQueryHandler> = BTreeSet::new();
        for h in state.handlers.values().filter(|h| h.remote.is_none()) {
            for query in &h.queries {
                out.insert(RemoteQueryHandler {
                    context: h.context.clone(),
                    query: query.clone(),
                    component: h.component.clone(),
                });
            }
        }
        out.into_iter().collect()
    }

    /// What `node` announced replaces what it had: one entry per
    /// (context, query, component) it has handlers of.
    pub async fn apply_remote(&self, node: &str, handlers: Vec<RemoteQueryHandler>) {
        let (stale, known): (Vec<HandlerId>, BTreeSet<RemoteQueryHandler>) = {
            let state = self.lock();
            let stale: Vec<HandlerId> =
                state.handlers.iter().filter(|(_, h)| h.remote.as_deref() == Some(node)).map(|(id, _)| *id).collect();
            let known = stale
                .iter()
                .filter_map(|id| state.handlers.get(id))
                .flat_map(|h| {
                    h.queries.iter().map(|q| RemoteQueryHandler {
                        context: h.context.clone(),
                        query: q.clone(),
                        component: h.component.clone(),
                    })
                })
                .collect();
            (stale, known)
        };
        let wanted: BTreeSet<RemoteQueryHandler> = handlers.into_iter().collect();
        if wanted == known {
            return;
        }
        for id in stale {
            self.disconnect(id).await;
        }
        let mut state = self.lock();
        for handler in wanted {
            state.next_handler += 1;
            let id = state.next_handler;
            let key = (handler.context.clone(), handler.query.clone());
            state.handlers.insert(
                id,
                Handler {
                    context: handler.context,
                    component: handler.component,
                    client_id: String::new(),
                    series: None,
                    remote: Some(node.to_owned()),
                    permits: 0,
                    queue: VecDeque::new(),
                    control: VecDeque::new(),
                    queries: BTreeSet::from([handler.query]),
                    wake: Arc::new(Notify::new()),
                },
            );
            state.routes.entry(key).or_default().insert(id);
        }
    }

    /// Forgets the handlers of every node but `alive` (the others stopped
    /// announcing): queries waiting for them end with 5002.
    pub async fn keep_remote(&self, alive: &BTreeSet<String>) {
        let gone: Vec<HandlerId> = {
            let state = self.lock();
            state
                .handlers
                .iter()
                .filter(|(_, h)| h.remote.as_ref().is_some_and(|node| !alive.contains(node)))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in gone {
            self.disconnect(id).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new handler stream of `context`, and what wakes it.
    pub fn connect(&self, context: &str) -> (HandlerId, Arc<Notify>) {
        let mut state = self.lock();
        state.next_handler += 1;
        let id = state.next_handler;
        let wake = Arc::new(Notify::new());
        let handler = Handler {
            context: context.to_owned(),
            component: String::new(),
            client_id: String::new(),
            series: None,
            remote: None,
            permits: 0,
            queue: VecDeque::new(),
            control: VecDeque::new(),
            queries: BTreeSet::new(),
            wake: wake.clone(),
        };
        state.handlers.insert(id, handler);
        (id, wake)
    }

    /// `handler` handles `subscription.query`.
    pub fn subscribe(&self, handler: HandlerId, subscription: &QuerySubscription) {
        let mut state = self.lock();
        let Some(h) = state.handlers.get_mut(&handler) else { return };
        let component = if subscription.component_name.is_empty() {
            subscription.client_id.clone()
        } else {
            subscription.component_name.clone()
        };
        h.component = component;
        h.client_id.clone_from(&subscription.client_id);
        h.series = Some(self.series().of(&h.context, &h.component, &h.client_id));
        h.queries.insert(subscription.query.clone());
        let key = (h.context.clone(), subscription.query.clone());
        state.routes.entry(key.clone()).or_default().insert(handler);
        self.recount(&state, &key.0, None);
        self.changed.notify_one();
    }

    /// `handler` no longer handles `subscription.query`.
    pub fn unsubscribe(&self, handler: HandlerId, subscription: &QuerySubscription) {
        let mut state = self.lock();
        let Some(h) = state.handlers.get_mut(&handler) else { return };
        h.queries.remove(&subscription.query);
        let key = (h.context.clone(), subscription.query.clone());
        leave(&mut state, key, handler);
        self.changed.notify_one();
    }

    /// `handler` may receive `permits` more queries.
    pub fn grant(&self, handler: HandlerId, permits: i64) {
        let mut state = self.lock();
        if let Some(h) = state.handlers.get_mut(&handler) {
            h.permits = h.permits.saturating_add(permits.max(0));
            h.wake.notify_one();
        }
    }

    /// The next query for `handler` when it has one and a permit for it.
    pub fn next_for(&self, handler: HandlerId) -> Next {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(h) = state.handlers.get_mut(&handler) else { return Next::Closed };
        if let Some(control) = h.control.pop_front() {
            return Next::Send(Box::new(control));
        }
        while h.permits > 0 {
            let Some(request) = h.queue.pop_front() else { return Next::Wait };
            // A query that ended (timed out, or its caller left) is not sent.
            let key = (h.context.clone(), request.message_identifier.clone());
            let Some(active) = state.active.get(&key).filter(|a| a.waiting.contains(&handler)) else { continue };
            h.permits -= 1;
            if active.streaming {
                // The caller's buffer is its first demand; it follows the query.
                h.control.push_front(flow(&request.message_identifier, CALLER_BUFFER as i64));
            }
            return Next::Send(Box::new(Outgoing::Query(request)));
        }
        Next::Wait
    }

    /// A response of `handler` to a query it received: passed on to the
    /// caller (an error is held back until the end).
    pub async fn respond(&self, handler: HandlerId, response: QueryResponse) {
        let caller = {
            let mut state = self.lock();
            let Some(context) = state.handlers.get(&handler).map(|h| h.context.clone()) else { return };
            let key = (context, response.request_identifier.clone());
            let Some(active) = state.active.get_mut(&key) else { return };
            if !active.waiting.contains(&handler) {
                return;
            }
            if !response.error_code.is_empty() {
                active.errors.push(response);
                return;
            }
            active.succeeded = true;
            active.caller.clone()
        };
        // Outside the lock: a slow caller slows this handler's stream only.
        let _ = caller.send(response).await;
    }

    /// `handler` has sent everything for `request_id`.
    pub async fn complete(&self, handler: HandlerId, request_id: &str) {
        let finished = {
            let mut state = self.lock();
            let Some(context) = state.handlers.get(&handler).map(|h| h.context.clone()) else { return };
            let key = (context, request_id.to_owned());
            finish_one(self, &mut state, &key, handler)
        };
        if let Some((caller, errors)) = finished {
            for error in errors {
                let _ = caller.send(error).await;
            }
        }
    }

    /// `handler`'s stream ended: it leaves every route, and every query
    /// waiting for it counts it as complete (with a held AXONIQ-5002).
    pub async fn disconnect(&self, handler: HandlerId) {
        let mut finished = Vec::new();
        {
            let mut state = self.lock();
            let Some(gone) = state.handlers.remove(&handler) else { return };
            gone.wake.notify_one();
            if gone.remote.is_none() {
                self.recount(&state, &gone.context, Some((&gone.component, &gone.client_id)));
                self.changed.notify_one();
            }
            for query in &gone.queries {
                leave(&mut state, (gone.context.clone(), query.clone()), handler);
            }
            let waiting: Vec<(String, String)> =
                state.active.iter().filter(|(_, a)| a.waiting.contains(&handler)).map(|(k, _)| k.clone()).collect();
            for key in waiting {
                let message = format!("the handler of query {} disconnected", key.1);
                let error = self.error(&mut state, &key.1, ErrorCode::QueryDispatchError, message);
                if let Some(active) = state.active.get_mut(&key) {
                    active.errors.push(error);
                }
                finished.extend(finish_one(self, &mut state, &key, handler));
            }
        }
        for (caller, errors) in finished {
            for error in errors {
                let _ = caller.send(error).await;
            }
        }
    }

    /// Sends `request` in `context` to one handler of each component that
    /// handles it; the receiver streams the responses and ends when the
    /// query completes.
    pub fn query(self: &Arc<Self>, context: &str, request: QueryRequest) -> Responses {
        self.query_to(context, request, None)
    }

    /// A query another node forwarded: to this node's handlers of
    /// `component` only.
    pub fn query_local(self: &Arc<Self>, context: &str, request: QueryRequest, component: &str) -> Responses {
        self.query_to(context, request, Some(component))
    }

    fn query_to(self: &Arc<Self>, context: &str, mut request: QueryRequest, only: Option<&str>) -> Responses {
        let (caller, receiver) = mpsc::channel(CALLER_BUFFER);
        let timeout = number(&request, ProcessingKey::Timeout)
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(self.limits.default_timeout, Duration::from_millis);
        let streaming = boolean(&request, ProcessingKey::ClientSupportsStreaming);
        let mut state = self.lock();
        if request.message_identifier.is_empty() {
            state.next_message += 1;
            request.message_identifier = format!("{}-query-{}", self.node, state.next_message);
        }
        state.next_serial += 1;
        let serial = state.next_serial;
        let id = request.message_identifier.clone();
        let key = (context.to_owned(), id.clone());
        let responses = Responses { receiver, bus: self.clone(), key: key.clone(), serial, streaming, taken: 0 };
        let labels = CommandLabels { context: context.to_owned() };
        self.metrics.dispatched.get_or_create(&labels).inc();
        let immediate = |state: &mut State, code, message| {
            self.metrics.failed.get_or_create(&labels).inc();
            let response = self.error(state, &id, code, message);
            // A fresh channel of CALLER_BUFFER has room for one.
            let _ = caller.try_send(response);
        };
        if state.active.contains_key(&key) {
            immediate(&mut state, ErrorCode::QueryDuplicated, format!("a query with id {id} is in flight already"));
            return responses;
        }
        let mut chosen = choose(&mut state, context, &request.query, only);
        if chosen.is_empty() {
            immediate(&mut state, ErrorCode::NoHandlerForQuery, format!("No handler for query: {}", request.query));
            return responses;
        }
        // A streaming query is answered by one handler, as it asks for
        // results; the others answer whole.
        if streaming {
            chosen.truncate(1);
        }
        request.processing_instructions.retain(|i| i.key != ProcessingKey::ServerSupportsStreaming as i32);
        request.processing_instructions.push(ProcessingInstruction {
            key: ProcessingKey::ServerSupportsStreaming as i32,
            value: Some(MetaDataValue { data: Some(Data::BooleanValue(streaming)) }),
        });
        let (over, ended) = watch::channel(());
        let mut active = Active {
            serial,
            streaming,
            waiting: BTreeSet::new(),
            caller: caller.clone(),
            errors: Vec::new(),
            succeeded: false,
            _over: over,
            started: std::time::Instant::now(),
        };
        let mut forwards = Vec::new();
        for handler in chosen {
            let Some(h) = state.handlers.get_mut(&handler) else { continue };
            if let Some(node) = &h.remote {
                forwards.push((handler, node.clone(), h.component.clone()));
                active.waiting.insert(handler);
                continue;
            }
            if h.queue.len() >= self.limits.queue_per_client {
                let message = format!("the queue of handler {} is full", h.component);
                let error = self.error(&mut state, &id, ErrorCode::TooManyRequests, message);
                active.errors.push(error);
                continue;
            }
            h.queue.push_back(request.clone());
            h.wake.notify_one();
            active.waiting.insert(handler);
        }
        if active.waiting.is_empty() {
            self.metrics.failed.get_or_create(&labels).inc();
            for error in active.errors {
                let _ = caller.try_send(error);
            }
            return responses;
        }
        state.active.insert(key.clone(), active);
        self.metrics.active.set(i64::try_from(state.active.len()).unwrap_or(i64::MAX));
        drop(state);
        for (handler, node, component) in forwards {
            self.forward((handler, node, component), context, &request, timeout, ended.clone());
        }
        let bus = Arc::downgrade(self);
        let mut ended = ended;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {
                    if let Some(bus) = bus.upgrade() {
                        bus.time_out(&key, serial, timeout).await;
                    }
                }
                // The query ended before its time.
                _ = ended.changed() => {}
            }
        });
        responses
    }

    /// Sends the query to `node`'s handlers of `component` (the entry
    /// `handler` stands for them): their responses and completion count as
    /// that entry's; a node that cannot be reached is a held AXONIQ-5002.
    fn forward(
        self: &Arc<Self>,
        (handler, node, component): (HandlerId, String, String),
        context: &str,
        request: &QueryRequest,
        timeout: Duration,
        mut ended: watch::Receiver<()>,
    ) {
        let bus = self.clone();
        let (context, request) = (context.to_owned(), request.clone());
        tokio::spawn(async move {
            let id = request.message_identifier.clone();
            let Some(forwarder) = bus.forwarder.clone() else {
                bus.fail(handler, &context, &id, format!("node {node} has the handler; it cannot be reached")).await;
                return;
            };
            let mut responses = forwarder.forward(&node, &context, &component, request, timeout);
            loop {
                // A query that ended here (its caller left, or it timed out)
                // drops the other node's stream, which ends it there too.
                let response = tokio::select! {
                    response = responses.recv() => response,
                    _ = ended.changed() => return,
                };
                let Some(response) = response else { break };
                match response {
                    Ok(response) => bus.respond(handler, response).await,
                    Err(reason) => {
                        let message = format!("node {node}, which has the handler, did not answer: {reason}");
                        bus.fail(handler, &context, &id, message).await;
                        return;
                    }
                }
            }
            bus.complete(handler, &id).await;
        });
    }

    /// `handler` failed the query `id`: a held AXONIQ-5002, and it is done.
    async fn fail(&self, handler: HandlerId, context: &str, id: &str, message: String) {
        {
            let mut state = self.lock();
            let key = (context.to_owned(), id.to_owned());
            let error = self.error(&mut state, id, ErrorCode::QueryDispatchError, message);
            if let Some(active) = state.active.get_mut(&key) {
                active.errors.push(error);
            }
        }
        self.complete(handler, id).await;
    }

    async fn time_out(&self, key: &(String, String), serial: u64, timeout: Duration) {
        let ended = {
            let mut state = self.lock();
            if state.active.get(key).is_none_or(|a| a.serial != serial) {
                return;
            }
            let Some(active) = state.active.remove(key) else { return };
            self.ended(&state, &key.0, &active, true);
            let message = format!("query {} not completed within {} ms", key.1, timeout.as_millis());
            let error = self.error(&mut state, &key.1, ErrorCode::QueryTimeout, message);
            (active.caller, error)
        };
        let _ = ended.0.send(ended.1).await;
    }

    fn error(&self, state: &mut State, request: &str, code: ErrorCode, message: String) -> QueryResponse {
        state.next_message += 1;
        QueryResponse {
            message_identifier: format!("{}-response-{}", self.node, state.next_message),
            request_identifier: request.to_owned(),
            error_code: code.as_str().to_owned(),
            error_message: Some(super::node_error(&self.node, code, message)),
            ..QueryResponse::default()
        }
    }

    /// Every query handler of `context` this node knows: `(node or None for
    /// this one, component, query)`.
    pub fn handlers_of(&self, context: &str) -> Vec<(Option<String>, String, String)> {
        let state = self.lock();
        let mut out = Vec::new();
        for h in state.handlers.values().filter(|h| h.context == context) {
            for query in &h.queries {
                out.push((h.remote.clone(), h.component.clone(), query.clone()));
            }
        }
        out
    }

    /// The other nodes that have handlers of `query` in `context`.
    pub fn remote_nodes_of(&self, context: &str, query: &str) -> BTreeSet<String> {
        let state = self.lock();
        let Some(route) = state.routes.get(&(context.to_owned(), query.to_owned())) else { return BTreeSet::new() };
        route.iter().filter_map(|id| state.handlers.get(id).and_then(|h| h.remote.clone())).collect()
    }

    /// This node's handlers of `query` in `context`.
    pub fn local_handlers_of(&self, context: &str, query: &str) -> Vec<HandlerId> {
        let state = self.lock();
        let Some(route) = state.routes.get(&(context.to_owned(), query.to_owned())) else { return Vec::new() };
        route.iter().filter(|id| state.handlers.get(id).is_some_and(|h| h.remote.is_none())).copied().collect()
    }

    /// Queues a subscription-query message for `handler` (sent without a
    /// permit); `false` when it is gone or its queue is full.
    pub fn send_control(&self, handler: HandlerId, request: SubscriptionQueryRequest) -> bool {
        let mut state = self.lock();
        let Some(h) = state.handlers.get_mut(&handler) else { return false };
        if h.control.len() >= CONTROL_QUEUE_MAX {
            return false;
        }
        h.control.push_back(Outgoing::Subscription(request));
        h.wake.notify_one();
        true
    }

    /// The context of `handler`'s stream.
    pub fn context_of(&self, handler: HandlerId) -> Option<String> {
        self.lock().handlers.get(&handler).map(|h| h.context.clone())
    }

    /// Queries under way now.
    pub fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    /// The caller of a streaming query took `permits` results: its handler
    /// may send as many more.
    fn demand(&self, key: &(String, String), serial: u64, permits: i64) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(active) = state.active.get(key).filter(|a| a.serial == serial && a.streaming) else { return };
        for handler in &active.waiting {
            let Some(h) = state.handlers.get_mut(handler).filter(|h| h.remote.is_none()) else { continue };
            // Demand that does not fit is asked again with the next results.
            if h.control.len() < CONTROL_QUEUE_MAX {
                h.control.push_back(flow(&key.1, permits));
                h.wake.notify_one();
            }
        }
    }

    /// The caller of a query went away before it ended: the query ends, and
    /// a streaming query's handler is told to stop (`query_cancel`), unless
    /// it never received the query.
    fn cancel(&self, key: &(String, String), serial: u64) {
        let mut state = self.lock();
        if state.active.get(key).is_none_or(|a| a.serial != serial) {
            return;
        }
        let Some(active) = state.active.remove(key) else { return };
        self.ended(&state, &key.0, &active, false);
        if !active.streaming {
            return;
        }
        for handler in active.waiting {
            let Some(h) = state.handlers.get_mut(&handler).filter(|h| h.remote.is_none()) else { continue };
            let queued = h.queue.len();
            h.queue.retain(|q| q.message_identifier != key.1);
            if h.queue.len() == queued && h.control.len() < CONTROL_QUEUE_MAX {
                h.control.push_back(Outgoing::Cancel(QueryReference { request_id: key.1.clone() }));
                h.wake.notify_one();
            }
        }
    }
}

/// The responses of one query, as its caller takes them. A streaming
/// query's handler is granted more results as they are taken; dropping
/// this before the end cancels the query.
pub struct Responses {
    receiver: mpsc::Receiver<QueryResponse>,
    bus: Arc<QueryBus>,
    key: (String, String),
    serial: u64,
    streaming: bool,
    /// Results taken since the handler was last granted more.
    taken: i64,
}

impl Responses {
    /// The next response; `None` once the query has ended.
    pub async fn recv(&mut self) -> Option<QueryResponse> {
        let response = self.receiver.recv().await;
        self.took(response.is_some());
        response
    }

    fn took(&mut self, one: bool) {
        if !one || !self.streaming {
            return;
        }
        self.taken += 1;
        // Granting in halves keeps the handler busy without a message per result.
        if self.taken >= (CALLER_BUFFER / 2) as i64 {
            self.bus.demand(&self.key, self.serial, self.taken);
            self.taken = 0;
        }
    }
}

impl tokio_stream::Stream for Responses {
    type Item = QueryResponse;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<QueryResponse>> {
        let this = self.get_mut();
        let polled = this.receiver.poll_recv(cx);
        if let std::task::Poll::Ready(response) = &polled {
            this.took(response.is_some());
        }
        polled
    }
}

impl Drop for Responses {
    fn drop(&mut self) {
        self.bus.cancel(&self.key, self.serial);
    }
}

/// A streaming query's caller wants `permits` more results.
fn flow(request_id: &str, permits: i64) -> Outgoing {
    Outgoing::Flow(QueryFlowControl {
        query_reference: Some(QueryReference { request_id: request_id.to_owned() }),
        permits,
    })
}

/// `handler` leaves the route of `key` (a route left empty goes).
fn leave(state: &mut State, key: (String, String), handler: HandlerId) {
    if let Some(route) = state.routes.get_mut(&key) {
        route.remove(&handler);
        if route.is_empty() {
            state.routes.remove(&key);
        }
    }
}

/// One handler per component of those that handle `query`, taking turns
/// within a component (another node's handlers of a component count as
/// one more turn-taker); with `only`, this node's handlers of that
/// component.
fn choose(state: &mut State, context: &str, query: &str, only: Option<&str>) -> Vec<HandlerId> {
    let Some(route) = state.routes.get(&(context.to_owned(), query.to_owned())) else { return Vec::new() };
    let mut by_component: BTreeMap<String, Vec<HandlerId>> = BTreeMap::new();
    for handler in route {
        if let Some(h) = state.handlers.get(handler) {
            // A forwarded query: this node's handlers of one component.
            if only.is_some_and(|component| h.remote.is_some() || h.component != component) {
                continue;
            }
            by_component.entry(h.component.clone()).or_default().push(*handler);
        }
    }
    by_component
        .into_iter()
        .map(|(component, handlers)| {
            let turn = state.turns.entry((context.to_owned(), query.to_owned(), component)).or_default();
            let chosen = handlers[*turn % handlers.len()];
            *turn = turn.wrapping_add(1);
            chosen
        })
        .collect()
}

/// `handler` is done with the query of `key`; when it was the last, the
/// query ends: its caller and the errors to pass on (none if a handler
/// succeeded).
fn finish_one(
    bus: &QueryBus,
    state: &mut State,
    key: &(String, String),
    handler: HandlerId,
) -> Option<(mpsc::Sender<QueryResponse>, Vec<QueryResponse>)> {
    let active = state.active.get_mut(key)?;
    if !active.waiting.remove(&handler) {
        return None;
    }
    // A handler here that completed (not one that left, nor another node).
    if let Some(series) = state.handlers.get(&handler).and_then(|h| h.series.as_ref()) {
        series.answered(active.started);
    }
    if !active.waiting.is_empty() {
        return None;
    }
    let active = state.active.remove(key)?;
    bus.ended(state, &key.0, &active, false);
    let errors = if active.succeeded { Vec::new() } else { active.errors };
    Some((active.caller, errors))
}
