//! Serves clients of contexts this node does not store (a MESSAGING_ONLY
//! member, or a node outside the context's group): an EventStore call for
//! such a context is passed, as it is — headers, streamed messages both
//! ways, trailers — to the client port of a PRIMARY member of the context's
//! group, which serves it (and forwards writes to its leader). Calls for
//! contexts stored here, and every other service, go to this node's own
//! handlers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service, ServiceExt};

use crate::cluster::Cluster;
use crate::cluster::model::ADMIN;
use crate::contexts::Contexts;
use crate::transport::{Lane, Transport};

use super::BoxError;

/// The EventStore service's path prefix.
const EVENT_STORE: &str = "/io.axoniq.axonserver.grpc.event.EventStore/";

/// Where calls for remote contexts go.
#[derive(Clone)]
pub struct ContextProxyLayer {
    shared: Arc<Shared>,
}

struct Shared {
    cluster: Option<Arc<Cluster>>,
    contexts: Arc<Contexts>,
}

impl ContextProxyLayer {
    /// Proxies for `cluster`'s contexts not in `contexts` (nothing on a
    /// standalone node).
    pub fn new(cluster: Option<Arc<Cluster>>, contexts: Arc<Contexts>) -> Self {
        Self { shared: Arc::new(Shared { cluster, contexts }) }
    }
}

impl<S> Layer<S> for ContextProxyLayer {
    type Service = ContextProxy<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContextProxy { inner, shared: self.shared.clone() }
    }
}

/// The proxying service.
#[derive(Clone)]
pub struct ContextProxy<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    /// The client address of a member that stores the request's context,
    /// when this node does not, and the transport that reaches it.
    fn target<B>(&self, request: &http::Request<B>) -> Option<(String, Arc<Transport>)> {
        let cluster = self.cluster.as_ref()?;
        if !request.uri().path().starts_with(EVENT_STORE) {
            return None;
        }
        let context = super::context_in(request.headers());
        if context == ADMIN || self.contexts.get(context).is_some() {
            return None;
        }
        let model = cluster.model();
        let member = *model.primaries_except(model.group_of(context)?, cluster.name()).first()?;
        Some((format!("{}:{}", member.host_name, member.grpc_port), cluster.transport().clone()))
    }
}

impl<S> Service<http::Request<Body>> for ContextProxy<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some((target, transport)) = self.shared.target(&request) {
            let channel = transport.channel(&target, Lane::Calls).map_err(BoxError::from);
            tracing::debug!(%target, path = %request.uri().path(), "passing a call to a member that stores its context");
            return Box::pin(async move { channel?.oneshot(request).await.map_err(Into::into) });
        }
        super::call_ready(&mut self.inner, request)
    }
}
