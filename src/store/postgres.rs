//! What only PostgreSQL does: a pool for several stateless replicas on one database (directly
//! or through a transaction pooler: `pooled`), and a change watcher that listens to the
//! notifications the tables' triggers send on commit, or polls the change counters.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::time::timeout;

use super::changes::{self, Counters};
use super::pooled::{Pooled, Reads, Statements, Write};
use super::{HEARTBEAT, HEARTBEAT_TIMEOUT, Kinds, Observation, StoreError, Waits};
use crate::config::{ChangeDetection, PostgresPooler};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the tables' triggers notify on every committed write (migration 0002).
const CHANGES_CHANNEL: &str = "importops_changes";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first connection at start-up may take before the server is reported silent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(super) struct PostgresDb {
    /// The pool, and how statements run on it (`pooled`).
    pub(super) statements: Statements,
    /// The change watcher's own connections, kept apart so that a pool busy with requests
    /// cannot delay its heartbeat, with a short acquire timeout (`HEARTBEAT_TIMEOUT`). Two:
    /// a connection lost in a silent partition may be held until it ends.
    watch_pool: PgPool,
    /// For the first connection at start-up, outside the pool.
    options: Box<PgConnectOptions>,
    /// This process's name in the change notifications of its writes (`Statements::origin`):
    /// a random id.
    origin: Box<str>,
}

/// SQLSTATE classes 08 (connection), 28 (authorization: the user or its password refused),
/// 53 (insufficient resources), 57 (operator intervention: shutdown, cannot connect now), and
/// 3D000 (the database does not exist, as after a `DROP DATABASE` while serving) and 55P03
/// (a lock not available in time): the database cannot be used now (docs/compatibility.md,
/// section 6.1).
pub(super) fn is_unavailable(db: &(dyn DatabaseError + 'static)) -> bool {
    db.try_downcast_ref::<PgDatabaseError>().is_some_and(|e| {
        let code = e.code();
        ["08", "28", "53", "57"]
            .iter()
            .any(|class| code.starts_with(class))
            || code == "3D000"
            || code == "55P03"
    })
}

/// Where the options point, for a message: `HOST:PORT`, or a socket folder and its port.
fn server_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("{} (port {})", socket.display(), options.get_port()),
        None => {
            let host = options.get_host();
            if host.contains(':') {
                format!("[{host}]:{}", options.get_port())
            } else {
                format!("{host}:{}", options.get_port())
            }
        }
    }
}

/// One sentence for a first connection that failed: where, as whom, and why. It never holds
/// the password (neither the options' nor the server's messages carry it).
async fn connect_failure(options: &PgConnectOptions, err: sqlx::Error) -> String {
    let at = server_address(options);
    let user = options.get_username();
    match &err {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "cannot connect to PostgreSQL at {at}: the connection was refused (no server listens there)"
            )
        }
        sqlx::Error::Io(io) => {
            let host = options.get_host();
            let unresolved = options.get_socket().is_none()
                && host.parse::<std::net::IpAddr>().is_err()
                && tokio::net::lookup_host((host, options.get_port()))
                    .await
                    .is_err();
            if unresolved {
                format!(
                    "cannot connect to PostgreSQL at {at}: the host name {host} cannot be resolved"
                )
            } else {
                format!("cannot connect to PostgreSQL at {at}: {io}")
            }
        }
        sqlx::Error::Tls(tls) => {
            format!("cannot connect to PostgreSQL at {at}: the TLS handshake failed ({tls})")
        }
        sqlx::Error::Database(db) => {
            let message = db.message();
            match db.code().as_deref() {
                Some("28P01") => {
                    format!("PostgreSQL at {at} refused the password of user {user:?}")
                }
                Some(code) if code.starts_with("28") => {
                    format!("PostgreSQL at {at} refused user {user:?} ({message})")
                }
                Some("3D000") => {
                    let database = options.get_database().unwrap_or(user);
                    format!("PostgreSQL at {at} has no database {database:?}")
                }
                _ => format!("PostgreSQL at {at} refused the connection ({message})"),
            }
        }
        other => format!("cannot connect to PostgreSQL at {at}: {other}"),
    }
}

/// Runs the server's `SET`s on a new connection (a named function, so that the executor's
/// lifetime is the connection's).
fn apply_waits<'c>(
    conn: &'c mut sqlx::PgConnection,
    set: &'static str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>> {
    Box::pin(async move { sqlx::Executor::execute(conn, set).await.map(|_| ()) })
}

