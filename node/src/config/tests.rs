//! Tests of `load`: defaults, precedence, error messages, derived values and cross-field rules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::*;

/// A properties file in a temporary directory, deleted on drop.
struct TempFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn temp_file(text: &str) -> TempFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("axonserver.properties");
    std::fs::write(&path, text).unwrap();
    TempFile { _dir: dir, path }
}

fn sources<'a>(file: Option<&Path>, env: &'a MapEnv, sets: &[&str]) -> Sources<'a> {
    Sources {
        file: file.map(Path::to_path_buf),
        env,
        overrides: sets.iter().map(|s| s.parse().unwrap()).collect(),
        system_hostname: "testhost".to_owned(),
    }
}

fn load_sets(sets: &[&str]) -> Result<Config, ConfigError> {
    load(&sources(None, &MapEnv::new(), sets))
}

fn load_file(text: &str) -> (Result<Config, ConfigError>, TempFile) {
    let file = temp_file(text);
    (load(&sources(Some(&file.path), &MapEnv::new(), &[])), file)
}

fn error_of(result: Result<Config, ConfigError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn defaults() {
    let config = load_sets(&[]).unwrap();
    let expected = Config {
        node: NodeConfig {
            name: "testhost".into(),
            hostname: "testhost".into(),
            domain: None,
            internal_hostname: "testhost".into(),
            internal_domain: None,
            bind_address: "0.0.0.0".parse().unwrap(),
            client_port: 8124,
            internal_port: 8224,
            http_port: 8024,
        },
        storage: StorageConfig {
            events_dir: "./data".into(),
            snapshots_dir: "./data".into(),
            event_segment_size_bytes: 256 << 20,
            snapshot_segment_size_bytes: 256 << 20,
            validation_segments: 10,
            disk_reserve_bytes: 256 << 20,
            index_cache_bytes: 32 << 20,
            active_index_aggregates_max: 200_000,
            append_batch_bytes_max: 8 << 20,
            append_in_flight_bytes_max: 64 << 20,
        },
        api: ApiConfig {
            max_message_size_bytes: 4 << 20,
            transaction_events_max: 32767,
            transaction_bytes_max: 32 << 20,
            new_permits_timeout_ms: 120_000,
            check_sequence_nr_for_snapshots: true,
            heartbeat_enabled: false,
            client_heartbeat_timeout_ms: 5000,
            client_heartbeat_frequency_ms: 500,
            default_command_timeout_ms: 300_000,
            command_queue_capacity: 10_000,
            default_query_timeout_ms: 300_000,
            max_connections: 1024,
            handshake_timeout_ms: 10_000,
            transaction_timeout_ms: 120_000,
            response_send_timeout_ms: 120_000,
            max_concurrent_streams: 1000,
            http_idle_timeout_ms: 120_000,
        },
        cluster: ClusterConfig {
            autocluster_first: None,
            enabled: false,
            insecure_no_internal_token: false,
            insecure_register_node: false,
            min_active_backups: 1,
            snapshot_interval_entries: 50000,
            log_entries_kept: 10000,
            log_cache_bytes: 32 << 20,
            internal_token: None,
            log_dir: "./log".into(),
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2500,
            heartbeat_ms: 300,
            wait_for_leader_ms: 5000,
            event_retention_ms: 7 * 24 * 3600 * 1000,
            tier_check_interval_ms: 10_000,
        },
        access: AccessConfig {
            enabled: false,
            token: None,
            admin_token: None,
            open_probes: true,
            system_token_file: None,
        },
        tls: TlsConfig::default(),
        contexts: vec!["default".into()],
    };
    assert_eq!(config, expected);
}

#[test]
fn cluster_settings_are_read_and_checked() {
    let config = load_sets(&[
        "axoniq.axonserver.autocluster.first=node-1",
        "axoniq.axonserver.accesscontrol.internal-token=t0k",
    ])
    .unwrap();
    assert_eq!(config.cluster.autocluster_first.as_deref(), Some("node-1:8224"));
    assert_eq!(config.cluster.internal_token.as_deref(), Some("t0k"));
    let insecure = "ranvier.insecure-no-internal-token=true";
    let config = load_sets(&["axoniq.axonserver.autocluster.first=node-1:9000", insecure]).unwrap();
    assert_eq!(config.cluster.autocluster_first.as_deref(), Some("node-1:9000"));
    assert!(config.cluster.insecure_no_internal_token);
    // A clustered node without an internal token does not start, unless told it may.
    for clustered in ["axoniq.axonserver.autocluster.first=node-1", "ranvier.clustered=true"] {
        let error = error_of(load_sets(&[clustered]));
        assert!(error.contains("axoniq.axonserver.accesscontrol.internal-token"), "{error}");
        assert!(error.contains("ranvier.insecure-no-internal-token=true"), "{error}");
    }
    assert!(load_sets(&[]).is_ok(), "a standalone node needs none");
    let error = error_of(load_sets(&["axoniq.axonserver.autocluster.first=node-1:x"]));
    assert!(error.contains("axoniq.axonserver.autocluster.first"), "{error}");
    let error = error_of(load_sets(&["axoniq.axonserver.replication.max-election-timeout=900"]));
    assert!(error.contains("max-election-timeout"), "{error}");
    // Other replication keys Axon Server knows are still accepted and ignored.
    assert!(load_sets(&["axoniq.axonserver.replication.flow-buffer=10"]).is_ok());
}

#[test]
fn effective_lists_every_key_and_round_trips() {
    let config = load_sets(&[
        "axoniq.axonserver.domain=example.com",
        "axoniq.axonserver.autocluster.contexts=orders,billing",
        "axoniq.axonserver.event.segment-size=1536MB",
        "ranvier.bind-address=::1",
        "axoniq.axonserver.heartbeat.enabled=true",
    ])
    .unwrap();
    let effective = config.effective();
    let names: Vec<_> = effective.iter().map(|(key, _)| *key).collect();
    let all: Vec<_> = keys::ALL.iter().map(|key| key.name).collect();
    assert_eq!(names, all);
    let sets: Vec<String> = effective.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    assert_eq!(load_sets(&sets).unwrap(), config);
}

#[test]
fn every_default_parses() {
    for key in keys::ALL {
        let set = format!("{}={}", key.name, key.default);
        assert!(load_sets(&[&set]).is_ok(), "default of {} does not load", key.name);
    }
}

#[test]
fn precedence_is_file_then_env_then_flags() {
    let file = temp_file(
        "axoniq.axonserver.port=1001\n\
         axoniq.axonserver.internal-port=2001\n\
         server.port=3001\n",
    );
    let env = MapEnv::new().with("AXONIQ_AXONSERVER_INTERNAL_PORT", "2002").with("SERVER_PORT", "3002");
    let config = load(&sources(Some(&file.path), &env, &["server.port=3003"])).unwrap();
    assert_eq!((config.node.client_port, config.node.internal_port, config.node.http_port), (1001, 2002, 3003));
}

#[test]
fn later_flag_wins_and_relaxed_key_forms_are_accepted() {
    let (config, _file) = load_file("axoniq.axonserver.internalPort=7001\naxoniq.axonserver.event.segment_size=64MB\n");
    let config = config.unwrap();
    assert_eq!(config.node.internal_port, 7001);
    assert_eq!(config.storage.event_segment_size_bytes, 64 << 20);
    let config = load_sets(&["axoniq.axonserver.port=1", "axoniq.axonserver.port=2"]).unwrap();
    assert_eq!(config.node.client_port, 2);
}

#[test]
fn file_syntax_comments_continuations_and_colon_separator() {
    let text = "# Ranvier\n\
                ! Axon style comment\n\
                \n\
                axoniq.axonserver.name: node-a\n\
                axoniq.axonserver.autocluster.contexts = orders,\\\n\
                \x20   billing\n\
                axoniq.axonserver.event.storage  /var/lib/ranvier\n";
    let (config, _file) = load_file(text);
    let config = config.unwrap();
    assert_eq!(config.node.name, "node-a");
    assert_eq!(config.contexts, vec!["default", "orders", "billing"]);
    assert_eq!(config.storage.events_dir, PathBuf::from("/var/lib/ranvier"));
    assert_eq!(config.storage.snapshots_dir, PathBuf::from("/var/lib/ranvier"));
}

#[test]
fn malformed_port_in_file_names_key_path_and_line() {
    let (result, file) = load_file("# ports\naxoniq.axonserver.name=a\naxoniq.axonserver.port=abc\n");
    let expected = format!(
        "invalid value \"abc\" for axoniq.axonserver.port at {}:3: expected a port number 0-65535",
        file.path.display()
    );
    assert_eq!(error_of(result), expected);
    let (result, _file) = load_file("axoniq.axonserver.port=65536\n");
    assert!(error_of(result).contains(":1: expected a port number"));
}

#[test]
fn unknown_key_in_file_names_key_and_line() {
    let (result, file) = load_file("axoniq.axonserver.port=8124\n\naxoniq.axonserver.foo-bar=1\n");
    let message = error_of(result);
    assert_eq!(message, format!("unknown key axoniq.axonserver.foo-bar at {}:3", file.path.display()));
}

#[test]
fn unknown_key_in_flag_names_the_flag() {
    let message = error_of(load_sets(&["ranvier.disk-reservation=1GB"]));
    assert_eq!(message, "unknown key ranvier.disk-reservation at --set");
}

#[test]
fn invalid_env_value_names_the_variable() {
    let env = MapEnv::new().with("RANVIER_DISK_RESERVE", "lots");
    let message = error_of(load(&sources(None, &env, &[])));
    assert!(message.starts_with("invalid value \"lots\" for ranvier.disk-reserve at environment variable RANVIER_DISK_RESERVE: expected a size"), "{message}");
}

#[test]
fn unknown_axon_env_var_is_an_error_but_binary_vars_are_not() {
    let env = MapEnv::new().with("AXONIQ_AXONSERVER_X", "1");
    let message = error_of(load(&sources(None, &env, &[])));
    assert!(message.contains("AXONIQ_AXONSERVER_X"), "{message}");
    let env = MapEnv::new().with(CONFIG_VAR, "x.properties").with(LOG_VAR, "debug").with("SOMETHING_ELSE", "1");
    assert!(load(&sources(None, &env, &[])).is_ok());
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let env = MapEnv::new();
    let result = load(&sources(Some(Path::new("/nonexistent/ranvier.properties")), &env, &[]));
    assert!(matches!(result, Err(ConfigError::ReadFile { .. })));
    let message = error_of(result);
    assert!(message.starts_with("failed to read config file /nonexistent/ranvier.properties: "), "{message}");
}

/// Collects what `tracing` writes while `f` runs.
fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, logs)
}

