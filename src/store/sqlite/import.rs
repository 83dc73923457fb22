//! `Store::import_rocketchat` on SQLite: one `BEGIN IMMEDIATE` transaction, rows written by
//! multi-row statements in chunks (one statement per row would cost a round trip to sqlx's
//! SQLite worker each).

use std::collections::BTreeSet;

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::super::{
    ImportReport, ImportedToken, ImportedUser, LoadReport, OperationChunks, RocketchatImport,
    StoreError, StreamError, encode_list,
};
use super::{SqliteStore, count_rows, err, write_operation_stream};

/// Rows per statement. SQLite takes at most 32 766 parameters in one statement; users have 9
/// columns, operations 6.
const CHUNK_ROWS: usize = 1_000;

type Tx<'c> = Transaction<'c, Sqlite>;

impl SqliteStore {
    pub async fn import_rocketchat<E>(
        &self,
        data: &RocketchatImport,
        operations: OperationChunks<E>,
        now: i64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ImportReport, StreamError<E>> {
        // IMMEDIATE: take the write lock at once, so that no other writer can slip in between
        // the username check and the writes.
        let mut tx = self.write_transaction().await?;
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

/// Every role the users and permissions name, created where missing.
async fn insert_roles(tx: &mut Tx<'_>, data: &RocketchatImport) -> Result<(), StoreError> {
    let roles: BTreeSet<&str> = data
        .users
        .iter()
        .flat_map(|u| u.roles.iter())
        .chain(data.permissions.iter().flat_map(|(_, roles)| roles.iter()))
        .map(String::as_str)
        .collect();
    let roles: Vec<&str> = roles.into_iter().collect();
    for chunk in roles.chunks(CHUNK_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO roles (name) ");
        q.push_values(chunk, |mut row, role| {
            row.push_bind(*role);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
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
    let ids = serde_json::to_string(&users.iter().map(|u| &u.id).collect::<Vec<_>>())
        .expect("strings are JSON");
    let named: Vec<(&str, &str)> = users
        .iter()
        .filter_map(|u| u.username.as_deref().map(|name| (u.id.as_str(), name)))
        .collect();
    let named = serde_json::to_string(&named).expect("strings are JSON");

    // A username held by a local user that the export does not describe: refuse it all.
    let taken: Option<(String, String, String)> = sqlx::query_as(
        "SELECT json_extract(e.value, '$[1]'), json_extract(e.value, '$[0]'), u.id \
         FROM json_each(?1) e CROSS JOIN users u \
         WHERE u.username = json_extract(e.value, '$[1]') \
         AND u.id NOT IN (SELECT value FROM json_each(?2)) LIMIT 1",
    )
    .bind(&named)
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
        "UPDATE users SET username = NULL \
         WHERE id IN (SELECT value FROM json_each(?)) AND username IS NOT NULL",
    )
    .bind(&ids)
    .execute(&mut **tx)
    .await
    .map_err(err)?;

    let before = count_rows(tx, "users").await?;
    for chunk in users.chunks(CHUNK_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO users (id, username, name, active, roles, emails, password_bcrypt, \
             created_at, updated_at) ",
        );
        q.push_values(chunk, |mut row, u| {
            row.push_bind(u.id.as_str())
                .push_bind(u.username.as_deref())
                .push_bind(u.name.as_deref())
                .push_bind(u.active)
                .push_bind(encode_list(&u.roles))
                .push_bind(serde_json::to_string(&u.emails).expect("e-mails are JSON"))
                .push_bind(u.password_bcrypt.as_deref())
                .push_bind(u.created_at_ms.unwrap_or(now))
                .push_bind(now);
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET username = excluded.username, \
             name = excluded.name, active = excluded.active, roles = excluded.roles, \
             emails = excluded.emails, password_bcrypt = excluded.password_bcrypt, \
             updated_at = excluded.updated_at",
        );
        q.build().execute(&mut **tx).await.map_err(err)?;
        progress(chunk.len() as u64);
    }
    let after = count_rows(tx, "users").await?;

    // The export's tokens replace the sessions: a token revoked in Rocket.Chat stops working.
    sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT value FROM json_each(?))")
        .bind(&ids)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    let tokens: Vec<(&str, &ImportedToken)> = users
        .iter()
        .flat_map(|u| u.tokens.iter().map(move |t| (u.id.as_str(), t)))
        .collect();
    for chunk in tokens.chunks(CHUNK_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO sessions (user_id, hashed_token, kind, name, issued_at, expires_at) ",
        );
        q.push_values(chunk, |mut row, (user_id, t)| {
            row.push_bind(*user_id)
                .push_bind(t.hashed_token.as_str())
                .push_bind(t.kind.as_str())
                .push_bind(t.name.as_deref())
                .push_bind(t.issued_at_ms)
                .push_bind(None::<i64>);
        });
        q.build().execute(&mut **tx).await.map_err(err)?;
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
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO permissions (id, roles, updated_at) ");
        q.push_values(chunk, |mut row, (id, roles)| {
            row.push_bind(id.as_str())
                .push_bind(encode_list(roles))
                .push_bind(now);
        });
        q.push(
            " ON CONFLICT (id) DO UPDATE SET roles = excluded.roles, \
             updated_at = excluded.updated_at WHERE permissions.roles <> excluded.roles",
        );
        q.build().execute(&mut **tx).await.map_err(err)?;
        progress(chunk.len() as u64);
    }
    let after = count_rows(tx, "permissions").await?;
    Ok(LoadReport::counted(permissions.len(), before, after))
}
