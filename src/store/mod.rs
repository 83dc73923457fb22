//! Storage: one `Store` over two small backend modules, chosen by the database URL's scheme.
//!
//! Handlers and commands call `Store` methods; each backend owns its SQL, its pool and its
//! migrations (`migrations/<backend>/`). Errors leave as `StoreError`, which says whether the
//! database was unreachable, so the HTTP layer can answer 503 without seeing SQL.

mod postgres;
mod sqlite;

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::auth::{Session, TokenKind};
use crate::domain::operation::Operation;
use crate::domain::user::{NewUser, User};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://importops.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or is busy beyond the timeout.
    #[error("the database is unavailable ({0})")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness rule was broken; the message says which, in words.
    #[error("{0}")]
    Conflict(String),
    /// Applying the migrations failed.
    #[error("the database schema could not be migrated ({0})")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data that the code cannot read (for example roles that are not a JSON list).
    #[error("the database holds data importops cannot read ({0})")]
    Corrupt(String),
    #[error("the database reported an error ({0})")]
    Other(#[source] sqlx::Error),
}

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

/// A login token or personal access token to store (the token itself is already hashed).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: String,
    pub hashed_token: String,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// What `token list` shows of a session: never the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: i64,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone)]
pub enum Revoke {
    All,
    /// The personal access token of that name.
    Name(String),
    /// The session holding that token hash.
    Hash(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub id: String,
    pub roles: Vec<String>,
    pub updated_at_ms: i64,
}

/// How many operations a load added and how many it replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub inserted: u64,
    pub updated: u64,
}

impl LoadReport {
    /// From the row counts around a load of `n` operations with distinct ids.
    fn counted(n: usize, before: i64, after: i64) -> Self {
        let inserted = (after - before).max(0) as u64;
        LoadReport {
            inserted,
            updated: (n as u64).saturating_sub(inserted),
        }
    }
}

/// Chunks of operations in input order, for a streamed write: the write commits when the
/// channel closes, and an `Err` item rolls it back.
pub type OperationChunks<E> = tokio::sync::mpsc::Receiver<Result<Vec<Operation>, E>>;

/// Why a streamed write failed: the input (the `Err` item it sent), or the database.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    #[error("{0}")]
    Input(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The users and permissions of a Rocket.Chat export, ready to be written by
/// `Store::import_rocketchat` with the export's operations (`rocketchat` reads and checks
/// them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RocketchatImport {
    pub users: Vec<ImportedUser>,
    /// `(permission, roles)`, inserted or replaced.
    pub permissions: Vec<(String, Vec<String>)>,
}

/// A Rocket.Chat user, inserted or replaced by `_id`, with the tokens that replace its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedUser {
    pub id: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub emails: Vec<crate::domain::user::Email>,
    /// Rocket.Chat's bcrypt of the sha256 hex of the password, as stored there.
    pub password_bcrypt: Option<String>,
    pub created_at_ms: Option<i64>,
    pub tokens: Vec<ImportedToken>,
}

/// A login token (`expires_at` left to the configured expiration) or a personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedToken {
    pub hashed_token: String,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub users: LoadReport,
    pub tokens: u64,
    pub permissions: LoadReport,
    pub operations: LoadReport,
}

/// The storage, whichever backend. Cheap to clone: clones share the pool and the count of
/// writes made through them.
#[derive(Debug, Clone)]
pub struct Store {
    engine: Engine,
    /// Bumped after every write through this process's stores, so that caches in this process
    /// see their own changes on the very next request.
    writes: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// What a look at the database for changes made by anyone (other processes included) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Nothing was committed since the last look.
    Unchanged,
    /// Something was committed (or may have been: a lost connection counts as a change).
    Changed,
    /// The database could not be reached.
    Unreachable,
}

/// Calls the same method on whichever backend this store is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.engine {
            Engine::Sqlite(s) => s.$method($($arg),*).await,
            Engine::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

/// `dispatch!` for a method that writes: counts the write, whatever its outcome.
macro_rules! dispatch_write {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let result = dispatch!($self.$method($($arg),*));
        $self.writes.fetch_add(1, Ordering::Release);
        result
    }};
}

