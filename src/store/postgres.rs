//! What only PostgreSQL does: a pool for several stateless replicas on one database, and a
//! change watcher that listens to the notifications the tables' triggers send on commit.

use std::ops::ControlFlow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::{Observation, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel the tables' triggers notify on every committed write (migration 0002).
const CHANGES_CHANNEL: &str = "importops_changes";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(super) struct PostgresDb {
    pub(super) pool: PgPool,
}

/// SQLSTATE classes 08 (connection), 53 (insufficient resources), 57 (operator intervention:
/// shutdown, cannot connect now): the database cannot be used now.
pub(super) fn is_unavailable(db: &(dyn DatabaseError + 'static)) -> bool {
    db.try_downcast_ref::<PgDatabaseError>().is_some_and(|e| {
        let code = e.code();
        code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
    })
}

impl PostgresDb {
    pub(super) fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Other)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(PostgresDb { pool })
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
