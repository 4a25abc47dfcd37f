//! Pod start through the API and the idle link cost of `tinylet run` joined to the project's
//! API test server, on the bed's real containerd. `cargo bench --bench podstart` (root, bed
//! up); prints figures, asserts nothing about speed.
//!
//! - Pod start: from the moment the server wrote the pod's ADDED event to the agent's watch →
//!   every container started (CRI startedAt) and → phase Running stored at the server (the
//!   create request before it is the client's, not the agent's); p50/p99 over PODSTART_PODS
//!   pods (default 50), one at a time, next to the direct CRI time (RunPodSandbox +
//!   CreateContainer + StartContainer) measured in the same run, twice: with the configs
//!   tinylet's own translation gives that pod (mounts, log path, cgroup parent: the runtime's
//!   share of this pod), which is what "tinylet adds" is measured against, and for a bare pod.
//!   Also the agent's own account from its log line per started pod: from the pod reaching it
//!   to all containers started, and the part of that during which no runtime call of the pod
//!   was in flight (the agent's own work, free of the runtime's spread).
//! - Idle link: bytes in + out at the server over PODSTART_IDLE_SECS (default 600, which spans a
//!   node status report and watch re-establishments) with 10 pods running, plus 52 bytes of IP and
//!   TCP headers per segment (TCP_INFO of the server's sockets), scaled to an hour, next to the
//!   upstream kubelet's 664,705 B/h (anchors.md, also IP+TCP+TLS).

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;
#[path = "../tests/common/podsync.rs"]
mod podsync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use cri_bed::{container_config, sandbox_config, Bed};
use podsync::Env;
use tinylet::cri::proto::{ContainerConfig, PodSandboxConfig};

const UPSTREAM_IDLE_BPH: f64 = 664_705.0;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).ceil() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn line(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what:<44} p50 {:>9}  p99 {:>9}  max {:>9}  (n={})",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or_default()),
        v.len()
    );
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sandbox + container create + start straight to the runtime, timed from the first call to
/// the start's return; returns the time (None on any failure) and the sandbox for
/// [`remove_sandbox`].
fn timed_start(
    bed: &Bed,
    sandbox: PodSandboxConfig,
    container: ContainerConfig,
) -> (Option<Duration>, Option<String>) {
    let client = bed.client();
    smol::block_on(async {
        let t0 = Instant::now();
        let sb = client
            .run_pod_sandbox(&tinylet::cri::proto::RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: String::new(),
            })
            .await;
        let Ok(sb) = sb else {
            return (None, None);
        };
        let created = client
            .create_container(&tinylet::cri::proto::CreateContainerRequest {
                pod_sandbox_id: sb.pod_sandbox_id.clone(),
                config: Some(container),
                sandbox_config: Some(sandbox),
            })
            .await;
        let mut took = None;
        if let Ok(c) = created {
            if client.start_container(&c.container_id).await.is_ok() {
                took = Some(t0.elapsed());
            }
        }
        (took, Some(sb.pod_sandbox_id))
    })
}

/// Direct CRI for a bare pod (pod network, no mounts, no log file); the sandbox carries no
/// tinylet label, so the agent leaves it alone.
fn direct_cri_one(bed: &Bed, i: usize) -> (Option<Duration>, Option<String>) {
    let name = format!("podstart-cri-{i}-{}", std::process::id());
    let cc = container_config("main", &bed.test_image, "sleep 3600");
    timed_start(bed, sandbox_config(&name, false, &[]), cc)
}

/// Direct CRI with the configs tinylet derives for `server_pod` (the pod as the server holds
/// it, with the token volume its admission injected) through tinylet's own translation:
/// sandbox (DNS, hostname, cgroup parent, log directory) and container (env, resources,
/// mounts, log path), so the runtime does the work it does for tinylet's pod. The volumes are
/// directories made beforehand: preparing them is tinylet's work, not the runtime's. No
/// tinylet labels, so the agent leaves the sandbox alone. Returns (time, sandbox id, pod UID).
fn direct_cri_same(
    bed: &Bed,
    server_pod: &Value,
    i: usize,
    scratch: &Path,
) -> (Option<Duration>, Option<String>, String) {
    use tinylet::runtime::spec;
    let tag = format!("podstart-same-{i}-{}", std::process::id());
    let mut v = server_pod.clone();
    v["metadata"]["name"] = json!(tag);
    v["metadata"]["uid"] = json!(tag);
    let Ok(pod) = serde_json::from_value::<tinylet::k8s::pod::Pod>(v) else {
        return (None, None, tag);
    };
    let host = spec::HostFacts {
        node_name: "podstart".into(),
        host_ip: "127.0.0.1".into(),
        cluster_dns: Vec::new(),
        cluster_domain: "cluster.local".into(),
        host_dns: spec::parse_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        cgroup_root: "/kubepods".into(),
        pod_logs_root: scratch.join("logs").display().to_string(),
        ..Default::default()
    };
    let mut volumes = BTreeMap::new();
    for vol in &pod.spec.volumes {
        let dir = scratch.join("volumes").join(&vol.name);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("token"), "x");
        let hv = spec::HostVolume {
            host_path: dir.display().to_string(),
            read_only: true,
        };
        volumes.insert(vol.name.clone(), hv);
    }
    let Some(c) = pod.spec.containers.first() else {
        return (None, None, tag);
    };
    let cfg = spec::sandbox_config(&pod, 0, &host, BTreeMap::new(), BTreeMap::new());
    let _ = std::fs::create_dir_all(Path::new(&cfg.log_directory).join(&c.name));
    let services = BTreeMap::new();
    let sources = spec::EnvSources {
        pod_ip: "",
        object: &|_, _| None,
        services: &services,
    };
    let env = spec::container_env(&pod, c, &host, &sources)
        .map(|e| e.vars)
        .unwrap_or_default();
    let resources = spec::container_resources(&pod, c, 1 << 30).unwrap_or_default();
    let Ok(cc) = spec::container_config(
        &pod,
        c,
        0,
        env,
        &volumes,
        resources,
        BTreeMap::new(),
        BTreeMap::new(),
    ) else {
        return (None, None, tag);
    };
    let (took, sandbox) = timed_start(bed, cfg, cc);
    (took, sandbox, tag)
}

