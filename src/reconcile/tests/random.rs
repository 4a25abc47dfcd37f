//! Randomised runs: chaos in the runtime, delayed and failed results, stale relists, spec
//! changes, deletions and agent restarts, with invariants checked on every action.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::sim::*;
use crate::reconcile::labels;
use crate::reconcile::model::{
    normalize_image, ContainerState, Deletion, DesiredPod, Observed, ProbeKind, PullPolicy,
    RestartPolicy, SandboxState,
};
use crate::reconcile::{Action, ActionId, ActionKind, ActionResult, Engine, EngineConfig};

/// xorshift64* — small, deterministic, good enough for test inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len() as u64) as usize)
        }
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const ACTIONS: [&str; 7] = [
    "PullImage",
    "RunSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "RemoveSandbox",
];

fn random_pod(rng: &mut Rng, uid: &str, version: u64) -> DesiredPod {
    let n_app = 1 + rng.below(3) as usize;
    let n_init = rng.below(3) as usize;
    let apps: Vec<&str> = NAMES[..n_app].to_vec();
    let mut inits: Vec<String> = (0..n_init).map(|i| format!("init{i}")).collect();
    let sidecar = rng.chance(30);
    if sidecar {
        inits.insert(0, "side".to_string());
    }
    let init_refs: Vec<&str> = inits.iter().map(String::as_str).collect();
    let mut p = with_init(pod(uid, &apps), &init_refs);
    p.spec_hash = format!("h-{uid}-{version}");
    if sidecar {
        p.init_containers[0].sidecar = true;
        if rng.chance(50) {
            p.init_containers[0].startup = Some(probe());
        }
    }
    p.restart_policy = *rng
        .pick(&[
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ])
        .unwrap();
    p.termination_grace = Duration::from_secs(rng.below(40));
    for c in p.init_containers.iter_mut().chain(p.containers.iter_mut()) {
        c.spec_hash = format!("{}-{version}", c.spec_hash);
        c.pull_policy = *rng
            .pick(&[
                PullPolicy::Always,
                PullPolicy::IfNotPresent,
                PullPolicy::Never,
            ])
            .unwrap();
    }
    for c in p.containers.iter_mut() {
        if rng.chance(40) {
            c.liveness = Some(probe());
        }
        if rng.chance(40) {
            c.readiness = Some(probe());
        }
        if rng.chance(20) {
            c.startup = Some(probe());
        }
    }
    p
}

