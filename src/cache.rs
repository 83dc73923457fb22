//! Answers kept in memory so that the common request never reaches the database: the
//! serialized latest-operations array, authenticated sessions, and permissions' roles.
//!
//! Everything cached belongs to one *generation*, stamped with the store's count of local
//! writes and the number of changes the watcher has seen in the database. A request whose
//! stamp differs from the generation's starts a new, empty one. So a write through this process
//! is seen by the very next request, and a write by any other process (the command line on the
//! same SQLite file, another replica on the same Postgres) within one watch interval. While the
//! watcher cannot reach the database nothing is cached, so faults surface as they happen.
//! Expiry is checked on every request, so an expired token is refused from the moment it
//! expires.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::access::Caller;
use crate::config::ChangeDetection;
use crate::store::{Observation, Store};

/// How often the database is polled for commits by other processes (SQLite, and Postgres in
/// `poll` mode; in `notify` mode Postgres pushes them).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// More sessions than this and the session cache starts over: a bound on memory.
const MAX_SESSIONS: usize = 100_000;

/// More remembered failed lookups than this and they start over: a bound on memory (about
/// 40 bytes each) that a flood of wrong tokens cannot raise.
const MAX_MISSES: usize = 50_000;

/// Which generation a request belongs to: (local writes, database changes seen).
type Stamp = (u64, u64);

/// A session that authenticated, and until when it does.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub user_id: String,
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

#[derive(Default)]
struct Generation {
    stamp: Stamp,
    latest: Option<Bytes>,
    /// By sha256 of the token.
    sessions: HashMap<[u8; 32], Arc<CachedSession>, DigestHash>,
    permissions: HashMap<String, Arc<[String]>>,
    /// (token digest, hash of the user id) pairs that did not authenticate. Any write starts a
    /// new generation without them, so a token issued through this process works at once and
    /// one issued elsewhere within the watcher's bound.
    misses: std::collections::HashSet<([u8; 32], u64), DigestHash>,
}

pub struct Cache {
    store: Store,
    /// Changes the watcher has seen in the database.
    remote_changes: AtomicU64,
    /// False while the watcher cannot reach the database: nothing is cached then.
    watching: AtomicBool,
    generation: RwLock<Generation>,
}

impl Cache {
    /// A cache over `store`, with a watcher task that runs as long as the cache lives. Must be
    /// called inside a Tokio runtime.
    pub fn new(store: Store, detection: ChangeDetection) -> Arc<Self> {
        let cache = Arc::new(Cache {
            store: store.clone(),
            remote_changes: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            generation: RwLock::new(Generation::default()),
        });
        tokio::spawn(watch(store, detection, Arc::downgrade(&cache)));
        cache
    }

    /// The stamp a request reads under; `None` when nothing may be cached.
    pub fn stamp(&self) -> Option<Stamp> {
        self.watching.load(Ordering::Acquire).then(|| {
            (
                self.store.local_writes(),
                self.remote_changes.load(Ordering::Acquire),
            )
        })
    }

    fn read<T>(&self, stamp: Stamp, f: impl FnOnce(&Generation) -> Option<T>) -> Option<T> {
        let generation = self.generation.read().unwrap_or_else(|e| e.into_inner());
        if generation.stamp == stamp {
            f(&generation)
        } else {
            None
        }
    }

    /// Stores into the generation of `stamp`, read before the database was: if the data changed
    /// since, the current stamp differs and nothing is stored.
    fn write(&self, stamp: Stamp, f: impl FnOnce(&mut Generation)) {
        if self.stamp() != Some(stamp) {
            return;
        }
        let mut generation = self.generation.write().unwrap_or_else(|e| e.into_inner());
        if generation.stamp != stamp {
            *generation = Generation {
                stamp,
                ..Generation::default()
            };
        }
        f(&mut generation);
    }

    pub fn latest(&self, stamp: Stamp) -> Option<Bytes> {
        self.read(stamp, |g| g.latest.clone())
    }

    pub fn put_latest(&self, stamp: Stamp, body: Bytes) {
        self.write(stamp, |g| g.latest = Some(body));
    }

    pub fn session(&self, stamp: Stamp, token_digest: &[u8; 32]) -> Option<Arc<CachedSession>> {
        self.read(stamp, |g| g.sessions.get(token_digest).cloned())
    }

    pub fn put_session(&self, stamp: Stamp, token_digest: [u8; 32], session: CachedSession) {
        self.write(stamp, |g| {
            if g.sessions.len() >= MAX_SESSIONS {
                g.sessions.clear();
            }
            g.sessions.insert(token_digest, Arc::new(session));
        });
    }

    /// Whether this user id and token failed to authenticate in this generation.
    pub fn known_miss(&self, stamp: Stamp, token_digest: &[u8; 32], user_id: &str) -> bool {
        let key = (*token_digest, user_hash(user_id));
        self.read(stamp, |g| g.misses.contains(&key).then_some(()))
            .is_some()
    }

    pub fn put_miss(&self, stamp: Stamp, token_digest: [u8; 32], user_id: &str) {
        self.write(stamp, |g| {
            if g.misses.len() >= MAX_MISSES {
                g.misses.clear();
            }
            g.misses.insert((token_digest, user_hash(user_id)));
        });
    }

    pub fn permission(&self, stamp: Stamp, id: &str) -> Option<Arc<[String]>> {
        self.read(stamp, |g| g.permissions.get(id).cloned())
    }

    pub fn put_permission(&self, stamp: Stamp, id: &str, roles: Arc<[String]>) {
        self.write(stamp, |g| {
            g.permissions.insert(id.to_owned(), roles);
        });
    }
}

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
                Observation::Changed => {
                    cache.remote_changes.fetch_add(1, Ordering::AcqRel);
                    cache.watching.store(true, Ordering::Release);
                }
                Observation::Unreachable => {
                    cache.watching.store(false, Ordering::Release);
                    cache.remote_changes.fetch_add(1, Ordering::AcqRel);
                }
            }
            ControlFlow::Continue(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_lookup_is_remembered_for_its_generation_only() {
        let store = Store::connect_lazy("sqlite::memory:").unwrap();
        let cache = Cache::new(store, ChangeDetection::Notify);
        // The watcher's first look marks the cache live.
        let stamp = loop {
            if let Some(stamp) = cache.stamp() {
                break stamp;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let digest = [7u8; 32];
        assert!(!cache.known_miss(stamp, &digest, "u1"));
        cache.put_miss(stamp, digest, "u1");
        assert!(cache.known_miss(stamp, &digest, "u1"));
        assert!(!cache.known_miss(stamp, &digest, "u2"), "another user id");
        assert!(!cache.known_miss(stamp, &[8u8; 32], "u1"), "another token");
        let next = (stamp.0 + 1, stamp.1);
        assert!(!cache.known_miss(next, &digest, "u1"), "another generation");
    }
}