impl Store {
    /// Opens the database (creating a SQLite file if needed), applies the migrations and seeds
    /// Rocket.Chat's default roles and permissions where they are missing.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store whose connections are made on first use, without migrating.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let backend: Backend = url
            .parse()
            .map_err(|e: String| StoreError::Other(sqlx::Error::Configuration(e.into())))?;
        let engine = match backend {
            Backend::Sqlite => Engine::Sqlite(SqliteStore::connect_lazy(url)?),
            Backend::Postgres => Engine::Postgres(PostgresStore::connect_lazy(url)?),
        };
        Ok(Store {
            engine,
            writes: Arc::new(AtomicU64::new(0)),
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
            Engine::Sqlite(s) => s.pool_status(),
            Engine::Postgres(s) => s.pool_status(),
        }
    }

    /// How many writes this process has made through this store and its clones.
    pub fn local_writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Watches the database for commits by anyone, reporting each look to `report` until it
    /// returns `ControlFlow::Break`. SQLite is polled every `interval`; Postgres pushes
    /// notifications as transactions commit.
    pub async fn watch_changes(
        &self,
        interval: std::time::Duration,
        report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        dispatch!(self.watch_changes(interval, report))
    }

    /// Applies pending migrations, then seeds missing default roles and permissions.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self.migrate())?;
        dispatch_write!(self.seed_defaults())
    }

    /// Closes every connection; later calls fail as unavailable.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    // --- users and roles ---

    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        dispatch_write!(self.create_user(user))
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self.user_by_username(username))
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self.user_by_id(id))
    }

    /// The user a login names (a username, or an e-mail address in any case) and its stored
    /// password hash, if it has one.
    pub async fn user_for_login(
        &self,
        username_or_email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        dispatch!(self.user_for_login(username_or_email))
    }

    /// Whether any user has this e-mail address (in any case).
    pub async fn email_taken(&self, email: &str) -> Result<bool, StoreError> {
        dispatch!(self.email_taken(email))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        dispatch!(self.list_users())
    }

    /// Removes a user and its sessions; false when there was no such user.
    pub async fn remove_user(&self, username: &str) -> Result<bool, StoreError> {
        dispatch_write!(self.remove_user(username))
    }

    /// Removes a user by id and its sessions; false when there was no such user.
    pub async fn remove_user_by_id(&self, id: &str) -> Result<bool, StoreError> {
        dispatch_write!(self.remove_user_by_id(id))
    }

    pub async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        dispatch_write!(self.set_user_active(username, active))
    }

    /// Replaces a user's roles, creating roles that do not exist yet.
    pub async fn set_user_roles(
        &self,
        username: &str,
        roles: &[String],
    ) -> Result<bool, StoreError> {
        dispatch_write!(self.set_user_roles(username, roles))
    }

    pub async fn list_roles(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self.list_roles())
    }

    // --- sessions ---

    pub async fn insert_session(&self, session: &NewSession) -> Result<(), StoreError> {
        dispatch_write!(self.insert_session(session))
    }

    /// The session of that user with that token hash, with what authentication needs of the
    /// user; the caller decides whether it still authenticates.
    pub async fn find_session(
        &self,
        user_id: &str,
        hashed_token: &str,
    ) -> Result<Option<Session>, StoreError> {
        dispatch!(self.find_session(user_id, hashed_token))
    }

    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, StoreError> {
        dispatch!(self.list_sessions(user_id))
    }

    /// Deletes the matching sessions of a user; returns how many.
    pub async fn revoke_sessions(&self, user_id: &str, which: &Revoke) -> Result<u64, StoreError> {
        dispatch_write!(self.revoke_sessions(user_id, which))
    }

    // --- permissions ---

    /// The roles holding a permission; `None` when no such permission exists.
    pub async fn permission_roles(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        dispatch!(self.permission_roles(id))
    }

    pub async fn list_permissions(&self) -> Result<Vec<Permission>, StoreError> {
        dispatch!(self.list_permissions())
    }

    /// Replaces the roles of an existing permission, creating missing roles; false when the
    /// permission does not exist.
    pub async fn set_permission_roles(
        &self,
        id: &str,
        roles: &[String],
    ) -> Result<bool, StoreError> {
        dispatch_write!(self.set_permission_roles(id, roles, crate::domain::time::now_ms()))
    }

    /// Replaces the roles of several permissions in one transaction, creating missing roles.
    /// The permissions must exist (callers check).
    pub async fn set_permissions(
        &self,
        changes: &[(String, Vec<String>)],
    ) -> Result<(), StoreError> {
        dispatch_write!(self.set_permissions(changes, crate::domain::time::now_ms()))
    }

    // --- import operations ---

    /// The stored document of an operation.
    pub async fn operation_by_id(&self, id: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self.operation_by_id(id))
    }

    /// The document of the operation with the newest `ts` (Rocket.Chat's "current" one).
    pub async fn current_operation(&self) -> Result<Option<String>, StoreError> {
        dispatch!(self.current_operation())
    }

    /// In one transaction: marks every valid operation invalid (with `_updatedAt` now, through
    /// `invalidate`), then stores `then_insert` if given. Returns how many were invalidated.
    pub async fn invalidate_operations(
        &self,
        invalidate: &(dyn Fn(&str) -> Result<Operation, String> + Sync),
        then_insert: Option<&Operation>,
    ) -> Result<u64, StoreError> {
        dispatch_write!(self.invalidate_operations(invalidate, then_insert))
    }

    /// The stored documents of the `limit` operations with the newest `_updatedAt`, newest
    /// first, ties first stored first.
    pub async fn latest_operations(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self.latest_operations(limit))
    }

    pub async fn count_operations(&self) -> Result<i64, StoreError> {
        dispatch!(self.count_operations())
    }

    /// Inserts or replaces operations by `_id`, all or nothing. A replaced operation keeps its
    /// place in the stored order. The ids must be distinct (callers check).
    pub async fn upsert_operations(&self, ops: &[Operation]) -> Result<LoadReport, StoreError> {
        dispatch_write!(self.upsert_operations(ops))
    }

    /// `upsert_operations` for chunks that arrive while the transaction is open: all of them
    /// or nothing. The ids must be distinct across chunks (callers check).
    pub async fn upsert_operation_stream<E>(
        &self,
        chunks: OperationChunks<E>,
    ) -> Result<LoadReport, StreamError<E>> {
        dispatch_write!(self.upsert_operation_stream(chunks))
    }

    pub async fn remove_operation(&self, id: &str) -> Result<bool, StoreError> {
        dispatch_write!(self.remove_operation(id))
    }

    /// Writes a Rocket.Chat export in one transaction: roles, users (by `_id`; their sessions
    /// replaced by the export's tokens), permissions, then the operations (by `_id`) as their
    /// chunks arrive. A username held by a local user outside the export is a `Conflict`, and
    /// nothing is written; so is an `Err` chunk. `progress` is told how many users and
    /// permissions each step wrote.
    pub async fn import_rocketchat<E>(
        &self,
        data: &RocketchatImport,
        operations: OperationChunks<E>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportReport, StreamError<E>> {
        let now = crate::domain::time::now_ms();
        dispatch_write!(self.import_rocketchat(data, operations, now, progress))
    }
}