#[test]
fn recognised_unsupported_keys_only_warn() {
    let file = temp_file(
        "axoniq.axonserver.accesscontrol.cache-ttl=30s\n\
         axoniq.axonserver.snapshot.bloom-index-fpp=0.01\n\
         logging.level.io.axoniq=DEBUG\n",
    );
    let env = MapEnv::new().with("AXONIQ_AXONSERVER_DEVMODE_ENABLED", "true");
    let flags = ["axoniq.axonserver.accesscontrol.token-dir=/x"];
    let (result, logs) = logs_of(|| load(&sources(Some(&file.path), &env, &flags)));
    assert_eq!(result.unwrap(), load_sets(&[]).unwrap());
    for name in [
        "axoniq.axonserver.accesscontrol.cache-ttl",
        "axoniq.axonserver.snapshot.bloom-index-fpp",
        "logging.level.io.axoniq",
        "AXONIQ_AXONSERVER_DEVMODE_ENABLED",
        "axoniq.axonserver.accesscontrol.token-dir",
    ] {
        assert!(
            logs.lines().any(|l| l.contains("WARN") && l.contains("ignored") && l.contains(name)),
            "no warning for {name} in:\n{logs}"
        );
    }
}

#[test]
fn fqdn_hostname_splits_into_host_and_domain() {
    let env = MapEnv::new();
    let mut system = sources(None, &env, &[]);
    system.system_hostname = "node1.cluster.example.com".into();
    let node = load(&system).unwrap().node;
    assert_eq!((node.hostname.as_str(), node.domain.as_deref()), ("node1", Some("cluster.example.com")));
    assert_eq!(node.name, "node1");
    assert_eq!(
        (node.internal_hostname.as_str(), node.internal_domain.as_deref()),
        ("node1", Some("cluster.example.com"))
    );

    let node = load_sets(&["axoniq.axonserver.hostname=a.b.c"]).unwrap().node;
    assert_eq!((node.hostname.as_str(), node.domain.as_deref()), ("a", Some("b.c")));

    let node = load_sets(&["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.domain=b.c"]).unwrap().node;
    assert_eq!((node.hostname.as_str(), node.domain.as_deref()), ("a", Some("b.c")));

    let node = load_sets(&["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.domain=other.org"]).unwrap().node;
    assert_eq!((node.hostname.as_str(), node.domain.as_deref()), ("a.b.c", Some("other.org")));

    let node = load_sets(&["axoniq.axonserver.hostname=10.1.2.3"]).unwrap().node;
    assert_eq!((node.hostname.as_str(), node.domain), ("10.1.2.3", None));
}

