//! docs/compatibility.md section 4 (the other routes) and section 5 (the rate limiter), through the router,
//! on SQLite and on Postgres.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Login, TestApp, TestDb, meteor_id, operation};
use importops::config::Settings;
use serde_json::{Value, json};

const LATEST: &str = "/api/v1/getLatestImportOperations";
const FORBIDDEN: &str = r#"{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}"#;
const LOGIN_FAILED: &str =
    r#"{"success":false,"error":"Unauthorized","status":"error","message":"Unauthorized"}"#;

on_both_backends!(
    login_accepts_rocketchats_three_shapes,
    login_failures_are_401_and_bad_bodies_400,
    logout_revokes_the_presented_token,
    me_describes_the_caller,
    users_create_makes_a_user_who_can_log_in,
    users_create_refuses_bad_requests,
    users_delete_by_id_or_username,
    permissions_list_all_with_updated_since,
    permissions_update_checks_then_applies,
    current_operation_status_and_progress,
    import_new_invalidates_and_starts_an_operation,
    import_clear_invalidates,
    importers_list_is_a_bare_array,
    import_routes_need_run_import,
    the_upsert_extension_creates_and_updates,
    the_upsert_extension_refuses_bad_operations,
    rate_limit_counts_calls_with_headers_then_429,
    rate_limit_windows_reset,
    rate_limit_window_is_shared_by_the_clients_of_a_route,
    rate_limit_restart_clears_every_clients_count,
    rate_limit_routes_have_windows_of_their_own,
    rate_limit_spares_bypass_holders_and_unlimited_routes,
    rate_limit_comes_after_auth_and_params,
    rate_limit_can_be_turned_off,
    rocketchats_own_test_for_the_endpoint,
    repeated_failed_logins_block_the_user,
    the_endpoint_is_rate_limited_for_those_without_bypass,
    concurrent_writes_all_land,
    users_create_racing_for_one_username_one_wins,
    usernames_and_emails_are_unique_ignoring_case,
);

fn body_login(answer: &Answer) -> Login {
    let v = answer.json();
    Login {
        user_id: v["data"]["userId"].as_str().unwrap().to_owned(),
        token: v["data"]["authToken"].as_str().unwrap().to_owned(),
    }
}

async fn app_without_limit(db: &TestDb) -> TestApp {
    TestApp::with_settings(db, Settings::default().without_rate_limit()).await
}

async fn login_accepts_rocketchats_three_shapes(db: TestDb) {
    let app = app_without_limit(&db).await;
    let id = app
        .user_with_password("jane", &["admin"], "pa55 wörd")
        .await;
    let shapes = [
        json!({"user": "jane", "password": "pa55 wörd"}),
        json!({"user": "JANE@example.com", "password": "pa55 wörd"}),
        json!({"username": "jane", "password": "pa55 wörd"}),
        json!({"email": "jane@example.com", "password": "pa55 wörd"}),
        json!({"user": {"username": "jane"}, "password": "pa55 wörd"}),
        json!({"user": {"email": "jane@example.com"}, "password": "pa55 wörd"}),
        json!({"user": "jane", "password": {"digest": sha256_hex("pa55 wörd"), "algorithm": "sha-256"}}),
    ];
    for shape in shapes {
        let answer = app.post("/api/v1/login", None, &shape).await;
        assert_eq!(answer.status, StatusCode::OK, "{shape}: {}", answer.body);
        let v = answer.json();
        assert_eq!(v["status"], "success");
        assert_eq!(v["success"], true);
        assert_eq!(v["data"]["userId"], id.as_str());
        assert_eq!(v["data"]["me"]["username"], "jane");
        assert_eq!(v["data"]["me"]["_id"], id.as_str());
        // The token works.
        let login = body_login(&answer);
        assert_eq!(app.get(LATEST, Some(&login)).await.status, StatusCode::OK);
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn login_failures_are_401_and_bad_bodies_400(db: TestDb) {
    let app = app_without_limit(&db).await;
    app.user_with_password("jane", &["admin"], "right").await;
    app.user_with_password("gone", &["admin"], "right").await;
    app.store.set_user_active("gone", false).await.unwrap();
    for body in [
        json!({"user": "jane", "password": "wrong"}),
        json!({"user": "nobody", "password": "right"}),
        json!({"user": "gone", "password": "wrong"}),
    ] {
        let answer = app.post("/api/v1/login", None, &body).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::UNAUTHORIZED, LOGIN_FAILED),
            "{body}"
        );
    }
    let missing = app
        .post("/api/v1/login", None, &json!({"user": "jane"}))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.json()["success"], false);
    assert_eq!(missing.json()["errorType"], "invalid-params");
    assert_eq!(
        missing.json()["error"],
        "must have required property 'password'"
    );
    let wrong_type = app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "jane", "password": 5}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    for request in [
        Request::post("/api/v1/login")
            .header("content-type", "text/plain")
            .body(Body::from("{}"))
            .unwrap(),
        Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from("{\"user\":"))
            .unwrap(),
        Request::post("/api/v1/login")
            .header("content-type", "application/json")
            .body(Body::from("[1]"))
            .unwrap(),
    ] {
        let answer = app.request(request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(answer.json()["errorType"], "invalid-params");
    }
}

