//! Lifecycle semantics: start-up order, restarts, back-off, pulls, termination, replacement.

use std::time::Duration;

use super::sim::*;
use crate::reconcile::model::{ContainerState, Deletion, PullPolicy, RestartPolicy, SandboxState};
use crate::reconcile::status::reason;
use crate::reconcile::status::ContainerStateView;
use crate::reconcile::{ActionKind, Engine, EngineConfig, PodPhase};

fn names(h: &Harness) -> Vec<String> {
    h.log
        .iter()
        .filter(|l| !matches!(l.action.kind, ActionKind::RunProbe { .. }))
        .map(|l| match container_of(&l.action.kind) {
            Some(c) => format!("{}:{c}", l.action.kind.name()),
            None => l.action.kind.name().to_string(),
        })
        .collect()
}

#[test]
fn nothing_happens_before_desired_and_relist_are_known() {
    let mut e = Engine::new(EngineConfig::default());
    let now = std::time::Instant::now();
    assert!(e.poll(now).is_empty());
    e.set_desired(vec![pod("a", &["app"])]);
    assert!(
        e.poll(now).is_empty(),
        "no relist yet: pods might be running"
    );
    let mut e2 = Engine::new(EngineConfig::default());
    e2.observe(Default::default(), now);
    assert!(e2.poll(now).is_empty(), "no desired set yet");
}

#[test]
fn pod_ip_learned_with_the_first_container_reaches_the_status() {
    let mut h = Harness::with_pods(vec![pod("a", &["one", "two"])]);
    h.sim.ip_with_container = true;
    // One relist at the start, then only the actions' results: no relist to learn it from.
    h.relist();
    for _ in 0..20 {
        let actions = h.e.poll(h.now);
        if actions.is_empty() {
            break;
        }
        for a in actions {
            if matches!(a.kind, ActionKind::CreateContainer { .. }) && h.sim.containers.is_empty() {
                assert_eq!(h.status("a").pod_ip, None, "not known before the container");
            }
            let r = h.sim.execute(&a, &h.desired, h.now);
            h.e.complete(a.id, r, h.now).unwrap();
        }
    }
    let st = h.status("a");
    assert!(st.containers.iter().all(|c| c.started), "{st:?}");
    assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.1"));
}

#[test]
fn sandbox_first_then_containers_in_order() {
    let mut h = Harness::with_pods(vec![pod("a", &["one", "two"])]);
    h.settle();
    assert_eq!(
        names(&h),
        [
            "RunSandbox",
            "CreateContainer:one",
            "StartContainer:one",
            "CreateContainer:two",
            "StartContainer:two"
        ]
    );
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert!(st.conditions.ready && st.conditions.initialized && st.conditions.containers_ready);
    assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.1"));
    assert!(st.containers.iter().all(|c| c.ready && c.started));
    // Steady state: nothing more, and no reason to wake up.
    assert!(h.advance(secs(60)).is_empty());
    assert_eq!(h.e.next_wakeup(), None);
}

#[test]
fn init_containers_run_one_at_a_time_to_completion() {
    let mut h = Harness::with_pods(vec![with_init(pod("a", &["app"]), &["i1", "i2"])]);
    h.sim.behaviour.insert(
        "i1".into(),
        Behaviour {
            run_for: Some(secs(5)),
            exit_code: 0,
        },
    );
    h.sim.behaviour.insert(
        "i2".into(),
        Behaviour {
            run_for: Some(secs(3)),
            exit_code: 0,
        },
    );
    h.settle();
    assert_eq!(
        names(&h),
        ["RunSandbox", "CreateContainer:i1", "StartContainer:i1"]
    );
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Pending);
    assert!(!st.conditions.initialized);
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::POD_INITIALIZING)
    );
    h.run_for(secs(4));
    assert_eq!(names(&h).len(), 3, "i2 waits for i1 to finish");
    h.run_for(secs(2));
    assert_eq!(names(&h)[3..], ["CreateContainer:i2", "StartContainer:i2"]);
    let i2_started = h.logged("StartContainer", Some("i2"))[0].at;
    assert_eq!(h.secs(i2_started), 5);
    h.run_for(secs(3));
    assert_eq!(
        names(&h)[5..],
        ["CreateContainer:app", "StartContainer:app"]
    );
    let st = h.status("a");
    assert!(st.conditions.initialized);
    assert_eq!(st.phase, PodPhase::Running);
    assert!(matches!(
        st.init_containers[0].state,
        ContainerStateView::Terminated {
            exit_code: Some(0),
            ..
        }
    ));
}

#[test]
fn failed_init_container_restarts_with_back_off_under_always() {
    let mut h = Harness::with_pods(vec![with_init(pod("a", &["app"]), &["init"])]);
    h.sim.behaviour.insert(
        "init".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(60));
    let starts: Vec<u64> = h
        .logged("StartContainer", Some("init"))
        .iter()
        .map(|l| h.secs(l.at))
        .collect();
    // Exits at 1, restarts at once; exits at 2, waits 10; exits at 13, waits 20; at 34 + 40 > 60.
    assert_eq!(starts, [0, 1, 12, 33]);
    assert!(h.logged("CreateContainer", Some("app")).is_empty());
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Pending);
    assert_eq!(
        st.init_containers[0].state.waiting_reason(),
        Some(reason::CRASH_LOOP_BACK_OFF)
    );
    assert_eq!(st.init_containers[0].restart_count, 3);
}

