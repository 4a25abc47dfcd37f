//! Pod Events as the kubelet records them (Pulling, Pulled, Created, Started, Killing, BackOff,
//! Unhealthy), derived from actions, their results and status transitions, and rate-limited.
//!
//! Sans-I/O: callers pass the clock in and send what [`EventRecorder::take`] returns. Events
//! are advisory: when the limit is reached or too many wait (a long outage), they are dropped,
//! never queued without bound. It must not decide anything about pods.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::reconcile::status::{ContainerStateView, PodStatus};
use crate::reconcile::{ActionId, ActionResult};

/// Burst of the global token bucket.
const BURST: f64 = 25.0;
/// Sustained events per second.
const RATE: f64 = 1.0;
/// The same (pod, reason, container) is reported at most this often.
const REPEAT: Duration = Duration::from_secs(30);
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
    pub reason: &'static str,
    /// Human text.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Pending {
    uid: String,
    container: String,
    what: Tracked,
}

#[derive(Debug, Clone)]
enum Tracked {
    Pull(String),
    Probe,
}

/// What was last seen of a container: instance id, running, in back-off, pod deleting.
type Seen = (Option<String>, bool, bool, bool);

/// Derives and rate-limits events.
#[derive(Debug)]
pub struct EventRecorder {
    tokens: f64,
    refilled: Instant,
    last: BTreeMap<(String, &'static str, String), Instant>,
    seen: BTreeMap<(String, String), Seen>,
    inflight: BTreeMap<ActionId, Pending>,
    out: VecDeque<PodEvent>,
    pods: BTreeMap<String, (String, String)>,
}

impl EventRecorder {
    /// A recorder with a full bucket.
    pub fn new(now: Instant) -> Self {
        EventRecorder {
            tokens: BURST,
            refilled: now,
            last: BTreeMap::new(),
            seen: BTreeMap::new(),
            inflight: BTreeMap::new(),
            out: VecDeque::new(),
            pods: BTreeMap::new(),
        }
    }

    fn emit(
        &mut self,
        now: Instant,
        uid: &str,
        container: &str,
        event_type: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let Some((namespace, name)) = self.pods.get(uid).cloned() else {
            return;
        };
        let key = (uid.to_string(), reason, container.to_string());
        if self.last.get(&key).is_some_and(|t| now < *t + REPEAT) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.refilled = now;
        if self.tokens < 1.0 || self.out.len() >= MAX_PENDING {
            return;
        }
        self.tokens -= 1.0;
        self.last.insert(key, now);
        self.out.push_back(PodEvent {
            uid: uid.to_string(),
            namespace,
            name,
            container: (!container.is_empty()).then(|| container.to_string()),
            event_type,
            reason,
            message,
        });
    }

    /// Pods events may be recorded for (API pods): UID → (namespace, name).
    pub fn set_pods(&mut self, pods: BTreeMap<String, (String, String)>) {
        self.last.retain(|k, _| pods.contains_key(&k.0));
        self.seen.retain(|k, _| pods.contains_key(&k.0));
        self.pods = pods;
    }

