//! The cache's freshness bounds: a change made by another process (the command line on the same
//! database) or another server (a second state on the same database) is seen within one
//! second; an expired token is refused from the moment it expires.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{Answer, Login, TestApp, TestDb};
use importops::config::{ChangeDetection, PostgresPooler, Settings};
use importops::domain::auth::TokenKind;
use importops::domain::secrets::{hash_token, new_raw_token, token_digest};
use importops::domain::time::now_ms;
use importops::store::{Kinds, NewSession};

const ENDPOINT: &str = "/api/v1/getLatestImportOperations";
const BOUND: Duration = Duration::from_secs(1);

on_both_backends!(
    a_new_operation_from_another_process_is_served_within_a_second,
    an_updated_operation_from_another_process_is_served_within_a_second,
    a_token_revoked_by_another_process_is_refused_within_a_second,
    a_role_removed_by_another_process_is_refused_within_a_second,
    a_user_deactivated_by_another_process_is_refused_within_a_second,
    a_permission_changed_by_another_process_applies_within_a_second,
    a_change_through_one_server_reaches_another_within_a_second,
    an_expired_token_is_refused_from_the_moment_it_expires,
    a_token_revoked_elsewhere_is_refused_within_a_second_when_polling,
    an_operation_written_elsewhere_is_served_within_a_second_when_polling,
    a_token_that_failed_before_it_was_issued_works_at_once_here_and_soon_elsewhere,
    writes_to_operations_leave_sessions_and_permissions_cached,
    a_token_revoked_drops_the_cached_sessions_of_its_user_only,
    a_user_added_or_changed_leaves_the_other_users_sessions_cached,
);

// As through a transaction pooler (`--postgres-pooler transaction`), where the watcher polls
// whatever `--change-detection` says.
on_postgres_pooled!(
    a_new_operation_from_another_process_is_served_within_a_second,
    a_token_revoked_by_another_process_is_refused_within_a_second,
    a_role_removed_by_another_process_is_refused_within_a_second,
    a_permission_changed_by_another_process_applies_within_a_second,
    a_change_through_one_server_reaches_another_within_a_second,
    writes_to_operations_leave_sessions_and_permissions_cached,
);

