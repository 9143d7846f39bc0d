//! The admin REST API of a clustered node (paths and bodies follow Axon
//! Server EE, PROTOCOL.md §4.3): cluster nodes, init-cluster and
//! register-node, replication groups and their members' roles, contexts.
//! Every change is proposed to the `_admin` group (from any node) and
//! answered once applied; errors carry `AxonIQ-ErrorCode` and Axon's
//! `{"success":false,"message":…}` body.
//!
//! One deliberate difference: adding a node that is already a member of a
//! group with another role changes its role in place (Axon 4.4 ignores it).

// Helpers return the finished error response as `Err`: one per request,
// on the way out, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ranvier_wire::admin::{
    ClusterNode, ContextListing, ContextRequest, GroupRequest, GroupSettings, JoinRequest, MemberRole, RestResponse,
    RoleRequest,
};
use ranvier_wire::codes::ERROR_CODE_HEADER;
use serde::Deserialize;

use super::HttpState;
use crate::cluster::model::{ADMIN, AdminCommand, ClusterModel, NodeInfo};
use crate::cluster::roles::Role;
use crate::cluster::{Cluster, WriteError};

/// The admin routes.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1/cluster", get(list_nodes).post(register_node))
        .route("/v1/cluster/{name}", get(get_node))
        .route("/v1/context/init", post(init_cluster))
        .route("/v1/context", post(create_context))
        .route("/v1/context/{name}", delete(delete_context))
        .route("/v1/public/context", get(list_contexts))
        .route("/v1/public/visiblecontexts", get(visible_contexts))
        .route("/v1/replicationgroups", post(create_group))
        .route("/v1/replicationgroups/roles", get(roles))
        .route("/v1/replicationgroups/{group}", delete(delete_group).patch(set_group))
        .route("/v1/replicationgroups/{group}/{node}", post(add_member).delete(remove_member))
}

/// An admin answer: Axon's `RestResponse` with the error code header.
pub(super) fn answer(status: StatusCode, code: Option<&str>, message: impl Into<String>) -> Response {
    let body = RestResponse { success: code.is_none(), message: message.into() };
    let mut response = (status, Json(body)).into_response();
    if let Some(code) = code
        && let Ok(value) = HeaderValue::from_str(code)
    {
        response.headers_mut().insert(ERROR_CODE_HEADER, value);
    }
    response
}

/// The HTTP status of a refusal with Axon error `code`.
fn status_of(code: &str) -> StatusCode {
    match code {
        "AXONIQ-1300" | "AXONIQ-1301" | "AXONIQ-1302" => StatusCode::NOT_FOUND,
        "AXONIQ-1304" | "AXONIQ-1305" | "AXONIQ-2308" | "AXONIQ-2309" | "AXONIQ-2510" => StatusCode::BAD_REQUEST,
        "AXONIQ-1000" | "AXONIQ-1001" | "AXONIQ-2304" | "AXONIQ-2307" => StatusCode::FORBIDDEN,
        "AXONIQ-2306" => StatusCode::CONFLICT,
        "AXONIQ-2100" => StatusCode::SERVICE_UNAVAILABLE,
        "AXONIQ-10003" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) fn refused(code: &str, message: impl Into<String>) -> Response {
    answer(status_of(code), Some(code), message)
}

/// Why an admin action was not done: Axon's error code and the server's
/// message, as the REST API answers them and the console shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused {
    /// `AXONIQ-xxxx`.
    pub(super) code: String,
    /// What the server says.
    pub(super) message: String,
}

impl Refused {
    pub(super) fn new(code: &str, message: impl Into<String>) -> Self {
        Refused { code: code.to_owned(), message: message.into() }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refused(&self.code, self.message)
    }
}

impl From<WriteError> for Refused {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Refused { code, message } => Refused { code, message },
            WriteError::NoLeader(message) | WriteError::NotLeader(message) | WriteError::Unreached(message) => {
                Refused::new("AXONIQ-2100", message)
            }
            WriteError::Timeout(message) => Refused::new("AXONIQ-10003", message),
            WriteError::Failed(message) => Refused::new("AXONIQ-0001", message),
        }
    }
}

