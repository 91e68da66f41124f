//! Per-route statistics over the last hour, for the console: request rate, latency
//! percentiles, error rate and cache hit ratio, by minute.
//!
//! Each operation and view owns a [`Window`]: sixty one-minute slots in a ring, allocated
//! on the route's first request (a gateway serving the whole corpus has thousands of
//! operations, most never called). A slot counts requests, server errors (`5xx`), cache
//! hits (`HIT` and `STALE`) and lookups (those and `MISS`), and keeps a latency histogram
//! with four sub-buckets per power of two of microseconds, so a percentile read from it is
//! within 12.5 % of the true value. Recording takes the route's own lock for a few
//! additions; [`Window::snapshot`] merges the slots of the last hour.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Slots in the ring.
pub const SLOTS: usize = 60;
/// Seconds per slot.
pub const SLOT_SECONDS: u64 = 60;
/// Latency buckets: exact below 4 µs, then four per power of two up to 2^27 µs (134 s);
/// longer requests land in the last one.
const BUCKETS: usize = 104;

/// The statistics of one route.
#[derive(Debug, Default)]
pub struct Window {
    ring: Mutex<Option<Box<Ring>>>,
}

#[derive(Debug)]
struct Ring {
    slots: [Slot; SLOTS],
}

#[derive(Debug, Clone)]
struct Slot {
    /// The minute (Unix seconds ÷ 60) this slot counts; zero counters otherwise.
    minute: u64,
    requests: u32,
    errors: u32,
    cache_hits: u32,
    cache_lookups: u32,
    latency: [u32; BUCKETS],
}

impl Slot {
    const EMPTY: Slot = Slot {
        minute: 0,
        requests: 0,
        errors: 0,
        cache_hits: 0,
        cache_lookups: 0,
        latency: [0; BUCKETS],
    };
}

/// What one answered request adds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub status: u16,
    /// The `X-Cache` outcome, if the response has one.
    pub cache: Option<&'static str>,
    pub elapsed: Duration,
}

