//! The event store's backup endpoints (Axon Server's paths): which segment
//! files to copy, and the files themselves, streamed.
//!
//! - `GET /v1/backup/eventstore?targetContext=C&type=EVENT|SNAPSHOT&lastClosedSegmentBackedUp=N`:
//!   `{"lastClosedSegment": first token of the newest closed segment (-1: none), "filenames": [...]}`,
//!   the closed segments newer than `N` with their side files, and the
//!   active segment's data file (Ranvier adds `activeSegment` and the
//!   store's `nextToken` when listed).
//! - `GET /v1/backup/filenames?context=C&type=..&lastSegmentBackedUp=N`:
//!   the closed segments' files only (Axon's older endpoint).
//! - `GET /v1/backup/file?path=P` (Ranvier's): one listed file, streamed in
//!   64 KiB chunks (at most four in flight, so memory stays bounded however
//!   large the file). Of the active segment only its committed length is
//!   sent: whole transactions, as of the moment of the request.
//!
//! A listed closed segment is **pinned** for [`BACKUP_LEASE`] (renewed by
//! each download): segments retired to the secondary tier are not deleted
//! while a backup copies them. Segments already retired are not on this
//! node's disk and are not listed (back up a SECONDARY for those). Every
//! endpoint needs administrator rights when access control is on.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use ranvier_wire::backup::BackupListing;
use serde::Deserialize;

use super::HttpState;
use super::admin::answer;
use crate::store::SegmentStore;

/// How long a listed segment stays on disk for the backup that listed it.
pub const BACKUP_LEASE: Duration = Duration::from_secs(10 * 60);
/// Bytes per chunk of a streamed file.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks read ahead of the client.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The routes of this module.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1/backup/eventstore", get(eventstore))
        .route("/v1/backup/filenames", get(filenames))
        .route("/v1/backup/file", get(file))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventStoreQuery {
    target_context: Option<String>,
    r#type: Option<String>,
    last_closed_segment_backed_up: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilenamesQuery {
    context: Option<String>,
    r#type: Option<String>,
    last_segment_backed_up: Option<i64>,
}

fn bad_request(message: impl Into<String>) -> Response {
    answer(StatusCode::BAD_REQUEST, Some("AXONIQ-2311"), message)
}

/// The store of `context` and kind `kind` (`EVENT` or `SNAPSHOT`).
fn store(state: &HttpState, context: Option<String>, kind: Option<String>) -> Result<SegmentStore, Box<Response>> {
    let context = context.unwrap_or_else(|| "default".to_owned());
    let snapshots = match kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("EVENT") => false,
        Some("SNAPSHOT") => true,
        Some(other) => return Err(Box::new(bad_request(format!("type {other}: expected EVENT or SNAPSHOT")))),
    };
    match state.contexts.get(&context) {
        Some(Ok(store)) => Ok(if snapshots { store.snapshots } else { store.events }),
        Some(Err(reason)) => Err(Box::new(answer(StatusCode::SERVICE_UNAVAILABLE, Some("AXONIQ-7000"), reason))),
        None => {
            let message = format!("no context {context} on this node");
            Err(Box::new(answer(StatusCode::NOT_FOUND, Some("AXONIQ-1302"), message)))
        }
    }
}

/// The files of `store`'s closed segments newer than `after`, pinned for
/// the backup, and the newest closed segment.
fn closed_files(store: &SegmentStore, after: i64) -> (Vec<String>, i64) {
    let mut newest = -1;
    let mut pinned = Vec::new();
    let mut names = Vec::new();
    for segment in store.segment_files().into_iter().filter(|s| s.closed) {
        newest = newest.max(segment.first_token as i64);
        if segment.first_token as i64 > after {
            pinned.push(segment.first_token);
            names.extend(segment.paths.iter().map(|p| p.display().to_string()));
        }
    }
    store.pin(&pinned, Instant::now() + BACKUP_LEASE);
    (names, newest)
}

async fn eventstore(State(state): State<Arc<HttpState>>, Query(query): Query<EventStoreQuery>) -> Response {
    let store = match store(&state, query.target_context, query.r#type) {
        Ok(store) => store,
        Err(response) => return *response,
    };
    let next_token = store.next_token();
    let (mut filenames, last_closed_segment) = closed_files(&store, query.last_closed_segment_backed_up.unwrap_or(-1));
    let mut active_segment = 0;
    for segment in store.segment_files().into_iter().filter(|s| !s.closed) {
        active_segment = segment.first_token;
        filenames.extend(segment.paths.iter().map(|p| p.display().to_string()));
    }
    Json(BackupListing { last_closed_segment, filenames, active_segment, next_token }).into_response()
}

async fn filenames(State(state): State<Arc<HttpState>>, Query(query): Query<FilenamesQuery>) -> Response {
    let store = match store(&state, query.context, query.r#type) {
        Ok(store) => store,
        Err(response) => return *response,
    };
    Json(closed_files(&store, query.last_segment_backed_up.unwrap_or(-1)).0).into_response()
}

#[derive(Deserialize)]
struct FileQuery {
    path: String,
}

/// A segment file of one of this node's stores: how much of it to send.
fn find(state: &HttpState, path: &PathBuf) -> Option<u64> {
    for (_, store) in state.contexts.list() {
        let Ok(store) = store else { continue };
        for kind in [&store.events, &store.snapshots] {
            for segment in kind.segment_files() {
                if !segment.paths.contains(path) {
                    continue;
                }
                if let Some(committed) = kind.active_len(segment.first_token)
                    && segment.paths.first() == Some(path)
                {
                    return Some(committed);
                }
                kind.pin(&[segment.first_token], Instant::now() + BACKUP_LEASE);
                return std::fs::metadata(path).ok().map(|m| m.len());
            }
        }
    }
    None
}

async fn file(State(state): State<Arc<HttpState>>, Query(query): Query<FileQuery>) -> Response {
    let path = PathBuf::from(&query.path);
    let Some(len) = find(&state, &path) else {
        let message = format!("{} is not a segment file of this node's stores (see /v1/backup/eventstore)", query.path);
        return answer(StatusCode::NOT_FOUND, Some("AXONIQ-1302"), message);
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file.take(len),
            Err(error) => {
                let _ = sender.blocking_send(Err(error));
                return;
            }
        };
        let mut left = len;
        while left > 0 {
            let mut chunk = vec![0u8; CHUNK_BYTES.min(left as usize)];
            match file.read(&mut chunk) {
                Ok(0) => {
                    let short = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ended early");
                    let _ = sender.blocking_send(Err(short));
                    return;
                }
                Ok(n) => {
                    chunk.truncate(n);
                    left -= n as u64;
                    if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return; // the client left
                    }
                }
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    ([(header::CONTENT_TYPE, "application/octet-stream".to_owned()), (header::CONTENT_LENGTH, len.to_string())], body)
        .into_response()
}
