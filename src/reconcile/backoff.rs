//! Per-key exponential back-off with the kubelet's curve (10 s doubling to 300 s).
//!
//! Pure bookkeeping over caller-supplied instants; it never reads a clock.

use std::time::{Duration, Instant};

/// Shape of a back-off curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// First delay.
    pub initial: Duration,
    /// Cap the doubling stops at.
    pub max: Duration,
    /// A failure this long after the previous one starts the curve afresh.
    pub forget_after: Duration,
}

impl BackoffPolicy {
    /// The kubelet's curve: 10 s, ×2, cap 300 s, forgotten after 10 min (2 × cap) without failures.
    pub const KUBELET: BackoffPolicy = BackoffPolicy {
        initial: Duration::from_secs(10),
        max: Duration::from_secs(300),
        forget_after: Duration::from_secs(600),
    };
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy::KUBELET
    }
}

/// Back-off state of one key (one container's restarts, one image's pulls, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    policy: BackoffPolicy,
    delay: Option<Duration>,
    last: Option<Instant>,
}

impl Backoff {
    /// Empty back-off (the next failure gets the initial delay).
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            delay: None,
            last: None,
        }
    }

    /// Records a failure at `at`: the delay doubles (capped), or restarts at the initial value
    /// when the previous failure is older than `forget_after`.
    pub fn record(&mut self, at: Instant) {
        let next = match (self.delay, self.last) {
            (Some(d), Some(last)) if !self.forgotten(last, at) => {
                d.saturating_mul(2).min(self.policy.max)
            }
            _ => self.policy.initial,
        };
        self.delay = Some(next.min(self.policy.max));
        self.last = Some(at);
    }

    /// Forgets everything (e.g. after a long healthy run or a success).
    pub fn reset(&mut self) {
        self.delay = None;
        self.last = None;
    }

    /// The current delay, if any failure is remembered.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// When the last failure was recorded.
    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    /// End of the back-off window opened by the last recorded failure.
    pub fn until(&self) -> Option<Instant> {
        let (d, last) = (self.delay?, self.last?);
        last.checked_add(d)
    }

    /// Whether the window opened by the last recorded failure is still open at `now`.
    pub fn active(&self, now: Instant) -> bool {
        self.until().is_some_and(|u| now < u)
    }

    /// For an event (e.g. a container exit) at `event`: the end of the back-off that the
    /// current delay imposes after it, unless the state is forgotten by then.
    pub fn blocks_until(&self, event: Instant) -> Option<Instant> {
        let (d, last) = (self.delay?, self.last?);
        if self.forgotten(last, event) {
            return None;
        }
        event.checked_add(d)
    }

    fn forgotten(&self, last: Instant, at: Instant) -> bool {
        at.saturating_duration_since(last) > self.policy.forget_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_doubles_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::KUBELET);
        let mut got = Vec::new();
        let mut t = t0;
        for _ in 0..8 {
            b.record(t);
            got.push(b.delay().unwrap().as_secs());
            t += Duration::from_secs(1);
        }
        assert_eq!(got, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn forgotten_after_ten_quiet_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::KUBELET);
        b.record(t0);
        b.record(t0 + Duration::from_secs(5));
        assert_eq!(b.delay(), Some(Duration::from_secs(20)));
        // Exactly 600 s later is still remembered; just after is not.
        let t1 = t0 + Duration::from_secs(605);
        assert!(b.blocks_until(t1).is_some());
        let t2 = t0 + Duration::from_secs(606);
        assert!(b.blocks_until(t2).is_none());
        b.record(t2);
        assert_eq!(b.delay(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn window_and_reset() {
        let t0 = Instant::now();
        let mut b = Backoff::new(BackoffPolicy::KUBELET);
        assert!(!b.active(t0));
        assert_eq!(b.until(), None);
        b.record(t0);
        assert!(b.active(t0 + Duration::from_secs(9)));
        assert!(!b.active(t0 + Duration::from_secs(10)));
        assert_eq!(b.until(), Some(t0 + Duration::from_secs(10)));
        b.reset();
        assert!(!b.active(t0));
        assert_eq!(b.delay(), None);
    }
}
