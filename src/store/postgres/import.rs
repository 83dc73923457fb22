//! `Store::import_rocketchat` on Postgres: one transaction, rows sent as arrays and expanded
//! with `UNNEST`, in chunks.

use std::collections::BTreeSet;

use sqlx::{Postgres, Transaction};

use super::super::{
    ImportReport, ImportedUser, LoadReport, OperationChunks, RocketchatImport, StoreError,
    StreamError, encode_list,
};
use super::{PostgresStore, count_rows, err, write_operation_stream};

/// Rows per statement.
const CHUNK_ROWS: usize = 2_000;

type Tx<'c> = Transaction<'c, Postgres>;

impl PostgresStore {
    pub async fn import_rocketchat<E>(
        &self,
        data: &RocketchatImport,
        operations: OperationChunks<E>,
        now: i64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportReport, StreamError<E>> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert_roles(&mut tx, data).await?;
        let (users, tokens) = import_users(&mut tx, &data.users, now, progress).await?;
        let permissions = import_permissions(&mut tx, &data.permissions, now, progress).await?;
        let operations = write_operation_stream(&mut tx, operations).await?;
        tx.commit().await.map_err(err)?;
        Ok(ImportReport {
            users,
            tokens,
            permissions,
            operations,
        })
    }
}

fn username_taken(username: &str, export_id: &str, local_id: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the username {username:?} of the exported user {export_id} is already taken by the \
         local user {local_id}; nothing was imported"
    ))
}

/// A username taken by another writer between the check and the write.
fn username_race(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(
            "a username of the export was taken meanwhile by another user; nothing was imported"
                .into(),
        ),
        _ => err(e),
    }
}

/// Every role the users and permissions name, created where missing.
async fn insert_roles(tx: &mut Tx<'_>, data: &RocketchatImport) -> Result<(), StoreError> {
    let roles: BTreeSet<&str> = data
        .users
        .iter()
        .flat_map(|u| u.roles.iter())
        .chain(data.permissions.iter().flat_map(|(_, roles)| roles.iter()))
        .map(String::as_str)
        .collect();
    if roles.is_empty() {
        return Ok(());
    }
    sqlx::query("INSERT INTO roles (name) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING")
        .bind(roles.into_iter().collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(err)
}

/// Upserts the users by id and replaces their sessions; returns the user counts and how many
/// tokens were stored.
async fn import_users(
    tx: &mut Tx<'_>,
    users: &[ImportedUser],
    now: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(LoadReport, u64), StoreError> {
    if users.is_empty() {
        return Ok((LoadReport::default(), 0));
    }
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let (named_ids, names): (Vec<&str>, Vec<&str>) = users
        .iter()
        .filter_map(|u| u.username.as_deref().map(|name| (u.id.as_str(), name)))
        .unzip();

    // A username held by a local user that the export does not describe: refuse it all.
    let taken: Option<(String, String, String)> = sqlx::query_as(
        "SELECT e.username, e.id, u.id FROM UNNEST($1::text[], $2::text[]) AS e(id, username) \
         JOIN users u ON u.username = e.username WHERE u.id <> ALL($3::text[]) LIMIT 1",
    )
    .bind(&named_ids)
    .bind(&names)
    .bind(&ids)
    .fetch_optional(&mut **tx)
    .await
    .map_err(err)?;
    if let Some((username, export_id, local_id)) = taken {
        return Err(username_taken(&username, &export_id, &local_id));
    }
    // Usernames may move between the imported users: free theirs first, so that no row
    // breaks the uniqueness of usernames on the way.
    sqlx::query(
        "UPDATE users SET username = NULL WHERE id = ANY($1::text[]) AND username IS NOT NULL",
    )
    .bind(&ids)
    .execute(&mut **tx)
    .await
    .map_err(err)?;

    let before = count_rows(tx, "users").await?;
    for chunk in users.chunks(CHUNK_ROWS) {
        sqlx::query(
            "INSERT INTO users (id, username, name, active, roles, emails, password_bcrypt, \
             created_at, updated_at) \
             SELECT id, username, name, active, roles, emails, password_bcrypt, created_at, $9 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], \
             $6::text[], $7::text[], $8::bigint[]) \
             AS u(id, username, name, active, roles, emails, password_bcrypt, created_at) \
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, \
             name = excluded.name, active = excluded.active, roles = excluded.roles, \
             emails = excluded.emails, password_bcrypt = excluded.password_bcrypt, \
             updated_at = excluded.updated_at",
        )
        .bind(chunk.iter().map(|u| u.id.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|u| u.username.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|u| u.name.as_deref()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|u| u.active).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|u| encode_list(&u.roles))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|u| serde_json::to_string(&u.emails).expect("e-mails are JSON"))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|u| u.password_bcrypt.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|u| u.created_at_ms.unwrap_or(now))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(username_race)?;
        progress(chunk.len() as u64);
    }
    let after = count_rows(tx, "users").await?;

    // The export's tokens replace the sessions: a token revoked in Rocket.Chat stops working.
    sqlx::query("DELETE FROM sessions WHERE user_id = ANY($1::text[])")
        .bind(&ids)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    let tokens: Vec<(&str, &super::super::ImportedToken)> = users
        .iter()
        .flat_map(|u| u.tokens.iter().map(move |t| (u.id.as_str(), t)))
        .collect();
    for chunk in tokens.chunks(CHUNK_ROWS) {
        sqlx::query(
            "INSERT INTO sessions (user_id, hashed_token, kind, name, issued_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])",
        )
        .bind(chunk.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|(_, t)| t.hashed_token.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|(_, t)| t.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|(_, t)| t.name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|(_, t)| t.issued_at_ms)
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    }
    Ok((
        LoadReport::counted(users.len(), before, after),
        tokens.len() as u64,
    ))
}

/// Upserts the permissions; one whose roles are unchanged keeps its `_updatedAt`.
async fn import_permissions(
    tx: &mut Tx<'_>,
    permissions: &[(String, Vec<String>)],
    now: i64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadReport, StoreError> {
    if permissions.is_empty() {
        return Ok(LoadReport::default());
    }
    let before = count_rows(tx, "permissions").await?;
    for chunk in permissions.chunks(CHUNK_ROWS) {
        sqlx::query(
            "INSERT INTO permissions (id, roles, updated_at) \
             SELECT id, roles, $3 FROM UNNEST($1::text[], $2::text[]) AS p(id, roles) \
             ON CONFLICT (id) DO UPDATE SET roles = excluded.roles, \
             updated_at = excluded.updated_at WHERE permissions.roles <> excluded.roles",
        )
        .bind(chunk.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|(_, roles)| encode_list(roles))
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        progress(chunk.len() as u64);
    }
    let after = count_rows(tx, "permissions").await?;
    Ok(LoadReport::counted(permissions.len(), before, after))
}