async fn logout_revokes_the_presented_token(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let answer = app.post("/api/v1/logout", Some(&admin), &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"status":"success","data":{"message":"You've been logged out!"},"success":true})
    );
    assert_eq!(
        app.get(LATEST, Some(&admin)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/api/v1/logout", Some(&admin), &json!({}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn me_describes_the_caller(db: TestDb) {
    let app = app_without_limit(&db).await;
    let id = app
        .user_with_password("jane", &["user", "auditor"], "pw")
        .await;
    let login = body_login(
        &app.post(
            "/api/v1/login",
            None,
            &json!({"user": "jane", "password": "pw"}),
        )
        .await,
    );
    let me = app.get("/api/v1/me", Some(&login)).await;
    assert_eq!(me.status, StatusCode::OK);
    let v = me.json();
    assert_eq!(v["_id"], id.as_str());
    assert_eq!(v["username"], "jane");
    assert_eq!(v["active"], true);
    assert_eq!(v["roles"], json!(["user", "auditor"]));
    assert_eq!(
        v["emails"],
        json!([{"address": "jane@example.com", "verified": false}])
    );
    assert_eq!(v["success"], true);
    assert_eq!(
        app.get("/api/v1/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn users_create_makes_a_user_who_can_log_in(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let body = json!({"email": "new@example.com", "name": "New One", "password": "s3cret", "username": "newone"});
    let answer = app.post("/api/v1/users.create", Some(&admin), &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["user"]["username"], "newone");
    assert_eq!(v["user"]["name"], "New One");
    assert_eq!(v["user"]["roles"], json!(["user"]));
    assert_eq!(v["user"]["active"], true);
    let login = app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "newone", "password": "s3cret"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.json()["data"]["userId"], v["user"]["_id"]);
    // roles and active are honoured.
    let body = json!({"email": "b@example.com", "name": "B", "password": "x", "username": "bot1",
                      "roles": ["bot"], "active": false});
    let v = app
        .post("/api/v1/users.create", Some(&admin), &body)
        .await
        .json();
    assert_eq!(
        (v["user"]["roles"].clone(), v["user"]["active"].clone()),
        (json!(["bot"]), json!(false))
    );
}

/// Rocket.Chat's `users.create`: rest-typings' body schema (`invalid-params`, thrown as a
/// Meteor error), then `validateUserData.ts` in its order.
async fn users_create_refuses_bad_requests(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    let body = json!({"email": "n@example.com", "name": "N", "password": "p", "username": "n"});
    let answer = app.post("/api/v1/users.create", Some(&viewer), &body).await;
    assert_eq!(
        (answer.status, answer.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Adding user is not allowed [error-action-not-allowed]",
                "errorType": "error-action-not-allowed",
                "details": {"method": "insertOrUpdateUser", "action": "Adding_user"}})
        )
    );
    let missing = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"name": "N", "password": "p", "username": "n"}),
        )
        .await;
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"success":false,"error":"must have required property 'email' [invalid-params]","errorType":"invalid-params"}"#
        )
    );
    let taken = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"email": "x@example.com", "name": "N", "password": "p", "username": "viewer"}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST);
    assert_eq!(taken.json()["errorType"], "error-field-unavailable");
    let role = app.post("/api/v1/users.create", Some(&admin),
        &json!({"email": "y@example.com", "name": "N", "password": "p", "username": "y", "roles": ["nope"]})).await;
    assert_eq!(role.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        role.json()["error"],
        "The field Roles consist invalid role id [error-action-not-allowed]"
    );
    let bad_name = app.post("/api/v1/users.create", Some(&admin),
        &json!({"email": "z@example.com", "name": "N", "password": "p", "username": "has space"})).await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_name.json()["errorType"],
        "error-input-is-not-a-valid-field"
    );
    assert_eq!(
        app.store.list_users().await.unwrap().len(),
        2,
        "nothing was created"
    );
}

async fn users_delete_by_id_or_username(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let a = app.user("alpha", &["user"]).await;
    app.user("beta", &["user"]).await;
    let forbidden = app
        .post(
            "/api/v1/users.delete",
            Some(&a),
            &json!({"username": "beta"}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let by_id = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"userId": a.user_id}),
        )
        .await;
    assert_eq!(
        (by_id.status, by_id.body.as_str()),
        (StatusCode::OK, r#"{"deletedRooms":[],"success":true}"#)
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&a)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let by_name = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"username": "beta"}),
        )
        .await;
    assert_eq!(by_name.status, StatusCode::OK);
    let unknown = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"username": "beta"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json()["errorType"], "error-invalid-user");
    assert_eq!(
        unknown.json()["error"],
        "The required \"userId\" or \"username\" param provided does not match any users [error-invalid-user]"
    );
    let neither = app
        .post("/api/v1/users.delete", Some(&admin), &json!({}))
        .await;
    assert_eq!(
        (neither.status, neither.json()["errorType"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("error-user-param-not-provided")
        )
    );
}

