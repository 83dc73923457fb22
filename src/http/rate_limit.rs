//! Rocket.Chat's API rate limiter: per route, method and client address, fixed windows that
//! start with the first call. Callers holding `api-bypass-rate-limit` are never limited and get
//! no headers; others get `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch ms), and a 429
//! once the window's calls are spent.
//!
//! Rocket.Chat applies the limiter after authentication, permission and parameter checks, so
//! it is the last of a route's checks (`guard::check`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};

use super::AppState;
use super::error::ApiError;
use crate::access::Caller;
use crate::config::Settings;
use crate::domain::permission;
use crate::domain::time::now_ms;

/// Past this many tracked windows, expired ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    route: String,
    method: Method,
    client: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    calls: u32,
}

/// The outcome of counting one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub limit: u32,
    pub remaining: u32,
    /// When the window ends, epoch ms.
    pub reset_ms: i64,
    pub allowed: bool,
}

#[derive(Debug)]
pub struct RateLimiter {
    calls: u32,
    window_ms: i64,
    windows: Mutex<HashMap<Key, Window>>,
}

impl RateLimiter {
    /// The limiter the settings ask for; `None` when it is turned off.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        (settings.rate_limit_calls > 0 && settings.rate_limit_window_ms > 0).then(|| RateLimiter {
            calls: settings.rate_limit_calls,
            window_ms: i64::try_from(settings.rate_limit_window_ms).unwrap_or(i64::MAX),
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a call at `now_ms`.
    fn count(&self, key: Key, now_ms: i64) -> Count {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            let window_ms = self.window_ms;
            windows.retain(|_, w| now_ms < w.start_ms.saturating_add(window_ms));
        }
        let window = windows.entry(key).or_insert(Window {
            start_ms: now_ms,
            calls: 0,
        });
        if now_ms >= window.start_ms.saturating_add(self.window_ms) {
            *window = Window {
                start_ms: now_ms,
                calls: 0,
            };
        }
        window.calls = window.calls.saturating_add(1);
        Count {
            limit: self.calls,
            remaining: self.calls.saturating_sub(window.calls),
            reset_ms: window.start_ms.saturating_add(self.window_ms),
            allowed: window.calls <= self.calls,
        }
    }
}

/// Puts the rate-limit headers of a counted call on its answer.
pub fn write_headers(count: Count, headers: &mut axum::http::HeaderMap) {
    for (name, value) in [
        ("x-ratelimit-limit", i64::from(count.limit)),
        ("x-ratelimit-remaining", i64::from(count.remaining)),
        ("x-ratelimit-reset", count.reset_ms),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

/// Counts the call against the limiter, unless the caller may bypass it. The count goes to the
/// front layer for the answer's headers (`observe::set_rate_limit`).
pub async fn enforce(
    parts: &Parts,
    caller: Option<&Caller>,
    state: &AppState,
) -> Result<(), ApiError> {
    let Some(limiter) = state.limiter.as_deref() else {
        return Ok(());
    };
    if let Some(caller) = caller
        && state
            .access
            .has_permission(caller, permission::BYPASS_RATE_LIMIT)
            .await?
    {
        return Ok(());
    }
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let key = Key {
        route: route.clone(),
        method: parts.method.clone(),
        client: client_address(parts, state.settings.trust_proxy),
    };
    let now = now_ms();
    let count = limiter.count(key, now);
    super::observe::set_rate_limit(count);
    if count.allowed {
        Ok(())
    } else {
        crate::telemetry::rate_limited(&route);
        let left_ms = u64::try_from(count.reset_ms - now).unwrap_or(0);
        Err(ApiError::TooManyRequests {
            wait_seconds: left_ms.div_ceil(1000),
        })
    }
}

/// The client's address: the socket's peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry (the one that proxy added; earlier ones are the client's word).
pub fn client_address(parts: &Parts, trust_proxy: bool) -> IpAddr {
    if trust_proxy
        && let Some(ip) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return ip;
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client's address, as the rate limiter sees it.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ClientAddress(client_address(
            parts,
            state.settings.trust_proxy,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(calls: u32, window_ms: u64) -> RateLimiter {
        let settings = Settings {
            rate_limit_calls: calls,
            rate_limit_window_ms: window_ms,
            ..Settings::default()
        };
        RateLimiter::from_settings(&settings).unwrap()
    }

    fn key(route: &str, ip: [u8; 4]) -> Key {
        Key {
            route: route.into(),
            method: Method::GET,
            client: IpAddr::from(ip),
        }
    }

    #[test]
    fn fixed_windows_start_with_the_first_call() {
        let l = limiter(2, 1000);
        let a = l.count(key("/r", [1, 1, 1, 1]), 500);
        assert_eq!((a.remaining, a.reset_ms, a.allowed), (1, 1500, true));
        let b = l.count(key("/r", [1, 1, 1, 1]), 900);
        assert_eq!((b.remaining, b.allowed), (0, true));
        let c = l.count(key("/r", [1, 1, 1, 1]), 1499);
        assert_eq!((c.remaining, c.reset_ms, c.allowed), (0, 1500, false));
        let d = l.count(key("/r", [1, 1, 1, 1]), 1500);
        assert_eq!((d.remaining, d.reset_ms, d.allowed), (1, 2500, true));
    }

    #[test]
    fn routes_methods_and_clients_count_apart() {
        let l = limiter(1, 1000);
        assert!(l.count(key("/a", [1, 1, 1, 1]), 0).allowed);
        assert!(l.count(key("/b", [1, 1, 1, 1]), 0).allowed);
        assert!(l.count(key("/a", [2, 2, 2, 2]), 0).allowed);
        let mut post = key("/a", [1, 1, 1, 1]);
        post.method = Method::POST;
        assert!(l.count(post, 0).allowed);
        assert!(!l.count(key("/a", [1, 1, 1, 1]), 0).allowed);
    }

    #[test]
    fn zero_turns_it_off() {
        let off = Settings {
            rate_limit_calls: 0,
            ..Settings::default()
        };
        assert!(RateLimiter::from_settings(&off).is_none());
        let off = Settings {
            rate_limit_window_ms: 0,
            ..Settings::default()
        };
        assert!(RateLimiter::from_settings(&off).is_none());
    }
}
