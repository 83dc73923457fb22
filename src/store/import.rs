//! `Store::import_rocketchat`: a Rocket.Chat export written in one transaction, rows sent by
//! multi-row statements in chunks (one statement per row would cost a round trip each).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::operations::{count_rows, write_operation_stream};
use super::users::{email_key, insert_roles};
use super::{
    CHUNK_ROWS, Conflict, ConflictKind, Kinds, LoadReport, OperationChunks, Store, StoreError,
    StreamError, encode_list, in_write, insert_values, parameter_list, unique_violation,
};
use crate::domain::auth::TokenKind;
use crate::domain::time::now_ms;

/// The users and permissions of a Rocket.Chat export, ready to be written by
/// `Store::import_rocketchat` with the export's operations (`rocketchat` reads and checks
/// them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RocketchatImport {
    pub users: Vec<ImportedUser>,
    /// `(permission, roles)`, inserted or replaced.
    pub permissions: Vec<(String, Vec<String>)>,
}

/// A Rocket.Chat user, inserted or replaced by `_id`, with the tokens that replace its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedUser {
    pub id: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub active: bool,
    pub roles: Vec<String>,
    pub emails: Vec<crate::domain::user::Email>,
    /// Rocket.Chat's bcrypt of the sha256 hex of the password, as stored there.
    pub password_bcrypt: Option<String>,
    pub created_at_ms: Option<i64>,
    pub tokens: Vec<ImportedToken>,
}

/// A login token (`expires_at` left to the configured expiration) or a personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedToken {
    pub hashed_token: String,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub users: LoadReport,
    pub tokens: u64,
    pub permissions: LoadReport,
    pub operations: LoadReport,
}

fn conflict(message: String) -> StoreError {
    StoreError::Conflict(Conflict::new(ConflictKind::Import, "", message))
}

/// Two users of the export whose usernames or addresses differ only in case, or a local user
/// who took one between the checks and the writes.
const RACE: &str = "two users would hold one username or e-mail address (compared ignoring \
                    case); nothing was imported";

