//! The event correlator: what client-go's `record` package does to every Event the kubelet
//! records before it reaches the server, so a crash loop is one object with a growing count
//! instead of hundreds of objects.
//!
//! Three steps, in client-go's order, each over a bounded least-recently-used cache:
//! 1. aggregation: events alike but for their message (same source, object, type, reason) seen
//!    with [`CorrelatorConfig::aggregate_max`] distinct messages within
//!    [`CorrelatorConfig::aggregate_window`] are folded into one event whose message is
//!    `(combined from similar events): <latest message>`;
//! 2. counting: an event seen before (same source, object incl. field path, type, reason and
//!    message) becomes a PATCH of the earlier object (`count` + 1, `lastTimestamp`, `message`);
//! 3. spam filter: a token bucket per source + object ([`CorrelatorConfig::burst`] events, then
//!    one per [`CorrelatorConfig::refill`]) drops the rest. Counting happens before the filter,
//!    as upstream does, so a dropped repeat still shows in the next sent count.
//!
//! Sans-I/O: the caller passes the monotonic clock in, sends what [`EventCorrelator::correlate`]
//! returns, and hands the server's answer to [`EventCorrelator::sent`]. It must not send
//! anything or read a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::k8s::events::Event;

/// Prefix of the message of an aggregated event (client-go's wording).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// Tunables; the defaults are client-go's (`tools/record/events_cache.go`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorrelatorConfig {
    /// Entries each cache keeps, least recently used dropped first (client-go: 4096; a node
    /// holds far fewer pods, so a smaller bound keeps memory low on small devices).
    pub max_entries: usize,
    /// Distinct messages of similar events within the window before they are combined (10).
    pub aggregate_max: usize,
    /// Window of the aggregation: a similar event older than this starts afresh (10 min).
    pub aggregate_window: Duration,
    /// Events a source may send about one object in a burst (25).
    pub burst: u32,
    /// Time to earn one more event about one object once the burst is spent (5 min).
    pub refill: Duration,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            max_entries: 1024,
            aggregate_max: 10,
            aggregate_window: Duration::from_secs(600),
            burst: 25,
            refill: Duration::from_secs(300),
        }
    }
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Correlated {
    /// Rate-limited: send nothing.
    Skip,
    /// POST a new Event object.
    Create(Event),
    /// Strategic-merge-PATCH the existing object `event.metadata.name` with `patch`; should the
    /// object be gone, POST `event` instead (with no resourceVersion).
    Patch {
        /// The event as it now stands (name, count and first timestamp of the earlier one).
        event: Event,
        /// `{"count", "lastTimestamp", "message"}`.
        patch: Value,
    },
}

/// A least-recently-used map with a size bound.
#[derive(Debug, Clone)]
struct Lru<V> {
    cap: usize,
    tick: u64,
    items: BTreeMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Lru {
            cap: cap.max(1),
            tick: 0,
            items: BTreeMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        let (used, _) = self.items.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.to_string());
        self.items.get(key).map(|(_, v)| v)
    }

    fn put(&mut self, key: String, value: V) {
        self.tick += 1;
        if let Some((used, _)) = self.items.get(&key) {
            self.order.remove(used);
        }
        self.order.insert(self.tick, key.clone());
        self.items.insert(key, (self.tick, value));
        while self.items.len() > self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.items.remove(&oldest);
        }
    }

    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let drop: Vec<String> = self.items.keys().filter(|k| !keep(k)).cloned().collect();
        for k in drop {
            if let Some((used, _)) = self.items.remove(&k) {
                self.order.remove(&used);
            }
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Similar events seen lately (aggregation step).
#[derive(Debug, Clone)]
struct Similar {
    messages: BTreeSet<String>,
    last: Instant,
}

/// The last observation of one event (counting step).
#[derive(Debug, Clone)]
struct Observed {
    count: i32,
    first_timestamp: Option<String>,
    name: String,
    resource_version: String,
}

/// A token bucket (spam filter step); an unknown object's bucket is full.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    paid_off: Instant,
}

