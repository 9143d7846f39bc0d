//! The HTTP API on port 8024: health and readiness (plain and Spring-style
//! paths, so existing probes keep working), Prometheus metrics, and the
//! public node info of `/v1/public`, and on a clustered node the admin API
//! (`admin`), the applications that may call it (`applications`), the
//! components with handlers (`/v1/components`) and the event processors
//! (`processors`), the event store's backup endpoints (`backup`), and the
//! web console's pages (`console`). Every call passes the access check
//! first (`check_access`).

mod admin;
mod applications;
mod backup;
mod console;
mod processors;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::contexts::Contexts;
use crate::telemetry::Metrics;

/// What the HTTP API reports about this node.
#[derive(Debug, Clone)]
pub struct HttpNode {
    /// Node name.
    pub name: String,
    /// Host name for clients.
    pub host_name: String,
    /// Host name for other nodes.
    pub internal_host_name: String,
    /// Bound client gRPC port.
    pub grpc_port: u16,
    /// Internal gRPC port (cluster traffic, not served by a single node yet).
    pub internal_port: u16,
    /// Bound HTTP port.
    pub http_port: u16,
    /// Whether the client gRPC port speaks TLS.
    pub ssl: bool,
}

/// Shared state of the HTTP handlers.
pub struct HttpState {
    /// Who may call what.
    pub access: Arc<crate::access::Access>,
    /// The node.
    pub node: HttpNode,
    /// The context stores.
    pub contexts: Arc<Contexts>,
    /// The metric registry.
    pub metrics: Arc<Metrics>,
    /// The replication groups, on a clustered node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The command and query buses (for `/v1/components`).
    pub messaging: Option<(Arc<crate::messaging::commands::CommandBus>, Arc<crate::messaging::queries::QueryBus>)>,
    /// The event processors the clients report (for `/v1/processors`).
    pub processors: Arc<crate::messaging::processors::Processors>,
    /// Whether register-node may send the internal token to an address an
    /// unauthenticated caller gave (access control off).
    pub register_node_unauthenticated: bool,
}

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/actuator/health", get(health))
        .route("/actuator/health/liveness", get(health))
        .route("/ready", get(ready))
        .route("/actuator/health/readiness", get(ready))
        .route("/metrics", get(metrics))
        .route("/actuator/prometheus", get(metrics))
        .route("/v1/public", get(public_nodes))
        .route("/v1/public/me", get(public_me))
        .route("/v1/public/replicationgroups", get(replication_groups))
        .route("/v1/components", get(components))
        .merge(admin::routes())
        .merge(applications::routes())
        .merge(processors::routes())
        .merge(backup::routes())
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_access))
        .with_state(state)
}

/// With access control on, a call needs a token that allows what its route
/// needs (`access::needs::rest`): `/health` never needs one, `/ready` and
/// `/metrics` unless `open-probes`. The console's pages also take the token
/// from their sign-in cookie, and send a browser the check refuses to the
/// sign-in page.
async fn check_access(
    State(state): State<Arc<HttpState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::access::needs;
    if state.access.enabled() {
        let uri = request.uri();
        let need = needs::rest(request.method().as_str(), uri.path(), uri.query(), state.access.open_probes());
        if let Some(need) = need
            && let Err(refusal) = state.access.check(console::presented(uri.path(), request.headers()), &need).await
        {
            if console::is_console(uri.path()) {
                return console::refused(refusal);
            }
            return admin::answer(StatusCode::FORBIDDEN, Some(refusal.code().as_str()), refusal.message());
        }
    }
    next.run(request).await
}

#[derive(serde::Deserialize)]
struct ContextQuery {
    context: Option<String>,
}

/// The components with command or query handlers in a context
/// (`?context=`, default `default`), cluster-wide as this node knows them.
async fn components(
    State(state): State<Arc<HttpState>>,
    axum::extract::Query(query): axum::extract::Query<ContextQuery>,
) -> Json<Vec<ranvier_wire::admin::ComponentListing>> {
    let context = query.context.unwrap_or_else(|| "default".to_owned());
    let listed = state
        .messaging
        .as_ref()
        .map(|(commands, queries)| crate::messaging::components(commands, queries, &context))
        .unwrap_or_default();
    Json(listed)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "UP" }))
}

