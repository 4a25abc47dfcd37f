//! Probe scheduling, thresholds, startup gating and the wake-up computation.

use super::sim::*;
use crate::reconcile::model::{Deletion, ProbeKind, RestartPolicy};
use crate::reconcile::{ActionKind, PodPhase};

fn probes_of(h: &Harness, kind: ProbeKind) -> Vec<u64> {
    h.log
        .iter()
        .filter(|l| matches!(l.action.kind, ActionKind::RunProbe { kind: k, .. } if k == kind))
        .map(|l| h.secs(l.at))
        .collect()
}

#[test]
fn probe_actions_carry_what_the_executor_needs() {
    let mut p = pod("a", &["app"]);
    let mut spec = probe();
    spec.timeout = secs(2);
    p.containers[0].liveness = Some(spec.clone());
    let mut h = Harness::with_pods(vec![p]);
    h.settle();
    let l = &h.logged("RunProbe", None)[0];
    let cid = h.sim.containers[0].id.clone();
    match &l.action.kind {
        ActionKind::RunProbe {
            container,
            container_id,
            kind,
            handler,
            timeout,
            pod_ip,
        } => {
            assert_eq!(container, "app");
            assert_eq!(container_id, &cid);
            assert_eq!(*kind, ProbeKind::Liveness);
            assert_eq!(handler, &spec.handler);
            assert_eq!(*timeout, secs(2));
            assert_eq!(pod_ip.as_deref(), Some("10.0.0.1"));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn probes_follow_initial_delay_and_period() {
    let mut p = pod("a", &["app"]);
    let mut spec = probe();
    spec.initial_delay = secs(15);
    spec.period = secs(5);
    p.containers[0].liveness = Some(spec);
    let mut h = Harness::with_pods(vec![p]);
    h.settle();
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(15)));
    h.run_for(secs(31));
    assert_eq!(probes_of(&h, ProbeKind::Liveness), [15, 20, 25, 30]);
}

#[test]
fn liveness_failure_restarts_after_exactly_failure_threshold() {
    let mut p = pod("a", &["app"]);
    p.termination_grace = secs(12);
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.run_for(secs(25));
    assert_eq!(probes_of(&h, ProbeKind::Liveness), [0, 10, 20]);
    h.sim
        .probe_default
        .insert(("app".into(), ProbeKind::Liveness), false);
    h.run_for(secs(20)); // failures at 30 and 40: not yet
    assert!(h.logged("StopContainer", None).is_empty());
    h.run_for(secs(10)); // third failure at 50
    let stops = h.logged("StopContainer", None);
    assert_eq!(stops.len(), 1);
    assert_eq!(h.secs(stops[0].at), 50);
    assert!(
        matches!(stops[0].action.kind, ActionKind::StopContainer { grace, .. } if grace == secs(12))
    );
    // Killed, then restarted (a first restart is immediate) and counted.
    let st = h.status("a");
    assert_eq!(st.containers[0].restart_count, 1);
    assert!(st.containers[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("liveness probe failed"));
    assert_eq!(h.logged("StartContainer", None).len(), 2);
    // The new instance is probed afresh (at 50, 60, 70); the next kill waits for 3 failures.
    h.run_until(h.t0 + secs(69));
    assert_eq!(h.logged("StopContainer", None).len(), 1);
    h.run_until(h.t0 + secs(70));
    assert_eq!(h.logged("StopContainer", None).len(), 2);
    // ... and now the restart is backed off 10 s.
    h.run_until(h.t0 + secs(79));
    assert_eq!(h.logged("StartContainer", None).len(), 2);
    h.run_until(h.t0 + secs(80));
    assert_eq!(h.logged("StartContainer", None).len(), 3);
}

#[test]
fn liveness_kill_is_restarted_under_on_failure_but_not_never() {
    for (policy, starts, phase) in [
        (RestartPolicy::OnFailure, 2, PodPhase::Running),
        (RestartPolicy::Never, 1, PodPhase::Failed),
    ] {
        let mut p = pod("a", &["app"]);
        p.restart_policy = policy;
        p.containers[0].liveness = Some(probe());
        let mut h = Harness::with_pods(vec![p]);
        h.sim
            .probe_default
            .insert(("app".into(), ProbeKind::Liveness), false);
        h.run_for(secs(25));
        assert_eq!(h.logged("StartContainer", None).len(), starts, "{policy:?}");
        assert_eq!(h.status("a").phase, phase, "{policy:?}");
    }
}

#[test]
fn startup_probe_gates_liveness_and_readiness() {
    let mut p = pod("a", &["app"]);
    let mut startup = probe();
    startup.failure_threshold = 10;
    p.containers[0].startup = Some(startup);
    p.containers[0].liveness = Some(probe());
    p.containers[0].readiness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim
        .probe_script
        .insert(("app".into(), ProbeKind::Startup), vec![false, false, true]);
    h.run_for(secs(15));
    let st = h.status("a");
    assert!(!st.containers[0].started);
    assert!(!st.containers[0].ready);
    assert_eq!(probes_of(&h, ProbeKind::Startup), [0, 10]);
    assert!(probes_of(&h, ProbeKind::Liveness).is_empty());
    assert!(probes_of(&h, ProbeKind::Readiness).is_empty());
    h.run_for(secs(20));
    assert_eq!(
        probes_of(&h, ProbeKind::Startup),
        [0, 10, 20],
        "stops after success"
    );
    assert_eq!(probes_of(&h, ProbeKind::Liveness), [20, 30]);
    assert_eq!(probes_of(&h, ProbeKind::Readiness), [20, 30]);
    let st = h.status("a");
    assert!(st.containers[0].started);
    assert!(st.containers[0].ready);
    assert!(st.conditions.ready);
}

#[test]
fn startup_probe_failure_kills_the_container() {
    let mut p = pod("a", &["app"]);
    p.containers[0].startup = Some(probe());
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim
        .probe_default
        .insert(("app".into(), ProbeKind::Startup), false);
    h.run_for(secs(25));
    let stops = h.logged("StopContainer", None);
    assert_eq!(stops.len(), 1);
    assert_eq!(h.secs(stops[0].at), 20);
    assert!(probes_of(&h, ProbeKind::Liveness).is_empty());
    assert!(h.status("a").containers[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("startup probe failed"));
}

#[test]
fn readiness_flips_the_ready_flag_and_pod_condition() {
    let mut p = pod("a", &["app", "plain"]);
    p.containers[0].readiness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim
        .probe_script
        .insert(("app".into(), ProbeKind::Readiness), vec![false]);
    h.settle();
    let st = h.status("a");
    assert!(!st.containers[0].ready, "not ready before a success");
    assert!(st.containers[1].ready, "no probe: ready when running");
    assert!(!st.conditions.containers_ready && !st.conditions.ready);
    assert_eq!(st.phase, PodPhase::Running);
    h.run_for(secs(10));
    assert!(h.status("a").containers[0].ready);
    assert!(h.status("a").conditions.ready);
    h.sim
        .probe_default
        .insert(("app".into(), ProbeKind::Readiness), false);
    h.run_for(secs(20)); // failures at 20, 30
    assert!(h.status("a").containers[0].ready);
    h.run_for(secs(10)); // third at 40
    let st = h.status("a");
    assert!(!st.containers[0].ready);
    assert!(!st.conditions.ready);
    assert!(
        h.logged("StopContainer", None).is_empty(),
        "readiness never restarts"
    );
    h.sim.probe_default.clear();
    h.run_for(secs(10));
    assert!(h.status("a").conditions.ready);
}

#[test]
fn readiness_success_threshold() {
    let mut p = pod("a", &["app"]);
    let mut r = probe();
    r.success_threshold = 2;
    p.containers[0].readiness = Some(r);
    let mut h = Harness::with_pods(vec![p]);
    h.settle();
    assert!(!h.status("a").containers[0].ready);
    h.run_for(secs(10));
    assert!(h.status("a").containers[0].ready);
}

#[test]
fn slow_probe_results_are_not_doubled() {
    let mut p = pod("a", &["app"]);
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.relist();
    // Bring the pod up without answering probes.
    let mut probe_id = None;
    for _ in 0..10 {
        for a in h.e.poll(h.now) {
            if let ActionKind::RunProbe { .. } = a.kind {
                probe_id = Some(a.id);
                continue;
            }
            let r = h.sim.execute(&a, &h.desired, h.now);
            h.e.complete(a.id, r, h.now).unwrap();
        }
    }
    let id = probe_id.expect("a probe was issued");
    // Long past its period, the unanswered probe is not issued again.
    h.now += secs(60);
    h.relist();
    assert!(h.e.poll(h.now).is_empty());
    assert_eq!(h.e.next_wakeup(), None);
    h.e.complete(id, crate::reconcile::ActionResult::ProbeSucceeded, h.now)
        .unwrap();
    let again = h.e.poll(h.now);
    assert_eq!(again.len(), 1, "overdue probe runs right after the answer");
}

#[test]
fn next_wakeup_is_the_earliest_probe_or_back_off() {
    let mut p = pod("a", &["fast", "slow"]);
    let mut fast = probe();
    fast.period = secs(3);
    p.containers[0].readiness = Some(fast);
    p.containers[1].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p, pod("b", &["crash"])]);
    h.sim.behaviour.insert(
        "crash".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.settle();
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(3)));
    h.run_for(secs(2)); // crash exits at 1, restarts at once, exits at 2: back-off until 12
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(3)));
    h.run_for(secs(8)); // fast probes at 3, 6, 9; next 12; slow at 10
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(12)));
    // Idle CPU: a pod without probes or back-off never asks to be woken.
    let mut idle = Harness::with_pods(vec![pod("c", &["x"]); 1]);
    idle.settle();
    assert_eq!(idle.e.next_wakeup(), None);
}

