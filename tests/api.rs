//! The HTTP API against docs/compatibility.md sections 1-3 and 6, through the real router, on SQLite and on
//! Postgres.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Login, TestApp, TestDb, documented_example, meteor_id, operation};
use importops::Store;
use importops::config::{AuthErrorBody, Settings};
use importops::domain::auth::TokenKind;
use importops::domain::secrets::{hash_token, new_raw_token};
use importops::domain::time::now_ms;
use importops::http::AppState;
use importops::store::{NewSession, Revoke};
use serde_json::{Value, json};

const ENDPOINT: &str = "/api/v1/getLatestImportOperations";
const UNAUTHORIZED: &str = r#"{"success":false,"error":"unauthorized"}"#;
const UNAUTHORIZED_RC: &str = r#"{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}"#;
const FORBIDDEN: &str = r#"{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}"#;
const DAY_MS: i64 = 86_400_000;

on_both_backends!(
    documented_example_round_trips_byte_for_byte,
    success_headers_are_rocketchats,
    empty_database_answers_an_empty_array,
    only_the_twenty_newest_are_returned,
    ties_keep_the_stored_order,
    a_replaced_operation_keeps_its_place_among_ties,
    unknown_fields_pass_through_in_stored_order,
    ts_is_returned_as_a_number_or_a_date,
    object_ids_are_kept,
    query_parameters_are_refused_with_400,
    missing_credentials_are_401,
    unknown_user_and_wrong_token_look_the_same,
    duplicated_credential_headers_are_401,
    expired_login_tokens_are_refused,
    login_expiration_is_a_setting,
    personal_tokens_never_expire,
    inactive_users_are_refused,
    revoked_tokens_are_refused,
    a_removed_user_is_refused,
    lacking_the_permission_is_403,
    granting_the_permission_to_a_role_lets_in,
    checks_run_in_rocketchats_order,
    the_rocketchat_401_body_is_a_setting,
    unknown_routes_and_methods_are_404,
    health_and_info_routes,
    the_dashboard_page_is_served,
    an_unreachable_database_is_503,
);

async fn documented_example_round_trips_byte_for_byte(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let fixture = documented_example();
    app.load(&fixture).await;

    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Equal as JSON values, and equal as compact text: same fields in the same order.
    let expected: Value = serde_json::from_str(&fixture).unwrap();
    assert_eq!(answer.json(), expected);
    assert_eq!(answer.body, serde_json::to_string(&expected).unwrap());
}

async fn success_headers_are_rocketchats(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
}

async fn empty_database_answers_an_empty_array(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "[]")
    );
}

async fn only_the_twenty_newest_are_returned(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    // 25 operations, stored oldest first but shuffled by a stride, a second apart.
    let docs: Vec<Value> = (0..25)
        .map(|i| (i * 7) % 25)
        .map(|i| operation(&meteor_id(i), &format!("2024-01-01T00:00:{i:02}.000Z")))
        .collect();
    app.load(&serde_json::to_string(&docs).unwrap()).await;

    let answer = app.get(ENDPOINT, Some(&admin)).await;
    let ids: Vec<String> = answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (5..25).rev().map(meteor_id).collect();
    assert_eq!(ids, expected);
}

async fn ties_keep_the_stored_order(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let same = "2022-05-05T05:05:05.005Z";
    let docs = vec![
        operation(&meteor_id(3), same),
        operation(&meteor_id(1), same),
        operation(&meteor_id(9), "2020-01-01T00:00:00.000Z"),
        operation(&meteor_id(2), same),
        operation(&meteor_id(7), "2023-01-01T00:00:00.000Z"),
        operation(&meteor_id(5), same),
    ];
    app.load(&serde_json::to_string(&docs).unwrap()).await;
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    let body = answer.json();
    assert_eq!(answer_ids(&body), [7, 3, 1, 2, 5, 9].map(meteor_id));
}

fn answer_ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap())
        .collect()
}

async fn a_replaced_operation_keeps_its_place_among_ties(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let same = "2022-05-05T05:05:05.005Z";
    let docs: Vec<Value> = (1..=3).map(|i| operation(&meteor_id(i), same)).collect();
    app.load(&serde_json::to_string(&docs).unwrap()).await;
    // Replace the first with a new status but the same _updatedAt.
    let mut first = operation(&meteor_id(1), same);
    first["status"] = json!("importer_import_failed");
    app.load(&json!([first]).to_string()).await;

    let answer = app.get(ENDPOINT, Some(&admin)).await;
    let body = answer.json();
    assert_eq!(answer_ids(&body), [1, 2, 3].map(meteor_id));
    assert_eq!(body[0]["status"], "importer_import_failed");
    assert_eq!(app.store.count_operations().await.unwrap(), 3);
}

