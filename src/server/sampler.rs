//! CPU rates from cumulative counters: `usageNanoCores` needs two samples of
//! `usageCoreNanoSeconds`. Sans-I/O: the caller passes each reading with the time it was taken
//! (the injected clock), so the rules are tested without sleeping.
//!
//! Rules: the first reading of a key gives no rate; a later one at least [`MIN_WINDOW`] after
//! the baseline gives (Δ usage ns × 10⁹ / Δ time ns) and becomes the new baseline; a reading
//! sooner than that returns the last rate and keeps the baseline (two scrapes a moment apart
//! would otherwise divide noise by a tiny window); a counter that went backwards (a restarted
//! container) restarts the baseline without a rate.

use std::collections::{HashMap, HashSet};

/// Shortest window a rate is computed over (ns).
pub const MIN_WINDOW: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    usage: u64,
    at: u64,
    rate: Option<u64>,
}

/// Per-key baselines (a container id, a pod UID, the node).
#[derive(Debug, Default)]
pub struct Sampler {
    entries: HashMap<String, Entry>,
}

impl Sampler {
    /// Records `usage` (cumulative CPU ns) for `key` taken at `at` (ns on any monotonic or
    /// wall clock, the same for every call); the rate in nano-cores when one is known.
    pub fn rate(&mut self, key: &str, usage: u64, at: u64) -> Option<u64> {
        let fresh = Entry {
            usage,
            at,
            rate: None,
        };
        let Some(prev) = self.entries.get(key).copied() else {
            self.entries.insert(key.to_string(), fresh);
            return None;
        };
        if usage < prev.usage || at < prev.at {
            self.entries.insert(key.to_string(), fresh);
            return None;
        }
        let window = at - prev.at;
        if window < MIN_WINDOW {
            return prev.rate;
        }
        let used = u128::from(usage - prev.usage);
        let rate = u64::try_from(used * 1_000_000_000 / u128::from(window)).unwrap_or(u64::MAX);
        self.entries.insert(
            key.to_string(),
            Entry {
                usage,
                at,
                rate: Some(rate),
            },
        );
        Some(rate)
    }

    /// Forgets keys not in `seen` (containers and pods that are gone).
    pub fn retain(&mut self, seen: &HashSet<String>) {
        self.entries.retain(|k, _| seen.contains(k));
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No keys held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn first_reading_has_no_rate_the_second_has_one() {
        let mut s = Sampler::default();
        assert_eq!(s.rate("c", 5 * S, 100 * S), None);
        // Half a core over 10 s: 5 s of CPU.
        assert_eq!(s.rate("c", 10 * S, 110 * S), Some(S / 2));
        // Two full cores over the next 2 s.
        assert_eq!(s.rate("c", 14 * S, 112 * S), Some(2 * S));
    }

    #[test]
    fn a_reading_inside_the_window_repeats_the_last_rate_and_keeps_the_baseline() {
        let mut s = Sampler::default();
        s.rate("c", 0, 0);
        assert_eq!(s.rate("c", S, 2 * S), Some(S / 2));
        // 100 ms later, a burst: not a rate of its own.
        assert_eq!(s.rate("c", S + S / 10, 2 * S + S / 10), Some(S / 2));
        // The baseline is still t=2 s: 1 s of CPU over 2 s.
        assert_eq!(s.rate("c", 2 * S, 4 * S), Some(S / 2));
        // Inside the window before any rate: none.
        let mut s = Sampler::default();
        s.rate("n", 0, 0);
        assert_eq!(s.rate("n", 10, 10), None);
    }

    #[test]
    fn a_counter_going_backwards_restarts_the_baseline() {
        let mut s = Sampler::default();
        s.rate("c", 50 * S, 10 * S);
        assert_eq!(s.rate("c", S, 20 * S), None);
        assert_eq!(s.rate("c", 2 * S, 21 * S), Some(S));
        // A clock going backwards too.
        assert_eq!(s.rate("c", 3 * S, 5 * S), None);
    }

    #[test]
    fn gone_keys_are_forgotten_and_huge_values_saturate() {
        let mut s = Sampler::default();
        s.rate("a", 0, 0);
        s.rate("b", 0, 0);
        s.retain(&["b".to_string()].into());
        assert_eq!(s.len(), 1);
        assert_eq!(s.rate("a", S, 2 * S), None);
        let mut s = Sampler::default();
        s.rate("x", 0, 0);
        assert_eq!(s.rate("x", u64::MAX, S), Some(u64::MAX));
    }
}