#[test]
fn wakeups_per_ten_minutes_for_ten_probed_pods() {
    let pods: Vec<_> = (0..10)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), &["app"]);
            p.containers[0].liveness = Some(probe());
            p.containers[0].readiness = Some(probe());
            p
        })
        .collect();
    let mut h = Harness::with_pods(pods);
    h.settle();
    let mut wakeups = 0;
    let end = h.now + secs(600);
    while let Some(t) = h.e.next_wakeup() {
        if t > end {
            break;
        }
        h.now = t;
        wakeups += 1;
        h.settle();
        assert!(wakeups < 1000);
    }
    // All probes of all pods share the same 10 s cadence: one wake-up per period.
    assert_eq!(wakeups, 60);
    println!("wake-ups in 10 min with 10 probed pods: {wakeups}");
}

/// Ten probed pods started 0.7 s apart, run for 10 min: (wake-ups, probes, poll time).
fn spread_pods(coalesce: std::time::Duration) -> (usize, usize, std::time::Duration) {
    let mut h = Harness::with_config(crate::reconcile::EngineConfig {
        probe_coalesce: coalesce,
        ..Default::default()
    });
    let mut pods = Vec::new();
    for i in 0..10 {
        let mut p = pod(&format!("p{i}"), &["app"]);
        p.containers[0].liveness = Some(probe());
        p.containers[0].readiness = Some(probe());
        h.sim.images.insert("docker.io/img/app:1".into());
        pods.push(p);
        h.set(pods.clone());
        h.advance(std::time::Duration::from_millis(700));
    }
    h.log.clear();
    let end = h.now + secs(600);
    let mut wakeups = 0;
    let mut busy = std::time::Duration::ZERO;
    while let Some(t) = h.e.next_wakeup() {
        if t > end {
            break;
        }
        h.now = t;
        wakeups += 1;
        let started = std::time::Instant::now();
        h.settle();
        busy += started.elapsed();
        assert!(wakeups < 2000);
    }
    (wakeups, h.logged("RunProbe", None).len(), busy)
}

