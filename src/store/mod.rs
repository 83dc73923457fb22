//! Storage: one `Store` over SQLite or PostgreSQL, chosen by the database URL's scheme.
//!
//! Every statement is written once, in the module that owns its table (`users`, `sessions`,
//! `permissions`, `operations`, `import`), with `$1` placeholders, which both sqlx drivers
//! take (generated statements with many parameters spell them per backend: `Dialect`).
//! `with_pool!` and `in_write!` expand a statement's code once per backend; the backend
//! modules (`sqlite`, `postgres`) keep only what really differs: connecting, the write
//! transaction's `BEGIN`, the change watcher, the health check and which error codes mean
//! "unavailable". Errors leave as `StoreError`, which says whether the database was
//! unreachable, so the HTTP layer can answer 503 without seeing SQL.

mod changes;
mod file_identity;
mod import;
mod operations;
mod permissions;
mod pooled;
mod postgres;
mod sessions;
mod sqlite;
pub mod staging;
mod users;

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use changes::Kinds;

use crate::config::PostgresPooler;
use crate::domain::auth::TokenKind;
use crate::domain::operation::Operation;

pub use import::{ImportReport, ImportedToken, ImportedUser, RocketchatImport};
pub use permissions::Permission;
pub use sessions::{NewSession, Revoke, SessionInfo};
pub use staging::{NewStaged, Outcome, Staged};
pub use users::{UserImport, UserImported};

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://importops.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or is busy beyond the timeout.
    #[error("the database is unavailable ({0})")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule of the database was broken; the message says which, in words.
    #[error("{0}")]
    Conflict(Conflict),
    /// Applying the migrations failed.
    #[error("the database schema could not be migrated ({0})")]
    Migrate(sqlx::migrate::MigrateError),
    /// Stored data that the code cannot read (for example roles that are not a JSON list).
    #[error("the database holds data importops cannot read ({0})")]
    Corrupt(String),
    #[error("the database reported an error ({0})")]
    Other(#[source] sqlx::Error),
    /// The database named at start-up cannot be opened. One sentence that names it (the
    /// SQLite file, or the Postgres server's host and port, never a password) and says why.
    #[error("{0}")]
    Open(String),
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// A username held by another user (compared ignoring case).
    Username,
    /// An e-mail address held by another user (compared ignoring case).
    Email,
    /// A token value or a personal access token's name the user already has.
    Token,
    /// A Rocket.Chat export that collides with local data.
    Import,
}

/// A broken uniqueness rule, with a sentence for people. Reads as its sentence (`Deref<str>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// The username or e-mail address at stake, as the write gave it (empty for the others).
    pub value: String,
    message: String,
}

impl Conflict {
    pub fn new(kind: ConflictKind, value: impl Into<String>, message: impl Into<String>) -> Self {
        Conflict {
            kind,
            value: value.into(),
            message: message.into(),
        }
    }
}

impl std::ops::Deref for Conflict {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<sqlx::Error> for StoreError {
    /// Sorts out the errors that mean "cannot reach the database" from the rest.
    fn from(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            // A connection closed or cut while it was set up or used (a server or a proxy
            // going away) shows as an I/O or a protocol error.
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                sqlite::is_unavailable(db.as_ref()) || postgres::is_unavailable(db.as_ref())
            }
            _ => false,
        };
        if unavailable {
            StoreError::Unavailable(err)
        } else {
            StoreError::Other(err)
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => StoreError::Migrate(other),
        }
    }
}

/// `err` as a `Conflict` of `kind` when it is a unique violation, else as usual.
fn unique_violation(
    err: sqlx::Error,
    kind: ConflictKind,
    value: &str,
    message: impl Into<String>,
) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(Conflict::new(kind, value, message))
        }
        _ => err.into(),
    }
}

/// Chunks of operations in input order, for a streamed write: the write commits when the
/// channel closes, and an `Err` item rolls it back.
pub type OperationChunks<E> = tokio::sync::mpsc::Receiver<Result<Vec<Operation>, E>>;

/// Why a streamed or revised write failed: the input (the `Err` item it sent, or the refusal
/// of the revision), or the database.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error("{0}")]
    Input(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<sqlx::Error> for StreamError<E> {
    fn from(err: sqlx::Error) -> Self {
        StreamError::Store(err.into())
    }
}

/// The longest the change watcher goes without proving its connection live.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a look at the database may take before the watcher reports it unreachable.
const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err("the database URL must start with sqlite:// or postgres://".into())
        }
    }
}

