//! Import operations: documents kept as JSON text (so both backends return the same bytes),
//! with the fields that queries sort and filter on in columns of their own.

use super::{
    Kinds, LoadReport, OperationChunks, Store, StoreError, StreamError, in_write, with_pool,
};
use crate::domain::operation::Operation;

/// Inserts or replaces one chunk of operations by `_id`, in their order, inside a write
/// transaction. A replaced operation keeps its `seq`, its place in the stored order. The ids
/// must be distinct. With a third argument, the `ON CONFLICT` clause instead; either way the
/// value is how many rows were written.
macro_rules! write_operations {
    ($tx:ident, $chunk:expr) => {
        $crate::store::operations::write_operations!(
            $tx,
            $chunk,
            "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at, \
             ts = excluded.ts, status = excluded.status, valid = excluded.valid, \
             doc = excluded.doc"
        )
    };
    ($tx:ident, $chunk:expr, $on_conflict:expr) => {{
        let chunk: &[$crate::domain::operation::Operation] = $chunk;
        let sql = $crate::store::insert_values(
            &$tx,
            "import_operations",
            &["id", "updated_at", "ts", "status", "valid", "doc"],
            chunk.len(),
            $on_conflict,
        );
        let mut query = sqlx::query(&sql);
        for op in chunk {
            query = query
                .bind(op.id.as_str())
                .bind(op.updated_at_ms)
                .bind(op.ts_ms)
                .bind(op.status.as_str())
                .bind(op.valid)
                .bind(op.doc.as_str());
        }
        query.execute(&mut *$tx).await?.rows_affected()
    }};
}
pub(super) use write_operations;

/// Writes the chunks `$chunks` (an `OperationChunks`) sends, in a write transaction whose
/// error type is a `StreamError`, until the channel closes; an `Err` chunk stops it (and the
/// transaction rolls back). The `LoadReport` counts the rows once, not per chunk.
macro_rules! write_operation_stream {
    ($tx:ident, $chunks:expr) => {{
        let mut chunks = $chunks;
        let before = $crate::store::operations::count_rows!($tx, "import_operations");
        let mut n = 0;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.map_err($crate::store::StreamError::Input)?;
            for rows in chunk.chunks($crate::store::CHUNK_ROWS) {
                $crate::store::operations::write_operations!($tx, rows);
            }
            n += chunk.len();
        }
        let after = $crate::store::operations::count_rows!($tx, "import_operations");
        $crate::store::LoadReport::counted(n, before, after)
    }};
}
pub(super) use write_operation_stream;

/// How many rows a table has, inside a transaction (for `LoadReport`s).
macro_rules! count_rows {
    ($tx:ident, $table:literal) => {{
        let n: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM ", $table))
            .fetch_one(&mut *$tx)
            .await?;
        n
    }};
}
pub(super) use count_rows;