/// Decodes a JSON list of strings kept in a TEXT column.
fn decode_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("a stored list: {e}")))
}

fn encode_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings is always JSON")
}

/// `USER_COLUMNS` of a users row: id, username, name, active, roles, emails.
type UserRow = (String, Option<String>, Option<String>, bool, String, String);
/// A `UserRow` followed by the password hash.
type LoginRow = (
    String,
    Option<String>,
    Option<String>,
    bool,
    String,
    String,
    Option<String>,
);

fn decode_login(
    (id, username, name, active, roles, emails, bcrypt): LoginRow,
) -> Result<(User, Option<String>), StoreError> {
    decode_user((id, username, name, active, roles, emails)).map(|user| (user, bcrypt))
}

fn decode_user((id, username, name, active, roles, emails): UserRow) -> Result<User, StoreError> {
    Ok(User {
        id,
        username,
        name,
        active,
        roles: decode_list(&roles)?,
        emails: serde_json::from_str(&emails)
            .map_err(|e| StoreError::Corrupt(format!("stored e-mails: {e}")))?,
    })
}

fn encode_emails(user: &NewUser) -> String {
    serde_json::to_string(&user.emails).expect("e-mails are always JSON")
}

type SessionRow = (
    String,
    Option<String>,
    bool,
    String,
    String,
    i64,
    Option<i64>,
);

fn decode_session(
    (user_id, username, active, roles, kind, issued_at_ms, expires_at_ms): SessionRow,
) -> Result<Session, StoreError> {
    Ok(Session {
        user_id,
        username,
        active,
        roles: decode_list(&roles)?,
        kind: decode_kind(&kind)?,
        issued_at_ms,
        expires_at_ms,
    })
}

fn decode_kind(kind: &str) -> Result<TokenKind, StoreError> {
    TokenKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("token kind {kind:?}")))
}

/// Sorts out the errors that mean "cannot reach the database" from the rest.
fn classify(err: sqlx::Error, unavailable_code: impl Fn(&str) -> bool) -> StoreError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| unavailable_code(&c)) => {
            StoreError::Unavailable(err)
        }
        _ => StoreError::Other(err),
    }
}
