//! The store contract: the same suite on SQLite and on Postgres.

mod common;

use common::{TestDb, meteor_id, operation};
use importops::Store;
use importops::batch::parse_batch;
use importops::domain::auth::TokenKind;
use importops::domain::operation::Operation;
use importops::domain::user::{Email, NewUser};
use importops::store::{
    ConflictKind, Kinds, LoadReport, NewSession, Revoke, StoreError, StreamError,
};
use sqlx::Connection;

/// The suite, on SQLite, on Postgres, and on Postgres as through a transaction pooler.
macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        on_both_backends!($($name),*);
        on_postgres_pooled!($($name),*);
    };
}

store_suite!(
    opening_seeds_rocketchat_defaults_once,
    reopening_keeps_an_administrators_changes,
    a_permission_missing_from_an_older_database_appears_after_migrate,
    users_are_created_found_listed_and_removed,
    a_taken_username_is_a_conflict,
    usernames_and_emails_conflict_ignoring_case,
    every_write_is_counted,
    roles_given_to_users_are_created,
    sessions_are_found_by_user_and_hash_only,
    sessions_are_revoked_by_name_hash_or_all,
    a_personal_token_name_is_unique_per_user,
    removing_a_user_removes_its_sessions,
    unknown_permissions_are_none,
    operations_come_newest_first_ties_in_stored_order,
    upserts_count_new_and_replaced,
    operations_are_removed_by_id,
    streamed_upserts_commit_at_the_end_or_not_at_all,
    a_bad_record_late_in_a_large_batch_writes_nothing,
    the_latest_query_uses_its_index,
);

fn new_user(username: &str, roles: &[&str]) -> NewUser {
    NewUser {
        id: importops::domain::ids::new_meteor_id(),
        username: username.into(),
        name: Some(format!("{username} name")),
        active: true,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        emails: vec![Email {
            address: format!("{username}@example.com"),
            verified: false,
        }],
        password_bcrypt: None,
    }
}

fn session(user_id: &str, token: &str, kind: TokenKind, name: Option<&str>) -> NewSession {
    NewSession {
        user_id: user_id.into(),
        hashed_token: importops::domain::secrets::hash_token(token),
        kind,
        name: name.map(Into::into),
        issued_at_ms: 1_000,
        expires_at_ms: None,
    }
}

// Rocket.Chat's default table: `apps/meteor/app/authorization/server/constant/permissions.ts`
// (172 distinct permissions), its roles from
// `apps/meteor/app/authorization/server/functions/upsertPermissions.ts`.
async fn opening_seeds_rocketchat_defaults_once(db: TestDb) {
    let store = db.open().await;
    store.migrate().await.unwrap();
    let permissions = store.list_permissions().await.unwrap();
    assert_eq!(permissions.len(), 172);
    let roles_of = |id: &str| -> Vec<String> {
        permissions
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} is missing"))
            .roles
            .clone()
    };
    for (id, roles) in [
        ("access-permissions", &["admin"][..]),
        ("api-bypass-rate-limit", &["admin", "bot", "app"]),
        ("create-personal-access-tokens", &["admin", "user"]),
        ("create-user", &["admin"]),
        ("delete-user", &["admin"]),
        ("run-import", &["admin"]),
        ("view-import-operations", &["admin"]),
        ("add-user-to-any-p-room", &[]),
        (
            "leave-c",
            &[
                "admin",
                "user",
                "federated-external",
                "bot",
                "anonymous",
                "app",
            ],
        ),
        (
            "view-l-room",
            &[
                "livechat-manager",
                "livechat-monitor",
                "livechat-agent",
                "admin",
            ],
        ),
        ("toggle-room-e2e-encryption", &["owner", "admin"]),
        ("bypass-time-limit-edit-and-delete", &["bot", "app"]),
        ("export-messages-as-pdf", &["admin", "user"]),
    ] {
        assert_eq!(roles_of(id), roles, "{id}");
    }
    let roles = store.list_roles().await.unwrap();
    assert_eq!(roles.len(), 12, "{roles:?}");
    for role in [
        "admin",
        "moderator",
        "leader",
        "owner",
        "user",
        "federated-external",
        "bot",
        "app",
        "guest",
        "anonymous",
        "livechat-agent",
        "livechat-manager",
    ] {
        assert!(roles.contains(&role.to_owned()), "{role}");
    }
    // Seeding again adds nothing.
    store.migrate().await.unwrap();
    assert_eq!(store.list_permissions().await.unwrap(), permissions);
}

