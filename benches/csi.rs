//! The CSI share of a pod's start and the agent's memory with CSI pods: `tinylet run` with
//! static pods on the bed's real containerd and the real kubernetes-csi hostpath driver and
//! node-driver-registrar (no API server). Prints figures; asserts nothing about speed.
//!
//!   eval "$(tests/envtest/csi-assets.sh)"
//!   cargo bench --bench csi            (the shipped profile), or
//!   cargo test --bench csi             (a debug build; figures say which)
//!
//! - Start: the same busybox pod with an inline CSI volume of the hostpath driver and with an
//!   emptyDir, alternately, CSI_RUNS times each (default 5), one at a time; the time is the
//!   agent's own log line per started pod (from the pod reaching the agent to every container
//!   started). The difference of the medians is the driver's publish (and its unpublish of
//!   the previous pod is not in it: each pod is gone before the next is written).
//! - Memory: the agent's VmRSS with 10 emptyDir pods running, then with 10 CSI pods.
//!
//! Root, the bed and the driver binaries are needed, else it says SKIPPED. It holds the agent
//! lock of tests/common/agent.rs.

#[path = "../tests/common/agent.rs"]
mod agent;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;
#[path = "../tests/common/csi.rs"]
mod csi;

use std::path::Path;
use std::time::{Duration, Instant};

use agent::*;
use csi::*;

const LIMIT: Duration = Duration::from_secs(120);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn manifest(image: &str, name: &str, csi: bool) -> String {
    let volume = if csi {
        format!("csi: {{driver: {DRIVER}}}")
    } else {
        "emptyDir: {}".to_string()
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  terminationGracePeriodSeconds: 1
  hostNetwork: true
  containers:
    - name: c
      image: {image}
      command: ["sh", "-c", "echo x > /v/f; exec sleep 3600"]
      volumeMounts:
        - {{name: v, mountPath: /v}}
  volumes:
    - name: v
      {volume}
"#
    )
}

/// The agent's "all containers started N ms after it reached the agent" of pod `full`.
fn started_ms(log: &str, full: &str) -> Option<f64> {
    let key = format!("pod {NAMESPACE}/{full}: all containers started ");
    let rest = log
        .lines()
        .find_map(|l| l.split_once(&key).map(|(_, r)| r))?;
    rest.split_whitespace().next()?.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn wait_gone(t: &AgentEnv, full: &str, root: &Path) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < LIMIT {
        let listed = t.status().is_none_or(|v| pod(&v, full).is_some());
        // Its directory (and with it any published volume) is gone too.
        let dirs = std::fs::read_dir(root.join("pods"))
            .map(|d| d.count())
            .unwrap_or(0);
        if !listed && dirs == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn main() {
    let test = "csi_bench";
    let Some(bins) = binaries(test) else {
        return;
    };
    let mut procs = Procs::default();
    let Some(mut t) = setup(test) else {
        return;
    };
    t.verbosity = 0;
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "bench profile (release)"
    };
    let (root, dir, node) = (t.root.clone(), t.dir.clone(), t.node.clone());
    let image = t.bed.test_image.clone();
    t.start();
    start_driver(&mut procs, &bins, &dir, &root, &node);
    let t0 = Instant::now();
    while !t.agent_log().contains("CSI: driver") && t0.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !t
        .agent_log()
        .contains(&format!("CSI: driver {DRIVER} registered"))
    {
        println!("SKIPPED: the driver did not register\n{}", t.agent_log());
        return;
    }

    let runs = env_num("CSI_RUNS", 5);
    let (mut csi_ms, mut empty_ms) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for csi in [true, false] {
            let name = format!("{}{i}", if csi { "c" } else { "e" });
            let full = t.pod_name(&name);
            let file = format!("{name}.yaml");
            t.put_manifest(&file, &manifest(&image, &name, csi));
            let up = t.wait_status(LIMIT, |v| pod_running(v, &full)).is_some();
            let ms = started_ms(&t.agent_log(), &full);
            t.remove_manifest(&file);
            let gone = wait_gone(&t, &full, &root);
            match (up, ms) {
                (true, Some(ms)) if csi => csi_ms.push(ms),
                (true, Some(ms)) => empty_ms.push(ms),
                _ => println!("run {name}: no start figure (running {up})"),
            }
            if !gone {
                println!("run {name}: not gone within {LIMIT:?}; stopping");
                return;
            }
        }
    }
    println!("CSI bench ({profile}), hostpath driver v1.16.1, static pods, no API server");
    println!(
        "pod start (reached agent → containers started), median of {}: emptyDir {:.1} ms, inline CSI {:.1} ms, CSI share {:.1} ms",
        csi_ms.len().min(empty_ms.len()),
        median(empty_ms.clone()),
        median(csi_ms.clone()),
        median(csi_ms.clone()) - median(empty_ms.clone())
    );
    println!("  emptyDir runs: {empty_ms:?}\n  CSI runs: {csi_ms:?}");

    let pid = t.agent_pid().unwrap_or(0);
    for csi in [false, true] {
        let names: Vec<String> = (0..10)
            .map(|i| format!("{}{i}", if csi { "rc" } else { "re" }))
            .collect();
        for n in &names {
            t.put_manifest(&format!("{n}.yaml"), &manifest(&image, n, csi));
        }
        let fulls: Vec<String> = names.iter().map(|n| t.pod_name(n)).collect();
        let all = t
            .wait_status(LIMIT, |v| fulls.iter().all(|f| pod_running(v, f)))
            .is_some();
        // Settle: the start's transient allocations are returned or reused.
        std::thread::sleep(Duration::from_secs(5));
        let rss = rss_kib(pid);
        println!(
            "agent RSS with 10 {} pods running: {rss} KiB{}",
            if csi { "inline CSI" } else { "emptyDir" },
            if all { "" } else { " (not all running)" }
        );
        for n in &names {
            t.remove_manifest(&format!("{n}.yaml"));
        }
        for f in &fulls {
            if !wait_gone(&t, f, &root) {
                println!("{f}: not gone within {LIMIT:?}");
            }
        }
    }
    let left = mounts_below(&root);
    println!("mounts left under the root dir: {}", left.len());
}
