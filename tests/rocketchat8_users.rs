//! Sessions and users exactly as Rocket.Chat 8 answers them (docs/compatibility.md, sections
//! 4.1 to 4.3 and 6), through the router, on SQLite and on Postgres. Each test names the
//! Rocket.Chat file its rule comes from.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestApp, TestDb};
use importops::config::Settings;
use serde_json::{Value, json};

on_both_backends!(
    logout_by_get_revokes_like_post,
    resume_login_answers_like_a_password_login,
    resume_login_refuses_unknown_and_expired_tokens,
    usernames_are_found_ignoring_case,
    deactivation_removes_tokens_and_refuses_the_right_password,
    me_is_get_user_info,
    users_create_checks_in_rocketchats_order,
    users_create_reads_its_body_as_rest_typings_does,
    users_create_answers_the_stored_user,
    giving_admin_needs_assign_admin_role,
    users_delete_answers_deleted_rooms,
    routes_without_a_query_schema_ignore_parameters,
    body_errors_are_invalid_params,
    form_bodies_are_read_like_json,
);

async fn app(db: &TestDb) -> TestApp {
    TestApp::with_settings(db, Settings::default().without_rate_limit()).await
}

async fn login(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let answer = app.post("/api/v1/login", None, &body).await;
    (answer.status, answer.json())
}

/// `apps/meteor/server/api/ApiClass.ts` (`_initAuth`) registers `logout` for GET and POST.
async fn logout_by_get_revokes_like_post(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let other = app.another_token(&admin).await;
    let answer = app.get("/api/v1/logout", Some(&admin)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::OK,
            r#"{"status":"success","data":{"message":"You've been logged out!"},"success":true}"#
        )
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&admin)).await.status,
        StatusCode::UNAUTHORIZED,
        "the GET revoked the token"
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&other)).await.status,
        StatusCode::OK,
        "the user's other token still works"
    );
}

/// Meteor's resume login handler (accounts-base), called by `ApiClass.ts`'s `login` route:
/// `{resume}` logs in with the token itself and answers it back.
async fn resume_login_answers_like_a_password_login(db: TestDb) {
    let app = app(&db).await;
    let id = app.user_with_password("jane", &["user"], "pw").await;
    let (status, first) = login(&app, json!({"user": "jane", "password": "pw"})).await;
    assert_eq!(status, StatusCode::OK);
    let token = first["data"]["authToken"].as_str().unwrap().to_owned();
    let (status, resumed) = login(&app, json!({"resume": token})).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["status"], "success");
    assert_eq!(resumed["success"], true);
    assert_eq!(resumed["data"]["userId"], id.as_str());
    assert_eq!(resumed["data"]["authToken"], token.as_str());
    assert_eq!(resumed["data"]["me"], first["data"]["me"]);
    assert_eq!(
        app.store.list_sessions(&id).await.unwrap().len(),
        1,
        "a resume issues no new token"
    );
}

async fn resume_login_refuses_unknown_and_expired_tokens(db: TestDb) {
    let app = TestApp::with_settings(
        &db,
        Settings {
            login_expiration_days: 1,
            ..Settings::default().without_rate_limit()
        },
    )
    .await;
    let (status, body) = login(&app, json!({"resume": "no-such-token"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"success": false, "error": 403, "status": "error",
                "message": "You've been logged out by the server. Please log in again."})
        )
    );
    // A token issued two days ago, past the one-day expiry.
    let user = app.user("old", &["user"]).await;
    let raw = "an-old-token-of-the-old-user-123456789";
    app.store
        .insert_session(&importops::store::NewSession {
            user_id: user.user_id.clone(),
            hashed_token: importops::domain::secrets::hash_token(raw),
            kind: importops::domain::auth::TokenKind::Login,
            name: None,
            issued_at_ms: importops::domain::time::now_ms() - 2 * 86_400_000,
            expires_at_ms: None,
        })
        .await
        .unwrap();
    let (status, body) = login(&app, json!({"resume": raw})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "Your session has expired. Please log in again."
    );
    let (status, body) = login(&app, json!({"resume": 5})).await;
    assert_eq!(
        (status, body["errorType"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid-params"))
    );
}

/// Meteor's `_findUserByQuery` falls back to a case-insensitive username;
/// `getUserFromParams.ts` uses `findOneByUsernameIgnoringCase`; `checkUsernameAvailability.ts`
/// refuses a name taken in another case.
async fn usernames_are_found_ignoring_case(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    app.user_with_password("Jane.Doe", &["user"], "pw").await;
    let (status, _) = login(&app, json!({"user": "jane.doe", "password": "pw"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = login(&app, json!({"username": "JANE.DOE", "password": "pw"})).await;
    assert_eq!(status, StatusCode::OK);
    let taken = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"email": "j2@example.com", "name": "J", "password": "p", "username": "jane.DOE"}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "jane.DOE is already in use :( [error-field-unavailable]",
                "errorType": "error-field-unavailable",
                "details": {"method": "insertOrUpdateUser", "field": "jane.DOE"}})
        )
    );
    let deleted = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"username": "JANE.doe"}),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(
        app.store
            .user_by_username("Jane.Doe")
            .await
            .unwrap()
            .is_none()
    );
}

