//! The embedded backend: one SQLite file in WAL mode, readers never wait for the writer.

mod import;

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection, SqlitePool};

use super::{
    LoadReport, LoginRow, NewSession, Observation, OperationChunks, Permission, Revoke,
    SessionInfo, SessionRow, StoreError, StreamError, classify, decode_kind, decode_list,
    decode_login, decode_session, decode_user, encode_emails, encode_list,
};
use crate::domain::auth::Session;
use crate::domain::operation::Operation;
use crate::domain::permission::{DEFAULT_PERMISSIONS, DEFAULT_ROLES};
use crate::domain::time::now_ms;
use crate::domain::user::{NewUser, User};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another writer before the request fails as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// For the change watcher's own connection, outside the pool.
    options: Arc<SqliteConnectOptions>,
}

fn err(e: sqlx::Error) -> StoreError {
    // Primary result codes: BUSY, LOCKED, READONLY, IOERR, CANTOPEN (extended codes keep them
    // in the low byte).
    classify(e, |code| {
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 14))
    })
}

const USER_COLUMNS: &str = "id, username, name, active, roles, emails";
/// Whether the users row has the e-mail address bound as the first parameter, in any case.
const EMAIL_MATCHES: &str = "EXISTS (SELECT 1 FROM json_each(users.emails) \
     WHERE lower(json_extract(json_each.value, '$.address')) = lower(?1))";