#[test]
fn internal_names_and_empty_values_derive_defaults() {
    let node = load_sets(&[
        "axoniq.axonserver.hostname=web",
        "axoniq.axonserver.domain=example.com",
        "axoniq.axonserver.internal-hostname=peer",
        "axoniq.axonserver.internal-domain=internal",
        "axoniq.axonserver.name=",
    ])
    .unwrap()
    .node;
    assert_eq!(node.name, "web");
    assert_eq!(node.internal_hostname, "peer");
    assert_eq!(node.internal_domain.as_deref(), Some("internal"));
    let message = error_of(load_sets(&["axoniq.axonserver.hostname=my host"]));
    assert!(message.contains("for axoniq.axonserver.hostname at --set: expected a host name"), "{message}");
}

#[test]
fn context_names_are_validated_and_deduplicated() {
    let config =
        load_sets(&["axoniq.axonserver.autocluster.contexts= orders ,default,, Billing@eu_1-x,orders"]).unwrap();
    assert_eq!(config.contexts, vec!["default", "orders", "Billing@eu_1-x"]);
    for bad in ["_admin", "1st", "a b", "ctx/1", "é"] {
        let set = format!("axoniq.axonserver.autocluster.contexts=ok,{bad}");
        let message = error_of(load_sets(&[&set]));
        assert!(message.contains("for axoniq.axonserver.autocluster.contexts at --set"), "{message}");
        assert!(message.contains(&format!("context name {bad:?}")), "{message}");
    }
}

