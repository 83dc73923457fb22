//! Login tokens and personal access tokens; only a token's hash is ever stored.

use super::{
    ConflictKind, Kinds, Store, StoreError, decode_kind, decode_list, in_write, unique_violation,
    with_pool,
};
use crate::domain::auth::{Session, TokenKind};

/// A login token or personal access token to store (the token itself is already hashed).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: String,
    pub hashed_token: String,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// What `token list` shows of a session: never the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: i64,
    pub kind: TokenKind,
    pub name: Option<String>,
    pub issued_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

/// Which of a user's sessions to revoke.
#[derive(Debug, Clone)]
pub enum Revoke {
    All,
    /// The personal access token of that name.
    Name(String),
    /// The session holding that token hash.
    Hash(String),
}

/// A session with what authentication needs of its user.
#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: String,
    username: Option<String>,
    active: bool,
    roles: String,
    kind: String,
    issued_at: i64,
    expires_at: Option<i64>,
}

/// What `SessionRow` reads: a session and its user, for `concat!` with a `WHERE`.
macro_rules! sessions_with_users {
    () => {
        "SELECT u.id AS user_id, u.username, u.active, u.roles, s.kind, s.issued_at, \
         s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
    };
}

impl SessionRow {
    fn decode(self) -> Result<Session, StoreError> {
        Ok(Session {
            user_id: self.user_id,
            username: self.username,
            active: self.active,
            roles: decode_list(&self.roles)?,
            kind: decode_kind(&self.kind)?,
            issued_at_ms: self.issued_at,
            expires_at_ms: self.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionInfoRow {
    id: i64,
    kind: String,
    name: Option<String>,
    issued_at: i64,
    expires_at: Option<i64>,
}

impl Store {
    /// Adds a session. It changes no cached session (only failed lookups depend on it).
    pub async fn insert_session(&self, s: &NewSession) -> Result<(), StoreError> {
        in_write!(self, Kinds::ADDED, |tx| {
            sqlx::query(
                "INSERT INTO sessions (user_id, hashed_token, kind, name, issued_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&s.user_id)
            .bind(&s.hashed_token)
            .bind(s.kind.as_str())
            .bind(&s.name)
            .bind(s.issued_at_ms)
            .bind(s.expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let message = "the user already has a token of that name or value";
                unique_violation(e, ConflictKind::Token, "", message)
            })?;
        })
    }

    /// The session of that user with that token hash, with what authentication needs of the
    /// user; the caller decides whether it still authenticates.
    pub async fn find_session(
        &self,
        user_id: &str,
        hashed_token: &str,
    ) -> Result<Option<Session>, StoreError> {
        let row: Option<SessionRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(
                sessions_with_users!(),
                " WHERE s.user_id = $1 AND s.hashed_token = $2"
            ))
            .bind(user_id)
            .bind(hashed_token)
            .fetch_optional(pool)
            .await?
        });
        row.map(SessionRow::decode).transpose()
    }

    /// The session holding that token hash, whoever its user (a `{resume}` login names no
    /// user). Token hashes are sha256 of random tokens, so at most one matches.
    pub async fn find_session_by_token(
        &self,
        hashed_token: &str,
    ) -> Result<Option<Session>, StoreError> {
        let row: Option<SessionRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(
                sessions_with_users!(),
                " WHERE s.hashed_token = $1 LIMIT 1"
            ))
            .bind(hashed_token)
            .fetch_optional(pool)
            .await?
        });
        row.map(SessionRow::decode).transpose()
    }

    pub async fn list_sessions(&self, user_id: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let rows: Vec<SessionInfoRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, kind, name, issued_at, expires_at FROM sessions WHERE user_id = $1 \
                 ORDER BY issued_at, id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(SessionInfo {
                    id: r.id,
                    kind: decode_kind(&r.kind)?,
                    name: r.name,
                    issued_at_ms: r.issued_at,
                    expires_at_ms: r.expires_at,
                })
            })
            .collect()
    }

    /// Deletes the matching sessions of a user; returns how many.
    pub async fn revoke_sessions(&self, user_id: &str, which: &Revoke) -> Result<u64, StoreError> {
        let (sql, arg) = match which {
            Revoke::All => ("DELETE FROM sessions WHERE user_id = $1", None),
            Revoke::Name(name) => (
                "DELETE FROM sessions WHERE user_id = $1 AND kind = 'personal' AND name = $2",
                Some(name),
            ),
            Revoke::Hash(hash) => (
                "DELETE FROM sessions WHERE user_id = $1 AND hashed_token = $2",
                Some(hash),
            ),
        };
        let removed = in_write!(self, Kinds::SESSIONS, |tx| {
            let mut query = sqlx::query(sql).bind(user_id);
            if let Some(arg) = arg {
                query = query.bind(arg);
            }
            query.execute(&mut *tx).await?.rows_affected()
        });
        // Whatever the outcome: a commit whose answer was lost may have removed them.
        self.sessions_removed(Some(user_id));
        removed
    }
}