#[test]
fn failed_init_container_fails_the_pod_under_never() {
    let mut p = with_init(pod("a", &["app"]), &["init"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p]);
    h.sim.behaviour.insert(
        "init".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 2,
        },
    );
    h.run_for(secs(60));
    assert_eq!(h.logged("CreateContainer", Some("init")).len(), 1);
    assert!(h.logged("CreateContainer", Some("app")).is_empty());
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Failed);
    assert!(st.message.unwrap().contains("init container init failed"));
    // The finished pod gives up its sandbox but keeps its containers for inspection.
    assert_eq!(h.sim.ready_sandboxes("a"), 0);
    assert_eq!(h.sim.containers.len(), 1);
    assert_eq!(
        h.logged("RunSandbox", None).len(),
        1,
        "no new sandbox for a failed pod"
    );
}

#[test]
fn crash_loop_back_off_curve_10_to_300() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(1500));
    let starts: Vec<_> = h
        .logged("StartContainer", Some("app"))
        .iter()
        .map(|l| l.at)
        .collect();
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| (w[1] - (w[0] + secs(1))).as_secs())
        .collect();
    assert_eq!(gaps[..9], [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert_eq!(st.containers[0].restart_count as usize, starts.len() - 1);
}

#[test]
fn crash_loop_status_shows_back_off_and_last_state() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 3,
        },
    );
    h.run_for(secs(2)); // started 0, exit 1, restart 1, exit 2 → back-off 10 s until 12
    h.run_for(secs(3));
    let st = h.status("a");
    let c = &st.containers[0];
    assert_eq!(c.state.waiting_reason(), Some(reason::CRASH_LOOP_BACK_OFF));
    assert!(matches!(
        c.last_state,
        Some(ContainerStateView::Terminated {
            exit_code: Some(3),
            ..
        })
    ));
    let b = c.backoff.expect("back-off shown");
    assert_eq!((b.delay_secs, b.remaining_secs), (10, 7));
    assert!(!c.ready);
    assert!(!st.conditions.ready);
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(12)));
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("CrashLoopBackOff"), "{json}");
}

#[test]
fn back_off_resets_after_ten_minutes_of_running() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(80)); // starts 0, 1, 12, 33, 74 (next gap would be 80)
    assert_eq!(h.logged("StartContainer", Some("app")).len(), 5);
    // From now on it runs for 10 min before failing.
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(600)),
            exit_code: 1,
        },
    );
    h.run_for(secs(2000));
    let starts: Vec<u64> = h
        .logged("StartContainer", Some("app"))
        .iter()
        .map(|l| h.secs(l.at))
        .collect();
    // Instance started at 74 still exits at 75 (old behaviour was sampled per tick), waits 80.
    // Each later run lasts 600 s, so every restart starts a fresh curve: immediate.
    assert_eq!(starts[..8], [0, 1, 12, 33, 74, 155, 755, 1355]);
}

fn run_exit(policy: RestartPolicy, code: i32) -> Harness {
    let mut p = pod("a", &["app"]);
    p.restart_policy = policy;
    let mut h = Harness::with_pods(vec![p]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(5)),
            exit_code: code,
        },
    );
    h.run_for(secs(8));
    h
}

/// The runtime's termination message of an exited container is the status view's
/// `terminated.message` (kubelet `toKubeContainerStatus` reads it on exit).
#[test]
fn termination_message_reaches_the_status_view() {
    let mut h = run_exit(RestartPolicy::Never, 1);
    h.sim.containers[0].message = Some("DONE".into());
    h.run_for(secs(1));
    let st = h.status("a");
    assert!(
        matches!(&st.containers[0].state, ContainerStateView::Terminated { message: Some(m), .. }
            if m == "DONE"),
        "{:?}",
        st.containers[0].state
    );
}

#[test]
fn restart_policy_table() {
    let cases = [
        (RestartPolicy::Always, 0, true, PodPhase::Running),
        (RestartPolicy::Always, 1, true, PodPhase::Running),
        (RestartPolicy::OnFailure, 0, false, PodPhase::Succeeded),
        (RestartPolicy::OnFailure, 1, true, PodPhase::Running),
        (RestartPolicy::Never, 0, false, PodPhase::Succeeded),
        (RestartPolicy::Never, 1, false, PodPhase::Failed),
    ];
    for (policy, code, restarted, phase) in cases {
        let h = run_exit(policy, code);
        let starts = h.logged("StartContainer", Some("app")).len();
        assert_eq!(
            starts == 2,
            restarted,
            "{policy:?} exit {code}: starts {starts}"
        );
        let st = h.status("a");
        assert_eq!(st.phase, phase, "{policy:?} exit {code}");
        if !restarted {
            // Finished pods release the sandbox and keep the container.
            assert_eq!(h.sim.ready_sandboxes("a"), 0, "{policy:?} exit {code}");
            assert_eq!(h.sim.containers.len(), 1);
            let reason = if code == 0 { "Completed" } else { "Error" };
            assert_eq!(
                st.containers[0].state,
                ContainerStateView::Terminated {
                    exit_code: Some(code),
                    reason: reason.into(),
                    finished_secs_ago: Some(3),
                    message: None,
                }
            );
            assert!(!st.conditions.ready);
        }
    }
}