#[test]
fn segment_size_bounds() {
    assert!(load_sets(&["axoniq.axonserver.event.segment-size=64KB", "ranvier.max-transaction-size=64KB"]).is_ok());
    assert!(load_sets(&["axoniq.axonserver.snapshot.segment-size=2GB"]).is_ok());
    for bad in ["65535", "2049MB", "0"] {
        let set = format!("axoniq.axonserver.snapshot.segment-size={bad}");
        assert!(error_of(load_sets(&[&set])).contains("expected a segment size between 64KB and 2GB"));
    }
}

#[test]
fn transaction_size_must_fit_in_a_segment() {
    let message = error_of(load_sets(&["ranvier.max-transaction-size=512MB"]));
    assert_eq!(
        message,
        "invalid value \"512MB\" for ranvier.max-transaction-size at --set: \
         must be at most axoniq.axonserver.event.segment-size (256MB)"
    );
    // The explicitly set key is blamed, not the one left at its default.
    let message = error_of(load_sets(&["axoniq.axonserver.event.segment-size=16MB"]));
    assert_eq!(
        message,
        "invalid value \"16MB\" for axoniq.axonserver.event.segment-size at --set: \
         must be at least ranvier.max-transaction-size (32MB)"
    );
    let message = error_of(load_sets(&["ranvier.append-in-flight-size=1MB"]));
    assert!(message.contains("must be at least ranvier.max-transaction-size"), "{message}");
}

#[test]
fn heartbeat_frequency_must_be_below_timeout_when_enabled() {
    let sets = ["axoniq.axonserver.client-heartbeat-frequency=5s"];
    assert!(load_sets(&sets).is_ok());
    let message = error_of(load_sets(&[sets[0], "axoniq.axonserver.heartbeat.enabled=TRUE"]));
    assert!(message.contains("for axoniq.axonserver.client-heartbeat-frequency"), "{message}");
    assert!(message.contains("must be less than axoniq.axonserver.client-heartbeat-timeout (5000)"), "{message}");
}

