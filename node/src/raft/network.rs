//! Raft RPCs between nodes over the internal gRPC port (8224): the client
//! side that openraft uses to reach the other members of a group
//! ([`GrpcNetwork`]) and the service that receives their RPCs for every
//! group hosted here ([`RaftRpcService`]). Replication is pipelined: each
//! leader→follower stream of AppendEntries travels on one `StreamAppend`
//! gRPC stream with several requests in flight, answered in order.
//!
//! When `axoniq.axonserver.accesscontrol.internal-token` is set, every call
//! carries it as `AxonIQ-InternalToken` and calls without it are refused.
//! Connections are made lazily and re-established by tonic after failures;
//! an unreachable member is reported as such, so openraft backs off.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use ranvier_proto::cluster::raft_service_client::RaftServiceClient;
use ranvier_proto::cluster::raft_service_server::RaftService;
use ranvier_proto::cluster::{AppendEntriesMessage, RaftReply, RaftRequest, SnapshotMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use super::GroupRaft;

/// AppendEntries requests (and answers) buffered per replication stream.
const STREAM_APPEND_REPLIES_MAX: usize = 64;
use super::codec::{decode_entry, encode_entry};
use super::types::{MemberNode, TypeConfig};

type C = TypeConfig;

/// The metadata key of the internal token.
pub const INTERNAL_TOKEN_KEY: &str = "axoniq-internaltoken";

/// Adds the internal token (when one is configured) to an outgoing call.
pub fn attach_internal_token<T>(request: &mut Request<T>, token: Option<&str>) {
    if let Some(token) = token
        && let Ok(value) = token.parse()
    {
        request.metadata_mut().insert(INTERNAL_TOKEN_KEY, value);
    }
}

/// Refuses an incoming call without the expected internal token (when one
/// is configured).
pub fn check_internal_token<T>(request: &Request<T>, expected: Option<&str>) -> Result<(), Status> {
    let Some(expected) = expected else { return Ok(()) };
    match request.metadata().get(INTERNAL_TOKEN_KEY).and_then(|v| v.to_str().ok()) {
        Some(token) if token == expected => Ok(()),
        Some(_) => Err(Status::permission_denied("invalid internal token")),
        None => Err(Status::permission_denied("missing internal token")),
    }
}

/// Creates the links of one group to the other members.
#[derive(Clone)]
pub struct GrpcNetwork {
    group: String,
    token: Option<String>,
}

impl GrpcNetwork {
    /// The network of `group`, sending `token` on every call when set.
    pub fn new(group: &str, token: Option<String>) -> Self {
        Self { group: group.to_owned(), token }
    }
}

/// The link to one member.
pub struct GrpcLink {
    group: String,
    token: Option<String>,
    target: u64,
    client: Result<RaftServiceClient<Channel>, String>,
}

impl RaftNetworkFactory<C> for GrpcNetwork {
    type Network = GrpcLink;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> GrpcLink {
        let client = Endpoint::from_shared(format!("http://{}", node.internal_addr))
            .map(|endpoint| RaftServiceClient::new(endpoint.tcp_nodelay(true).connect_lazy()))
            .map_err(|e| format!("bad internal address {:?} of node {target}: {e}", node.internal_addr));
        GrpcLink { group: self.group.clone(), token: self.token.clone(), target, client }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, NetworkError<C>> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| NetworkError::new(&e))
}

/// Sorts a failed call: a member that cannot be reached (so openraft backs
/// off) or another network failure.
fn status_error(target: u64, status: &Status) -> RPCError<C> {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {}", status.message())))
        }
        _ => RPCError::Network(NetworkError::from_string(format!("node {target}: {status}"))),
    }
}

