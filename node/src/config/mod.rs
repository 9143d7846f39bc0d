//! The node's configuration: one typed, validated [`Config`] composed of a sub-config per area,
//! loaded from an `axonserver.properties`-style file, environment variables and `--set` flags.
//!
//! Owns parsing, defaults, precedence and validation of every setting; the modules that use a
//! setting own what it does. Precedence is defaults < file < environment < `--set`. Existing
//! Axon Server property files work: `axoniq.axonserver.*` keys keep their names, Spring's
//! relaxed forms (`internalPort`, `AXONIQ_AXONSERVER_INTERNAL_PORT`) are accepted, and Axon
//! Server keys Ranvier does not implement yet are ignored with a warning (see
//! [`keys::IGNORED`]). Ranvier's own keys are `ranvier.*`.
//!
//! Invariant: [`load`] either returns a `Config` in which every value is in range and the
//! cross-field rules hold, or an error naming the key (or variable) and where it was set, for a
//! file with `path:line`. Nothing binds a socket before `load` succeeds.
//!
//! Value syntax: sizes are bytes or a number with `KB`/`MB`/`GB`/`TB` (also `K`, `KiB`, …, any
//! case, powers of 1024); durations are milliseconds or a number with `ms`/`s`/`m`/`h`/`d`;
//! booleans are `true`/`false` in any case; lists are comma-separated.
//!
//! Files: `keys` (every key and default), `properties` (file syntax), `env` (environment and
//! [`EnvSource`]), `flags` (clap [`NodeArgs`]), `settings` (precedence), `value` (value
//! syntax), `error` ([`ConfigError`]), `address` (the host names a node is reached by, and
//! whether an address names it).

mod address;
mod env;
mod error;
mod flags;
pub mod keys;
mod properties;
mod settings;
mod tls;
mod value;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

pub use env::{CONFIG_VAR, EnvSource, LOG_VAR, MapEnv, ProcessEnv, env_name, system_hostname};
pub use error::{ConfigError, Origin};
pub use flags::{NodeArgs, Override, default_config_file};
pub use properties::{Entry, parse as parse_properties};
pub use tls::{CertFiles, TlsConfig, Verification};

use keys::Key;
use settings::Settings;

/// The context every node serves.
pub const DEFAULT_CONTEXT: &str = "default";
/// Smallest event or snapshot segment, bytes: smaller segments mean a file per few events.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 64 << 10;
/// Largest event or snapshot segment, bytes: positions inside a segment fit in 31 bits.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 2 << 30;

/// The node's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Identity, addresses and ports.
    pub node: NodeConfig,
    /// The event and snapshot store.
    pub storage: StorageConfig,
    /// The client gRPC API.
    pub api: ApiConfig,
    /// Clustering: formation, the internal token, replication timing.
    pub cluster: ClusterConfig,
    /// Access control of client and REST calls.
    pub access: AccessConfig,
    /// TLS of the ports and of node-to-node calls.
    pub tls: TlsConfig,
    /// Contexts this node serves: [`DEFAULT_CONTEXT`] first, then
    /// `axoniq.axonserver.autocluster.contexts` in order, without duplicates.
    pub contexts: Vec<String>,
}

/// Access control of client gRPC and REST calls (not of node-to-node calls: those carry
/// the internal token).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessConfig {
    /// `axoniq.axonserver.accesscontrol.enabled`: calls must carry a token. Default false.
    pub enabled: bool,
    /// `axoniq.axonserver.accesscontrol.token`: the applications' token (client calls and
    /// REST reads). Required when enabled.
    pub token: Option<String>,
    /// `axoniq.axonserver.accesscontrol.admin-token`: the administrators' token (every call).
    /// Required when enabled.
    pub admin_token: Option<String>,
    /// `ranvier.accesscontrol.open-probes`: `/ready` and `/metrics` need no token. Default true.
    pub open_probes: bool,
    /// `axoniq.axonserver.accesscontrol.systemtokenfile`: where the system token is kept.
    pub system_token_file: Option<PathBuf>,
}

