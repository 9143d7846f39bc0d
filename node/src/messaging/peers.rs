//! Messaging between the nodes of a cluster: each node announces its own
//! command handlers to every other node (at once when they change or the
//! cluster's nodes change, and every [`ANNOUNCE_EVERY`] as a heartbeat); what a node announced holds
//! for [`ANNOUNCED_TTL`], so the handlers of a node that stopped or is cut
//! off leave routing within that time. A command whose handler is on
//! another node is forwarded there (over the node's `transport`, with the
//! internal token) and dispatched to that node's handlers only; a node
//! that cannot be reached answers for it with AXONIQ-4001.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ranvier_proto::cluster::messaging_service_client::MessagingServiceClient;
use ranvier_proto::cluster::messaging_service_server::MessagingService;
use ranvier_proto::cluster::{
    CommandHandler, ForwardedCommand, ForwardedCommandReply, ForwardedQuery, ForwardedQueryReply, HandlerSet,
    HandlerSetReply, QueryHandler,
};
use ranvier_proto::command::{Command, CommandResponse};
use ranvier_proto::query::{QueryRequest, QueryResponse};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::BoxFuture;
use super::commands::{CommandBus, Forwarder, RemoteHandler};
use super::processors::{ProcessorError, ProcessorPeers, Processors};
use super::queries::{QueryBus, QueryForwarder, RemoteQueryHandler};
use super::subscriptions::{SubscriptionForwarder, Subscriptions};
use crate::cluster::Cluster;
use crate::transport::{INTERNAL_MESSAGE_MAX, Lane, Transport};
use ranvier_proto::cluster::{ClientInstruction, ClientInstructionReply, ProcessorListingReply, ProcessorQuery};
use ranvier_proto::cluster::{ForwardedSubscription, ForwardedUpdate};
use ranvier_proto::common::ErrorMessage;
use ranvier_proto::control::PlatformOutboundInstruction;
use ranvier_proto::query::{SubscriptionQuery, SubscriptionQueryResponse};
use ranvier_wire::admin::ProcessorInstance;

/// How often a node announces its handlers when nothing changes.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(1_000);
/// How long an announcement holds without a newer one.
pub const ANNOUNCED_TTL: Duration = Duration::from_millis(3_000);
/// Longest wait for one announcement to be taken.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Serves other nodes' announcements and forwarded commands and queries.
pub struct MessagingRpc {
    bus: Arc<CommandBus>,
    queries: Arc<QueryBus>,
    subscriptions: Arc<Subscriptions>,
    processors: Arc<Processors>,
    transport: Arc<Transport>,
}

impl MessagingRpc {
    /// Serves `bus`, `queries` and `subscriptions`, requiring
    /// `transport`'s internal token.
    pub fn new(
        bus: Arc<CommandBus>,
        (queries, subscriptions): (Arc<QueryBus>, Arc<Subscriptions>),
        processors: Arc<Processors>,
        transport: Arc<Transport>,
    ) -> Self {
        MessagingRpc { bus, queries, subscriptions, processors, transport }
    }
}

