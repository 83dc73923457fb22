//! Creating users and issuing tokens: the rules shared by the command line, the server's
//! start-up (the bootstrap admin, `--demo`) and the HTTP routes that create users.

use crate::domain::auth::TokenKind;
use crate::domain::ids::new_meteor_id;
use crate::domain::secrets::{hash_password, hash_token, new_raw_token};
use crate::domain::time::now_ms;
use crate::domain::user::{Email, NewUser, User, is_valid_email, is_valid_role, is_valid_username};
use crate::hashing::PasswordHashing;
use crate::store::{NewSession, Store, StoreError};

/// What a new user is made from; the password is raw and is hashed here.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// `["user"]` when empty, as Rocket.Chat's `users.create` does.
    pub roles: Vec<String>,
    pub password: Option<String>,
    pub active: bool,
    /// Whether the e-mail address is marked verified (`users.create`'s `verified`).
    pub email_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and stores a new user. Password hashing runs on a blocking thread, in one of the
/// process's hashing slots.
pub async fn create_user(store: &Store, account: NewAccount) -> Result<User, AccountError> {
    create_user_with(store, PasswordHashing::shared(), account).await
}

/// `create_user` with the hashing slots of a server (`AppState`).
pub async fn create_user_with(
    store: &Store,
    hashing: &PasswordHashing,
    account: NewAccount,
) -> Result<User, AccountError> {
    if !is_valid_username(&account.username) {
        return Err(AccountError::Invalid(format!(
            "{:?} is not a valid username (letters, digits, '-', '_' and '.')",
            account.username
        )));
    }
    if let Some(email) = account.email.as_deref().filter(|e| !is_valid_email(e)) {
        return Err(AccountError::Invalid(format!(
            "{email:?} is not a valid e-mail address"
        )));
    }
    let roles = if account.roles.is_empty() {
        vec!["user".to_string()]
    } else {
        dedup(account.roles)
    };
    if let Some(role) = roles.iter().find(|r| !is_valid_role(r)) {
        return Err(AccountError::Invalid(format!(
            "{role:?} is not a valid role name"
        )));
    }
    let password_bcrypt = match account.password {
        Some(p) if p.is_empty() => {
            return Err(AccountError::Invalid("the password is empty".into()));
        }
        Some(password) => Some(
            hashing
                .run(None, move || hash_password(&password))
                .await
                .map_err(|e| AccountError::Invalid(format!("password hashing failed: {e}")))?
                .map_err(|e| AccountError::Invalid(format!("password hashing failed: {e}")))?,
        ),
        None => None,
    };
    let user = NewUser {
        id: new_meteor_id(),
        username: account.username,
        name: account.name,
        active: account.active,
        roles,
        emails: account
            .email
            .into_iter()
            .map(|address| Email {
                address,
                verified: account.email_verified,
            })
            .collect(),
        password_bcrypt,
    };
    store.create_user(&user).await?;
    Ok(User {
        id: user.id,
        username: Some(user.username),
        name: user.name,
        active: user.active,
        roles: user.roles,
        emails: user.emails,
    })
}

/// How a token to issue lasts.
#[derive(Debug, Clone)]
pub enum TokenLifetime {
    /// A login token that expires after the server's configured login expiration.
    Default,
    /// A login token that expires this many days after now.
    Days(u32),
    /// A personal access token of this name, which never expires.
    Personal(String),
}

/// Stores a new token for a user and returns the raw token: the only time it exists.
pub async fn issue_token(
    store: &Store,
    user_id: &str,
    lifetime: TokenLifetime,
) -> Result<String, StoreError> {
    let raw = new_raw_token();
    let now = now_ms();
    let (kind, name, expires_at_ms) = match lifetime {
        TokenLifetime::Default => (TokenKind::Login, None, None),
        TokenLifetime::Days(days) => (
            TokenKind::Login,
            None,
            Some(now.saturating_add(i64::from(days) * 86_400_000)),
        ),
        TokenLifetime::Personal(name) => (TokenKind::Personal, Some(name), None),
    };
    store
        .insert_session(&NewSession {
            user_id: user_id.to_owned(),
            hashed_token: hash_token(&raw),
            kind,
            name,
            issued_at_ms: now,
            expires_at_ms,
        })
        .await?;
    Ok(raw)
}

/// Keeps the first of each repeated item, in order.
pub fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
