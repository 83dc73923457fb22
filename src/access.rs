//! Who may do what: turns an `X-User-Id` / `X-Auth-Token` pair into a caller, and answers
//! whether a caller holds a permission. The HTTP extractors (`http::auth`) are its only users
//! on the request path. Answers come from the cache (`crate::cache`) when it has them.

use std::sync::Arc;

use crate::cache::{Cache, CachedSession};
use crate::config::Settings;
use crate::domain::permission::grants;
use crate::domain::secrets::{encode_digest, token_digest};
use crate::domain::time::now_ms;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<String>,
}

#[derive(Clone)]
pub struct Access {
    store: Store,
    cache: Arc<Cache>,
    login_expiration_ms: i64,
}

impl Access {
    pub fn new(store: Store, cache: Arc<Cache>, settings: &Settings) -> Self {
        Access {
            store,
            cache,
            login_expiration_ms: settings.login_expiration_ms(),
        }
    }

    /// The caller holding this token, if the session exists and still authenticates. Unknown
    /// users and wrong tokens both give `None` after the same database lookup.
    pub async fn authenticate(
        &self,
        user_id: &str,
        raw_token: &str,
    ) -> Result<Option<Arc<Caller>>, StoreError> {
        let digest = token_digest(raw_token);
        let now = now_ms();
        let stamp = self.cache.stamp();
        if let Some(cached) = stamp.and_then(|s| self.cache.session(s, &digest))
            && cached.user_id == user_id
        {
            telemetry::cache_lookup("session", true);
            let live = cached.expires_at_ms.is_none_or(|expiry| now < expiry);
            return Ok(live.then(|| cached.caller.clone()));
        }
        telemetry::cache_lookup("session", false);

        let Some(session) = self
            .store
            .find_session(user_id, &encode_digest(&digest))
            .await?
        else {
            return Ok(None);
        };
        if !session.authenticates(now, self.login_expiration_ms) {
            return Ok(None);
        }
        let expires_at_ms = session.expiry_ms(self.login_expiration_ms);
        let caller = Arc::new(Caller {
            user_id: session.user_id,
            username: session.username.unwrap_or_default(),
            roles: session.roles,
        });
        if let Some(stamp) = stamp {
            let cached = CachedSession {
                user_id: caller.user_id.clone(),
                caller: caller.clone(),
                expires_at_ms,
            };
            self.cache.put_session(stamp, digest, cached);
        }
        Ok(Some(caller))
    }

    /// Whether any of the caller's roles holds the permission. An unknown permission is held
    /// by no one.
    pub async fn has_permission(
        &self,
        caller: &Caller,
        permission: &str,
    ) -> Result<bool, StoreError> {
        let stamp = self.cache.stamp();
        let cached = stamp.and_then(|s| self.cache.permission(s, permission));
        telemetry::cache_lookup("permission", cached.is_some());
        let roles = match cached {
            Some(roles) => roles,
            None => {
                let roles: Arc<[String]> = self
                    .store
                    .permission_roles(permission)
                    .await?
                    .unwrap_or_default()
                    .into();
                if let Some(stamp) = stamp {
                    self.cache.put_permission(stamp, permission, roles.clone());
                }
                roles
            }
        };
        Ok(grants(&roles, &caller.roles))
    }
}
