//! Generated gRPC code for the Axon Server client API, written by us from the
//! public protocol description (same packages, services, messages and field
//! numbers, so existing Axon clients interoperate). Nothing but generated code
//! and the one hand-written wire type in [`wire`] lives here.
//!
//! The generated modules nest like the proto packages (prost refers to
//! sibling packages with `super::`); the short aliases below are what the rest
//! of the workspace uses.

pub mod wire;

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic, rust_2018_idioms, missing_docs)]
pub mod io {
    pub mod axoniq {
        pub mod axonserver {
            pub mod grpc {
                tonic::include_proto!("io.axoniq.axonserver.grpc");
                pub mod control {
                    tonic::include_proto!("io.axoniq.axonserver.grpc.control");
                }
                pub mod event {
                    tonic::include_proto!("io.axoniq.axonserver.grpc.event");
                }
                pub mod command {
                    tonic::include_proto!("io.axoniq.axonserver.grpc.command");
                }
                pub mod query {
                    tonic::include_proto!("io.axoniq.axonserver.grpc.query");
                }
            }
        }
    }
}

/// `ranvier.cluster`: Ranvier's internal API between nodes (port 8224).
#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic, rust_2018_idioms, missing_docs)]
pub mod cluster {
    tonic::include_proto!("ranvier.cluster");
}

/// `io.axoniq.axonserver.grpc`: messages shared by every service.
pub use io::axoniq::axonserver::grpc as common;
/// `io.axoniq.axonserver.grpc.command`: CommandService.
pub use io::axoniq::axonserver::grpc::command;
/// `io.axoniq.axonserver.grpc.control`: PlatformService.
pub use io::axoniq::axonserver::grpc::control;
/// `io.axoniq.axonserver.grpc.event`: EventStore.
pub use io::axoniq::axonserver::grpc::event;
/// `io.axoniq.axonserver.grpc.query`: QueryService.
pub use io::axoniq::axonserver::grpc::query;
