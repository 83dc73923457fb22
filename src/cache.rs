//! Answers kept in memory so that the common request never reaches the database: the
//! serialized latest-operations array, authenticated sessions (and failed lookups), and
//! permissions' roles.
//!
//! Each part of the cache depends on some kinds of data (`Kinds`): the latest array on
//! operations, permissions on access (users, roles, permissions), sessions and failed lookups
//! on sessions and access. A `Stamp` counts, per kind, this process's writes and the changes
//! the watcher has seen in the database; a part holds what was read under one stamp, and a
//! request whose stamp differs from it on the part's kinds finds that part empty (and starts
//! it over when it stores). So a write through this process is seen by the very next request,
//! one by any other process (the command line on the same SQLite file, another replica on the
//! same Postgres) within one watch interval, and a write to operations leaves sessions and
//! permissions cached. While the watcher cannot reach the database nothing is cached, so
//! faults surface as they happen. Expiry is checked on every request, so an expired token is
//! refused from the moment it expires.

mod clock;

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::access::Caller;
use crate::config::ChangeDetection;
use crate::store::{Kinds, Observation, Store, StoreError};
use clock::Clock;

/// How often the database is polled for commits by other processes (SQLite, and Postgres in
/// `poll` mode; in `notify` mode Postgres pushes them).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Sessions kept at most; past it, the least recently used give way (`Clock`). Enough for
/// 120 000 distinct sessions read in turn to stay cached; about 400 bytes each (the key twice,
/// the caller, its roles), so about 80 MB when full.
pub const MAX_SESSIONS: usize = 200_000;

/// Failed lookups kept at most (about 100 bytes each), evicted the same way: a flood of wrong
/// tokens cannot raise the memory, only push its own older entries out.
const MAX_MISSES: usize = 50_000;

/// Per kind of data, this process's writes plus the changes the watcher has seen: a request
/// reads under the stamp it took before reaching the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp([u64; Kinds::COUNT]);

impl Stamp {
    /// The changes counted for one kind: this process's writes and the others' it learnt of.
    pub fn count(&self, kind: Kinds) -> u64 {
        kind.indices().map(|i| self.0[i]).sum()
    }

    /// Whether nothing of `kinds` changed between the two stamps.
    fn agrees(&self, other: &Stamp, kinds: Kinds) -> bool {
        kinds.indices().all(|i| self.0[i] == other.0[i])
    }
}

/// A session that authenticated, and until when it does.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub caller: Arc<Caller>,
    pub expires_at_ms: Option<i64>,
}

/// Sessions are keyed by a sha256 digest, already uniformly spread: its first eight bytes are a
/// good hash, so the map need not hash it again.
type DigestHash = std::hash::BuildHasherDefault<DigestHasher>;

#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    // The length prefix a slice hashes first adds nothing.
    fn write_usize(&mut self, _: usize) {}
}

/// Authenticated sessions by sha256 of the token. A change to access empties them; a session
/// removed or changed drops that user's (or, when the watcher cannot tell whose, all); a
/// session added drops none.
struct Sessions(Clock<[u8; 32], Arc<CachedSession>, DigestHash>);

impl Default for Sessions {
    fn default() -> Self {
        Sessions(Clock::new(MAX_SESSIONS))
    }
}

/// The (token digest, hash of the user id) pairs that did not authenticate. Any change to
/// sessions or access empties them, a session added too, so a token issued through this
/// process works at once and one issued elsewhere within the watcher's bound.
struct Misses(Clock<([u8; 32], u64), (), DigestHash>);

impl Default for Misses {
    fn default() -> Self {
        Misses(Clock::new(MAX_MISSES))
    }
}

/// One part of the cache: what was read under `stamp`, valid while `kinds` do not change;
/// what was read while `guard` kinds changed is not stored.
struct Part<T> {
    kinds: Kinds,
    guard: Kinds,
    held: RwLock<(Stamp, T)>,
}

impl<T: Default> Part<T> {
    fn new(kinds: Kinds) -> Self {
        Self::guarded(kinds, kinds)
    }

    /// A part emptied by changes to `kinds`, whose entries the changes to the other kinds of
    /// `guard` remove one by one (the caller does): a read that raced such a change stores
    /// nothing.
    fn guarded(kinds: Kinds, guard: Kinds) -> Self {
        Part {
            kinds,
            guard: kinds | guard,
            held: RwLock::new((Stamp::default(), T::default())),
        }
    }

    fn update(&self, f: impl FnOnce(&mut T)) {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        f(&mut held.1);
    }