#[test]
fn probe_coalescing_cuts_wakeups_and_keeps_the_cadence() {
    let (exact, exact_probes, exact_busy) = spread_pods(std::time::Duration::ZERO);
    let (coalesced, probes, busy) = spread_pods(secs(1));
    println!(
        "10 pods x 2 probes, 10 min: exact {exact} wake-ups / {exact_probes} probes / {exact_busy:?} \
         engine+sim time; coalesced (1 s) {coalesced} / {probes} / {busy:?} (debug build)"
    );
    assert_eq!(exact, 600);
    assert!(coalesced <= exact / 2 + 10, "{coalesced} wake-ups");
    // Probe cadence is kept: 2 probes per pod per 10 s.
    assert_eq!(exact_probes, 1200);
    assert!((1200..=1230).contains(&probes), "{probes} probes");
}

#[test]
fn no_probes_for_deleting_pods_and_stale_results_ignored() {
    let mut p = pod("a", &["app"]);
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.relist();
    let mut outstanding = None;
    for _ in 0..10 {
        for a in h.e.poll(h.now) {
            if let ActionKind::RunProbe { .. } = a.kind {
                outstanding = Some(a.id);
                continue;
            }
            let r = h.sim.execute(&a, &h.desired, h.now);
            h.e.complete(a.id, r, h.now).unwrap();
        }
    }
    p.deletion = Some(Deletion { grace: secs(1) });
    h.set(vec![p]);
    h.run_for(secs(60));
    assert!(h.logged("RunProbe", None).is_empty());
    assert!(h.status("a").terminated);
    // The probe answered after the container is gone changes nothing.
    let failed = crate::reconcile::ActionResult::ProbeFailed {
        message: "late".into(),
    };
    h.e.complete(outstanding.unwrap(), failed, h.now).unwrap();
    assert!(h.e.poll(h.now).is_empty());
}

