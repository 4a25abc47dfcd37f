//! One pod's record and the planning over it: the kubelet's lifecycle rules.
//!
//! A record keeps a view of the pod's sandboxes and containers (the last relist, corrected by
//! results that arrived since), the in-flight lifecycle actions, and per-container memory
//! (back-offs, probe trackers, kill requests). Planning turns record + desired spec + time into
//! actions: lifecycle actions one at a time per pod, except teardown stops and removals, which
//! go out together; probes run alongside. Nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::action::{Action, ActionId, ActionKind, ActionResult, ReconcileError};
use super::backoff::Backoff;
use super::engine::EngineConfig;
use super::labels;
use super::model::{
    normalize_image, ContainerState, DesiredContainer, DesiredPod, ObservedContainer,
    ObservedSandbox, PodRef, ProbeKind, PullPolicy, RestartPolicy, SandboxState,
};
use super::pod_status::{go_duration, kubelet_pod_name, ERR_IMAGE_PULL_SHOWN};
use super::probe::{ProbeTracker, Verdict};
use super::status::{reason, EventType, PodEvent, PodPhase};

/// Exit code recorded when starting a container failed (the runtime's convention).
const START_ERROR_EXIT_CODE: i32 = 128;

/// The probe trackers bound to one running container instance.
#[derive(Debug, Clone)]
pub(super) struct ProbeSet {
    pub(super) instance: String,
    pub(super) startup: Option<ProbeTracker>,
    pub(super) liveness: Option<ProbeTracker>,
    pub(super) readiness: Option<ProbeTracker>,
    /// Startup probe passed (or there is none).
    pub(super) started: bool,
}

impl ProbeSet {
    pub(super) fn new(spec: &DesiredContainer, instance: &str, started_at: Instant) -> Self {
        let track = |k| {
            spec.probe(k)
                .map(|s| ProbeTracker::new(s.clone(), started_at))
        };
        ProbeSet {
            instance: instance.to_string(),
            startup: track(ProbeKind::Startup),
            liveness: track(ProbeKind::Liveness),
            readiness: track(ProbeKind::Readiness),
            started: spec.startup.is_none(),
        }
    }

    pub(super) fn tracker_mut(&mut self, kind: ProbeKind) -> Option<&mut ProbeTracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    pub(super) fn ready(&self) -> bool {
        self.started
            && self
                .readiness
                .as_ref()
                .is_none_or(|t| t.passing() == Some(true))
    }
}

/// What the engine remembers about one container (by name) of one pod.
#[derive(Debug, Clone)]
pub(super) struct ContainerMemory {
    pub(super) crash: Backoff,
    pub(super) pull: Backoff,
    pub(super) create: Backoff,
    /// Attempt number for the next instance.
    pub(super) next_attempt: u32,
    /// Exited instance whose restart already went through the back-off check.
    pub(super) accounted_exit: Option<String>,
    /// Exited instance and when the engine first saw it exited (fallback for a missing finish time).
    pub(super) exit_seen: Option<(String, Instant)>,
    /// Running instance to be stopped, and why.
    pub(super) kill: Option<(String, String)>,
    /// The Killing event's message for that kill, in the kubelet's words.
    pub(super) kill_event: Option<String>,
    /// The pull back-off window whose BackOff events were raised.
    pub(super) pull_backoff_evented: Option<Instant>,
    /// Instance the engine stopped on purpose: restarts regardless of its exit code.
    pub(super) killed: Option<String>,
    /// Instance stopped because its spec changed: it is replaced whatever the restart policy.
    pub(super) respawn: Option<String>,
    /// Attempt the image was last pulled for (pull policy Always pulls once per attempt).
    pub(super) pulled_for: Option<u32>,
    pub(super) pull_attempt: Option<u32>,
    pub(super) waiting: Option<(&'static str, Option<String>)>,
    pub(super) backoff_until: Option<(Instant, Duration)>,
    pub(super) last_error: Option<String>,
    pub(super) probes: Option<ProbeSet>,
}

impl ContainerMemory {
    pub(super) fn new(config: &EngineConfig) -> Self {
        ContainerMemory {
            crash: Backoff::new(config.crash_backoff),
            pull: Backoff::new(config.pull_backoff),
            create: Backoff::new(config.retry_backoff),
            next_attempt: 0,
            accounted_exit: None,
            exit_seen: None,
            kill: None,
            kill_event: None,
            pull_backoff_evented: None,
            killed: None,
            respawn: None,
            pulled_for: None,
            pull_attempt: None,
            waiting: None,
            backoff_until: None,
            last_error: None,
            probes: None,
        }
    }

    pub(super) fn wait(&mut self, reason: &'static str, message: Option<String>) {
        self.waiting = Some((reason, message));
    }
}

/// Per-poll scratch: emitted actions, id allocation and the earliest wake-up.
pub(super) struct Planner<'a> {
    pub(super) now: Instant,
    pub(super) config: &'a EngineConfig,
    pub(super) images: &'a BTreeSet<String>,
    pub(super) next_id: &'a mut u64,
    pub(super) actions: Vec<Action>,
    pub(super) wake: Option<Instant>,
}

impl Planner<'_> {
    pub(super) fn wake_at(&mut self, t: Instant) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }

    pub(super) fn alloc(&mut self) -> ActionId {
        *self.next_id = self.next_id.wrapping_add(1);
        ActionId(*self.next_id)
    }
}

/// What planning one container came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// An action was emitted.
    Acted,
    /// Blocked (back-off, missing image, in-flight work).
    Waiting,
    /// Running; nothing to do.
    Running,
    /// Exited 0 and stays so.
    Complete,
    /// Exited non-zero (or was killed) and will not restart.
    Finished,
}

/// How an app container counts towards the pod phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PhaseCount {
    NeverRan,
    Restarting,
    Running,
    Exited { success: bool },
}

