//! PlatformService: tells clients where to connect (this node, or a
//! primary of the context when this node is a backup of it) and keeps
//! their platform stream: acknowledges instructions that carry an id,
//! heartbeats (when enabled: a client silent for the timeout loses its
//! stream), the event processors clients report, and the processor
//! instructions relayed to them (`messaging::processors`). A client is
//! never required to heartbeat unless heartbeats are enabled.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ranvier_proto::common::{ErrorMessage, InstructionAck};
use ranvier_proto::control::platform_inbound_instruction::Request as Inbound;
use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;
use ranvier_proto::control::platform_service_server::PlatformService;
use ranvier_proto::control::{
    ClientIdentification, Heartbeat, NodeInfo, PlatformInboundInstruction, PlatformInfo, PlatformOutboundInstruction,
    RequestReconnect,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::{ErrorCode, status};
use super::{ClientApi, stopping_status, until};
use crate::messaging::processors::Processors;

/// Outbound instructions buffered per platform stream.
const PLATFORM_OUTBOUND_QUEUE_MAX: usize = 32;

/// The PlatformService implementation.
pub struct Platform {
    api: Arc<ClientApi>,
    processors: Arc<Processors>,
}

impl Platform {
    /// Serves PlatformService from the shared API state, keeping the
    /// processors clients report in `processors`.
    pub fn new(api: Arc<ClientApi>, processors: Arc<Processors>) -> Self {
        Self { api, processors }
    }
}

fn ack(instruction_id: &str, error: Option<(&str, &str)>) -> PlatformOutboundInstruction {
    let error = error.map(|(code, location)| ErrorMessage {
        message: "Unsupported instruction".into(),
        location: location.into(),
        details: vec!["Unsupported instruction".into()],
        error_code: code.into(),
    });
    PlatformOutboundInstruction {
        instruction_id: String::new(),
        request: Some(Outbound::Ack(InstructionAck {
            instruction_id: instruction_id.into(),
            success: error.is_none(),
            error,
        })),
    }
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<PlatformOutboundInstruction, Status>> + Send>>;

#[tonic::async_trait]
impl PlatformService for Platform {
    async fn get_platform_server(
        &self,
        request: Request<ClientIdentification>,
    ) -> Result<Response<PlatformInfo>, Status> {
        let context = super::context_of(&request);
        let client = request.into_inner();
        tracing::debug!(client_id = %client.client_id, component = %client.component_name, "platform server requested");
        // A backup or secondary of the context sends its clients to a primary.
        if let Some(target) = self.api.cluster.as_ref().and_then(|cluster| cluster.redirect_clients(&context)) {
            return Ok(Response::new(PlatformInfo {
                primary: Some(NodeInfo {
                    host_name: target.host_name,
                    grpc_port: i32::from(target.grpc_port),
                    http_port: i32::from(target.http_port),
                    version: 0,
                    node_name: target.name,
                }),
                same_connection: false,
            }));
        }
        let node = &self.api.node;
        Ok(Response::new(PlatformInfo {
            primary: Some(NodeInfo {
                host_name: node.host_name.clone(),
                grpc_port: i32::from(node.grpc_port),
                http_port: i32::from(node.http_port),
                version: 0,
                node_name: node.name.clone(),
            }),
            same_connection: true,
        }))
    }

    type OpenStreamStream = OutboundStream;

    async fn open_stream(
        &self,
        request: Request<Streaming<PlatformInboundInstruction>>,
    ) -> Result<Response<Self::OpenStreamStream>, Status> {
        let context = super::context_of(&request);
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(PLATFORM_OUTBOUND_QUEUE_MAX);
        let processors = self.processors.clone();
        let stream = processors.connect(&context, sender.clone());
        let node_name = self.api.node.name.clone();
        let limits = self.api.limits.clone();
        let mut stopping = self.api.stopping.clone();
        let silent = self.api.silent.clone();
        tokio::spawn(async move {
            let mut client_id = String::new();
            let mut last_heartbeat: Option<tokio::time::Instant> = None;
            let frequency = Duration::from_millis(limits.client_heartbeat_frequency_ms.max(10));
            let timeout = Duration::from_millis(limits.client_heartbeat_timeout_ms.max(10));
            let mut ticker = tokio::time::interval(frequency);
            loop {
                tokio::select! {
                    message = inbound.message() => {
                        let instruction = match message {
                            Ok(Some(instruction)) => instruction,
                            Ok(None) | Err(_) => break,
                        };
                        match &instruction.request {
                            Some(Inbound::Heartbeat(_)) => last_heartbeat = Some(tokio::time::Instant::now()),
                            Some(Inbound::Register(client)) => {
                                client_id.clone_from(&client.client_id);
                                processors.identify(stream, client.clone());
                            }
                            Some(Inbound::EventProcessorInfo(info)) => processors.report(stream, info.clone()),
                            Some(Inbound::Ack(ack)) => {
                                processors.acknowledged(&ack.instruction_id, outcome(ack.success, &ack.error));
                            }
                            Some(Inbound::Result(result)) => {
                                processors.acknowledged(&result.instruction_id, outcome(result.success, &result.error));
                            }
                            _ => {}
                        }
                        if let Some(reply) = answer(&instruction, &node_name, limits.heartbeat_enabled)
                            && sender.send(Ok(reply)).await.is_err()
                        {
                            break;
                        }
                    }
                    _ = until(&mut stopping, |s| *s) => {
                        // The node is draining: the client reconnects (to
                        // another node, or this one once it is back) before
                        // its stream ends.
                        let reconnect = PlatformOutboundInstruction {
                            instruction_id: String::new(),
                            request: Some(Outbound::RequestReconnect(RequestReconnect {})),
                        };
                        let _ = sender.send(Ok(reconnect)).await;
                        let _ = sender.send(Err(stopping_status())).await;
                        break;
                    }
                    _ = ticker.tick(), if limits.heartbeat_enabled => {
                        if last_heartbeat.is_some_and(|seen| seen.elapsed() > timeout) {
                            tracing::warn!(client_id = %client_id, %context, "client cut off: no heartbeat in time");
                            let error = status(ErrorCode::Other, "no heartbeat received from the client in time");
                            let _ = sender.send(Err(error)).await;
                            // Its command and query streams end too, so its
                            // handlers leave routing.
                            let _ = silent.send((context.clone(), client_id.clone()));
                            break;
                        }
                        let beat = PlatformOutboundInstruction {
                            instruction_id: String::new(),
                            request: Some(Outbound::Heartbeat(Heartbeat {})),
                        };
                        if last_heartbeat.is_some() && sender.send(Ok(beat)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // Its processors go with it (and the registry's way to its stream).
            processors.disconnect(stream);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// What a client's ack says: done, or its error.
fn outcome(success: bool, error: &Option<ErrorMessage>) -> Result<(), ErrorMessage> {
    if success {
        return Ok(());
    }
    Err(error.clone().unwrap_or_else(|| ErrorMessage {
        message: "the client refused the instruction without saying why".into(),
        ..ErrorMessage::default()
    }))
}

/// The reply to one inbound instruction: an ack when it carries an id.
fn answer(
    instruction: &PlatformInboundInstruction,
    node_name: &str,
    heartbeat_enabled: bool,
) -> Option<PlatformOutboundInstruction> {
    if instruction.instruction_id.is_empty() {
        return None;
    }
    let supported = match &instruction.request {
        Some(Inbound::Register(client)) => {
            tracing::info!(client_id = %client.client_id, component = %client.component_name, "client registered");
            true
        }
        Some(Inbound::Heartbeat(_)) => heartbeat_enabled,
        Some(Inbound::Ack(_)) | Some(Inbound::EventProcessorInfo(_)) | Some(Inbound::Result(_)) => true,
        _ => false,
    };
    let error = (!supported).then_some((ErrorCode::UnsupportedInstruction.as_str(), node_name));
    Some(ack(&instruction.instruction_id, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ranvier_proto::control::Heartbeat;

    fn instruction(id: &str, request: Inbound) -> PlatformInboundInstruction {
        PlatformInboundInstruction { instruction_id: id.into(), request: Some(request) }
    }

    fn ack_of(reply: Option<PlatformOutboundInstruction>) -> InstructionAck {
        match reply.and_then(|r| r.request) {
            Some(Outbound::Ack(ack)) => ack,
            other => panic!("expected an ack, got {other:?}"),
        }
    }

    #[test]
    fn register_is_acked_and_unsupported_cases_get_axoniq_1002() {
        let register = instruction("1", Inbound::Register(ClientIdentification::default()));
        let reply = ack_of(answer(&register, "n1", false));
        assert!(reply.success);
        assert_eq!(reply.instruction_id, "1");

        let heartbeat = instruction("2", Inbound::Heartbeat(Heartbeat {}));
        let reply = ack_of(answer(&heartbeat, "n1", false));
        assert!(!reply.success);
        let error = reply.error.unwrap();
        assert_eq!(error.error_code, "AXONIQ-1002");
        assert_eq!(error.location, "n1");
        assert!(ack_of(answer(&heartbeat, "n1", true)).success);
    }

    #[test]
    fn instructions_without_id_are_not_acked() {
        let register = instruction("", Inbound::Register(ClientIdentification::default()));
        assert!(answer(&register, "n1", true).is_none());
    }
}
