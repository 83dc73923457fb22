//! What only SQLite does: one file in WAL mode (readers never wait for the writer), write
//! transactions that take the lock at once, and a change watcher that polls
//! `PRAGMA data_version`.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{Observation, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another writer before the request fails as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(super) struct SqliteDb {
    pub(super) pool: SqlitePool,
    /// For the change watcher's and the health check's own connections, outside the pool.
    options: Arc<SqliteConnectOptions>,
}

/// Primary result codes BUSY, LOCKED, READONLY, IOERR and CANTOPEN (extended codes keep them
/// in the low byte): the database cannot be used now.
pub(super) fn is_unavailable(db: &(dyn DatabaseError + 'static)) -> bool {
    db.try_downcast_ref::<SqliteError>()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 14))
}

impl SqliteDb {
    pub(super) fn connect_lazy(url: &str) -> Result<Self, StoreError> {
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
        Ok(SqliteDb {
            pool,
            options: Arc::new(options),
        })
    }

    /// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`). A deferred one
    /// that reads first cannot wait for the lock when it writes: SQLite fails it at once
    /// ("database is locked") if another connection wrote meanwhile.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Polls `PRAGMA data_version` on a connection of its own: its value changes whenever
    /// another connection, in this process or another, commits to the database file.
    pub(super) async fn watch_changes(
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

    /// A query through the pool, then the file opened afresh and its schema read: pooled
    /// connections keep their open files, so only a new one tells whether the database can
    /// still be opened and read.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        let mut conn = self.options.connect().await?;
        let read = sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&mut conn)
            .await
            .map(drop);
        let _ = conn.close().await;
        Ok(read?)
    }
}
