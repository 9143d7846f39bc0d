//! The command bus of one node: handler clients subscribe to command names
//! per context, a dispatched command goes to one of them, and its answer
//! (or the error that stands for it) goes back to the dispatcher.
//!
//! - **Routing**: among the handlers of a command name, the one that owns
//!   the routing key (the ROUTING_KEY instruction, else the message id) on
//!   a ring weighted by load factor (`ring`), so one aggregate's commands
//!   stay with one handler while the handlers do not change.
//! - **Flow control**: a handler receives a command only against a permit
//!   it granted (`flow_control`); until then its commands wait in its
//!   queue, highest PRIORITY first, then oldest. The queue holds at most
//!   `command-queue-capacity-per-client` commands: one more is refused at
//!   once (AXONIQ-1900), never dropped silently.
//! - **Answers**: exactly one per dispatch: the handler's response
//!   (forwarded unchanged), or AXONIQ-4000 (no handler), 4001 (the handler
//!   went away before answering), 4002 (no answer within the TIMEOUT
//!   instruction or `default-command-timeout`), 4005 (a command with the
//!   same id is in flight), 1900 (the handler's queue is full).
//! - **A handler that leaves** (its stream ends): commands still queued for
//!   it go to the remaining handlers of their name, or fail with 4001 when
//!   none is left; commands it received but did not answer fail with 4001.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ranvier_proto::command::{Command, CommandResponse, CommandSubscription};
use ranvier_proto::common::ProcessingKey;
use ranvier_proto::common::meta_data_value::Data;
use ranvier_wire::ErrorCode;
use tokio::sync::{Notify, oneshot};

use super::ring::Ring;
use crate::telemetry::{CommandLabels, CommandMetrics};
use prometheus_client::metrics::gauge::Gauge;

/// The bus's limits.
#[derive(Debug, Clone)]
pub struct CommandLimits {
    /// Commands waiting for one handler's permits, at most.
    pub queue_per_client: usize,
    /// How long a command waits for its answer without a TIMEOUT
    /// instruction.
    pub default_timeout: Duration,
}

/// One handler client's command stream.
pub type HandlerId = u64;

/// The command bus.
pub struct CommandBus {
    node: String,
    limits: CommandLimits,
    metrics: CommandMetrics,
    state: Mutex<State>,
    /// Reaches other nodes' handlers (none on a standalone node).
    forwarder: Option<Arc<dyn Forwarder>>,
    /// Woken when this node's own handlers change (for announcing them).
    changed: Notify,
}

/// The bus's state, locked; the pending gauge follows it on release.
struct Guard<'a> {
    state: MutexGuard<'a, State>,
    gauge: &'a Gauge,
}

impl std::ops::Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.gauge.set(i64::try_from(self.state.pending.len()).unwrap_or(i64::MAX));
    }
}

#[derive(Default)]
struct State {
    next_handler: HandlerId,
    next_response: u64,
    handlers: HashMap<HandlerId, Handler>,
    /// (context, command name) → its handlers and their ring.
    routes: HashMap<(String, String), Route>,
    /// (context, message id) → the dispatch waiting for its answer.
    pending: HashMap<(String, String), Pending>,
    /// Other nodes → when what they announced expires, and what it was.
    remote: HashMap<String, (std::time::Instant, Vec<RemoteHandler>)>,
    /// Bumped whenever this node's own handlers change.
    local_version: u64,
}

struct Handler {
    context: String,
    client_id: String,
    component: String,
    permits: i64,
    queue: BinaryHeap<Queued>,
    arrivals: u64,
    /// Command names it handles, with their load factors.
    commands: BTreeMap<String, i32>,
    wake: Arc<Notify>,
    closed: bool,
    /// Its client's metric series, once it subscribed.
    series: Option<super::Answered>,
}

/// Where a command can go: a handler connected here, or another node
/// (which has handlers of it connected there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A handler stream of this node.
    Local(HandlerId),
    /// A node that has handlers of the command.
    Remote(String),
}

