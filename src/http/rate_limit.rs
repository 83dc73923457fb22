//! Rocket.Chat's API rate limiter, as Meteor's `RateLimiter` keeps it
//! (docs/compatibility.md#5-rate-limiter): one rule per route and method, whose one window is
//! shared by every client. The window starts when the limiter is made and restarts lazily, at
//! the first call that comes more than the interval after the last restart, which clears every
//! client's counter; within a window each client address has its own counter. So every client
//! of a route sees the same `X-RateLimit-Reset`. Callers holding `api-bypass-rate-limit` are
//! never limited and get no headers; others get `X-RateLimit-Limit`, `-Remaining` and `-Reset`
//! (epoch ms), and a 429 once their calls of the window are spent.
//!
//! Rocket.Chat applies the limiter after authentication, permission and parameter checks, so
//! it is the last of a route's checks (`guard::check`).
//!
//! Memory is bounded: at most [`MAX_RULES`] rules, holding at most [`MAX_COUNTERS`] client
//! counters between them (about 50 bytes each); past that, the clients new to a window share
//! one counter (and routes past the bound one rule). Up to the bound the semantics are
//! Rocket.Chat's exactly, whatever the number of clients. Each call costs one hash lookup in
//! its rule and an atomic count; a restart swaps the rule's counters for an empty map (and
//! gives their number back) instead of visiting them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};

use super::AppState;
use super::error::ApiError;
use crate::access::Caller;
use crate::config::Settings;
use crate::domain::permission;
use crate::domain::time::now_ms;

/// The most client counters all rules keep at once: 100 000 clients on a few routes fit.
pub const MAX_COUNTERS: usize = 500_000;
/// The most rules (routes and methods) the limiter keeps; the router declares far fewer.
pub const MAX_RULES: usize = 256;

/// The rules of one route, by method.
type RouteRules = Vec<(Method, Arc<Mutex<Rule>>)>;

/// One rule's window and the counters of its clients.
#[derive(Debug)]
struct Rule {
    /// When the window last (re)started, epoch ms.
    last_reset_ms: i64,
    counters: HashMap<IpAddr, u32>,
    /// The calls of clients that came once `counters` was full, counted together.
    overflow: u32,
}

impl Rule {
    fn new(started_ms: i64) -> Self {
        Rule {
            last_reset_ms: started_ms,
            counters: HashMap::new(),
            overflow: 0,
        }
    }
}

/// The outcome of counting one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub limit: u32,
    pub remaining: u32,
    /// When the rule's window ends, epoch ms: the same for every client of the route.
    pub reset_ms: i64,
    pub allowed: bool,
}

#[derive(Debug)]
pub struct RateLimiter {
    calls: u32,
    window_ms: i64,
    /// When the limiter was made: every rule's first window starts then, as Rocket.Chat's
    /// rules are made when its routes are.
    made_ms: i64,
    max_counters: usize,
    /// The client counters all rules hold now.
    counters_held: AtomicUsize,
    /// The rules by route, then method; how many there are in all.
    rules: RwLock<(HashMap<String, RouteRules>, usize)>,
    /// The rule of routes past [`MAX_RULES`].
    overflow_rule: Mutex<Rule>,
}

