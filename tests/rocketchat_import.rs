//! `import-rocketchat`: a Rocket.Chat export made with mongoexport (docs/compatibility.md, section 7), read,
//! written and then served, on SQLite and on Postgres; the command line and the 100 000
//! operation load on SQLite.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use common::{Login, TestApp, TestDb, meteor_id};
use importops::Store;
use importops::accounts::{TokenLifetime, issue_token};
use importops::config::Settings;
use importops::domain::auth::TokenKind;
use importops::domain::operation::STATUSES;
use importops::domain::secrets::{hash_token, verify_password};
use importops::domain::time::{format_iso_ms, now_ms};
use importops::rocketchat::{self, Export, ExportError, ImportError, Place};
use importops::store::{ImportReport, LoadReport, StoreError};
use serde_json::{Value, json};
use sqlx::Connection;

const ENDPOINT: &str = "/api/v1/getLatestImportOperations";
const FORBIDDEN: &str = r#"{"success":false,"error":"User does not have the permissions required for this action [error-unauthorized]"}"#;
const ADMIN_ID: &str = "d26x6zSkaPSe5gCyy";
const VIEWER_ID: &str = "Xy4kzjW9n2TQmP8rL";
const FILES: [&str; 3] = [
    "users.json",
    "rocketchat_permissions.json",
    "rocketchat_import.json",
];

/// What Rocket.Chat answers for the sample export: newest `_updatedAt` first, every field,
/// known fields in Rocket.Chat's order and the others as stored; `ts` a date or a number as
/// written.
const EXPECTED: &str = concat!(
    r#"[{"_id":"64d69545ee8ae821983005f5","type":"CSV","importerKey":"csv","#,
    r#""ts":"2023-08-11T20:08:37.655Z","status":"importer_done","valid":true,"#,
    r#""user":"d26x6zSkaPSe5gCyy","_updatedAt":"2023-08-11T20:09:02.118Z","#,
    r#""contentType":"application/zip","file":"1691784517655_d26x6zSkaPSe5gCyy_export.zip","#,
    r#""count":{"total":1520,"completed":1520,"error":0,"users":20,"channels":12,"messages":1488}},"#,
    r#"{"_id":"MJxTRZsYdho8Ww2qq","type":"Pending Avatars","importerKey":"pending-avatars","#,
    r#""ts":1635280600083,"status":"importer_user_selection","valid":false,"#,
    r#""user":"d26x6zSkaPSe5gCyy","_updatedAt":"2021-10-27T11:26:24.430Z"},"#,
    r#"{"_id":"NRqiLZ4bADfGwMRMz","type":"CSV","importerKey":"csv","ts":1635247067385,"#,
    r#""status":"importer_file_loaded","valid":false,"user":"d26x6zSkaPSe5gCyy","#,
    r#""_updatedAt":"2021-10-27T08:32:42.609Z","contentType":"image/svg+xml","#,
    r#""file":"2021926111747_d26x6zSkaPSe5gCyy_pp.svg"}]"#
);

on_both_backends!(
    the_sample_export_answers_as_rocketchat,
    imported_login_tokens_follow_the_configured_expiration,
    importing_again_changes_nothing,
    a_newer_export_updates_and_replaces_sessions,
    the_canonical_export_gives_identical_results,
    a_bad_line_anywhere_writes_nothing,
    a_bad_operation_late_in_a_large_export_writes_nothing,
    a_byte_order_mark_is_skipped_in_every_file,
    a_username_taken_by_a_local_user_writes_nothing,
    usernames_may_move_between_imported_users,
    a_larger_and_stranger_export_works,
    any_one_file_is_enough,
);

// ---------------------------------------------------------------------------------------------
// Helpers

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn admin() -> Login {
    Login {
        user_id: ADMIN_ID.into(),
        token: format!("fixture-admin-token-{}", "a".repeat(29)),
    }
}

fn viewer() -> Login {
    Login {
        user_id: VIEWER_ID.into(),
        token: format!("fixture-viewer-token-{}", "b".repeat(29)),
    }
}

/// Login tokens of the fixture are dated 2026-11-20: a long expiration keeps them valid.
fn long_logins() -> Settings {
    Settings {
        login_expiration_days: 36_500,
        ..Settings::default()
    }
}

async fn app(db: &TestDb) -> TestApp {
    TestApp::with_settings(db, long_logins()).await
}

fn read(dir: &Path) -> Result<Export, ExportError> {
    rocketchat::read_export(dir, now_ms(), &())
}

async fn try_import(store: &Store, dir: &Path) -> Result<ImportReport, ImportError> {
    rocketchat::write(store, read(dir)?, Arc::new(())).await
}

async fn import(store: &Store, dir: &Path) -> ImportReport {
    try_import(store, dir).await.expect("the import")
}