/// The correlator. One per event sink (the node's API writer).
#[derive(Debug, Clone)]
pub struct EventCorrelator {
    config: CorrelatorConfig,
    similar: Lru<Similar>,
    observed: Lru<Observed>,
    buckets: Lru<Bucket>,
}

/// Keys start with the involved object's UID so a pod's entries can be dropped when it goes.
fn object_key(e: &Event) -> String {
    let o = &e.involved_object;
    let s = &e.source;
    [
        o.uid.as_str(),
        &s.component,
        &s.host,
        &o.kind,
        &o.namespace,
        &o.name,
        &o.api_version,
    ]
    .join("\u{0}")
}

/// client-go's spam key: source and involved object.
fn spam_key(e: &Event) -> String {
    object_key(e)
}

/// client-go's aggregate key: source, object (without field path), type, reason, reporter.
fn aggregate_key(e: &Event) -> String {
    [
        object_key(e).as_str(),
        &e.event_type,
        &e.reason,
        &e.reporting_component,
        &e.reporting_instance,
    ]
    .join("\u{0}")
}

/// client-go's event key: source, object with field path, type, reason and message.
fn event_key(e: &Event) -> String {
    [
        object_key(e).as_str(),
        &e.involved_object.field_path,
        &e.event_type,
        &e.reason,
        &e.message,
    ]
    .join("\u{0}")
}

impl EventCorrelator {
    /// A correlator with empty caches.
    pub fn new(config: CorrelatorConfig) -> Self {
        EventCorrelator {
            config,
            similar: Lru::new(config.max_entries),
            observed: Lru::new(config.max_entries),
            buckets: Lru::new(config.max_entries),
        }
    }

    /// Decides what to send for `event` (built with its timestamps and a fresh name) at `now`.
    pub fn correlate(&mut self, event: Event, now: Instant) -> Correlated {
        let (event, key) = self.aggregate(event, now);
        let (event, patch) = self.observe(event, &key);
        if !self.accept(&event, now) {
            return Correlated::Skip;
        }
        match patch {
            Some(patch) => Correlated::Patch { event, patch },
            None => Correlated::Create(event),
        }
    }

    /// Records the server's copy of an event just created or patched (its name, count and
    /// resourceVersion are what the next repeat patches).
    pub fn sent(&mut self, server: &Event) {
        self.observed.put(
            event_key(server),
            Observed {
                count: server.count.max(1),
                first_timestamp: server.first_timestamp.clone(),
                name: server.metadata.name.clone(),
                resource_version: server.metadata.resource_version.clone(),
            },
        );
    }

    /// Forgets everything about objects whose UID `keep` rejects (pods that are gone).
    pub fn retain_objects(&mut self, keep: &dyn Fn(&str) -> bool) {
        let uid_ok = |k: &str| keep(k.split('\u{0}').next().unwrap_or_default());
        self.similar.retain(uid_ok);
        self.observed.retain(uid_ok);
        self.buckets.retain(uid_ok);
    }

    /// Entries held (for tests and bounds checks).
    pub fn entries(&self) -> usize {
        self.similar.len() + self.observed.len() + self.buckets.len()
    }

    fn aggregate(&mut self, event: Event, now: Instant) -> (Event, String) {
        let akey = aggregate_key(&event);
        let window = self.config.aggregate_window;
        let mut rec = match self.similar.get(&akey) {
            Some(r) if now.saturating_duration_since(r.last) <= window => r.clone(),
            _ => Similar {
                messages: BTreeSet::new(),
                last: now,
            },
        };
        rec.messages.insert(event.message.clone());
        rec.last = now;
        let combine = rec.messages.len() >= self.config.aggregate_max.max(1);
        if combine {
            // The set never grows past the threshold: one message makes room for the next.
            if let Some(m) = rec.messages.iter().next().cloned() {
                rec.messages.remove(&m);
            }
        }
        self.similar.put(akey.clone(), rec);
        if !combine {
            let key = event_key(&event);
            return (event, key);
        }
        // A new combined event; repeats of it patch the same object under the aggregate key.
        let combined = Event {
            message: format!("{COMBINED_PREFIX}{}", event.message),
            count: 1,
            first_timestamp: event.last_timestamp.clone(),
            ..event
        };
        (combined, akey)
    }

