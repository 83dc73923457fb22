//! What an operator meets when the database named by `--database-url` cannot be used, run as
//! the real `importops` binary: each mistake is one sentence on stderr naming the database,
//! exit 1, within 2 s, for `migrate`, `serve` and a command that reads; and a database that
//! disappears while `importops serve` runs (a Postgres database dropped, a SQLite file's
//! folder removed) answers 503 in Rocket.Chat's shape, never 500 (docs/compatibility.md,
//! section 6.1).

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{POSTGRES_ENV, TestDb, with_database};
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_importops");

/// Environment variables the binary reads; a developer's shell must not change a test.
const ENV_VARS: [&str; 6] = [
    "DATABASE_URL",
    "RUST_LOG",
    "IMPORTOPS_LISTEN",
    "IMPORTOPS_ADMIN_USERNAME",
    "IMPORTOPS_ADMIN_PASSWORD",
    "PGPASSWORD",
];

/// Rocket.Chat's 503 (`apps/meteor/server/api/ApiClass.ts`, `unavailable`).
const UNAVAILABLE: &str = r#"{"success":false,"error":"Service Unavailable"}"#;

/// The commands that open the database; each must fail alike.
const COMMANDS: [&[&str]; 3] = [
    &["migrate"],
    &["serve", "--listen", "127.0.0.1:0"],
    &["user", "list"],
];

fn importops(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for var in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "1")
        .arg("--database-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs every command of `COMMANDS` against `url`: each must exit 1 within 2 s with exactly
/// `expected` as its one line on stderr and nothing on stdout.
fn each_command_fails_with(url: &str, expected: &str) {
    for args in COMMANDS {
        let started = Instant::now();
        let output = run_bounded(importops(url, args));
        let elapsed = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url} {args:?}: {stderr}");
        assert_eq!(stderr, format!("{expected}\n"), "{url} {args:?}");
        assert!(output.stdout.is_empty(), "{url} {args:?}: wrote on stdout");
        assert!(
            elapsed < Duration::from_secs(2),
            "{url} {args:?}: took {elapsed:?}"
        );
    }
}

/// Runs a command, killing it after 20 s (a hang fails the test instead of stalling it).
fn run_bounded(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run importops");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(output) => output.expect("wait for importops"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("importops did not exit within 20 s");
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// SQLite

#[test]
fn an_empty_sqlite_path_is_refused_in_words() {
    // SQLite would give every connection a private temporary database: the migrations'
    // tables were not seen by the next connection ("no such table: roles").
    for url in ["sqlite://", "sqlite:", "sqlite://?mode=rwc"] {
        each_command_fails_with(
            url,
            &format!(
                "error: the SQLite database URL names no file: write sqlite://PATH, such as sqlite://importops.db (got {url:?})"
            ),
        );
    }
}

#[test]
fn a_sqlite_database_in_a_missing_folder_names_the_folder_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("not-there");
    let file = folder.join("t.db");
    each_command_fails_with(
        &format!("sqlite://{}", file.display()),
        &format!(
            "error: cannot open the SQLite database {}: the folder {} does not exist (create it first)",
            file.display(),
            folder.display()
        ),
    );
    assert!(!folder.exists(), "the folder was created");
    // A relative path too, named as given.
    let output = run_bounded(importops("sqlite://not-there-either/t.db", &["migrate"]));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: cannot open the SQLite database not-there-either/t.db: the folder not-there-either does not exist (create it first)\n"
    );
    // A file in place of the folder, and a file that is not a database.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a database, and not a folder either").unwrap();
    each_command_fails_with(
        &format!("sqlite://{}/t.db", plain.display()),
        &format!(
            "error: cannot open the SQLite database {}/t.db: {} is not a folder",
            plain.display(),
            plain.display()
        ),
    );
    each_command_fails_with(
        &format!("sqlite://{}", plain.display()),
        &format!(
            "error: cannot open the SQLite database {}: file is not a database",
            plain.display()
        ),
    );
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap(),
        "not a database, and not a folder either"
    );
}

