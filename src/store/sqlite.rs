//! What only SQLite does: one file in WAL mode (readers never wait for the writer), write
//! transactions that take the lock at once, and a change watcher that polls
//! `PRAGMA data_version`, then the change counters when it moved.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteError, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{
    ConnectOptions, Connection, Sqlite, SqliteConnection, SqlitePool, Transaction,
    TransactionManager,
};

use super::changes::{self, Counters};
use super::file_identity::WatchedFile;
use super::{Kinds, Observation, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another writer before the request fails as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(super) struct SqliteDb {
    pub(super) pool: SqlitePool,
    /// For the change watcher's and the health check's own connections, outside the pool.
    options: Arc<SqliteConnectOptions>,
    /// The database file, or `None` for an in-memory database.
    file: Option<PathBuf>,
    /// Its identity (`None` in memory), checked on every acquire and every watch.
    watched: Option<WatchedFile>,
}

/// The file a SQLite URL names (`None` for `:memory:` or `mode=memory`), split as sqlx splits
/// it: the scheme, then the path up to `?`. An empty path is refused: SQLite would give every
/// connection a private temporary database of its own, so the pool's connections would not
/// see the tables that the migrations created (docs/compatibility.md, section 6.1).
fn named_file(url: &str, options: &SqliteConnectOptions) -> Result<Option<PathBuf>, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path == ":memory:"
        || form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "mode" && v == "memory");
    if in_memory {
        return Ok(None);
    }
    let file = options.get_filename();
    if file.as_os_str().is_empty() {
        return Err(StoreError::Other(sqlx::Error::Configuration(
            "the SQLite database URL names no file: write sqlite://PATH, such as sqlite://importops.db"
                .into(),
        )));
    }
    Ok(Some(file.to_path_buf()))
}

/// Primary result codes BUSY, LOCKED, READONLY, IOERR, FULL and CANTOPEN (extended codes keep
/// them in the low byte): the database cannot be used now (RELIABILITY.md, full disk).
pub(super) fn is_unavailable(db: &(dyn DatabaseError + 'static)) -> bool {
    db.try_downcast_ref::<SqliteError>()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

/// Whether a connection given back to the pool may serve again: no transaction left open once
/// its queued rollback has run (the ping waits for it). After a failed statement on a full disk
/// or an I/O error SQLite has already rolled back by itself, so sqlx's ROLLBACK fails and the
/// connection keeps a transaction depth of one: every later write on it would fail ("non-zero
/// transaction depth"), so it is closed instead, and the pool opens a fresh one.
async fn reusable(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    conn.ping().await?;
    Ok(<Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(conn) == 0)
}

/// The error for a database file that was removed or replaced while in use.
fn gone() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the database file was removed or replaced",
    ))
}

