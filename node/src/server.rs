//! Wires a node together: opens the context stores, builds the client gRPC
//! and HTTP services on listeners the caller bound (so tests can use port 0),
//! serves until the shutdown future completes, then drains: servers stop
//! accepting, in-flight calls finish, and every store writer commits what it
//! had queued before the stores close.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ranvier_proto::command::command_service_server::CommandServiceServer;
use ranvier_proto::control::platform_service_server::PlatformServiceServer;
use ranvier_proto::event::event_store_server::EventStoreServer;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::api::grpc::access::AccessLayer;
use crate::api::grpc::command::Commands;
use crate::api::grpc::proxy::ContextProxyLayer;
use crate::api::grpc::query::Queries;
use crate::api::grpc::raw_append::RawAppend;
use crate::api::grpc::status::add_missing_error_code;
use crate::api::grpc::{ApiLimits, ClientApi, NodeIdentity, event_store::EventStoreService, platform::Platform};
use crate::api::http::{self, HttpNode, HttpState};
use crate::api::incoming::{Accepting, HttpListener, incoming};
use crate::cluster::model::NodeInfo;
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::Config;
use crate::contexts::{ContextOptions, Contexts};
use crate::messaging::commands::{CommandBus, CommandLimits};
use crate::messaging::peers::{ClusterForwarder, MessagingRpc, spawn_announcer};
use crate::messaging::processors::Processors;
use crate::messaging::queries::{QueryBus, QueryLimits};
use crate::messaging::subscriptions::Subscriptions;
use crate::store::{FsSpace, StoreOptions};
use crate::telemetry::Metrics;
use crate::tls::Tls;
use crate::transport::INTERNAL_MESSAGE_MAX;
use ranvier_proto::cluster::messaging_service_server::MessagingServiceServer;
use ranvier_proto::query::query_service_server::QueryServiceServer;