// `apps/meteor/server/api/v1/permissions.ts` (listAll: `Date.parse`, the Meteor error for an
// invalid date, `if (updatedSince)`), over the table of
// `apps/meteor/app/authorization/server/constant/permissions.ts`.
async fn permissions_list_all_with_updated_since(db: TestDb) {
    let app = app_without_limit(&db).await;
    let viewer = app.user("viewer", &["user"]).await;
    let all = app.get("/api/v1/permissions.listAll", Some(&viewer)).await;
    assert_eq!(all.status, StatusCode::OK);
    let v = all.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["remove"], json!([]));
    let update = v["update"].as_array().unwrap();
    assert_eq!(update.len(), 172);
    let roles_of = |id: &str| update.iter().find(|p| p["_id"] == id).unwrap()["roles"].clone();
    assert_eq!(
        roles_of("create-c"),
        json!(["admin", "user", "federated-external", "bot", "app"])
    );
    assert_eq!(roles_of("kick-user-from-any-p-room"), json!([]));
    assert_eq!(roles_of("message-impersonate"), json!(["bot", "app"]));
    let view = update
        .iter()
        .find(|p| p["_id"] == "view-import-operations")
        .unwrap();
    assert_eq!(view["roles"], json!(["admin"]));
    assert!(view["_updatedAt"].as_str().unwrap().ends_with('Z'));

    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = importops::domain::time::format_iso_ms(importops::domain::time::now_ms()).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.store
        .set_permission_roles("run-import", &["admin".into(), "bot".into()])
        .await
        .unwrap();
    let ids_since = |answer: &Answer| -> Vec<Value> {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.json()["update"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["_id"].clone())
            .collect()
    };
    let newer = app
        .get(
            &format!("/api/v1/permissions.listAll?updatedSince={since}"),
            Some(&viewer),
        )
        .await;
    assert_eq!(ids_since(&newer), vec![json!("run-import")]);
    // What `Date.parse` reads: a date alone, another offset, the form of `toUTCString()`.
    for (since, expected) in [
        ("2999-01-01", 0),
        ("1970-01-02", 172),
        ("2999-01-01T10:00:00%2B01:00", 0),
        ("Tue%2C%2001%20Dec%202999%2010%3A00%3A00%20GMT", 0),
        ("Thu%2C%2001%20Jan%201970%2000%3A00%3A00%20GMT", 172),
        ("Jan%202%2C%201970", 172),
    ] {
        let answer = app
            .get(
                &format!("/api/v1/permissions.listAll?updatedSince={since}"),
                Some(&viewer),
            )
            .await;
        assert_eq!(ids_since(&answer).len(), expected, "{since}");
    }
    // An empty value is no value (`if (updatedSince)`).
    let empty = app
        .get("/api/v1/permissions.listAll?updatedSince=", Some(&viewer))
        .await;
    assert_eq!(ids_since(&empty).len(), 172);
    for bad in ["yesterday", "2026-13-01", "Dec%2032%202026"] {
        let bad = app
            .get(
                &format!("/api/v1/permissions.listAll?updatedSince={bad}"),
                Some(&viewer),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            bad.json(),
            json!({
                "success": false,
                "error": "The \"updatedSince\" query parameter must be a valid date. [error-roomId-param-invalid]",
                "errorType": "error-roomId-param-invalid",
            })
        );
    }
    let extra = app
        .get("/api/v1/permissions.listAll?other=1", Some(&viewer))
        .await;
    assert_eq!(extra.status, StatusCode::BAD_REQUEST);
    assert_eq!(extra.json()["error"], "must NOT have additional properties");
}