/// Identity, addresses and ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `axoniq.axonserver.name`: node name, unique in a cluster. Default: `hostname`.
    pub name: String,
    /// `axoniq.axonserver.hostname`: host name given to clients, without the domain. Default:
    /// the system host name; an FQDN `a.b.c` becomes `a` with domain `b.c` when `domain` is unset.
    pub hostname: String,
    /// `axoniq.axonserver.domain`: domain appended to `hostname` for clients.
    pub domain: Option<String>,
    /// `axoniq.axonserver.internal-hostname`: host name other nodes use. Default: `hostname`.
    pub internal_hostname: String,
    /// `axoniq.axonserver.internal-domain`: domain appended to `internal_hostname`.
    /// Default: `domain`.
    pub internal_domain: Option<String>,
    /// `ranvier.bind-address`: IP address every listener binds to. Default `0.0.0.0`.
    pub bind_address: IpAddr,
    /// `axoniq.axonserver.port`: client gRPC port; 0 picks a free port. Default 8124.
    pub client_port: u16,
    /// `axoniq.axonserver.internal-port`: node-to-node gRPC port; 0 picks a free port.
    /// Default 8224.
    pub internal_port: u16,
    /// `server.port`: HTTP port (REST, health, metrics); 0 picks a free port. Default 8024.
    pub http_port: u16,
}

/// Clustering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `axoniq.axonserver.autocluster.first`: `host:port` of the node that forms the cluster
    /// (port defaults to 8224); `None` for a standalone node.
    pub autocluster_first: Option<String>,
    /// Runs the cluster runtime (`ranvier.clustered`, or implied by `autocluster_first`).
    pub enabled: bool,
    /// `ranvier.insecure-no-internal-token`: a clustered node may run without an internal
    /// token. Default false: a clustered node without one does not start.
    pub insecure_no_internal_token: bool,
    /// `ranvier.insecure-register-node`: register-node works with access control off.
    pub insecure_register_node: bool,
    /// `axoniq.axonserver.replication.min-active-backups`. Default 1.
    pub min_active_backups: u32,
    /// `ranvier.replication.snapshot-interval` in log entries. Default 50000.
    pub snapshot_interval_entries: u32,
    /// `ranvier.replication.log-entries-kept` behind a snapshot. Default 10000.
    pub log_entries_kept: u32,
    /// `ranvier.replication.log-cache-size`: memory for the newest log entries of all
    /// groups together. Default 32 MiB.
    pub log_cache_bytes: u64,
    /// `axoniq.axonserver.accesscontrol.internal-token`: required on node-to-node calls.
    pub internal_token: Option<String>,
    /// `axoniq.axonserver.replication.log-storage-folder`: replication logs. Default `./log`.
    pub log_dir: PathBuf,
    /// `axoniq.axonserver.replication.min-election-timeout` in ms. Default 1000.
    pub election_timeout_min_ms: u64,
    /// `axoniq.axonserver.replication.max-election-timeout` in ms. Default 2500.
    pub election_timeout_max_ms: u64,
    /// `axoniq.axonserver.replication.heartbeat-timeout` in ms. Default 300.
    pub heartbeat_ms: u64,
    /// `axoniq.axonserver.replication.wait-for-leader-timeout` in ms: how long a write waits
    /// for a reachable leader. Default twice the max election timeout.
    pub wait_for_leader_ms: u64,
    /// `axoniq.axonserver.event.retention-time` in ms: once a group has a SECONDARY member,
    /// its primaries keep events younger than this on their own disk. Default 7 days.
    pub event_retention_ms: u64,
    /// `ranvier.tier.check-interval` in ms. Default 10 s.
    pub tier_check_interval_ms: u64,
}

/// The event and snapshot store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `axoniq.axonserver.event.storage`: base directory of event segments, one subdirectory
    /// per context. Default `./data`.
    pub events_dir: PathBuf,
    /// `axoniq.axonserver.snapshot.storage`: base directory of snapshot segments.
    /// Default: `events_dir`.
    pub snapshots_dir: PathBuf,
    /// `axoniq.axonserver.event.segment-size`: size of a new event segment, bytes.
    /// Default 256 MiB; 64 KiB..=2 GiB.
    pub event_segment_size_bytes: u64,
    /// `axoniq.axonserver.snapshot.segment-size`: size of a new snapshot segment, bytes.
    /// Default 256 MiB; 64 KiB..=2 GiB.
    pub snapshot_segment_size_bytes: u64,
    /// `axoniq.axonserver.event.validation-segments`: number of most recent closed segments
    /// whose checksums are verified at start-up. Default 10.
    pub validation_segments: u32,
    /// `ranvier.disk-reserve`: free disk space, bytes, below which writes are refused.
    /// Default 256 MiB.
    pub disk_reserve_bytes: u64,
    /// `ranvier.index-cache-size`: memory, bytes, for closed-segment aggregate indexes and bloom
    /// filters. Default 32 MiB.
    pub index_cache_bytes: u64,
    /// `ranvier.active-index-aggregates-max`: number of aggregates in the active segment's
    /// in-memory index at which the segment rolls over. Default 200000; at least 1.
    pub active_index_aggregates_max: u32,
    /// `ranvier.append-batch-size`: most bytes written by one group commit (one fsync).
    /// Default 8 MiB; at least 1.
    pub append_batch_bytes_max: u64,
    /// `ranvier.append-in-flight-size`: event bytes accepted from clients but not yet committed;
    /// beyond this clients wait. Default 64 MiB; at least `transaction_bytes_max`.
    pub append_in_flight_bytes_max: u64,
}

