//! The admin command line, run as the real `importops` binary against a fresh SQLite file per
//! test: every subcommand, its failure modes, what it leaves in the database, and two runs of
//! `importops serve` answering over HTTP.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use importops::Store;
use importops::domain::secrets::{hash_token, verify_password};
use importops::domain::time::parse_iso_ms;
use serde_json::Value;

const FIXTURE: &str = include_str!("../fixtures/documented-operations.json");
const FIXTURE_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/documented-operations.json"
);
const BIN: &str = env!("CARGO_BIN_EXE_importops");

/// Environment variables the binary reads; a developer's shell must not change a test.
const ENV_VARS: [&str; 7] = [
    "DATABASE_URL",
    "RUST_LOG",
    "IMPORTOPS_LISTEN",
    "IMPORTOPS_AUTH_ERROR_BODY",
    "IMPORTOPS_LOGIN_EXPIRATION_DAYS",
    "IMPORTOPS_ADMIN_USERNAME",
    "IMPORTOPS_ADMIN_PASSWORD",
];

/// A few of Rocket.Chat's defaults, spelled out (the whole table is
/// `importops::domain::permission::DEFAULT_PERMISSIONS`, from
/// `apps/meteor/app/authorization/server/constant/permissions.ts`).
const SOME_DEFAULT_PERMISSIONS: [(&str, &[&str]); 7] = [
    ("access-permissions", &["admin"]),
    ("api-bypass-rate-limit", &["admin", "bot", "app"]),
    ("create-personal-access-tokens", &["admin", "user"]),
    ("create-user", &["admin"]),
    ("delete-user", &["admin"]),
    ("run-import", &["admin"]),
    ("view-import-operations", &["admin"]),
];

// ---------------------------------------------------------------------------------------------
// Helpers

/// A SQLite database in its own temporary directory, and the binary pointed at it.
struct Db {
    dir: tempfile::TempDir,
    url: String,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        Db { dir, url }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("t.db")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.arg("--database-url").arg(&self.url).args(args);
        cmd
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        succeeded(self.cmd(args).output().expect("run importops"), args)
    }

    /// Runs a command with `input` on stdin that must succeed; returns its stdout.
    fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let output = self
            .cmd(args)
            .write_stdin(input)
            .output()
            .expect("run importops");
        succeeded(output, args)
    }

    /// Runs a command that must succeed and print JSON; returns it, fields in printed order.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// Runs a command that must fail with exit 1 and one `error: ` line; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        one_error_line(self.cmd(args).output().expect("run importops"), args)
    }

    fn fails_stdin(&self, args: &[&str], input: &str) -> String {
        let output = self
            .cmd(args)
            .write_stdin(input)
            .output()
            .expect("run importops");
        one_error_line(output, args)
    }

    /// Runs a command that clap must refuse: exit 2, an `error: ` on stderr, nothing on stdout.
    fn usage_error(&self, args: &[&str]) -> String {
        let output = self.cmd(args).output().expect("run importops");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: stdout was written");
        stderr
    }

    fn user(&self, username: &str) -> Value {
        let users = self.json(&["user", "list", "--json"]);
        users
            .as_array()
            .expect("an array of users")
            .iter()
            .find(|u| u["username"] == username)
            .unwrap_or_else(|| panic!("no user {username} in {users:#}"))
            .clone()
    }

    fn usernames(&self) -> Vec<String> {
        let users = self.json(&["user", "list", "--json"]);
        users
            .as_array()
            .expect("an array of users")
            .iter()
            .map(|u| u["username"].as_str().expect("a username").to_owned())
            .collect()
    }

    /// Issues a token with the command line; returns (userId, authToken).
    fn issue(&self, username: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["token", "issue", username, "--json"];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        (
            v["userId"].as_str().expect("userId").to_owned(),
            v["authToken"].as_str().expect("authToken").to_owned(),
        )
    }

    fn tokens(&self, username: &str) -> Vec<Value> {
        self.json(&["token", "list", username, "--json"])
            .as_array()
            .expect("an array of tokens")
            .clone()
    }

    fn op_ids(&self) -> Vec<String> {
        self.json(&["ops", "list", "--json", "--limit", "1000"])
            .as_array()
            .expect("an array of operations")
            .iter()
            .map(|op| op["_id"].as_str().expect("an _id").to_owned())
            .collect()
    }

    /// Reads the database through the library (to check what the command line left there).
    fn with_store<T: Send, F: Future<Output = T> + Send>(
        &self,
        f: impl FnOnce(Store) -> F + Send,
    ) -> T {
        block_on(async {
            let store = Store::open(&self.url)
                .await
                .expect("open the test database");
            let out = f(store.clone()).await;
            store.close().await;
            out
        })
    }

    /// Whether `user_id` holds the raw token `raw`, as the server would look it up.
    fn holds_token(&self, user_id: &str, raw: &str) -> bool {
        let hash = hash_token(raw);
        self.with_store(|s| async move { s.find_session(user_id, &hash).await })
            .expect("look a session up")
            .is_some()
    }

    /// The bytes of the database file and its WAL and shared-memory files.
    fn file_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut read = 0;
        for entry in std::fs::read_dir(self.dir.path()).expect("list the temporary directory") {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("t.db") {
                bytes.extend(std::fs::read(&path).expect("read a database file"));
                read += 1;
            }
        }
        assert!(read >= 1, "no database file was found");
        bytes
    }
}

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("importops").expect("the importops binary");
    for var in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// Runs a future to completion on a runtime of its own, on a thread of its own (so that it
/// also works from inside an async test).
fn block_on<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(f)
            })
            .join()
            .expect("the database check panicked")
    })
}

fn succeeded(output: std::process::Output, args: &[&str]) -> String {
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{args:?} failed ({:?}): {stderr}",
        output.status.code()
    );
    assert!(stderr.is_empty(), "{args:?} wrote on stderr: {stderr}");
    stdout
}

fn one_error_line(output: std::process::Output, args: &[&str]) -> String {
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line on stderr: {stderr}"
    );
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
    for noise in ["panicked", "backtrace", "RUST_BACKTRACE", "src/", ".rs:"] {
        assert!(!stderr.contains(noise), "{args:?}: {stderr}");
    }
    assert!(
        output.stdout.is_empty(),
        "{args:?}: a failed command wrote on stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    lines[0].to_owned()
}

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

/// The field names of every object in an array, in order.
fn key_orders(v: &Value) -> Vec<Vec<String>> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|o| o.as_object().expect("an object").keys().cloned().collect())
        .collect()
}

