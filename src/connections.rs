//! Open connections, kept under the process's descriptor limit. Each connection is either
//! waiting (for its request line and headers, or for its body) or busy (its request is being
//! answered). When a new connection would pass the limit, the one that has been waiting
//! longest is closed to make room, so clients that open connections and stall cannot lock
//! the others out (RELIABILITY.md, "stalled bodies"). Only when every connection is busy is
//! the new one closed instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// Descriptors kept for the database pool, the SQLite files, the change watcher, the metrics
/// listener and the log, besides the connections.
pub const RESERVED_DESCRIPTORS: usize = 128;
/// `waiting_since` of a busy connection.
const BUSY: u64 = u64::MAX;

/// The most connections to keep open: `configured`, or when 0 the soft descriptor limit
/// less [`RESERVED_DESCRIPTORS`].
pub fn limit(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let descriptors = descriptor_limit().unwrap_or(1024);
    descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(16)
}

/// The soft `RLIMIT_NOFILE`, from `/proc/self/limits` (None where there is no such file).
fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&limits)
}

fn parse_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    // "unlimited" is as good as no limit.
    Some(soft.parse().unwrap_or(usize::MAX))
}

#[derive(Debug)]
struct Conn {
    /// Milliseconds since the registry began when it started waiting, or [`BUSY`].
    waiting_since: AtomicU64,
    /// Long-lived answers (event streams, WebSockets) in progress: busy while any is.
    holds: AtomicUsize,
    shed: Notify,
}

/// The registry of open connections.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    began: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Connections {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Connections {
            limit: limit.max(1),
            began: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(BUSY - 1)
    }

    /// Registers a new connection, waiting for its first request. At the limit, the one
    /// waiting longest is told to close first; `None` when all are busy (close the new one).
    pub fn open(self: &Arc<Self>) -> Option<Registration> {
        let mut open = self.lock();
        if open.len() >= self.limit {
            let oldest = open
                .iter()
                .filter_map(|(id, c)| {
                    let since = c.waiting_since.load(Ordering::Relaxed);
                    (since != BUSY).then_some((since, *id))
                })
                .min()?;
            if let Some(shed) = open.remove(&oldest.1) {
                shed.shed.notify_one();
                crate::telemetry::connection_shed();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            waiting_since: AtomicU64::new(self.now()),
            holds: AtomicUsize::new(0),
            shed: Notify::new(),
        });
        open.insert(id, Arc::clone(&conn));
        Some(Registration {
            id,
            activity: Activity {
                conn,
                registry: Arc::clone(self),
            },
        })
    }
}

/// What a connection's requests report: busy while one is answered, waiting otherwise.
#[derive(Debug, Clone)]
pub struct Activity {
    conn: Arc<Conn>,
    registry: Arc<Connections>,
}

impl Activity {
    /// The request is read: it is being answered, and the connection is not to be shed.
    pub fn busy(&self) {
        self.conn.waiting_since.store(BUSY, Ordering::Relaxed);
    }

    /// The answer is out: the connection waits for its next request from now on (unless a
    /// long-lived answer still holds it).
    pub fn waiting(&self) {
        if self.conn.holds.load(Ordering::Acquire) > 0 {
            return;
        }
        let now = self.registry.now();
        self.conn.waiting_since.store(now, Ordering::Relaxed);
    }

    /// Keeps the connection busy while the returned guard lives, whatever its requests
    /// report: an event stream or a WebSocket, whose answer goes on after its headers.
    pub fn hold(&self) -> Held {
        self.conn.holds.fetch_add(1, Ordering::AcqRel);
        self.busy();
        Held(self.clone())
    }
}

/// A long-lived answer's hold on its connection (`Activity::hold`).
#[derive(Debug)]
pub struct Held(Activity);

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.conn.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.waiting();
        }
    }
}

/// A connection's place in the registry, given up when dropped.
#[derive(Debug)]
pub struct Registration {
    id: u64,
    activity: Activity,
}

impl Registration {
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Resolves when the connection is to be closed to make room for a new one.
    pub async fn shed(&self) {
        self.activity.conn.shed.notified().await;
    }
}

/// What a request knows of its connection (a request extension the server adds): its
/// activity, and its place among the open connections, which a WebSocket keeps after the
/// upgrade (the connection's own task then ends) so that it still counts.
#[derive(Debug, Clone)]
pub struct ConnectionSlot(pub Arc<Registration>);

impl ConnectionSlot {
    /// Holds the connection busy, and its place in the registry, while the guard lives.
    pub fn hold(&self) -> SlotHeld {
        SlotHeld {
            _held: self.0.activity.hold(),
            _slot: Arc::clone(&self.0),
        }
    }
}

/// A long-lived answer's hold on its connection and its place (`ConnectionSlot::hold`).
#[derive(Debug)]
pub struct SlotHeld {
    _held: Held,
    _slot: Arc<Registration>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.activity.registry.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max cpu time              unlimited            unlimited            seconds\n\
                    Max open files            1024                 1048576              files\n";
        assert_eq!(parse_open_files(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files(unlimited), Some(usize::MAX));
        assert_eq!(parse_open_files("nothing"), None);
        assert_eq!(limit(50), 50);
        assert!(limit(0) >= 16);
    }

    #[tokio::test]
    async fn at_the_limit_the_connection_waiting_longest_is_shed() {
        let registry = Connections::new(3);
        let first = registry.open().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = registry.open().unwrap();
        let third = registry.open().unwrap();
        // The first is busy answering: the second has waited longest.
        first.activity().busy();
        let fourth = registry.open().unwrap();
        assert_eq!(registry.len(), 3);
        tokio::time::timeout(std::time::Duration::from_secs(5), second.shed())
            .await
            .expect("the second connection is told to close");
        drop(second);
        assert_eq!(
            registry.len(),
            3,
            "a shed connection is already off the books"
        );
        // Busy connections are never shed: with all busy, the newcomer is refused.
        for r in [&first, &third, &fourth] {
            r.activity().busy();
        }
        assert!(registry.open().is_none());
        // A connection whose answer went out waits again and may be shed.
        third.activity().waiting();
        let fifth = registry.open().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), third.shed())
            .await
            .expect("the third connection is told to close");
        drop((first, third, fourth, fifth));
        assert!(registry.is_empty());
    }
}
