//! EventStore: appends (one client stream = one atomic transaction), aggregate
//! and snapshot reads, token queries and ListEvents with permits and live
//! tailing. Store I/O runs on the blocking pool; responses stream through
//! bounded channels, so a slow client slows its reader instead of filling
//! memory.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use ranvier_proto::event::event_store_server::EventStore;
use ranvier_proto::event::{
    Confirmation, Event, GetAggregateEventsRequest, GetAggregateSnapshotsRequest, GetEventsRequest,
    GetFirstTokenRequest, GetLastTokenRequest, GetTokenAtRequest, QueryEventsRequest, QueryEventsResponse,
    ReadHighestSequenceNrRequest, ReadHighestSequenceNrResponse, TrackingToken,
};
use ranvier_proto::wire::EventWithToken;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::status::{ErrorCode, from_store, status, with_code};
use super::{ClientApi, stopping_status, until};
use crate::store::{Cursor, IndexEntry, SegmentStore, event_fields};

/// Events per read batch of an aggregate stream.
const AGGREGATE_BATCH_EVENTS: usize = 256;
/// Batches buffered per response stream.
const RESPONSE_BATCHES_MAX: usize = 4;
/// Most events ListEvents reads per batch.
const LIST_BATCH_EVENTS_MAX: usize = 1000;
/// About how many bytes ListEvents reads per batch.
const LIST_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Blacklisted events skipped in a row before one is sent anyway, so the
/// client can move its token forward.
const BLACKLIST_SEND_AFTER: u32 = 1000;
/// How long an append waits for room among the in-flight bytes.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// The EventStore implementation.
pub struct EventStoreService {
    api: Arc<ClientApi>,
}

impl EventStoreService {
    /// Serves EventStore from the shared API state.
    pub fn new(api: Arc<ClientApi>) -> Self {
        Self { api }
    }
}

/// A response stream fed with batches through a bounded channel.
pub struct BatchStream<T> {
    receiver: mpsc::Receiver<Vec<Result<T, Status>>>,
    current: std::vec::IntoIter<Result<T, Status>>,
}

impl<T> BatchStream<T> {
    fn new(receiver: mpsc::Receiver<Vec<Result<T, Status>>>) -> Self {
        Self { receiver, current: Vec::new().into_iter() }
    }
}

impl<T: Unpin> Stream for BatchStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.current.next() {
                return Poll::Ready(Some(item));
            }
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn blocking_error(error: tokio::task::JoinError) -> Status {
    status(ErrorCode::Other, format!("a store task failed: {error}"))
}

fn decode_stored(bytes: Bytes) -> Result<Event, Status> {
    Event::decode(bytes)
        .map_err(|e| status(ErrorCode::DatafileReadError, format!("a stored event does not decode: {e}")))
}

/// Reads the records of `plan` in batches into `sender` (blocking thread).
fn stream_records(
    store: &SegmentStore,
    plan: &[(u64, IndexEntry)],
    snapshot: bool,
    sender: &mpsc::Sender<Vec<Result<Event, Status>>>,
) {
    for chunk in plan.chunks(AGGREGATE_BATCH_EVENTS) {
        let batch: Vec<Result<Event, Status>> = match store.read_records(chunk) {
            Ok(records) => records
                .into_iter()
                .map(|bytes| {
                    decode_stored(bytes).map(|mut event| {
                        event.snapshot = snapshot;
                        event
                    })
                })
                .collect(),
            Err(error) => vec![Err(from_store(&error, false))],
        };
        let failed = batch.iter().any(Result::is_err);
        if sender.blocking_send(batch).is_err() || failed {
            return;
        }
    }
}

/// The latest snapshot of an aggregate with `min <= seq < max`.
fn latest_snapshot(store: &SegmentStore, id: &str, min: i64, max: i64) -> Result<Option<(u64, IndexEntry)>, Status> {
    let plan = store.aggregate_plan(id, min, max).map_err(|e| from_store(&e, false))?;
    Ok(plan.into_iter().max_by_key(|(_, entry)| entry.seq))
}

/// Per ListEvents stream: permits granted and not yet used, the payload
/// types to skip, and whether the client has gone.
struct Flow {
    permits: AtomicI64,
    blacklist: std::sync::Mutex<Vec<(String, String)>>,
    closed: AtomicBool,
    wake: Notify,
}

