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

use super::status::{ErrorCode, from_store, from_write, status, with_code};
use super::{ClientApi, stopping_status, until};
use crate::store::{Cursor, IndexEntry, SegmentStore, event_fields};

/// Most events per read batch of an aggregate stream.
const AGGREGATE_BATCH_EVENTS: usize = 256;
/// Events in the first read batch of an aggregate stream, before the
/// events' size is known.
const AGGREGATE_BATCH_FIRST: usize = 8;
/// About how many bytes one read batch of an aggregate stream holds (so a
/// stream holds at most a few MiB however large its events are).
const AGGREGATE_BATCH_BYTES: usize = 1024 * 1024;
/// Batches buffered per response stream.
const RESPONSE_BATCHES_MAX: usize = 4;
/// Most events ListEvents reads per batch.
const LIST_BATCH_EVENTS_MAX: usize = 1000;
/// About how many bytes ListEvents reads per batch.
const LIST_BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Most payload types one ListEvents stream may blacklist.
const BLACKLIST_ENTRIES_MAX: usize = 1024;
/// Blacklisted events skipped in a row before one is sent anyway, so the
/// client can move its token forward.
const BLACKLIST_SEND_AFTER: u32 = 1000;
/// Event bytes a transaction may hold before it reserves them against the
/// node's in-flight budget (so small transactions reserve once).
const RESERVE_CHUNK_BYTES: usize = 64 * 1024;
/// Memory an event costs beyond its bytes (handle, frame, index entry).
const EVENT_OVERHEAD_BYTES: usize = 64;
/// An open transaction that sends nothing for this long is abandoned, so it
/// cannot hold its share of the in-flight budget forever.
const APPEND_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
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

impl EventStoreService {
    /// One AppendEvent transaction: events streamed in (each taken as its
    /// stored bytes by `into_bytes`), committed together, confirmed once.
    pub(super) async fn append_transaction<M>(
        &self,
        request: Request<Streaming<M>>,
        into_bytes: impl Fn(M) -> Bytes,
    ) -> Result<Response<Confirmation>, Status> {
        let store = self.api.store(&request)?;
        let mut stream = request.into_inner();
        let limits = &self.api.limits;
        let mut events: Vec<Bytes> = Vec::new();
        let mut total_bytes = 0usize;
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut unreserved = 0usize;
        // One timer per transaction, re-armed only when it fires after
        // activity: cheaper than a timer per message.
        let mut last_activity = tokio::time::Instant::now();
        let idle = tokio::time::sleep(APPEND_IDLE_TIMEOUT);
        tokio::pin!(idle);
        // However busy, a transaction ends in time: its events are held in
        // memory (and its share of the in-flight bytes) until it does.
        let deadline = tokio::time::sleep(limits.transaction_timeout);
        tokio::pin!(deadline);
        loop {
            let next = tokio::select! {
                biased;
                () = &mut deadline => {
                    let message = format!(
                        "the transaction stayed open longer than {} ms (ranvier.transaction-timeout)",
                        limits.transaction_timeout.as_millis()
                    );
                    return Err(status(ErrorCode::Other, message));
                }
                next = stream.message() => next,
                _ = &mut idle => {
                    if last_activity.elapsed() >= APPEND_IDLE_TIMEOUT {
                        let message = format!("no event or end of transaction for {} s", APPEND_IDLE_TIMEOUT.as_secs());
                        return Err(status(ErrorCode::Other, message));
                    }
                    idle.as_mut().reset(last_activity + APPEND_IDLE_TIMEOUT);
                    continue;
                }
            };
            last_activity = tokio::time::Instant::now();
            let Some(event) = next.map_err(|e| with_code(e, ErrorCode::Other))? else { break };
            if events.len() >= limits.transaction_events_max {
                let message = format!("a transaction holds at most {} events", limits.transaction_events_max);
                return Err(status(ErrorCode::TooManyEvents, message));
            }
            let bytes = into_bytes(event);
            total_bytes += bytes.len();
            if total_bytes > limits.transaction_bytes_max {
                let message = format!("a transaction holds at most {} bytes of events", limits.transaction_bytes_max);
                return Err(status(ErrorCode::PayloadTooLarge, message));
            }
            // Charged with its bookkeeping, so empty events count too.
            unreserved += bytes.len() + EVENT_OVERHEAD_BYTES;
            events.push(bytes);
            if unreserved >= RESERVE_CHUNK_BYTES {
                self.reserve(&mut held, unreserved).await?;
                unreserved = 0;
            }
        }
        if unreserved > 0 {
            self.reserve(&mut held, unreserved).await?;
        }
        if !events.is_empty() {
            match &self.api.cluster {
                Some(cluster) => {
                    cluster.append(store.events.context(), events, false).await.map_err(|e| from_write(&e))?;
                }
                None => {
                    store.events.append(events).await.map_err(|e| from_store(&e, true))?;
                }
            }
        }
        drop(held);
        Ok(Response::new(Confirmation { success: true }))
    }