impl Store {
    /// The stored document of an operation.
    pub async fn operation_by_id(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT doc FROM import_operations WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The document of the operation with the newest `ts` (Rocket.Chat's "current" one).
    pub async fn current_operation(&self) -> Result<Option<String>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT doc FROM import_operations ORDER BY ts DESC, seq DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        }))
    }

    /// In one transaction: marks every valid operation invalid (with `_updatedAt` now, through
    /// `invalidate`), deletes every staged record (Rocket.Chat's `newOperation` and `clear`,
    /// docs/compatibility.md section 11), then stores `then_insert` if given. Returns how many
    /// were invalidated.
    pub async fn invalidate_operations(
        &self,
        invalidate: &(dyn Fn(&str) -> Result<Operation, String> + Sync),
        then_insert: Option<&Operation>,
    ) -> Result<u64, StoreError> {
        in_write!(self, Kinds::OPERATIONS, |tx| {
            // Concurrent calls would each read the same valid operations and each insert one.
            if let Some(sql) = super::serialize_operations(&tx) {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            let valid: Vec<String> =
                sqlx::query_scalar("SELECT doc FROM import_operations WHERE valid")
                    .fetch_all(&mut *tx)
                    .await?;
            for doc in &valid {
                let op = invalidate(doc).map_err(StoreError::Corrupt)?;
                sqlx::query(
                    "UPDATE import_operations SET updated_at = $1, valid = $2, doc = $3 \
                     WHERE id = $4",
                )
                .bind(op.updated_at_ms)
                .bind(op.valid)
                .bind(&op.doc)
                .bind(&op.id)
                .execute(&mut *tx)
                .await?;
            }
            super::staging::delete_all_staged!(tx);
            if let Some(op) = then_insert {
                write_operations!(tx, std::slice::from_ref(op));
            }
            valid.len() as u64
        })
    }

    /// What a server does at start-up (Rocket.Chat's `setImportsToInvalid`): when the
    /// operation with the newest `ts` waits at `importer_user_selection`, every other valid
    /// operation is invalidated; otherwise every valid one. Statuses are unchanged, staged
    /// records kept; each invalidated operation's `_updatedAt` becomes now (through
    /// `invalidate`). Returns how many were invalidated.
    pub async fn invalidate_at_start(
        &self,
        invalidate: &(dyn Fn(&str) -> Result<Operation, String> + Sync),
    ) -> Result<u64, StoreError> {
        in_write!(self, Kinds::OPERATIONS, |tx| {
            if let Some(sql) = super::serialize_operations(&tx) {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            let last: Option<(String, String)> = sqlx::query_as(
                "SELECT id, status FROM import_operations ORDER BY ts DESC, seq DESC LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let keep = last
                .filter(|(_, status)| status == "importer_user_selection")
                .map(|(id, _)| id)
                .unwrap_or_default();
            let valid: Vec<String> =
                sqlx::query_scalar("SELECT doc FROM import_operations WHERE valid AND id <> $1")
                    .bind(&keep)
                    .fetch_all(&mut *tx)
                    .await?;
            for doc in &valid {
                let op = invalidate(doc).map_err(StoreError::Corrupt)?;
                sqlx::query(
                    "UPDATE import_operations SET updated_at = $1, valid = $2, doc = $3 \
                     WHERE id = $4",
                )
                .bind(op.updated_at_ms)
                .bind(op.valid)
                .bind(&op.doc)
                .bind(&op.id)
                .execute(&mut *tx)
                .await?;
            }
            valid.len() as u64
        })
    }

    /// Stores the new version of the operation `id` that `revise` makes from its stored
    /// document (`None` when there is none), in one write transaction that holds the row from
    /// the read to the write, so that concurrent revisions of one operation all land. An `Err`
    /// from `revise` (as `StreamError::Input`) writes nothing.
    pub async fn revise_operation(
        &self,
        id: &str,
        revise: &(dyn Fn(Option<&str>) -> Result<Operation, String> + Sync),
    ) -> Result<Operation, StreamError<String>> {
        in_write!(self, Kinds::OPERATIONS, |tx| -> StreamError<String> {
            loop {
                // The UPDATE takes the row's lock on Postgres (`SELECT .. FOR UPDATE` is not
                // SQLite's), where SQLite's `BEGIN IMMEDIATE` already holds the database's.
                let doc: Option<String> = sqlx::query_scalar(
                    "UPDATE import_operations SET doc = doc WHERE id = $1 RETURNING doc",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let op = revise(doc.as_deref()).map_err(StreamError::Input)?;
                if doc.is_some() {
                    write_operations!(tx, std::slice::from_ref(&op));
                    break op;
                }
                // A new one, unless another transaction created it meanwhile: the insert
                // waits for that one to commit, then writes nothing, and the loop revises
                // what it stored.
                if write_operations!(tx, std::slice::from_ref(&op), "ON CONFLICT (id) DO NOTHING")
                    > 0
                {
                    break op;
                }
            }
        })
    }

    /// The stored documents of the `limit` operations with the newest `_updatedAt`, newest
    /// first, ties first stored first (the index `import_operations_latest`).
    pub async fn latest_operations(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT doc FROM import_operations ORDER BY updated_at DESC, seq ASC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The operations changed after the change number `after` (migration 0050), in the order
    /// of their numbers, at most `limit`: each in its latest state, with its number.
    pub async fn operation_changes_since(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT change_seq, doc FROM import_operations WHERE change_seq > $1 \
                 ORDER BY change_seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The greatest change number given so far (0 when there is none).
    pub async fn last_operation_change(&self) -> Result<i64, StoreError> {
        let last: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MAX(change_seq) FROM import_operations")
                .fetch_one(pool)
                .await?
        });
        Ok(last.unwrap_or(0))
    }

    pub async fn count_operations(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM import_operations")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Inserts or replaces operations by `_id`, all or nothing. A replaced operation keeps its
    /// place in the stored order. The ids must be distinct (callers check).
    pub async fn upsert_operations(&self, ops: &[Operation]) -> Result<LoadReport, StoreError> {
        in_write!(self, Kinds::OPERATIONS, |tx| {
            let before = count_rows!(tx, "import_operations");
            for chunk in ops.chunks(super::CHUNK_ROWS) {
                write_operations!(tx, chunk);
            }
            let after = count_rows!(tx, "import_operations");
            LoadReport::counted(ops.len(), before, after)
        })
    }

    /// `upsert_operations` for chunks that arrive while the transaction is open: all of them
    /// or nothing. The ids must be distinct across chunks (callers check).
    pub async fn upsert_operation_stream<E>(
        &self,
        chunks: OperationChunks<E>,
    ) -> Result<LoadReport, StreamError<E>> {
        in_write!(self, Kinds::OPERATIONS, |tx| -> StreamError<E> {
            write_operation_stream!(tx, chunks)
        })
    }

    pub async fn remove_operation(&self, id: &str) -> Result<bool, StoreError> {
        in_write!(self, Kinds::OPERATIONS, |tx| {
            sqlx::query("DELETE FROM import_operations WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0
        })
    }
}