impl Flow {
    fn grant(&self, request: &GetEventsRequest) {
        if !request.blacklist.is_empty() {
            let mut blacklist = self.blacklist.lock().unwrap_or_else(|p| p.into_inner());
            for item in &request.blacklist {
                let entry = (item.r#type.clone(), item.revision.clone());
                if !blacklist.contains(&entry) {
                    blacklist.push(entry);
                }
            }
        }
        self.permits.fetch_add(request.number_of_permits.max(0), Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_blacklisted(&self, event: &[u8]) -> bool {
        let blacklist = self.blacklist.lock().unwrap_or_else(|p| p.into_inner());
        if blacklist.is_empty() {
            return false;
        }
        event_fields::payload_type(event)
            .is_some_and(|(kind, revision)| blacklist.iter().any(|(k, r)| k == kind && r == revision))
    }
}

/// Sends events from `start` while permits last, tailing new commits.
async fn run_tracker(
    store: SegmentStore,
    flow: Arc<Flow>,
    start: u64,
    sender: mpsc::Sender<Vec<Result<EventWithToken, Status>>>,
    permits_timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut cursor = Some(Cursor::at(start));
    let mut committed = store.watch_next_token();
    let mut skipped_in_a_row = 0u32;
    loop {
        if *stopping.borrow() {
            let _ = sender.send(vec![Err(stopping_status())]).await;
            return;
        }
        if flow.closed.load(Ordering::SeqCst) {
            return;
        }
        let permits = flow.permits.load(Ordering::SeqCst);
        if permits <= 0 {
            tokio::select! {
                _ = flow.wake.notified() => continue,
                _ = sender.closed() => return,
                _ = until(&mut stopping, |s| *s) => {
                    let _ = sender.send(vec![Err(stopping_status())]).await;
                    return;
                }
                _ = tokio::time::sleep(permits_timeout) => {
                    let error = status(ErrorCode::Other, "Timeout waiting for permits from client");
                    let _ = sender.send(vec![Err(error)]).await;
                    return;
                }
            }
        }
        let Some(mut moving) = cursor.take() else { return };
        let reader = store.clone();
        let max = (permits as usize).min(LIST_BATCH_EVENTS_MAX);
        let read = tokio::task::spawn_blocking(move || {
            let batch = reader.read_batch(&mut moving, max, LIST_BATCH_BYTES_MAX);
            (batch, moving)
        })
        .await;
        let (batch, moved) = match read {
            Ok(done) => done,
            Err(error) => {
                let _ = sender.send(vec![Err(blocking_error(error))]).await;
                return;
            }
        };
        let next = moved.next_token;
        cursor = Some(moved);
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                let _ = sender.send(vec![Err(from_store(&error, false))]).await;
                return;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                _ = until(&mut committed, |n| *n > next) => {}
                _ = flow.wake.notified() => {}
                _ = sender.closed() => return,
                _ = until(&mut stopping, |s| *s) => {
                    let _ = sender.send(vec![Err(stopping_status())]).await;
                    return;
                }
            }
            continue;
        }
        let mut out = Vec::with_capacity(batch.len());
        for (token, event) in batch {
            if flow.is_blacklisted(&event) && skipped_in_a_row < BLACKLIST_SEND_AFTER {
                skipped_in_a_row += 1;
                continue;
            }
            skipped_in_a_row = 0;
            out.push(Ok(EventWithToken { token: token as i64, event }));
        }
        flow.permits.fetch_sub(out.len() as i64, Ordering::SeqCst);
        if !out.is_empty() && sender.send(out).await.is_err() {
            return;
        }
    }
}

type EventStream = BatchStream<Event>;

#[tonic::async_trait]
impl EventStore for EventStoreService {
    async fn append_event(&self, request: Request<Streaming<Event>>) -> Result<Response<Confirmation>, Status> {
        let store = self.api.store(&request)?;
        let mut stream = request.into_inner();
        let limits = &self.api.limits;
        let mut events: Vec<Bytes> = Vec::new();
        let mut total_bytes = 0usize;
        let mut held: Option<OwnedSemaphorePermit> = None;
        while let Some(event) = stream.message().await.map_err(|e| with_code(e, ErrorCode::Other))? {
            if events.len() >= limits.transaction_events_max {
                let message = format!("a transaction holds at most {} events", limits.transaction_events_max);
                return Err(status(ErrorCode::TooManyEvents, message));
            }
            let bytes = Bytes::from(event.encode_to_vec());
            total_bytes += bytes.len();
            if total_bytes > limits.transaction_bytes_max {
                let message = format!("a transaction holds at most {} bytes of events", limits.transaction_bytes_max);
                return Err(status(ErrorCode::PayloadTooLarge, message));
            }
            let kib = (bytes.len() as u32).div_ceil(1024).max(1);
            let permit = tokio::time::timeout(IN_FLIGHT_WAIT, self.api.in_flight.clone().acquire_many_owned(kib))
                .await
                .map_err(|_| status(ErrorCode::TooManyRequests, "the node is busy: too many event bytes in flight"))?
                .map_err(|_| status(ErrorCode::Other, "the node is shutting down"))?;
            match held.as_mut() {
                Some(held) => held.merge(permit),
                None => held = Some(permit),
            }
            events.push(bytes);
        }
        if !events.is_empty() {
            store.events.append(events).await.map_err(|e| from_store(&e, true))?;
        }
        drop(held);
        Ok(Response::new(Confirmation { success: true }))
    }

