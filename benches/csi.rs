//! The CSI share of a pod's start and the agent's memory with CSI pods, on the bed's real
//! containerd with the real kubernetes-csi hostpath driver and node-driver-registrar. Prints
//! figures; asserts nothing about speed.
//!
//!   eval "$(tests/envtest/csi-assets.sh)"
//!   export TEST_ASSET_KUBE_APISERVER=... TEST_ASSET_ETCD=...   (tests/envtest/README.md)
//!   cargo bench --bench csi            (the shipped profile), or
//!   cargo test --bench csi             (a debug build; figures say which)
//!
//! - Start, static pods (`tinylet run` with no API server): the same busybox pod with an
//!   inline CSI volume of the hostpath driver and with an emptyDir, alternately, CSI_RUNS
//!   times each (default 5), one at a time; the time is the agent's own log line per started
//!   pod (from the pod reaching the agent to every container started). The difference of the
//!   medians is the driver's publish (and its unpublish of the previous pod is not in it:
//!   each pod is gone before the next is written).
//! - Start, API pods (a real kube-apiserver + etcd as the envtest `real_` scenarios start
//!   them; skipped without their binaries): the same pod bound to the node through the API
//!   with a PersistentVolumeClaim, an inline CSI volume and an emptyDir, in turn, CSI_RUNS
//!   times each; the claim is bound to a PersistentVolume of a volume made by the driver's
//!   Controller CreateVolume (no provisioner or PV controller runs: the bench binds them). The
//!   claim's start includes the PVC and PV reads (cached for a minute), NodeStage and
//!   NodePublish (the volume is unstaged when each pod goes). The three medians are printed
//!   side by side.
//! - Memory: the agent's VmRSS with 10 emptyDir pods running, then with 10 CSI pods (static).
//!
//! Root, the bed and the driver binaries are needed, else it says SKIPPED. It holds the agent
//! lock of tests/common/agent.rs.

#[path = "../tests/envtest/agent.rs"]
mod agent;
#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/envtest/cluster.rs"]
mod cluster;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;
#[path = "../tests/common/csi.rs"]
mod csi;
#[path = "../tests/common/podsync.rs"]
mod podsync;
#[path = "../tests/envtest/real.rs"]
mod real;
#[path = "../tests/envtest/scenarios.rs"]
mod scenarios;
#[path = "../tests/common/agent.rs"]
mod static_agent;

use std::path::Path;
use std::time::{Duration, Instant};

use csi::*;
use static_agent::*;

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
    static_pods();
    api_pods();
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build"
    } else {
        "bench profile (release)"
    }
}

fn static_pods() {
    let test = "csi_bench";
    let Some(bins) = binaries(test) else {
        return;
    };
    let mut procs = Procs::default();
    let Some(mut t) = setup(test) else {
        return;
    };
    t.verbosity = 0;
    let profile = profile();
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

/// What a pod's volume `v` is in the API part.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    EmptyDir,
    Inline,
    Claim,
}

impl Source {
    fn volume(self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Source::EmptyDir => json!({"name": "v", "emptyDir": {}}),
            Source::Inline => json!({"name": "v", "csi": {"driver": DRIVER}}),
            Source::Claim => json!({"name": "v", "persistentVolumeClaim": {"claimName": "data"}}),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Source::EmptyDir => "e",
            Source::Inline => "i",
            Source::Claim => "p",
        }
    }
}

/// The static part's pod as an API pod bound to the node, with volume `v` from `src`.
fn api_pod(a: &agent::Agent, name: &str, src: Source) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": a.namespace()},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "hostNetwork": true,
            "containers": [{
                "name": "c", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo x > /v/f; exec sleep 3600"],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}],
            }],
            "volumes": [src.volume()],
        }
    })
}

/// A volume made by the driver's Controller service, a PV for it and claim `ns/data` bound
/// to it (no provisioner or PV controller runs). Returns the volume id.
fn bound_claim(
    c: &dyn cluster::Cluster,
    client: &tinylet::csi::CsiClient,
    node: &str,
    ns: &str,
) -> Result<String, String> {
    use serde_json::json;
    use tinylet::csi::proto::{AccessModeKind, CreateVolumeRequest, VolumeCapability};
    let created = smol::block_on(client.create_volume(&CreateVolumeRequest {
        name: format!("{node}-bench"),
        capacity_range: None,
        volume_capabilities: vec![VolumeCapability::mount(
            "",
            vec![],
            AccessModeKind::SingleNodeWriter,
        )],
        parameters: Default::default(),
        secrets: Default::default(),
    }))
    .map_err(|e| format!("CreateVolume: {e}"))?
    .volume
    .ok_or("CreateVolume: no volume")?;
    let pv = format!("{node}-bench-pv");
    let e = |e: cluster::CallError| e.to_string();
    c.create(
        "/api/v1/persistentvolumes",
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                        "claimRef": {"namespace": ns, "name": "data"},
                        "csi": {"driver": DRIVER, "volumeHandle": created.volume_id,
                                "volumeAttributes": created.volume_context}}}),
    )
    .map_err(e)?;
    c.create(
        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                        "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .map_err(e)?;
    c.merge_patch(
        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/data/status"),
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                          "capacity": {"storage": "1Gi"}}}),
    )
    .map_err(e)?;
    Ok(created.volume_id)
}