/// `setUserActiveStatus.ts` calls `unsetLoginTokens` on deactivation; Rocket.Chat's
/// `validateLoginAttempt` (`apps/meteor/app/authentication/server/startup/index.js`) refuses
/// a deactivated user whose credentials are right with `error-user-is-not-activated`, which
/// `ApiClass.ts`'s login answers in its 401.
async fn deactivation_removes_tokens_and_refuses_the_right_password(db: TestDb) {
    let app = app(&db).await;
    let id = app.user_with_password("jane", &["user"], "pw").await;
    let (_, first) = login(&app, json!({"user": "jane", "password": "pw"})).await;
    let token = first["data"]["authToken"].as_str().unwrap().to_owned();
    assert!(app.store.set_user_active("jane", false).await.unwrap());
    assert!(app.store.list_sessions(&id).await.unwrap().is_empty());
    let answer = app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "jane", "password": "pw"}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            r#"{"success":false,"error":"error-user-is-not-activated","status":"error","details":{"function":"Accounts.validateLoginAttempt"},"message":"User is not activated"}"#
        )
    );
    // A wrong password tells nothing about the account.
    let (status, body) = login(&app, json!({"user": "jane", "password": "nope"})).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("Unauthorized"))
    );
    assert!(app.store.set_user_active("jane", true).await.unwrap());
    let (status, _) = login(&app, json!({"resume": token})).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "reactivation revives no token"
    );
    let (status, _) = login(&app, json!({"user": "jane", "password": "pw"})).await;
    assert_eq!(status, StatusCode::OK);
}

