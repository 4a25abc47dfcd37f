//! Status rules the kubelet defines: init container readiness and the Initialized condition's
//! list, the PodInitializing default, and the active deadline (with an injected clock).

use super::sim::*;
use crate::reconcile::status::{reason, ContainerStateView};
use crate::reconcile::{ActionKind, PodPhase};

fn run(h: &mut Harness, name: &str, run_for: u64, exit_code: i32) {
    h.sim.behaviour.insert(
        name.into(),
        Behaviour {
            run_for: Some(secs(run_for)),
            exit_code,
        },
    );
}

/// Upstream (prober manager's UpdatePodStatus): a regular init container that terminated with
/// exit code 0 is `ready: true`. Upstream (convertToAPIContainerStatuses): a container the
/// runtime does not know yet waits with reason PodInitializing when the pod has init
/// containers. Upstream (GeneratePodInitializedCondition): while not initialized, the
/// condition names the init containers that are not ready (sidecars: not started).
#[test]
fn finished_init_container_is_ready_and_the_rest_are_named() {
    let mut h = Harness::with_pods(vec![with_init(pod("a", &["app"]), &["i1", "i2", "i3"])]);
    run(&mut h, "i1", 1, 0);
    run(&mut h, "i2", 100, 0);
    run(&mut h, "i3", 1, 0);
    h.run_for(secs(5));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Pending);
    let i1 = &st.init_containers[0];
    assert!(i1.ready, "exited 0: ready ({i1:?})");
    assert!(
        matches!(&i1.state, ContainerStateView::Terminated { reason, exit_code: Some(0), .. }
            if reason == reason::COMPLETED),
        "{i1:?}"
    );
    let i2 = &st.init_containers[1];
    assert!(!i2.ready, "still running: not ready");
    assert!(matches!(i2.state, ContainerStateView::Running { .. }));
    assert_eq!(
        st.init_containers[2].state.waiting_reason(),
        Some(reason::POD_INITIALIZING),
        "not started yet, behind i2"
    );
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::POD_INITIALIZING)
    );
    assert!(!st.conditions.initialized);
    assert_eq!(st.conditions.incomplete_init, ["i2", "i3"]);
    assert_eq!(st.conditions.unready, ["app"]);

    // Once all have completed: initialized, nothing incomplete, every init container ready.
    h.run_for(secs(200));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert!(st.conditions.initialized);
    assert!(st.conditions.incomplete_init.is_empty());
    assert!(st.init_containers.iter().all(|c| c.ready), "{st:?}");
    assert!(st.conditions.unready.is_empty());
}

/// A failed init container (non-zero exit) is never ready, and is named as incomplete.
#[test]
fn failed_init_container_is_not_ready() {
    let mut p = with_init(pod("a", &["app"]), &["i1"]);
    p.restart_policy = crate::reconcile::model::RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p]);
    run(&mut h, "i1", 1, 3);
    h.run_for(secs(5));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Failed);
    assert!(!st.init_containers[0].ready);
    assert_eq!(st.conditions.incomplete_init, ["i1"]);
}

/// Without init containers a container not created yet is ContainerCreating.
#[test]
fn without_init_containers_the_default_is_container_creating() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.relist();
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::CONTAINER_CREATING)
    );
}

fn stops(h: &Harness) -> usize {
    h.logged("StopContainer", Some("app")).len()
}

/// Upstream (active_deadline.go): a pod whose `now - status.startTime >=
/// activeDeadlineSeconds` is failed with reason DeadlineExceeded and message "Pod was active
/// on the node longer than the specified deadline"; the kubelet then kills it and, as a
/// terminal pod, never restarts it.
#[test]
fn active_deadline_fails_the_pod_and_stops_it_for_good() {
    let mut p = pod("a", &["app"]);
    p.active_deadline = Some(secs(30));
    let mut h = Harness::with_pods(vec![p]);
    let t0 = h.now;
    h.run_for(secs(29));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert_eq!(st.reason, None);
    assert_eq!(
        h.e.next_wakeup(),
        Some(t0 + secs(30)),
        "woken at the deadline"
    );
    h.run_for(secs(1));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Failed);
    assert_eq!(st.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        st.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    assert_eq!(stops(&h), 1, "its container is stopped");
    assert!(h.logged("StopSandbox", None).len() == 1, "and its sandbox");
    assert!(!st.conditions.ready);
    let events = h.e.drain_events();
    assert!(
        events.iter().any(|e| e.reason == "DeadlineExceeded"),
        "{events:?}"
    );
    // Never restarted, whatever the restart policy (Always here).
    let creates = h.logged("CreateContainer", Some("app")).len();
    h.run_for(secs(600));
    assert_eq!(h.logged("CreateContainer", Some("app")).len(), creates);
    assert_eq!(h.status("a").phase, PodPhase::Failed);
    assert!(h
        .sim
        .instances("a", "app")
        .iter()
        .all(|c| c.state != crate::reconcile::model::ContainerState::Running));
}