    fn observe(&mut self, mut event: Event, key: &str) -> (Event, Option<Value>) {
        let mut patch = None;
        if let Some(last) = self.observed.get(key).filter(|o| o.count > 0).cloned() {
            event.metadata.name = last.name;
            event.metadata.resource_version = last.resource_version;
            event.first_timestamp = last.first_timestamp;
            event.count = last.count.saturating_add(1);
            patch = Some(json!({
                "count": event.count,
                "lastTimestamp": event.last_timestamp,
                "message": event.message,
            }));
        }
        self.observed.put(
            key.to_string(),
            Observed {
                count: event.count.max(1),
                first_timestamp: event.first_timestamp.clone(),
                name: event.metadata.name.clone(),
                resource_version: event.metadata.resource_version.clone(),
            },
        );
        (event, patch)
    }

    /// The token bucket kept as the instant its debt is paid off (integer time, no rounding):
    /// each event adds one refill period; an event is refused while the debt exceeds what the
    /// burst allows beyond the one being spent.
    fn accept(&mut self, event: &Event, now: Instant) -> bool {
        let key = spam_key(event);
        let period = self.config.refill;
        let tolerance = period.saturating_mul(self.config.burst.max(1) - 1);
        let paid_off = self.buckets.get(&key).map_or(now, |b| b.paid_off.max(now));
        if paid_off.saturating_duration_since(now) > tolerance {
            return false;
        }
        let paid_off = paid_off.checked_add(period).unwrap_or(paid_off);
        self.buckets.put(key, Bucket { paid_off });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::events::ObjectReference;
    use std::time::SystemTime;

    fn pod(uid: &str, container: &str) -> ObjectReference {
        ObjectReference {
            kind: "Pod".into(),
            namespace: "web".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            api_version: "v1".into(),
            field_path: format!("spec.containers{{{container}}}"),
            ..Default::default()
        }
    }

    fn wall(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn ev(uid: &str, reason: &str, message: &str, secs: u64) -> Event {
        Event::from_kubelet(
            "pi-1",
            pod(uid, "app"),
            "Warning",
            reason,
            message,
            wall(secs),
        )
    }

    /// The server's answer to a create or patch: the event with a resourceVersion.
    fn served(e: &Event, rv: u32) -> Event {
        let mut s = e.clone();
        s.metadata.resource_version = rv.to_string();
        s
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    // client-go (events_cache.go, eventObserve): an event seen before under the same key
    // (source, involved object with field path, type, reason, message) is sent as a patch of
    // the first object: same name, firstTimestamp kept, count + 1, lastTimestamp moved.
    #[test]
    fn identical_events_become_one_object_with_a_growing_count() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        let first = match c.correlate(ev("u1", "BackOff", "Back-off x", 0), t0) {
            Correlated::Create(e) => e,
            other => panic!("first is a create: {other:?}"),
        };
        assert_eq!(first.count, 1);
        c.sent(&served(&first, 7));
        for n in 2..=5 {
            let secs = n * 10;
            match c.correlate(ev("u1", "BackOff", "Back-off x", secs), at(t0, secs)) {
                Correlated::Patch { event, patch } => {
                    assert_eq!(event.metadata.name, first.metadata.name);
                    assert_eq!(event.count, n as i32);
                    assert_eq!(event.first_timestamp, first.first_timestamp);
                    assert_eq!(event.last_timestamp.as_deref(), Some(&*format_at(secs)));
                    assert_eq!(patch["count"], n);
                    assert_eq!(patch["lastTimestamp"], format_at(secs));
                    assert_eq!(patch["message"], "Back-off x");
                    c.sent(&served(&event, 7 + n as u32));
                }
                other => panic!("repeat {n} is a patch: {other:?}"),
            }
        }
    }

    fn format_at(secs: u64) -> String {
        crate::k8s::coordination::format_time(wall(secs))
    }

    #[test]
    fn the_patch_carries_the_servers_resource_version_and_name() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        let Correlated::Create(first) = c.correlate(ev("u1", "Killing", "m", 0), t0) else {
            panic!("create");
        };
        let mut s = served(&first, 41);
        s.metadata.name = "renamed-by-server".into();
        s.count = 3;
        c.sent(&s);
        let Correlated::Patch { event, .. } = c.correlate(ev("u1", "Killing", "m", 1), t0) else {
            panic!("patch");
        };
        assert_eq!(event.metadata.name, "renamed-by-server");
        assert_eq!(event.metadata.resource_version, "41");
        assert_eq!(event.count, 4);
    }

    #[test]
    fn different_keys_are_different_objects() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        let base = ev("u1", "Unhealthy", "Liveness probe failed: x", 0);
        assert!(matches!(
            c.correlate(base.clone(), t0),
            Correlated::Create(_)
        ));
        // Another message, reason, type, container or pod: each a new object.
        let mut other_msg = base.clone();
        other_msg.message = "Readiness probe failed: x".into();
        let mut other_reason = base.clone();
        other_reason.reason = "Killing".into();
        let mut other_type = base.clone();
        other_type.event_type = "Normal".into();
        let mut other_container = base.clone();
        other_container.involved_object.field_path = "spec.containers{side}".into();
        let other_pod = ev("u2", "Unhealthy", "Liveness probe failed: x", 0);
        for e in [
            other_msg,
            other_reason,
            other_type,
            other_container,
            other_pod,
        ] {
            assert!(matches!(c.correlate(e, t0), Correlated::Create(_)));
        }
        // The original again is a repeat.
        assert!(matches!(c.correlate(base, t0), Correlated::Patch { .. }));
    }