/// How many operations a load added and how many it replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub inserted: u64,
    pub updated: u64,
}

impl LoadReport {
    /// From the row counts around a load of `n` records with distinct ids.
    fn counted(n: usize, before: i64, after: i64) -> Self {
        let inserted = (after - before).max(0) as u64;
        LoadReport {
            inserted,
            updated: (n as u64).saturating_sub(inserted),
        }
    }
}

/// The storage, whichever backend. Cheap to clone: clones share the pool and the count of
/// writes made through them.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
    /// Bumped after every write through this process's stores (by `in_write!`, the one path
    /// writes take), once per kind of data the write touches (`Kinds`), so that caches in this
    /// process see their own changes on the very next request, and keep what did not change.
    writes: Arc<[AtomicU64; Kinds::COUNT]>,
    /// Told, after a write through this process removed sessions of one user, which user
    /// (the caches of this process, so that they drop that user's sessions only).
    session_listeners: Arc<SessionListeners>,
    /// Bumped after every write to operations through this process's stores, and when the
    /// change watcher saw another process's (`Store::operations_changed_elsewhere`): what the
    /// change feed (`crate::feed`) waits on.
    operation_signal: Arc<tokio::sync::watch::Sender<u64>>,
}

/// A listener returns `Break` once it is gone (its cache dropped), and is then forgotten.
type SessionListener = Box<dyn Fn(Option<&str>) -> ControlFlow<()> + Send + Sync>;

#[derive(Default)]
struct SessionListeners(std::sync::Mutex<Vec<SessionListener>>);

impl std::fmt::Debug for SessionListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionListeners")
    }
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PostgresDb),
}

/// What a look at the database for changes made by anyone (other processes included) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Nothing was committed since the last look.
    Unchanged,
    /// Something was committed to these kinds of data (or may have been: a lost connection
    /// counts as a change to all). Sessions among them: any user's may have been removed.
    Changed(Kinds),
    /// Sessions of this user (by id) were removed or changed, and nothing else (Postgres
    /// notifications say whose, migration 0030).
    SessionsOf(Box<str>),
    /// The database could not be reached.
    Unreachable,
}

impl Observation {
    /// `Changed(kinds)`, or `Unchanged` when that is no kind.
    fn of(kinds: Kinds) -> Self {
        if kinds.is_empty() {
            Observation::Unchanged
        } else {
            Observation::Changed(kinds)
        }
    }
}

/// Runs `$body` with `$pool` bound to the store's executor of reads: the pool (on Postgres
/// through a transaction pooler, one transaction per statement: `pooled`). The body is
/// written once and compiled once per backend, so its statement texts serve both.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.engine {
            $crate::store::Engine::Sqlite(db) => {
                let $pool = &db.pool;
                $body
            }
            $crate::store::Engine::Postgres(db) => {
                let $pool = db.reads();
                $body
            }
        }
    };
}

/// Runs `$body` inside one write transaction bound to `$tx`, commits it, and counts the write
/// against the kinds of data it touches (`$kinds`, the tables it writes) whatever the outcome.
/// Every statement that writes runs inside this macro: it is the one path that tells this
/// process's cache about its own writes. A `?` in the body rolls back.
macro_rules! in_write {
    ($store:expr, $kinds:expr, |$tx:ident| $body:expr) => {
        $crate::store::in_write!($store, $kinds, |$tx| -> $crate::store::StoreError { $body })
    };
    // With the error type the body returns (one that `StoreError` and `sqlx::Error` convert to).
    ($store:expr, $kinds:expr, |$tx:ident| -> $error:ty $body:block) => {{
        let store: &$crate::store::Store = &$store;
        let result: Result<_, $error> = match &store.engine {
            $crate::store::Engine::Sqlite(db) => {
                async {
                    let mut $tx = db.begin_write().await.map_err(<$error>::from)?;
                    let out = $body;
                    $tx.commit().await?;
                    Ok(out)
                }
                .await
            }
            $crate::store::Engine::Postgres(db) => {
                async {
                    let mut $tx = db.begin_write().await.map_err(<$error>::from)?;
                    let out = $body;
                    $tx.commit().await?;
                    Ok(out)
                }
                .await
            }
        };
        store.count_write($kinds);
        result
    }};
}

pub(crate) use {in_write, with_pool};

/// How long the server's statements may wait on Postgres, so that a lock held elsewhere or a
/// pool whose connections are all busy answers 503 within a few seconds instead of holding
/// the request (docs/compatibility.md, section 6.1). The command line waits as long as it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waits {
    /// For a free connection from the pool.
    pub acquire: Duration,
    /// For a row or table lock (Postgres `lock_timeout`).
    pub lock: Duration,
    /// For a whole statement (Postgres `statement_timeout`).
    pub statement: Duration,
}