    fn read<R>(&self, stamp: Stamp, f: impl FnOnce(&T) -> Option<R>) -> Option<R> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        if held.0.agrees(&stamp, self.kinds) {
            f(&held.1)
        } else {
            None
        }
    }

    /// Stores into the part for `stamp`, read before the database was, unless `now` (the
    /// current stamp) says the data changed since.
    fn write(&self, now: Option<Stamp>, stamp: Stamp, f: impl FnOnce(&mut T)) {
        if !now.is_some_and(|now| now.agrees(&stamp, self.guard)) {
            return;
        }
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        if !held.0.agrees(&stamp, self.kinds) {
            *held = (stamp, T::default());
        }
        f(&mut held.1);
    }
}

pub struct Cache {
    store: Store,
    /// Changes the watcher has seen in the database, per kind.
    remote_changes: [AtomicU64; Kinds::COUNT],
    /// False while the watcher cannot reach the database: nothing is cached then.
    watching: AtomicBool,
    latest: Part<Option<Bytes>>,
    /// The database read of the latest array in flight, with the stamp it was started under:
    /// requests that miss under that stamp wait for its answer instead of each asking the
    /// database (after every write, all the requests in flight miss at once).
    latest_flight: Mutex<Option<(Stamp, LatestFlight)>>,
    sessions: Part<Sessions>,
    misses: Part<Misses>,
    permissions: Part<HashMap<String, Arc<[String]>>>,
}

impl Cache {
    /// A cache over `store`, with a watcher task that runs as long as the cache lives. Must be
    /// called inside a Tokio runtime.
    pub fn new(store: Store, detection: ChangeDetection) -> Arc<Self> {
        let cache = Arc::new(Cache {
            store: store.clone(),
            remote_changes: Default::default(),
            watching: AtomicBool::new(false),
            latest: Part::new(Kinds::OPERATIONS),
            latest_flight: Mutex::new(None),
            sessions: Part::guarded(Kinds::ACCESS, Kinds::SESSIONS),
            misses: Part::new(Kinds::SESSIONS | Kinds::ACCESS | Kinds::ADDED),
            permissions: Part::new(Kinds::ACCESS),
        });
        let weak = Arc::downgrade(&cache);
        store.on_sessions_removed(move |user_id| match weak.upgrade() {
            Some(cache) => {
                cache.drop_sessions(user_id);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(()),
        });
        tokio::spawn(watch(store, detection, Arc::downgrade(&cache)));
        cache
    }

    /// Drops the cached sessions of one user (by id), or all. Called after the change was
    /// counted, so a read that raced it stores nothing (the part's guard).
    fn drop_sessions(&self, user_id: Option<&str>) {
        self.sessions.update(|s| match user_id {
            Some(id) => s.0.retain(|cached| cached.caller.user_id != id),
            None => s.0.retain(|_| false),
        });
    }

    /// The stamp a request reads under; `None` when nothing may be cached.
    pub fn stamp(&self) -> Option<Stamp> {
        self.watching.load(Ordering::Acquire).then(|| {
            Stamp(std::array::from_fn(|i| {
                self.store.local_writes(Kinds::EACH[i])
                    + self.remote_changes[i].load(Ordering::Acquire)
            }))
        })
    }

    fn count_remote(&self, kinds: Kinds) {
        for i in kinds.indices() {
            self.remote_changes[i].fetch_add(1, Ordering::AcqRel);
        }
    }

    pub fn latest(&self, stamp: Stamp) -> Option<Bytes> {
        self.latest.read(stamp, |latest| latest.clone())
    }

    pub fn put_latest(&self, stamp: Stamp, body: Bytes) {
        self.latest
            .write(self.stamp(), stamp, |latest| *latest = Some(body));
    }

    /// The latest array read by `fetch`, once for all the requests that miss under one stamp:
    /// the first starts the read and caches its answer, the others wait for it. When that read
    /// fails or its request goes away, each waiter reads for itself (so a fault is reported to
    /// every request, each within the store's own bounds).
    pub async fn latest_or_fetch<F, Fut>(&self, stamp: Stamp, fetch: F) -> Result<Bytes, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, StoreError>>,
    {
        let (waiting, sender) = {
            let mut flight = self.latest_flight.lock().unwrap_or_else(|e| e.into_inner());
            match &*flight {
                Some((started, answer)) if started.agrees(&stamp, self.latest.kinds) => {
                    (Some(answer.clone()), None)
                }
                _ => {
                    let (sender, answer) = tokio::sync::watch::channel(None);
                    *flight = Some((stamp, answer));
                    (None, Some(sender))
                }
            }
        };
        if let Some(mut answer) = waiting {
            let shared = answer
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|done| done.clone().flatten());
            return match shared {
                Some(body) => Ok(body),
                None => fetch().await,
            };
        }
        let result = fetch().await;
        if let Ok(body) = &result {
            self.put_latest(stamp, body.clone());
        }
        if let Some(sender) = sender {
            sender.send_replace(Some(result.as_ref().ok().cloned()));
        }
        result
    }