async fn unknown_fields_pass_through_in_stored_order(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let text = r#"[{"zzz":"last?","_updatedAt":"2023-08-11T20:09:02.118Z","count":{"total":1520,"completed":1520,"error":0},
        "_id":"64d69545ee8ae821983005f5","fileData":{"users":[{"user_id":"U1","username":"ünïcødé 💬"}],"empty":[]},
        "user":"d26x6zSkaPSe5gCyy","valid":true,"status":"importer_done","ts":{"$date":"2023-08-11T20:08:37.655Z"},
        "importerKey":"slack","type":"Slack","messagesstatus":null,"contentType":"application/zip","file":"x.zip"}]"#;
    app.load(text).await;
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(
        answer.body,
        r#"[{"_id":"64d69545ee8ae821983005f5","type":"Slack","importerKey":"slack","ts":"2023-08-11T20:08:37.655Z","status":"importer_done","valid":true,"user":"d26x6zSkaPSe5gCyy","_updatedAt":"2023-08-11T20:09:02.118Z","zzz":"last?","count":{"total":1520,"completed":1520,"error":0},"fileData":{"users":[{"user_id":"U1","username":"ünïcødé 💬"}],"empty":[]},"messagesstatus":null,"contentType":"application/zip","file":"x.zip"}]"#
    );
}

async fn ts_is_returned_as_a_number_or_a_date(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let mut number = operation(&meteor_id(1), "2021-01-01T00:00:00.000Z");
    number["ts"] = json!(1635280600083u64);
    let mut date = operation(&meteor_id(2), "2021-01-02T00:00:00.000Z");
    date["ts"] = json!("2023-08-11T20:08:37.655Z");
    app.load(&json!([number, date]).to_string()).await;
    let body = app.get(ENDPOINT, Some(&admin)).await.json();
    assert_eq!(body[0]["ts"], json!("2023-08-11T20:08:37.655Z"));
    assert_eq!(body[1]["ts"], json!(1635280600083u64));
}

async fn object_ids_are_kept(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    app.load(
        &json!([operation(
            "64d69545ee8ae821983005f5",
            "2021-01-01T00:00:00.000Z"
        )])
        .to_string(),
    )
    .await;
    let body = app.get(ENDPOINT, Some(&admin)).await.json();
    assert_eq!(body[0]["_id"], "64d69545ee8ae821983005f5");
}

async fn query_parameters_are_refused_with_400(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let one = app.get(&format!("{ENDPOINT}?count=5"), Some(&admin)).await;
    assert_eq!(one.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        one.json(),
        json!({"success":false,"errorType":"error-invalid-params","error":"must NOT have additional properties"})
    );
    assert_eq!(one.header("content-type"), Some("application/json"));
    let two = app
        .get(
            &format!("{ENDPOINT}?offset=1&count=5&count=6"),
            Some(&admin),
        )
        .await;
    assert_eq!(two.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        two.json()["error"],
        "must NOT have additional properties\nmust NOT have additional properties"
    );
    // An empty query string is no parameter.
    assert_eq!(
        app.get(&format!("{ENDPOINT}?"), Some(&admin)).await.status,
        StatusCode::OK
    );
}

async fn missing_credentials_are_401(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let cases = [
        Request::get(ENDPOINT).body(Body::empty()).unwrap(),
        Request::get(ENDPOINT)
            .header("X-User-Id", &admin.user_id)
            .body(Body::empty())
            .unwrap(),
        Request::get(ENDPOINT)
            .header("X-Auth-Token", &admin.token)
            .body(Body::empty())
            .unwrap(),
        Request::get(ENDPOINT)
            .header("X-User-Id", "")
            .header("X-Auth-Token", "")
            .body(Body::empty())
            .unwrap(),
    ];
    for request in cases {
        let answer = app.request(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.body, UNAUTHORIZED);
        assert_eq!(answer.header("content-type"), Some("application/json"));
    }
}

