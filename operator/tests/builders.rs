//! The objects a RanvierCluster becomes, checked field by field for the
//! example manifest, and the spec rules as a table.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Container;
use ranvier_crds::RanvierCluster;
use ranvier_operator::builders::config;
use ranvier_operator::render::render;
use ranvier_operator::validate::{ValidCluster, validate};

const EXAMPLE: &str = include_str!("../../examples/cluster.yaml");

fn example() -> RanvierCluster {
    serde_saphyr::from_str(EXAMPLE).unwrap()
}

fn valid(cluster: &RanvierCluster) -> ValidCluster {
    validate(cluster, "shop").unwrap()
}

fn env<'a>(container: &'a Container, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    container.env.as_ref().unwrap().iter().find(|e| e.name == name).expect(name)
}

#[test]
fn the_example_becomes_a_statefulset_whose_pods_are_the_nodes() {
    let cluster = valid(&example());
    let rendered = render(&cluster, b"secret");
    assert_eq!(rendered.statefulsets.len(), 1);
    let set = &rendered.statefulsets[0];
    assert_eq!(set.metadata.name.as_deref(), Some("demo-node"));
    assert_eq!(set.metadata.namespace.as_deref(), Some("shop"));
    let spec = set.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-internal"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"), "a whole-cluster restart needs every pod");
    let selector = spec.selector.match_labels.as_ref().unwrap();
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(selector.iter().all(|(k, v)| template_labels.get(k) == Some(v)), "the selector must match the pods");
    assert_eq!(selector.get("ranvier.io/node-set").map(String::as_str), Some("node"));

    let pod = spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("ranvier:test"));
    assert_eq!(container.args.as_ref().unwrap(), &["--config", "/config/axonserver.properties"]);
    // The node's name is the pod's; its host names the pod's DNS name.
    assert_eq!(
        env(container, "POD_NAME").value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path,
        "metadata.name"
    );
    assert_eq!(env(container, "AXONIQ_AXONSERVER_NAME").value.as_deref(), Some("$(POD_NAME)"));
    let dns = "$(POD_NAME).demo-internal.$(POD_NAMESPACE).svc.cluster.local";
    assert_eq!(env(container, "AXONIQ_AXONSERVER_HOSTNAME").value.as_deref(), Some(dns));
    assert_eq!(env(container, "AXONIQ_AXONSERVER_INTERNAL_HOSTNAME").value.as_deref(), Some(dns));
    let secret_of = |name: &str| {
        let source = env(container, name).value_from.clone().unwrap().secret_key_ref.unwrap();
        (source.name, source.key)
    };
    let secret = |name: &str, key: &str| (name.to_owned(), key.to_owned());
    assert_eq!(
        secret_of("AXONIQ_AXONSERVER_ACCESSCONTROL_INTERNAL_TOKEN"),
        secret("demo-internal-token", "internal-token")
    );
    // The example has access control on: both static tokens from the
    // operator's Secret.
    assert_eq!(env(container, "AXONIQ_AXONSERVER_ACCESSCONTROL_ENABLED").value.as_deref(), Some("true"));
    assert_eq!(secret_of("AXONIQ_AXONSERVER_ACCESSCONTROL_TOKEN"), secret("demo-access-tokens", "token"));
    assert_eq!(secret_of("AXONIQ_AXONSERVER_ACCESSCONTROL_ADMIN_TOKEN"), secret("demo-access-tokens", "admin-token"));
    // Probes: liveness on /health, readiness on /ready (cluster membership).
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe.as_ref().unwrap().http_get.as_ref().unwrap().path.clone().unwrap()
    };
    assert_eq!(path(&container.liveness_probe), "/health");
    assert_eq!(path(&container.readiness_probe), "/ready");
    let ports: Vec<i32> = container.ports.as_ref().unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, [8124, 8024, 8224]);
    // Volumes: the ConfigMap, and a claim each for events and the log.
    let mounts: Vec<(&str, &str)> =
        container.volume_mounts.as_ref().unwrap().iter().map(|m| (m.name.as_str(), m.mount_path.as_str())).collect();
    assert_eq!(mounts, [("config", "/config"), ("events", "/data"), ("log", "/log")]);
    let claims: Vec<(String, String)> = spec
        .volume_claim_templates
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| {
            let size =
                c.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0.clone();
            (c.metadata.name.clone().unwrap(), size)
        })
        .collect();
    assert_eq!(claims, [("events".to_owned(), "1Gi".to_owned()), ("log".to_owned(), "256Mi".to_owned())]);
    // Pods of the set prefer different Kubernetes nodes.
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    let term = &anti.preferred_during_scheduling_ignored_during_execution.as_ref().unwrap()[0];
    assert_eq!(term.pod_affinity_term.topology_key, "kubernetes.io/hostname");
}