#[test]
fn never_policy_with_one_failure_keeps_running_until_all_exit() {
    let mut p = pod("a", &["short", "long"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p]);
    h.sim.behaviour.insert(
        "short".into(),
        Behaviour {
            run_for: Some(secs(2)),
            exit_code: 1,
        },
    );
    h.sim.behaviour.insert(
        "long".into(),
        Behaviour {
            run_for: Some(secs(20)),
            exit_code: 0,
        },
    );
    h.run_for(secs(10));
    assert_eq!(h.status("a").phase, PodPhase::Running);
    h.run_for(secs(20));
    assert_eq!(h.status("a").phase, PodPhase::Failed);
}

#[test]
fn if_not_present_pulls_only_absent_images() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    assert!(h.logged("PullImage", None).is_empty(), "image present");

    let mut h = Harness::new();
    h.set(vec![pod("a", &["app"])]);
    h.settle();
    assert_eq!(
        names(&h)[..3],
        ["RunSandbox", "PullImage:app", "CreateContainer:app"]
    );
    // A restart does not pull again.
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.sim.containers[0].started_at = Some(h.now);
    h.run_for(secs(5));
    assert_eq!(h.logged("PullImage", None).len(), 1);
    assert_eq!(h.logged("StartContainer", None).len(), 2);
}

#[test]
fn always_pulls_before_every_creation() {
    let mut h = Harness::with_pods(vec![always_pull(pod("a", &["app"]))]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.run_for(secs(15));
    let n = names(&h);
    assert_eq!(
        n[..7],
        [
            "RunSandbox",
            "PullImage:app",
            "CreateContainer:app",
            "StartContainer:app",
            "PullImage:app",
            "CreateContainer:app",
            "StartContainer:app"
        ]
    );
    assert_eq!(
        h.logged("PullImage", None).len(),
        h.logged("CreateContainer", None).len()
    );
}

#[test]
fn never_pull_policy_waits_for_the_image_without_pulling() {
    let mut p = pod("a", &["app"]);
    p.containers[0].pull_policy = PullPolicy::Never;
    let mut h = Harness::new();
    h.set(vec![p]);
    h.run_for(secs(100));
    assert!(h.logged("PullImage", None).is_empty());
    assert!(h.logged("CreateContainer", None).is_empty());
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::ERR_IMAGE_NEVER_PULL)
    );
    assert_eq!(h.e.next_wakeup(), None, "only a relist can change this");
    // The image is side-loaded; the next relist lets the container start.
    h.sim.images.insert("docker.io/img/app:1".into());
    h.settle();
    assert_eq!(h.logged("StartContainer", None).len(), 1);
}

#[test]
fn pull_back_off_then_success() {
    let mut h = Harness::new();
    h.set(vec![pod("a", &["app"])]);
    h.sim.pull_fail.insert("img/app:1".into());
    h.settle();
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::ERR_IMAGE_PULL)
    );
    assert!(st.containers[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("not found"));
    // The kubelet shows ErrImagePull until its next sync of the pod (10 s later) finds the
    // image back-off; the first window is 10 s, so the next pull comes first.
    h.advance(secs(1));
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::ERR_IMAGE_PULL)
    );
    assert_eq!(st.containers[0].backoff.unwrap().remaining_secs, 9);
    // Second failure at 10 s, back-off 20 s: ErrImagePull until 20 s, then ImagePullBackOff.
    h.run_until(h.t0 + secs(21));
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::IMAGE_PULL_BACK_OFF)
    );
    assert_eq!(st.containers[0].backoff.unwrap().remaining_secs, 9);
    h.run_until(h.t0 + secs(151));
    let pulls: Vec<u64> = h
        .logged("PullImage", None)
        .iter()
        .map(|l| h.secs(l.at))
        .collect();
    assert_eq!(pulls, [0, 10, 30, 70, 150]);
    h.sim.pull_fail.clear();
    h.run_for(secs(160));
    assert_eq!(h.logged("PullImage", None).len(), 6);
    assert_eq!(h.secs(h.logged("PullImage", None)[5].at), 310);
    assert_eq!(h.status("a").phase, PodPhase::Running);
    assert!(h.status("a").containers[0].last_error.is_none());
}

