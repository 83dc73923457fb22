//! The change feed: every import operation created or changed, by this process or by any
//! other process or replica sharing the database, delivered to the subscribers inside this
//! server (the `import.operations.events` streams and the DDP `stream-importers`
//! subscriptions).
//!
//! One task tails the operations' change sequence (migration 0050: each row written takes a
//! number greater than all committed before it). It wakes when this process writes operations
//! (every write goes through `in_write!`, which signals `Store::operation_changes`) and when the
//! change watcher reports another process's write to them, and at least every
//! `FALLBACK_POLL`; it then reads what changed after the last number it saw and broadcasts
//! each change once, already serialized for both kinds of subscriber. The broadcast channel
//! keeps the last `BUFFER` changes for all subscribers together: a subscriber that falls
//! further behind is told it lagged and is dropped (its stream ends), so a slow client never
//! slows the others or makes memory grow.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::domain::operation::progress;
use crate::store::{Store, StoreError};

/// Changes kept for subscribers that have not read them yet.
pub const BUFFER: usize = 1024;
/// The longest the feed goes without looking, whatever it was told.
const FALLBACK_POLL: Duration = Duration::from_secs(1);
/// Rows read per query while catching up.
const PAGE: i64 = 500;
/// How long to wait before looking again after a failed read.
const RETRY: Duration = Duration::from_millis(250);

/// One operation created or changed, serialized once for every subscriber.
#[derive(Debug)]
pub struct Change {
    /// Its change number: strictly increasing along the feed.
    pub seq: i64,
    /// The stored document, as `getLatestImportOperations` shows it.
    pub doc: Arc<str>,
    /// The Server-Sent Event: `id`, `event: operation`, `data`, and the blank line.
    pub sse: Bytes,
    /// The DDP `changed` message of the `stream-importers` `progress` event, when the
    /// operation's importer is one Rocket.Chat registers.
    pub ddp_progress: Option<Utf8Bytes>,
}

impl Change {
    pub fn new(seq: i64, doc: String) -> Self {
        let parsed: Option<Map<String, Value>> = serde_json::from_str(&doc).ok();
        let ddp_progress = parsed.as_ref().and_then(progress).map(|payload| {
            let message = serde_json::json!({
                "msg": "changed",
                "collection": "stream-importers",
                "id": "id",
                "fields": {"eventName": "progress", "args": [payload]},
            });
            Utf8Bytes::from(message.to_string())
        });
        // A stored document is compact JSON: it holds no line break.
        let doc_line = doc.replace(['\r', '\n'], " ");
        let sse = Bytes::from(format!("id: {seq}\nevent: operation\ndata: {doc_line}\n\n"));
        Change {
            seq,
            doc: Arc::from(doc),
            sse,
            ddp_progress,
        }
    }
}

/// The feed of one server. Dropping the last handle stops its task.
#[derive(Clone)]
pub struct Feed(Arc<Inner>);

struct Inner {
    store: Store,
    sender: broadcast::Sender<Arc<Change>>,
}

impl Feed {
    /// Starts the feed's task over `store`: must be called inside a Tokio runtime.
    pub fn start(store: Store) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        let inner = Arc::new(Inner { store, sender });
        tokio::spawn(tail(Arc::downgrade(&inner), inner.store.clone()));
        Feed(inner)
    }

    /// The changes from now on. A receiver that lags more than `BUFFER` changes behind gets
    /// `RecvError::Lagged`, upon which its subscriber ends.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.0.sender.subscribe()
    }

    /// How many subscribers are listening.
    pub fn subscribers(&self) -> usize {
        self.0.sender.receiver_count()
    }

    /// The operations changed after `after`, from the database, each in its latest state,
    /// in change order: at most `limit`.
    pub async fn since(&self, after: i64, limit: i64) -> Result<Vec<Change>, StoreError> {
        let rows = self.0.store.operation_changes_since(after, limit).await?;
        Ok(rows
            .into_iter()
            .map(|(seq, doc)| Change::new(seq, doc))
            .collect())
    }
}

/// The feed's task: reads what changed after the last number seen whenever told (or every
/// `FALLBACK_POLL`), and broadcasts it, until the feed is dropped.
async fn tail(feed: Weak<Inner>, store: Store) {
    let mut signal = store.operation_changes();
    let mut last = loop {
        match store.last_operation_change().await {
            Ok(last) => break last,
            Err(error) => {
                tracing::debug!(%error, "the change feed cannot read where to start");
                if feed.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    loop {
        let Some(inner) = feed.upgrade() else {
            return;
        };
        loop {
            match store.operation_changes_since(last, PAGE).await {
                Ok(rows) => {
                    let full = rows.len() as i64 == PAGE;
                    for (seq, doc) in rows {
                        last = last.max(seq);
                        // No subscriber is not an error.
                        let _ = inner.sender.send(Arc::new(Change::new(seq, doc)));
                    }
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "the change feed cannot read the changes");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
        drop(inner);
        tokio::select! {
            changed = signal.changed() => if changed.is_err() {
                return;
            },
            () = tokio::time::sleep(FALLBACK_POLL) => {}
        }
    }
}
