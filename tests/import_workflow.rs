//! The import workflow through HTTP (docs/compatibility.md section 11): upload, prepare,
//! select, import; the `api` importer's `import.addUsers` / `import.run`; the pending
//! importers; every route's errors; Rocket.Chat's own end-to-end assertions; on SQLite and
//! Postgres.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::archives::{csv_archive, slack_archive, slack_users_csv, zip_of};
use common::{Answer, Login, TestApp, TestDb};
use importops::config::Settings;
use importops::importer::workflow;
use serde_json::{Value, json};

const FORBIDDEN: &str =
    "User does not have the permissions required for this action [error-unauthorized]";

struct Env {
    app: TestApp,
    admin: Login,
    dir: tempfile::TempDir,
}

async fn env(db: &TestDb) -> Env {
    env_with(db, |s| s).await
}

async fn env_with(db: &TestDb, change: impl FnOnce(Settings) -> Settings) -> Env {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = change(Settings {
        import_file_dir: Some(dir.path().to_owned()),
        ..Settings::default().without_rate_limit()
    });
    let app = TestApp::with_settings(db, settings).await;
    // A second environment on the same database needs an administrator of its own.
    let taken = app.store.user_by_username("admin").await.unwrap().is_some();
    let admin = if taken {
        app.user(
            &format!("admin.{}", app.store.list_users().await.unwrap().len()),
            &["admin"],
        )
        .await
    } else {
        app.admin().await
    };
    Env { app, admin, dir }
}

