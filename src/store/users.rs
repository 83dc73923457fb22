//! Users, their e-mail addresses and roles.
//!
//! `users.emails` keeps the addresses as given (with their verified flags); `user_emails` holds
//! each one lower-cased, the key that makes addresses unique and finds a user by one.

use super::{
    ConflictKind, Kinds, Store, StoreError, decode_list, encode_list, in_write, unique_violation,
    with_pool,
};
use crate::domain::time::now_ms;
use crate::domain::user::{NewUser, User, UserRecord};

/// How an e-mail address is compared: ignoring case.
pub(super) fn email_key(address: &str) -> String {
    address.to_lowercase()
}

/// A users row as `user_columns!()` selects it.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: String,
    username: Option<String>,
    name: Option<String>,
    active: bool,
    roles: String,
    emails: String,
}

impl UserRow {
    fn decode(self) -> Result<User, StoreError> {
        Ok(User {
            id: self.id,
            username: self.username,
            name: self.name,
            active: self.active,
            roles: decode_list(&self.roles)?,
            emails: serde_json::from_str(&self.emails)
                .map_err(|e| StoreError::Corrupt(format!("stored e-mails: {e}")))?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    #[sqlx(flatten)]
    user: UserRow,
    has_password: bool,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_bcrypt: Option<String>,
}

/// The columns `UserRow` reads, for `concat!`.
macro_rules! user_columns {
    () => {
        "id, username, name, active, roles, emails"
    };
}

/// Creates the roles that do not exist yet, inside a write transaction.
macro_rules! insert_roles {
    ($tx:ident, $roles:expr) => {{
        let roles: Vec<&str> = $roles;
        for chunk in roles.chunks($crate::store::CHUNK_ROWS) {
            let sql = $crate::store::insert_values(
                &$tx,
                "roles",
                &["name"],
                chunk.len(),
                "ON CONFLICT DO NOTHING",
            );
            let mut query = sqlx::query(&sql);
            for role in chunk {
                query = query.bind(*role);
            }
            query.execute(&mut *$tx).await?;
        }
    }};
}
pub(super) use insert_roles;

impl Store {
    /// Stores a new user. A username or an e-mail address that another user holds, in any
    /// case, is a `Conflict` (the database's unique indexes decide, so racing writers cannot
    /// both win).
    pub async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        let now = now_ms();
        let emails = serde_json::to_string(&user.emails).expect("e-mails are always JSON");
        // A user (and roles) added: no cached session or permission depends on them.
        in_write!(self, Kinds::ADDED, |tx| {
            insert_roles!(tx, user.roles.iter().map(String::as_str).collect());
            sqlx::query(
                "INSERT INTO users (id, username, name, active, roles, emails, password_bcrypt, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.name)
            .bind(user.active)
            .bind(encode_list(&user.roles))
            .bind(&emails)
            .bind(&user.password_bcrypt)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let message = format!("the username {:?} is already taken", user.username);
                unique_violation(e, ConflictKind::Username, &user.username, message)
            })?;
            for email in &user.emails {
                sqlx::query("INSERT INTO user_emails (address, user_id) VALUES ($1, $2)")
                    .bind(email_key(&email.address))
                    .bind(&user.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        let message =
                            format!("the e-mail address {:?} is already taken", email.address);
                        unique_violation(e, ConflictKind::Email, &email.address, message)
                    })?;
            }
        })
    }