/// What a change notification's payload (migration 0030) says changed, for the process whose
/// writes name `own_origin`: nothing when that process wrote it; else the sessions of one
/// user (`sessions:LENGTH:USER_ID`), or the kind of the table named; a payload not read
/// here, a change to all.
fn notified(payload: &str, own_origin: &str) -> Observation {
    let (what, origin) = match payload.strip_prefix("sessions:") {
        Some(rest) => {
            let Some((user_id, after)) = rest.split_once(':').and_then(|(length, rest)| {
                let length: usize = length.parse().ok()?;
                let end = rest
                    .char_indices()
                    .nth(length)
                    .map_or(rest.len(), |(i, _)| i);
                (rest.chars().count() >= length).then(|| rest.split_at(end))
            }) else {
                return Observation::Changed(Kinds::ALL);
            };
            let origin = match after {
                "" => None,
                _ => match after.strip_prefix('@') {
                    Some(origin) => Some(origin),
                    None => return Observation::Changed(Kinds::ALL),
                },
            };
            (Observation::SessionsOf(user_id.into()), origin)
        }
        None => match payload.split_once('@') {
            Some((table, origin)) => (Observation::Changed(Kinds::of_table(table)), Some(origin)),
            None => (Observation::Changed(Kinds::of_table(payload)), None),
        },
    };
    if origin == Some(own_origin) {
        Observation::Unchanged
    } else {
        what
    }
}

/// One round trip on the listener's connection. Boxed: the executor's lifetimes are too
/// general for the compiler to prove the watcher's future `Send` otherwise.
fn heartbeat(
    listener: &mut PgListener,
) -> std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        let conn: &mut sqlx::PgConnection = sqlx::Acquire::acquire(&mut *listener).await?;
        // A bare `&str` runs in the simple protocol, as `raw_sql` would.
        sqlx::Executor::execute(conn, "SELECT 1").await.map(drop)
    })
}