    async fn append_snapshot(&self, request: Request<Event>) -> Result<Response<Confirmation>, Status> {
        let store = self.api.store(&request)?;
        let snapshot = request.into_inner();
        if snapshot.aggregate_identifier.is_empty() {
            return Err(status(ErrorCode::InvalidPropertyValue, "a snapshot needs an aggregate identifier"));
        }
        if self.api.limits.check_sequence_nr_for_snapshots {
            let events = store.events.clone();
            let id = snapshot.aggregate_identifier.clone();
            let highest = tokio::task::spawn_blocking(move || events.highest_sequence(&id))
                .await
                .map_err(blocking_error)?
                .map_err(|e| from_store(&e, false))?
                .unwrap_or(-1);
            if snapshot.aggregate_sequence_number > highest {
                let message = format!(
                    "Invalid sequence number {} for snapshot of aggregate {}, highest event is {}",
                    snapshot.aggregate_sequence_number, snapshot.aggregate_identifier, highest
                );
                return Err(status(ErrorCode::InvalidSequence, message));
            }
        }
        let bytes = Bytes::from(snapshot.encode_to_vec());
        store.snapshots.append(vec![bytes]).await.map_err(|e| from_store(&e, true))?;
        Ok(Response::new(Confirmation { success: true }))
    }

    type ListAggregateEventsStream = EventStream;

    async fn list_aggregate_events(
        &self,
        request: Request<GetAggregateEventsRequest>,
    ) -> Result<Response<Self::ListAggregateEventsStream>, Status> {
        let store = self.api.store(&request)?;
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(RESPONSE_BATCHES_MAX);
        // Like Axon Server, max_sequence is exclusive and <= 0 means unbounded.
        let max = if request.max_sequence <= 0 { i64::MAX } else { request.max_sequence };
        tokio::task::spawn_blocking(move || {
            let id = request.aggregate_id.as_str();
            let mut from = request.initial_sequence.max(0);
            if request.allow_snapshots {
                match latest_snapshot(&store.snapshots, id, from, max) {
                    Ok(Some(place)) => {
                        stream_records(&store.snapshots, &[place], true, &sender);
                        from = place.1.seq + 1;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let _ = sender.blocking_send(vec![Err(error)]);
                        return;
                    }
                }
            }
            match store.events.aggregate_plan(id, from, max) {
                Ok(plan) => stream_records(&store.events, &plan, false, &sender),
                Err(error) => {
                    let _ = sender.blocking_send(vec![Err(from_store(&error, false))]);
                }
            }
        });
        Ok(Response::new(BatchStream::new(receiver)))
    }

    type ListAggregateSnapshotsStream = EventStream;