/// The last hour of a route, as `GET /api/v1/stats` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub requests: u64,
    /// Requests per second since the start of the window (or of the process, if later).
    pub rate_per_second: f64,
    /// Responses with a `5xx` status.
    pub errors: u64,
    pub error_rate: f64,
    pub cache_hits: u64,
    pub cache_lookups: u64,
    /// Hits ÷ lookups; `null` when the route made no lookup.
    pub cache_hit_ratio: Option<f64>,
    /// `null` when there was no request.
    pub latency_ms: Option<Percentiles>,
    /// One entry per minute, oldest first, the current minute last.
    pub series: Vec<Point>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One minute of a route.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// The minute's start, Unix seconds.
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub cache_hits: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Window {
    /// Counts one request answered now.
    pub fn record(&self, sample: Sample) {
        self.record_at(unix_now(), sample);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Box<Ring>>> {
        // A panic while holding it cannot leave the counters inconsistent enough to matter.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_at(&self, now: u64, sample: Sample) {
        let minute = now / SLOT_SECONDS;
        let bucket = bucket_of(sample.elapsed);
        let mut ring = self.lock();
        let ring = ring.get_or_insert_with(|| {
            Box::new(Ring {
                slots: std::array::from_fn(|_| Slot::EMPTY),
            })
        });
        let at = usize::try_from(minute % SLOTS as u64).unwrap_or(0);
        let Some(slot) = ring.slots.get_mut(at) else {
            return;
        };
        if slot.minute != minute {
            *slot = Slot {
                minute,
                ..Slot::EMPTY
            };
        }
        slot.requests = slot.requests.saturating_add(1);
        if sample.status >= 500 {
            slot.errors = slot.errors.saturating_add(1);
        }
        match sample.cache {
            Some("HIT" | "STALE") => {
                slot.cache_hits = slot.cache_hits.saturating_add(1);
                slot.cache_lookups = slot.cache_lookups.saturating_add(1);
            }
            Some("MISS") => slot.cache_lookups = slot.cache_lookups.saturating_add(1),
            _ => {}
        }
        if let Some(count) = slot.latency.get_mut(bucket) {
            *count = count.saturating_add(1);
        }
    }

    /// The last hour as of `now` (Unix seconds), or `None` when the route had no request
    /// in it. `since` is when counting began, for the rate of a younger process.
    pub fn snapshot(&self, now: u64, since: u64) -> Option<Summary> {
        let current = now / SLOT_SECONDS;
        let first = (current + 1).saturating_sub(SLOTS as u64);
        let slots: Vec<Slot> = {
            let ring = self.lock();
            let ring = ring.as_ref()?;
            (first..=current)
                .map(|minute| {
                    let at = usize::try_from(minute % SLOTS as u64).unwrap_or(0);
                    match ring.slots.get(at) {
                        Some(slot) if slot.minute == minute => slot.clone(),
                        _ => Slot {
                            minute,
                            ..Slot::EMPTY
                        },
                    }
                })
                .collect()
        };
        let mut all = [0u64; BUCKETS];
        let mut totals = [0u64; 4];
        let mut series = Vec::with_capacity(SLOTS);
        for slot in &slots {
            for (sum, count) in all.iter_mut().zip(slot.latency.iter()) {
                *sum += u64::from(*count);
            }
            totals[0] += u64::from(slot.requests);
            totals[1] += u64::from(slot.errors);
            totals[2] += u64::from(slot.cache_hits);
            totals[3] += u64::from(slot.cache_lookups);
            let latency = slot.latency.map(u64::from);
            series.push(Point {
                t: slot.minute * SLOT_SECONDS,
                requests: u64::from(slot.requests),
                errors: u64::from(slot.errors),
                cache_hits: u64::from(slot.cache_hits),
                p50_ms: percentile(&latency, 0.50),
                p95_ms: percentile(&latency, 0.95),
            });
        }
        let [requests, errors, cache_hits, cache_lookups] = totals;
        if requests == 0 {
            return None;
        }
        let window_start = first * SLOT_SECONDS;
        let seconds = now.saturating_sub(window_start.max(since)).max(1);
        let latency_ms = match (
            percentile(&all, 0.50),
            percentile(&all, 0.95),
            percentile(&all, 0.99),
        ) {
            (Some(p50), Some(p95), Some(p99)) => Some(Percentiles { p50, p95, p99 }),
            _ => None,
        };
        Some(Summary {
            requests,
            rate_per_second: requests as f64 / seconds as f64,
            errors,
            error_rate: errors as f64 / requests as f64,
            cache_hits,
            cache_lookups,
            cache_hit_ratio: (cache_lookups > 0).then(|| cache_hits as f64 / cache_lookups as f64),
            latency_ms,
            series,
        })
    }
}

/// The bucket of a latency: `0..4` µs exactly, then four per power of two.
fn bucket_of(elapsed: Duration) -> usize {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if micros < 4 {
        return usize::try_from(micros).unwrap_or(0);
    }
    let log = u64::from(63 - micros.leading_zeros()); // ≥ 2
    let sub = (micros >> (log - 2)) & 3;
    usize::try_from(4 * (log - 1) + sub)
        .unwrap_or(BUCKETS)
        .min(BUCKETS - 1)
}

/// The middle of bucket `at`, in milliseconds.
fn bucket_middle_ms(at: usize) -> f64 {
    let at = at as u64;
    if at < 4 {
        return at as f64 / 1000.0;
    }
    let log = at / 4 + 1;
    let sub = at % 4;
    let width = 1u64 << (log - 2);
    let lower = (4 + sub) << (log - 2);
    (lower as f64 + width as f64 / 2.0) / 1000.0
}

/// The `q` quantile (0–1) of a histogram, as its bucket's middle; `None` when empty.
fn percentile(histogram: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based: the smallest value with at least q of all at or
    // below it.
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (at, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(round3(bucket_middle_ms(at)));
        }
    }
    None
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The start of a minute (a multiple of 60 s).
    const MINUTE: u64 = 1_800_000_000;

    fn ok(ms: u64) -> Sample {
        Sample {
            status: 200,
            cache: None,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn buckets_are_continuous_and_within_an_eighth() {
        let mut last = 0;
        for micros in 1..200_000u64 {
            let at = bucket_of(Duration::from_micros(micros));
            assert!(at == last || at == last + 1, "{micros} µs jumped to {at}");
            last = at;
            let middle = bucket_middle_ms(at) * 1000.0;
            let error = (middle - micros as f64).abs() / micros as f64;
            assert!(error <= 0.125, "{micros} µs read back as {middle}");
        }
        assert_eq!(bucket_of(Duration::from_secs(10_000)), BUCKETS - 1);
    }

    #[test]
    fn percentiles_rates_errors_and_hits() {
        let window = Window::default();
        let now = MINUTE + 30;
        for ms in 1..=100 {
            window.record_at(now, ok(ms));
        }
        window.record_at(
            now,
            Sample {
                status: 502,
                cache: Some("MISS"),
                elapsed: Duration::from_millis(5),
            },
        );
        for _ in 0..3 {
            window.record_at(
                now,
                Sample {
                    status: 200,
                    cache: Some("HIT"),
                    elapsed: Duration::from_micros(200),
                },
            );
        }
        let summary = window.snapshot(now, 0).unwrap();
        assert_eq!(summary.requests, 104);
        assert_eq!(summary.errors, 1);
        assert_eq!((summary.cache_hits, summary.cache_lookups), (3, 4));
        assert_eq!(summary.cache_hit_ratio, Some(0.75));
        let p = summary.latency_ms.unwrap();
        // 104 values: 3 × 0.2 ms, 1..=100 ms and one 5 ms; p50 is the 52nd (≈ 48 ms).
        assert!((p.p50 - 48.0).abs() / 48.0 < 0.125, "{p:?}");
        assert!((p.p95 - 95.0).abs() / 95.0 < 0.125, "{p:?}");
        assert!((p.p99 - 99.0).abs() / 99.0 < 0.125, "{p:?}");
        assert_eq!(summary.series.len(), SLOTS);
        assert_eq!(summary.series.last().unwrap().requests, 104);
        assert!(summary.series[..SLOTS - 1].iter().all(|p| p.requests == 0));
        // Over the whole window (59 minutes and a half so far) …
        assert!((summary.rate_per_second - 104.0 / 3570.0).abs() < 1e-9);
        // … or since the process started, half a minute ago.
        let young = window.snapshot(now, MINUTE).unwrap();
        assert!((young.rate_per_second - 104.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn minutes_older_than_an_hour_are_forgotten() {
        let window = Window::default();
        let start = MINUTE;
        window.record_at(start, ok(10));
        window.record_at(start + 60, ok(10));
        window.record_at(start + 60, ok(10));
        let later = window.snapshot(start + 60 * 59, 0).unwrap();
        assert_eq!(later.requests, 3);
        assert_eq!(later.series.first().unwrap().requests, 1);
        let after = window.snapshot(start + 60 * 60, 0).unwrap();
        assert_eq!(after.requests, 2, "the first minute left the window");
        // The slot of the first minute is reused for minute 60.
        window.record_at(start + 60 * 60, ok(10));
        let reused = window.snapshot(start + 60 * 60, 0).unwrap();
        assert_eq!(reused.requests, 3);
        assert_eq!(reused.series.last().unwrap().requests, 1);
        assert!(window.snapshot(start + 60 * 200, 0).is_none());
    }

    #[test]
    fn an_unused_route_allocates_nothing() {
        let window = Window::default();
        assert!(window.snapshot(unix_now(), 0).is_none());
        assert!(window.lock().is_none());
    }
}
