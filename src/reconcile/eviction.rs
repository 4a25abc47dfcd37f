//! Eviction under pressure: which hard threshold is crossed, and which pod goes first.
//!
//! The kubelet's rules (node-pressure eviction): the signals `memory.available`,
//! `nodefs.available`, `nodefs.inodesFree` and `imagefs.available` are compared with
//! `evictionHard`; a crossed disk signal first reclaims node-level resources (unused images,
//! dead containers) and evicts only if that was not enough; a crossed memory signal evicts.
//! Pods are ranked as upstream ranks them: first those whose usage of the starved resource
//! exceeds their request, then by priority (lowest first), then by usage above the request
//! (largest first). One pod per round; the next round waits until the evicted pod is gone
//! or a minimum interval passed. Static pods and pods with a system-critical priority are
//! never evicted. Pressure stays reported for `transition` after the signal clears
//! (`evictionPressureTransitionPeriod`), so a node does not flap.
//!
//! Pure: the caller measures and hands in the instant.

use std::time::{Duration, Instant};

/// The priority from which a pod is system-critical (`system-cluster-critical` is 2e9,
/// `system-node-critical` 2e9 + 1000).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A hard-eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`.
    MemoryAvailable,
    /// `nodefs.available`.
    NodefsAvailable,
    /// `nodefs.inodesFree`.
    NodefsInodesFree,
    /// `imagefs.available`.
    ImagefsAvailable,
}

impl Signal {
    /// The kubelet's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
        }
    }

    /// From the kubelet's spelling.
    pub fn parse(s: &str) -> Option<Signal> {
        Some(match s {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            _ => return None,
        })
    }

    /// The resource named in the eviction message.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable => "ephemeral-storage",
            Signal::NodefsInodesFree => "inodes",
        }
    }

    /// Whether the signal is about memory (else disk).
    pub fn is_memory(self) -> bool {
        self == Signal::MemoryAvailable
    }
}

/// A threshold value: an absolute amount or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Bytes (or inodes).
    Quantity(u64),
    /// Thousandths of a percent of the capacity.
    MilliPercent(u32),
}

/// One measured signal: what is available of what capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Available now.
    pub available: u64,
    /// Capacity.
    pub capacity: u64,
}

/// One threshold that is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossed {
    /// Which signal.
    pub signal: Signal,
    /// The threshold, resolved to an amount.
    pub threshold: u64,
    /// What was available.
    pub available: u64,
}

/// The thresholds crossed by `readings`; signals without a reading are skipped.
pub fn crossed(
    thresholds: &[(Signal, Value)],
    reading: impl Fn(Signal) -> Option<Reading>,
) -> Vec<Crossed> {
    let mut out = Vec::new();
    for &(signal, value) in thresholds {
        let Some(r) = reading(signal) else { continue };
        let threshold = match value {
            Value::Quantity(q) => q,
            Value::MilliPercent(m) => (r.capacity as u128 * u128::from(m) / 100_000) as u64,
        };
        if r.available < threshold {
            out.push(Crossed {
                signal,
                threshold,
                available: r.available,
            });
        }
    }
    out
}

/// A pod as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Pod UID.
    pub uid: String,
    /// `namespace/name`, for messages.
    pub name: String,
    /// Static (from the manifest dir) or system-critical: never evicted.
    pub exempt: bool,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Memory in use (working set), bytes.
    pub memory_usage: u64,
    /// Sum of the containers' memory requests, bytes.
    pub memory_request: u64,
    /// Local disk in use (logs, emptyDirs, writable layers), bytes.
    pub disk_usage: u64,
    /// Sum of the containers' ephemeral-storage requests, bytes.
    pub disk_request: u64,
}

impl Candidate {
    fn usage(&self, s: Signal) -> (u64, u64) {
        if s.is_memory() {
            (self.memory_usage, self.memory_request)
        } else {
            (self.disk_usage, self.disk_request)
        }
    }
}

