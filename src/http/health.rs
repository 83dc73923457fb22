//! Routes without authentication: liveness, readiness and the version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::openapi as api;

/// Liveness
///
/// The process is up and serving. Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/livez",
    operation_id = "livez",
    tag = "server",
    responses((status = 200, description = "Up", body = api::Health)),
)]
pub async fn livez() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness
///
/// Whether the process can reach its database. Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "server",
    responses(
        (status = 200, description = "Ready", body = api::Health),
        (status = 503, description = "The database cannot be reached", body = api::Unready),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // Probes time out quickly (a second by default): answer 503 before they give up.
    let checked = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    match checked {
        Ok(Ok(())) => Json(json!({"status": "ok"})).into_response(),
        Ok(Err(error)) => unready(&error.to_string()),
        Err(_) => unready("no answer within the readiness timeout"),
    }
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

fn unready(reason: &str) -> Response {
    let request_id = super::observe::current_request_id();
    tracing::warn!(reason, request_id, "readiness check failed");
    let body = json!({"status": "unavailable", "checks": {"database": "unavailable"}});
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The server's version
///
/// As Rocket.Chat answers it. Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/api/info",
    operation_id = "info",
    tag = "server",
    responses((status = 200, description = "The version", body = api::Info)),
)]
pub async fn info() -> Response {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "success": true})).into_response()
}
