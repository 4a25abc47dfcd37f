//! Pod-level cgroups on the real runtime: a BestEffort, a Burstable and a Guaranteed pod from
//! the API, and the values the kubelet would give their pod cgroups and QoS levels, read back
//! from cgroupfs (v1 here; the v2 files are unit-tested).
//!
//! The kubelet's rules (`ResourceConfigForPod`, the QoS container manager): BestEffort pods and
//! the BestEffort level get cpu.shares 2; a pod's shares are its CPU requests in millicores
//! × 1024 / 1000; a CPU quota (period 100 ms) and a memory limit are set on the pod cgroup only
//! when every container declares that limit; the Burstable level has the sum of its pods'
//! requests as shares.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod_path, wait_ready, OnFailure};

fn pod(a: &Agent, ns: &str, name: &str, resources: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                "resources": resources,
            }],
        }
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

pub fn pod_cgroups_are_configured(c: &dyn Cluster, bed: Bed) {
    let v1 =
        Path::new("/sys/fs/cgroup/cpu").is_dir() && Path::new("/sys/fs/cgroup/memory").is_dir();
    if !v1 {
        eprintln!("SKIPPED (no cgroup v1 cpu/memory hierarchies): pod_cgroups_are_configured");
        return;
    }
    let mut a = Agent::new(bed, c, "cgroups");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    c.create(&pods, pod(&a, &ns, "be", json!({}))).unwrap();
    c.create(
        &pods,
        pod(
            &a,
            &ns,
            "bu",
            json!({"requests": {"cpu": "100m", "memory": "32Mi"},
                   "limits": {"cpu": "300m", "memory": "64Mi"}}),
        ),
    )
    .unwrap();
    c.create(
        &pods,
        pod(
            &a,
            &ns,
            "gu",
            json!({"requests": {"cpu": "250m", "memory": "48Mi"},
                   "limits": {"cpu": "250m", "memory": "48Mi"}}),
        ),
    )
    .unwrap();
    for n in ["be", "bu", "gu"] {
        wait_ready(c, &ns, n);
    }
    let uid = |n: &str| -> String {
        c.get(&pod_path(&ns, n)).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cpu = PathBuf::from("/sys/fs/cgroup/cpu/kubepods");
    let mem = PathBuf::from("/sys/fs/cgroup/memory/kubepods");
    let be = format!("besteffort/pod{}", uid("be"));
    let bu = format!("burstable/pod{}", uid("bu"));
    let gu = format!("pod{}", uid("gu"));

    let got = [
        read(&cpu.join("besteffort/cpu.shares")),
        read(&cpu.join(&be).join("cpu.shares")),
        read(&cpu.join(&bu).join("cpu.shares")),
        read(&cpu.join(&bu).join("cpu.cfs_quota_us")),
        read(&mem.join(&bu).join("memory.limit_in_bytes")),
        read(&cpu.join(&gu).join("cpu.shares")),
        read(&cpu.join(&gu).join("cpu.cfs_quota_us")),
        read(&mem.join(&gu).join("memory.limit_in_bytes")),
    ];
    let want = [
        "2".to_string(),
        "2".to_string(),
        "102".to_string(),
        "30000".to_string(),
        (64u64 << 20).to_string(),
        "256".to_string(),
        "25000".to_string(),
        (48u64 << 20).to_string(),
    ];
    assert_eq!(
        got, want,
        "besteffort level, be, bu (shares, quota, memory), gu (same)"
    );
    // The Burstable level's shares cover its pods' requests (at least bu's 100m).
    let level: u64 = read(&cpu.join("burstable/cpu.shares")).parse().unwrap_or(0);
    assert!(level >= 102, "burstable level shares {level}");
}
