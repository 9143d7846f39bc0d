//! Every configuration key Ranvier reads, as one documented `const` with its default, plus the
//! keys Axon Server (or Spring Boot) has that Ranvier recognises but does not implement yet.
//!
//! Owns key names, defaults and the canonical (kebab-case) form of a key. Does not parse values
//! (`value`) or know where they come from (`settings`, `env`, `flags`). Invariants, checked by
//! tests: names in [`ALL`] are unique and canonical, every default parses and passes
//! validation, and no implemented key matches an [`IGNORED`] pattern.
//!
//! Defaults are written in property syntax and go through the same parser as user input. An
//! empty default means "derived from other keys" (see the key's doc); setting such a key to
//! an empty value also means "derive it", as in Axon Server.

/// A key Ranvier implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The canonical property name, e.g. `axoniq.axonserver.internal-port`.
    pub name: &'static str,
    /// The default in property syntax; empty when derived from other keys.
    pub default: &'static str,
}

// === node ===

/// Node name, unique in a cluster. Default: the (short) `hostname`.
pub const NAME: Key = key("axoniq.axonserver.name", "");
/// Host name clients are told to connect to. Default: the system host name. An FQDN such as
/// `a.b.c` is split into host name `a` and domain `b.c` when `domain` is unset.
pub const HOSTNAME: Key = key("axoniq.axonserver.hostname", "");
/// Domain appended to `hostname` for clients. Default: none, or derived from an FQDN host name.
pub const DOMAIN: Key = key("axoniq.axonserver.domain", "");
/// Host name other nodes use to reach this one. Default: `hostname`.
pub const INTERNAL_HOSTNAME: Key = key("axoniq.axonserver.internal-hostname", "");
/// Domain appended to `internal-hostname`. Default: `domain`.
pub const INTERNAL_DOMAIN: Key = key("axoniq.axonserver.internal-domain", "");
/// IP address all listeners bind to.
pub const BIND_ADDRESS: Key = key("ranvier.bind-address", "0.0.0.0");
/// Client gRPC port; 0 picks a free port.
pub const PORT: Key = key("axoniq.axonserver.port", "8124");
/// Node-to-node gRPC port; 0 picks a free port.
pub const INTERNAL_PORT: Key = key("axoniq.axonserver.internal-port", "8224");
/// HTTP (REST, health, metrics) port; 0 picks a free port.
pub const HTTP_PORT: Key = key("server.port", "8024");

// === storage ===

/// Base directory of the event store, one subdirectory per context.
pub const EVENT_STORAGE: Key = key("axoniq.axonserver.event.storage", "./data");
/// Base directory of the snapshot store. Default: `event.storage`.
pub const SNAPSHOT_STORAGE: Key = key("axoniq.axonserver.snapshot.storage", "");
/// Size of a new event segment file, bytes (64KB..=2GB).
pub const EVENT_SEGMENT_SIZE: Key = key("axoniq.axonserver.event.segment-size", "256MB");
/// Size of a new snapshot segment file, bytes (64KB..=2GB).
pub const SNAPSHOT_SEGMENT_SIZE: Key = key("axoniq.axonserver.snapshot.segment-size", "256MB");
/// Number of most recent closed segments whose checksums are verified at start-up.
pub const EVENT_VALIDATION_SEGMENTS: Key = key("axoniq.axonserver.event.validation-segments", "10");
/// Free disk space, bytes, below which appends are refused.
pub const DISK_RESERVE: Key = key("ranvier.disk-reserve", "256MB");
/// Memory, bytes, for closed-segment aggregate indexes and bloom filters.
pub const INDEX_CACHE_SIZE: Key = key("ranvier.index-cache-size", "32MB");
/// Aggregates in the active segment's in-memory index at which the segment rolls over.
pub const ACTIVE_INDEX_AGGREGATES_MAX: Key = key("ranvier.active-index-aggregates-max", "200000");
/// Most bytes written by one group commit (one fsync).
pub const APPEND_BATCH_SIZE: Key = key("ranvier.append-batch-size", "8MB");
/// Event bytes accepted from clients but not yet committed; beyond this clients wait.
pub const APPEND_IN_FLIGHT_SIZE: Key = key("ranvier.append-in-flight-size", "64MB");

