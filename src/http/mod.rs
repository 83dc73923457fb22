//! The HTTP API: the router, its middleware, and one module per group of routes.
//!
//! `router(state)` builds the whole application; the server (`crate::server`) and the tests
//! both call it.

pub mod auth;
pub mod body;
mod dashboard;
pub mod error;
mod health;
mod imports;
mod limits;
pub mod login_guard;
mod observe;
pub mod openapi;
mod operations;
pub mod params;
mod permissions;
pub mod rate_limit;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::access::Access;
use crate::cache::Cache;
use crate::config::Settings;
use crate::store::Store;
use error::ApiError;
use rate_limit::RateLimiter;

/// What every handler can reach. Cloned for every request (by the router and by `State`), so
/// it is one `Arc`: one reference count to touch instead of one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of `AppState`, reached through `Deref`.
pub struct Shared {
    pub store: Store,
    pub cache: Arc<Cache>,
    pub access: Access,
    pub settings: Arc<Settings>,
    /// `None` when the rate limiter is off.
    pub limiter: Option<Arc<RateLimiter>>,
    pub login_guard: Arc<login_guard::LoginGuard>,
}

impl AppState {
    /// The state for a server over `store`; starts the cache's change watcher, so it must be
    /// called inside a Tokio runtime.
    pub fn new(store: Store, settings: Settings) -> Self {
        // Install the metrics recorder before the first request is counted.
        crate::telemetry::metrics();
        let cache = Cache::new(store.clone());
        AppState(Arc::new(Shared {
            access: Access::new(store.clone(), cache.clone(), &settings),
            cache,
            store,
            limiter: RateLimiter::from_settings(&settings).map(Arc::new),
            login_guard: Arc::default(),
            settings: Arc::new(settings),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .route(
            "/api/v1/getLatestImportOperations",
            get(operations::get_latest_import_operations),
        )
        .route("/api/v1/login", post(users::login))
        .route("/api/v1/logout", post(users::logout))
        .route("/api/v1/me", get(users::me))
        .route("/api/v1/users.create", post(users::users_create))
        .route("/api/v1/users.delete", post(users::users_delete))
        .route("/api/v1/permissions.listAll", get(permissions::list_all))
        .route("/api/v1/permissions.update", post(permissions::update))
        .route(
            "/api/v1/getCurrentImportOperation",
            get(imports::get_current),
        )
        .route("/api/v1/import.status", get(imports::status))
        .route("/api/v1/import.new", post(imports::new))
        .route("/api/v1/import.clear", post(imports::clear))
        .route("/api/v1/importers.list", get(imports::importers))
        .route("/api/v1/getImportProgress", get(imports::progress))
        .route("/api/v1/import.operations.upsert", post(imports::upsert))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/docs", get(openapi::page))
        .route("/api/info", get(health::info))
        .route("/", get(dashboard::page))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz));
    if state.settings.metrics_on_api {
        routes = routes.route("/metrics", get(observe::metrics));
    }
    observe::front_line(
        routes
            .fallback(not_found)
            // Rocket.Chat registers each route for its methods only: another method is not found.
            .method_not_allowed_fallback(not_found)
            .with_state(state),
    )
}

/// `/metrics` alone, for a separate listen address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(observe::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
