//! The node's network APIs: client gRPC (`grpc`, port 8124) and HTTP
//! (`http`, port 8024).

pub mod grpc;
pub mod http;