    /// Takes room for `bytes` more event bytes among the node's in-flight
    /// budget, waiting while other transactions hold it: this is how a busy
    /// node slows its clients down instead of growing.
    async fn reserve(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Result<(), Status> {
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).max(1);
        let permit = match self.api.in_flight.clone().try_acquire_many_owned(kib) {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(IN_FLIGHT_WAIT, self.api.in_flight.clone().acquire_many_owned(kib))
                .await
                .map_err(|_| status(ErrorCode::TooManyRequests, "the node is busy: too many event bytes in flight"))?
                .map_err(|_| status(ErrorCode::Other, "the node is shutting down"))?,
        };
        match held.as_mut() {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A response stream fed with batches through a bounded channel.
pub struct BatchStream<T> {
    receiver: mpsc::Receiver<Vec<Result<T, Status>>>,
    current: std::vec::IntoIter<Result<T, Status>>,
    cut: Arc<std::sync::Mutex<Option<Status>>>,
}

impl<T> BatchStream<T> {
    fn new(receiver: mpsc::Receiver<Vec<Result<T, Status>>>, cut: Arc<std::sync::Mutex<Option<Status>>>) -> Self {
        Self { receiver, current: Vec::new().into_iter(), cut }
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
                Poll::Ready(None) => return Poll::Ready(self.take_cut().map(Err)),
                // Everything sent before the cut is delivered, then its error.
                Poll::Pending => return self.take_cut().map_or(Poll::Pending, |cut| Poll::Ready(Some(Err(cut)))),
            }
        }
    }
}

impl<T> BatchStream<T> {
    fn take_cut(&self) -> Option<Status> {
        self.cut.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// The sending side of a response stream. A batch the client leaves
/// untaken for the deadline (`ranvier.response-send-timeout`: it stopped
/// reading) ends the stream: the sender gives up, and the client, should
/// it read again, gets what was sent and then AXONIQ-6001.
pub struct Batches<T> {
    sender: mpsc::Sender<Vec<Result<T, Status>>>,
    deadline: Duration,
    cut: Arc<std::sync::Mutex<Option<Status>>>,
}

impl<T> Clone for Batches<T> {
    fn clone(&self) -> Self {
        Batches { sender: self.sender.clone(), deadline: self.deadline, cut: self.cut.clone() }
    }
}

impl<T> Batches<T> {
    /// Sends `batch`; false when the stream is over (the client left, or
    /// did not take it in time).
    async fn send(&self, batch: Vec<Result<T, Status>>) -> bool {
        match tokio::time::timeout(self.deadline, self.sender.send(batch)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                let seconds = self.deadline.as_secs_f64();
                tracing::info!(seconds, "a client stopped reading its response stream: cut off");
                let message = format!("the client took nothing from its stream for {seconds} s: cut off");
                *self.cut.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(status(ErrorCode::ClientDisconnected, message));
                false
            }
        }
    }

    /// Resolves when the client has gone.
    async fn closed(&self) {
        self.sender.closed().await
    }
}

/// A response stream whose batches wait at most `deadline` for the client.
fn response_stream<T>(deadline: Duration) -> (Batches<T>, BatchStream<T>) {
    let (sender, receiver) = mpsc::channel(RESPONSE_BATCHES_MAX);
    let cut = Arc::new(std::sync::Mutex::new(None));
    (Batches { sender, deadline, cut: cut.clone() }, BatchStream::new(receiver, cut))
}

/// How many events the next aggregate read batch takes, so that a batch
/// holds about [`AGGREGATE_BATCH_BYTES`] whatever the events' size: from
/// the bytes and events of the last batch (none yet: a few).
fn next_batch_events(last_bytes: usize, last_events: usize) -> usize {
    if last_events == 0 {
        return AGGREGATE_BATCH_FIRST;
    }
    let per_event = (last_bytes / last_events).max(1);
    (AGGREGATE_BATCH_BYTES / per_event).clamp(1, AGGREGATE_BATCH_EVENTS)
}

fn blocking_error(error: tokio::task::JoinError) -> Status {
    status(ErrorCode::Other, format!("a store task failed: {error}"))
}

fn decode_stored(bytes: Bytes) -> Result<Event, Status> {
    Event::decode(bytes)
        .map_err(|e| status(ErrorCode::DatafileReadError, format!("a stored event does not decode: {e}")))
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(blocking_error)?.map_err(|e| from_store(&e, false))
}

/// Streams the records of `plan` in batches: each batch is read on the
/// blocking pool, then sent with back-pressure from the async side, so a
/// slow client holds no thread. Returns false when the stream ended early
/// (error sent, or the client left).
async fn stream_records(
    store: &SegmentStore,
    id: &str,
    plan: Vec<(u64, IndexEntry)>,
    snapshot: bool,
    sender: &Batches<Event>,
) -> bool {
    let mut at = 0;
    while at < plan.len() {
        let chunk = &plan[at..(at + AGGREGATE_BATCH_EVENTS).min(plan.len())];
        let (reader, places, aggregate) = (store.clone(), chunk.to_vec(), id.to_owned());
        let read = blocking(move || read_budgeted(&reader, &aggregate, &places)).await;
        let batch: Vec<Result<Event, Status>> = match read {
            Ok(records) if records.is_empty() => {
                vec![Err(status(ErrorCode::DatafileReadError, format!("aggregate {id}: the store read no record")))]
            }
            Ok(records) => {
                at += records.len();
                records
                    .into_iter()
                    .map(|bytes| {
                        decode_stored(bytes).map(|mut event| {
                            event.snapshot = snapshot;
                            event
                        })
                    })
                    .collect()
            }
            Err(status) => vec![Err(status)],
        };
        let failed = batch.iter().any(Result::is_err);
        if !sender.send(batch).await || failed {
            return false;
        }
    }
    true
}

/// The records of the first of `places` that fit about
/// [`AGGREGATE_BATCH_BYTES`] (at least one): read a few first, then as
/// many more as their size allows, in one blocking task (a small
/// aggregate is one round trip, a large one's batches stay bounded).
fn read_budgeted(
    store: &SegmentStore,
    id: &str,
    places: &[(u64, IndexEntry)],
) -> Result<Vec<Bytes>, crate::store::StoreError> {
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    while out.len() < places.len() && bytes < AGGREGATE_BATCH_BYTES {
        let step = next_batch_events(bytes, out.len()).min(places.len() - out.len());
        let records = store.read_records(id, &places[out.len()..out.len() + step])?;
        bytes += records.iter().map(Bytes::len).sum::<usize>();
        if records.is_empty() {
            break;
        }
        out.extend(records);
    }
    Ok(out)
}

/// Reads an aggregate (events or snapshots) with `min <= seq < max`.
async fn plan_of(store: &SegmentStore, id: &str, min: i64, max: i64) -> Result<Vec<(u64, IndexEntry)>, Status> {
    let (reader, id) = (store.clone(), id.to_owned());
    blocking(move || reader.aggregate_plan(&id, min, max)).await
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
    /// Adds a request's permits and blacklist entries; refuses a blacklist
    /// that would grow past [`BLACKLIST_ENTRIES_MAX`].
    fn grant(&self, request: &GetEventsRequest) -> Result<(), Status> {
        if !request.blacklist.is_empty() {
            let mut blacklist = self.blacklist.lock().unwrap_or_else(|p| p.into_inner());
            for item in &request.blacklist {
                let entry = (item.r#type.clone(), item.revision.clone());
                if blacklist.contains(&entry) {
                    continue;
                }
                if blacklist.len() >= BLACKLIST_ENTRIES_MAX {
                    let message = format!("a blacklist holds at most {BLACKLIST_ENTRIES_MAX} payload types");
                    return Err(status(ErrorCode::InvalidPropertyValue, message));
                }
                blacklist.push(entry);
            }
        }
        let more = request.number_of_permits.max(0);
        let _ = self.permits.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(p.saturating_add(more)));
        self.wake.notify_one();
        Ok(())
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
    sender: Batches<EventWithToken>,
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
        if !out.is_empty() && !sender.send(out).await {
            return;
        }
    }
}

type EventStream = BatchStream<Event>;

#[tonic::async_trait]
impl EventStore for EventStoreService {
    async fn append_event(&self, request: Request<Streaming<Event>>) -> Result<Response<Confirmation>, Status> {
        // The server routes AppendEvent to `raw_append` (events kept as the
        // client encoded them); this typed path answers the same.
        self.append_transaction(request, |event| Bytes::from(event.encode_to_vec())).await
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
            let highest = blocking(move || events.highest_sequence(&id)).await?.unwrap_or(-1);
            if snapshot.aggregate_sequence_number > highest {
                let message = format!(
                    "Invalid sequence number {} for snapshot of aggregate {}, highest event is {}",
                    snapshot.aggregate_sequence_number, snapshot.aggregate_identifier, highest
                );
                return Err(status(ErrorCode::InvalidSequence, message));
            }
        }
        let bytes = Bytes::from(snapshot.encode_to_vec());
        match &self.api.cluster {
            Some(cluster) => {
                cluster.append(store.snapshots.context(), vec![bytes], true).await.map_err(|e| from_write(&e))?;
            }
            None => {
                store.snapshots.append(vec![bytes]).await.map_err(|e| from_store(&e, true))?;
            }
        }
        Ok(Response::new(Confirmation { success: true }))
    }