/// The sockets a node serves on, bound by the caller.
pub struct Listeners {
    /// Client gRPC (Axon protocol).
    pub client: TcpListener,
    /// HTTP (health, metrics, node info).
    pub http: TcpListener,
    /// Internal gRPC between nodes; required when the node is clustered.
    pub internal: Option<TcpListener>,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listener's address could not be read.
    #[error("failed to read the bound address: {0}")]
    Address(#[source] std::io::Error),
    /// The gRPC server failed.
    #[error("the client gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The replication groups could not start.
    #[error("clustering failed: {0}")]
    Cluster(String),
    /// The system token could not be read or made.
    #[error(transparent)]
    SystemToken(#[from] crate::access::system_token::SystemTokenError),
    /// A certificate, key or trust file could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Most open connections on the internal port: peers open a few channels
/// each (Raft traffic per group, forwarding, segment transfer), so this
/// bounds memory without limiting any realistic cluster.
const INTERNAL_MAX_CONNECTIONS: usize = 4096;
/// Most open connections on the HTTP port (administrators, probes,
/// scrapers and the console; each holds a few KiB).
const HTTP_MAX_CONNECTIONS: usize = 512;

/// This node's messaging parts.
struct Buses {
    commands: Arc<CommandBus>,
    queries: Arc<QueryBus>,
    subscriptions: Arc<Subscriptions>,
    processors: Arc<Processors>,
}

/// Starts the replication groups, serves the internal API on `listener`
/// and begins forming the cluster.
async fn start_cluster(
    config: &Config,
    listener: TcpListener,
    identity: &NodeIdentity,
    contexts: Arc<Contexts>,
    stopped: tokio::sync::watch::Receiver<bool>,
    (bus, queries): (CommandBus, QueryBus),
    tls: &Tls,
) -> Result<(Arc<Cluster>, Buses), NodeError> {
    let node = &config.node;
    let port = listener.local_addr().map_err(NodeError::Address)?.port();
    let settings = ClusterSettings {
        node: NodeInfo {
            name: node.name.clone(),
            internal_addr: format!("{}:{port}", node.internal_host()),
            host_name: identity.host_name.clone(),
            grpc_port: identity.grpc_port,
            http_port: identity.http_port,
        },
        first: config.cluster.autocluster_first.clone(),
        first_is_me: config.cluster.autocluster_first.as_deref().is_some_and(|first| node.is_named_by(first, port)),
        contexts: config.contexts.clone(),
        token: config.cluster.internal_token.clone(),
        tls: tls.connector.clone(),
        log_dir: std::path::absolute(&config.cluster.log_dir).unwrap_or_else(|_| config.cluster.log_dir.clone()),
        election_timeout_min_ms: config.cluster.election_timeout_min_ms,
        election_timeout_max_ms: config.cluster.election_timeout_max_ms,
        wait_for_leader_ms: config.cluster.wait_for_leader_ms,
        heartbeat_ms: config.cluster.heartbeat_ms,
        event_retention_ms: config.cluster.event_retention_ms,
        tier_check_interval_ms: config.cluster.tier_check_interval_ms,
        min_active_backups: config.cluster.min_active_backups as usize,
        snapshot_interval_entries: u64::from(config.cluster.snapshot_interval_entries),
        log_entries_kept: u64::from(config.cluster.log_entries_kept),
        log_cache_bytes: usize::try_from(config.cluster.log_cache_bytes).unwrap_or(usize::MAX),
    };
    let cluster = Cluster::start(settings, contexts).await.map_err(|e| NodeError::Cluster(e.to_string()))?;
    let (raft, membership) = cluster.services();
    let forwarder = Arc::new(ClusterForwarder::new(cluster.clone()));
    let bus = Arc::new(bus.with_forwarder(forwarder.clone()));
    let queries = Arc::new(queries.with_forwarder(forwarder.clone()));
    let subscriptions =
        Arc::new(Subscriptions::new(queries.clone(), node.name.clone()).with_forwarder(forwarder.clone()));
    let processors = Arc::new(Processors::new(node.name.clone()).with_peers(forwarder));
    let messaging = MessagingServiceServer::new(MessagingRpc::new(
        bus.clone(),
        (queries.clone(), subscriptions.clone()),
        processors.clone(),
        cluster.transport().clone(),
    ))
    .max_decoding_message_size(INTERNAL_MESSAGE_MAX)
    .max_encoding_message_size(INTERNAL_MESSAGE_MAX);
    spawn_announcer(bus.clone(), queries.clone(), cluster.clone(), stopped.clone());
    let server = tonic::transport::Server::builder()
        .layer(crate::transport::InternalTokenLayer::new(config.cluster.internal_token.as_deref()))
        .add_service(raft)
        .add_service(membership)
        .add_service(messaging);
    let accepting = Accepting {
        max_connections: INTERNAL_MAX_CONNECTIONS,
        handshake_timeout: Duration::from_millis(config.api.handshake_timeout_ms),
        idle_timeout: None,
        tls: tls.internal.clone(),
    };
    let mut stop = stopped.clone();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(error) = server.serve_with_incoming_shutdown(incoming(listener, accepting), shutdown).await {
            tracing::error!(%error, "the internal gRPC server failed");
        }
    });
    cluster.spawn(stopped);
    Ok((cluster, Buses { commands: bus, queries, subscriptions, processors }))
}

fn store_options(config: &Config, segment_size_bytes: u64) -> StoreOptions {
    let storage = &config.storage;
    StoreOptions {
        segment_size_bytes,
        validation_segments: storage.validation_segments,
        index_cache_bytes: storage.index_cache_bytes,
        active_index_aggregates_max: storage.active_index_aggregates_max,
        append_batch_bytes_max: storage.append_batch_bytes_max,
        write_queue_transactions_max: 4096,
        disk_reserve_bytes: storage.disk_reserve_bytes,
        validate_sequences: true,
    }
}

/// How long a stopping node waits for open calls and connections to finish
/// before it closes them; then the stores are closed either way.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Waits for a server task; once shutdown has begun, for at most the grace
/// period, after which the task (and its connections) is aborted.
async fn drain<T>(
    mut task: tokio::task::JoinHandle<T>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<T, tokio::task::JoinError> {
    tokio::select! {
        result = &mut task => return result,
        _ = stopped.wait_for(|s| *s) => {}
    }
    match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                grace_ms = DRAIN_GRACE.as_millis() as u64,
                "connections still open after the grace period; closing them"
            );
            task.abort();
            task.await
        }
    }
}

