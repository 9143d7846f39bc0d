//! Hand-written wire types for the read hot path.
//!
//! `EventWithToken` (ListEvents) is `{1: int64 token, 2: Event event}` on the
//! wire. A length-delimited message field and a `bytes` field encode the same
//! way, so this type carries the event as the protobuf bytes the store keeps
//! on disk: the server streams them without decoding and re-encoding each
//! event, and a client decodes them with [`EventWithToken::decode_event`].

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::event::Event;

/// One event of a `ListEvents` stream: its global token and the encoded
/// `io.axoniq.axonserver.grpc.event.Event`.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct EventWithToken {
    /// Field 1: the 0-based global index of the event in its context.
    pub token: i64,
    /// Field 2: the encoded `Event` message, exactly as stored.
    pub event: Bytes,
}

impl EventWithToken {
    /// Builds the message from a decoded event (mostly for tests and tools).
    pub fn from_event(token: i64, event: &Event) -> Self {
        Self { token, event: Bytes::from(event.encode_to_vec()) }
    }

    /// Decodes the carried event.
    pub fn decode_event(&self) -> Result<Event, DecodeError> {
        Event::decode(self.event.clone())
    }
}

impl Message for EventWithToken {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.token != 0 {
            encoding::int64::encode(1, &self.token, buf);
        }
        // An empty event is still sent: field 2 is a message, and an absent
        // message and an empty one decode alike on the client.
        encoding::bytes::encode(2, &self.event, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::int64::merge(wire_type, &mut self.token, buf, ctx),
            2 => encoding::bytes::merge(wire_type, &mut self.event, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let token = if self.token != 0 { encoding::int64::encoded_len(1, &self.token) } else { 0 };
        token + encoding::bytes::encoded_len(2, &self.event)
    }

    fn clear(&mut self) {
        self.token = 0;
        self.event = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::SerializedObject;

    /// The raw form must be byte-identical to what a client compiled from the
    /// plain proto (`Event event = 2`) expects, in both directions.
    #[derive(Clone, PartialEq, prost::Message)]
    struct PlainEventWithToken {
        #[prost(int64, tag = "1")]
        token: i64,
        #[prost(message, optional, tag = "2")]
        event: Option<Event>,
    }

    fn sample_event() -> Event {
        Event {
            message_identifier: "m-1".into(),
            aggregate_identifier: "order-7".into(),
            aggregate_sequence_number: 3,
            aggregate_type: "Order".into(),
            timestamp: 1_700_000_000_000,
            payload: Some(SerializedObject {
                r#type: "OrderPlaced".into(),
                revision: "1".into(),
                data: Bytes::from_static(b"{\"qty\":2}"),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_plain_encodings_are_identical() {
        let event = sample_event();
        let raw = EventWithToken::from_event(42, &event).encode_to_vec();
        let plain = PlainEventWithToken { token: 42, event: Some(event.clone()) }.encode_to_vec();
        assert_eq!(raw, plain);

        let decoded = EventWithToken::decode(plain.as_slice()).unwrap();
        assert_eq!(decoded.token, 42);
        assert_eq!(decoded.decode_event().unwrap(), event);
    }

    #[test]
    fn token_zero_round_trips() {
        let event = sample_event();
        let bytes = EventWithToken::from_event(0, &event).encode_to_vec();
        let plain = PlainEventWithToken::decode(bytes.as_slice()).unwrap();
        assert_eq!(plain.token, 0);
        assert_eq!(plain.event, Some(event));
    }
}