/// The client gRPC API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `axoniq.axonserver.max-message-size`: largest gRPC message, bytes. Default 4 MiB.
    pub max_message_size_bytes: u64,
    /// `axoniq.axonserver.max-events-per-transaction`: most events in one append transaction.
    /// Default 32767; at least 1.
    pub transaction_events_max: u32,
    /// `ranvier.max-transaction-size`: most bytes in one append transaction. Default 32 MiB;
    /// at most the event segment size and the in-flight limit.
    pub transaction_bytes_max: u64,
    /// `axoniq.axonserver.new-permits-timeout`: how long an event stream waits for new permits,
    /// ms. Default 120000.
    pub new_permits_timeout_ms: u64,
    /// `axoniq.axonserver.check-sequence-nr-for-snapshots`: whether a snapshot's sequence number
    /// is checked against the aggregate's events. Default true.
    pub check_sequence_nr_for_snapshots: bool,
    /// `axoniq.axonserver.heartbeat.enabled`: whether silent clients are disconnected.
    /// Default false.
    pub heartbeat_enabled: bool,
    /// `axoniq.axonserver.client-heartbeat-timeout`: silence after which a client is considered
    /// gone, ms. Default 5000; at least 1.
    pub client_heartbeat_timeout_ms: u64,
    /// `axoniq.axonserver.client-heartbeat-frequency`: interval between heartbeats sent to
    /// clients, ms. Default 500; at least 1, and less than the timeout when heartbeats are on.
    pub client_heartbeat_frequency_ms: u64,
    /// `axoniq.axonserver.default-command-timeout`: how long a command waits for its answer
    /// unless its TIMEOUT instruction says, ms. Default 300000; at least 1.
    pub default_command_timeout_ms: u64,
    /// `axoniq.axonserver.command-queue-capacity-per-client`: commands queued for one handler
    /// client while it has no permits, at most (more are refused with AXONIQ-1900). Default
    /// 10000; at least 1.
    pub command_queue_capacity: u32,
    /// `axoniq.axonserver.default-query-timeout`: how long a query may take unless its TIMEOUT
    /// instruction says, ms. Default 300000; at least 1.
    pub default_query_timeout_ms: u64,
    /// `ranvier.max-connections`: most concurrent client connections. Default 1024; at least 1.
    pub max_connections: u32,
    /// `ranvier.handshake-timeout`: ms a new connection has to send its first bytes. Default
    /// 10000; at least 1.
    pub handshake_timeout_ms: u64,
    /// `ranvier.transaction-timeout`: ms an append transaction may stay open. Default 120000;
    /// at least 1.
    pub transaction_timeout_ms: u64,
    /// `ranvier.response-send-timeout`: ms a response stream waits for its client to take
    /// a batch. Default 120000; at least 1.
    pub response_send_timeout_ms: u64,
    /// `ranvier.max-concurrent-streams`: calls one client connection may have open. Default
    /// 1000; at least 1.
    pub max_concurrent_streams: u32,
    /// `ranvier.http-idle-timeout`: ms an HTTP connection may stay silent. Default 120000.
    pub http_idle_timeout_ms: u64,
}

/// Where [`load`] reads configuration from.
pub struct Sources<'a> {
    /// The properties file, if any. A file that is named but unreadable is an error.
    pub file: Option<PathBuf>,
    /// The environment.
    pub env: &'a dyn EnvSource,
    /// `--set KEY=VALUE` flags, in command-line order (later wins).
    pub overrides: Vec<Override>,
    /// The default for `axoniq.axonserver.hostname` (see [`system_hostname`]).
    pub system_hostname: String,
}

impl<'a> Sources<'a> {
    /// The sources of a `ranvier` process: the flags' config file (or a default file that
    /// exists), `env`, the `--set` flags and the system host name.
    pub fn from_args(args: &NodeArgs, env: &'a dyn EnvSource) -> Self {
        Sources { file: args.config_file(), env, overrides: args.set.clone(), system_hostname: system_hostname(env) }
    }
}