#[test]
fn the_config_map_names_pod_zero_as_the_first_node_and_passes_properties_through() {
    let cluster = valid(&example());
    let rendered = render(&cluster, b"");
    let text = &rendered.config_map.data.as_ref().unwrap()["axonserver.properties"];
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "axoniq.axonserver.autocluster.first=demo-node-0.demo-internal.shop.svc.cluster.local:8224",
        "axoniq.axonserver.autocluster.contexts=orders",
        "axoniq.axonserver.port=8124",
        "server.port=8024",
        "axoniq.axonserver.internal-port=8224",
        "axoniq.axonserver.event.storage=/data/events",
        "axoniq.axonserver.replication.log-storage-folder=/log",
        "axoniq.axonserver.replication.min-election-timeout=1000",
    ] {
        assert!(lines.contains(&expected), "{expected} missing from:\n{text}");
    }
    assert_eq!(rendered.config_map.metadata.name.as_deref(), Some("demo-config"));
}

#[test]
fn services_publish_unready_peers_internally_and_ready_nodes_to_clients() {
    let rendered = render(&valid(&example()), b"");
    let headless = rendered.headless.spec.as_ref().unwrap();
    assert_eq!(rendered.headless.metadata.name.as_deref(), Some("demo-internal"));
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let client = rendered.client.spec.as_ref().unwrap();
    assert_eq!(rendered.client.metadata.name.as_deref(), Some("demo"));
    assert_ne!(client.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = client.ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [8124, 8024]);
    assert_eq!(client.selector, headless.selector);
}

#[test]
fn one_node_at_most_is_disrupted_and_a_single_node_gets_no_budget() {
    let rendered = render(&valid(&example()), b"");
    let budget = rendered.disruption_budget.unwrap();
    let spec = budget.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
    let mut single = example();
    single.spec.node_sets[0].replicas = 1;
    assert!(render(&valid(&single), b"").disruption_budget.is_none(), "a drain must still work with one node");
}

#[test]
fn a_changed_configuration_or_token_changes_the_pod_template_hash() {
    let hash = |cluster: &RanvierCluster, token: &[u8]| {
        let rendered = render(&valid(cluster), token);
        let template = &rendered.statefulsets[0].spec.as_ref().unwrap().template;
        template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["ranvier.io/config-hash"].clone()
    };
    let base = example();
    assert_eq!(hash(&base, b"a"), hash(&base, b"a"), "the same input gives the same hash");
    assert_ne!(hash(&base, b"a"), hash(&base, b"b"), "a new token rolls the pods");
    let mut changed = example();
    changed.spec.properties.insert("axoniq.axonserver.event.segment-size".into(), "64MB".into());
    assert_ne!(hash(&base, b"a"), hash(&changed, b"a"), "a new property rolls the pods");
    // Length prefixes: moving a byte between the parts changes the hash.
    assert_ne!(config::config_hash("ab", b"c"), config::config_hash("a", b"bc"));
}

#[test]
fn invalid_specs_are_refused_with_every_reason() {
    let with = |change: &dyn Fn(&mut RanvierCluster)| {
        let mut cluster = example();
        change(&mut cluster);
        validate(&cluster, "shop").err().map(|e| e.to_string())
    };
    type Change = Box<dyn Fn(&mut RanvierCluster)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        ("no node set", Box::new(|c| c.spec.node_sets.clear()), "at least one node set"),
        (
            "duplicate set",
            Box::new(|c| {
                let s = c.spec.node_sets[0].clone();
                c.spec.node_sets.push(s)
            }),
            "used twice",
        ),
        ("bad set name", Box::new(|c| c.spec.node_sets[0].name = "Node_A".into()), "DNS label"),
        ("empty first set", Box::new(|c| c.spec.node_sets[0].replicas = 0), "founds the cluster"),
        ("bad size", Box::new(|c| c.spec.node_sets[0].events_storage.size = "ten gigs".into()), "not a quantity"),
        (
            "reserved key",
            Box::new(|c| {
                c.spec.properties.insert("axoniq.axonserver.name".into(), "x".into());
            }),
            "set by the operator",
        ),
        (
            "access control",
            Box::new(|c| {
                c.spec.properties.insert("axoniq.axonserver.accesscontrol.enabled".into(), "true".into());
            }),
            "use spec.accessControl",
        ),
        (
            "an admin token in another spelling",
            Box::new(|c| {
                c.spec.properties.insert("axoniq.axonserver.accesscontrol.adminToken".into(), "x".into());
            }),
            "use spec.accessControl",
        ),
        (
            "TLS",
            Box::new(|c| {
                c.spec.properties.insert("axoniq.axonserver.ssl.enabled".into(), "true".into());
            }),
            "TLS is not supported by the operator yet",
        ),
        ("bad context", Box::new(|c| c.spec.contexts.push("_admin".into())), "not allowed"),
        ("long name", Box::new(|c| c.metadata.name = Some("a-very-long-cluster-name-indeed".into())), "at most 24"),
        ("no image", Box::new(|c| c.spec.image = " ".into()), "image"),
        ("bad backup claim", Box::new(|c| c.spec.bootstrap = Some(from_backup("Backups!", None))), "not a claim name"),
        (
            "bad backup folder",
            Box::new(|c| c.spec.bootstrap = Some(from_backup("backups", Some("../etc")))),
            "not a backup folder",
        ),
    ];
    for (case, change, reason) in cases {
        let message = with(&*change).unwrap_or_else(|| panic!("{case}: accepted"));
        assert!(message.contains(reason), "{case}: {message}");
    }
    assert_eq!(with(&|_| {}), None, "the example is valid");
}