type QueryReplies = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ForwardedQueryReply, Status>> + Send>>;
type Updates = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ForwardedUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl MessagingService for MessagingRpc {
    type DispatchQueryStream = QueryReplies;
    type SubscribeQueryStream = Updates;

    async fn subscribe_query(
        &self,
        request: Request<ForwardedSubscription>,
    ) -> Result<Response<Self::SubscribeQueryStream>, Status> {
        use tokio_stream::StreamExt;
        self.transport.check(&request)?;
        let forwarded = request.into_inner();
        let query = SubscriptionQuery::decode(forwarded.subscription.as_ref())
            .map_err(|e| Status::invalid_argument(format!("not a subscription query: {e}")))?;
        let (sender, updates) = mpsc::channel(32);
        self.subscriptions.subscribe_local(&forwarded.context, query, sender).await;
        let updates = tokio_stream::wrappers::ReceiverStream::new(updates)
            .map(|update| Ok(ForwardedUpdate { update: update.encode_to_vec().into() }));
        Ok(Response::new(Box::pin(updates)))
    }

    async fn dispatch_query(
        &self,
        request: Request<ForwardedQuery>,
    ) -> Result<Response<Self::DispatchQueryStream>, Status> {
        use tokio_stream::StreamExt;
        self.transport.check(&request)?;
        let forwarded = request.into_inner();
        let query = QueryRequest::decode(forwarded.query.as_ref())
            .map_err(|e| Status::invalid_argument(format!("not a query: {e}")))?;
        let responses = self.queries.query_local(&forwarded.context, query, &forwarded.component);
        let replies = responses.map(|response| Ok(ForwardedQueryReply { response: response.encode_to_vec().into() }));
        Ok(Response::new(Box::pin(replies)))
    }

    async fn processors(&self, request: Request<ProcessorQuery>) -> Result<Response<ProcessorListingReply>, Status> {
        self.transport.check(&request)?;
        let instances = self.processors.local(&request.into_inner().context);
        let json = serde_json::to_vec(&instances).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ProcessorListingReply { instances_json: json.into() }))
    }

    async fn instruct_client(
        &self,
        request: Request<ClientInstruction>,
    ) -> Result<Response<ClientInstructionReply>, Status> {
        self.transport.check(&request)?;
        let asked = request.into_inner();
        let instruction = PlatformOutboundInstruction::decode(asked.instruction.as_ref())
            .map_err(|e| Status::invalid_argument(format!("not a platform instruction: {e}")))?;
        match self.processors.instruct_local(&asked.context, &asked.client_id, instruction).await {
            Ok(()) => Ok(Response::new(ClientInstructionReply::default())),
            Err(ProcessorError::Refused { error, .. }) => {
                Ok(Response::new(ClientInstructionReply { refusal: error.encode_to_vec().into() }))
            }
            Err(other) => Err(Status::unavailable(other.to_string())),
        }
    }

    async fn command_handlers(&self, request: Request<HandlerSet>) -> Result<Response<HandlerSetReply>, Status> {
        self.transport.check(&request)?;
        let set = request.into_inner();
        let queries = set
            .query_handlers
            .into_iter()
            .map(|h| RemoteQueryHandler { context: h.context, query: h.query, component: h.component })
            .collect();
        self.queries.apply_remote(&set.node, queries).await;
        let handlers = set
            .handlers
            .into_iter()
            .map(|h| RemoteHandler {
                context: h.context,
                command: h.command,
                identity: h.identity,
                load_factor: h.load_factor,
            })
            .collect();
        self.bus.apply_remote(&set.node, handlers, Duration::from_millis(set.ttl_ms));
        Ok(Response::new(HandlerSetReply {}))
    }

    async fn dispatch_command(
        &self,
        request: Request<ForwardedCommand>,
    ) -> Result<Response<ForwardedCommandReply>, Status> {
        self.transport.check(&request)?;
        let forwarded = request.into_inner();
        let command = Command::decode(forwarded.command.as_ref())
            .map_err(|e| Status::invalid_argument(format!("not a command: {e}")))?;
        let response = self.bus.dispatch_local(&forwarded.context, command).await;
        Ok(Response::new(ForwardedCommandReply { response: response.encode_to_vec().into() }))
    }
}

/// Forwards commands to other nodes of `cluster`.
pub struct ClusterForwarder {
    cluster: Arc<Cluster>,
}

impl ClusterForwarder {
    /// Forwards through `cluster`'s transport, to nodes its model lists.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterForwarder { cluster }
    }

    /// A messaging client of node `node`, by the address the model lists.
    fn messaging_client(&self, node: &str) -> Result<MessagingServiceClient<tonic::transport::Channel>, String> {
        let address = self.cluster.model().nodes.get(node).map(|n| n.internal_addr.clone());
        let address = address.ok_or_else(|| format!("node {node} is not in the cluster"))?;
        client(self.cluster.transport(), &address)
    }
}

