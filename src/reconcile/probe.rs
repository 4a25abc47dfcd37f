//! Timing and threshold state of one probe of one container instance.
//!
//! It decides when the probe is due and folds results into a pass/fail verdict; running the
//! probe is the executor's job.

use std::time::Instant;

use super::action::ActionId;
use super::model::ProbeSpec;

/// What a result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Threshold not crossed; nothing changed.
    Unchanged,
    /// The success threshold was reached.
    Passed,
    /// The failure threshold was reached.
    Failed,
}

/// One probe's schedule and counters.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    spec: ProbeSpec,
    next_due: Instant,
    in_flight: Option<ActionId>,
    successes: u32,
    failures: u32,
    passing: Option<bool>,
    last_message: Option<String>,
}

impl ProbeTracker {
    /// A tracker for a container that started at `started`: first due after the initial delay.
    pub fn new(spec: ProbeSpec, started: Instant) -> Self {
        let next_due = started.checked_add(spec.initial_delay).unwrap_or(started);
        ProbeTracker {
            spec,
            next_due,
            in_flight: None,
            successes: 0,
            failures: 0,
            passing: None,
            last_message: None,
        }
    }

    /// The spec it runs.
    pub fn spec(&self) -> &ProbeSpec {
        &self.spec
    }

    /// When the next probe should run, or None while one is running.
    pub fn due_at(&self) -> Option<Instant> {
        match self.in_flight {
            Some(_) => None,
            None => Some(self.next_due),
        }
    }

    /// Whether a probe should be dispatched at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.due_at().is_some_and(|t| now >= t)
    }

    /// Notes a dispatched probe; the next one is due one period after this one started.
    pub fn dispatched(&mut self, id: ActionId, now: Instant) {
        self.in_flight = Some(id);
        self.next_due = now.checked_add(self.spec.effective_period()).unwrap_or(now);
    }

    /// The id of the probe currently running.
    pub fn in_flight(&self) -> Option<ActionId> {
        self.in_flight
    }

    /// Folds in a result of the running probe.
    pub fn result(&mut self, ok: bool, message: Option<String>) -> Verdict {
        self.in_flight = None;
        self.last_message = message;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.spec.success_threshold.max(1) && self.passing != Some(true) {
                self.passing = Some(true);
                return Verdict::Passed;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.spec.failure_threshold.max(1) {
                // Counting starts over so a kept-alive container is judged afresh.
                self.failures = 0;
                self.passing = Some(false);
                return Verdict::Failed;
            }
        }
        Verdict::Unchanged
    }

    /// Current verdict: None until a threshold was first reached.
    pub fn passing(&self) -> Option<bool> {
        self.passing
    }

    /// Message of the last failed probe, if the last one failed.
    pub fn last_message(&self) -> Option<&str> {
        self.last_message.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::model::ProbeHandler;
    use std::time::Duration;

    fn spec() -> ProbeSpec {
        ProbeSpec::new(ProbeHandler::TcpSocket {
            host: String::new(),
            port: 1,
        })
    }

    #[test]
    fn schedule_follows_initial_delay_and_period() {
        let t0 = Instant::now();
        let mut s = spec();
        s.initial_delay = Duration::from_secs(5);
        let mut p = ProbeTracker::new(s, t0);
        assert!(!p.is_due(t0 + Duration::from_secs(4)));
        assert!(p.is_due(t0 + Duration::from_secs(5)));
        p.dispatched(ActionId(1), t0 + Duration::from_secs(5));
        assert_eq!(p.due_at(), None);
        assert_eq!(p.result(true, None), Verdict::Passed);
        assert_eq!(p.due_at(), Some(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn thresholds() {
        let t0 = Instant::now();
        let mut s = spec();
        s.success_threshold = 2;
        let mut p = ProbeTracker::new(s, t0);
        assert_eq!(p.result(true, None), Verdict::Unchanged);
        assert_eq!(p.result(true, None), Verdict::Passed);
        assert_eq!(p.result(true, None), Verdict::Unchanged);
        assert_eq!(p.result(false, None), Verdict::Unchanged);
        assert_eq!(p.result(false, None), Verdict::Unchanged);
        assert_eq!(p.passing(), Some(true));
        assert_eq!(p.result(false, Some("x".into())), Verdict::Failed);
        assert_eq!(p.passing(), Some(false));
        assert_eq!(p.last_message(), Some("x"));
    }
}
