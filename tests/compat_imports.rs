//! Rocket.Chat 8's import routes, `/api/info` and `OPTIONS`/CORS, through the router
//! (docs/compatibility.md sections 1, 4.5 and 4.6); the routes that read the database on
//! SQLite and on Postgres.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, TestApp, TestDb, meteor_id, operation};
use importops::config::Settings;
use importops::domain::ids::is_object_id;
use importops::domain::time::now_ms;
use serde_json::json;

const PROGRESS: &str = "/api/v1/getImportProgress";
const ALLOW_HEADERS: &str = "Origin, X-Requested-With, Content-Type, Accept, X-User-Id, \
     X-Auth-Token, x-visitor-token, Authorization, MCP-Protocol-Version";
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, PATCH";
const NOT_ENABLED: &str = "CORS not enabled. Go to \"Admin > General > REST Api\" to enable it.";

on_both_backends!(
    new_operations_get_object_ids_in_creation_order,
    import_progress_names_every_registered_importer,
    import_progress_errors_carry_details,
    api_info_reports_the_emulated_rocketchat,
    api_info_shows_the_whole_version_to_view_statistics,
);

async fn app(db: &TestDb, settings: Settings) -> TestApp {
    TestApp::with_settings(db, settings.without_rate_limit()).await
}

/// `Import.newOperation` inserts without `_id`, so `BaseRaw.insertOne` in Rocket.Chat's
/// packages/models gives it `new ObjectId().toHexString()`; so does the upsert extension when
/// it creates, and a load of operations without `_id`.
async fn new_operations_get_object_ids_in_creation_order(db: TestDb) {
    let app = app(&db, Settings::default()).await;
    let admin = app.admin().await;
    let before_s = now_ms() / 1000;
    let first = app
        .post("/api/v1/import.new", Some(&admin), &json!({}))
        .await
        .json()["operation"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app
        .post(
            "/api/v1/import.operations.upsert",
            Some(&admin),
            &json!({"type": "Pipeline", "importerKey": "etl", "status": "importer_new"}),
        )
        .await
        .json()["operation"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.load(
        r#"{"type":"CSV","importerKey":"csv","status":"importer_done","valid":true,"user":"u"}"#,
    )
    .await;
    let latest = app
        .get("/api/v1/getLatestImportOperations", Some(&admin))
        .await
        .json();
    // The loaded one is found by elimination: it may share its `_updatedAt` millisecond with
    // the upserted one, and ties list in insertion order (docs/compatibility.md#1-endpoint).
    let ids: Vec<String> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{latest}");
    let loaded = ids
        .into_iter()
        .find(|id| *id != first && *id != second)
        .expect("the loaded operation");
    for id in [&first, &second, &loaded] {
        assert!(is_object_id(id), "{id}");
        assert_eq!(id.to_lowercase(), *id, "lowercase hex");
        let seconds = i64::from_str_radix(&id[..8], 16).unwrap();
        assert!(
            (before_s..=now_ms() / 1000).contains(&seconds),
            "the first 4 bytes are the creation second: {id}"
        );
    }
    // One process: the same 5 random bytes, seconds that never go back, and a counter that
    // advanced (modulo 2^24: it starts at a random value and wraps, as MongoDB's does).
    assert_eq!(first[8..18], second[8..18]);
    let seconds = |id: &str| u32::from_str_radix(&id[..8], 16).unwrap();
    let counter = |id: &str| u32::from_str_radix(&id[18..], 16).unwrap();
    assert!(
        seconds(&first) <= seconds(&second) && seconds(&second) <= seconds(&loaded),
        "{first} {second} {loaded}"
    );
    for (a, b) in [(&first, &second), (&second, &loaded)] {
        let advanced = counter(b).wrapping_sub(counter(a)) & 0x00ff_ffff;
        assert!(
            advanced > 0 && advanced < 1 << 23,
            "the counter advanced from {a} to {b}"
        );
    }
    assert!(
        first < second && second < loaded,
        "{first} {second} {loaded}"
    );
    // Users keep Meteor ids.
    assert!(importops::domain::ids::is_meteor_id(&admin.user_id));
}

/// The current operation with this importer key.
fn with_key(n: usize, key: &str) -> serde_json::Value {
    let mut op = operation(&meteor_id(n), "2024-01-01T00:00:00.000Z");
    op["importerKey"] = json!(key);
    op["type"] = json!("whatever the type says");
    op["ts"] = json!(1_700_000_000_000u64 + n as u64);
    op
}

/// The importers registered by apps/meteor/app/importer/server/index.ts (`api`, named `API`),
/// apps/meteor/app/importer-csv, -pending-files, -pending-avatars, -slack, -slack-users
/// (`Importers.add`); getImportProgress names the operation's importer
/// (apps/meteor/server/meteor-methods/import/getImportProgress.ts, `ImporterProgress`).
async fn import_progress_names_every_registered_importer(db: TestDb) {
    let app = app(&db, Settings::default()).await;
    let admin = app.admin().await;
    let importers = [
        ("api", "API"),
        ("csv", "CSV"),
        ("pending-files", "Pending Files"),
        ("pending-avatars", "Pending Avatars"),
        ("slack", "Slack"),
        ("slack-users", "Slack_Users"),
    ];
    for (n, (key, name)) in importers.iter().enumerate() {
        app.load(&with_key(n + 1, key).to_string()).await;
        let answer = app.get(PROGRESS, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::OK, "{key}: {}", answer.body);
        assert_eq!(
            answer.body,
            format!(
                r#"{{"key":"{key}","name":"{name}","step":"importer_done","count":{{"completed":0,"total":0,"error":0}},"success":true}}"#
            )
        );
    }
    // import.new's operation is the `api` importer's.
    app.post("/api/v1/import.new", Some(&admin), &json!({}))
        .await;
    assert_eq!(app.get(PROGRESS, Some(&admin)).await.json()["name"], "API");
    // importers.list shows only the visible ones (`visible: false` for the others).
    assert_eq!(
        app.get("/api/v1/importers.list", Some(&admin)).await.body,
        r#"[{"key":"csv","name":"CSV"},{"key":"slack","name":"Slack"},{"key":"slack-users","name":"Slack_Users"}]"#
    );
}

/// `new Meteor.Error(code, reason, 'getImportProgress')` thrown by the method, answered by
/// `API.v1.failure(e.message, e.error, undefined, e)` (apps/meteor/server/api/ApiClass.ts):
/// `details` after `errorType`.
async fn import_progress_errors_carry_details(db: TestDb) {
    let app = app(&db, Settings::default()).await;
    let admin = app.admin().await;
    let none = app.get(PROGRESS, Some(&admin)).await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"success":false,"error":"Import Operation Not Found [error-operation-not-found]","errorType":"error-operation-not-found","details":"getImportProgress"}"#
        )
    );
    // Keys seen in real data without an importer in Rocket.Chat 8 (the omnichannel contacts
    // importer needs an enterprise licence).
    for (n, key) in ["hipchatenterprise", "omnichannel_contact", "etl"]
        .iter()
        .enumerate()
    {
        app.load(&with_key(n + 1, key).to_string()).await;
        let answer = app.get(PROGRESS, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            answer.body,
            format!(
                r#"{{"success":false,"error":"The importer ({key}) has no import class defined. [error-importer-not-defined]","errorType":"error-importer-not-defined","details":"getImportProgress"}}"#
            )
        );
    }
}

