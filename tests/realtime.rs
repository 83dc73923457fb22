//! Rocket.Chat's realtime API and the event stream, through a real server over TCP: DDP over a
//! WebSocket (`/websocket`), `method.call` / `method.callAnon`, and
//! `import.operations.events` (Server-Sent Events), on SQLite and Postgres, with changes made
//! by this server, by the command line (another process) and by a second server.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Login, TestApp, TestDb, operation};
use futures_util::{SinkExt, StreamExt};
use importops::config::Settings;
use importops::connections::Connections;
use importops::server::{Bounds, run};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Long enough for any answer on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);
/// A change anywhere reaches subscribers within this.
const FRESH: Duration = Duration::from_secs(1);
/// A revoked session is ended within this.
const REVOKED: Duration = Duration::from_secs(2);
/// Slack for a loaded test machine on the bounds above (the bench measures the real figures).
const SLACK: Duration = Duration::from_millis(500);

on_both_backends!(
    events_refuse_with_json_before_the_stream,
    events_stream_changes_with_increasing_ids_and_replay_after_last_event_id,
    events_end_when_the_token_is_revoked_or_the_permission_removed,
    changes_by_the_command_line_and_a_second_server_reach_subscribers_within_a_second,
    ddp_handshake_heartbeat_and_protocol_errors,
    ddp_login_by_resume_token_and_password_digest,
    ddp_import_methods_answer_as_rocketchat,
    ddp_methods_run_an_import_whose_progress_reaches_subscribers,
    ddp_stream_importers_subscription,
    ddp_limits_rate_and_closes_a_revoked_session,
    method_call_over_rest,
);

/// A server on a real port, over `db`.
struct Live {
    addr: std::net::SocketAddr,
    app: TestApp,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Live {
    async fn start(db: &TestDb) -> Live {
        let settings = Settings {
            // The rate limiter is not what these tests look at (the admin bypasses it anyway).
            rate_limit_calls: 0,
            ..Settings::default()
        };
        let app = TestApp::with_settings(db, settings).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bounds = Bounds {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            connections: Connections::new(1000),
            upload_body_limit: importops::http::body::MAX_BODY_BYTES,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(run(listener, app.state.clone(), bounds, async {
            let _ = stopped.await;
        }));
        Live {
            addr,
            app,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str, login: Option<&Login>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(login) = login {
            request = request
                .header("X-User-Id", &login.user_id)
                .header("X-Auth-Token", &login.token);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, login: Option<&Login>, body: &Value) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(self.url(path)).json(body);
        if let Some(login) = login {
            request = request
                .header("X-User-Id", &login.user_id)
                .header("X-Auth-Token", &login.token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn upsert(&self, admin: &Login, fields: Value) -> Value {
        let (status, body) = self
            .post("/api/v1/import.operations.upsert", Some(admin), &fields)
            .await;
        assert_eq!(status, 200, "{body}");
        body["operation"].clone()
    }

    async fn events(&self, login: &Login, last_event_id: Option<i64>) -> Events {
        let mut request = reqwest::Client::new()
            .get(self.url("/api/v1/import.operations.events"))
            .header("X-User-Id", &login.user_id)
            .header("X-Auth-Token", &login.token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    async fn ddp(&self) -> Ddp {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/websocket", self.addr))
            .await
            .expect("a WebSocket");
        Ddp { socket, next: 0 }
    }

    /// A DDP connection past the handshake.
    async fn connected(&self) -> Ddp {
        let mut ddp = self.ddp().await;
        assert_eq!(ddp.recv().await, json!({"server_id": "0"}));
        ddp.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        let connected = ddp.recv().await;
        assert_eq!(connected["msg"], "connected");
        assert!(!connected["session"].as_str().unwrap().is_empty());
        ddp
    }
}

/// A Server-Sent Events stream being read.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// One event: its id, its name and its data.
#[derive(Debug)]
struct Event {
    id: i64,
    event: String,
    data: Value,
}

impl Events {
    /// The next block (up to a blank line), comments included; `None` when the stream ended.
    async fn block(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => panic!("nothing within {within:?}; so far {:?}", self.buffer),
            }
        }
    }

    /// The next event, skipping comments.
    async fn event(&mut self, within: Duration) -> Event {
        loop {
            let block = self.block(within).await.expect("the stream goes on");
            if block.starts_with(':') {
                continue;
            }
            let mut id = None;
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().expect("a decimal id"));
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(v).expect("one line of JSON"));
                }
            }
            return Event {
                id: id.expect("an id"),
                event: event.expect("an event name"),
                data: data.expect("data"),
            };
        }
    }

    /// Waits until the stream ends (comments and events before are skipped).
    async fn ended_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A DDP client over a real WebSocket.
struct Ddp {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u32,
}

impl Ddp {
    async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    async fn recv_within(&mut self, within: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(within, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(text.as_str()).unwrap());
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("no message within {within:?}"),
            }
        }
    }

    async fn recv(&mut self) -> Value {
        self.recv_within(PATIENCE)
            .await
            .expect("the connection is open")
    }

    /// Calls a method and returns its `result` message (the `updated` one may come before or
    /// after it).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next.to_string();
        self.send(json!({"msg": "method", "id": id, "method": method, "params": params}))
            .await;
        let mut result = None;
        let mut updated = false;
        while result.is_none() || !updated {
            let message = self.recv().await;
            match message["msg"].as_str() {
                Some("result") if message["id"] == id.as_str() => result = Some(message),
                Some("updated") if message["methods"] == json!([id]) => updated = true,
                _ => {}
            }
        }
        result.unwrap()
    }