/// The fault that made an import of `dir` write nothing.
async fn import_fault(store: &Store, dir: &Path) -> ExportError {
    match try_import(store, dir).await {
        Err(ImportError::Export(e)) => e,
        other => panic!("not a fault of the export: {other:?}"),
    }
}

fn load(inserted: u64, updated: u64) -> LoadReport {
    LoadReport { inserted, updated }
}

/// A copy of the sample export in a temporary directory, each file passed through `edit`
/// (file name, lines) first.
fn edited_fixture(edit: impl Fn(&str, &mut Vec<Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in FILES {
        let text = std::fs::read_to_string(fixture("mongoexport").join(file)).unwrap();
        let mut docs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        edit(file, &mut docs);
        let lines: Vec<String> = docs.iter().map(Value::to_string).collect();
        std::fs::write(dir.path().join(file), lines.join("\n") + "\n").unwrap();
    }
    dir
}

/// The stored password hash of a user, read with SQL.
async fn stored_bcrypt(db: &TestDb, user_id: &str) -> Option<String> {
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT password_bcrypt FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT password_bcrypt FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

/// Everything an import writes, in a comparable form (session row ids aside).
async fn snapshot(store: &Store) -> Value {
    let users = store.list_users().await.unwrap();
    let mut sessions = Vec::new();
    for user in &users {
        for s in store.list_sessions(&user.id).await.unwrap() {
            sessions.push(json!([
                user.id,
                s.kind.as_str(),
                s.name,
                s.issued_at_ms,
                s.expires_at_ms
            ]));
        }
    }
    let permissions: Vec<Value> = store
        .list_permissions()
        .await
        .unwrap()
        .into_iter()
        .map(|p| json!([p.id, p.roles, p.updated_at_ms]))
        .collect();
    let count = store.count_operations().await.unwrap();
    json!({
        "users": users,
        "sessions": sessions,
        "permissions": permissions,
        "roles": store.list_roles().await.unwrap(),
        "operations": store.latest_operations(count.max(1)).await.unwrap(),
    })
}

// ---------------------------------------------------------------------------------------------
// The sample export

async fn the_sample_export_answers_as_rocketchat(db: TestDb) {
    let app = app(&db).await;
    let report = import(&app.store, &fixture("mongoexport")).await;
    assert_eq!(
        report,
        ImportReport {
            users: load(2, 0),
            tokens: 2,
            // Rocket.Chat's defaults are there from the start: the export replaces them.
            permissions: load(0, 5),
            operations: load(3, 0),
        }
    );

    let answer = app.get(ENDPOINT, Some(&admin())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, EXPECTED);

    let answer = app.get(ENDPOINT, Some(&viewer())).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, FORBIDDEN);
    let wrong = Login {
        token: format!("fixture-admin-token-{}", "b".repeat(29)),
        ..admin()
    };
    assert_eq!(
        app.get(ENDPOINT, Some(&wrong)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Passwords keep working: Rocket.Chat's bcrypt of the sha256 hex, stored as it was.
    let hash = stored_bcrypt(&db, ADMIN_ID).await.expect("a password");
    assert!(verify_password("fixture-admin-password", &hash));
    assert!(!verify_password("fixture-viewer-password", &hash));
    let hash = stored_bcrypt(&db, VIEWER_ID).await.expect("a password");
    assert!(verify_password("fixture-viewer-password", &hash));

    let user = app.store.user_by_id(ADMIN_ID).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&user).unwrap(),
        json!({"_id": ADMIN_ID, "username": "admin", "name": "Admin", "active": true,
            "roles": ["admin", "user"],
            "emails": [{"address": "admin@example.com", "verified": true}]})
    );
    let sessions = app.store.list_sessions(ADMIN_ID).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].kind, TokenKind::Login);
    assert_eq!(
        sessions[0].issued_at_ms, 1_795_168_800_000,
        "2026-11-20T10:00Z"
    );
    assert_eq!(
        sessions[0].expires_at_ms, None,
        "the configured expiration applies"
    );
    assert_eq!(
        app.store
            .permission_roles("api-bypass-rate-limit")
            .await
            .unwrap(),
        Some(vec!["admin".into(), "bot".into(), "app".into()])
    );
}

