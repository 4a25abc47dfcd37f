//! The pod lifecycle engine: desired pods + runtime relists + action results + a clock → actions.
//!
//! [`Engine`] is the public face: it keeps one record per pod UID (desired, or merely seen in
//! the runtime, see `pod.rs`), routes relists and results to them, and collects their actions
//! and wake-up times. It does no I/O and never reads a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::action::{Action, ActionId, ActionKind, ActionResult, ReconcileError};
use super::backoff::BackoffPolicy;
use super::labels;
use super::model::{
    normalize_image, DesiredPod, Observed, ObservedContainer, ObservedSandbox, PodRef,
    DEFAULT_TERMINATION_GRACE,
};
use super::pod::{Planner, PodRecord};
use super::status::{PodEvent, PodStatus};

/// Events kept for `drain_events`; older ones are dropped so an undrained engine stays small.
const MAX_EVENTS: usize = 256;

/// Tunables; the defaults are the kubelet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Grace for pods whose own grace is unknown (orphans).
    pub default_grace: Duration,
    /// Container restart back-off (CrashLoopBackOff).
    pub crash_backoff: BackoffPolicy,
    /// Image pull back-off (ImagePullBackOff).
    pub pull_backoff: BackoffPolicy,
    /// Retry curve for failed sandbox creation, container creation and teardown calls.
    pub retry_backoff: BackoffPolicy,
    /// A container that ran this long before exiting restarts with a fresh back-off.
    pub backoff_reset_after_run: Duration,
    /// Probes due within this window are run early, together with the one due now, so probes
    /// of many containers converge onto shared wake-ups (idle CPU on small devices).
    pub probe_coalesce: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_grace: DEFAULT_TERMINATION_GRACE,
            crash_backoff: BackoffPolicy::KUBELET,
            pull_backoff: BackoffPolicy::KUBELET,
            retry_backoff: BackoffPolicy::KUBELET,
            backoff_reset_after_run: Duration::from_secs(600),
            probe_coalesce: Duration::from_secs(1),
        }
    }
}

/// The pod lifecycle engine. Feed it desired pods, relists and results; poll it for actions.
///
/// Driving loop (all calls take the current `Instant`):
/// 1. `set_desired` whenever the desired pod set changes (once before the first poll);
/// 2. `observe` with each runtime relist (once before the first poll), stamped with the
///    instant the relist request was sent;
/// 3. `poll` → actions; hand them to the pods' workers;
/// 4. `complete` with each action's result, then `poll` again;
/// 5. sleep until `next_wakeup` (or the next input) and poll again.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    pods: BTreeMap<String, PodRecord>,
    images: BTreeSet<String>,
    /// Time of the last successful pull; older relists must not forget it.
    images_at: Option<Instant>,
    /// Every outstanding action id → pod UID.
    owners: BTreeMap<ActionId, String>,
    next_id: u64,
    desired_known: bool,
    observed_once: bool,
    wake: Option<Instant>,
    events: VecDeque<PodEvent>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(EngineConfig::default())
    }
}