    type ListAggregateEventsStream = EventStream;

    async fn list_aggregate_events(
        &self,
        request: Request<GetAggregateEventsRequest>,
    ) -> Result<Response<Self::ListAggregateEventsStream>, Status> {
        let store = self.api.current_store(&request).await?;
        let request = request.into_inner();
        let (sender, receiver) = response_stream(self.api.limits.response_send_timeout);
        // Like Axon Server, max_sequence is exclusive and <= 0 means unbounded.
        let max = if request.max_sequence <= 0 { i64::MAX } else { request.max_sequence };
        tokio::spawn(async move {
            let id = request.aggregate_id.as_str();
            let mut from = request.initial_sequence.max(0);
            if request.allow_snapshots {
                match plan_of(&store.snapshots, id, from, max).await {
                    Ok(plan) => {
                        if let Some(latest) = plan.into_iter().max_by_key(|(_, entry)| entry.seq) {
                            if !stream_records(&store.snapshots, id, vec![latest], true, &sender).await {
                                return;
                            }
                            from = latest.1.seq + 1;
                        }
                    }
                    Err(status) => {
                        let _ = sender.send(vec![Err(status)]).await;
                        return;
                    }
                }
            }
            match plan_of(&store.events, id, from, max).await {
                Ok(plan) => {
                    stream_records(&store.events, id, plan, false, &sender).await;
                }
                Err(status) => {
                    let _ = sender.send(vec![Err(status)]).await;
                }
            }
        });
        Ok(Response::new(receiver))
    }

