//! The front line every request passes through (`front_line`), and what the server tells about
//! its requests: a request id on every request and answer (taken from `X-Request-Id` when the
//! client sent a sane one), the metrics of each answer, and `/metrics`.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use super::AppState;
use super::cors::{self, Cors};
use super::error::internal_error_response;
use super::rate_limit::{self, Count};
use crate::telemetry;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Ids made here: a random prefix for this process and a counter.
fn new_request_id() -> HeaderValue {
    static PREFIX: LazyLock<String> =
        LazyLock::new(|| crate::domain::ids::new_meteor_id()[..8].to_owned());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 8 + 1 + 20];
    id[..8].copy_from_slice(PREFIX.as_bytes());
    id[8] = b'-';
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    id[9..9 + digits.len()].copy_from_slice(digits);
    HeaderValue::from_bytes(&id[..9 + digits.len()]).expect("ASCII")
}

/// A client's id is kept when it is 1 to 128 visible ASCII characters.
fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic)
}

/// What the front line keeps for the request its task is handling: task-local rather than in
/// the request's extensions, so that nothing is allocated for it.
struct RequestContext {
    id: HeaderValue,
    /// The rate limiter's count of this call, for the headers of the answer.
    rate_limit: Cell<Option<Count>>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The id of the request this task is handling, or "" outside a request.
pub fn current_request_id() -> String {
    CONTEXT
        .try_with(|c| c.id.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Keeps the rate limiter's count of this request for the headers of its answer.
pub fn set_rate_limit(count: Count) {
    let _ = CONTEXT.try_with(|c| c.rate_limit.set(Some(count)));
}

/// Wraps every route of `router` in the front line, one `ServiceBuilder` applied once (so
/// the layers cost no boxed service or future each), outermost first: Rocket.Chat's
/// `Cache-Control: no-store` / `Pragma: no-cache` on every answer; `Observe` (with `cors`, the
/// CORS settings, and `access_log`, whether each answer gets its access line); the JSON 500
/// for a handler that panicked. tower-http's request-id layers are
/// not used: they keep a client's unusable id, and they would change the headers before the
/// size limit counts what the client sent.
///
/// `upload_limit` is `uploadImportFile`'s body limit (`limits::upload_body_limit`).
pub fn front_line(router: Router, cors: Cors, access_log: bool, upload_limit: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::overriding(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(SetResponseHeaderLayer::overriding(
                header::PRAGMA,
                HeaderValue::from_static("no-cache"),
            ))
            .layer(ObserveLayer {
                cors: Arc::new(cors),
                access_log,
                upload_limit,
            })
            .layer(CatchPanicLayer::custom(|_| internal_error_response())),
    )
}

/// The layer of `Observe`.
#[derive(Clone, Default)]
pub struct ObserveLayer {
    cors: Arc<Cors>,
    access_log: bool,
    upload_limit: usize,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            cors: self.cors.clone(),
            access_log: self.access_log,
            upload_limit: self.upload_limit,
        }
    }
}

/// What no crate does for us, in this order: the size limits (431, 413: counted on what the
/// client sent); `OPTIONS` under `/api`, answered here, before any route's checks, and the
/// CORS headers of every other answer there (`cors`); a sane `X-Request-Id` on the request and
/// its answer (the client's when it sent exactly one that `is_sane`, else a new one); the
/// request's task-local context (its id for log lines, the rate limiter's count for the
/// answer's headers); the requests in flight; the metrics of the answer and its access line
/// at `info` (unless `access_log` is off); and at debug level a span (a span costs more than a
/// cached answer: only when someone reads it).
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    cors: Arc<Cors>,
    access_log: bool,
    upload_limit: usize,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut ids = request.headers().get_all(&REQUEST_ID).iter();
        let id = match (ids.next(), ids.next()) {
            (Some(id), None) if is_sane(id) => id.clone(),
            _ => new_request_id(),
        };
        let path = request.uri().path();
        let finish = Finish {
            start: Instant::now(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: request.method().clone(),
            cors: cors::is_api_path(path) && request.method() != Method::OPTIONS,
            access_log: self.access_log,
            in_flight: Some(telemetry::InFlight::start()),
            id,
        };
        let refused = match super::limits::check(&request, self.upload_limit) {
            Err(refused) => Some(refused.into_response()),
            Ok(()) if cors::is_preflight(request.method(), path) => {
                Some(self.cors.preflight(request.headers()))
            }
            Ok(()) => None,
        };
        if let Some(response) = refused {
            return ObserveFuture {
                stage: Stage::Refused {
                    response: Some(response),
                },
                span: tracing::Span::none(),
                finish,
            };
        }
        let mut request = super::limits::bounded(request, self.upload_limit);
        request
            .headers_mut()
            .insert(REQUEST_ID.clone(), finish.id.clone());
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            let request_id = finish.id.to_str().unwrap_or_default();
            let path = finish.route();
            tracing::debug_span!("request", request_id, method = %finish.method, path)
        } else {
            tracing::Span::none()
        };
        let context = RequestContext {
            id: finish.id.clone(),
            rate_limit: Cell::new(None),
        };
        ObserveFuture {
            stage: Stage::Running {
                future: CONTEXT.scope(context, self.inner.call(request)),
            },
            span,
            finish,
        }
    }
}