// === client API ===

/// Largest gRPC message accepted or sent, bytes.
pub const MAX_MESSAGE_SIZE: Key = key("axoniq.axonserver.max-message-size", "4MB");
/// Most events in one append transaction.
pub const MAX_EVENTS_PER_TRANSACTION: Key = key("axoniq.axonserver.max-events-per-transaction", "32767");
/// Most bytes in one append transaction; at most `event.segment-size`.
pub const MAX_TRANSACTION_SIZE: Key = key("ranvier.max-transaction-size", "32MB");
/// How long a `ListEvents` stream may wait for new permits, ms.
pub const NEW_PERMITS_TIMEOUT: Key = key("axoniq.axonserver.new-permits-timeout", "120000");
/// Whether an appended snapshot's sequence number is checked against the aggregate's events.
pub const CHECK_SEQUENCE_NR_FOR_SNAPSHOTS: Key = key("axoniq.axonserver.check-sequence-nr-for-snapshots", "true");
/// Whether clients that do not send platform heartbeats are disconnected.
pub const HEARTBEAT_ENABLED: Key = key("axoniq.axonserver.heartbeat.enabled", "false");
/// Silence, ms, after which a heartbeating client is considered gone.
pub const CLIENT_HEARTBEAT_TIMEOUT: Key = key("axoniq.axonserver.client-heartbeat-timeout", "5000");
/// Interval, ms, at which the node sends heartbeats to clients; less than the timeout.
pub const CLIENT_HEARTBEAT_FREQUENCY: Key = key("axoniq.axonserver.client-heartbeat-frequency", "500");
/// How long a command waits for its answer, ms, unless its TIMEOUT instruction says.
pub const DEFAULT_COMMAND_TIMEOUT: Key = key("axoniq.axonserver.default-command-timeout", "300000");
/// How long a query may take, ms, unless its TIMEOUT instruction says.
pub const DEFAULT_QUERY_TIMEOUT: Key = key("axoniq.axonserver.default-query-timeout", "300000");
/// Commands queued for one handler client waiting for its permits, at most.
pub const COMMAND_QUEUE_CAPACITY: Key = key("axoniq.axonserver.command-queue-capacity-per-client", "10000");
/// Most concurrent client connections.
pub const MAX_CONNECTIONS: Key = key("ranvier.max-connections", "1024");
/// Longest time one append transaction may stay open, however busy (its events are held in
/// memory until it ends).
pub const TRANSACTION_TIMEOUT: Key = key("ranvier.transaction-timeout", "2m");
/// Longest time a response stream (ListEvents, aggregate reads) waits for its client to take
/// the next batch; a client that stops reading for longer is cut off with AXONIQ-6001, so it
/// cannot hold the node's reader and buffers forever.
pub const RESPONSE_SEND_TIMEOUT: Key = key("ranvier.response-send-timeout", "2m");
/// Most concurrent calls (HTTP/2 streams) one client connection may have open; further calls
/// wait in the client until one ends.
pub const MAX_CONCURRENT_STREAMS: Key = key("ranvier.max-concurrent-streams", "1000");
/// An HTTP connection that sends nothing for this long is closed (so idle keep-alive
/// connections cannot hold the HTTP port's connection slots).
pub const HTTP_IDLE_TIMEOUT: Key = key("ranvier.http-idle-timeout", "2m");
/// Time a new connection to a gRPC port has to send its first bytes before it is closed (so
/// silent connections cannot hold the connection slots).
pub const HANDSHAKE_TIMEOUT: Key = key("ranvier.handshake-timeout", "10s");

// === contexts ===

