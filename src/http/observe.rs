//! What the server tells about its requests: a request id on every request and answer (taken
//! from `X-Request-Id` when the client sent a sane one), and the metrics of each answer.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tracing::Instrument;

use super::AppState;
use super::rate_limit::HeaderSlot;
use crate::telemetry;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Ids made here: a random prefix for this process and a counter.
fn new_request_id() -> HeaderValue {
    static PREFIX: LazyLock<String> =
        LazyLock::new(|| crate::domain::ids::new_meteor_id()[..8].to_owned());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{}-{n}", *PREFIX)).expect("ASCII")
}

/// A client's id is kept when it is 1 to 128 visible ASCII characters.
fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic)
}

tokio::task_local! {
    /// The id of the request being handled, for log lines written outside its span.
    static CURRENT_ID: HeaderValue;
}

/// The id of the request this task is handling, or "" outside a request.
pub fn current_request_id() -> String {
    CURRENT_ID
        .try_with(|id| id.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Middleware, the one every request passes through (one layer rather than several, on the
/// hot path): the size limits (431, 413: counted on what the client sent), a sane
/// `X-Request-Id` on the request and its answer, the rate limiter's header slot, Rocket.Chat's
/// `Cache-Control: no-store` / `Pragma: no-cache`, the metrics of the answer, and at debug
/// level a span and a line per request.
pub async fn frontline(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let refused = super::limits::check(&request).err();

    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let id = match (ids.next(), ids.next()) {
        (Some(id), None) if is_sane(id) => id.clone(),
        _ => new_request_id(),
    };
    let mut response = match refused {
        Some(error) => error.into_response(),
        None => {
            request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
            let slot = HeaderSlot::default();
            request.extensions_mut().insert(slot.clone());
            let path = route.as_ref().map_or("<unmatched>", MatchedPath::as_str);
            // A span costs more than a cached answer: only when someone reads it.
            let span = if tracing::enabled!(tracing::Level::DEBUG) {
                let request_id = id.to_str().unwrap_or_default();
                tracing::debug_span!("request", request_id, method = %method, path)
            } else {
                tracing::Span::none()
            };
            let mut response = CURRENT_ID
                .scope(id.clone(), next.run(request))
                .instrument(span.clone())
                .await;
            slot.write(&mut response);
            span.in_scope(|| {
                tracing::debug!(status = response.status().as_u16(), elapsed = ?start.elapsed(), "answered");
            });
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID.clone(), id);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    telemetry::record_request(
        route.as_ref().map_or("<unmatched>", MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

/// Metrics
///
/// Prometheus' text format. Served on the API's address unless `--metrics-listen` gives it one
/// of its own (then this document does not list it). Needs no session; not rate limited.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "server",
    responses((status = 200, description = "The metrics, in Prometheus' text format 0.0.4",
        body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (size, idle) = state.store.pool_status();
    telemetry::pool_connections(size, idle);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        telemetry::metrics().render(),
    )
        .into_response()
}