fn client(transport: &Transport, address: &str) -> Result<MessagingServiceClient<tonic::transport::Channel>, String> {
    let channel = transport.channel(address, Lane::Calls).map_err(|e| e.to_string())?;
    Ok(MessagingServiceClient::new(channel)
        .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
        .max_encoding_message_size(INTERNAL_MESSAGE_MAX))
}

impl QueryForwarder for ClusterForwarder {
    fn forward(
        &self,
        node: &str,
        context: &str,
        component: &str,
        request: QueryRequest,
        timeout: Duration,
    ) -> mpsc::Receiver<Result<QueryResponse, String>> {
        let (sender, responses) = mpsc::channel(32);
        let client = self.messaging_client(node);
        let transport = self.cluster.transport().clone();
        let message = ForwardedQuery {
            context: context.to_owned(),
            component: component.to_owned(),
            query: request.encode_to_vec().into(),
        };
        tokio::spawn(async move {
            let call = async {
                let mut client = client?;
                let mut request = transport.request(message);
                request.set_timeout(timeout);
                let mut stream = client.dispatch_query(request).await.map_err(|s| s.message().to_owned())?.into_inner();
                while let Some(reply) = stream.message().await.map_err(|s| s.message().to_owned())? {
                    let response = QueryResponse::decode(reply.response.as_ref())
                        .map_err(|e| format!("not a query response: {e}"))?;
                    if sender.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
                Ok::<(), String>(())
            };
            // Whoever asked went away (the query ended there): dropping the
            // call ends it on the other node too.
            tokio::select! {
                result = call => {
                    if let Err(reason) = result {
                        let _ = sender.send(Err(reason)).await;
                    }
                }
                () = sender.closed() => {}
            }
        });
        responses
    }
}

impl ProcessorPeers for ClusterForwarder {
    fn nodes(&self) -> Vec<String> {
        let me = self.cluster.name();
        self.cluster.model().nodes.keys().filter(|name| name.as_str() != me).cloned().collect()
    }

    fn list(&self, node: &str, context: &str) -> BoxFuture<Result<Vec<ProcessorInstance>, String>> {
        let client = self.messaging_client(node);
        let message = ProcessorQuery { context: context.to_owned() };
        let transport = self.cluster.transport().clone();
        Box::pin(async move {
            let reply = client?.processors(transport.request(message)).await.map_err(|s| s.message().to_owned())?;
            serde_json::from_slice(&reply.into_inner().instances_json)
                .map_err(|e| format!("not a processor listing: {e}"))
        })
    }

    fn instruct(
        &self,
        node: &str,
        context: &str,
        client: &str,
        instruction: PlatformOutboundInstruction,
    ) -> BoxFuture<Result<(), ProcessorError>> {
        let channel = self.messaging_client(node);
        let message = ClientInstruction {
            context: context.to_owned(),
            client_id: client.to_owned(),
            instruction: instruction.encode_to_vec().into(),
        };
        let transport = self.cluster.transport().clone();
        let (node, client) = (node.to_owned(), client.to_owned());
        Box::pin(async move {
            let mut channel = channel.map_err(ProcessorError::Unreachable)?;
            let reply = match channel.instruct_client(transport.request(message)).await {
                Ok(reply) => reply.into_inner(),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    return Err(ProcessorError::NoAnswer(status.message().to_owned()));
                }
                Err(status) => {
                    return Err(ProcessorError::Unreachable(format!("node {node}: {}", status.message())));
                }
            };
            if reply.refusal.is_empty() {
                return Ok(());
            }
            let error = ErrorMessage::decode(reply.refusal.as_ref())
                .map_err(|e| ProcessorError::Unreachable(format!("node {node} answered a malformed refusal: {e}")))?;
            Err(ProcessorError::Refused { client, error })
        })
    }
}