    pub fn session(&self, stamp: Stamp, token_digest: &[u8; 32]) -> Option<Arc<CachedSession>> {
        self.sessions
            .read(stamp, |s| s.0.get(token_digest).cloned())
    }

    pub fn put_session(&self, stamp: Stamp, token_digest: [u8; 32], session: CachedSession) {
        self.sessions.write(self.stamp(), stamp, |s| {
            s.0.insert(token_digest, Arc::new(session));
        });
    }

    /// Whether this user id and token failed to authenticate since sessions and access last
    /// changed (a session added included).
    pub fn known_miss(&self, stamp: Stamp, token_digest: &[u8; 32], user_id: &str) -> bool {
        let key = (*token_digest, user_hash(user_id));
        self.misses
            .read(stamp, |m| m.0.get(&key).copied())
            .is_some()
    }

    pub fn put_miss(&self, stamp: Stamp, token_digest: [u8; 32], user_id: &str) {
        self.misses.write(self.stamp(), stamp, |m| {
            m.0.insert((token_digest, user_hash(user_id)), ());
        });
    }

    pub fn permission(&self, stamp: Stamp, id: &str) -> Option<Arc<[String]>> {
        self.permissions.read(stamp, |p| p.get(id).cloned())
    }

    pub fn put_permission(&self, stamp: Stamp, id: &str, roles: Arc<[String]>) {
        self.permissions.write(self.stamp(), stamp, |p| {
            p.insert(id.to_owned(), roles);
        });
    }
}

/// The answer of a read of the latest array in flight: `None` until it is done, then the body,
/// or `None` inside when it failed.
type LatestFlight = tokio::sync::watch::Receiver<Option<Option<Bytes>>>;

/// The user id's share of a failed lookup's key: any good 64-bit hash, since the token digest
/// is already unique per token.
fn user_hash(user_id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write(user_id.as_bytes());
    h.finish()
}

