//! Reads the few `Event` fields the store needs (aggregate id, sequence
//! number, aggregate type, timestamp) straight from the encoded protobuf,
//! without decoding payload or metadata. The store derives everything it
//! indexes from the stored bytes through this one function, so what append
//! indexes and what recovery rebuilds can never disagree. It also checks a
//! client's encoded event as a whole ([`check_event`]), so appends can
//! store the bytes as they came.

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

/// Checks that `bytes` are an `Event` a protobuf decoder accepts — every
/// known field of `Event`, its payload (`SerializedObject`) and its meta
/// data (`map<string, MetaDataValue>`) with its wire type, strings valid
/// UTF-8, lengths within their message, unknown fields skippable — without
/// building the message. (Unknown groups nested deeper than about 100
/// levels are where it may differ from prost's recursion limit.)
pub fn check_event(bytes: &[u8]) -> Result<(), String> {
    check_fields(bytes, |tag, wire_type, buf| {
        match tag {
            1 | 2 | 4 => check_str(wire_type, buf)?,
            3 | 5 | 8 => check_varint(wire_type, buf)?,
            6 => check_serialized_object(nested(wire_type, buf)?)?,
            7 => check_meta_data_entry(nested(wire_type, buf)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// Walks the fields of one message: `field` checks a field it knows
/// (returning `true`), every other field is skipped.
fn check_fields(
    mut buf: &[u8],
    mut field: impl FnMut(u32, WireType, &mut &[u8]) -> Result<bool, String>,
) -> Result<(), String> {
    while !buf.is_empty() {
        let (tag, wire_type) = key(&mut buf)?;
        if !field(tag, wire_type, &mut buf)? {
            skip(wire_type, tag, &mut buf)?;
        }
    }
    Ok(())
}

fn key(buf: &mut &[u8]) -> Result<(u32, WireType), String> {
    decode_key(buf).map_err(|e| e.to_string())
}

fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8]) -> Result<(), String> {
    skip_field(wire_type, tag, buf, DecodeContext::default()).map_err(|e| e.to_string())
}

fn expect(actual: WireType, expected: WireType) -> Result<(), String> {
    prost::encoding::check_wire_type(expected, actual).map_err(|e| e.to_string())
}

/// The body of a length-delimited field.
fn nested<'a>(wire_type: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    expect(wire_type, WireType::LengthDelimited)?;
    let len = decode_varint(buf).map_err(|e| e.to_string())?;
    let len = usize::try_from(len).ok().filter(|len| *len <= buf.len()).ok_or("buffer underflow")?;
    let (body, rest) = buf.split_at(len);
    *buf = rest;
    Ok(body)
}

fn check_str(wire_type: WireType, buf: &mut &[u8]) -> Result<(), String> {
    let body = nested(wire_type, buf)?;
    std::str::from_utf8(body).map(|_| ()).map_err(|_| "invalid string value: data is not UTF-8 encoded".into())
}

fn check_varint(wire_type: WireType, buf: &mut &[u8]) -> Result<(), String> {
    expect(wire_type, WireType::Varint)?;
    decode_varint(buf).map(|_| ()).map_err(|e| e.to_string())
}

/// `SerializedObject { string type = 1; string revision = 2; bytes data = 3; }`
fn check_serialized_object(buf: &[u8]) -> Result<(), String> {
    check_fields(buf, |tag, wire_type, buf| {
        match tag {
            1 | 2 => check_str(wire_type, buf)?,
            3 => nested(wire_type, buf).map(|_| ())?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A map entry `{ string key = 1; MetaDataValue value = 2; }`.
fn check_meta_data_entry(buf: &[u8]) -> Result<(), String> {
    check_fields(buf, |tag, wire_type, buf| {
        match tag {
            1 => check_str(wire_type, buf)?,
            2 => check_meta_data_value(nested(wire_type, buf)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// `MetaDataValue { oneof: string 1, sint64 2, bool 3, double 4, SerializedObject 5 }`
fn check_meta_data_value(buf: &[u8]) -> Result<(), String> {
    check_fields(buf, |tag, wire_type, buf| {
        match tag {
            1 => check_str(wire_type, buf)?,
            2 | 3 => check_varint(wire_type, buf)?,
            4 => {
                expect(wire_type, WireType::SixtyFourBit)?;
                *buf = buf.get(8..).ok_or("buffer underflow")?;
            }
            5 => check_serialized_object(nested(wire_type, buf)?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
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

    fn a_full_event() -> Event {
        let mut event = Event {
            message_identifier: "id-1".into(),
            aggregate_identifier: "order-1".into(),
            aggregate_sequence_number: 7,
            aggregate_type: "Order".into(),
            timestamp: 1_700_000_000_123,
            payload: Some(SerializedObject { r#type: "T".into(), revision: "2".into(), data: vec![0xff, 0].into() }),
            snapshot: false,
            ..Default::default()
        };
        let values = [
            meta_data_value::Data::TextValue("é".into()),
            meta_data_value::Data::NumberValue(-3),
            meta_data_value::Data::BooleanValue(true),
            meta_data_value::Data::DoubleValue(0.5),
            meta_data_value::Data::BytesValue(SerializedObject { r#type: "B".into(), ..Default::default() }),
        ];
        for (i, value) in values.into_iter().enumerate() {
            event.meta_data.insert(format!("k{i}"), MetaDataValue { data: Some(value) });
        }
        event
    }

    #[test]
    fn check_event_accepts_what_prost_encodes() {
        assert_eq!(check_event(&a_full_event().encode_to_vec()), Ok(()));
        assert_eq!(check_event(&[]), Ok(()));
        // An unknown field (number 15, a string) is skipped, as prost does.
        assert_eq!(check_event(&[0x7a, 0x01, b'x']), Ok(()));
    }

    #[test]
    fn check_event_refuses_what_prost_refuses() {
        for bad in [
            &[0x12, 0x05, b'a'][..],               // a string longer than the message
            &[0x12, 0x01, 0xff],                   // aggregate id not UTF-8
            &[0x18, 0x01][..1],                    // a key without its value
            &[0x1a, 0x00],                         // sequence number as a string
            &[0x32, 0x02, 0x0a, 0x05],             // payload type longer than the payload
            &[0x3a, 0x04, 0x12, 0x02, 0x21, 0x00], // a double cut short in meta data
            &[0x0c],                               // an end group without a start
            &[0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // varint overflow
        ] {
            assert!(Event::decode(bad).is_err(), "prost accepts {bad:?}");
            assert!(check_event(bad).is_err(), "check_event accepts {bad:?}");
        }
    }

    proptest::proptest! {
        /// Damaged encodings (bytes changed, cut, inserted) are accepted by
        /// check_event exactly when prost decodes them.
        #[test]
        fn check_event_agrees_with_prost(
            edits in proptest::collection::vec((0usize..400, 0u8..=255, 0u8..3), 0..4),
            cut in proptest::option::of(0usize..400),
        ) {
            let mut bytes = a_full_event().encode_to_vec();
            for (at, byte, kind) in edits {
                let at = at % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => { bytes.remove(at); }
                    _ => {}
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            proptest::prop_assert_eq!(check_event(&bytes).is_ok(), Event::decode(bytes.as_slice()).is_ok(), "{:?}", bytes);
        }

        /// Arbitrary bytes, too.
        #[test]
        fn check_event_agrees_with_prost_on_noise(bytes in proptest::collection::vec(0u8..=255, 0..64)) {
            proptest::prop_assert_eq!(check_event(&bytes).is_ok(), Event::decode(bytes.as_slice()).is_ok(), "{:?}", bytes);
        }
    }
}
