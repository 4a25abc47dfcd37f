//! `tinylet shutdown`'s CRI part against the real containerd of the test bed
//! (tests/bed/up.sh): regular pods first, then critical ones, each container with SIGTERM and
//! its capped grace, then SIGKILL, then the sandbox. The bed is shared: the stop is narrowed to
//! this test's own sandboxes, and everything it creates is removed, even on failure.

#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::time::{Duration, Instant};

use cri_bed::*;
use tinylet::cri::proto::*;
use tinylet::reconcile::labels;
use tinylet::shutdown::{stop, Budget};

fn managed_sandbox(name: &str, grace_secs: u64, critical: bool) -> PodSandboxConfig {
    let mut c = sandbox_config(
        name,
        true,
        &[
            (labels::MANAGED, labels::MANAGED_VALUE),
            (labels::POD_NAME, name),
            (labels::POD_NAMESPACE, "tinylet-test"),
        ],
    );
    c.annotations
        .insert(labels::TERMINATION_GRACE.into(), grace_secs.to_string());
    if critical {
        c.annotations.insert(labels::CRITICAL.into(), "true".into());
    }
    c
}

fn managed_container(name: &str, image: &str, script: &str) -> ContainerConfig {
    let mut c = container_config(name, image, script);
    c.labels
        .insert(labels::MANAGED.into(), labels::MANAGED_VALUE.into());
    c.labels.insert(labels::CONTAINER_NAME.into(), name.into());
    c
}

#[test]
fn regular_pods_then_critical_ones_with_capped_grace() {
    let Some(bed) = Bed::get("regular_pods_then_critical_ones_with_capped_grace") else {
        return;
    };
    let client = bed.client();
    let app = unique("shutdown-app");
    let dns = unique("shutdown-dns");
    smol::block_on(async {
        // A regular pod whose shell exits on SIGTERM, and a critical one that ignores it.
        let regular = SandboxGuard::run(&client, managed_sandbox(&app, 30, false)).await;
        let polite = "trap 'exit 0' TERM; while true; do sleep 1; done";
        let a = regular
            .create(managed_container("app", &bed.test_image, polite))
            .await;
        let critical = SandboxGuard::run(&client, managed_sandbox(&dns, 30, true)).await;
        let stubborn = "trap '' TERM; while true; do sleep 1; done";
        let d = critical
            .create(managed_container("dns", &bed.test_image, stubborn))
            .await;
        for id in [&a, &d] {
            client.start_container(id).await.unwrap();
            // The shell has installed its trap once it runs an exec.
            assert_eq!(
                client.exec_sync(id, &["true"], 10).await.unwrap().exit_code,
                0
            );
        }
        smol::Timer::after(Duration::from_millis(200)).await;

        let ours = [regular.id.clone(), critical.id.clone()];
        let budget = Budget {
            total: Duration::from_secs(5),
            critical: Duration::from_secs(2),
        };
        let started = Instant::now();
        let outcome = stop(&client, &budget, |s| ours.contains(&s.id))
            .await
            .unwrap();
        let took = started.elapsed();
        for c in &outcome.containers {
            eprintln!("{}", c.line());
        }
        assert_eq!(outcome.pods, 2);
        assert!(outcome.clean(), "{outcome:?}");
        let names: Vec<&str> = outcome
            .containers
            .iter()
            .map(|c| c.container.as_str())
            .collect();
        assert_eq!(names, ["app", "dns"], "regular first, critical last");
        let (first, last) = (&outcome.containers[0], &outcome.containers[1]);
        // The regular pod's 30 s are capped at 5 - 2 s; it exits on SIGTERM at once.
        assert_eq!(first.grace, Duration::from_secs(3));
        assert_eq!(first.exit_code, Some(0), "{first:?}");
        assert!(first.took < Duration::from_secs(3), "{first:?}");
        // The critical pod gets 2 s, ignores SIGTERM and is killed.
        assert_eq!(last.grace, Duration::from_secs(2));
        assert_eq!(last.exit_code, Some(137), "{last:?}");
        assert!(last.took >= Duration::from_millis(1900), "{last:?}");
        assert!(took < Duration::from_secs(30), "{took:?}");

        for id in &ours {
            let s = client
                .pod_sandbox_status(id, false)
                .await
                .unwrap()
                .status
                .unwrap();
            assert_eq!(s.state, PodSandboxState::SandboxNotready as i32, "{id}");
        }
    });
}