/// The handlers of one command name in one context, cluster-wide.
#[derive(Default)]
struct Route {
    /// Identity → where it is and its load factor.
    handlers: BTreeMap<String, (Target, i32)>,
    all: Option<Ring<Target>>,
    local: Option<Ring<Target>>,
}

impl Route {
    fn changed(&mut self) {
        self.all = None;
        self.local = None;
    }

    /// The ring of every handler, or of this node's only.
    fn ring(&mut self, local_only: bool) -> &Ring<Target> {
        let handlers = &self.handlers;
        let build = |local_only: bool| {
            Ring::new(
                handlers
                    .iter()
                    .filter(|(_, (target, _))| !local_only || matches!(target, Target::Local(_)))
                    .map(|(identity, (target, load))| (target.clone(), identity.as_str(), *load)),
            )
        };
        if local_only {
            self.local.get_or_insert_with(|| build(true))
        } else {
            self.all.get_or_insert_with(|| build(false))
        }
    }

    fn remove(&mut self, target: &Target) {
        self.handlers.retain(|_, (t, _)| t != target);
        self.changed();
    }
}

/// One handler as another node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHandler {
    /// Its context.
    pub context: String,
    /// The command name.
    pub command: String,
    /// Its identity there.
    pub identity: String,
    /// Its load factor.
    pub load_factor: i32,
}

/// Sends a command to another node's handlers and returns their answer.
pub trait Forwarder: Send + Sync {
    /// Dispatches `command` of `context` on `node`, waiting at most
    /// `timeout`.
    fn forward(
        &self,
        node: &str,
        context: &str,
        command: Command,
        timeout: Duration,
    ) -> super::BoxFuture<Result<CommandResponse, String>>;
}

struct Pending {
    handler: HandlerId,
    /// When it was dispatched.
    since: std::time::Instant,
    /// Whether the handler has received it (else it is in its queue).
    sent: bool,
    reply: oneshot::Sender<CommandResponse>,
}

struct Queued {
    priority: i64,
    arrival: u64,
    command: Command,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Higher priority first, then the earlier arrival.
        self.priority.cmp(&other.priority).then_with(|| other.arrival.cmp(&self.arrival))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Queued {}

/// What a handler's stream sends next.
pub type Next = super::Next<Command>;

/// A command that could not be queued, and why.
struct NotQueued {
    command: Command,
    reply: oneshot::Sender<CommandResponse>,
    code: ErrorCode,
    message: String,
}

/// A number-valued processing instruction of the command.
fn number(command: &Command, key: ProcessingKey) -> Option<i64> {
    command.processing_instructions.iter().find(|i| i.key == key as i32).and_then(|i| match i.value.as_ref()?.data {
        Some(Data::NumberValue(n)) => Some(n),
        _ => None,
    })
}

/// The routing key: the ROUTING_KEY instruction, else the message id.
fn routing_key(command: &Command) -> &str {
    command
        .processing_instructions
        .iter()
        .find(|i| i.key == ProcessingKey::RoutingKey as i32)
        .and_then(|i| match i.value.as_ref()?.data.as_ref()? {
            Data::TextValue(text) => Some(text.as_str()),
            _ => None,
        })
        .unwrap_or(&command.message_identifier)
}

impl CommandBus {
    /// An empty bus on node `node` (the location of its errors),
    /// counting into `metrics`.
    pub fn new(node: impl Into<String>, limits: CommandLimits, metrics: CommandMetrics) -> Self {
        CommandBus {
            node: node.into(),
            limits,
            metrics,
            state: Mutex::new(State::default()),
            forwarder: None,
            changed: Notify::new(),
        }
    }

    /// The same bus, reaching other nodes' handlers through `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Arc<dyn Forwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    fn lock(&self) -> Guard<'_> {
        Guard {
            state: self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            gauge: &self.metrics.pending,
        }
    }