impl Store {
    /// Opens the database (creating a SQLite file if needed), applies the migrations and seeds
    /// Rocket.Chat's default roles and permissions where they are missing.
    ///
    /// One connection is made first, outside the pool: a database that cannot be opened fails
    /// at once as `StoreError::Open`, in words that name it (the pool would retry a refused
    /// connection until its timeout, and its errors do not say where it tried).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, None, PostgresPooler::None).await
    }

    /// [`Store::open`], with the server's bounds on waiting for Postgres.
    pub async fn open_with(
        url: &str,
        waits: Option<Waits>,
        pooler: PostgresPooler,
    ) -> Result<Self, StoreError> {
        let store = Self::connect_lazy_with(url, waits, pooler)?;
        match &store.engine {
            Engine::Sqlite(db) => db.check_open().await?,
            Engine::Postgres(db) => db.check_open().await?,
        }
        store.migrate().await?;
        Ok(store)
    }

    /// A store whose connections are made on first use, without migrating.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        Self::connect_lazy_with(url, None, PostgresPooler::None)
    }

    fn connect_lazy_with(
        url: &str,
        waits: Option<Waits>,
        pooler: PostgresPooler,
    ) -> Result<Self, StoreError> {
        let backend: Backend = url
            .parse()
            .map_err(|e: String| StoreError::Other(sqlx::Error::Configuration(e.into())))?;
        let engine = match backend {
            Backend::Sqlite => Engine::Sqlite(sqlite::SqliteDb::connect_lazy(url)?),
            Backend::Postgres => {
                Engine::Postgres(postgres::PostgresDb::connect_lazy(url, waits, pooler)?)
            }
        };
        Ok(Store {
            engine,
            writes: Arc::default(),
            session_listeners: Arc::default(),
            operation_signal: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool's connections: (open, idle).
    pub fn pool_status(&self) -> (u32, usize) {
        match &self.engine {
            Engine::Sqlite(db) => (db.pool.size(), db.pool.num_idle()),
            Engine::Postgres(db) => (db.pool().size(), db.pool().num_idle()),
        }
    }

    /// How many writes this process has made through this store and its clones to any of
    /// `kinds` (a write to two of them counts twice).
    pub fn local_writes(&self, kinds: Kinds) -> u64 {
        kinds
            .indices()
            .map(|i| self.writes[i].load(Ordering::Acquire))
            .sum()
    }

    /// Calls `listener` with the user's id after each write through this store (or a clone)
    /// that removed or changed sessions of that user alone (a user changed or removed
    /// included), once the write is counted; with `None` when it cannot tell whose.
    pub fn on_sessions_removed(
        &self,
        listener: impl Fn(Option<&str>) -> ControlFlow<()> + Send + Sync + 'static,
    ) {
        let mut listeners = self
            .session_listeners
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        listeners.push(Box::new(listener));
    }

    fn sessions_removed(&self, user_id: Option<&str>) {
        let mut listeners = self
            .session_listeners
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        listeners.retain(|listener| listener(user_id).is_continue());
    }

    fn count_write(&self, kinds: Kinds) {
        for i in kinds.indices() {
            self.writes[i].fetch_add(1, Ordering::Release);
        }
        if kinds.contains(Kinds::OPERATIONS) {
            self.operations_changed_elsewhere();
        }
    }

    /// A receiver that is marked changed after each write to operations through this store or
    /// a clone (every one: `in_write!` counts them), and after each change to operations the
    /// change watcher reported for another process or replica.
    pub fn operation_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.operation_signal.subscribe()
    }

    /// Tells the receivers of `operation_changes` that operations may have changed (the
    /// change watcher's report of another process's write).
    pub fn operations_changed_elsewhere(&self) {
        self.operation_signal
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Watches the database for commits by anyone, reporting each look to `report` until it
    /// returns `ControlFlow::Break`. SQLite is polled every `interval`; Postgres pushes
    /// notifications as transactions commit, or is polled too (`ChangeDetection::Poll`).
    /// Either way the watcher proves its connection live at least every
    /// `HEARTBEAT` (each poll does), and reports `Unreachable` when it cannot within
    /// `HEARTBEAT_TIMEOUT` (RELIABILITY.md: silent partition).
    pub async fn watch_changes(
        &self,
        detection: crate::config::ChangeDetection,
        interval: std::time::Duration,
        report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        match &self.engine {
            Engine::Sqlite(db) => db.watch_changes(interval, report).await,
            Engine::Postgres(db) => db.watch_changes(detection, interval, report).await,
        }
    }

    /// Applies pending migrations, then seeds missing default roles and permissions.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(db) => sqlite::MIGRATOR.run(&db.pool).await?,
            Engine::Postgres(db) => db.migrate().await?,
        }
        self.seed_defaults().await
    }

    /// Closes every connection; later calls fail as unavailable.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(db) => db.pool.close().await,
            Engine::Postgres(db) => db.pool().close().await,
        }
    }

    /// One round trip to the database (on SQLite, also a fresh open of the file).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(db) => db.ping().await,
            Engine::Postgres(db) => db.ping().await,
        }
    }
}

