//! When to renew the node Lease and when to report node status (sans-I/O, injected clock).
//!
//! The kubelet's contract: the Lease is renewed every 10 s (a quarter of its 40 s duration);
//! node status is computed every 10 s and reported only when it changed or 5 minutes passed
//! since the last report. A failed renewal is retried quickly with a short back-off so that a
//! brief blip never lets the Lease expire, but never faster than 200 ms.
//! The node loop uses the jittered form (`renew_failed_jittered`): the same short, capped
//! ceiling whatever happened before the last good renewal (upstream's lease controller retries
//! within 7 s), with full jitter below it so a fleet that lost its link at once never retries
//! in step. A long outage therefore never leaves a renewal waiting on a long back-off.

use std::time::{Duration, Instant};

use crate::api::backoff::{random_between, RandomSource};

/// Cadence settings (the kubelet's defaults in [`Default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    pub status_compute: Duration,
    pub status_report: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            status_compute: Duration::from_secs(10),
            status_report: Duration::from_secs(300),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(7),
        }
    }
}

/// What the node loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    pub renew_lease: bool,
    pub compute_status: bool,
}

/// The heartbeat schedule of one node.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    cadence: Cadence,
    next_renew: Option<Instant>,
    next_compute: Option<Instant>,
    last_report: Option<Instant>,
    last_reported_hash: Option<u64>,
    renew_failures: u32,
    last_renewed: Option<Instant>,
}

impl Heartbeat {
    /// A schedule that is due for everything at once.
    pub fn new(cadence: Cadence) -> Self {
        Heartbeat {
            cadence,
            next_renew: None,
            next_compute: None,
            last_report: None,
            last_reported_hash: None,
            renew_failures: 0,
            last_renewed: None,
        }
    }

    /// What is due at `now`.
    pub fn due(&self, now: Instant) -> Due {
        Due {
            renew_lease: self.next_renew.is_none_or(|t| now >= t),
            compute_status: self.next_compute.is_none_or(|t| now >= t),
        }
    }

    /// The next instant anything is due (the loop sleeps until then).
    pub fn next_wake(&self, now: Instant) -> Instant {
        let a = self.next_renew.unwrap_or(now);
        let b = self.next_compute.unwrap_or(now);
        a.min(b)
    }

    /// Records a successful Lease renewal.
    pub fn renewed(&mut self, now: Instant) {
        self.renew_failures = 0;
        self.last_renewed = Some(now);
        self.next_renew = Some(now + self.cadence.renew_interval);
    }

    /// Records the first successful renewal after an outage: the next one comes at a random
    /// point of the second half of the renewal interval (never later than usual). A fleet whose
    /// link returned at once renewed nearly in step; this spreads the following rounds over
    /// half an interval instead of keeping every node in the same second for good.
    pub fn renewed_after_outage(&mut self, now: Instant, rng: &mut dyn RandomSource) {
        self.renewed(now);
        let every = self.cadence.renew_interval;
        self.next_renew = Some(now + random_between(rng, every / 2, every));
    }

    /// Records a failed renewal; the retry comes after a doubling back-off, capped.
    pub fn renew_failed(&mut self, now: Instant) {
        self.renew_failures = self.renew_failures.saturating_add(1);
        let exp = self.renew_failures.saturating_sub(1).min(16);
        let delay = self
            .cadence
            .retry_min
            .saturating_mul(1u32 << exp)
            .min(self.cadence.retry_max);
        self.next_renew = Some(now + delay);
    }

