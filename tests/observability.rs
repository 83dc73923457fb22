//! Metrics, request ids and logs: scraped, parsed and searched as an operator would.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestApp, TestDb};
use serde_json::json;

const LATEST: &str = "/api/v1/getLatestImportOperations";

/// `name{labels}` -> value, from Prometheus' text format.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse::<f64>().expect("a number"))
        })
        .collect()
}

fn sample(metrics: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with(&format!("{name}{{"))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn metrics_are_scraped_and_parsed() {
    let db = TestDb::sqlite();
    let app = TestApp::with_settings(
        &db,
        importops::config::Settings {
            rate_limit_calls: 1,
            ..Default::default()
        },
    )
    .await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_eq!(app.get(LATEST, Some(&admin)).await.status, StatusCode::OK);
    }
    assert_eq!(
        app.get(LATEST, Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    app.get("/api/v1/me", Some(&viewer)).await;
    assert_eq!(
        app.get("/api/v1/me", Some(&viewer)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    let answer = app.get("/metrics", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let m = parse_metrics(&answer.body);
    let ok = sample(
        &m,
        "importops_http_requests_total",
        &[("route", LATEST), ("method", "GET"), ("status", "200")],
    );
    assert!(ok >= 3.0, "{ok}");
    assert!(
        sample(
            &m,
            "importops_http_requests_total",
            &[("route", LATEST), ("status", "403")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "importops_http_request_duration_seconds_count",
            &[("route", LATEST)]
        ) >= 4.0
    );
    assert!(m.keys().any(
        |k| k.starts_with("importops_http_request_duration_seconds_bucket{")
            && k.contains("le=\"0.001\"")
    ));
    assert!(
        sample(
            &m,
            "importops_cache_lookups_total",
            &[("kind", "latest"), ("result", "hit")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "importops_cache_lookups_total",
            &[("kind", "session"), ("result", "miss")]
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            "importops_rate_limit_rejections_total",
            &[("route", "/api/v1/me")]
        ) >= 1.0
    );
    assert!(
        m.keys()
            .any(|k| k.starts_with("importops_db_pool_connections{"))
    );
    assert_eq!(
        sample(
            &m,
            "importops_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let db = TestDb::sqlite();
    let app = TestApp::new(&db).await;
    let made = app.get("/livez", None).await;
    let id = made.header("x-request-id").expect("an id").to_owned();
    assert!(!id.is_empty());
    assert_ne!(
        app.get("/livez", None).await.header("x-request-id"),
        Some(id.as_str())
    );
    let echoed = app
        .request(
            Request::get("/nope")
                .header("X-Request-Id", "trace-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(echoed.status, StatusCode::NOT_FOUND);
    assert_eq!(echoed.header("x-request-id"), Some("trace-42"));
    let long = "x".repeat(200);
    let replaced = app
        .request(
            Request::get("/livez")
                .header("X-Request-Id", &long)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_ne!(replaced.header("x-request-id"), Some(long.as_str()));
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real `importops serve` on a free port, its stderr a pipe read by a thread; `stop` ends
/// it (SIGKILL: every line was flushed when written) and returns the lines it logged.
struct Spawned {
    server: Option<Server>,
    base: String,
    reader: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Spawned {
    /// Starts the server with `args` after `serve` and only the variables of `env` among
    /// those it reads (`RUST_LOG` and `NO_COLOR` unset: colour must be off because stderr is
    /// a pipe, not because of them), and waits until it accepts connections.
    async fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Spawned {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_importops"));
        command
            .args(["--database-url", url, "serve", "--listen", &listen])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("IMPORTOPS_ACCESS_LOG")
            .env_remove("IMPORTOPS_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let server = Server(child);
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut bytes);
            bytes
        });
        let base = format!("http://{listen}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&listen).await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Spawned {
            server: Some(server),
            base,
            reader: Some(reader),
        }
    }

    fn stop(&mut self) -> Vec<u8> {
        drop(self.server.take());
        self.reader.take().unwrap().join().unwrap()
    }
}

/// A client that keeps no connection open after an answer.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn importops(url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_importops"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "importops {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server at the most verbose levels writes neither tokens nor passwords, and every line
/// written while a request is handled carries its request id.
#[tokio::test]
async fn logs_carry_request_ids_and_never_secrets() {
    let db = TestDb::sqlite();
    let password = "correct horse battery staple";
    importops(
        &db.url,
        &[
            "user",
            "add",
            "admin",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    let issued: serde_json::Value = serde_json::from_str(&importops(
        &db.url,
        &["token", "issue", "admin", "--json"],
        None,
    ))
    .unwrap();
    let token = issued["authToken"].as_str().unwrap().to_owned();
    let user_id = issued["userId"].as_str().unwrap().to_owned();
    let hashed = importops::domain::secrets::hash_token(&token);

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_importops"))
        .args([
            "--database-url",
            &db.url,
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env_remove("IMPORTOPS_ACCESS_LOG")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/livez")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = client
        .get(format!("{base}{LATEST}"))
        .header("X-User-Id", &user_id)
        .header("X-Auth-Token", &token)
        .header("X-Request-Id", "req-secret-check")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A secret in the query string (refused with 400) reaches no log either: the access line
    // names the route's pattern, not the path the client sent.
    let in_query = client
        .get(format!(
            "{base}{LATEST}?authToken={token}&password={password}"
        ))
        .header("X-User-Id", &user_id)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), 400);
    let login = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"user": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let new_token = login.json::<serde_json::Value>().await.unwrap()["data"]["authToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = client
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"user": "admin", "password": "wrong-password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    drop(server);
    let lines = reader.join().unwrap();
    let all = lines.join("\n");
    assert!(lines.len() > 5, "trace logging wrote lines: {all}");
    for secret in [
        token.as_str(),
        new_token.as_str(),
        password,
        "wrong-password-123",
        hashed.as_str(),
    ] {
        assert!(!all.contains(secret), "a secret reached the logs");
    }
    // The request's access line carries its id at the top level (lines the handler writes get
    // it from the request's context: `observe`'s unit tests).
    let mine: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["request_id"] == "req-secret-check")
        .collect();
    assert_eq!(
        mine.iter()
            .filter(|v| v["target"] == "importops::access")
            .count(),
        1,
        "{all}"
    );
}

/// The access lines among JSON log lines.
fn access_lines(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines
        .iter()
        .filter(|v| v["target"] == "importops::access")
        .collect()
}

/// Text logs written to a pipe carry no terminal escape codes (not even the level's colour),
/// and each request has its access line at INFO with method, route pattern, status, duration
/// and request id.
#[tokio::test]
async fn text_logs_off_a_terminal_are_plain_with_an_access_line_per_request() {
    let db = TestDb::sqlite();
    let mut server = Spawned::start(&db.url, &[], &[]).await;
    let client = fresh_client();
    for (path, id) in [
        ("/api/v1/me?x=1", "text-1"),
        ("/nowhere/at/all", "text-2"),
        ("/livez", "text-3"),
    ] {
        let answer = client
            .get(format!("{}{path}", server.base))
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert!(answer.status().as_u16() < 500);
    }
    let bytes = server.stop();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("importops is listening"), "{text}");
    assert!(
        !bytes.contains(&0x1b),
        "an escape code in text logs written to a pipe: {text:?}"
    );
    let access = |id: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| {
                l.contains("importops::access") && l.contains(&format!("request_id=\"{id}\""))
            })
            .collect()
    };
    let me = access("text-1");
    assert_eq!(me.len(), 1, "{text}");
    assert!(me[0].contains(" INFO "), "{}", me[0]);
    for part in [
        "method=\"GET\"",
        "route=\"/api/v1/me\"",
        "status=401",
        "duration_ms=",
    ] {
        assert!(me[0].contains(part), "{part} in {}", me[0]);
    }
    assert!(!me[0].contains("x=1"), "the raw path and query: {}", me[0]);
    let unmatched = access("text-2");
    assert_eq!(unmatched.len(), 1, "{text}");
    assert!(
        unmatched[0].contains("route=\"<unmatched>\""),
        "{}",
        unmatched[0]
    );
    assert!(unmatched[0].contains("status=404"), "{}", unmatched[0]);
    assert!(!unmatched[0].contains("nowhere"), "{}", unmatched[0]);
    assert_eq!(access("text-3").len(), 1, "{text}");
}

/// JSON logs: every line is one flat JSON object with `timestamp`, `level`, `message` and
/// `target` at the top level (not under `fields`), lines of a request with its `request_id`;
/// one access line per request, its duration a number of milliseconds.
#[tokio::test]
async fn json_logs_are_flat_lines_with_one_access_line_per_request() {
    let db = TestDb::sqlite();
    let mut server = Spawned::start(&db.url, &["--log-format", "json"], &[]).await;
    let client = fresh_client();
    let ids: Vec<String> = (0..5).map(|i| format!("json-{i}")).collect();
    for id in &ids {
        let answer = client
            .get(format!("{}{LATEST}", server.base))
            .header("X-Request-Id", id)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    let head = client
        .post(format!("{}/api/v1/login", server.base))
        .header("X-Request-Id", "json-login")
        .json(&json!({"user": "nobody", "password": "not-a-secret-to-log"}))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 401);
    let bytes = server.stop();
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 7, "{text}");
    for line in &lines {
        let object = line.as_object().expect("an object per line");
        let timestamp = object["timestamp"].as_str().expect("a timestamp");
        assert!(
            importops::domain::time::parse_iso_ms(timestamp).is_some(),
            "{timestamp}"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&object["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(object["message"].is_string(), "{line}");
        assert!(
            object["target"].as_str().unwrap().starts_with("importops"),
            "{line}"
        );
        assert!(
            !object.contains_key("fields") && !object.contains_key("span"),
            "{line}"
        );
    }
    let access = access_lines(&lines);
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.push("json-login");
    for id in &expected {
        let mine: Vec<_> = access.iter().filter(|v| v["request_id"] == *id).collect();
        assert_eq!(mine.len(), 1, "one access line for {id}: {text}");
        let line = mine[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["status"], 401);
        let duration = line["duration_ms"].as_f64().expect("a number of ms");
        assert!((0.0..10_000.0).contains(&duration), "{line}");
    }
    let latest = access.iter().find(|v| v["request_id"] == "json-0").unwrap();
    assert_eq!(latest["method"], "GET");
    assert_eq!(latest["route"], LATEST);
    let login = access
        .iter()
        .find(|v| v["request_id"] == "json-login")
        .unwrap();
    assert_eq!(login["method"], "POST");
    assert_eq!(login["route"], "/api/v1/login");
    assert!(!text.contains("not-a-secret-to-log"));
}

/// `--access-log false` (and `IMPORTOPS_ACCESS_LOG=false`) turn the access lines off; the
/// other lines stay.
#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let db = TestDb::sqlite();
    for how in ["flag", "environment"] {
        let mut server = if how == "flag" {
            let args = ["--log-format", "json", "--access-log", "false"];
            Spawned::start(&db.url, &args, &[]).await
        } else {
            let env = [("IMPORTOPS_ACCESS_LOG", "false")];
            Spawned::start(&db.url, &["--log-format", "json"], &env).await
        };
        let client = fresh_client();
        for _ in 0..3 {
            let answer = client
                .get(format!("{}{LATEST}", server.base))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 401);
        }
        let text = String::from_utf8(server.stop()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            lines
                .iter()
                .any(|v| v["message"] == "importops is listening"),
            "{how}: {text}"
        );
        assert!(access_lines(&lines).is_empty(), "{how}: {text}");
    }
}

/// Checks the text format as promtool's linter would: every sample's family has one `# TYPE`
/// (and `# HELP`) line before its samples, names and labels are well formed, values numbers.
fn check_exposition_format(text: &str) {
    let valid_name = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut helped: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "two TYPE lines for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "{line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no TYPE before {line}");
        assert!(helped.iter().any(|h| h == family), "no HELP for {family}");
        let labels = &series[name.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line}"
        );
    }
}

/// The value of an unlabelled series in a scrape.
fn value_of(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.parse().unwrap())
}

/// Scrapes until `name` equals `want` (a gauge moves when the server gets to it).
async fn wait_for_gauge(base: &str, name: &str, want: f64) {
    let client = fresh_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let got = value_of(&text, name);
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The process metrics (CPU seconds, memory, descriptors, threads, start time), the in-flight
/// requests and the open connections are served in the text format, and the two gauges move
/// with the server's requests and connections (each scrape counts itself: 1 in flight, on 1
/// connection).
#[tokio::test]
async fn process_metrics_and_the_in_flight_and_connection_gauges() {
    let db = TestDb::sqlite();
    let mut server = Spawned::start(&db.url, &[], &[]).await;
    let base = server.base.clone();
    let started = importops::domain::time::now_ms() as f64 / 1000.0;
    let text = fresh_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_exposition_format(&text);
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_threads", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("importops_http_requests_in_flight", "gauge"),
        ("importops_http_open_connections", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}: {text}"
        );
        assert!(value_of(&text, name).is_some(), "{name}: {text}");
    }
    assert!(value_of(&text, "process_resident_memory_bytes").unwrap() > 1_000_000.0);
    assert!(value_of(&text, "process_open_fds").unwrap() >= 3.0);
    let start = value_of(&text, "process_start_time_seconds").unwrap();
    assert!(
        (started - 60.0..=started + 1.0).contains(&start),
        "{start} vs {started}"
    );

    wait_for_gauge(&base, "importops_http_open_connections", 1.0).await;
    wait_for_gauge(&base, "importops_http_requests_in_flight", 1.0).await;
    // Three idle connections, then a request on one of them whose body never finishes.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
                .await
                .unwrap(),
        );
    }
    wait_for_gauge(&base, "importops_http_open_connections", 4.0).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut idle[0],
        b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"user\"",
    )
    .await
    .unwrap();
    wait_for_gauge(&base, "importops_http_requests_in_flight", 2.0).await;
    drop(idle);
    wait_for_gauge(&base, "importops_http_requests_in_flight", 1.0).await;
    wait_for_gauge(&base, "importops_http_open_connections", 1.0).await;
    server.stop();
}