/// `activeDeadlineSeconds` set later (a spec update the API allows) counts from the pod's
/// start, not from the update, and does not replace the pod.
#[test]
fn active_deadline_patched_later_counts_from_the_start() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.run_for(secs(100));
    assert_eq!(h.status("a").phase, PodPhase::Running);
    let sandboxes = h.logged("RunSandbox", None).len();
    let mut p = pod("a", &["app"]);
    p.active_deadline = Some(secs(60));
    h.set(vec![p]);
    h.settle();
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Failed);
    assert_eq!(st.reason.as_deref(), Some(reason::DEADLINE_EXCEEDED));
    assert_eq!(
        h.logged("RunSandbox", None).len(),
        sandboxes,
        "not replaced"
    );
    assert_eq!(stops(&h), 1);

    // A longer deadline patched in before it passes waits for it.
    let mut h = Harness::with_pods(vec![pod("b", &["app"])]);
    h.run_for(secs(10));
    let mut p = pod("b", &["app"]);
    p.active_deadline = Some(secs(40));
    h.set(vec![p]);
    h.run_for(secs(29));
    assert_eq!(h.status("b").phase, PodPhase::Running);
    h.run_for(secs(1));
    assert_eq!(h.status("b").phase, PodPhase::Failed);
}

/// A start time known from before an agent restart moves the deadline earlier; a later one
/// is ignored.
#[test]
fn active_deadline_counts_from_a_noted_earlier_start() {
    let mut p = pod("a", &["app"]);
    p.active_deadline = Some(secs(60));
    let mut h = Harness::with_pods(vec![p]);
    h.now += secs(100);
    h.relist();
    let earlier = h.now - secs(50);
    h.e.note_active_since("a", h.now + secs(5));
    h.e.note_active_since("a", earlier);
    h.settle();
    assert_eq!(h.status("a").phase, PodPhase::Running);
    assert_eq!(h.e.next_wakeup(), Some(earlier + secs(60)));
    h.run_for(secs(10));
    assert_eq!(h.status("a").phase, PodPhase::Failed);
}

/// A pod that finished before its deadline keeps its phase and reason.
#[test]
fn a_finished_pod_is_not_failed_by_its_deadline() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = crate::reconcile::model::RestartPolicy::Never;
    p.active_deadline = Some(secs(30));
    let mut h = Harness::with_pods(vec![p]);
    run(&mut h, "app", 5, 0);
    h.run_for(secs(60));
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Succeeded);
    assert_eq!(st.reason, None);
    assert!(!h
        .log
        .iter()
        .any(|l| matches!(l.action.kind, ActionKind::StopContainer { .. })));
}

/// Upstream (eviction manager): an evicted pod is failed with reason Evicted and the
/// manager's message, a Warning Evicted event says the same, its containers are stopped and,
/// as a terminal pod, never restarted; a second eviction of the same pod does nothing.
#[test]
fn evicted_pod_fails_with_the_message_and_stays_stopped() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.run_for(secs(10));
    assert_eq!(h.status("a").phase, PodPhase::Running);
    let msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi.";
    assert!(h.e.evict("a", msg));
    h.settle();
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Failed);
    assert_eq!(st.reason.as_deref(), Some(reason::EVICTED));
    assert_eq!(st.message.as_deref(), Some(msg));
    assert_eq!(stops(&h), 1, "its container is stopped");
    let events = h.e.drain_events();
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Evicted" && e.message == msg),
        "{events:?}"
    );
    assert!(!h.e.evict("a", "again"), "already terminal");
    assert!(!h.e.evict("unknown", "x"));
    let creates = h.logged("CreateContainer", Some("app")).len();
    h.run_for(secs(600));
    assert_eq!(h.logged("CreateContainer", Some("app")).len(), creates);
}