/// Ready once every context store has opened and, on a clustered node, the
/// node is a registered member of the cluster whose groups are each open
/// here with a leader it knows (`cluster::readiness`); otherwise 503, naming
/// what is down and why (a corrupt store, a group without a leader, the
/// cluster still forming).
async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let contexts: serde_json::Map<String, serde_json::Value> = state
        .contexts
        .list()
        .into_iter()
        .map(|(name, store)| {
            let detail = match store {
                Ok(store) => match store.events.failure() {
                    // The token after the last event of this node's own store.
                    None => json!({ "status": "UP", "nextToken": store.events.next_token() }),
                    Some(reason) => json!({ "status": "DOWN", "reason": reason }),
                },
                Err(reason) => json!({ "status": "DOWN", "reason": reason }),
            };
            (name, detail)
        })
        .collect();
    let mut up = contexts.values().all(|c| c["status"] == "UP");
    let mut body = json!({ "contexts": contexts });
    if let Some(cluster) = &state.cluster
        && let Some(object) = body.as_object_mut()
    {
        let readiness = cluster.readiness();
        up &= readiness.is_ready();
        let groups: serde_json::Map<String, serde_json::Value> = readiness
            .groups
            .into_iter()
            .map(|(name, state)| {
                let detail = match state {
                    Ok(leader) => json!({ "status": "UP", "leader": leader }),
                    Err(reason) => json!({ "status": "DOWN", "reason": reason }),
                };
                (name, detail)
            })
            .collect();
        let membership = match readiness.cluster {
            Ok(()) => json!({ "status": "UP" }),
            Err(reason) => json!({ "status": "DOWN", "reason": reason }),
        };
        object.insert("cluster".into(), membership);
        object.insert("replicationGroups".into(), serde_json::Value::Object(groups));
    }
    if let Some(object) = body.as_object_mut() {
        object.insert("status".into(), json!(if up { "UP" } else { "DOWN" }));
    }
    let code = if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed to encode metrics").into_response(),
    }
}

fn node_json(node: &HttpNode) -> serde_json::Value {
    json!({
        "name": node.name,
        "hostName": node.host_name,
        "grpcPort": node.grpc_port,
        "internalHostName": node.internal_host_name,
        "grpcInternalPort": node.internal_port,
        "httpPort": node.http_port,
        "connected": true,
    })
}

/// Each replication group as this node sees it (empty on a standalone node).
async fn replication_groups(State(state): State<Arc<HttpState>>) -> Json<Vec<ranvier_wire::admin::GroupStatus>> {
    Json(state.cluster.as_ref().map(|c| c.status()).unwrap_or_default())
}

/// The cluster's nodes (a standalone node lists itself).
/// A node as GET `/v1/public` lists it: `/v1/cluster`'s shape, and the
/// internal port also under the name Axon gives it here.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PublicNode {
    #[serde(flatten)]
    node: ranvier_wire::admin::ClusterNode,
    grpc_internal_port: Option<u16>,
}

impl From<ranvier_wire::admin::ClusterNode> for PublicNode {
    fn from(node: ranvier_wire::admin::ClusterNode) -> Self {
        PublicNode { grpc_internal_port: node.internal_grpc_port, node }
    }
}

async fn public_nodes(State(state): State<Arc<HttpState>>) -> Json<Vec<PublicNode>> {
    match &state.cluster {
        Some(cluster) if cluster.model().initialized() => {
            let model = cluster.model();
            Json(model.nodes.values().map(|n| admin::node_json(&model, n).into()).collect())
        }
        _ => {
            let node = &state.node;
            Json(vec![PublicNode::from(ranvier_wire::admin::ClusterNode {
                name: node.name.clone(),
                host_name: node.host_name.clone(),
                grpc_port: node.grpc_port,
                http_port: node.http_port,
                internal_host_name: node.internal_host_name.clone(),
                internal_grpc_port: Some(node.internal_port),
                replication_groups: Vec::new(),
                connected: true,
                tags: std::collections::BTreeMap::new(),
            })])
        }
    }
}

async fn public_me(State(state): State<Arc<HttpState>>) -> Json<serde_json::Value> {
    let mut me = node_json(&state.node);
    let names: Vec<String> = state.contexts.list().into_iter().map(|(name, _)| name).collect();
    if let Some(object) = me.as_object_mut() {
        object.insert("clustered".into(), json!(state.cluster.is_some()));
        object.insert("authentication".into(), json!(state.access.enabled()));
        object.insert("ssl".into(), json!(state.node.ssl));
        object.insert("contextNames".into(), json!(names));
        object.insert("storageContextNames".into(), json!(names));
        object.insert("initialized".into(), json!(true));
    }
    Json(me)
}
