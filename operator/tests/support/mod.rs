//! A mocked API server for reconcile tests: a kube `Client` over
//! `tower-test` whose answers a test scripts, call by call, and the
//! example manifests the README and the end-to-end test use.

// Test code: an unwrap is how a test fails; not every test file uses
// every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use ranvier_crds::RanvierCluster;
use ranvier_operator::controllers::Context;
use serde_json::{Value, json};

/// `examples/cluster.yaml`.
pub const EXAMPLE: &str = include_str!("../../../examples/cluster.yaml");

/// The mocked API server's side.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The example cluster, as the API server would hold it in namespace `shop`.
pub fn example() -> RanvierCluster {
    let mut cluster: RanvierCluster = serde_saphyr::from_str(EXAMPLE).unwrap();
    cluster.metadata.namespace = Some("shop".into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster.metadata.generation = Some(4);
    cluster
}

/// A controller context over a mocked API server.
pub fn context() -> (Context, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (Context::new(client, None), handle)
}

/// One call the reconcile must make next, and the API server's answer.
pub struct Expect {
    pub method: Method,
    pub path: &'static str,
    /// Status code and body of the answer; `None` echoes the request body.
    pub answer: Option<(StatusCode, Value)>,
    /// Applied to the echoed body before it is answered.
    pub change: fn(&mut Value),
    /// An Event: a new one (POST), or the next of a series the client
    /// already published (PATCH of that Event).
    pub event: bool,
}

/// A call answered by echoing its body.
pub fn expect(method: Method, path: &'static str) -> Expect {
    Expect { method, path, answer: None, change: |_| {}, event: false }
}

/// An Event published in `namespace` (created, or counted again in its
/// series).
pub fn event(namespace: &str) -> Expect {
    let path: &'static str = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events").leak();
    Expect { event: true, ..expect(Method::POST, path) }
}

/// A call answered with `body`.
pub fn answer(method: Method, path: &'static str, body: Value) -> Expect {
    Expect { answer: Some((StatusCode::OK, body)), ..expect(method, path) }
}

/// The API server's answer for a missing object.
pub fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// Serves `script` in order, recording each request's URI and body; fails
/// on a call out of order; then checks that no further call comes.
pub async fn serve(handle: Handle, script: Vec<Expect>) -> Vec<(String, Value)> {
    serve_keeping(handle, script).await.0
}

/// `serve`, giving the handle back for the next script.
pub async fn serve_keeping(mut handle: Handle, script: Vec<Expect>) -> (Vec<(String, Value)>, Handle) {
    let mut seen = Vec::new();
    for step in script {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no call came for {} {}", step.method, step.path))
            .expect("the client went away");
        let uri = request.uri().to_string();
        let path = request.uri().path().to_owned();
        let series = step.event && request.method() == Method::PATCH && path.starts_with(step.path);
        if !series {
            assert_eq!((request.method(), path.as_str()), (&step.method, step.path), "unexpected call {uri}");
        }
        if request.method() == Method::PATCH && !series {
            assert!(uri.contains("fieldManager=ranvier-operator") && uri.contains("force=true"), "{uri}");
        }
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let mut body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        seen.push((uri, body.clone()));
        let (code, answer) = match step.answer {
            Some(answer) => answer,
            None => {
                (step.change)(&mut body);
                (StatusCode::OK, body)
            }
        };
        let response = Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap()));
        send.send_response(response.unwrap());
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    if let Ok(Some((request, _))) = extra {
        panic!("an unexpected further call: {} {}", request.method(), request.uri());
    }
    (seen, handle)
}

/// The condition of `type_` in a status patch's body.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap()
}

/// Runs `script` against the API server while `reconcile` runs; returns
/// its result, the calls seen and the handle for the next script.
pub async fn scripted<F, T>(handle: &mut Handle, script: Vec<Expect>, reconcile: F) -> (T, Vec<(String, Value)>)
where
    F: std::future::Future<Output = T>,
{
    let (moved, placeholder) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    drop(moved);
    let taken = std::mem::replace(handle, placeholder);
    let server = tokio::spawn(serve_keeping(taken, script));
    let result = reconcile.await;
    let (seen, back) = server.await.unwrap();
    *handle = back;
    (result, seen)
}

/// The mocked API server and a context over it, shared by reconciles.
pub fn shared_context() -> (Arc<Context>, Handle) {
    let (ctx, handle) = context();
    (Arc::new(ctx), handle)
}