/// Equal as values, and with every object's fields in the same order.
fn assert_same_documents(actual: &Value, expected: &Value) {
    assert_eq!(actual, expected);
    assert_eq!(key_orders(actual), key_orders(expected));
    assert_eq!(
        serde_json::to_string(actual).unwrap(),
        serde_json::to_string(expected).unwrap()
    );
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn op(id: &str, status: &str, updated: &str) -> String {
    format!(
        r#"{{"_id":"{id}","type":"CSV","importerKey":"csv","ts":1635247067385,"status":"{status}","valid":true,"user":"d26x6zSkaPSe5gCyy","_updatedAt":"{updated}"}}"#
    )
}

// ---------------------------------------------------------------------------------------------
// migrate, --help, the database URL

#[test]
fn migrate_creates_the_database_and_can_run_again() {
    let db = Db::new();
    assert!(!db.path().exists());
    assert_eq!(db.ok(&["migrate"]), "the database is up to date\n");
    assert!(db.path().exists(), "migrate did not create the SQLite file");
    assert_eq!(db.ok(&["migrate"]), "the database is up to date\n");
    // Migrating seeds Rocket.Chat's default roles and permissions, once.
    let roles = db.with_store(|s| async move { s.list_roles().await.unwrap() });
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
        assert!(roles.iter().any(|r| r == role), "{role} missing: {roles:?}");
    }
    // The whole table of `apps/meteor/app/authorization/server/constant/permissions.ts`.
    assert_eq!(
        db.json(&["permission", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        172
    );
    assert_eq!(db.json(&["user", "list", "--json"]), Value::Array(vec![]));
    assert_eq!(db.json(&["ops", "list", "--json"]), Value::Array(vec![]));
}

#[test]
fn help_works_for_every_subcommand() {
    let paths: [&[&str]; 22] = [
        &[],
        &["serve"],
        &["migrate"],
        &["user"],
        &["user", "add"],
        &["user", "list"],
        &["user", "remove"],
        &["user", "set-active"],
        &["role"],
        &["role", "grant"],
        &["role", "revoke"],
        &["permission"],
        &["permission", "list"],
        &["permission", "set"],
        &["token"],
        &["token", "issue"],
        &["token", "list"],
        &["token", "revoke"],
        &["ops"],
        &["ops", "load"],
        &["ops", "list"],
        &["ops", "remove"],
    ];
    let db = Db::new();
    for path in paths {
        let mut args = path.to_vec();
        args.push("--help");
        let out = db.ok(&args);
        let usage = format!("Usage: importops {}", path.join(" "));
        assert!(out.contains(usage.trim_end()), "{args:?}: {out}");
        assert!(out.contains("--help"), "{args:?}: {out}");
    }
    // --help touches no database.
    assert!(!db.path().exists());
    let out = db.ok(&["--version"]);
    assert_eq!(out, format!("importops {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn an_invalid_database_url_is_one_error_line() {
    let commands: [&[&str]; 6] = [
        &["migrate"],
        &["user", "list"],
        &["permission", "list"],
        &["token", "list", "admin"],
        &["ops", "list"],
        &["serve", "--listen", "127.0.0.1:0"],
    ];
    for args in commands {
        let output = bin()
            .env("RUST_BACKTRACE", "1")
            .arg("--database-url")
            .arg("mysql://x")
            .args(args)
            .output()
            .unwrap();
        let line = one_error_line(output, args);
        assert_eq!(
            line,
            r#"error: the database URL must start with sqlite:// or postgres:// (got "mysql://x")"#
        );
    }
    // A SQLite file that cannot be created is one line too.
    let output = bin()
        .env("RUST_BACKTRACE", "1")
        .args([
            "--database-url",
            "sqlite:///nonexistent-importops-dir/t.db",
            "migrate",
        ])
        .output()
        .unwrap();
    let line = one_error_line(output, &["migrate"]);
    assert_eq!(
        line,
        "error: cannot open the SQLite database /nonexistent-importops-dir/t.db: the folder /nonexistent-importops-dir does not exist (create it first)"
    );
}

#[test]
fn a_password_in_a_bad_database_url_is_not_shown() {
    for url in [
        "postgres://importops:hunter2@db.example:notaport/importops",
        "postgres://importops@db.example:notaport/importops?password=hunter2",
        "mysql://root:hunter2@db.example/importops",
    ] {
        let output = bin()
            .args(["--database-url", url, "migrate"])
            .output()
            .unwrap();
        let line = one_error_line(output, &[url]);
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.contains("db.example"), "{line}");
    }
}

// ---------------------------------------------------------------------------------------------
// user

#[test]
fn user_add_with_every_option() {
    let db = Db::new();
    let out = db.ok(&[
        "user",
        "add",
        "jane.doe-2_x",
        "--name",
        "Jane Doe",
        "--email",
        "jane@example.com",
        "--role",
        "admin",
        "--role",
        "bot",
        "--role",
        "admin",
        "--json",
    ]);
    let user: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        keys(&user),
        ["_id", "username", "name", "active", "roles", "emails"]
    );
    let id = user["_id"].as_str().unwrap();
    assert_eq!(id.len(), 17, "{id}");
    assert_eq!(user["username"], "jane.doe-2_x");
    assert_eq!(user["name"], "Jane Doe");
    assert_eq!(user["active"], true);
    assert_eq!(user["roles"], serde_json::json!(["admin", "bot"]));
    assert_eq!(
        user["emails"],
        serde_json::json!([{"address": "jane@example.com", "verified": false}])
    );
    // What was printed is what was stored.
    assert_eq!(db.user("jane.doe-2_x"), user);

    // Defaults: role `user`, active, no name, no e-mail; the text form names id and roles.
    let out = db.ok(&["user", "add", "bob"]);
    let bob = db.user("bob");
    assert_eq!(
        out,
        format!(
            "created user bob with id {} and roles user\n",
            bob["_id"].as_str().unwrap()
        )
    );
    assert_eq!(bob["roles"], serde_json::json!(["user"]));
    assert_eq!(bob["active"], true);
    assert_eq!(bob["name"], Value::Null);
    assert_eq!(bob["emails"], serde_json::json!([]));
    assert_ne!(bob["_id"], user["_id"]);

    // --inactive and --password-stdin (first line only, line ending dropped).
    let out = db.ok_stdin(
        &[
            "user",
            "add",
            "carol",
            "--inactive",
            "--password-stdin",
            "--json",
        ],
        "s3cret pass\r\nsecond line\n",
    );
    let carol: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(carol["active"], false);
    let stored: Option<String> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let row = sqlx::query_scalar("SELECT password_bcrypt FROM users WHERE username = 'carol'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        row
    });
    let stored = stored.expect("carol has a password");
    assert!(verify_password("s3cret pass", &stored), "{stored}");
    assert!(!verify_password("s3cret pass\r", &stored));
}

#[test]
fn user_add_refuses_duplicates_and_bad_input() {
    let db = Db::new();
    db.ok(&["user", "add", "alice", "--name", "First"]);

    let line = db.fails(&["user", "add", "alice", "--name", "Second"]);
    assert_eq!(line, r#"error: the username "alice" is already taken"#);
    assert_eq!(db.user("alice")["name"], "First");

    for bad in ["al ice", "alice@home", "", "jäne"] {
        let line = db.fails(&["user", "add", bad]);
        assert!(line.contains("is not a valid username"), "{bad:?}: {line}");
    }
    for bad in ["nope", "a@", "@b", "a b@c.d", "a@b@c"] {
        let line = db.fails(&["user", "add", "bob", "--email", bad]);
        assert_eq!(
            line,
            format!("error: {bad:?} is not a valid e-mail address"),
            "{bad:?}"
        );
    }
    let line = db.fails(&["user", "add", "bob", "--role", "two words"]);
    assert_eq!(line, r#"error: "two words" is not a valid role name"#);
    let line = db.fails_stdin(&["user", "add", "bob", "--password-stdin"], "");
    assert_eq!(line, "error: no password was given on standard input");
    let line = db.fails_stdin(&["user", "add", "bob", "--password-stdin"], "\n");
    assert_eq!(line, "error: no password was given on standard input");

    // None of the refused users exists.
    assert_eq!(db.usernames(), ["alice"]);
}

#[test]
fn user_add_refuses_names_and_addresses_taken_in_another_case() {
    let db = Db::new();
    db.ok(&["user", "add", "alice", "--email", "alice@example.com"]);
    let line = db.fails(&["user", "add", "ALICE"]);
    assert_eq!(line, r#"error: the username "ALICE" is already taken"#);
    let line = db.fails(&["user", "add", "bob", "--email", "Alice@Example.COM"]);
    assert_eq!(
        line,
        r#"error: the e-mail address "Alice@Example.COM" is already taken"#
    );
    assert_eq!(db.usernames(), ["alice"]);
}

#[test]
fn user_list_as_a_table_and_as_json() {
    let db = Db::new();
    assert_eq!(
        db.ok(&["user", "list"]),
        "ID  USERNAME  NAME  ACTIVE  ROLES  EMAILS\n"
    );
    db.ok(&["user", "add", "zed", "--inactive"]);
    db.ok(&[
        "user",
        "add",
        "amy",
        "--name",
        "Amy",
        "--email",
        "amy@example.com",
        "--role",
        "admin",
        "--role",
        "bot",
    ]);

    let users = db.json(&["user", "list", "--json"]);
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 2);
    for u in users {
        assert_eq!(
            keys(u),
            ["_id", "username", "name", "active", "roles", "emails"]
        );
    }
    // Sorted by username.
    assert_eq!(users[0]["username"], "amy");
    assert_eq!(users[1]["username"], "zed");
    assert_eq!(users[1]["active"], false);

    let table = db.ok(&["user", "list"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["ID", "USERNAME", "NAME", "ACTIVE", "ROLES", "EMAILS"],
            vec![
                users[0]["_id"].as_str().unwrap(),
                "amy",
                "Amy",
                "true",
                "admin,bot",
                "amy@example.com"
            ],
            vec![users[1]["_id"].as_str().unwrap(), "zed", "false", "user"],
        ]
    );
}

#[test]
fn user_remove_takes_its_tokens_with_it() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    db.ok(&["user", "add", "bob"]);
    let (alice_id, login) = db.issue("alice", &[]);
    let (_, personal) = db.issue("alice", &["--personal", "ci"]);
    let (bob_id, bob_token) = db.issue("bob", &[]);
    assert!(db.holds_token(&alice_id, &login));

    assert_eq!(
        db.ok(&["user", "remove", "alice"]),
        "removed user alice and its tokens\n"
    );
    assert_eq!(db.usernames(), ["bob"]);
    assert!(!db.holds_token(&alice_id, &login));
    assert!(!db.holds_token(&alice_id, &personal));
    let left: i64 = block_on(async {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = ?")
            .bind(&alice_id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    });
    assert_eq!(left, 0, "alice's sessions outlived her");
    // Other users keep theirs.
    assert!(db.holds_token(&bob_id, &bob_token));

    let line = db.fails(&["user", "remove", "alice"]);
    assert_eq!(line, r#"error: there is no user named "alice""#);
    let line = db.fails(&["token", "list", "alice"]);
    assert_eq!(line, r#"error: there is no user named "alice""#);

    // The name is free again, for a new user with a new id and no tokens.
    db.ok(&["user", "add", "alice"]);
    assert_ne!(db.user("alice")["_id"], alice_id.as_str());
    assert!(db.tokens("alice").is_empty());
}

#[test]
fn user_set_active() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    assert_eq!(
        db.ok(&["user", "set-active", "alice", "false"]),
        "user alice is now deactivated\n"
    );
    assert_eq!(db.user("alice")["active"], false);
    assert_eq!(
        db.ok(&["user", "set-active", "alice", "true"]),
        "user alice is now active\n"
    );
    assert_eq!(db.user("alice")["active"], true);

    let line = db.fails(&["user", "set-active", "nobody", "false"]);
    assert_eq!(line, r#"error: there is no user named "nobody""#);
    let err = db.usage_error(&["user", "set-active", "alice", "maybe"]);
    assert!(err.contains("invalid value 'maybe'"), "{err}");
    db.usage_error(&["user", "set-active", "alice"]);
    assert_eq!(db.user("alice")["active"], true);
}

// ---------------------------------------------------------------------------------------------
// role

#[test]
fn role_grant_and_revoke() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);

    assert_eq!(
        db.ok(&["role", "grant", "alice", "admin"]),
        "granted the role admin for user alice\n"
    );
    assert_eq!(
        db.ok(&["role", "grant", "alice", "admin"]),
        "user alice already has the role admin\n"
    );
    // A role that does not exist yet is created.
    let roles = db.with_store(|s| async move { s.list_roles().await.unwrap() });
    assert!(!roles.iter().any(|r| r == "auditor"));
    assert_eq!(
        db.ok(&["role", "grant", "alice", "auditor"]),
        "granted the role auditor for user alice\n"
    );
    assert_eq!(
        db.user("alice")["roles"],
        serde_json::json!(["user", "admin", "auditor"])
    );
    let roles = db.with_store(|s| async move { s.list_roles().await.unwrap() });
    assert!(roles.iter().any(|r| r == "auditor"), "{roles:?}");

    assert_eq!(
        db.ok(&["role", "revoke", "alice", "user"]),
        "revoked the role user for user alice\n"
    );
    assert_eq!(
        db.ok(&["role", "revoke", "alice", "user"]),
        "user alice does not have the role user\n"
    );
    assert_eq!(
        db.user("alice")["roles"],
        serde_json::json!(["admin", "auditor"])
    );

    // The new role can hold a permission.
    db.ok(&[
        "permission",
        "set",
        "view-import-operations",
        "admin",
        "auditor",
    ]);
    let perms = db.json(&["permission", "list", "--json"]);
    let view = perms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["_id"] == "view-import-operations")
        .unwrap();
    assert_eq!(view["roles"], serde_json::json!(["admin", "auditor"]));

    let line = db.fails(&["role", "grant", "nobody", "admin"]);
    assert_eq!(line, r#"error: there is no user named "nobody""#);
    let line = db.fails(&["role", "revoke", "nobody", "admin"]);
    assert_eq!(line, r#"error: there is no user named "nobody""#);
    let line = db.fails(&["role", "grant", "alice", "two words"]);
    assert_eq!(line, r#"error: "two words" is not a valid role name"#);
    db.usage_error(&["role", "grant", "alice"]);
    assert_eq!(
        db.user("alice")["roles"],
        serde_json::json!(["admin", "auditor"])
    );
}

// ---------------------------------------------------------------------------------------------
// permission

#[test]
fn permission_list_has_rocketchats_defaults() {
    let db = Db::new();
    let perms = db.json(&["permission", "list", "--json"]);
    let perms = perms.as_array().unwrap();
    let listed: Vec<(String, Vec<String>)> = perms
        .iter()
        .map(|p| {
            assert_eq!(keys(p), ["_id", "roles", "_updatedAt"]);
            let at = p["_updatedAt"].as_str().unwrap();
            assert!(parse_iso_ms(at).is_some() && at.ends_with('Z'), "{at}");
            (
                p["_id"].as_str().unwrap().to_owned(),
                serde_json::from_value(p["roles"].clone()).unwrap(),
            )
        })
        .collect();
    // Every permission of the table once, in the order of their names.
    assert_eq!(
        listed.len(),
        importops::domain::permission::DEFAULT_PERMISSIONS.len()
    );
    assert!(listed.windows(2).all(|w| w[0].0 < w[1].0));
    for (id, roles) in SOME_DEFAULT_PERMISSIONS {
        let found = listed.iter().find(|(p, _)| p == id).expect(id);
        assert_eq!(found.1, roles.to_vec(), "{id}");
    }

    let table = db.ok(&["permission", "list"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["PERMISSION", "ROLES"]);
    assert_eq!(
        lines.len(),
        importops::domain::permission::DEFAULT_PERMISSIONS.len() + 1
    );
    assert!(lines.contains(&vec!["api-bypass-rate-limit", "admin,bot,app"]));
    assert!(lines.contains(&vec!["view-import-operations", "admin"]));
}

#[test]
fn permission_set() {
    let db = Db::new();
    let out = db.ok(&[
        "permission",
        "set",
        "run-import",
        "admin",
        "importer",
        "admin",
    ]);
    assert_eq!(
        out,
        "permission run-import is now held by: admin, importer\n"
    );
    let roles = db.with_store(|s| async move { s.permission_roles("run-import").await.unwrap() });
    assert_eq!(
        roles,
        Some(vec!["admin".to_string(), "importer".to_string()])
    );
    let all_roles = db.with_store(|s| async move { s.list_roles().await.unwrap() });
    assert!(all_roles.iter().any(|r| r == "importer"), "{all_roles:?}");

    let line = db.fails(&["permission", "set", "no-such-permission", "admin"]);
    assert_eq!(
        line,
        r#"error: there is no permission named "no-such-permission" (see `importops permission list`)"#
    );
    let listed = db.json(&["permission", "list", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        importops::domain::permission::DEFAULT_PERMISSIONS.len(),
        "a permission was created"
    );

    let line = db.fails(&["permission", "set", "run-import", "admin", "two words"]);
    assert_eq!(line, r#"error: "two words" is not a valid role name"#);
    db.usage_error(&["permission", "set", "run-import"]);
    let roles = db.with_store(|s| async move { s.permission_roles("run-import").await.unwrap() });
    assert_eq!(
        roles,
        Some(vec!["admin".to_string(), "importer".to_string()])
    );
}

// ---------------------------------------------------------------------------------------------
// token

#[test]
fn token_issue_plain_and_json() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    let alice_id = db.user("alice")["_id"].as_str().unwrap().to_owned();

    let out = db.ok(&["token", "issue", "alice"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], format!("userId:    {alice_id}"));
    let plain = lines[1].strip_prefix("authToken: ").expect(lines[1]);
    assert_eq!(plain.len(), 43, "{plain}");
    assert!(db.holds_token(&alice_id, plain));

    let out = db.ok(&["token", "issue", "alice", "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&v), ["userId", "authToken"]);
    assert_eq!(v["userId"], alice_id.as_str());
    let json_token = v["authToken"].as_str().unwrap();
    assert_eq!(json_token.len(), 43);
    assert_ne!(json_token, plain);
    assert!(db.holds_token(&alice_id, json_token));
    assert!(!db.holds_token(&alice_id, "not-a-token"));

    let tokens = db.tokens("alice");
    assert_eq!(tokens.len(), 2);
    for t in &tokens {
        assert_eq!(t["kind"], "login");
        assert_eq!(t["expiresAt"], Value::Null);
    }

    let line = db.fails(&["token", "issue", "nobody"]);
    assert_eq!(line, r#"error: there is no user named "nobody""#);
}

#[test]
fn token_issue_with_an_expiry_or_as_a_personal_token() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    let (alice_id, days) = db.issue("alice", &["--expires-in-days", "3"]);
    let (_, personal) = db.issue("alice", &["--personal", "ci"]);
    assert!(db.holds_token(&alice_id, &days));
    assert!(db.holds_token(&alice_id, &personal));

    let tokens = db.tokens("alice");
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        keys(&tokens[0]),
        ["id", "kind", "name", "issuedAt", "expiresAt"]
    );
    assert_eq!(tokens[0]["kind"], "login");
    assert_eq!(tokens[0]["name"], Value::Null);
    let issued = parse_iso_ms(tokens[0]["issuedAt"].as_str().unwrap()).unwrap();
    let expires = parse_iso_ms(tokens[0]["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - issued, 3 * 86_400_000);
    assert_eq!(tokens[1]["kind"], "personal");
    assert_eq!(tokens[1]["name"], "ci");
    assert_eq!(tokens[1]["expiresAt"], Value::Null);

    let table = db.ok(&["token", "list", "alice"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID  KIND"), "{table}");
    assert!(lines[1].ends_with(tokens[0]["expiresAt"].as_str().unwrap()));
    assert!(lines[2].contains(" personal ") && lines[2].ends_with("never"));

    // A personal token's name is unique per user, but not across users.
    let line = db.fails(&["token", "issue", "alice", "--personal", "ci"]);
    assert!(line.contains("already has a token of that name"), "{line}");
    db.ok(&["user", "add", "bob"]);
    db.issue("bob", &["--personal", "ci"]);

    let err = db.usage_error(&[
        "token",
        "issue",
        "alice",
        "--personal",
        "ci2",
        "--expires-in-days",
        "3",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    db.usage_error(&["token", "issue", "alice", "--expires-in-days", "0"]);
    db.usage_error(&["token", "issue", "alice", "--expires-in-days", "soon"]);
    let line = db.fails(&["token", "issue", "alice", "--personal", " "]);
    assert_eq!(line, "error: a personal token's name cannot be empty");
    assert_eq!(db.tokens("alice").len(), 2, "a refused token was stored");
}

#[test]
fn token_list_never_prints_a_token() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    assert_eq!(
        db.ok(&["token", "list", "alice"]),
        "ID  KIND  NAME  ISSUED  EXPIRES\n"
    );
    assert_eq!(
        db.json(&["token", "list", "alice", "--json"]),
        serde_json::json!([])
    );
    let raws = [
        db.issue("alice", &[]).1,
        db.issue("alice", &["--expires-in-days", "7"]).1,
        db.issue("alice", &["--personal", "deploy"]).1,
    ];
    let table = db.ok(&["token", "list", "alice"]);
    let json = db.ok(&["token", "list", "alice", "--json"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    for raw in &raws {
        let hash = hash_token(raw);
        for out in [&table, &json] {
            assert!(
                !out.contains(raw.as_str()),
                "a raw token was printed: {out}"
            );
            assert!(
                !out.contains(hash.as_str()),
                "a token hash was printed: {out}"
            );
        }
    }
}

#[test]
fn token_revoke_by_token_name_or_all() {
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    db.ok(&["user", "add", "bob"]);
    let (alice_id, first) = db.issue("alice", &[]);
    let (_, second) = db.issue("alice", &[]);
    let (_, ci) = db.issue("alice", &["--personal", "ci"]);
    let (_, deploy) = db.issue("alice", &["--personal", "deploy"]);
    let (bob_id, bob_token) = db.issue("bob", &["--personal", "ci"]);

    // --token: exactly that token.
    assert_eq!(
        db.ok(&["token", "revoke", "alice", "--token", &first]),
        "revoked 1 token(s) of user alice\n"
    );
    assert!(!db.holds_token(&alice_id, &first));
    assert!(db.holds_token(&alice_id, &second));
    let line = db.fails(&["token", "revoke", "alice", "--token", &first]);
    assert_eq!(line, "error: user alice has no such token");
    // Another user's token is not alice's.
    let line = db.fails(&["token", "revoke", "alice", "--token", &bob_token]);
    assert_eq!(line, "error: user alice has no such token");
    let line = db.fails(&["token", "revoke", "alice", "--token", "made-up"]);
    assert_eq!(line, "error: user alice has no such token");

    // --name: that personal token of that user only.
    assert_eq!(
        db.ok(&["token", "revoke", "alice", "--name", "ci"]),
        "revoked 1 token(s) of user alice\n"
    );
    assert!(!db.holds_token(&alice_id, &ci));
    assert!(db.holds_token(&alice_id, &deploy));
    assert!(db.holds_token(&bob_id, &bob_token));
    let line = db.fails(&["token", "revoke", "alice", "--name", "ci"]);
    assert_eq!(line, "error: user alice has no such token");

    // --all: every remaining token of alice, none of bob's.
    assert_eq!(
        db.ok(&["token", "revoke", "alice", "--all"]),
        "revoked 2 token(s) of user alice\n"
    );
    assert!(!db.holds_token(&alice_id, &second));
    assert!(!db.holds_token(&alice_id, &deploy));
    assert!(db.tokens("alice").is_empty());
    assert_eq!(db.tokens("bob").len(), 1);
    assert_eq!(
        db.ok(&["token", "revoke", "alice", "--all"]),
        "revoked 0 token(s) of user alice\n"
    );

    db.usage_error(&["token", "revoke", "bob"]);
    db.usage_error(&["token", "revoke", "bob", "--all", "--name", "ci"]);
    let line = db.fails(&["token", "revoke", "nobody", "--all"]);
    assert_eq!(line, r#"error: there is no user named "nobody""#);
    assert!(db.holds_token(&bob_id, &bob_token));
}

#[test]
fn token_revoke_takes_a_token_that_starts_with_a_hyphen() {
    // Raw tokens are URL-safe base64: one in 64 starts with '-'. Store one such token.
    let db = Db::new();
    db.ok(&["user", "add", "alice"]);
    let alice_id = db.user("alice")["_id"].as_str().unwrap().to_owned();
    let raw = "-YNS3eRNrfEMO6CiQEMZQTnOUORGik5Xv1uldOb3hVY";
    let session = importops::store::NewSession {
        user_id: alice_id.clone(),
        hashed_token: hash_token(raw),
        kind: importops::domain::auth::TokenKind::Login,
        name: None,
        issued_at_ms: importops::domain::time::now_ms(),
        expires_at_ms: None,
    };
    db.with_store(|s| async move { s.insert_session(&session).await.unwrap() });
    assert!(db.holds_token(&alice_id, raw));
    assert_eq!(
        db.ok(&["token", "revoke", "alice", "--token", raw]),
        "revoked 1 token(s) of user alice\n"
    );
    assert!(!db.holds_token(&alice_id, raw));
    let line = db.fails(&["token", "revoke", "alice", "--token", raw]);
    assert_eq!(line, "error: user alice has no such token");
}

// ---------------------------------------------------------------------------------------------
// ops

#[test]
fn ops_load_then_list_returns_the_fixture_exactly() {
    let db = Db::new();
    assert_eq!(
        db.ok(&["ops", "load", FIXTURE_PATH]),
        "loaded 7 operations (7 new, 0 replaced)\n"
    );
    let listed = db.json(&["ops", "list", "--json"]);
    assert_same_documents(&listed, &fixture());
    // The sixth operation's extra fields follow the known ones, as stored.
    assert_eq!(
        keys(&listed[5]),
        [
            "_id",
            "type",
            "importerKey",
            "ts",
            "status",
            "valid",
            "user",
            "_updatedAt",
            "contentType",
            "file"
        ]
    );

    // Loading the same file again replaces all seven and changes nothing else.
    assert_eq!(
        db.ok(&["ops", "load", FIXTURE_PATH]),
        "loaded 7 operations (0 new, 7 replaced)\n"
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());
    // The counts for scripts.
    assert_eq!(
        db.json(&["ops", "load", "--json", FIXTURE_PATH]),
        serde_json::json!({"loaded": 7, "inserted": 0, "replaced": 7})
    );

    // --limit and the table.
    let two = db.json(&["ops", "list", "--json", "--limit", "2"]);
    assert_eq!(
        two.as_array().unwrap()[..],
        fixture().as_array().unwrap()[..2]
    );
    let table = db.ok(&["ops", "list", "--limit", "2"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect()
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["ID", "TYPE", "IMPORTER", "STATUS", "VALID", "UPDATED"],
            vec![
                "MJxTRZsYdho8Ww2qq",
                "Pending Avatars",
                "pending-avatars",
                "importer_user_selection",
                "false",
                "2021-10-27T11:26:24.430Z"
            ],
            vec![
                "YzSCu9WgqJ3wutF4T",
                "Pending Files",
                "pending-files",
                "importer_done",
                "false",
                "2021-10-27T08:32:42.609Z"
            ],
        ]
    );
    db.usage_error(&["ops", "list", "--limit", "0"]);
}

#[test]
fn ops_load_json_lines_from_stdin() {
    let db = Db::new();
    // The fixture as JSON lines (mongoexport's form), through stdin.
    let lines: String = fixture()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| format!("{op}\n"))
        .collect();
    assert_eq!(
        db.ok_stdin(&["ops", "load", "-"], &lines),
        "loaded 7 operations (7 new, 0 replaced)\n"
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());

    // Extended JSON dates, a blank line, and a record without _id (one is made).
    let input = "{\"_id\":\"abcdefghijkmnopqr\",\"type\":\"CSV\",\"importerKey\":\"csv\",\
        \"ts\":{\"$date\":{\"$numberLong\":\"1691784517655\"}},\"status\":\"importer_new\",\
        \"valid\":true,\"user\":\"u\",\"_updatedAt\":{\"$date\":\"2030-01-01T00:00:00Z\"}}\n\n\
        {\"type\":\"CSV\",\"importerKey\":\"csv\",\"ts\":1,\"status\":\"importer_done\",\
        \"valid\":false,\"user\":\"u\",\"_updatedAt\":\"2029-01-01T00:00:00.000Z\"}\n";
    assert_eq!(
        db.ok_stdin(&["ops", "load", "-"], input),
        "loaded 2 operations (2 new, 0 replaced)\n"
    );
    let listed = db.json(&["ops", "list", "--json", "--limit", "3"]);
    assert_eq!(
        listed[0],
        serde_json::json!({"_id": "abcdefghijkmnopqr", "type": "CSV", "importerKey": "csv",
            "ts": "2023-08-11T20:08:37.655Z", "status": "importer_new", "valid": true,
            "user": "u", "_updatedAt": "2030-01-01T00:00:00.000Z"})
    );
    // A load without `_id` makes an ObjectId, as Rocket.Chat's models do (`BaseRaw.insertOne`
    // in packages/models).
    let made = listed[1]["_id"].as_str().unwrap();
    assert!(importops::domain::ids::is_object_id(made), "{made}");
    assert_eq!(listed[1]["_updatedAt"], "2029-01-01T00:00:00.000Z");
    assert_eq!(listed[1]["ts"], 1);
    assert_eq!(listed[2]["_id"], "MJxTRZsYdho8Ww2qq");
    assert_eq!(db.op_ids().len(), 9);

    // An empty input loads nothing, and says so.
    assert_eq!(
        db.ok_stdin(&["ops", "load", "-"], ""),
        "loaded 0 operations (0 new, 0 replaced)\n"
    );
}

#[test]
fn ops_load_is_all_or_nothing() {
    let db = Db::new();
    let dir = db.dir.path();

    // Into an empty database: nothing at all is written.
    let bad = format!(
        "[{},\n{},\n{}]",
        op(
            "aaaaaaaaaaaaaaaaa",
            "importer_new",
            "2030-01-01T00:00:00.000Z"
        ),
        op(
            "bbbbbbbbbbbbbbbbb",
            "importer_done",
            "2030-01-02T00:00:00.000Z"
        ),
        op(
            "ccccccccccccccccc",
            "importer_sleeping",
            "2030-01-03T00:00:00.000Z"
        ),
    );
    let file = dir.join("bad.json");
    std::fs::write(&file, &bad).unwrap();
    let line = db.fails(&["ops", "load", file.to_str().unwrap()]);
    assert!(
        line.starts_with("error: nothing was loaded: record 3: status \"importer_sleeping\""),
        "{line}"
    );
    assert!(
        line.contains("not one of Rocket.Chat's import statuses"),
        "{line}"
    );
    assert!(db.op_ids().is_empty());

    // Over existing data: neither the new records nor the replacement of a stored one land.
    db.ok(&["ops", "load", FIXTURE_PATH]);
    let bad = format!(
        "[{},\n{},\n{}]",
        op(
            "MJxTRZsYdho8Ww2qq",
            "importer_done",
            "2031-01-01T00:00:00.000Z"
        ),
        op(
            "bbbbbbbbbbbbbbbbb",
            "importer_done",
            "2030-01-02T00:00:00.000Z"
        ),
        r#"{"_id":"ccccccccccccccccc","type":"CSV","importerKey":"csv","status":"importer_new","user":"u"}"#,
    );
    std::fs::write(&file, &bad).unwrap();
    let line = db.fails(&["ops", "load", file.to_str().unwrap()]);
    assert_eq!(
        line,
        "error: nothing was loaded: record 3: valid is missing"
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());

    // The same in JSON lines names the line.
    let lines = format!(
        "{}\n{}\n{{\"_id\":\"short\",\"type\":\"CSV\"}}\n",
        op(
            "aaaaaaaaaaaaaaaaa",
            "importer_new",
            "2030-01-01T00:00:00.000Z"
        ),
        op(
            "bbbbbbbbbbbbbbbbb",
            "importer_done",
            "2030-01-02T00:00:00.000Z"
        ),
    );
    let line = db.fails_stdin(&["ops", "load", "-"], &lines);
    assert!(
        line.starts_with("error: nothing was loaded: line 3: _id \"short\""),
        "{line}"
    );
    let line = db.fails_stdin(&["ops", "load", "-"], "[1,");
    assert!(
        line.starts_with("error: nothing was loaded: the input is not a valid JSON array"),
        "{line}"
    );
    let line = db.fails(&["ops", "load", dir.join("missing.json").to_str().unwrap()]);
    assert!(line.starts_with("error: cannot read "), "{line}");
    assert!(line.contains("missing.json"), "{line}");
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());
}

#[test]
fn ops_load_skips_a_byte_order_mark() {
    let db = Db::new();
    let file = db.dir.path().join("bom.json");
    std::fs::write(&file, format!("\u{feff}{FIXTURE}")).unwrap();
    assert_eq!(
        db.ok(&["ops", "load", file.to_str().unwrap()]),
        "loaded 7 operations (7 new, 0 replaced)\n"
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());

    let lines: String = fixture()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| format!("{op}\n"))
        .collect();
    assert_eq!(
        db.ok_stdin(&["ops", "load", "-"], &format!("\u{feff}{lines}")),
        "loaded 7 operations (0 new, 7 replaced)\n"
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());
}

#[test]
fn ops_load_of_a_large_input_with_a_bad_record_late_writes_nothing() {
    let db = Db::new();
    db.ok(&["ops", "load", FIXTURE_PATH]);
    const N: usize = 30_000;
    let id = |i: usize| format!("{:024x}", 0x6000_0000 + i);
    let mut text = String::from("[\n");
    for i in 0..N {
        text.push_str(&op(&id(i), "importer_done", "2030-01-01T00:00:00.000Z"));
        text.push_str(",\n");
    }
    // The fixture's first operation, replaced, then a bad record: neither lands.
    text.push_str(&op(
        "MJxTRZsYdho8Ww2qq",
        "importer_done",
        "2031-01-01T00:00:00.000Z",
    ));
    text.push_str(",\n{\"_id\":\"short\"}\n]");
    let file = db.dir.path().join("large.json");
    std::fs::write(&file, &text).unwrap();
    let line = db.fails(&["ops", "load", file.to_str().unwrap()]);
    assert_eq!(
        line,
        format!(
            "error: nothing was loaded: record {}: _id \"short\" is not a 17-character \
             Meteor id or a 24-hex ObjectId",
            N + 2
        )
    );
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &fixture());
    assert_eq!(db.op_ids().len(), 7);

    // The same input without the bad record loads.
    let good = text.replace(",\n{\"_id\":\"short\"}\n]", "]");
    std::fs::write(&file, good).unwrap();
    assert_eq!(
        db.ok(&["ops", "load", file.to_str().unwrap()]),
        format!("loaded {} operations ({N} new, 1 replaced)\n", N + 1)
    );
}

#[test]
fn ops_load_refuses_an_id_given_twice() {
    let db = Db::new();
    let twice = format!(
        "[{},\n{},\n{}]",
        op(
            "aaaaaaaaaaaaaaaaa",
            "importer_new",
            "2030-01-01T00:00:00.000Z"
        ),
        op(
            "bbbbbbbbbbbbbbbbb",
            "importer_done",
            "2030-01-02T00:00:00.000Z"
        ),
        op(
            "aaaaaaaaaaaaaaaaa",
            "importer_done",
            "2030-01-03T00:00:00.000Z"
        ),
    );
    let file = db.dir.path().join("twice.json");
    std::fs::write(&file, twice).unwrap();
    let line = db.fails(&["ops", "load", file.to_str().unwrap()]);
    assert_eq!(
        line,
        "error: nothing was loaded: record 3: _id aaaaaaaaaaaaaaaaa was already used by record 1"
    );
    assert!(db.op_ids().is_empty());
}

#[test]
fn ops_remove() {
    let db = Db::new();
    db.ok(&["ops", "load", FIXTURE_PATH]);
    assert_eq!(
        db.ok(&["ops", "remove", "NRqiLZ4bADfGwMRMz"]),
        "removed operation NRqiLZ4bADfGwMRMz\n"
    );
    let mut expected = fixture();
    expected
        .as_array_mut()
        .unwrap()
        .retain(|op| op["_id"] != "NRqiLZ4bADfGwMRMz");
    assert_same_documents(&db.json(&["ops", "list", "--json"]), &expected);

    let line = db.fails(&["ops", "remove", "NRqiLZ4bADfGwMRMz"]);
    assert_eq!(
        line,
        r#"error: there is no operation with _id "NRqiLZ4bADfGwMRMz""#
    );
    let line = db.fails(&["ops", "remove", "nope"]);
    assert_eq!(line, r#"error: there is no operation with _id "nope""#);
    db.usage_error(&["ops", "remove"]);
    assert_eq!(db.op_ids().len(), 6);
}

// ---------------------------------------------------------------------------------------------
// secrets at rest

#[test]
fn raw_tokens_and_passwords_never_reach_the_database_files() {
    let db = Db::new();
    let password = "correct-horse-battery-staple-7f3a";
    db.ok_stdin(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    let (alice_id, login) = db.issue("alice", &[]);
    let (_, days) = db.issue("alice", &["--expires-in-days", "2"]);
    let (_, personal) = db.issue("alice", &["--personal", "ci"]);

    let check = |bytes: &[u8]| {
        let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(
            !contains(password),
            "the raw password is in the database files"
        );
        for raw in [&login, &days, &personal] {
            assert!(!contains(raw), "a raw token is in the database files");
            // The stored hash is there: the bytes read are the ones that hold the sessions.
            assert!(contains(&hash_token(raw)), "the token hash was not found");
        }
        assert!(contains(&alice_id));
        assert!(contains("$2b$10$"), "no bcrypt hash found");
    };
    check(&db.file_bytes());

    // After revoking, the raw tokens still never appear (nothing logs them into the file).
    db.ok(&["token", "revoke", "alice", "--token", &login]);
    db.ok(&["user", "set-active", "alice", "false"]);
    let bytes = db.file_bytes();
    for secret in [password, login.as_str(), days.as_str(), personal.as_str()] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the database files"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// serve

/// A running `importops serve`, killed when dropped (also when the test fails).
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(db: &Db, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for var in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.arg("--database-url")
        .arg(&db.url)
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// Waits until the server answers `/readyz`; false if it exited first or took too long.
async fn wait_ready(client: &reqwest::Client, child: &mut Child, base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().expect("poll the server").is_some() {
            return false;
        }
        let answer = client.get(format!("{base}/readyz")).send().await;
        if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts `importops serve` on a free port (retrying if another process took it first).
async fn start_server(db: &Db, client: &reqwest::Client) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = serve_command(db, &["--listen", &listen])
            .spawn()
            .expect("start importops serve");
        let mut server = Server {
            child,
            base: format!("http://{listen}"),
        };
        if wait_ready(client, &mut server.child, &server.base).await {
            return server;
        }
    }
    panic!("importops serve did not start");
}

async fn get_operations(
    client: &reqwest::Client,
    url: &str,
    user_id: &str,
    token: &str,
) -> (reqwest::StatusCode, Option<String>, String) {
    let response = client
        .get(url)
        .header("X-User-Id", user_id)
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, content_type, response.text().await.unwrap())
}

/// The server sees writes by other processes (this command line) within its watch interval:
/// asks until the answer has the wanted status, for a few seconds at most.
async fn eventually(
    client: &reqwest::Client,
    url: &str,
    user_id: &str,
    token: &str,
    want: u16,
) -> (Option<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, content_type, body) = get_operations(client, url, user_id, token).await;
        if status == want {
            return (content_type, body);
        }
        assert!(
            Instant::now() < deadline,
            "still {status} instead of {want} after 5 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn parse_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_honours_tokens_and_users_managed_by_the_command_line() {
    let db = Db::new();
    db.ok(&["user", "add", "admin", "--role", "admin"]);
    db.ok(&["ops", "load", FIXTURE_PATH]);
    let (user_id, token) = db.issue("admin", &[]);

    let client = reqwest::Client::new();
    let server = start_server(&db, &client).await;
    let url = format!("{}/api/v1/getLatestImportOperations", server.base);

    let (status, content_type, body) = get_operations(&client, &url, &user_id, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_same_documents(&parse_body(&body), &fixture());

    // Changes made with the command line while the server runs take effect.
    db.ok(&["role", "revoke", "admin", "admin"]);
    let (_, body) = eventually(&client, &url, &user_id, &token, 403).await;
    assert_eq!(
        parse_body(&body),
        serde_json::json!({"success": false,
            "error": "User does not have the permissions required for this action [error-unauthorized]"})
    );
    db.ok(&["role", "grant", "admin", "admin"]);
    eventually(&client, &url, &user_id, &token, 200).await;
    db.ok(&["ops", "remove", "MJxTRZsYdho8Ww2qq"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, body) = get_operations(&client, &url, &user_id, &token).await;
        assert_eq!(status, 200, "{body}");
        let ids: Vec<Value> = parse_body(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["_id"].clone())
            .collect();
        if ids.len() == 6 {
            assert!(!ids.contains(&Value::from("MJxTRZsYdho8Ww2qq")), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "the removal is not seen: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    db.ok(&["user", "set-active", "admin", "false"]);
    let (_, body) = eventually(&client, &url, &user_id, &token, 401).await;
    assert_eq!(body, r#"{"success":false,"error":"unauthorized"}"#);

    // Deactivating removed the token (Rocket.Chat's `unsetLoginTokens`): reactivated, the
    // user needs a new one; revoked, that one is refused again.
    db.ok(&["user", "set-active", "admin", "true"]);
    let (_, revived) = db.issue("admin", &[]);
    eventually(&client, &url, &user_id, &revived, 200).await;
    let (status, _, _) = get_operations(&client, &url, &user_id, &token).await;
    assert_eq!(status, 401, "the old token died with the deactivation");
    db.ok(&["token", "revoke", "admin", "--token", &revived]);
    let (_, body) = eventually(&client, &url, &user_id, &revived, 401).await;
    assert_eq!(body, r#"{"success":false,"error":"unauthorized"}"#);
    // A token issued while the server runs is accepted.
    let (_, fresh) = db.issue("admin", &[]);
    let (_, body) = eventually(&client, &url, &user_id, &fresh, 200).await;
    assert_eq!(parse_body(&body).as_array().unwrap().len(), 6);
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_demo_prints_a_curl_line_that_works() {
    let db = Db::new();
    let child = serve_command(&db, &["--demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start importops serve --demo");
    let mut server = Server {
        child,
        base: String::new(),
    };
    // Read stdout on a thread, so that a silent server fails the test instead of hanging it.
    let stdout = server.child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let curl = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve --demo printed no curl line");
        if line.starts_with("curl ") {
            break line;
        }
    };

    // curl -H 'X-User-Id: ID' -H 'X-Auth-Token: TOKEN' http://ADDR/api/v1/getLatestImportOperations
    let quoted: Vec<&str> = curl.split('\'').collect();
    assert_eq!(quoted.len(), 5, "{curl}");
    let user_id = quoted[1].strip_prefix("X-User-Id: ").expect(&curl);
    let token = quoted[3].strip_prefix("X-Auth-Token: ").expect(&curl);
    let url = quoted[4].trim();
    assert!(url.starts_with("http://127.0.0.1:"), "{curl}");
    assert!(url.ends_with("/api/v1/getLatestImportOperations"), "{curl}");
    assert!(!url.starts_with("http://127.0.0.1:0/"), "{curl}");
    server.base = url
        .trim_end_matches("/api/v1/getLatestImportOperations")
        .to_owned();

    // The user is `admin`, the token one the database holds.
    assert_eq!(db.user("admin")["_id"], user_id);
    assert!(db.holds_token(user_id, token));

    let client = reqwest::Client::new();
    assert!(wait_ready(&client, &mut server.child, &server.base).await);
    let (status, content_type, body) = get_operations(&client, url, user_id, token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_same_documents(&parse_body(&body), &fixture());

    // A wrong token is refused with the documented body.
    let (status, _, body) = get_operations(&client, url, user_id, "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"success":false,"error":"unauthorized"}"#);
    drop(server);
}

#[test]
fn serve_on_a_port_in_use_is_one_error_line() {
    let db = Db::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let output = bin()
        .args(["--database-url", &db.url, "serve", "--listen", &listen])
        .output()
        .unwrap();
    // The server logs its start-up on stderr; the last line is the error.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: cannot listen on {listen}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(taken);
}

// ---------------------------------------------------------------------------------------------
// Progress on a terminal only

/// `ops load` and `import-rocketchat` with stderr a terminal (a pseudo-terminal made by
/// util-linux's `script`) and, for comparison, a pipe.
fn run_loads(terminal: bool) -> Vec<String> {
    let db = Db::new();
    let file = db.dir.path().join("ops.jsonl");
    let lines: String = (0..5_000)
        .map(|i| {
            format!(
                "{{\"type\":\"csv\",\"importerKey\":\"csv\",\"status\":\"importer_done\",\
                 \"valid\":false,\"user\":\"u{i}\"}}\n"
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let export = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mongoexport");
    let commands: [&[&str]; 2] = [
        &["ops", "load", file.to_str().unwrap()],
        &["import-rocketchat", export],
    ];
    commands
        .iter()
        .map(|args| {
            if !terminal {
                // stderr is a pipe: the summary on stdout, nothing at all on stderr.
                let out = succeeded(db.cmd(args).output().expect("run importops"), args);
                assert!(
                    out.starts_with("loaded 5000 operations") || out.starts_with("imported "),
                    "{out}"
                );
                return out;
            }
            let line = std::iter::once(BIN)
                .chain(["--database-url", &db.url])
                .chain(args.iter().copied())
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut script = std::process::Command::new("script");
            script
                .args(["-qec", &line, "/dev/null"])
                .env("TERM", "xterm")
                .stdin(Stdio::null());
            for var in ENV_VARS {
                script.env_remove(var);
            }
            let output = script.output().expect("util-linux's script runs");
            assert!(output.status.success(), "{args:?} under script");
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect()
}

/// On a terminal both commands show the records read, their rate and the time left; when
/// stderr is not a terminal they write nothing there (no bar, no escape code).
#[test]
fn loads_show_progress_on_a_terminal_only() {
    for out in run_loads(false) {
        assert!(!out.contains('\u{1b}'), "{out:?}");
    }
    let [load, import] = <[String; 2]>::try_from(run_loads(true)).unwrap();
    for (what, out, records) in [
        ("ops load", &load, "5,000 records ("),
        ("import", &import, "3 records ("),
    ] {
        assert!(out.contains(records), "{what}: counts: {out:?}");
        assert!(out.contains("/s)"), "{what}: a rate: {out:?}");
        assert!(out.contains(" left"), "{what}: the time left: {out:?}");
    }
    assert!(import.contains("users.json"), "{import:?}");
    assert!(import.contains("rocketchat_import.json"), "{import:?}");
}
