//! `GET /api/v1/import.operations.events`: every operation created or changed, by any process
//! or replica, as Server-Sent Events (an importops extension, docs/compatibility.md section 13).
//!
//! The route's checks (401, 403, 400, 429) answer JSON before the stream starts. The stream
//! then sends, for each change the feed (`crate::feed`) delivers, `id: <change number>`,
//! `event: operation` and `data: <the operation>`; a comment when nothing else was sent for
//! `HEARTBEAT`; with `Last-Event-ID: <n>` first what changed after `n`, from the database. It
//! ends when the caller's token or permission goes (checked every `RECHECK` through `access`,
//! whose cache the change watcher empties), when it falls too far behind the feed, and when
//! the server shuts down. It holds its connection busy while it lasts (`connections`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};

use super::AppState;
use super::error::ApiError;
use super::guard::{Guarded, route};
use super::openapi as api;
use super::params::NoQuery;
use crate::access::Caller;
use crate::connections::{ConnectionSlot, SlotHeld};
use crate::domain::permission::VIEW_IMPORT_OPERATIONS;
use crate::feed::Change;

/// A comment is sent when nothing else was for this long.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often the caller's session and permission are checked again.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Rows read per query while replaying after `Last-Event-ID`.
const REPLAY_PAGE: i64 = 500;

route!(
    /// The checks of `import.operations.events`.
    Events {
        caller: Arc<Caller>,
        permission: Some(VIEW_IMPORT_OPERATIONS),
        query: NoQuery,
        body: (),
        rate_limited: true,
    }
);

/// Operations as they change (an importops extension)
///
/// Not part of Rocket.Chat's API. A Server-Sent Events stream (`text/event-stream`): for every
/// operation created or changed by any process or replica sharing the database, within a
/// second, `id: <n>` (a decimal change number, strictly increasing along the stream),
/// `event: operation` and `data: <the operation as getLatestImportOperations shows it>`; a
/// comment line at least every 15 s otherwise. Reconnecting with `Last-Event-ID: <n>` first
/// sends each operation changed after `n`, in its latest state. The stream ends within 2 s of
/// the token being revoked or `view-import-operations` being taken away, and at shutdown.
/// Needs `view-import-operations`. Takes no query parameter.
#[utoipa::path(
    get,
    path = "/api/v1/import.operations.events",
    operation_id = "import.operations.events",
    tag = "imports",
    security(("userId" = [], "authToken" = [])),
    params(("Last-Event-ID" = Option<String>, Header,
        description = "The last change number received: what changed after it is sent first")),
    responses(
        (status = 200, description = "The event stream", body = String,
            content_type = "text/event-stream",
            example = json!("id: 8\nevent: operation\ndata: {\"_id\":\"...\"}\n\n")),
        (status = 400, body = api::BadRequest, description = "A query parameter was sent (the \
            route takes none): `error-invalid-params`"),
        (status = 403, response = api::PermissionDenied),
        (status = 429, response = api::RateLimited),
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    slot: Option<Extension<ConnectionSlot>>,
    headers: HeaderMap,
    _: Guarded<Events>,
) -> Result<Response, ApiError> {
    // The guard authenticated exactly these headers.
    let (Some(user_id), Some(token)) = (
        super::auth::user_id(&headers),
        super::auth::auth_token(&headers),
    ) else {
        return Err(ApiError::Unauthorized(state.settings.auth_error_body));
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0);
    let stream = EventStream {
        receiver: state.feed.subscribe(),
        user_id: user_id.to_owned(),
        token: token.to_owned(),
        closed: Box::pin(state.closed()),
        state,
        pending: VecDeque::from([Bytes::from_static(b": connected\n\n")]),
        replay_after: last_event_id,
        last: last_event_id.unwrap_or(0),
        heartbeat: Box::pin(tokio::time::sleep(HEARTBEAT)),
        recheck: recheck_interval(),
        _held: slot.map(|Extension(slot)| slot.hold()),
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        stream
            .next()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), stream))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // Proxies that buffer answers (nginx) pass this one on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Ticks every `RECHECK`, the first one `RECHECK` from now.
pub fn recheck_interval() -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// Whether the session still authenticates and holds `permission`. A database that cannot be
/// reached proves nothing either way: the stream goes on.
pub async fn still_allowed(state: &AppState, user_id: &str, token: &str, permission: &str) -> bool {
    match state.access.authenticate(user_id, token).await {
        Ok(Some(caller)) => state
            .access
            .has_permission(&caller, permission)
            .await
            .unwrap_or(true),
        Ok(None) => false,
        Err(_) => true,
    }
}

struct EventStream {
    state: AppState,
    receiver: broadcast::Receiver<Arc<Change>>,
    user_id: String,
    token: String,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// What is to be sent before anything else.
    pending: VecDeque<Bytes>,
    /// While replaying: the change number to read after.
    replay_after: Option<i64>,
    /// The greatest change number sent (or the client's `Last-Event-ID`).
    last: i64,
    heartbeat: Pin<Box<tokio::time::Sleep>>,
    recheck: tokio::time::Interval,
    _held: Option<SlotHeld>,
}

impl EventStream {
    /// The next bytes to send, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                self.heartbeat
                    .as_mut()
                    .reset(tokio::time::Instant::now() + HEARTBEAT);
                return Some(bytes);
            }
            if let Some(after) = self.replay_after {
                let page = self.state.feed.since(after, REPLAY_PAGE).await.ok()?;
                self.replay_after = (page.len() as i64 == REPLAY_PAGE)
                    .then(|| page.last().map_or(after, |c| c.seq));
                for change in page {
                    if change.seq > self.last {
                        self.last = change.seq;
                        self.pending.push_back(change.sse.clone());
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                () = &mut self.closed => return None,
                _ = self.recheck.tick() => {
                    let allowed = still_allowed(
                        &self.state, &self.user_id, &self.token, VIEW_IMPORT_OPERATIONS,
                    ).await;
                    if !allowed {
                        return None;
                    }
                }
                received = self.receiver.recv() => match received {
                    Ok(change) => {
                        if change.seq > self.last {
                            self.last = change.seq;
                            self.pending.push_back(change.sse.clone());
                        }
                    }
                    // Too far behind (a slow client): dropped; it may reconnect with its
                    // Last-Event-ID.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                },
                () = &mut self.heartbeat => {
                    self.pending.push_back(Bytes::from_static(b": heartbeat\n\n"));
                }
            }
        }
    }
}
