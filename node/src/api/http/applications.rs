//! The applications REST API (Axon EE's paths and shapes, PROTOCOL.md
//! §4.3): list, read, register or change, renew the token, delete. A token
//! is made (or taken from the request) and hashed on the node that takes
//! the call, off the async threads; only its hash goes to `_admin`. The
//! token itself is shown once, as the plain-text answer of the call that
//! set it.

// Helpers return the finished error response as `Err` (see `admin`).
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ranvier_wire::admin::{ApplicationJson, ApplicationRoles};

use super::HttpState;
use super::admin::{answer, cluster, from_write, refused, run};
use crate::access::applications::{self, AppRole, Application, StoredToken};
use crate::cluster::model::AdminCommand;

/// The application routes.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1/public/applications", get(list))
        .route("/v1/applications", post(register))
        .route("/v1/applications/{name}", get(read).patch(renew).delete(remove))
}

fn listing(name: &str, application: &Application) -> ApplicationJson {
    ApplicationJson {
        name: name.to_owned(),
        description: Some(application.description.clone()),
        token: None,
        roles: application
            .roles
            .iter()
            .map(|(context, roles)| ApplicationRoles {
                context: context.clone(),
                roles: roles.iter().map(|r| r.name().to_owned()).collect(),
            })
            .collect(),
        meta_data: application.meta_data.clone(),
    }
}

async fn list(State(state): State<Arc<HttpState>>) -> Response {
    match cluster(&state) {
        Ok(cluster) => {
            let model = cluster.model();
            let listed: Vec<ApplicationJson> = model.applications.iter().map(|(n, a)| listing(n, a)).collect();
            Json(listed).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn read(State(state): State<Arc<HttpState>>, Path(name): Path<String>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    match cluster.model().applications.get(&name) {
        Some(application) => Json(listing(&name, application)).into_response(),
        None => refused("AXONIQ-1300", format!("application {name} not found")),
    }
}

/// Role names per context from the request, or the refusal naming the
/// first unknown role.
fn roles(requested: &[ApplicationRoles]) -> Result<BTreeMap<String, BTreeSet<AppRole>>, Response> {
    let mut out: BTreeMap<String, BTreeSet<AppRole>> = BTreeMap::new();
    for entry in requested {
        let context = entry.context.trim();
        let context = if context.is_empty() { applications::EVERY_CONTEXT } else { context };
        for name in &entry.roles {
            let role = AppRole::parse(name).ok_or_else(|| {
                let known: Vec<&str> = AppRole::ALL.iter().map(|r| r.name()).collect();
                refused("AXONIQ-2510", format!("unknown role {name:?}; known roles: {}", known.join(", ")))
            })?;
            out.entry(context.to_owned()).or_default().insert(role);
        }
    }
    Ok(out)
}

/// The stored form of `token`, hashed on a blocking thread.
async fn hashed(token: String) -> Result<StoredToken, Response> {
    let failed = |message: String| refused("AXONIQ-0001", message);
    match tokio::task::spawn_blocking(move || applications::hash_token(&token)).await {
        Ok(Ok(stored)) => Ok(stored),
        Ok(Err(error)) => Err(failed(error.to_string())),
        Err(error) => Err(failed(format!("hashing the token failed: {error}"))),
    }
}

/// The answer that shows a token, once.
fn token_answer(token: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response()
}

/// A new token, or the refusal.
fn fresh_token() -> Result<String, Response> {
    applications::new_token().map_err(|e| refused("AXONIQ-0001", e.to_string()))
}

/// Registers an application (answering its token) or changes one (keeping
/// its token unless the request gives one).
async fn register(State(state): State<Arc<HttpState>>, body: Option<Json<ApplicationJson>>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(Json(request)) = body else {
        return refused("AXONIQ-2308", "expected a JSON body with name and roles");
    };
    let roles = match roles(&request.roles) {
        Ok(roles) => roles,
        Err(response) => return response,
    };
    let exists = cluster.model().applications.contains_key(&request.name);
    let token = match (request.token, exists) {
        (Some(token), _) => match applications::check_given_token(&token) {
            Ok(()) => Some(token),
            Err(reason) => return refused("AXONIQ-2308", reason),
        },
        (None, false) => match fresh_token() {
            Ok(token) => Some(token),
            Err(response) => return response,
        },
        (None, true) => None,
    };
    let stored = match &token {
        Some(token) => match hashed(token.clone()).await {
            Ok(stored) => Some(stored),
            Err(response) => return response,
        },
        None => None,
    };
    let command = AdminCommand::SetApplication {
        name: request.name.clone(),
        description: request.description.unwrap_or_default(),
        roles,
        meta_data: request.meta_data,
        token: stored,
    };
    match (cluster.admin(command).await, token) {
        (Err(error), _) => from_write(error),
        (Ok(()), Some(token)) => token_answer(token),
        (Ok(()), None) => {
            answer(StatusCode::OK, None, format!("application {} changed; its token is unchanged", request.name))
        }
    }
}

/// Gives an application a new token and answers it.
async fn renew(State(state): State<Arc<HttpState>>, Path(name): Path<String>) -> Response {
    let cluster = match cluster(&state) {
        Ok(cluster) => cluster,
        Err(refusal) => return refusal.into_response(),
    };
    let token = match fresh_token() {
        Ok(token) => token,
        Err(response) => return response,
    };
    let stored = match hashed(token.clone()).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    match cluster.admin(AdminCommand::RenewApplicationToken { name, token: stored }).await {
        Ok(()) => token_answer(token),
        Err(error) => from_write(error),
    }
}

async fn remove(State(state): State<Arc<HttpState>>, Path(name): Path<String>) -> Response {
    let done = format!("application {name} deleted");
    run(&state, AdminCommand::DeleteApplication { name }, &done).await
}