fn parse_reply<T: DeserializeOwned>(target: u64, reply: RaftReply) -> Result<T, RPCError<C>> {
    if !reply.error.is_empty() {
        return Err(RPCError::Unreachable(Unreachable::from_string(format!("node {target}: {}", reply.error))));
    }
    serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// An AppendEntries request of `group` in its wire form.
fn append_message(group: &str, rpc: &AppendEntriesRequest<C>) -> Result<AppendEntriesMessage, RPCError<C>> {
    let entries = rpc
        .entries
        .iter()
        .map(|entry| encode_entry(entry).map(Bytes::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
    Ok(AppendEntriesMessage {
        group: group.to_owned(),
        vote_json: to_json(&rpc.vote)?,
        prev_log_id_json: to_json(&rpc.prev_log_id)?,
        leader_commit_json: to_json(&rpc.leader_commit)?,
        entries,
    })
}

/// An AppendEntries request from its wire form.
fn append_request(message: AppendEntriesMessage) -> Result<AppendEntriesRequest<C>, Status> {
    let entries = message
        .entries
        .into_iter()
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("malformed log entry: {e}")))?;
    Ok(AppendEntriesRequest {
        vote: from_json(&message.vote_json, "vote")?,
        prev_log_id: from_json(&message.prev_log_id_json, "previous log id")?,
        leader_commit: from_json(&message.leader_commit_json, "leader commit")?,
        entries,
    })
}

impl GrpcLink {
    fn request<T>(&self, message: T, option: &RPCOption) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(option.soft_ttl());
        attach_internal_token(&mut request, self.token.as_deref());
        request
    }

    fn client(&self) -> Result<RaftServiceClient<Channel>, RPCError<C>> {
        self.client.clone().map_err(|reason| RPCError::Unreachable(Unreachable::from_string(reason)))
    }
}

impl RaftNetworkV2<C> for GrpcLink {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let message = append_message(&self.group, &rpc)?;
        let request = self.request(message, &option);
        let reply = self.client()?.append_entries(request).await.map_err(|s| status_error(self.target, &s))?;
        parse_reply(self.target, reply.into_inner())
    }

    /// Pipelined: every request goes out on one gRPC stream as openraft
    /// produces it; the follower answers each in order.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> openraft::base::BoxFuture<
        's,
        Result<openraft::base::BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>,
    >
    where
        S: tokio_stream::Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
    {
        use tokio_stream::StreamExt;
        let group = self.group.clone();
        let target = self.target;
        let token = self.token.clone();
        let client = self.client();
        Box::pin(async move {
            let mut client = client?;
            // A request that cannot be encoded goes out empty: the follower
            // refuses it and the stream ends with that error.
            let outbound = input.map(move |rpc| append_message(&group, &rpc).unwrap_or_default());
            let mut request = Request::new(outbound);
            attach_internal_token(&mut request, token.as_deref());
            let inbound = client.stream_append(request).await.map_err(|s| status_error(target, &s))?.into_inner();
            let results = inbound.map(move |reply| match reply {
                Ok(reply) => parse_reply::<StreamAppendResult<C>>(target, reply),
                Err(status) => Err(status_error(target, &status)),
            });
            Ok(Box::pin(results) as openraft::base::BoxStream<'s, _>)
        })
    }

    async fn vote(&mut self, rpc: VoteRequest<C>, option: RPCOption) -> Result<VoteResponse<C>, RPCError<C>> {
        let message = RaftRequest { group: self.group.clone(), json: to_json(&rpc)? };
        let request = self.request(message, &option);
        let reply = self.client()?.vote(request).await.map_err(|s| status_error(self.target, &s))?;
        parse_reply(self.target, reply.into_inner())
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Cursor<Vec<u8>>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let message = SnapshotMessage {
            group: self.group.clone(),
            vote_json: to_json(&vote)?,
            meta_json: to_json(&snapshot.meta)?,
            data: Bytes::from(snapshot.snapshot.into_inner()),
        };
        let request = self.request(message, &option);
        let reply = self.client()?.install_snapshot(request).await.map_err(|s| status_error(self.target, &s))?;
        Ok(parse_reply(self.target, reply.into_inner())?)
    }
}

/// The groups hosted on this node, by name.
#[derive(Clone, Default)]
pub struct Groups {
    groups: Arc<RwLock<HashMap<String, GroupRaft>>>,
}

