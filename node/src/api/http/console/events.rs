//! The console's event browser (`/console/events`): the last events of a
//! context, or the last events of one aggregate, as this node stores them
//! (a follower may be a moment behind its leader), newest first, with
//! aggregate, sequence, payload type and revision, timestamp, metadata and
//! the payload shown as text where it is UTF-8 text. Reads are bounded
//! (at most [`LIMIT_MAX`] events and [`READ_BYTES_MAX`] bytes per page,
//! [`PAYLOAD_SHOWN_BYTES`] of each payload) and run off the async workers.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use prost::Message;
use ranvier_proto::common::meta_data_value::Data;
use ranvier_proto::event::Event;
use ranvier_wire::http::encode;

use super::{Frame, Viewer, render};
use crate::api::http::HttpState;
use crate::store::{Cursor, SegmentStore, StoreError};

pages!(EventsPage);

/// The page sizes offered.
const LIMITS: [usize; 3] = [20, 50, 100];

/// The most events one page shows.
const LIMIT_MAX: usize = 100;

/// The most event bytes one page reads.
const READ_BYTES_MAX: usize = 8 << 20;

/// How much of a payload or metadata value a page shows (bytes).
const PAYLOAD_SHOWN_BYTES: usize = 4096;

/// The routes of this module.
pub(super) fn routes() -> Router<Arc<HttpState>> {
    Router::new().route("/console/events", get(page))
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    context: Option<String>,
    aggregate: Option<String>,
    limit: Option<usize>,
}

/// One event as the page shows it.
struct EventRow {
    token: String,
    aggregate: String,
    /// The aggregate id percent-encoded, for its own page's link.
    aggregate_query: String,
    seq: String,
    aggregate_type: String,
    payload_type: String,
    revision: String,
    timestamp: String,
    timestamp_ms: i64,
    meta: Vec<(String, String)>,
    payload: String,
    /// What the page says of the payload beside or instead of it.
    payload_note: String,
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    frame: Frame,
    /// The contexts this node stores.
    contexts: Vec<String>,
    context: String,
    /// The context percent-encoded, for links.
    context_query: String,
    aggregate: String,
    limit: usize,
    limits: [usize; 3],
    rows: Vec<EventRow>,
    /// What the page says instead of, or above, the events.
    note: Option<String>,
}

/// `bytes` as text when they are UTF-8 without control characters other
/// than line breaks and tabs (at most [`PAYLOAD_SHOWN_BYTES`] of them),
/// with what the page says about them.
fn as_text(bytes: &[u8]) -> (String, String) {
    if bytes.is_empty() {
        return (String::new(), "empty".to_owned());
    }
    let shown = &bytes[..bytes.len().min(PAYLOAD_SHOWN_BYTES)];
    // A cut may split a character: the valid prefix is what is shown.
    let text = match std::str::from_utf8(shown) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => std::str::from_utf8(&shown[..error.valid_up_to()]).unwrap_or(""),
        Err(_) => return (String::new(), format!("binary, {} bytes", bytes.len())),
    };
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return (String::new(), format!("binary, {} bytes", bytes.len()));
    }
    let note = if text.len() < bytes.len() {
        format!("first {} of {} bytes", text.len(), bytes.len())
    } else {
        format!("{} bytes", bytes.len())
    };
    (text.to_owned(), note)
}

fn meta_value(value: &ranvier_proto::common::MetaDataValue) -> String {
    match &value.data {
        Some(Data::TextValue(text)) => as_text(text.as_bytes()).0,
        Some(Data::NumberValue(number)) => number.to_string(),
        Some(Data::BooleanValue(flag)) => flag.to_string(),
        Some(Data::DoubleValue(number)) => number.to_string(),
        Some(Data::BytesValue(object)) => {
            let (text, note) = as_text(&object.data);
            if text.is_empty() { format!("{} ({note})", object.r#type) } else { format!("{}: {text}", object.r#type) }
        }
        None => String::new(),
    }
}

/// An event's row (`token`: its place in the context's stream, when known).
fn row(token: Option<u64>, bytes: Bytes) -> EventRow {
    let size = bytes.len();
    let Ok(event) = Event::decode(bytes) else {
        return EventRow {
            token: token.map_or_else(|| "—".to_owned(), |t| t.to_string()),
            aggregate: String::new(),
            aggregate_query: String::new(),
            seq: String::new(),
            aggregate_type: String::new(),
            payload_type: String::new(),
            revision: String::new(),
            timestamp: String::new(),
            timestamp_ms: 0,
            meta: Vec::new(),
            payload: String::new(),
            payload_note: format!("a stored record of {size} bytes that does not decode as an event"),
        };
    };
    let payload = event.payload.unwrap_or_default();
    let (text, note) = as_text(&payload.data);
    let mut meta: Vec<(String, String)> = event.meta_data.iter().map(|(k, v)| (k.clone(), meta_value(v))).collect();
    meta.sort();
    let domain = !event.aggregate_type.is_empty() || !event.aggregate_identifier.is_empty();
    EventRow {
        token: token.map_or_else(|| "—".to_owned(), |t| t.to_string()),
        seq: if domain { event.aggregate_sequence_number.to_string() } else { "—".to_owned() },
        aggregate_query: encode(&event.aggregate_identifier),
        aggregate: event.aggregate_identifier,
        aggregate_type: event.aggregate_type,
        payload_type: payload.r#type,
        revision: payload.revision,
        timestamp: u64::try_from(event.timestamp)
            .map(|ms| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms)))
            .unwrap_or_else(|_| event.timestamp.to_string()),
        timestamp_ms: event.timestamp,
        meta,
        payload: text,
        payload_note: note,
    }
}