#[test]
fn render_prints_every_object_with_its_kind() {
    let yaml = render(&valid(&example()), b"").to_yaml().unwrap();
    let kinds: Vec<&str> = yaml.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget"]);
    assert_eq!(yaml.matches("---\n").count(), 5);
}

#[test]
fn access_control_takes_a_named_secret_or_none_at_all() {
    let mut cluster = example();
    cluster.spec.access_control =
        Some(ranvier_crds::cluster::AccessControl { token_secret: Some("shop-tokens".into()) });
    let rendered = render(&valid(&cluster), b"secret");
    let container = &rendered.statefulsets[0].spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let source = env(container, "AXONIQ_AXONSERVER_ACCESSCONTROL_ADMIN_TOKEN").value_from.clone().unwrap();
    assert_eq!(source.secret_key_ref.unwrap().name, "shop-tokens");
    cluster.spec.access_control = None;
    let rendered = render(&valid(&cluster), b"secret");
    let container = &rendered.statefulsets[0].spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    let names: Vec<&str> = container.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.contains("ACCESSCONTROL_ENABLED") || n.ends_with("ACCESSCONTROL_TOKEN")),
        "{names:?}"
    );
}

fn from_backup(claim: &str, backup: Option<&str>) -> ranvier_crds::cluster::Bootstrap {
    ranvier_crds::cluster::Bootstrap {
        from_backup: Some(ranvier_crds::cluster::FromBackup {
            volume_claim: claim.into(),
            backup: backup.map(Into::into),
        }),
    }
}

fn backup_target(contexts: &[&str], incremental: bool) -> ranvier_crds::backup::BackupTarget {
    ranvier_crds::backup::BackupTarget {
        cluster: "demo".into(),
        volume_claim: "backups".into(),
        contexts: contexts.iter().map(|c| (*c).to_owned()).collect(),
        incremental,
    }
}

/// The one container of a Job's pods, and the pod.
fn run_container(spec: &k8s_openapi::api::batch::v1::JobSpec) -> (Container, k8s_openapi::api::core::v1::PodSpec) {
    let pod = spec.template.spec.clone().unwrap();
    (pod.containers[0].clone(), pod)
}

#[test]
fn a_backup_job_runs_ranvierctl_against_the_first_ready_node_with_the_admin_token_from_a_file() {
    use ranvier_operator::builders::backup::backup_job;
    let cluster = valid(&example());
    let job = backup_job(&cluster, "nightly-1", &backup_target(&["orders"], true), None);
    assert_eq!(job.metadata.name.as_deref(), Some("nightly-1-backup"));
    assert_eq!(job.metadata.labels.as_ref().unwrap().get("ranvier.io/backup").map(String::as_str), Some("nightly-1"));
    let spec = job.spec.unwrap();
    let (container, pod) = run_container(&spec);
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(container.image.as_deref(), Some("ranvier:test"), "the cluster's own image holds ranvierctl");
    assert_eq!(container.command.as_deref(), Some(&["/ranvierctl".to_owned()][..]));
    let args = container.args.unwrap().join(" ");
    // Every pod of the first node set, pod 0 first: one down does not fail the run.
    let node = |n: u32| format!("http://demo-node-{n}.demo-internal.shop.svc.cluster.local:8024");
    let server = format!("-S {},{},{}", node(0), node(1), node(2));
    let server = server.as_str();
    for part in [
        "backup --target /backups",
        server,
        "--summary /dev/termination-log",
        "-c orders",
        "--incremental",
        "--token-file /secrets/admin-token",
    ] {
        assert!(args.contains(part), "{part:?} missing from {args}");
    }
    assert!(!args.contains("--keep"), "a one-off backup prunes nothing: {args}");
    assert_eq!(container.termination_message_policy.as_deref(), Some("FallbackToLogsOnError"));
    let volumes = pod.volumes.unwrap();
    let claim = volumes.iter().find_map(|v| v.persistent_volume_claim.clone()).unwrap();
    assert_eq!((claim.claim_name.as_str(), claim.read_only), ("backups", Some(false)));
    let secret = volumes.iter().find_map(|v| v.secret.clone()).unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("demo-access-tokens"));
    assert_eq!(secret.items.unwrap()[0].key, "admin-token", "only the admin token is mounted");
    assert!(spec.active_deadline_seconds.is_some(), "a hung run must end");

    // Without access control: no token at all.
    let mut open = example();
    open.spec.access_control = None;
    let job = backup_job(&valid(&open), "nightly-1", &backup_target(&[], false), None);
    let (container, pod) = run_container(job.spec.as_ref().unwrap());
    assert!(!container.args.unwrap().iter().any(|a| a.contains("token")));
    assert!(pod.volumes.unwrap().iter().all(|v| v.secret.is_none()));
}

