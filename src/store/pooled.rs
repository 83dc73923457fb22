//! Postgres statements that also work through a pooler in transaction mode
//! (`--postgres-pooler transaction`, docs/compatibility.md section 6.1).
//!
//! Such a pooler lends a server connection for one transaction at a time, so nothing a
//! session keeps survives: named prepared statements (another client's may already hold the
//! name on the connection lent next), and even the unnamed one outside a transaction, since
//! sqlx sends Parse and Describe, then a Sync, then Bind and Execute, and after the Sync the
//! pooler may lend another connection. Hence, in that mode, every statement runs inside an
//! explicit transaction as the unnamed statement: `Reads` wraps each read in a transaction of
//! its own, `Write` is the write transaction, and both rewrite each statement to unnamed
//! (`Unnamed`). Without a pooler, `Reads` is the pool and `Write` sqlx's transaction: named
//! statements, prepared once per connection and reused, as before.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Error, Execute, Executor, PgPool, Postgres, Transaction};

/// A statement run as the unnamed statement: not prepared under a name, not cached.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// How a store's statements reach Postgres.
#[derive(Debug, Clone)]
pub(super) struct Statements {
    pub(super) pool: PgPool,
    /// Through a transaction pooler, how each transaction begins.
    pub(super) pooled: Option<Pooled>,
    /// How a write transaction begins: as any transaction here, then naming this process as
    /// the writer (`SET LOCAL importops.origin = '…'`), which the change notifications carry
    /// (migration 0030), so that this process's watcher does not count its own writes a
    /// second time. Made once, not per write. `None` (the migrations): as any transaction.
    pub(super) write_begin: Option<Cow<'static, str>>,
}

/// How transactions begin through a transaction pooler.
#[derive(Debug, Clone)]
pub(super) struct Pooled {
    /// `BEGIN`, and the server's waits as `SET LOCAL`, since a session's settings do not
    /// survive there.
    pub(super) begin: Cow<'static, str>,
    /// The longest a transaction may wait to begin: for a connection from our pool, then for
    /// the pooler to lend a server connection, for which it may queue clients far longer than
    /// a request may wait (then `PoolTimedOut`: 503). `None`: as long as it takes.
    pub(super) wait: Option<std::time::Duration>,
}

impl Statements {
    /// The executor `with_pool!` hands to a read.
    pub(super) fn reads(&self) -> Reads<'_> {
        Reads(self)
    }

    /// Begins a transaction on the pool, as this mode wants.
    pub(super) async fn begin(&self) -> Result<Write, Error> {
        self.begin_with(self.pooled.as_ref().map(|p| &p.begin))
            .await
    }

    /// Begins a write transaction, which names this process (`write_begin`).
    pub(super) async fn begin_write(&self) -> Result<Write, Error> {
        match &self.write_begin {
            Some(begin) => self.begin_with(Some(begin)).await,
            None => self.begin().await,
        }
    }

    /// Begins with `begin` (sqlx's plain `BEGIN` when `None`), within the pooler's wait.
    async fn begin_with(&self, begin: Option<&Cow<'static, str>>) -> Result<Write, Error> {
        let wait = self.pooled.as_ref().and_then(|p| p.wait);
        let begun = async {
            match begin {
                None => self.pool.begin().await,
                Some(begin) => self.pool.begin_with(begin.clone()).await,
            }
        };
        let tx = match wait {
            None => begun.await?,
            Some(wait) => tokio::time::timeout(wait, begun)
                .await
                .map_err(|_| Error::PoolTimedOut)??,
        };
        Ok(Write(InWrite {
            tx,
            unnamed: self.pooled.is_some(),
        }))
    }
}

/// The executor of reads: the pool itself, or through a transaction pooler one transaction
/// per statement.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reads<'s>(&'s Statements);

impl<'s> Executor<'s> for Reads<'s> {
    type Database = Postgres;

    fn fetch_many<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        's: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.0.pooled.is_none() {
            return self.0.pool.fetch_many(query);
        }
        // The rows are read to the end inside the transaction, then handed on.
        let statements = self.0;
        stream::once(async move {
            let mut write = statements.begin().await?;
            let rows: Vec<_> = (&mut *write).fetch_many(query).collect().await;
            if rows.iter().all(Result::is_ok) {
                write.commit().await?;
            }
            Ok::<_, Error>(rows)
        })
        .flat_map(|read| match read {
            Ok(rows) => stream::iter(rows).left_stream(),
            Err(err) => stream::iter([Err(err)]).right_stream(),
        })
        .boxed()
    }

    fn fetch_optional<'e, 'q, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        's: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.0.pooled.is_none() {
            return self.0.pool.fetch_optional(query);
        }
        let statements = self.0;
        Box::pin(async move {
            let mut write = statements.begin().await?;
            let row = (&mut *write).fetch_optional(query).await?;
            write.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        's: 'e,
    {
        self.0.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        's: 'e,
    {
        self.0.pool.describe(sql)
    }
}

/// A Postgres transaction whose statements run unnamed through a transaction pooler.
/// `&mut *write` is its executor, as with sqlx's `Transaction`.
#[derive(Debug)]
pub(super) struct Write(InWrite);

/// What `&mut *write` gives: the transaction, as an executor.
#[derive(Debug)]
pub(super) struct InWrite {
    tx: Transaction<'static, Postgres>,
    unnamed: bool,
}

impl Write {
    pub(super) async fn commit(self) -> Result<(), Error> {
        self.0.tx.commit().await
    }
}

impl std::ops::Deref for Write {
    type Target = InWrite;

    fn deref(&self) -> &InWrite {
        &self.0
    }
}

impl std::ops::DerefMut for Write {
    fn deref_mut(&mut self) -> &mut InWrite {
        &mut self.0
    }
}

impl<'c> Executor<'c> for &'c mut InWrite {
    type Database = Postgres;

    fn fetch_many<'e, 'q, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.unnamed {
            (&mut *self.tx).fetch_many(Unnamed(query))
        } else {
            (&mut *self.tx).fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: Execute<'q, Postgres>,
        'q: 'e,
        E: 'q,
    {
        if self.unnamed {
            (&mut *self.tx).fetch_optional(Unnamed(query))
        } else {
            (&mut *self.tx).fetch_optional(query)
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        (&mut *self.tx).describe(sql)
    }
}