/// The last `limit` events of the stream, newest first.
fn last_events(store: &SegmentStore, limit: usize) -> Result<Vec<EventRow>, StoreError> {
    let next = store.next_token();
    let start = next.saturating_sub(limit as u64).max(store.first_token());
    let mut cursor = Cursor::at(start);
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    while cursor.next_token < next && bytes < READ_BYTES_MAX {
        let batch = store.read_batch(&mut cursor, limit - rows.len(), READ_BYTES_MAX - bytes)?;
        if batch.is_empty() {
            break;
        }
        for (token, record) in batch {
            bytes += record.len();
            rows.push(row(Some(token), record));
        }
    }
    rows.reverse();
    Ok(rows)
}

/// Records read at a time from an aggregate's newest end.
const AGGREGATE_STEP: usize = 10;

/// The last `limit` events of aggregate `id`, newest first: only the last
/// `limit` sequence numbers are looked up, and reading stops once
/// [`READ_BYTES_MAX`] is passed.
fn aggregate_events(store: &SegmentStore, id: &str, limit: usize) -> Result<Vec<EventRow>, StoreError> {
    let Some(highest) = store.highest_sequence(id)? else { return Ok(Vec::new()) };
    let first = highest.saturating_sub(limit as i64 - 1).max(0);
    let plan = store.aggregate_plan(id, first, highest.saturating_add(1))?;
    let (mut rows, mut bytes) = (Vec::new(), 0usize);
    for step in plan.rchunks(AGGREGATE_STEP) {
        let records = store.read_records(id, step)?;
        for record in records.into_iter().rev() {
            bytes += record.len();
            rows.push(row(None, record));
        }
        if bytes >= READ_BYTES_MAX {
            break;
        }
    }
    Ok(rows)
}

async fn page(State(state): State<Arc<HttpState>>, headers: HeaderMap, Query(query): Query<EventsQuery>) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let frame = Frame::new(&state, &headers, &viewer, &super::status(&state), "events", "Events".to_owned());
    let mut contexts: Vec<String> = state.contexts.list().into_iter().map(|(name, _)| name).collect();
    contexts.sort();
    let context = query.context.filter(|c| !c.is_empty()).unwrap_or_else(|| "default".to_owned());
    let aggregate = query.aggregate.map(|a| a.trim().to_owned()).unwrap_or_default();
    let limit = query.limit.unwrap_or(LIMITS[0]).clamp(1, LIMIT_MAX);
    let (rows, note) = match state.contexts.get(&context) {
        None => (Vec::new(), Some(not_here(&state, &context))),
        Some(Err(reason)) => (Vec::new(), Some(format!("This node does not serve context {context}: {reason}"))),
        Some(Ok(store)) => {
            let (events, id) = (store.events.clone(), aggregate.clone());
            let read = tokio::task::spawn_blocking(move || {
                if id.is_empty() { last_events(&events, limit) } else { aggregate_events(&events, &id, limit) }
            })
            .await;
            match read {
                Ok(Ok(rows)) if rows.is_empty() && !aggregate.is_empty() => {
                    (rows, Some(format!("Context {context} holds no events of aggregate {aggregate} on this node.")))
                }
                Ok(Ok(rows)) if rows.is_empty() => (rows, Some(format!("Context {context} holds no events yet."))),
                Ok(Ok(rows)) => (rows, None),
                Ok(Err(error)) => (Vec::new(), Some(format!("The events could not be read: {error}"))),
                Err(error) => (Vec::new(), Some(format!("The events could not be read: {error}"))),
            }
        }
    };
    let context_query = encode(&context);
    render(&EventsPage { frame, contexts, context, context_query, aggregate, limit, limits: LIMITS, rows, note })
}

/// What the page says when this node does not store `context`: the nodes
/// that do, where the cluster knows them.
fn not_here(state: &HttpState, context: &str) -> String {
    let Some(cluster) = &state.cluster else { return format!("This node has no context {context}.") };
    let model = cluster.model();
    let Some(info) = model.contexts.get(context) else { return format!("The cluster has no context {context}.") };
    let holders: Vec<String> = model
        .groups
        .get(&info.group)
        .map(|g| {
            g.members
                .iter()
                .filter(|(_, role)| role.stores_events())
                .filter_map(|(node, _)| model.nodes.get(node))
                .map(|n| {
                    format!("{} (http://{}:{}/console/events?context={context})", n.name, n.host_name, n.http_port)
                })
                .collect()
        })
        .unwrap_or_default();
    if holders.is_empty() {
        format!("No node stores context {context}.")
    } else {
        format!("This node does not store context {context}. The nodes that do: {}.", holders.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_show_as_text_only_when_they_are_text() {
        assert_eq!(as_text(b"{\"id\":1}\n"), ("{\"id\":1}\n".to_owned(), "9 bytes".to_owned()));
        assert_eq!(as_text(b""), (String::new(), "empty".to_owned()));
        assert_eq!(as_text(&[0xff, 0x00, 0x12]).1, "binary, 3 bytes");
        assert_eq!(as_text(b"a\x01b").1, "binary, 3 bytes", "control characters are not text");
        let long = "é".repeat(PAYLOAD_SHOWN_BYTES);
        let (shown, note) = as_text(long.as_bytes());
        assert!(shown.len() <= PAYLOAD_SHOWN_BYTES && shown.chars().all(|c| c == 'é'), "cut on a character");
        assert_eq!(note, format!("first {} of {} bytes", shown.len(), long.len()));
    }
}
