//! The bound on password hashing: bcrypt takes a core for tens of milliseconds, so logins
//! (verify) and `users.create` (hash) share a fixed number of slots, by default one per core.
//! A login that finds every slot busy for longer than [`LOGIN_WAIT`] fails at once with 503
//! instead of queueing, so a login flood cannot take the cores from the other requests
//! (RELIABILITY.md, "login flood"). Creating a user waits for its slot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a login waits for a slot before it is refused.
pub const LOGIN_WAIT: Duration = Duration::from_millis(100);

/// Every slot stayed busy.
#[derive(Debug, thiserror::Error)]
#[error("every password-hashing slot is busy")]
pub struct Busy;

#[derive(Debug, Clone)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
}

impl PasswordHashing {
    /// `slots` at once; 0 for the number of cores.
    pub fn new(slots: usize) -> Self {
        let slots = if slots == 0 { cores() } else { slots };
        PasswordHashing {
            slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// The process's own, for callers without a server's state (the command line).
    pub fn shared() -> &'static PasswordHashing {
        static SHARED: OnceLock<PasswordHashing> = OnceLock::new();
        SHARED.get_or_init(|| PasswordHashing::new(0))
    }

    /// Runs `work` on a blocking thread once a slot is free, waiting at most `wait` for it
    /// (`None`: as long as it takes).
    pub async fn run<T: Send + 'static>(
        &self,
        wait: Option<Duration>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let acquire = Arc::clone(&self.slots).acquire_owned();
        let permit = match wait {
            Some(wait) => tokio::time::timeout(wait, acquire)
                .await
                .map_err(|_| Busy)?,
            None => acquire.await,
        }
        .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        // The work panicked: the caller sees it as a failure of its own kind.
        .map_err(|_| Busy)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_login_is_refused_while_every_slot_stays_busy() {
        let hashing = PasswordHashing::new(1);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let holder = {
            let hashing = hashing.clone();
            tokio::spawn(async move {
                hashing
                    .run(None, move || {
                        let _ = started_tx.send(());
                        let _ = held.recv();
                    })
                    .await
            })
        };
        started.await.unwrap();
        assert!(hashing.run(Some(LOGIN_WAIT), || ()).await.is_err());
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        // Free again: the same call goes through.
        assert_eq!(hashing.run(Some(LOGIN_WAIT), || 7).await.unwrap(), 7);
    }

    #[test]
    fn zero_means_one_slot_per_core() {
        assert_eq!(PasswordHashing::new(0).slots.available_permits(), cores());
        assert_eq!(PasswordHashing::new(3).slots.available_permits(), 3);
    }
}