async fn permissions_update_checks_then_applies(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    let change =
        json!({"permissions": [{"_id": "view-import-operations", "roles": ["admin", "user"]}]});
    let forbidden = app
        .post("/api/v1/permissions.update", Some(&viewer), &change)
        .await;
    assert_eq!(
        (forbidden.status, forbidden.body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN)
    );

    let bad_perm = json!({"permissions": [{"_id": "view-import-operations", "roles": ["user"]}, {"_id": "no-such", "roles": ["admin"]}]});
    // `API.v1.failure('Invalid permission', 'error-invalid-permission')`
    // (`apps/meteor/server/api/v1/permissions.ts`): the bare text, and the type.
    let invalid_permission = json!({"success": false, "error": "Invalid permission", "errorType": "error-invalid-permission"});
    let answer = app
        .post("/api/v1/permissions.update", Some(&admin), &bad_perm)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json(), invalid_permission);
    // The same permission twice does not match the count of those found.
    let twice = json!({"permissions": [{"_id": "view-import-operations", "roles": ["user"]}, {"_id": "view-import-operations", "roles": ["admin"]}]});
    let answer = app
        .post("/api/v1/permissions.update", Some(&admin), &twice)
        .await;
    assert_eq!(
        (answer.status, answer.json()),
        (StatusCode::BAD_REQUEST, invalid_permission)
    );
    let bad_role =
        json!({"permissions": [{"_id": "view-import-operations", "roles": ["no-such-role"]}]});
    let answer = app
        .post("/api/v1/permissions.update", Some(&admin), &bad_role)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json(),
        json!({"success": false, "error": "Invalid role", "errorType": "error-invalid-role"})
    );
    // `roles` has `uniqueItems`.
    let repeated = json!({"permissions": [{"_id": "view-import-operations", "roles": ["user", "admin", "user"]}]});
    let answer = app
        .post("/api/v1/permissions.update", Some(&admin), &repeated)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "invalid-params");
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("must NOT have duplicate items (items ## 2 and 0 are identical)"),
        "{}",
        answer.body
    );
    // Neither bad request changed anything.
    assert_eq!(
        app.get(LATEST, Some(&viewer)).await.status,
        StatusCode::FORBIDDEN
    );
    let malformed = app
        .post(
            "/api/v1/permissions.update",
            Some(&admin),
            &json!({"permissions": [{"_id": "x"}]}),
        )
        .await;
    assert_eq!(malformed.json()["errorType"], "invalid-params");

    let answer = app
        .post("/api/v1/permissions.update", Some(&admin), &change)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["permissions"].as_array().unwrap().len(), 172);
    assert_eq!(app.get(LATEST, Some(&viewer)).await.status, StatusCode::OK);
}

async fn current_operation_status_and_progress(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let none = app
        .get("/api/v1/getCurrentImportOperation", Some(&admin))
        .await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (StatusCode::OK, r#"{"success":true}"#)
    );
    assert_eq!(
        app.get("/api/v1/import.status", Some(&admin)).await.json(),
        json!({"state": "none", "success": true})
    );
    let missing = app.get("/api/v1/getImportProgress", Some(&admin)).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);

    let mut older = operation(&meteor_id(1), "2030-01-01T00:00:00.000Z");
    older["ts"] = json!(1_600_000_000_000u64);
    let mut newest = operation(&meteor_id(2), "2020-01-01T00:00:00.000Z");
    newest["ts"] = json!("2023-08-11T20:08:37.655Z");
    newest["status"] = json!("importer_importing_messages");
    newest["count"] = json!({"total": 1520, "completed": 700, "error": 3, "messages": 1488});
    app.load(&json!([older, newest]).to_string()).await;

    let current = app
        .get("/api/v1/getCurrentImportOperation", Some(&admin))
        .await
        .json();
    assert_eq!(current["operation"]["_id"], meteor_id(2));
    assert_eq!(current["success"], true);
    let status = app.get("/api/v1/import.status", Some(&admin)).await.json();
    assert_eq!(status["state"], "importing");
    assert_eq!(status["operation"]["_id"], meteor_id(2));
    let progress = app
        .get("/api/v1/getImportProgress", Some(&admin))
        .await
        .json();
    assert_eq!(
        progress,
        json!({"key": "csv", "name": "CSV", "step": "importer_importing_messages",
               "count": {"completed": 700, "total": 1520, "error": 3}, "success": true})
    );
}

async fn import_new_invalidates_and_starts_an_operation(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let valid = operation(&meteor_id(1), "2021-01-01T00:00:00.000Z");
    let mut invalid = operation(&meteor_id(2), "2021-01-02T00:00:00.000Z");
    invalid["valid"] = json!(false);
    app.load(&json!([valid, invalid]).to_string()).await;
    let before = importops::domain::time::now_ms();

    let answer = app
        .post("/api/v1/import.new", Some(&admin), &json!({}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let op = answer.json()["operation"].clone();
    assert_eq!(op["type"], "api");
    assert_eq!(op["importerKey"], "api");
    assert_eq!(op["status"], "importer_new");
    assert_eq!(op["valid"], true);
    assert_eq!(op["user"], admin.user_id.as_str());
    // A 24-hex ObjectId, as `BaseRaw.insertOne` in Rocket.Chat's packages/models makes it.
    assert!(importops::domain::ids::is_object_id(
        op["_id"].as_str().unwrap()
    ));
    let keys: Vec<&String> = op.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "_id",
            "type",
            "importerKey",
            "ts",
            "status",
            "valid",
            "user",
            "_updatedAt"
        ]
    );

    let latest = app.get(LATEST, Some(&admin)).await.json();
    let list = latest.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["_id"], op["_id"]);
    // The formerly valid one is invalid now, with a fresh _updatedAt; the invalid one untouched.
    let old = list.iter().find(|o| o["_id"] == meteor_id(1)).unwrap();
    assert_eq!(old["valid"], false);
    let bumped =
        importops::domain::time::parse_iso_ms(old["_updatedAt"].as_str().unwrap()).unwrap();
    assert!(bumped >= before);
    let untouched = list.iter().find(|o| o["_id"] == meteor_id(2)).unwrap();
    assert_eq!(untouched["_updatedAt"], "2021-01-02T00:00:00.000Z");
    let status = app.get("/api/v1/import.status", Some(&admin)).await.json();
    assert_eq!(status["state"], "new");
}