/// The order in which pods are evicted for `signal`: exceeding the request first, then the
/// lowest priority, then the most above the request. Exempt pods are left out.
pub fn rank(signal: Signal, pods: &[Candidate]) -> Vec<&Candidate> {
    let mut v: Vec<&Candidate> = pods.iter().filter(|p| !p.exempt).collect();
    v.sort_by(|a, b| {
        let (ua, ra) = a.usage(signal);
        let (ub, rb) = b.usage(signal);
        let exceeds_a = ua > ra;
        let exceeds_b = ub > rb;
        exceeds_b
            .cmp(&exceeds_a)
            .then(a.priority.cmp(&b.priority))
            .then((ub.saturating_sub(rb)).cmp(&ua.saturating_sub(ra)))
            .then(a.uid.cmp(&b.uid))
    });
    v
}

/// The node's pressure as reported in its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    /// MemoryPressure.
    pub memory: bool,
    /// DiskPressure.
    pub disk: bool,
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The pressure to report.
    pub pressure: Pressure,
    /// A disk signal is crossed: reclaim images and dead containers first.
    pub reclaim: bool,
    /// The pod to evict now, with the message for its status.
    pub evict: Option<Eviction>,
}

/// One eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Pod UID.
    pub uid: String,
    /// The signal that made it go.
    pub signal: Signal,
    /// `status.message`, worded as the kubelet words it.
    pub message: String,
}

/// The eviction manager's memory between rounds.
#[derive(Debug, Clone)]
pub struct Manager {
    transition: Duration,
    min_interval: Duration,
    memory_seen: Option<Instant>,
    disk_seen: Option<Instant>,
    /// Disk signals crossed in the last round, so the next one knows a reclaim already ran.
    reclaimed_for: Vec<Signal>,
    last_eviction: Option<(Instant, String)>,
}

impl Manager {
    /// A manager keeping pressure up for `transition` after it clears, and evicting at most
    /// one pod per `min_interval` while the last evicted pod is still there.
    pub fn new(transition: Duration, min_interval: Duration) -> Self {
        Manager {
            transition,
            min_interval,
            memory_seen: None,
            disk_seen: None,
            reclaimed_for: Vec::new(),
            last_eviction: None,
        }
    }

    /// One round at `now` with the crossed thresholds and the pods on the node.
    pub fn round(&mut self, now: Instant, crossed: &[Crossed], pods: &[Candidate]) -> Decision {
        let memory = crossed.iter().any(|c| c.signal.is_memory());
        let disk: Vec<Signal> = crossed
            .iter()
            .filter(|c| !c.signal.is_memory())
            .map(|c| c.signal)
            .collect();
        if memory {
            self.memory_seen = Some(now);
        }
        if !disk.is_empty() {
            self.disk_seen = Some(now);
        }
        let held = |seen: Option<Instant>| {
            seen.is_some_and(|t| now.saturating_duration_since(t) < self.transition)
        };
        let mut d = Decision {
            pressure: Pressure {
                memory: memory || held(self.memory_seen),
                disk: !disk.is_empty() || held(self.disk_seen),
            },
            ..Default::default()
        };
        // Disk: reclaim first; evict only when the same signal is still crossed after a
        // reclaim ran in the previous round.
        let reclaimed_before = std::mem::take(&mut self.reclaimed_for);
        let disk_evictable: Vec<Signal> = disk
            .iter()
            .copied()
            .filter(|s| reclaimed_before.contains(s))
            .collect();
        if !disk.is_empty() {
            d.reclaim = true;
            self.reclaimed_for = disk.clone();
        }
        // The starved signal: memory before disk.
        let starved = crossed
            .iter()
            .filter(|c| c.signal.is_memory() || disk_evictable.contains(&c.signal))
            .min_by_key(|c| c.signal);
        let Some(c) = starved else {
            return d;
        };
        if let Some((at, uid)) = &self.last_eviction {
            let still_there = pods.iter().any(|p| &p.uid == uid);
            if still_there && now.saturating_duration_since(*at) < self.min_interval {
                return d;
            }
        }
        let Some(victim) = rank(c.signal, pods).into_iter().next() else {
            return d;
        };
        let (usage, request) = victim.usage(c.signal);
        let message = format!(
            "The node was low on resource: {}. Threshold quantity: {}, available: {}. \
             Pod {} was using {}, request is {}.",
            c.signal.resource(),
            quantity(c.threshold, c.signal),
            quantity(c.available, c.signal),
            victim.name,
            quantity(usage, c.signal),
            quantity(request, c.signal),
        );
        self.last_eviction = Some((now, victim.uid.clone()));
        d.evict = Some(Eviction {
            uid: victim.uid.clone(),
            signal: c.signal,
            message,
        });
        d
    }
}