    /// The next message that is not a ping (answered as Meteor clients do).
    async fn recv_no_ping(&mut self) -> Value {
        loop {
            let message = self.recv().await;
            if message["msg"] == "ping" {
                self.send(json!({"msg": "pong"})).await;
                continue;
            }
            return message;
        }
    }

    async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn meteor_error(error: Value, reason: &str, details: Option<&str>) -> Value {
    let code = match &error {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = serde_json::Map::new();
    out.insert("isClientSafe".into(), true.into());
    out.insert("error".into(), error);
    out.insert("reason".into(), reason.into());
    if let Some(details) = details {
        out.insert("details".into(), details.into());
    }
    out.insert("message".into(), format!("{reason} [{code}]").into());
    out.insert("errorType".into(), "Meteor.Error".into());
    Value::Object(out)
}

/// The DDP result message inside a `method.call` / `method.callAnon` answer whose method threw
/// (Rocket.Chat 8: a 400 with `success: false`).
fn refused_call(status: u16, body: &Value) -> Value {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false, "{body}");
    serde_json::from_str(body["message"].as_str().expect("a message")).expect("EJSON text")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn importops(db: &TestDb, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_importops"))
        .arg("--database-url")
        .arg(&db.url)
        .args(args)
        .output()
        .expect("run importops");
    assert!(
        output.status.success(),
        "importops {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The operation as `getLatestImportOperations` lists it.
async fn listed(live: &Live, admin: &Login, id: &str) -> Value {
    let list: Value = live
        .get("/api/v1/getLatestImportOperations", Some(admin))
        .await
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|op| op["_id"] == id)
        .cloned()
        .expect("listed")
}

async fn events_refuse_with_json_before_the_stream(db: TestDb) {
    let live = Live::start(&db).await;
    let viewer = live.app.user("viewer", &["user"]).await;
    let response = live.get("/api/v1/import.operations.events", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"success": false, "error": "unauthorized"})
    );
    let wrong = Login {
        user_id: viewer.user_id.clone(),
        token: "not-the-token".into(),
    };
    let response = live
        .get("/api/v1/import.operations.events", Some(&wrong))
        .await;
    assert_eq!(response.status(), 401);
    let response = live
        .get("/api/v1/import.operations.events", Some(&viewer))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "User does not have the permissions required for this action [error-unauthorized]"
    );
}

