//! What only PostgreSQL does: a pool for several stateless replicas on one database, and a
//! change watcher that listens to the notifications the tables' triggers send on commit.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Transaction};

use super::{Observation, StoreError, Waits};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the tables' triggers notify on every committed write (migration 0002).
const CHANGES_CHANNEL: &str = "importops_changes";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the first connection at start-up may take before the server is reported silent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(super) struct PostgresDb {
    pub(super) pool: PgPool,
    /// For the first connection at start-up, outside the pool.
    options: Box<PgConnectOptions>,
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

impl PostgresDb {
    pub(super) fn connect_lazy(url: &str, waits: Option<Waits>) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Other)?;
        let mut pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(waits.map_or(ACQUIRE_TIMEOUT, |w| w.acquire));
        if let Some(waits) = waits {
            // Set on each new connection with a plain SET (not the `options` start-up
            // parameter, which connection poolers refuse); 0 means no bound, as in Postgres.
            // Made once per store (a process opens one), so it may live as long as the process.
            let set: &'static str = Box::leak(
                format!(
                    "SET lock_timeout = {}; SET statement_timeout = {}",
                    waits.lock.as_millis(),
                    waits.statement.as_millis()
                )
                .into_boxed_str(),
            );
            pool = pool.after_connect(move |conn, _| apply_waits(conn, set));
        }
        let pool = pool.connect_lazy_with(options.clone());
        Ok(PostgresDb {
            pool,
            options: Box::new(options),
        })
    }

    /// Applies the migrations without the server's waits (an index built on a large table may
    /// take longer than a request may wait): through a one-connection pool of their own,
    /// closed afterwards.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with((*self.options).clone());
        let result = MIGRATOR.run(&pool).await;
        pool.close().await;
        Ok(result?)
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
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Listens on the channel that the tables' triggers notify (see the migrations). A
    /// notification arrives only once its transaction has committed.
    pub(super) async fn watch_changes(
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

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