    /// The user of that username, in any case (usernames are unique ignoring case), as
    /// Rocket.Chat's `findOneByUsernameIgnoringCase` finds it.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE lower(username) = lower($1)"
        );
        let row: Option<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(username)
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::decode).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let row: Option<UserRow> = with_pool!(self, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(UserRow::decode).transpose()
    }

    /// A user as stored, with what `me` and `users.create` answer beyond [`User`].
    pub async fn user_record_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            ", password_bcrypt IS NOT NULL AS has_password, created_at, updated_at \
             FROM users WHERE id = $1"
        );
        let row: Option<RecordRow> = with_pool!(self, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(|r| {
            Ok(UserRecord {
                user: r.user.decode()?,
                has_password: r.has_password,
                created_at_ms: r.created_at,
                updated_at_ms: r.updated_at,
            })
        })
        .transpose()
    }

    /// The user a login names (a username or an e-mail address, both in any case) and its
    /// stored password hash, if it has one. A username match wins over an e-mail match.
    pub async fn user_for_login(
        &self,
        username_or_email: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            ", password_bcrypt FROM users WHERE lower(username) = lower($1) \
             OR id IN (SELECT user_id FROM user_emails WHERE address = $2) \
             ORDER BY CASE WHEN lower(username) = lower($1) THEN 0 ELSE 1 END LIMIT 1"
        );
        let key = email_key(username_or_email);
        let row: Option<LoginRow> = with_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(username_or_email)
                .bind(&key)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| Ok((r.user.decode()?, r.password_bcrypt)))
            .transpose()
    }

    /// Whether any user has this e-mail address (in any case).
    pub async fn email_taken(&self, email: &str) -> Result<bool, StoreError> {
        let key = email_key(email);
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM user_emails WHERE address = $1)")
                .bind(&key)
                .fetch_one(pool)
                .await?
        }))
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username, id"
        );
        let rows: Vec<UserRow> =
            with_pool!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        rows.into_iter().map(UserRow::decode).collect()
    }

    /// Removes a user and its sessions; false when there was no such user.
    pub async fn remove_user(&self, username: &str) -> Result<bool, StoreError> {
        self.delete_user(
            "DELETE FROM users WHERE username = $1 RETURNING id",
            username,
        )
        .await
    }

    /// Removes a user by id and its sessions; false when there was no such user.
    pub async fn remove_user_by_id(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_user("DELETE FROM users WHERE id = $1 RETURNING id", id)
            .await
    }

    async fn delete_user(&self, sql: &'static str, key: &str) -> Result<bool, StoreError> {
        let removed = in_write!(self, Kinds::SESSIONS, |tx| {
            sqlx::query_scalar::<_, String>(sql)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?
        });
        self.user_changed(removed)
    }

    /// Tells this process's caches which user a write changed or removed (with its
    /// sessions): all of them when the write failed, since a commit whose answer was lost may
    /// have gone through.
    fn user_changed(&self, id: Result<Option<String>, StoreError>) -> Result<bool, StoreError> {
        match id {
            Ok(Some(id)) => {
                self.sessions_removed(Some(&id));
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(err) => {
                self.sessions_removed(None);
                Err(err)
            }
        }
    }

    /// Activates or deactivates a user. Deactivating removes every token of the user, login
    /// and personal, as Rocket.Chat's `unsetLoginTokens` does, so reactivating revives none.
    pub async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = in_write!(self, Kinds::SESSIONS, |tx| {
            let id: Option<String> = sqlx::query_scalar(
                "UPDATE users SET active = $1, updated_at = $2 WHERE username = $3 RETURNING id",
            )
            .bind(active)
            .bind(now)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = id.as_deref().filter(|_| !active) {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            id
        });
        self.user_changed(changed)
    }

    /// Replaces a user's roles, creating roles that do not exist yet.
    pub async fn set_user_roles(
        &self,
        username: &str,
        roles: &[String],
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = in_write!(self, Kinds::SESSIONS | Kinds::ADDED, |tx| {
            insert_roles!(tx, roles.iter().map(String::as_str).collect());
            sqlx::query_scalar::<_, String>(
                "UPDATE users SET roles = $1, updated_at = $2 WHERE username = $3 RETURNING id",
            )
            .bind(encode_list(roles))
            .bind(now)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
        });
        self.user_changed(changed)
    }

    pub async fn list_roles(&self) -> Result<Vec<String>, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT name FROM roles ORDER BY name")
                .fetch_all(pool)
                .await?
        }))
    }
}