    type ListAggregateSnapshotsStream = EventStream;

    async fn list_aggregate_snapshots(
        &self,
        request: Request<GetAggregateSnapshotsRequest>,
    ) -> Result<Response<Self::ListAggregateSnapshotsStream>, Status> {
        let store = self.api.current_store(&request).await?;
        let request = request.into_inner();
        let (sender, receiver) = response_stream(self.api.limits.response_send_timeout);
        let max = if request.max_sequence <= 0 { i64::MAX } else { request.max_sequence };
        tokio::spawn(async move {
            match plan_of(&store.snapshots, &request.aggregate_id, request.initial_sequence, max).await {
                Ok(mut plan) => {
                    // Highest sequence first; of equal ones, the latest written.
                    plan.reverse();
                    plan.sort_by_key(|place| std::cmp::Reverse(place.1.seq));
                    if request.max_results > 0 {
                        plan.truncate(request.max_results as usize);
                    }
                    stream_records(&store.snapshots, &request.aggregate_id, plan, true, &sender).await;
                }
                Err(status) => {
                    let _ = sender.send(vec![Err(status)]).await;
                }
            }
        });
        Ok(Response::new(receiver))
    }

    type ListEventsStream = BatchStream<EventWithToken>;

    async fn list_events(
        &self,
        request: Request<Streaming<GetEventsRequest>>,
    ) -> Result<Response<Self::ListEventsStream>, Status> {
        let store = self.api.current_store(&request).await?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = response_stream(self.api.limits.response_send_timeout);
        let first = match inbound.message().await.map_err(|e| with_code(e, ErrorCode::Other))? {
            Some(first) => first,
            None => return Ok(Response::new(receiver)),
        };
        let flow = Arc::new(Flow {
            permits: AtomicI64::new(0),
            blacklist: std::sync::Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        });
        flow.grant(&first)?;
        let listener = flow.clone();
        let mut stopping = self.api.stopping.clone();
        let refusals = sender.clone();
        tokio::spawn(async move {
            // Later requests only add permits and blacklist entries; their
            // tracking_token is ignored (dendrite re-sends the first request).
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(more)) => {
                            if let Err(refused) = listener.grant(&more) {
                                refusals.send(vec![Err(refused)]).await;
                                break;
                            }
                        }
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
        Ok(Response::new(receiver))
    }

    async fn read_highest_sequence_nr(
        &self,
        request: Request<ReadHighestSequenceNrRequest>,
    ) -> Result<Response<ReadHighestSequenceNrResponse>, Status> {
        let store = self.api.current_store(&request).await?;
        let id = request.into_inner().aggregate_id;
        let highest = blocking(move || store.events.highest_sequence(&id)).await?;
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
        let store = self.api.current_store(&request).await?;
        Ok(Response::new(TrackingToken { token: store.events.first_token() as i64 }))
    }

    async fn get_last_token(&self, request: Request<GetLastTokenRequest>) -> Result<Response<TrackingToken>, Status> {
        let store = self.api.current_store(&request).await?;
        Ok(Response::new(TrackingToken { token: store.events.next_token() as i64 - 1 }))
    }

    async fn get_token_at(&self, request: Request<GetTokenAtRequest>) -> Result<Response<TrackingToken>, Status> {
        let store = self.api.current_store(&request).await?;
        let instant = request.into_inner().instant;
        let token = blocking(move || store.events.token_at(instant)).await?;
        Ok(Response::new(TrackingToken { token: token as i64 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_read_batches_hold_about_a_mebibyte_whatever_the_event_size() {
        assert_eq!(next_batch_events(0, 0), AGGREGATE_BATCH_FIRST);
        // Small events: the event cap.
        assert_eq!(next_batch_events(8 * 200, 8), AGGREGATE_BATCH_EVENTS);
        // 64 KiB events: 16 of them.
        assert_eq!(next_batch_events(8 * 65_536, 8), 16);
        // Events over the byte cap: one at a time.
        assert_eq!(next_batch_events(2 * 3_000_000, 2), 1);
        for size in [1usize, 100, 4_000, 100_000, 1_000_000, 4_000_000] {
            let events = next_batch_events(size * 4, 4);
            assert!(events * size <= AGGREGATE_BATCH_BYTES.max(size), "{events} events of {size} bytes");
        }
    }

    #[test]
    fn a_small_aggregate_is_one_read_and_a_large_one_s_batches_stay_near_a_mebibyte() {
        use crate::store::{FsSpace, StoreKind, StoreMetrics, StoreOptions};
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { segment_size_bytes: 4 * 1024 * 1024, ..StoreOptions::default() };
        let metrics = StoreMetrics::detached();
        let store =
            SegmentStore::open("default", StoreKind::Events, dir.path(), options, metrics, Arc::new(FsSpace)).unwrap();
        for seq in 0..100 {
            store.append_blocking(vec![crate::test_util::event("small", seq, 200)]).unwrap();
        }
        for seq in 0..40 {
            store.append_blocking(vec![crate::test_util::event("large", seq, 100_000)]).unwrap();
        }
        let small = store.aggregate_plan("small", 0, i64::MAX).unwrap();
        let read = read_budgeted(&store, "small", &small).unwrap();
        assert_eq!(read.len(), 100, "a 100-event aggregate of small events is one batch");
        assert_eq!(read[99], crate::test_util::event("small", 99, 200));
        let large = store.aggregate_plan("large", 0, i64::MAX).unwrap();
        let read = read_budgeted(&store, "large", &large).unwrap();
        let bytes: usize = read.iter().map(Bytes::len).sum();
        assert!((10..=20).contains(&read.len()), "{} events of 100 kB in one batch", read.len());
        assert!(bytes <= 2 * AGGREGATE_BATCH_BYTES, "{bytes} bytes in one batch");
        let rest = read_budgeted(&store, "large", &large[read.len()..]).unwrap();
        assert_eq!(rest[0], crate::test_util::event("large", read.len() as i64, 100_000), "the next batch goes on");
    }

    #[tokio::test]
    async fn a_stream_whose_client_takes_nothing_is_cut_and_ends_with_why() {
        use tokio_stream::StreamExt;
        let (sender, mut stream) = response_stream::<u32>(Duration::from_millis(50));
        for n in 0..RESPONSE_BATCHES_MAX as u32 {
            assert!(sender.send(vec![Ok(n)]).await, "room for {n}");
        }
        // The client takes nothing: the next batch waits for the deadline.
        assert!(!sender.send(vec![Ok(99)]).await, "a full stream took more");
        let mut taken = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(n) => taken.push(n),
                Err(status) => {
                    let code = status.metadata().get(super::super::status::ERROR_CODE_KEY);
                    assert_eq!(code.and_then(|v| v.to_str().ok()), Some("AXONIQ-6001"));
                    break;
                }
            }
        }
        assert_eq!(taken, vec![0, 1, 2, 3], "what was sent before the cut is delivered");
    }
}