#[test]
fn graceful_deletion_stops_containers_then_sandbox_then_removes() {
    let mut p = pod("a", &["one", "two"]);
    p.termination_grace = secs(45);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    h.log.clear();
    p.deletion = Some(Deletion { grace: secs(20) });
    h.set(vec![p]);
    let first = h.step();
    // Both containers are stopped together, each with the deletion grace.
    assert_eq!(first.len(), 2);
    for a in &first {
        match &a.kind {
            ActionKind::StopContainer { grace, .. } => assert_eq!(*grace, secs(20)),
            k => panic!("unexpected {k:?}"),
        }
    }
    assert!(h.status("a").deleting);
    assert!(!h.status("a").conditions.ready);
    h.settle();
    assert_eq!(
        names(&h),
        [
            "StopContainer:one",
            "StopContainer:two",
            "StopSandbox",
            "RemoveContainer",
            "RemoveContainer",
            "RemoveSandbox"
        ]
    );
    assert!(h.sim.sandboxes.is_empty() && h.sim.containers.is_empty());
    assert!(h.status("a").terminated);
    // Removing the confirmed pod from the desired set forgets it.
    h.set(vec![]);
    h.settle();
    assert_eq!(h.e.tracked_pods().count(), 0);
}

#[test]
fn pod_no_longer_desired_is_stopped_with_its_own_grace() {
    let mut p = pod("a", &["app"]);
    p.termination_grace = secs(7);
    let mut h = Harness::with_pods(vec![p, pod("b", &["app"])]);
    h.settle();
    h.log.clear();
    h.e.remove_pod("a");
    h.settle();
    let stops = h.logged("StopContainer", None);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].action.pod.uid, "a");
    assert!(
        matches!(stops[0].action.kind, ActionKind::StopContainer { grace, .. } if grace == secs(7))
    );
    assert!(h.log.iter().all(|l| l.action.pod.uid == "a"));
    assert_eq!(h.sim.sandboxes.len(), 1);
    assert_eq!(h.e.tracked_pods().collect::<Vec<_>>(), ["b"]);
}

#[test]
fn spec_change_replaces_the_pod() {
    let p = pod("a", &["app"]);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    let old_sb = h.sim.sandboxes[0].id.clone();
    h.log.clear();
    let mut p2 = p.clone();
    p2.spec_hash = "h-new".into();
    p2.containers[0].spec_hash = "ch-new".into();
    p2.containers[0].image = "img/app:2".into();
    h.sim.images.insert("docker.io/img/app:2".into());
    h.set(vec![p2]);
    // Step by step: never two ready sandboxes for the pod.
    for _ in 0..50 {
        if h.step().is_empty() {
            break;
        }
        assert!(h.sim.ready_sandboxes("a") <= 1);
    }
    assert_eq!(
        names(&h),
        [
            "StopContainer:app",
            "StopSandbox",
            "RemoveContainer",
            "RemoveSandbox",
            "RunSandbox",
            "CreateContainer:app",
            "StartContainer:app"
        ]
    );
    assert!(h.sim.sandboxes.iter().all(|s| s.id != old_sb));
    let st = h.status("a");
    assert_eq!(st.spec_hash, "h-new");
    assert_eq!(st.phase, PodPhase::Running);
    assert_eq!(
        st.containers[0].restart_count, 0,
        "a new pod instance starts afresh"
    );
    assert_eq!(h.sim.containers[0].image, "img/app:2");
}

#[test]
fn a_new_spec_after_a_finished_pod_starts_afresh() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(5));
    assert_eq!(h.status("a").phase, PodPhase::Failed);
    // Deleted and fully cleaned, then the same UID comes back with another spec.
    p.deletion = Some(Deletion { grace: secs(1) });
    h.set(vec![p.clone()]);
    h.settle();
    assert!(h.sim.sandboxes.is_empty());
    h.sim.behaviour.clear();
    p.deletion = None;
    p.spec_hash = "h-v2".into();
    p.restart_policy = RestartPolicy::Always;
    h.set(vec![p]);
    h.settle();
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running, "{st:?}");
    assert_eq!(st.containers[0].restart_count, 0);
}

#[test]
fn container_spec_change_restarts_only_that_container() {
    let p = pod("a", &["one", "two"]);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    h.log.clear();
    let mut p2 = p.clone();
    p2.containers[1].spec_hash = "ch-two-v2".into();
    h.set(vec![p2]);
    h.settle();
    assert_eq!(
        names(&h),
        [
            "StopContainer:two",
            "CreateContainer:two",
            "StartContainer:two"
        ]
    );
    assert_eq!(h.status("a").containers[1].restart_count, 1);
}

#[test]
fn container_spec_change_restarts_even_under_never() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    p.containers[0].spec_hash = "ch-app-v2".into();
    h.set(vec![p]);
    h.settle();
    assert_eq!(h.logged("StartContainer", None).len(), 2);
    assert_eq!(h.status("a").phase, PodPhase::Running);
}