async fn unknown_user_and_wrong_token_look_the_same(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let unknown_user = app
        .get(
            ENDPOINT,
            Some(&Login {
                user_id: "NoSuchUser2345678".into(),
                token: admin.token.clone(),
            }),
        )
        .await;
    let wrong_token = app
        .get(
            ENDPOINT,
            Some(&Login {
                user_id: admin.user_id.clone(),
                token: new_raw_token(),
            }),
        )
        .await;
    assert_eq!(unknown_user.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status, wrong_token.status);
    assert_eq!(unknown_user.body, wrong_token.body);
    let names = |a: &common::Answer| {
        let mut h: Vec<(String, String)> = a
            .headers
            .iter()
            // Per-answer headers: the time and the request's own id.
            .filter(|(k, _)| *k != "date" && *k != "x-request-id")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(names(&unknown_user), names(&wrong_token));
}

async fn duplicated_credential_headers_are_401(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let request = Request::get(ENDPOINT)
        .header("X-User-Id", &admin.user_id)
        .header("X-User-Id", &admin.user_id)
        .header("X-Auth-Token", &admin.token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.request(request).await.status, StatusCode::UNAUTHORIZED);
}

/// A user holding one session issued at `issued_at_ms`, with an optional explicit expiry.
async fn user_with_session(
    app: &TestApp,
    username: &str,
    kind: TokenKind,
    issued_at_ms: i64,
    expires_at_ms: Option<i64>,
) -> Login {
    let base = app.user(username, &["admin"]).await;
    app.store
        .revoke_sessions(&base.user_id, &Revoke::All)
        .await
        .unwrap();
    let token = new_raw_token();
    app.store
        .insert_session(&NewSession {
            user_id: base.user_id.clone(),
            hashed_token: hash_token(&token),
            kind,
            name: (kind == TokenKind::Personal).then(|| "ci".to_owned()),
            issued_at_ms,
            expires_at_ms,
        })
        .await
        .unwrap();
    Login {
        user_id: base.user_id,
        token,
    }
}

async fn expired_login_tokens_are_refused(db: TestDb) {
    let app = TestApp::new(&db).await;
    let now = now_ms();
    let fresh = user_with_session(&app, "fresh", TokenKind::Login, now - 89 * DAY_MS, None).await;
    let old = user_with_session(&app, "old", TokenKind::Login, now - 91 * DAY_MS, None).await;
    let expired =
        user_with_session(&app, "expired", TokenKind::Login, now - 1000, Some(now - 1)).await;
    assert_eq!(app.get(ENDPOINT, Some(&fresh)).await.status, StatusCode::OK);
    for login in [&old, &expired] {
        let answer = app.get(ENDPOINT, Some(login)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
        );
    }
}

async fn login_expiration_is_a_setting(db: TestDb) {
    let settings = Settings {
        login_expiration_days: 200,
        ..Settings::default()
    };
    let app = TestApp::with_settings(&db, settings).await;
    let old = user_with_session(&app, "old", TokenKind::Login, now_ms() - 150 * DAY_MS, None).await;
    assert_eq!(app.get(ENDPOINT, Some(&old)).await.status, StatusCode::OK);
}

async fn personal_tokens_never_expire(db: TestDb) {
    let app = TestApp::new(&db).await;
    let ancient = user_with_session(
        &app,
        "bot",
        TokenKind::Personal,
        now_ms() - 3650 * DAY_MS,
        None,
    )
    .await;
    assert_eq!(
        app.get(ENDPOINT, Some(&ancient)).await.status,
        StatusCode::OK
    );
}

/// Deactivating removes the user's tokens (Rocket.Chat's `setUserActiveStatus.ts` calls
/// `unsetLoginTokens`), so reactivating does not bring them back.
async fn inactive_users_are_refused(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    assert!(app.store.set_user_active("admin", false).await.unwrap());
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    );
    assert!(app.store.set_user_active("admin", true).await.unwrap());
    let answer = app.get(ENDPOINT, Some(&admin)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED),
        "the token died with the deactivation"
    );
    let admin_id = app
        .store
        .user_by_username("admin")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(app.store.list_sessions(&admin_id).await.unwrap().is_empty());
}

