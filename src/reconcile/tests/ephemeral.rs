//! Ephemeral containers (`kubectl debug`): added to a running pod, run once in its sandbox.
//!
//! Upstream rules followed: the kubelet starts ephemeral containers in the pod's existing
//! sandbox once the pod is running (kuberuntime `computePodActions` lists them in
//! `EphemeralContainersToStart` only when no sandbox change is needed), never restarts one
//! (there is no restart policy for them: an exited one stays exited), and reports them under
//! `ephemeralContainerStatuses`, not ready. They are not part of the pod hash, so adding one
//! never replaces the pod.

use super::sim::*;
use crate::reconcile::model::{ContainerState, DesiredContainer, DesiredPod, RestartPolicy};
use crate::reconcile::status::ContainerStateView;
use crate::reconcile::{ActionKind, PodPhase};

fn with_debugger(mut p: DesiredPod) -> DesiredPod {
    p.ephemeral_containers = vec![DesiredContainer::new(
        "debugger",
        "img/app:1",
        "ch-debugger",
    )];
    p
}

fn count(h: &Harness, name: &str, container: Option<&str>) -> usize {
    h.logged(name, container).len()
}

#[test]
fn ephemeral_container_joins_the_running_sandbox_once_and_is_not_restarted() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    assert_eq!(h.status("a").phase, PodPhase::Running);
    let sandbox = h.sim.sandboxes[0].id.clone();
    let app_id = h.sim.instances("a", "app")[0].id.clone();
    h.log.clear();

    h.sim.behaviour.insert(
        "debugger".into(),
        Behaviour {
            run_for: Some(secs(3)),
            exit_code: 1,
        },
    );
    h.set(vec![with_debugger(pod("a", &["app"]))]);
    h.settle();
    // One create and one start, in the same sandbox; the pod is otherwise left alone.
    let creates = h.logged("CreateContainer", Some("debugger"));
    assert_eq!(creates.len(), 1, "{:?}", h.log);
    assert!(matches!(
        &creates[0].action.kind,
        ActionKind::CreateContainer { sandbox_id, init: false, .. } if *sandbox_id == sandbox
    ));
    assert_eq!(count(&h, "StartContainer", Some("debugger")), 1);
    for name in [
        "StopSandbox",
        "RunSandbox",
        "RemoveSandbox",
        "StopContainer",
    ] {
        assert_eq!(count(&h, name, None), 0, "{name}: {:?}", h.log);
    }
    assert_eq!(count(&h, "CreateContainer", Some("app")), 0);
    assert_eq!(h.sim.instances("a", "app")[0].id, app_id);

    let st = h.status("a");
    assert_eq!(st.ephemeral_containers.len(), 1);
    let e = &st.ephemeral_containers[0];
    assert_eq!(e.name, "debugger");
    assert!(
        matches!(e.state, ContainerStateView::Running { .. }),
        "{e:?}"
    );
    assert!(!e.ready && e.restart_count == 0);
    assert!(e.container_id.is_some());
    // Readiness of the pod is the app containers' alone.
    assert!(st.conditions.ready, "{st:?}");

    // It exits (with an error, under restartPolicy Always): it stays exited, with no
    // back-off, no recreation, and the app container untouched.
    h.run_for(secs(600));
    assert_eq!(count(&h, "CreateContainer", Some("debugger")), 1);
    assert_eq!(count(&h, "StartContainer", Some("debugger")), 1);
    assert_eq!(count(&h, "RemoveContainer", None), 0, "kept for its logs");
    assert_eq!(h.sim.instances("a", "debugger").len(), 1);
    assert_eq!(
        h.sim.instances("a", "debugger")[0].state,
        ContainerState::Exited
    );
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    let e = &st.ephemeral_containers[0];
    assert!(
        matches!(
            e.state,
            ContainerStateView::Terminated {
                exit_code: Some(1),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.backoff.is_none() && e.restart_count == 0);
    assert_eq!(h.sim.instances("a", "app")[0].id, app_id);
    assert_eq!(h.sim.ready_sandboxes("a"), 1);
}

#[test]
fn ephemeral_container_waits_for_the_app_containers() {
    // Declared from the start (as after an agent restart): it comes after the app container.
    let mut h = Harness::with_pods(vec![with_debugger(pod("a", &["app"]))]);
    h.settle();
    let order: Vec<String> = lifecycle(&h.log.iter().map(|l| l.action.clone()).collect::<Vec<_>>())
        .iter()
        .map(|a| format!("{}:{}", a.kind.name(), container_of(&a.kind).unwrap_or("")))
        .collect();
    assert_eq!(
        order,
        [
            "RunSandbox:",
            "CreateContainer:app",
            "StartContainer:app",
            "CreateContainer:debugger",
            "StartContainer:debugger"
        ]
    );
}

#[test]
fn a_failed_ephemeral_create_is_retried_with_back_off_then_left_alone() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    h.sim.fail.insert("CreateContainer", 1);
    h.set(vec![with_debugger(pod("a", &["app"]))]);
    h.settle();
    assert_eq!(count(&h, "CreateContainer", Some("debugger")), 1);
    h.sim.behaviour.insert(
        "debugger".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.run_for(secs(120));
    assert_eq!(count(&h, "CreateContainer", Some("debugger")), 2);
    assert_eq!(count(&h, "StartContainer", Some("debugger")), 1);
    assert_eq!(count(&h, "StopSandbox", None), 0);
    let st = h.status("a");
    assert!(matches!(
        st.ephemeral_containers[0].state,
        ContainerStateView::Terminated {
            exit_code: Some(0),
            ..
        }
    ));
}

#[test]
fn a_pod_that_finishes_stops_its_ephemeral_container() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    h.set(vec![with_debugger(p.clone())]);
    h.settle();
    assert_eq!(count(&h, "StartContainer", Some("debugger")), 1);
    // The app container exits 0: the pod is Succeeded and the debugger, still running,
    // is stopped with it; its exit does not decide the phase.
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.run_for(secs(60));
    assert_eq!(h.status("a").phase, PodPhase::Succeeded);
    assert_eq!(count(&h, "StopContainer", Some("debugger")), 1);
    assert_eq!(count(&h, "CreateContainer", Some("debugger")), 1);
}

/// Ephemeral containers "will not be restarted when they exit or when a Pod is removed or
/// restarted" (the API's EphemeralContainer doc): a new sandbox gets the app containers back,
/// not the ephemeral one, which is then reported as a container that cannot be found.
#[test]
fn a_new_sandbox_does_not_run_the_ephemeral_container_again() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    h.set(vec![with_debugger(pod("a", &["app"]))]);
    h.settle();
    assert_eq!(count(&h, "StartContainer", Some("debugger")), 1);
    let sandbox = h.sim.sandboxes[0].id.clone();
    let now = h.now;
    h.sim.kill_sandbox(&sandbox, now);
    h.run_for(secs(60));
    assert_eq!(count(&h, "RunSandbox", None), 2, "{:?}", h.log);
    assert_eq!(count(&h, "StartContainer", Some("app")), 2);
    assert_eq!(count(&h, "CreateContainer", Some("debugger")), 1);
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    let e = &st.ephemeral_containers[0];
    assert!(
        matches!(&e.state, ContainerStateView::Terminated { reason, .. }
            if reason == "ContainerStatusUnknown"),
        "{e:?}"
    );
    assert!(!e.ready && e.backoff.is_none());
}
