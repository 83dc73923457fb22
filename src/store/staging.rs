//! Staged records of the current import operation (`import_data`, Rocket.Chat's
//! `rocketchat_import_data`): what an importer found in an archive, written in batches, read
//! back in stored order by kind, marked with their outcome, and deleted as Rocket.Chat deletes
//! them (docs/compatibility.md section 11).
//!
//! No cached answer depends on staged records: the writes here count against no kind
//! (`Kinds::default()`), and the table has no change trigger.

use super::{Kinds, Store, StoreError, in_write, with_pool};
use crate::domain::ids::new_object_id;
use crate::importer::DataType;

/// Rows per multi-row `INSERT` of staged records (6 columns: far under both backends' limits
/// on parameters).
pub const STAGE_BATCH: usize = 500;

/// A record to stage: its kind, its `importIds[0]`, and its document as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStaged {
    pub data_type: DataType,
    pub import_id: Option<String>,
    pub data: String,
}

/// A staged record as read back.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Staged {
    /// The stored order.
    pub seq: i64,
    pub import_id: Option<String>,
    pub data: String,
}

/// What importing a staged record came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The selection left it out (`skipped: true`).
    Skipped,
    /// Importing it failed: Rocket.Chat's `errors` list, as JSON text.
    Failed(String),
}

/// Deletes every staged record inside a write transaction (Rocket.Chat's
/// `ImportData.col.deleteMany({})`, run whenever an operation is created or cleared).
macro_rules! delete_all_staged {
    ($tx:ident) => {
        sqlx::query("DELETE FROM import_data")
            .execute(&mut *$tx)
            .await?
    };
}
pub(super) use delete_all_staged;

impl Store {
    /// Stages records of the operation `operation_id`, in their order, in one transaction of
    /// multi-row inserts of [`STAGE_BATCH`] rows.
    pub async fn stage_records(
        &self,
        operation_id: &str,
        records: &[NewStaged],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        in_write!(self, Kinds::default(), |tx| {
            for chunk in records.chunks(STAGE_BATCH) {
                let sql = super::insert_values(
                    &tx,
                    "import_data",
                    &["id", "operation_id", "data_type", "import_id", "data"],
                    chunk.len(),
                    "",
                );
                let mut query = sqlx::query(&sql);
                for record in chunk {
                    query = query
                        .bind(new_object_id())
                        .bind(operation_id)
                        .bind(record.data_type.as_str())
                        .bind(record.import_id.as_deref())
                        .bind(record.data.as_str());
                }
                query.execute(&mut *tx).await?;
            }
        })
    }

    /// Deletes every staged record; how many there were.
    pub async fn clear_staged(&self) -> Result<u64, StoreError> {
        in_write!(self, Kinds::default(), |tx| {
            delete_all_staged!(tx).rows_affected()
        })
    }

    /// How many records of a kind are staged.
    pub async fn count_staged(&self, data_type: DataType) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM import_data WHERE data_type = $1")
                .bind(data_type.as_str())
                .fetch_one(pool)
                .await?
        });
        Ok(n.max(0) as u64)
    }

    /// Up to `limit` staged records of a kind after the stored position `after`, in stored
    /// order (pass the last `seq` read to go on).
    pub async fn staged_page(
        &self,
        data_type: DataType,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Staged>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, import_id, data FROM import_data WHERE data_type = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(data_type.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records the outcome of importing staged records (by `seq`), in one transaction.
    pub async fn mark_staged(&self, outcomes: &[(i64, Outcome)]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        in_write!(self, Kinds::default(), |tx| {
            for (seq, outcome) in outcomes {
                let (errors, skipped) = match outcome {
                    Outcome::Skipped => (None, true),
                    Outcome::Failed(errors) => (Some(errors.as_str()), false),
                };
                sqlx::query("UPDATE import_data SET errors = $1, skipped = $2 WHERE seq = $3")
                    .bind(errors)
                    .bind(skipped)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
            }
        })
    }

    /// Deletes the staged records without errors, skipped ones included (Rocket.Chat's
    /// `clearSuccessfullyImportedData`); those that failed stay with their errors.
    pub async fn clear_imported_staged(&self) -> Result<u64, StoreError> {
        in_write!(self, Kinds::default(), |tx| {
            sqlx::query("DELETE FROM import_data WHERE errors IS NULL")
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
    }

    /// The staged records that failed, with their errors (JSON text), in stored order.
    pub async fn failed_staged(&self, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT data_type, errors FROM import_data WHERE errors IS NOT NULL \
                 ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