/// Contexts to create besides `default`, comma-separated.
pub const AUTOCLUSTER_CONTEXTS: Key = key("axoniq.axonserver.autocluster.contexts", "");

// === clustering ===

/// `host[:port]` (internal port, default 8224) of the node that forms the cluster on a clean
/// start; empty for a standalone node.
pub const AUTOCLUSTER_FIRST: Key = key("axoniq.axonserver.autocluster.first", "");
/// Run the cluster runtime without autocluster, to form the cluster by hand
/// (`ranvierctl init-cluster` / `register-node`). Implied by `autocluster.first`.
pub const CLUSTERED: Key = key("ranvier.clustered", "false");
/// Active backups that must hold a write before it is confirmed; with fewer in
/// sync, a group that has active backups accepts no writes.
pub const MIN_ACTIVE_BACKUPS: Key = key("axoniq.axonserver.replication.min-active-backups", "1");
/// Log entries after which a replication group takes a snapshot (metadata only: its
/// state is the context stores) and may purge its log before it.
pub const SNAPSHOT_INTERVAL: Key = key("ranvier.replication.snapshot-interval", "50000");
/// Log entries kept behind a snapshot, so a member slightly behind catches up from the log.
pub const LOG_ENTRIES_KEPT: Key = key("ranvier.replication.log-entries-kept", "10000");
/// Memory for the newest replication log entries of all groups together (each group
/// keeps at most 8 MiB of them); older entries are read back from the log files.
pub const LOG_CACHE_SIZE: Key = key("ranvier.replication.log-cache-size", "32MB");
/// How long primaries keep events on their own disk once the group has a SECONDARY member.
pub const EVENT_RETENTION_TIME: Key = key("axoniq.axonserver.event.retention-time", "7d");
/// How often a primary looks for segments it may retire to the secondary tier.
pub const TIER_CHECK_INTERVAL: Key = key("ranvier.tier.check-interval", "10s");
/// Token every node-to-node call must carry (`AxonIQ-InternalToken`); empty: none required.
pub const INTERNAL_TOKEN: Key = key("axoniq.axonserver.accesscontrol.internal-token", "");
/// Lets a clustered node run without an internal token (anyone who reaches its internal
/// port could then change the cluster and read its data): for a throw-away local cluster.
pub const INSECURE_NO_INTERNAL_TOKEN: Key = key("ranvier.insecure-no-internal-token", "false");
/// Lets `register-node` run with access control off: the node sends its internal token to
/// the address in the request, which anyone who reaches the HTTP port could then name.
pub const INSECURE_REGISTER_NODE: Key = key("ranvier.insecure-register-node", "false");
/// Whether client and REST calls must carry an access token (`AxonIQ-Access-Token`).
pub const ACCESS_CONTROL_ENABLED: Key = key("axoniq.axonserver.accesscontrol.enabled", "false");
/// The token of applications (client gRPC calls and REST reads); required when enabled.
pub const ACCESS_TOKEN: Key = key("axoniq.axonserver.accesscontrol.token", "");
/// The token of administrators (everything); required when enabled.
pub const ADMIN_TOKEN: Key = key("axoniq.axonserver.accesscontrol.admin-token", "");
/// A file holding a token that allows everything, made at first start (mode 0600) for
/// `ranvierctl` on the node's machine; unset: no system token.
pub const SYSTEM_TOKEN_FILE: Key = key("axoniq.axonserver.accesscontrol.systemtokenfile", "");
/// Whether `/ready` and `/metrics` answer without a token when access control is on (probes
/// and scrapers usually carry none); `/health` always does.
pub const OPEN_PROBES: Key = key("ranvier.accesscontrol.open-probes", "true");
/// TLS on the client gRPC port and (unless `enable-ssl-for-internal` is false) on the
/// internal port, in both directions.
pub const SSL_ENABLED: Key = key("axoniq.axonserver.ssl.enabled", "false");
/// PEM file with the client port's certificate chain, leaf first; required with TLS.
pub const SSL_CERT_CHAIN_FILE: Key = key("axoniq.axonserver.ssl.cert-chain-file", "");
/// PEM file with the private key of that certificate (PKCS#8, PKCS#1 or SEC1).
pub const SSL_PRIVATE_KEY_FILE: Key = key("axoniq.axonserver.ssl.private-key-file", "");
/// Whether node-to-node calls use TLS too when `ssl.enabled` is true.
pub const SSL_INTERNAL_ENABLED: Key = key("axoniq.axonserver.ssl.enable-ssl-for-internal", "true");
/// The internal port's certificate chain; empty: the client port's.
pub const SSL_INTERNAL_CERT_CHAIN_FILE: Key = key("axoniq.axonserver.ssl.internal-cert-chain-file", "");
/// The internal port's private key; empty: the client port's.
pub const SSL_INTERNAL_PRIVATE_KEY_FILE: Key = key("axoniq.axonserver.ssl.internal-private-key-file", "");
/// PEM file with the certificates (CAs) a node trusts when it calls another node; required
/// for a clustered node with internal TLS.
pub const SSL_INTERNAL_TRUST_FILE: Key = key("axoniq.axonserver.ssl.internal-trust-manager-file", "");
/// How a node checks another node's certificate: `CERTIFICATE_AND_HOST_NAME_VERIFICATION`,
/// `CERTIFICATE_ONLY_VERIFICATION` (any name) or `INSECURELY_SKIP_ALL_VERIFICATION`.
pub const SSL_TRUST_VERIFICATION: Key =
    key("axoniq.axonserver.ssl.trust-manager-verification", "CERTIFICATE_AND_HOST_NAME_VERIFICATION");