/// Reads every source, applies precedence and returns the validated configuration.
/// Recognised but unimplemented keys are logged with `tracing::warn!` and otherwise ignored.
pub fn load(sources: &Sources<'_>) -> Result<Config, ConfigError> {
    let settings = Settings::collect(sources)?;
    let cluster = cluster_config(&settings)?;
    let config = Config {
        node: node_config(&settings, &sources.system_hostname)?,
        storage: storage_config(&settings)?,
        api: api_config(&settings)?,
        tls: tls::tls_config(&settings, cluster.enabled)?,
        cluster,
        access: access_config(&settings)?,
        contexts: contexts(&settings)?,
    };
    check_relations(&settings, &config)?;
    Ok(config)
}

impl Config {
    /// Every key with its effective value, in property syntax, for the start-up log. Feeding
    /// these back as `--set` flags yields the same `Config`.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let (node, storage, api) = (&self.node, &self.storage, &self.api);
        let size = value::format_size;
        let path = |path: &PathBuf| path.display().to_string();
        vec![
            (keys::NAME.name, node.name.clone()),
            (keys::HOSTNAME.name, node.hostname.clone()),
            (keys::DOMAIN.name, node.domain.clone().unwrap_or_default()),
            (keys::INTERNAL_HOSTNAME.name, node.internal_hostname.clone()),
            (keys::INTERNAL_DOMAIN.name, node.internal_domain.clone().unwrap_or_default()),
            (keys::BIND_ADDRESS.name, node.bind_address.to_string()),
            (keys::PORT.name, node.client_port.to_string()),
            (keys::INTERNAL_PORT.name, node.internal_port.to_string()),
            (keys::HTTP_PORT.name, node.http_port.to_string()),
            (keys::EVENT_STORAGE.name, path(&storage.events_dir)),
            (keys::SNAPSHOT_STORAGE.name, path(&storage.snapshots_dir)),
            (keys::EVENT_SEGMENT_SIZE.name, size(storage.event_segment_size_bytes)),
            (keys::SNAPSHOT_SEGMENT_SIZE.name, size(storage.snapshot_segment_size_bytes)),
            (keys::EVENT_VALIDATION_SEGMENTS.name, storage.validation_segments.to_string()),
            (keys::DISK_RESERVE.name, size(storage.disk_reserve_bytes)),
            (keys::INDEX_CACHE_SIZE.name, size(storage.index_cache_bytes)),
            (keys::ACTIVE_INDEX_AGGREGATES_MAX.name, storage.active_index_aggregates_max.to_string()),
            (keys::APPEND_BATCH_SIZE.name, size(storage.append_batch_bytes_max)),
            (keys::APPEND_IN_FLIGHT_SIZE.name, size(storage.append_in_flight_bytes_max)),
            (keys::MAX_MESSAGE_SIZE.name, size(api.max_message_size_bytes)),
            (keys::MAX_EVENTS_PER_TRANSACTION.name, api.transaction_events_max.to_string()),
            (keys::MAX_TRANSACTION_SIZE.name, size(api.transaction_bytes_max)),
            (keys::NEW_PERMITS_TIMEOUT.name, api.new_permits_timeout_ms.to_string()),
            (keys::CHECK_SEQUENCE_NR_FOR_SNAPSHOTS.name, api.check_sequence_nr_for_snapshots.to_string()),
            (keys::HEARTBEAT_ENABLED.name, api.heartbeat_enabled.to_string()),
            (keys::CLIENT_HEARTBEAT_TIMEOUT.name, api.client_heartbeat_timeout_ms.to_string()),
            (keys::CLIENT_HEARTBEAT_FREQUENCY.name, api.client_heartbeat_frequency_ms.to_string()),
            (keys::DEFAULT_COMMAND_TIMEOUT.name, api.default_command_timeout_ms.to_string()),
            (keys::COMMAND_QUEUE_CAPACITY.name, api.command_queue_capacity.to_string()),
            (keys::DEFAULT_QUERY_TIMEOUT.name, api.default_query_timeout_ms.to_string()),
            (keys::MAX_CONNECTIONS.name, api.max_connections.to_string()),
            (keys::HANDSHAKE_TIMEOUT.name, api.handshake_timeout_ms.to_string()),
            (keys::TRANSACTION_TIMEOUT.name, api.transaction_timeout_ms.to_string()),
            (keys::RESPONSE_SEND_TIMEOUT.name, api.response_send_timeout_ms.to_string()),
            (keys::MAX_CONCURRENT_STREAMS.name, api.max_concurrent_streams.to_string()),
            (keys::HTTP_IDLE_TIMEOUT.name, api.http_idle_timeout_ms.to_string()),
            (keys::AUTOCLUSTER_CONTEXTS.name, self.contexts.join(",")),
            (keys::AUTOCLUSTER_FIRST.name, self.cluster.autocluster_first.clone().unwrap_or_default()),
            // A secret: only whether it is set is shown.
            (keys::CLUSTERED.name, self.cluster.enabled.to_string()),
            (keys::MIN_ACTIVE_BACKUPS.name, self.cluster.min_active_backups.to_string()),
            (keys::SNAPSHOT_INTERVAL.name, self.cluster.snapshot_interval_entries.to_string()),
            (keys::LOG_ENTRIES_KEPT.name, self.cluster.log_entries_kept.to_string()),
            (keys::LOG_CACHE_SIZE.name, size(self.cluster.log_cache_bytes)),
            (keys::EVENT_RETENTION_TIME.name, self.cluster.event_retention_ms.to_string()),
            (keys::TIER_CHECK_INTERVAL.name, self.cluster.tier_check_interval_ms.to_string()),
            (keys::INTERNAL_TOKEN.name, secret(&self.cluster.internal_token)),
            (keys::INSECURE_NO_INTERNAL_TOKEN.name, self.cluster.insecure_no_internal_token.to_string()),
            (keys::INSECURE_REGISTER_NODE.name, self.cluster.insecure_register_node.to_string()),
            (keys::ACCESS_CONTROL_ENABLED.name, self.access.enabled.to_string()),
            (keys::ACCESS_TOKEN.name, secret(&self.access.token)),
            (keys::ADMIN_TOKEN.name, secret(&self.access.admin_token)),
            (keys::OPEN_PROBES.name, self.access.open_probes.to_string()),
            (keys::SYSTEM_TOKEN_FILE.name, self.access.system_token_file.as_ref().map(path).unwrap_or_default()),
            (keys::LOG_STORAGE_FOLDER.name, path(&self.cluster.log_dir)),
            (keys::MIN_ELECTION_TIMEOUT.name, self.cluster.election_timeout_min_ms.to_string()),
            (keys::MAX_ELECTION_TIMEOUT.name, self.cluster.election_timeout_max_ms.to_string()),
            (keys::HEARTBEAT_TIMEOUT.name, self.cluster.heartbeat_ms.to_string()),
            (keys::WAIT_FOR_LEADER_TIMEOUT.name, self.cluster.wait_for_leader_ms.to_string()),
        ]
        .into_iter()
        .chain(self.tls.effective())
        .collect()
    }
}