/// `apps/meteor/server/api/lib/getUserInfo.ts`, checked against core-typings' `IMeApiUser`.
async fn me_is_get_user_info(db: TestDb) {
    let app = TestApp::with_settings(
        &db,
        Settings {
            site_url: Some("https://chat.example.org/".into()),
            ..Settings::default().without_rate_limit()
        },
    )
    .await;
    let admin = app.admin().await;
    let me = app.get("/api/v1/me", Some(&admin)).await.json();
    assert_eq!(me["success"], true);
    assert_eq!(me["_id"], admin.user_id.as_str());
    assert_eq!(me["username"], "admin");
    assert_eq!(me["avatarUrl"], "https://chat.example.org/avatar/admin");
    assert_eq!(me["isOAuthUser"], false);
    assert_eq!(me["services"], json!({"password": {"exists": false}}));
    assert_eq!(me["settings"]["profile"], json!({}));
    assert_eq!(me["settings"]["calendar"], json!({}));
    assert_eq!(me["settings"]["preferences"]["sendOnEnter"], "normal");
    assert_eq!(
        me["settings"]["preferences"]["sidebarSectionsOrder"][0],
        "Incoming_Calls"
    );
    assert!(me["_updatedAt"].as_str().unwrap().ends_with('Z'));
    assert!(me.get("name").is_none(), "absent, never null: {me}");
    assert!(me.get("email").is_none(), "no verified address");
    assert!(
        me.as_object().unwrap().values().all(|v| !v.is_null()),
        "{me}"
    );
    // Login's `data.me` is the same object; the avatar follows the Host without a setting.
    app.user_with_password("jane", &["user"], "pw").await;
    let plain = TestApp::with_settings(&db, Settings::default().without_rate_limit()).await;
    let request = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .header("host", "imports.example:3000")
        .body(Body::from(r#"{"user":"jane","password":"pw"}"#))
        .unwrap();
    let answer = plain.request(request).await.json();
    let data_me = &answer["data"]["me"];
    assert_eq!(
        data_me["avatarUrl"],
        "http://imports.example:3000/avatar/jane"
    );
    assert_eq!(data_me["services"], json!({"password": {"exists": true}}));
    assert_eq!(data_me["emails"][0]["address"], "jane@example.com");
}

/// `users.create` in `apps/meteor/app/api/server/v1/users.ts` has no `permissionsRequired`;
/// `apps/meteor/app/lib/server/functions/saveUser/validateUserData.ts` and
/// `checkUsernameAvailability.ts` check, in this order.
async fn users_create_checks_in_rocketchats_order(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let viewer = app.user("viewer", &["user"]).await;
    let create = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let answer = app.post("/api/v1/users.create", Some(&admin), &body).await;
            (answer.status, answer.json())
        }
    };
    let full = |extra: Value| {
        let mut body =
            json!({"email": "n@example.com", "name": "N", "password": "p", "username": "newbie"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let refused = app
        .post("/api/v1/users.create", Some(&viewer), &full(json!({})))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json()["error"],
        "Adding user is not allowed [error-action-not-allowed]"
    );
    let cases: Vec<(Value, &str, Value)> = vec![
        (
            json!({"roles": ["no-such-role"]}),
            "The field Roles consist invalid role id [error-action-not-allowed]",
            json!({"method": "insertOrUpdateUser", "action": "Assign_role"}),
        ),
        (
            json!({"name": "  "}),
            "The field Name is required [error-the-field-is-required]",
            json!({"method": "insertOrUpdateUser", "field": "Name"}),
        ),
        (
            json!({"username": ""}),
            "The field Username is required [error-the-field-is-required]",
            json!({"method": "insertOrUpdateUser", "field": "Username"}),
        ),
        (
            json!({"username": "<b>x"}),
            "&lt;b&gt;x is not a valid username [error-input-is-not-a-valid-field]",
            json!({"method": "insertOrUpdateUser", "input": "<b>x", "field": "Username"}),
        ),
        (
            json!({"password": ""}),
            "The field Password is required [error-the-field-is-required]",
            json!({"method": "insertOrUpdateUser", "field": "Password"}),
        ),
        (
            json!({"username": "Here"}),
            "Here is blocked and can't be used! [error-blocked-username]",
            json!({"method": "checkUsernameAvailability", "field": "Here"}),
        ),
        (
            json!({"username": "administrator"}),
            "administrator is blocked and can't be used! [error-blocked-username]",
            json!({"method": "checkUsernameAvailability", "field": "administrator"}),
        ),
        (
            json!({"email": "MAILER@example.com", "username": "fresh"}),
            "MAILER@example.com is already in use :( [error-field-unavailable]",
            json!({"method": "insertOrUpdateUser", "field": "MAILER@example.com"}),
        ),
    ];
    // Holds `mailer@example.com`.
    app.user_with_password("mailer", &["user"], "pw").await;
    for (extra, error, details) in cases {
        let (status, body) = create(full(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(body["error"], error, "{extra}");
        assert_eq!(body["details"], details, "{extra}");
        assert_eq!(
            body["errorType"].as_str(),
            error.rsplit('[').next().map(|t| t.trim_end_matches(']')),
            "{extra}"
        );
    }
    let (status, body) = create(full(json!({"email": "not-an-address"}))).await;
    assert_eq!(
        (status, body["errorType"].clone()),
        (StatusCode::BAD_REQUEST, json!("error-invalid-email"))
    );
    // A setting adds blocked names, in any case.
    let strict = TestApp::with_settings(
        &db,
        Settings {
            blocked_usernames: vec!["root".into()],
            ..Settings::default().without_rate_limit()
        },
    )
    .await;
    let answer = strict
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &full(json!({"username": "ROOT"})),
        )
        .await;
    assert_eq!(answer.json()["errorType"], "error-blocked-username");
    assert_eq!(
        app.store.list_users().await.unwrap().len(),
        3,
        "nothing created"
    );
}

/// rest-typings' `UserCreateParamsPOST`: `additionalProperties: false`, four required
/// properties, ajv's `coerceTypes`; `ApiClass.ts` throws a failed `validateParams` as a Meteor
/// error `invalid-params`.
async fn users_create_reads_its_body_as_rest_typings_does(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let post = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            app.post("/api/v1/users.create", Some(&admin), &body)
                .await
                .body
        }
    };
    let error = |message: &str| {
        format!(
            r#"{{"success":false,"error":"{message} [invalid-params]","errorType":"invalid-params"}}"#
        )
    };
    assert_eq!(
        post(json!({"email": "a@example.com", "name": "A", "password": "p"})).await,
        error("must have required property 'username'")
    );
    assert_eq!(
        post(json!({"email": "a@example.com", "name": "A", "password": "p", "username": "a", "nick": "x"})).await,
        error("must NOT have additional properties")
    );
    assert_eq!(
        post(json!({"email": "a@example.com", "name": "A", "password": "p", "username": "a", "roles": "user"})).await,
        error("must be array")
    );
    assert_eq!(
        post(json!({"email": "a@example.com", "name": "A", "password": "p", "username": "a", "active": "maybe"})).await,
        error("must be boolean")
    );
    assert_eq!(
        post(json!({"email": ["a@example.com"], "name": "A", "password": "p", "username": "a"}))
            .await,
        error("must be string")
    );
    // Coerced: "false" is false, a number becomes its text; every listed property is accepted.
    let answer = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"email": "c@example.com", "name": 42, "password": "p", "username": "coerced",
                "active": "false", "verified": true, "joinDefaultChannels": true,
                "requirePasswordChange": false, "sendWelcomeEmail": false, "bio": null,
                "nickname": "c", "statusText": "hi", "customFields": {}, "setRandomPassword": false}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let user = &answer.json()["user"];
    assert_eq!(user["name"], "42");
    assert_eq!(user["active"], false);
    assert_eq!(
        user["emails"],
        json!([{"address": "c@example.com", "verified": true}])
    );
}