/// TLS on the HTTP port (Spring's switch).
pub const SERVER_SSL_ENABLED: Key = key("server.ssl.enabled", "false");
/// PEM certificate chain of the HTTP port (Spring's PEM key); empty: `ssl.cert-chain-file`.
pub const SERVER_SSL_CERTIFICATE: Key = key("server.ssl.certificate", "");
/// PEM private key of the HTTP port; empty: `ssl.private-key-file`.
pub const SERVER_SSL_PRIVATE_KEY: Key = key("server.ssl.certificate-private-key", "");
/// How often certificate, key and trust files are read again; a change is served to the
/// next connection, without a restart.
pub const SSL_RELOAD_INTERVAL: Key = key("ranvier.ssl.reload-interval", "5s");
/// Directory of the replication log files, one subdirectory per replication group.
pub const LOG_STORAGE_FOLDER: Key = key("axoniq.axonserver.replication.log-storage-folder", "./log");
/// Shortest time a follower waits for the leader before starting an election (ms).
pub const MIN_ELECTION_TIMEOUT: Key = key("axoniq.axonserver.replication.min-election-timeout", "1000");
/// Longest such time (ms); each follower picks a random time in between.
pub const MAX_ELECTION_TIMEOUT: Key = key("axoniq.axonserver.replication.max-election-timeout", "2500");
/// How long a write or read that reaches a node while its group has no reachable leader
/// waits for the next one (ms); empty: twice the max election timeout.
pub const WAIT_FOR_LEADER_TIMEOUT: Key = key("axoniq.axonserver.replication.wait-for-leader-timeout", "");
/// How often an idle leader sends heartbeats (ms).
pub const HEARTBEAT_TIMEOUT: Key = key("axoniq.axonserver.replication.heartbeat-timeout", "300");

