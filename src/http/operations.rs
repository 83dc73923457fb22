//! `GET /api/v1/getLatestImportOperations`: the 20 newest operations as a bare array, kept
//! serialized in the cache between changes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::AppState;
use super::error::{ApiError, json_response};
use super::guard::{Guarded, route};
use super::openapi as api;
use super::params::NoQuery;
use crate::access::Caller;
use crate::domain::permission;
use crate::telemetry;

/// How many operations Rocket.Chat returns.
pub const LATEST_LIMIT: i64 = 20;

route!(
    /// The checks of `getLatestImportOperations`.
    GetLatestImportOperations {
        caller: Arc<Caller>,
        permission: Some(permission::VIEW_IMPORT_OPERATIONS),
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// The 20 latest import operations
///
/// The 20 operations with the newest `_updatedAt`, newest first (ties in the order they were
/// stored), whatever their `valid` or `status`, with every stored field. Needs
/// `view-import-operations`. Takes no query parameter.
#[utoipa::path(
    get,
    path = "/api/v1/getLatestImportOperations",
    operation_id = "getLatestImportOperations",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    responses(
        (status = 200, description = "A bare JSON array (no `success`), `[]` when there are none",
            body = [api::Operation]),
        (status = 400, body = api::BadRequest, description = "A query parameter was sent (the route \
            takes none): `error-invalid-params`, one line `must NOT have additional properties` \
            per parameter"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn get_latest_import_operations(
    State(state): State<AppState>,
    _: Guarded<GetLatestImportOperations>,
) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, latest_array(&state).await?))
}

/// The latest operations as one JSON array, from the cache or the store: what
/// `getLatestImportOperations` answers over REST, and over DDP with its dates as EJSON.
pub(crate) async fn latest_array(state: &AppState) -> Result<Bytes, ApiError> {
    let stamp = state.cache.stamp();
    let cached = stamp.and_then(|s| state.cache.latest(s));
    telemetry::cache_lookup("latest", cached.is_some());
    Ok(match cached {
        Some(body) => body,
        None => {
            let fetch = || async {
                let docs = state.store.latest_operations(LATEST_LIMIT).await?;
                Ok(Bytes::from(json_array(&docs)))
            };
            match stamp {
                Some(stamp) => state.cache.latest_or_fetch(stamp, fetch).await?,
                None => fetch().await?,
            }
        }
    })
}

/// Joins stored JSON documents into one array without parsing them again.
pub fn json_array(docs: &[String]) -> String {
    let mut body = String::with_capacity(2 + docs.iter().map(|d| d.len() + 1).sum::<usize>());
    body.push('[');
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(doc);
    }
    body.push(']');
    body
}