/// Everything about one pod UID.
#[derive(Debug, Clone)]
pub(super) struct PodRecord {
    pub(super) pod: PodRef,
    pub(super) desired: Option<Arc<DesiredPod>>,
    /// Grace to use once the pod is no longer desired.
    pub(super) grace: Duration,
    pub(super) sandboxes: Vec<ObservedSandbox>,
    pub(super) containers: Vec<ObservedContainer>,
    /// Time of the last applied result; relists taken earlier are stale for this pod.
    pub(super) view_at: Option<Instant>,
    pub(super) inflight: BTreeMap<ActionId, ActionKind>,
    pub(super) mem: BTreeMap<String, ContainerMemory>,
    pub(super) sandbox_retry: Backoff,
    pub(super) teardown_retry: Backoff,
    pub(super) next_sandbox_attempt: u32,
    pub(super) stopped_sandboxes: BTreeSet<String>,
    pub(super) terminal: Option<PodPhase>,
    pub(super) replacing: bool,
    /// Some container of this pod ran at some point.
    pub(super) ever_ran: bool,
    pub(super) message: Option<String>,
    /// Pod-level reason that goes with a terminal phase the engine decided (DeadlineExceeded).
    pub(super) reason: Option<&'static str>,
    /// When the pod became active on this node (its `status.startTime`): the first planning
    /// of its desired spec, or an earlier time the agent knew from before a restart.
    pub(super) active_since: Option<Instant>,
    /// Something changed since the last planning (input, result, relist difference).
    pub(super) dirty: bool,
    /// When planning last asked to be woken for this pod (back-off end, probe due).
    pub(super) wake: Option<Instant>,
    /// Events raised since the engine last collected them.
    pub(super) events: Vec<PodEvent>,
}

impl PodRecord {
    pub(super) fn new(
        pod: PodRef,
        desired: Option<Arc<DesiredPod>>,
        config: &EngineConfig,
    ) -> Self {
        let grace = desired
            .as_ref()
            .map_or(config.default_grace, |d| d.termination_grace);
        PodRecord {
            pod,
            desired,
            grace,
            sandboxes: Vec::new(),
            containers: Vec::new(),
            view_at: None,
            inflight: BTreeMap::new(),
            mem: BTreeMap::new(),
            sandbox_retry: Backoff::new(config.retry_backoff),
            teardown_retry: Backoff::new(config.retry_backoff),
            next_sandbox_attempt: 0,
            stopped_sandboxes: BTreeSet::new(),
            terminal: None,
            replacing: false,
            ever_ran: false,
            message: None,
            reason: None,
            active_since: None,
            dirty: true,
            wake: None,
            events: Vec::new(),
        }
    }

    // ---- view queries ----

    pub(super) fn busy(&self, object: &str) -> bool {
        self.inflight.values().any(|k| k.target() == Some(object))
    }

    pub(super) fn sandbox_hash(s: &ObservedSandbox) -> Option<&str> {
        labels::spec_hash(&s.labels, &s.annotations)
    }

    pub(super) fn container_name(c: &ObservedContainer) -> &str {
        labels::get(&c.labels, labels::CONTAINER_NAME)
    }