impl Store {
    /// Writes a Rocket.Chat export in one transaction: roles, users (by `_id`; their sessions
    /// replaced by the export's tokens, their e-mail addresses by the export's), permissions,
    /// then the operations (by `_id`) as their chunks arrive. A username or e-mail address held
    /// by a local user outside the export is a `Conflict`, and nothing is written; so is an
    /// `Err` chunk.
    pub async fn import_rocketchat<E>(
        &self,
        data: &RocketchatImport,
        operations: OperationChunks<E>,
    ) -> Result<ImportReport, StreamError<E>> {
        let now = now_ms();
        let roles: BTreeSet<&str> = data
            .users
            .iter()
            .flat_map(|u| u.roles.iter())
            .chain(data.permissions.iter().flat_map(|(_, roles)| roles.iter()))
            .map(String::as_str)
            .collect();
        let users = &data.users;
        let export_ids: HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let named: Vec<(&str, &str)> = users
            .iter()
            .filter_map(|u| u.username.as_deref().map(|name| (u.id.as_str(), name)))
            .collect();
        let emails: Vec<(String, &str, &str)> = users
            .iter()
            .flat_map(|u| {
                u.emails
                    .iter()
                    .map(|e| (email_key(&e.address), e.address.as_str(), u.id.as_str()))
            })
            .collect();
        let tokens: Vec<(&str, &ImportedToken)> = users
            .iter()
            .flat_map(|u| u.tokens.iter().map(move |t| (u.id.as_str(), t)))
            .collect();

        // Users, their sessions, permissions and operations: every kind.
        in_write!(self, Kinds::ALL, |tx| -> StreamError<E> {
            insert_roles!(tx, roles.into_iter().collect());

            // A username held by a local user that the export does not describe: refuse it all.
            for chunk in named.chunks(CHUNK_ROWS) {
                let sql = format!(
                    "SELECT id, username FROM users WHERE lower(username) IN ({})",
                    parameter_list(&tx, chunk.len(), "lower")
                );
                let mut query = sqlx::query_as(&sql);
                for (_, name) in chunk {
                    query = query.bind(*name);
                }
                let holders: Vec<(String, String)> = query.fetch_all(&mut *tx).await?;
                if let Some((local_id, held)) = holders
                    .into_iter()
                    .find(|(id, _)| !export_ids.contains(id.as_str()))
                {
                    let (export_id, username) = chunk
                        .iter()
                        .find(|(_, name)| name.eq_ignore_ascii_case(&held))
                        .copied()
                        .unwrap_or(("?", held.as_str()));
                    return Err(StreamError::Store(conflict(format!(
                        "the username {username:?} of the exported user {export_id} is already \
                         taken by the local user {local_id}; nothing was imported"
                    ))));
                }
            }
            // Usernames and addresses may move between the imported users: free theirs first,
            // so that no row breaks their uniqueness on the way.
            for chunk in ids.chunks(CHUNK_ROWS) {
                let list = parameter_list(&tx, chunk.len(), "");
                for sql in [
                    format!("UPDATE users SET username = NULL WHERE id IN ({list})"),
                    format!("DELETE FROM user_emails WHERE user_id IN ({list})"),
                    // The export's tokens replace the sessions: a token revoked in
                    // Rocket.Chat stops working.
                    format!("DELETE FROM sessions WHERE user_id IN ({list})"),
                ] {
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            // An address held by a local user that the export does not describe.
            let owners: HashMap<&str, (&str, &str)> = emails
                .iter()
                .map(|(key, address, id)| (key.as_str(), (*address, *id)))
                .collect();
            let keys: Vec<&str> = owners.keys().copied().collect();
            for chunk in keys.chunks(CHUNK_ROWS) {
                let sql = format!(
                    "SELECT address, user_id FROM user_emails WHERE address IN ({})",
                    parameter_list(&tx, chunk.len(), "")
                );
                let mut query = sqlx::query_as(&sql);
                for key in chunk {
                    query = query.bind(*key);
                }
                let held: Option<(String, String)> = query.fetch_optional(&mut *tx).await?;
                if let Some((key, local_id)) = held {
                    let (address, export_id) = owners[key.as_str()];
                    return Err(StreamError::Store(conflict(format!(
                        "the e-mail address {address:?} of the exported user {export_id} is \
                         already taken by the local user {local_id}; nothing was imported"
                    ))));
                }
            }

            let before = count_rows!(tx, "users");
            for chunk in users.chunks(CHUNK_ROWS) {
                let sql = insert_values(
                    &tx,
                    "users",
                    &[
                        "id",
                        "username",
                        "name",
                        "active",
                        "roles",
                        "emails",
                        "password_bcrypt",
                        "created_at",
                        "updated_at",
                    ],
                    chunk.len(),
                    "ON CONFLICT (id) DO UPDATE SET username = excluded.username, \
                     name = excluded.name, active = excluded.active, roles = excluded.roles, \
                     emails = excluded.emails, password_bcrypt = excluded.password_bcrypt, \
                     updated_at = excluded.updated_at",
                );
                let mut query = sqlx::query(&sql);
                for u in chunk {
                    query = query
                        .bind(u.id.as_str())
                        .bind(u.username.as_deref())
                        .bind(u.name.as_deref())
                        .bind(u.active)
                        .bind(encode_list(&u.roles))
                        .bind(serde_json::to_string(&u.emails).expect("e-mails are JSON"))
                        .bind(u.password_bcrypt.as_deref())
                        .bind(u.created_at_ms.unwrap_or(now))
                        .bind(now);
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique_violation(e, ConflictKind::Import, "", RACE))?;
            }
            let after = count_rows!(tx, "users");
            for chunk in emails.chunks(CHUNK_ROWS) {
                let sql =
                    insert_values(&tx, "user_emails", &["address", "user_id"], chunk.len(), "");
                let mut query = sqlx::query(&sql);
                for (key, _, id) in chunk {
                    query = query.bind(key.as_str()).bind(*id);
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| unique_violation(e, ConflictKind::Import, "", RACE))?;
            }
            for chunk in tokens.chunks(CHUNK_ROWS) {
                let sql = insert_values(
                    &tx,
                    "sessions",
                    &["user_id", "hashed_token", "kind", "name", "issued_at"],
                    chunk.len(),
                    "",
                );
                let mut query = sqlx::query(&sql);
                for (user_id, t) in chunk {
                    query = query
                        .bind(*user_id)
                        .bind(t.hashed_token.as_str())
                        .bind(t.kind.as_str())
                        .bind(t.name.as_deref())
                        .bind(t.issued_at_ms);
                }
                query.execute(&mut *tx).await?;
            }
            let users = LoadReport::counted(users.len(), before, after);

            // Permissions: one whose roles are unchanged keeps its `_updatedAt`.
            let before = count_rows!(tx, "permissions");
            for chunk in data.permissions.chunks(CHUNK_ROWS) {
                let sql = insert_values(
                    &tx,
                    "permissions",
                    &["id", "roles", "updated_at"],
                    chunk.len(),
                    "ON CONFLICT (id) DO UPDATE SET roles = excluded.roles, \
                     updated_at = excluded.updated_at WHERE permissions.roles <> excluded.roles",
                );
                let mut query = sqlx::query(&sql);
                for (id, roles) in chunk {
                    query = query.bind(id.as_str()).bind(encode_list(roles)).bind(now);
                }
                query.execute(&mut *tx).await?;
            }
            let after = count_rows!(tx, "permissions");
            let permissions = LoadReport::counted(data.permissions.len(), before, after);

            // Operations in file order; a replaced one keeps its `seq`.
            let operations = write_operation_stream!(tx, operations);
            ImportReport {
                users,
                tokens: tokens.len() as u64,
                permissions,
                operations,
            }
        })
    }
}