impl SubscriptionForwarder for ClusterForwarder {
    fn subscribe(
        &self,
        node: &str,
        context: &str,
        query: SubscriptionQuery,
    ) -> mpsc::Receiver<Result<SubscriptionQueryResponse, String>> {
        let (sender, updates) = mpsc::channel(32);
        let client = self.messaging_client(node);
        let transport = self.cluster.transport().clone();
        let message = ForwardedSubscription { context: context.to_owned(), subscription: query.encode_to_vec().into() };
        tokio::spawn(async move {
            let call = async {
                let mut client = client?;
                let mut stream = client
                    .subscribe_query(transport.request(message))
                    .await
                    .map_err(|s| s.message().to_owned())?
                    .into_inner();
                while let Some(reply) = stream.message().await.map_err(|s| s.message().to_owned())? {
                    let update = SubscriptionQueryResponse::decode(reply.update.as_ref())
                        .map_err(|e| format!("not a subscription update: {e}"))?;
                    if sender.send(Ok(update)).await.is_err() {
                        break;
                    }
                }
                Ok::<(), String>(())
            };
            // The subscriber's end closes the call, so the other node
            // unsubscribes its handlers.
            let closed = sender.closed();
            tokio::select! {
                result = call => if let Err(reason) = result {
                    tracing::debug!(%reason, "a node's subscription updates ended");
                },
                () = closed => {}
            }
        });
        updates
    }
}

impl Forwarder for ClusterForwarder {
    fn forward(
        &self,
        node: &str,
        context: &str,
        command: Command,
        timeout: Duration,
    ) -> BoxFuture<Result<CommandResponse, String>> {
        let client = self.messaging_client(node);
        let transport = self.cluster.transport().clone();
        let message = ForwardedCommand { context: context.to_owned(), command: command.encode_to_vec().into() };
        Box::pin(async move {
            let mut client = client?;
            let mut request = transport.request(message);
            request.set_timeout(timeout);
            let reply = client.dispatch_command(request).await.map_err(|s| s.message().to_owned())?.into_inner();
            CommandResponse::decode(reply.response.as_ref()).map_err(|e| format!("not a command response: {e}"))
        })
    }
}

/// Announces this node's handlers to the other nodes, and forgets other
/// nodes' expired announcements, until `stopping`.
pub fn spawn_announcer(
    bus: Arc<CommandBus>,
    queries: Arc<QueryBus>,
    cluster: Arc<Cluster>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A node that joins hears at once, not at the next tick.
        let mut model = cluster.model_changes();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = bus.local_changes().notified() => {}
                () = queries.local_changes().notified() => {}
                changed = model.changed() => if changed.is_err() { return },
                _ = stopping.wait_for(|stop| *stop) => return,
            }
            bus.expire_remote();
            queries.keep_remote(&bus.announcing_nodes()).await;
            announce(&bus, &queries, &cluster).await;
        }
    });
}

async fn announce(bus: &CommandBus, queries: &QueryBus, cluster: &Cluster) {
    let (_, handlers) = bus.local_handlers();
    let set = HandlerSet {
        node: cluster.name().to_owned(),
        handlers: handlers
            .into_iter()
            .map(|h| CommandHandler {
                context: h.context,
                command: h.command,
                identity: h.identity,
                load_factor: h.load_factor,
            })
            .collect(),
        ttl_ms: u64::try_from(ANNOUNCED_TTL.as_millis()).unwrap_or(u64::MAX),
        query_handlers: queries
            .local_handlers()
            .into_iter()
            .map(|h| QueryHandler { context: h.context, query: h.query, component: h.component })
            .collect(),
    };
    let model = cluster.model();
    let mut calls = tokio::task::JoinSet::new();
    for node in model.nodes.values().filter(|node| node.name != cluster.name()) {
        let (set, address, transport) = (set.clone(), node.internal_addr.clone(), cluster.transport().clone());
        calls.spawn(async move {
            let Ok(mut client) = client(&transport, &address) else { return };
            let mut request = transport.request(set);
            request.set_timeout(ANNOUNCE_TIMEOUT);
            if let Err(status) = client.command_handlers(request).await {
                tracing::debug!(%address, error = %status.message(), "a node did not take this node's handlers");
            }
        });
    }
    while calls.join_next().await.is_some() {}
}