#[test]
fn dead_sandbox_is_recreated_with_all_containers() {
    let mut h = Harness::with_pods(vec![with_init(pod("a", &["app"]), &["init"])]);
    h.sim.behaviour.insert(
        "init".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.run_for(secs(5));
    assert_eq!(h.status("a").phase, PodPhase::Running);
    let sb = h.sim.sandboxes[0].id.clone();
    h.log.clear();
    h.sim.kill_sandbox(&sb, h.now);
    h.run_for(secs(5));
    assert_eq!(
        names(&h),
        [
            "StopSandbox",
            "RemoveContainer",
            "RemoveContainer",
            "RemoveSandbox",
            "RunSandbox",
            "CreateContainer:init",
            "StartContainer:init",
            "CreateContainer:app",
            "StartContainer:app"
        ]
    );
    match &h.logged("RunSandbox", None)[0].action.kind {
        ActionKind::RunSandbox { attempt, .. } => assert_eq!(*attempt, 1),
        _ => unreachable!(),
    }
    let app = h.sim.instances("a", "app");
    assert_eq!(app.len(), 1);
    assert_eq!(app[0].attempt, 1, "restart counted");
    assert_eq!(h.status("a").containers[0].restart_count, 1);
    assert_eq!(h.sim.ready_sandboxes("a"), 1);
}

#[test]
fn dead_sandbox_under_never_fails_the_pod() {
    let mut p = pod("a", &["app"]);
    p.restart_policy = RestartPolicy::Never;
    let mut h = Harness::with_pods(vec![p]);
    h.settle();
    let sb = h.sim.sandboxes[0].id.clone();
    h.sim.kill_sandbox(&sb, h.now);
    h.run_for(secs(30));
    assert_eq!(h.logged("RunSandbox", None).len(), 1);
    assert_eq!(h.status("a").phase, PodPhase::Failed);
}

#[test]
fn orphans_are_cleaned_and_unmanaged_objects_left_alone() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"]), pod("b", &["app"])]);
    h.settle();
    // Someone else's sandbox in the same runtime.
    let mut foreign = h.sim.sandboxes[0].clone();
    foreign.id = "foreign".into();
    foreign.labels.remove(crate::reconcile::labels::MANAGED);
    h.sim.sandboxes.push(foreign);
    // Agent restarts with only pod b desired.
    h.e = Engine::new(EngineConfig::default());
    h.log.clear();
    h.set(vec![pod("b", &["app"])]);
    h.settle();
    assert!(
        h.log.iter().all(|l| l.action.pod.uid == "a"),
        "only the orphan is touched"
    );
    assert_eq!(
        names(&h),
        [
            "StopContainer:app",
            "StopSandbox",
            "RemoveContainer",
            "RemoveSandbox"
        ]
    );
    assert_eq!(
        h.log[0].action.pod.name, "pod-a",
        "orphan named from its labels"
    );
    assert!(h.sim.sandboxes.iter().any(|s| s.id == "foreign"));
    assert_eq!(h.sim.sandboxes.len(), 2);
    assert!(h.e.pod_status("a", h.now).is_none());
}

#[test]
fn an_empty_desired_set_cleans_up_everything_after_a_restart() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.settle();
    h.e = Engine::new(EngineConfig::default());
    h.set(vec![]);
    h.settle();
    assert!(h.sim.sandboxes.is_empty() && h.sim.containers.is_empty());
}

