//! Node-to-node calls: the one place that connects this node to others.
//!
//! [`Transport`] keeps a pool of lazily connected gRPC channels, one per
//! peer address and [`Lane`]: each replication group's Raft traffic has a
//! lane of its own (one group's bulk replication never queues behind
//! another's on a shared connection), and every other call — forwarded
//! writes and admin proposals, read-index and fetch requests, client calls
//! passed to a member that stores their context — shares the `Calls` lane.
//! Every channel has a connect timeout, HTTP/2 keepalive (a peer that
//! vanished without closing its connections fails its calls within
//! seconds, and they are made anew once it is back) and TCP_NODELAY;
//! tonic reconnects a channel after a failure. The pool is bounded
//! ([`CHANNELS_MAX`]): when full it starts over, and channels are made
//! again on their next use.
//!
//! With internal TLS (`axoniq.axonserver.ssl.enabled`), every channel
//! connects through [`Trust`]'s connector: the peer's certificate is
//! checked as `ssl.trust-manager-verification` says, against the trust file
//! as it is at each connect.
//!
//! The internal token (`axoniq.axonserver.accesscontrol.internal-token`)
//! is attached to every internal call here and checked on every incoming
//! one, in constant time, by [`InternalTokenLayer`] before the call's body
//! is read: a caller without the token cannot make the node buffer or
//! decode anything (a message may be up to [`INTERNAL_MESSAGE_MAX`]); the
//! clients made here take messages up to that limit.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ranvier_proto::cluster::cluster_service_client::ClusterServiceClient;
use ranvier_proto::cluster::raft_service_client::RaftServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::tls::client::Trust;

/// Largest message on the internal port, in bytes: one log entry holds a
/// whole client transaction (`ranvier.max-transaction-size`, 32 MB by
/// default), and a forwarded transaction travels whole.
pub const INTERNAL_MESSAGE_MAX: usize = 64 * 1024 * 1024;
/// The metadata key of the internal token.
pub const INTERNAL_TOKEN_KEY: &str = "axoniq-internaltoken";
/// Longest wait for a connection to another node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection pings its peer, and how long it waits for
/// the answer before it counts the connection lost.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Channels in the pool, at most (peers × lanes in use; a cluster of 50
/// nodes with 20 groups needs about a thousand).
pub const CHANNELS_MAX: usize = 4_096;

/// Which traffic a channel carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Raft RPCs of one replication group.
    Raft(String),
    /// Every other call.
    Calls,
}

/// An address no channel can be made to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad node address {address:?}: {reason}")]
pub struct BadAddress {
    /// The address as given.
    pub address: String,
    /// Why it is not usable.
    pub reason: String,
}

/// The pool of channels to other nodes, and the internal token.
pub struct Transport {
    token: Option<String>,
    tls: Option<Trust>,
    channels: Mutex<HashMap<(String, Lane), Channel>>,
}

impl Transport {
    /// A pool whose internal calls carry `token` (when set) and whose
    /// incoming calls must.
    pub fn new(token: Option<String>) -> Self {
        Transport { token, tls: None, channels: Mutex::new(HashMap::new()) }
    }

    /// The same pool, its channels speaking TLS with `tls` (when given).
    pub fn with_tls(mut self, tls: Option<Trust>) -> Self {
        self.tls = tls;
        self
    }

    /// The channel to `address` (`host:port`) on `lane`, made on first
    /// use (it connects when first called).
    pub fn channel(&self, address: &str, lane: Lane) -> Result<Channel, BadAddress> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (address.to_owned(), lane);
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| BadAddress { address: address.to_owned(), reason: e.to_string() })?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = match &self.tls {
            Some(trust) => endpoint.connect_with_connector_lazy(trust.connector()),
            None => endpoint.connect_lazy(),
        };
        if channels.len() >= CHANNELS_MAX {
            channels.clear();
        }
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// A ClusterService client of the node at internal `address`.
    pub fn cluster_client(&self, address: &str) -> Result<ClusterServiceClient<Channel>, BadAddress> {
        Ok(ClusterServiceClient::new(self.channel(address, Lane::Calls)?)
            .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
            .max_encoding_message_size(INTERNAL_MESSAGE_MAX))
    }

    /// A RaftService client of the node at internal `address`, on the lane
    /// of `group`.
    pub fn raft_client(&self, address: &str, group: &str) -> Result<RaftServiceClient<Channel>, BadAddress> {
        Ok(RaftServiceClient::new(self.channel(address, Lane::Raft(group.to_owned()))?)
            .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
            .max_encoding_message_size(INTERNAL_MESSAGE_MAX))
    }

    /// `message` as an internal call, with the token.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        self.attach(&mut request);
        request
    }

    /// Adds the token (when one is configured) to an outgoing call.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        attach_internal_token(request, self.token.as_deref());
    }

    /// Refuses an incoming call without the token (when one is configured).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        check_internal_token(request, self.token.as_deref())
    }

    /// The token, for a service that checks it on its own.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Channels in the pool now.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// Adds the internal token (when one is configured) to an outgoing call.