async fn imported_login_tokens_follow_the_configured_expiration(db: TestDb) {
    // The admin's login token issued in 2000, and a personal access token with no date.
    let dir = edited_fixture(|file, docs| {
        if file == "users.json" {
            docs[0]["services"]["resume"]["loginTokens"] = json!([
                {"when": {"$date": "2000-01-01T00:00:00.000Z"},
                 "hashedToken": hash_token("old-login-token")},
                {"type": "personalAccessToken", "name": "ci", "hashedToken": hash_token("pat"),
                 "lastTokenPart": "pat", "bypassTwoFactor": false},
            ]);
        }
    });
    let login = |token: &str| Login {
        user_id: ADMIN_ID.into(),
        token: token.into(),
    };
    let ninety_days = TestApp::new(&db).await;
    import(&ninety_days.store, dir.path()).await;
    let answer = ninety_days
        .get(ENDPOINT, Some(&login("old-login-token")))
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = ninety_days.get(ENDPOINT, Some(&login("pat"))).await;
    assert_eq!(answer.status, StatusCode::OK);

    // A century of validity from 2000.
    let century = TestApp::with_settings(&db, long_logins()).await;
    let answer = century.get(ENDPOINT, Some(&login("old-login-token"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    let sessions = century.store.list_sessions(ADMIN_ID).await.unwrap();
    let personal: Vec<_> = sessions
        .iter()
        .filter(|s| s.kind == TokenKind::Personal)
        .collect();
    assert_eq!(personal.len(), 1);
    assert_eq!(personal[0].name.as_deref(), Some("ci"));
}

async fn importing_again_changes_nothing(db: TestDb) {
    let app = app(&db).await;
    import(&app.store, &fixture("mongoexport")).await;
    let first = snapshot(&app.store).await;
    let report = import(&app.store, &fixture("mongoexport")).await;
    assert_eq!(
        report,
        ImportReport {
            users: load(0, 2),
            tokens: 2,
            permissions: load(0, 5),
            operations: load(0, 3),
        }
    );
    assert_eq!(snapshot(&app.store).await, first);
    let answer = app.get(ENDPOINT, Some(&admin())).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, EXPECTED)
    );
}

async fn a_newer_export_updates_and_replaces_sessions(db: TestDb) {
    let app = app(&db).await;
    import(&app.store, &fixture("mongoexport")).await;
    // A token issued here since the first import: the export's tokens replace it.
    let local = issue_token(&app.store, ADMIN_ID, TokenLifetime::Default)
        .await
        .unwrap();
    let local = Login {
        user_id: ADMIN_ID.into(),
        token: local,
    };
    assert_eq!(app.get(ENDPOINT, Some(&local)).await.status, StatusCode::OK);
    let before = app.store.list_permissions().await.unwrap();

    let dir = edited_fixture(|file, docs| match file {
        "users.json" => {
            docs[0]["name"] = json!("Administrator");
            // The old token was revoked in Rocket.Chat, a new one issued.
            docs[0]["services"]["resume"]["loginTokens"] = json!([
                {"when": {"$date": "2026-11-25T10:00:00.000Z"},
                 "hashedToken": hash_token("new-admin-token")}]);
            docs[1]["roles"] = json!(["user", "auditor"]);
        }
        "rocketchat_permissions.json" => {
            docs[0]["roles"] = json!(["admin", "auditor"]);
        }
        "rocketchat_import.json" => {
            docs[1]["status"] = json!("importer_done");
            docs[1]["_updatedAt"] = json!({"$date": "2024-01-01T00:00:00.000Z"});
            let mut added = docs[2].clone();
            added["_id"] = json!({"$oid": "65a1b2c3d4e5f60718293a4b"});
            added["_updatedAt"] = json!({"$date": "2022-06-01T00:00:00.000Z"});
            docs.push(added);
        }
        _ => {}
    });
    let report = import(&app.store, dir.path()).await;
    assert_eq!(report.users, load(0, 2));
    assert_eq!(report.operations, load(1, 3));

    assert_eq!(
        app.get(ENDPOINT, Some(&admin())).await.status,
        StatusCode::UNAUTHORIZED,
        "revoked in the export"
    );
    assert_eq!(
        app.get(ENDPOINT, Some(&local)).await.status,
        StatusCode::UNAUTHORIZED,
        "sessions are replaced by the export's tokens"
    );
    let new_admin = Login {
        user_id: ADMIN_ID.into(),
        token: "new-admin-token".into(),
    };
    let answer = app.get(ENDPOINT, Some(&new_admin)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let ids: Vec<String> = answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [
            "MJxTRZsYdho8Ww2qq",
            "64d69545ee8ae821983005f5",
            "65a1b2c3d4e5f60718293a4b",
            "NRqiLZ4bADfGwMRMz"
        ]
    );
    assert_eq!(answer.json()[0]["status"], "importer_done");
    // The viewer's new role now holds the permission.
    assert_eq!(
        app.get(ENDPOINT, Some(&viewer())).await.status,
        StatusCode::OK
    );
    assert!(
        app.store
            .list_roles()
            .await
            .unwrap()
            .contains(&"auditor".to_owned())
    );
    let user = app.store.user_by_id(ADMIN_ID).await.unwrap().unwrap();
    assert_eq!(user.name.as_deref(), Some("Administrator"));
    // Only the permission whose roles changed has a new _updatedAt.
    let after = app.store.list_permissions().await.unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.id, b.id);
        assert_eq!(
            a.updated_at_ms != b.updated_at_ms,
            a.id == "view-import-operations",
            "{}",
            a.id
        );
    }
}