/// A user to import from a staged record (docs/compatibility.md section 11): matched to an
/// existing user by its first e-mail address, then by username ignoring case, and updated;
/// otherwise created with `new_id`.
#[derive(Debug, Clone, Default)]
pub struct UserImport {
    pub new_id: String,
    pub import_ids: Vec<String>,
    /// Required for a new user (the workflow makes one up when the record has none).
    pub username: Option<String>,
    pub name: Option<String>,
    pub emails: Vec<String>,
    /// The record's roles when it has some.
    pub roles: Option<Vec<String>>,
    pub deleted: Option<bool>,
    /// bcrypt of the sha256 of the record's password, when it has one.
    pub password_bcrypt: Option<String>,
    /// `_pendingAvatarUrl`.
    pub avatar_url: Option<String>,
    /// `import.run`'s quick insertion: no lookup, an existing username or address is a
    /// conflict.
    pub insert_only: bool,
}

/// What importing a user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserImported {
    Created(String),
    Updated(String),
}

#[derive(sqlx::FromRow)]
struct ImportTarget {
    id: String,
    username: Option<String>,
    name: Option<String>,
    active: bool,
    roles: String,
    emails: String,
    import_ids: String,
}

impl Store {
    /// Imports one user in one write transaction: all of it or nothing (a username or an
    /// address another user holds is a `Conflict` and writes nothing).
    pub async fn import_user(&self, user: &UserImport) -> Result<UserImported, StoreError> {
        let now = now_ms();
        let result = in_write!(self, Kinds::SESSIONS | Kinds::ADDED, |tx| {
            let mut existing: Option<ImportTarget> = None;
            if !user.insert_only {
                const TARGET: &str = "SELECT id, username, name, active, roles, emails, import_ids \
                                      FROM users WHERE ";
                if let Some(email) = user.emails.first() {
                    existing = sqlx::query_as(&format!(
                        "{TARGET}id = (SELECT user_id FROM user_emails WHERE address = $1)"
                    ))
                    .bind(email_key(email))
                    .fetch_optional(&mut *tx)
                    .await?;
                }
                if existing.is_none()
                    && let Some(username) = &user.username
                {
                    existing = sqlx::query_as(&format!("{TARGET}lower(username) = lower($1)"))
                        .bind(username)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
            }
            let conflict_username = |e: sqlx::Error| {
                let username = user.username.clone().unwrap_or_default();
                let message = format!("the username {username:?} is already taken");
                unique_violation(e, ConflictKind::Username, &username, message)
            };
            let (id, created) = match existing {
                Some(target) => {
                    let old_emails: Vec<crate::domain::user::Email> =
                        serde_json::from_str(&target.emails)
                            .map_err(|e| StoreError::Corrupt(format!("stored e-mails: {e}")))?;
                    let emails = if user.emails.is_empty() {
                        old_emails
                    } else {
                        // Replaced by the record's, an address already verified staying so.
                        user.emails
                            .iter()
                            .map(|address| crate::domain::user::Email {
                                address: address.clone(),
                                verified: old_emails.iter().any(|e| {
                                    e.verified && email_key(&e.address) == email_key(address)
                                }),
                            })
                            .collect()
                    };
                    let mut roles = decode_list(&target.roles)?;
                    if let Some(given) = user.roles.as_ref().filter(|r| !r.is_empty()) {
                        roles = given.clone();
                    } else if roles.is_empty() {
                        roles = vec!["user".to_owned()];
                    }
                    let mut import_ids = decode_list(&target.import_ids)?;
                    for id in &user.import_ids {
                        if !import_ids.contains(id) {
                            import_ids.push(id.clone());
                        }
                    }
                    let active = match user.deleted {
                        Some(true) => false,
                        Some(false) => true,
                        None => target.active,
                    };
                    insert_roles!(tx, roles.iter().map(String::as_str).collect());
                    sqlx::query(
                        "UPDATE users SET username = $1, name = $2, active = $3, roles = $4, \
                         emails = $5, import_ids = $6, \
                         pending_avatar_url = COALESCE($7, pending_avatar_url), updated_at = $8 \
                         WHERE id = $9",
                    )
                    .bind(user.username.as_ref().or(target.username.as_ref()))
                    .bind(user.name.as_ref().or(target.name.as_ref()))
                    .bind(active)
                    .bind(encode_list(&roles))
                    .bind(serde_json::to_string(&emails).expect("e-mails are always JSON"))
                    .bind(encode_list(&import_ids))
                    .bind(user.avatar_url.as_deref())
                    .bind(now)
                    .bind(&target.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_username)?;
                    sqlx::query("DELETE FROM user_emails WHERE user_id = $1")
                        .bind(&target.id)
                        .execute(&mut *tx)
                        .await?;
                    if target.active && !active {
                        // Deactivated: its tokens go, as `set_user_active` removes them.
                        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                            .bind(&target.id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (target.id, false)
                }
                None => {
                    let roles = match user.roles.as_ref().filter(|r| !r.is_empty()) {
                        Some(roles) => roles.clone(),
                        None => vec!["user".to_owned()],
                    };
                    let emails: Vec<crate::domain::user::Email> = user
                        .emails
                        .iter()
                        .map(|address| crate::domain::user::Email {
                            address: address.clone(),
                            verified: false,
                        })
                        .collect();
                    insert_roles!(tx, roles.iter().map(String::as_str).collect());
                    sqlx::query(
                        "INSERT INTO users (id, username, name, active, roles, emails, \
                         password_bcrypt, import_ids, pending_avatar_url, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                    )
                    .bind(&user.new_id)
                    .bind(user.username.as_deref())
                    .bind(user.name.as_deref())
                    .bind(user.deleted != Some(true))
                    .bind(encode_list(&roles))
                    .bind(serde_json::to_string(&emails).expect("e-mails are always JSON"))
                    .bind(user.password_bcrypt.as_deref())
                    .bind(encode_list(&user.import_ids))
                    .bind(user.avatar_url.as_deref())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(conflict_username)?;
                    (user.new_id.clone(), true)
                }
            };
            let mut seen = Vec::new();
            for email in &user.emails {
                let key = email_key(email);
                if seen.contains(&key) {
                    continue;
                }
                sqlx::query("INSERT INTO user_emails (address, user_id) VALUES ($1, $2)")
                    .bind(&key)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        let message = format!("the e-mail address {email:?} is already taken");
                        unique_violation(e, ConflictKind::Email, email, message)
                    })?;
                seen.push(key);
            }
            if created {
                UserImported::Created(id)
            } else {
                UserImported::Updated(id)
            }
        });
        match &result {
            Ok(UserImported::Updated(id)) => self.sessions_removed(Some(id)),
            Ok(UserImported::Created(_)) => {}
            Err(_) => self.sessions_removed(None),
        }
        result
    }

    /// Whether a user holds this exact username or import id (a message's author).
    pub async fn user_known_for_import(&self, id: &str) -> Result<bool, StoreError> {
        let pattern = serde_json::to_string(id).expect("a string is always JSON");
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1 \
                 OR import_ids LIKE '%' || $2 || '%')",
            )
            .bind(id)
            .bind(&pattern)
            .fetch_one(pool)
            .await?
        }))
    }

    /// How many users carry an avatar URL left by an import (`_pendingAvatarUrl`).
    pub async fn count_pending_avatars(&self) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE pending_avatar_url IS NOT NULL")
                .fetch_one(pool)
                .await?
        });
        Ok(n.max(0) as u64)
    }

    /// The import ids of a user, by username (for tests and the command line).
    pub async fn user_import_ids(&self, username: &str) -> Result<Option<Vec<String>>, StoreError> {
        let ids: Option<String> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT import_ids FROM users WHERE lower(username) = lower($1)")
                .bind(username)
                .fetch_optional(pool)
                .await?
        });
        ids.map(|text| decode_list(&text)).transpose()
    }
}

impl Store {
    /// Drops every avatar URL left by an import; how many users had one.
    pub async fn clear_pending_avatars(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        in_write!(self, Kinds::SESSIONS, |tx| {
            sqlx::query(
                "UPDATE users SET pending_avatar_url = NULL, updated_at = $1 \
                 WHERE pending_avatar_url IS NOT NULL",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
    }
}