/// Feeds the database's change observations into the cache until the cache is dropped.
async fn watch(store: Store, detection: ChangeDetection, cache: Weak<Cache>) {
    store
        .watch_changes(detection, WATCH_INTERVAL, |observation| {
            let Some(cache) = cache.upgrade() else {
                return ControlFlow::Break(());
            };
            match observation {
                Observation::Unchanged => {}
                Observation::Changed(kinds) => {
                    cache.count_remote(kinds);
                    if kinds.contains(Kinds::OPERATIONS) {
                        store.operations_changed_elsewhere();
                    }
                    if kinds.indices().any(|i| Kinds::EACH[i] == Kinds::SESSIONS) {
                        cache.drop_sessions(None);
                    }
                    cache.watching.store(true, Ordering::Release);
                }
                Observation::SessionsOf(user_id) => {
                    cache.count_remote(Kinds::SESSIONS);
                    cache.drop_sessions(Some(&user_id));
                }
                Observation::Unreachable => {
                    cache.watching.store(false, Ordering::Release);
                    cache.count_remote(Kinds::ALL);
                }
            }
            ControlFlow::Continue(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache over an empty SQLite file, live (the watcher took its first look).
    async fn live_cache() -> (Arc<Cache>, Stamp, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("cache.db").display());
        let store = Store::open(&url).await.unwrap();
        let cache = Cache::new(store, ChangeDetection::Notify);
        let stamp = loop {
            if let Some(stamp) = cache.stamp() {
                break stamp;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        (cache, stamp, dir)
    }

    fn bumped(stamp: Stamp, kinds: Kinds) -> Stamp {
        let mut next = stamp;
        for i in kinds.indices() {
            next.0[i] += 1;
        }
        next
    }

    #[tokio::test]
    async fn a_failed_lookup_is_remembered_until_sessions_or_access_change_or_a_session_is_added() {
        let (cache, stamp, _dir) = live_cache().await;
        let digest = [7u8; 32];
        assert!(!cache.known_miss(stamp, &digest, "u1"));
        cache.put_miss(stamp, digest, "u1");
        assert!(cache.known_miss(stamp, &digest, "u1"));
        assert!(!cache.known_miss(stamp, &digest, "u2"), "another user id");
        assert!(!cache.known_miss(stamp, &[8u8; 32], "u1"), "another token");
        let operations = bumped(stamp, Kinds::OPERATIONS);
        assert!(cache.known_miss(operations, &digest, "u1"), "operations");
        for kinds in [Kinds::SESSIONS, Kinds::ACCESS, Kinds::ADDED] {
            let next = bumped(stamp, kinds);
            assert!(!cache.known_miss(next, &digest, "u1"), "{kinds:?}");
        }
    }

    #[tokio::test]
    async fn each_part_is_emptied_by_the_kinds_it_depends_on_only() {
        let (cache, stamp, _dir) = live_cache().await;
        let caller = Arc::new(Caller::new("u".into(), "u".into(), vec![]));
        let session = CachedSession {
            caller,
            expires_at_ms: None,
        };
        cache.put_session(stamp, [1; 32], session);
        cache.put_permission(stamp, "p", Arc::from(vec!["admin".to_owned()]));
        cache.put_latest(stamp, Bytes::from_static(b"[]"));
        let parts = |s: Stamp| {
            [
                cache.latest(s).is_some(),
                cache.session(s, &[1; 32]).is_some(),
                cache.permission(s, "p").is_some(),
            ]
        };
        assert_eq!(parts(stamp), [true, true, true]);
        assert_eq!(parts(bumped(stamp, Kinds::OPERATIONS)), [false, true, true]);
        // Sessions removed are dropped by user (`drop_sessions`), not by the stamp.
        assert_eq!(parts(bumped(stamp, Kinds::SESSIONS)), [true, true, true]);
        assert_eq!(parts(bumped(stamp, Kinds::ACCESS)), [true, false, false]);
        // A login elsewhere leaves every cached session cached.
        assert_eq!(parts(bumped(stamp, Kinds::ADDED)), [true, true, true]);
    }

    #[tokio::test]
    async fn requests_that_miss_together_read_the_latest_array_once() {
        let (cache, stamp, _dir) = live_cache().await;
        let reads = Arc::new(AtomicU64::new(0));
        // `n` requests missing under `stamp` at once, with a read that takes 50 ms.
        let miss_together = |n: usize, stamp: Stamp, fail: bool| {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let (cache, reads) = (cache.clone(), reads.clone());
                set.spawn(async move {
                    let fetch = || async move {
                        reads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if fail {
                            Err(StoreError::Corrupt("read failed".into()))
                        } else {
                            Ok(Bytes::from_static(b"[1]"))
                        }
                    };
                    cache.latest_or_fetch(stamp, fetch).await.ok()
                });
            }
            set.join_all()
        };
        let answers = miss_together(16, stamp, false).await;
        assert!(answers.iter().all(|a| a.as_deref() == Some(&b"[1]"[..])));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.latest(stamp).as_deref(), Some(&b"[1]"[..]));

        // A newer stamp reads again; when that read fails, each waiter reads for itself.
        cache.count_remote(Kinds::OPERATIONS);
        let next = cache.stamp().unwrap();
        reads.store(0, Ordering::SeqCst);
        let answers = miss_together(4, next, true).await;
        assert!(answers.iter().all(Option::is_none));
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn sessions_removed_drop_that_user_only_and_a_racing_read_stores_nothing() {
        let (cache, stamp, _dir) = live_cache().await;
        let session = |user: &str| CachedSession {
            caller: Arc::new(Caller::new(user.into(), user.into(), vec![])),
            expires_at_ms: None,
        };
        cache.put_session(stamp, [1; 32], session("u"));
        cache.put_session(stamp, [2; 32], session("u"));
        cache.put_session(stamp, [3; 32], session("v"));
        // Another process removed sessions of u: counted, then dropped.
        cache.count_remote(Kinds::SESSIONS);
        cache.drop_sessions(Some("u"));
        let now = cache.stamp().unwrap();
        let cached = |d: u8| cache.session(now, &[d; 32]).is_some();
        assert_eq!([cached(1), cached(2), cached(3)], [false, false, true]);
        // A read of u's session that began before the removal stores nothing.
        cache.put_session(stamp, [1; 32], session("u"));
        assert!(!cached(1));
        // One that began after does.
        cache.put_session(now, [1; 32], session("u"));
        assert!(cached(1));
        // When whose is not known, all go.
        cache.drop_sessions(None);
        assert_eq!([cached(1), cached(2), cached(3)], [false, false, false]);
    }

    #[tokio::test]
    async fn a_stamp_older_than_the_data_stores_nothing() {
        let (cache, stamp, _dir) = live_cache().await;
        cache.count_remote(Kinds::OPERATIONS);
        cache.put_latest(stamp, Bytes::from_static(b"[]"));
        let now = cache.stamp().unwrap();
        assert!(cache.latest(stamp).is_none() && cache.latest(now).is_none());
        // Another kind's change does not stop it.
        cache.put_permission(stamp, "p", Arc::from(vec![]));
        assert!(cache.permission(now, "p").is_some());
    }
}
