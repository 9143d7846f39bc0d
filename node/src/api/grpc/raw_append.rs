//! AppendEvent without decoding events: the EventStore service is wrapped so
//! that its AppendEvent calls take each streamed event as the bytes the
//! client sent, checked against the `Event` schema
//! (`event_fields::check_event`) instead of decoded into a message and
//! encoded again for the store. A malformed event is refused with the same
//! status a decoding failure gets. Every other EventStore call goes to the
//! generated service unchanged.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use prost::Message;
use ranvier_proto::event::Confirmation;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::server::{ClientStreamingService, Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};
use tower::Service;

use super::event_store::EventStoreService;
use crate::store::event_fields;

const APPEND_EVENT: &str = "/io.axoniq.axonserver.grpc.event.EventStore/AppendEvent";

/// The EventStore service `S` with AppendEvent served from raw bytes.
#[derive(Clone)]
pub struct RawAppend<S> {
    inner: S,
    service: Arc<EventStoreService>,
    max_message: usize,
}

impl<S> RawAppend<S> {
    /// Wraps `inner` (the generated server of `service`); events larger than
    /// `max_message` bytes are refused, as the generated server does.
    pub fn new(inner: S, service: Arc<EventStoreService>, max_message: usize) -> Self {
        Self { inner, service, max_message }
    }
}

impl<S: NamedService> NamedService for RawAppend<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for RawAppend<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != APPEND_EVENT {
            return Box::pin(self.inner.call(request));
        }
        let appender = Appender(self.service.clone());
        let max = self.max_message;
        Box::pin(async move {
            let mut grpc = Grpc::new(CheckedEventCodec).apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.client_streaming(appender, request).await)
        })
    }
}

/// One AppendEvent call over checked event bytes.
struct Appender(Arc<EventStoreService>);

impl ClientStreamingService<Bytes> for Appender {
    type Response = Confirmation;
    type Future = BoxFuture<Result<Response<Confirmation>, Status>>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.append_transaction(request, |bytes| bytes).await })
    }
}

/// Decodes events as checked bytes, encodes the confirmation.
#[derive(Debug, Clone, Copy, Default)]
struct CheckedEventCodec;

impl Codec for CheckedEventCodec {
    type Encode = Confirmation;
    type Decode = Bytes;
    type Encoder = CheckedEventCodec;
    type Decoder = CheckedEventCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for CheckedEventCodec {
    type Item = Confirmation;
    type Error = Status;

    fn encode(&mut self, item: Confirmation, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for CheckedEventCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        event_fields::check_event(&bytes)
            .map_err(|reason| Status::internal(format!("failed to decode Protobuf message: Event: {reason}")))?;
        Ok(Some(bytes))
    }
}
