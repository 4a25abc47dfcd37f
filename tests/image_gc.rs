//! Image garbage collection against a real containerd: a private containerd (its own root,
//! state and socket, with the bed's images imported) so that removing images can never touch
//! what other tests on the shared bed use. `tinylet run` with thresholds that the disk's real
//! usage crosses must remove the unused image and keep the one its pod uses and the runtime's
//! sandbox image.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::*;
use cri_bed::{one_agent, stop_child, unmount_below, Bed};

const PAUSE: &str = "tinylet.test/pause:1";

/// A containerd of the test's own; dropping it stops it and removes its files.
struct PrivateRuntime {
    child: Option<Child>,
    run: PathBuf,
    lib: PathBuf,
    sock: PathBuf,
}

impl PrivateRuntime {
    fn start(images: &Path) -> PrivateRuntime {
        let id = std::process::id();
        let run = PathBuf::from(format!("/run/tlgc-{id}"));
        let lib = PathBuf::from(format!("/var/lib/tinylet-gc-{id}"));
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
        for img in ["pause", "busybox", "busybox-pull"] {
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

    fn endpoint(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    fn ctr(&self, args: &[&str]) -> (bool, String) {
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
    fn images(&self) -> Vec<String> {
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
    let rt = PrivateRuntime::start(&images);
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