/// An amount as the kubelet prints it: binary suffixes for bytes, a plain count for inodes.
fn quantity(n: u64, s: Signal) -> String {
    if s == Signal::NodefsInodesFree {
        return n.to_string();
    }
    for (suffix, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn pod(uid: &str, prio: i32, used: u64, req: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            name: format!("ns/{uid}"),
            exempt: false,
            priority: prio,
            memory_usage: used,
            memory_request: req,
            disk_usage: 0,
            disk_request: 0,
        }
    }

    fn mem(available: u64) -> Vec<Crossed> {
        crossed(
            &[(Signal::MemoryAvailable, Value::Quantity(100 * MI))],
            |s| {
                (s == Signal::MemoryAvailable).then_some(Reading {
                    available,
                    capacity: 1024 * MI,
                })
            },
        )
    }

    #[test]
    fn thresholds_as_amounts_and_percentages() {
        let r = |s: Signal| {
            Some(match s {
                Signal::MemoryAvailable => Reading {
                    available: 99 * MI,
                    capacity: 1024 * MI,
                },
                Signal::NodefsAvailable => Reading {
                    available: 9,
                    capacity: 100,
                },
                Signal::NodefsInodesFree => Reading {
                    available: 50,
                    capacity: 100,
                },
                Signal::ImagefsAvailable => return None,
            })
        };
        let c = crossed(
            &[
                (Signal::MemoryAvailable, Value::Quantity(100 * MI)),
                (Signal::NodefsAvailable, Value::MilliPercent(10_000)),
                (Signal::NodefsInodesFree, Value::MilliPercent(5_000)),
                (Signal::ImagefsAvailable, Value::MilliPercent(15_000)),
            ],
            r,
        );
        let signals: Vec<Signal> = c.iter().map(|c| c.signal).collect();
        assert_eq!(signals, [Signal::MemoryAvailable, Signal::NodefsAvailable]);
        assert_eq!(c[1].threshold, 10);
        // Exactly at the threshold is not below it.
        assert!(mem(100 * MI).is_empty());
    }

    #[test]
    fn ranking_follows_the_kubelet() {
        let pods = vec![
            pod("guaranteed-high", 1000, 50 * MI, 100 * MI), // under its request
            pod("burstable-over", 0, 300 * MI, 100 * MI),    // 200 Mi over
            pod("besteffort", 0, 150 * MI, 0),               // 150 Mi over
            pod("low-prio-over", -10, 120 * MI, 100 * MI),   // 20 Mi over, lowest priority
            Candidate {
                exempt: true,
                ..pod("static", -100, 900 * MI, 0)
            },
        ];
        let order: Vec<&str> = rank(Signal::MemoryAvailable, &pods)
            .iter()
            .map(|p| p.uid.as_str())
            .collect();
        assert_eq!(
            order,
            [
                "low-prio-over",
                "burstable-over",
                "besteffort",
                "guaranteed-high"
            ]
        );
    }

    #[test]
    fn memory_pressure_evicts_one_pod_per_round_and_names_the_signal() {
        let t0 = Instant::now();
        let mut m = Manager::new(Duration::from_secs(300), Duration::from_secs(30));
        let pods = vec![pod("a", 0, 300 * MI, 0), pod("b", 0, 100 * MI, 0)];
        let d = m.round(t0, &mem(50 * MI), &pods);
        assert!(d.pressure.memory && !d.pressure.disk);
        let e = d.evict.expect("evicts");
        assert_eq!(e.uid, "a");
        assert_eq!(
            e.message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Pod ns/a was using 300Mi, request is 0."
        );
        // Next round, "a" still there and shortly after: wait.
        let d = m.round(t0 + Duration::from_secs(10), &mem(50 * MI), &pods);
        assert!(d.evict.is_none());
        // "a" gone: the next one goes at once.
        let d = m.round(t0 + Duration::from_secs(11), &mem(50 * MI), &pods[1..]);
        assert_eq!(d.evict.map(|e| e.uid).as_deref(), Some("b"));
    }

    #[test]
    fn pressure_is_held_for_the_transition_period() {
        let t0 = Instant::now();
        let mut m = Manager::new(Duration::from_secs(300), Duration::from_secs(30));
        assert!(m.round(t0, &mem(50 * MI), &[]).pressure.memory);
        let d = m.round(t0 + Duration::from_secs(299), &[], &[]);
        assert!(d.pressure.memory && d.evict.is_none());
        assert!(
            !m.round(t0 + Duration::from_secs(300), &[], &[])
                .pressure
                .memory
        );
    }

    #[test]
    fn disk_pressure_reclaims_before_it_evicts() {
        let t0 = Instant::now();
        let mut m = Manager::new(Duration::ZERO, Duration::from_secs(30));
        let disk = vec![Crossed {
            signal: Signal::NodefsAvailable,
            threshold: 10 << 30,
            available: 5 << 30,
        }];
        let mut p = pod("writer", 0, 0, 0);
        p.disk_usage = 4 << 30;
        let pods = vec![p];
        let d = m.round(t0, &disk, &pods);
        assert!(d.pressure.disk && d.reclaim && d.evict.is_none());
        // Still crossed after the reclaim: evict.
        let d = m.round(t0 + Duration::from_secs(10), &disk, &pods);
        let e = d.evict.expect("evicts after reclaim");
        assert!(e.message.starts_with("The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi."), "{}", e.message);
        // Cleared by the reclaim: no eviction.
        let mut m = Manager::new(Duration::ZERO, Duration::from_secs(30));
        m.round(t0, &disk, &pods);
        let d = m.round(t0 + Duration::from_secs(10), &[], &pods);
        assert!(!d.pressure.disk && !d.reclaim && d.evict.is_none());
    }

    #[test]
    fn exempt_pods_are_never_evicted() {
        let t0 = Instant::now();
        let mut m = Manager::new(Duration::ZERO, Duration::ZERO);
        let pods = vec![Candidate {
            exempt: true,
            ..pod("static", 0, 900 * MI, 0)
        }];
        let d = m.round(t0, &mem(1), &pods);
        assert!(d.pressure.memory);
        assert!(d.evict.is_none());
    }

    #[test]
    fn signals_parse_and_print() {
        for s in [
            Signal::MemoryAvailable,
            Signal::NodefsAvailable,
            Signal::NodefsInodesFree,
            Signal::ImagefsAvailable,
        ] {
            assert_eq!(Signal::parse(s.as_str()), Some(s));
        }
        assert_eq!(Signal::parse("pid.available"), None);
        assert_eq!(quantity(1536, Signal::MemoryAvailable), "1536");
        assert_eq!(quantity(3 << 30, Signal::MemoryAvailable), "3Gi");
        assert_eq!(quantity(7, Signal::NodefsInodesFree), "7");
    }
}
