//! Subscription queries: a caller subscribes to a query's updates; every
//! handler of the query on this node is told (`subscribe`), sends updates
//! on its own stream, and they are relayed to the caller within the
//! permits the caller grants (`number_of_permits`, then `flow_control`).
//! The initial result is a query to one handler per component, its first
//! successful answer relayed as `initial_result`. The subscription ends
//! when a handler completes it (normally or exceptionally), or when the
//! caller unsubscribes or goes away — then the handlers are told
//! (`unsubscribe`).
//!
//! Updates beyond the caller's permits wait, at most [`WAITING_MAX`] per
//! subscription; one more ends the subscription exceptionally
//! (AXONIQ-1900) instead of growing without bound.
//!
//! In a cluster, every other node with handlers of the query gets the
//! subscription too (a streaming internal call): it subscribes its own
//! handlers and streams their updates back, and the subscriber's node
//! applies the permits. Ending the call (unsubscribe, or the subscriber
//! gone) unsubscribes that node's handlers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use ranvier_proto::query::subscription_query_request::Request as Control;
use ranvier_proto::query::subscription_query_response::Response as Update;
use ranvier_proto::query::{
    QueryUpdateCompleteExceptionally, SubscriptionQuery, SubscriptionQueryRequest, SubscriptionQueryResponse,
};
use ranvier_wire::ErrorCode;
use tokio::sync::mpsc;

use super::queries::{HandlerId, QueryBus};

/// Updates waiting for a caller's permits, per subscription, at most.
pub const WAITING_MAX: usize = 1_024;

struct Subscription {
    caller: mpsc::Sender<SubscriptionQueryResponse>,
    /// The calls that carry other nodes' updates (aborted on the end).
    remote: Vec<tokio::task::AbortHandle>,
    handlers: Vec<HandlerId>,
    query: SubscriptionQuery,
    permits: i64,
    waiting: VecDeque<SubscriptionQueryResponse>,
}

/// Subscribes another node's handlers to a subscription query and streams
/// their updates.
pub trait SubscriptionForwarder: Send + Sync {
    /// Subscribes `node`'s handlers of `query` in `context`.
    fn subscribe(
        &self,
        node: &str,
        context: &str,
        query: SubscriptionQuery,
    ) -> mpsc::Receiver<Result<SubscriptionQueryResponse, String>>;
}

/// The subscriptions of this node's callers.
pub struct Subscriptions {
    queries: Arc<QueryBus>,
    forwarder: Option<Arc<dyn SubscriptionForwarder>>,
    node: String,
    /// (context, subscription id) → the subscription.
    state: Mutex<BTreeMap<(String, String), Subscription>>,
}

fn ends(response: &SubscriptionQueryResponse) -> bool {
    matches!(response.response, Some(Update::Complete(_) | Update::CompleteExceptionally(_)))
}

impl Subscriptions {
    /// Subscriptions to the handlers of `queries`, on node `node`.
    pub fn new(queries: Arc<QueryBus>, node: impl Into<String>) -> Self {
        Subscriptions { queries, forwarder: None, node: node.into(), state: Mutex::new(BTreeMap::new()) }
    }

    /// The same hub, reaching other nodes' handlers through `forwarder`.
    pub fn with_forwarder(mut self, forwarder: Arc<dyn SubscriptionForwarder>) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Subscription>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn failure(&self, id: &str, code: ErrorCode, message: String) -> SubscriptionQueryResponse {
        SubscriptionQueryResponse {
            message_identifier: format!("{}-{id}-end", self.node),
            subscription_identifier: id.to_owned(),
            response: Some(Update::CompleteExceptionally(QueryUpdateCompleteExceptionally {
                client_id: String::new(),
                component_name: String::new(),
                error_code: code.as_str().to_owned(),
                error_message: Some(super::node_error(&self.node, code, message)),
            })),
        }
    }

    /// Subscribes `caller` to `query`'s updates in `context`, from every
    /// handler of the cluster.
    pub async fn subscribe(
        self: &Arc<Self>,
        context: &str,
        query: SubscriptionQuery,
        caller: mpsc::Sender<SubscriptionQueryResponse>,
    ) {
        self.subscribe_to(context, query, caller, false).await;
    }

    /// Subscribes another node's call to this node's handlers only, with
    /// no permits of its own (the subscriber's node applies them); the
    /// subscription ends when the call does.
    pub async fn subscribe_local(
        self: &Arc<Self>,
        context: &str,
        query: SubscriptionQuery,
        caller: mpsc::Sender<SubscriptionQueryResponse>,
    ) {
        let query = SubscriptionQuery { number_of_permits: i64::MAX / 2, ..query };
        let id = query.subscription_identifier.clone();
        let watch = caller.clone();
        self.subscribe_to(context, query, caller, true).await;
        let (hub, context) = (self.clone(), context.to_owned());
        tokio::spawn(async move {
            watch.closed().await;
            hub.unsubscribe(&context, &id);
        });
    }

