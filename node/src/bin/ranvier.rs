//! `ranvier`: one Ranvier node. Reads `axonserver.properties`-style settings
//! (file, env, `--set`), checks them all before binding any port, binds the
//! client and HTTP ports, recovers the stores, then prints one `READY` line
//! with the bound addresses on stdout, and serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use ranvier_node::config::{self, NodeArgs, ProcessEnv, Sources};
use ranvier_node::server::{self, Listeners};

/// mimalloc instead of the C library's allocator: a node allocates and
/// frees small buffers for every gRPC frame, and glibc's malloc spent about
/// a tenth of a loaded node's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad configuration (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "ranvier", version, about = "A Ranvier node: an Axon Server compatible event store")]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = ProcessEnv;
    ranvier_node::telemetry::init_logging(std::env::var(config::LOG_VAR).ok());
    let config = match config::load(&Sources::from_args(&cli.node, &env)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ranvier: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for (key, value) in config.effective() {
        tracing::info!(key, value = %value, "setting");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ranvier: failed to start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ranvier: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: config::Config) -> anyhow::Result<()> {
    let ip = config.node.bind_address;
    let client = tokio::net::TcpListener::bind(SocketAddr::new(ip, config.node.client_port)).await?;
    let http = tokio::net::TcpListener::bind(SocketAddr::new(ip, config.node.http_port)).await?;
    let internal = match config.cluster.enabled {
        true => Some(tokio::net::TcpListener::bind(SocketAddr::new(ip, config.node.internal_port)).await?),
        false => None,
    };
    let mut ready =
        format!("READY client={} http={} node={}", client.local_addr()?, http.local_addr()?, config.node.name);
    if let Some(internal) = &internal {
        ready.push_str(&format!(" internal={}", internal.local_addr()?));
    }
    let listeners = Listeners { client, http, internal };
    server::run(config, listeners, shutdown_signal(), move || println!("{ready}")).await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}
