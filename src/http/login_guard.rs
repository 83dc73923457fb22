//! Rocket.Chat's block on repeated failed logins: after `USER_ATTEMPTS` failed password logins
//! for one user, or `ADDRESS_ATTEMPTS` from one client address, within `BLOCK_MS`, further
//! logins for that user or from that address are refused until `BLOCK_MS` has passed since
//! the last failure. A successful login clears the user's count. Counts live in memory, per
//! server.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use super::error::ApiError;

/// Rocket.Chat's defaults (`Block_Multiple_Failed_Logins_*`).
pub const USER_ATTEMPTS: u32 = 10;
pub const ADDRESS_ATTEMPTS: u32 = 50;
pub const BLOCK_MS: i64 = 5 * 60_000;
/// Past this many tracked keys, stale ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
}

#[derive(Debug)]
struct Counter<K> {
    failures: Mutex<HashMap<K, Failures>>,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Counter<K> {
    fn blocked(&self, key: &K, limit: u32, now_ms: i64) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures
            .get(key)
            .is_some_and(|f| f.count >= limit && now_ms < f.last_ms + BLOCK_MS)
    }

    fn fail(&self, key: K, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= PRUNE_AT {
            failures.retain(|_, f| now_ms < f.last_ms + BLOCK_MS);
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
        });
        if now_ms >= entry.last_ms + BLOCK_MS {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last_ms = now_ms;
    }

    fn clear(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[derive(Debug, Default)]
pub struct LoginGuard {
    users: Counter<String>,
    addresses: Counter<IpAddr>,
}

impl LoginGuard {
    /// Refuses a login for this user name or e-mail, or from this address, while blocked.
    pub fn check(&self, login: &str, client: IpAddr, now_ms: i64) -> Result<(), ApiError> {
        if self
            .users
            .blocked(&login.to_lowercase(), USER_ATTEMPTS, now_ms)
        {
            return Err(ApiError::LoginBlocked { by_address: false });
        }
        if self.addresses.blocked(&client, ADDRESS_ATTEMPTS, now_ms) {
            return Err(ApiError::LoginBlocked { by_address: true });
        }
        Ok(())
    }

    /// Refuses a login that names no user (`{resume}`) from this address while it is blocked.
    pub fn check_address(&self, client: IpAddr, now_ms: i64) -> Result<(), ApiError> {
        if self.addresses.blocked(&client, ADDRESS_ATTEMPTS, now_ms) {
            return Err(ApiError::LoginBlocked { by_address: true });
        }
        Ok(())
    }

    /// Counts a failed login that names no user against its address only.
    pub fn failed_address(&self, client: IpAddr, now_ms: i64) {
        self.addresses.fail(client, now_ms);
    }

    pub fn failed(&self, login: &str, client: IpAddr, now_ms: i64) {
        self.users.fail(login.to_lowercase(), now_ms);
        self.addresses.fail(client, now_ms);
    }

    pub fn succeeded(&self, login: &str) {
        self.users.clear(&login.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_user_is_blocked_after_ten_failures_until_the_time_passes() {
        let guard = LoginGuard::default();
        for i in 0..USER_ATTEMPTS {
            assert!(guard.check("Jane", IP, i64::from(i)).is_ok());
            guard.failed("Jane", IP, i64::from(i));
        }
        assert!(matches!(
            guard.check("jane", IP, 100),
            Err(ApiError::LoginBlocked { by_address: false })
        ));
        assert!(guard.check("other", IP, 100).is_ok());
        assert!(guard.check("jane", IP, 9 + BLOCK_MS).is_ok());
    }

    #[test]
    fn success_clears_the_users_count() {
        let guard = LoginGuard::default();
        for i in 0..USER_ATTEMPTS - 1 {
            guard.failed("jane", IP, i64::from(i));
        }
        guard.succeeded("jane");
        guard.failed("jane", IP, 20);
        assert!(guard.check("jane", IP, 21).is_ok());
    }

    #[test]
    fn an_address_is_blocked_after_fifty_failures() {
        let guard = LoginGuard::default();
        for i in 0..ADDRESS_ATTEMPTS {
            guard.failed(&format!("user{i}"), IP, 0);
        }
        assert!(matches!(
            guard.check("fresh", IP, 1),
            Err(ApiError::LoginBlocked { by_address: true })
        ));
    }
}
