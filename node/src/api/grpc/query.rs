//! QueryService of the Axon protocol over this node's query bus
//! (`messaging::queries`).
//!
//! `OpenStream` is a handler client's stream: subscriptions, permits,
//! responses and completions come in, each acknowledged when it carries an
//! instruction id; queries go out, one per permit. `Query` streams every
//! response and ends when the query completes. `Subscription` is a
//! subscriber's stream of subscription queries (`messaging::subscriptions`).

use std::sync::Arc;

use ranvier_proto::common::{ErrorMessage, InstructionAck};
use ranvier_proto::query::query_provider_inbound::Request as Inbound;
use ranvier_proto::query::query_provider_outbound::Request as Outbound;
use ranvier_proto::query::query_service_server::QueryService;
use ranvier_proto::query::{
    QueryProviderInbound, QueryProviderOutbound, QueryRequest, QueryResponse, SubscriptionQueryRequest,
    SubscriptionQueryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{ClientApi, ToHandler, context_of, read_handler_stream, remember_client, unsupported_instruction};
use crate::messaging::queries::{HandlerId, Outgoing, QueryBus};
use crate::messaging::subscriptions::Subscriptions;
use ranvier_proto::query::subscription_query_request::Request as Control;

/// Messages buffered towards one client stream: a handler's acknowledgements
/// (its queries it takes from the bus as the network allows), a
/// subscription's updates.
const OUTBOUND_BUFFER: usize = 64;

/// The QueryService.
pub struct Queries {
    api: Arc<ClientApi>,
    bus: Arc<QueryBus>,
    subscriptions: Arc<Subscriptions>,
}

impl Queries {
    /// Serves QueryService over `bus`, with the subscription queries of
    /// `subscriptions`.
    pub fn new(api: Arc<ClientApi>, bus: Arc<QueryBus>, subscriptions: Arc<Subscriptions>) -> Self {
        Queries { api, bus, subscriptions }
    }
}

type Out = mpsc::Sender<Result<QueryProviderInbound, Status>>;
type Responses = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<QueryResponse, Status>> + Send>>;
type Updates = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<SubscriptionQueryResponse, Status>> + Send>>;

fn ack(instruction_id: &str, error: Option<ErrorMessage>) -> QueryProviderInbound {
    QueryProviderInbound {
        instruction_id: String::new(),
        request: Some(Inbound::Ack(InstructionAck {
            instruction_id: instruction_id.to_owned(),
            success: error.is_none(),
            error,
        })),
    }
}

#[tonic::async_trait]
impl QueryService for Queries {
    type OpenStreamStream = ToHandler<Outgoing, QueryProviderInbound>;
    type QueryStream = Responses;
    type SubscriptionStream = Updates;

    async fn open_stream(
        &self,
        request: Request<Streaming<QueryProviderOutbound>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        let context = context_of(&request);
        let incoming = request.into_inner();
        let (handler, wake) = self.bus.connect(&context);
        let (out, receiver) = mpsc::channel(OUTBOUND_BUFFER);
        let bus = self.bus.clone();
        let subscriptions = self.subscriptions.clone();
        let node = self.api.node.name.clone();
        let (named, client) = tokio::sync::watch::channel(String::new());
        let ends = self.api.handler_ends(&context, client);
        let sender = bus.clone();
        let wrap: fn(Outgoing) -> QueryProviderInbound = |outgoing| QueryProviderInbound {
            instruction_id: String::new(),
            request: Some(match outgoing {
                Outgoing::Query(query) => Inbound::Query(query),
                Outgoing::Subscription(request) => Inbound::SubscriptionQueryRequest(request),
                Outgoing::Flow(flow) => Inbound::QueryFlowControl(flow),
                Outgoing::Cancel(reference) => Inbound::QueryCancel(reference),
            }),
        };
        tokio::spawn(async move {
            let receiving = |message: QueryProviderOutbound| {
                let client = match &message.request {
                    Some(Outbound::Subscribe(s) | Outbound::Unsubscribe(s)) => Some(&s.client_id),
                    Some(Outbound::FlowControl(flow)) => Some(&flow.client_id),
                    _ => None,
                };
                remember_client(&named, client);
                receive(&bus, &subscriptions, handler, message, &out, &node)
            };
            read_handler_stream(incoming, ends, receiving).await;
            bus.disconnect(handler).await;
        });
        Ok(Response::new(ToHandler::new(receiver, move || sender.next_for(handler), wrap, wake)))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<Self::QueryStream>, Status> {
        let context = context_of(&request);
        let responses = self.bus.query(&context, request.into_inner());
        Ok(Response::new(Box::pin(responses.map(Ok))))
    }

    async fn subscription(
        &self,
        request: Request<Streaming<SubscriptionQueryRequest>>,
    ) -> Result<Response<Self::SubscriptionStream>, Status> {
        let context = context_of(&request);
        let incoming = request.into_inner();
        let (out, updates) = mpsc::channel(OUTBOUND_BUFFER);
        let subscriptions = self.subscriptions.clone();
        let mut stopping = self.api.stopping.clone();
        tokio::spawn(async move {
            let stopping = async move { super::until(&mut stopping, |stop| *stop).await };
            let mine = std::sync::Mutex::new(std::collections::BTreeSet::new());
            read_handler_stream(incoming, stopping, |message: SubscriptionQueryRequest| {
                let (subscriptions, context, out, mine) = (subscriptions.clone(), &context, out.clone(), &mine);
                async move {
                    match message.request {
                        Some(Control::Subscribe(query)) => {
                            if let Ok(mut mine) = mine.lock() {
                                mine.insert(query.subscription_identifier.clone());
                            }
                            subscriptions.subscribe(context, query, out).await;
                        }
                        Some(Control::GetInitialResult(query)) => {
                            let context = context.clone();
                            tokio::spawn(async move { subscriptions.initial_result(&context, query).await });
                        }
                        Some(Control::FlowControl(query)) => {
                            subscriptions.flow(context, &query.subscription_identifier, query.number_of_permits).await;
                        }
                        Some(Control::Unsubscribe(query)) => {
                            subscriptions.unsubscribe(context, &query.subscription_identifier)
                        }
                        None => {}
                    }
                    true
                }
            })
            .await;
            let ids = mine.lock().map(|m| m.clone()).unwrap_or_default();
            for id in ids {
                subscriptions.unsubscribe(&context, &id);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(updates).map(Ok))))
    }
}

/// Handles one message of a handler client; `false` when its stream is
/// gone.
async fn receive(
    bus: &QueryBus,
    subscriptions: &Subscriptions,
    handler: HandlerId,
    message: QueryProviderOutbound,
    out: &Out,
    node: &str,
) -> bool {
    let id = message.instruction_id;
    let error = match message.request {
        Some(Outbound::Subscribe(subscription)) => {
            bus.subscribe(handler, &subscription);
            None
        }
        Some(Outbound::Unsubscribe(subscription)) => {
            bus.unsubscribe(handler, &subscription);
            None
        }
        Some(Outbound::FlowControl(flow)) => {
            bus.grant(handler, flow.permits);
            None
        }
        Some(Outbound::QueryResponse(response)) => {
            bus.respond(handler, response).await;
            None
        }
        Some(Outbound::QueryComplete(complete)) => {
            bus.complete(handler, &complete.request_id).await;
            None
        }
        Some(Outbound::SubscriptionQueryResponse(response)) => {
            subscriptions.relay(handler, response).await;
            None
        }
        None => Some(unsupported_instruction(node)),
        // An ack is not acknowledged in turn.
        Some(Outbound::Ack(_)) => return true,
    };
    if id.is_empty() {
        return true;
    }
    out.send(Ok(ack(&id, error))).await.is_ok()
}