#[test]
fn a_schedule_becomes_a_cron_job_one_run_at_a_time_with_bounded_catch_up_pruning_to_keep() {
    use ranvier_operator::builders::backup::{STARTING_DEADLINE_SECONDS, backup_cron_job};
    let cluster = valid(&example());
    let spec = ranvier_crds::BackupScheduleSpec {
        target: backup_target(&[], false),
        schedule: "*/5 * * * *".into(),
        time_zone: None,
        suspend: true,
        keep: 3,
    };
    let cron = backup_cron_job(&cluster, "every-5", &spec, None);
    assert_eq!(cron.metadata.name.as_deref(), Some("every-5-backup"));
    let cron_spec = cron.spec.unwrap();
    assert_eq!(cron_spec.schedule, "*/5 * * * *");
    assert_eq!(cron_spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(cron_spec.starting_deadline_seconds, Some(STARTING_DEADLINE_SECONDS));
    assert_eq!(cron_spec.suspend, Some(true));
    let template = cron_spec.job_template;
    let labels = template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        labels.get("ranvier.io/backup-schedule").map(String::as_str),
        Some("every-5"),
        "its Jobs are found by it"
    );
    let (container, _) = run_container(template.spec.as_ref().unwrap());
    assert!(container.args.unwrap().join(" ").contains("--keep 3"));
}

#[test]
fn a_cluster_from_a_backup_first_fills_its_founding_node_s_claim_with_a_restore_job() {
    use ranvier_operator::builders::backup::restore;
    let mut cluster = example();
    cluster.spec.bootstrap = Some(from_backup("backups", Some("backup-1700000000000")));
    let cluster = valid(&cluster);
    let (claim, job) = restore(&cluster, "backups", Some("backup-1700000000000")).unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("events-demo-node-0"), "the name its StatefulSet claims");
    let template = &render(&cluster, b"").statefulsets[0].spec.clone().unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(claim.spec, template.spec, "the claim the StatefulSet would have made");
    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(0), "a half-done restore is not tried again over itself");
    let (container, pod) = run_container(&spec);
    let args = container.args.unwrap().join(" ");
    assert_eq!(args, "restore --from /backups/backup-1700000000000 --data-dir /data/events");
    let claims: Vec<(String, Option<bool>)> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim)
        .map(|c| (c.claim_name, c.read_only))
        .collect();
    assert_eq!(claims, [("backups".to_owned(), Some(true)), ("events-demo-node-0".to_owned(), Some(false))]);
    let (_, newest) = restore(&cluster, "backups", None).unwrap();
    let (container, _) = run_container(newest.spec.as_ref().unwrap());
    assert!(container.args.unwrap().join(" ").contains("--from /backups --data-dir"), "the newest in the claim");
}

#[test]
fn backup_resources_are_checked_before_anything_runs() {
    use ranvier_operator::validate::{backup_problems, is_backup_name, is_cron};
    assert!(backup_problems("Backup", "nightly", &backup_target(&["orders"], false)).is_empty());
    let long = "b".repeat(50);
    assert!(backup_problems("BackupSchedule", &long, &backup_target(&[], false))[0].contains("at most 45"));
    let mut bad = backup_target(&["a,b"], false);
    bad.volume_claim = "No Such".into();
    let problems = backup_problems("Backup", "nightly", &bad).join("; ");
    assert!(problems.contains("not a claim name") && problems.contains("not allowed"), "{problems}");
    for good in ["* * * * *", "0 3 * * 1-5", "*/15 2,14 * * *", "@daily"] {
        assert!(is_cron(good), "{good}");
    }
    for wrong in ["* * * *", "@sometimes", "0 3 * * * *", "rm -rf /"] {
        assert!(!is_cron(wrong), "{wrong}");
    }
    assert!(is_backup_name("backup-1700000000000"));
    assert!(!is_backup_name("backup-") && !is_backup_name("../backup-1") && !is_backup_name("backup-1/.."));
}