#[tokio::test]
async fn a_database_file_renamed_over_is_refused_within_two_seconds() {
    let db = TestDb::sqlite();
    let (app, admin) = warm(&db).await;
    let path = sqlite_path(&db);
    // Another database, without the admin's session, renamed over the served one.
    let other = path.with_file_name("other.db");
    importops_at(&format!("sqlite://{}", other.display()), &["migrate"]);
    std::fs::rename(&other, &path).unwrap();
    let refused = time_until(&app, &admin, |a| a.status != StatusCode::OK).await;
    assert!(refused < 2 * BOUND, "{refused:?}");
    // And stays refused: the old file's pooled connections are not used again.
    for _ in 0..20 {
        let answer = app.get(ENDPOINT, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    }
}

#[tokio::test]
async fn a_database_file_removed_is_refused_within_two_seconds() {
    let db = TestDb::sqlite();
    let (app, admin) = warm(&db).await;
    std::fs::remove_file(sqlite_path(&db)).unwrap();
    let refused = time_until(&app, &admin, |a| a.status != StatusCode::OK).await;
    assert!(refused < 2 * BOUND, "{refused:?}");
    for _ in 0..20 {
        let answer = app.get(ENDPOINT, Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    }
}

fn sqlite_path(db: &TestDb) -> std::path::PathBuf {
    db.url.trim_start_matches("sqlite://").into()
}

/// A served app whose watcher polls (`--change-detection poll`), warmed like `warm`.
async fn warm_polling(db: &TestDb) -> (TestApp, Login) {
    let settings = Settings {
        change_detection: ChangeDetection::Poll,
        ..Settings::default()
    };
    let app = TestApp::with_settings(db, settings).await;
    let admin = app.admin().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_eq!(app.get(ENDPOINT, Some(&admin)).await.status, StatusCode::OK);
    }
    (app, admin)
}

async fn a_token_revoked_elsewhere_is_refused_within_a_second_when_polling(db: TestDb) {
    let (app, admin) = warm_polling(&db).await;
    importops(&db, &["token", "revoke", "admin", "--token", &admin.token]);
    let seen = time_until(&app, &admin, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn an_operation_written_elsewhere_is_served_within_a_second_when_polling(db: TestDb) {
    let (app, admin) = warm_polling(&db).await;
    let newer = common::operation(&common::meteor_id(7), "2030-01-01T00:00:00.000Z");
    let file = write_file(&serde_json::json!([newer]).to_string());
    importops(&db, &["ops", "load", file.path().to_str().unwrap()]);
    let seen = time_until(&app, &admin, |a| a.body.contains(&common::meteor_id(7))).await;
    assert!(seen < BOUND, "{seen:?}");
}

/// Runs the command line on the test's database, as another process.
fn importops(db: &TestDb, args: &[&str]) {
    let pooler = match db.pooler {
        PostgresPooler::None => "none",
        PostgresPooler::Transaction => "transaction",
    };
    importops_with(&db.url, pooler, args)
}

fn importops_at(url: &str, args: &[&str]) {
    importops_with(url, "none", args)
}

fn importops_with(url: &str, pooler: &str, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_importops"))
        .env("IMPORTOPS_POSTGRES_POOLER", pooler)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .expect("run importops");
    assert!(
        output.status.success(),
        "importops {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A served app with an admin and one operation, its answers already cached.
async fn warm(db: &TestDb) -> (TestApp, Login) {
    let app = TestApp::new(db).await;
    let admin = app.admin().await;
    app.load(
        &serde_json::json!([common::operation(
            &common::meteor_id(1),
            "2021-01-01T00:00:00.000Z"
        )])
        .to_string(),
    )
    .await;
    // Let the watcher take its first look, then fill the cache.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_eq!(app.get(ENDPOINT, Some(&admin)).await.status, StatusCode::OK);
    }
    (app, admin)
}

/// Polls until `done` holds for the answer, and returns how long that took.
async fn time_until(app: &TestApp, login: &Login, done: impl Fn(&Answer) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let answer = app.get(ENDPOINT, Some(login)).await;
        if done(&answer) {
            return start.elapsed();
        }
        assert!(start.elapsed() < BOUND * 3, "still not seen: {answer:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

async fn a_new_operation_from_another_process_is_served_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let newer = common::operation(&common::meteor_id(2), "2030-01-01T00:00:00.000Z");
    let file = write_file(&serde_json::json!([newer]).to_string());
    importops(&db, &["ops", "load", file.path().to_str().unwrap()]);
    let seen = time_until(&app, &admin, |a| a.body.contains(&common::meteor_id(2))).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn an_updated_operation_from_another_process_is_served_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let mut updated = common::operation(&common::meteor_id(1), "2021-01-01T00:00:00.000Z");
    updated["status"] = serde_json::json!("importer_import_failed");
    let file = write_file(&serde_json::json!([updated]).to_string());
    importops(&db, &["ops", "load", file.path().to_str().unwrap()]);
    let seen = time_until(&app, &admin, |a| a.body.contains("importer_import_failed")).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn a_token_revoked_by_another_process_is_refused_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    importops(&db, &["token", "revoke", "admin", "--token", &admin.token]);
    let seen = time_until(&app, &admin, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn a_role_removed_by_another_process_is_refused_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    importops(&db, &["role", "revoke", "admin", "admin"]);
    let seen = time_until(&app, &admin, |a| a.status == StatusCode::FORBIDDEN).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn a_user_deactivated_by_another_process_is_refused_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    importops(&db, &["user", "set-active", "admin", "false"]);
    let seen = time_until(&app, &admin, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn a_permission_changed_by_another_process_applies_within_a_second(db: TestDb) {
    let (app, admin) = warm(&db).await;
    importops(&db, &["permission", "set", "view-import-operations", "bot"]);
    let seen = time_until(&app, &admin, |a| a.status == StatusCode::FORBIDDEN).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn a_change_through_one_server_reaches_another_within_a_second(db: TestDb) {
    let (one, admin) = warm(&db).await;
    // A second server on the same database, with its own pool, cache and watcher.
    let two = TestApp::new(&db).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(two.get(ENDPOINT, Some(&admin)).await.status, StatusCode::OK);
    assert!(one.store.set_user_active("admin", false).await.unwrap());
    // The server that made the change sees it at once; the other within the bound.
    assert_eq!(
        one.get(ENDPOINT, Some(&admin)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let seen = time_until(&two, &admin, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
}

async fn an_expired_token_is_refused_from_the_moment_it_expires(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let token = new_raw_token();
    let expires_at = now_ms() + 1_500;
    app.store
        .insert_session(&NewSession {
            user_id: admin.user_id.clone(),
            hashed_token: hash_token(&token),
            kind: TokenKind::Login,
            name: None,
            issued_at_ms: now_ms(),
            expires_at_ms: Some(expires_at),
        })
        .await
        .unwrap();
    let short = Login {
        user_id: admin.user_id.clone(),
        token,
    };
    // Served (and cached) while valid ...
    while now_ms() < expires_at - 300 {
        assert_eq!(app.get(ENDPOINT, Some(&short)).await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and refused by the first request after it expires.
    while now_ms() <= expires_at {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        app.get(ENDPOINT, Some(&short)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn a_token_that_failed_before_it_was_issued_works_at_once_here_and_soon_elsewhere(
    db: TestDb,
) {
    let (one, admin) = warm(&db).await;
    let two = TestApp::new(&db).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = Login {
        user_id: admin.user_id.clone(),
        token: new_raw_token(),
    };
    // Refused (and the failure remembered) on both servers, twice.
    for app in [&one, &two, &one, &two] {
        assert_eq!(
            app.get(ENDPOINT, Some(&early)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    one.store
        .insert_session(&NewSession {
            user_id: admin.user_id.clone(),
            hashed_token: hash_token(&early.token),
            kind: TokenKind::Login,
            name: None,
            issued_at_ms: now_ms(),
            expires_at_ms: None,
        })
        .await
        .unwrap();
    assert_eq!(one.get(ENDPOINT, Some(&early)).await.status, StatusCode::OK);
    let seen = time_until(&two, &early, |a| a.status == StatusCode::OK).await;
    assert!(seen < BOUND, "{seen:?}");
}

/// Operations written here and by another process leave the cached sessions and permissions
/// in place (only the latest array is read again), and so do logins here and elsewhere; a
/// session removed empties the sessions.
async fn writes_to_operations_leave_sessions_and_permissions_cached(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let cache = &app.state.cache;
    let digest = token_digest(&admin.token);
    let session_cached = || {
        let stamp = cache.stamp().expect("the watcher is live");
        cache.session(stamp, &digest).is_some()
    };
    let permission_cached = || {
        let stamp = cache.stamp().expect("the watcher is live");
        cache.permission(stamp, "view-import-operations").is_some()
    };
    let latest_cached = || cache.latest(cache.stamp().unwrap()).is_some();
    assert!(session_cached() && permission_cached() && latest_cached());

    let before = cache.stamp().unwrap().count(Kinds::OPERATIONS);
    let newer = common::operation(&common::meteor_id(2), "2030-01-01T00:00:00.000Z");
    app.load(&serde_json::json!([newer]).to_string()).await;
    assert!(!latest_cached(), "the latest array is read again");
    if db.url.starts_with("postgres") && db.pooler == PostgresPooler::None {
        // The notification of this process's own write is not counted a second time (when
        // polling, the counters cannot tell whose the write was).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = cache.stamp().unwrap().count(Kinds::OPERATIONS);
        assert_eq!(after - before, 1, "one write, counted once");
    }
    assert!(
        session_cached() && permission_cached(),
        "a local write to operations"
    );

    let newest = common::operation(&common::meteor_id(3), "2031-01-01T00:00:00.000Z");
    let file = write_file(&serde_json::json!([newest]).to_string());
    importops(&db, &["ops", "load", file.path().to_str().unwrap()]);
    let seen = time_until(&app, &admin, |a| a.body.contains(&common::meteor_id(3))).await;
    assert!(seen < BOUND, "{seen:?}");
    // Past the watcher's look at the other process's write, and at this process's own.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        session_cached() && permission_cached(),
        "a write to operations by another process"
    );

    let other = app.another_token(&admin).await;
    assert!(session_cached(), "a session added here");
    importops(&db, &["token", "issue", "admin"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(session_cached(), "a session added by another process");

    // `other`, cached too, is refused only once this server learnt of the removal.
    assert_eq!(app.get(ENDPOINT, Some(&other)).await.status, StatusCode::OK);
    importops(&db, &["token", "revoke", "admin", "--token", &other.token]);
    let seen = time_until(&app, &other, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
    assert!(!session_cached(), "a session removed empties them");
    assert!(permission_cached(), "but not the permissions");
}

/// A token revoked through this server drops its user's cached sessions only; one revoked by
/// another server on Postgres too (its notification names the user); one revoked by another
/// process on SQLite, whose watcher cannot tell whose, drops them all. The revoked token is
/// refused at once here and within the bound elsewhere, whichever way.
async fn a_token_revoked_drops_the_cached_sessions_of_its_user_only(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let other = TestApp::new(&db).await;
    let bob = app.user("bob", &["admin", "user"]).await;
    let bob_two = app.another_token(&bob).await;
    for login in [&admin, &bob, &bob_two] {
        assert_eq!(app.get(ENDPOINT, Some(login)).await.status, StatusCode::OK);
    }
    let cache = &app.state.cache;
    let cached = |login: &Login| {
        let stamp = cache.stamp().expect("the watcher is live");
        cache.session(stamp, &token_digest(&login.token)).is_some()
    };
    assert!(cached(&admin) && cached(&bob) && cached(&bob_two));

    app.store
        .revoke_sessions(
            &bob.user_id,
            &importops::store::Revoke::Hash(hash_token(&bob.token)),
        )
        .await
        .unwrap();
    assert_eq!(
        app.get(ENDPOINT, Some(&bob)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Past the watcher's look at the write.
    tokio::time::sleep(Duration::from_millis(600)).await;
    if db.url.starts_with("postgres") {
        assert!(cached(&admin), "another user's session stays cached");
    }
    assert!(
        !cached(&bob_two),
        "the user's other sessions are read again"
    );
    assert_eq!(
        app.get(ENDPOINT, Some(&bob_two)).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get(ENDPOINT, Some(&admin)).await.status, StatusCode::OK);

    // Through another server.
    other
        .store
        .revoke_sessions(
            &bob.user_id,
            &importops::store::Revoke::Hash(hash_token(&bob_two.token)),
        )
        .await
        .unwrap();
    let seen = time_until(&app, &bob_two, |a| a.status == StatusCode::UNAUTHORIZED).await;
    assert!(seen < BOUND, "{seen:?}");
    if db.url.starts_with("postgres") {
        assert!(
            cached(&admin),
            "another server's revoke of bob's token leaves admin's"
        );
    } else {
        assert!(
            !cached(&admin),
            "SQLite's watcher cannot tell whose: all are read again"
        );
    }
}

/// A user added (here or by another server) leaves every cached session and permission
/// cached; a user's roles changed by another server on Postgres drop that user's sessions
/// only, and the change applies within the bound.
async fn a_user_added_or_changed_leaves_the_other_users_sessions_cached(db: TestDb) {
    let (app, admin) = warm(&db).await;
    let other = TestApp::new(&db).await;
    let bob = app.user("bob", &["admin", "user"]).await;
    assert_eq!(app.get(ENDPOINT, Some(&bob)).await.status, StatusCode::OK);
    let cache = &app.state.cache;
    let cached = |login: &Login| {
        let stamp = cache.stamp().expect("the watcher is live");
        cache.session(stamp, &token_digest(&login.token)).is_some()
    };
    let permission_cached = || {
        let stamp = cache.stamp().expect("the watcher is live");
        cache.permission(stamp, "view-import-operations").is_some()
    };
    assert!(cached(&admin) && cached(&bob) && permission_cached());
    app.user("carol", &["user"]).await;
    other.user("dave", &["user"]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(cached(&admin) && cached(&bob), "users added");
    assert!(permission_cached(), "users added");

    other
        .store
        .set_user_roles("bob", &["user".into()])
        .await
        .unwrap();
    let seen = time_until(&app, &bob, |a| a.status == StatusCode::FORBIDDEN).await;
    assert!(seen < BOUND, "{seen:?}");
    if db.url.starts_with("postgres") {
        assert!(cached(&admin), "another user's roles changed elsewhere");
    }
    assert!(permission_cached(), "a user's roles are not a permission's");
}