impl Env {
    async fn get(&self, path: &str) -> Answer {
        self.app.get(path, Some(&self.admin)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.app.post(path, Some(&self.admin), &body).await
    }

    async fn upload(&self, bytes: &[u8], file_name: &str, key: &str) -> Answer {
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.post(
            "/api/v1/uploadImportFile",
            json!({"binaryContent": content, "contentType": "application/zip",
                "fileName": file_name, "importerKey": key}),
        )
        .await
    }

    async fn progress(&self) -> Value {
        let answer = self.get("/api/v1/getImportProgress").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    async fn current(&self) -> Value {
        self.get("/api/v1/getCurrentImportOperation").await.json()["operation"].clone()
    }

    /// Polls `getImportProgress` until its step is one of `steps` (at most 60 s).
    async fn wait_for(&self, steps: &[&str]) -> Value {
        let start = Instant::now();
        loop {
            let progress = self.progress().await;
            let step = progress["step"].as_str().unwrap_or_default().to_owned();
            if steps.contains(&step.as_str()) {
                return progress;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "still at {step} after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_error(answer: &Answer, expected: Value) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json(), expected, "{}", answer.body);
}

/// A CSV archive uploaded, prepared, partly selected and imported; counts checked against
/// the generator's.
async fn a_csv_archive_is_uploaded_prepared_and_imported(db: TestDb) {
    let env = env(&db).await;
    let generated = csv_archive(7, 12, 4, 300, 20);
    let bytes = generated.archive.bytes();
    let expected = generated.expected;

    let answer = env.upload(&bytes, "export.zip", "csv").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"success": true}));
    let op = env.current().await;
    assert_eq!(op["status"], "importer_file_loaded");
    assert_eq!(op["type"], "CSV");
    assert_eq!(op["importerKey"], "csv");
    assert_eq!(op["contentType"], "application/zip");
    assert_eq!(op["valid"], true);
    let file = op["file"].as_str().unwrap();
    assert!(
        file.ends_with(&format!("_{}_export.zip", env.admin.user_id)),
        "{file}"
    );
    assert_eq!(std::fs::read(env.dir.path().join(file)).unwrap(), bytes);

    let answer = env.get("/api/v1/getImportFileData").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = answer.json();
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "users",
            "channels",
            "message_count",
            "contacts",
            "success"
        ]
    );
    assert_eq!(data["name"], "CSV");
    let user_ids: Vec<&str> = data["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(user_ids, expected.user_ids);
    assert_eq!(
        data["users"][0],
        json!({"user_id": expected.user_ids[0], "username": expected.user_ids[0],
            "email": format!("{}@example.com", expected.user_ids[0]), "is_deleted": false,
            "is_bot": false, "do_import": true, "is_email_taken": false})
    );
    let channels = data["channels"].as_array().unwrap();
    let names: Vec<&str> = channels
        .iter()
        .filter(|c| c["is_direct"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected.channel_names);
    assert_eq!(
        channels.last().unwrap(),
        &json!({"channel_id": "__directMessages__", "name": "Direct Messages",
            "is_archived": false, "do_import": true, "is_private": true, "is_direct": true})
    );
    assert_eq!(data["message_count"], expected.staged_messages);
    let op = env.current().await;
    assert_eq!(op["status"], "importer_user_selection");
    assert_eq!(op["count"]["users"], expected.users);
    assert_eq!(op["count"]["channels"], expected.channels);
    assert_eq!(op["count"]["messages"], expected.messages);
    assert_eq!(op["count"]["total"], expected.total);

    // Everything but one user, and the first channel and the DMs.
    let left_out = &expected.user_ids[0];
    let users: Vec<&String> = expected.user_ids.iter().skip(1).collect();
    let first = channels[0]["channel_id"].as_str().unwrap().to_owned();
    let answer = env
        .post(
            "/api/v1/startImport",
            json!({"input": {"users": {"all": false, "list": users},
                "channels": {"all": false, "list": [first, "__directMessages__"]}}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"success": true}));
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    assert_eq!(progress["key"], "csv");
    assert_eq!(progress["name"], "CSV");
    // Every selected user and channel (the first, and one room per pair of DM partners), every
    // message attempted.
    let completed = progress["count"]["completed"].as_u64().unwrap();
    let rooms = completed - (expected.users - 1) - expected.staged_messages;
    assert!((2..=1 + 20).contains(&rooms), "{progress}");
    let errors = progress["count"]["error"].as_u64().unwrap();
    assert!(errors > 0, "messages of channels not imported fail");

    // The users are importops users; the one left out is not.
    for username in &expected.user_ids[1..] {
        let user = env.app.store.user_by_username(username).await.unwrap();
        let user = user.unwrap_or_else(|| panic!("{username} imported"));
        assert_eq!(user.emails[0].address, format!("{username}@example.com"));
        assert!(user.active);
        assert_eq!(user.roles, ["user"]);
        let ids = env.app.store.user_import_ids(username).await.unwrap();
        assert_eq!(ids, Some(vec![username.clone()]));
    }
    assert!(
        env.app
            .store
            .user_by_username(left_out)
            .await
            .unwrap()
            .is_none()
    );
    // What succeeded is gone from staging; what failed is kept with its errors.
    let failed = env.app.store.failed_staged(100_000).await.unwrap();
    assert_eq!(failed.len() as u64, errors);
    assert!(failed.iter().all(|(kind, _)| kind == "message"));
    assert!(
        failed
            .iter()
            .any(|(_, e)| e.contains("importer-message-unknown-room")),
        "{failed:?}"
    );
    use importops::importer::DataType;
    assert_eq!(env.app.store.count_staged(DataType::User).await.unwrap(), 0);
    // A user imported again is matched, not duplicated: the same archive, all users.
    let answer = env.upload(&bytes, "again.zip", "csv").await;
    assert_eq!(answer.status, 200);
    assert_eq!(env.get("/api/v1/getImportFileData").await.status, 200);
    let answer = env
        .post(
            "/api/v1/startImport",
            json!({"input": {"users": {"all": true}, "channels": {"all": true}}}),
        )
        .await;
    assert_eq!(answer.status, 200);
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done");
    assert_eq!(progress["count"]["error"], 0, "{progress}");
    let users = env.app.store.list_users().await.unwrap();
    assert_eq!(
        users.len() as u64,
        expected.users + 1,
        "the admin and each user once"
    );
    // The finished operation is listed first; the first one is invalid.
    let latest = env.get("/api/v1/getLatestImportOperations").await.json();
    assert_eq!(latest[0]["status"], "importer_done");
    assert_eq!(latest[1]["valid"], false);
}

/// An existing user is matched by e-mail, then by username ignoring case.
async fn existing_users_are_matched_by_email_then_username(db: TestDb) {
    let env = env(&db).await;
    env.app.user("Alice", &["user"]).await;
    importops::accounts::create_user(
        &env.app.store,
        importops::accounts::NewAccount {
            username: "robert".into(),
            email: Some("BOB@example.com".into()),
            active: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let archive = zip_of(&[(
        "users.csv",
        b"alice,alice@example.com,Alice Smith\nbob,bob@example.com,Bob Jones\ncarol,carol@example.com,Carol\n",
    )]);
    let bytes = archive.bytes();
    assert_eq!(env.upload(&bytes, "u.zip", "csv").await.status, 200);
    let data = env.get("/api/v1/getImportFileData").await.json();
    assert_eq!(data["users"].as_array().unwrap().len(), 3);
    let answer = env
        .post(
            "/api/v1/startImport",
            json!({"input": {"users": {"all": true}}}),
        )
        .await;
    assert_eq!(answer.status, 200);
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    assert_eq!(progress["count"]["completed"], 3);
    // Alice (by username, any case) got the address; robert (by address) became bob.
    let alice = env
        .app
        .store
        .user_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.emails[0].address, "alice@example.com");
    assert_eq!(alice.name.as_deref(), Some("Alice Smith"));
    let bob = env
        .app
        .store
        .user_by_username("bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.emails[0].address, "bob@example.com");
    assert!(
        env.app
            .store
            .user_by_username("robert")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.app
            .store
            .user_by_username("carol")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(env.app.store.list_users().await.unwrap().len(), 4);
}

/// Every error of the workflow routes, in Rocket.Chat's words.
async fn the_workflow_routes_answer_rocketchats_errors(db: TestDb) {
    let env = env(&db).await;
    for (path, method) in [
        ("/api/v1/getImportFileData", "getImportFileData"),
        ("/api/v1/getImportProgress", "getImportProgress"),
    ] {
        assert_error(
            &env.get(path).await,
            json!({"success": false,
                "error": "Import Operation Not Found [error-operation-not-found]",
                "errorType": "error-operation-not-found", "details": method}),
        );
    }
    assert_error(
        &env.post("/api/v1/startImport", json!({"input": {}})).await,
        json!({"success": false, "error": "Import Operation Not Found [error-operation-not-found]",
            "errorType": "error-operation-not-found", "details": "startImport"}),
    );
    // An unknown importer: refused before any operation is made.
    assert_error(
        &env.upload(b"x", "a.zip", "nope").await,
        json!({"success": false,
            "error": "The importer (nope) has no import class defined. [error-importer-not-defined]",
            "errorType": "error-importer-not-defined", "details": "uploadImportFile"}),
    );
    assert_error(
        &env.post(
            "/api/v1/downloadPublicImportFile",
            json!({"fileUrl": "https://example.com/a.zip", "importerKey": "nope"}),
        )
        .await,
        json!({"success": false,
            "error": "The importer (nope) has no import class defined. [error-importer-not-defined]",
            "errorType": "error-importer-not-defined", "details": "downloadImportFile"}),
    );
    assert_eq!(
        env.get("/api/v1/getCurrentImportOperation").await.json(),
        json!({"success": true})
    );
    // Body schemas: every error of the shared validator, the first of startImport's own.
    assert_error(
        &env.post(
            "/api/v1/uploadImportFile",
            json!({"fileName": [1], "extra": 1}),
        )
        .await,
        json!({"success": false, "errorType": "invalid-params", "error":
            "must have required property 'binaryContent'\nmust have required property 'contentType'\nmust have required property 'importerKey'\nmust NOT have additional properties\n/fileName must be string"}),
    );
    assert_error(
        &env.post("/api/v1/downloadPublicImportFile", json!({"fileUrl": 5}))
            .await,
        json!({"success": false, "errorType": "invalid-params",
            "error": "must have required property 'importerKey'"}),
    );
    for (body, message) in [
        (json!({}), "must have required property 'input'"),
        (json!({"input": 1}), "/input must be object"),
        (
            json!({"input": {}, "x": 1}),
            "must NOT have additional properties",
        ),
        (
            json!({"input": {"users": []}}),
            "/input/users must be object",
        ),
        (
            json!({"input": {"users": {"all": "maybe"}}}),
            "/input/users/all must be boolean",
        ),
        (
            json!({"input": {"channels": {"list": "a"}}}),
            "/input/channels/list must be array",
        ),
        (
            json!({"input": {"contacts": {"list": [{}]}}}),
            "/input/contacts/list/0 must be string",
        ),
    ] {
        assert_error(
            &env.post("/api/v1/startImport", body.clone()).await,
            json!({"success": false, "errorType": "invalid-params", "error": message}),
        );
    }
    assert_error(
        &env.post("/api/v1/downloadPendingFiles", json!({"a": 1}))
            .await,
        json!({"success": false, "errorType": "invalid-params",
            "error": "must NOT have additional properties"}),
    );
    // import.addUsers and import.run without an operation.
    let user = json!({"emails": ["a@example.com"], "importIds": ["a"]});
    assert_error(
        &env.post("/api/v1/import.addUsers", json!({"users": [user]}))
            .await,
        json!({"success": false, "error": "Import operation not initialized."}),
    );
    assert_error(
        &env.post("/api/v1/import.run", json!({})).await,
        json!({"success": false, "error": "error-operation-not-found"}),
    );
    for (body, message) in [
        (json!({}), "must have required property 'users'"),
        (json!({"users": {}}), "/users must be array"),
        (
            json!({"users": [{"emails": []}]}),
            "/users/0 must have required property 'importIds'",
        ),
        (
            json!({"users": [{"emails": "a", "importIds": []}]}),
            "/users/0/emails must be array",
        ),
        (
            json!({"users": [{"emails": [], "importIds": [], "utcOffset": "x"}]}),
            "/users/0/utcOffset must be number",
        ),
        (
            json!({"users": [{"emails": [], "importIds": [], "deleted": 3}]}),
            "/users/0/deleted must be boolean",
        ),
    ] {
        assert_error(
            &env.post("/api/v1/import.addUsers", body.clone()).await,
            json!({"success": false, "errorType": "invalid-params", "error": message}),
        );
    }
    // A user without the permission: 403 before the body is looked at (E2E 10).
    let normal = env.app.user("normal", &["user"]).await;
    let answer = env
        .app
        .post(
            "/api/v1/uploadImportFile",
            Some(&normal),
            &json!({"binaryContent": "ZXJzLmNzdlBLBQYAAAAAAQABADcAAAAmAQAAAAA=",
                "contentType": "application/zip", "fileName": "users11.zip",
                "importerKey": "csv"}),
        )
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json(), json!({"success": false, "error": FORBIDDEN}));
    // E2E 4.
    let answer = env
        .app
        .get("/api/v1/getLatestImportOperations", Some(&normal))
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.json()["error"], FORBIDDEN);
    for path in [
        "/api/v1/startImport",
        "/api/v1/import.run",
        "/api/v1/import.addUsers",
        "/api/v1/downloadPendingFiles",
        "/api/v1/downloadPendingAvatars",
        "/api/v1/downloadPublicImportFile",
    ] {
        assert_eq!(
            env.app.post(path, Some(&normal), &json!({})).await.status,
            403,
            "{path}"
        );
        assert_eq!(
            env.app.post(path, None, &json!({})).await.status,
            401,
            "{path}"
        );
    }
    assert_eq!(
        env.app
            .get("/api/v1/getImportFileData", Some(&normal))
            .await
            .status,
        403
    );
    // Nothing made an operation.
    assert_eq!(env.app.store.count_operations().await.unwrap(), 0);
}

/// Bad archives and bad content: Rocket.Chat's errors or a failed operation, never a 5xx,
/// and the server answers meanwhile.
async fn bad_archives_fail_without_a_server_error(db: TestDb) {
    let env = env(&db).await;
    // Not base64 at all: an empty file, which is not a zip.
    let answer = env
        .post(
            "/api/v1/uploadImportFile",
            json!({"binaryContent": "!!!!", "contentType": "", "fileName": "x.zip",
                "importerKey": "csv"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(env.current().await.get("contentType").is_none());
    let answer = env.get("/api/v1/getImportFileData").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["success"], false);
    assert!(
        answer.json().get("errorType").is_none(),
        "a plain error: {}",
        answer.body
    );
    // Not a zip.
    assert_eq!(
        env.upload(b"hello, not a zip", "x.zip", "csv").await.status,
        200
    );
    let answer = env.get("/api/v1/getImportFileData").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        env.get("/api/v1/getLatestImportOperations").await.status,
        200
    );
    // A bad users.csv: the parser's error, the status left at its preparing step.
    let archive = zip_of(&[("users.csv", b"a,a@example.com,A\nb,b@example.com\n")]);
    let bytes = archive.bytes();
    assert_eq!(env.upload(&bytes, "bad.zip", "csv").await.status, 200);
    let answer = env.get("/api/v1/getImportFileData").await;
    assert_error(
        &answer,
        json!({"success": false, "error": "Invalid Record Length: expect 3, got 2 on line 2"}),
    );
    assert_eq!(env.current().await["status"], "importer_preparing_users");
    assert_eq!(
        env.get("/api/v1/getImportFileData").await.json(),
        json!({"waiting": true, "success": true})
    );
    // Nothing to import: failed, then the selection (empty) as Rocket.Chat answers it.
    let archive = zip_of(&[("readme.txt", b"hello")]);
    let bytes = archive.bytes();
    assert_eq!(env.upload(&bytes, "empty.zip", "csv").await.status, 200);
    let data = env.get("/api/v1/getImportFileData").await;
    assert_eq!(data.status, 200, "{}", data.body);
    assert_eq!(
        data.json(),
        json!({"name": "CSV", "users": [], "channels": [], "message_count": 0, "contacts": [],
            "success": true})
    );
    // A file larger than the limit.
    let small = env_with(&db, |s| Settings {
        import_max_bytes: 10,
        ..s
    })
    .await;
    let answer = small.upload(&[7u8; 64], "big.zip", "csv").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(small.current().await["status"], "importer_import_failed");
    // No file outside the folder.
    let answer = env.upload(b"x", "../../escape.zip", "csv").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["errorType"], "error-invalid-file-name");
}

/// The archive-level bad inputs through HTTP: a truncated zip, a zip bomb, entries that leave
/// the archive, non-UTF-8 text, invalid JSON in a Slack file, a selection naming unknown ids,
/// and an invalidated operation. Each is a 400 in Rocket.Chat's shape (or the import simply
/// finds nothing to take), never a 5xx; nothing lands outside the import folder; every other
/// route keeps answering.
async fn bad_archives_through_http_are_clear_errors(db: TestDb) {
    let env = env_with(&db, |s| Settings {
        import_max_bytes: 1 << 20,
        ..s
    })
    .await;
    let outside = env.dir.path().parent().unwrap().to_owned();
    let stamp = format!("importops-escape-{}", std::process::id());
    let good = zip_of(&[("users.csv", b"alice,a@x.com,Alice\n")]).bytes();
    let mut rows = String::new();
    while rows.len() < 3 << 20 {
        rows.push_str("aaaaaaaaaaaaaaaaaaaa,aaaaaaaaaaaaaaaa@example.com,aaaaaaaaaaaaaaaaaaaa\n");
    }
    let bomb = zip_of(&[("users.csv", rows.as_bytes())]).bytes();
    assert!(bomb.len() < 64 * 1024, "a few KB that inflate to 3 MB");
    let up = format!("../{stamp}.csv");
    let absolute = format!("{}/{stamp}-abs.csv", outside.display());
    // What, the archive, what its error says, and the step it is left at (Rocket.Chat's:
    // the step reached when the parser threw).
    let started = "importer_preparing_started";
    let users = "importer_preparing_users";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 30].to_vec(),
            "zip format",
            started,
        ),
        ("bomb", bomb, "more than 1048576 bytes", users),
        (
            "parent",
            zip_of(&[("users.csv", b"a,a@x.com,A\n"), (&up, b"x,1,y\n")]).bytes(),
            "refused",
            started,
        ),
        (
            "absolute",
            zip_of(&[("users.csv", b"a,a@x.com,A\n"), (&absolute, b"x,1,y\n")]).bytes(),
            "refused",
            started,
        ),
        (
            "latin-1",
            zip_of(&[("users.csv", b"j\xfcrgen,j@x.com,J\xfcrgen\n")]).bytes(),
            "is not UTF-8 text",
            users,
        ),
    ];
    for (what, bytes, says, step) in cases {
        let answer = env.upload(&bytes, &format!("{what}.zip"), "csv").await;
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        let answer = env.get("/api/v1/getImportFileData").await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(answer.json()["success"], false, "{what}");
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(says), "{what}: {error}");
        assert!(!error.contains("panicked"), "{what}: {error}");
        // Nothing was staged, and the other routes answer meanwhile.
        let op = env.current().await;
        assert!(
            matches!(op["count"]["total"].as_u64(), None | Some(0)),
            "{what}: {op}"
        );
        assert_eq!(op["status"], step, "{what}");
        let latest = env.get("/api/v1/getLatestImportOperations").await;
        assert_eq!(latest.status, 200, "{what}");
    }
    assert!(!outside.join(format!("{stamp}.csv")).exists());
    assert!(!std::path::Path::new(&absolute).exists());
    // Only the uploaded archives are in the import folder.
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.ends_with(".zip"), "{name}");
    }

    // Invalid JSON in a Slack file: that file is skipped (as Rocket.Chat's parser does), the
    // rest prepared.
    let slack = zip_of(&[
        (
            "users.json",
            br#"[{"id":"U1","name":"ann","profile":{"email":"ann@x.com"}}]"#,
        ),
        ("channels.json", b"[{\"id\":\"C1\", oops"),
    ]);
    let bytes = slack.bytes();
    assert_eq!(env.upload(&bytes, "slack.zip", "slack").await.status, 200);
    let data = env.get("/api/v1/getImportFileData").await;
    assert_eq!(data.status, 200, "{}", data.body);
    assert_eq!(data.json()["users"].as_array().unwrap().len(), 1);
    assert_eq!(data.json()["channels"], json!([]));

    // A selection naming ids that were never staged imports none of them: the messages fail
    // for want of their room and author, and the import still ends.
    let generated = csv_archive(11, 5, 2, 40, 0);
    let bytes = generated.archive.bytes();
    assert_eq!(env.upload(&bytes, "export.zip", "csv").await.status, 200);
    assert_eq!(env.get("/api/v1/getImportFileData").await.status, 200);
    let users_before = env.app.store.list_users().await.unwrap().len();
    let answer = env
        .post(
            "/api/v1/startImport",
            json!({"input": {"users": {"all": false, "list": ["nobody"]},
                "channels": {"all": false, "list": ["no-such-channel"]}}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    assert_eq!(
        env.app.store.list_users().await.unwrap().len(),
        users_before
    );
    assert_eq!(
        progress["count"]["error"].as_u64(),
        Some(generated.expected.staged_messages),
        "{progress}"
    );

    // An operation invalidated while it waits (a bad users.csv leaves it preparing users, then
    // import.clear): getImportFileData says so.
    let archive = zip_of(&[("users.csv", b"a,a@example.com,A\nb,b@example.com\n")]);
    let bytes = archive.bytes();
    assert_eq!(env.upload(&bytes, "bad.zip", "csv").await.status, 200);
    assert_eq!(env.get("/api/v1/getImportFileData").await.status, 400);
    assert_eq!(env.current().await["status"], "importer_preparing_users");
    assert_eq!(
        env.post("/api/v1/import.clear", json!({})).await.status,
        200
    );
    assert_error(
        &env.get("/api/v1/getImportFileData").await,
        json!({"success": false, "error": "Invalid Import Operation [error-import-operation-invalid]",
            "errorType": "error-import-operation-invalid", "details": "getImportFileData"}),
    );
}

/// `import.new`, `import.addUsers`, `import.run`: users inserted, with their roles.
async fn the_api_importer_adds_and_runs_users(db: TestDb) {
    let env = env(&db).await;
    let answer = env.post("/api/v1/import.new", json!({})).await;
    assert_eq!(answer.status, 200);
    // E2E 7: the selection of an operation without a file is empty.
    let data = env.get("/api/v1/getImportFileData").await;
    assert_eq!(data.status, 200, "{}", data.body);
    assert_eq!(data.json()["users"], json!([]));
    assert_eq!(data.json()["message_count"], 0);
    assert_eq!(env.current().await["status"], "importer_user_selection");
    // Roles must exist.
    assert_error(
        &env.post(
            "/api/v1/import.addUsers",
            json!({"users": [{"emails": ["a@example.com"], "importIds": ["a"],
                    "roles": ["no-such-role"]}]}),
        )
        .await,
        json!({"success": false,
            "error": "One or more of the users have been assigned invalid roles."}),
    );
    assert_error(
        &env.post(
            "/api/v1/import.addUsers",
            json!({"users": [{"emails": [], "importIds": ["a"]}]}),
        )
        .await,
        json!({"success": false, "error": "Users are missing required data."}),
    );
    // An empty list: nothing checked, nothing done.
    assert_eq!(
        env.post("/api/v1/import.addUsers", json!({"users": []}))
            .await
            .status,
        200
    );
    let users = json!({"users": [
        {"emails": ["ann@example.com"], "importIds": ["ann"], "username": "ann",
            "name": "Ann", "password": "s3cret!", "roles": ["admin"]},
        {"emails": ["ben@example.com"], "importIds": ["ben"], "username": "ben", "deleted": true},
    ]});
    let answer = env.post("/api/v1/import.addUsers", users).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let op = env.current().await;
    assert_eq!(op["status"], "importer_user_selection");
    assert_eq!(op["count"]["users"], 2);
    assert_eq!(op["count"]["total"], 2);
    let answer = env.post("/api/v1/import.run", json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    assert_eq!(progress["key"], "api");
    assert_eq!(progress["name"], "API");
    assert_eq!(progress["count"]["completed"], 2);
    let ann = env
        .app
        .store
        .user_by_username("ann")
        .await
        .unwrap()
        .unwrap();
    let mut roles = ann.roles.clone();
    roles.sort();
    assert_eq!(roles, ["admin", "user"]);
    assert!(ann.active);
    // The password works for a login.
    let login = env
        .app
        .post(
            "/api/v1/login",
            None,
            &json!({"user": "ann", "password": "s3cret!"}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let ben = env
        .app
        .store
        .user_by_username("ben")
        .await
        .unwrap()
        .unwrap();
    assert!(!ben.active);
    // Finished: no more users, and import.run refuses the status.
    assert_error(
        &env.post(
            "/api/v1/import.addUsers",
            json!({"users": [{"emails": ["c@example.com"], "importIds": ["c"]}]}),
        )
        .await,
        json!({"success": false, "error": "The current import operation is already finished."}),
    );
    assert_error(
        &env.post("/api/v1/import.run", json!({})).await,
        json!({"success": false, "error": "error-invalid-operation-status"}),
    );
    // import.run inserts: a user who exists already is an error of that record.
    env.post("/api/v1/import.new", json!({})).await;
    env.post(
        "/api/v1/import.addUsers",
        json!({"users": [{"emails": ["ANN@example.com"], "importIds": ["ann2"], "username": "ann2"}]}),
    )
    .await;
    env.post("/api/v1/import.run", json!({})).await;
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done");
    assert_eq!(progress["count"]["error"], 1, "{progress}");
    assert!(
        env.app
            .store
            .user_by_username("ann2")
            .await
            .unwrap()
            .is_none()
    );
    let failed = env.app.store.failed_staged(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].1.contains("ANN@example.com"), "{failed:?}");
    // import.clear deletes what is staged.
    assert_eq!(
        env.post("/api/v1/import.clear", json!({})).await.status,
        200
    );
    assert!(env.app.store.failed_staged(10).await.unwrap().is_empty());
}

/// Rocket.Chat's end-to-end assertions (section 11): 1-3, 5-7; 4 and 10 are in the errors
/// test, 8 and 9 in the download test.
async fn rocketchats_end_to_end_assertions_hold(db: TestDb) {
    let env = env(&db).await;
    env.post("/api/v1/import.new", json!({})).await;
    let current = env.get("/api/v1/getCurrentImportOperation").await;
    assert_eq!(current.status, 200);
    assert_eq!(current.json()["success"], true);
    assert!(!current.json()["operation"].is_null());
    for path in [
        "/api/v1/downloadPendingFiles",
        "/api/v1/downloadPendingAvatars",
    ] {
        let answer = env
            .app
            .request(
                axum::http::Request::post(path)
                    .header("X-User-Id", &env.admin.user_id)
                    .header("X-Auth-Token", &env.admin.token)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.json(), json!({"count": 0, "success": true}));
    }
    let op = env.current().await;
    assert_eq!(op["type"], "Pending Avatars");
    assert_eq!(op["status"], "importer_done");
    let latest = env.get("/api/v1/getLatestImportOperations").await;
    assert_eq!(latest.status, 200);
    assert!(latest.json().is_array());
    let progress = env.progress().await;
    assert_eq!(progress["success"], true);
    for key in ["key", "name", "step"] {
        assert!(progress[key].is_string(), "{key}");
    }
    assert!(progress["count"].is_object());
    let data = env.get("/api/v1/getImportFileData").await;
    assert_eq!(data.status, 200, "{}", data.body);
    let data = data.json();
    assert_eq!(data["success"], true);
    assert!(data["users"].is_array());
    assert!(data["channels"].is_array());
    assert!(data["message_count"].as_u64().is_some());
}

/// Pending avatars: users given an avatar URL by an import are counted and handled.
async fn pending_avatars_are_counted_and_handled(db: TestDb) {
    let env = env(&db).await;
    env.post("/api/v1/import.new", json!({})).await;
    env.post(
        "/api/v1/import.addUsers",
        json!({"users": [{"emails": ["p@example.com"], "importIds": ["p"], "username": "p",
            "avatarUrl": "https://example.com/p.png"}]}),
    )
    .await;
    env.post("/api/v1/import.run", json!({})).await;
    env.wait_for(&["importer_done"]).await;
    assert_eq!(env.app.store.count_pending_avatars().await.unwrap(), 1);
    let answer = env.post("/api/v1/downloadPendingAvatars", json!({})).await;
    assert_eq!(answer.json(), json!({"count": 1, "success": true}));
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done");
    assert_eq!(progress["count"]["total"], 1);
    assert_eq!(progress["count"]["completed"], 1);
    assert_eq!(env.current().await["count"]["messages"], 1);
    assert_eq!(env.app.store.count_pending_avatars().await.unwrap(), 0);
}

/// downloadPublicImportFile: local paths only under the folder; URLs under the SSRF rules
/// (E2E 8 and 9).
async fn downloads_follow_the_folder_and_ssrf_rules(db: TestDb) {
    // A mock server on loopback, allowed by host:port.
    let generated = csv_archive(3, 3, 1, 5, 0);
    let zip = generated.archive.bytes();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = zip.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/import-test.zip",
            axum::routing::get(move || {
                let body = served.clone();
                async move { body }
            }),
        );
        let _ = axum::serve(listener, app).await;
    });
    let env = env_with(&db, |s| Settings {
        import_url_allowlist: vec![format!("127.0.0.1:{port}")],
        ..s
    })
    .await;
    let answer = env
        .post(
            "/api/v1/downloadPublicImportFile",
            json!({"fileUrl": format!("http://127.0.0.1:{port}/import-test.zip"),
                "importerKey": "csv"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let progress = env
        .wait_for(&["importer_file_loaded", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_file_loaded");
    let op = env.current().await;
    assert!(op.get("contentType").is_none());
    assert_eq!(
        std::fs::read(env.dir.path().join(op["file"].as_str().unwrap())).unwrap(),
        zip
    );
    let data = env.get("/api/v1/getImportFileData").await.json();
    assert_eq!(data["users"].as_array().unwrap().len(), 3);

    // Without the allowlist, loopback is refused (E2E 8).
    let env = self::env(&db).await;
    let answer = env
        .post(
            "/api/v1/downloadPublicImportFile",
            json!({"fileUrl": "http://127.0.0.1:3000/api/v1/info", "importerKey": "slack-users"}),
        )
        .await;
    assert_error(
        &answer,
        json!({"success": false, "error": "error-ssrf-validation-failed"}),
    );
    assert_eq!(env.progress().await["step"], "importer_import_failed");

    // Local paths: under the folder only.
    std::fs::write(env.dir.path().join("local.zip"), &zip).unwrap();
    let answer = env
        .post(
            "/api/v1/downloadPublicImportFile",
            json!({"fileUrl": env.dir.path().join("local.zip"), "importerKey": "csv"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(env.current().await["status"], "importer_file_loaded");
    assert_eq!(
        env.get("/api/v1/getImportFileData").await.json()["users"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let before = env.app.store.count_operations().await.unwrap();
    for outside in ["/etc/passwd", "../../etc/passwd", "missing.zip"] {
        assert_error(
            &env.post(
                "/api/v1/downloadPublicImportFile",
                json!({"fileUrl": outside, "importerKey": "csv"}),
            )
            .await,
            json!({"success": false, "error": format!("{outside} [error-import-file-missing]"),
                "errorType": "error-import-file-missing", "details": "downloadPublicImportFile"}),
        );
    }
    assert_eq!(env.app.store.count_operations().await.unwrap(), before);
}

/// An operation invalidated while it imports fails with Rocket.Chat's sentence; start-up
/// invalidates as Rocket.Chat's `setImportsToInvalid` does.
async fn invalidation_stops_an_import_and_startup_invalidates(db: TestDb) {
    let env = env(&db).await;
    env.post("/api/v1/import.new", json!({})).await;
    env.post(
        "/api/v1/import.addUsers",
        json!({"users": [{"emails": ["q@example.com"], "importIds": ["q"], "username": "q"}]}),
    )
    .await;
    let id = env.current().await["_id"].as_str().unwrap().to_owned();
    let cx = workflow::Context::of(&env.app.state);
    // Invalidated (as import.clear does) before the import reads its first record.
    env.app
        .store
        .invalidate_operations(&|doc| workflow::invalidate(doc, 1), None)
        .await
        .unwrap();
    let result = workflow::run_import(&cx, &id, &workflow::Selection::default(), false).await;
    let error = result.unwrap_err().to_string();
    assert_eq!(error, "The import operation is no longer valid.");
    assert_eq!(env.current().await["status"], "importer_import_failed");

    // Start-up: the newest operation waiting at user selection stays valid, the others not.
    env.post("/api/v1/import.new", json!({})).await;
    env.post(
        "/api/v1/import.addUsers",
        json!({"users": [{"emails": ["r@example.com"], "importIds": ["r"]}]}),
    )
    .await;
    let waiting = env.current().await;
    assert_eq!(waiting["status"], "importer_user_selection");
    let mut other = common::operation("64d69545ee8ae821983005f5", "2021-10-27T11:26:24.430Z");
    other["ts"] = json!(1);
    env.app.load(&json!([other]).to_string()).await;
    assert_eq!(workflow::on_server_start(&env.app.store).await.unwrap(), 1);
    let current = env.current().await;
    assert_eq!(current["valid"], true);
    assert_eq!(current["_updatedAt"], waiting["_updatedAt"]);
    let other = env
        .app
        .store
        .operation_by_id("64d69545ee8ae821983005f5")
        .await
        .unwrap()
        .unwrap();
    let other: Value = serde_json::from_str(&other).unwrap();
    assert_eq!(other["valid"], false);
    assert_ne!(
        other["_updatedAt"], "2021-10-27T11:26:24.430Z",
        "bumped, as updateMany does"
    );
    // Otherwise every valid one, statuses unchanged, staged records kept.
    env.post("/api/v1/import.new", json!({})).await;
    assert_eq!(workflow::on_server_start(&env.app.store).await.unwrap(), 1);
    let current = env.current().await;
    assert_eq!(current["valid"], false);
    assert_eq!(current["status"], "importer_new");
    assert_eq!(workflow::on_server_start(&env.app.store).await.unwrap(), 0);
}

/// A Slack export and a Slack users CSV of a few thousand records: the selection exactly what
/// the generator wrote, then everything imported; roles and states from the users CSV.
async fn slack_exports_are_prepared_exactly_and_imported(db: TestDb) {
    let env = env(&db).await;
    let generated = slack_archive(5, 40, 6, 3_000);
    let expected = generated.expected;
    let bytes = generated.archive.bytes();
    assert_eq!(env.upload(&bytes, "slack.zip", "slack").await.status, 200);
    let data = env.get("/api/v1/getImportFileData").await;
    assert_eq!(data.status, 200, "{}", data.body);
    let data = data.json();
    assert_eq!(data["name"], "Slack");
    let ids: Vec<&str> = data["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected.user_ids);
    let names: Vec<&str> = data["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["is_direct"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected.channel_names);
    assert_eq!(data["message_count"], expected.staged_messages);
    let op = env.current().await;
    assert_eq!(op["count"]["messages"], expected.messages);
    assert_eq!(op["count"]["total"], expected.total);
    let answer = env
        .post(
            "/api/v1/startImport",
            json!({"input": {"users": {"all": true}, "channels": {"all": true}}}),
        )
        .await;
    assert_eq!(answer.status, 200);
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    let completed = progress["count"]["completed"].as_u64().unwrap();
    assert!(
        completed >= expected.users + expected.staged_messages,
        "{progress}"
    );
    // Users with an address or a username are importops users now.
    let users = env.app.store.list_users().await.unwrap();
    assert!(users.len() as u64 > expected.users / 2, "{}", users.len());

    // The Slack users CSV: admins, bots and deactivated users.
    let (file, expected) = slack_users_csv(30);
    let bytes = file.bytes();
    assert_eq!(
        env.upload(&bytes, "users.csv", "slack-users").await.status,
        200
    );
    let data = env.get("/api/v1/getImportFileData").await.json();
    assert_eq!(data["name"], "Slack_Users");
    let ids: Vec<&str> = data["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected.user_ids);
    assert_eq!(data["users"][1]["is_bot"], true);
    assert_eq!(data["users"][4]["is_deleted"], true);
    env.post(
        "/api/v1/startImport",
        json!({"input": {"users": {"all": true}}}),
    )
    .await;
    let progress = env
        .wait_for(&["importer_done", "importer_import_failed"])
        .await;
    assert_eq!(progress["step"], "importer_done", "{progress}");
    assert_eq!(progress["count"]["completed"], 30);
    let admin = env
        .app
        .store
        .user_by_username("csv.user2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.roles, ["admin"]);
    let bot = env
        .app
        .store
        .user_by_username("csv.user1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bot.roles, ["bot"]);
    let gone = env
        .app
        .store
        .user_by_username("csv.user4")
        .await
        .unwrap()
        .unwrap();
    assert!(!gone.active);
    assert!(
        env.app
            .store
            .user_by_username("no.email")
            .await
            .unwrap()
            .is_none()
    );
}

/// `importops import run`: the same workflow without HTTP, a JSON summary, one sentence and
/// exit 1 on failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_runs_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/cli.db", dir.path().display());
    let generated = csv_archive(11, 5, 2, 40, 4);
    let cmd = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("importops").unwrap();
        cmd.env_remove("IMPORTOPS_IMPORT_FILE_DIR")
            .env_remove("DATABASE_URL")
            .arg("--database-url")
            .arg(&url)
            .args(args)
            .timeout(Duration::from_secs(60));
        cmd.output().unwrap()
    };
    let archive = generated.archive.path().to_str().unwrap().to_owned();
    let first = generated.expected.user_ids[0].clone();
    let out = cmd(&[
        "import",
        "run",
        &archive,
        "--importer",
        "csv",
        "--users",
        &first,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "importer_done", "{summary}");
    assert_eq!(summary["users"], 5);
    assert_eq!(summary["messages"], generated.expected.staged_messages);
    // Stored beside the database by default.
    assert!(dir.path().join("import-files").is_dir());
    let store = importops::Store::open(&url).await.unwrap();
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1, "only the selected user");
    assert_eq!(users[0].username.as_deref(), Some(first.as_str()));
    // Every user the second time.
    let out = cmd(&["import", "run", &archive, "--importer", "csv", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("imported "));
    assert_eq!(store.list_users().await.unwrap().len(), 5);
    // A file that is not a zip: one sentence, exit 1.
    let bad = dir.path().join("bad.zip");
    std::fs::write(&bad, b"not a zip").unwrap();
    let out = cmd(&[
        "import",
        "run",
        bad.to_str().unwrap(),
        "--importer",
        "slack",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: the import failed: "), "{stderr}");
    let out = cmd(&["import", "run", "/no/such/file", "--importer", "csv"]);
    assert_eq!(out.status.code(), Some(1));
}

on_both_backends!(
    a_csv_archive_is_uploaded_prepared_and_imported,
    existing_users_are_matched_by_email_then_username,
    the_workflow_routes_answer_rocketchats_errors,
    bad_archives_fail_without_a_server_error,
    bad_archives_through_http_are_clear_errors,
    the_api_importer_adds_and_runs_users,
    rocketchats_end_to_end_assertions_hold,
    pending_avatars_are_counted_and_handled,
    downloads_follow_the_folder_and_ssrf_rules,
    invalidation_stops_an_import_and_startup_invalidates,
    slack_exports_are_prepared_exactly_and_imported,
);