/// What an admin action came to: done, with what to tell the caller, or
/// refused.
pub(super) type Outcome = Result<String, Refused>;

/// The REST answer to `outcome`.
fn reply(outcome: Outcome) -> Response {
    match outcome {
        Ok(done) => answer(StatusCode::OK, None, done),
        Err(refusal) => refusal.into_response(),
    }
}

fn bad_request(message: impl Into<String>) -> Refused {
    Refused::new("AXONIQ-2308", message)
}

/// The cluster runtime, or the refusal of a standalone node.
pub(super) fn cluster(state: &HttpState) -> Result<&Arc<Cluster>, Refused> {
    state.cluster.as_ref().ok_or_else(|| {
        Refused::new(
            "AXONIQ-2301",
            "this node runs standalone: start it with autocluster.first or ranvier.clustered=true to cluster it",
        )
    })
}

/// Proposes `command` to the `_admin` group and waits until it is applied.
pub(super) async fn perform(state: &HttpState, command: AdminCommand, done: impl Into<String>) -> Outcome {
    cluster(state)?.admin(command).await?;
    Ok(done.into())
}

pub(super) fn node_json(model: &ClusterModel, node: &NodeInfo) -> ClusterNode {
    let (host, port) = node.internal_addr.rsplit_once(':').unwrap_or((node.internal_addr.as_str(), ""));
    let groups =
        model.groups.iter().filter(|(_, g)| g.members.contains_key(&node.name)).map(|(name, _)| name.clone()).collect();
    ClusterNode {
        name: node.name.clone(),
        host_name: node.host_name.clone(),
        grpc_port: node.grpc_port,
        http_port: node.http_port,
        internal_host_name: host.to_owned(),
        internal_grpc_port: port.parse::<u16>().ok(),
        replication_groups: groups,
        connected: true,
        tags: BTreeMap::new(),
    }
}

async fn list_nodes(State(state): State<Arc<HttpState>>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    let model = cluster.model();
    let nodes: Vec<ClusterNode> = model.nodes.values().map(|n| node_json(&model, n)).collect();
    Json(nodes).into_response()
}

async fn get_node(State(state): State<Arc<HttpState>>, Path(name): Path<String>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    let model = cluster.model();
    match model.nodes.get(&name) {
        Some(node) => Json(node_json(&model, node)).into_response(),
        None => refused("AXONIQ-1301", format!("node {name} is not registered")),
    }
}