/// Every implemented key, in the order the start-up log lists them.
pub const ALL: &[Key] = &[
    NAME,
    HOSTNAME,
    DOMAIN,
    INTERNAL_HOSTNAME,
    INTERNAL_DOMAIN,
    BIND_ADDRESS,
    PORT,
    INTERNAL_PORT,
    HTTP_PORT,
    EVENT_STORAGE,
    SNAPSHOT_STORAGE,
    EVENT_SEGMENT_SIZE,
    SNAPSHOT_SEGMENT_SIZE,
    EVENT_VALIDATION_SEGMENTS,
    DISK_RESERVE,
    INDEX_CACHE_SIZE,
    ACTIVE_INDEX_AGGREGATES_MAX,
    APPEND_BATCH_SIZE,
    APPEND_IN_FLIGHT_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_EVENTS_PER_TRANSACTION,
    MAX_TRANSACTION_SIZE,
    NEW_PERMITS_TIMEOUT,
    CHECK_SEQUENCE_NR_FOR_SNAPSHOTS,
    HEARTBEAT_ENABLED,
    CLIENT_HEARTBEAT_TIMEOUT,
    CLIENT_HEARTBEAT_FREQUENCY,
    DEFAULT_COMMAND_TIMEOUT,
    COMMAND_QUEUE_CAPACITY,
    DEFAULT_QUERY_TIMEOUT,
    MAX_CONNECTIONS,
    HANDSHAKE_TIMEOUT,
    TRANSACTION_TIMEOUT,
    RESPONSE_SEND_TIMEOUT,
    MAX_CONCURRENT_STREAMS,
    HTTP_IDLE_TIMEOUT,
    AUTOCLUSTER_CONTEXTS,
    AUTOCLUSTER_FIRST,
    CLUSTERED,
    MIN_ACTIVE_BACKUPS,
    SNAPSHOT_INTERVAL,
    LOG_ENTRIES_KEPT,
    LOG_CACHE_SIZE,
    EVENT_RETENTION_TIME,
    TIER_CHECK_INTERVAL,
    INTERNAL_TOKEN,
    INSECURE_NO_INTERNAL_TOKEN,
    INSECURE_REGISTER_NODE,
    ACCESS_CONTROL_ENABLED,
    ACCESS_TOKEN,
    ADMIN_TOKEN,
    OPEN_PROBES,
    SYSTEM_TOKEN_FILE,
    LOG_STORAGE_FOLDER,
    MIN_ELECTION_TIMEOUT,
    MAX_ELECTION_TIMEOUT,
    HEARTBEAT_TIMEOUT,
    WAIT_FOR_LEADER_TIMEOUT,
    SSL_ENABLED,
    SSL_CERT_CHAIN_FILE,
    SSL_PRIVATE_KEY_FILE,
    SSL_INTERNAL_ENABLED,
    SSL_INTERNAL_CERT_CHAIN_FILE,
    SSL_INTERNAL_PRIVATE_KEY_FILE,
    SSL_INTERNAL_TRUST_FILE,
    SSL_TRUST_VERIFICATION,
    SERVER_SSL_ENABLED,
    SERVER_SSL_CERTIFICATE,
    SERVER_SSL_PRIVATE_KEY,
    SSL_RELOAD_INTERVAL,
];

