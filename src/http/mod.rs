//! The HTTP API: the router, its middleware, and one module per group of routes.
//!
//! `router(state)` builds the whole application; the server (`crate::server`) and the tests
//! both call it. Every route is declared once, in `routes`: the router's entry and the OpenAPI
//! document's path both come from the handler's `#[utoipa::path]`.

pub mod auth;
pub mod body;
pub mod cors;
mod dashboard;
pub mod deadline;
pub mod error;
pub mod events;
pub mod guard;
mod health;
mod import_page;
mod import_workflow;
pub(crate) mod imports;
pub(crate) mod limits;
pub mod login_guard;
mod observe;
pub mod openapi;
pub(crate) mod operations;
pub mod params;
mod permissions;
pub mod rate_limit;
pub mod realtime;
mod user_views;
pub(crate) mod users;

pub(crate) use observe::current_request_id;

use std::sync::{Arc, LazyLock};

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// The slots logins and `users.create` hash passwords in.
    pub hashing: crate::hashing::PasswordHashing,
    /// Every operation created or changed, for the event streams and DDP subscriptions.
    pub feed: crate::feed::Feed,
    /// Set when the server shuts down: long-lived streams (events, WebSockets) end then.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The import workflow's folder and bounds (`--import-file-dir`, ...).
    pub import: Arc<crate::config::ImportSettings>,
}

impl AppState {
    /// The state for a server over `store`; starts the cache's change watcher, so it must be
    /// called inside a Tokio runtime.
    pub fn new(store: Store, settings: Settings) -> Self {
        // Install the metrics recorder before the first request is counted.
        crate::telemetry::metrics();
        let cache = Cache::new(store.clone(), settings.change_detection);
        let feed = crate::feed::Feed::start(store.clone());
        AppState(Arc::new(Shared {
            access: Access::new(store.clone(), cache.clone(), &settings),
            cache,
            store,
            limiter: RateLimiter::from_settings(&settings).map(Arc::new),
            login_guard: Arc::default(),
            hashing: crate::hashing::PasswordHashing::new(settings.password_hashing),
            feed,
            closing: tokio::sync::watch::Sender::new(false),
            import: Arc::new(crate::config::ImportSettings::from_settings(&settings)),
            settings: Arc::new(settings),
        }))
    }
}

impl AppState {
    /// Ends the long-lived streams (events, WebSockets): the server is shutting down.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server is shutting down.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            let _ = closing.wait_for(|closed| *closed).await;
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Every route of the API, each declared once: `routes!` takes the method and the path from
/// the handler's `#[utoipa::path]` and gives both the router's entry and the document's path.
/// In the document's order; `/metrics` only when it is served on the API's address.
pub(crate) fn routes(metrics_on_api: bool) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(operations::get_latest_import_operations))
        .routes(routes!(users::login))
        .routes(routes!(users::logout, users::logout_get))
        .routes(routes!(users::me))
        .routes(routes!(users::users_create))
        .routes(routes!(users::users_delete))
        .routes(routes!(permissions::list_all))
        .routes(routes!(permissions::update))
        .routes(routes!(imports::get_current))
        .routes(routes!(imports::status))
        .routes(routes!(imports::new))
        .routes(routes!(imports::clear))
        .routes(routes!(imports::importers))
        .routes(routes!(imports::progress))
        .routes(routes!(imports::upsert))
        .routes(routes!(events::events))
        .routes(routes!(realtime::method_call))
        .routes(routes!(realtime::method_call_anon))
        .routes(routes!(import_workflow::upload))
        .routes(routes!(import_workflow::download))
        .routes(routes!(import_workflow::file_data))
        .routes(routes!(import_workflow::start))
        .routes(routes!(import_workflow::pending_files))
        .routes(routes!(import_workflow::pending_avatars))
        .routes(routes!(import_workflow::add_users))
        .routes(routes!(import_workflow::run))
        .routes(routes!(health::info))
        .routes(routes!(health::livez))
        .routes(routes!(health::readyz));
    let api = if metrics_on_api {
        api.routes(routes!(observe::metrics))
    } else {
        api
    };
    // DDP's WebSocket is no HTTP operation to document (docs/compatibility.md, section 13).
    api.route("/websocket", axum::routing::get(realtime::websocket))
        .routes(routes!(dashboard::page))
        .routes(routes!(import_page::page))
        .routes(routes!(openapi::document))
        .routes(routes!(openapi::page))
}

/// The routes without state, built once for each `/metrics` setting: building them makes the
/// whole document too, which the tests would otherwise pay for on every request.
static ROUTERS: LazyLock<[Router<AppState>; 2]> =
    LazyLock::new(|| [false, true].map(|metrics| routes(metrics).split_for_parts().0));

pub fn router(state: AppState) -> Router {
    let cors = cors::Cors::from_settings(&state.settings);
    let access_log = state.settings.access_log;
    let upload_limit = limits::upload_body_limit(state.import.max_bytes);
    observe::front_line(
        ROUTERS[usize::from(state.settings.metrics_on_api)]
            .clone()
            .fallback(not_found)
            // Rocket.Chat registers each route for its methods only: another method is not found.
            .method_not_allowed_fallback(not_found)
            .with_state(state),
        cors,
        access_log,
        upload_limit,
    )
}

/// `/metrics` alone, for a separate listen address.
pub fn metrics_router(state: AppState) -> Router {
    let (routes, _) = OpenApiRouter::default()
        .routes(routes!(observe::metrics))
        .split_for_parts();
    routes.fallback(not_found).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
