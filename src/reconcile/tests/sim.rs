//! A simulated container runtime and a harness that drives the engine against it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::reconcile::labels;
use crate::reconcile::model::{
    normalize_image, ContainerState, DesiredContainer, DesiredPod, Observed, ObservedContainer,
    ObservedSandbox, ProbeHandler, ProbeKind, ProbeSpec, PullPolicy, SandboxState,
};
use crate::reconcile::{Action, ActionKind, ActionResult, Engine, EngineConfig, PodStatus};

/// How instances of a container behave once started.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub run_for: Option<Duration>,
    pub exit_code: i32,
}

#[derive(Debug, Default)]
pub struct Sim {
    pub sandboxes: Vec<ObservedSandbox>,
    pub containers: Vec<ObservedContainer>,
    pub images: BTreeSet<String>,
    next: u64,
    /// Per container name.
    pub behaviour: BTreeMap<String, Behaviour>,
    pub pull_fail: BTreeSet<String>,
    /// Scripted probe results per (container, kind); once exhausted, `probe_default`.
    pub probe_script: BTreeMap<(String, ProbeKind), Vec<bool>>,
    pub probe_default: BTreeMap<(String, ProbeKind), bool>,
    /// Fail the next N actions of a name.
    pub fail: BTreeMap<&'static str, u32>,
    /// The sandbox step leaves the pod IP out; the first container creation returns it.
    pub ip_with_container: bool,
    /// Warnings every container creation reports.
    pub create_warnings: Vec<(String, String)>,
}