/// `users.create` answers `Users.findOneById(userId)`: core-typings' `IUser` (`createdAt`,
/// `type`, `_updatedAt`), without its services.
async fn users_create_answers_the_stored_user(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let answer = app
        .post(
            "/api/v1/users.create",
            Some(&admin),
            &json!({"email": "bob@example.com", "name": "Bob", "password": "pw", "username": "bob"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    let user = &body["user"];
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "_id",
            "createdAt",
            "username",
            "emails",
            "active",
            "name",
            "roles",
            "type",
            "status",
            "settings",
            "_updatedAt"
        ]
    );
    assert_eq!(user["type"], "user");
    assert_eq!(user["status"], "offline");
    assert_eq!(user["roles"], json!(["user"]));
    assert_eq!(user["createdAt"], user["_updatedAt"]);
    assert!(user.get("services").is_none());
    assert_eq!(body["success"], true);
}

/// `validateUserData.ts`: a caller may give the `admin` role only with `assign-admin-role`
/// (`admin` holds it in Rocket.Chat's default table).
async fn giving_admin_needs_assign_admin_role(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let manager = app.user("manager", &["user-manager"]).await;
    let grant = app
        .post(
            "/api/v1/permissions.update",
            Some(&admin),
            &json!({"permissions": [{"_id": "create-user", "roles": ["admin", "user-manager"]}]}),
        )
        .await;
    assert_eq!(grant.status, StatusCode::OK, "{}", grant.body);
    let body = |name: &str| {
        json!({"email": format!("{name}@example.com"), "name": name, "password": "p",
            "username": name, "roles": ["admin"]})
    };
    let refused = app
        .post("/api/v1/users.create", Some(&manager), &body("boss"))
        .await;
    assert_eq!(
        (refused.status, refused.json()),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "Assigning admin is not allowed [error-action-not-allowed]",
                "errorType": "error-action-not-allowed",
                "details": {"method": "insertOrUpdateUser", "action": "Assign_admin"}})
        )
    );
    let plain = app
        .post(
            "/api/v1/users.create",
            Some(&manager),
            &json!({"email": "p@example.com", "name": "P", "password": "p", "username": "plain"}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    let made = app
        .post("/api/v1/users.create", Some(&admin), &body("boss"))
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.json()["user"]["roles"], json!(["admin"]));
}