    /// Records a failed renewal; the retry comes after a fully jittered delay below a ceiling
    /// that starts at `first` and doubles per consecutive failure up to `retry_max`. A server's
    /// `Retry-After` is a floor, itself capped at `retry_max`: the Lease must not lapse because
    /// a busy server asked for patience. Returns when the renewal is due again.
    pub fn renew_failed_jittered(
        &mut self,
        now: Instant,
        first: Duration,
        retry_after: Option<Duration>,
        rng: &mut dyn RandomSource,
    ) -> Instant {
        let max = self.cadence.retry_max;
        let exp = self.renew_failures.min(16);
        let ceiling = first
            .max(Duration::from_millis(1))
            .saturating_mul(1u32 << exp)
            .min(max);
        self.renew_failures = self.renew_failures.saturating_add(1);
        let mut delay = random_between(rng, Duration::ZERO, ceiling);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(max));
        }
        let at = now + delay;
        self.next_renew = Some(at);
        at
    }

    /// The link came back (another client got through) while renewals were failing: the next
    /// renewal comes after at most `first`, jittered, however far the retries had grown.
    pub fn renew_soon(&mut self, now: Instant, first: Duration, rng: &mut dyn RandomSource) {
        let at = now + random_between(rng, Duration::ZERO, first.min(self.cadence.retry_max));
        if self.next_renew.is_none_or(|t| t > at) {
            self.next_renew = Some(at);
        }
    }

    /// The last successful renewal.
    pub fn last_renewed(&self) -> Option<Instant> {
        self.last_renewed
    }

    /// Records a failed renewal whose retry time the caller chose (a jittered back-off shared
    /// with other API calls); the renewal is due again at `retry_at`.
    pub fn renew_retry_at(&mut self, retry_at: Instant) {
        self.renew_failures = self.renew_failures.saturating_add(1);
        self.next_renew = Some(retry_at);
    }

    /// Consecutive failed renewals (0 after a success).
    pub fn renew_failures(&self) -> u32 {
        self.renew_failures
    }

    /// Makes the next computed status be reported even if unchanged (after an outage the
    /// server's copy is stale).
    pub fn force_report(&mut self) {
        self.last_reported_hash = None;
    }

    /// Makes status computation due at `at` (e.g. at once, to catch up after an outage).
    pub fn compute_at(&mut self, at: Instant) {
        self.next_compute = Some(at);
    }

    /// The cadence in use.
    pub fn cadence(&self) -> &Cadence {
        &self.cadence
    }

    /// True if the Lease has not been renewed within its duration (the control plane will
    /// consider the node gone).
    pub fn lease_expired(&self, now: Instant) -> bool {
        match self.last_renewed {
            Some(t) => now.saturating_duration_since(t) >= self.cadence.lease_duration,
            None => true,
        }
    }

    /// Called after status was computed with content hash `hash`: returns whether to report it
    /// (changed, or the report interval has passed), and schedules the next computation.
    pub fn status_computed(&mut self, now: Instant, hash: u64) -> bool {
        self.next_compute = Some(now + self.cadence.status_compute);
        let changed = self.last_reported_hash != Some(hash);
        let stale = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cadence.status_report);
        changed || stale
    }

    /// Records that a status report with `hash` reached the server.
    pub fn status_reported(&mut self, now: Instant, hash: u64) {
        self.last_report = Some(now);
        self.last_reported_hash = Some(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_renews_every_ten_seconds() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(Cadence::default());
        assert!(h.due(t0).renew_lease);
        h.renewed(t0);
        assert!(!h.due(t0 + Duration::from_secs(9)).renew_lease);
        assert!(h.due(t0 + Duration::from_secs(10)).renew_lease);
        let now = t0 + Duration::from_secs(1);
        assert_eq!(
            h.next_wake(now),
            now,
            "status was never computed: due at once"
        );
        h.status_computed(now, 7);
        assert_eq!(h.next_wake(now), t0 + Duration::from_secs(10));
    }

    #[test]
    fn failed_renewals_retry_fast_then_cap() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(Cadence::default());
        h.renewed(t0);
        let mut now = t0 + Duration::from_secs(10);
        let mut delays = Vec::new();
        for _ in 0..9 {
            h.renew_failed(now);
            let next = h.next_renew.unwrap();
            delays.push(next - now);
            now = next;
            if delays.len() == 8 {
                assert!(!h.lease_expired(now), "36.6 s after the last renewal");
            }
        }
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![200, 400, 800, 1600, 3200, 6400, 7000, 7000, 7000]);
        assert!(h.lease_expired(now));
        h.renewed(now);
        assert!(!h.lease_expired(now));
    }

    struct Fixed(u64);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    #[test]
    fn jittered_renewal_retries_stay_short_whatever_the_history() {
        let t0 = Instant::now();
        let first = Duration::from_millis(800);
        let mut top = Fixed(u64::MAX);
        let mut h = Heartbeat::new(Cadence::default());
        h.renewed(t0);
        // A three-minute outage: the retry ceiling grows to 7 s and stays there.
        let mut now = t0 + Duration::from_secs(10);
        let mut delays = Vec::new();
        while now < t0 + Duration::from_secs(190) {
            let at = h.renew_failed_jittered(now, first, None, &mut top);
            delays.push((at - now).as_millis());
            now = at;
        }
        assert_eq!(&delays[..5], &[800, 1600, 3200, 6400, 7000]);
        assert!(delays.iter().all(|d| *d <= 7000));
        // Back: one renewal, then a connection reset. The retry starts from the first
        // ceiling again, not from the outage's: the Lease (40 s) cannot lapse on a link
        // that is up. (The bug this guards against waited up to 30 s here.)
        h.renewed(now);
        let reset_at = now + Duration::from_secs(10);
        let at = h.renew_failed_jittered(reset_at, first, None, &mut top);
        assert_eq!(at - reset_at, first);
        // Even a server asking for a minute is not obeyed past the 7 s ceiling.
        let at2 = h.renew_failed_jittered(at, first, Some(Duration::from_secs(60)), &mut top);
        assert_eq!(at2 - at, Duration::from_secs(7));
        // Full jitter below the ceiling: a fleet spreads out.
        let mut rng = crate::api::XorShift64::new(9);
        let mut g = Heartbeat::new(Cadence::default());
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            g.renewed(t0);
            seen.insert(g.renew_failed_jittered(t0, first, None, &mut rng) - t0);
        }
        assert!(seen.len() > 40 && seen.iter().all(|d| *d <= first));
    }

    #[test]
    fn the_renewal_after_an_outage_comes_in_the_second_half_of_the_interval() {
        let t0 = Instant::now();
        let every = Cadence::default().renew_interval;
        let mut seen = std::collections::BTreeSet::new();
        for seed in 1..200u64 {
            let mut h = Heartbeat::new(Cadence::default());
            let mut rng = crate::api::XorShift64::new(seed);
            h.renewed_after_outage(t0, &mut rng);
            assert_eq!(h.last_renewed(), Some(t0));
            assert_eq!(h.renew_failures(), 0);
            let next = h.next_renew.expect("a next renewal");
            assert!(
                next >= t0 + every / 2 && next <= t0 + every,
                "{:?}",
                next - t0
            );
            seen.insert((next - t0).as_millis() / 500);
        }
        // Spread over the half interval, not bunched.
        assert!(seen.len() >= 8, "{seen:?}");
    }

    #[test]
    fn renew_soon_only_brings_a_renewal_forward() {
        let t0 = Instant::now();
        let first = Duration::from_millis(800);
        let mut h = Heartbeat::new(Cadence::default());
        h.renewed(t0);
        h.renew_retry_at(t0 + Duration::from_secs(30));
        h.renew_soon(t0, first, &mut Fixed(u64::MAX));
        assert!(h.due(t0 + first).renew_lease);
        assert!(!h.due(t0 + first - Duration::from_millis(1)).renew_lease);
        // Already due sooner: left alone.
        h.renew_retry_at(t0 + Duration::from_millis(100));
        h.renew_soon(t0, first, &mut Fixed(u64::MAX));
        assert!(h.due(t0 + Duration::from_millis(100)).renew_lease);
        assert_eq!(h.last_renewed(), Some(t0));
    }

    #[test]
    fn status_reported_on_change_or_every_five_minutes() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(Cadence::default());
        assert!(h.status_computed(t0, 1));
        h.status_reported(t0, 1);
        let mut reports = 0;
        for i in 1..=60u64 {
            let now = t0 + Duration::from_secs(10 * i);
            assert!(h.due(now).compute_status);
            if h.status_computed(now, 1) {
                reports += 1;
                h.status_reported(now, 1);
            }
        }
        // 10 minutes of unchanged status: two periodic reports.
        assert_eq!(reports, 2);
        let now = t0 + Duration::from_secs(610);
        assert!(h.status_computed(now, 2), "a change is reported at once");
    }

    #[test]
    fn chosen_retry_and_forced_report() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(Cadence::default());
        h.renewed(t0);
        h.renew_retry_at(t0 + Duration::from_secs(25));
        assert_eq!(h.renew_failures(), 1);
        assert!(!h.due(t0 + Duration::from_secs(24)).renew_lease);
        assert!(h.due(t0 + Duration::from_secs(25)).renew_lease);
        h.status_computed(t0, 9);
        h.status_reported(t0, 9);
        assert!(!h.status_computed(t0 + Duration::from_secs(10), 9));
        h.force_report();
        assert!(h.status_computed(t0 + Duration::from_secs(20), 9));
        h.compute_at(t0 + Duration::from_secs(21));
        assert!(h.due(t0 + Duration::from_secs(21)).compute_status);
        assert_eq!(h.cadence().renew_interval, Duration::from_secs(10));
    }
}