// ---------------------------------------------------------------------------------------------
// Postgres

#[test]
fn a_closed_postgres_port_fails_at_once_naming_host_and_port() {
    let port = closed_port();
    // The pool alone retried a refused connection for its 5 s timeout ("pool timed out").
    each_command_fails_with(
        &format!("postgres://importops:hunter2@127.0.0.1:{port}/importops"),
        &format!(
            "error: cannot connect to PostgreSQL at 127.0.0.1:{port}: the connection was refused (no server listens there)"
        ),
    );
}

#[test]
fn an_unknown_postgres_host_names_the_host() {
    // `.invalid` never resolves (RFC 6761).
    each_command_fails_with(
        "postgres://importops:hunter2@db.importops.invalid:6543/importops",
        "error: cannot connect to PostgreSQL at db.importops.invalid:6543: the host name db.importops.invalid cannot be resolved",
    );
}

/// A stand-in for a Postgres server that asks for a cleartext password and refuses it as
/// PostgreSQL does (SQLSTATE 28P01, the message of `auth.c`'s `auth_failed`): the shared test
/// server trusts every local connection, so it can refuse none. Sends each password it was
/// given; answers `connections` connections, then stops.
fn refusing_postgres(connections: usize) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let read_i32 = |s: &mut std::net::TcpStream| {
                let mut b = [0u8; 4];
                s.read_exact(&mut b).map(|()| i32::from_be_bytes(b))
            };
            let mut answer = || -> std::io::Result<()> {
                let (mut len, mut code) = (read_i32(&mut stream)?, read_i32(&mut stream)?);
                if code == 80_877_103 {
                    // SSLRequest: no TLS here, then the startup message.
                    stream.write_all(b"N")?;
                    (len, code) = (read_i32(&mut stream)?, read_i32(&mut stream)?);
                }
                assert_eq!(code, 196_608, "protocol 3.0");
                let mut params = vec![0u8; len as usize - 8];
                stream.read_exact(&mut params)?;
                // AuthenticationCleartextPassword.
                stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])?;
                let mut tag = [0u8; 1];
                stream.read_exact(&mut tag)?;
                assert_eq!(tag[0], b'p', "a password message");
                let len = read_i32(&mut stream)?;
                let mut password = vec![0u8; len as usize - 4];
                stream.read_exact(&mut password)?;
                let password = String::from_utf8_lossy(&password);
                let _ = tx.send(password.trim_end_matches('\0').to_owned());
                let mut fields = Vec::new();
                for field in [
                    "SFATAL",
                    "VFATAL",
                    "C28P01",
                    "Mpassword authentication failed for user \"importops\"",
                ] {
                    fields.extend_from_slice(field.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut message = vec![b'E'];
                message.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
                message.extend_from_slice(&fields);
                stream.write_all(&message)
            };
            let _ = answer();
        }
    });
    (port, rx)
}

#[test]
fn a_wrong_postgres_password_names_the_user_host_and_port_never_the_password() {
    let (port, passwords) = refusing_postgres(COMMANDS.len());
    each_command_fails_with(
        &format!("postgres://importops:hunter2@127.0.0.1:{port}/importops"),
        &format!(
            "error: PostgreSQL at 127.0.0.1:{port} refused the password of user \"importops\""
        ),
    );
    // Each command did reach the password step.
    for _ in COMMANDS {
        assert_eq!(
            passwords.recv_timeout(Duration::from_secs(1)).unwrap(),
            "hunter2"
        );
    }
}

/// The shared Postgres server of `IMPORTOPS_TEST_POSTGRES_URL`, as `(url, host:port)`; `None`
/// when the variable is not set (the Postgres suites are then skipped, said on stderr).
fn postgres_server() -> Option<(String, String)> {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("NOTE: Postgres set-up errors SKIPPED: set {POSTGRES_ENV} to run them");
        return None;
    };
    let after_scheme = url.split_once("://").expect("a URL").1;
    let authority = after_scheme.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    Some((url, host_port))
}