impl Engine {
    /// An engine with empty memory (also after an agent restart: running pods are adopted).
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            pods: BTreeMap::new(),
            images: BTreeSet::new(),
            images_at: None,
            owners: BTreeMap::new(),
            next_id: 0,
            desired_known: false,
            observed_once: false,
            wake: None,
            events: VecDeque::new(),
        }
    }

    /// Replaces the whole desired pod set. Pods left out are stopped and removed.
    pub fn set_desired(&mut self, pods: impl IntoIterator<Item = DesiredPod>) {
        // An empty set is knowledge too: everything found running is then an orphan.
        self.desired_known = true;
        let mut seen = BTreeSet::new();
        for d in pods {
            seen.insert(d.uid.clone());
            self.upsert_pod(d);
        }
        for (uid, rec) in self.pods.iter_mut() {
            if !seen.contains(uid) && rec.desired.is_some() {
                rec.desired = None;
                rec.dirty = true;
            }
        }
    }

    /// Adds or updates one desired pod.
    pub fn upsert_pod(&mut self, d: DesiredPod) {
        self.desired_known = true;
        let config = self.config;
        match self.pods.get_mut(&d.uid) {
            Some(rec) => {
                if rec.desired.as_deref() != Some(&d) {
                    // A new spec is a new pod instance: its memory starts afresh once the old
                    // objects are gone (even if they are gone already).
                    if rec
                        .desired
                        .as_ref()
                        .is_some_and(|old| old.spec_hash != d.spec_hash)
                    {
                        rec.replacing = true;
                    }
                    rec.pod = d.pod_ref();
                    rec.grace = d.termination_grace;
                    rec.desired = Some(Arc::new(d));
                    rec.dirty = true;
                }
            }
            None => {
                let uid = d.uid.clone();
                let rec = PodRecord::new(d.pod_ref(), Some(Arc::new(d)), &config);
                self.pods.insert(uid, rec);
            }
        }
    }

    /// Tells the engine that pod `uid` became active on this node at `at` (its
    /// `status.startTime` as the server kept it from before an agent restart), so deadlines
    /// count from then rather than from the restart. Only ever moves the start earlier.
    pub fn note_active_since(&mut self, uid: &str, at: Instant) {
        if let Some(rec) = self.pods.get_mut(uid) {
            if rec.active_since.is_none_or(|t| at < t) {
                rec.active_since = Some(at);
                rec.dirty = true;
            }
        }
    }

    /// Evicts pod `uid` under node pressure: it is failed with reason Evicted and `message`
    /// (a Warning event says the same), its containers are stopped and never restarted. A pod
    /// already finished or unknown is left alone; returns whether the pod was evicted.
    pub fn evict(&mut self, uid: &str, message: &str) -> bool {
        let Some(rec) = self.pods.get_mut(uid) else {
            return false;
        };
        if rec.terminal.is_some() || rec.desired.is_none() {
            return false;
        }
        rec.evict(message);
        true
    }

    /// Withdraws one pod: it is stopped and removed with its last known grace period.
    pub fn remove_pod(&mut self, uid: &str) {
        self.desired_known = true;
        if let Some(rec) = self.pods.get_mut(uid) {
            rec.desired = None;
            rec.dirty = true;
        }
    }

    /// Feeds a runtime relist. `taken_at` must be the instant just *before* the relist request
    /// was sent: pods with results newer than that keep their view (a relist that raced with a
    /// result must not make the engine forget, say, a sandbox it just created). Managed objects
    /// of unknown pods become orphans to clean up; unmanaged objects are ignored.
    pub fn observe(&mut self, snapshot: Observed, taken_at: Instant) {
        self.observed_once = true;
        let fresh: BTreeSet<String> = snapshot.images.iter().map(|i| normalize_image(i)).collect();
        let images_before = self.images.len();
        let images_changed = if self.images_at.is_none_or(|t| taken_at >= t) {
            let changed = self.images != fresh;
            self.images = fresh;
            changed
        } else {
            self.images.extend(fresh);
            self.images.len() != images_before
        };
        let mut sandbox_uid: BTreeMap<String, String> = BTreeMap::new();
        let mut sandboxes: BTreeMap<String, Vec<ObservedSandbox>> = BTreeMap::new();
        let mut containers: BTreeMap<String, Vec<ObservedContainer>> = BTreeMap::new();
        let mut refs: BTreeMap<String, PodRef> = BTreeMap::new();
        let pod_ref = |l: &BTreeMap<String, String>| PodRef {
            uid: labels::get(l, labels::POD_UID).to_string(),
            name: labels::get(l, labels::POD_NAME).to_string(),
            namespace: labels::get(l, labels::POD_NAMESPACE).to_string(),
        };
        for s in snapshot.sandboxes {
            if !labels::is_managed(&s.labels) {
                continue;
            }
            let r = pod_ref(&s.labels);
            sandbox_uid.insert(s.id.clone(), r.uid.clone());
            sandboxes.entry(r.uid.clone()).or_default().push(s);
            refs.entry(r.uid.clone()).or_insert(r);
        }
        for c in snapshot.containers {
            if !labels::is_managed(&c.labels) {
                continue;
            }
            let mut r = pod_ref(&c.labels);
            if r.uid.is_empty() {
                if let Some(uid) = sandbox_uid.get(&c.sandbox_id) {
                    r.uid = uid.clone();
                }
            }
            containers.entry(r.uid.clone()).or_default().push(c);
            refs.entry(r.uid.clone()).or_insert(r);
        }
        let config = self.config;
        for (uid, r) in refs {
            self.pods
                .entry(uid)
                .or_insert_with(|| PodRecord::new(r, None, &config));
        }
        for (uid, rec) in self.pods.iter_mut() {
            if rec.view_at.is_some_and(|t| taken_at < t) {
                continue;
            }
            let sb = sandboxes.remove(uid).unwrap_or_default();
            let cs = containers.remove(uid).unwrap_or_default();
            // An unchanged relist (the common, idle case) leaves the pod alone.
            if images_changed || sb != rec.sandboxes || cs != rec.containers {
                rec.sandboxes = sb;
                rec.containers = cs;
                rec.absorb_view(taken_at, &config);
                rec.dirty = true;
            }
        }
    }

    /// Feeds the result of an action. Errors are for logging; the engine stays consistent.
    pub fn complete(
        &mut self,
        id: ActionId,
        result: ActionResult,
        now: Instant,
    ) -> Result<(), ReconcileError> {
        let Some(uid) = self.owners.remove(&id) else {
            return Err(ReconcileError::UnknownAction { id });
        };
        let Some(rec) = self.pods.get_mut(&uid) else {
            return Ok(());
        };
        if let Some(kind) = rec.inflight.remove(&id) {
            rec.dirty = true;
            rec.view_at = Some(now);
            if matches!(kind, ActionKind::PullImage { .. }) && result == ActionResult::Done {
                self.images_at = Some(now);
            }
            let r = rec.apply_result(id, kind, result, now, &mut self.images, &self.config);
            collect_events(&mut self.events, rec);
            return r;
        }
        // A probe result that changes no verdict only needs the next probe scheduled.
        let (changed, due) = rec.apply_probe_result(id, result);
        collect_events(&mut self.events, rec);
        rec.dirty |= changed;
        if let Some(due) = due {
            rec.wake = Some(rec.wake.map_or(due, |w| w.min(due)));
        }
        Ok(())
    }

    /// Decides what to do now. Emits nothing until both the desired set and a relist are known
    /// (acting earlier would either kill adoptable pods or duplicate running ones).
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        if !self.desired_known || !self.observed_once {
            self.wake = None;
            return Vec::new();
        }
        let mut p = Planner {
            now,
            config: &self.config,
            images: &self.images,
            next_id: &mut self.next_id,
            actions: Vec::new(),
            wake: None,
        };
        for rec in self.pods.values_mut() {
            rec.plan(&mut p);
            collect_events(&mut self.events, rec);
        }
        let Planner { actions, wake, .. } = p;
        for a in &actions {
            self.owners.insert(a.id, a.pod.uid.clone());
        }
        // Forget pods that are neither desired nor present any more.
        self.pods
            .retain(|_, r| r.desired.is_some() || !r.view_empty() || !r.inflight.is_empty());
        self.wake = wake;
        actions
    }

    /// When `poll` next has something to do without new input (back-off expiry, probe due).
    /// Valid after a `poll`; None means only new input can create work.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.wake
    }

    /// Status of every desired pod, by UID.
    pub fn status(&self, now: Instant) -> Vec<PodStatus> {
        self.pods
            .values()
            .filter_map(|r| r.desired.as_ref().map(|d| r.status(d, now)))
            .collect()
    }

    /// Status of one desired pod.
    pub fn pod_status(&self, uid: &str, now: Instant) -> Option<PodStatus> {
        let r = self.pods.get(uid)?;
        r.desired.as_ref().map(|d| r.status(d, now))
    }

    /// UIDs the engine tracks (desired pods and orphans being cleaned up).
    pub fn tracked_pods(&self) -> impl Iterator<Item = &str> + Clone {
        self.pods.keys().map(String::as_str)
    }

    /// Takes the kubelet-style events raised since the last call (oldest first; at most the
    /// latest 256 are kept when nobody drains them).
    pub fn drain_events(&mut self) -> Vec<PodEvent> {
        self.events.drain(..).collect()
    }

    /// Whether the pod has runtime actions (probes aside) issued and not yet completed: their
    /// results will say what changed, so a relist meanwhile would only repeat it.
    pub fn acting(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|r| {
            r.inflight
                .values()
                .any(|k| !matches!(k, ActionKind::RunProbe { .. }))
        })
    }

    /// Number of actions issued and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.owners.len()
    }
}

fn collect_events(into: &mut VecDeque<PodEvent>, rec: &mut PodRecord) {
    for e in rec.events.drain(..) {
        if into.len() >= MAX_EVENTS {
            into.pop_front();
        }
        into.push_back(e);
    }
}
