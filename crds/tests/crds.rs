//! The generated CRDs: the committed YAML matches the Rust types, and the
//! schema carries what users see and what the API server enforces.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use ranvier_crds::{RanvierCluster, ReplicationGroup, crd_yaml, crd_yaml_without_cel, crds};
use serde_json::Value;

/// The committed copies (the crate's, and the operator chart's, with and
/// without CEL rules) and what each must hold.
fn committed() -> [(&'static str, String); 3] {
    let with_cel = crd_yaml().unwrap();
    let without_cel = crd_yaml_without_cel().unwrap();
    [
        (concat!(env!("CARGO_MANIFEST_DIR"), "/yaml/crds.yaml"), with_cel.clone()),
        (concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ranvier-operator/files/crds.yaml"), with_cel),
        (concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/ranvier-operator/files/crds-without-cel.yaml"), without_cel),
    ]
}

/// Fails when a committed copy of the CRDs is not what the types generate;
/// `RANVIER_UPDATE_CRDS=1` (what `make crds` sets) writes them instead.
#[test]
fn committed_crd_yaml_matches_the_types() {
    for (path, generated) in committed() {
        if std::env::var("RANVIER_UPDATE_CRDS").as_deref() == Ok("1") {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == generated, "{path} is out of date: run `make crds` and commit it");
    }
}

#[test]
fn the_copy_for_old_api_servers_has_no_cel_and_nothing_else_removed() {
    let with = crd_yaml().unwrap();
    let without = crd_yaml_without_cel().unwrap();
    assert!(with.contains("x-kubernetes-validations") && !without.contains("x-kubernetes-validations"));
    assert!(without.contains("How many nodes") && without.contains("PASSIVE_BACKUP"));
}

fn crd_json<K: kube::CustomResourceExt>() -> Value {
    serde_json::to_value(K::crd()).unwrap()
}

fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

#[test]
fn the_backup_resources_have_their_status_columns_an_immutable_backup_spec_and_a_default_keep() {
    assert_eq!(crds().len(), 4);
    for (crd, kind, column) in [
        (crd_json::<ranvier_crds::Backup>(), "Backup", "Phase"),
        (crd_json::<ranvier_crds::BackupSchedule>(), "BackupSchedule", "Last backup"),
    ] {
        assert_eq!(
            (crd["spec"]["group"].as_str(), crd["spec"]["names"]["kind"].as_str()),
            (Some("ranvier.io"), Some(kind))
        );
        let version = &crd["spec"]["versions"][0];
        assert!(version["subresources"]["status"].is_object(), "{kind} has no status subresource");
        let columns: Vec<&str> =
            version["additionalPrinterColumns"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert!(columns.contains(&column) && columns.contains(&"Cluster"), "{kind}: {columns:?}");
    }
    let backup = crd_json::<ranvier_crds::Backup>().to_string();
    assert!(backup.contains("self == oldSelf") && backup.contains("a Backup's spec cannot change"), "{backup}");
    let schedule: ranvier_crds::BackupSchedule = serde_saphyr::from_str(
        "apiVersion: ranvier.io/v1alpha1\nkind: BackupSchedule\nmetadata: {name: nightly}\n\
         spec: {cluster: demo, volumeClaim: backups, schedule: '0 3 * * *'}\n",
    )
    .unwrap();
    assert_eq!((schedule.spec.keep, schedule.spec.suspend, schedule.spec.target.incremental), (7, false, false));
}

#[test]
fn both_resources_have_a_status_subresource_printer_columns_and_group_version() {
    for (crd, kind) in
        [(crd_json::<RanvierCluster>(), "RanvierCluster"), (crd_json::<ReplicationGroup>(), "ReplicationGroup")]
    {
        assert_eq!(crd["spec"]["group"], "ranvier.io");
        assert_eq!(crd["spec"]["names"]["kind"], kind);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object(), "{kind} has no status subresource");
        let columns: Vec<&str> =
            version["additionalPrinterColumns"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert!(columns.contains(&"Available") && columns.contains(&"Age"), "{kind}: {columns:?}");
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(status["observedGeneration"].is_object() && status["conditions"].is_object(), "{kind}: {status}");
    }
}

#[test]
fn field_docs_reach_kubectl_explain() {
    let crd = crd_json::<RanvierCluster>();
    let spec = spec_schema(&crd);
    let image = spec["properties"]["image"]["description"].as_str().unwrap();
    assert!(image.contains("container image"), "{image}");
    let node_set = &spec["properties"]["nodeSets"]["items"]["properties"];
    assert!(node_set["replicas"]["description"].as_str().unwrap().contains("How many nodes"));
    let crd = crd_json::<ReplicationGroup>();
    let role = &spec_schema(&crd)["properties"]["members"]["items"]["properties"]["role"];
    assert!(role["description"].as_str().unwrap().contains("PASSIVE_BACKUP"), "{role}");
}

#[test]
fn roles_are_an_enum_and_static_rules_are_cel() {
    let crd = crd_json::<ReplicationGroup>();
    let spec = spec_schema(&crd);
    let role = &spec["properties"]["members"]["items"]["properties"]["role"];
    let allowed: Vec<&str> = role["enum"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(allowed, ["PRIMARY", "ACTIVE_BACKUP", "PASSIVE_BACKUP", "SECONDARY", "MESSAGING_ONLY"]);
    let text = serde_json::to_string(&crd).unwrap();
    for rule in ["self.exists(m, m.role == 'PRIMARY')", "has(self.nodeSet) != has(self.node)", "self == oldSelf"] {
        assert!(text.contains(rule), "ReplicationGroup lacks the CEL rule {rule}");
    }
    let text = serde_json::to_string(&crd_json::<RanvierCluster>()).unwrap();
    assert!(text.contains("the storage class cannot be changed"), "no immutable storage class rule");
    assert!(text.contains("node set names must be unique"));
}

#[test]
fn a_minimal_cluster_manifest_reads_with_its_defaults() {
    let yaml = "apiVersion: ranvier.io/v1alpha1\nkind: RanvierCluster\nmetadata:\n  name: demo\nspec:\n  image: ranvier:test\n  nodeSets:\n  - name: node\n    eventsStorage:\n      size: 1Gi\n";
    let cluster: RanvierCluster = serde_saphyr::from_str(yaml).unwrap();
    let set = &cluster.spec.node_sets[0];
    assert_eq!((set.replicas, set.log_storage.size.as_str()), (3, "1Gi"));
    assert_eq!((cluster.spec.ports.client, cluster.spec.ports.http, cluster.spec.ports.internal), (8124, 8024, 8224));
    assert!(cluster.spec.internal_token.is_none() && cluster.spec.contexts.is_empty());
}
