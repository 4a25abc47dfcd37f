//! The real kubernetes-csi hostpath driver and node-driver-registrar for agent tests and
//! benches without an API server: the binaries (from ../shared/csi, unpacked by
//! tests/envtest/csi-assets.sh into TEST_ASSET_CSI_HOSTPATH and TEST_ASSET_CSI_REGISTRAR), the
//! processes (killed on drop), and the mounts below a directory. Included with `#[path]` next
//! to common/cri_bed.rs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::cri_bed::stop_child;

/// The driver's name.
pub const DRIVER: &str = "hostpath.csi.k8s.io";

/// The driver and registrar binaries, or None (skip line printed).
pub fn binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (
        get("TEST_ASSET_CSI_HOSTPATH"),
        get("TEST_ASSET_CSI_REGISTRAR"),
    ) {
        (Some(d), Some(r)) => Some((d, r)),
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (no CSI driver): {test} — eval \"$(tests/envtest/csi-assets.sh)\" first"
            );
            None
        }
    }
}

/// The driver and registrar processes; killed and reaped on drop, pass or fail.
#[derive(Default)]
pub struct Procs(Vec<Child>);

impl Procs {
    pub fn start(&mut self, bin: &Path, args: &[String], log: &Path) {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        self.0.push(child);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.0.drain(..) {
            stop_child(child, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Mount points at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(String::from)
        .collect()
}

/// The driver and its registrar, with sockets and state under `dir`, registering into the
/// agent's `plugins_registry`.
pub fn start_driver(
    procs: &mut Procs,
    bins: &(PathBuf, PathBuf),
    dir: &Path,
    root: &Path,
    node: &str,
) {
    let state = dir.join("csi/state");
    std::fs::create_dir_all(&state).unwrap();
    let sock = dir.join("csi/csi.sock");
    procs.start(
        &bins.0,
        &[
            format!("--endpoint=unix://{}", sock.display()),
            format!("--nodeid={node}"),
            format!("--drivername={DRIVER}"),
            format!("--statedir={}", state.display()),
            "--v=4".into(),
        ],
        &dir.join("hostpathplugin.log"),
    );
    let registry = root.join("plugins_registry");
    std::fs::create_dir_all(&registry).unwrap();
    procs.start(
        &bins.1,
        &[
            format!("--csi-address={}", sock.display()),
            format!("--kubelet-registration-path={}", sock.display()),
            format!("--plugin-registration-path={}", registry.display()),
            "--v=4".into(),
        ],
        &dir.join("registrar.log"),
    );
}
