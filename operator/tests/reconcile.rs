//! The RanvierCluster controller against a mocked API server (a kube
//! `Client` over `tower-test`): each test scripts the API server's answers
//! and checks the exact calls the reconcile makes, in order.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

mod support;

use http::{Method, StatusCode};
use ranvier_operator::controllers::cluster;
use serde_json::{Value, json};
use support::{Expect, condition, example, expect, not_found, serve, shared_context as context};

/// The API server answers a status patch with the whole resource.
fn whole_cluster(body: &mut Value) {
    let full = serde_json::to_value(example()).unwrap();
    body["metadata"] = full["metadata"].clone();
    body["spec"] = full["spec"].clone();
}

fn status_patch() -> Expect {
    Expect {
        change: whole_cluster,
        ..expect(Method::PATCH, "/apis/ranvier.io/v1alpha1/namespaces/shop/ranvierclusters/demo/status")
    }
}

/// A cluster without its token Secrets yet (the internal token, and the
/// access tokens: the example has access control on): the operator looks,
/// then makes each.
fn token_created() -> Vec<Expect> {
    vec![
        Expect {
            answer: Some(not_found()),
            ..expect(Method::GET, "/api/v1/namespaces/shop/secrets/demo-internal-token")
        },
        expect(Method::POST, "/api/v1/namespaces/shop/secrets"),
        Expect {
            answer: Some(not_found()),
            ..expect(Method::GET, "/api/v1/namespaces/shop/secrets/demo-access-tokens")
        },
        expect(Method::POST, "/api/v1/namespaces/shop/secrets"),
    ]
}

#[tokio::test]
async fn a_new_cluster_gets_its_token_secret_and_every_object_applied_then_its_status() {
    let (ctx, handle) = context();
    let mut script = token_created();
    script.extend([
        expect(Method::PATCH, "/api/v1/namespaces/shop/configmaps/demo-config"),
        expect(Method::PATCH, "/api/v1/namespaces/shop/services/demo-internal"),
        expect(Method::PATCH, "/api/v1/namespaces/shop/services/demo"),
        Expect {
            change: |body| body["status"] = json!({"replicas": 3, "readyReplicas": 3}),
            ..expect(Method::PATCH, "/apis/apps/v1/namespaces/shop/statefulsets/demo-node")
        },
        // An API server before 1.21 has no policy/v1.
        Expect {
            answer: Some(not_found()),
            ..expect(Method::PATCH, "/apis/policy/v1/namespaces/shop/poddisruptionbudgets/demo")
        },
        expect(Method::PATCH, "/apis/policy/v1beta1/namespaces/shop/poddisruptionbudgets/demo"),
        status_patch(),
    ]);
    let server = tokio::spawn(serve(handle, script));
    cluster::reconcile(Arc::new(example()), ctx).await.unwrap();
    let seen = server.await.unwrap();

    let secret = &seen[1].1;
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-1", "the Secret goes with the cluster");
    let token = secret["data"]["internal-token"].as_str().unwrap();
    assert!(token.len() >= 64, "a generated token of 32 random bytes, hex, base64-encoded: {token}");
    let tokens = &seen[3].1;
    assert_eq!(tokens["metadata"]["name"], "demo-access-tokens");
    assert_eq!(tokens["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let (app, admin) = (tokens["data"]["token"].as_str().unwrap(), tokens["data"]["admin-token"].as_str().unwrap());
    assert!(app.len() >= 64 && admin.len() >= 64 && app != admin, "two random tokens: {tokens}");
    let statefulset = &seen[7].1;
    assert_eq!(statefulset["kind"], "StatefulSet");
    assert_eq!(statefulset["metadata"]["ownerReferences"][0]["kind"], "RanvierCluster");
    assert_eq!(seen[9].1["apiVersion"], "policy/v1beta1");
    let status = &seen[10].1;
    assert_eq!(status["status"]["observedGeneration"], 4);
    assert_eq!((status["status"]["nodes"].as_i64(), status["status"]["readyNodes"].as_i64()), (Some(3), Some(3)));
    assert_eq!(condition(status, "Available")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
}

#[tokio::test]
async fn an_invalid_spec_changes_nothing_and_says_why_in_status_and_an_event() {
    let (ctx, handle) = context();
    let mut cluster = example();
    cluster.spec.properties.insert("axoniq.axonserver.autocluster.first".into(), "elsewhere:8224".into());
    let script = vec![expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/shop/events"), status_patch()];
    let server = tokio::spawn(serve(handle, script));
    cluster::reconcile(Arc::new(cluster), ctx).await.unwrap();
    let seen = server.await.unwrap();
    let event = &seen[0].1;
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("InvalidSpec")));
    assert!(event["note"].as_str().unwrap().contains("autocluster.first is set by the operator"), "{event}");
    let degraded = condition(&seen[1].1, "Degraded");
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("InvalidSpec")));
}

#[tokio::test]
async fn a_named_token_secret_without_its_key_is_reported_not_applied() {
    let (ctx, handle) = context();
    let mut cluster = example();
    cluster.spec.internal_token = Some(ranvier_crds::common::SecretKeyRef { name: "mine".into(), key: "token".into() });
    let script = vec![
        Expect {
            answer: Some((
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mine"}, "data": {"other": "eA=="}}),
            )),
            ..expect(Method::GET, "/api/v1/namespaces/shop/secrets/mine")
        },
        expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/shop/events"),
        status_patch(),
    ];
    let server = tokio::spawn(serve(handle, script));
    cluster::reconcile(Arc::new(cluster), ctx).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(condition(&seen[2].1, "Degraded")["reason"], "TokenSecretMissing");
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_with_a_stable_category_for_a_retry() {
    let (ctx, handle) = context();
    let mut script = token_created();
    script.extend([Expect {
        answer: Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd is down"}),
        )),
        ..expect(Method::PATCH, "/api/v1/namespaces/shop/configmaps/demo-config")
    }]);
    let server = tokio::spawn(serve(handle, script));
    let error = cluster::reconcile(Arc::new(example()), ctx).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(error.category(), "kube_api");
    assert!(error.to_string().contains("applying ConfigMap demo-config"), "{error}");
}

#[tokio::test]
async fn a_change_the_api_server_forbids_is_reported_as_a_refusal_not_retried_forever() {
    let (ctx, handle) = context();
    let forbidden = "StatefulSet.apps \"demo-node\" is invalid: spec: Forbidden: updates to statefulset spec for \
                     fields other than 'replicas', 'template', and 'updateStrategy' are forbidden";
    let mut script = token_created();
    script.extend([
        expect(Method::PATCH, "/api/v1/namespaces/shop/configmaps/demo-config"),
        expect(Method::PATCH, "/api/v1/namespaces/shop/services/demo-internal"),
        expect(Method::PATCH, "/api/v1/namespaces/shop/services/demo"),
        Expect {
            answer: Some((
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422, "message": forbidden}),
            )),
            ..expect(Method::PATCH, "/apis/apps/v1/namespaces/shop/statefulsets/demo-node")
        },
        support::event("shop"),
        status_patch(),
    ]);
    let server = tokio::spawn(serve(handle, script));
    let action = cluster::reconcile(Arc::new(example()), ctx).await.unwrap();
    let seen = server.await.unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change(), "waits for an edit");
    let event = &seen[8].1;
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("ChangeRejected")));
    let degraded = condition(&seen[9].1, "Degraded");
    assert_eq!(degraded["reason"], "ChangeRejected");
    assert!(degraded["message"].as_str().unwrap().contains("updates to statefulset spec"), "{degraded}");
}