async fn reopening_keeps_an_administrators_changes(db: TestDb) {
    let store = db.open().await;
    assert!(
        store
            .set_permission_roles("run-import", &["admin".into(), "importer".into()])
            .await
            .unwrap()
    );
    store.close().await;
    let again = db.open().await;
    assert_eq!(
        again.permission_roles("run-import").await.unwrap().unwrap(),
        vec!["admin", "importer"]
    );
    assert!(
        again
            .list_roles()
            .await
            .unwrap()
            .contains(&"importer".to_owned())
    );
    // An emptied list is an administrator's change too, and survives a migrate.
    again.set_permission_roles("create-c", &[]).await.unwrap();
    again.migrate().await.unwrap();
    assert_eq!(
        again.permission_roles("create-c").await.unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        again.permission_roles("run-import").await.unwrap().unwrap(),
        vec!["admin", "importer"]
    );
}

/// A database made by an older release lacks the permissions Rocket.Chat added since; the next
/// start or migrate adds them with their default roles and touches nothing else.
async fn a_permission_missing_from_an_older_database_appears_after_migrate(db: TestDb) {
    let store = db.open().await;
    store
        .set_permission_roles("run-import", &["admin".into(), "importer".into()])
        .await
        .unwrap();
    let removed = ["export-messages-as-pdf", "allow-internal-voice-calls"];
    let statement = "DELETE FROM permissions WHERE id IN ('export-messages-as-pdf', 'allow-internal-voice-calls')";
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    for id in removed {
        assert_eq!(store.permission_roles(id).await.unwrap(), None, "{id}");
    }
    let before = store.list_permissions().await.unwrap();
    assert_eq!(before.len(), 170);
    store.migrate().await.unwrap();
    let after = store.list_permissions().await.unwrap();
    assert_eq!(after.len(), 172);
    assert_eq!(
        store
            .permission_roles("export-messages-as-pdf")
            .await
            .unwrap()
            .unwrap(),
        vec!["admin", "user"]
    );
    assert_eq!(
        store.permission_roles("run-import").await.unwrap().unwrap(),
        vec!["admin", "importer"]
    );
    // The others are as they were, their dates included.
    for p in &before {
        assert!(after.contains(p), "{} changed", p.id);
    }
}

async fn users_are_created_found_listed_and_removed(db: TestDb) {
    let store = db.open().await;
    let bob = new_user("bob", &["user"]);
    store
        .create_user(&new_user("alice", &["admin"]))
        .await
        .unwrap();
    store.create_user(&bob).await.unwrap();
    let found = store.user_by_username("bob").await.unwrap().unwrap();
    assert_eq!(found.id, bob.id);
    assert_eq!(found.name.as_deref(), Some("bob name"));
    assert_eq!(found.emails, bob.emails);
    assert!(found.active);
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username.unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store.set_user_active("bob", false).await.unwrap());
    assert!(!store.user_by_username("bob").await.unwrap().unwrap().active);
    assert!(!store.set_user_active("nobody", false).await.unwrap());
    assert!(store.remove_user("bob").await.unwrap());
    assert!(!store.remove_user("bob").await.unwrap());
    assert_eq!(store.user_by_username("bob").await.unwrap(), None);
}