/// Keys Axon Server or Spring Boot understand that Ranvier accepts and ignores with a warning,
/// so existing property files keep working. A trailing `.*` matches every key under the
/// prefix; anything else matches exactly. Store tuning keys are in [`IGNORED_STORE_TUNING`].
pub const IGNORED: &[&str] = &[
    "axoniq.axonserver.accesscontrol.cache-ttl",
    "axoniq.axonserver.accesscontrol.token-dir",
    "axoniq.axonserver.tags.*",
    "axoniq.axonserver.replication.max-entries-per-batch",
    "axoniq.axonserver.replication.flow-buffer",
    "axoniq.axonserver.replication.snapshot-flow-buffer",
    "axoniq.axonserver.replication.max-snapshot-chunks-per-batch",
    "axoniq.axonserver.replication.max-replication-round",
    "axoniq.axonserver.replication.log-compaction-enabled",
    "axoniq.axonserver.replication.log-retention-hours",
    "axoniq.axonserver.replication.force-snapshot-on-join",
    "axoniq.axonserver.replication.initial-election-timeout",
    "axoniq.axonserver.replication.segment-size",
    "axoniq.axonserver.replication.log-suffix",
    "axoniq.axonserver.replication.index-suffix",
    "axoniq.axonserver.replication.sync-interval",
    "axoniq.axonserver.replication.force-interval",
    "axoniq.axonserver.replication.validation-segments",
    "axoniq.axonserver.replication.primary-cleanup-delay",
    "axoniq.axonserver.replication.secondary-cleanup-delay",
    "axoniq.axonserver.replication.max-indexes-in-memory",
    "axoniq.axonserver.replication.use-mmap-index",
    "axoniq.axonserver.replication.force-clean-mmap-index",
    "axoniq.axonserver.cluster-template.*",
    "axoniq.axonserver.query.*",
    "axoniq.axonserver.metrics.*",
    "axoniq.axonserver.event.storages.*",
    "axoniq.axonserver.event.aggregate.*",
    "axoniq.axonserver.devmode.enabled",
    "axoniq.axonserver.standalone",
    "axoniq.axonserver.snapshot.validation-segments",
    "axoniq.axonserver.keep-alive-time",
    "axoniq.axonserver.keep-alive-timeout",
    "axoniq.axonserver.min-keep-alive-time",
    "axoniq.axonserver.grpc-buffered-messages",
    "axoniq.axonserver.executor-thread-count",
    "axoniq.axonserver.cluster-executor-thread-count",
    "axoniq.axonserver.controldb-path",
    "axoniq.axonserver.controldb-backup-location",
    "axoniq.axonserver.pid-file-location",
    "axoniq.axonserver.license-directory",
    "axoniq.axonserver.force-connection-to-primary-or-messaging-node",
    "axoniq.axonserver.blacklisted-send-after",
    "axoniq.axonserver.event-processor-permits-check",
    "axoniq.axonserver.read-sequence-validation-strategy",
    "axoniq.axonserver.data-fetcher-threads",
    "axoniq.axonserver.data-writer-threads",
    "axoniq.axonserver.snapshot.retention-time",
    "logging.*",
    "spring.*",
    "management.*",
    "server.servlet.*",
];

/// Security settings of Axon Server or Spring that Ranvier cannot honour: each stops the
/// start with its reason, because a user who set one believes it protects them. Patterns as
/// in [`IGNORED`].
pub const REFUSED: &[(&str, &str)] = &[
    ("axoniq.axonserver.accesscontrol.jwt.*", "JWT access tokens are not supported; use application tokens"),
    (
        "axoniq.axonserver.accesscontrol.default-token",
        "a default token is not supported; give each application its own token",
    ),
    (
        "server.ssl.key-*",
        "Java key stores are not read: give PEM files in server.ssl.certificate and server.ssl.certificate-private-key",
    ),
    ("server.ssl.trust-*", "client certificates on the HTTP port are not supported"),
    ("server.ssl.client-auth", "client certificates on the HTTP port are not supported"),
];

/// Why the canonical key `name` stops the start, when it is a [`REFUSED`] setting.
pub fn refusal(name: &str) -> Option<&'static str> {
    REFUSED.iter().find(|(pattern, _)| pattern_matches(pattern, name)).map(|(_, reason)| *reason)
}

/// Axon Server segment-store tuning keys, ignored under both `axoniq.axonserver.event.` and
/// `axoniq.axonserver.snapshot.`: Ranvier's store has its own knobs (`ranvier.*`).
pub const IGNORED_STORE_TUNING: &[&str] = &[
    "bloom-index-fpp",
    "force-interval",
    "sync-interval",
    "memory-mapped-segments",
    "max-indexes-in-memory",
    "max-bloom-filters-in-memory",
    "events-per-segment-prefetch",
    "read-buffer-size",
    "use-mmap-index",
    "force-clean-mmap-index",
    "primary-cleanup-delay",
    "secondary-cleanup-delay",
    "segments-for-sequence-number-check",
    "index-format",
    "events-suffix",
    "index-suffix",
    "bloom-index-suffix",
];

