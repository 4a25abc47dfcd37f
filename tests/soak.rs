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

/// The windows and the flatness rule, without a runtime.
#[test]
fn soak_windows_and_flatness_rule() {
    use soak::{means, window, Report, Sample};
    assert_eq!(window(Duration::from_secs(3600)), Duration::from_secs(600));
    assert_eq!(window(Duration::from_secs(90)), Duration::from_secs(30));
    let s = |t, rss_kib, fds, threads| Sample {
        t,
        rss_kib,
        fds,
        threads,
    };
    let samples = [s(10, 100, 10, 4), s(20, 200, 12, 6), s(30, 900, 90, 9)];
    let m = means(&samples, 0, 30);
    assert_eq!((m.n, m.rss_kib, m.fds, m.threads), (2, 150.0, 11.0, 5.0));
    assert_eq!(means(&samples, 40, 50).n, 0);

    let mut r = Report {
        ran: Duration::from_secs(3600),
        first: means(&samples, 0, 30),
        last: means(&samples, 20, 30),
        ..Report::default()
    };
    // 200 KiB against 150 KiB: under 10 % + 1 MiB; +1 fd, +1 thread.
    assert!(r.flat() && r.pass());
    r.last = means(&samples, 30, 31);
    assert!(!r.flat() && !r.pass(), "+79 fds is a leak");
    // Under 40 minutes the trend is not judged; lost pods still fail the run.
    r.ran = Duration::from_secs(90);
    assert!(r.pass());
    r.lost.push("api-1".into());
    assert!(!r.pass());
}