    // client-go (EventAggregate): similar events (same source, object, type, reason) with
    // 10 distinct messages within 10 minutes are combined: from the 10th on, one event whose
    // message is "(combined from similar events): <message>", patched on every further one.
    #[test]
    fn similar_events_with_many_messages_are_combined() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        for i in 0..9 {
            let e = ev("u1", "Failed", &format!("Error: attempt {i}"), i);
            match c.correlate(e, at(t0, i)) {
                Correlated::Create(e) => assert_eq!(e.message, format!("Error: attempt {i}")),
                other => panic!("message {i} is its own object: {other:?}"),
            }
        }
        let combined = match c.correlate(ev("u1", "Failed", "Error: attempt 9", 9), at(t0, 9)) {
            Correlated::Create(e) => e,
            other => panic!("the 10th opens the combined object: {other:?}"),
        };
        assert_eq!(
            combined.message,
            "(combined from similar events): Error: attempt 9"
        );
        assert_eq!(combined.count, 1);
        c.sent(&served(&combined, 100));
        match c.correlate(ev("u1", "Failed", "Error: attempt 10", 10), at(t0, 10)) {
            Correlated::Patch { event, patch } => {
                assert_eq!(event.metadata.name, combined.metadata.name);
                assert_eq!(event.count, 2);
                assert_eq!(
                    patch["message"],
                    "(combined from similar events): Error: attempt 10"
                );
            }
            other => panic!("the 11th patches the combined object: {other:?}"),
        }
    }

    #[test]
    fn aggregation_starts_afresh_after_a_quiet_window() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        for i in 0..9 {
            c.correlate(ev("u1", "Failed", &format!("m{i}"), i), at(t0, i));
        }
        // More than 10 minutes after the last similar event: not combined.
        let late = at(t0, 8 + 601);
        match c.correlate(ev("u1", "Failed", "m9", 609), late) {
            Correlated::Create(e) => assert_eq!(e.message, "m9"),
            other => panic!("fresh window: {other:?}"),
        }
        // Within the window it is still separate until ten distinct messages are seen again.
        for i in 10..18 {
            let e = ev("u1", "Failed", &format!("m{i}"), 610);
            let Correlated::Create(e) = c.correlate(e, late) else {
                panic!("separate");
            };
            assert!(!e.message.starts_with(COMBINED_PREFIX));
        }
        let Correlated::Create(e) = c.correlate(ev("u1", "Failed", "m18", 610), late) else {
            panic!("combined create");
        };
        assert!(e.message.starts_with(COMBINED_PREFIX), "{}", e.message);
    }

    // client-go (EventSourceObjectSpamFilter): a token bucket per source + involved object,
    // burst 25, refilled at 1/300 per second; reasons and containers of one pod share it.
    #[test]
    fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
        let t0 = Instant::now();
        let mut c = EventCorrelator::new(CorrelatorConfig::default());
        let mut sent = 0;
        for i in 0..40 {
            let mut e = ev("u1", &format!("R{}", i % 4), &format!("m{i}"), 0);
            e.involved_object.field_path = format!("spec.containers{{c{}}}", i % 3);
            if c.correlate(e, t0) != Correlated::Skip {
                sent += 1;
            }
        }
        assert_eq!(sent, 25);
        // Another pod has its own bucket.
        assert_ne!(c.correlate(ev("u2", "R", "m", 0), t0), Correlated::Skip);
        // 299 s later: still nothing earned; at 300 s one event.
        assert_eq!(
            c.correlate(ev("u1", "X", "a", 299), at(t0, 299)),
            Correlated::Skip
        );
        assert_ne!(
            c.correlate(ev("u1", "X", "b", 300), at(t0, 300)),
            Correlated::Skip
        );
        assert_eq!(
            c.correlate(ev("u1", "X", "c", 301), at(t0, 301)),
            Correlated::Skip
        );
        // A long quiet spell refills up to the burst, not beyond.
        let later = at(t0, 300 + 300 * 100);
        let passed = (0..40)
            .filter(|i| c.correlate(ev("u1", "Y", &format!("{i}"), 0), later) != Correlated::Skip)
            .count();
        assert_eq!(passed, 25);
    }

    #[test]
    fn a_skipped_repeat_still_counts() {
        let t0 = Instant::now();
        let config = CorrelatorConfig {
            burst: 1,
            ..CorrelatorConfig::default()
        };
        let mut c = EventCorrelator::new(config);
        let Correlated::Create(first) = c.correlate(ev("u1", "BackOff", "b", 0), t0) else {
            panic!("create");
        };
        c.sent(&served(&first, 1));
        assert_eq!(
            c.correlate(ev("u1", "BackOff", "b", 10), at(t0, 10)),
            Correlated::Skip
        );
        let Correlated::Patch { event, .. } =
            c.correlate(ev("u1", "BackOff", "b", 300), at(t0, 300))
        else {
            panic!("patch once a token is earned");
        };
        assert_eq!(event.count, 3, "the dropped repeat is in the count");
    }

    #[test]
    fn caches_are_bounded_and_trimmed_per_object() {
        let t0 = Instant::now();
        let config = CorrelatorConfig {
            max_entries: 8,
            ..CorrelatorConfig::default()
        };
        let mut c = EventCorrelator::new(config);
        for i in 0..100 {
            c.correlate(ev(&format!("u{i}"), "R", "m", 0), t0);
        }
        assert!(c.entries() <= 24, "{}", c.entries());
        // The least recently used go first: the latest pod is still known.
        let Correlated::Patch { .. } = c.correlate(ev("u99", "R", "m", 1), t0) else {
            panic!("latest kept");
        };
        c.retain_objects(&|uid| uid != "u99");
        assert!(matches!(
            c.correlate(ev("u99", "R", "m", 2), t0),
            Correlated::Create(_)
        ));
        c.retain_objects(&|_| false);
        assert_eq!(c.entries(), 0);
    }
}
