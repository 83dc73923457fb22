//! Routes without authentication: liveness, readiness and the version.

use std::sync::Arc;

use super::AppState;
use super::auth::Session;
use super::error::ApiError;
use super::openapi::{ClientVersions, Health, Info, InfoDetails, True, Unready};
use crate::access::Caller;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
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

/// The header that carries importops' own version on `/api/info`.
pub static IMPORTOPS_VERSION: HeaderName = HeaderName::from_static("x-importops-version");

/// The permission that shows the full version (docs/compatibility.md#4-6-server-routes).
const VIEW_STATISTICS: &str = "view-statistics";

/// The Rocket.Chat version, as Rocket.Chat's `getTrimmedServerVersion` cuts it: the first
/// `major.minor` found, and everything after it dropped (`8.0.0-rc.1` -> `8.0`). A version
/// without one is kept whole.
fn trimmed_version(version: &str) -> &str {
    let bytes = version.as_bytes();
    let digits_from = |i: usize| bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    for start in 0..bytes.len() {
        let major = digits_from(start);
        if major == 0 {
            continue;
        }
        let dot = start + major;
        if bytes.get(dot) != Some(&b'.') {
            continue;
        }
        let minor = digits_from(dot + 1);
        if minor > 0 {
            return &version[..dot + 1 + minor];
        }
    }
    version
}

/// The server's version
///
/// As Rocket.Chat answers it: the Rocket.Chat version importops emulates
/// (`--rocketchat-version`), trimmed to `major.minor`; a caller holding `view-statistics` gets
/// the whole version and `info`. Needs no session (one is used when sent); not rate limited.
/// importops' own version is in the `X-Importops-Version` header.
#[utoipa::path(
    get,
    path = "/api/info",
    operation_id = "info",
    tag = "server",
    responses((status = 200, description = "The version", body = Info,
        headers(("X-Importops-Version" = String, description = "importops' own version")))),
)]
pub async fn info(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let version = state.settings.rocketchat_version.as_str();
    // Rocket.Chat authenticates the caller when the headers are there, without requiring it.
    let full = if headers.contains_key("x-user-id") || headers.contains_key("x-auth-token") {
        match <Arc<Caller> as Session>::authenticate(&headers, &state).await {
            Ok(caller) => {
                state
                    .access
                    .has_permission(&caller, VIEW_STATISTICS)
                    .await?
            }
            Err(ApiError::Unauthorized(_)) => false,
            Err(other) => return Err(other),
        }
    } else {
        false
    };
    let body = Info {
        version: if full {
            version.to_owned()
        } else {
            trimmed_version(version).to_owned()
        },
        info: full.then(|| InfoDetails {
            version: version.to_owned(),
        }),
        minimum_client_versions: ClientVersions::default(),
        success: True,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        IMPORTOPS_VERSION.clone(),
        HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::trimmed_version;

    /// As `Info.version.replace(/(\d+\.\d+).*/, '$1')` in Rocket.Chat's
    /// getTrimmedServerVersion.ts.
    #[test]
    fn versions_are_trimmed_as_rocketchat_trims_them() {
        for (version, trimmed) in [
            ("8.0.0", "8.0"),
            ("8.12.3", "8.12"),
            ("8.0.0-rc.1", "8.0"),
            ("10.4", "10.4"),
            ("v8.1.2", "v8.1"),
            ("1a.2.3", "1a.2.3"),
            ("8", "8"),
            ("8.", "8."),
            ("", ""),
            ("develop", "develop"),
        ] {
            assert_eq!(trimmed_version(version), trimmed, "{version}");
        }
    }
}
