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

/// Start clocks of the pods the agent knows: a clock runs from a pod's first sighting until it
/// has started (then the pod is only remembered, so it is not timed again).
#[derive(Debug, Default)]
pub struct StartClock {
    pods: BTreeMap<String, Option<Track>>,
}

impl StartClock {
    /// The pods known now (`uids`, e.g. the engine's): new ones reached the agent at `at`,
    /// gone ones are forgotten. Allocates nothing when the set did not change.
    pub fn sync<'a, I>(&mut self, uids: I, at: Instant)
    where
        I: Iterator<Item = &'a str> + Clone,
    {
        if uids.clone().count() == self.pods.len()
            && uids.clone().all(|u| self.pods.contains_key(u))
        {
            return;
        }
        let now: std::collections::BTreeSet<&str> = uids.collect();
        self.pods.retain(|uid, _| now.contains(uid.as_str()));
        for uid in now {
            self.seen(uid, at);
        }
    }

    /// The pod reached the agent at `at` (a pod already known keeps its first time).
    pub fn seen(&mut self, uid: &str, at: Instant) {
        self.pods.entry(uid.to_string()).or_insert(Some(Track {
            seen: at,
            runtime: Duration::ZERO,
            in_flight: 0,
            busy_since: None,
            calls: 0,
        }));
    }

    fn timing(&mut self, uid: &str) -> Option<&mut Track> {
        self.pods.get_mut(uid).and_then(Option::as_mut)
    }

    /// A runtime call of the pod went out at `at`.
    pub fn call_started(&mut self, uid: &str, at: Instant) {
        if let Some(t) = self.timing(uid) {
            if t.in_flight == 0 {
                t.busy_since = Some(at);
            }
            t.in_flight += 1;
            t.calls += 1;
        }
    }

    /// A runtime call of the pod returned at `at`.
    pub fn call_ended(&mut self, uid: &str, at: Instant) {
        if let Some(t) = self.timing(uid) {
            t.in_flight = t.in_flight.saturating_sub(1);
            if t.in_flight == 0 {
                if let Some(since) = t.busy_since.take() {
                    t.runtime += at.saturating_duration_since(since);
                }
            }
        }
    }

    /// All containers of the pod run at `at`: its breakdown, if the agent started it (a pod
    /// found running, e.g. adopted after a restart, made no calls). Its clock stops either way.
    pub fn started(&mut self, uid: &str, at: Instant) -> Option<StartBreakdown> {
        let t = self.pods.get_mut(uid)?.take()?;
        (t.calls > 0).then(|| StartBreakdown {
            total: at.saturating_duration_since(t.seen),
            runtime: t.runtime,
            calls: t.calls,
        })
    }

    /// Whether the pod's start is being timed.
    pub fn tracks(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(Option::is_some)
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
        c.sync(["adopted"].into_iter(), t0);
        assert!(!c.tracks("gone"));
        c.call_ended("gone", t0 + ms(3)); // late results of forgotten pods are ignored
        c.call_started("never-seen", t0);
        assert!(!c.tracks("never-seen"));
    }

    #[test]
    fn sync_starts_clocks_once_per_pod() {
        let t0 = Instant::now();
        let mut c = StartClock::default();
        c.sync(["a", "b"].into_iter(), t0);
        assert!(c.tracks("a") && c.tracks("b"));
        c.call_started("a", t0 + ms(1));
        c.call_ended("a", t0 + ms(9));
        assert_eq!(c.started("a", t0 + ms(10)).unwrap().total, ms(10));
        // Started pods stay known: a later sync does not time them again.
        c.sync(["a", "b", "c"].into_iter(), t0 + ms(20));
        assert!(!c.tracks("a"));
        assert!(c.tracks("c"));
        c.call_started("c", t0 + ms(21));
        c.call_ended("c", t0 + ms(25));
        assert_eq!(c.started("c", t0 + ms(26)).unwrap().total, ms(6));
        // A pod that went and came back (same UID) is a new sighting.
        c.sync(["b"].into_iter(), t0 + ms(30));
        c.sync(["a", "b"].into_iter(), t0 + ms(40));
        assert!(c.tracks("a"));
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
