//! Lock-free latency histograms that the runtime client, the record store and the service
//! proxy record into on their hot paths, and that the kubelet API's `/metrics` renders.
//!
//! Recording is a bucket search over a dozen bounds and three relaxed atomic adds: no lock,
//! no allocation, nothing that can fail. Buckets are kept per bound (not cumulative) so a
//! record touches one of them; a [`Snapshot`] makes them cumulative for Prometheus. Rendering
//! belongs to the server; this module never formats text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in microseconds for operations a Raspberry Pi does against a local runtime or
/// the kernel: 1 ms up to 30 s (image pulls and slow SD cards sit at the top).
pub const PI_BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

const DAY_US: u64 = 86_400_000_000;

/// Number of buckets of a [`Histogram`] (with `+Inf` kept apart).
pub const BUCKETS: usize = PI_BOUNDS_US.len();

/// A latency histogram with an error counter.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Samples above the last bound.
    over: AtomicU64,
    count: AtomicU64,
    sum_us: AtomicU64,
    errors: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// What a histogram held at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (upper bound in seconds, samples at or below it), cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
    pub errors: u64,
}

impl Histogram {
    /// An empty histogram (usable in a `static`).
    pub const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            over: AtomicU64::new(0),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// One operation took `took`; `failed` counts it as an error too.
    pub fn record(&self, took: Duration, failed: bool) {
        // Capped at a day so the running sum cannot wrap within any plausible uptime.
        let us = u64::try_from(took.as_micros()).map_or(DAY_US, |u| u.min(DAY_US));
        match PI_BOUNDS_US.iter().position(|b| us <= *b) {
            Some(i) => {
                if let Some(b) = self.buckets.get(i) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.over.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Samples recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The cumulative view. Loads are relaxed: a scrape racing a record may see the count
    /// one ahead of the buckets, which Prometheus tolerates; `+Inf` is the count itself.
    pub fn snapshot(&self) -> Snapshot {
        let mut acc = 0u64;
        let buckets = PI_BOUNDS_US
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (*b as f64 / 1e6, acc)
            })
            .collect();
        let count = self.count.load(Ordering::Relaxed).max(acc);
        Snapshot {
            buckets,
            count,
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bound_that_holds_them() {
        let h = Histogram::new();
        h.record(Duration::from_micros(1_000), false);
        h.record(Duration::from_millis(3), true);
        h.record(Duration::from_secs(60), false);
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.errors, 1);
        assert_eq!(s.buckets[0], (0.001, 1));
        assert_eq!(s.buckets[1], (0.0025, 1));
        assert_eq!(s.buckets[2], (0.005, 2));
        assert_eq!(s.buckets.last(), Some(&(30.0, 2)));
        assert!((s.sum_seconds - 60.004).abs() < 1e-9, "{}", s.sum_seconds);
        // Cumulative and never above the count.
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        // Durations beyond u64 microseconds saturate instead of wrapping.
        h.record(Duration::MAX, false);
        assert_eq!(h.snapshot().count, 4);
    }
}