/// Decodes a JSON list of strings kept in a TEXT column.
fn decode_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored list: {e}")))
}

fn encode_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings is always JSON")
}

fn decode_kind(kind: &str) -> Result<TokenKind, StoreError> {
    TokenKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("token kind {kind:?}")))
}

/// How a backend spells the n-th parameter of a long statement. SQLite looks a numbered or
/// named parameter up among those seen so far (quadratic in their number: a 6 000-parameter
/// insert took longer to prepare than to run), while its plain `?` is numbered in order.
trait Dialect: sqlx::Database {
    /// The statement that makes writes which read the valid operations, then change them
    /// ("invalidate the others, then insert") take turns, or `None` where every write
    /// transaction already does (SQLite's `BEGIN IMMEDIATE`).
    const SERIALIZE_OPERATIONS: Option<&'static str>;

    fn push_parameter(sql: &mut String, n: usize);
}

impl Dialect for sqlx::Sqlite {
    const SERIALIZE_OPERATIONS: Option<&'static str> = None;

    fn push_parameter(sql: &mut String, _: usize) {
        sql.push('?');
    }
}

impl Dialect for sqlx::Postgres {
    // Conflicts with itself and with every row write to the table, not with reads; held to
    // the end of the transaction.
    const SERIALIZE_OPERATIONS: Option<&'static str> =
        Some("LOCK TABLE import_operations IN SHARE ROW EXCLUSIVE MODE");

    fn push_parameter(sql: &mut String, n: usize) {
        sql.push('$');
        sql.push_str(itoa::Buffer::new().format(n));
    }
}

/// A write transaction (`in_write!`'s), which names its backend.
trait WriteTransaction {
    type Db: Dialect;
}

impl WriteTransaction for sqlx::Transaction<'_, sqlx::Sqlite> {
    type Db = sqlx::Sqlite;
}

impl WriteTransaction for pooled::Write {
    type Db = sqlx::Postgres;
}

/// `Dialect::SERIALIZE_OPERATIONS` for the backend of the transaction `_tx`.
fn serialize_operations<T: WriteTransaction>(_tx: &T) -> Option<&'static str> {
    T::Db::SERIALIZE_OPERATIONS
}

/// `INSERT INTO <table> (<columns>) VALUES ($1, ..), (..) ..` for `rows` rows, followed by
/// `suffix`, for the backend of the transaction `_tx`: the text of one multi-row statement,
/// whose values are bound row after row in order.
fn insert_values<T: WriteTransaction>(
    _tx: &T,
    table: &str,
    columns: &[&str],
    rows: usize,
    suffix: &str,
) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            T::Db::push_parameter(&mut sql, n);
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(suffix);
    sql
}

/// The inside of an `IN (..)` list of `n` parameters for the backend of `_tx`, each one
/// wrapped in `function(..)` when a function is named.
fn parameter_list<T: WriteTransaction>(_tx: &T, n: usize, function: &str) -> String {
    let mut sql = String::new();
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        if function.is_empty() {
            T::Db::push_parameter(&mut sql, i);
        } else {
            sql.push_str(function);
            sql.push('(');
            T::Db::push_parameter(&mut sql, i);
            sql.push(')');
        }
    }
    sql
}

/// Rows per multi-row statement: at most 9 columns x 1 000 rows stays under both SQLite's
/// (32 766) and Postgres' (65 535) limits on parameters.
const CHUNK_ROWS: usize = 1_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_number_their_parameters_in_order() {
        let mut sql = String::new();
        sqlx::Postgres::push_parameter(&mut sql, 12);
        sqlx::Sqlite::push_parameter(&mut sql, 12);
        assert_eq!(sql, "$12?");
    }
}
