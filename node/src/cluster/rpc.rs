//! The internal ClusterService: a client transaction or an admin change
//! forwarded by another node, run here (this node leads the group) or
//! relayed once more to the leader (when the sender hosts no replica);
//! stored transactions and aggregates read for another node; and what this
//! node says of itself (`StoreState`, `NodeState`).

use std::sync::Arc;

use ranvier_proto::cluster::cluster_service_server::ClusterService;
use ranvier_proto::cluster::{
    AdminProposal, AdminReply, AggregateRequest, FetchRequest, ForwardedAppend, ForwardedBatch, ForwardedBatchReply,
    ForwardedFailure, ForwardedOutcome, ForwardedReply, MembershipQuery, MembershipReply, NodeStateQuery,
    NodeStateReply, StoreStateQuery, StoreStateReply, TransactionChunk,
};
use tonic::{Request, Response, Status};

use super::model::{ADMIN, AdminCommand};
use super::{Cluster, WriteError};
use crate::raft::types::{GroupCommand, GroupResponse};

/// How long a forwarded write for a context this node's model does not
/// know yet waits for the model to catch up before it is refused.
const FORWARDED_CONTEXT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Events per chunk of a FetchTransactions stream, at most.
const FETCH_CHUNK_EVENTS: usize = 10_000;
/// Event bytes per chunk, about.
const FETCH_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Serves forwarded calls for a [`Cluster`].
pub struct ClusterRpc {
    cluster: Arc<Cluster>,
}

impl ClusterRpc {
    pub(super) fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    /// This node's store of `context`, or why it has none to read from.
    fn stored(&self, context: &str) -> Result<crate::store::ContextStore, Status> {
        match self.cluster.contexts.get(context) {
            Some(Ok(store)) => Ok(store),
            Some(Err(reason)) => Err(Status::unavailable(reason)),
            None => Err(Status::not_found(format!("context {context} is not stored here"))),
        }
    }
}

/// The answer to a forwarded transaction, as the forwarding node sees it.
pub(super) fn append_response(reply: ForwardedReply) -> GroupResponse {
    if reply.error_code.is_empty() {
        GroupResponse::Appended { first_token: reply.first_token.max(0) as u64 }
    } else {
        GroupResponse::Refused { code: reply.error_code, message: reply.message }
    }
}

fn unavailable(error: WriteError) -> Status {
    match error {
        WriteError::Timeout(message) => Status::deadline_exceeded(message),
        WriteError::NoLeader(message)
        | WriteError::NotLeader(message)
        | WriteError::Unreached(message)
        | WriteError::Failed(message) => Status::unavailable(message),
        WriteError::Refused { message, .. } => Status::failed_precondition(message),
    }
}

impl ClusterRpc {
    /// Runs one forwarded transaction: its token or Axon refusal, or why
    /// there is neither.
    async fn run(&self, append: ForwardedAppend) -> Result<ForwardedReply, WriteError> {
        let context = append.context.clone();
        let command = if append.snapshot {
            let snapshot = append.events.into_iter().next().unwrap_or_default();
            GroupCommand::AppendSnapshot { context: append.context, snapshot }
        } else {
            GroupCommand::AppendEvents { context: append.context, events: append.events }
        };
        // The sender's model knows the context; this node's may lag a moment.
        self.cluster.await_context(&context, FORWARDED_CONTEXT_WAIT).await;
        match self.cluster.propose_write(&context, command, append.relay).await.map(|p| p.response) {
            Ok(GroupResponse::Appended { first_token }) => {
                Ok(ForwardedReply { first_token: first_token as i64, ..Default::default() })
            }
            Ok(GroupResponse::Refused { code, message }) | Err(WriteError::Refused { code, message }) => {
                Ok(ForwardedReply { first_token: -1, error_code: code, message })
            }
            Ok(GroupResponse::Applied | GroupResponse::Batch(_)) => {
                Err(WriteError::Failed("the entry stored nothing".into()))
            }
            Err(error) => Err(error),
        }
    }
}

/// One transaction's outcome in a batch's answer: the kinds the sender's
/// retry rules need (as `unavailable` gives them for a single call).
pub(super) fn batch_outcome(result: Result<ForwardedReply, WriteError>) -> ForwardedOutcome {
    let (failure, reason) = match result {
        Ok(reply) => return ForwardedOutcome { reply: Some(reply), ..Default::default() },
        Err(WriteError::Timeout(reason)) => (ForwardedFailure::TimedOut, reason),
        Err(WriteError::Refused { code, message }) => {
            let reply = ForwardedReply { first_token: -1, error_code: code, message };
            return ForwardedOutcome { reply: Some(reply), ..Default::default() };
        }
        Err(WriteError::NoLeader(reason) | WriteError::NotLeader(reason) | WriteError::Unreached(reason)) => {
            (ForwardedFailure::NoLeader, reason)
        }
        Err(WriteError::Failed(reason)) => (ForwardedFailure::Failed, reason),
    };
    ForwardedOutcome { reply: None, failure: failure as i32, reason }
}

#[tonic::async_trait]
impl ClusterService for ClusterRpc {
    async fn append(&self, request: Request<ForwardedAppend>) -> Result<Response<ForwardedReply>, Status> {
        self.cluster.authorize(&request)?;
        Ok(Response::new(self.run(request.into_inner()).await.map_err(unavailable)?))
    }