/// A secret in the start-up log: only whether it is set.
fn secret(value: &Option<String>) -> String {
    value.as_ref().map_or("", |_| "<set>").to_owned()
}

// === sub-configs ===

fn access_config(s: &Settings) -> Result<AccessConfig, ConfigError> {
    let token = |key| s.read_opt(key, |t| Ok::<_, String>(t.to_owned()));
    let access = AccessConfig {
        enabled: s.read(&keys::ACCESS_CONTROL_ENABLED, value::boolean)?,
        token: token(&keys::ACCESS_TOKEN)?,
        admin_token: token(&keys::ADMIN_TOKEN)?,
        open_probes: s.read(&keys::OPEN_PROBES, value::boolean)?,
        system_token_file: s.read_opt(&keys::SYSTEM_TOKEN_FILE, |t| Ok::<_, String>(PathBuf::from(t)))?,
    };
    if access.enabled {
        for (key, value) in [(&keys::ACCESS_TOKEN, &access.token), (&keys::ADMIN_TOKEN, &access.admin_token)] {
            if value.is_none() {
                let reason = format!("must be set when {} is true", keys::ACCESS_CONTROL_ENABLED.name);
                return Err(s.invalid(key, reason));
            }
        }
    }
    Ok(access)
}

fn node_config(s: &Settings, system_hostname: &str) -> Result<NodeConfig, ConfigError> {
    let configured_host = s.read_opt(&keys::HOSTNAME, host_name)?;
    let configured_domain = s.read_opt(&keys::DOMAIN, host_name)?;
    let host = configured_host.as_deref().unwrap_or(system_hostname);
    let (hostname, domain) = split_fqdn(host, configured_domain);
    let internal_hostname = s.read_opt(&keys::INTERNAL_HOSTNAME, host_name)?;
    let internal_domain = s.read_opt(&keys::INTERNAL_DOMAIN, host_name)?;
    Ok(NodeConfig {
        name: s.read_opt(&keys::NAME, node_name)?.unwrap_or_else(|| hostname.clone()),
        internal_hostname: internal_hostname.unwrap_or_else(|| hostname.clone()),
        internal_domain: internal_domain.or_else(|| domain.clone()),
        hostname,
        domain,
        bind_address: s.read(&keys::BIND_ADDRESS, ip_address)?,
        client_port: s.read(&keys::PORT, value::port)?,
        internal_port: s.read(&keys::INTERNAL_PORT, value::port)?,
        http_port: s.read(&keys::HTTP_PORT, value::port)?,
    })
}