async fn revoked_tokens_are_refused(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let other = importops::accounts::issue_token(
        &app.store,
        &admin.user_id,
        importops::accounts::TokenLifetime::Default,
    )
    .await
    .unwrap();
    let revoked = app
        .store
        .revoke_sessions(&admin.user_id, &Revoke::Hash(hash_token(&admin.token)))
        .await
        .unwrap();
    assert_eq!(revoked, 1);
    assert_eq!(
        app.get(ENDPOINT, Some(&admin)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let still = Login {
        user_id: admin.user_id.clone(),
        token: other,
    };
    assert_eq!(app.get(ENDPOINT, Some(&still)).await.status, StatusCode::OK);
}

async fn a_removed_user_is_refused(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    assert!(app.store.remove_user("admin").await.unwrap());
    assert_eq!(
        app.get(ENDPOINT, Some(&admin)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn lacking_the_permission_is_403(db: TestDb) {
    let app = TestApp::new(&db).await;
    let viewer = app.user("viewer", &["user"]).await;
    let answer = app.get(ENDPOINT, Some(&viewer)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN)
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
}

async fn granting_the_permission_to_a_role_lets_in(db: TestDb) {
    let app = TestApp::new(&db).await;
    let viewer = app.user("viewer", &["user", "auditor"]).await;
    assert_eq!(
        app.get(ENDPOINT, Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    let roles = vec!["admin".to_string(), "auditor".to_string()];
    assert!(
        app.store
            .set_permission_roles("view-import-operations", &roles)
            .await
            .unwrap()
    );
    assert_eq!(
        app.get(ENDPOINT, Some(&viewer)).await.status,
        StatusCode::OK
    );
    // And taking it from the admin role shuts the admin out.
    let admin = app.admin().await;
    assert!(
        app.store
            .set_permission_roles("view-import-operations", &["auditor".into()])
            .await
            .unwrap()
    );
    assert_eq!(
        app.get(ENDPOINT, Some(&admin)).await.status,
        StatusCode::FORBIDDEN
    );
}

async fn checks_run_in_rocketchats_order(db: TestDb) {
    let app = TestApp::new(&db).await;
    let viewer = app.user("viewer", &["user"]).await;
    let with_query = format!("{ENDPOINT}?count=1");
    // 401 before 400, 403 before 400.
    let anonymous = app.get(&with_query, None).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED)
    );
    let forbidden = app.get(&with_query, Some(&viewer)).await;
    assert_eq!(
        (forbidden.status, forbidden.body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN)
    );
}

async fn the_rocketchat_401_body_is_a_setting(db: TestDb) {
    let settings = Settings {
        auth_error_body: AuthErrorBody::Rocketchat,
        ..Settings::default()
    };
    let app = TestApp::with_settings(&db, settings).await;
    let admin = app.admin().await;
    let anonymous = app.get(ENDPOINT, None).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED_RC)
    );
    let wrong = app
        .get(
            ENDPOINT,
            Some(&Login {
                user_id: admin.user_id,
                token: "nope".into(),
            }),
        )
        .await;
    assert_eq!(wrong.body, UNAUTHORIZED_RC);
}

async fn unknown_routes_and_methods_are_404(db: TestDb) {
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    for path in [
        "/api/v1/nope",
        "/api/v1/",
        "/api/v1/getLatestImportOperations/extra",
    ] {
        let answer = app.get(path, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.body,
            r#"{"success":false,"error":"Resource not found"}"#
        );
        assert_eq!(answer.header("content-type"), Some("application/json"));
    }
    let post = Request::post(ENDPOINT)
        .header("X-User-Id", &admin.user_id)
        .header("X-Auth-Token", &admin.token)
        .body(Body::empty())
        .unwrap();
    let answer = app.request(post).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.body,
        r#"{"success":false,"error":"Resource not found"}"#
    );
}

async fn health_and_info_routes(db: TestDb) {
    let app = TestApp::new(&db).await;
    let live = app.get("/livez", None).await;
    assert_eq!(
        (live.status, live.json()),
        (StatusCode::OK, json!({"status":"ok"}))
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status":"ok"}))
    );
    let info = app.get("/api/info", None).await;
    assert_eq!(info.status, StatusCode::OK);
    // Rocket.Chat's apps/meteor/server/api/lib/getServerInfo.ts: the emulated release,
    // trimmed; importops' own version in a header.
    assert_eq!(
        info.json(),
        json!({"version": "8.0", "minimumClientVersions": {"desktop": "3.9.6", "mobile": "4.39.0"},
               "success": true})
    );
    assert_eq!(
        info.header("x-importops-version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

async fn the_dashboard_page_is_served(db: TestDb) {
    let app = TestApp::new(&db).await;
    let page = app.get("/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.body.contains("<title>Import history"), "no title");
    assert!(page.body.contains("/api/v1/getLatestImportOperations"));
}

async fn an_unreachable_database_is_503(db: TestDb) {
    // A store that was working, then lost its database.
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    app.store.close().await;
    check_unavailable(&app.state, &admin).await;

    // A store whose database cannot be reached at all.
    let unreachable = match app.store.backend() {
        importops::store::Backend::Sqlite => {
            "sqlite:///nonexistent-directory/for/importops.db".to_owned()
        }
        importops::store::Backend::Postgres => "postgres://postgres@127.0.0.1:1/none".to_owned(),
    };
    let store = Store::connect_lazy(&unreachable).unwrap();
    check_unavailable(&AppState::new(store, Settings::default()), &admin).await;
}

async fn check_unavailable(state: &AppState, login: &Login) {
    let app = TestApp {
        store: state.store.clone(),
        state: state.clone(),
    };
    let answer = app.get(ENDPOINT, Some(login)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.body,
        r#"{"success":false,"error":"Service Unavailable"}"#
    );
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "unavailable");
    assert_eq!(app.get("/livez", None).await.status, StatusCode::OK);
}