#[test]
fn adoption_after_restart_touches_nothing() {
    let mut p = with_init(pod("a", &["app", "side"]), &["init"]);
    p.containers[0].readiness = Some(probe());
    let mut h = Harness::with_pods(vec![p.clone(), pod("b", &["web"])]);
    h.sim.behaviour.insert(
        "init".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.sim.behaviour.insert(
        "side".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(12)); // side restarts at 1 and 12: attempt 2 starts at 12
    h.sim.behaviour.remove("side"); // ... and keeps running
    h.run_for(secs(20));
    assert_eq!(h.status("a").containers[1].restart_count, 2);
    let before = h.sim.snapshot();

    // The agent restarts: empty memory, same desired pods, the runtime as it was.
    h.e = Engine::new(EngineConfig::default());
    h.log.clear();
    h.set(vec![p, pod("b", &["web"])]);
    let acts = h.run_for(secs(60));
    assert!(
        lifecycle(&acts).is_empty(),
        "adoption must not touch containers: {:?}",
        lifecycle(&acts)
    );
    assert_eq!(h.sim.snapshot(), before);
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert!(st.conditions.initialized);
    assert_eq!(
        st.containers[1].restart_count, 2,
        "recovered from the attempt number"
    );
    assert_eq!(st.containers[0].restart_count, 0);
    assert!(st.containers[0].ready, "readiness probe re-established");
    assert_eq!(h.status("b").phase, PodPhase::Running);
    // And a later crash continues numbering from the recovered attempt.
    h.sim.behaviour.insert(
        "side".into(),
        Behaviour {
            run_for: Some(secs(0)),
            exit_code: 1,
        },
    );
    h.run_for(secs(1));
    let side = h.sim.instances("a", "side");
    assert_eq!(side.last().unwrap().attempt, 3);
}

#[test]
fn adoption_keeps_one_sandbox_when_the_runtime_has_two() {
    let p = pod("a", &["app"]);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    // A second sandbox of the same pod (e.g. the agent died between creating it and noting
    // it), with a higher attempt and nothing in it.
    let mut extra = h.sim.sandboxes[0].clone();
    extra.id = "sb-extra".into();
    extra.attempt = 5;
    h.sim.sandboxes.push(extra);
    h.e = Engine::new(EngineConfig::default());
    h.log.clear();
    h.set(vec![p]);
    let kept = h.sim.sandboxes[0].id.clone();
    h.settle();
    assert_eq!(h.sim.ready_sandboxes("a"), 1);
    assert_eq!(h.sim.sandboxes.len(), 1);
    assert_eq!(
        h.sim.sandboxes[0].id, kept,
        "the sandbox running the app wins"
    );
    assert_eq!(names(&h), ["StopSandbox", "RemoveSandbox"]);
    assert_eq!(h.status("a").phase, PodPhase::Running);
    assert_eq!(h.sim.instances("a", "app").len(), 1);
}

#[test]
fn adoption_keeps_finished_pods_finished() {
    for policy in [RestartPolicy::OnFailure, RestartPolicy::Never] {
        let mut p = pod("a", &["job"]);
        p.restart_policy = policy;
        let mut h = Harness::with_pods(vec![p.clone()]);
        h.sim.behaviour.insert(
            "job".into(),
            Behaviour {
                run_for: Some(secs(2)),
                exit_code: 0,
            },
        );
        h.run_for(secs(5));
        assert_eq!(h.status("a").phase, PodPhase::Succeeded);
        h.e = Engine::new(EngineConfig::default());
        h.log.clear();
        h.set(vec![p]);
        h.run_for(secs(60));
        assert!(
            h.logged("RunSandbox", None).is_empty(),
            "{policy:?}: {:?}",
            names(&h)
        );
        assert!(h.logged("CreateContainer", None).is_empty());
        assert!(h.logged("RemoveContainer", None).is_empty());
        assert_eq!(h.status("a").phase, PodPhase::Succeeded, "{policy:?}");
        assert_eq!(h.sim.containers.len(), 1);
    }
}

#[test]
fn deleted_pods_end_in_a_terminal_phase() {
    let mut p = pod("a", &["app"]);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.settle();
    p.deletion = Some(Deletion { grace: secs(5) });
    h.set(vec![p]);
    h.settle();
    let st = h.status("a");
    assert!(st.terminated);
    // Killed containers (the simulated runtime reports 137) make it Failed.
    assert_eq!(st.phase, PodPhase::Failed);
}

#[test]
fn adoption_does_not_rerun_init_containers_already_gone() {
    let p = with_init(pod("a", &["app"]), &["init"]);
    let mut h = Harness::with_pods(vec![p.clone()]);
    h.sim.behaviour.insert(
        "init".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.run_for(secs(5));
    // The finished init container was removed while the agent was down.
    h.sim
        .containers
        .retain(|c| c.state != ContainerState::Exited);
    h.e = Engine::new(EngineConfig::default());
    h.log.clear();
    h.set(vec![p]);
    h.run_for(secs(30));
    assert!(h.log.is_empty(), "{:?}", names(&h));
    assert!(h.status("a").conditions.initialized);
}

#[test]
fn sandbox_failure_is_retried_with_back_off() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.fail.insert("RunSandbox", 2);
    h.settle();
    let st = h.status("a");
    assert!(st.message.unwrap().contains("injected failure"));
    assert_eq!(st.phase, PodPhase::Pending);
    assert_eq!(h.e.next_wakeup(), Some(h.t0 + secs(10)));
    h.run_for(secs(40));
    let runs: Vec<u64> = h
        .logged("RunSandbox", None)
        .iter()
        .map(|l| h.secs(l.at))
        .collect();
    assert_eq!(runs, [0, 10, 30]);
    assert_eq!(h.status("a").phase, PodPhase::Running);
    assert!(h.status("a").message.is_none());
}

/// Upstream kuberuntime `startContainer`: an error generating the container's config (a
/// missing configMap, an invalid subPathExpr) is reported as `CreateContainerConfigError`,
/// other creation errors as `CreateContainerError`; both are retried with back-off.
#[test]
fn config_failures_are_create_container_config_errors() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.fail.insert("CreateContainerConfig", 1);
    h.settle();
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::CREATE_CONTAINER_CONFIG_ERROR)
    );
    assert!(
        matches!(&st.containers[0].state, ContainerStateView::Waiting { message: Some(m), .. }
            if m.contains("gone")),
        "{:?}",
        st.containers[0].state
    );
    h.run_for(secs(10));
    assert_eq!(h.status("a").phase, PodPhase::Running);
}

/// Upstream `makeEnvironmentVariables`: envFrom keys skipped as invalid names are reported
/// as a Warning event `InvalidEnvironmentVariableNames` on the pod, and the container starts.
#[test]
fn create_warnings_become_warning_events() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    let text = "Keys [X=1] from the EnvFrom configMap d/cm were skipped since they are \
                considered invalid environment variable names.";
    h.sim.create_warnings = vec![("InvalidEnvironmentVariableNames".into(), text.into())];
    h.settle();
    assert_eq!(h.status("a").phase, PodPhase::Running);
    let ev = h.e.drain_events();
    let w = ev
        .iter()
        .find(|e| e.reason == "InvalidEnvironmentVariableNames")
        .expect("a warning event");
    assert_eq!(w.kind, crate::reconcile::status::EventType::Warning);
    assert_eq!(w.container.as_deref(), Some("app"));
    assert_eq!(w.message, text);
}