fn storage_config(s: &Settings) -> Result<StorageConfig, ConfigError> {
    let events_dir = s.read(&keys::EVENT_STORAGE, directory)?;
    let snapshots_dir = s.read_opt(&keys::SNAPSHOT_STORAGE, directory)?;
    let segment_size = bounded(
        value::size,
        SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES,
        "expected a segment size between 64KB and 2GB",
    );
    Ok(StorageConfig {
        snapshots_dir: snapshots_dir.unwrap_or_else(|| events_dir.clone()),
        events_dir,
        event_segment_size_bytes: s.read(&keys::EVENT_SEGMENT_SIZE, &segment_size)?,
        snapshot_segment_size_bytes: s.read(&keys::SNAPSHOT_SEGMENT_SIZE, &segment_size)?,
        validation_segments: s.read(&keys::EVENT_VALIDATION_SEGMENTS, value::count)?,
        disk_reserve_bytes: s.read(&keys::DISK_RESERVE, value::size)?,
        index_cache_bytes: s.read(&keys::INDEX_CACHE_SIZE, value::size)?,
        active_index_aggregates_max: s.read(&keys::ACTIVE_INDEX_AGGREGATES_MAX, positive_count())?,
        append_batch_bytes_max: s.read(&keys::APPEND_BATCH_SIZE, positive_size())?,
        append_in_flight_bytes_max: s.read(&keys::APPEND_IN_FLIGHT_SIZE, positive_size())?,
    })
}

fn api_config(s: &Settings) -> Result<ApiConfig, ConfigError> {
    Ok(ApiConfig {
        max_message_size_bytes: s.read(&keys::MAX_MESSAGE_SIZE, positive_size())?,
        transaction_events_max: s.read(
            &keys::MAX_EVENTS_PER_TRANSACTION,
            // A frame's count field has 31 bits (the top bit is a flag).
            bounded(value::count, 1..=(i32::MAX as u32), "expected a whole number from 1 to 2147483647"),
        )?,
        transaction_bytes_max: s.read(&keys::MAX_TRANSACTION_SIZE, positive_size())?,
        new_permits_timeout_ms: s.read(&keys::NEW_PERMITS_TIMEOUT, value::duration_ms)?,
        check_sequence_nr_for_snapshots: s.read(&keys::CHECK_SEQUENCE_NR_FOR_SNAPSHOTS, value::boolean)?,
        heartbeat_enabled: s.read(&keys::HEARTBEAT_ENABLED, value::boolean)?,
        client_heartbeat_timeout_ms: s.read(&keys::CLIENT_HEARTBEAT_TIMEOUT, positive_duration())?,
        client_heartbeat_frequency_ms: s.read(&keys::CLIENT_HEARTBEAT_FREQUENCY, positive_duration())?,
        default_command_timeout_ms: s.read(&keys::DEFAULT_COMMAND_TIMEOUT, positive_duration())?,
        command_queue_capacity: s.read(&keys::COMMAND_QUEUE_CAPACITY, positive_count())?,
        default_query_timeout_ms: s.read(&keys::DEFAULT_QUERY_TIMEOUT, positive_duration())?,
        max_connections: s.read(&keys::MAX_CONNECTIONS, positive_count())?,
        handshake_timeout_ms: s.read(&keys::HANDSHAKE_TIMEOUT, positive_duration())?,
        transaction_timeout_ms: s.read(&keys::TRANSACTION_TIMEOUT, positive_duration())?,
        response_send_timeout_ms: s.read(&keys::RESPONSE_SEND_TIMEOUT, positive_duration())?,
        max_concurrent_streams: s.read(&keys::MAX_CONCURRENT_STREAMS, positive_count())?,
        http_idle_timeout_ms: s.read(&keys::HTTP_IDLE_TIMEOUT, positive_duration())?,
    })
}

