//! `tinylet doctor` as a user runs it: against the containerd test bed (every runtime check
//! passes, the JSON is what fleet tooling reads), against a socket nobody listens on (a failure
//! and exit code 1), and with a broken config file. Doctor only reads, so these runs need no
//! lock and leave nothing behind but their temp dirs, which they remove.

#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tinylet");

/// A private temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tinylet-doctor-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tinylet doctor ARGS`: exit code, stdout.
fn doctor(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("doctor")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tinylet doctor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn verdict<'a>(doc: &'a Value, check: &str) -> &'a str {
    doc["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == check))
        .and_then(|c| c["verdict"].as_str())
        .unwrap_or_else(|| panic!("no check {check} in {doc:#}"))
}

#[test]
fn doctor_passes_the_runtime_checks_on_the_test_bed() {
    let Some(bed) = cri_bed::Bed::get("doctor_passes_the_runtime_checks_on_the_test_bed") else {
        return;
    };
    let root = TempDir::new("bed");
    let root_dir = root.0.join("state");
    let root_dir = root_dir.to_str().unwrap();
    let (code, out) = doctor(&[
        "--container-runtime-endpoint",
        &bed.endpoint,
        "--root-dir",
        root_dir,
        "--hostname-override",
        "doctor-bed",
        "--json",
    ]);
    let doc = json(&out);
    eprintln!("doctor on the bed took {} ms", doc["elapsedMs"]);
    for check in [
        "runtime.cri",
        "runtime.status",
        "runtime.cgroup-driver",
        "runtime.sandbox-image",
        "runtime.stream-server",
        "cni.config",
        "kernel.namespaces",
        "kernel.overlayfs",
        "node.name",
    ] {
        assert_eq!(verdict(&doc, check), "ok", "{check}: {doc:#}");
    }
    // No kubeconfig: a standalone node, the API server is not asked; no proxy mode either.
    assert_eq!(verdict(&doc, "apiserver"), "skip");
    assert_eq!(verdict(&doc, "kernel.proxy"), "skip");
    // The CNI dir is the one containerd reads, not the default /etc/cni/net.d.
    let cni = doc["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "cni.config"))
        .unwrap();
    assert!(
        cni["detail"]
            .as_str()
            .unwrap()
            .contains(bed.dir.to_str().unwrap()),
        "{cni}"
    );
    assert_eq!(doc["node"], "doctor-bed");
    assert_eq!(doc["rootDir"], root_dir);
    // The exit code follows the verdicts: 1 exactly when some check failed on this host.
    let fails = doc["summary"]["fail"].as_u64().unwrap();
    assert_eq!(code, Some(i32::from(fails > 0)), "{doc:#}");
    assert_eq!(doc["ready"], fails == 0);
    // Doctor only reads: the root dir it was pointed at was not created.
    assert!(!root.0.join("state").exists());

    // The table names every check and the runtime.
    let (code2, table) = doctor(&[
        "--container-runtime-endpoint",
        &bed.endpoint,
        "--root-dir",
        root_dir,
        "--hostname-override",
        "doctor-bed",
    ]);
    assert_eq!(code2, code);
    assert!(table.contains(&bed.endpoint), "{table}");
    assert!(table.contains("ok    runtime.cri"), "{table}");
    assert!(table.contains("containerd"), "{table}");
}

#[test]
fn doctor_fails_without_a_runtime_and_says_how_to_start_one() {
    let dir = TempDir::new("nosock");
    let endpoint = format!("unix://{}/containerd.sock", dir.0.display());
    let (code, out) = doctor(&["--container-runtime-endpoint", &endpoint, "--json"]);
    assert_eq!(code, Some(1), "{out}");
    let doc = json(&out);
    assert_eq!(doc["ready"], false);
    assert_eq!(verdict(&doc, "runtime.cri"), "fail");
    let cri = doc["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["check"] == "runtime.cri"))
        .unwrap();
    assert!(cri["detail"].as_str().unwrap().contains(&endpoint), "{cri}");
    assert!(cri["fix"].as_str().unwrap().contains("containerd"), "{cri}");
    // The runtime's other checks are not attempted after it did not answer.
    assert!(doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["check"] != "runtime.cgroup-driver"));

    let (code, table) = doctor(&["--container-runtime-endpoint", &endpoint]);
    assert_eq!(code, Some(1));
    assert!(table.contains("FAIL  runtime.cri"), "{table}");
    assert!(table.contains("cannot run pods"), "{table}");
}

#[test]
fn doctor_reports_a_broken_config_and_a_missing_kubeconfig() {
    let dir = TempDir::new("config");
    let config = dir.0.join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: lots\n",
    )
    .unwrap();
    let (code, out) = doctor(&["--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1), "{out}");
    let doc = json(&out);
    assert_eq!(verdict(&doc, "config"), "fail");

    let missing = dir.0.join("kubeconfig");
    let endpoint = format!("unix://{}/c.sock", dir.0.display());
    let (code, out) = doctor(&[
        "--kubeconfig",
        missing.to_str().unwrap(),
        "--container-runtime-endpoint",
        &endpoint,
        "--json",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(verdict(&json(&out), "apiserver"), "fail");

    // run's --once is not doctor's.
    let (code, _) = doctor(&["--once"]);
    assert_eq!(code, Some(2));
}