/// What the answer needs once the route has given it.
struct Finish {
    start: Instant,
    route: Option<MatchedPath>,
    method: Method,
    /// Whether the answer gets the CORS headers of every non-`OPTIONS` answer under `/api`.
    cors: bool,
    access_log: bool,
    /// Counts the request in flight until it is answered (or dropped unanswered).
    in_flight: Option<telemetry::InFlight>,
    id: HeaderValue,
}

impl Finish {
    fn route(&self) -> &str {
        self.route
            .as_ref()
            .map_or("<unmatched>", MatchedPath::as_str)
    }
}

pin_project_lite::pin_project! {
    /// With the route, or refused before it.
    #[project = StageProj]
    enum Stage<F> {
        Running { #[pin] future: TaskLocalFuture<RequestContext, F> },
        Refused { response: Option<Response> },
    }
}

pin_project_lite::pin_project! {
    /// The future of `Observe`: the route's, in the request's task-local context.
    pub struct ObserveFuture<F> {
        #[pin]
        stage: Stage<F>,
        span: tracing::Span,
        finish: Finish,
    }
}

impl<F, B> Future for ObserveFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, Infallible>>,
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.stage.project() {
            StageProj::Refused { response } => response.take().expect("polled after completion"),
            StageProj::Running { mut future } => {
                let _entered = this.span.enter();
                let Poll::Ready(Ok(response)) = future.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                // The panic layer inside boxes the body in a type of its own.
                let mut response = response.map(axum::body::Body::new);
                if let Some(count) = future.take_value().and_then(|c| c.rate_limit.get()) {
                    rate_limit::write_headers(count, response.headers_mut());
                }
                response
            }
        };
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), this.finish.id.clone());
        if this.finish.cors {
            cors::allow_any_origin(response.headers_mut());
        }
        this.finish.in_flight.take();
        let elapsed = this.finish.start.elapsed();
        let status = response.status().as_u16();
        let (route, method) = (this.finish.route(), this.finish.method.as_str());
        telemetry::record_request(route, method, status, elapsed);
        if this.finish.access_log
            && tracing::enabled!(target: telemetry::ACCESS_TARGET, tracing::Level::INFO)
        {
            let id = this.finish.id.to_str().unwrap_or_default();
            telemetry::access_line(method, route, status, elapsed, id);
        }
        Poll::Ready(Ok(response))
    }
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
    telemetry::collect_process_metrics();
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::Response;
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;

    async fn through_front_line<F, Fut>(handler: F, request: Request<Body>) -> Response
    where
        F: FnMut(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Infallible>> + Send + 'static,
    {
        let handler = service_fn(handler);
        front_line(
            Router::new().fallback_service(handler),
            Cors::default(),
            true,
            super::super::body::MAX_BODY_BYTES,
        )
        .oneshot(request)
        .await
        .unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_handler_that_panics_gets_the_json_500_with_the_usual_headers() {
        let response = through_front_line(
            |_request: Request<Body>| async move {
                if true {
                    panic!("a bug");
                }
                Ok::<_, Infallible>(Response::new(Body::empty()))
            },
            Request::get("/x")
                .header("x-request-id", "abc-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "abc-1");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(body["success"], false);
    }

    #[tokio::test]
    async fn the_rate_limit_count_reaches_the_answer_and_the_id_the_handler() {
        let response = through_front_line(
            |request: Request<Body>| async move {
                let id = request.headers()["x-request-id"].clone();
                assert_eq!(current_request_id(), id.to_str().unwrap());
                set_rate_limit(Count {
                    limit: 10,
                    remaining: 7,
                    reset_ms: 1_700_000_000_000,
                    allowed: true,
                });
                Ok::<_, Infallible>(Response::new(Body::from("ok")))
            },
            Request::get("/x").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()["x-request-id"].to_str().unwrap();
        let (prefix, n) = id.split_once('-').unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(n.parse::<u64>().is_ok(), "{id}");
        assert_eq!(response.headers()["x-ratelimit-limit"], "10");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "7");
        assert_eq!(response.headers()["x-ratelimit-reset"], "1700000000000");
        assert_eq!(response.headers()["pragma"], "no-cache");
        assert_eq!(body_text(response).await, "ok");
    }

    /// What a JSON log subscriber wrote.
    #[derive(Clone, Default)]
    struct Written(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A line the handler writes carries the request's id at the top level without being
    /// given it, and the answer gets one access line, unless the access log is off.
    #[tokio::test]
    async fn json_lines_of_a_request_carry_its_id_and_one_access_line() {
        for access_log in [true, false] {
            let written = Written::default();
            let writer = written.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .event_format(telemetry::JsonLines)
                .finish();
            let _default = tracing::subscriber::set_default(subscriber);
            let handler = service_fn(|_request: Request<Body>| async move {
                tracing::warn!(rows = 3, "inside the handler");
                Ok::<_, Infallible>(Response::new(Body::empty()))
            });
            let response = front_line(
                Router::new().route_service("/items", handler),
                Cors::default(),
                access_log,
                super::super::body::MAX_BODY_BYTES,
            )
            .oneshot(
                Request::get("/items?secret=1")
                    .header("x-request-id", "ctx-7")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            tracing::info!("outside any request");
            let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let inside = lines
                .iter()
                .find(|v| v["message"] == "inside the handler")
                .expect("the handler's line");
            assert_eq!(inside["request_id"], "ctx-7");
            assert_eq!(inside["level"], "WARN");
            assert_eq!(inside["rows"], 3);
            let keys: Vec<&str> = inside
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                [
                    "timestamp",
                    "level",
                    "message",
                    "target",
                    "request_id",
                    "rows"
                ]
            );
            let outside = lines
                .iter()
                .find(|v| v["message"] == "outside any request")
                .unwrap();
            assert!(outside.get("request_id").is_none(), "{outside}");
            let access: Vec<_> = lines
                .iter()
                .filter(|v| v["target"] == telemetry::ACCESS_TARGET)
                .collect();
            if !access_log {
                assert!(access.is_empty(), "{text}");
                continue;
            }
            assert_eq!(access.len(), 1, "{text}");
            assert_eq!(access[0]["request_id"], "ctx-7");
            assert_eq!(access[0]["method"], "GET");
            assert_eq!(access[0]["route"], "/items");
            assert_eq!(access[0]["status"], 200);
            assert!(access[0]["duration_ms"].is_f64(), "{}", access[0]);
        }
    }

    #[tokio::test]
    async fn made_ids_differ_and_insane_ones_are_replaced() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let response =
            through_front_line(
                |_request: Request<Body>| async move {
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                },
                Request::get("/x")
                    .header("x-request-id", "has space")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_ne!(response.headers()["x-request-id"], "has space");
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}
