//! The client-facing gRPC API on port 8124, speaking the Axon Server client
//! protocol: PlatformService, EventStore, CommandService and QueryService
//! (over the node's command and query buses).
//!
//! Owns: the access-token check of every call (`access.rs`, before a call
//! is served or passed to another node by `proxy.rs`), accepting
//! connections within bounds (`api::incoming`), request validation, flow
//! control (ListEvents permits, the bound on event bytes held for open
//! transactions), the context header, and the mapping of errors to
//! statuses (`status.rs`). Does not own storage.

pub mod access;
pub mod command;
pub mod event_store;
pub mod platform;
pub mod proxy;
pub mod query;
pub mod raw_append;
pub mod status;

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::Request;

use crate::contexts::Contexts;
use crate::store::ContextStore;
use status::{ErrorCode, status, with_code};

/// What the client API needs to know about this node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Node name.
    pub name: String,
    /// Host name clients connect to (with the domain, if any).
    pub host_name: String,
    /// The bound client gRPC port.
    pub grpc_port: u16,
    /// The bound HTTP port.
    pub http_port: u16,
}

/// Limits of the client API.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// Largest message accepted, in bytes.
    pub max_message_size_bytes: usize,
    /// Most events in one AppendEvent transaction.
    pub transaction_events_max: usize,
    /// Most event bytes in one transaction.
    pub transaction_bytes_max: usize,
    /// Longest time one transaction may stay open, however busy.
    pub transaction_timeout: std::time::Duration,
    /// Longest wait for a client to take the next batch of a response stream.
    pub response_send_timeout: std::time::Duration,
    /// Event bytes held for open transactions across all clients; a client
    /// waits for room (back-pressure) rather than the node growing.
    pub in_flight_bytes_max: usize,
    /// How long ListEvents waits for new permits before failing the stream.
    pub new_permits_timeout_ms: u64,
    /// AppendSnapshot refuses a snapshot beyond the aggregate's last event.
    pub check_sequence_nr_for_snapshots: bool,
    /// Answer client heartbeats and send our own.
    pub heartbeat_enabled: bool,
    /// Close a platform stream whose client stopped sending heartbeats.
    pub client_heartbeat_timeout_ms: u64,
    /// How often the node sends heartbeats.
    pub client_heartbeat_frequency_ms: u64,
    /// How long a command waits for its answer without a TIMEOUT
    /// instruction, ms.
    pub default_command_timeout_ms: u64,
    /// Commands (and queries) queued for one handler client waiting for
    /// its permits.
    pub command_queue_capacity: usize,
    /// How long a query may take without a TIMEOUT instruction, ms.
    pub default_query_timeout_ms: u64,
}

/// Shared state of the client services.
pub struct ClientApi {
    /// The node's identity for PlatformService.
    pub node: NodeIdentity,
    /// The context stores.
    pub contexts: Arc<Contexts>,
    /// Limits.
    pub limits: ApiLimits,
    /// Permits of 1 KiB each for event bytes held by open transactions.
    pub in_flight: Arc<Semaphore>,
    /// Becomes true when the node stops: long-lived streams end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Set on a clustered node: writes go through the context's replication
    /// group instead of straight to the local store.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `(context, client id)` of clients whose heartbeats stopped: their
    /// command and query streams end too.
    pub silent: tokio::sync::broadcast::Sender<(String, String)>,
}

/// Clients cut off for silence, announced at most this many at a time to
/// each handler stream (a stream that lags re-checks nothing it missed).
const SILENT_ANNOUNCED_MAX: usize = 256;

/// The context named by a request's metadata: `AxonIQ-Context`, then the
/// legacy `Context`, else `default`.
pub fn context_of<T>(request: &Request<T>) -> String {
    context_in(request.metadata().as_ref()).to_owned()
}

