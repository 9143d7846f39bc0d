//! The Helm charts: `helm lint` and `helm template` of both, with default
//! and example values; what they render is what the operator expects (the
//! CRDs it was built with, a RanvierCluster that passes its validation,
//! RBAC that allows every call the controller makes).
//!
//! helm comes from `scripts/install-helm.sh` (`.ci/run` runs it); without
//! it the test fails, unless RANVIER_SKIP_HELM_TESTS=1 says to skip it.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ranvier_crds::{RanvierCluster, ReplicationGroup};
use ranvier_operator::validate::validate;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> Option<PathBuf> {
    let cache = std::env::var("RANVIER_TOOLS").unwrap_or_else(|_| "/var/cache/ranvier-tools".into());
    let candidates = [Path::new(&cache).join("helm"), PathBuf::from("helm")];
    if let Some(found) =
        candidates.into_iter().find(|h| Command::new(h).arg("version").output().is_ok_and(|o| o.status.success()))
    {
        return Some(found);
    }
    if std::env::var("RANVIER_SKIP_HELM_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: chart tests (no helm: scripts/install-helm.sh)");
        return None;
    }
    panic!("helm is required: run scripts/install-helm.sh");
}

fn run(helm: &Path, args: &[&str]) -> String {
    let output = Command::new(helm).args(args).current_dir(root()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "helm {args:?} failed:\n{text}\n{}", String::from_utf8_lossy(&output.stderr));
    text
}

/// The documents of a rendered chart.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

/// Where two JSON values first differ (numbers compared by value: a YAML
/// round trip may write 0.0 as 0), or `None`.
fn first_difference(left: &Value, right: &Value, path: &str) -> Option<String> {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    l.get(k).unwrap_or(&Value::Null),
                    r.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(l), Value::Array(r)) if l.len() == r.len() => {
            l.iter().zip(r).enumerate().find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]")))
        }
        (Value::Number(l), Value::Number(r)) if l.as_f64() == r.as_f64() => None,
        _ if left == right => None,
        _ => Some(format!("{path}: {left} vs {right}")),
    }
}

#[test]
fn both_charts_lint_and_render_what_the_operator_expects() {
    let Some(helm) = helm() else { return };
    for args in [
        vec!["lint", "charts/ranvier-operator"],
        vec!["lint", "charts/ranvier-operator", "--set", "watchNamespace=shop"],
        vec!["lint", "charts/ranvier-cluster"],
        vec!["lint", "charts/ranvier-cluster", "-f", "examples/cluster-values.yaml"],
    ] {
        run(&helm, &args);
    }

    // The operator chart: the CRDs the operator was built with, kept on
    // uninstall; RBAC for every call of the controller.
    let operator = documents(&run(&helm, &["template", "op", "charts/ranvier-operator", "-n", "ops"]));
    let kinds: Vec<&str> = operator.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment"
        ]
    );
    for crd in ranvier_crds::crds() {
        let mut expected = serde_json::to_value(&crd).unwrap();
        let name = crd.metadata.name.clone().unwrap();
        let rendered = operator.iter().find(|d| d["metadata"]["name"] == name.as_str()).unwrap();
        assert_eq!(rendered["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
        expected["metadata"]["annotations"] = rendered["metadata"]["annotations"].clone();
        let difference = first_difference(&rendered["spec"], &expected["spec"], "spec");
        assert!(difference.is_none(), "the chart's {name} differs from the types at {difference:?}");
    }
    // Before 1.25 the API server's schema knows no CEL, and helm refuses
    // fields it does not know: the chart installs the copy without CEL.
    let old = run(&helm, &["template", "op", "charts/ranvier-operator", "--kube-version", "1.20.2"]);
    assert!(old.contains("CustomResourceDefinition") && !old.contains("x-kubernetes-validations"));
    let role = operator.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    for (group, resource, verb) in [
        ("ranvier.io", "ranvierclusters", "watch"),
        ("ranvier.io", "ranvierclusters/status", "patch"),
        ("apps", "statefulsets", "patch"),
        ("", "configmaps", "patch"),
        ("", "services", "patch"),
        ("", "secrets", "create"),
        ("policy", "poddisruptionbudgets", "patch"),
        ("events.k8s.io", "events", "create"),
        ("ranvier.io", "backups", "watch"),
        ("ranvier.io", "backupschedules/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "watch"),
        ("batch", "cronjobs", "patch"),
        ("", "persistentvolumeclaims", "create"),
        ("", "pods", "list"),
    ] {
        let allowed = role["rules"].as_array().unwrap().iter().any(|rule| {
            let has = |key: &str, value: &str| rule[key].as_array().unwrap().iter().any(|v| v == value);
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        });
        assert!(allowed, "the operator may not {verb} {group}/{resource}");
    }
    let deployment = operator.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["args"][0], "run");
    let scoped = documents(&run(&helm, &["template", "op", "charts/ranvier-operator", "--set", "watchNamespace=shop"]));
    assert!(
        scoped.iter().any(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "shop"),
        "watchNamespace makes a Role"
    );

    // The cluster chart: a RanvierCluster the operator accepts, and the
    // example's ReplicationGroup.
    for values in [None, Some("examples/cluster-values.yaml")] {
        let mut args = vec!["template", "demo", "charts/ranvier-cluster", "-n", "shop"];
        args.extend(values.iter().flat_map(|v| ["-f", *v]));
        let docs = documents(&run(&helm, &args));
        let cluster: RanvierCluster = serde_json::from_value(docs[0].clone()).unwrap();
        let valid = validate(&cluster, "shop").unwrap_or_else(|e| panic!("{values:?}: {e}"));
        assert_eq!(valid.name, "demo");
        if values.is_some() {
            let group: ReplicationGroup = serde_json::from_value(docs[1].clone()).unwrap();
            assert_eq!((group.spec.cluster.as_str(), group.spec.members.len()), ("demo", 2));
        }
    }
}