async fn the_canonical_export_gives_identical_results(db: TestDb) {
    let app = app(&db).await;
    let canonical = read(&fixture("mongoexport-canonical")).unwrap();
    let relaxed = read(&fixture("mongoexport")).unwrap();
    assert_eq!(canonical.data, relaxed.data);

    import(&app.store, &fixture("mongoexport-canonical")).await;
    let answer = app.get(ENDPOINT, Some(&admin())).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, EXPECTED)
    );
    assert_eq!(
        app.get(ENDPOINT, Some(&viewer())).await.status,
        StatusCode::FORBIDDEN
    );
    let hash = stored_bcrypt(&db, ADMIN_ID).await.unwrap();
    assert!(verify_password("fixture-admin-password", &hash));
    // The relaxed export over the canonical one finds nothing to change.
    let first = snapshot(&app.store).await;
    let report = import(&app.store, &fixture("mongoexport")).await;
    assert_eq!(report.users, load(0, 2));
    assert_eq!(report.operations, load(0, 3));
    assert_eq!(snapshot(&app.store).await, first);
}

async fn a_bad_line_anywhere_writes_nothing(db: TestDb) {
    let store = db.open().await;
    let empty = snapshot(&store).await;
    let cases: [(&str, usize, &str, &str); 6] = [
        ("users.json", 2, "{\"_id\":", "not a valid JSON document"),
        (
            "users.json",
            1,
            r#"{"_id":"d26x6zSkaPSe5gCyy","roles":"admin"}"#,
            "roles is not a list",
        ),
        (
            "rocketchat_permissions.json",
            5,
            r#"{"_id":"create-personal-access-tokens"}"#,
            "roles is missing",
        ),
        (
            "rocketchat_import.json",
            3,
            r#"{"_id":"NRqiLZ4bADfGwMRMz","type":"CSV","importerKey":"csv","status":"importer_sleeping","valid":false,"user":"u"}"#,
            "status \"importer_sleeping\" is not one of",
        ),
        (
            "rocketchat_import.json",
            2,
            r#"{"_id":"MJxTRZsYdho8Ww2qq","type":"CSV","importerKey":"csv","status":"importer_new","valid":true,"user":"u","_updatedAt":{"$date":{"$numberLong":"x"}}}"#,
            "$date",
        ),
        (
            "rocketchat_import.json",
            3,
            r#"{"_id":"64d69545ee8ae821983005f5","type":"CSV","importerKey":"csv","status":"importer_new","valid":true,"user":"u"}"#,
            "_id 64d69545ee8ae821983005f5 was already used by line 1",
        ),
    ];
    for (file, line, replacement, reason) in cases {
        let dir = edited_fixture(|_, _| {});
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[line - 1] = replacement;
        std::fs::write(&path, lines.join("\n")).unwrap();

        let err = import_fault(&store, dir.path()).await;
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{file} line {line}: ")) && message.contains(reason),
            "{message}"
        );
        assert!(
            matches!(err, ExportError::Invalid { file: f, place: Some(Place::Line(l)), .. }
                if f == file && l == line)
        );
    }
    // Nothing was written: the faults in users and permissions were found before the
    // database was asked, those in operations rolled the transaction back.
    assert_eq!(snapshot(&store).await, empty);
}

async fn a_bad_operation_late_in_a_large_export_writes_nothing(db: TestDb) {
    let store = db.open().await;
    let empty = snapshot(&store).await;
    let dir = edited_fixture(|_, _| {});
    const N: usize = 20_000;
    many_operations(dir.path(), N);
    let path = dir.path().join("rocketchat_import.json");
    let mut text = std::fs::read_to_string(&path).unwrap();
    // Two records before the end: the same _id as the first one.
    let mut lines: Vec<&str> = text.lines().collect();
    let first = lines[0].to_owned();
    lines[N - 2] = &first;
    text = lines.join("\n");
    std::fs::write(&path, text).unwrap();

    let err = import_fault(&store, dir.path()).await.to_string();
    assert_eq!(
        err,
        format!(
            "rocketchat_import.json line {}: _id {:024x} was already used by line 1",
            N - 1,
            0x6000_0000_u64
        )
    );
    // Users, permissions and 19 998 operations were written, then rolled back.
    assert_eq!(snapshot(&store).await, empty);
}

async fn a_byte_order_mark_is_skipped_in_every_file(db: TestDb) {
    let store = db.open().await;
    let dir = edited_fixture(|_, _| {});
    for file in FILES {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    }
    let report = import(&store, dir.path()).await;
    assert_eq!(report.users, load(2, 0));
    assert_eq!(report.operations, load(3, 0));
    assert_eq!(report.permissions.inserted + report.permissions.updated, 5);
    let docs = store.latest_operations(10).await.unwrap();
    assert_eq!(format!("[{}]", docs.join(",")), EXPECTED);
}