    async fn append_batch(&self, request: Request<ForwardedBatch>) -> Result<Response<ForwardedBatchReply>, Status> {
        self.cluster.authorize(&request)?;
        // Each joins this node's next proposal (`batch`) at once; none waits
        // for another's answer.
        let runs = request.into_inner().appends.into_iter().map(|append| self.run(append));
        let outcomes = futures_util::future::join_all(runs).await.into_iter().map(batch_outcome).collect();
        Ok(Response::new(ForwardedBatchReply { outcomes }))
    }

    async fn propose(&self, request: Request<AdminProposal>) -> Result<Response<AdminReply>, Status> {
        self.cluster.authorize(&request)?;
        let request = request.into_inner();
        let command: AdminCommand = serde_json::from_slice(&request.command_json)
            .map_err(|e| Status::invalid_argument(format!("malformed admin command: {e}")))?;
        let proposed = self.cluster.propose(ADMIN, GroupCommand::Admin(command), request.relay).await;
        let reply = match proposed.map(|p| (p.response, p.index)) {
            Ok((GroupResponse::Refused { code, message }, _)) | Err(WriteError::Refused { code, message }) => {
                AdminReply { error_code: code, message, log_index: 0 }
            }
            Ok((_, log_index)) => AdminReply { log_index, ..Default::default() },
            Err(error) => return Err(unavailable(error)),
        };
        Ok(Response::new(reply))
    }

    async fn membership(&self, request: Request<MembershipQuery>) -> Result<Response<MembershipReply>, Status> {
        use openraft::type_config::async_runtime::WatchReceiver;
        self.cluster.authorize(&request)?;
        let MembershipQuery { group, skip_read_index } = request.into_inner();
        let Some(raft) = self.cluster.groups.get(&group) else {
            return Ok(Response::new(MembershipReply::default()));
        };
        let metrics = raft.metrics().borrow_watched().clone();
        let members = metrics.membership_config.membership().nodes().map(|(_, node)| node.name.clone()).collect();
        let leader = metrics.current_leader == Some(self.cluster.node_id);
        let read_index = if leader && !skip_read_index { super::read_index(&raft).await.unwrap_or(0) } else { 0 };
        Ok(Response::new(MembershipReply { leader, members, read_index }))
    }

    type FetchTransactionsStream = tokio_stream::wrappers::ReceiverStream<Result<TransactionChunk, Status>>;

    /// Streams a context's stored transactions from a token to the end this
    /// node has stored, in bounded chunks (two in flight).
    async fn fetch_transactions(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<Self::FetchTransactionsStream>, Status> {
        self.cluster.authorize(&request)?;
        let request = request.into_inner();
        let store = self.stored(&request.context)?;
        let target = if request.snapshots { store.snapshots } else { store.events };
        let end = if request.to_token == 0 { u64::MAX } else { request.to_token };
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            let mut cursor = crate::store::Cursor::at(request.from_token);
            while cursor.next_token < end {
                let room = usize::try_from(end - cursor.next_token).unwrap_or(usize::MAX).min(FETCH_CHUNK_EVENTS);
                let read = if request.local_only {
                    target.read_batch_tagged_here(&mut cursor, room, FETCH_CHUNK_BYTES)
                } else {
                    target.read_batch_tagged(&mut cursor, room, FETCH_CHUNK_BYTES)
                };
                let batch = match read {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = sender.blocking_send(Err(Status::internal(error.to_string())));
                        return;
                    }
                };
                if batch.is_empty() {
                    return;
                }
                let mut chunk = TransactionChunk::default();
                for (_, event, index) in batch {
                    chunk.events.push(event);
                    chunk.log_indexes.push(index);
                }
                if sender.blocking_send(Ok(chunk)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    /// One aggregate's events from this node's event store (a secondary's
    /// answer to a primary whose segments were retired).
    async fn fetch_aggregate(&self, request: Request<AggregateRequest>) -> Result<Response<TransactionChunk>, Status> {
        self.cluster.authorize(&request)?;
        let request = request.into_inner();
        let store = self.stored(&request.context)?.events;
        let read = tokio::task::spawn_blocking(move || {
            let plan = store.aggregate_plan(&request.aggregate_id, request.min_seq, request.max_seq)?;
            store.read_records_here(&request.aggregate_id, &plan)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let events = read.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(TransactionChunk { events, log_indexes: Vec::new() }))
    }

    async fn node_state(&self, request: Request<NodeStateQuery>) -> Result<Response<NodeStateReply>, Status> {
        self.cluster.authorize(&request)?;
        Ok(Response::new(self.cluster.node_state().await))
    }

    async fn store_state(&self, request: Request<StoreStateQuery>) -> Result<Response<StoreStateReply>, Status> {
        self.cluster.authorize(&request)?;
        let context = request.into_inner().context;
        let reply = match self.cluster.contexts.get(&context) {
            Some(Ok(store)) => StoreStateReply { stored: true, next_token: store.events.next_token() },
            _ => StoreStateReply { stored: false, next_token: 0 },
        };
        Ok(Response::new(reply))
    }
}
