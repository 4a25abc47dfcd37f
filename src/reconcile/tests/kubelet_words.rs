//! The kubelet's events, waiting reasons and messages, word for word, and the status fields of
//! restarted containers.

use super::sim::*;
use crate::reconcile::model::ProbeKind;
use crate::reconcile::status::{reason, EventType, PodEvent};
use crate::reconcile::{Action, ActionKind, ActionResult, PodPhase};

fn events(h: &mut Harness, reason: &str) -> Vec<PodEvent> {
    h.e.drain_events()
        .into_iter()
        .filter(|e| e.reason == reason)
        .collect()
}

fn messages(ev: &[PodEvent]) -> Vec<&str> {
    ev.iter().map(|e| e.message.as_str()).collect()
}

/// Rounds like `Harness::settle`, with `inject` choosing some results instead of the sim.
fn settle_with(h: &mut Harness, inject: &dyn Fn(&Action) -> Option<ActionResult>) {
    for _ in 0..200 {
        h.relist();
        let actions = h.e.poll(h.now);
        if actions.is_empty() {
            return;
        }
        for a in &actions {
            let r = match inject(a) {
                Some(r) => r,
                None => h.sim.execute(a, &h.desired, h.now),
            };
            h.e.complete(a.id, r, h.now).unwrap();
        }
    }
    panic!("engine did not settle");
}

fn crash_looping(run_for: u64) -> Harness {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(run_for)),
            exit_code: 1,
        },
    );
    h
}

// kubelet (kuberuntime_manager.go doBackOff): every back-off raises Warning BackOff "Back-off
// restarting failed container NAME in pod POD_NS(UID)" — the same text each time, so the
// event correlator counts one object up — and the waiting message names the delay:
// "back-off 10s restarting failed container=NAME pod=POD_NS(UID)".
#[test]
fn crash_loop_back_off_is_one_repeated_event_in_the_kubelets_words() {
    let mut h = crash_looping(1);
    h.run_for(secs(80)); // back-offs at 2, 13, 34, 75
    let ev = events(&mut h, "BackOff");
    assert_eq!(ev.len(), 4, "{:?}", messages(&ev));
    for e in &ev {
        assert_eq!(e.kind, EventType::Warning);
        assert_eq!(e.container.as_deref(), Some("app"));
        assert_eq!(
            e.message,
            "Back-off restarting failed container app in pod pod-a_default(a)"
        );
    }
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state,
        crate::reconcile::status::ContainerStateView::Waiting {
            reason: reason::CRASH_LOOP_BACK_OFF.into(),
            message: Some(
                "back-off 1m20s restarting failed container=app pod=pod-a_default(a)".into()
            ),
        }
    );
}

// kubelet (flowcontrol.Backoff as used for container restarts): the first restart of a fresh
// curve is immediate, the next waits 10 s, doubling to 5 min. A container that exits at once
// must not reach restartCount 2 before its 10 s back-off has passed.
#[test]
fn no_burst_of_restarts_before_the_back_off() {
    let mut h = crash_looping(0);
    h.run_for(secs(9));
    let st = h.status("a");
    assert_eq!(st.containers[0].restart_count, 1);
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::CRASH_LOOP_BACK_OFF)
    );
    assert_eq!(h.logged("StartContainer", None).len(), 2);
    h.run_for(secs(2));
    assert_eq!(h.status("a").containers[0].restart_count, 2);
}