impl SqliteDb {
    pub(super) fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Other)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let file = named_file(url, &options)?;
        // Only the first open (`check_open`) creates the file: a file removed while serving
        // must not come back empty, without the tables, under later connections.
        let options = options.create_if_missing(file.is_none());
        let watched = file.clone().map(WatchedFile::new);
        let checked = watched.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A pooled connection keeps its file open after the file or its folder is removed
            // or another file is renamed over it, and would go on reading and writing a
            // database no one else sees: it is dropped instead, and the new one fails to open
            // (see `refuse`), which answers 503.
            .before_acquire(move |_, _| {
                let intact = checked.as_ref().is_none_or(WatchedFile::intact);
                Box::pin(async move { Ok(intact) })
            })
            .after_release(|conn, _| Box::pin(reusable(conn)))
            .connect_lazy_with(options.clone());
        Ok(SqliteDb {
            pool,
            options: Arc::new(options),
            file,
            watched,
        })
    }

    /// Whether the database file is still where it was opened.
    /// Whether the database file is still the one opened; if not, the pool stops opening
    /// connections at the path.
    fn present(&self) -> bool {
        let intact = self.watched.as_ref().is_none_or(WatchedFile::intact);
        if !intact {
            self.refuse();
        }
        intact
    }

    /// Makes the pool's new connections fail at once as "cannot open" (503), not open
    /// whatever file is at the path now (see `file_identity`). `/dev/null` is no folder.
    fn refuse(&self) {
        let nowhere = (*self.options)
            .clone()
            .create_if_missing(false)
            .filename("/dev/null/importops-database-file-replaced-or-removed");
        self.pool.set_connect_options(nowhere);
    }

    /// Opens the file once and reads its schema, before the pool and the migrations do, so
    /// that a file that cannot be used is told in one sentence naming it. A folder that does
    /// not exist is not created: it is named (a mistyped path would otherwise leave a new,
    /// empty database somewhere unexpected). See docs/compatibility.md, section 6.1.
    pub(super) async fn check_open(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let cannot = |why: String| {
            StoreError::Open(format!(
                "cannot open the SQLite database {}: {why}",
                file.display()
            ))
        };
        if let Some(folder) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            match std::fs::metadata(folder) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(cannot(format!("{} is not a folder", folder.display()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(cannot(format!(
                        "the folder {} does not exist (create it first)",
                        folder.display()
                    )));
                }
                Err(e) => return Err(cannot(format!("the folder {}: {e}", folder.display()))),
            }
        }
        let opened = async {
            let create = (*self.options).clone().create_if_missing(true);
            let mut conn = create.connect().await?;
            let read = sqlx::query("SELECT count(*) FROM sqlite_master")
                .execute(&mut conn)
                .await
                .map(drop);
            let _ = conn.close().await;
            read
        };
        opened.await.map_err(|e| {
            cannot(match &e {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            })
        })?;
        // The file's identity, from now on.
        self.present();
        Ok(())
    }

    /// A transaction that takes the write lock at once (`BEGIN IMMEDIATE`). A deferred one
    /// that reads first cannot wait for the lock when it writes: SQLite fails it at once
    /// ("database is locked") if another connection wrote meanwhile.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Polls `PRAGMA data_version` on a connection of its own: its value changes whenever
    /// another connection, in this process or another, commits to the database file. When it
    /// moved, the change counters (migration 0011) say which kinds of data changed: this
    /// process's own writes move it too, and must not send every cached kind back to the
    /// database. A file removed or replaced at the path is reported unreachable from then on.
    pub(super) async fn watch_changes(
        &self,
        interval: Duration,
        mut report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        let mut conn: Option<SqliteConnection> = None;
        let mut last: Option<i64> = None;
        let mut counters: Option<Counters> = None;
        loop {
            let observation = match self.look(&mut conn, last).await {
                Ok((version, None)) => {
                    last = Some(version);
                    Observation::Unchanged
                }
                Ok((version, Some(now))) => {
                    last = Some(version);
                    Observation::of(changes::moved(counters.replace(now), now))
                }
                Err(_) => {
                    conn = None;
                    last = None;
                    counters = None;
                    Observation::Unreachable
                }
            };
            if report(observation).is_break() {
                return;
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The data version, and the counters if it differs from `last`. An in-memory database
    /// has no counters the watcher's own connection could see: any move counts for all kinds.
    async fn look(
        &self,
        conn: &mut Option<SqliteConnection>,
        last: Option<i64>,
    ) -> Result<(i64, Option<Counters>), sqlx::Error> {
        if !self.present() {
            return Err(gone());
        }
        let conn = match conn {
            Some(c) => c,
            None => conn.insert(self.options.connect().await?),
        };
        tokio::time::timeout(BUSY_TIMEOUT, async {
            let version: i64 = sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(&mut *conn)
                .await?;
            if last == Some(version) {
                return Ok((version, None));
            }
            let counters = if self.file.is_some() {
                changes::decode(&sqlx::query(changes::READ_COUNTERS).fetch_one(conn).await?)?
            } else {
                // Distinct each time, so that every move reads as a change to all.
                [version; Kinds::COUNT]
            };
            Ok((version, Some(counters)))
        })
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// A query through the pool, then the file opened afresh and its schema read: pooled
    /// connections keep their open files, so only a new one tells whether the database can
    /// still be opened and read.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        if !self.present() {
            return Err(StoreError::Unavailable(gone()));
        }
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