/// register-node: sent to the joining node, which asks the node at
/// `internalHostName:internalGrpcPort` to register it.
async fn register_node(State(state): State<Arc<HttpState>>, body: Option<Json<JoinRequest>>) -> Response {
    let outcome = async {
        let cluster = cluster(&state)?;
        if !state.access.enabled() && !state.register_node_unauthenticated {
            let message = "register-node makes this node send its internal token to the address it is given; \
                with access control off anyone who reaches this port could name their own address and take the \
                token. Turn access control on (register-node then needs an administrator's token), form the \
                cluster by autocluster, or set ranvier.insecure-register-node=true";
            return Err(Refused::new("AXONIQ-1001", message));
        }
        let Some(Json(request)) = body else { return Err(bad_request("expected a JSON body with internalHostName")) };
        let Some(host) = request.internal_host_name.filter(|h| !h.trim().is_empty()) else {
            return Err(bad_request("internalHostName is required"));
        };
        if request.context.is_some() && request.no_contexts {
            return Err(bad_request("set either context or noContexts, not both"));
        }
        let contexts = match (request.context, request.no_contexts) {
            (Some(context), _) => vec![context],
            (None, true) => Vec::new(),
            (None, false) => vec!["default".to_owned()],
        };
        let addr = format!("{}:{}", host.trim(), request.internal_grpc_port.unwrap_or(8224));
        cluster.join(&addr, contexts).await?;
        Ok("Accepted join request, may take a while to process".to_owned())
    };
    match outcome.await {
        Ok(done) => answer(StatusCode::ACCEPTED, None, done),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ContextQuery {
    context: Option<String>,
}

/// init-cluster: founds the cluster on this node.
async fn init_cluster(State(state): State<Arc<HttpState>>, Query(query): Query<ContextQuery>) -> Response {
    let context = query.context.unwrap_or_else(|| "default".to_owned());
    let outcome = async {
        cluster(&state)?.init_cluster(vec![context.clone()]).await?;
        Ok(format!("Cluster initialised with _admin and {context}"))
    };
    reply(outcome.await)
}

/// Roles from `[{node, role}]` plus plain node names (as PRIMARY).
fn members(roles: Vec<RoleRequest>, nodes: Vec<String>) -> Result<BTreeMap<String, Role>, Refused> {
    let mut out = BTreeMap::new();
    for name in nodes {
        out.insert(name, Role::Primary);
    }
    for member in roles {
        let role = match member.role.as_deref() {
            None | Some("") => Role::Primary,
            Some(text) => text.parse::<Role>().map_err(|e| bad_request(e.to_string()))?,
        };
        out.insert(member.node, role);
    }
    Ok(out)
}

/// register-context: creates the context, and its replication group first
/// when the group does not exist yet (with `request`'s nodes and roles).
pub(super) async fn create_context_action(state: &HttpState, request: ContextRequest) -> Outcome {
    let cluster = cluster(state)?;
    let Some(context) = request.context.filter(|c| !c.is_empty()) else {
        return Err(bad_request("context is required"));
    };
    let group = request.replication_group.filter(|g| !g.is_empty()).unwrap_or_else(|| context.clone());
    if !cluster.model().groups.contains_key(&group) {
        let members = members(request.roles, request.nodes)?;
        if members.is_empty() {
            return Err(Refused::new("AXONIQ-2308", "Missing replication group nodes"));
        }
        cluster.admin(AdminCommand::CreateGroup { name: group.clone(), members }).await?;
    }
    perform(state, AdminCommand::CreateContext { name: context.clone(), group }, format!("Context {context} created"))
        .await
}

async fn create_context(State(state): State<Arc<HttpState>>, body: Option<Json<ContextRequest>>) -> Response {
    let Some(Json(request)) = body else { return bad_request("expected a JSON body with context").into_response() };
    reply(create_context_action(&state, request).await)
}

/// Deletes a context; unless `preserve`, its members delete its files.
pub(super) async fn delete_context_action(state: &HttpState, name: String, preserve: bool) -> Outcome {
    let done = if preserve {
        format!("Context {name} deleted; its event store files are kept")
    } else {
        format!("Context {name} deleted with its event store files")
    };
    perform(state, AdminCommand::DeleteContext { name, preserve }, done).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreserveQuery {
    #[serde(default)]
    preserve_event_store: bool,
}

async fn delete_context(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    Query(query): Query<PreserveQuery>,
) -> Response {
    reply(delete_context_action(&state, name, query.preserve_event_store).await)
}

fn member_roles(model: &ClusterModel, group: &str) -> Vec<MemberRole> {
    model
        .groups
        .get(group)
        .map(|g| g.members.iter().map(|(node, role)| MemberRole { node: node.clone(), role: *role }).collect())
        .unwrap_or_default()
}

async fn list_contexts(State(state): State<Arc<HttpState>>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    let model = cluster.model();
    let leaders: BTreeMap<String, Option<String>> =
        cluster.status().into_iter().map(|group| (group.name, group.leader)).collect();
    let contexts: Vec<ContextListing> = model
        .contexts
        .iter()
        .filter(|(name, _)| name.as_str() != ADMIN)
        .map(|(name, info)| ContextListing {
            context: name.clone(),
            replication_group: info.group.clone(),
            leader: leaders.get(&info.group).cloned().flatten(),
            roles: member_roles(&model, &info.group),
            meta_data: BTreeMap::new(),
            change_pending: false,
        })
        .collect();
    Json(contexts).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VisibleQuery {
    #[serde(default)]
    include_admin: bool,
}

async fn visible_contexts(State(state): State<Arc<HttpState>>, Query(query): Query<VisibleQuery>) -> Response {
    let names: Vec<String> = match &state.cluster {
        Some(cluster) => cluster
            .model()
            .contexts
            .keys()
            .filter(|name| query.include_admin || name.as_str() != ADMIN)
            .cloned()
            .collect(),
        None => state.contexts.list().into_iter().map(|(name, _)| name).collect(),
    };
    Json(names).into_response()
}

async fn create_group(State(state): State<Arc<HttpState>>, body: Option<Json<GroupRequest>>) -> Response {
    let outcome = async {
        let Some(Json(request)) = body else { return Err(bad_request("expected a JSON body with name and roles")) };
        let Some(name) = request.name.filter(|n| !n.is_empty()) else { return Err(bad_request("name is required")) };
        let members = members(request.roles, Vec::new())?;
        if members.is_empty() {
            return Err(Refused::new("AXONIQ-2309", "Add at least one node"));
        }
        perform(&state, AdminCommand::CreateGroup { name, members }, "Replication group created").await
    };
    reply(outcome.await)
}

async fn delete_group(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    Query(query): Query<PreserveQuery>,
) -> Response {
    let command = AdminCommand::DeleteGroup { name, preserve: query.preserve_event_store };
    reply(perform(&state, command, "Replication group deleted").await)
}

/// A group's own settings: how many active backups must hold its writes
/// (`null`: its leader's `min-active-backups`).
async fn set_group(
    State(state): State<Arc<HttpState>>,
    Path(group): Path<String>,
    body: Option<Json<GroupSettings>>,
) -> Response {
    let Some(Json(settings)) = body else {
        return bad_request("expected a JSON body such as {\"minActiveBackups\": 1}").into_response();
    };
    let done = match settings.min_active_backups {
        Some(n) => format!("{group} confirms a write once {n} active backup(s) hold it"),
        None => format!("{group} follows its leader's min-active-backups"),
    };
    let command = AdminCommand::SetMinActiveBackups { group, min_active_backups: settings.min_active_backups };
    reply(perform(&state, command, done).await)
}

/// add-node-to-replication-group, and change-role for a current member:
/// `node` becomes `role` (PRIMARY when not given) in `group`.
pub(super) async fn set_member_action(state: &HttpState, group: String, node: String, role: Option<&str>) -> Outcome {
    let role = role.map(str::parse::<Role>).transpose().map_err(|e| bad_request(e.to_string()))?;
    let role = role.unwrap_or(Role::Primary);
    let done = format!("{node} is {role} in {group}");
    perform(state, AdminCommand::SetMember { group, node, role }, done).await
}

#[derive(Debug, Deserialize)]
struct RoleQuery {
    role: Option<String>,
}

async fn add_member(
    State(state): State<Arc<HttpState>>,
    Path((group, node)): Path<(String, String)>,
    Query(query): Query<RoleQuery>,
) -> Response {
    reply(set_member_action(&state, group, node, query.role.as_deref()).await)
}

/// Removes `node` from `group`; unless `preserve`, it deletes the group's
/// files.
pub(super) async fn remove_member_action(state: &HttpState, group: String, node: String, preserve: bool) -> Outcome {
    let done = if preserve {
        format!("{node} removed from {group}; its event store files are kept")
    } else {
        format!("{node} removed from {group} with its event store files")
    };
    perform(state, AdminCommand::RemoveMember { group, node, preserve }, done).await
}

async fn remove_member(
    State(state): State<Arc<HttpState>>,
    Path((group, node)): Path<(String, String)>,
    Query(query): Query<PreserveQuery>,
) -> Response {
    reply(remove_member_action(&state, group, node, query.preserve_event_store).await)
}

async fn roles() -> Json<Vec<&'static str>> {
    Json(Role::ALL.iter().map(|r| r.name()).collect())
}

/// [`perform`] answered as REST (for the other admin modules).
pub(super) async fn run(state: &HttpState, command: AdminCommand, done: &str) -> Response {
    reply(perform(state, command, done).await)
}

/// A write's failure answered as REST (for the other admin modules).
pub(super) fn from_write(error: WriteError) -> Response {
    Refused::from(error).into_response()
}