/// `users.delete` in `apps/meteor/app/api/server/v1/users.ts` with `getUserFromParams.ts`.
async fn users_delete_answers_deleted_rooms(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    app.user("carol", &["user"]).await;
    app.user("dave", &["user"]).await;
    let answer = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"username": "carol", "confirmRelinquish": true}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, r#"{"deletedRooms":[],"success":true}"#)
    );
    // `user` names a user too.
    let answer = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"user": "DAVE"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let answer = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"userId": "nobody"}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"success":false,"error":"The required \"userId\" or \"username\" param provided does not match any users [error-invalid-user]","errorType":"error-invalid-user"}"#
        )
    );
    let answer = app
        .post(
            "/api/v1/users.delete",
            Some(&admin),
            &json!({"username": "  "}),
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"success":false,"error":"The required \"userId\" or \"username\" param was not provided [error-user-param-not-provided]","errorType":"error-user-param-not-provided"}"#
        )
    );
}

/// `packages/http-router/src/Router.ts` validates the query only when the route declares
/// `query`: `me` (`apps/meteor/app/api/server/v1/misc.ts`) and `import.status`, `import.new`,
/// `import.clear` (`apps/meteor/server/api/v1/import.ts`) declare none.
async fn routes_without_a_query_schema_ignore_parameters(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    for path in ["/api/v1/me?fields=%7B%7D", "/api/v1/import.status?x=1&y=2"] {
        let answer = app.get(path, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    for path in ["/api/v1/import.new?x=1", "/api/v1/import.clear?x=1"] {
        let answer = app.post(path, Some(&admin), &json!({})).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    // A route with a query schema still refuses them.
    let answer = app
        .get("/api/v1/getLatestImportOperations?x=1", Some(&admin))
        .await;
    assert_eq!(answer.json()["errorType"], "error-invalid-params");
}

/// `Router.ts` answers a body that fails the route's schema with `errorType:
/// "invalid-params"` (the query's is `error-invalid-params`).
async fn body_errors_are_invalid_params(db: TestDb) {
    let app = app(&db).await;
    let admin = app.admin().await;
    let answer = app
        .post(
            "/api/v1/import.operations.upsert",
            Some(&admin),
            &json!({"type": "P", "importerKey": "etl", "status": "nope"}),
        )
        .await;
    let body = answer.json();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "invalid-params");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["success", "errorType", "error"], "Router.ts's order");
    let answer = app
        .post(
            "/api/v1/permissions.update",
            Some(&admin),
            &json!({"permissions": 3}),
        )
        .await;
    assert_eq!(answer.json()["errorType"], "invalid-params");
}

/// `Router.ts`'s `parseBodyParams` reads `application/x-www-form-urlencoded` bodies, as
/// `rocket-python` sends its login.
async fn form_bodies_are_read_like_json(db: TestDb) {
    let app = app(&db).await;
    app.user_with_password("jane", &["user"], "p&w=d").await;
    let request = Request::post("/api/v1/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("user=jane&password=p%26w%3Dd"))
        .unwrap();
    let answer = app.request(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let request = Request::post("/api/v1/login")
        .header("content-type", "text/plain")
        .body(Body::from("user=jane&password=p%26w%3Dd"))
        .unwrap();
    assert_eq!(app.request(request).await.status, StatusCode::BAD_REQUEST);
}