// kubelet (kuberuntime_container.go): the previous instance is reported in lastState with its
// exit code, reason, start and finish times and container ID.
#[test]
fn last_state_carries_the_previous_instance_times_and_id() {
    let mut h = crash_looping(1);
    h.run_for(secs(5)); // started 0, exit 1, restart 1, exit 2, back-off until 12
    let st = h.status("a");
    let c = &st.containers[0];
    let first = h.sim.instances("a", "app")[0].clone();
    let second = h.sim.instances("a", "app")[1].clone();
    assert_eq!(c.container_id.as_deref(), Some(second.id.as_str()));
    // Waiting in back-off: lastState is the latest (exited) instance.
    assert_eq!(c.last_container_id.as_deref(), Some(second.id.as_str()));
    assert_eq!(c.last_started_at, Some(h.t0 + secs(1)));
    assert_eq!(c.last_finished_at, Some(h.t0 + secs(2)));
    h.run_until(h.t0 + secs(12) + std::time::Duration::from_millis(500)); // restarted at 12
    let st = h.status("a");
    let c = &st.containers[0];
    assert!(matches!(
        c.state,
        crate::reconcile::status::ContainerStateView::Running { .. }
    ));
    assert_eq!(c.last_container_id.as_deref(), Some(second.id.as_str()));
    assert_ne!(c.last_container_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(c.last_started_at, Some(h.t0 + secs(1)));
    assert_eq!(c.last_finished_at, Some(h.t0 + secs(2)));
}

// kubelet (prober.go, kuberuntime_manager.go computePodActions): a failed probe is Warning
// Unhealthy "<Kind> probe failed: <output>"; the kill it causes is Normal Killing "Container
// NAME failed liveness probe, will be restarted" (startup likewise).
#[test]
fn probe_failures_and_the_kills_they_cause() {
    for (kind, word) in [
        (ProbeKind::Liveness, "liveness"),
        (ProbeKind::Startup, "startup"),
    ] {
        let mut p = pod("a", &["app"]);
        match kind {
            ProbeKind::Liveness => p.containers[0].liveness = Some(probe()),
            _ => p.containers[0].startup = Some(probe()),
        }
        let mut h = Harness::with_pods(vec![p]);
        h.sim.probe_default.insert(("app".into(), kind), false);
        h.run_for(secs(35));
        let ev = h.e.drain_events();
        let unhealthy: Vec<&str> = ev
            .iter()
            .filter(|e| e.reason == "Unhealthy")
            .map(|e| e.message.as_str())
            .collect();
        let title = if word == "liveness" {
            "Liveness"
        } else {
            "Startup"
        };
        assert!(!unhealthy.is_empty());
        for m in &unhealthy {
            assert_eq!(*m, format!("{title} probe failed: probe said no"));
        }
        let killing: Vec<&PodEvent> = ev.iter().filter(|e| e.reason == "Killing").collect();
        assert!(!killing.is_empty(), "{word}");
        assert_eq!(killing[0].kind, EventType::Normal);
        assert_eq!(
            killing[0].message,
            format!("Container app failed {word} probe, will be restarted")
        );
    }
}

// kubelet (prober.go): a failed readiness probe is Unhealthy "Readiness probe failed: <output>"
// and kills nothing.
#[test]
fn readiness_failures_are_unhealthy_without_a_kill() {
    let mut p = pod("a", &["app"]);
    p.containers[0].readiness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim
        .probe_default
        .insert(("app".into(), ProbeKind::Readiness), false);
    h.run_for(secs(35));
    let ev = h.e.drain_events();
    let unhealthy: Vec<&str> = ev
        .iter()
        .filter(|e| e.reason == "Unhealthy")
        .map(|e| e.message.as_str())
        .collect();
    assert!(unhealthy.len() >= 3, "{unhealthy:?}");
    assert!(unhealthy
        .iter()
        .all(|m| *m == "Readiness probe failed: probe said no"));
    assert!(!ev.iter().any(|e| e.reason == "Killing"));
}

// kubelet: under restartPolicy Never the kill message does not promise a restart.
#[test]
fn liveness_kill_under_never_is_not_restarted() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = crate::reconcile::model::RestartPolicy::Never;
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim
        .probe_default
        .insert(("app".into(), ProbeKind::Liveness), false);
    h.run_for(secs(35));
    let ev = events(&mut h, "Killing");
    assert_eq!(messages(&ev), ["Container app failed liveness probe"]);
}

// kubelet: a pod being deleted gets Killing "Stopping container NAME" for each running one.
#[test]
fn deletion_kills_are_stopping_container() {
    let mut h = Harness::with_pods(vec![pod("a", &["app", "side"])]);
    h.settle();
    h.e.drain_events();
    let mut p = pod("a", &["app", "side"]);
    p.deletion = Some(crate::reconcile::model::Deletion { grace: secs(30) });
    h.set(vec![p]);
    h.settle();
    let ev = events(&mut h, "Killing");
    let mut got = messages(&ev);
    got.sort();
    assert_eq!(got, ["Stopping container app", "Stopping container side"]);
}

// kubelet: a changed container definition is Killing "Container NAME definition changed,
// will be restarted".
#[test]
fn spec_change_kill_message() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    h.e.drain_events();
    let mut p = pod("a", &["app"]);
    p.containers[0].spec_hash = "ch-app-2".into();
    h.set(vec![p]);
    h.settle();
    let ev = events(&mut h, "Killing");
    assert_eq!(
        messages(&ev),
        ["Container app definition changed, will be restarted"]
    );
}