    /// The Ready sandbox of the desired spec. Should the runtime hold several, the one with
    /// the most running containers (then the newest) is kept, so adoption restarts the least.
    pub(super) fn current_sandbox(&self, hash: &str) -> Option<&ObservedSandbox> {
        let running = |s: &ObservedSandbox| {
            self.containers
                .iter()
                .filter(|c| c.sandbox_id == s.id && c.state == ContainerState::Running)
                .count()
        };
        self.sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready && Self::sandbox_hash(s) == Some(hash))
            .max_by_key(|s| (running(s), s.attempt))
    }

    /// Instances of a container, newest first, in one sandbox or in all sandboxes of `hash`.
    pub(super) fn instances(&self, name: &str, scope: Scope<'_>) -> Vec<&ObservedContainer> {
        let live: BTreeSet<&str> = match scope {
            Scope::Sandbox(id) => [id].into_iter().collect(),
            Scope::Spec(hash) => self
                .sandboxes
                .iter()
                .filter(|s| Self::sandbox_hash(s) == Some(hash))
                .map(|s| s.id.as_str())
                .collect(),
        };
        let mut v: Vec<&ObservedContainer> = self
            .containers
            .iter()
            .filter(|c| Self::container_name(c) == name && live.contains(c.sandbox_id.as_str()))
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        v
    }

    pub(super) fn latest(&self, name: &str, scope: Scope<'_>) -> Option<ObservedContainer> {
        self.instances(name, scope).first().map(|c| (*c).clone())
    }

    pub(super) fn mem_mut(&mut self, name: &str, config: &EngineConfig) -> &mut ContainerMemory {
        self.mem
            .entry(name.to_string())
            .or_insert_with(|| ContainerMemory::new(config))
    }

    pub(super) fn view_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }

    // ---- emitting ----

    pub(super) fn emit(&mut self, p: &mut Planner<'_>, kind: ActionKind) {
        let id = p.alloc();
        self.inflight.insert(id, kind.clone());
        p.actions.push(Action {
            id,
            pod: self.pod.clone(),
            kind,
        });
    }

    fn event(&mut self, kind: EventType, container: &str, reason: &str, message: String) {
        self.events.push(PodEvent {
            pod: self.pod.clone(),
            container: (!container.is_empty()).then(|| container.to_string()),
            kind,
            reason: reason.to_string(),
            message,
        });
    }

    /// The kubelet's Killing event for a container stopped with its pod: "Stopping container X".
    fn stopping_event(&mut self, container: &str) {
        if !container.is_empty() {
            let msg = format!("Stopping container {container}");
            self.event(EventType::Normal, container, "Killing", msg);
        }
    }

    // ---- planning ----

    /// Plans this pod if anything changed or its wake-up time has come; otherwise only
    /// passes its wake-up on. Skipping unchanged pods keeps idle polls nearly free.
    pub(super) fn plan(&mut self, p: &mut Planner<'_>) {
        // Pods due within the probe coalescing window are planned too, so their probes can
        // join this wake-up.
        let horizon = p.now.checked_add(p.config.probe_coalesce).unwrap_or(p.now);
        let due = self.dirty || self.wake.is_some_and(|w| w <= horizon);
        if !due {
            if let Some(w) = self.wake {
                p.wake_at(w);
            }
            return;
        }
        let outer = p.wake.take();
        self.plan_pod(p);
        self.wake = p.wake;
        self.dirty = false;
        p.wake = match (outer, self.wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn plan_pod(&mut self, p: &mut Planner<'_>) {
        let Some(d) = self.desired.clone() else {
            let grace = self.grace;
            self.plan_teardown(p, grace, &|_| true);
            return;
        };
        if let Some(del) = d.deletion {
            self.note_final_phase(&d);
            self.plan_teardown(p, del.grace, &|_| true);
            return;
        }
        self.check_deadline(p, &d);
        self.plan_running(p, &d);
        self.plan_probes(p, &d);
    }

    /// The kubelet's active deadline: once the pod has been active for `activeDeadlineSeconds`
    /// (counted from its start time, `now - start >= deadline`), a pod that has not finished
    /// is failed with reason DeadlineExceeded; as a terminal pod, its containers are then
    /// stopped and never restarted. Before that, planning asks to be woken at the deadline.
    pub(super) fn check_deadline(&mut self, p: &mut Planner<'_>, d: &DesiredPod) {
        let since = *self.active_since.get_or_insert(p.now);
        let (Some(limit), None) = (d.active_deadline, self.terminal) else {
            return;
        };
        let Some(end) = since.checked_add(limit) else {
            return;
        };
        if p.now < end {
            p.wake_at(end);
            return;
        }
        self.terminal = Some(PodPhase::Failed);
        self.reason = Some(reason::DEADLINE_EXCEEDED);
        self.message = Some(reason::DEADLINE_EXCEEDED_MESSAGE.to_string());
        self.event(
            EventType::Normal,
            "",
            reason::DEADLINE_EXCEEDED,
            reason::DEADLINE_EXCEEDED_MESSAGE.to_string(),
        );
    }

    /// Fails the pod for node pressure (see [`super::engine::Engine::evict`]).
    pub(super) fn evict(&mut self, message: &str) {
        self.terminal = Some(PodPhase::Failed);
        self.reason = Some(reason::EVICTED);
        self.message = Some(message.to_string());
        self.dirty = true;
        self.event(EventType::Warning, "", reason::EVICTED, message.to_string());
    }

    /// A deleted pod ends Succeeded when every app container exited 0, else Failed (the
    /// kubelet's rule for terminating pods); decided once all containers have stopped.
    pub(super) fn note_final_phase(&mut self, d: &DesiredPod) {
        let stopped = self
            .containers
            .iter()
            .all(|c| !matches!(c.state, ContainerState::Running | ContainerState::Unknown));
        if self.terminal.is_some() || !stopped || self.containers.is_empty() {
            return;
        }
        let all_ok = d
            .containers
            .iter()
            .all(|spec| self.phase_count(d, spec) == PhaseCount::Exited { success: true });
        self.terminal = Some(if all_ok {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        });
    }

    /// Stops, then removes, the targeted sandboxes and every container in them (and containers
    /// whose sandbox is unknown). True once none of them remains.
    pub(super) fn plan_teardown(
        &mut self,
        p: &mut Planner<'_>,
        grace: Duration,
        is_target: &dyn Fn(&ObservedSandbox) -> bool,
    ) -> bool {
        let known: BTreeSet<String> = self.sandboxes.iter().map(|s| s.id.clone()).collect();
        let target_sb: Vec<String> = self
            .sandboxes
            .iter()
            .filter(|s| is_target(s))
            .map(|s| s.id.clone())
            .collect();
        let target_c: Vec<ObservedContainer> = self
            .containers
            .iter()
            .filter(|c| target_sb.contains(&c.sandbox_id) || !known.contains(&c.sandbox_id))
            .cloned()
            .collect();
        if target_sb.is_empty() && target_c.is_empty() {
            return true;
        }
        if let Some(u) = self.teardown_retry.until() {
            if p.now < u {
                p.wake_at(u);
                return false;
            }
        }
        // Containers first, all at once: each gets the full grace, as with the kubelet.
        let mut pending = false;
        for c in &target_c {
            if matches!(c.state, ContainerState::Running | ContainerState::Unknown) {
                pending = true;
                if !self.busy(&c.id) {
                    let container = Self::container_name(c).to_string();
                    self.stopping_event(&container);
                    self.emit(
                        p,
                        ActionKind::StopContainer {
                            container_id: c.id.clone(),
                            container,
                            grace,
                        },
                    );
                }
            }
        }
        // Nothing may still be creating objects in a sandbox that is about to go.
        if pending || !self.inflight.is_empty() {
            return false;
        }
        for id in &target_sb {
            if !self.stopped_sandboxes.contains(id) {
                pending = true;
                self.emit(
                    p,
                    ActionKind::StopSandbox {
                        sandbox_id: id.clone(),
                    },
                );
            }
        }
        if pending {
            return false;
        }
        for c in &target_c {
            pending = true;
            self.emit(
                p,
                ActionKind::RemoveContainer {
                    container_id: c.id.clone(),
                },
            );
        }
        if pending {
            return false;
        }
        for id in &target_sb {
            self.emit(
                p,
                ActionKind::RemoveSandbox {
                    sandbox_id: id.clone(),
                },
            );
        }
        false
    }

    pub(super) fn plan_running(&mut self, p: &mut Planner<'_>, d: &DesiredPod) {
        let hash = d.spec_hash.as_str();
        let grace = d.termination_grace;
        // A changed pod spec replaces the pod: the old sandbox and containers go first.
        if self
            .sandboxes
            .iter()
            .any(|s| Self::sandbox_hash(s) != Some(hash))
        {
            self.replacing = true;
        }
        if !self.plan_teardown(p, grace, &|s| Self::sandbox_hash(s) != Some(hash)) {
            return;
        }
        if self.replacing {
            self.replacing = false;
            self.mem.clear();
            self.terminal = None;
            self.reason = None;
            self.ever_ran = false;
            self.message = None;
        }
        if !self.inflight.is_empty() {
            return;
        }
        if self.terminal.is_some() {
            self.plan_terminal(p, d);
            return;
        }
        let current = self
            .current_sandbox(hash)
            .map(|s| (s.id.clone(), s.attempt));
        let Some((sid, _)) = current else {
            if self.ever_ran {
                // A pod that already finished (e.g. seen again after an agent restart) stays
                // finished; under Never, containers that died with their sandbox stay dead.
                let phase = self.compute_phase(d);
                let finished = matches!(phase, PodPhase::Succeeded | PodPhase::Failed);
                if finished || d.restart_policy == RestartPolicy::Never {
                    if !self.plan_stop_running(p, grace) {
                        return;
                    }
                    let phase = self.compute_phase(d);
                    if phase != PodPhase::Succeeded && !finished {
                        self.message = Some("pod sandbox died and restartPolicy is Never".into());
                    }
                    self.terminal = Some(if phase == PodPhase::Succeeded {
                        PodPhase::Succeeded
                    } else {
                        PodPhase::Failed
                    });
                    self.plan_terminal(p, d);
                    return;
                }
            }
            // A dead sandbox: clear it out, then start over with a new one.
            if !self.plan_teardown(p, grace, &|_| true) {
                return;
            }
            if let Some(u) = self.sandbox_retry.until() {
                if p.now < u {
                    p.wake_at(u);
                    return;
                }
            }
            let attempt = self.next_sandbox_attempt;
            self.emit(
                p,
                ActionKind::RunSandbox {
                    attempt,
                    spec_hash: d.spec_hash.clone(),
                },
            );
            return;
        };
        let keep = sid.clone();
        if !self.plan_teardown(p, grace, &|s| s.id != keep) {
            return;
        }
        self.plan_containers(p, d, &sid);
    }

    pub(super) fn plan_containers(&mut self, p: &mut Planner<'_>, d: &DesiredPod, sid: &str) {
        // Once an app container exists the pod was initialised (init containers may be gone).
        let app_started = d
            .containers
            .iter()
            .any(|c| !self.instances(&c.name, Scope::Sandbox(sid)).is_empty());
        for ic in &d.init_containers {
            // Once initialised, only sidecars still need looking after.
            if app_started && !ic.sidecar {
                continue;
            }
            let step = self.plan_container(p, d, ic, sid, true);
            if ic.sidecar {
                match step {
                    Step::Acted => return,
                    // The next init container waits until the sidecar has started.
                    Step::Running if app_started || self.sidecar_started(ic, sid) => continue,
                    Step::Waiting if app_started => continue,
                    Step::Running | Step::Waiting => return,
                    Step::Complete | Step::Finished => continue,
                }
            }
            match step {
                Step::Complete => continue,
                Step::Finished => {
                    self.message = Some(format!("init container {} failed", ic.name));
                    self.terminal = Some(PodPhase::Failed);
                    self.plan_terminal(p, d);
                    return;
                }
                Step::Acted | Step::Waiting | Step::Running => return,
            }
        }
        for c in &d.containers {
            if self.plan_container(p, d, c, sid, false) == Step::Acted {
                return;
            }
        }
        if app_started && self.plan_ephemeral(p, d, sid) {
            return;
        }
        let phase = self.compute_phase(d);
        if matches!(phase, PodPhase::Succeeded | PodPhase::Failed) {
            self.terminal = Some(phase);
            self.plan_terminal(p, d);
            return;
        }
        self.plan_gc(p, d, sid);
    }

    /// Ephemeral containers join the running pod's sandbox once its app containers exist: each
    /// is created and started once and then left alone, whatever its exit (the kubelet never
    /// restarts an ephemeral container). Only a failed pull or create is tried again, under
    /// its back-off; one that ran in an earlier sandbox of the pod is not run again in a new
    /// one. True when an action was emitted.
    pub(super) fn plan_ephemeral(
        &mut self,
        p: &mut Planner<'_>,
        d: &DesiredPod,
        sid: &str,
    ) -> bool {
        for spec in &d.ephemeral_containers {
            let Some(c) = self.latest(&spec.name, Scope::Sandbox(sid)) else {
                let attempt = self.mem_mut(&spec.name, p.config).next_attempt;
                // One that already existed (in a sandbox since replaced) is not run again.
                if attempt > 0 {
                    continue;
                }
                if self.plan_create(p, spec, sid, false, attempt) == Step::Acted {
                    return true;
                }
                continue;
            };
            if c.state == ContainerState::Created && !self.busy(&c.id) {
                self.emit(
                    p,
                    ActionKind::StartContainer {
                        container_id: c.id.clone(),
                        container: spec.name.clone(),
                    },
                );
                return true;
            }
        }
        false
    }

    /// A sidecar counts as started once running with its startup probe (if any) passed.
    pub(super) fn sidecar_started(&self, spec: &DesiredContainer, sid: &str) -> bool {
        let Some(c) = self.latest(&spec.name, Scope::Sandbox(sid)) else {
            return false;
        };
        if c.state != ContainerState::Running {
            return false;
        }
        match self.mem.get(&spec.name).and_then(|m| m.probes.as_ref()) {
            Some(set) if set.instance == c.id => set.started,
            _ => spec.startup.is_none(),
        }
    }

    pub(super) fn plan_container(
        &mut self,
        p: &mut Planner<'_>,
        d: &DesiredPod,
        spec: &DesiredContainer,
        sid: &str,
        init: bool,
    ) -> Step {
        let Some(c) = self.latest(&spec.name, Scope::Sandbox(sid)) else {
            let attempt = self.mem_mut(&spec.name, p.config).next_attempt;
            return self.plan_create(p, spec, sid, init, attempt);
        };
        match c.state {
            ContainerState::Created => {
                if self.busy(&c.id) {
                    return Step::Waiting;
                }
                self.emit(
                    p,
                    ActionKind::StartContainer {
                        container_id: c.id.clone(),
                        container: spec.name.clone(),
                    },
                );
                Step::Acted
            }
            ContainerState::Running | ContainerState::Unknown => {
                let mem = self.mem_mut(&spec.name, p.config);
                mem.waiting = None;
                mem.backoff_until = None;
                let changed =
                    labels::spec_hash(&c.labels, &c.annotations) != Some(spec.spec_hash.as_str());
                let name = &spec.name;
                let stopping = format!("Stopping container {name}");
                let why = if c.state == ContainerState::Unknown {
                    Some(("container state unknown".to_string(), stopping))
                } else if let Some((_, why)) = mem.kill.as_ref().filter(|(id, _)| *id == c.id) {
                    let message = mem.kill_event.clone().unwrap_or(stopping);
                    Some((why.clone(), message))
                } else if changed {
                    // The kubelet's Killing message for a changed container definition.
                    let message = format!("Container {name} definition changed, will be restarted");
                    Some(("container spec changed".to_string(), message))
                } else {
                    None
                };
                let Some((why, killing)) = why else {
                    return Step::Running;
                };
                if self.busy(&c.id) {
                    return Step::Waiting;
                }
                let mem = self.mem_mut(&spec.name, p.config);
                mem.killed = Some(c.id.clone());
                if changed {
                    mem.respawn = Some(c.id.clone());
                }
                mem.last_error = Some(why.clone());
                self.event(EventType::Normal, &spec.name, "Killing", killing);
                self.emit(
                    p,
                    ActionKind::StopContainer {
                        container_id: c.id.clone(),
                        container: spec.name.clone(),
                        grace: d.termination_grace,
                    },
                );
                Step::Acted
            }
            ContainerState::Exited => self.plan_exited(p, d, spec, sid, init, &c),
        }
    }

    pub(super) fn plan_exited(
        &mut self,
        p: &mut Planner<'_>,
        d: &DesiredPod,
        spec: &DesiredContainer,
        sid: &str,
        init: bool,
        c: &ObservedContainer,
    ) -> Step {
        let reset_after = p.config.backoff_reset_after_run;
        let now = p.now;
        let pod = kubelet_pod_name(&self.pod);
        let mem = self.mem_mut(&spec.name, p.config);
        let killed = mem.killed.as_deref() == Some(c.id.as_str());
        let success = c.exit_code == Some(0) && !killed;
        let respawn = mem.respawn.as_deref() == Some(c.id.as_str());
        let restart = match d.restart_policy {
            // Sidecars always come back; so does a container replaced for a new spec.
            _ if spec.sidecar || respawn => true,
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !success,
            // Init containers run to completion even under Always.
            RestartPolicy::Always => !(init && success),
        };
        if !restart {
            mem.waiting = None;
            mem.backoff_until = None;
            return if success {
                Step::Complete
            } else {
                Step::Finished
            };
        }
        // The kubelet's rule: the back-off is measured from the exit, and the first restart
        // of a fresh curve is immediate; 10 s, 20 s, ... 300 s apply to the following ones.
        if mem.accounted_exit.as_deref() != Some(c.id.as_str()) {
            let seen = mem
                .exit_seen
                .as_ref()
                .filter(|(id, _)| *id == c.id)
                .map(|(_, t)| *t);
            let finished = c.finished_at.or(seen).unwrap_or(now);
            if let Some(started) = c.started_at {
                if finished.saturating_duration_since(started) >= reset_after {
                    mem.crash.reset();
                }
            }
            if let Some(until) = mem.crash.blocks_until(finished) {
                if now < until {
                    let delay = mem.crash.delay().unwrap_or_default();
                    let entering = mem.backoff_until.map(|(u, _)| u) != Some(until);
                    // The kubelet's words: the status names the delay; the event does not, so
                    // every back-off of one container is the same event, counted up.
                    let status = format!(
                        "back-off {} restarting failed container={} pod={pod}",
                        go_duration(delay),
                        spec.name
                    );
                    mem.wait(reason::CRASH_LOOP_BACK_OFF, Some(status));
                    mem.backoff_until = Some((until, delay));
                    p.wake_at(until);
                    if entering {
                        let msg = format!(
                            "Back-off restarting failed container {} in pod {pod}",
                            spec.name
                        );
                        self.event(EventType::Warning, &spec.name, "BackOff", msg);
                    }
                    return Step::Waiting;
                }
            }
            mem.crash.record(finished);
            mem.accounted_exit = Some(c.id.clone());
        }
        mem.backoff_until = None;
        let attempt = c.attempt.saturating_add(1).max(mem.next_attempt);
        self.plan_create(p, spec, sid, init, attempt)
    }

    pub(super) fn plan_create(
        &mut self,
        p: &mut Planner<'_>,
        spec: &DesiredContainer,
        sid: &str,
        init: bool,
        attempt: u32,
    ) -> Step {
        let now = p.now;
        let present = p.images.contains(&normalize_image(&spec.image));
        let mem = self.mem_mut(&spec.name, p.config);
        let need_pull = match spec.pull_policy {
            PullPolicy::Never => {
                if !present {
                    mem.wait(
                        reason::ERR_IMAGE_NEVER_PULL,
                        Some(format!(
                            "image {} is not present and the pull policy is Never",
                            spec.image
                        )),
                    );
                    return Step::Waiting;
                }
                false
            }
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Always => mem.pulled_for != Some(attempt),
        };
        if need_pull {
            if let Some(until) = mem.pull.until().filter(|u| now < *u) {
                // ErrImagePull stays shown for a while after the failed pull (the status view
                // applies the same rule); then the kubelet's next sync finds the back-off:
                // BackOff "Back-off pulling image" and Failed "Error: ImagePullBackOff".
                let shown = mem
                    .pull
                    .last()
                    .and_then(|l| l.checked_add(ERR_IMAGE_PULL_SHOWN));
                match shown {
                    Some(t) if now < t => p.wake_at(t.min(until)),
                    _ if mem.pull_backoff_evented != Some(until) => {
                        mem.pull_backoff_evented = Some(until);
                        let image = spec.image.clone();
                        let name = spec.name.clone();
                        let msg = format!("Back-off pulling image \"{image}\"");
                        self.event(EventType::Normal, &name, "BackOff", msg);
                        let msg = format!("Error: {}", reason::IMAGE_PULL_BACK_OFF);
                        self.event(EventType::Warning, &name, "Failed", msg);
                    }
                    _ => {}
                }
                let mem = self.mem_mut(&spec.name, p.config);
                mem.backoff_until = Some((until, mem.pull.delay().unwrap_or_default()));
                p.wake_at(until);
                return Step::Waiting;
            }
            mem.backoff_until = None;
            mem.pull_attempt = Some(attempt);
            if mem.waiting.is_none() {
                mem.wait(reason::CONTAINER_CREATING, None);
            }
            self.emit(
                p,
                ActionKind::PullImage {
                    container: spec.name.clone(),
                    image: spec.image.clone(),
                },
            );
            self.event(
                EventType::Normal,
                &spec.name,
                "Pulling",
                format!("Pulling image \"{}\"", spec.image),
            );
            return Step::Acted;
        }
        if let Some(until) = mem.create.until().filter(|u| now < *u) {
            mem.backoff_until = Some((until, mem.create.delay().unwrap_or_default()));
            p.wake_at(until);
            return Step::Waiting;
        }
        mem.backoff_until = None;
        mem.wait(reason::CONTAINER_CREATING, None);
        self.emit(
            p,
            ActionKind::CreateContainer {
                sandbox_id: sid.to_string(),
                container: spec.name.clone(),
                init,
                attempt,
                spec_hash: spec.spec_hash.clone(),
            },
        );
        Step::Acted
    }

    /// Stops whatever still runs. True once nothing runs.
    pub(super) fn plan_stop_running(&mut self, p: &mut Planner<'_>, grace: Duration) -> bool {
        let running: Vec<(String, String)> = self
            .containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Unknown))
            .map(|c| (c.id.clone(), Self::container_name(c).to_string()))
            .collect();
        for (id, name) in &running {
            if !self.busy(id) {
                self.stopping_event(name);
                self.emit(
                    p,
                    ActionKind::StopContainer {
                        container_id: id.clone(),
                        container: name.clone(),
                        grace,
                    },
                );
            }
        }
        running.is_empty()
    }

    /// A finished pod keeps its containers (logs, exit codes) but gives up its sandbox.
    pub(super) fn plan_terminal(&mut self, p: &mut Planner<'_>, d: &DesiredPod) {
        if !self.plan_stop_running(p, d.termination_grace) || !self.inflight.is_empty() {
            return;
        }
        let to_stop: Vec<String> = self
            .sandboxes
            .iter()
            .filter(|s| !self.stopped_sandboxes.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        for sandbox_id in to_stop {
            self.emit(p, ActionKind::StopSandbox { sandbox_id });
        }
    }

    /// Keeps the latest instance and one previous dead one per container; removes the rest,
    /// and containers whose name the spec no longer has.
    pub(super) fn plan_gc(&mut self, p: &mut Planner<'_>, d: &DesiredPod, sid: &str) {
        let names: BTreeSet<&str> = d
            .init_containers
            .iter()
            .chain(d.containers.iter())
            .chain(d.ephemeral_containers.iter())
            .map(|c| c.name.as_str())
            .collect();
        let mut stop = Vec::new();
        let mut remove = Vec::new();
        let mut by_name: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
        for c in self.containers.iter().filter(|c| c.sandbox_id == sid) {
            by_name.entry(Self::container_name(c)).or_default().push(c);
        }
        for (name, mut v) in by_name {
            v.sort_by_key(|c| std::cmp::Reverse(c.attempt));
            let keep = if names.contains(name) { 2 } else { 0 };
            for c in v.into_iter().skip(keep) {
                match c.state {
                    ContainerState::Running | ContainerState::Unknown => {
                        stop.push((c.id.clone(), name.to_string()))
                    }
                    ContainerState::Exited | ContainerState::Created => remove.push(c.id.clone()),
                }
            }
        }
        for (container_id, container) in stop {
            if !self.busy(&container_id) {
                let grace = d.termination_grace;
                self.emit(
                    p,
                    ActionKind::StopContainer {
                        container_id,
                        container,
                        grace,
                    },
                );
            }
        }
        for container_id in remove {
            if !self.busy(&container_id) {
                self.emit(p, ActionKind::RemoveContainer { container_id });
            }
        }
    }

    pub(super) fn plan_probes(&mut self, p: &mut Planner<'_>, d: &DesiredPod) {
        if self.terminal.is_some() || self.replacing {
            return;
        }
        let Some((sid, ip)) = self
            .current_sandbox(&d.spec_hash)
            .map(|s| (s.id.clone(), s.ip.clone()))
        else {
            return;
        };
        let now = p.now;
        let horizon = now.checked_add(p.config.probe_coalesce).unwrap_or(now);
        let pod = self.pod.clone();
        let sidecars = d.init_containers.iter().filter(|c| c.sidecar);
        for spec in sidecars.chain(d.containers.iter()) {
            let running = self
                .latest(&spec.name, Scope::Sandbox(&sid))
                .filter(|c| c.state == ContainerState::Running);
            let mem = self.mem_mut(&spec.name, p.config);
            let Some(c) = running else {
                mem.probes = None;
                continue;
            };
            if mem.kill.as_ref().is_some_and(|(id, _)| *id == c.id) {
                continue;
            }
            if mem.probes.as_ref().is_none_or(|s| s.instance != c.id) {
                mem.probes = Some(ProbeSet::new(spec, &c.id, c.started_at.unwrap_or(now)));
            }
            let Some(set) = mem.probes.as_mut() else {
                continue;
            };
            let kinds: &[ProbeKind] = if set.started {
                &[ProbeKind::Liveness, ProbeKind::Readiness]
            } else {
                &[ProbeKind::Startup]
            };
            for &kind in kinds {
                let Some(t) = set.tracker_mut(kind) else {
                    continue;
                };
                if t.is_due(horizon) {
                    let id = p.alloc();
                    t.dispatched(id, now);
                    p.actions.push(Action {
                        id,
                        pod: pod.clone(),
                        kind: ActionKind::RunProbe {
                            container: spec.name.clone(),
                            container_id: c.id.clone(),
                            kind,
                            handler: t.spec().handler.clone(),
                            timeout: t.spec().timeout,
                            pod_ip: ip.clone(),
                        },
                    });
                } else if let Some(due) = t.due_at() {
                    p.wake_at(due);
                }
            }
        }
    }

    // ---- results ----

    pub(super) fn container_mut(&mut self, id: &str) -> Option<&mut ObservedContainer> {
        self.containers.iter_mut().find(|c| c.id == id)
    }

    pub(super) fn apply_result(
        &mut self,
        id: ActionId,
        kind: ActionKind,
        result: ActionResult,
        now: Instant,
        images: &mut BTreeSet<String>,
        config: &EngineConfig,
    ) -> Result<(), ReconcileError> {
        let mismatch = ReconcileError::MismatchedResult {
            id,
            action: kind.name(),
            pod: self.pod.uid.clone(),
        };
        let (result, err) = match (&kind, result) {
            (ActionKind::RunProbe { .. }, r) => (r, Some(mismatch)),
            (_, r @ ActionResult::Failed { .. }) => (r, None),
            (
                ActionKind::RunSandbox { .. } | ActionKind::CreateContainer { .. },
                r @ ActionResult::MountFailed { .. },
            ) => (r, None),
            (ActionKind::CreateContainer { .. }, r @ ActionResult::ConfigFailed { .. }) => {
                (r, None)
            }
            (ActionKind::RunSandbox { .. }, r @ ActionResult::SandboxCreated { .. }) => (r, None),
            (ActionKind::CreateContainer { .. }, r @ ActionResult::ContainerCreated { .. }) => {
                (r, None)
            }
            (
                ActionKind::PullImage { .. }
                | ActionKind::StartContainer { .. }
                | ActionKind::StopContainer { .. }
                | ActionKind::RemoveContainer { .. }
                | ActionKind::StopSandbox { .. }
                | ActionKind::RemoveSandbox { .. },
                ActionResult::Done,
            ) => (ActionResult::Done, None),
            _ => (
                ActionResult::Failed {
                    message: format!("{} returned an unexpected result", kind.name()),
                },
                Some(mismatch),
            ),
        };
        let failure = match &result {
            ActionResult::Failed { message } | ActionResult::ConfigFailed { message } => {
                Some(message.clone())
            }
            ActionResult::MountFailed { volume, message } => Some(format!(
                "MountVolume.SetUp failed for volume \"{volume}\" : {message}"
            )),
            _ => None,
        };
        // The kubelet's FailedMount event names the volume and why; the pod stays
        // ContainerCreating meanwhile.
        if let (Some(msg), ActionResult::MountFailed { .. }) = (&failure, &result) {
            self.event(EventType::Warning, "", "FailedMount", msg.clone());
        }
        match kind {
            ActionKind::PullImage { container, image } => {
                let mem = self.mem_mut(&container, config);
                match failure {
                    None => {
                        images.insert(normalize_image(&image));
                        mem.pull.reset();
                        mem.pulled_for = mem.pull_attempt;
                        mem.last_error = None;
                        mem.waiting = None;
                        let msg = format!("Successfully pulled image \"{image}\"");
                        self.event(EventType::Normal, &container, "Pulled", msg);
                    }
                    Some(msg) => {
                        // The kubelet's words: the status message is the pull error; events
                        // Failed "Failed to pull image ...: ERR" and Failed "Error: ErrImagePull".
                        mem.pull.record(now);
                        mem.wait(reason::ERR_IMAGE_PULL, Some(msg.clone()));
                        mem.last_error = Some(format!("pulling image {image}: {msg}"));
                        let failed = format!("Failed to pull image \"{image}\": {msg}");
                        self.event(EventType::Warning, &container, "Failed", failed);
                        let err = format!("Error: {}", reason::ERR_IMAGE_PULL);
                        self.event(EventType::Warning, &container, "Failed", err);
                    }
                }
            }
            ActionKind::RunSandbox { attempt, spec_hash } => match (failure, result) {
                (None, ActionResult::SandboxCreated { sandbox_id, pod_ip }) => {
                    self.sandboxes.retain(|s| s.id != sandbox_id);
                    self.sandboxes.push(ObservedSandbox {
                        id: sandbox_id,
                        labels: labels::sandbox_labels_for(&self.pod, &spec_hash),
                        annotations: BTreeMap::new(),
                        attempt,
                        state: SandboxState::Ready,
                        ip: pod_ip,
                    });
                    self.next_sandbox_attempt = attempt.saturating_add(1);
                    self.sandbox_retry.reset();
                    self.message = None;
                }
                (msg, ActionResult::MountFailed { .. }) => {
                    self.sandbox_retry.record(now);
                    self.message = msg;
                }
                (msg, _) => {
                    self.sandbox_retry.record(now);
                    let msg = format!("creating pod sandbox: {}", msg.unwrap_or_default());
                    self.message = Some(msg.clone());
                    self.event(EventType::Warning, "", "FailedCreatePodSandBox", msg);
                }
            },
            ActionKind::CreateContainer {
                sandbox_id,
                container,
                attempt,
                spec_hash,
                ..
            } => match (failure, result) {
                (
                    None,
                    ActionResult::ContainerCreated {
                        container_id,
                        image_ref,
                        pod_ip,
                        warnings,
                    },
                ) => {
                    if let Some(ip) = pod_ip {
                        let sandbox = self.sandboxes.iter_mut().find(|s| s.id == sandbox_id);
                        if let Some(s) = sandbox.filter(|s| s.ip.is_none()) {
                            s.ip = Some(ip);
                        }
                    }
                    let labels = labels::container_labels_for(&self.pod, &container, &spec_hash);
                    self.containers.retain(|c| c.id != container_id);
                    self.containers.push(ObservedContainer {
                        id: container_id,
                        sandbox_id,
                        labels,
                        annotations: BTreeMap::new(),
                        attempt,
                        state: ContainerState::Created,
                        image: String::new(),
                        image_ref,
                        exit_code: None,
                        reason: None,
                        message: None,
                        started_at: None,
                        finished_at: None,
                    });
                    let mem = self.mem_mut(&container, config);
                    mem.next_attempt = mem.next_attempt.max(attempt.saturating_add(1));
                    mem.create.reset();
                    for (reason, msg) in warnings {
                        self.event(EventType::Warning, &container, &reason, msg);
                    }
                    let msg = format!("Created container {container}");
                    self.event(EventType::Normal, &container, "Created", msg);
                }
                (msg, ActionResult::MountFailed { .. }) => {
                    let mem = self.mem_mut(&container, config);
                    mem.create.record(now);
                    mem.wait(reason::CONTAINER_CREATING, None);
                    mem.last_error = msg;
                }
                (msg, result) => {
                    // A config the kubelet cannot assemble is CreateContainerConfigError; any
                    // other failure CreateContainerError. Both: Failed "Error: <why>".
                    let why = match result {
                        ActionResult::ConfigFailed { .. } => reason::CREATE_CONTAINER_CONFIG_ERROR,
                        _ => reason::CREATE_CONTAINER_ERROR,
                    };
                    let mem = self.mem_mut(&container, config);
                    mem.create.record(now);
                    let msg = msg.unwrap_or_default();
                    mem.wait(why, Some(msg.clone()));
                    mem.last_error = Some(msg.clone());
                    self.event(
                        EventType::Warning,
                        &container,
                        "Failed",
                        format!("Error: {msg}"),
                    );
                }
            },
            ActionKind::StartContainer {
                container_id,
                container,
            } => {
                let failed = failure.is_some();
                if let Some(c) = self.container_mut(&container_id) {
                    if failed {
                        c.state = ContainerState::Exited;
                        c.exit_code = Some(START_ERROR_EXIT_CODE);
                        c.reason = Some(reason::START_ERROR.to_string());
                        c.finished_at = Some(now);
                    } else {
                        c.state = ContainerState::Running;
                        c.started_at = Some(now);
                    }
                }
                let mem = self.mem_mut(&container, config);
                let (kind, reason, msg) = match failure {
                    Some(msg) => {
                        mem.exit_seen = Some((container_id, now));
                        let msg = format!("starting container: {msg}");
                        mem.last_error = Some(msg.clone());
                        (EventType::Warning, "Failed", format!("Error: {msg}"))
                    }
                    None => {
                        mem.waiting = None;
                        let msg = format!("Started container {container}");
                        (EventType::Normal, "Started", msg)
                    }
                };
                self.event(kind, &container, reason, msg);
                if !failed {
                    self.ever_ran = true;
                }
            }
            ActionKind::StopContainer {
                container_id,
                container,
                ..
            } => match failure {
                None => {
                    if let Some(c) = self.container_mut(&container_id) {
                        if c.state != ContainerState::Exited {
                            c.state = ContainerState::Exited;
                            c.finished_at = Some(now);
                        }
                    }
                    self.teardown_retry.reset();
                    if let Some(mem) = self.mem.get_mut(&container) {
                        mem.exit_seen = Some((container_id, now));
                    }
                }
                Some(msg) => self.teardown_failed(now, "stopping container", &container_id, msg),
            },
            ActionKind::RemoveContainer { container_id } => match failure {
                None => {
                    self.containers.retain(|c| c.id != container_id);
                    self.teardown_retry.reset();
                }
                Some(msg) => self.teardown_failed(now, "removing container", &container_id, msg),
            },
            ActionKind::StopSandbox { sandbox_id } => match failure {
                None => {
                    if let Some(s) = self.sandboxes.iter_mut().find(|s| s.id == sandbox_id) {
                        s.state = SandboxState::NotReady;
                    }
                    self.stopped_sandboxes.insert(sandbox_id);
                    self.teardown_retry.reset();
                }
                Some(msg) => self.teardown_failed(now, "stopping sandbox", &sandbox_id, msg),
            },
            ActionKind::RemoveSandbox { sandbox_id } => match failure {
                None => {
                    self.sandboxes.retain(|s| s.id != sandbox_id);
                    self.containers.retain(|c| c.sandbox_id != sandbox_id);
                    self.stopped_sandboxes.remove(&sandbox_id);
                    self.teardown_retry.reset();
                }
                Some(msg) => self.teardown_failed(now, "removing sandbox", &sandbox_id, msg),
            },
            ActionKind::RunProbe { .. } => {}
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn teardown_failed(&mut self, now: Instant, what: &str, object: &str, msg: String) {
        self.teardown_retry.record(now);
        self.message = Some(format!("{what} {object}: {msg}"));
    }

    /// Folds in a probe result. Returns whether a verdict changed (the pod must be planned
    /// again), and when that probe is next due.
    pub(super) fn apply_probe_result(
        &mut self,
        id: ActionId,
        result: ActionResult,
    ) -> (bool, Option<Instant>) {
        let (ok, message) = match result {
            ActionResult::ProbeSucceeded => (true, None),
            ActionResult::ProbeFailed { message } | ActionResult::Failed { message } => {
                (false, Some(message))
            }
            _ => (
                false,
                Some("probe returned an unexpected result".to_string()),
            ),
        };
        // The kubelet adds ", will be restarted" when the pod's restart policy brings it back.
        let restarts = self
            .desired
            .as_ref()
            .is_none_or(|d| d.restart_policy != RestartPolicy::Never);
        let then = if restarts { ", will be restarted" } else { "" };
        for (name, mem) in self.mem.iter_mut() {
            let Some(set) = mem.probes.as_mut() else {
                continue;
            };
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let Some(t) = set.tracker_mut(kind) else {
                    continue;
                };
                if t.in_flight() != Some(id) {
                    continue;
                }
                let verdict = t.result(ok, message.clone());
                let due = t.due_at();
                let why = message.clone().unwrap_or_default();
                let unhealthy = (!ok).then(|| {
                    let what = match kind {
                        ProbeKind::Startup => "Startup",
                        ProbeKind::Liveness => "Liveness",
                        ProbeKind::Readiness => "Readiness",
                    };
                    (name.clone(), format!("{what} probe failed: {why}"))
                });
                match (kind, verdict) {
                    (ProbeKind::Startup, Verdict::Passed) => set.started = true,
                    // The kubelet's Killing message: "Container NAME failed liveness probe, will
                    // be restarted" (startup likewise).
                    (ProbeKind::Startup, Verdict::Failed) => {
                        mem.kill =
                            Some((set.instance.clone(), format!("startup probe failed: {why}")));
                        mem.kill_event =
                            Some(format!("Container {name} failed startup probe{then}"));
                    }
                    (ProbeKind::Liveness, Verdict::Failed) => {
                        mem.kill = Some((
                            set.instance.clone(),
                            format!("liveness probe failed: {why}"),
                        ));
                        mem.kill_event =
                            Some(format!("Container {name} failed liveness probe{then}"));
                    }
                    _ => {}
                }
                if let Some((container, msg)) = unhealthy {
                    self.event(EventType::Warning, &container, "Unhealthy", msg);
                }
                return (verdict != Verdict::Unchanged, due);
            }
        }
        (false, None)
    }

    // ---- relist ----

    /// Folds a fresh relist into the per-container memory (attempt numbers, exit times).
    pub(super) fn absorb_view(&mut self, now: Instant, config: &EngineConfig) {
        let mut latest: BTreeMap<String, ObservedContainer> = BTreeMap::new();
        for c in &self.containers {
            if c.state != ContainerState::Created {
                self.ever_ran = true;
            }
            let name = Self::container_name(c).to_string();
            match latest.get(&name) {
                Some(l) if l.attempt >= c.attempt => {}
                _ => {
                    latest.insert(name, c.clone());
                }
            }
        }
        for (name, c) in latest {
            let mem = self.mem_mut(&name, config);
            mem.next_attempt = mem.next_attempt.max(c.attempt.saturating_add(1));
            if c.state == ContainerState::Exited
                && mem.exit_seen.as_ref().is_none_or(|(id, _)| *id != c.id)
            {
                mem.exit_seen = Some((c.id.clone(), now));
            }
        }
        let max_sb = self
            .sandboxes
            .iter()
            .map(|s| s.attempt.saturating_add(1))
            .max()
            .unwrap_or(0);
        self.next_sandbox_attempt = self.next_sandbox_attempt.max(max_sb);
    }
}

/// Which sandboxes an instance lookup covers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'a> {
    /// Only this sandbox.
    Sandbox(&'a str),
    /// Every sandbox created for this pod spec hash.
    Spec(&'a str),
}