/// What [`direct_cri_same`] left on the host once its sandbox is gone: the pod's cgroup
/// directory (runc removes only the container's; the agent's own cleanup does the rest) and
/// its log directory.
fn remove_same_leftovers(uid: &str, scratch: &Path) {
    tinylet::runtime::housekeeping::remove_pod_cgroups("/kubepods", uid);
    let _ = std::fs::remove_dir_all(scratch.join("logs"));
}

/// Stops and removes a direct-CRI sandbox, after the tinylet pod that followed it was timed
/// (so its teardown does not run under that measurement).
fn remove_sandbox(bed: &Bed, id: &str) {
    let client = bed.client();
    smol::block_on(async {
        let _ = client.stop_pod_sandbox(id).await;
        let _ = client.remove_pod_sandbox(id).await;
    });
}

fn main() {
    let Some(bed) = Bed::get("podstart bench") else {
        return;
    };
    let pods = env_num("PODSTART_PODS", 50) as usize;
    let idle_secs = env_num("PODSTART_IDLE_SECS", 600);
    println!("podstart bench: load before {}", loadavg());
    let mut cri = Vec::new();
    let mut cri_same = Vec::new();
    let mut leftover: Option<String> = None;
    let mut leftover_same: Option<(String, String)> = None;
    let scratch: PathBuf =
        std::env::temp_dir().join(format!("podstart-same-{}", std::process::id()));

    let mut env = Env::new(
        bed,
        Path::new(env!("CARGO_BIN_EXE_tinylet")),
        "podstart_bench",
    );
    // Real servers send a BOOKMARK about once a minute; the test server's default is faster.
    env.srv.set_bookmark_interval(Duration::from_secs(60));
    env.extra_args = vec!["-v".into(), "0".into()];
    env.start();
    // Let the agent settle (first list done) before timing.
    std::thread::sleep(Duration::from_secs(2));

    let mut to_started = Vec::new();
    let mut to_running = Vec::new();
    let client = env.bed.client();
    for i in 0..pods {
        // Interleaved with the tinylet pods, so both see the same machine (these machines are
        // shared and their load drifts within a run).
        if let Some(id) = leftover.take() {
            remove_sandbox(&env.bed, &id);
        }
        if let Some((id, uid)) = leftover_same.take() {
            remove_sandbox(&env.bed, &id);
            remove_same_leftovers(&uid, &scratch);
        }
        let (took, sandbox) = direct_cri_one(&env.bed, i);
        cri.extend(took);
        leftover = sandbox;
        let name = format!("b{i}");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": env.ns},
            "spec": {
                "nodeName": env.node,
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main", "image": env.bed.test_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                }],
            }
        });
        // Pod start is timed from the moment the server wrote the ADDED event to the agent's
        // watch (instants from the same clock; CRI's startedAt is wall-clock nanoseconds).
        let before_wall = wall_ns();
        let before = Instant::now();
        env.create_pod(pod);
        let ok = env.srv.wait_until(Duration::from_secs(60), |s| {
            s.pod_status(&env.ns, &name)
                .is_some_and(|st| st["phase"] == "Running")
        });
        let running_at = Instant::now();
        if !ok {
            eprintln!("pod {name} not Running within 60 s:\n{}", env.log());
            continue;
        }
        let uid = env
            .srv
            .pod(&env.ns, &name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
            .unwrap_or_default();
        let Some(added) = env.srv.first_added_at(&uid) else {
            eprintln!("pod {name}: the server never wrote its ADDED event");
            continue;
        };
        let added_wall = before_wall + added.saturating_duration_since(before).as_nanos() as i64;
        to_running.push(running_at.saturating_duration_since(added));
        let ids = env.running_ids(&name);
        let started = smol::block_on(async {
            let mut latest = 0i64;
            for id in &ids {
                if let Ok(r) = client.container_status(id, false).await {
                    if let Some(s) = r.status {
                        latest = latest.max(s.started_at);
                    }
                }
            }
            latest
        });
        if started > added_wall {
            to_started.push(Duration::from_nanos((started - added_wall) as u64));
        }
        // The same pod's CRI work, straight to the runtime, right after tinylet's.
        if let Some(server_pod) = env.srv.pod(&env.ns, &name) {
            let (took, sandbox, uid) = direct_cri_same(&env.bed, &server_pod, i, &scratch);
            cri_same.extend(took);
            leftover_same = sandbox.map(|id| (id, uid));
        }
    }
    if let Some((id, uid)) = leftover_same.take() {
        remove_sandbox(&env.bed, &id);
        remove_same_leftovers(&uid, &scratch);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(id) = leftover.take() {
        remove_sandbox(&env.bed, &id);
    }
    println!(
        "pod start, {} pods one at a time, each after one direct-CRI pod (real containerd, pod \
         network, busybox-static)",
        pods
    );
    line("direct CRI: sandbox+create+start", cri.clone());
    line(
        "direct CRI, tinylet's configs for the pod",
        cri_same.clone(),
    );
    line(
        "tinylet: API ADDED → all containers started",
        to_started.clone(),
    );
    line(
        "tinylet: API ADDED → Running at the server",
        to_running.clone(),
    );
    // The agent's own account of each start (its log line per started pod): the time from
    // the pod reaching it to all containers started, minus the time runtime calls were in
    // flight. Free of the runtime's own noise, which dominates the percentiles above.
    let (mut own, mut seen_to_started) = (Vec::new(), Vec::new());
    let prefix = format!("pod {}/b", env.ns);
    for l in env.log().lines() {
        let Some(rest) = l.split_once(&prefix).map(|(_, r)| r) else {
            continue;
        };
        let num = |after: &str| -> Option<Duration> {
            let v = rest.split_once(after)?.1.split_whitespace().next()?;
            Some(Duration::from_secs_f64(v.parse::<f64>().ok()? / 1e3))
        };
        let own_ms = rest
            .rsplit_once(", ")
            .and_then(|(_, t)| t.strip_suffix(" ms the agent's own"))
            .and_then(|v| v.parse::<f64>().ok());
        if let (Some(total), Some(o)) = (num("all containers started "), own_ms) {
            seen_to_started.push(total);
            own.push(Duration::from_secs_f64(o / 1e3));
        }
    }
    line("agent log: pod reached agent → started", seen_to_started);
    line("agent log: the agent's own part of it", own);
    let (mut a, mut b, mut c) = (to_started, cri, cri_same);
    a.sort();
    b.sort();
    c.sort();
    // Signed: on this shared machine the runtime's own spread is larger than what the agent
    // adds, and a negative figure says so.
    let diff =
        |x: Duration, y: Duration| format!("{:+.1} ms", (x.as_secs_f64() - y.as_secs_f64()) * 1e3);
    let adds = |base: &[Duration]| {
        format!(
            "p50 {}  p99 {}",
            diff(percentile(&a, 0.5), percentile(base, 0.5)),
            diff(percentile(&a, 0.99), percentile(base, 0.99))
        )
    };
    println!(
        "tinylet adds (containers started) over direct CRI with its own configs: {}",
        adds(&c)
    );
    println!("  (over the bare direct-CRI pod: {})", adds(&b));

    // Idle link: keep 10 pods, delete the rest and wait until they are gone.
    for i in 10..pods {
        let _ = env
            .srv
            .delete(&format!("/api/v1/namespaces/{}/pods/b{i}", env.ns), None);
    }
    let ns = env.ns.clone();
    let gone = env.srv.wait_until(Duration::from_secs(120), |s| {
        (10..pods).all(|i| s.pod(&ns, &format!("b{i}")).is_none())
    });
    if !gone {
        eprintln!("deleted pods still present after 120 s");
    }
    std::thread::sleep(Duration::from_secs(5));
    let stats = env.srv.stats();
    stats.reset();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let secs = t0.elapsed().as_secs_f64();
    let (bin, bout) = (stats.bytes_in(), stats.bytes_out());
    let segs = stats.segments();
    let wire = stats.wire_bytes();
    let per_hour = wire as f64 * 3600.0 / secs;
    let requests = stats.total_requests();
    println!(
        "idle link, 10 pods, {secs:.0} s window: {bin} B in + {bout} B out (TLS records) + {segs} \
         TCP segments x {} B (IP+TCP headers) = {wire} B, {requests} request(s)",
        apiserver::stats::IP_TCP_HEADER_BYTES
    );
    println!(
        "  → {per_hour:.0} B/h = {:.1}% of the upstream kubelet's {UPSTREAM_IDLE_BPH:.0} B/h \
         (anchors.md: IP+TCP+TLS on one connection, same contract); {:.0} B on the wire per \
         request on average",
        per_hour * 100.0 / UPSTREAM_IDLE_BPH,
        wire as f64 / requests.max(1) as f64
    );
    println!("  counts: {:?}", stats.counts());
    println!("podstart bench: load after {}", loadavg());
}
