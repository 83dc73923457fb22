//! Writes under concurrency and bad input at the database edge, on both backends, through
//! HTTP: concurrent upserts of one operation keep every field, concurrent `import.new` leave
//! one valid operation, and a NUL character is a 400, never a 500 (RELIABILITY.md).

mod common;

use std::sync::Arc;

use common::{Login, TestApp, TestDb, meteor_id};
use importops::config::Settings;
use serde_json::{Value, json};

on_both_backends!(
    concurrent_upserts_of_one_operation_keep_every_field,
    concurrent_creates_of_one_new_operation_keep_every_field,
    concurrent_import_new_leave_exactly_one_valid_operation,
    a_nul_character_in_a_body_is_a_400_on_every_route_with_a_body,
);

// As through a transaction pooler (`--postgres-pooler transaction`): the same row and table
// locks, taken inside the transactions that pooled writes begin.
on_postgres_pooled!(
    concurrent_upserts_of_one_operation_keep_every_field,
    concurrent_creates_of_one_new_operation_keep_every_field,
    concurrent_import_new_leave_exactly_one_valid_operation,
);

const UPSERT: &str = "/api/v1/import.operations.upsert";

async fn app(db: &TestDb) -> (Arc<TestApp>, Login) {
    let app = TestApp::with_settings(db, Settings::default().without_rate_limit()).await;
    let admin = app.admin().await;
    (Arc::new(app), admin)
}

/// The stored document of the operation `id`, parsed.
async fn stored(app: &TestApp, id: &str) -> Value {
    let doc = app
        .store
        .operation_by_id(id)
        .await
        .expect("read the operation")
        .expect("the operation exists");
    serde_json::from_str(&doc).unwrap()
}

/// How many of the fields `task{t}_{i}` (t < tasks, i < each) the document holds.
fn fields_kept(doc: &Value, tasks: usize, each: usize) -> usize {
    (0..tasks)
        .flat_map(|t| (0..each).map(move |i| format!("task{t}_{i}")))
        .filter(|key| doc.get(key) == Some(&json!(true)))
        .count()
}

async fn concurrent_upserts_of_one_operation_keep_every_field(db: TestDb) {
    let (app, admin) = app(&db).await;
    let id = meteor_id(1);
    let created = app
        .post(
            UPSERT,
            Some(&admin),
            &json!({"_id": id, "type": "api", "importerKey": "api", "status": "importer_new"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);

    const TASKS: usize = 8;
    const EACH: usize = 50;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let (app, admin, id) = (app.clone(), admin.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let answer = app
                    .post(
                        UPSERT,
                        Some(&admin),
                        &json!({"_id": id, format!("task{t}_{i}"): true}),
                    )
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let doc = stored(&app, &id).await;
    assert_eq!(fields_kept(&doc, TASKS, EACH), TASKS * EACH);
}

async fn concurrent_creates_of_one_new_operation_keep_every_field(db: TestDb) {
    let (app, admin) = app(&db).await;
    const CREATORS: usize = 4;
    const ROUNDS: usize = 30;
    let mut kept = 0;
    for round in 0..ROUNDS {
        let id = meteor_id(1000 + round);
        let mut handles = Vec::new();
        for t in 0..CREATORS {
            let (app, admin, id) = (app.clone(), admin.clone(), id.clone());
            handles.push(tokio::spawn(async move {
                let answer = app
                    .post(
                        UPSERT,
                        Some(&admin),
                        &json!({"_id": id, "type": "api", "importerKey": "api",
                            "status": "importer_new", format!("task{t}_0"): true}),
                    )
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        kept += fields_kept(&stored(&app, &id).await, CREATORS, 1);
    }
    assert_eq!(kept, CREATORS * ROUNDS);
}

async fn concurrent_import_new_leave_exactly_one_valid_operation(db: TestDb) {
    let (app, admin) = app(&db).await;
    for round in 0..5 {
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (app, admin) = (app.clone(), admin.clone());
            handles.push(tokio::spawn(async move {
                let answer = app
                    .post("/api/v1/import.new", Some(&admin), &json!({}))
                    .await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let docs = app.store.latest_operations(1_000).await.unwrap();
        assert_eq!(docs.len(), 8 * (round + 1));
        let valid = docs
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|d| d["valid"] == json!(true))
            .count();
        assert_eq!(valid, 1, "round {round}");
    }
}

async fn a_nul_character_in_a_body_is_a_400_on_every_route_with_a_body(db: TestDb) {
    let (app, admin) = app(&db).await;
    let nul = "a\u{0}b";
    let cases = [
        ("/api/v1/login", json!({"user": nul, "password": "secret"})),
        ("/api/v1/login", json!({"user": "admin", "password": nul})),
        (
            "/api/v1/users.create",
            json!({"username": nul, "email": "x@example.com", "password": "p", "name": "x"}),
        ),
        ("/api/v1/users.delete", json!({"userId": nul})),
        ("/api/v1/users.delete", json!({"username": nul})),
        (
            UPSERT,
            json!({"type": "api", "importerKey": "api", "status": "importer_new", "note": nul}),
        ),
        (UPSERT, json!({"_id": meteor_id(7), nul: 1})),
        (
            "/api/v1/permissions.update",
            json!({"permissions": [{"_id": nul, "roles": ["admin"]}]}),
        ),
        (
            "/api/v1/permissions.update",
            json!({"permissions": [{"_id": "view-logs", "roles": [nul]}]}),
        ),
    ];
    for (path, body) in cases {
        let answer = app.post(path, Some(&admin), &body).await;
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.body);
        let json = answer.json();
        assert_eq!(json["success"], json!(false), "{path}: {}", answer.body);
        assert_eq!(json["errorType"], json!("invalid-params"), "{path}");
        assert!(
            json["error"].as_str().unwrap().contains("U+0000"),
            "{path}: {}",
            answer.body
        );
    }
    // Nothing was written, and the server still answers.
    assert_eq!(app.store.count_operations().await.unwrap(), 0);
    let me = app.get("/api/v1/me", Some(&admin)).await;
    assert_eq!(me.status, 200, "{}", me.body);
}
