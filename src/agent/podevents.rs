//! Pod Events as the kubelet records them (Pulling, Pulled, Failed, BackOff, Created, Started,
//! Killing, Unhealthy, FailedMount, ...): the engine raises them where it decides; this module
//! keeps those of API pods, stamps them and bounds how many wait to be sent.
//!
//! Sans-I/O: callers pass the clocks in and send what [`EventRecorder::take`] returns through
//! the correlator (`eventcorrelator`), which folds repeats into one object and rate-limits each
//! object as client-go does. Events are advisory: when too many wait (a long outage), the
//! newest are dropped, never queued without bound. It must not decide anything about pods.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::k8s::events::{Event, ObjectReference};
use crate::reconcile::status::{EventType, PodEvent as EngineEvent};

/// Burst of the node-wide limit (the kubelet's `eventBurst` default).
const BURST: u32 = 100;
/// Sustained events per second node-wide (the kubelet's `eventRecordQPS` default).
const RATE: u32 = 50;
/// Events waiting to be sent at most.
const MAX_PENDING: usize = 100;

/// One event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// Pod UID.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Container (for `fieldPath`), if any.
    pub container: Option<String>,
    /// Normal or Warning.
    pub event_type: &'static str,
    /// Pulling, Started, ...
    pub reason: String,
    /// Human text.
    pub message: String,
    /// When it happened (wall clock).
    pub at: SystemTime,
}

impl PodEvent {
    /// The core/v1 Event the kubelet on `node` would post for it.
    pub fn to_event(&self, node: &str) -> Event {
        let regarding = ObjectReference {
            kind: "Pod".into(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            api_version: "v1".into(),
            resource_version: String::new(),
            field_path: self
                .container
                .as_ref()
                .map(|c| format!("spec.containers{{{c}}}"))
                .unwrap_or_default(),
        };
        Event::from_kubelet(
            node,
            regarding,
            self.event_type,
            &self.reason,
            &self.message,
            self.at,
        )
    }
}

/// Keeps, stamps and bounds the events of API pods.
#[derive(Debug)]
pub struct EventRecorder {
    /// Node-wide token bucket: when its debt is paid off (see `take_token`).
    paid_off: Instant,
    out: VecDeque<PodEvent>,
    pods: BTreeMap<String, (String, String)>,
    /// Stamp of the last event: each one gets a later one, since the object name is made of
    /// it (`POD.<hex nanoseconds>`, as upstream) and must not repeat.
    last_at: Option<SystemTime>,
}

impl EventRecorder {
    /// A recorder with a full bucket.
    pub fn new(now: Instant) -> Self {
        EventRecorder {
            paid_off: now,
            out: VecDeque::new(),
            pods: BTreeMap::new(),
            last_at: None,
        }
    }

    /// Pods events may be recorded for (API pods): UID → (namespace, name).
    pub fn set_pods(&mut self, pods: BTreeMap<String, (String, String)>) {
        self.pods = pods;
    }

    fn take_token(&mut self, now: Instant) -> bool {
        let period = Duration::from_secs(1) / RATE;
        let tolerance = period.saturating_mul(BURST - 1);
        let paid_off = self.paid_off.max(now);
        if paid_off.saturating_duration_since(now) > tolerance {
            return false;
        }
        self.paid_off = paid_off.checked_add(period).unwrap_or(paid_off);
        true
    }

    /// Records the engine's events (oldest first) that happened by `now` / `wall`.
    pub fn record(&mut self, now: Instant, wall: SystemTime, events: Vec<EngineEvent>) {
        for e in events {
            let Some((namespace, name)) = self.pods.get(&e.pod.uid).cloned() else {
                continue;
            };
            if self.out.len() >= MAX_PENDING || !self.take_token(now) {
                continue;
            }
            let at = match self.last_at {
                Some(last) if last >= wall => last + Duration::from_nanos(1),
                _ => wall,
            };
            self.last_at = Some(at);
            self.out.push_back(PodEvent {
                uid: e.pod.uid,
                namespace,
                name,
                container: e.container,
                event_type: match e.kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                },
                reason: e.reason,
                message: e.message,
                at,
            });
        }
    }

    /// Events ready to send.
    pub fn take(&mut self) -> Vec<PodEvent> {
        self.out.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::PodRef;

    fn engine_event(uid: &str, reason: &str) -> EngineEvent {
        EngineEvent {
            pod: PodRef {
                uid: uid.into(),
                namespace: "ignored".into(),
                name: "ignored".into(),
            },
            container: Some("c".into()),
            kind: EventType::Warning,
            reason: reason.into(),
            message: format!("{reason} happened"),
        }
    }

    fn wall() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn only_api_pods_get_events_named_from_the_api_object() {
        let t0 = Instant::now();
        let mut r = EventRecorder::new(t0);
        r.set_pods([("u".to_string(), ("d".to_string(), "p".to_string()))].into());
        r.record(
            t0,
            wall(),
            vec![
                engine_event("u", "BackOff"),
                engine_event("static", "Pulled"),
            ],
        );
        let got = r.take();
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!((e.namespace.as_str(), e.name.as_str()), ("d", "p"));
        assert_eq!(e.event_type, "Warning");
        assert_eq!(e.reason, "BackOff");
        let core = e.to_event("node-1");
        assert_eq!(core.involved_object.field_path, "spec.containers{c}");
        assert_eq!(core.involved_object.uid, "u");
        assert_eq!(core.message, "BackOff happened");
        assert_eq!(core.source.host, "node-1");
        assert_eq!(core.count, 1);
        assert!(r.take().is_empty());
    }

    #[test]
    fn events_of_one_instant_get_distinct_names() {
        let t0 = Instant::now();
        let mut r = EventRecorder::new(t0);
        r.set_pods([("u".to_string(), ("d".to_string(), "p".to_string()))].into());
        let batch = vec![engine_event("u", "Failed"), engine_event("u", "Failed")];
        r.record(t0, wall(), batch);
        r.record(t0, wall(), vec![engine_event("u", "Failed")]);
        let names: std::collections::BTreeSet<String> = r
            .take()
            .iter()
            .map(|e| e.to_event("n").metadata.name)
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn node_wide_limit_and_pending_bound() {
        let t0 = Instant::now();
        let mut r = EventRecorder::new(t0);
        r.set_pods([("u".to_string(), ("d".to_string(), "p".to_string()))].into());
        let many = (0..300).map(|_| engine_event("u", "Unhealthy")).collect();
        r.record(t0, wall(), many);
        assert_eq!(r.take().len(), MAX_PENDING);
        // The burst of 100 is spent; 1 s later 50 more are allowed.
        r.record(t0, wall(), vec![engine_event("u", "Unhealthy")]);
        assert!(r.take().is_empty());
        let t1 = t0 + Duration::from_secs(1);
        let many = (0..300).map(|_| engine_event("u", "Unhealthy")).collect();
        r.record(t1, wall(), many);
        assert_eq!(r.take().len(), RATE as usize);
    }
}