    /// A new handler stream of `context` (it handles nothing until it
    /// subscribes), and what wakes it when a command may be sent.
    pub fn connect(&self, context: &str) -> (HandlerId, Arc<Notify>) {
        let mut state = self.lock();
        state.next_handler += 1;
        let id = state.next_handler;
        let wake = Arc::new(Notify::new());
        let handler = Handler {
            context: context.to_owned(),
            client_id: String::new(),
            component: String::new(),
            permits: 0,
            queue: BinaryHeap::new(),
            arrivals: 0,
            commands: BTreeMap::new(),
            wake: wake.clone(),
            closed: false,
            series: None,
        };
        state.handlers.insert(id, handler);
        (id, wake)
    }

    /// `handler` handles `subscription.command` (again: its load factor
    /// is updated).
    pub fn subscribe(&self, handler: HandlerId, subscription: &CommandSubscription) {
        let mut state = self.lock();
        let Some(h) = state.handlers.get_mut(&handler) else { return };
        if !subscription.client_id.is_empty() {
            h.client_id = subscription.client_id.clone();
        }
        if !subscription.component_name.is_empty() {
            h.component = subscription.component_name.clone();
        }
        h.commands.insert(subscription.command.clone(), subscription.load_factor);
        h.series = Some(self.series().of(&h.context, &h.component, &h.client_id));
        // A stable identity places the handler's points: a client that
        // reconnects gets its keys back.
        let identity = format!("{}/{}/{handler}", h.client_id, h.component);
        let identity = if h.client_id.is_empty() { format!("stream-{handler}") } else { identity };
        let context = h.context.clone();
        let route = state.routes.entry((context.clone(), subscription.command.clone())).or_default();
        route.handlers.insert(identity, (Target::Local(handler), subscription.load_factor));
        route.changed();
        self.recount(&state, &context, None);
        state.local_version += 1;
        self.changed.notify_one();
    }

    /// `handler` no longer handles `subscription.command`.
    pub fn unsubscribe(&self, handler: HandlerId, subscription: &CommandSubscription) {
        let mut state = self.lock();
        let Some(h) = state.handlers.get_mut(&handler) else { return };
        h.commands.remove(&subscription.command);
        let key = (h.context.clone(), subscription.command.clone());
        self.leave_route(&mut state, key, handler);
    }

    /// `handler` leaves the route of `key` (a route left empty goes), and
    /// the other nodes hear of it.
    fn leave_route(&self, state: &mut State, key: (String, String), handler: HandlerId) {
        if let Some(route) = state.routes.get_mut(&key) {
            route.remove(&Target::Local(handler));
            if route.handlers.is_empty() {
                state.routes.remove(&key);
            }
        }
        state.local_version += 1;
        self.changed.notify_one();
    }

    /// `handler` may receive `permits` more commands.
    pub fn grant(&self, handler: HandlerId, permits: i64) {
        let mut state = self.lock();
        if let Some(h) = state.handlers.get_mut(&handler) {
            h.permits = h.permits.saturating_add(permits.max(0));
            h.wake.notify_one();
        }
    }

    /// The next command for `handler` when it has one and a permit for it
    /// (using the permit).
    pub fn next_for(&self, handler: HandlerId) -> Next {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(h) = state.handlers.get_mut(&handler) else { return Next::Closed };
        if h.closed {
            return Next::Closed;
        }
        while h.permits > 0 {
            let Some(queued) = h.queue.pop() else { return Next::Wait };
            let key = (h.context.clone(), queued.command.message_identifier.clone());
            // A command whose dispatch ended (it timed out) is not sent.
            if let Some(pending) = state.pending.get_mut(&key) {
                pending.sent = true;
                h.permits -= 1;
                return Next::Send(Box::new(queued.command));
            }
        }
        Next::Wait
    }

    /// The handler's answer to a command it received: passed to the
    /// dispatcher unchanged. `false` when no dispatch of its waits for it.
    pub fn respond(&self, handler: HandlerId, response: CommandResponse) -> bool {
        let mut state = self.lock();
        let Some(context) = state.handlers.get(&handler).map(|h| h.context.clone()) else { return false };
        let key = (context, response.request_identifier.clone());
        match state.pending.get(&key) {
            Some(pending) if pending.handler == handler && pending.sent => {}
            _ => return false,
        }
        let Some(pending) = state.pending.remove(&key) else { return false };
        if let Some(series) = state.handlers.get(&handler).and_then(|h| h.series.as_ref()) {
            series.answered(pending.since);
        }
        pending.reply.send(response).is_ok()
    }