async fn a_username_taken_by_a_local_user_writes_nothing(db: TestDb) {
    let app = app(&db).await;
    // A local "viewer" that is not the exported one.
    let local = app.user("viewer", &["user"]).await;
    let before = snapshot(&app.store).await;
    let dir = edited_fixture(|file, docs| {
        if file == "users.json" {
            docs[0]["roles"] = json!(["admin", "brand-new-role"]);
        }
    });
    let err = try_import(&app.store, dir.path()).await.unwrap_err();
    let ImportError::Store(StoreError::Conflict(message)) = err else {
        panic!("not a conflict: {err:?}");
    };
    assert!(
        message.contains("\"viewer\"")
            && message.contains(VIEWER_ID)
            && message.contains(&local.user_id),
        "{message}"
    );
    // Nothing at all: no user, no role, no permission change, no operation.
    assert_eq!(snapshot(&app.store).await, before);
    assert_eq!(
        app.get(ENDPOINT, Some(&local)).await.status,
        StatusCode::FORBIDDEN,
        "the local user is untouched"
    );
}

async fn usernames_may_move_between_imported_users(db: TestDb) {
    let app = app(&db).await;
    import(&app.store, &fixture("mongoexport")).await;
    let dir = edited_fixture(|file, docs| {
        if file == "users.json" {
            docs[0]["username"] = json!("viewer");
            docs[1]["username"] = json!("admin");
        }
    });
    import(&app.store, dir.path()).await;
    let admin = app.store.user_by_username("viewer").await.unwrap().unwrap();
    assert_eq!(admin.id, ADMIN_ID);
    let viewer = app.store.user_by_username("admin").await.unwrap().unwrap();
    assert_eq!(viewer.id, VIEWER_ID);

    // Two users of one export with the same username: refused before writing.
    let dir = edited_fixture(|file, docs| {
        if file == "users.json" {
            docs[1]["username"] = json!("admin");
        }
    });
    let err = read(dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "users.json line 2: username \"admin\" was already used by line 1"
    );
}