const fn key(name: &'static str, default: &'static str) -> Key {
    Key { name, default }
}

/// Every ignored pattern, with the store tuning keys expanded for `event.` and `snapshot.`.
pub fn ignored_patterns() -> impl Iterator<Item = String> {
    let store_tuning = ["event", "snapshot"]
        .into_iter()
        .flat_map(|tier| IGNORED_STORE_TUNING.iter().map(move |name| format!("axoniq.axonserver.{tier}.{name}")));
    IGNORED.iter().map(|pattern| (*pattern).to_owned()).chain(store_tuning)
}

/// Whether `pattern` (from [`ignored_patterns`]) matches the canonical key `name`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// The implemented key with this canonical name.
pub fn find(name: &str) -> Option<&'static Key> {
    ALL.iter().find(|key| key.name == name)
}

/// Whether the canonical key `name` is a recognised key that Ranvier ignores.
pub fn is_ignored(name: &str) -> bool {
    ignored_patterns().any(|pattern| pattern_matches(&pattern, name))
}

/// The canonical form of a key as Spring's relaxed binding reads it in files and flags:
/// lower-case kebab-case, so `internalPort`, `internal_port` and `internal-port` are one key.
pub fn canonical(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 4);
    let mut after_lower_or_digit = false;
    for c in raw.trim().chars() {
        if c.is_ascii_uppercase() && after_lower_or_digit {
            out.push('-');
        }
        after_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(if c == '_' { '-' } else { c.to_ascii_lowercase() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_canonical_and_not_ignored() {
        let mut seen = HashSet::new();
        for key in ALL {
            assert!(seen.insert(key.name), "duplicate key {}", key.name);
            assert_eq!(canonical(key.name), key.name, "non-canonical key name");
            assert!(!is_ignored(key.name), "{} is both implemented and ignored", key.name);
            assert!(refusal(key.name).is_none(), "{} is both implemented and refused", key.name);
        }
    }

    #[test]
    fn ignored_patterns_are_canonical() {
        for pattern in ignored_patterns() {
            assert_eq!(canonical(&pattern), pattern);
            assert!(refusal(&pattern.replace('*', "x")).is_none(), "{pattern} is both ignored and refused");
        }
        for (pattern, _) in REFUSED {
            assert_eq!(canonical(pattern), *pattern);
        }
    }

    #[test]
    fn relaxed_key_forms_are_canonicalised() {
        assert_eq!(canonical("axoniq.axonserver.internalPort"), "axoniq.axonserver.internal-port");
        assert_eq!(canonical("axoniq.axonserver.internal_port"), "axoniq.axonserver.internal-port");
        assert_eq!(canonical(" axoniq.axonserver.event.segmentSIZE "), "axoniq.axonserver.event.segment-size");
        assert_eq!(canonical("server.port"), "server.port");
    }

    #[test]
    fn ignored_patterns_match_prefixes_and_exact_keys() {
        assert!(is_ignored("axoniq.axonserver.accesscontrol.cache-ttl"));
        assert!(!is_ignored("axoniq.axonserver.ssl.cert-chain-file"));
        assert!(refusal("axoniq.axonserver.accesscontrol.jwt.secret").is_some());
        assert!(refusal("server.ssl.key-store").is_some());
        assert!(refusal("server.ssl.certificate").is_none());
        assert!(is_ignored("axoniq.axonserver.snapshot.retention-time"));
        assert!(is_ignored("axoniq.axonserver.event.bloom-index-fpp"));
        assert!(is_ignored("logging.level.io.axoniq"));
        assert!(!is_ignored("axoniq.axonserver.autocluster.firstx"));
        assert!(!is_ignored("axoniq.axonserver.accesscontrol"));
        assert!(!is_ignored("axoniq.axonserver.foo-bar"));
        assert!(!is_ignored("server.address"));
    }
}