    async fn list_aggregate_snapshots(
        &self,
        request: Request<GetAggregateSnapshotsRequest>,
    ) -> Result<Response<Self::ListAggregateSnapshotsStream>, Status> {
        let store = self.api.store(&request)?;
        let request = request.into_inner();
        let (sender, receiver) = mpsc::channel(RESPONSE_BATCHES_MAX);
        let max = if request.max_sequence <= 0 { i64::MAX } else { request.max_sequence };
        tokio::task::spawn_blocking(move || {
            let plan = store.snapshots.aggregate_plan(&request.aggregate_id, request.initial_sequence, max);
            match plan {
                Ok(mut plan) => {
                    // Highest sequence first; of equal ones, the latest written.
                    plan.reverse();
                    plan.sort_by_key(|place| std::cmp::Reverse(place.1.seq));
                    if request.max_results > 0 {
                        plan.truncate(request.max_results as usize);
                    }
                    stream_records(&store.snapshots, &plan, true, &sender);
                }
                Err(error) => {
                    let _ = sender.blocking_send(vec![Err(from_store(&error, false))]);
                }
            }
        });
        Ok(Response::new(BatchStream::new(receiver)))
    }

    type ListEventsStream = BatchStream<EventWithToken>;

    async fn list_events(
        &self,
        request: Request<Streaming<GetEventsRequest>>,
    ) -> Result<Response<Self::ListEventsStream>, Status> {
        let store = self.api.store(&request)?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(RESPONSE_BATCHES_MAX);
        let first = match inbound.message().await.map_err(|e| with_code(e, ErrorCode::Other))? {
            Some(first) => first,
            None => return Ok(Response::new(BatchStream::new(receiver))),
        };
        let flow = Arc::new(Flow {
            permits: AtomicI64::new(0),
            blacklist: std::sync::Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        flow.grant(&first);
        let listener = flow.clone();
        let mut stopping = self.api.stopping.clone();
        tokio::spawn(async move {
            // Later requests only add permits and blacklist entries; their
            // tracking_token is ignored (dendrite re-sends the first request).
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(more)) => listener.grant(&more),
                        Ok(None) | Err(_) => break,
                    },
                    _ = until(&mut stopping, |s| *s) => break,
                }
            }
            listener.closed.store(true, Ordering::SeqCst);
            listener.wake.notify_one();
        });
        let timeout = Duration::from_millis(self.api.limits.new_permits_timeout_ms);
        let start = first.tracking_token.max(0) as u64;
        tokio::spawn(run_tracker(store.events, flow, start, sender, timeout, self.api.stopping.clone()));
        Ok(Response::new(BatchStream::new(receiver)))
    }

    async fn read_highest_sequence_nr(
        &self,
        request: Request<ReadHighestSequenceNrRequest>,
    ) -> Result<Response<ReadHighestSequenceNrResponse>, Status> {
        let store = self.api.store(&request)?;
        let id = request.into_inner().aggregate_id;
        let highest = tokio::task::spawn_blocking(move || store.events.highest_sequence(&id))
            .await
            .map_err(blocking_error)?
            .map_err(|e| from_store(&e, false))?;
        Ok(Response::new(ReadHighestSequenceNrResponse { to_sequence_nr: highest.unwrap_or(-1) }))
    }

    type QueryEventsStream = BatchStream<QueryEventsResponse>;

    async fn query_events(
        &self,
        _request: Request<Streaming<QueryEventsRequest>>,
    ) -> Result<Response<Self::QueryEventsStream>, Status> {
        Err(with_code(
            Status::unimplemented("QueryEvents is not supported by Ranvier"),
            ErrorCode::UnsupportedInstruction,
        ))
    }

    async fn get_first_token(&self, request: Request<GetFirstTokenRequest>) -> Result<Response<TrackingToken>, Status> {
        let store = self.api.store(&request)?;
        Ok(Response::new(TrackingToken { token: store.events.first_token() as i64 }))
    }

    async fn get_last_token(&self, request: Request<GetLastTokenRequest>) -> Result<Response<TrackingToken>, Status> {
        let store = self.api.store(&request)?;
        Ok(Response::new(TrackingToken { token: store.events.next_token() as i64 - 1 }))
    }

    async fn get_token_at(&self, request: Request<GetTokenAtRequest>) -> Result<Response<TrackingToken>, Status> {
        let store = self.api.store(&request)?;
        let instant = request.into_inner().instant;
        let token = tokio::task::spawn_blocking(move || store.events.token_at(instant))
            .await
            .map_err(blocking_error)?
            .map_err(|e| from_store(&e, false))?;
        Ok(Response::new(TrackingToken { token: token as i64 }))
    }
}
