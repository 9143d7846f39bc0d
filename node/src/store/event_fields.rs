//! Reads the few `Event` fields the store needs (aggregate id, sequence
//! number, aggregate type, timestamp) straight from the encoded protobuf,
//! without decoding payload or metadata. The store derives everything it
//! indexes from the stored bytes through this one function, so what append
//! indexes and what recovery rebuilds can never disagree.

use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// The indexed fields of one encoded `Event`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// Field 2, `aggregate_identifier`.
    pub aggregate_id: &'a str,
    /// Field 3, `aggregate_sequence_number`.
    pub sequence: i64,
    /// Field 4, `aggregate_type`.
    pub aggregate_type: &'a str,
    /// Field 5, `timestamp` (epoch ms).
    pub timestamp: i64,
}

impl EventFields<'_> {
    /// A domain event (non-empty aggregate type) is sequence-checked and
    /// indexed by aggregate id; other events are only stored.
    pub fn is_domain_event(&self) -> bool {
        !self.aggregate_type.is_empty()
    }
}

/// Parses the indexed fields; `None` when the bytes are not a valid message.
pub fn parse(bytes: &[u8]) -> Option<EventFields<'_>> {
    let mut fields = EventFields::default();
    let mut buf = bytes;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match (tag, wire_type) {
            (2, WireType::LengthDelimited) => fields.aggregate_id = take_str(&mut buf)?,
            (4, WireType::LengthDelimited) => fields.aggregate_type = take_str(&mut buf)?,
            (3, WireType::Varint) => fields.sequence = decode_varint(&mut buf).ok()? as i64,
            (5, WireType::Varint) => fields.timestamp = decode_varint(&mut buf).ok()? as i64,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some(fields)
}

/// The payload's `(type, revision)` (field 6), used to skip blacklisted
/// payload types on ListEvents; `None` when absent or unreadable.
pub fn payload_type(bytes: &[u8]) -> Option<(&str, &str)> {
    let mut buf = bytes;
    let mut payload: Option<&[u8]> = None;
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if (tag, wire_type) == (6, WireType::LengthDelimited) {
            let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
            payload = Some(buf.get(..len)?);
            buf = &buf[len..];
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?;
        }
    }
    let mut buf = payload?;
    let (mut kind, mut revision) = ("", "");
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        match (tag, wire_type) {
            (1, WireType::LengthDelimited) => kind = take_str(&mut buf)?,
            (2, WireType::LengthDelimited) => revision = take_str(&mut buf)?,
            _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?,
        }
    }
    Some((kind, revision))
}

fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    let bytes = buf.get(..len)?;
    *buf = &buf[len..];
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use ranvier_proto::common::{MetaDataValue, SerializedObject, meta_data_value};
    use ranvier_proto::event::Event;

    #[test]
    fn reads_the_same_fields_prost_does() {
        let mut event = Event {
            message_identifier: "id".into(),
            aggregate_identifier: "order-1".into(),
            aggregate_sequence_number: -5,
            aggregate_type: "Order".into(),
            timestamp: 1_700_000_000_123,
            payload: Some(SerializedObject { r#type: "T".into(), revision: "".into(), data: vec![1, 2, 3].into() }),
            snapshot: true,
            ..Default::default()
        };
        event.meta_data.insert("k".into(), MetaDataValue { data: Some(meta_data_value::Data::NumberValue(-3)) });
        let bytes = event.encode_to_vec();
        let fields = parse(&bytes).unwrap();
        assert_eq!(fields.aggregate_id, "order-1");
        assert_eq!(fields.sequence, -5);
        assert_eq!(fields.aggregate_type, "Order");
        assert_eq!(fields.timestamp, 1_700_000_000_123);
        assert!(fields.is_domain_event());
        assert_eq!(payload_type(&bytes), Some(("T", "")));
    }

    #[test]
    fn empty_message_has_defaults_and_garbage_is_refused() {
        assert_eq!(parse(&[]), Some(EventFields::default()));
        assert!(!EventFields::default().is_domain_event());
        assert_eq!(parse(&[0x12, 0x05, b'a']), None, "a string longer than the message");
        assert_eq!(parse(&[0xff]), None);
    }
}
