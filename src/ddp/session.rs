//! One DDP connection over a WebSocket (`GET /websocket`): Meteor's `server_id` frame, the
//! handshake, ping/pong and the server's heartbeat, methods (at most `METHOD_RATE` calls and
//! subscriptions per `RATE_WINDOW`, like Rocket.Chat's DDPRateLimiter per connection), the
//! `stream-importers` subscription fed by the change feed, `unsub`; a logged-in connection
//! whose token is revoked is closed within `RECHECK`, as Meteor closes the connections of a
//! removed login token (docs/compatibility.md, section 13).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::methods::{self, Context, Credentials};
use super::{MeteorError, result_message};
use crate::connections::SlotHeld;
use crate::feed::Change;
use crate::http::AppState;

/// The largest message a client may send (a file sent to `uploadImportFile` is inside one).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// The read buffer each connection starts with.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Meteor's heartbeat: a ping after this long without a message from the client...
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// ...and the connection closed when nothing came for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a logged-in connection's session is checked again.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Method calls and subscriptions a connection may make per `RATE_WINDOW`.
pub const METHOD_RATE: u32 = 10;
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A message the client does not read within this long closes the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The only DDP version served.
const VERSION: &str = "1";
/// The publication of Rocket.Chat's importer stream.
const IMPORTERS: &str = "stream-importers";

/// A subscription to `stream-importers`: the event name it listens to.
struct Subscription {
    event: String,
}

struct Session {
    state: AppState,
    client: IpAddr,
    connected: bool,
    user: Option<Credentials>,
    subscriptions: HashMap<String, Subscription>,
    feed: Option<broadcast::Receiver<Arc<Change>>>,
    /// The start of the current rate window and the calls counted in it.
    window: (Instant, u32),
}

/// Why the connection ends.
enum End {
    Close,
}

