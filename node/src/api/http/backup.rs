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
//! - `POST /v1/backup/createControlDbBackup` (clustered nodes): writes the
//!   cluster state this node has applied — the `_admin` model: nodes,
//!   groups and roles, contexts, applications with their hashed tokens —
//!   as one JSON file under `<log folder>/backups/` (the newest
//!   [`CONTROL_COPIES_KEPT`] are kept) and answers its path, which
//!   `/v1/backup/file` then serves. Ranvier has no control database: this
//!   file is what Axon's H2 backup holds.
//!
//! - `GET /v1/backup/log/filenames?context=G` (clustered nodes): the files
//!   of replication group `G`'s folder (its log segments, vote and purge
//!   marks, applied state), a full replacement set. They are listed as
//!   hard links made at that moment under `<log folder>/backups/log-…/`,
//!   so a log purge that deletes a segment afterwards cannot take it from
//!   the backup; the links go after [`BACKUP_LEASE`].
//!
//! A listed closed segment is **pinned** for [`BACKUP_LEASE`] (renewed by
//! each download): segments retired to the secondary tier are not deleted
//! while a backup copies them. Segments already retired are not on this
//! node's disk and are not listed (back up a SECONDARY for those). Every
//! endpoint needs administrator rights when access control is on.

// Helpers return the finished error response as `Err` (see `admin`).
#![allow(clippy::result_large_err)]

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
use crate::store::segments::SegmentFiles;

/// How long a listed segment stays on disk for the backup that listed it.
pub const BACKUP_LEASE: Duration = Duration::from_secs(10 * 60);
/// Copies of the cluster state kept on the node's disk.
pub const CONTROL_COPIES_KEPT: usize = 3;
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
        .route("/v1/backup/createControlDbBackup", axum::routing::post(control_state))
        .route("/v1/backup/log/filenames", get(log_files))
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
fn store(state: &HttpState, context: Option<String>, kind: Option<String>) -> Result<SegmentStore, Response> {
    let context = context.unwrap_or_else(|| "default".to_owned());
    let snapshots = match kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("EVENT") => false,
        Some("SNAPSHOT") => true,
        Some(other) => return Err(bad_request(format!("type {other}: expected EVENT or SNAPSHOT"))),
    };
    match state.contexts.get(&context) {
        Some(Ok(store)) => Ok(if snapshots { store.snapshots } else { store.events }),
        Some(Err(reason)) => Err(answer(StatusCode::SERVICE_UNAVAILABLE, Some("AXONIQ-7000"), reason)),
        None => Err(answer(StatusCode::NOT_FOUND, Some("AXONIQ-1302"), format!("no context {context} on this node"))),
    }
}

/// The files of the closed segments among `segments` (one reading of
/// `store`'s) newer than `after`, pinned for the backup, and the newest
/// closed segment.
fn closed_files(store: &SegmentStore, segments: &[SegmentFiles], after: i64) -> (Vec<String>, i64) {
    let mut newest = -1;
    let mut pinned = Vec::new();
    let mut names = Vec::new();
    for segment in segments.iter().filter(|s| s.closed) {
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
        Err(response) => return response,
    };
    let next_token = store.next_token();
    // One reading of the segments: a segment that closes meanwhile is
    // listed once, closed or active, never neither.
    let segments = store.segment_files();
    let after = query.last_closed_segment_backed_up.unwrap_or(-1);
    let (mut filenames, last_closed_segment) = closed_files(&store, &segments, after);
    let mut active_segment = 0;
    for segment in segments.iter().filter(|s| !s.closed) {
        active_segment = segment.first_token;
        filenames.extend(segment.paths.iter().map(|p| p.display().to_string()));
    }
    Json(BackupListing { last_closed_segment, filenames, active_segment, next_token }).into_response()
}

async fn filenames(State(state): State<Arc<HttpState>>, Query(query): Query<FilenamesQuery>) -> Response {
    let store = match store(&state, query.context, query.r#type) {
        Ok(store) => store,
        Err(response) => return response,
    };
    let segments = store.segment_files();
    Json(closed_files(&store, &segments, query.last_segment_backed_up.unwrap_or(-1)).0).into_response()
}

#[derive(Deserialize)]
struct FileQuery {
    path: String,
}

/// The folder of the cluster state copies.
fn control_dir(state: &HttpState) -> Option<PathBuf> {
    let cluster = state.cluster.as_ref()?;
    let dir = cluster.log_dir().join("backups");
    Some(std::path::absolute(&dir).unwrap_or(dir))
}

/// The cluster state copies on disk, oldest first.
fn control_copies(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut copies: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("controldb-")))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    copies.sort();
    copies
}

/// The cluster state a backup keeps (the file's JSON).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ControlState<'a> {
    format: u32,
    node: &'a str,
    created_ms: u64,
    model: &'a crate::cluster::model::ClusterModel,
}