/// apps/meteor/server/api/default/info.ts and apps/meteor/server/api/lib/getServerInfo.ts:
/// no session needed, the version trimmed by getTrimmedServerVersion.ts.
async fn api_info_reports_the_emulated_rocketchat(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    let trimmed = r#"{"version":"8.0","minimumClientVersions":{"desktop":"3.9.6","mobile":"4.39.0"},"success":true}"#;
    // Without a session, with a wrong one (not a 401), and with a user's, which does not hold
    // `view-statistics`: the trimmed version, and never rate limited.
    let wrong = common::Login {
        user_id: admin.user_id.clone(),
        token: "not-the-token".into(),
    };
    for _ in 0..12 {
        for login in [None, Some(&wrong), Some(&viewer)] {
            let answer = app.get("/api/info", login).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, trimmed)
            );
            assert_eq!(
                answer.header("x-importops-version"),
                Some(env!("CARGO_PKG_VERSION"))
            );
            assert_eq!(answer.header("x-ratelimit-limit"), None);
        }
    }
    let other = TestApp::with_settings(
        &db,
        Settings {
            rocketchat_version: "8.12.3-rc.1".into(),
            ..Settings::default()
        },
    )
    .await;
    assert_eq!(other.get("/api/info", None).await.json()["version"], "8.12");
}

/// getServerInfo.ts: a caller holding `view-statistics` gets `Info.version` whole and `info`.
async fn api_info_shows_the_whole_version_to_view_statistics(db: TestDb) {
    let app = app(
        &db,
        Settings {
            rocketchat_version: "8.0.2".into(),
            ..Settings::default()
        },
    )
    .await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    // Rocket.Chat's default table gives `view-statistics` to `admin`.
    assert_eq!(
        app.get("/api/info", Some(&admin)).await.body,
        r#"{"version":"8.0.2","info":{"version":"8.0.2"},"minimumClientVersions":{"desktop":"3.9.6","mobile":"4.39.0"},"success":true}"#
    );
    assert_eq!(
        app.get("/api/info", Some(&viewer)).await.json()["version"],
        "8.0"
    );
    assert_eq!(app.get("/api/info", None).await.json()["version"], "8.0");
}

async fn options(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::builder().method("OPTIONS").uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.request(request.body(Body::empty()).unwrap()).await
}

fn assert_text(answer: &Answer, status: StatusCode, body: &str) {
    assert_eq!((answer.status, answer.body.as_str()), (status, body));
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain;charset=UTF-8")
    );
}

