//! Who may do what: turns an `X-User-Id` / `X-Auth-Token` pair into a caller, and answers
//! whether a caller holds a permission. The HTTP extractors (`http::auth`) are its only users
//! on the request path.

use crate::config::Settings;
use crate::domain::permission::grants;
use crate::domain::secrets::hash_token;
use crate::domain::time::now_ms;
use crate::store::{Store, StoreError};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Access {
    store: Store,
    login_expiration_ms: i64,
}

impl Access {
    pub fn new(store: Store, settings: &Settings) -> Self {
        Access {
            store,
            login_expiration_ms: settings.login_expiration_ms(),
        }
    }

    /// The caller holding this token, if the session exists and still authenticates. Unknown
    /// users and wrong tokens both give `None`: the same lookup, the same answer.
    pub async fn authenticate(
        &self,
        user_id: &str,
        raw_token: &str,
    ) -> Result<Option<Caller>, StoreError> {
        let hashed = hash_token(raw_token);
        let Some(session) = self.store.find_session(user_id, &hashed).await? else {
            return Ok(None);
        };
        if !session.authenticates(now_ms(), self.login_expiration_ms) {
            return Ok(None);
        }
        Ok(Some(Caller {
            user_id: session.user_id,
            username: session.username.unwrap_or_default(),
            roles: session.roles,
        }))
    }

    /// Whether any of the caller's roles holds the permission. An unknown permission is held
    /// by no one.
    pub async fn has_permission(
        &self,
        caller: &Caller,
        permission: &str,
    ) -> Result<bool, StoreError> {
        let roles = self
            .store
            .permission_roles(permission)
            .await?
            .unwrap_or_default();
        Ok(grants(&roles, &caller.roles))
    }
}