impl PostgresDb {
    pub(super) fn connect_lazy(
        url: &str,
        waits: Option<Waits>,
        pooler: PostgresPooler,
    ) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(StoreError::Other)?;
        let pooled = pooler == PostgresPooler::Transaction;
        if pooled {
            // No statement kept by name (`pooled`); and no `extra_float_digits` start-up
            // parameter, which PgBouncer refuses unless told to ignore it (the Postgres default
            // is fine: no statement of ours reads a float as text).
            options = options.statement_cache_capacity(0).extra_float_digits(None);
        }
        let mut pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(waits.map_or(ACQUIRE_TIMEOUT, |w| w.acquire));
        let mut begin = None;
        if let Some(waits) = waits {
            // 0 means no bound, as in Postgres. Never the `options` start-up parameter, which
            // connection poolers refuse.
            let (lock, statement) = (waits.lock.as_millis(), waits.statement.as_millis());
            if pooled {
                // A session's settings do not survive a transaction there: set per transaction.
                begin = Some(format!(
                    "BEGIN; SET LOCAL lock_timeout = {lock}; SET LOCAL statement_timeout = {statement}"
                ));
            } else {
                // Set on each new connection with a plain SET. Made once per store (a process
                // opens one), so it may live as long as the process.
                let set: &'static str = Box::leak(
                    format!("SET lock_timeout = {lock}; SET statement_timeout = {statement}")
                        .into_boxed_str(),
                );
                pool = pool.after_connect(move |conn, _| apply_waits(conn, set));
            }
        } else if pooled {
            begin = Some("BEGIN".to_owned());
        }
        let pool = pool.connect_lazy_with(options.clone());
        let watch_pool = PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(HEARTBEAT_TIMEOUT)
            .connect_lazy_with(options.clone());
        let origin = crate::domain::ids::new_meteor_id();
        // A Meteor id is letters and digits only: safe inside the quotes. Made once per store
        // (a process opens one) and borrowed by every write, so it lives as long as the process.
        let write_begin: &'static str = Box::leak(
            format!(
                "{}; SET LOCAL importops.origin = '{origin}'",
                begin.as_deref().unwrap_or("BEGIN")
            )
            .into_boxed_str(),
        );
        Ok(PostgresDb {
            statements: Statements {
                pool,
                pooled: begin.map(|begin| Pooled {
                    begin: begin.into(),
                    wait: waits.map(|w| w.acquire),
                }),
                write_begin: Some(std::borrow::Cow::Borrowed(write_begin)),
            },
            watch_pool,
            options: Box::new(options),
            origin: origin.into_boxed_str(),
        })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.statements.pool
    }

    /// The executor of reads (`with_pool!`).
    pub(super) fn reads(&self) -> Reads<'_> {
        self.statements.reads()
    }

    fn pooled(&self) -> bool {
        self.statements.pooled.is_some()
    }

    /// Applies the migrations without the server's waits (an index built on a large table may
    /// take longer than a request may wait): through a one-connection pool of their own,
    /// closed afterwards. Through a transaction pooler, sqlx's migrator cannot work (a
    /// session-level lock, named statements), so they run as `migrate_in_one_transaction`.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.options).clone());
        let result = if self.pooled() {
            let statements = Statements {
                pool: pool.clone(),
                pooled: Some(Pooled {
                    begin: "BEGIN".into(),
                    wait: None,
                }),
                write_begin: None,
            };
            migrate_in_one_transaction(&statements).await
        } else {
            MIGRATOR.run(&pool).await.map_err(StoreError::from)
        };
        pool.close().await;
        result
    }

    /// Connects once, outside the pool, so that a server that cannot be used fails at once
    /// (the pool retries a refused connection until its timeout) and in words that say where
    /// (docs/compatibility.md, section 6.1).
    pub(super) async fn check_open(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.options.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                Ok(())
            }
            Ok(Err(err)) => Err(StoreError::Open(connect_failure(&self.options, err).await)),
            Err(_) => Err(StoreError::Open(format!(
                "cannot connect to PostgreSQL at {}: no answer within {} s",
                server_address(&self.options),
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Read committed: each statement of a write sees what others committed before it, and
    /// the unique indexes decide races.
    pub(super) async fn begin_write(&self) -> Result<Write, StoreError> {
        Ok(self.statements.begin_write().await?)
    }

    /// What a change notification's payload says changed (migration 0030).
    fn notified(&self, payload: &str) -> Observation {
        notified(payload, &self.origin)
    }

    pub(super) async fn watch_changes(
        &self,
        detection: ChangeDetection,
        interval: Duration,
        report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        // LISTEN cannot work through a transaction pooler: the notifications go to whichever
        // client holds the server connection at the time.
        let detection = if self.pooled() {
            ChangeDetection::Poll
        } else {
            detection
        };
        match detection {
            ChangeDetection::Notify => self.listen_for_changes(interval, report).await,
            ChangeDetection::Poll => self.poll_changes(interval, report).await,
        }
    }

    /// Listens on the channel that the tables' triggers notify (see the migrations). A
    /// notification arrives only once its transaction has committed, and names the table
    /// written, hence the kind of data that changed. When none came for
    /// `HEARTBEAT`, a `SELECT 1` on the same connection proves it live: a connection that went
    /// silent (packets dropped, no reset) would otherwise wait for notifications for ever.
    async fn listen_for_changes(
        &self,
        interval: Duration,
        mut report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        loop {
            let connected = timeout(HEARTBEAT_TIMEOUT, async {
                let mut listener = PgListener::connect_with(&self.watch_pool).await?;
                // Report a lost connection at once instead of reconnecting first: the cache
                // must stop serving meanwhile.
                listener.eager_reconnect(false);
                listener.listen(CHANGES_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            })
            .await;
            let mut listener = match connected {
                Ok(Ok(listener)) => listener,
                _ => {
                    if report(Observation::Unreachable).is_break() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            // Anything may have been committed while no one listened.
            let mut observation = Observation::Changed(Kinds::ALL);
            while observation != Observation::Unreachable {
                if report(observation.clone()).is_break() {
                    return;
                }
                // `try_recv` is cancel-safe: a timeout loses no notification.
                observation = match timeout(HEARTBEAT, listener.try_recv()).await {
                    Ok(Ok(Some(notification))) => self.notified(notification.payload()),
                    // The connection was lost: notifications may have been missed.
                    Ok(Ok(None) | Err(_)) => Observation::Unreachable,
                    Err(_quiet) => {
                        match timeout(HEARTBEAT_TIMEOUT, heartbeat(&mut listener)).await {
                            Ok(Ok(())) => Observation::Unchanged,
                            _ => Observation::Unreachable,
                        }
                    }
                };
            }
            if report(observation).is_break() {
                return;
            }
            drop(listener);
            tokio::time::sleep(interval).await;
        }
    }

    /// Reads the change counters (migration 0011) every `interval`: one cheap statement, in
    /// the simple protocol (no prepared statement), that works through any connection pooler
    /// and is also the heartbeat. The counters that moved name the kinds that changed.
    async fn poll_changes(
        &self,
        interval: Duration,
        mut report: impl FnMut(Observation) -> ControlFlow<()> + Send,
    ) {
        let mut last: Option<Counters> = None;
        loop {
            let read = timeout(HEARTBEAT_TIMEOUT, async {
                let row = sqlx::raw_sql(changes::READ_COUNTERS)
                    .fetch_one(&self.watch_pool)
                    .await?;
                changes::decode(&row)
            })
            .await;
            let observation = match read {
                Ok(Ok(counters)) => {
                    Observation::of(changes::moved(last.replace(counters), counters))
                }
                _ => {
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

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.reads()).await?;
        Ok(())
    }
}

/// The key of sqlx's migration lock for `database` (`pg_advisory_lock` of this number, taken
/// by a replica that connects directly), so that replicas with and without a pooler take turns:
/// 0x3d32ad9e times the CRC-32 (ISO-HDLC) of the database's name.
fn migration_lock_key(database: &str) -> i64 {
    let mut crc: u32 = !0;
    for &byte in database.as_bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    0x3d32_ad9e * i64::from(!crc)
}

/// sqlx's migration bookkeeping table, as sqlx's migrator creates it, so that either way of
/// migrating reads what the other wrote.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// The migrations through a transaction pooler: all pending ones in one transaction, under a
/// transaction-level advisory lock (released at its end, on whichever server connection it
/// ran), with sqlx's checks: a failed migration left behind, an applied one missing here, or
/// one changed since it was applied stop it.
///
/// Boxed: the executor's lifetimes are too general for the compiler to prove the future
/// `Send` otherwise.
fn migrate_in_one_transaction(
    statements: &Statements,
) -> futures_util::future::BoxFuture<'_, Result<(), StoreError>> {
    Box::pin(migrate_in_one_transaction_unboxed(statements))
}

async fn migrate_in_one_transaction_unboxed(statements: &Statements) -> Result<(), StoreError> {
    use sqlx::migrate::{MigrateError, MigrationType};

    let mut tx = statements.begin().await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(migration_lock_key(&database))
        .execute(&mut *tx)
        .await?;
    sqlx::Executor::execute(&mut *tx, MIGRATIONS_TABLE).await?;
    let dirty: Option<i64> = sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(version) = dirty {
        return Err(MigrateError::Dirty(version).into());
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    let ours = || {
        MIGRATOR
            .iter()
            .filter(|m| !matches!(m.migration_type, MigrationType::ReversibleDown))
    };
    for (version, _) in &applied {
        if !ours().any(|m| m.version == *version) {
            return Err(MigrateError::VersionMissing(*version).into());
        }
    }
    for migration in ours() {
        match applied
            .iter()
            .find(|(version, _)| *version == migration.version)
        {
            Some((_, checksum)) if *checksum != *migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version).into());
            }
            Some(_) => {}
            None => {
                let started = std::time::Instant::now();
                // A bare `&str` runs in the simple protocol, which takes several statements.
                sqlx::Executor::execute(&mut *tx, &*migration.sql)
                    .await
                    .map_err(|e| MigrateError::ExecuteMigration(e, migration.version))?;
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES ($1, $2, TRUE, $3, $4)",
                )
                .bind(migration.version)
                .bind(&*migration.description)
                .bind(&*migration.checksum)
                .bind(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_lock_is_sqlx_s() {
        // CRC-32 (ISO-HDLC) of "123456789" is 0xCBF43926.
        assert_eq!(
            migration_lock_key("123456789"),
            0x3d32_ad9e * 0xCBF4_3926_i64
        );
    }

    #[test]
    fn notifications_name_the_kind_the_user_and_the_writer() {
        let own = "aaaaaaaaaaaaaaaaa";
        let sessions_of = |id: &str| Observation::SessionsOf(id.into());
        assert_eq!(
            notified("import_operations", own),
            Observation::Changed(Kinds::OPERATIONS)
        );
        assert_eq!(
            notified("import_operations@bbbbbbbbbbbbbbbbb", own),
            Observation::Changed(Kinds::OPERATIONS)
        );
        assert_eq!(
            notified(&format!("import_operations@{own}"), own),
            Observation::Unchanged
        );
        assert_eq!(
            notified("sessions.insert@x", own),
            Observation::Changed(Kinds::ADDED)
        );
        assert_eq!(notified("sessions:3:abc", own), sessions_of("abc"));
        assert_eq!(notified("sessions:3:abc@zz", own), sessions_of("abc"));
        // A user id holding the separators, or letters outside ASCII, is read by its length.
        assert_eq!(notified("sessions:5:a@b:c@zz", own), sessions_of("a@b:c"));
        assert_eq!(
            notified("sessions:2:é@zz", own),
            Observation::Changed(Kinds::ALL)
        );
        assert_eq!(notified("sessions:2:éa", own), sessions_of("éa"));
        assert_eq!(
            notified(&format!("sessions:3:abc@{own}"), own),
            Observation::Unchanged
        );
        // Anything else about sessions that cannot be read drops them all.
        for payload in [
            "sessions:x:abc",
            "sessions:9:abc",
            "sessions:3:abcd",
            "sessions:",
        ] {
            assert_eq!(
                notified(payload, own),
                Observation::Changed(Kinds::ALL),
                "{payload}"
            );
        }
        assert_eq!(
            notified("sessions", own),
            Observation::Changed(Kinds::SESSIONS)
        );
        assert_eq!(notified("something", own), Observation::Changed(Kinds::ALL));
    }
}
