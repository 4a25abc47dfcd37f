//! Retry timing for API requests and watches (sans-I/O): exponential back-off with full jitter,
//! reset after sustained health, never sooner than a server's `Retry-After`.
//!
//! Owns only the arithmetic. The caller passes in the current `Instant` and a random source and
//! does the sleeping itself, so every rule here is tested with a fake clock and no waiting.

use std::time::{Duration, Instant};

/// A source of random numbers for jitter, injected so tests are deterministic.
pub trait RandomSource {
    /// The next pseudo-random 64-bit value.
    fn next_u64(&mut self) -> u64;
}

/// xorshift64*: small and good enough to spread retries of many nodes apart.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from a seed (zero is replaced, as xorshift would stay at zero forever).
    pub fn new(seed: u64) -> Self {
        XorShift64(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator seeded from the wall clock and process id, for production use.
    pub fn from_entropy() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        XorShift64::new(t ^ (u64::from(std::process::id()) << 32))
    }
}

impl RandomSource for XorShift64 {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A uniformly random duration in `[lo, hi]` (inclusive, nanosecond resolution).
pub fn random_between(rng: &mut dyn RandomSource, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
    // Multiply-shift maps the full u64 range onto [0, span] without modulo bias.
    let offset = ((u128::from(rng.next_u64()) * (u128::from(span) + 1)) >> 64) as u64;
    lo + Duration::from_nanos(offset)
}

/// The longest cap accepted (a device left offline for a day still checks back).
pub const MAX_CAP: Duration = Duration::from_secs(24 * 3600);

/// Back-off parameters; the default is client-go's reflector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Growth of the ceiling per consecutive failure.
    pub factor: u32,
    /// Largest ceiling.
    pub cap: Duration,
    /// After this long healthy, the next failure starts from `initial` again.
    pub reset_after: Duration,
    /// Longest `Retry-After` obeyed: a hostile or buggy server cannot park the node forever.
    pub max_retry_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(800),
            factor: 2,
            cap: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl BackoffConfig {
    /// The same config with another cap, clamped to `[initial, MAX_CAP]`.
    pub fn with_cap(mut self, cap: Duration) -> Self {
        self.cap = cap.clamp(self.initial, MAX_CAP);
        self
    }
}

/// Back-off state for one retried operation (one watch, one request kind).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    healthy_since: Option<Instant>,
}

impl Backoff {
    /// A fresh back-off: the first failure waits at most `initial`.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
            healthy_since: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Consecutive failures counted so far (0 after a reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records that the operation works (a list succeeded, a watch connected or delivered).
    pub fn on_success(&mut self, now: Instant) {
        if self.healthy_since.is_none() {
            self.healthy_since = Some(now);
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    ///
    /// `retry_after` is the server's demand; the result is never shorter than it.
    pub fn on_failure(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        rng: &mut dyn RandomSource,
    ) -> Duration {
        if let Some(since) = self.healthy_since.take() {
            if now.saturating_duration_since(since) >= self.config.reset_after {
                self.failures = 0;
            }
        }
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let jittered = random_between(rng, Duration::ZERO, ceiling);
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.config.max_retry_after)),
            None => jittered,
        }
    }

    /// The upper bound of the next delay: `initial * factor^failures`, capped.
    pub fn ceiling(&self) -> Duration {
        let cap = self.config.cap.min(MAX_CAP);
        let mut d = self.config.initial.min(cap);
        for _ in 0..self.failures {
            d = d.saturating_mul(self.config.factor.max(1));
            if d >= cap {
                return cap;
            }
        }
        d
    }

    /// The link came back (another client got through): forgets the failures and returns the
    /// first, jittered, delay of a fresh back-off. The caller retries after it, or sooner if it
    /// was due sooner anyway; the jitter keeps many devices whose link returned at once apart.
    pub fn on_link_recovered(&mut self, now: Instant, rng: &mut dyn RandomSource) -> Duration {
        self.reset();
        self.on_failure(now, None, rng)
    }