#[test]
fn engine_cpu_figures_for_ten_idle_pods() {
    // Ten pods, two containers each, liveness + readiness on every container, run for 10 min
    // from wake-up to wake-up with a relist at each; only engine calls are timed.
    let pods: Vec<_> = (0..10)
        .map(|i| {
            let mut p = pod(&format!("p{i}"), &["app", "side"]);
            for c in &mut p.containers {
                c.liveness = Some(probe());
                c.readiness = Some(probe());
            }
            p
        })
        .collect();
    let mut h = Harness::with_config(crate::reconcile::EngineConfig::default());
    for p in &pods {
        for c in &p.containers {
            h.sim
                .images
                .insert(crate::reconcile::model::normalize_image(&c.image));
        }
    }
    h.set(pods);
    h.settle();
    let end = h.now + secs(600);
    let (mut engine_time, mut wakeups, mut calls) = (std::time::Duration::ZERO, 0u32, 0u32);
    while let Some(t) = h.e.next_wakeup() {
        if t > end {
            break;
        }
        h.now = t;
        wakeups += 1;
        let snapshot = h.sim.snapshot();
        let started = std::time::Instant::now();
        h.e.observe(snapshot, h.now);
        let actions = h.e.poll(h.now);
        engine_time += started.elapsed();
        calls += 2;
        for a in &actions {
            let r = h.sim.execute(a, &h.desired, h.now);
            let started = std::time::Instant::now();
            h.e.complete(a.id, r, h.now).unwrap();
            let again = h.e.poll(h.now);
            engine_time += started.elapsed();
            calls += 2;
            assert!(again.is_empty());
        }
        assert!(wakeups < 1000);
    }
    println!(
        "10 pods x 2 containers x 2 probes, 10 min: {wakeups} wake-ups, {calls} engine calls, \
         {engine_time:?} engine CPU (debug build; release is several times faster)"
    );
    assert_eq!(wakeups, 60);
}
