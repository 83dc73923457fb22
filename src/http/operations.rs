//! `GET /api/v1/getLatestImportOperations`: the 20 newest operations as a bare array, kept
//! serialized in the cache between changes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;

use super::AppState;
use super::auth::{Authorized, ViewImportOperations};
use super::error::{ApiError, json_response};
use super::params::NoQueryParams;
use crate::telemetry;

/// How many operations Rocket.Chat returns.
pub const LATEST_LIMIT: i64 = 20;

pub async fn get_latest_import_operations(
    _caller: Authorized<ViewImportOperations>,
    _no_params: NoQueryParams,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let stamp = state.cache.stamp();
    let cached = stamp.and_then(|s| state.cache.latest(s));
    telemetry::cache_lookup("latest", cached.is_some());
    let body = match cached {
        Some(body) => body,
        None => {
            let docs = state.store.latest_operations(LATEST_LIMIT).await?;
            let body = Bytes::from(json_array(&docs));
            if let Some(stamp) = stamp {
                state.cache.put_latest(stamp, body.clone());
            }
            body
        }
    };
    Ok(json_response(StatusCode::OK, body))
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
