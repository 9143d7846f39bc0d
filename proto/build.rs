//! Compiles the Axon-compatible client API and Ranvier's internal cluster API
//! with a pure-Rust proto compiler (protox), so no system `protoc` is needed.

use std::path::PathBuf;

const CLIENT_API: &[&str] =
    &["axon/common.proto", "axon/control.proto", "axon/event.proto", "axon/command.proto", "axon/query.proto"];

/// Ranvier's internal API between nodes.
const CLUSTER_API: &[&str] = &["cluster/raft.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    for file in CLIENT_API.iter().chain(CLUSTER_API) {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let files: Vec<&str> = CLIENT_API.iter().chain(CLUSTER_API).copied().collect();
    let descriptors = protox::compile(files, [root.clone()])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // ListEvents is the read hot path: its messages carry the stored event
        // bytes as they are on disk, with no decode/re-encode (see `wire.rs`).
        .extern_path(".io.axoniq.axonserver.grpc.event.EventWithToken", "crate::wire::EventWithToken")
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