async fn a_taken_username_is_a_conflict(db: TestDb) {
    let store = db.open().await;
    store
        .create_user(&new_user("bob", &["user"]))
        .await
        .unwrap();
    let err = store
        .create_user(&new_user("bob", &["user"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("bob")),
        "{err:?}"
    );
}

async fn usernames_and_emails_conflict_ignoring_case(db: TestDb) {
    let store = db.open().await;
    store
        .create_user(&new_user("Bob", &["user"]))
        .await
        .unwrap();
    let err = store
        .create_user(&new_user("BOB", &["user"]))
        .await
        .unwrap_err();
    let StoreError::Conflict(conflict) = err else {
        panic!("not a conflict: {err:?}");
    };
    assert_eq!(conflict.kind, ConflictKind::Username);
    assert_eq!(conflict.value, "BOB");

    let mut other = new_user("carol", &["user"]);
    other.emails[0].address = "BOB@EXAMPLE.COM".into();
    let err = store.create_user(&other).await.unwrap_err();
    let StoreError::Conflict(conflict) = err else {
        panic!("not a conflict: {err:?}");
    };
    assert_eq!(conflict.kind, ConflictKind::Email);
    assert_eq!(conflict.value, "BOB@EXAMPLE.COM");
    // Nothing of the refused users was written, e-mail rows included.
    assert_eq!(store.list_users().await.unwrap().len(), 1);
    assert!(store.email_taken("bob@example.com").await.unwrap());
    assert!(!store.email_taken("carol@example.com").await.unwrap());
}

/// Every write method bumps the count this process's cache follows for each kind of data it
/// writes, even one that fails, and leaves the other kinds' counts alone.
async fn every_write_is_counted(db: TestDb) {
    let store = db.open().await;
    let user = new_user("dora", &["user"]);
    let counts = |store: &Store| Kinds::EACH.map(|k| store.local_writes(k));
    let mut last = counts(&store);
    let mut step = |name: &str, now: [u64; Kinds::COUNT], kinds: Kinds| {
        for (i, kind) in Kinds::EACH.into_iter().enumerate() {
            let written = kinds.indices().any(|k| k == i);
            assert_eq!(now[i] > last[i], written, "{name}, kind {kind:?}");
        }
        last = now;
    };
    let access = Kinds::ACCESS;
    // A user changed or removed is a change to its sessions; a user added, a row added.
    let user_changed = Kinds::SESSIONS;
    store.create_user(&user).await.unwrap();
    step("create_user", counts(&store), Kinds::ADDED);
    store.create_user(&user).await.unwrap_err();
    step("a failed create_user", counts(&store), Kinds::ADDED);
    store
        .insert_session(&session(&user.id, "t", TokenKind::Login, None))
        .await
        .unwrap();
    step("insert_session", counts(&store), Kinds::ADDED);
    store.revoke_sessions(&user.id, &Revoke::All).await.unwrap();
    step("revoke_sessions", counts(&store), Kinds::SESSIONS);
    store.set_user_active("dora", false).await.unwrap();
    step("set_user_active", counts(&store), user_changed);
    store
        .set_user_roles("dora", &["admin".into()])
        .await
        .unwrap();
    step(
        "set_user_roles",
        counts(&store),
        user_changed | Kinds::ADDED,
    );
    store
        .set_permission_roles("view-import-operations", &["admin".into()])
        .await
        .unwrap();
    step("set_permission_roles", counts(&store), access);
    store
        .upsert_operations(&ops(vec![operation(
            &meteor_id(1),
            "2021-10-27T11:26:24.430Z",
        )]))
        .await
        .unwrap();
    step("upsert_operations", counts(&store), Kinds::OPERATIONS);
    store.remove_operation(&meteor_id(1)).await.unwrap();
    step("remove_operation", counts(&store), Kinds::OPERATIONS);
    store.remove_user("dora").await.unwrap();
    step("remove_user", counts(&store), user_changed);
}

async fn roles_given_to_users_are_created(db: TestDb) {
    let store = db.open().await;
    store
        .create_user(&new_user("bob", &["user", "auditor"]))
        .await
        .unwrap();
    assert!(
        store
            .set_user_roles("bob", &["user".into(), "reviewer".into()])
            .await
            .unwrap()
    );
    let roles = store.list_roles().await.unwrap();
    assert!(roles.contains(&"auditor".to_owned()) && roles.contains(&"reviewer".to_owned()));
    assert_eq!(
        store.user_by_username("bob").await.unwrap().unwrap().roles,
        ["user", "reviewer"]
    );
}

async fn sessions_are_found_by_user_and_hash_only(db: TestDb) {
    let store = db.open().await;
    let alice = new_user("alice", &["admin"]);
    let bob = new_user("bob", &["user"]);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    store
        .insert_session(&session(&alice.id, "alice-token", TokenKind::Login, None))
        .await
        .unwrap();
    let hash = importops::domain::secrets::hash_token("alice-token");

    let found = store.find_session(&alice.id, &hash).await.unwrap().unwrap();
    assert_eq!(found.user_id, alice.id);
    assert_eq!(found.username.as_deref(), Some("alice"));
    assert_eq!(found.roles, ["admin"]);
    assert_eq!(
        (found.kind, found.issued_at_ms, found.expires_at_ms),
        (TokenKind::Login, 1_000, None)
    );
    // Another user's id with alice's token, or alice's id with another token: nothing.
    assert_eq!(store.find_session(&bob.id, &hash).await.unwrap(), None);
    let other = importops::domain::secrets::hash_token("other");
    assert_eq!(store.find_session(&alice.id, &other).await.unwrap(), None);
}

async fn sessions_are_revoked_by_name_hash_or_all(db: TestDb) {
    let store = db.open().await;
    let alice = new_user("alice", &["admin"]);
    store.create_user(&alice).await.unwrap();
    for (token, kind, name) in [
        ("t1", TokenKind::Login, None),
        ("t2", TokenKind::Login, None),
        ("t3", TokenKind::Personal, Some("ci")),
        ("t4", TokenKind::Personal, Some("cron")),
    ] {
        store
            .insert_session(&session(&alice.id, token, kind, name))
            .await
            .unwrap();
    }
    let listed = store.list_sessions(&alice.id).await.unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[2].name.as_deref(), Some("ci"));
    assert_eq!(
        store
            .revoke_sessions(&alice.id, &Revoke::Name("ci".into()))
            .await
            .unwrap(),
        1
    );
    let hash = importops::domain::secrets::hash_token("t1");
    assert_eq!(
        store
            .revoke_sessions(&alice.id, &Revoke::Hash(hash))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .revoke_sessions(&alice.id, &Revoke::Name("nope".into()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_sessions(&alice.id, &Revoke::All)
            .await
            .unwrap(),
        2
    );
    assert!(store.list_sessions(&alice.id).await.unwrap().is_empty());
}

async fn a_personal_token_name_is_unique_per_user(db: TestDb) {
    let store = db.open().await;
    let alice = new_user("alice", &["admin"]);
    let bob = new_user("bob", &["admin"]);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    store
        .insert_session(&session(&alice.id, "a", TokenKind::Personal, Some("ci")))
        .await
        .unwrap();
    store
        .insert_session(&session(&bob.id, "b", TokenKind::Personal, Some("ci")))
        .await
        .unwrap();
    let err = store
        .insert_session(&session(&alice.id, "c", TokenKind::Personal, Some("ci")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

async fn removing_a_user_removes_its_sessions(db: TestDb) {
    let store = db.open().await;
    let alice = new_user("alice", &["admin"]);
    store.create_user(&alice).await.unwrap();
    store
        .insert_session(&session(&alice.id, "a", TokenKind::Login, None))
        .await
        .unwrap();
    store.remove_user("alice").await.unwrap();
    assert!(store.list_sessions(&alice.id).await.unwrap().is_empty());
    // The same id and token can no longer be found, even if a user of that id came back.
    store
        .create_user(&NewUser {
            username: "alice2".into(),
            ..alice.clone()
        })
        .await
        .unwrap();
    let hash = importops::domain::secrets::hash_token("a");
    assert_eq!(store.find_session(&alice.id, &hash).await.unwrap(), None);
}

async fn unknown_permissions_are_none(db: TestDb) {
    let store = db.open().await;
    assert_eq!(
        store.permission_roles("no-such-permission").await.unwrap(),
        None
    );
    assert!(
        !store
            .set_permission_roles("no-such-permission", &["admin".into()])
            .await
            .unwrap()
    );
}

fn ops(docs: Vec<serde_json::Value>) -> Vec<Operation> {
    parse_batch(&serde_json::to_string(&docs).unwrap(), 0).unwrap()
}

async fn operations_come_newest_first_ties_in_stored_order(db: TestDb) {
    let store = db.open().await;
    let same = "2022-01-01T00:00:00.000Z";
    store
        .upsert_operations(&ops(vec![
            operation(&meteor_id(4), same),
            operation(&meteor_id(2), "2021-01-01T00:00:00.000Z"),
            operation(&meteor_id(3), same),
            operation(&meteor_id(1), "2023-01-01T00:00:00.000Z"),
        ]))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .latest_operations(3)
        .await
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, [1, 4, 3].map(meteor_id));
    assert_eq!(store.count_operations().await.unwrap(), 4);
}

async fn upserts_count_new_and_replaced(db: TestDb) {
    let store = db.open().await;
    let first: Vec<_> = (0..1500)
        .map(|i| operation(&meteor_id(i), "2022-01-01T00:00:00.000Z"))
        .collect();
    let report = store.upsert_operations(&ops(first)).await.unwrap();
    assert_eq!(
        report,
        LoadReport {
            inserted: 1500,
            updated: 0
        }
    );
    let second: Vec<_> = (1000..2100)
        .map(|i| operation(&meteor_id(i), "2022-01-02T00:00:00.000Z"))
        .collect();
    let report = store.upsert_operations(&ops(second)).await.unwrap();
    assert_eq!(
        report,
        LoadReport {
            inserted: 600,
            updated: 500
        }
    );
    assert_eq!(store.count_operations().await.unwrap(), 2100);
    // Replaced operations (updated_at now newest) keep their first-stored order.
    let latest = store.latest_operations(2).await.unwrap();
    assert!(latest[0].contains(&meteor_id(1000)) && latest[1].contains(&meteor_id(1001)));
}

async fn operations_are_removed_by_id(db: TestDb) {
    let store = db.open().await;
    store
        .upsert_operations(&ops(vec![operation(
            &meteor_id(1),
            "2022-01-01T00:00:00.000Z",
        )]))
        .await
        .unwrap();
    assert!(store.remove_operation(&meteor_id(1)).await.unwrap());
    assert!(!store.remove_operation(&meteor_id(1)).await.unwrap());
    assert_eq!(store.count_operations().await.unwrap(), 0);
}

/// Sends `chunks` through a bounded channel, as the batch reader does, then `last` if any.
fn stream(
    chunks: Vec<Vec<Operation>>,
    last: Option<&'static str>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Operation>, &'static str>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        if let Some(fault) = last {
            let _ = tx.send(Err(fault)).await;
        }
    });
    rx
}

fn chunk(ids: std::ops::Range<usize>, updated_at: &str) -> Vec<Operation> {
    ops(ids.map(|i| operation(&meteor_id(i), updated_at)).collect())
}

async fn streamed_upserts_commit_at_the_end_or_not_at_all(db: TestDb) {
    let store = db.open().await;
    let day1 = "2022-01-01T00:00:00.000Z";
    let report = store
        .upsert_operation_stream(stream(
            vec![chunk(0..1000, day1), chunk(1000..1500, day1)],
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        report,
        LoadReport {
            inserted: 1500,
            updated: 0
        }
    );
    let before = store.latest_operations(2000).await.unwrap();

    // A fault after chunks were written: none of them stays, the stored ones are unchanged.
    let day2 = "2022-01-02T00:00:00.000Z";
    let err = store
        .upsert_operation_stream(stream(
            vec![chunk(1000..2000, day2), chunk(2000..2100, day2)],
            Some("record 2101: bad"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Input("record 2101: bad")),
        "{err:?}"
    );
    assert_eq!(store.latest_operations(2000).await.unwrap(), before);

    let report = store
        .upsert_operation_stream(stream(
            vec![chunk(1000..2000, day2), chunk(2000..2100, day2)],
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        report,
        LoadReport {
            inserted: 600,
            updated: 500
        }
    );
    assert_eq!(store.count_operations().await.unwrap(), 2100);
    let report = store.upsert_operation_stream(stream(vec![], None)).await;
    assert_eq!(report.unwrap(), LoadReport::default());
}

async fn a_bad_record_late_in_a_large_batch_writes_nothing(db: TestDb) {
    let store = db.open().await;
    const N: usize = 20_000;
    let mut text: String = (0..N)
        .map(|i| operation(&meteor_id(i), "2022-01-01T00:00:00.000Z").to_string() + "\n")
        .collect();
    text.push_str("{\"type\":\"CSV\"}\n");
    let chunks =
        importops::batch::operation_chunks(std::io::Cursor::new(text), 0, std::sync::Arc::new(()))
            .unwrap();
    let err = store.upsert_operation_stream(chunks).await.unwrap_err();
    let StreamError::Input(err) = err else {
        panic!("not the input's fault: {err:?}");
    };
    assert!(
        err.to_string()
            .starts_with(&format!("line {}: importerKey is missing", N + 1)),
        "{err}"
    );
    assert_eq!(store.count_operations().await.unwrap(), 0);
}

/// "20 newest by _updatedAt, ties in stored order" reads the index, not the table.
async fn the_latest_query_uses_its_index(db: TestDb) {
    let store: Store = db.open().await;
    let plan: String = match store.backend() {
        importops::store::Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
                "EXPLAIN QUERY PLAN SELECT doc FROM import_operations \
                 ORDER BY updated_at DESC, seq ASC LIMIT 20",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
        importops::store::Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            // The planner prefers a scan on a tiny table; ask whether the index can serve.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut conn)
                .await
                .unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(
                "EXPLAIN SELECT doc FROM import_operations \
                 ORDER BY updated_at DESC, seq ASC LIMIT 20",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
    };
    assert!(plan.contains("import_operations_latest"), "{plan}");
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
        "{plan}"
    );
}

/// Through a transaction pooler (`--postgres-pooler transaction`), two replicas starting at
/// once on an empty database both migrate it (one waits for the other's transaction-level
/// lock), and what they write is what sqlx's own migrator expects: a replica that connects
/// directly opens the same database without a complaint, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_migrations_take_turns_and_agree_with_sqlx() {
    use importops::config::PostgresPooler;
    let Some(db) = TestDb::postgres_pooled().await else {
        return;
    };
    let (a, b) = tokio::join!(
        Store::open_with(&db.url, None, PostgresPooler::Transaction),
        Store::open_with(&db.url, None, PostgresPooler::Transaction),
    );
    let (a, b) = (
        a.expect("the first replica"),
        b.expect("the second replica"),
    );
    assert_eq!(a.list_permissions().await.unwrap().len(), 172);
    let direct = Store::open(&db.url)
        .await
        .expect("sqlx's migrator accepts the bookkeeping");
    direct.migrate().await.unwrap();
    for store in [a, b, direct] {
        store.close().await;
    }

    // And a database sqlx's migrator made is taken as it is.
    let Some(other) = TestDb::postgres().await else {
        return;
    };
    other.open().await.close().await;
    let pooled = Store::open_with(&other.url, None, PostgresPooler::Transaction)
        .await
        .expect("the pooled migrations accept sqlx's bookkeeping");
    let mut conn = sqlx::PgConnection::connect(&other.url).await.unwrap();
    let (applied, failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT success) FROM _sqlx_migrations",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!((applied, failed), (migrations as i64, 0));
    pooled.close().await;
}