pub fn attach_internal_token<T>(request: &mut Request<T>, token: Option<&str>) {
    if let Some(token) = token
        && let Ok(value) = token.parse()
    {
        request.metadata_mut().insert(INTERNAL_TOKEN_KEY, value);
    }
}

/// Refuses an incoming call without the expected internal token (when one
/// is configured). The comparison takes as long for any token of the same
/// length, so timing does not tell how much of a guess was right.
pub fn check_internal_token<T>(request: &Request<T>, expected: Option<&str>) -> Result<(), Status> {
    let Some(expected) = expected else { return Ok(()) };
    token_presented(request.metadata().get(INTERNAL_TOKEN_KEY).map(|v| v.as_bytes()), expected)
}

/// Whether `presented` is the internal token `expected`, in constant time.
fn token_presented(presented: Option<&[u8]>, expected: &str) -> Result<(), Status> {
    match presented {
        Some(token) if equal_in_constant_time(token, expected.as_bytes()) => Ok(()),
        Some(_) => Err(Status::permission_denied("invalid internal token")),
        None => Err(Status::permission_denied("missing internal token")),
    }
}

/// Refuses internal calls without the internal token before the inner
/// service (and so the decoding of the body) sees them.
#[derive(Clone)]
pub struct InternalTokenLayer {
    token: Option<Arc<str>>,
}

impl InternalTokenLayer {
    /// Checks for `token` (none: every call passes).
    pub fn new(token: Option<&str>) -> Self {
        InternalTokenLayer { token: token.map(Arc::from) }
    }
}

impl<S> tower::Layer<S> for InternalTokenLayer {
    type Service = TokenChecked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenChecked { inner, token: self.token.clone() }
    }
}

/// A service whose calls must carry the internal token.
#[derive(Clone)]
pub struct TokenChecked<S> {
    inner: S,
    token: Option<Arc<str>>,
}

type Boxed = Box<dyn std::error::Error + Send + Sync>;

impl<S> tower::Service<tonic::codegen::http::Request<tonic::body::Body>> for TokenChecked<S>
where
    S: tower::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Boxed>,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = Boxed;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(expected) = &self.token {
            let presented = request.headers().get(INTERNAL_TOKEN_KEY).map(|v| v.as_bytes());
            if let Err(refused) = token_presented(presented, expected) {
                tracing::debug!(path = %request.uri().path(), reason = refused.message(), "internal call refused");
                let answer = refused.into_http::<tonic::body::Body>();
                return Box::pin(async move { Ok(answer) });
            }
        }
        // The service that was made ready serves this call; its clone
        // waits for the next one.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { ready.call(request).await.map_err(Into::into) })
    }
}

pub(crate) fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |differ, (x, y)| differ | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn one_channel_per_peer_and_lane_reused_and_bad_addresses_refused() {
        let transport = Transport::new(None);
        transport.channel("node-1:8224", Lane::Calls).unwrap();
        transport.channel("node-1:8224", Lane::Calls).unwrap();
        transport.channel("node-1:8224", Lane::Raft("default".into())).unwrap();
        transport.channel("node-1:8224", Lane::Raft("orders".into())).unwrap();
        transport.channel("node-2:8224", Lane::Calls).unwrap();
        assert_eq!(transport.channel_count(), 4, "reused per (peer, lane)");
        let bad = transport.channel("no port:x", Lane::Calls).unwrap_err();
        assert_eq!(bad.address, "no port:x");
        assert_eq!(transport.channel_count(), 4);
    }

    #[tokio::test]
    async fn the_pool_is_bounded() {
        let transport = Transport::new(None);
        for n in 0..CHANNELS_MAX + 10 {
            transport.channel(&format!("node-{n}:8224"), Lane::Calls).unwrap();
        }
        assert!(transport.channel_count() <= CHANNELS_MAX);
    }

    #[test]
    fn the_internal_token_is_attached_and_checked() {
        let sender = Transport::new(Some("s3cret".into()));
        let receiver = Transport::new(Some("s3cret".into()));
        assert!(receiver.check(&sender.request(())).is_ok());
        let missing = receiver.check(&Request::new(())).unwrap_err();
        assert_eq!((missing.code(), missing.message()), (tonic::Code::PermissionDenied, "missing internal token"));
        for wrong in ["s3creT", "s3cre", "s3crets", ""] {
            let mut request = Request::new(());
            attach_internal_token(&mut request, Some(wrong));
            let refused = receiver.check(&request);
            assert!(refused.is_err(), "{wrong:?} accepted");
        }
        // Without a configured token nothing is attached and all pass.
        let open = Transport::new(None);
        assert!(open.request(()).metadata().get(INTERNAL_TOKEN_KEY).is_none());
        assert!(open.check(&Request::new(())).is_ok());
    }
}
