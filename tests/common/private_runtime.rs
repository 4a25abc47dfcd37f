//! A containerd of a test's own (its own root, state and socket, the bed's images imported from
//! their tarballs), so that what the test does to images and pods can never touch what other
//! tests on the shared bed use, and a long run does not hold the shared bed's agent lock.
//! Included with `#[path]` by tests/image_gc.rs and the soak (tests/common/soak.rs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cri_bed::{stop_child, unmount_below};

/// The sandbox image the bed provides (imported as `pause`).
pub const PAUSE: &str = "tinylet.test/pause:1";

/// A containerd of the test's own; dropping it stops it and removes its files.
pub struct PrivateRuntime {
    child: Option<Child>,
    /// Its state dir (socket, config, log), under /run.
    pub run: PathBuf,
    /// Its root dir, under /var/lib.
    pub lib: PathBuf,
    sock: PathBuf,
}

impl PrivateRuntime {
    /// Starts one named `tag` (its dirs are /run/tl`tag`-PID and /var/lib/tinylet-`tag`-PID)
    /// and imports `import` (tarball names under `images`, e.g. "pause").
    pub fn start(tag: &str, images: &Path, import: &[&str]) -> PrivateRuntime {
        let id = std::process::id();
        let run = PathBuf::from(format!("/run/tl{tag}-{id}"));
        let lib = PathBuf::from(format!("/var/lib/tinylet-{tag}-{id}"));
        let _ = std::fs::remove_dir_all(&lib);
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(run.join("cni")).unwrap();
        std::fs::create_dir_all(run.join("state")).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        let sock = run.join("containerd.sock");
        // The bed's settings (tests/bed/up.sh) with this runtime's own places and no CNI
        // network: the test's pod uses the host network.
        let toml = format!(
            r#"version = 2
root = "{lib}/containerd"
state = "{run}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  systemd_cgroup = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{run}/cni"
"#,
            lib = lib.display(),
            run = run.display(),
            sock = sock.display(),
        );
        std::fs::write(run.join("containerd.toml"), toml).unwrap();
        let log = std::fs::File::create(run.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(run.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (the bed installs it)");
        let rt = PrivateRuntime {
            child: Some(child),
            run,
            lib,
            sock,
        };
        let t0 = Instant::now();
        while !rt.ctr(&["version"]).0 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "private containerd did not come up:\n{}",
                std::fs::read_to_string(rt.run.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for img in import {
            let tar = images.join(format!("{img}.tar"));
            let (ok, out) = rt.ctr(&[
                "-n",
                "k8s.io",
                "images",
                "import",
                &tar.display().to_string(),
            ]);
            assert!(ok, "importing {}: {out}", tar.display());
        }
        rt
    }

    /// Its CRI endpoint.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// `ctr` against it: success and output.
    pub fn ctr(&self, args: &[&str]) -> (bool, String) {
        match Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(args)
            .output()
        {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// The image names the runtime holds.
    pub fn images(&self) -> Vec<String> {
        let (_, out) = self.ctr(&["-n", "k8s.io", "images", "ls", "-q"]);
        out.lines().map(String::from).collect()
    }
}

impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c, nix::sys::signal::Signal::SIGTERM);
        }
        for dir in [&self.run, &self.lib] {
            for p in unmount_below(dir) {
                eprintln!("cleanup: unmounted {p}");
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