/// [`context_of`] from the HTTP headers of a call.
pub fn context_in(headers: &tonic::codegen::http::HeaderMap) -> &str {
    ["axoniq-context", "context"]
        .iter()
        .find_map(|key| headers.get(*key).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
        .unwrap_or("default")
}

/// The status a long-lived stream ends with when the node stops, so that
/// clients reconnect (to this node after its restart, or another one).
pub fn stopping_status() -> tonic::Status {
    with_code(tonic::Status::unavailable("the node is shutting down"), ErrorCode::Other)
}

/// Waits until a watched value satisfies `condition` (or its sender is
/// gone); holds no borrow of the value afterwards, so it can sit in a
/// `select!` next to other awaits.
pub async fn until<T>(receiver: &mut tokio::sync::watch::Receiver<T>, condition: impl FnMut(&T) -> bool) {
    let _ = receiver.wait_for(condition).await;
}

/// What a handler stream's ack carries for a request case this node does
/// not handle (AXONIQ-1002, as Axon Server answers).
pub fn unsupported_instruction(node: &str) -> ranvier_proto::common::ErrorMessage {
    ranvier_proto::common::ErrorMessage {
        message: "Unsupported instruction".into(),
        location: node.to_owned(),
        details: vec!["Unsupported instruction".into()],
        error_code: ErrorCode::UnsupportedInstruction.as_str().into(),
    }
}

/// Keeps `named` up to date with the client id a handler stream's message
/// carries (subscriptions and permits do), for [`ClientApi::handler_ends`].
pub fn remember_client(named: &tokio::sync::watch::Sender<String>, id: Option<&String>) {
    if let Some(id) = id.filter(|id| !id.is_empty()) {
        named.send_if_modified(|known| (known != id).then(|| known.clone_from(id)).is_some());
    }
}

/// Reads a handler client's stream, passing each message to `receive`,
/// until the stream ends or fails, `ends` resolves (the node stops, or the
/// client was cut off), or `receive` says the client is gone (`false`).
pub async fn read_handler_stream<M, F, Fut>(
    mut incoming: tonic::Streaming<M>,
    ends: impl std::future::Future<Output = ()> + Send + 'static,
    mut receive: F,
) where
    F: FnMut(M) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    // `ends` is watched on its own task: the loop below then checks one
    // flag per message instead of polling every reason to stop.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        ends.await;
        let _ = stop.send(());
    });
    let _watching = AbortOnDrop(watcher);
    loop {
        let message = tokio::select! {
            biased;
            message = incoming.message() => message,
            _ = &mut stopped => return,
        };
        match message {
            Ok(Some(message)) => {
                if !receive(message).await {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Calls `inner`, which `poll_ready` made ready, leaving a fresh clone in
/// its place (the ready one serves this call): the tower idiom for the
/// node's own layers.
pub fn call_ready<S, R>(
    inner: &mut S,
    request: R,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>
where
    S: tower::Service<R> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    let clone = inner.clone();
    let mut ready = std::mem::replace(inner, clone);
    Box::pin(async move { ready.call(request).await.map_err(Into::into) })
}

/// Errors of the node's own tower layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A handler client's outbound stream: the node's acknowledgements, then
/// what its bus gives it as its permits allow (`next`, wrapped for the
/// stream). The stream pulls from the bus itself whenever HTTP/2 can take
/// another message, so a command or query goes from the dispatching task to
/// the handler's connection with no task or channel between; `wake` says
/// when to look again. It ends once the bus says the handler is gone and
/// every acknowledgement is out.
pub struct ToHandler<T, W> {
    acks: tokio::sync::mpsc::Receiver<Result<W, tonic::Status>>,
    next: Box<dyn FnMut() -> crate::messaging::Next<T> + Send>,
    wrap: fn(T) -> W,
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// The wake-up awaited while the bus has nothing to send.
    waiting: Option<std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>,
    /// The bus said the handler is gone.
    closed: bool,
}

impl<T, W> ToHandler<T, W> {
    /// The stream of a handler whose acknowledgements come from `acks`.
    pub fn new(
        acks: tokio::sync::mpsc::Receiver<Result<W, tonic::Status>>,
        next: impl FnMut() -> crate::messaging::Next<T> + Send + 'static,
        wrap: fn(T) -> W,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Self {
        ToHandler { acks, next: Box::new(next), wrap, wake, waiting: None, closed: false }
    }

    /// The bus's next message, `Pending` with a wake-up registered, or
    /// `Ready(None)` once the handler is gone.
    fn poll_bus(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<W>> {
        use std::future::Future;
        use std::task::Poll;

        use crate::messaging::Next;
        loop {
            match (self.next)() {
                Next::Send(item) => return Poll::Ready(Some((self.wrap)(*item))),
                Next::Closed => return Poll::Ready(None),
                Next::Wait => {
                    // A wake-up sent before this wait is not lost (Notify keeps it).
                    let wake = &self.wake;
                    let waiting = self.waiting.get_or_insert_with(|| Box::pin(wake.clone().notified_owned()));
                    if waiting.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.waiting = None;
                }
            }
        }
    }
}

impl<T, W> tokio_stream::Stream for ToHandler<T, W> {
    type Item = Result<W, tonic::Status>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let acks_done = match this.acks.poll_recv(cx) {
            Poll::Ready(Some(ack)) => return Poll::Ready(Some(ack)),
            Poll::Ready(None) => true,
            Poll::Pending => false,
        };
        if !this.closed {
            match this.poll_bus(cx) {
                Poll::Ready(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Poll::Ready(None) => this.closed = true,
                Poll::Pending => {}
            }
        }
        if this.closed && acks_done { Poll::Ready(None) } else { Poll::Pending }
    }
}

impl ClientApi {
    /// Builds the shared state.
    pub fn new(
        node: NodeIdentity,
        contexts: Arc<Contexts>,
        limits: ApiLimits,
        stopping: tokio::sync::watch::Receiver<bool>,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        // One transaction must always fit, or its client would wait forever.
        let bytes = limits.in_flight_bytes_max.max(limits.transaction_bytes_max + limits.transaction_events_max * 1024);
        let kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        let (silent, _) = tokio::sync::broadcast::channel(SILENT_ANNOUNCED_MAX);
        Self { node, contexts, limits, in_flight: Arc::new(Semaphore::new(kib)), stopping, cluster, silent }
    }

    /// Resolves when a handler stream of `context` should end: the node
    /// stops, or the client it names (`client`, as its subscriptions and
    /// permits say) was cut off for missing heartbeats.
    pub fn handler_ends(
        &self,
        context: &str,
        client: tokio::sync::watch::Receiver<String>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.clone();
        let mut silent = self.silent.subscribe();
        let context = context.to_owned();
        async move {
            loop {
                tokio::select! {
                    () = until(&mut stopping, |stop| *stop) => return,
                    cut = silent.recv() => match cut {
                        Ok((at, id)) if at == context && !id.is_empty() && *client.borrow() == id => return,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        // No platform stream can announce any more: only a stop ends it.
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            until(&mut stopping, |stop| *stop).await;
                            return;
                        }
                    },
                }
            }
        }
    }

    /// [`Self::store`] once this node's replica of the context is as
    /// current as its replication group's leader (see
    /// `Cluster::await_current`), so reads see every confirmed write.
    pub async fn current_store<T>(&self, request: &Request<T>) -> Result<ContextStore, tonic::Status> {
        let store = self.store(request)?;
        if let Some(cluster) = &self.cluster {
            cluster.await_current(store.events.context()).await.map_err(|e| status::from_write(&e))?;
        }
        Ok(store)
    }

    /// The store of the request's context, or AXONIQ-6000.
    pub fn store<T>(&self, request: &Request<T>) -> Result<ContextStore, tonic::Status> {
        let context = context_of(request);
        match self.contexts.get(&context) {
            Some(Ok(store)) => Ok(store),
            Some(Err(reason)) => Err(status(ErrorCode::NoEventStore, format!("context {context}: {reason}"))),
            None => Err(status(ErrorCode::NoEventStore, format!("No eventstore found for context {context}"))),
        }
    }
}
