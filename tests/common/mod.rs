//! Test support shared by the integration suites: a fresh database per test on SQLite (always)
//! or Postgres (when `IMPORTOPS_TEST_POSTGRES_URL` is set), and an in-process app to call.
#![allow(dead_code)]

pub mod archives;

use std::io::Write;
use std::sync::Once;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use importops::Store;
use importops::accounts::{NewAccount, TokenLifetime, create_user, issue_token};
use importops::config::{PostgresPooler, Settings};
use importops::http::{AppState, router};
use sqlx::Connection;
use tower::ServiceExt;

pub const POSTGRES_ENV: &str = "IMPORTOPS_TEST_POSTGRES_URL";

/// A database that exists for one test and is removed after it.
pub struct TestDb {
    pub url: String,
    /// How `open` reaches Postgres: directly, or as through a transaction pooler.
    pub pooler: PostgresPooler,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/importops.db", dir.path().display());
        TestDb {
            url,
            pooler: PostgresPooler::None,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A new, empty database on the Postgres server named by `IMPORTOPS_TEST_POSTGRES_URL`, or
    /// `None` (said once on stderr) when the variable is not set. When it is set, an
    /// unreachable server fails the test: CI must never skip this suite silently.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_with(PostgresPooler::None).await
    }

    /// [`TestDb::postgres`], opened as through a pooler in transaction mode
    /// (`--postgres-pooler transaction`): the same statements, unnamed, each inside a
    /// transaction, which Postgres takes directly too.
    pub async fn postgres_pooled() -> Option<Self> {
        Self::postgres_with(PostgresPooler::Transaction).await
    }

    async fn postgres_with(pooler: PostgresPooler) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Written past the test harness's capture, so it shows in every run.
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTE: Postgres suites SKIPPED: set {POSTGRES_ENV}=postgres://USER@HOST:PORT/DB to run them"
                );
            });
            return None;
        };
        let name = format!("importops_test_{}", random_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but Postgres is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        Some(TestDb {
            url: with_database(&admin_url, &name),
            pooler,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    pub async fn open(&self) -> Store {
        Store::open_with(&self.url, None, self.pooler)
            .await
            .expect("open the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

fn random_suffix() -> String {
    importops::domain::ids::new_meteor_id().to_lowercase()
}

/// The same URL naming another database.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

/// Runs each listed `async fn name(db: TestDb)` on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::common::TestDb::postgres().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// Runs each listed `async fn name(db: TestDb)` on Postgres opened as through a transaction
/// pooler (`TestDb::postgres_pooled`).
#[macro_export]
macro_rules! on_postgres_pooled {
    ($($name:ident),* $(,)?) => {
        mod postgres_pooled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::common::TestDb::postgres_pooled().await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

/// The application in process, called through `tower::ServiceExt::oneshot`.
pub struct TestApp {
    pub store: Store,
    pub state: AppState,
}

/// An answer: status, headers, and the body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

/// Credentials of a user made for a test.
#[derive(Debug, Clone)]
pub struct Login {
    pub user_id: String,
    pub token: String,
}

impl TestApp {
    pub async fn new(db: &TestDb) -> Self {
        Self::with_settings(db, Settings::default()).await
    }

    pub async fn with_settings(db: &TestDb, settings: Settings) -> Self {
        let store = db.open().await;
        TestApp {
            state: AppState::new(store.clone(), settings),
            store,
        }
    }

    pub async fn request(&self, request: Request<Body>) -> Answer {
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router never fails");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
        }
    }

    /// GET with optional credentials.
    pub async fn get(&self, path: &str, login: Option<&Login>) -> Answer {
        let mut builder = Request::get(path);
        if let Some(login) = login {
            builder = builder
                .header("X-User-Id", &login.user_id)
                .header("X-Auth-Token", &login.token);
        }
        self.request(builder.body(Body::empty()).unwrap()).await
    }

    /// POST a JSON body with optional credentials.
    pub async fn post(
        &self,
        path: &str,
        login: Option<&Login>,
        body: &serde_json::Value,
    ) -> Answer {
        let mut builder = Request::post(path).header("content-type", "application/json");
        if let Some(login) = login {
            builder = builder
                .header("X-User-Id", &login.user_id)
                .header("X-Auth-Token", &login.token);
        }
        self.request(builder.body(Body::from(body.to_string())).unwrap())
            .await
    }

    /// A new active user with these roles and a password, without a token.
    pub async fn user_with_password(
        &self,
        username: &str,
        roles: &[&str],
        password: &str,
    ) -> String {
        create_user(
            &self.store,
            NewAccount {
                username: username.into(),
                email: Some(format!("{username}@example.com")),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                password: Some(password.into()),
                active: true,
                ..NewAccount::default()
            },
        )
        .await
        .expect("create a user")
        .id
    }

    /// A new active user with these roles and a fresh login token.
    pub async fn user(&self, username: &str, roles: &[&str]) -> Login {
        let user = create_user(
            &self.store,
            NewAccount {
                username: username.into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                active: true,
                ..NewAccount::default()
            },
        )
        .await
        .expect("create a user");
        let token = issue_token(&self.store, &user.id, TokenLifetime::Default)
            .await
            .expect("issue a token");
        Login {
            user_id: user.id,
            token,
        }
    }

    /// Another login token for an existing user.
    pub async fn another_token(&self, login: &Login) -> Login {
        let token = issue_token(&self.store, &login.user_id, TokenLifetime::Default)
            .await
            .expect("issue a token");
        Login {
            user_id: login.user_id.clone(),
            token,
        }
    }

    pub async fn admin(&self) -> Login {
        self.user("admin", &["admin", "user"]).await
    }

    /// Loads a JSON array or JSON lines of operations through the same path as `ops load`.
    pub async fn load(&self, text: &str) {
        let ops = importops::batch::parse_batch(text, importops::domain::time::now_ms())
            .expect("valid operations");
        self.store
            .upsert_operations(&ops)
            .await
            .expect("load operations");
    }
}

/// The documented example, as text.
pub fn documented_example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/documented-operations.json"
    ))
    .expect("the documented example")
}

/// An operation document with the given id, `_updatedAt` and extra fields.
pub fn operation(id: &str, updated_at: &str) -> serde_json::Value {
    serde_json::json!({
        "_id": id, "type": "CSV", "importerKey": "csv", "ts": 1635280600083u64,
        "status": "importer_done", "valid": true, "user": "d26x6zSkaPSe5gCyy",
        "_updatedAt": updated_at,
    })
}

/// A valid Meteor id made from a number, for generated operations.
pub fn meteor_id(n: usize) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
    let mut id = vec![b'2'; 17];
    let mut n = n;
    for slot in id.iter_mut().rev() {
        *slot = ALPHABET[n % ALPHABET.len()];
        n /= ALPHABET.len();
    }
    String::from_utf8(id).unwrap()
}