impl Sim {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-{}", self.next)
    }

    pub fn ready_sandboxes(&self, uid: &str) -> usize {
        self.sandboxes
            .iter()
            .filter(|s| {
                s.state == SandboxState::Ready && labels::get(&s.labels, labels::POD_UID) == uid
            })
            .count()
    }

    /// Instances of a container of a pod, oldest first.
    pub fn instances(&self, uid: &str, name: &str) -> Vec<&ObservedContainer> {
        let mut v: Vec<_> = self
            .containers
            .iter()
            .filter(|c| {
                labels::get(&c.labels, labels::POD_UID) == uid
                    && labels::get(&c.labels, labels::CONTAINER_NAME) == name
            })
            .collect();
        v.sort_by_key(|c| c.attempt);
        v
    }

    /// Makes running containers exit when their time is up.
    pub fn tick(&mut self, now: Instant) {
        for c in &mut self.containers {
            if c.state != ContainerState::Running {
                continue;
            }
            let name = labels::get(&c.labels, labels::CONTAINER_NAME);
            let Some(b) = self.behaviour.get(name) else {
                continue;
            };
            let (Some(run), Some(start)) = (b.run_for, c.started_at) else {
                continue;
            };
            if start + run <= now {
                c.state = ContainerState::Exited;
                c.exit_code = Some(b.exit_code);
                c.finished_at = Some(start + run);
            }
        }
    }

    /// Next instant a running container exits.
    pub fn next_event(&self) -> Option<Instant> {
        self.containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter_map(|c| {
                let b = self
                    .behaviour
                    .get(labels::get(&c.labels, labels::CONTAINER_NAME))?;
                Some(c.started_at? + b.run_for?)
            })
            .min()
    }

    pub fn snapshot(&self) -> Observed {
        Observed {
            sandboxes: self.sandboxes.clone(),
            containers: self.containers.clone(),
            images: self.images.clone(),
        }
    }

    /// Kills a sandbox behind the engine's back (its containers die with it).
    pub fn kill_sandbox(&mut self, id: &str, now: Instant) {
        for s in &mut self.sandboxes {
            if s.id == id {
                s.state = SandboxState::NotReady;
            }
        }
        for c in &mut self.containers {
            if c.sandbox_id == id && c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = Some(137);
                c.finished_at = Some(now);
            }
        }
    }

    fn failing(&mut self, name: &'static str) -> bool {
        match self.fail.get_mut(name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    pub fn execute(
        &mut self,
        a: &Action,
        desired: &BTreeMap<String, DesiredPod>,
        now: Instant,
    ) -> ActionResult {
        // "CreateContainerConfig": a creation refused for its config, before the runtime.
        if matches!(a.kind, ActionKind::CreateContainer { .. })
            && self.failing("CreateContainerConfig")
        {
            return ActionResult::ConfigFailed {
                message: "configMap \"gone\" is not available".into(),
            };
        }
        if self.failing(a.kind.name()) {
            // As with containerd, a failed start leaves the container exited.
            if let ActionKind::StartContainer { container_id, .. } = &a.kind {
                if let Some(c) = self.containers.iter_mut().find(|c| &c.id == container_id) {
                    c.state = ContainerState::Exited;
                    c.exit_code = Some(128);
                    c.finished_at = Some(now);
                }
            }
            return ActionResult::Failed {
                message: "injected failure".into(),
            };
        }
        let d = desired.get(&a.pod.uid);
        match &a.kind {
            ActionKind::PullImage { image, .. } => {
                if self.pull_fail.contains(image) {
                    ActionResult::Failed {
                        message: "not found".into(),
                    }
                } else {
                    self.images.insert(normalize_image(image));
                    ActionResult::Done
                }
            }
            ActionKind::RunSandbox { attempt, spec_hash } => {
                let Some(d) = d else {
                    return ActionResult::Failed {
                        message: "no such pod".into(),
                    };
                };
                let mut dd = d.clone();
                dd.spec_hash = spec_hash.clone();
                let id = self.id("sb");
                let ip = format!("10.0.0.{}", self.next);
                self.sandboxes.push(ObservedSandbox {
                    id: id.clone(),
                    labels: labels::sandbox_labels(&dd),
                    annotations: labels::sandbox_annotations(&dd),
                    attempt: *attempt,
                    state: SandboxState::Ready,
                    ip: Some(ip.clone()),
                });
                ActionResult::SandboxCreated {
                    sandbox_id: id,
                    pod_ip: (!self.ip_with_container).then_some(ip),
                }
            }
            ActionKind::CreateContainer {
                sandbox_id,
                container,
                attempt,
                ..
            } => {
                let spec = d.and_then(|d| {
                    d.init_containers
                        .iter()
                        .chain(d.containers.iter())
                        .chain(d.ephemeral_containers.iter())
                        .find(|c| &c.name == container)
                        .map(|c| (d, c))
                });
                let Some((d, spec)) = spec else {
                    return ActionResult::Failed {
                        message: "no such container".into(),
                    };
                };
                if !self.sandboxes.iter().any(|s| &s.id == sandbox_id) {
                    return ActionResult::Failed {
                        message: "no such sandbox".into(),
                    };
                }
                if !self.images.contains(&normalize_image(&spec.image)) {
                    return ActionResult::Failed {
                        message: "image not present".into(),
                    };
                }
                let first = !self.containers.iter().any(|c| &c.sandbox_id == sandbox_id);
                let pod_ip = self
                    .sandboxes
                    .iter()
                    .find(|s| &s.id == sandbox_id)
                    .and_then(|s| s.ip.clone())
                    .filter(|_| self.ip_with_container && first);
                let id = self.id("c");
                self.containers.push(ObservedContainer {
                    id: id.clone(),
                    sandbox_id: sandbox_id.clone(),
                    labels: labels::container_labels(d, spec),
                    annotations: labels::container_annotations(d, *attempt),
                    attempt: *attempt,
                    state: ContainerState::Created,
                    image: spec.image.clone(),
                    image_ref: format!("sha256:{}", spec.image.len()),
                    exit_code: None,
                    reason: None,
                    message: None,
                    started_at: None,
                    finished_at: None,
                });
                ActionResult::ContainerCreated {
                    container_id: id,
                    image_ref: String::new(),
                    pod_ip,
                    warnings: self.create_warnings.clone(),
                }
            }
            ActionKind::StartContainer { container_id, .. } => {
                match self.containers.iter_mut().find(|c| &c.id == container_id) {
                    Some(c) if c.state == ContainerState::Created => {
                        c.state = ContainerState::Running;
                        c.started_at = Some(now);
                        ActionResult::Done
                    }
                    _ => ActionResult::Failed {
                        message: "not startable".into(),
                    },
                }
            }
            ActionKind::StopContainer { container_id, .. } => {
                if let Some(c) = self.containers.iter_mut().find(|c| &c.id == container_id) {
                    if c.state != ContainerState::Exited {
                        c.state = ContainerState::Exited;
                        c.exit_code = Some(137);
                        c.finished_at = Some(now);
                    }
                }
                ActionResult::Done
            }
            ActionKind::RemoveContainer { container_id } => {
                self.containers.retain(|c| &c.id != container_id);
                ActionResult::Done
            }
            ActionKind::StopSandbox { sandbox_id } => {
                self.kill_sandbox(sandbox_id, now);
                ActionResult::Done
            }
            ActionKind::RemoveSandbox { sandbox_id } => {
                self.sandboxes.retain(|s| &s.id != sandbox_id);
                self.containers.retain(|c| &c.sandbox_id != sandbox_id);
                ActionResult::Done
            }
            ActionKind::RunProbe {
                container, kind, ..
            } => {
                let key = (container.clone(), *kind);
                let ok = match self.probe_script.get_mut(&key) {
                    Some(v) if !v.is_empty() => v.remove(0),
                    _ => *self.probe_default.get(&key).unwrap_or(&true),
                };
                if ok {
                    ActionResult::ProbeSucceeded
                } else {
                    ActionResult::ProbeFailed {
                        message: "probe said no".into(),
                    }
                }
            }
        }
    }
}

/// One executed action, stamped.
#[derive(Debug, Clone)]
pub struct Logged {
    pub at: Instant,
    pub action: Action,
}

pub struct Harness {
    pub e: Engine,
    pub sim: Sim,
    pub t0: Instant,
    pub now: Instant,
    pub desired: BTreeMap<String, DesiredPod>,
    pub log: Vec<Logged>,
}

impl Harness {
    pub fn new() -> Self {
        // Exact kubelet timing in tests; coalescing has its own test.
        let config = EngineConfig {
            probe_coalesce: Duration::ZERO,
            ..EngineConfig::default()
        };
        Harness::with_config(config)
    }

    pub fn with_config(config: EngineConfig) -> Self {
        let t0 = Instant::now();
        Harness {
            e: Engine::new(config),
            sim: Sim::default(),
            t0,
            now: t0,
            desired: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    pub fn with_pods(pods: Vec<DesiredPod>) -> Self {
        let mut h = Harness::new();
        for p in &pods {
            let all = p.init_containers.iter().chain(p.containers.iter());
            for c in all.chain(p.ephemeral_containers.iter()) {
                h.sim.images.insert(normalize_image(&c.image));
            }
        }
        h.set(pods);
        h
    }

    pub fn set(&mut self, pods: Vec<DesiredPod>) {
        self.desired = pods.iter().map(|p| (p.uid.clone(), p.clone())).collect();
        self.e.set_desired(pods);
    }

    pub fn relist(&mut self) {
        self.sim.tick(self.now);
        self.e.observe(self.sim.snapshot(), self.now);
    }

    /// One relist + poll + execute round.
    pub fn step(&mut self) -> Vec<Action> {
        self.relist();
        let actions = self.e.poll(self.now);
        for a in &actions {
            let r = self.sim.execute(a, &self.desired, self.now);
            self.log.push(Logged {
                at: self.now,
                action: a.clone(),
            });
            self.e.complete(a.id, r, self.now).unwrap();
        }
        actions
    }

    /// Rounds until the engine has nothing more to do now.
    pub fn settle(&mut self) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..200 {
            let a = self.step();
            if a.is_empty() {
                return all;
            }
            all.extend(a);
        }
        panic!("engine did not settle");
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.settle()
    }

    /// Jumps from event to event (engine wake-ups and simulated exits) until `until`.
    pub fn run_until(&mut self, until: Instant) -> Vec<Action> {
        let mut all = self.settle();
        for _ in 0..10_000 {
            let next = [self.e.next_wakeup(), self.sim.next_event()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    all.extend(self.settle());
                }
                _ => {
                    self.now = until;
                    all.extend(self.settle());
                    return all;
                }
            }
        }
        panic!("too many events");
    }

    pub fn run_for(&mut self, d: Duration) -> Vec<Action> {
        let until = self.now + d;
        self.run_until(until)
    }

    pub fn status(&self, uid: &str) -> PodStatus {
        self.e.pod_status(uid, self.now).expect("pod status")
    }

    /// Seconds since t0.
    pub fn secs(&self, t: Instant) -> u64 {
        t.duration_since(self.t0).as_secs()
    }

    /// Logged actions of a given name (and container, if given).
    pub fn logged(&self, name: &str, container: Option<&str>) -> Vec<Logged> {
        self.log
            .iter()
            .filter(|l| l.action.kind.name() == name)
            .filter(|l| container.is_none_or(|c| container_of(&l.action.kind) == Some(c)))
            .cloned()
            .collect()
    }
}

pub fn container_of(k: &ActionKind) -> Option<&str> {
    match k {
        ActionKind::PullImage { container, .. }
        | ActionKind::CreateContainer { container, .. }
        | ActionKind::StartContainer { container, .. }
        | ActionKind::StopContainer { container, .. }
        | ActionKind::RunProbe { container, .. } => Some(container),
        _ => None,
    }
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn pod(uid: &str, containers: &[&str]) -> DesiredPod {
    let mut p = DesiredPod::new(uid, "default", &format!("pod-{uid}"), &format!("h-{uid}"));
    p.containers = containers
        .iter()
        .map(|n| DesiredContainer::new(n, &format!("img/{n}:1"), &format!("ch-{n}")))
        .collect();
    p
}

pub fn with_init(mut p: DesiredPod, inits: &[&str]) -> DesiredPod {
    p.init_containers = inits
        .iter()
        .map(|n| DesiredContainer::new(n, &format!("img/{n}:1"), &format!("ch-{n}")))
        .collect();
    p
}

pub fn probe() -> ProbeSpec {
    ProbeSpec::new(ProbeHandler::HttpGet {
        host: String::new(),
        port: 8080,
        path: "/healthz".into(),
        scheme: crate::reconcile::model::HttpScheme::Http,
        headers: Vec::new(),
    })
}

pub fn always_pull(mut p: DesiredPod) -> DesiredPod {
    for c in &mut p.containers {
        c.pull_policy = PullPolicy::Always;
    }
    p
}

pub fn lifecycle(actions: &[Action]) -> Vec<&Action> {
    actions
        .iter()
        .filter(|a| !matches!(a.kind, ActionKind::RunProbe { .. }))
        .collect()
}