impl SqliteStore {
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Other)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        Ok(SqliteStore {
            pool,
            options: Arc::new(options),
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => err(inner),
            other => StoreError::Migrate(other),
        })
    }

    pub async fn seed_defaults(&self) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        for role in DEFAULT_ROLES {
            sqlx::query("INSERT INTO roles (name) VALUES (?) ON CONFLICT DO NOTHING")
                .bind(role)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        let now = now_ms();
        for (id, roles) in DEFAULT_PERMISSIONS {
            let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
            sqlx::query(
                "INSERT INTO permissions (id, roles, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(encode_list(&roles))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    /// Polls `PRAGMA data_version` on a connection of its own: its value changes whenever
    /// another connection, in this process or another, commits to the database file.
    pub async fn watch_changes(
        &self,
        interval: Duration,
        mut report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        let mut conn: Option<SqliteConnection> = None;
        let mut last: Option<i64> = None;
        loop {
            let observation = match self.data_version(&mut conn).await {
                Ok(version) if last == Some(version) => Observation::Unchanged,
                Ok(version) => {
                    last = Some(version);
                    Observation::Changed
                }
                Err(_) => {
                    conn = None;
                    last = None;
                    Observation::Unreachable
                }
            };
            if report(observation).is_break() {
                return;
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn data_version(&self, conn: &mut Option<SqliteConnection>) -> Result<i64, sqlx::Error> {
        let conn = match conn {
            Some(c) => c,
            None => conn.insert(self.options.connect().await?),
        };
        tokio::time::timeout(
            BUSY_TIMEOUT,
            sqlx::query_scalar("PRAGMA data_version").fetch_one(conn),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    pub fn pool_status(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`). A deferred one
    /// that reads first cannot wait for the lock when it writes: SQLite fails it at once
    /// ("database is locked") if another connection wrote meanwhile.
    async fn write_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A query through the pool, then the file opened afresh and its schema read: pooled
    /// connections keep their open files, so only a new one tells whether the database can
    /// still be opened and read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        let mut conn = self.options.connect().await.map_err(err)?;
        let read = sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(err);
        let _ = conn.close().await;
        read
    }

    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        insert_roles(&mut tx, &user.roles).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO users (id, username, name, active, roles, emails, password_bcrypt, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.name)
        .bind(user.active)
        .bind(encode_list(&user.roles))
        .bind(encode_emails(user))
        .bind(&user.password_bcrypt)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("the username {:?} is already taken", user.username))
            }
            _ => err(e),
        })?;
        tx.commit().await.map_err(err)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .map(decode_user)
        .transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .map(decode_user)
            .transpose()
    }

    pub async fn user_for_login(
        &self,
        login: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let row: Option<LoginRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS}, password_bcrypt FROM users \
                 WHERE username = ?1 OR {EMAIL_MATCHES} ORDER BY username = ?1 DESC LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(decode_login).transpose()
    }

    pub async fn email_taken(&self, email: &str) -> Result<bool, StoreError> {
        sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM users WHERE {EMAIL_MATCHES})"
        ))
        .bind(email)
        .fetch_one(&self.pool)
        .await
        .map_err(err)
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .into_iter()
        .map(decode_user)
        .collect()
    }

    pub async fn remove_user(&self, username: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE username = ?")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn remove_user_by_id(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET active = ?, updated_at = ? WHERE username = ?")
            .bind(active)
            .bind(now_ms())
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_user_roles(
        &self,
        username: &str,
        roles: &[String],
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_transaction().await?;
        insert_roles(&mut tx, roles).await?;
        let done = sqlx::query("UPDATE users SET roles = ?, updated_at = ? WHERE username = ?")
            .bind(encode_list(roles))
            .bind(now_ms())
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_roles(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }

    pub async fn insert_session(&self, s: &NewSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (user_id, hashed_token, kind, name, issued_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.user_id)
        .bind(&s.hashed_token)
        .bind(s.kind.as_str())
        .bind(&s.name)
        .bind(s.issued_at_ms)
        .bind(s.expires_at_ms)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("the user already has a token of that name or value".into())
            }
            _ => err(e),
        })
    }

    pub async fn find_session(
        &self,
        user_id: &str,
        hashed_token: &str,
    ) -> Result<Option<Session>, StoreError> {
        sqlx::query_as::<_, SessionRow>(
            "SELECT u.id, u.username, u.active, u.roles, s.kind, s.issued_at, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.user_id = ? AND s.hashed_token = ?",
        )
        .bind(user_id)
        .bind(hashed_token)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .map(decode_session)
        .transpose()
    }

    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, name, issued_at, expires_at FROM sessions WHERE user_id = ? \
             ORDER BY issued_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(SessionInfo {
                    id: r.get(0),
                    kind: decode_kind(r.get(1))?,
                    name: r.get(2),
                    issued_at_ms: r.get(3),
                    expires_at_ms: r.get(4),
                })
            })
            .collect()
    }

    pub async fn revoke_sessions(&self, user_id: &str, which: &Revoke) -> Result<u64, StoreError> {
        let query = match which {
            Revoke::All => sqlx::query("DELETE FROM sessions WHERE user_id = ?").bind(user_id),
            Revoke::Name(name) => sqlx::query(
                "DELETE FROM sessions WHERE user_id = ? AND kind = 'personal' AND name = ?",
            )
            .bind(user_id)
            .bind(name),
            Revoke::Hash(hash) => {
                sqlx::query("DELETE FROM sessions WHERE user_id = ? AND hashed_token = ?")
                    .bind(user_id)
                    .bind(hash)
            }
        };
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected())
    }

    pub async fn permission_roles(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let roles: Option<String> =
            sqlx::query_scalar("SELECT roles FROM permissions WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        roles.as_deref().map(decode_list).transpose()
    }

    pub async fn list_permissions(&self) -> Result<Vec<Permission>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, roles, updated_at FROM permissions ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.into_iter()
            .map(|(id, roles, updated_at_ms)| {
                Ok(Permission {
                    id,
                    roles: decode_list(&roles)?,
                    updated_at_ms,
                })
            })
            .collect()
    }

    pub async fn set_permission_roles(
        &self,
        id: &str,
        roles: &[String],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_transaction().await?;
        insert_roles(&mut tx, roles).await?;
        let done = sqlx::query("UPDATE permissions SET roles = ?, updated_at = ? WHERE id = ?")
            .bind(encode_list(roles))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_permissions(
        &self,
        changes: &[(String, Vec<String>)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_transaction().await?;
        for (id, roles) in changes {
            insert_roles(&mut tx, roles).await?;
            sqlx::query("UPDATE permissions SET roles = ?, updated_at = ? WHERE id = ?")
                .bind(encode_list(roles))
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    pub async fn operation_by_id(&self, id: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT doc FROM import_operations WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    pub async fn current_operation(&self) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT doc FROM import_operations ORDER BY ts DESC, seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    pub async fn invalidate_operations(
        &self,
        invalidate: &(dyn Fn(&str) -> Result<Operation, String> + Sync),
        then_insert: Option<&Operation>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let valid: Vec<String> =
            sqlx::query_scalar("SELECT doc FROM import_operations WHERE valid = 1")
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
        for doc in &valid {
            let op = invalidate(doc).map_err(StoreError::Corrupt)?;
            sqlx::query(
                "UPDATE import_operations SET updated_at = ?, valid = ?, doc = ? WHERE id = ?",
            )
            .bind(op.updated_at_ms)
            .bind(op.valid)
            .bind(&op.doc)
            .bind(&op.id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        if let Some(op) = then_insert {
            sqlx::query(
                "INSERT INTO import_operations (id, updated_at, ts, status, valid, doc) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&op.id)
            .bind(op.updated_at_ms)
            .bind(op.ts_ms)
            .bind(&op.status)
            .bind(op.valid)
            .bind(&op.doc)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(valid.len() as u64)
    }

    pub async fn latest_operations(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT doc FROM import_operations ORDER BY updated_at DESC, seq ASC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    pub async fn count_operations(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM import_operations")
            .fetch_one(&self.pool)
            .await
            .map_err(err)
    }

    pub async fn upsert_operations(&self, ops: &[Operation]) -> Result<LoadReport, StoreError> {
        let mut tx = self.write_transaction().await?;
        let report = write_operations(&mut tx, ops, &|_| {}).await?;
        tx.commit().await.map_err(err)?;
        Ok(report)
    }

    pub async fn upsert_operation_stream<E>(
        &self,
        chunks: OperationChunks<E>,
    ) -> Result<LoadReport, StreamError<E>> {
        let mut tx = self.write_transaction().await?;
        let report = write_operation_stream(&mut tx, chunks).await?;
        tx.commit().await.map_err(err)?;
        Ok(report)
    }

    pub async fn remove_operation(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM import_operations WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_roles(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    roles: &[String],
) -> Result<(), StoreError> {
    for role in roles {
        sqlx::query("INSERT INTO roles (name) VALUES (?) ON CONFLICT DO NOTHING")
            .bind(role)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Rows per multi-row INSERT: 6 parameters each stays far below SQLite's parameter limit.
const OPERATION_CHUNK: usize = 1_000;

async fn count_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut **tx)
        .await
        .map_err(err)
}

/// Inserts or replaces operations by `_id` inside a transaction, in their order, a chunk at a
/// time (`progress` is told each chunk's size). A replaced operation keeps its `seq`, its place
/// in the stored order. The ids must be distinct.
async fn write_operations(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ops: &[Operation],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadReport, StoreError> {
    if ops.is_empty() {
        return Ok(LoadReport::default());
    }
    let before = count_rows(tx, "import_operations").await?;
    write_operation_rows(tx, ops, progress).await?;
    let after = count_rows(tx, "import_operations").await?;
    Ok(LoadReport::counted(ops.len(), before, after))
}

/// `write_operations` for chunks received while the transaction is open; an `Err` chunk stops
/// it (the caller's transaction then rolls back). The rows are counted once, not per chunk.
async fn write_operation_stream<E>(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    mut chunks: OperationChunks<E>,
) -> Result<LoadReport, StreamError<E>> {
    let before = count_rows(tx, "import_operations").await?;
    let mut n = 0;
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.map_err(StreamError::Input)?;
        write_operation_rows(tx, &chunk, &|_| {}).await?;
        n += chunk.len();
    }
    let after = count_rows(tx, "import_operations").await?;
    Ok(LoadReport::counted(n, before, after))
}

/// The statements of `write_operations`, without the counts.
async fn write_operation_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ops: &[Operation],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StoreError> {
    for chunk in ops.chunks(OPERATION_CHUNK) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO import_operations (id, updated_at, ts, status, valid, doc) ",
        );
        q.push_values(chunk, |mut row, op| {
            row.push_bind(op.id.as_str())
                .push_bind(op.updated_at_ms)
                .push_bind(op.ts_ms)
                .push_bind(op.status.as_str())
                .push_bind(op.valid)
                .push_bind(op.doc.as_str());
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, \
             ts = excluded.ts, status = excluded.status, valid = excluded.valid, \
             doc = excluded.doc",
        );
        q.build().execute(&mut **tx).await.map_err(err)?;
        progress(chunk.len() as u64);
    }
    Ok(())
}