async fn any_one_file_is_enough(db: TestDb) {
    let store = db.open().await;
    let dir = tempfile::tempdir().unwrap();
    let err = read(dir.path()).unwrap_err();
    assert!(matches!(err, ExportError::Empty(_)), "{err}");
    assert!(
        err.to_string().contains("holds none of users.json"),
        "{err}"
    );
    let missing = dir.path().join("nowhere");
    assert!(matches!(read(&missing), Err(ExportError::Read { .. })));

    std::fs::copy(
        fixture("mongoexport").join("rocketchat_import.json"),
        dir.path().join("rocketchat_import.json"),
    )
    .unwrap();
    let report = import(&store, dir.path()).await;
    assert_eq!(report.operations, load(3, 0));
    assert_eq!(report.users, load(0, 0));
    assert!(store.list_users().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// A larger and stranger export

const STRANGE_USERS: usize = 300;
const STRANGE_OPERATIONS: usize = 2_000;
/// 2026-11-20T10:00:00Z
const WHEN_MS: i64 = 1_795_168_800_000;
const BCRYPT: &str = "$2b$10$aIYnKFD71WUXTF590CATbu9hp.1bmrfsrLMpqEZo2Cm495LpefVra";

fn strange_user_id(i: usize) -> String {
    if i.is_multiple_of(50) {
        format!("{:024x}", 0x5f00_0000 + i)
    } else {
        meteor_id(10_000 + i)
    }
}

fn strange_username(i: usize) -> Option<String> {
    match i % 7 {
        3 | 5 => None,
        _ if i.is_multiple_of(11) => Some(format!("josé.ñ-{i}")),
        _ => Some(format!("user.{i}")),
    }
}

/// A user as mongoexport writes it, mixing relaxed and canonical forms, with fields importops
/// does not know.
fn strange_user(i: usize) -> Value {
    let id = strange_user_id(i);
    let mut tokens = vec![json!({
        "when": {"$date": {"$numberLong": (WHEN_MS + i as i64).to_string()}},
        "hashedToken": hash_token(&format!("login-{i}")),
        "twoFactorAuthorizedUntil": {"$date": "2026-11-20T10:05:00.000Z"},
    })];
    if i.is_multiple_of(3) {
        tokens.push(json!({
            "type": "personalAccessToken", "name": format!("ci ☃ {i}"),
            "hashedToken": hash_token(&format!("pat-{i}")),
            "createdAt": {"$date": "2021-10-01T09:00:00.000Z"},
            "lastTokenPart": "abcdef", "bypassTwoFactor": true,
        }));
    }
    let mut user = json!({
        "_id": if i.is_multiple_of(50) { json!({"$oid": id}) } else { json!(id) },
        "createdAt": {"$date": {"$numberLong": "1633078800000"}},
        "services": {
            "password": {"bcrypt": BCRYPT, "reset": {"when": {"$date": "2022-01-01T00:00:00Z"}}},
            "email2fa": {"enabled": true, "changedAt": {"$date": "2024-02-29T12:00:00.000Z"}},
            "resume": {"loginTokens": tokens},
        },
        "name": format!("Zoë 山田 {i} 🚀"),
        "emails": [{"address": format!("u{i}@exämple.org"), "verified": i.is_multiple_of(2)}],
        "type": "user",
        "status": "offline",
        "active": i % 13 != 12,
        "roles": if i % 10 == 1 { json!(["user", "importer-ü", "user"]) } else { json!(["user"]) },
        "utcOffset": {"$numberDouble": "5.5"},
        "__rooms": ["GENERAL", {"$oid": "64d69545ee8ae821983005f5"}],
        "settings": {"preferences": {"language": "pt-BR", "odd": {"$minKey": 1}}},
        "lastLogin": {"$date": "2024-02-29T12:00:00.000Z"},
        "customFields": {"🎉": null},
    });
    if let Some(username) = strange_username(i) {
        user["username"] = json!(username);
    } else if i.is_multiple_of(2) {
        user["username"] = Value::Null;
    }
    user
}

fn strange_operation_id(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("{:024x}", 0x64d6_9545_0000_0000_0000_0000_u128 + i as u128)
    } else {
        meteor_id(i)
    }
}

/// `_updatedAt` with ties: four operations share each value.
fn strange_updated_at(i: usize) -> i64 {
    1_700_000_000_000 + (i % (STRANGE_OPERATIONS / 4)) as i64 * 1_000
}

/// An operation as mongoexport writes it (fields in any order, wrapped numbers, dates of all
/// kinds), and what Rocket.Chat would answer for it.
fn strange_operation(i: usize) -> (Value, Value) {
    let id = strange_operation_id(i);
    let ts_ms = 1_635_280_600_083 + i as i64;
    let (ts, ts_plain) = match i % 4 {
        0 => (json!(ts_ms), json!(ts_ms)),
        1 => (
            json!({"$date": format_iso_ms(ts_ms).unwrap()}),
            json!(format_iso_ms(ts_ms).unwrap()),
        ),
        2 => (
            json!({"$date": {"$numberLong": ts_ms.to_string()}}),
            json!(format_iso_ms(ts_ms).unwrap()),
        ),
        // A JavaScript Date.now() that MongoDB stored as a double.
        _ => (json!(ts_ms as f64), json!(ts_ms)),
    };
    let updated = strange_updated_at(i);
    let status = STATUSES[i % STATUSES.len()];
    let user = strange_user_id(i % STRANGE_USERS);
    let mut source = json!({
        "user": user,
        "count": {"total": {"$numberLong": "12345678901"}, "completed": {"$numberInt": "7"},
            "error": 0},
        "_updatedAt": {"$date": {"$numberLong": updated.to_string()}},
        "status": status,
        "fileData": {"name": format!("ünïcödé 🗂 {i}.zip"), "nested": [{"a": {"$numberDouble": "0.25"}}],
            "at": {"$date": "2023-08-11T20:08:37.655Z"}},
        "valid": i.is_multiple_of(3),
        "type": "CSV",
        "ts": ts,
        "contentType": "application/zip",
        "importerKey": "csv",
        "_id": if i.is_multiple_of(2) { json!({"$oid": id}) } else { json!(id) },
    });
    let mut plain = json!({
        "_id": id, "type": "CSV", "importerKey": "csv", "ts": ts_plain, "status": status,
        "valid": i.is_multiple_of(3), "user": user, "_updatedAt": format_iso_ms(updated).unwrap(),
        "count": {"total": 12_345_678_901_i64, "completed": 7, "error": 0},
        "fileData": {"name": format!("ünïcödé 🗂 {i}.zip"), "nested": [{"a": 0.25}],
            "at": "2023-08-11T20:08:37.655Z"},
        "contentType": "application/zip",
    });
    if i.is_multiple_of(5) {
        source["messagesstatus"] = Value::Null;
        plain["messagesstatus"] = Value::Null;
    }
    (source, plain)
}

struct Strange {
    dir: tempfile::TempDir,
    /// What Rocket.Chat answers for each operation, in file order.
    operations: Vec<Value>,
    tokens: u64,
}

fn strange_export() -> Strange {
    let dir = tempfile::tempdir().unwrap();
    let mut users: Vec<String> = (0..STRANGE_USERS)
        .map(|i| strange_user(i).to_string())
        .collect();
    users.push(
        r#"{"_id":"rocket.cat","createdAt":{"$date":"2021-10-01T09:00:00.000Z"},"avatarOrigin":"local","name":"Rocket.Cat","username":"rocket.cat","status":"online","statusDefault":"online","utcOffset":0,"active":true,"type":"bot","roles":["bot"]}"#.into(),
    );
    let tokens = (0..STRANGE_USERS)
        .map(|i| if i % 3 == 0 { 2 } else { 1 })
        .sum();
    // Blank lines and a byte order mark, as some tools leave them.
    std::fs::write(
        dir.path().join("users.json"),
        format!("\u{feff}{}\n\n", users.join("\n")),
    )
    .unwrap();

    // `mongoexport --jsonArray --pretty`.
    let mut permissions: Vec<Value> = (0..60)
        .map(|i| {
            json!({"_id": format!("perm-{i}"), "roles": ["admin", format!("role-{}", i % 5)],
                "_updatedAt": {"$date": {"$numberLong": "1633078800000"}},
                "level": "settings", "sorter": {"$numberInt": "3"}, "groupPermissionId": null})
        })
        .collect();
    permissions.push(
        json!({"_id": "view-import-operations", "roles": ["admin", "importer-ü"],
        "_updatedAt": {"$date": "2021-10-01T09:00:00.000Z"}}),
    );
    std::fs::write(
        dir.path().join("rocketchat_permissions.json"),
        serde_json::to_string_pretty(&permissions).unwrap(),
    )
    .unwrap();

    let (sources, operations): (Vec<Value>, Vec<Value>) =
        (0..STRANGE_OPERATIONS).map(strange_operation).unzip();
    let lines: Vec<String> = sources.iter().map(Value::to_string).collect();
    std::fs::write(
        dir.path().join("rocketchat_import.json"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    Strange {
        dir,
        operations,
        tokens,
    }
}

async fn a_larger_and_stranger_export_works(db: TestDb) {
    let app = app(&db).await;
    let strange = strange_export();
    let report = import(&app.store, strange.dir.path()).await;
    assert_eq!(
        report,
        ImportReport {
            users: load(STRANGE_USERS as u64 + 1, 0),
            tokens: strange.tokens,
            permissions: load(60, 1),
            operations: load(STRANGE_OPERATIONS as u64, 0),
        }
    );

    // An importer (user 1: a username, active, role importer-ü) with a login token, and user 21
    // with a personal access token.
    let importer = Login {
        user_id: strange_user_id(1),
        token: "login-1".into(),
    };
    let answer = app.get(ENDPOINT, Some(&importer)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // The 20 newest, ties in file order, each exactly as Rocket.Chat answers it.
    let mut order: Vec<usize> = (0..STRANGE_OPERATIONS).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(strange_updated_at(i)), i));
    let expected = Value::Array(
        order[..20]
            .iter()
            .map(|&i| strange.operations[i].clone())
            .collect(),
    );
    assert_eq!(answer.json(), expected);
    assert_eq!(answer.body, expected.to_string(), "field order");
    let pat = Login {
        user_id: strange_user_id(21),
        token: "pat-21".into(),
    };
    assert_eq!(app.get(ENDPOINT, Some(&pat)).await.status, StatusCode::OK);

    // Every operation, stored as Rocket.Chat would answer it.
    let stored = app.store.latest_operations(10_000).await.unwrap();
    assert_eq!(stored.len(), STRANGE_OPERATIONS);
    let expected_all: Vec<String> = order
        .iter()
        .map(|&i| strange.operations[i].to_string())
        .collect();
    assert_eq!(stored, expected_all);

    // Users without a username are kept, but cannot authenticate (as in Rocket.Chat); nor can
    // deactivated ones.
    let nameless = app
        .store
        .user_by_id(&strange_user_id(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(nameless.username, None);
    assert_eq!(nameless.name.as_deref(), Some("Zoë 山田 3 🚀"));
    let answer = app
        .get(
            ENDPOINT,
            Some(&Login {
                user_id: strange_user_id(3),
                token: "login-3".into(),
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let inactive = app
        .store
        .user_by_id(&strange_user_id(12))
        .await
        .unwrap()
        .unwrap();
    assert!(!inactive.active);

    let user = app
        .store
        .user_by_id(&strange_user_id(11))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.username.as_deref(), Some("josé.ñ-11"));
    assert_eq!(user.roles, ["user", "importer-ü"]);
    assert_eq!(user.emails[0].address, "u11@exämple.org");
    let oid_user = app.store.user_by_id(&strange_user_id(50)).await.unwrap();
    assert!(oid_user.is_some(), "a {{\"$oid\"}} _id is its hex string");
    let bot = app.store.user_by_id("rocket.cat").await.unwrap().unwrap();
    assert_eq!(bot.roles, ["bot"]);
    assert!(bot.emails.is_empty());

    let sessions = app.store.list_sessions(&strange_user_id(21)).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let pat = sessions
        .iter()
        .find(|s| s.kind == TokenKind::Personal)
        .unwrap();
    assert_eq!(pat.name.as_deref(), Some("ci ☃ 21"));
    assert_eq!(pat.issued_at_ms, 1_633_078_800_000);
    let roles = app.store.list_roles().await.unwrap();
    for role in ["importer-ü", "role-0", "role-4", "bot"] {
        assert!(roles.contains(&role.to_owned()), "{role}");
    }

    // Again: nothing changes.
    let first = snapshot(&app.store).await;
    let again = import(&app.store, strange.dir.path()).await;
    assert_eq!(again.users, load(0, STRANGE_USERS as u64 + 1));
    assert_eq!(again.operations, load(0, STRANGE_OPERATIONS as u64));
    assert_eq!(snapshot(&app.store).await, first);
}

// ---------------------------------------------------------------------------------------------
// Volume (SQLite)

/// Writes `n` operations of a realistic size as mongoexport would.
fn many_operations(dir: &Path, n: usize) {
    let mut text = String::with_capacity(n * 450);
    for i in 0..n {
        let op = json!({
            "_id": {"$oid": format!("{:024x}", 0x6000_0000_u64 + i as u64)},
            "type": "CSV", "importerKey": "csv",
            "ts": {"$date": format_iso_ms(1_691_784_517_655 + i as i64).unwrap()},
            "status": STATUSES[i % STATUSES.len()], "valid": i % 2 == 0,
            "user": "d26x6zSkaPSe5gCyy",
            "_updatedAt": {"$date": format_iso_ms(1_691_784_542_118 + i as i64).unwrap()},
            "contentType": "application/zip",
            "file": format!("1691784517655_d26x6zSkaPSe5gCyy_export-{i}.zip"),
            "count": {"total": 1520, "completed": 1520, "error": 0, "users": 20,
                "channels": 12, "messages": 1488},
        });
        text.push_str(&op.to_string());
        text.push('\n');
    }
    std::fs::write(dir.join("rocketchat_import.json"), text).unwrap();
}

const MANY: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_operations_on_sqlite() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let dir = tempfile::tempdir().unwrap();
    many_operations(dir.path(), MANY);

    let started = Instant::now();
    let report = import(&store, dir.path()).await;
    let elapsed = started.elapsed();
    eprintln!("imported {MANY} operations on SQLite in {elapsed:.2?}");
    assert_eq!(report.operations, load(MANY as u64, 0));
    assert_eq!(store.count_operations().await.unwrap(), MANY as i64);
    let latest = store.latest_operations(1).await.unwrap();
    assert!(latest[0].contains(&format!("{:024x}", 0x6000_0000_u64 + MANY as u64 - 1)));
    // How long it took is printed, not asserted: timings belong to the benchmark
    // (bench/ops_load_memory.py measures imports), not to a test on a shared machine.

    // Again, replacing every one of them.
    let started = Instant::now();
    let report = import(&store, dir.path()).await;
    eprintln!(
        "re-imported {MANY} operations on SQLite in {:.2?}",
        started.elapsed()
    );
    assert_eq!(report.operations, load(0, MANY as u64));
}

// ---------------------------------------------------------------------------------------------
// The command line (SQLite)

const BIN: &str = env!("CARGO_BIN_EXE_importops");

fn command(db_url: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .args(["--database-url", db_url]);
    cmd
}

#[test]
fn the_command_imports_and_prints_one_summary_line() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", db.path().display());
    let dir = fixture("mongoexport");
    let output = command(&url)
        .args(["import-rocketchat", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "imported 2 users (2 tokens), 5 permissions, 3 operations from {}\n",
            dir.display()
        )
    );
    // Not a terminal: no progress bar.
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
    // Again, with the counts as JSON: the same counts, the same data.
    let again = command(&url)
        .args(["import-rocketchat", "--json", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        serde_json::json!({"users": 2, "tokens": 2, "permissions": 5, "operations": 3})
    );
    let listed = command(&url)
        .args(["ops", "list", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, serde_json::from_str::<Value>(EXPECTED).unwrap());
}

#[test]
fn the_command_names_the_file_and_line_of_a_fault() {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/t.db", db.path().display());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.json"),
        "{\"_id\":\"a\",\"username\":\"a\"}\n{\"_id\":\"b\",\"active\":\"yes\"}\n",
    )
    .unwrap();
    let output = command(&url)
        .args(["import-rocketchat", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "error: nothing was imported: users.json line 2: active \"yes\" is not true or false\n"
    );
    assert!(
        !db.path().join("t.db").exists(),
        "the database is not even opened"
    );

    let empty = tempfile::tempdir().unwrap();
    let output = command(&url)
        .args(["import-rocketchat", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: {} holds none of users.json, rocketchat_permissions.json and \
             rocketchat_import.json",
            empty.path().display()
        )),
        "{stderr}"
    );
    let output = command(&url)
        .args(["import-rocketchat", "/nonexistent/export"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .starts_with("error: cannot read /nonexistent/export: "),
    );
}
