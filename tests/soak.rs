//! The soak's short run (the hour is benches/soak.rs; both drive tests/common/soak.rs): 90 s of
//! crash loops, manifest churn, API pods, an image pull and a flaky link against one
//! `tinylet run` on a containerd of its own. Asserts no panic, no lost pod, no leftover and a
//! live agent; the RSS/fd/thread means are printed (90 s is too short to judge a trend).

#[path = "apiserver/mod.rs"]
mod apiserver;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/podsync.rs"]
mod podsync;
#[path = "common/private_runtime.rs"]
mod private_runtime;
#[path = "common/soak.rs"]
mod soak;

use std::path::Path;
use std::time::Duration;

#[test]
fn short_soak_loses_no_pod_and_never_panics() {
    let secs = std::env::var("TINYLET_SOAK_SHORT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let Some(r) = soak::run(
        "short_soak",
        Duration::from_secs(secs),
        Path::new(env!("CARGO_BIN_EXE_tinylet")),
    ) else {
        return;
    };
    r.print();
    assert_eq!(r.agent_exit, None);
    assert_eq!(r.panics, 0, "panics in the agent log");
    assert!(r.lost.is_empty(), "lost pods: {:?}", r.lost);
    assert!(r.leftovers.is_empty(), "leftover pods: {:?}", r.leftovers);
    assert!(r.samples.len() >= 3, "{:?}", r.samples);
}
