//! CommandService of the Axon protocol over this node's command bus
//! (`messaging::commands`).
//!
//! `OpenStream` is a handler client's stream: subscriptions, permits and
//! command responses come in, each acknowledged when it carries an
//! instruction id (an unknown request gets AXONIQ-1002); commands go out,
//! one per permit. When the stream ends the handler leaves the bus.
//! `Dispatch` answers with exactly one `CommandResponse`: the handler's, or
//! one carrying the error code (never a gRPC error).

use std::sync::Arc;

use ranvier_proto::command::command_provider_inbound::Request as Inbound;
use ranvier_proto::command::command_provider_outbound::Request as Outbound;
use ranvier_proto::command::command_service_server::CommandService;
use ranvier_proto::command::{Command, CommandProviderInbound, CommandProviderOutbound, CommandResponse};
use ranvier_proto::common::{ErrorMessage, InstructionAck};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{ClientApi, ToHandler, context_of, read_handler_stream, remember_client, unsupported_instruction};
use crate::messaging::commands::{CommandBus, HandlerId};

/// Acknowledgements buffered towards one handler client (its permits bound
/// the commands, which its stream takes from the bus as the network allows).
const OUTBOUND_BUFFER: usize = 64;

/// The CommandService.
pub struct Commands {
    api: Arc<ClientApi>,
    bus: Arc<CommandBus>,
}

impl Commands {
    /// Serves CommandService over `bus`.
    pub fn new(api: Arc<ClientApi>, bus: Arc<CommandBus>) -> Self {
        Commands { api, bus }
    }
}

type Out = mpsc::Sender<Result<CommandProviderInbound, Status>>;

fn ack(instruction_id: &str, error: Option<ErrorMessage>) -> CommandProviderInbound {
    CommandProviderInbound {
        instruction_id: String::new(),
        request: Some(Inbound::Ack(InstructionAck {
            instruction_id: instruction_id.to_owned(),
            success: error.is_none(),
            error,
        })),
    }
}

#[tonic::async_trait]
impl CommandService for Commands {
    type OpenStreamStream = ToHandler<Command, CommandProviderInbound>;

    async fn open_stream(
        &self,
        request: Request<Streaming<CommandProviderOutbound>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        let context = context_of(&request);
        let incoming = request.into_inner();
        let (handler, wake) = self.bus.connect(&context);
        let (out, receiver) = mpsc::channel(OUTBOUND_BUFFER);
        let bus = self.bus.clone();
        let node = self.api.node.name.clone();
        let (named, client) = tokio::sync::watch::channel(String::new());
        let ends = self.api.handler_ends(&context, client);
        let sender = bus.clone();
        let wrap: fn(Command) -> CommandProviderInbound = |command| CommandProviderInbound {
            instruction_id: String::new(),
            request: Some(Inbound::Command(command)),
        };
        tokio::spawn(async move {
            read_handler_stream(incoming, ends, |message: CommandProviderOutbound| {
                let client = match &message.request {
                    Some(Outbound::Subscribe(s) | Outbound::Unsubscribe(s)) => Some(&s.client_id),
                    Some(Outbound::FlowControl(flow)) => Some(&flow.client_id),
                    _ => None,
                };
                remember_client(&named, client);
                receive(&bus, handler, message, &out, &node)
            })
            .await;
            bus.disconnect(handler);
        });
        Ok(Response::new(ToHandler::new(receiver, move || sender.next_for(handler), wrap, wake)))
    }

    async fn dispatch(&self, request: Request<Command>) -> Result<Response<CommandResponse>, Status> {
        let context = context_of(&request);
        Ok(Response::new(self.bus.dispatch(&context, request.into_inner()).await))
    }
}

/// Handles one message of a handler client; `false` when its stream is
/// gone.
async fn receive(
    bus: &CommandBus,
    handler: HandlerId,
    message: CommandProviderOutbound,
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
        Some(Outbound::CommandResponse(response)) => {
            bus.respond(handler, response);
            None
        }
        // An ack is not acknowledged in turn.
        Some(Outbound::Ack(_)) => return true,
        None => Some(unsupported_instruction(node)),
    };
    if id.is_empty() {
        return true;
    }
    out.send(Ok(ack(&id, error))).await.is_ok()
}
