//! Who may do what: turns an `X-User-Id` / `X-Auth-Token` pair into a caller, and answers
//! whether a caller holds a permission. The HTTP extractors (`http::auth`) are its only users
//! on the request path. Answers come from the cache (`crate::cache`) when it has them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::cache::{Cache, CachedSession};
use crate::config::Settings;
use crate::domain::permission::{self, grants};
use crate::domain::secrets::{encode_digest, token_digest};
use crate::domain::time::now_ms;
use crate::store::{Store, StoreError};
use crate::telemetry;

/// An authenticated caller.
#[derive(Debug)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<String>,
    decisions: Decisions,
}

impl Caller {
    pub fn new(user_id: String, username: String, roles: Vec<String>) -> Self {
        Caller {
            user_id,
            username,
            roles,
            decisions: Decisions::default(),
        }
    }
}

/// The permissions whose checks are remembered with the caller: those the routes ask for.
const REMEMBERED: [&str; 6] = [
    permission::VIEW_IMPORT_OPERATIONS,
    permission::RUN_IMPORT,
    permission::ACCESS_PERMISSIONS,
    permission::CREATE_USER,
    permission::DELETE_USER,
    permission::BYPASS_RATE_LIMIT,
];

// One bit each in a `u8`.
const _: () = assert!(REMEMBERED.len() <= 8);

/// What the caller's permission checks found, bit `i` for `REMEMBERED[i]`. A cached caller
/// lives in the cache's sessions, which any change to users, roles or permissions empties, so
/// a remembered answer is never older than the caller itself.
#[derive(Debug, Default)]
struct Decisions {
    known: AtomicU8,
    held: AtomicU8,
}

impl Decisions {
    fn get(&self, i: usize) -> Option<bool> {
        let bit = 1u8 << i;
        (self.known.load(Ordering::Acquire) & bit != 0)
            .then(|| self.held.load(Ordering::Relaxed) & bit != 0)
    }

    fn set(&self, i: usize, held: bool) {
        let bit = 1u8 << i;
        if held {
            self.held.fetch_or(bit, Ordering::Relaxed);
        }
        self.known.fetch_or(bit, Ordering::Release);
    }
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
            && cached.caller.user_id == user_id
        {
            telemetry::cache_lookup("session", true);
            let live = cached.expires_at_ms.is_none_or(|expiry| now < expiry);
            return Ok(live.then(|| cached.caller.clone()));
        }
        // A pair that failed since sessions and access last changed fails again without a
        // lookup: wrong tokens
        // and unknown users alike, so both still take the same path.
        if stamp.is_some_and(|s| self.cache.known_miss(s, &digest, user_id)) {
            telemetry::cache_lookup("session", true);
            return Ok(None);
        }
        telemetry::cache_lookup("session", false);

        let found = self
            .store
            .find_session(user_id, &encode_digest(&digest))
            .await?
            .filter(|session| session.authenticates(now, self.login_expiration_ms));
        let Some(session) = found else {
            if let Some(stamp) = stamp {
                self.cache.put_miss(stamp, digest, user_id);
            }
            return Ok(None);
        };
        let expires_at_ms = session.expiry_ms(self.login_expiration_ms);
        let caller = Arc::new(Caller::new(
            session.user_id,
            session.username.unwrap_or_default(),
            session.roles,
        ));
        if let Some(stamp) = stamp {
            let cached = CachedSession {
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
        let remembered = REMEMBERED.iter().position(|p| *p == permission);
        if let Some(held) = remembered.and_then(|i| caller.decisions.get(i)) {
            telemetry::cache_lookup("permission", true);
            return Ok(held);
        }
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
        let held = grants(&roles, &caller.roles);
        if let Some(i) = remembered {
            caller.decisions.set(i, held);
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_unknown_until_set_then_kept_apart() {
        let d = Decisions::default();
        assert_eq!(d.get(0), None);
        d.set(0, true);
        d.set(5, false);
        assert_eq!(d.get(0), Some(true));
        assert_eq!(d.get(5), Some(false));
        assert_eq!(d.get(1), None);
    }
}