// kubelet (images/image_manager.go + pod worker back-off): a failed pull is ErrImagePull with
// the pull error as message, with Warning Failed "Failed to pull image \"IMG\": ERR" and
// "Error: ErrImagePull"; the next sync (10 s later) finds the back-off: ImagePullBackOff
// "Back-off pulling image \"IMG\"", Normal BackOff with that text and Failed "Error:
// ImagePullBackOff".
#[test]
fn image_pull_failure_then_back_off_in_the_kubelets_words() {
    let mut h = Harness::new();
    h.set(vec![pod("a", &["app"])]);
    h.sim.pull_fail.insert("img/app:1".into());
    h.settle();
    let waiting = |h: &Harness| h.status("a").containers[0].state.clone();
    assert_eq!(
        waiting(&h),
        crate::reconcile::status::ContainerStateView::Waiting {
            reason: reason::ERR_IMAGE_PULL.into(),
            message: Some("not found".into()),
        }
    );
    let failed = events(&mut h, "Failed");
    assert_eq!(
        messages(&failed),
        [
            "Failed to pull image \"img/app:1\": not found",
            "Error: ErrImagePull"
        ]
    );
    // Second failure at 10 s; its back-off (20 s) shows from 20 s.
    h.run_until(h.t0 + secs(19));
    assert_eq!(waiting(&h).waiting_reason(), Some(reason::ERR_IMAGE_PULL));
    h.e.drain_events();
    h.run_until(h.t0 + secs(20));
    assert_eq!(
        waiting(&h),
        crate::reconcile::status::ContainerStateView::Waiting {
            reason: reason::IMAGE_PULL_BACK_OFF.into(),
            message: Some("Back-off pulling image \"img/app:1\"".into()),
        }
    );
    let ev = h.e.drain_events();
    let got: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| (e.reason.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("BackOff", "Back-off pulling image \"img/app:1\""),
            ("Failed", "Error: ImagePullBackOff")
        ]
    );
    // Once per back-off window.
    h.run_until(h.t0 + secs(29));
    assert!(events(&mut h, "BackOff").is_empty());
}

// kubelet (kuberuntime_container.go startContainer): a container whose env cannot be
// assembled waits with CreateContainerConfigError and the error as message, Warning Failed
// "Error: <error>", retried with back-off.
#[test]
fn config_errors_are_create_container_config_error() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    let msg = "couldn't find key nope in ConfigMap default/cfg";
    let inject = |a: &Action| match a.kind {
        ActionKind::CreateContainer { .. } => Some(ActionResult::ConfigFailed {
            message: msg.into(),
        }),
        _ => None,
    };
    settle_with(&mut h, &inject);
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state,
        crate::reconcile::status::ContainerStateView::Waiting {
            reason: reason::CREATE_CONTAINER_CONFIG_ERROR.into(),
            message: Some(msg.into()),
        }
    );
    assert_eq!(st.phase, PodPhase::Pending);
    let failed = events(&mut h, "Failed");
    assert_eq!(messages(&failed), [format!("Error: {msg}")]);
    // Fixed at the server: the next attempt after the back-off creates it.
    h.run_for(secs(10));
    assert_eq!(h.status("a").phase, PodPhase::Running);
}

// kubelet (volume manager): a volume that cannot be set up raises Warning FailedMount
// "MountVolume.SetUp failed for volume \"V\" : configmap \"C\" not found" while the pod's
// containers wait in ContainerCreating.
#[test]
fn volume_failures_are_failed_mount_while_container_creating() {
    for at_sandbox in [true, false] {
        let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
        let inject = |a: &Action| {
            let hit = match a.kind {
                ActionKind::RunSandbox { .. } => at_sandbox,
                ActionKind::CreateContainer { .. } => !at_sandbox,
                _ => false,
            };
            hit.then(|| ActionResult::MountFailed {
                volume: "config".into(),
                message: "configmap \"missing\" not found".into(),
            })
        };
        settle_with(&mut h, &inject);
        let st = h.status("a");
        assert_eq!(
            st.containers[0].state.waiting_reason(),
            Some(reason::CONTAINER_CREATING),
            "sandbox step: {at_sandbox}"
        );
        let ev = h.e.drain_events();
        let mount: Vec<&PodEvent> = ev.iter().filter(|e| e.reason == "FailedMount").collect();
        assert_eq!(mount.len(), 1);
        assert_eq!(mount[0].kind, EventType::Warning);
        assert_eq!(
            mount[0].message,
            "MountVolume.SetUp failed for volume \"config\" : configmap \"missing\" not found"
        );
        assert!(!ev.iter().any(|e| e.reason == "FailedCreatePodSandBox"));
    }
}
