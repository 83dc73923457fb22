//! Routes without authentication: liveness, readiness and the version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// The process is up and serving.
pub async fn livez() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The process can reach its database.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let body = json!({"status": "unavailable", "checks": {"database": "unavailable"}});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /api/info`: the server's version, as Rocket.Chat answers it.
pub async fn info() -> Response {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "success": true})).into_response()
}
