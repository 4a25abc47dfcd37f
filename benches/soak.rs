//! The soak (tests/common/soak.rs): one `tinylet run` for an hour with a crash-looping pod,
//! churning static manifests, API pods created and deleted, an image pulled and collected
//! over and over, and a link that is cut, reset and black-holed every three minutes, on a
//! containerd of its own. Prints the agent's VmRSS, open fds and threads every 10 s, then the
//! first and last 10-minute means, panics, lost pods and a verdict line; exits 1 on FAIL.
//! Bounded: it stops by itself (plus at most 3 minutes of settling), and Ctrl-C ends it early
//! with the same report and cleanup.
//!
//! Run (root, test bed up): `cargo bench --bench soak`, or with the debug build,
//! `cargo test --bench soak`. Environment: TINYLET_SOAK_SECS (3600). The short CI variant is
//! tests/soak.rs.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;
#[path = "../tests/common/podsync.rs"]
mod podsync;
#[path = "../tests/common/private_runtime.rs"]
mod private_runtime;
#[path = "../tests/common/soak.rs"]
mod soak;

use std::path::Path;
use std::time::Duration;

fn main() {
    let secs = std::env::var("TINYLET_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    soak::install_stop_handler();
    let bin = std::env::var("TINYLET_SOAK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tinylet").to_string());
    let Some(report) = soak::run("soak", Duration::from_secs(secs), Path::new(&bin)) else {
        return;
    };
    report.print();
    if !report.pass() {
        std::process::exit(1);
    }
}
