//! The shared backend: PostgreSQL, for several stateless replicas on one database.

mod import;

use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Row};

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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the tables' triggers notify on every committed write (migration 0002).
const CHANGES_CHANNEL: &str = "importops_changes";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn err(e: sqlx::Error) -> StoreError {
    // SQLSTATE classes 08 (connection), 53 (insufficient resources), 57 (operator
    // intervention: shutdown, cannot connect now).
    classify(e, |code| {
        code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
    })
}

const USER_COLUMNS: &str = "id, username, name, active, roles, emails";
/// Whether the users row has the e-mail address bound as the first parameter, in any case.
const EMAIL_MATCHES: &str = "EXISTS (SELECT 1 FROM json_array_elements(users.emails::json) e \
     WHERE lower(e->>'address') = lower($1))";

impl PostgresStore {
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Other)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PostgresStore { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => err(inner),
            other => StoreError::Migrate(other),
        })
    }

    pub async fn seed_defaults(&self) -> Result<(), StoreError> {
        let roles: Vec<String> = DEFAULT_ROLES.iter().map(|r| r.to_string()).collect();
        let ids: Vec<String> = DEFAULT_PERMISSIONS
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        let perm_roles: Vec<String> = DEFAULT_PERMISSIONS
            .iter()
            .map(|(_, roles)| encode_list(&roles.iter().map(|r| r.to_string()).collect::<Vec<_>>()))
            .collect();
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO roles (name) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&roles)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "INSERT INTO permissions (id, roles, updated_at) \
             SELECT id, roles, $3 FROM UNNEST($1::text[], $2::text[]) AS p(id, roles) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&ids)
        .bind(&perm_roles)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// Listens on the channel that the tables' triggers notify (see the migrations). A
    /// notification arrives only once its transaction has committed.
    pub async fn watch_changes(
        &self,
        interval: Duration,
        mut report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        loop {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    // Report a lost connection at once instead of reconnecting first (which
                    // waits for the pool's timeout): the cache must stop serving meanwhile.
                    listener.eager_reconnect(false);
                    listener
                }
                Err(_) => {
                    if report(Observation::Unreachable).is_break() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            // Anything may have been committed while no one listened.
            let first = match listener.listen(CHANGES_CHANNEL).await {
                Ok(()) => Observation::Changed,
                Err(_) => Observation::Unreachable,
            };
            if report(first).is_break() {
                return;
            }
            if first == Observation::Changed {
                loop {
                    let observation = match listener.try_recv().await {
                        Ok(Some(_)) => Observation::Changed,
                        // The connection was lost: notifications may have been missed.
                        Ok(None) | Err(_) => Observation::Unreachable,
                    };
                    if report(observation).is_break() {
                        return;
                    }
                    if observation == Observation::Unreachable {
                        break;
                    }
                }
            }
            tokio::time::sleep(interval).await;
        }
    }

    pub fn pool_status(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(err)
    }

    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert_roles(&mut tx, &user.roles).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO users (id, username, name, active, roles, emails, password_bcrypt, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.name)
        .bind(user.active)
        .bind(encode_list(&user.roles))
        .bind(encode_emails(user))
        .bind(&user.password_bcrypt)
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
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?
        .map(decode_user)
        .transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
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
                 WHERE username = $1 OR {EMAIL_MATCHES} ORDER BY (username = $1) IS TRUE DESC LIMIT 1"
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
        let done = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn remove_user_by_id(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET active = $1, updated_at = $2 WHERE username = $3")
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert_roles(&mut tx, roles).await?;
        let done = sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE username = $3")
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
             VALUES ($1, $2, $3, $4, $5, $6)",
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
             WHERE s.user_id = $1 AND s.hashed_token = $2",
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
            "SELECT id, kind, name, issued_at, expires_at FROM sessions WHERE user_id = $1 \
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
            Revoke::All => sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id),
            Revoke::Name(name) => sqlx::query(
                "DELETE FROM sessions WHERE user_id = $1 AND kind = 'personal' AND name = $2",
            )
            .bind(user_id)
            .bind(name),
            Revoke::Hash(hash) => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND hashed_token = $2")
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
            sqlx::query_scalar("SELECT roles FROM permissions WHERE id = $1")
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert_roles(&mut tx, roles).await?;
        let done = sqlx::query("UPDATE permissions SET roles = $1, updated_at = $2 WHERE id = $3")
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        for (id, roles) in changes {
            insert_roles(&mut tx, roles).await?;
            sqlx::query("UPDATE permissions SET roles = $1, updated_at = $2 WHERE id = $3")
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
        sqlx::query_scalar("SELECT doc FROM import_operations WHERE id = $1")
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        let valid: Vec<String> =
            sqlx::query_scalar("SELECT doc FROM import_operations WHERE valid")
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
        for doc in &valid {
            let op = invalidate(doc).map_err(StoreError::Corrupt)?;
            sqlx::query(
                "UPDATE import_operations SET updated_at = $1, valid = $2, doc = $3 WHERE id = $4",
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
                 VALUES ($1, $2, $3, $4, $5, $6)",
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
            "SELECT doc FROM import_operations ORDER BY updated_at DESC, seq ASC LIMIT $1",
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
        let mut tx = self.pool.begin().await.map_err(err)?;
        let report = write_operations(&mut tx, ops, &|_| {}).await?;
        tx.commit().await.map_err(err)?;
        Ok(report)
    }

    pub async fn upsert_operation_stream<E>(
        &self,
        chunks: OperationChunks<E>,
    ) -> Result<LoadReport, StreamError<E>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let report = write_operation_stream(&mut tx, chunks).await?;
        tx.commit().await.map_err(err)?;
        Ok(report)
    }

    pub async fn remove_operation(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM import_operations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() > 0)
    }
}

async fn insert_roles(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    roles: &[String],
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO roles (name) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING")
        .bind(roles)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(err)
}

/// Operations sent per statement by `write_operations`.
const OPERATION_CHUNK: usize = 2_000;

async fn count_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ops: &[Operation],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StoreError> {
    for chunk in ops.chunks(OPERATION_CHUNK) {
        // WITH ORDINALITY keeps the chunk's order, so seq follows the input order.
        sqlx::query(
            "INSERT INTO import_operations (id, updated_at, ts, status, valid, doc) \
             SELECT id, updated_at, ts, status, valid, doc FROM UNNEST( \
             $1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bool[], $6::text[]) \
             WITH ORDINALITY AS o(id, updated_at, ts, status, valid, doc, n) ORDER BY n \
             ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, \
             ts = excluded.ts, status = excluded.status, valid = excluded.valid, \
             doc = excluded.doc",
        )
        .bind(chunk.iter().map(|o| o.id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| o.updated_at_ms).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| o.ts_ms).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| o.status.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| o.valid).collect::<Vec<_>>())
        .bind(chunk.iter().map(|o| o.doc.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        progress(chunk.len() as u64);
    }
    Ok(())
}