#[test]
fn ports_must_differ_unless_zero() {
    let message = error_of(load_sets(&["server.port=8124"]));
    assert_eq!(
        message,
        "invalid value \"8124\" for server.port at --set: must differ from axoniq.axonserver.port (8124)"
    );
    let zeros = ["axoniq.axonserver.port=0", "axoniq.axonserver.internal-port=0", "server.port=0"];
    let node = load_sets(&zeros).unwrap().node;
    assert_eq!((node.client_port, node.internal_port, node.http_port), (0, 0, 0));
}

#[test]
fn durations_sizes_and_booleans_in_context() {
    let config = load_sets(&[
        "axoniq.axonserver.new-permits-timeout=2m",
        "axoniq.axonserver.max-message-size=16mb",
        "axoniq.axonserver.check-sequence-nr-for-snapshots=False",
        "ranvier.index-cache-size=0",
        "axoniq.axonserver.snapshot.storage=/snapshots",
    ])
    .unwrap();
    assert_eq!(config.api.new_permits_timeout_ms, 120_000);
    assert_eq!(config.api.max_message_size_bytes, 16 << 20);
    assert!(!config.api.check_sequence_nr_for_snapshots);
    assert_eq!(config.storage.index_cache_bytes, 0);
    assert_eq!(config.storage.snapshots_dir, PathBuf::from("/snapshots"));
    for bad in
        ["ranvier.max-connections=0", "ranvier.append-batch-size=0", "axoniq.axonserver.client-heartbeat-timeout=0"]
    {
        assert!(error_of(load_sets(&[bad])).contains("at least 1"), "{bad}");
    }
    assert!(error_of(load_sets(&["axoniq.axonserver.heartbeat.enabled=yes"])).contains("expected true or false"));
    assert!(error_of(load_sets(&["axoniq.axonserver.event.storage="])).contains("expected a directory path"));
    assert!(error_of(load_sets(&["ranvier.bind-address=localhost"])).contains("expected an IP address"));
}

/// Client and internal addresses from host names with and without domains: a name that
/// already ends with its domain keeps it once (StatefulSet pods get fully qualified names).
#[test]
fn client_and_internal_addresses_table() {
    let pod = "ranvier-0.ranvier-internal.prod.svc.cluster.local";
    let pod_hostname = format!("axoniq.axonserver.hostname={pod}");
    let pod_internal = format!("axoniq.axonserver.internal-hostname={pod}");
    // (settings, expected client host, expected internal host, expected node name)
    let cases: Vec<(Vec<&str>, &str, &str, &str)> = vec![
        (vec![], "testhost", "testhost", "testhost"),
        (vec!["axoniq.axonserver.hostname=a.b.c"], "a.b.c", "a.b.c", "a"),
        (vec![&pod_hostname], pod, pod, "ranvier-0"),
        (vec![&pod_hostname, &pod_internal], pod, pod, "ranvier-0"),
        (vec![&pod_hostname, &pod_internal, "axoniq.axonserver.name=ranvier-0"], pod, pod, "ranvier-0"),
        (vec!["axoniq.axonserver.hostname=a", "axoniq.axonserver.domain=b.c"], "a.b.c", "a.b.c", "a"),
        (vec!["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.domain=b.c"], "a.b.c", "a.b.c", "a"),
        (vec!["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.domain=x.y"], "a.b.c.x.y", "a.b.c.x.y", "a.b.c"),
        (vec!["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.internal-hostname=i.b.c"], "a.b.c", "i.b.c", "a"),
        (vec!["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.internal-hostname=i"], "a.b.c", "i.b.c", "a"),
        (
            vec![
                "axoniq.axonserver.hostname=a.b.c",
                "axoniq.axonserver.internal-hostname=i.int.local",
                "axoniq.axonserver.internal-domain=int.local",
            ],
            "a.b.c",
            "i.int.local",
            "a",
        ),
        (
            vec![
                "axoniq.axonserver.hostname=a",
                "axoniq.axonserver.internal-hostname=i",
                "axoniq.axonserver.internal-domain=int.local",
            ],
            "a",
            "i.int.local",
            "a",
        ),
        (vec!["axoniq.axonserver.hostname=a.B.c.", "axoniq.axonserver.domain=b.C"], "a.b.C", "a.b.C", "a"),
        (
            vec!["axoniq.axonserver.hostname=10.1.2.3", "axoniq.axonserver.domain=b.c"],
            "10.1.2.3",
            "10.1.2.3",
            "10.1.2.3",
        ),
        (
            vec!["axoniq.axonserver.hostname=a.b.c", "axoniq.axonserver.internal-hostname=10.0.0.5"],
            "a.b.c",
            "10.0.0.5",
            "a",
        ),
    ];
    for (sets, client, internal, name) in cases {
        let node = load_sets(&sets).unwrap().node;
        assert_eq!(
            (node.client_host().as_str(), node.internal_host().as_str(), node.name.as_str()),
            (client, internal, name),
            "{sets:?}"
        );
    }
}