struct World {
    h: Harness,
    rng: Rng,
    pending: Vec<(ActionId, ActionResult)>,
    seen_ids: BTreeSet<ActionId>,
    /// Lifecycle targets of outstanding actions.
    busy: BTreeMap<ActionId, String>,
    known_uids: BTreeSet<String>,
    stale: Option<(Observed, Instant)>,
    versions: BTreeMap<String, u64>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut h = Harness::new();
        for n in NAMES.iter().take(2) {
            h.sim.images.insert(normalize_image(&format!("img/{n}:1")));
        }
        for i in 0..3 {
            h.sim.behaviour.insert(
                format!("init{i}"),
                Behaviour {
                    run_for: Some(Duration::from_secs(1)),
                    exit_code: 0,
                },
            );
        }
        World {
            h,
            rng: Rng::new(seed),
            pending: Vec::new(),
            seen_ids: BTreeSet::new(),
            busy: BTreeMap::new(),
            known_uids: BTreeSet::new(),
            stale: None,
            versions: BTreeMap::new(),
        }
    }

    fn desired_vec(&self) -> Vec<DesiredPod> {
        self.h.desired.values().cloned().collect()
    }

    fn set_desired(&mut self, pods: Vec<DesiredPod>) {
        for p in &pods {
            self.known_uids.insert(p.uid.clone());
        }
        self.h.set(pods);
    }

    fn chaos(&mut self) {
        let now = self.h.now;
        let rng = &mut self.rng;
        match rng.below(14) {
            0 | 1 => {
                let uid = format!("p{}", rng.below(4));
                let v = self.versions.entry(uid.clone()).or_insert(0);
                *v += 1;
                let p = random_pod(rng, &uid, *v);
                let mut pods = self.desired_vec();
                pods.retain(|q| q.uid != uid);
                pods.push(p);
                self.set_desired(pods);
            }
            2 => {
                let mut pods: Vec<DesiredPod> = self.h.desired.values().cloned().collect();
                if !pods.is_empty() {
                    let i = rng.below(pods.len() as u64) as usize;
                    pods[i].deletion = Some(Deletion {
                        grace: Duration::from_secs(rng.below(10)),
                    });
                }
                self.set_desired(pods);
            }
            3 => {
                let mut pods: Vec<DesiredPod> = self.h.desired.values().cloned().collect();
                if !pods.is_empty() {
                    let i = rng.below(pods.len() as u64) as usize;
                    pods.remove(i);
                }
                self.set_desired(pods);
            }
            4 => {
                let ids: Vec<String> = self.h.sim.sandboxes.iter().map(|s| s.id.clone()).collect();
                if let Some(id) = rng.pick(&ids) {
                    self.h.sim.kill_sandbox(id, now);
                }
            }
            5 | 6 => {
                let ids: Vec<String> = self
                    .h
                    .sim
                    .containers
                    .iter()
                    .filter(|c| c.state == ContainerState::Running)
                    .map(|c| c.id.clone())
                    .collect();
                if let Some(id) = rng.pick(&ids) {
                    let code = if rng.chance(50) { 0 } else { 1 };
                    if let Some(c) = self.h.sim.containers.iter_mut().find(|c| &c.id == id) {
                        c.state = ContainerState::Exited;
                        c.exit_code = Some(code);
                        c.finished_at = Some(now);
                    }
                }
            }
            7 => {
                let name = *rng.pick(&ACTIONS).unwrap();
                self.h.sim.fail.insert(name, 1 + rng.below(2) as u32);
            }
            8 => {
                let img = format!("img/{}:1", rng.pick(&NAMES).unwrap());
                if rng.chance(50) {
                    self.h.sim.pull_fail.insert(img);
                } else {
                    self.h.sim.pull_fail.clear();
                    self.h.sim.images.insert(normalize_image(&img));
                }
            }
            9 => {
                let key = (
                    rng.pick(&NAMES).unwrap().to_string(),
                    *rng.pick(&[
                        ProbeKind::Liveness,
                        ProbeKind::Readiness,
                        ProbeKind::Startup,
                    ])
                    .unwrap(),
                );
                let ok = rng.chance(50);
                self.h.sim.probe_default.insert(key, ok);
            }
            10 => {
                // A relist that was taken earlier arrives now.
                if let Some((obs, at)) = self.stale.take() {
                    self.h.e.observe(obs, at);
                }
            }
            11 => {
                // Agent restart: memory, in-flight work and undelivered results are lost.
                self.h.e = Engine::new(EngineConfig::default());
                self.pending.clear();
                self.busy.clear();
                self.seen_ids.clear();
                let pods = self.desired_vec();
                self.set_desired(pods);
            }
            _ => {
                self.h.now += Duration::from_millis(rng.below(30_000));
            }
        }
    }

    fn check(&mut self, a: &Action) {
        let sim = &self.h.sim;
        assert!(self.seen_ids.insert(a.id), "id {} reused", a.id);
        // No action for a pod that was never desired nor seen in the runtime.
        let in_runtime = sim
            .sandboxes
            .iter()
            .map(|s| &s.labels)
            .chain(sim.containers.iter().map(|c| &c.labels))
            .any(|l| labels::get(l, labels::POD_UID) == a.pod.uid);
        assert!(
            in_runtime || self.known_uids.contains(&a.pod.uid),
            "action for unknown pod {:?}",
            a
        );
        if !matches!(a.kind, ActionKind::RunProbe { .. }) {
            if let Some(t) = a.kind.target() {
                assert!(
                    !self.busy.values().any(|b| b == t),
                    "two outstanding actions on {t}: {a:?}"
                );
                self.busy.insert(a.id, t.to_string());
            }
        }
        match &a.kind {
            ActionKind::RunSandbox { .. } => {
                assert_eq!(
                    sim.ready_sandboxes(&a.pod.uid),
                    0,
                    "second sandbox for {}",
                    a.pod.uid
                );
            }
            ActionKind::CreateContainer {
                sandbox_id,
                container,
                init,
                ..
            } => self.check_inits_done(&a.pod.uid, sandbox_id, container, *init),
            ActionKind::StartContainer {
                container_id,
                container,
            } => {
                if let Some(c) = sim.containers.iter().find(|c| &c.id == container_id) {
                    let init = container.starts_with("init") || container == "side";
                    let sb = c.sandbox_id.clone();
                    self.check_inits_done(&a.pod.uid, &sb, container, init);
                }
            }
            _ => {}
        }
    }

    /// Every init container before `container` (all of them for an app container) has
    /// completed successfully in that sandbox.
    fn check_inits_done(&self, uid: &str, sandbox: &str, container: &str, init: bool) {
        let Some(d) = self.h.desired.get(uid) else {
            panic!("creating {container} for undesired pod {uid}");
        };
        assert!(
            d.deletion.is_none(),
            "creating {container} in deleting pod {uid}"
        );
        for ic in &d.init_containers {
            if init && ic.name == container {
                break;
            }
            // A sidecar only has to have been started; others must have succeeded.
            let done = self.h.sim.containers.iter().any(|c| {
                c.sandbox_id == sandbox
                    && labels::get(&c.labels, labels::CONTAINER_NAME) == ic.name
                    && (ic.sidecar && c.state != ContainerState::Created
                        || c.state == ContainerState::Exited && c.exit_code == Some(0))
            });
            assert!(
                done,
                "{container} of {uid} before init {} completed",
                ic.name
            );
        }
    }

    fn round(&mut self) {
        self.h.sim.tick(self.h.now);
        let snap = self.h.sim.snapshot();
        if self.rng.chance(20) {
            self.stale = Some((snap.clone(), self.h.now));
        }
        self.h.e.observe(snap, self.h.now);
        let actions = self.h.e.poll(self.h.now);
        for a in &actions {
            self.check(a);
            let r = self.h.sim.execute(a, &self.h.desired, self.h.now);
            // No two ready sandboxes for a pod, ever.
            for uid in ["p0", "p1", "p2", "p3"] {
                assert!(
                    self.h.sim.ready_sandboxes(uid) <= 1,
                    "two sandboxes for {uid}"
                );
            }
            self.pending.push((a.id, r));
        }
        // Deliver some results now, keep others for later (slow workers).
        let mut keep = Vec::new();
        for (id, r) in std::mem::take(&mut self.pending) {
            if self.rng.chance(70) {
                self.busy.remove(&id);
                let _ = self.h.e.complete(id, r, self.h.now);
            } else {
                keep.push((id, r));
            }
        }
        self.pending = keep;
        // Status is always computable and serialisable.
        let st = self.h.e.status(self.h.now);
        serde_json::to_string(&st).unwrap();
    }

    fn deliver_all(&mut self) {
        for (id, r) in std::mem::take(&mut self.pending) {
            self.busy.remove(&id);
            let _ = self.h.e.complete(id, r, self.h.now);
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut w = World::new(seed);
    let pods: Vec<_> = (0..2)
        .map(|i| random_pod(&mut w.rng, &format!("p{i}"), 0))
        .collect();
    w.set_desired(pods);
    for _ in 0..steps {
        if w.rng.chance(40) {
            w.chaos();
        }
        w.h.now += Duration::from_millis(w.rng.below(3_000));
        w.round();
    }
    // Calm: no more chaos or failures; everything must converge.
    w.deliver_all();
    w.h.sim.fail.clear();
    w.h.sim.pull_fail.clear();
    w.h.sim.probe_default.clear();
    w.h.sim.probe_script.clear();
    for n in NAMES
        .iter()
        .chain(["init0", "init1", "init2", "side"].iter())
    {
        w.h.sim
            .images
            .insert(normalize_image(&format!("img/{n}:1")));
    }
    for _ in 0..150 {
        w.h.now += Duration::from_secs(5);
        w.round();
        w.deliver_all();
    }
    let sim = &w.h.sim;
    for uid in ["p0", "p1", "p2", "p3"] {
        let objects = sim
            .sandboxes
            .iter()
            .filter(|s| labels::get(&s.labels, labels::POD_UID) == uid)
            .count();
        match w.h.desired.get(uid) {
            None => assert_eq!(objects, 0, "seed {seed}: undesired {uid} left behind"),
            Some(d) if d.deletion.is_some() => {
                assert_eq!(objects, 0, "seed {seed}: deleted {uid} left behind");
                assert!(w.h.e.pod_status(uid, w.h.now).unwrap().terminated);
            }
            Some(d) => {
                let st = w.h.e.pod_status(uid, w.h.now).unwrap();
                let stale = sim.sandboxes.iter().any(|s| {
                    labels::get(&s.labels, labels::POD_UID) == uid
                        && labels::spec_hash(&s.labels, &s.annotations)
                            != Some(d.spec_hash.as_str())
                });
                assert!(!stale, "seed {seed}: old spec of {uid} left behind");
                if d.restart_policy == RestartPolicy::Always {
                    assert_eq!(
                        sim.ready_sandboxes(uid),
                        1,
                        "seed {seed}: {uid} not running: {st:?}"
                    );
                    assert!(
                        st.containers.iter().all(|c| matches!(
                            c.state,
                            crate::reconcile::status::ContainerStateView::Running { .. }
                        )),
                        "seed {seed}: {uid} containers not all running: {st:?}"
                    );
                }
            }
        }
    }
    let _ = SandboxState::Ready;
}

#[test]
fn randomized_invariants_hold() {
    // TINYLET_RANDOM_SEEDS / TINYLET_RANDOM_STEPS run deeper (defaults keep `cargo test` fast).
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let steps = env("TINYLET_RANDOM_STEPS", 250) as usize;
    for seed in 0..env("TINYLET_RANDOM_SEEDS", 40) {
        run(seed, steps);
    }
}