async fn events_stream_changes_with_increasing_ids_and_replay_after_last_event_id(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let mut events = live.events(&admin, None).await;
    let created = live
        .upsert(
            &admin,
            json!({"type": "CSV", "importerKey": "csv", "status": "importer_new"}),
        )
        .await;
    let id = created["_id"].as_str().unwrap().to_owned();
    let first = events.event(FRESH + SLACK).await;
    assert_eq!(first.event, "operation");
    assert_eq!(first.data, listed(&live, &admin, &id).await);
    let changed = live
        .upsert(
            &admin,
            json!({"_id": id, "status": "importer_importing_users"}),
        )
        .await;
    let second = events.event(FRESH + SLACK).await;
    assert!(second.id > first.id, "{} then {}", first.id, second.id);
    assert_eq!(second.data, changed);
    assert_eq!(second.data["status"], "importer_importing_users");
    let other = live
        .upsert(
            &admin,
            json!({"type": "Slack", "importerKey": "slack", "status": "importer_new"}),
        )
        .await;
    let third = events.event(FRESH + SLACK).await;
    assert!(third.id > second.id);
    assert_eq!(third.data["_id"], other["_id"]);
    drop(events);

    // Reconnecting after the first: the two later changes, in order, then live again.
    let mut replay = live.events(&admin, Some(first.id)).await;
    let a = replay.event(PATIENCE).await;
    let b = replay.event(PATIENCE).await;
    assert_eq!((a.id, b.id), (second.id, third.id));
    assert_eq!(a.data["status"], "importer_importing_users");
    live.upsert(&admin, json!({"_id": id, "status": "importer_done"}))
        .await;
    let live_again = replay.event(FRESH + SLACK).await;
    assert!(live_again.id > third.id);
    assert_eq!(live_again.data["status"], "importer_done");
    drop(replay);
    // After the last one: nothing to replay (the next block is the heartbeat or nothing).
    let mut nothing = live.events(&admin, Some(live_again.id)).await;
    assert_eq!(nothing.block(PATIENCE).await.unwrap(), ": connected");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), nothing.block(PATIENCE))
            .await
            .is_err(),
        "nothing after the last id"
    );
}

