//! Image garbage collection against a real containerd: a private containerd (its own root,
//! state and socket, with the bed's images imported) so that removing images can never touch
//! what other tests on the shared bed use. `tinylet run` with thresholds that the disk's real
//! usage crosses must remove the unused image and keep the one its pod uses and the runtime's
//! sandbox image.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/private_runtime.rs"]
mod private_runtime;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::*;
use cri_bed::{one_agent, Bed};
use private_runtime::{PrivateRuntime, PAUSE};

#[test]
fn image_gc_removes_unused_images_and_keeps_used_and_sandbox_ones() {
    let test = "image_gc_removes_unused_images_and_keeps_used_and_sandbox_ones";
    let Some(bed) = Bed::get(test) else {
        return;
    };
    let _one = one_agent(&bed);
    let images = PathBuf::from(
        std::env::var("TINYLET_BED_LIB").unwrap_or_else(|_| "/var/lib/tinylet-bed".into()),
    )
    .join("images");
    let rt = PrivateRuntime::start("gc", &images, &["pause", "busybox", "busybox-pull"]);
    let private = Bed {
        endpoint: rt.endpoint(),
        test_image: bed.test_image.clone(),
        pull_image: bed.pull_image.clone(),
        registry: bed.registry.clone(),
        dir: bed.dir.clone(),
    };
    let mut t = AgentEnv::new(private, Path::new(env!("CARGO_BIN_EXE_tinylet")), "imagegc");
    // Thresholds any real disk crosses: every unused image old enough goes.
    let mut cfg = std::fs::read_to_string(&t.config).unwrap();
    cfg.push_str(
        "imageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\nimageMinimumGCAge: 0s\n",
    );
    std::fs::write(&t.config, cfg).unwrap();
    let before = rt.images();
    assert!(
        before.iter().any(|n| n == &bed.pull_image),
        "imported: {before:?}"
    );

    let name = t.pod_name("gc");
    t.put_manifest(
        "gc.yaml",
        &t.template("sleeper.yaml", &[("POD", "gc"), ("GEN", "1")]),
    );
    t.start();
    let ran = t.wait_status(Duration::from_secs(60), |d| pod_running(d, &name));
    assert!(ran.is_some(), "pod never ran:\n{}", t.agent_log());

    let t0 = Instant::now();
    let mut now = rt.images();
    while now.iter().any(|n| n == &bed.pull_image) && t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(250));
        now = rt.images();
    }
    let log = t.agent_log();
    assert!(
        !now.iter().any(|n| n == &bed.pull_image),
        "the unused image was not collected: {now:?}\nagent log:\n{log}"
    );
    assert!(
        now.iter().any(|n| n == &bed.test_image),
        "the image the pod uses was removed: {now:?}\n{log}"
    );
    assert!(
        now.iter().any(|n| n == PAUSE),
        "the sandbox image was removed: {now:?}\n{log}"
    );
    assert!(log.contains("image GC: removed image"), "{log}");
    // The pod is untouched.
    let doc = t.status().unwrap_or_default();
    assert!(pod_running(&doc, &name), "{doc}");
    drop(t);
    drop(rt);
}
