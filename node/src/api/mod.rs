//! The node's network APIs: client gRPC (`grpc`, port 8124) and HTTP
//! (`http`, port 8024), and the accepting of connections for them and the
//! internal port (`incoming`: bounds, handshake timeout, TLS).

pub mod grpc;
pub mod http;
pub mod incoming;