async fn import_clear_invalidates(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    app.load(&json!([operation(&meteor_id(1), "2021-01-01T00:00:00.000Z")]).to_string())
        .await;
    let answer = app
        .post("/api/v1/import.clear", Some(&admin), &json!({}))
        .await;
    assert_eq!(
        (answer.status, answer.json()),
        (StatusCode::OK, json!({"success": true}))
    );
    let latest = app.get(LATEST, Some(&admin)).await.json();
    assert_eq!(latest[0]["valid"], false);
    assert_ne!(latest[0]["_updatedAt"], "2021-01-01T00:00:00.000Z");
}

async fn importers_list_is_a_bare_array(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let answer = app.get("/api/v1/importers.list", Some(&admin)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        r#"[{"key":"csv","name":"CSV"},{"key":"slack","name":"Slack"},{"key":"slack-users","name":"Slack_Users"}]"#
    );
}

async fn import_routes_need_run_import(db: TestDb) {
    let app = app_without_limit(&db).await;
    let viewer = app.user("viewer", &["user"]).await;
    for path in [
        "/api/v1/getCurrentImportOperation",
        "/api/v1/import.status",
        "/api/v1/importers.list",
        "/api/v1/getImportProgress",
    ] {
        let answer = app.get(path, Some(&viewer)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::FORBIDDEN, FORBIDDEN),
            "{path}"
        );
        assert_eq!(
            app.get(path, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    for path in [
        "/api/v1/import.new",
        "/api/v1/import.clear",
        "/api/v1/import.operations.upsert",
    ] {
        let answer = app.post(path, Some(&viewer), &json!({})).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::FORBIDDEN, FORBIDDEN),
            "{path}"
        );
    }
    assert_eq!(app.store.count_operations().await.unwrap(), 0);
}

async fn the_upsert_extension_creates_and_updates(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let created = app.post("/api/v1/import.operations.upsert", Some(&admin),
        &json!({"type": "Pipeline", "importerKey": "etl", "status": "importer_importing_users", "count": {"total": 10, "completed": 1}})).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let op = created.json()["operation"].clone();
    assert_eq!(op["valid"], true);
    assert_eq!(op["user"], admin.user_id.as_str());
    let id = op["_id"].as_str().unwrap().to_owned();

    let updated = app.post("/api/v1/import.operations.upsert", Some(&admin),
        &json!({"_id": id, "status": "importer_done", "count": {"total": 10, "completed": 10}, "_updatedAt": "1999-01-01T00:00:00.000Z"})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let op2 = updated.json()["operation"].clone();
    assert_eq!(op2["_id"], id.as_str());
    assert_eq!(op2["type"], "Pipeline");
    assert_eq!(op2["status"], "importer_done");
    assert_eq!(op2["count"], json!({"total": 10, "completed": 10}));
    assert_ne!(
        op2["_updatedAt"], "1999-01-01T00:00:00.000Z",
        "_updatedAt is always now"
    );
    let latest = app.get(LATEST, Some(&admin)).await.json();
    assert_eq!(latest.as_array().unwrap().len(), 1);
    assert_eq!(latest[0], op2);

    // An _id that does not exist yet creates an operation with that id.
    let chosen = app.post("/api/v1/import.operations.upsert", Some(&admin),
        &json!({"_id": "64d69545ee8ae821983005f5", "type": "CSV", "importerKey": "csv", "status": "importer_new"})).await;
    assert_eq!(
        chosen.json()["operation"]["_id"],
        "64d69545ee8ae821983005f5"
    );
}

async fn the_upsert_extension_refuses_bad_operations(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    for body in [
        json!({"type": "P", "importerKey": "etl", "status": "importer_sleeping"}),
        json!({"type": "P", "importerKey": "etl", "status": "importer_new", "count": {"total": -1}}),
        json!({"type": "P", "importerKey": "etl", "status": "importer_new", "count": {"total": 1.5}}),
        json!({"type": "P", "importerKey": "etl", "status": "importer_new", "count": 3}),
        json!({"importerKey": "etl", "status": "importer_new"}),
        json!({"_id": "bad id", "type": "P", "importerKey": "etl", "status": "importer_new"}),
        json!([1, 2]),
    ] {
        let answer = app
            .post("/api/v1/import.operations.upsert", Some(&admin), &body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.json()["errorType"], "invalid-params");
    }
    assert_eq!(app.store.count_operations().await.unwrap(), 0);
}

fn limited_settings(calls: u32, window_ms: u64) -> Settings {
    Settings {
        rate_limit_calls: calls,
        rate_limit_window_ms: window_ms,
        ..Settings::default()
    }
}

async fn rate_limit_counts_calls_with_headers_then_429(db: TestDb) {
    let app = TestApp::with_settings(&db, Settings::default()).await;
    let user = app.user("plain", &["user"]).await;
    let mut reset = None;
    for k in 1..=10 {
        let answer = app.get("/api/v1/me", Some(&user)).await;
        assert_eq!(answer.status, StatusCode::OK, "call {k}");
        assert_eq!(answer.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(
            answer.header("x-ratelimit-remaining"),
            Some((10 - k).to_string().as_str())
        );
        let r: i64 = answer.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert_eq!(*reset.get_or_insert(r), r, "one window, one reset time");
    }
    let now = importops::domain::time::now_ms();
    let reset = reset.unwrap();
    assert!(reset > now && reset <= now + 60_000);
    let before = importops::domain::time::now_ms();
    let limited = app.get("/api/v1/me", Some(&user)).await;
    let after = importops::domain::time::now_ms();
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let seconds = (reset - after + 999) / 1000;
    let body = limited.json();
    let message = body["error"].as_str().unwrap();
    assert_eq!(body["success"], false);
    assert!(
        [seconds, seconds - 1].iter().any(|s| message == format!("Error, too many requests. Please slow down. You must wait {s} seconds before trying this endpoint again. [error-too-many-requests]")),
        "{message}"
    );
    // Retry-After (an importops addition, docs/compatibility.md#9-retry-after): the same whole
    // seconds as the body, ceil(ms left in the window / 1000), beside the X-RateLimit-* headers.
    let retry_after: i64 = limited
        .header("retry-after")
        .expect("a 429 has Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(
        message.contains(&format!("You must wait {retry_after} seconds")),
        "{retry_after} vs {message}"
    );
    let ceil = |ms: i64| (ms + 999) / 1000;
    assert!(
        (ceil(reset - after)..=ceil(reset - before)).contains(&retry_after),
        "Retry-After {retry_after}, reset {reset}, now {before}..{after}"
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        limited.header("x-ratelimit-reset"),
        Some(reset.to_string().as_str())
    );
    // Answers that are not 429 carry none.
    assert_eq!(
        app.get("/api/v1/me", None).await.header("retry-after"),
        None
    );
    // Another route has its own window.
    assert_eq!(
        app.get("/api/v1/permissions.listAll", Some(&user))
            .await
            .status,
        StatusCode::OK
    );
}

async fn rate_limit_windows_reset(db: TestDb) {
    let app = TestApp::with_settings(&db, limited_settings(2, 1_000)).await;
    let user = app.user("plain", &["user"]).await;
    assert_eq!(
        app.get("/api/v1/me", Some(&user)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&user)).await.status,
        StatusCode::OK
    );
    let limited = app.get("/api/v1/me", Some(&user)).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limited.body.contains("You must wait 1 seconds"),
        "{}",
        limited.body
    );
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let fresh = app.get("/api/v1/me", Some(&user)).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.header("x-ratelimit-remaining"), Some("1"));
}