/// A pod's environment as a StatefulSet sets it: the first pod recognises itself in
/// `autocluster.first` in any spelling of its names, the others do not.
#[test]
fn a_node_recognises_itself_as_the_first_node_in_any_spelling() {
    let domain = "ranvier-internal.prod.svc.cluster.local";
    let pod_env = |pod: &str| {
        MapEnv::new()
            .with("AXONIQ_AXONSERVER_NAME", pod)
            .with("AXONIQ_AXONSERVER_HOSTNAME", format!("{pod}.{domain}"))
            .with("AXONIQ_AXONSERVER_INTERNAL_HOSTNAME", format!("{pod}.{domain}"))
            .with("AXONIQ_AXONSERVER_AUTOCLUSTER_FIRST", format!("ranvier-0.{domain}:8224"))
            .with("AXONIQ_AXONSERVER_ACCESSCONTROL_INTERNAL_TOKEN", "pod-secret")
    };
    let env = pod_env("ranvier-0");
    let config = load(&sources(None, &env, &[])).unwrap();
    let first = config.cluster.autocluster_first.clone().unwrap();
    assert!(config.cluster.enabled);
    assert_eq!(config.node.internal_host(), format!("ranvier-0.{domain}"));
    assert!(config.node.is_named_by(&first, 8224), "{first}");
    let upper = format!("RANVIER-0.{domain}.:8224").to_uppercase();
    let spellings = ["ranvier-0", "ranvier-0:8224", &format!("ranvier-0.{domain}"), &upper];
    for spelling in spellings {
        assert!(config.node.is_named_by(spelling, 8224), "{spelling}");
    }
    for other in ["ranvier-1", &format!("ranvier-1.{domain}:8224"), "ranvier-0:8225", "ranvier-0:x", "ranvier"] {
        assert!(!config.node.is_named_by(other, 8224), "{other}");
    }
    let env = pod_env("ranvier-1");
    let config = load(&sources(None, &env, &[])).unwrap();
    assert!(!config.node.is_named_by(&first, 8224), "{first}");
    // A node bound to another internal port is not the one named with 8224.
    let env = pod_env("ranvier-0");
    let config = load(&sources(None, &env, &["axoniq.axonserver.internal-port=9224"])).unwrap();
    assert!(!config.node.is_named_by(&first, 9224));
    assert!(config.node.is_named_by("ranvier-0:9224", 9224));
}

#[test]
fn access_control_needs_both_tokens_and_tls_cannot_be_asked_for() {
    let on = "axoniq.axonserver.accesscontrol.enabled=true";
    let message = error_of(load_sets(&[on, "axoniq.axonserver.accesscontrol.admin-token=a"]));
    assert!(message.contains("axoniq.axonserver.accesscontrol.token"), "{message}");
    assert!(message.contains("must be set when axoniq.axonserver.accesscontrol.enabled is true"), "{message}");
    let message = error_of(load_sets(&[on, "axoniq.axonserver.accesscontrol.token=c"]));
    assert!(message.contains("axoniq.axonserver.accesscontrol.admin-token"), "{message}");
    let config = load_sets(&[
        on,
        "axoniq.axonserver.accesscontrol.token=c",
        "axoniq.axonserver.accesscontrol.admin-token=a",
        "ranvier.accesscontrol.open-probes=false",
    ])
    .unwrap();
    let expected = AccessConfig {
        enabled: true,
        token: Some("c".into()),
        admin_token: Some("a".into()),
        open_probes: false,
        system_token_file: None,
    };
    assert_eq!(config.access, expected);
    // Tokens never reach the start-up log.
    let logged = config.effective();
    assert!(logged.iter().all(|(_, value)| value != "c" && value != "a"), "{logged:?}");
}