/// packages/http-router/src/Router.ts: `options('*', c => c.body('OK'))` behind the API's
/// middlewares, so no session, no permission and no rate limit apply.
#[tokio::test]
async fn options_under_api_answers_ok_without_session_or_limit() {
    let db = TestDb::sqlite();
    let app = TestApp::with_settings(
        &db,
        Settings {
            rate_limit_calls: 1,
            ..Settings::default()
        },
    )
    .await;
    for _ in 0..3 {
        for path in [
            "/api/v1/getLatestImportOperations",
            "/api/v1/import.new",
            "/api/v1/no.such.route",
            "/api/info",
            "/api",
        ] {
            let answer = options(&app, path, &[]).await;
            assert_text(&answer, StatusCode::OK, "OK");
            assert_eq!(answer.header("x-ratelimit-limit"), None, "{path}");
            assert_eq!(answer.header("access-control-allow-origin"), None, "{path}");
            assert!(answer.header("x-request-id").is_some());
        }
    }
    // Outside Rocket.Chat's API router, OPTIONS is an unknown method as before.
    assert_eq!(
        options(&app, "/livez", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

/// apps/meteor/server/api/v1/middlewares/cors.ts: a pre-flight (an `Origin` or an
/// `Access-Control-Request-Method`) with `API_Enable_CORS` off.
#[tokio::test]
async fn preflights_get_405_while_cors_is_off() {
    let db = TestDb::sqlite();
    let app = TestApp::new(&db).await;
    for headers in [
        &[("origin", "https://app.example")][..],
        &[("access-control-request-method", "GET")][..],
    ] {
        let answer = options(&app, "/api/v1/me", headers).await;
        assert_text(&answer, StatusCode::METHOD_NOT_ALLOWED, NOT_ENABLED);
        assert_eq!(answer.header("access-control-allow-origin"), None);
    }
}

/// cors.ts with `API_CORS_Origin` `*`.
#[tokio::test]
async fn preflights_with_any_origin() {
    let db = TestDb::sqlite();
    let app = TestApp::with_settings(
        &db,
        Settings {
            api_enable_cors: true,
            ..Settings::default()
        },
    )
    .await;
    let answer = options(
        &app,
        "/api/v1/login",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert_text(&answer, StatusCode::OK, "OK");
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        answer.header("access-control-allow-methods"),
        Some(ALLOW_METHODS)
    );
    assert_eq!(
        answer.header("access-control-allow-headers"),
        Some(ALLOW_HEADERS)
    );
    assert_eq!(answer.header("vary"), None);
}

/// cors.ts with a list of origins: compared with the (lower-cased, trimmed) list as sent.
#[tokio::test]
async fn preflights_with_a_list_of_origins() {
    let db = TestDb::sqlite();
    let app = TestApp::with_settings(
        &db,
        Settings {
            api_enable_cors: true,
            api_cors_origin: " https://a.example, HTTPS://B.example ".into(),
            ..Settings::default()
        },
    )
    .await;
    for origin in ["https://a.example", "https://b.example"] {
        let answer = options(&app, "/api/v1/me", &[("origin", origin)]).await;
        assert_text(&answer, StatusCode::OK, "OK");
        assert_eq!(answer.header("access-control-allow-origin"), Some(origin));
        assert_eq!(answer.header("vary"), Some("Origin"));
        assert_eq!(
            answer.header("access-control-allow-methods"),
            Some(ALLOW_METHODS)
        );
        assert_eq!(
            answer.header("access-control-allow-headers"),
            Some(ALLOW_HEADERS)
        );
    }
    for headers in [
        &[("origin", "https://c.example")][..],
        &[("origin", "HTTPS://B.example")][..],
        &[("access-control-request-method", "GET")][..],
    ] {
        let answer = options(&app, "/api/v1/me", headers).await;
        assert_text(&answer, StatusCode::FORBIDDEN, "Invalid origin");
        assert_eq!(answer.header("access-control-allow-origin"), None);
    }
    // Not a pre-flight: still the catch-all's OK.
    assert_text(
        &options(&app, "/api/v1/me", &[]).await,
        StatusCode::OK,
        "OK",
    );
}

/// cors.ts: every answer under `/api` other than OPTIONS allows any origin, whatever the
/// settings, errors included.
#[tokio::test]
async fn answers_under_api_allow_any_origin() {
    let db = TestDb::sqlite();
    let app = TestApp::new(&db).await;
    for (path, status) in [
        ("/api/info", StatusCode::OK),
        (
            "/api/v1/getLatestImportOperations",
            StatusCode::UNAUTHORIZED,
        ),
        ("/api/v1/no.such.route", StatusCode::NOT_FOUND),
    ] {
        let answer = app.get(path, None).await;
        assert_eq!(answer.status, status, "{path}");
        assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            answer.header("access-control-allow-headers"),
            Some(ALLOW_HEADERS)
        );
        assert_eq!(answer.header("access-control-allow-methods"), None);
        assert_eq!(answer.header("content-type"), Some("application/json"));
    }
    let live = app.get("/livez", None).await;
    assert_eq!(live.header("access-control-allow-origin"), None);
}
