//! The concurrency limit of one backend: at most `max` requests in flight, response bodies
//! included. A request that finds no free slot waits up to `queue_timeout` (zero by
//! default), then gets a 503 with `Retry-After` instead of piling onto the backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `max_concurrency` and `queue_timeout` of a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencySettings {
    pub max: u32,
    pub queue_timeout: Duration,
}

/// One backend's slots.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    name: String,
    settings: ConcurrencySettings,
    slots: Arc<Semaphore>,
    rejected: AtomicU64,
}

/// A slot, held until the response body has been passed on (or dropped).
pub type Slot = OwnedSemaphorePermit;

/// The limit's counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConcurrencySnapshot {
    pub backend: String,
    pub max: u32,
    pub in_flight: u32,
    pub rejected: u64,
}

impl ConcurrencyLimit {
    pub fn new(name: impl Into<String>, settings: ConcurrencySettings) -> ConcurrencyLimit {
        let max = settings.max.max(1);
        ConcurrencyLimit {
            name: name.into(),
            settings: ConcurrencySettings { max, ..settings },
            slots: Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX))),
            rejected: AtomicU64::new(0),
        }
    }

    /// A slot, or `None` when none came free in time.
    pub async fn acquire(&self) -> Option<Slot> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        if !self.settings.queue_timeout.is_zero()
            && let Ok(Ok(slot)) = tokio::time::timeout(
                self.settings.queue_timeout,
                self.slots.clone().acquire_owned(),
            )
            .await
        {
            return Some(slot);
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        None
    }

    pub fn snapshot(&self) -> ConcurrencySnapshot {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        ConcurrencySnapshot {
            backend: self.name.clone(),
            max: self.settings.max,
            in_flight: self.settings.max.saturating_sub(free),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_limit_and_frees_slots_on_drop() {
        let limit = ConcurrencyLimit::new(
            "b",
            ConcurrencySettings {
                max: 2,
                queue_timeout: Duration::ZERO,
            },
        );
        let a = limit.acquire().await.unwrap();
        let _b = limit.acquire().await.unwrap();
        assert!(limit.acquire().await.is_none());
        assert_eq!(limit.snapshot().in_flight, 2);
        assert_eq!(limit.snapshot().rejected, 1);
        drop(a);
        assert!(limit.acquire().await.is_some());
    }

    #[tokio::test]
    async fn waits_for_a_slot_up_to_the_queue_timeout() {
        let limit = Arc::new(ConcurrencyLimit::new(
            "b",
            ConcurrencySettings {
                max: 1,
                queue_timeout: Duration::from_secs(5),
            },
        ));
        let held = limit.acquire().await.unwrap();
        let waiter = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.acquire().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        assert!(waiter.await.unwrap());
    }
}