#[test]
fn tls_settings_are_read_with_axon_defaults_and_missing_files_stop_the_start() {
    // Without files, switching TLS on names the missing key.
    let message = error_of(load_sets(&["axoniq.axonserver.ssl.enabled=true"]));
    assert!(message.contains("axoniq.axonserver.ssl.cert-chain-file") && message.contains("must be set"), "{message}");
    let message = error_of(load_sets(&["server.ssl.enabled=true"]));
    assert!(message.contains("server.ssl.certificate") && message.contains("must be set"), "{message}");

    // The internal port and the HTTP port take the client port's files
    // unless given their own.
    let files =
        ["axoniq.axonserver.ssl.cert-chain-file=/tls/chain.pem", "axoniq.axonserver.ssl.private-key-file=/tls/key.pem"];
    let config =
        load_sets(&[files[0], files[1], "axoniq.axonserver.ssl.enabled=true", "server.ssl.enabled=true"]).unwrap();
    let client = CertFiles { chain: "/tls/chain.pem".into(), key: "/tls/key.pem".into() };
    assert_eq!(config.tls.client.as_ref(), Some(&client));
    assert_eq!(config.tls.internal.as_ref(), Some(&client));
    assert_eq!(config.tls.http.as_ref(), Some(&client));
    assert_eq!(config.tls.verification, Verification::CertificateAndHostName);
    assert_eq!(config.tls.reload_interval_ms, 5_000);
    // Fed back, the logged settings give the same configuration.
    let logged: Vec<String> = config.effective().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let logged: Vec<&str> = logged.iter().map(String::as_str).collect();
    assert_eq!(load_sets(&logged).unwrap(), config);

    let config = load_sets(&[
        files[0],
        files[1],
        "axoniq.axonserver.ssl.enabled=true",
        "axoniq.axonserver.ssl.internal-cert-chain-file=/tls/internal.pem",
        "axoniq.axonserver.ssl.trust-manager-verification=certificate_only_verification",
        "ranvier.ssl.reload-interval=200ms",
    ])
    .unwrap();
    let internal = config.tls.internal.unwrap();
    assert_eq!((internal.chain.to_str(), internal.key.to_str()), (Some("/tls/internal.pem"), Some("/tls/key.pem")));
    assert_eq!(config.tls.verification, Verification::CertificateOnly);
    assert_eq!(config.tls.reload_interval_ms, 200);
    assert_eq!(config.tls.http, None);
    let plain_inside = load_sets(&[
        files[0],
        files[1],
        "axoniq.axonserver.ssl.enabled=true",
        "axoniq.axonserver.ssl.enable-ssl-for-internal=false",
    ])
    .unwrap();
    assert_eq!(plain_inside.tls.internal, None);

    // A clustered node must say what it trusts when it calls other nodes.
    let clustered =
        ["axoniq.axonserver.autocluster.first=node-1", "axoniq.axonserver.accesscontrol.internal-token=t0k"];
    let message =
        error_of(load_sets(&[files[0], files[1], "axoniq.axonserver.ssl.enabled=true", clustered[0], clustered[1]]));
    assert!(message.contains("internal-trust-manager-file"), "{message}");
    let message = error_of(load_sets(&["axoniq.axonserver.ssl.trust-manager-verification=TRUST_ME"]));
    assert!(message.contains("CERTIFICATE_ONLY_VERIFICATION"), "{message}");
}

#[test]
fn security_settings_ranvier_cannot_honour_stop_the_start() {
    for refused in [
        "axoniq.axonserver.accesscontrol.jwt.secret=x",
        "server.ssl.key-store=/keystore.p12",
        "server.ssl.keyStorePassword=x",
        "axoniq.axonserver.accesscontrol.default-token=x",
    ] {
        let message = error_of(load_sets(&[refused]));
        assert!(message.contains("not supported") && message.contains("remove it"), "{refused}: {message}");
    }
    let env = MapEnv::new().with("AXONIQ_AXONSERVER_ACCESSCONTROL_JWT_SECRET", "x");
    let message = error_of(load(&sources(None, &env, &[])));
    assert!(message.contains("AXONIQ_AXONSERVER_ACCESSCONTROL_JWT_SECRET") && message.contains("JWT"), "{message}");
}
