//! When the proxy loop syncs, sans I/O: a full resync every period (repairs drift), an
//! incremental sync as soon as the source changes. Time is passed in, never read here.

use std::time::{Duration, Instant};

use super::backend::SyncMode;

/// Sync timing state.
#[derive(Debug, Clone)]
pub struct Schedule {
    period: Duration,
    last_full: Option<Instant>,
}

impl Schedule {
    /// Full resyncs every `period`; the first call is always due.
    pub fn new(period: Duration) -> Self {
        Schedule {
            period,
            last_full: None,
        }
    }

    /// What to run at `now`, given whether the source changed since the last attempt.
    pub fn next(&self, now: Instant, source_changed: bool) -> Option<SyncMode> {
        let due = self
            .last_full
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period);
        if due {
            Some(SyncMode::Full)
        } else if source_changed {
            Some(SyncMode::Incremental)
        } else {
            None
        }
    }

    /// Record an attempt (successful or not: a failing source is retried when it changes or
    /// at the next period, not in a tight loop).
    pub fn attempted(&mut self, now: Instant, mode: SyncMode) {
        if mode == SyncMode::Full {
            self.last_full = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_first_then_on_period_incremental_on_change() {
        let t0 = Instant::now();
        let s30 = Duration::from_secs(30);
        let mut s = Schedule::new(s30);
        assert_eq!(s.next(t0, false), Some(SyncMode::Full));
        s.attempted(t0, SyncMode::Full);
        assert_eq!(s.next(t0 + Duration::from_secs(1), false), None);
        assert_eq!(
            s.next(t0 + Duration::from_secs(1), true),
            Some(SyncMode::Incremental)
        );
        s.attempted(t0 + Duration::from_secs(1), SyncMode::Incremental);
        // An incremental sync does not postpone the periodic full resync.
        assert_eq!(s.next(t0 + Duration::from_secs(29), false), None);
        assert_eq!(s.next(t0 + s30, false), Some(SyncMode::Full));
        assert_eq!(s.next(t0 + s30, true), Some(SyncMode::Full));
        s.attempted(t0 + s30, SyncMode::Full);
        assert_eq!(s.next(t0 + s30 + Duration::from_secs(5), false), None);
        // A clock that seems to go backwards never panics and never fires early.
        assert_eq!(s.next(t0, false), None);
    }
}
