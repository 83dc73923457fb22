//! Routes without authentication: liveness, readiness and the version.

use super::AppState;
use super::openapi::{Health, Info, True, Unready};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Liveness
///
/// The process is up and serving. Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/livez",
    operation_id = "livez",
    tag = "server",
    responses((status = 200, description = "Up", body = Health)),
)]
pub async fn livez() -> Response {
    Json(Health::default()).into_response()
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
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database cannot be reached", body = Unready),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    // Probes time out quickly (a second by default): answer 503 before they give up.
    let checked = tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await;
    match checked {
        Ok(Ok(())) => Json(Health::default()).into_response(),
        Ok(Err(error)) => unready(&error.to_string()),
        Err(_) => unready("no answer within the readiness timeout"),
    }
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

fn unready(reason: &str) -> Response {
    let request_id = super::observe::current_request_id();
    tracing::warn!(reason, request_id, "readiness check failed");
    (StatusCode::SERVICE_UNAVAILABLE, Json(Unready::default())).into_response()
}

/// The server's version
///
/// As Rocket.Chat answers it. Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/api/info",
    operation_id = "info",
    tag = "server",
    responses((status = 200, description = "The version", body = Info)),
)]
pub async fn info() -> Response {
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        success: True,
    })
    .into_response()
}