#[test]
fn an_unknown_postgres_user_or_database_names_host_and_port() {
    let Some((url, at)) = postgres_server() else {
        return;
    };
    let database = "importops_no_such_database_i15";
    each_command_fails_with(
        &with_database(&url, database),
        &format!("error: PostgreSQL at {at} has no database \"{database}\""),
    );
    let user = "importops_no_such_user_i15";
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    each_command_fails_with(
        &format!("{scheme}://{user}:hunter2@{rest}"),
        &format!(
            "error: PostgreSQL at {at} refused user \"{user}\" (role \"{user}\" does not exist)"
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// A database that disappears while serving

/// A running `importops serve`, killed (by its own pid) when dropped.
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

/// Starts `importops serve` on a free port and waits until it is ready.
async fn start_server(url: &str, client: &reqwest::Client) -> Server {
    for _ in 0..5 {
        let listen = format!("127.0.0.1:{}", closed_port());
        let child = importops(url, &["serve", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start importops serve");
        let mut server = Server {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if server.child.try_wait().unwrap().is_some() {
                break;
            }
            let ready = client.get(format!("{}/readyz", server.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("importops serve did not start");
}

/// An admin made and given a token with the command line: (userId, authToken).
fn admin_token(url: &str) -> (String, String) {
    let added = run_bounded(importops(url, &["user", "add", "admin", "--role", "admin"]));
    assert!(added.status.success(), "{added:?}");
    let issued = run_bounded(importops(url, &["token", "issue", "admin", "--json"]));
    assert!(issued.status.success(), "{issued:?}");
    let v: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    (
        v["userId"].as_str().unwrap().to_owned(),
        v["authToken"].as_str().unwrap().to_owned(),
    )
}

/// Serves `url`, checks an answer, runs `vanish`, then: every answer is 200 (served before
/// the server noticed) or 503, and within 5 s the routes that read the database answer 503
/// with Rocket.Chat's body; the server keeps running.
async fn answers_503_once_the_database_vanishes(url: &str, vanish: impl Future<Output = ()>) {
    let (user_id, token) = admin_token(url);
    let client = reqwest::Client::new();
    let mut server = start_server(url, &client).await;
    let base = server.base.clone();
    let get = |path: &str| {
        client
            .get(format!("{base}/api/v1/{path}"))
            .header("X-User-Id", &user_id)
            .header("X-Auth-Token", &token)
            .send()
    };
    let ops = get("getLatestImportOperations").await.unwrap();
    assert_eq!(ops.status(), 200);

    vanish.await;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = get("getLatestImportOperations").await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        assert!(status == 200 || status == 503, "{status} {body}");
        if status == 503 {
            assert_eq!(body, UNAVAILABLE);
            break;
        }
        assert!(Instant::now() < deadline, "still 200 after 5 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in ["me", "getLatestImportOperations"] {
        let answer = get(path).await.unwrap();
        assert_eq!(answer.status(), 503, "{path}");
        assert_eq!(answer.text().await.unwrap(), UNAVAILABLE, "{path}");
    }
    let login = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"user": "admin", "password": "whatever"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503);
    assert_eq!(login.text().await.unwrap(), UNAVAILABLE);
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_dropped_while_serving_answers_503() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let admin_url = std::env::var(POSTGRES_ENV).unwrap();
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    answers_503_once_the_database_vanishes(&db.url, async {
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_folder_removed_while_serving_answers_503_and_is_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    std::fs::create_dir(&folder).unwrap();
    let url = format!("sqlite://{}/t.db", folder.display());
    answers_503_once_the_database_vanishes(&url, async {
        std::fs::remove_dir_all(&folder).unwrap();
    })
    .await;
    assert!(!folder.exists(), "the folder came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_removed_while_serving_answers_503_and_is_not_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.db");
    let url = format!("sqlite://{}", file.display());
    answers_503_once_the_database_vanishes(&url, async {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    })
    .await;
    assert!(
        !file.exists(),
        "an empty database file was made in its place"
    );
}