/// Serves one upgraded connection until it closes, is idle too long, falls behind the feed,
/// loses its login, or the server shuts down.
pub async fn serve(mut socket: WebSocket, state: AppState, client: IpAddr, held: Option<SlotHeld>) {
    let _held = held;
    let mut session = Session {
        state: state.clone(),
        client,
        connected: false,
        user: None,
        subscriptions: HashMap::new(),
        feed: None,
        window: (Instant::now(), 0),
    };
    let mut closed = std::pin::pin!(state.closed());
    if send(&mut socket, r#"{"server_id":"0"}"#.into())
        .await
        .is_err()
    {
        return;
    }
    let mut last_heard = Instant::now();
    let mut pinged = false;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = crate::http::events::recheck_interval();
    loop {
        let feed = async {
            match session.feed.as_mut() {
                Some(receiver) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut closed => break,
            received = socket.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        pinged = false;
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                last_heard = Instant::now();
                pinged = false;
                let mut out = Vec::new();
                let end = session.handle(text.as_str(), &mut out).await;
                for message in out {
                    if send(&mut socket, message).await.is_err() {
                        return;
                    }
                }
                if let Some(End::Close) = end {
                    break;
                }
            }
            change = feed => match change {
                Ok(change) => {
                    let Some(frame) = &change.ddp_progress else { continue };
                    let count = session
                        .subscriptions
                        .values()
                        .filter(|s| s.event == "progress")
                        .count();
                    for _ in 0..count {
                        if send(&mut socket, frame.clone()).await.is_err() {
                            return;
                        }
                    }
                }
                // Too far behind the feed (a slow client): dropped.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
            },
            _ = heartbeat.tick() => {
                let silent = last_heard.elapsed();
                if silent >= IDLE_TIMEOUT {
                    break;
                }
                if silent >= HEARTBEAT && !pinged && session.connected {
                    pinged = true;
                    if send(&mut socket, r#"{"msg":"ping"}"#.into()).await.is_err() {
                        return;
                    }
                }
            }
            _ = recheck.tick() => {
                if let Some(user) = &session.user {
                    let live = session.state.access.authenticate(&user.user_id, &user.token).await;
                    // Revoked or expired: Meteor closes the connections logged in with it.
                    if matches!(live, Ok(None)) {
                        break;
                    }
                }
            }
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn text(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

/// `{"msg":"error","reason":..,"offendingMessage":..}`.
fn error_message(reason: &str, offending: Option<&Value>) -> Utf8Bytes {
    let mut out = Map::new();
    out.insert("msg".into(), "error".into());
    out.insert("reason".into(), reason.into());
    if let Some(message) = offending {
        out.insert("offendingMessage".into(), message.clone());
    }
    text(&Value::Object(out))
}

fn nosub(id: &str, error: Option<MeteorError>) -> Utf8Bytes {
    let mut out = Map::new();
    out.insert("msg".into(), "nosub".into());
    out.insert("id".into(), id.into());
    if let Some(error) = error {
        out.insert("error".into(), error.to_value());
    }
    text(&Value::Object(out))
}

impl Session {
    /// Answers one message from the client into `out`.
    async fn handle(&mut self, raw: &str, out: &mut Vec<Utf8Bytes>) -> Option<End> {
        let Ok(message) = serde_json::from_str::<Value>(raw) else {
            out.push(error_message("Parse error", None));
            return None;
        };
        let kind = message
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(kind) = kind.filter(|_| message.is_object()) else {
            out.push(error_message("Bad request", Some(&message)));
            return None;
        };
        if !self.connected {
            if kind != "connect" {
                out.push(error_message("Must connect first", Some(&message)));
                return None;
            }
            return self.connect(&message, out);
        }
        match kind.as_str() {
            "ping" => {
                let mut pong = Map::new();
                pong.insert("msg".into(), "pong".into());
                if let Some(id) = message.get("id").filter(|id| !id.is_null()) {
                    pong.insert("id".into(), id.clone());
                }
                out.push(text(&Value::Object(pong)));
            }
            "pong" => {}
            "method" => self.method(&message, out).await,
            "sub" => self.sub(&message, out),
            "unsub" => {
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.subscriptions.remove(id);
                    if self.subscriptions.is_empty() {
                        self.feed = None;
                    }
                    out.push(nosub(id, None));
                } else {
                    out.push(error_message("Malformed subscription", Some(&message)));
                }
            }
            _ => out.push(error_message("Bad request", Some(&message))),
        }
        None
    }

    /// Meteor's `_handleConnect`: the version must be a string among the client's `support`
    /// and the best one both know (only "1" here).
    fn connect(&mut self, message: &Value, out: &mut Vec<Utf8Bytes>) -> Option<End> {
        let version = message.get("version").and_then(Value::as_str);
        let support: Option<Vec<&str>> = message
            .get("support")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(Value::as_str).collect());
        let agreed = match (version, &support) {
            (Some(version), Some(support)) => {
                support.contains(&version) && support.contains(&VERSION) && version == VERSION
            }
            _ => false,
        };
        if !agreed {
            out.push(text(&json!({"msg": "failed", "version": VERSION})));
            return Some(End::Close);
        }
        self.connected = true;
        let session = crate::domain::ids::new_meteor_id();
        out.push(text(&json!({"msg": "connected", "session": session})));
        None
    }

    /// DDPRateLimiter per connection: `Some(wait)` when this call is over the rate.
    fn over_rate(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let (started, count) = &mut self.window;
        if now.duration_since(*started) >= RATE_WINDOW {
            *started = now;
            *count = 0;
        }
        *count += 1;
        (*count > METHOD_RATE).then(|| RATE_WINDOW.saturating_sub(now.duration_since(*started)))
    }

    async fn method(&mut self, message: &Value, out: &mut Vec<Utf8Bytes>) {
        let id = message.get("id").and_then(Value::as_str);
        let name = message.get("method").and_then(Value::as_str);
        let params = match message.get("params") {
            None => Some(&[][..]),
            Some(Value::Array(params)) => Some(params.as_slice()),
            Some(_) => None,
        };
        let (Some(id), Some(name), Some(params)) = (id, name, params) else {
            out.push(error_message("Malformed method invocation", Some(message)));
            return;
        };
        let outcome = if let Some(wait) = self.over_rate() {
            Err(too_many_requests(wait))
        } else {
            let ctx = Context {
                state: &self.state,
                user: self.user.as_ref(),
                client: self.client,
            };
            let outcome = methods::call(&ctx, name, params).await;
            if let Some(login) = outcome.login {
                self.user = Some(login);
            }
            outcome.result
        };
        out.push(text(&result_message(id, &outcome)));
        out.push(text(&json!({"msg": "updated", "methods": [id]})));
    }

    fn sub(&mut self, message: &Value, out: &mut Vec<Utf8Bytes>) {
        let id = message.get("id").and_then(Value::as_str);
        let name = message.get("name").and_then(Value::as_str);
        let params = match message.get("params") {
            None => Some(&[][..]),
            Some(Value::Array(params)) => Some(params.as_slice()),
            Some(_) => None,
        };
        let (Some(id), Some(name), Some(params)) = (id, name, params) else {
            out.push(error_message("Malformed subscription", Some(message)));
            return;
        };
        // Meteor ignores a subscription id already in use.
        if self.subscriptions.contains_key(id) {
            return;
        }
        if let Some(wait) = self.over_rate() {
            out.push(nosub(id, Some(too_many_requests(wait))));
            return;
        }
        if name != IMPORTERS {
            out.push(nosub(
                id,
                Some(MeteorError::new(
                    404,
                    format!("Subscription '{name}' not found"),
                )),
            ));
            return;
        }
        let Some(event) = params.first().and_then(Value::as_str) else {
            // `eventName.length` of something that is not a string fails inside the
            // publication: an internal error.
            out.push(nosub(id, Some(MeteorError::internal())));
            return;
        };
        if event.is_empty() {
            out.push(nosub(id, Some(MeteorError::bare("invalid-event-name"))));
            return;
        }
        // `allowRead('all')`: no login needed.
        let use_collection = match params.get(1) {
            Some(Value::Bool(flag)) => *flag,
            Some(Value::Object(options)) => {
                options.get("useCollection") == Some(&Value::Bool(true))
            }
            _ => false,
        };
        if self.feed.is_none() {
            self.feed = Some(self.state.feed.subscribe());
        }
        self.subscriptions.insert(
            id.to_owned(),
            Subscription {
                event: event.to_owned(),
            },
        );
        if use_collection {
            out.push(text(&json!({
                "msg": "added", "collection": IMPORTERS, "id": "id",
                "fields": {"eventName": event},
            })));
        }
        out.push(text(&json!({"msg": "ready", "subs": [id]})));
    }
}

/// DDPRateLimiter's error.
fn too_many_requests(wait: Duration) -> MeteorError {
    let ms = wait.as_millis().max(1) as u64;
    MeteorError::new(
        "too-many-requests",
        format!(
            "Error, too many requests. Please slow down. You must wait {} seconds before trying again.",
            ms.div_ceil(1000)
        ),
    )
    .with_details(json!({"timeToReset": ms}))
}