/// `host[:port]` with the internal port's default.
fn internal_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, value::port(port)?),
        None => (text, address::INTERNAL_PORT_DEFAULT),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("expected host[:port]".into());
    }
    Ok(format!("{host}:{port}"))
}

fn cluster_config(s: &Settings) -> Result<ClusterConfig, ConfigError> {
    let min = s.read(&keys::MIN_ELECTION_TIMEOUT, positive_duration())?;
    let max = s.read(&keys::MAX_ELECTION_TIMEOUT, positive_duration())?;
    let heartbeat = s.read(&keys::HEARTBEAT_TIMEOUT, positive_duration())?;
    if max <= min {
        return Err(
            s.invalid(&keys::MAX_ELECTION_TIMEOUT, format!("must be above the min-election-timeout ({min} ms)"))
        );
    }
    if heartbeat >= min {
        return Err(s.invalid(&keys::HEARTBEAT_TIMEOUT, format!("must be below the min-election-timeout ({min} ms)")));
    }
    let autocluster_first = s.read_opt(&keys::AUTOCLUSTER_FIRST, internal_address)?;
    let enabled = autocluster_first.is_some() || s.read(&keys::CLUSTERED, value::boolean)?;
    let internal_token = s.read_opt(&keys::INTERNAL_TOKEN, |t| Ok::<_, String>(t.to_owned()))?;
    let insecure_no_internal_token = s.read(&keys::INSECURE_NO_INTERNAL_TOKEN, value::boolean)?;
    if enabled && internal_token.is_none() && !insecure_no_internal_token {
        let reason = format!(
            "must be set on a clustered node (without it, anyone who reaches the internal port can change \
             the cluster); set {}=true to run without one",
            keys::INSECURE_NO_INTERNAL_TOKEN.name
        );
        return Err(s.invalid(&keys::INTERNAL_TOKEN, reason));
    }
    Ok(ClusterConfig {
        enabled,
        insecure_no_internal_token,
        insecure_register_node: s.read(&keys::INSECURE_REGISTER_NODE, value::boolean)?,
        autocluster_first,
        min_active_backups: s.read(&keys::MIN_ACTIVE_BACKUPS, value::count)?,
        snapshot_interval_entries: s.read(&keys::SNAPSHOT_INTERVAL, positive_count())?,
        log_entries_kept: s.read(&keys::LOG_ENTRIES_KEPT, value::count)?,
        log_cache_bytes: s.read(&keys::LOG_CACHE_SIZE, value::size)?,
        internal_token,
        log_dir: s.read(&keys::LOG_STORAGE_FOLDER, directory)?,
        election_timeout_min_ms: min,
        election_timeout_max_ms: max,
        wait_for_leader_ms: s.read_opt(&keys::WAIT_FOR_LEADER_TIMEOUT, positive_duration())?.unwrap_or(max * 2),
        heartbeat_ms: heartbeat,
        event_retention_ms: s.read(&keys::EVENT_RETENTION_TIME, value::duration_ms)?,
        tier_check_interval_ms: s.read(&keys::TIER_CHECK_INTERVAL, positive_duration())?,
    })
}

fn contexts(s: &Settings) -> Result<Vec<String>, ConfigError> {
    let mut contexts = vec![DEFAULT_CONTEXT.to_owned()];
    for name in s.read(&keys::AUTOCLUSTER_CONTEXTS, context_names)? {
        if !contexts.contains(&name) {
            contexts.push(name);
        }
    }
    Ok(contexts)
}

/// Splits an FQDN host name into host and domain when no domain is configured; when one is,
/// drops it from the end of the host name so it is not appended twice. IP addresses stay whole.
fn split_fqdn(host: &str, domain: Option<String>) -> (String, Option<String>) {
    let host = host.trim_end_matches('.');
    if let Some(domain) = domain {
        let suffix = format!(".{}", domain.trim_matches('.'));
        let cut = host.len().saturating_sub(suffix.len());
        let short = match host.get(cut..) {
            Some(end) if cut > 0 && end.eq_ignore_ascii_case(&suffix) => &host[..cut],
            _ => host,
        };
        return (short.to_owned(), Some(domain));
    }
    match host.split_once('.') {
        Some((short, domain)) if !short.is_empty() && host.parse::<IpAddr>().is_err() => {
            (short.to_owned(), Some(domain.to_owned()))
        }
        _ => (host.to_owned(), None),
    }
}

