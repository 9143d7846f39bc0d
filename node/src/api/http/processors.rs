//! The event-processor endpoints: the processors the applications' clients
//! report, cluster-wide, and the instructions an administrator sends them
//! (`messaging::processors` decides and relays them).
//!
//! - `GET /v1/processors?context=C`: every processor instance of the context.
//! - `GET /v1/components/{component}/processors?context=C`: one component's.
//! - `PATCH /v1/components/{component}/processors/{processor}/{action}?context=C[&tokenStoreIdentifier=T]`
//!   with `action` one of `pause`, `start`, `split`, `merge`: 200 with the
//!   clients that acknowledged; 404 (AXONIQ-2800) when no client runs it;
//!   400 when it cannot apply; 409 with the client's own error code when
//!   the client refused; 504 when it did not answer in time; 502 when its
//!   node could not be reached.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use ranvier_wire::ErrorCode;
use ranvier_wire::admin::ProcessorInstructed;

use super::HttpState;
use super::admin::answer;
use crate::messaging::processors::{Action, ProcessorError};

/// The routes of this module.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1/processors", get(all))
        .route("/v1/components/{component}/processors", get(of_component))
        .route("/v1/components/{component}/processors/{processor}/{action}", patch(instruct))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Where {
    context: Option<String>,
    token_store_identifier: Option<String>,
}

impl Where {
    fn context(&self) -> &str {
        self.context.as_deref().filter(|c| !c.is_empty()).unwrap_or("default")
    }
}

async fn all(State(state): State<Arc<HttpState>>, Query(at): Query<Where>) -> Response {
    Json(state.processors.listing(at.context()).await).into_response()
}

async fn of_component(
    State(state): State<Arc<HttpState>>,
    Path(component): Path<String>,
    Query(at): Query<Where>,
) -> Response {
    let mut listed = state.processors.listing(at.context()).await;
    listed.retain(|i| i.component == component);
    Json(listed).into_response()
}

async fn instruct(
    State(state): State<Arc<HttpState>>,
    Path((component, processor, action)): Path<(String, String, String)>,
    Query(at): Query<Where>,
) -> Response {
    let token_store = at.token_store_identifier.as_deref().filter(|t| !t.is_empty());
    match apply(&state, at.context(), &component, &processor, token_store, &action).await {
        Ok(done) => Json(done).into_response(),
        Err(error) => refused(error),
    }
}

/// Carries out `action` (named as in the API: pause, start, split or
/// merge) on a processor, for the REST API and the console alike; an
/// unknown action is invalid.
pub(super) async fn apply(
    state: &HttpState,
    context: &str,
    component: &str,
    processor: &str,
    token_store: Option<&str>,
    action: &str,
) -> Result<ProcessorInstructed, ProcessorError> {
    let Some(action) = Action::parse(action) else {
        let message = format!("unknown processor action {action}: expected pause, start, split or merge");
        return Err(ProcessorError::Invalid(message));
    };
    state.processors.apply(context, component, processor, token_store, action).await
}

/// The Axon error code a failed instruction is answered with: the
/// client's own when it refused with one.
pub(super) fn code_of(error: &ProcessorError) -> String {
    match error {
        ProcessorError::NotFound(_) => ErrorCode::EventProcessorNotFound.as_str().to_owned(),
        ProcessorError::Invalid(_) => ErrorCode::InvalidPropertyValue.as_str().to_owned(),
        ProcessorError::Refused { error, .. } if !error.error_code.is_empty() => error.error_code.clone(),
        ProcessorError::Refused { .. } | ProcessorError::NoAnswer(_) | ProcessorError::Unreachable(_) => {
            ErrorCode::Other.as_str().to_owned()
        }
    }
}

fn refused(error: ProcessorError) -> Response {
    let status = match error {
        ProcessorError::NotFound(_) => StatusCode::NOT_FOUND,
        ProcessorError::Invalid(_) => StatusCode::BAD_REQUEST,
        ProcessorError::Refused { .. } => StatusCode::CONFLICT,
        ProcessorError::NoAnswer(_) => StatusCode::GATEWAY_TIMEOUT,
        ProcessorError::Unreachable(_) => StatusCode::BAD_GATEWAY,
    };
    answer(status, Some(&code_of(&error)), error.to_string())
}