    /// An image pull was started.
    pub fn pull_started(&mut self, now: Instant, id: ActionId, uid: &str, c: &str, image: &str) {
        self.emit(
            now,
            uid,
            c,
            "Normal",
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        self.inflight.insert(
            id,
            Pending {
                uid: uid.into(),
                container: c.into(),
                what: Tracked::Pull(image.into()),
            },
        );
    }

    /// A probe was started (its failure becomes `Unhealthy`).
    pub fn probe_started(&mut self, id: ActionId, uid: &str, c: &str) {
        self.inflight.insert(
            id,
            Pending {
                uid: uid.into(),
                container: c.into(),
                what: Tracked::Probe,
            },
        );
    }

    /// An action finished.
    pub fn result(&mut self, now: Instant, id: ActionId, r: &ActionResult) {
        let Some(p) = self.inflight.remove(&id) else {
            return;
        };
        match (&p.what, r) {
            (Tracked::Pull(image), ActionResult::Done) => self.emit(
                now,
                &p.uid,
                &p.container,
                "Normal",
                "Pulled",
                format!("Successfully pulled image \"{image}\""),
            ),
            (Tracked::Pull(image), ActionResult::Failed { message }) => self.emit(
                now,
                &p.uid,
                &p.container,
                "Warning",
                "Failed",
                format!("Failed to pull image \"{image}\": {message}"),
            ),
            (Tracked::Probe, ActionResult::ProbeFailed { .. }) => self.emit(
                now,
                &p.uid,
                &p.container,
                "Warning",
                "Unhealthy",
                format!("Probe failed for container {}", p.container),
            ),
            _ => {}
        }
    }

    /// Status transitions: a new running instance (Created, Started), a back-off, deletion.
    pub fn observe(&mut self, now: Instant, views: &[PodStatus]) {
        for v in views {
            if !self.pods.contains_key(&v.uid) {
                continue;
            }
            for c in v.init_containers.iter().chain(v.containers.iter()) {
                let key = (v.uid.clone(), c.name.clone());
                let running = matches!(c.state, ContainerStateView::Running { .. });
                let backoff = c.state.waiting_reason()
                    == Some(crate::reconcile::status::reason::CRASH_LOOP_BACK_OFF);
                let prev = self.seen.get(&key).cloned();
                let id = c.container_id.clone();
                if running && prev.as_ref().is_none_or(|p| p.0 != id || !p.1) {
                    let name = c.name.clone();
                    self.emit(
                        now,
                        &v.uid,
                        &name,
                        "Normal",
                        "Created",
                        format!("Created container {name}"),
                    );
                    self.emit(
                        now,
                        &v.uid,
                        &name,
                        "Normal",
                        "Started",
                        format!("Started container {name}"),
                    );
                }
                if backoff && !prev.as_ref().is_some_and(|p| p.2) {
                    let name = c.name.clone();
                    self.emit(
                        now,
                        &v.uid,
                        &name,
                        "Warning",
                        "BackOff",
                        format!("Back-off restarting failed container {name}"),
                    );
                }
                if v.deleting && running && !prev.as_ref().is_some_and(|p| p.3) {
                    let name = c.name.clone();
                    self.emit(
                        now,
                        &v.uid,
                        &name,
                        "Normal",
                        "Killing",
                        format!("Stopping container {name}"),
                    );
                }
                self.seen.insert(key, (id, running, backoff, v.deleting));
            }
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
    use crate::reconcile::status::{ContainerStatus, PodConditions};
    use crate::reconcile::PodPhase;

    fn view(id: Option<&str>, state: ContainerStateView, deleting: bool) -> PodStatus {
        PodStatus {
            uid: "u".into(),
            namespace: "d".into(),
            name: "p".into(),
            spec_hash: "h".into(),
            phase: PodPhase::Running,
            conditions: PodConditions::default(),
            pod_ip: None,
            deleting,
            terminated: false,
            reason: None,
            message: None,
            init_containers: vec![],
            containers: vec![ContainerStatus {
                name: "c".into(),
                image: "i".into(),
                image_id: String::new(),
                container_id: id.map(String::from),
                state,
                last_state: None,
                ready: false,
                started: false,
                restart_count: 0,
                backoff: None,
                last_error: None,
                started_at: None,
                finished_at: None,
            }],
        }
    }

    fn reasons(r: &mut EventRecorder) -> Vec<&'static str> {
        r.take().into_iter().map(|e| e.reason).collect()
    }

    #[test]
    fn transitions_become_events_once() {
        let t0 = Instant::now();
        let mut r = EventRecorder::new(t0);
        r.set_pods([("u".to_string(), ("d".to_string(), "p".to_string()))].into());
        let running = ContainerStateView::Running {
            running_for_secs: 0,
        };
        r.observe(t0, &[view(Some("a"), running.clone(), false)]);
        assert_eq!(reasons(&mut r), ["Created", "Started"]);
        r.observe(t0, &[view(Some("a"), running.clone(), false)]);
        assert!(r.take().is_empty());
        r.observe(t0, &[view(Some("a"), running, true)]);
        assert_eq!(reasons(&mut r), ["Killing"]);
        r.pull_started(t0, ActionId(7), "u", "c", "busybox");
        r.result(t0, ActionId(7), &ActionResult::Done);
        assert_eq!(reasons(&mut r), ["Pulling", "Pulled"]);
        // Pods that are not API pods get none.
        r.set_pods(BTreeMap::new());
        r.pull_started(t0, ActionId(8), "u", "c", "busybox");
        assert!(r.take().is_empty());
    }

    #[test]
    fn rate_limited_and_bounded() {
        let t0 = Instant::now();
        let mut r = EventRecorder::new(t0);
        let pods = (0..200)
            .map(|i| (format!("u{i}"), ("d".to_string(), format!("p{i}"))))
            .collect();
        r.set_pods(pods);
        for i in 0..200u64 {
            r.pull_started(t0, ActionId(i), &format!("u{i}"), "c", "x");
        }
        assert_eq!(r.take().len(), BURST as usize);
        // Repeats of the same reason within REPEAT are dropped even with tokens.
        let t1 = t0 + Duration::from_secs(10);
        r.pull_started(t1, ActionId(1000), "u0", "c", "x");
        assert!(r.take().is_empty());
    }
}