    /// Forgets all failures, e.g. after the configuration changed.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.healthy_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always answers the same value: u64::MAX gives the ceiling, 0 gives zero.
    struct Fixed(u64);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceilings_follow_client_go_reflector() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        let mut top = Fixed(u64::MAX);
        let expected = [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000];
        for want in expected {
            assert_eq!(b.ceiling(), ms(want));
            let d = b.on_failure(t0, None, &mut top);
            assert!(d <= ms(want), "{d:?} > {want}");
        }
        // Saturation: thousands of failures neither overflow nor exceed the cap.
        for _ in 0..10_000 {
            assert!(b.on_failure(t0, None, &mut top) <= ms(30_000));
        }
        assert_eq!(b.ceiling(), ms(30_000));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        assert_eq!(b.on_failure(t0, None, &mut Fixed(0)), Duration::ZERO);
        let mut rng = XorShift64::new(42);
        let mut b = Backoff::new(BackoffConfig::default());
        for _ in 0..6 {
            b.on_failure(t0, None, &mut rng);
        }
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for _ in 0..5000 {
            let mut c = b.clone();
            let d = c.on_failure(t0, None, &mut rng);
            lo = lo.min(d);
            hi = hi.max(d);
            assert!(d <= ms(30_000));
        }
        assert!(lo < ms(1000), "{lo:?}");
        assert!(hi > ms(29_000), "{hi:?}");
    }

    #[test]
    fn resets_only_after_sustained_health() {
        let t0 = Instant::now();
        let mut top = Fixed(u64::MAX);
        let mut b = Backoff::new(BackoffConfig::default());
        for _ in 0..5 {
            b.on_failure(t0, None, &mut top);
        }
        assert_eq!(b.ceiling(), ms(25_600));
        // Healthy for 119 s is not enough.
        b.on_success(t0);
        b.on_success(t0 + Duration::from_secs(60));
        assert_eq!(
            b.on_failure(t0 + Duration::from_secs(119), None, &mut top),
            ms(25_600)
        );
        assert_eq!(b.failures(), 6);
        // Healthy again from 130 s; the failure at 250 s (120 s later) starts over.
        b.on_success(t0 + Duration::from_secs(130));
        assert_eq!(
            b.on_failure(t0 + Duration::from_secs(250), None, &mut top),
            ms(800)
        );
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn failure_without_success_never_resets() {
        let t0 = Instant::now();
        let mut top = Fixed(u64::MAX);
        let mut b = Backoff::new(BackoffConfig::default());
        b.on_failure(t0, None, &mut top);
        let d = b.on_failure(t0 + Duration::from_secs(3600), None, &mut top);
        assert_eq!(d, ms(1600));
    }

    #[test]
    fn link_recovery_restarts_from_the_first_jittered_delay() {
        let t0 = Instant::now();
        let mut top = Fixed(u64::MAX);
        let mut b = Backoff::new(BackoffConfig::default());
        for _ in 0..8 {
            b.on_failure(t0, None, &mut top);
        }
        assert_eq!(b.ceiling(), ms(30_000));
        // No sustained health needed: another client's success proved the link works.
        assert_eq!(b.on_link_recovered(t0, &mut top), ms(800));
        assert_eq!(b.failures(), 1);
        assert_eq!(b.on_failure(t0, None, &mut top), ms(1600));
        // Each client keeps its own jitter: a fleet does not come back in step.
        let mut rng = XorShift64::new(3);
        let delays: Vec<Duration> = (0..50)
            .map(|_| Backoff::new(BackoffConfig::default()).on_link_recovered(t0, &mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= ms(800)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 40, "{distinct:?}");
    }

    #[test]
    fn retry_after_is_a_floor_and_clamped() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffConfig::default());
        assert_eq!(
            b.on_failure(t0, Some(Duration::from_secs(7)), &mut Fixed(0)),
            Duration::from_secs(7)
        );
        let mut top = Fixed(u64::MAX);
        // A Retry-After shorter than the jittered delay does not shorten it.
        let mut c = Backoff::new(BackoffConfig::default());
        assert_eq!(c.on_failure(t0, Some(ms(1)), &mut top), ms(800));
        // An absurd Retry-After is clamped to max_retry_after.
        let d = b.on_failure(t0, Some(Duration::from_secs(10_000_000)), &mut top);
        assert_eq!(d, Duration::from_secs(3600));
    }

    #[test]
    fn configurable_cap_up_to_hours() {
        let t0 = Instant::now();
        let mut top = Fixed(u64::MAX);
        let cfg = BackoffConfig::default().with_cap(Duration::from_secs(4 * 3600));
        let mut b = Backoff::new(cfg);
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            last = b.on_failure(t0, None, &mut top);
        }
        assert_eq!(last, Duration::from_secs(4 * 3600));
        assert_eq!(
            BackoffConfig::default()
                .with_cap(Duration::from_secs(1 << 40))
                .cap,
            MAX_CAP
        );
        assert_eq!(
            BackoffConfig::default().with_cap(Duration::ZERO).cap,
            ms(800)
        );
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let t0 = Instant::now();
        let mut rng = XorShift64::new(0);
        for (initial, factor, cap) in [
            (Duration::ZERO, 0, Duration::ZERO),
            (Duration::MAX, u32::MAX, Duration::MAX),
            (ms(1), 1, ms(1)),
        ] {
            let mut b = Backoff::new(BackoffConfig {
                initial,
                factor,
                cap,
                ..Default::default()
            });
            for _ in 0..100 {
                assert!(
                    b.on_failure(t0, Some(Duration::MAX), &mut rng)
                        <= Duration::from_secs(3600).max(MAX_CAP)
                );
            }
        }
    }

    #[test]
    fn random_between_bounds() {
        let mut rng = XorShift64::new(7);
        for _ in 0..1000 {
            let d = random_between(&mut rng, Duration::from_secs(300), Duration::from_secs(600));
            assert!(d >= Duration::from_secs(300) && d <= Duration::from_secs(600));
        }
        assert_eq!(random_between(&mut rng, ms(5), ms(1)), ms(5));
        let _ = random_between(&mut rng, Duration::ZERO, Duration::MAX);
    }
}
