//! The bound on password hashing: bcrypt takes a core for tens of milliseconds, so logins
//! (verify) and `users.create` (hash) share a fixed number of slots, by default half the cores (at least one): with every core
//! hashing, a flood starves the other requests even at the lowest priority.
//! A login that finds every slot busy for longer than [`LOGIN_WAIT`] fails at once with 503
//! instead of queueing, so a login flood cannot take the cores from the other requests
//! (RELIABILITY.md, "login flood"). Creating a user waits for its slot. Each slot is a thread
//! of its own at the lowest scheduling priority (nice 10), so that, when the cores are busy,
//! hashing gets what the requests leave.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send>;

/// How long a login waits for a slot before it is refused.
pub const LOGIN_WAIT: Duration = Duration::from_secs(2);

/// Every slot stayed busy.
#[derive(Debug, thiserror::Error)]
#[error("every password-hashing slot is busy")]
pub struct Busy;

#[derive(Debug, Clone)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    threads: usize,
    /// The threads' queue, made at the first use; the threads end when it is dropped.
    jobs: Arc<OnceLock<Mutex<mpsc::Sender<Job>>>>,
}

impl PasswordHashing {
    /// `slots` at once; 0 for half the cores (at least one).
    pub fn new(slots: usize) -> Self {
        let slots = if slots == 0 { default_slots() } else { slots };
        PasswordHashing {
            slots: Arc::new(Semaphore::new(slots)),
            threads: slots,
            jobs: Arc::default(),
        }
    }

    fn sender(&self) -> mpsc::Sender<Job> {
        let jobs = self.jobs.get_or_init(|| {
            let (send, receive) = mpsc::channel::<Job>();
            let receive = Arc::new(Mutex::new(receive));
            for n in 0..self.threads {
                let receive = Arc::clone(&receive);
                let spawned = std::thread::Builder::new()
                    .name(format!("password-hashing-{n}"))
                    .spawn(move || {
                        lowest_priority();
                        loop {
                            let job = receive.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => break,
                            }
                        }
                    });
                if let Err(error) = spawned {
                    tracing::error!(%error, "cannot start a password-hashing thread");
                }
            }
            Mutex::new(send)
        });
        jobs.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            // The slot is given back before the answer: at nice 10 this thread may wait long
            // for the core between the two, and the next login must not see the slot busy.
            drop(permit);
            let _ = done.send(out);
        });
        self.sender().send(job).map_err(|_| Busy)?;
        // Dropped unanswered: the work panicked (its thread is gone; the others go on).
        result.await.map_err(|_| Busy)
    }
}

/// Puts the calling thread at nice 10 (where the system lets it; otherwise it stays).
fn lowest_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // 22 of 0..=99 is nice 10: a tenth of a core's time beside a busy request thread. At
    // nice 10 (a seventieth) a few concurrent logins under read load outlasted their wait.
    let lowest = ThreadPriorityValue::try_from(22u8).map(ThreadPriority::Crossplatform);
    if let Ok(lowest) = lowest
        && let Err(error) = thread_priority::set_current_thread_priority(lowest)
    {
        tracing::debug!(?error, "password hashing runs at the normal priority");
    }
}

fn default_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores / 2).max(1)
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_nice_10() {
        let hashing = PasswordHashing::new(1);
        let stat = hashing
            .run(None, || {
                std::fs::read_to_string("/proc/thread-self/stat").unwrap()
            })
            .await
            .unwrap();
        // Fields after the command's closing parenthesis; nice is the 19th of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i32 = rest.split(' ').nth(16).unwrap().parse().unwrap();
        assert_eq!(nice, 10, "{stat}");
    }

    #[test]
    fn zero_means_half_the_cores() {
        assert_eq!(
            PasswordHashing::new(0).slots.available_permits(),
            default_slots()
        );
        assert!(default_slots() >= 1);
        assert_eq!(PasswordHashing::new(3).slots.available_permits(), 3);
    }
}