    fn series(&self) -> super::HandlerSeries<'_> {
        super::HandlerSeries::new(&self.metrics.handlers, "command")
    }

    /// Counts the clients of `context` again; `left` is the client whose
    /// stream just ended.
    fn recount(&self, state: &State, context: &str, left: Option<(&str, &str)>) {
        let clients = state.handlers.values().filter(|h| h.context == context).map(|h| h.client_id.as_str());
        self.series().recount(context, clients, left);
    }

    /// `handler`'s stream ended: its queued commands go to the remaining
    /// handlers of their names (or fail with 4001), and those it received
    /// but did not answer fail with 4001.
    pub fn disconnect(&self, handler: HandlerId) {
        let mut state = self.lock();
        let Some(mut gone) = state.handlers.remove(&handler) else { return };
        gone.closed = true;
        gone.wake.notify_one();
        self.recount(&state, &gone.context, Some((&gone.component, &gone.client_id)));
        for name in gone.commands.keys() {
            self.leave_route(&mut state, (gone.context.clone(), name.clone()), handler);
        }
        let lost: Vec<(String, String)> =
            state.pending.iter().filter(|(_, p)| p.handler == handler && p.sent).map(|(key, _)| key.clone()).collect();
        for key in lost {
            if let Some(pending) = state.pending.remove(&key) {
                let message = format!("the handler of command {} disconnected before answering", key.1);
                let response = self.error_response(&mut state, &key.1, ErrorCode::ConnectionToHandlerLost, message);
                let _ = pending.reply.send(response);
            }
        }
        for queued in gone.queue.into_vec() {
            let key = (gone.context.clone(), queued.command.message_identifier.clone());
            let Some(pending) = state.pending.remove(&key) else { continue };
            // Only to handlers here: this runs under the bus's lock.
            if let Err(not) = self.enqueue(&mut state, &gone.context, queued.command, pending.reply, true) {
                let message = format!("the handler of command {} disconnected", not.command.name);
                let id = not.command.message_identifier;
                let response = self.error_response(&mut state, &id, ErrorCode::ConnectionToHandlerLost, message);
                let _ = not.reply.send(response);
            }
        }
    }

    /// Puts `command` in the queue of its handler, registered as pending;
    /// gives it back with the reason when it cannot be queued.
    fn enqueue(
        &self,
        state: &mut State,
        context: &str,
        command: Command,
        reply: oneshot::Sender<CommandResponse>,
        local_only: bool,
    ) -> Result<Option<(String, Command)>, Box<NotQueued>> {
        let route_key = (context.to_owned(), command.name.clone());
        let chosen = state
            .routes
            .get_mut(&route_key)
            .and_then(|route| route.ring(local_only).pick(routing_key(&command)).cloned());
        let handler = match chosen {
            Some(Target::Local(handler)) => Some(handler),
            Some(Target::Remote(node)) => return Ok(Some((node, command))),
            None => None,
        };
        let Some(h) = handler.and_then(|handler| state.handlers.get_mut(&handler).map(|h| (handler, h))) else {
            let message = format!("No Handler for command: {}", command.name);
            return Err(Box::new(NotQueued { command, reply, code: ErrorCode::NoHandlerForCommand, message }));
        };
        let (handler, h) = h;
        if h.queue.len() >= self.limits.queue_per_client {
            let message = format!(
                "the queue of handler {} is full ({} commands waiting for its permits)",
                h.client_id, self.limits.queue_per_client
            );
            return Err(Box::new(NotQueued { command, reply, code: ErrorCode::TooManyRequests, message }));
        }
        h.arrivals += 1;
        let priority = number(&command, ProcessingKey::Priority).unwrap_or(0);
        let key = (context.to_owned(), command.message_identifier.clone());
        h.queue.push(Queued { priority, arrival: h.arrivals, command });
        h.wake.notify_one();
        state.pending.insert(key, Pending { handler, since: std::time::Instant::now(), sent: false, reply });
        Ok(None)
    }

    /// Dispatches `command` in `context` to a handler anywhere in the
    /// cluster and waits for its one answer.
    pub async fn dispatch(&self, context: &str, command: Command) -> CommandResponse {
        self.dispatch_to(context, command, false).await
    }

    /// Dispatches a command another node forwarded: to a handler connected
    /// here only.
    pub async fn dispatch_local(&self, context: &str, command: Command) -> CommandResponse {
        self.dispatch_to(context, command, true).await
    }

    async fn dispatch_to(&self, context: &str, command: Command, local_only: bool) -> CommandResponse {
        let labels = CommandLabels { context: context.to_owned() };
        self.metrics.dispatched.get_or_create(&labels).inc();
        let started = std::time::Instant::now();
        let response = self.dispatch_once(context, command, local_only).await;
        self.metrics.seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        if response.error_message.as_ref().is_some_and(|e| e.location == self.node) {
            self.metrics.failed.get_or_create(&labels).inc();
        }
        response
    }

    async fn dispatch_once(&self, context: &str, mut command: Command, local_only: bool) -> CommandResponse {
        let timeout = number(&command, ProcessingKey::Timeout)
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(self.limits.default_timeout, Duration::from_millis);
        let (reply, answer) = oneshot::channel();
        let (id, forward) = {
            let mut state = self.lock();
            if command.message_identifier.is_empty() {
                state.next_response += 1;
                command.message_identifier = format!("{}-command-{}", self.node, state.next_response);
            }
            let id = command.message_identifier.clone();
            if state.pending.contains_key(&(context.to_owned(), id.clone())) {
                let message = format!("a command with id {id} is in flight already");
                return self.error_response(&mut state, &id, ErrorCode::CommandDuplicated, message);
            }
            match self.enqueue(&mut state, context, command, reply, local_only) {
                Ok(forward) => (id, forward),
                Err(not) => return self.error_response(&mut state, &id, not.code, not.message),
            }
        };
        if let Some((node, command)) = forward {
            return self.forward(&node, context, command, &id, timeout).await;
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(response)) => response,
            // The bus went away with the dispatch (the node stops).
            Ok(Err(_)) => CommandResponse {
                error_code: ErrorCode::ConnectionToHandlerLost.as_str().to_owned(),
                error_message: Some(super::node_error(
                    &self.node,
                    ErrorCode::ConnectionToHandlerLost,
                    "the node is stopping".into(),
                )),
                ..CommandResponse::default()
            },
            Err(_) => {
                // Forgotten: a queued copy is not sent, a late answer is
                // not passed on.
                let mut state = self.lock();
                state.pending.remove(&(context.to_owned(), id.clone()));
                let message = format!("no answer within {} ms", timeout.as_millis());
                self.error_response(&mut state, &id, ErrorCode::CommandTimeout, message)
            }
        }
    }

    /// Sends `command` to `node`, whose handler answers; a node that does
    /// not answer (it stopped, or cannot be reached) is AXONIQ-4001.
    async fn forward(
        &self,
        node: &str,
        context: &str,
        command: Command,
        id: &str,
        timeout: Duration,
    ) -> CommandResponse {
        let Some(forwarder) = &self.forwarder else {
            let message = format!("node {node} has the handler, and this node cannot reach other nodes");
            return self.error_response(&mut self.lock(), id, ErrorCode::ConnectionToHandlerLost, message);
        };
        match tokio::time::timeout(timeout, forwarder.forward(node, context, command, timeout)).await {
            Ok(Ok(response)) => response,
            Ok(Err(reason)) => {
                let message = format!("node {node}, which has the handler, did not answer: {reason}");
                self.error_response(&mut self.lock(), id, ErrorCode::ConnectionToHandlerLost, message)
            }
            Err(_) => {
                let message = format!("no answer within {} ms (from node {node})", timeout.as_millis());
                self.error_response(&mut self.lock(), id, ErrorCode::CommandTimeout, message)
            }
        }
    }

    /// What `node` announced replaces what it had: its handlers, until
    /// `ttl` passes without a newer announcement.
    pub fn apply_remote(&self, node: &str, handlers: Vec<RemoteHandler>, ttl: Duration) {
        let mut state = self.lock();
        let state = &mut *state;
        let target = Target::Remote(node.to_owned());
        for route in state.routes.values_mut() {
            route.remove(&target);
        }
        for handler in &handlers {
            let key = (handler.context.clone(), handler.command.clone());
            let route = state.routes.entry(key).or_default();
            route.handlers.insert(format!("{node}:{}", handler.identity), (target.clone(), handler.load_factor));
            route.changed();
        }
        state.routes.retain(|_, route| !route.handlers.is_empty());
        state.remote.insert(node.to_owned(), (std::time::Instant::now() + ttl, handlers));
    }

    /// Forgets the handlers of nodes whose announcements expired (they
    /// stopped, or are cut off): their commands go elsewhere, or fail.
    pub fn expire_remote(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        let now = std::time::Instant::now();
        let expired: Vec<String> =
            state.remote.iter().filter(|(_, (until, _))| *until <= now).map(|(node, _)| node.clone()).collect();
        for node in expired {
            tracing::info!(%node, "a node's command handlers expired: it stopped announcing them");
            state.remote.remove(&node);
            let target = Target::Remote(node);
            for route in state.routes.values_mut() {
                route.remove(&target);
            }
        }
        state.routes.retain(|_, route| !route.handlers.is_empty());
    }

    /// Every command handler of `context` this node knows: `(node, client,
    /// component, command, load factor)`; a handler on another node by the
    /// identity it announced (`client/component/stream`).
    pub fn handlers_of(&self, context: &str) -> Vec<(String, String, String, String, i32)> {
        let state = self.lock();
        let mut out = Vec::new();
        for ((c, command), route) in &state.routes {
            if c != context {
                continue;
            }
            for (identity, (target, load)) in &route.handlers {
                let node = match target {
                    Target::Local(_) => self.node.clone(),
                    Target::Remote(node) => node.clone(),
                };
                // Identities are `[node:]client/component/stream`.
                let bare = identity
                    .split_once(':')
                    .filter(|_| matches!(target, Target::Remote(_)))
                    .map_or(identity.as_str(), |(_, rest)| rest);
                let mut parts = bare.split('/');
                let client = parts.next().unwrap_or_default().to_owned();
                let component = parts.next().unwrap_or_default().to_owned();
                out.push((node, client, component, command.clone(), *load));
            }
        }
        out
    }

    /// The nodes whose announcements hold now.
    pub fn announcing_nodes(&self) -> BTreeSet<String> {
        self.lock().remote.keys().cloned().collect()
    }

    /// This node's own handlers, to announce, and the version they have.
    pub fn local_handlers(&self) -> (u64, Vec<RemoteHandler>) {
        let state = self.lock();
        let mut out = Vec::new();
        for ((context, command), route) in &state.routes {
            for (identity, (target, load_factor)) in &route.handlers {
                if matches!(target, Target::Local(_)) {
                    let handler = RemoteHandler {
                        context: context.clone(),
                        command: command.clone(),
                        identity: identity.clone(),
                        load_factor: *load_factor,
                    };
                    out.push(handler);
                }
            }
        }
        (state.local_version, out)
    }

    /// Woken whenever this node's own handlers change.
    pub fn local_changes(&self) -> &Notify {
        &self.changed
    }

    fn error_response(
        &self,
        state: &mut Guard<'_>,
        request: &str,
        code: ErrorCode,
        message: String,
    ) -> CommandResponse {
        state.next_response += 1;
        CommandResponse {
            message_identifier: format!("{}-response-{}", self.node, state.next_response),
            request_identifier: request.to_owned(),
            error_code: code.as_str().to_owned(),
            error_message: Some(super::node_error(&self.node, code, message)),
            ..CommandResponse::default()
        }
    }

    /// Handlers connected now.
    pub fn handler_count(&self) -> usize {
        self.lock().handlers.len()
    }

    /// Dispatches waiting for an answer now.
    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }
}