async fn events_end_when_the_token_is_revoked_or_the_permission_removed(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    // Logging out revokes the token the stream was opened with.
    let second = live.app.another_token(&admin).await;
    let mut events = live.events(&second, None).await;
    assert_eq!(events.block(PATIENCE).await.unwrap(), ": connected");
    let (status, _) = live.post("/api/v1/logout", Some(&second), &json!({})).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert!(events.ended_within(REVOKED + SLACK).await, "ended");
    assert!(started.elapsed() < REVOKED + SLACK);

    // view-import-operations taken away from the user's role.
    let auditor = live.app.user("auditor", &["auditor"]).await;
    let grant =
        |roles: Value| json!({"permissions": [{"_id": "view-import-operations", "roles": roles}]});
    let (status, body) = live
        .post(
            "/api/v1/permissions.update",
            Some(&admin),
            &grant(json!(["admin", "auditor"])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut events = live.events(&auditor, None).await;
    assert_eq!(events.block(PATIENCE).await.unwrap(), ": connected");
    let (status, _) = live
        .post(
            "/api/v1/permissions.update",
            Some(&admin),
            &grant(json!(["admin"])),
        )
        .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert!(events.ended_within(REVOKED + SLACK).await, "ended");
    assert!(started.elapsed() < REVOKED + SLACK);
    // A token revoked by another process (the command line): the change watcher tells.
    let third = live.app.another_token(&admin).await;
    let mut events = live.events(&third, None).await;
    assert_eq!(events.block(PATIENCE).await.unwrap(), ": connected");
    importops(&db, &["token", "revoke", "admin", "--token", &third.token]);
    let started = Instant::now();
    assert!(events.ended_within(REVOKED + SLACK).await, "ended");
    assert!(started.elapsed() < REVOKED + SLACK);
    // The admin's stream goes on meanwhile.
    let mut kept = live.events(&admin, None).await;
    assert_eq!(kept.block(PATIENCE).await.unwrap(), ": connected");
}

async fn changes_by_the_command_line_and_a_second_server_reach_subscribers_within_a_second(
    db: TestDb,
) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let mut events = live.events(&admin, None).await;
    assert_eq!(events.block(PATIENCE).await.unwrap(), ": connected");
    let mut ddp = live.connected().await;
    ddp.send(json!({"msg": "sub", "id": "s1", "name": "stream-importers",
        "params": ["progress", {"useCollection": false, "args": []}]}))
        .await;
    assert_eq!(ddp.recv().await, json!({"msg": "ready", "subs": ["s1"]}));

    // Another process: `importops ops load`.
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut op = operation("CLXa2222222222222", "2024-01-01T00:00:00.000Z");
    op["count"] = json!({"total": 10, "completed": 4});
    std::fs::write(file.path(), json!([op]).to_string()).unwrap();
    let started = Instant::now();
    importops(&db, &["ops", "load", file.path().to_str().unwrap()]);
    let written = started.elapsed();
    let event = events.event(FRESH + SLACK).await;
    assert_eq!(event.data["_id"], "CLXa2222222222222");
    let changed = ddp.recv_no_ping().await;
    assert!(
        started.elapsed() < written + FRESH + SLACK,
        "{:?} after the write",
        started.elapsed() - written
    );
    assert_eq!(
        changed,
        json!({"msg": "changed", "collection": "stream-importers", "id": "id",
            "fields": {"eventName": "progress", "args": [{"key": "csv", "name": "CSV",
                "step": "importer_done", "count": {"completed": 4, "total": 10, "error": 0}}]}})
    );

    // Another server on the same database.
    let other = Live::start(&db).await;
    let started = Instant::now();
    let created = other
        .upsert(
            &admin,
            json!({"type": "Slack", "importerKey": "slack", "status": "importer_importing_messages",
                "count": {"total": 3}}),
        )
        .await;
    let event = events.event(FRESH + SLACK).await;
    assert_eq!(event.data["_id"], created["_id"]);
    let changed = ddp.recv_no_ping().await;
    assert!(started.elapsed() < FRESH + SLACK, "{:?}", started.elapsed());
    assert_eq!(
        changed["fields"]["args"][0],
        json!({"key": "slack", "name": "Slack", "step": "importer_importing_messages",
            "count": {"completed": 0, "total": 3, "error": 0}})
    );
}

async fn ddp_handshake_heartbeat_and_protocol_errors(db: TestDb) {
    let live = Live::start(&db).await;
    let mut ddp = live.ddp().await;
    assert_eq!(ddp.recv().await, json!({"server_id": "0"}));
    ddp.send(json!({"msg": "ping", "id": "p"})).await;
    assert_eq!(
        ddp.recv().await,
        json!({"msg": "error", "reason": "Must connect first",
            "offendingMessage": {"msg": "ping", "id": "p"}})
    );
    ddp.send_text("{not json").await;
    assert_eq!(
        ddp.recv().await,
        json!({"msg": "error", "reason": "Parse error"})
    );
    // A version the client does not support itself: failed, and closed.
    ddp.send(json!({"msg": "connect", "version": "2", "support": ["1"]}))
        .await;
    assert_eq!(ddp.recv().await, json!({"msg": "failed", "version": "1"}));
    assert!(ddp.closed_within(PATIENCE).await);

    let mut ddp = live.connected().await;
    ddp.send(json!({"msg": "ping", "id": "x"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "pong", "id": "x"}));
    ddp.send(json!({"msg": "ping"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "pong"}));
    ddp.send(json!({"msg": "method", "id": 7, "method": "login"}))
        .await;
    assert_eq!(
        ddp.recv().await,
        json!({"msg": "error", "reason": "Malformed method invocation",
            "offendingMessage": {"msg": "method", "id": 7, "method": "login"}})
    );
    let unknown = ddp.call("getCurrentImportOperation", json!([])).await;
    assert_eq!(
        unknown,
        json!({"msg": "result", "id": "1", "error": meteor_error(json!(404),
            "Method 'getCurrentImportOperation' not found", None)})
    );
    // The importer stream's write method exists and does nothing.
    let write = ddp.call("stream-importers", json!(["progress", {}])).await;
    assert_eq!(write, json!({"msg": "result", "id": "2"}));
}

async fn ddp_login_by_resume_token_and_password_digest(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let mut ddp = live.connected().await;
    let before = importops::domain::time::now_ms();
    let result = ddp.call("login", json!([{"resume": admin.token}])).await;
    let answer = &result["result"];
    assert_eq!(answer["id"], admin.user_id.as_str());
    assert_eq!(answer["token"], admin.token.as_str());
    assert_eq!(answer["type"], "resume");
    let expires = answer["tokenExpires"]["$date"]
        .as_i64()
        .expect("an EJSON date");
    let ninety_days = 90 * 24 * 3600 * 1000;
    assert!((expires - before - ninety_days).abs() < 60_000, "{expires}");
    // Logged in: the import methods run as the admin.
    let latest = ddp.call("getLatestImportOperations", json!([])).await;
    assert_eq!(latest["result"], json!([]));

    let mut other = live.connected().await;
    let refused = other
        .call("login", json!([{"resume": "no-such-token"}]))
        .await;
    assert_eq!(
        refused["error"],
        meteor_error(
            json!(403),
            "You've been logged out by the server. Please log in again.",
            None
        )
    );
    // A resume token past its expiry.
    let expired = importops::domain::secrets::new_raw_token();
    live.app
        .store
        .insert_session(&importops::store::NewSession {
            user_id: admin.user_id.clone(),
            hashed_token: importops::domain::secrets::hash_token(&expired),
            kind: importops::domain::auth::TokenKind::Login,
            name: None,
            issued_at_ms: before - 10_000,
            expires_at_ms: Some(before - 1_000),
        })
        .await
        .unwrap();
    let refused = other.call("login", json!([{"resume": expired}])).await;
    assert_eq!(
        refused["error"],
        meteor_error(
            json!(403),
            "Your session has expired. Please log in again.",
            None
        )
    );
    let unrecognized = other.call("login", json!([{"what": 1}])).await;
    assert_eq!(
        unrecognized["error"],
        meteor_error(json!(400), "Unrecognized options for login request", None)
    );

    let user_id = live
        .app
        .user_with_password("operator", &["admin"], "s3cret-pass")
        .await;
    let digest = sha256_hex("s3cret-pass");
    let login = other
        .call(
            "login",
            json!([{"user": {"username": "operator"},
                "password": {"digest": digest, "algorithm": "sha-256"}}]),
        )
        .await;
    let answer = &login["result"];
    assert_eq!(answer["id"], user_id.as_str());
    assert_eq!(answer["type"], "password");
    assert!(answer["tokenExpires"]["$date"].as_i64().unwrap() > before + ninety_days - 60_000);
    // The new token works over REST.
    let token = Login {
        user_id: user_id.clone(),
        token: answer["token"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        live.get("/api/v1/getLatestImportOperations", Some(&token))
            .await
            .status(),
        200
    );
    let wrong = other
        .call(
            "login",
            json!([{"user": {"username": "operator"},
                "password": {"digest": sha256_hex("wrong"), "algorithm": "sha-256"}}]),
        )
        .await;
    assert_eq!(
        wrong["error"],
        meteor_error(
            json!(403),
            "Something went wrong. Please check your credentials.",
            None
        )
    );
    let unknown = other
        .call(
            "login",
            json!([{"user": {"username": "nobody"},
                "password": {"digest": digest, "algorithm": "sha-256"}}]),
        )
        .await;
    assert_eq!(unknown["error"], wrong["error"]);
}

async fn ddp_import_methods_answer_as_rocketchat(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let viewer = live.app.user("viewer", &["user"]).await;
    let mut ddp = live.connected().await;
    for (method, details) in [
        ("getLatestImportOperations", "getLatestImportOperations"),
        ("getImportProgress", "getImportProgress"),
    ] {
        let answer = ddp.call(method, json!([])).await;
        assert_eq!(
            answer["error"],
            meteor_error(json!("error-invalid-user"), "Invalid user", Some(details))
        );
    }
    ddp.call("login", json!([{"resume": viewer.token}])).await;
    let answer = ddp.call("getLatestImportOperations", json!([])).await;
    assert_eq!(
        answer["error"],
        meteor_error(
            json!("not_authorized"),
            "User not authorized",
            Some("getLatestImportOperations")
        )
    );
    let answer = ddp.call("getImportProgress", json!([])).await;
    assert_eq!(
        answer["error"],
        meteor_error(
            json!("error-action-not-allowed"),
            "Importing is not allowed",
            Some("setupImporter")
        )
    );

    let mut admin_ddp = live.connected().await;
    admin_ddp
        .call("login", json!([{"resume": admin.token}]))
        .await;
    let answer = admin_ddp.call("getImportProgress", json!([])).await;
    assert_eq!(
        answer["error"],
        meteor_error(
            json!("error-operation-not-found"),
            "Import Operation Not Found",
            Some("getImportProgress")
        )
    );
    live.app.load(&common::documented_example()).await;
    let rest: Value = live
        .get("/api/v1/getLatestImportOperations", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let answer = admin_ddp.call("getLatestImportOperations", json!([])).await;
    let ddp_list = answer["result"].as_array().unwrap();
    let rest_list = rest.as_array().unwrap();
    assert_eq!(ddp_list.len(), rest_list.len());
    for (d, r) in ddp_list.iter().zip(rest_list) {
        assert_eq!(d["_id"], r["_id"]);
        let updated = r["_updatedAt"].as_str().unwrap();
        assert_eq!(
            d["_updatedAt"],
            json!({"$date": importops::domain::time::parse_iso_ms(updated).unwrap()})
        );
        // The documented example's numeric `ts` stays a number.
        assert_eq!(d["ts"], r["ts"]);
        assert_eq!(d["status"], r["status"]);
    }
    // The workflow's methods: the same checks, then the workflow's own errors.
    let answer = ddp.call("getImportFileData", json!([])).await;
    assert_eq!(
        answer["error"],
        meteor_error(
            json!("error-action-not-allowed"),
            "Importing is not allowed",
            Some("setupImporter")
        )
    );
    let answer = admin_ddp
        .call(
            "uploadImportFile",
            json!(["aGVsbG8=", "text/csv", "a.csv", "no-such-importer"]),
        )
        .await;
    assert_eq!(
        answer["error"],
        meteor_error(
            json!("error-importer-not-defined"),
            "The importer (no-such-importer) has no import class defined.",
            Some("uploadImportFile")
        )
    );
    let answer = admin_ddp
        .call("startImport", json!(["not an object"]))
        .await;
    assert_eq!(
        answer["error"],
        meteor_error(json!(400), "Match failed", None)
    );
    let progress = admin_ddp.call("getImportProgress", json!([])).await;
    let mut rest: Value = live
        .get("/api/v1/getImportProgress", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    rest.as_object_mut().unwrap().shift_remove("success");
    assert_eq!(progress["result"], rest);
}

/// A whole import driven by the DDP methods (upload, the selection, start), its progress seen
/// by a `stream-importers` subscriber and by an event stream as the workflow writes it.
async fn ddp_methods_run_an_import_whose_progress_reaches_subscribers(db: TestDb) {
    use base64::Engine as _;
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let mut watcher = live.connected().await;
    watcher
        .send(json!({"msg": "sub", "id": "p", "name": "stream-importers",
            "params": ["progress", {"useCollection": false, "args": []}]}))
        .await;
    assert_eq!(watcher.recv().await, json!({"msg": "ready", "subs": ["p"]}));
    let mut events = live.events(&admin, None).await;
    assert_eq!(events.block(PATIENCE).await.unwrap(), ": connected");

    let mut ddp = live.connected().await;
    let login = ddp.call("login", json!([{"resume": admin.token}])).await;
    assert_eq!(login["result"]["id"], admin.user_id.as_str());
    let generated = common::archives::csv_archive(3, 6, 2, 30, 4);
    let bytes = generated.archive.bytes();
    let content = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let answer = ddp
        .call(
            "uploadImportFile",
            json!([content, "application/zip", "export.zip", "csv"]),
        )
        .await;
    assert!(answer.get("error").is_none(), "{answer}");
    let data = ddp.call("getImportFileData", json!([])).await;
    let selection = &data["result"];
    assert_eq!(
        selection["users"].as_array().map(Vec::len),
        Some(generated.expected.users as usize),
        "{data}"
    );
    assert_eq!(selection["message_count"], generated.expected.messages);
    let answer = ddp
        .call(
            "startImport",
            json!([{"users": {"all": true}, "channels": {"all": true}}]),
        )
        .await;
    assert!(answer.get("error").is_none(), "{answer}");

    // The subscriber sees the workflow's steps up to the end, in order.
    let mut steps = Vec::new();
    while steps.last().map(String::as_str) != Some("importer_done") {
        let event = watcher.recv_no_ping().await;
        assert_eq!(event["msg"], "changed", "{event}");
        let step = event["fields"]["args"][0]["step"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(step, "importer_import_failed", "{event}");
        if steps.last() != Some(&step) {
            steps.push(step);
        }
    }
    assert!(
        steps.iter().any(|s| s == "importer_importing_users"),
        "{steps:?}"
    );
    // The event stream saw the same operation reach the end.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = events.event(PATIENCE).await;
        assert_eq!(event.event, "operation");
        if event.data["status"] == "importer_done" {
            assert_eq!(event.data["type"], "CSV");
            break;
        }
        assert!(Instant::now() < deadline, "no importer_done event");
    }
    for username in &generated.expected.user_ids {
        assert!(
            live.app
                .store
                .user_by_username(username)
                .await
                .unwrap()
                .is_some(),
            "{username} imported"
        );
    }
}

async fn ddp_stream_importers_subscription(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    // No login needed.
    let mut ddp = live.connected().await;
    ddp.send(json!({"msg": "sub", "id": "a", "name": "stream-importers",
        "params": ["progress", {"useCollection": false, "args": [null]}]}))
        .await;
    assert_eq!(ddp.recv().await, json!({"msg": "ready", "subs": ["a"]}));
    ddp.send(json!({"msg": "sub", "id": "b", "name": "stream-nothing", "params": []}))
        .await;
    assert_eq!(
        ddp.recv().await,
        json!({"msg": "nosub", "id": "b", "error": meteor_error(json!(404),
            "Subscription 'stream-nothing' not found", None)})
    );
    ddp.send(json!({"msg": "sub", "id": "c", "name": "stream-importers", "params": [""]}))
        .await;
    assert_eq!(
        ddp.recv().await,
        json!({"msg": "nosub", "id": "c", "error": {"isClientSafe": true,
            "error": "invalid-event-name", "message": "[invalid-event-name]",
            "errorType": "Meteor.Error"}})
    );
    let mut collection = live.connected().await;
    collection
        .send(json!({"msg": "sub", "id": "d", "name": "stream-importers",
            "params": ["progress", {"useCollection": true}]}))
        .await;
    assert_eq!(
        collection.recv().await,
        json!({"msg": "added", "collection": "stream-importers", "id": "id",
            "fields": {"eventName": "progress"}})
    );
    assert_eq!(
        collection.recv().await,
        json!({"msg": "ready", "subs": ["d"]})
    );

    let created = live
        .upsert(
            &admin,
            json!({"type": "CSV", "importerKey": "csv", "status": "importer_importing_users",
                "count": {"total": 12, "completed": 5, "error": 1}}),
        )
        .await;
    let event = ddp.recv_no_ping().await;
    let mut progress: Value = live
        .get("/api/v1/getImportProgress", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    progress.as_object_mut().unwrap().shift_remove("success");
    assert_eq!(
        event,
        json!({"msg": "changed", "collection": "stream-importers", "id": "id",
            "fields": {"eventName": "progress", "args": [progress]}})
    );
    assert_eq!(collection.recv_no_ping().await, event);

    // After unsub, no more events on that connection.
    ddp.send(json!({"msg": "unsub", "id": "a"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "nosub", "id": "a"}));
    live.upsert(
        &admin,
        json!({"_id": created["_id"], "status": "importer_done"}),
    )
    .await;
    let done = collection.recv_no_ping().await;
    assert_eq!(done["fields"]["args"][0]["step"], "importer_done");
    ddp.send(json!({"msg": "ping", "id": "after"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "pong", "id": "after"}));
}

async fn ddp_limits_rate_and_closes_a_revoked_session(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let mut ddp = live.connected().await;
    // Past the per-connection rate: too-many-requests.
    let mut refused = None;
    for _ in 0..15 {
        let answer = ddp.call("getImportProgress", json!([])).await;
        if answer["error"]["error"] == "too-many-requests" {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the rate is limited");
    assert!(
        refused["error"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Error, too many requests. Please slow down. You must wait ")
    );
    assert!(
        refused["error"]["details"]["timeToReset"]
            .as_u64()
            .is_some()
    );

    // A message larger than the bound closes the connection.
    let mut big = live.connected().await;
    let huge = "x".repeat(importops::ddp::session::MAX_MESSAGE_BYTES + 10);
    let _ = big
        .socket
        .send(Message::Text(format!("\"{huge}\"").into()))
        .await;
    assert!(big.closed_within(PATIENCE).await);

    // A logged-in session whose token is revoked is closed.
    let second = live.app.another_token(&admin).await;
    let mut session = live.connected().await;
    let login = session
        .call("login", json!([{"resume": second.token}]))
        .await;
    assert_eq!(login["result"]["type"], "resume");
    let (status, _) = live.post("/api/v1/logout", Some(&second), &json!({})).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert!(session.closed_within(REVOKED + SLACK).await);
    assert!(started.elapsed() < REVOKED + SLACK);
}

async fn method_call_over_rest(db: TestDb) {
    let live = Live::start(&db).await;
    let admin = live.app.admin().await;
    let message = |method: &str, params: Value| json!({"message": json!({"msg": "method", "id": "9", "method": method, "params": params}).to_string()});
    let (status, body) = live
        .post(
            "/api/v1/method.call/getLatestImportOperations",
            Some(&admin),
            &message("getLatestImportOperations", json!([])),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"message": r#"{"msg":"result","id":"9","result":[]}"#, "success": true})
    );
    let (status, body) = live
        .post(
            "/api/v1/method.call/getImportProgress",
            Some(&admin),
            &message("getImportProgress", json!([])),
        )
        .await;
    assert_eq!(
        refused_call(status, &body),
        json!({"msg": "result", "id": "9", "error": meteor_error(
            json!("error-operation-not-found"), "Import Operation Not Found",
            Some("getImportProgress"))})
    );
    // A user without the permission: the method's error inside the message; the path's
    // method name is not the one run.
    let viewer = live.app.user("viewer", &["user"]).await;
    let (status, body) = live
        .post(
            "/api/v1/method.call/anything-at-all",
            Some(&viewer),
            &message("getLatestImportOperations", json!([])),
        )
        .await;
    assert_eq!(
        refused_call(status, &body),
        json!({"msg": "result", "id": "9", "error": meteor_error(
            json!("not_authorized"), "User not authorized",
            Some("getLatestImportOperations"))})
    );
    // Without credentials: the API's 401.
    let (status, body) = live
        .post(
            "/api/v1/method.call/getImportProgress",
            None,
            &message("getImportProgress", json!([])),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"success": false, "error": "unauthorized"}));
    // Not `{message: string}` alone: invalid-params.
    for bad in [
        json!({}),
        json!({"message": 1}),
        json!({"message": "{}", "x": 1}),
    ] {
        let (status, body) = live.post("/api/v1/method.call/x", Some(&admin), &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["errorType"], "invalid-params", "{body}");
    }
    // callAnon: no user, unless credentials are sent.
    let (status, body) = live
        .post(
            "/api/v1/method.callAnon/getImportProgress",
            None,
            &message("getImportProgress", json!([])),
        )
        .await;
    assert_eq!(
        refused_call(status, &body)["error"],
        meteor_error(
            json!("error-invalid-user"),
            "Invalid user",
            Some("getImportProgress")
        )
    );
    let (status, body) = live
        .post(
            "/api/v1/method.callAnon/getLatestImportOperations",
            Some(&admin),
            &message("getLatestImportOperations", json!([])),
        )
        .await;
    assert_eq!((status, body["success"].clone()), (200, json!(true)));
    // A password login through callAnon, as the web client does.
    live.app
        .user_with_password("operator", &["admin"], "pass-word-1")
        .await;
    let (status, body) = live
        .post(
            "/api/v1/method.callAnon/login",
            None,
            &message(
                "login",
                json!([{"user": {"username": "operator"},
                    "password": {"digest": sha256_hex("pass-word-1"), "algorithm": "sha-256"}}]),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let inner: Value = serde_json::from_str(body["message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["result"]["type"], "password");
    assert!(inner["result"]["tokenExpires"]["$date"].is_i64());
}
