//! The HTTP API: the router, its middleware, and one module per group of routes.
//!
//! `router(state)` builds the whole application; the server (`crate::server`) and the tests
//! both call it.

pub mod auth;
pub mod error;
mod health;
mod operations;
pub mod params;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::access::Access;
use crate::cache::Cache;
use crate::config::Settings;
use crate::store::Store;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub cache: Arc<Cache>,
    pub access: Access,
    pub settings: Arc<Settings>,
}

impl AppState {
    /// The state for a server over `store`; starts the cache's change watcher, so it must be
    /// called inside a Tokio runtime.
    pub fn new(store: Store, settings: Settings) -> Self {
        let cache = Cache::new(store.clone());
        AppState {
            access: Access::new(store.clone(), cache.clone(), &settings),
            cache,
            store,
            settings: Arc::new(settings),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/api/v1/getLatestImportOperations",
            get(operations::get_latest_import_operations),
        )
        .route("/api/info", get(health::info))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        // Rocket.Chat registers each route for its methods only: another method is not found.
        .method_not_allowed_fallback(not_found)
        .with_state(state)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::PRAGMA,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error::internal_error_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // The route's pattern, not the raw URI: no query strings in the logs.
                let path = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("<unmatched>", MatchedPath::as_str);
                tracing::debug_span!("request", method = %request.method(), path)
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            HeaderName::from_static("x-auth-token"),
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
