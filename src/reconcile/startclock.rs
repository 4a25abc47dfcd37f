//! Where a pod's start time goes (sans-I/O): from the moment the agent learned of a pod until
//! all its containers run, how much of it was spent waiting for runtime calls and how much was
//! the agent's own work. The agent logs one line per started pod, as the upstream kubelet logs
//! its observed pod startup duration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One pod's start, once all its containers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartBreakdown {
    /// From the moment the pod reached the agent to all containers started.
    pub total: Duration,
    /// Time during which at least one runtime call of the pod was in flight.
    pub runtime: Duration,
    /// Runtime calls made.
    pub calls: u32,
}

impl StartBreakdown {
    /// The agent's own share: the total minus the runtime's.
    pub fn own(&self) -> Duration {
        self.total.saturating_sub(self.runtime)
    }
}

#[derive(Debug, Clone)]
struct Track {
    seen: Instant,
    runtime: Duration,
    in_flight: u32,
    busy_since: Option<Instant>,
    calls: u32,
}

/// Start clocks of the pods being started.
#[derive(Debug, Default)]
pub struct StartClock {
    pods: BTreeMap<String, Track>,
}

impl StartClock {
    /// The pod reached the agent at `at` (a pod already tracked keeps its first time).
    pub fn seen(&mut self, uid: &str, at: Instant) {
        self.pods.entry(uid.to_string()).or_insert(Track {
            seen: at,
            runtime: Duration::ZERO,
            in_flight: 0,
            busy_since: None,
            calls: 0,
        });
    }

    /// A runtime call of the pod went out at `at`.
    pub fn call_started(&mut self, uid: &str, at: Instant) {
        if let Some(t) = self.pods.get_mut(uid) {
            if t.in_flight == 0 {
                t.busy_since = Some(at);
            }
            t.in_flight += 1;
            t.calls += 1;
        }
    }

    /// A runtime call of the pod returned at `at`.
    pub fn call_ended(&mut self, uid: &str, at: Instant) {
        if let Some(t) = self.pods.get_mut(uid) {
            t.in_flight = t.in_flight.saturating_sub(1);
            if t.in_flight == 0 {
                if let Some(since) = t.busy_since.take() {
                    t.runtime += at.saturating_duration_since(since);
                }
            }
        }
    }

    /// All containers of the pod run at `at`: its breakdown, if the agent started it (a pod
    /// found running, e.g. adopted after a restart, made no calls and is only forgotten).
    pub fn started(&mut self, uid: &str, at: Instant) -> Option<StartBreakdown> {
        let t = self.pods.remove(uid)?;
        (t.calls > 0).then(|| StartBreakdown {
            total: at.saturating_duration_since(t.seen),
            runtime: t.runtime,
            calls: t.calls,
        })
    }

    /// Whether the pod's start is being timed.
    pub fn tracks(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Forgets pods for which `keep` is false (gone before they started).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pods.retain(|uid, _| keep(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn overlapping_calls_count_once_and_gaps_are_the_agents() {
        let t0 = Instant::now();
        let mut c = StartClock::default();
        c.seen("u", t0);
        c.seen("u", t0 + ms(5)); // the first sighting counts
        c.call_started("u", t0 + ms(1)); // sandbox
        c.call_ended("u", t0 + ms(61));
        c.call_started("u", t0 + ms(62)); // two containers at once
        c.call_started("u", t0 + ms(63));
        c.call_ended("u", t0 + ms(70));
        c.call_ended("u", t0 + ms(72));
        c.call_started("u", t0 + ms(73));
        c.call_ended("u", t0 + ms(120));
        let b = c.started("u", t0 + ms(121)).unwrap();
        assert_eq!(b.total, ms(121));
        assert_eq!(b.runtime, ms(60 + 10 + 47));
        assert_eq!(b.own(), ms(4));
        assert_eq!(b.calls, 4);
        assert!(!c.tracks("u"));
        assert_eq!(c.started("u", t0 + ms(130)), None);
    }

    #[test]
    fn adopted_and_vanished_pods_report_nothing() {
        let t0 = Instant::now();
        let mut c = StartClock::default();
        c.seen("adopted", t0);
        assert_eq!(c.started("adopted", t0 + ms(1)), None);
        c.seen("gone", t0);
        c.call_started("gone", t0);
        c.retain(|u| u != "gone");
        assert!(!c.tracks("gone"));
        c.call_ended("gone", t0 + ms(3)); // late results of forgotten pods are ignored
        c.call_started("never-seen", t0);
        assert!(!c.tracks("never-seen"));
    }

    #[test]
    fn clock_going_backwards_never_panics() {
        let t0 = Instant::now() + ms(100);
        let mut c = StartClock::default();
        c.seen("u", t0);
        c.call_started("u", t0);
        c.call_ended("u", t0 - ms(50));
        let b = c.started("u", t0 - ms(10)).unwrap();
        assert_eq!(b.total, Duration::ZERO);
        assert_eq!(b.own(), Duration::ZERO);
    }
}