#[test]
fn create_and_start_failures_are_backed_off_and_reported() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.fail.insert("CreateContainer", 1);
    h.settle();
    let st = h.status("a");
    assert_eq!(
        st.containers[0].state.waiting_reason(),
        Some(reason::CREATE_CONTAINER_ERROR)
    );
    h.run_for(secs(10));
    assert_eq!(h.logged("CreateContainer", None).len(), 2);
    assert_eq!(h.status("a").phase, PodPhase::Running);

    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.fail.insert("StartContainer", 1);
    h.settle();
    // The failed start counts as a failed run: restarted (first time at once).
    let st = h.status("a");
    assert_eq!(st.phase, PodPhase::Running);
    assert_eq!(st.containers[0].restart_count, 1);
    assert!(st.containers[0]
        .last_error
        .as_ref()
        .unwrap()
        .contains("starting container"));
}

#[test]
fn stale_relist_does_not_cause_duplicates() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.relist();
    let stale = h.sim.snapshot();
    let t_stale = h.now;
    h.now += secs(1);
    let acts = h.e.poll(h.now);
    assert!(matches!(acts[0].kind, ActionKind::RunSandbox { .. }));
    let r = h.sim.execute(&acts[0], &h.desired, h.now);
    h.e.complete(acts[0].id, r, h.now).unwrap();
    // A relist taken before the result arrives late: the sandbox must not be forgotten.
    h.e.observe(stale, t_stale);
    let acts = h.e.poll(h.now);
    assert!(
        matches!(acts[0].kind, ActionKind::CreateContainer { .. }),
        "{acts:?}"
    );
    assert_eq!(h.sim.sandboxes.len(), 1);
}

#[test]
fn in_flight_actions_are_not_repeated() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.relist();
    let a1 = h.e.poll(h.now);
    assert_eq!(a1.len(), 1);
    h.now += secs(100);
    h.relist();
    assert!(h.e.poll(h.now).is_empty(), "RunSandbox still in flight");
    assert_eq!(h.e.outstanding(), 1);
    assert!(h
        .e
        .complete(a1[0].id, crate::reconcile::ActionResult::Done, h.now)
        .is_err());
    assert!(h
        .e
        .complete(a1[0].id, crate::reconcile::ActionResult::Done, h.now)
        .is_err());
    assert_eq!(h.e.outstanding(), 0);
}

#[test]
fn a_pod_is_acting_while_its_runtime_actions_are_in_flight_but_not_its_probes() {
    let mut p = pod("a", &["app"]);
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.relist();
    assert!(!h.e.acting("a"), "nothing issued yet");
    let acts = h.e.poll(h.now);
    assert!(matches!(acts[0].kind, ActionKind::RunSandbox { .. }));
    assert!(h.e.acting("a"));
    let r = h.sim.execute(&acts[0], &h.desired, h.now);
    h.e.complete(acts[0].id, r, h.now).unwrap();
    h.settle();
    assert!(!h.e.acting("a"), "started: nothing in flight");
    // Issue the next probe without completing it.
    let mut issued = Vec::new();
    for _ in 0..60 {
        h.now += secs(1);
        h.relist();
        issued.extend(h.e.poll(h.now));
        if !issued.is_empty() {
            break;
        }
    }
    assert!(
        issued
            .iter()
            .all(|a| matches!(a.kind, ActionKind::RunProbe { .. })),
        "{issued:?}"
    );
    assert!(!issued.is_empty());
    assert_eq!(h.e.outstanding(), issued.len());
    assert!(
        !h.e.acting("a"),
        "a probe in flight is not a change being made"
    );
    assert!(!h.e.acting("nobody"));
}

#[test]
fn exited_instances_are_garbage_collected_keeping_two() {
    let mut h = Harness::with_pods(vec![pod("a", &["app"])]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(200));
    let inst = h.sim.instances("a", "app");
    assert!(inst.len() <= 2, "{} instances kept", inst.len());
    assert!(h.logged("RemoveContainer", None).len() >= 3);
    let st = h.status("a");
    assert!(st.containers[0].restart_count >= 5);
    assert!(st.containers[0].last_state.is_some());
}

#[test]
fn several_pods_progress_independently() {
    let mut h = Harness::with_pods(
        (0..10)
            .map(|i| pod(&format!("p{i}"), &["a", "b"]))
            .collect(),
    );
    h.sim.behaviour.insert(
        "b".into(),
        Behaviour {
            run_for: Some(secs(3)),
            exit_code: 1,
        },
    );
    h.run_for(secs(30));
    for i in 0..10 {
        let st = h.status(&format!("p{i}"));
        assert_eq!(st.phase, PodPhase::Running);
        assert!(st.containers[0].ready);
        assert_eq!(h.sim.ready_sandboxes(&format!("p{i}")), 1);
    }
    assert_eq!(h.sim.sandboxes.len(), 10);
    assert!(h
        .sim
        .sandboxes
        .iter()
        .all(|s| s.state == SandboxState::Ready));
    let _ = Duration::ZERO;
}

