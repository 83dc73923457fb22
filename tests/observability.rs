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
    // Every JSON line that belongs to the request carries its id.
    let mine: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == "req-secret-check")
        .collect();
    assert!(
        !mine.is_empty(),
        "no line of the request carries its id: {all}"
    );
}