/// Pod start of API pods with a claim, an inline CSI volume and an emptyDir, against a real
/// control plane.
fn api_pods() {
    use cluster::Cluster;
    let Some(assets) = real::Assets::from_env() else {
        println!("CSI bench, API pods (PVC) SKIPPED: {}", real::HOW_TO_ENABLE);
        return;
    };
    let Some(bins) = binaries("csi_bench_api") else {
        return;
    };
    let Some(bed) = cri_bed::Bed::get("csi_bench_api") else {
        return;
    };
    let c = match real::RealCluster::start(&assets) {
        Ok(c) => c,
        Err(e) => {
            println!("CSI bench, API pods: the control plane did not start: {e}");
            return;
        }
    };
    let mut procs = Procs::default();
    let mut a = agent::Agent::new(bed, &c, "csibench");
    let ns = a.namespace();
    c.ensure_namespace(&ns).expect("the namespace");
    scenarios::join(&c, &mut a);
    c.create(
        "/apis/storage.k8s.io/v1/csidrivers",
        serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
               "metadata": {"name": DRIVER},
               "spec": {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "File",
                        "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}),
    )
    .expect("the CSIDriver");
    start_driver(&mut procs, &bins, &a.dir, &a.root, &a.node);
    let sock = a.dir.join("csi/csi.sock");
    let client = tinylet::csi::CsiClient::new(DRIVER, &sock.display().to_string());
    let registered = scenarios::poll(LIMIT, || {
        a.log()
            .contains(&format!("CSI: driver {DRIVER} registered"))
            .then_some(())
    });
    if registered.is_none() {
        println!(
            "CSI bench, API pods SKIPPED: the driver did not register\n{}",
            a.log()
        );
        return;
    }
    let volume_id = match bound_claim(&c, &client, &a.node, &ns) {
        Ok(v) => v,
        Err(e) => {
            println!("CSI bench, API pods: no claim ({e})");
            return;
        }
    };

    let runs = env_num("CSI_RUNS", 5);
    let sources = [Source::Claim, Source::Inline, Source::EmptyDir];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); sources.len()];
    'runs: for i in 0..runs {
        for (k, src) in sources.iter().enumerate() {
            let name = format!("{}{i}", src.prefix());
            let path = scenarios::pod_path(&ns, &name);
            if let Err(e) = c.create(
                &format!("/api/v1/namespaces/{ns}/pods"),
                api_pod(&a, &name, *src),
            ) {
                println!("run {name}: not created: {e}");
                break 'runs;
            }
            let up = c.wait_until(LIMIT, &mut || {
                c.get_opt(&path)
                    .is_some_and(|p| p["status"]["phase"] == "Running")
            });
            let full = format!("{ns}/{name}");
            let key = format!("pod {full}: all containers started ");
            let ms = scenarios::poll(Duration::from_secs(5), || {
                let log = a.log();
                let rest = log
                    .lines()
                    .find_map(|l| l.split_once(&key).map(|(_, r)| r.to_string()))?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            });
            let uid = c
                .get_opt(&path)
                .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
                .unwrap_or_default();
            let _ = c.delete(&path, None);
            let gone = c.wait_until(LIMIT, &mut || {
                c.get_opt(&path).is_none()
                    && !uid.is_empty()
                    && !a.root.join("pods").join(&uid).exists()
            });
            match (up, ms) {
                (true, Some(ms)) => figures[k].push(ms),
                _ => println!("run {name}: no start figure (running {up})"),
            }
            if !gone {
                println!("run {name}: not gone within {LIMIT:?}; stopping");
                break 'runs;
            }
        }
    }
    let n = figures.iter().map(Vec::len).min().unwrap_or(0);
    let [claim, inline, empty] = [0, 1, 2].map(|k| median(figures[k].clone()));
    println!(
        "CSI bench ({}), hostpath driver v1.16.1, API pods from a real kube-apiserver v1.32",
        profile()
    );
    println!(
        "pod start (reached agent → containers started), median of {n}: emptyDir {empty:.1} ms, \
         inline CSI {inline:.1} ms, PVC {claim:.1} ms; CSI share: inline {:.1} ms, PVC {:.1} ms",
        inline - empty,
        claim - empty
    );
    println!(
        "  emptyDir runs: {:?}\n  inline CSI runs: {:?}\n  PVC runs: {:?}",
        figures[2], figures[1], figures[0]
    );
    println!(
        "mounts left under the root dir: {}",
        scenarios::poll(LIMIT, || mounts_below(&a.root).is_empty().then_some(0))
            .unwrap_or_else(|| mounts_below(&a.root).len())
    );
    let _ = smol::block_on(client.delete_volume(&volume_id));
}
