//! A stand-in for an Axon application's platform connection that runs an
//! event processor: it reports processor `orders` of component `shop`
//! (token store `store-1`) and answers the instructions the node relays
//! to it, as the processor tests and the console's browser test need.

use std::time::Duration;

use ranvier_proto::common::{ErrorMessage, InstructionAck};
use ranvier_proto::control::event_processor_info::SegmentStatus;
use ranvier_proto::control::platform_inbound_instruction::Request as Inbound;
use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;
use ranvier_proto::control::{EventProcessorInfo, PlatformInboundInstruction, PlatformOutboundInstruction};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// An application's platform connection running processor `orders`.
pub struct App {
    to_server: mpsc::Sender<PlatformInboundInstruction>,
    from_server: tonic::Streaming<PlatformOutboundInstruction>,
}

impl App {
    /// Connects as `client` of component `shop`, reporting processor
    /// `orders` holding `segments` (id, one part of), each step acked.
    pub async fn connect(channel: &Channel, client: &str, segments: &[(i32, i32)]) -> App {
        let crate::Platform { to_server, from_server } = crate::Platform::open(channel, client, "shop").await.unwrap();
        let mut app = App { to_server, from_server };
        app.expect_ack("register").await;
        let info = EventProcessorInfo {
            processor_name: "orders".into(),
            mode: "Tracking".into(),
            running: true,
            active_threads: segments.len() as i32,
            available_threads: 2,
            token_store_identifier: "store-1".into(),
            is_streaming_processor: true,
            segment_status: segments
                .iter()
                .map(|&(segment_id, one_part_of)| SegmentStatus {
                    segment_id,
                    one_part_of,
                    caught_up: true,
                    token_position: 41,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        app.send("info", Inbound::EventProcessorInfo(info)).await;
        app.expect_ack("info").await;
        app
    }

    pub async fn send(&self, id: &str, request: Inbound) {
        let message = PlatformInboundInstruction { instruction_id: id.to_owned(), request: Some(request) };
        self.to_server.send(message).await.unwrap();
    }

    /// The next message other than a heartbeat.
    pub async fn next(&mut self) -> PlatformOutboundInstruction {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.from_server.message())
                .await
                .expect("nothing from the server within 10 s")
                .unwrap()
                .expect("the platform stream ended");
            if !matches!(message.request, Some(Outbound::Heartbeat(_))) {
                return message;
            }
        }
    }

    pub async fn expect_ack(&mut self, id: &str) {
        match self.next().await.request {
            Some(Outbound::Ack(ack)) => assert!(ack.success && ack.instruction_id == id, "{ack:?}"),
            other => panic!("expected the ack of {id}, got {other:?}"),
        }
    }

    /// Acknowledges `instruction`, or refuses it with `error` (code, text).
    pub async fn answer(&self, instruction: &PlatformOutboundInstruction, error: Option<(&str, &str)>) {
        assert!(!instruction.instruction_id.is_empty(), "an instruction to ack carries an id");
        let ack = InstructionAck {
            instruction_id: instruction.instruction_id.clone(),
            success: error.is_none(),
            error: error.map(|(code, message)| ErrorMessage {
                message: message.to_owned(),
                error_code: code.to_owned(),
                ..Default::default()
            }),
        };
        self.send("", Inbound::Ack(ack)).await;
    }
}
