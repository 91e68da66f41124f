//! Stand-ins for the data plane's store reads while the store is unreachable: the last
//! answer each read had, and no waiting on a store known to be down.
//!
//! Every admitted request reads the store twice (its client, then its connection). When
//! PostgreSQL restarts, those reads would wait for it and then fail every request, although
//! nothing they need has changed. So each successful read is remembered; when a read finds
//! the store unreachable, the store is marked down for a second and the remembered answer
//! stands in (for at most [`MAX_AGE`]). While it is down, one request at a time probes it;
//! the others use the stand-ins at once, or get `503 store-unavailable` when there is none
//! (a key never seen by this replica). Healthy reads always go to the store, so a deleted
//! client or a changed grant takes effect at once, as without the stand-ins; only during an
//! outage may a replica still admit a client deleted shortly before it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use junction_store::StoreError;

/// How long a remembered answer may stand in.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// How long the store counts as down after a read found it unreachable.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// Answers remembered at most per kind; past it the oldest half is forgotten.
const CAPACITY: usize = 100_000;

/// The last answers of one kind of read, by key.
#[derive(Debug)]
pub struct Remembered<K, V> {
    answers: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for Remembered<K, V> {
    fn default() -> Self {
        Remembered {
            answers: Mutex::new(HashMap::new()),
        }
    }
}

/// Whether the store is down, shared by every read.
#[derive(Debug)]
pub struct Standby {
    /// Milliseconds since `epoch` until which the store counts as down (0: up).
    down_until: AtomicU64,
    epoch: Instant,
}

impl Default for Standby {
    fn default() -> Self {
        Standby {
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Standby {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this read should skip the store. When the down time is over, the first
    /// read to ask becomes the probe (and the others keep skipping until it is back).
    fn skip(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        let now = self.now_ms();
        if now < until {
            return true;
        }
        // Claim the probe: hold the others off for as long as a read may take.
        let probing = now + 5_000;
        self.down_until
            .compare_exchange(until, probing, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    }

    fn mark_down(&self) {
        let until = self.now_ms() + u64::try_from(DOWN_FOR.as_millis()).unwrap_or(1_000);
        self.down_until.store(until.max(1), Ordering::Release);
    }

    fn mark_up(&self) {
        self.down_until.store(0, Ordering::Release);
    }

    /// `read`'s answer, remembered under `key` when `keep` says so (else forgotten); or,
    /// when the store is unreachable, the answer remembered last (if recent enough).
    pub async fn read<K, V, F>(
        &self,
        memory: &Remembered<K, V>,
        key: K,
        keep: fn(&V) -> bool,
        read: F,
    ) -> Result<V, StoreError>
    where
        K: Eq + Hash + Clone,
        V: Clone,
        F: Future<Output = Result<V, StoreError>>,
    {
        let down = if self.skip() {
            StoreError::Unavailable("the store is down (a recent read could not reach it)".into())
        } else {
            match read.await {
                Ok(value) => {
                    self.mark_up();
                    if keep(&value) {
                        memory.remember(key, value.clone());
                    } else {
                        memory.forget(&key);
                    }
                    return Ok(value);
                }
                Err(error @ StoreError::Unavailable(_)) => {
                    self.mark_down();
                    error
                }
                Err(other) => return Err(other),
            }
        };
        memory.recall(&key).ok_or(down)
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Remembered<K, V> {
    fn remember(&self, key: K, value: V) {
        let Ok(mut answers) = self.answers.lock() else {
            return;
        };
        if answers.len() >= CAPACITY && !answers.contains_key(&key) {
            let mut ages: Vec<Instant> = answers.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            answers.retain(|_, (at, _)| *at > cut);
        }
        answers.insert(key, (Instant::now(), value));
    }

    fn recall(&self, key: &K) -> Option<V> {
        let answers = self.answers.lock().ok()?;
        let (at, value) = answers.get(key)?;
        (at.elapsed() <= MAX_AGE).then(|| value.clone())
    }

    fn forget(&self, key: &K) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALWAYS: fn(&u32) -> bool = |_| true;

    fn unreachable() -> StoreError {
        StoreError::Unavailable("connection refused".into())
    }

    #[tokio::test]
    async fn stands_in_only_while_the_store_is_unreachable() {
        let standby = Standby::default();
        let memory: Remembered<&str, u32> = Remembered::default();
        // Up: every read goes to the store and is remembered.
        assert_eq!(
            standby
                .read(&memory, "a", ALWAYS, async { Ok(1) })
                .await
                .ok(),
            Some(1)
        );
        assert_eq!(
            standby
                .read(&memory, "a", ALWAYS, async { Ok(2) })
                .await
                .ok(),
            Some(2)
        );
        // Unreachable: the last answer stands in; an unknown key gets the error.
        assert_eq!(
            standby
                .read(&memory, "a", ALWAYS, async { Err(unreachable()) })
                .await
                .ok(),
            Some(2)
        );
        assert!(matches!(
            standby.read(&memory, "b", ALWAYS, async { Ok(9) }).await,
            Err(StoreError::Unavailable(_))
        ));
        // While down, reads do not reach the store at all.
        let mut reached = false;
        let answer = standby
            .read(&memory, "a", ALWAYS, async {
                reached = true;
                Ok(3)
            })
            .await;
        assert_eq!((answer.ok(), reached), (Some(2), false));
        // Other errors are not stood in for.
        standby.mark_up();
        assert!(matches!(
            standby
                .read(&memory, "a", ALWAYS, async {
                    Err(StoreError::NotFound("gone".into()))
                })
                .await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn one_read_probes_when_the_down_time_is_over() {
        let standby = Standby::default();
        let memory: Remembered<&str, u32> = Remembered::default();
        memory.remember("a", 1);
        standby.mark_down();
        // Pretend the second passed.
        tokio::time::sleep(Duration::from_millis(5)).await;
        standby.down_until.store(1, Ordering::Release);
        assert!(!standby.skip(), "the first read after the down time probes");
        assert!(standby.skip(), "the others skip while it probes");
        assert_eq!(
            standby
                .read(&memory, "a", ALWAYS, async { Ok(5) })
                .await
                .ok(),
            Some(1)
        );
        standby.mark_up();
        assert_eq!(
            standby
                .read(&memory, "a", ALWAYS, async { Ok(5) })
                .await
                .ok(),
            Some(5)
        );
    }
}
