//! Checks the access token of every call on the client port before it
//! reaches a service (or is passed to another node) against what the
//! method needs in the call's context: a refused call is answered
//! PERMISSION_DENIED with AXONIQ-1000 or 1001, and its body is never read
//! (see `crate::access`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

use super::status::status;
use crate::access::{Access, needs};

use super::BoxError;

/// Wraps the client services in the token check.
#[derive(Clone)]
pub struct AccessLayer {
    access: Arc<Access>,
}

impl AccessLayer {
    /// Checks calls against `access`.
    pub fn new(access: Arc<Access>) -> Self {
        AccessLayer { access }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Checked { inner, access: self.access.clone() }
    }
}

/// A service whose calls are checked first.
#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    access: Arc<Access>,
}

impl<S> Service<http::Request<Body>> for Checked<S>
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
        if !self.access.enabled() {
            return super::call_ready(&mut self.inner, request);
        }
        let access = self.access.clone();
        // The service that was made ready serves this call; its clone
        // waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let need = needs::grpc(request.uri().path(), super::context_in(request.headers()));
            if let Err(refusal) = access.check(Access::presented(request.headers()), &need).await {
                tracing::debug!(path = %request.uri().path(), ?refusal, "call refused by access control");
                return Ok(status(refusal.code(), refusal.message()).into_http::<Body>());
            }
            inner.call(request).await.map_err(Into::into)
        })
    }
}