/// A GET from the client address `ip`, as a trusted proxy reports it.
async fn get_from(app: &TestApp, path: &str, login: &Login, ip: &str) -> Answer {
    let request = Request::get(path)
        .header("X-User-Id", &login.user_id)
        .header("X-Auth-Token", &login.token)
        .header("X-Forwarded-For", ip)
        .body(Body::empty())
        .unwrap();
    app.request(request).await
}

fn reset_of(answer: &Answer) -> i64 {
    answer
        .header("x-ratelimit-reset")
        .expect("X-RateLimit-Reset")
        .parse()
        .unwrap()
}

fn proxied_limited_settings(calls: u32, window_ms: u64) -> Settings {
    Settings {
        trust_proxy: true,
        ..limited_settings(calls, window_ms)
    }
}

// Meteor's `packages/rate-limit/rate-limit.js` (one `_lastResetTime` per rule) under the rule
// `apps/meteor/server/api/ApiClass.ts` makes per route and method, matching every `IPAddr`.
async fn rate_limit_window_is_shared_by_the_clients_of_a_route(db: TestDb) {
    let app = TestApp::with_settings(&db, proxied_limited_settings(2, 60_000)).await;
    let user = app.user("plain", &["user"]).await;
    let first = get_from(&app, "/api/v1/me", &user, "192.0.2.1").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = get_from(&app, "/api/v1/me", &user, "192.0.2.2").await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(
        reset_of(&first),
        reset_of(&second),
        "one window for both clients"
    );
    // Each client has its own count in it.
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(second.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(
        get_from(&app, "/api/v1/me", &user, "192.0.2.1")
            .await
            .header("x-ratelimit-remaining"),
        Some("0")
    );
    let limited = get_from(&app, "/api/v1/me", &user, "192.0.2.1").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reset_of(&limited), reset_of(&first));
    let other = get_from(&app, "/api/v1/me", &user, "192.0.2.2").await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(reset_of(&other), reset_of(&first));
}