/// Runs the node until `shutdown` completes. `on_ready` is called once the
/// context stores are recovered and both servers accept calls.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce() + Send,
) -> Result<(), NodeError> {
    let client_addr = listeners.client.local_addr().map_err(NodeError::Address)?;
    let tls = Tls::start(&config.tls)?;
    for (port, on) in [("client gRPC", &tls.client), ("internal gRPC", &tls.internal), ("HTTP", &tls.http)] {
        if on.is_some() {
            tracing::info!(port, "TLS on");
        }
    }
    let system_token = match &config.access.system_token_file {
        Some(path) if config.access.enabled => {
            let token = crate::access::system_token::load_or_create(path)?;
            tracing::info!(file = %path.display(), "system token ready for ranvierctl on this machine");
            Some(token)
        }
        _ => None,
    };
    let http_addr = listeners.http.local_addr().map_err(NodeError::Address)?;
    let metrics = Arc::new(Metrics::new());
    let options = ContextOptions {
        events: store_options(&config, config.storage.event_segment_size_bytes),
        snapshots: store_options(&config, config.storage.snapshot_segment_size_bytes),
    };
    let mut storage = config.storage.clone();
    // Absolute paths in logs, errors and (later) backup listings.
    for dir in [&mut storage.events_dir, &mut storage.snapshots_dir] {
        if let Ok(absolute) = std::path::absolute(&*dir) {
            *dir = absolute;
        }
    }
    // A clustered node opens the contexts the cluster model gives it (and
    // keeps any it finds on disk until the model says otherwise).
    let names = if config.cluster.enabled { Vec::new() } else { config.contexts.clone() };
    let opener_metrics = metrics.clone();
    let contexts = tokio::task::spawn_blocking(move || {
        Contexts::open(&names, &storage.events_dir, &storage.snapshots_dir, &options, opener_metrics, Arc::new(FsSpace))
    })
    .await
    .map_err(|e| NodeError::Http(std::io::Error::other(e)))?;
    let contexts = Arc::new(contexts);

    let node = &config.node;
    let identity = NodeIdentity {
        name: node.name.clone(),
        host_name: node.client_host(),
        grpc_port: client_addr.port(),
        http_port: http_addr.port(),
    };
    let api = &config.api;
    let limits = ApiLimits {
        max_message_size_bytes: api.max_message_size_bytes as usize,
        transaction_events_max: api.transaction_events_max as usize,
        transaction_bytes_max: api.transaction_bytes_max as usize,
        transaction_timeout: Duration::from_millis(api.transaction_timeout_ms),
        response_send_timeout: Duration::from_millis(api.response_send_timeout_ms),
        in_flight_bytes_max: config.storage.append_in_flight_bytes_max as usize,
        new_permits_timeout_ms: api.new_permits_timeout_ms,
        check_sequence_nr_for_snapshots: api.check_sequence_nr_for_snapshots,
        heartbeat_enabled: api.heartbeat_enabled,
        client_heartbeat_timeout_ms: api.client_heartbeat_timeout_ms,
        client_heartbeat_frequency_ms: api.client_heartbeat_frequency_ms,
        default_command_timeout_ms: api.default_command_timeout_ms,
        command_queue_capacity: api.command_queue_capacity as usize,
        default_query_timeout_ms: api.default_query_timeout_ms,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bus = CommandBus::new(
        node.name.clone(),
        CommandLimits {
            queue_per_client: limits.command_queue_capacity,
            default_timeout: Duration::from_millis(limits.default_command_timeout_ms),
        },
        metrics.commands(),
    );
    let queries = QueryBus::new(
        node.name.clone(),
        QueryLimits {
            queue_per_client: limits.command_queue_capacity,
            default_timeout: Duration::from_millis(limits.default_query_timeout_ms),
        },
        metrics.queries(),
    );
    let (cluster, buses) = match (config.cluster.enabled, listeners.internal) {
        (true, Some(internal)) => {
            let buses = (bus, queries);
            let started = start_cluster(&config, internal, &identity, contexts.clone(), stopped.clone(), buses, &tls);
            let (cluster, buses) = started.await?;
            (Some(cluster), buses)
        }
        (true, None) => return Err(NodeError::Cluster("a clustered node needs its internal port bound".into())),
        _ => {
            let queries = Arc::new(queries);
            let subscriptions = Arc::new(Subscriptions::new(queries.clone(), node.name.clone()));
            let processors = Arc::new(Processors::new(node.name.clone()));
            (None, Buses { commands: Arc::new(bus), queries, subscriptions, processors })
        }
    };
    let client_api =
        Arc::new(ClientApi::new(identity, contexts.clone(), limits.clone(), stopped.clone(), cluster.clone()));
    let model = cluster.as_ref().map(|c| c.model_changes());
    let access = Arc::new(Access::new(&config.access, model, system_token));
    if access.enabled() {
        tracing::info!("access control on: client and REST calls need an access token");
    }
    let http_state = Arc::new(HttpState {
        access: access.clone(),
        node: HttpNode {
            name: node.name.clone(),
            host_name: node.client_host(),
            internal_host_name: node.internal_host(),
            grpc_port: client_addr.port(),
            internal_port: node.internal_port,
            http_port: http_addr.port(),
            ssl: tls.client.is_some(),
        },
        contexts: contexts.clone(),
        metrics: metrics.clone(),
        cluster: cluster.clone(),
        messaging: Some((buses.commands.clone(), buses.queries.clone())),
        processors: buses.processors.clone(),
        register_node_unauthenticated: config.cluster.insecure_register_node || config.cluster.internal_token.is_none(),
    });

    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });

    let max_message = limits.max_message_size_bytes;
    let event_store = Arc::new(EventStoreService::new(client_api.clone()));
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_millis(2500)))
        .http2_keepalive_timeout(Some(Duration::from_millis(5000)))
        .max_concurrent_streams(Some(config.api.max_concurrent_streams))
        // The token is checked before anything else (a refused call is
        // neither served nor passed to another node).
        .layer(AccessLayer::new(access.clone()))
        .layer(tower::util::MapResponseLayer::new(add_missing_error_code))
        .layer(ContextProxyLayer::new(cluster.clone(), contexts.clone()))
        .add_service(
            PlatformServiceServer::new(Platform::new(client_api.clone(), buses.processors))
                .max_decoding_message_size(max_message),
        )
        .add_service(
            CommandServiceServer::new(Commands::new(client_api.clone(), buses.commands))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        .add_service(
            QueryServiceServer::new(Queries::new(client_api.clone(), buses.queries, buses.subscriptions))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        .add_service(RawAppend::new(
            EventStoreServer::from_arc(event_store.clone())
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
            event_store,
            max_message,
        ));
    let mut grpc_stop = stopped.clone();
    let grpc_task = tokio::spawn(grpc.serve_with_incoming_shutdown(
        incoming(
            listeners.client,
            Accepting {
                max_connections: config.api.max_connections as usize,
                handshake_timeout: Duration::from_millis(config.api.handshake_timeout_ms),
                idle_timeout: None,
                tls: tls.client.clone(),
            },
        ),
        async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        },
    ));
    let mut http_stop = stopped.clone();
    let http_accepting = Accepting {
        max_connections: HTTP_MAX_CONNECTIONS,
        handshake_timeout: Duration::from_millis(config.api.handshake_timeout_ms),
        idle_timeout: Some(Duration::from_millis(config.api.http_idle_timeout_ms)),
        tls: tls.http.clone(),
    };
    let http_task = tokio::spawn(async move {
        let connections = incoming(listeners.http, http_accepting);
        axum::serve(HttpListener::new(connections, http_addr), http::router(http_state))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(client = %client_addr, http = %http_addr, node = %config.node.name, "node serving");
    on_ready();

    let grpc_result = drain(grpc_task, stopped.clone()).await;
    let http_result = drain(http_task, stopped).await;
    drop(client_api);
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    if let Ok(contexts) = Arc::try_unwrap(contexts) {
        tokio::task::spawn_blocking(move || contexts.close()).await.ok();
    }
    tracing::info!("node stopped");
    match grpc_result {
        Ok(Err(error)) => return Err(NodeError::Grpc(error)),
        Err(error) if !error.is_cancelled() => return Err(NodeError::Http(std::io::Error::other(error))),
        Err(_) | Ok(Ok(())) => {}
    }
    match http_result {
        Ok(Err(error)) => Err(NodeError::Http(error)),
        Err(error) if !error.is_cancelled() => Err(NodeError::Http(std::io::Error::other(error))),
        Err(_) | Ok(Ok(())) => Ok(()),
    }
}