    async fn subscribe_to(
        self: &Arc<Self>,
        context: &str,
        query: SubscriptionQuery,
        caller: mpsc::Sender<SubscriptionQueryResponse>,
        local_only: bool,
    ) {
        let id = query.subscription_identifier.clone();
        let name = query.query_request.as_ref().map(|q| q.query.clone()).unwrap_or_default();
        let handlers = self.queries.local_handlers_of(context, &name);
        let nodes = if local_only { Default::default() } else { self.queries.remote_nodes_of(context, &name) };
        if handlers.is_empty() && nodes.is_empty() {
            if local_only {
                // Nothing here: the call just ends.
                return;
            }
            let message = format!("No handler for query: {name}");
            let _ = caller.send(self.failure(&id, ErrorCode::NoHandlerForQuery, message)).await;
            return;
        }
        let key = (context.to_owned(), id.clone());
        {
            let mut state = self.lock();
            if state.contains_key(&key) {
                return;
            }
            let subscription = Subscription {
                caller,
                remote: Vec::new(),
                handlers: handlers.clone(),
                permits: query.number_of_permits,
                query: query.clone(),
                waiting: VecDeque::new(),
            };
            state.insert(key, subscription);
        }
        for handler in handlers {
            let request = SubscriptionQueryRequest { request: Some(Control::Subscribe(query.clone())) };
            self.queries.send_control(handler, request);
        }
        let Some(forwarder) = self.forwarder.clone() else { return };
        for node in nodes {
            let mut updates = forwarder.subscribe(&node, context, query.clone());
            let (hub, key) = (self.clone(), (context.to_owned(), id.clone()));
            let task = tokio::spawn(async move {
                while let Some(Ok(update)) = updates.recv().await {
                    let ended = ends(&update);
                    hub.deliver(&key, update).await;
                    if ended {
                        hub.unsubscribe(&key.0, &key.1);
                        return;
                    }
                }
            });
            if let Some(subscription) = self.lock().get_mut(&(context.to_owned(), id.clone())) {
                subscription.remote.push(task.abort_handle());
            }
        }
    }

    /// Asks one handler per component for the initial result and relays
    /// the first successful answer (else the last error) as `initial_result`.
    pub async fn initial_result(&self, context: &str, query: SubscriptionQuery) {
        let Some(request) = query.query_request.clone() else { return };
        let mut responses = self.queries.query(context, request);
        let mut chosen = None;
        while let Some(response) = responses.recv().await {
            let success = response.error_code.is_empty();
            if chosen.is_none() || success {
                chosen = Some(response);
            }
            if success {
                break;
            }
        }
        let Some(result) = chosen else { return };
        let id = query.subscription_identifier;
        let update = SubscriptionQueryResponse {
            message_identifier: format!("{}-{id}-initial", self.node),
            subscription_identifier: id.clone(),
            response: Some(Update::InitialResult(result)),
        };
        self.deliver(&(context.to_owned(), id), update).await;
    }

    /// The caller grants `permits` more updates.
    pub async fn flow(&self, context: &str, id: &str, permits: i64) {
        let (caller, ready) = {
            let mut state = self.lock();
            let Some(subscription) = state.get_mut(&(context.to_owned(), id.to_owned())) else { return };
            subscription.permits = subscription.permits.saturating_add(permits.max(0));
            let mut ready = Vec::new();
            while subscription.permits > 0 {
                let Some(update) = subscription.waiting.pop_front() else { break };
                subscription.permits -= 1;
                ready.push(update);
            }
            (subscription.caller.clone(), ready)
        };
        for update in ready {
            let _ = caller.send(update).await;
        }
    }

    /// The caller ends its subscription (or went away): the handlers are
    /// told.
    pub fn unsubscribe(&self, context: &str, id: &str) {
        let Some(subscription) = self.lock().remove(&(context.to_owned(), id.to_owned())) else { return };
        for call in &subscription.remote {
            call.abort();
        }
        for handler in subscription.handlers {
            let request = SubscriptionQueryRequest { request: Some(Control::Unsubscribe(subscription.query.clone())) };
            self.queries.send_control(handler, request);
        }
    }

    /// A handler's update, completion or initial result for a subscription.
    pub async fn relay(&self, handler: HandlerId, response: SubscriptionQueryResponse) {
        let Some(context) = self.queries.context_of(handler) else { return };
        let key = (context, response.subscription_identifier.clone());
        let ended = ends(&response);
        self.deliver(&key, response).await;
        if ended {
            let gone = self.lock().remove(&key);
            if let Some(subscription) = gone {
                for call in &subscription.remote {
                    call.abort();
                }
                for other in subscription.handlers.into_iter().filter(|h| *h != handler) {
                    let request =
                        SubscriptionQueryRequest { request: Some(Control::Unsubscribe(subscription.query.clone())) };
                    self.queries.send_control(other, request);
                }
            }
        }
    }

    /// Sends `update` to the subscriber within its permits, else keeps it
    /// waiting (a completion always goes at once).
    async fn deliver(&self, key: &(String, String), update: SubscriptionQueryResponse) {
        let send = {
            let mut state = self.lock();
            let Some(subscription) = state.get_mut(key) else { return };
            if ends(&update) || subscription.permits > 0 {
                if !ends(&update) {
                    subscription.permits -= 1;
                }
                Some((subscription.caller.clone(), update))
            } else if subscription.waiting.len() < WAITING_MAX {
                subscription.waiting.push_back(update);
                None
            } else {
                let caller = subscription.caller.clone();
                let message = format!("more than {WAITING_MAX} updates wait for the subscriber's permits");
                Some((caller, self.failure(&key.1, ErrorCode::TooManyRequests, message)))
            }
        };
        if let Some((caller, update)) = send {
            let overflow = update.response.as_ref().is_some_and(|r| {
                matches!(r, Update::CompleteExceptionally(e) if e.error_code == ErrorCode::TooManyRequests.as_str())
            });
            let _ = caller.send(update).await;
            if overflow {
                self.unsubscribe(&key.0, &key.1);
            }
        }
    }
}