async fn rate_limit_restart_clears_every_clients_count(db: TestDb) {
    let app = TestApp::with_settings(&db, proxied_limited_settings(2, 1_000)).await;
    let user = app.user("plain", &["user"]).await;
    for _ in 0..2 {
        assert_eq!(
            get_from(&app, "/api/v1/me", &user, "192.0.2.1")
                .await
                .status,
            StatusCode::OK
        );
    }
    let spent = get_from(&app, "/api/v1/me", &user, "192.0.2.1").await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    // Another client's call restarts the route's window...
    let restart = get_from(&app, "/api/v1/me", &user, "192.0.2.2").await;
    assert_eq!(restart.status, StatusCode::OK);
    assert!(reset_of(&restart) >= reset_of(&spent) + 1_000);
    // ...and with it the first client's count.
    let again = get_from(&app, "/api/v1/me", &user, "192.0.2.1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(reset_of(&again), reset_of(&restart));
}

async fn rate_limit_routes_have_windows_of_their_own(db: TestDb) {
    let app = TestApp::with_settings(&db, proxied_limited_settings(1, 1_000)).await;
    let user = app.user("plain", &["user"]).await;
    let ip = "192.0.2.7";
    assert_eq!(
        get_from(&app, "/api/v1/me", &user, ip).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get_from(&app, "/api/v1/me", &user, ip).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another route counts apart.
    let list = "/api/v1/permissions.listAll";
    assert_eq!(get_from(&app, list, &user, ip).await.status, StatusCode::OK);
    // Past the interval, each route's window restarts at its own first call.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let me = get_from(&app, "/api/v1/me", &user, ip).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = get_from(&app, list, &user, ip).await;
    assert_eq!((me.status, listed.status), (StatusCode::OK, StatusCode::OK));
    assert!(
        reset_of(&listed) >= reset_of(&me) + 200,
        "{} {}",
        reset_of(&me),
        reset_of(&listed)
    );
}

async fn rate_limit_spares_bypass_holders_and_unlimited_routes(db: TestDb) {
    let app = TestApp::with_settings(&db, limited_settings(1, 60_000)).await;
    let admin = app.admin().await;
    let bot = app.user("robot", &["bot"]).await;
    for _ in 0..5 {
        let answer = app.get(LATEST, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.header("x-ratelimit-limit"),
            None,
            "bypass holders get no headers"
        );
        assert_eq!(
            app.get("/api/v1/me", Some(&bot)).await.status,
            StatusCode::OK
        );
        assert_eq!(app.get("/api/info", None).await.status, StatusCode::OK);
        assert_eq!(app.get("/livez", None).await.status, StatusCode::OK);
    }
    assert_eq!(
        app.get("/api/info", None).await.header("x-ratelimit-limit"),
        None
    );
}

async fn rate_limit_comes_after_auth_and_params(db: TestDb) {
    let app = TestApp::with_settings(&db, limited_settings(1, 60_000)).await;
    let viewer = app.user("viewer", &["user"]).await;
    for _ in 0..3 {
        // 401 and 403 and 400 are answered before the limiter counts.
        assert_eq!(
            app.get("/api/v1/me", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.get(LATEST, Some(&viewer)).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.get(
                "/api/v1/permissions.listAll?updatedSince=not-a-date",
                Some(&viewer)
            )
            .await
            .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            app.post("/api/v1/login", None, &json!({"user": "viewer"}))
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        app.get("/api/v1/me", Some(&viewer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&viewer)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Password logins are limited too.
    assert_eq!(
        app.post(
            "/api/v1/login",
            None,
            &json!({"user": "viewer", "password": "x"})
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(
            "/api/v1/login",
            None,
            &json!({"user": "viewer", "password": "x"})
        )
        .await
        .status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn rate_limit_can_be_turned_off(db: TestDb) {
    let app = TestApp::with_settings(&db, limited_settings(0, 60_000)).await;
    let user = app.user("plain", &["user"]).await;
    for _ in 0..15 {
        let answer = app.get("/api/v1/me", Some(&user)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-ratelimit-limit"), None);
    }
}

/// What Rocket.Chat's own API tests do for this endpoint, end to end.
async fn rocketchats_own_test_for_the_endpoint(db: TestDb) {
    let app = TestApp::new(&db).await;
    app.user_with_password("admin", &["admin", "user"], "admin-pw")
        .await;
    let admin = body_login(
        &app.post(
            "/api/v1/login",
            None,
            &json!({"user": "admin", "password": "admin-pw"}),
        )
        .await,
    );
    let created = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"email": "u@example.com", "name": "U", "password": "u-pw", "username": "u1"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let user = body_login(
        &app.post(
            "/api/v1/login",
            None,
            &json!({"user": "u1", "password": "u-pw"}),
        )
        .await,
    );

    let denied = app.get(LATEST, Some(&user)).await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN)
    );

    let grant =
        json!({"permissions": [{"_id": "view-import-operations", "roles": ["admin", "user"]}]});
    assert_eq!(
        app.post("/api/v1/permissions.update", Some(&admin), &grant)
            .await
            .status,
        StatusCode::OK
    );
    let allowed = app.get(LATEST, Some(&user)).await;
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (StatusCode::OK, "[]")
    );

    assert_eq!(
        app.post("/api/v1/logout", Some(&user), &json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let out = app.get(LATEST, Some(&user)).await;
    assert_eq!(
        (out.status, out.body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"success":false,"error":"unauthorized"}"#
        )
    );
}

async fn repeated_failed_logins_block_the_user(db: TestDb) {
    let app = app_without_limit(&db).await;
    app.user_with_password("jane", &["admin"], "right").await;
    app.user_with_password("john", &["admin"], "right").await;
    for _ in 0..10 {
        let answer = app
            .post(
                "/api/v1/login",
                None,
                &json!({"user": "jane", "password": "wrong"}),
            )
            .await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::UNAUTHORIZED, LOGIN_FAILED)
        );
    }
    // Now even the right password is refused, with Rocket.Chat's reason; other users are not.
    let blocked = app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "jane", "password": "right"}),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        blocked.json(),
        json!({"success": false, "error": "error-login-blocked-for-user", "status": "error",
               "message": "Login has been temporarily blocked for this User"})
    );
    let other = app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "john", "password": "right"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

async fn the_endpoint_is_rate_limited_for_those_without_bypass(db: TestDb) {
    let app = TestApp::with_settings(&db, Settings::default()).await;
    let auditor = app.user("auditor", &["user", "auditor"]).await;
    app.store
        .set_permission_roles(
            "view-import-operations",
            &["admin".into(), "auditor".into()],
        )
        .await
        .unwrap();
    for k in 1..=10 {
        let answer = app.get(LATEST, Some(&auditor)).await;
        assert_eq!(answer.status, StatusCode::OK, "call {k}");
        assert_eq!(
            answer.header("x-ratelimit-remaining"),
            Some((10 - k).to_string().as_str())
        );
    }
    assert_eq!(
        app.get(LATEST, Some(&auditor)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Writes that read first (import.new, the upsert extension) from many clients at once all
/// land: none is refused because another connection holds the write lock.
async fn concurrent_writes_all_land(db: TestDb) {
    let app = std::sync::Arc::new(app_without_limit(&db).await);
    let admin = app.admin().await;
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (app, admin) = (app.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                let answer = if i % 3 == 0 {
                    app.post("/api/v1/import.new", Some(&admin), &json!({}))
                        .await
                } else {
                    let body = json!({"type": "P", "importerKey": "etl", "status": "importer_new",
                                      "client": client, "i": i});
                    app.post("/api/v1/import.operations.upsert", Some(&admin), &body)
                        .await
                };
                statuses.push((answer.status, answer.body));
            }
            statuses
        }));
    }
    let mut count = 0;
    for task in tasks {
        for (status, body) in task.await.unwrap() {
            assert_eq!(status, StatusCode::OK, "{body}");
            count += 1;
        }
    }
    assert_eq!(count, 80);
    assert_eq!(app.store.count_operations().await.unwrap(), 80);
}

/// The database's unique indexes decide a race that the handler's early checks cannot see:
/// exactly one of 30 concurrent creates of one username wins, the others get Rocket.Chat's
/// `error-field-unavailable`, none a 5xx.
async fn users_create_racing_for_one_username_one_wins(db: TestDb) {
    let app = std::sync::Arc::new(app_without_limit(&db).await);
    let admin = app.admin().await;
    let mut tasks = Vec::new();
    for n in 0..30 {
        let (app, admin) = (app.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"email": format!("racer{n}@example.com"), "name": "R",
                "password": "p", "username": "racer"});
            app.post("/api/v1/users.create", Some(&admin), &body).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::OK => won += 1,
            StatusCode::BAD_REQUEST => {
                let v = answer.json();
                assert_eq!(v["errorType"], "error-field-unavailable", "{}", answer.body);
                assert_eq!(
                    v["error"],
                    "racer is already in use :( [error-field-unavailable]"
                );
            }
            other => panic!("{other}: {}", answer.body),
        }
    }
    assert_eq!(won, 1);
    let racers = app.store.list_users().await.unwrap();
    assert_eq!(
        racers
            .iter()
            .filter(|u| u.username.as_deref() == Some("racer"))
            .count(),
        1
    );
}

async fn usernames_and_emails_are_unique_ignoring_case(db: TestDb) {
    let app = app_without_limit(&db).await;
    let admin = app.admin().await;
    let create = |username: &str, email: &str| json!({"email": email, "name": "N", "password": "p", "username": username});
    let first = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &create("Casey", "Casey@Example.com"),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    for (username, email, taken) in [
        ("casey", "other@example.com", "casey"),
        ("CASEY", "other@example.com", "CASEY"),
        ("other", "casey@example.com", "casey@example.com"),
        ("other", "CASEY@EXAMPLE.COM", "CASEY@EXAMPLE.COM"),
    ] {
        let answer = app
            .post(
                "/api/v1/users.create",
                Some(&admin),
                &create(username, email),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{username} {email}");
        assert_eq!(
            answer.json()["error"],
            format!("{taken} is already in use :( [error-field-unavailable]")
        );
    }
    // Login by e-mail finds the one user, whatever the case.
    assert_eq!(app.store.list_users().await.unwrap().len(), 2);
    let (user, _) = app
        .store
        .user_for_login("CASEY@example.COM")
        .await
        .unwrap()
        .expect("found by e-mail");
    assert_eq!(user.username.as_deref(), Some("Casey"));
}