impl Groups {
    /// Hosts a group.
    pub fn insert(&self, name: &str, raft: GroupRaft) {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), raft);
    }

    /// A hosted group.
    pub fn get(&self, name: &str) -> Option<GroupRaft> {
        self.groups.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Stops hosting a group (the caller shuts its Raft down).
    pub fn remove(&self, name: &str) -> Option<GroupRaft> {
        self.groups.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    /// The hosted groups' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.groups.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }
}

/// Receives the Raft RPCs of every group hosted here.
pub struct RaftRpcService {
    groups: Groups,
    token: Option<String>,
}

impl RaftRpcService {
    /// Serves `groups`, requiring `token` when set.
    pub fn new(groups: Groups, token: Option<String>) -> Self {
        Self { groups, token }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_internal_token(request, self.token.as_deref())
    }

    fn group(&self, name: &str) -> Result<GroupRaft, Status> {
        self.groups.get(name).ok_or_else(|| Status::not_found(format!("replication group {name} is not hosted here")))
    }
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

fn reply<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Result<Response<RaftReply>, Status> {
    let reply = match result {
        Ok(value) => RaftReply {
            json: serde_json::to_vec(&value).map(Bytes::from).map_err(|e| Status::internal(e.to_string()))?,
            error: String::new(),
        },
        Err(error) => RaftReply { json: Bytes::new(), error: error.to_string() },
    };
    Ok(Response::new(reply))
}

#[tonic::async_trait]
impl RaftService for RaftRpcService {
    async fn append_entries(&self, request: Request<AppendEntriesMessage>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        let rpc = append_request(message)?;
        reply(raft.append_entries(rpc).await)
    }

    type StreamAppendStream = tokio_stream::wrappers::ReceiverStream<Result<RaftReply, Status>>;

    /// Pipelined replication of one group: requests are handed to openraft
    /// as they arrive, answers go back in order. A malformed request or a
    /// different group ends the stream with an error.
    async fn stream_append(
        &self,
        request: Request<tonic::Streaming<AppendEntriesMessage>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        use tokio_stream::StreamExt;
        self.authorize(&request)?;
        let mut inbound = request.into_inner();
        let Some(first) = inbound.message().await? else {
            return Err(Status::invalid_argument("an empty replication stream"));
        };
        let group = first.group.clone();
        let raft = self.group(&group)?;
        let (replies, receiver) = tokio::sync::mpsc::channel(STREAM_APPEND_REPLIES_MAX);
        let (requests, requests_in) = tokio::sync::mpsc::channel(STREAM_APPEND_REPLIES_MAX);
        // Decode incoming messages into requests for openraft.
        let decode_replies = replies.clone();
        tokio::spawn(async move {
            let mut next = Some(first);
            loop {
                let message = match next.take() {
                    Some(message) => message,
                    None => match inbound.message().await {
                        Ok(Some(message)) => message,
                        Ok(None) => return,
                        Err(status) => {
                            let _ = decode_replies.send(Err(status)).await;
                            return;
                        }
                    },
                };
                let decoded = if message.group == group {
                    append_request(message)
                } else {
                    Err(Status::invalid_argument("a replication stream carries one group"))
                };
                match decoded {
                    Ok(rpc) => {
                        if requests.send(rpc).await.is_err() {
                            return;
                        }
                    }
                    Err(status) => {
                        let _ = decode_replies.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        tokio::spawn(async move {
            let mut results =
                std::pin::pin!(raft.stream_append(tokio_stream::wrappers::ReceiverStream::new(requests_in)));
            while let Some(result) = results.next().await {
                let reply = match result {
                    Ok(result) => match serde_json::to_vec(&result) {
                        Ok(json) => RaftReply { json: json.into(), error: String::new() },
                        Err(error) => RaftReply { json: Bytes::new(), error: error.to_string() },
                    },
                    Err(fatal) => RaftReply { json: Bytes::new(), error: fatal.to_string() },
                };
                if replies.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        reply(raft.vote(from_json(&message.json, "vote request")?).await)
    }

    async fn install_snapshot(&self, request: Request<SnapshotMessage>) -> Result<Response<RaftReply>, Status> {
        self.authorize(&request)?;
        let message = request.into_inner();
        let raft = self.group(&message.group)?;
        let vote = from_json(&message.vote_json, "vote")?;
        let meta = from_json(&message.meta_json, "snapshot metadata")?;
        let snapshot = openraft::Snapshot { meta, snapshot: Cursor::new(message.data.to_vec()) };
        reply(raft.install_full_snapshot(vote, snapshot).await)
    }
}