impl RateLimiter {
    /// The limiter the settings ask for; `None` when it is turned off.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        (settings.rate_limit_calls > 0 && settings.rate_limit_window_ms > 0).then(|| {
            RateLimiter::new(
                settings.rate_limit_calls,
                i64::try_from(settings.rate_limit_window_ms).unwrap_or(i64::MAX),
                now_ms(),
                MAX_COUNTERS,
            )
        })
    }

    fn new(calls: u32, window_ms: i64, made_ms: i64, max_counters: usize) -> Self {
        RateLimiter {
            calls,
            window_ms,
            made_ms,
            max_counters,
            counters_held: AtomicUsize::new(0),
            rules: RwLock::new((HashMap::new(), 0)),
            overflow_rule: Mutex::new(Rule::new(made_ms)),
        }
    }

    /// Counts a call of `client` to `route` at `now_ms`.
    fn count(&self, route: &str, method: &Method, client: IpAddr, now_ms: i64) -> Count {
        let find = |rules: &HashMap<String, RouteRules>| {
            rules.get(route).and_then(|by_method| {
                by_method
                    .iter()
                    .find(|(m, _)| m == method)
                    .map(|(_, rule)| Arc::clone(rule))
            })
        };
        let found = find(&self.rules.read().unwrap_or_else(|e| e.into_inner()).0);
        let rule = found.or_else(|| {
            let mut guard = self.rules.write().unwrap_or_else(|e| e.into_inner());
            if let Some(rule) = find(&guard.0) {
                return Some(rule);
            }
            let (rules, made) = &mut *guard;
            if *made >= MAX_RULES {
                return None;
            }
            *made += 1;
            let rule = Arc::new(Mutex::new(Rule::new(self.made_ms)));
            rules
                .entry(route.to_owned())
                .or_default()
                .push((method.clone(), Arc::clone(&rule)));
            Some(rule)
        });
        let mut rule = match &rule {
            Some(rule) => rule.lock(),
            None => self.overflow_rule.lock(),
        }
        .unwrap_or_else(|e| e.into_inner());
        self.count_in(&mut rule, client, now_ms)
    }

    /// Meteor's `increment` then `check` on one rule.
    fn count_in(&self, rule: &mut Rule, client: IpAddr, now_ms: i64) -> Count {
        if now_ms.saturating_sub(rule.last_reset_ms) > self.window_ms {
            // The window restarts now, and every client's counter with it.
            let old = std::mem::replace(rule, Rule::new(now_ms));
            self.counters_held
                .fetch_sub(old.counters.len(), Ordering::Relaxed);
        }
        let calls = match rule.counters.get_mut(&client) {
            Some(calls) => calls,
            None if self.counters_held.load(Ordering::Relaxed) >= self.max_counters => {
                &mut rule.overflow
            }
            None => {
                self.counters_held.fetch_add(1, Ordering::Relaxed);
                rule.counters.entry(client).or_insert(0)
            }
        };
        *calls = calls.saturating_add(1);
        let allowed = *calls <= self.calls;
        Count {
            limit: self.calls,
            remaining: if allowed { self.calls - *calls } else { 0 },
            reset_ms: rule.last_reset_ms.saturating_add(self.window_ms),
            allowed,
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
    let client = client_address(parts, state.settings.trust_proxy);
    let now = now_ms();
    let count = limiter.count(&route, &parts.method, client, now);
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

    fn limiter(calls: u32, window_ms: i64) -> RateLimiter {
        RateLimiter::new(calls, window_ms, 0, MAX_COUNTERS)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn get(l: &RateLimiter, route: &str, client: IpAddr, now: i64) -> Count {
        l.count(route, &Method::GET, client, now)
    }

    #[test]
    fn one_window_per_route_from_when_the_limiter_is_made() {
        let l = limiter(2, 1000);
        let a = get(&l, "/r", ip(1), 500);
        assert_eq!((a.remaining, a.reset_ms, a.allowed), (1, 1000, true));
        // Another client: its own counter, the same window.
        let b = get(&l, "/r", ip(2), 700);
        assert_eq!((b.remaining, b.reset_ms, b.allowed), (1, 1000, true));
        assert_eq!(get(&l, "/r", ip(1), 900).remaining, 0);
        let c = get(&l, "/r", ip(1), 950);
        assert_eq!((c.remaining, c.reset_ms, c.allowed), (0, 1000, false));
        // At the interval itself the window has not restarted yet (Meteor restarts past it).
        let d = get(&l, "/r", ip(1), 1000);
        assert_eq!((d.reset_ms, d.allowed), (1000, false));
        // The first call past it restarts the window, clearing every client's counter.
        let e = get(&l, "/r", ip(1), 1001);
        assert_eq!((e.remaining, e.reset_ms, e.allowed), (1, 2001, true));
        let f = get(&l, "/r", ip(2), 1500);
        assert_eq!((f.remaining, f.reset_ms, f.allowed), (1, 2001, true));
    }

    #[test]
    fn a_late_first_call_starts_the_window() {
        let l = limiter(2, 1000);
        let a = get(&l, "/r", ip(1), 5000);
        assert_eq!((a.remaining, a.reset_ms), (1, 6000));
        assert_eq!(get(&l, "/r", ip(2), 5999).reset_ms, 6000);
    }

    #[test]
    fn routes_methods_and_clients_count_apart() {
        let l = limiter(1, 1000);
        assert!(get(&l, "/a", ip(1), 0).allowed);
        assert!(get(&l, "/b", ip(1), 0).allowed);
        assert!(get(&l, "/a", ip(2), 0).allowed);
        assert!(l.count("/a", &Method::POST, ip(1), 0).allowed);
        assert!(!get(&l, "/a", ip(1), 0).allowed);
        // Each route's window restarts on its own.
        assert_eq!(get(&l, "/b", ip(1), 1500).reset_ms, 2500);
        assert_eq!(get(&l, "/a", ip(3), 1200).reset_ms, 2200);
    }

    #[test]
    fn clients_past_the_bound_share_one_counter_until_the_window_restarts() {
        let l = RateLimiter::new(2, 1000, 0, 2);
        assert!(get(&l, "/r", ip(1), 0).allowed);
        assert!(get(&l, "/r", ip(2), 0).allowed);
        // The third and fourth clients share the overflow counter.
        assert_eq!(get(&l, "/r", ip(3), 0).remaining, 1);
        assert_eq!(get(&l, "/r", ip(4), 0).remaining, 0);
        assert!(!get(&l, "/r", ip(3), 0).allowed);
        // Known clients keep their own.
        assert_eq!(get(&l, "/r", ip(1), 0).remaining, 0);
        // A new window starts empty.
        assert_eq!(get(&l, "/r", ip(3), 1001).remaining, 1);
        assert_eq!(get(&l, "/r", ip(4), 1001).remaining, 1);
    }

    #[test]
    fn the_bound_is_on_all_rules_together_and_a_restart_gives_counters_back() {
        let l = RateLimiter::new(1, 1000, 0, 3);
        assert!(get(&l, "/a", ip(1), 0).allowed);
        assert!(get(&l, "/a", ip(2), 0).allowed);
        assert!(get(&l, "/b", ip(1), 0).allowed);
        // Three held: a new client of /b shares the overflow counter.
        assert!(get(&l, "/b", ip(2), 0).allowed);
        assert!(!get(&l, "/b", ip(3), 0).allowed);
        // /a's window restarts: its two counters are free for /b's clients again.
        assert!(get(&l, "/a", ip(9), 1001).allowed);
        assert_eq!(l.counters_held.load(Ordering::Relaxed), 2);
        assert!(get(&l, "/b", ip(4), 0).allowed);
        assert!(!get(&l, "/b", ip(4), 0).allowed, "its own counter now");
    }

    #[test]
    fn a_hundred_thousand_clients_each_keep_their_own_counter() {
        let l = limiter(1, 60_000);
        for n in 0..100_000u32 {
            let client = IpAddr::from(n.to_be_bytes());
            assert!(get(&l, "/r", client, 0).allowed, "client {n}");
        }
        assert!(!get(&l, "/r", IpAddr::from(7u32.to_be_bytes()), 0).allowed);
    }

    #[test]
    fn routes_past_the_bound_share_one_rule() {
        let l = limiter(1, 1000);
        for n in 0..MAX_RULES {
            assert!(get(&l, &format!("/r{n}"), ip(1), 0).allowed);
        }
        assert!(get(&l, "/extra-1", ip(1), 0).allowed);
        assert!(!get(&l, "/extra-2", ip(1), 0).allowed);
        assert_eq!(l.rules.read().unwrap().1, MAX_RULES);
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