fn sidecar_pod(policy: RestartPolicy) -> crate::reconcile::DesiredPod {
    let mut p = with_init(pod("a", &["main"]), &["proxy", "setup"]);
    p.restart_policy = policy;
    p.init_containers[0].sidecar = true;
    p
}

#[test]
fn sidecar_starts_in_init_order_and_keeps_running() {
    let mut h = Harness::with_pods(vec![sidecar_pod(RestartPolicy::Always)]);
    h.sim.behaviour.insert(
        "setup".into(),
        Behaviour {
            run_for: Some(secs(2)),
            exit_code: 0,
        },
    );
    h.run_for(secs(5));
    assert_eq!(
        names(&h),
        [
            "RunSandbox",
            "CreateContainer:proxy",
            "StartContainer:proxy",
            "CreateContainer:setup",
            "StartContainer:setup",
            "CreateContainer:main",
            "StartContainer:main"
        ]
    );
    let st = h.status("a");
    assert!(st.conditions.initialized && st.conditions.ready);
    assert!(st.init_containers[0].ready, "sidecars report readiness");
    assert_eq!(st.phase, PodPhase::Running);
}

#[test]
fn sidecar_waits_for_its_startup_probe_before_the_next_init() {
    let mut p = sidecar_pod(RestartPolicy::Always);
    p.init_containers[0].startup = Some(probe());
    let mut h = Harness::with_pods(vec![p]);
    h.sim.behaviour.insert(
        "setup".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.sim.probe_script.insert(
        ("proxy".into(), crate::reconcile::model::ProbeKind::Startup),
        vec![false],
    );
    h.run_for(secs(5));
    assert!(h.logged("CreateContainer", Some("setup")).is_empty());
    h.run_for(secs(10));
    assert_eq!(h.secs(h.logged("CreateContainer", Some("setup"))[0].at), 10);
}

#[test]
fn sidecar_is_restarted_even_under_never_and_stopped_when_main_is_done() {
    let mut h = Harness::with_pods(vec![sidecar_pod(RestartPolicy::Never)]);
    h.sim.behaviour.insert(
        "setup".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 0,
        },
    );
    h.sim.behaviour.insert(
        "main".into(),
        Behaviour {
            run_for: Some(secs(30)),
            exit_code: 0,
        },
    );
    h.run_for(secs(5));
    // The sidecar crashes: restarted despite restartPolicy Never, the app is untouched.
    let proxy = h.sim.instances("a", "proxy")[0].id.clone();
    for c in &mut h.sim.containers {
        if c.id == proxy {
            c.state = ContainerState::Exited;
            c.exit_code = Some(1);
            c.finished_at = Some(h.now);
        }
    }
    h.run_for(secs(1));
    assert_eq!(h.logged("StartContainer", Some("proxy")).len(), 2);
    assert_eq!(h.logged("StartContainer", Some("main")).len(), 1);
    assert_eq!(h.status("a").phase, PodPhase::Running);
    // main completes: the sidecar is stopped and the pod succeeds.
    h.run_for(secs(40));
    assert_eq!(h.logged("StopContainer", Some("proxy")).len(), 1);
    assert_eq!(h.status("a").phase, PodPhase::Succeeded);
    assert_eq!(h.sim.ready_sandboxes("a"), 0);
}

#[test]
fn kubelet_style_events_are_raised_and_bounded() {
    use crate::reconcile::status::EventType;
    let mut p = pod("a", &["app"]);
    p.containers[0].liveness = Some(probe());
    let mut h = Harness::new();
    h.set(vec![p]);
    h.sim.behaviour.insert(
        "app".into(),
        Behaviour {
            run_for: Some(secs(1)),
            exit_code: 1,
        },
    );
    h.run_for(secs(5));
    let ev = h.e.drain_events();
    let reasons: Vec<&str> = ev.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons[..5],
        ["Pulling", "Pulled", "Created", "Started", "Created"],
        "{reasons:?}"
    );
    let backoff = ev
        .iter()
        .find(|e| e.reason == "BackOff")
        .expect("BackOff event");
    assert_eq!(backoff.kind, EventType::Warning);
    assert_eq!(backoff.container.as_deref(), Some("app"));
    assert_eq!(
        ev.iter().filter(|e| e.reason == "BackOff").count(),
        1,
        "once per back-off"
    );
    assert!(h.e.drain_events().is_empty(), "drained");
    let json = serde_json::to_string(&ev[0]).unwrap();
    assert!(json.contains(r#""type":"Normal""#), "{json}");
    // Unhealthy on probe failures.
    h.sim.behaviour.clear();
    h.sim.probe_default.insert(
        ("app".into(), crate::reconcile::model::ProbeKind::Liveness),
        false,
    );
    h.run_for(secs(60));
    let ev = h.e.drain_events();
    assert!(ev.iter().any(|e| e.reason == "Unhealthy"));
    assert!(ev.iter().any(|e| e.reason == "Killing"));
    // Nobody draining: the buffer stays bounded.
    h.run_for(secs(3000));
    assert!(h.e.drain_events().len() <= 256);
}