// === cross-field rules ===

fn check_relations(s: &Settings, config: &Config) -> Result<(), ConfigError> {
    let (storage, api) = (&config.storage, &config.api);
    let transaction = (&keys::MAX_TRANSACTION_SIZE, api.transaction_bytes_max);
    require_order(s, transaction, (&keys::EVENT_SEGMENT_SIZE, storage.event_segment_size_bytes), false)?;
    require_order(s, transaction, (&keys::APPEND_IN_FLIGHT_SIZE, storage.append_in_flight_bytes_max), false)?;
    if api.heartbeat_enabled {
        let frequency = (&keys::CLIENT_HEARTBEAT_FREQUENCY, api.client_heartbeat_frequency_ms);
        require_order(s, frequency, (&keys::CLIENT_HEARTBEAT_TIMEOUT, api.client_heartbeat_timeout_ms), true)?;
    }
    distinct_ports(s, &config.node)
}

/// Requires `small <= large` (`small < large` when `strict`), blaming the key set by the
/// higher-precedence source and naming the other key and its value.
fn require_order(
    s: &Settings,
    small: (&'static Key, u64),
    large: (&'static Key, u64),
    strict: bool,
) -> Result<(), ConfigError> {
    if small.1 < large.1 || (!strict && small.1 == large.1) {
        return Ok(());
    }
    let (blamed, other) = s.blame(small.0, large.0);
    let relation = match (blamed == small.0, strict) {
        (true, true) => "less than",
        (true, false) => "at most",
        (false, true) => "greater than",
        (false, false) => "at least",
    };
    Err(s.invalid(blamed, format!("must be {relation} {} ({})", other.name, s.text(other))))
}

/// The three listeners share the bind address, so their ports must differ (0 excepted).
fn distinct_ports(s: &Settings, node: &NodeConfig) -> Result<(), ConfigError> {
    let ports = [
        (&keys::PORT, node.client_port),
        (&keys::INTERNAL_PORT, node.internal_port),
        (&keys::HTTP_PORT, node.http_port),
    ];
    for (at, (first, port)) in ports.iter().enumerate() {
        let clash = ports[at + 1..].iter().find(|(_, other)| *port != 0 && other == port);
        if let Some((second, _)) = clash {
            let (blamed, other) = s.blame(first, second);
            return Err(s.invalid(blamed, format!("must differ from {} ({port})", other.name)));
        }
    }
    Ok(())
}

// === value checks for specific keys ===

fn bounded<T: PartialOrd>(
    parse: fn(&str) -> Result<T, String>,
    range: RangeInclusive<T>,
    expected: &'static str,
) -> impl Fn(&str) -> Result<T, String> {
    move |text| {
        let parsed = parse(text)?;
        range.contains(&parsed).then_some(parsed).ok_or_else(|| expected.to_owned())
    }
}

fn positive_size() -> impl Fn(&str) -> Result<u64, String> {
    bounded(value::size, 1..=u64::MAX, "expected a size of at least 1 byte")
}

fn positive_count() -> impl Fn(&str) -> Result<u32, String> {
    bounded(value::count, 1..=u32::MAX, "expected a whole number of at least 1")
}

fn positive_duration() -> impl Fn(&str) -> Result<u64, String> {
    bounded(value::duration_ms, 1..=u64::MAX, "expected a duration of at least 1ms")
}

fn host_name(text: &str) -> Result<String, String> {
    no_spaces(text, "expected a host name without spaces")
}

fn node_name(text: &str) -> Result<String, String> {
    no_spaces(text, "expected a node name without spaces")
}

fn no_spaces(text: &str, expected: &str) -> Result<String, String> {
    let clean = !text.chars().any(|c| c.is_whitespace() || c.is_control());
    clean.then(|| text.to_owned()).ok_or_else(|| expected.to_owned())
}

fn ip_address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| "expected an IP address such as 0.0.0.0 or ::".to_owned())
}

fn directory(text: &str) -> Result<PathBuf, String> {
    match text {
        "" => Err("expected a directory path".to_owned()),
        _ => Ok(PathBuf::from(text)),
    }
}

fn context_names(text: &str) -> Result<Vec<String>, String> {
    value::list(text)
        .into_iter()
        .map(|name| match is_context_name(&name) {
            true => Ok(name),
            false => Err(format!(
                "context name {name:?} must start with a letter and contain only \
                 letters, digits, @, _ and -"
            )),
        })
        .collect()
}

fn is_context_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '_' | '-'))
}