async fn control_state(State(state): State<Arc<HttpState>>) -> Response {
    let (Some(cluster), Some(dir)) = (state.cluster.as_ref(), control_dir(&state)) else {
        let message = "this node runs standalone: it has no cluster state (its stores are the whole backup)";
        return answer(StatusCode::BAD_REQUEST, Some("AXONIQ-2301"), message);
    };
    let model = cluster.model();
    let created_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let copy = ControlState { format: 1, node: &state.node.name, created_ms, model: &model };
    let bytes = match serde_json::to_vec_pretty(&copy) {
        Ok(bytes) => bytes,
        Err(error) => return answer(StatusCode::INTERNAL_SERVER_ERROR, Some("AXONIQ-0001"), error.to_string()),
    };
    let path = dir.join(format!("controldb-{created_ms:020}.json"));
    let written = tokio::task::spawn_blocking({
        let (dir, path) = (dir.clone(), path.clone());
        move || -> Result<(), crate::durable::Failed> {
            crate::durable::create_dir_all(&dir)?;
            crate::durable::replace_file(&path, &bytes)?;
            let copies = control_copies(&dir);
            for old in copies.iter().take(copies.len().saturating_sub(CONTROL_COPIES_KEPT)) {
                let _ = std::fs::remove_file(old);
            }
            crate::durable::sync_dir(&dir)
        }
    })
    .await;
    match written {
        Ok(Ok(())) => (StatusCode::OK, path.display().to_string()).into_response(),
        Ok(Err(failed)) => {
            let message = format!("{} {}: {}", failed.op, failed.path.display(), failed.source);
            answer(StatusCode::INTERNAL_SERVER_ERROR, Some("AXONIQ-9100"), message)
        }
        Err(error) => answer(StatusCode::INTERNAL_SERVER_ERROR, Some("AXONIQ-0001"), error.to_string()),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    context: Option<String>,
}

/// Links every file of `group_dir` into a new staging folder in `backups`
/// (a copy where the file system has no hard links), after removing the
/// staging folders whose lease ended; answers the staged paths.
fn stage_log_files(
    group_dir: &std::path::Path,
    backups: &std::path::Path,
    group: &str,
) -> std::io::Result<Vec<PathBuf>> {
    crate::durable::create_dir_all(backups)?;
    for entry in std::fs::read_dir(backups)?.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with("log-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().unwrap_or_default() > BACKUP_LEASE);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let created_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let staging = backups.join(format!("log-{group}-{created_ms:020}"));
    std::fs::create_dir(&staging)?;
    let mut staged = Vec::new();
    for entry in std::fs::read_dir(group_dir)?.flatten() {
        let name = entry.file_name();
        if !entry.file_type().is_ok_and(|t| t.is_file()) || name.to_string_lossy().ends_with(".temp") {
            continue;
        }
        let link = staging.join(&name);
        if std::fs::hard_link(entry.path(), &link).is_err() {
            std::fs::copy(entry.path(), &link)?;
        }
        staged.push(link);
    }
    staged.sort();
    Ok(staged)
}

async fn log_files(State(state): State<Arc<HttpState>>, Query(query): Query<LogQuery>) -> Response {
    let (Some(cluster), Some(backups)) = (state.cluster.as_ref(), control_dir(&state)) else {
        let message = "this node runs standalone: it has no replication logs";
        return answer(StatusCode::BAD_REQUEST, Some("AXONIQ-2301"), message);
    };
    let group = query.context.unwrap_or_else(|| "default".to_owned());
    if !ranvier_wire::valid_name(&group) && group != "_admin" {
        return bad_request(format!("{group:?} is not a replication group name"));
    }
    let group_dir = cluster.log_dir().join(&group);
    let group_dir = std::path::absolute(&group_dir).unwrap_or(group_dir);
    if !group_dir.is_dir() {
        let message = format!("this node keeps no log of replication group {group}");
        return answer(StatusCode::NOT_FOUND, Some("AXONIQ-1302"), message);
    }
    match tokio::task::spawn_blocking(move || stage_log_files(&group_dir, &backups, &group)).await {
        Ok(Ok(staged)) => Json(staged.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()).into_response(),
        Ok(Err(error)) => answer(StatusCode::INTERNAL_SERVER_ERROR, Some("AXONIQ-9000"), error.to_string()),
        Err(error) => answer(StatusCode::INTERNAL_SERVER_ERROR, Some("AXONIQ-0001"), error.to_string()),
    }
}

/// A segment file of one of this node's stores, a cluster state copy or a
/// staged log file: how much of it to send.
fn find(state: &HttpState, path: &PathBuf) -> Option<u64> {
    if let Some(dir) = control_dir(state) {
        let staged_log = path.parent().is_some_and(|parent| {
            parent.parent() == Some(dir.as_path())
                && parent.file_name().is_some_and(|n| n.to_string_lossy().starts_with("log-"))
        }) && path.file_name().is_some_and(|n| n != "." && n != "..");
        if control_copies(&dir).contains(path) || (staged_log && path.is_file()) {
            return std::fs::metadata(path).ok().map(|m| m.len());
        }
    }
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
            Ok(file) => file,
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
