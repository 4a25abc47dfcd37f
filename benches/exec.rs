//! `kubectl exec POD -- true` on a tinylet node and what tinylet adds to it. `cargo bench
//! --bench exec` (root, bed up, TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD set as for the
//! envtest `real_` scenarios, /usr/bin/kubectl); prints figures, asserts nothing about speed.
//!
//! p50/p99 over EXEC_RUNS runs (default 50), one at a time, of:
//! - `kubectl exec POD -- true` through the real kube-apiserver (kubectl's own start included);
//! - the same exec as a WebSocket (`v4.channel.k8s.io`) client straight to tinylet's
//!   `/exec` on :10250: TLS with a client certificate, authentication, authorization (cached
//!   after the first), CRI lookups and Exec, relay to containerd's streaming server;
//! - the same exec straight to containerd: CRI `Exec` for the URL, then the same WebSocket
//!   client on containerd's streaming server.
//!
//! The last two differ by what tinylet adds to an exec; a TLS connection with a `GET /healthz`
//! alone shows how much of that is the connection (handshake, client certificate) rather than
//! the CRI lookups and the relay.
//!
//! Then logs: a container writes a 10 MB log (100,000 lines of 100 B); time to first byte and
//! throughput of `kubectl logs POD` through the API server and of a plain `GET /containerLogs`
//! to tinylet; and the agent's RSS idle with the server on, then with 10 `kubectl logs -f`
//! followers open.

#[path = "../tests/envtest/agent.rs"]
mod agent;
#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/envtest/cluster.rs"]
mod cluster;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;
#[path = "../tests/envtest/kubelet_api.rs"]
mod kubelet_api;
#[path = "../tests/envtest/kubelet_exec.rs"]
mod kubelet_exec;
#[path = "../tests/common/podsync.rs"]
mod podsync;
#[path = "../tests/envtest/real.rs"]
mod real;
#[path = "../tests/envtest/scenarios.rs"]
mod scenarios;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::json;

use cluster::Cluster;
use cri_bed::Bed;
use real::{Assets, RealCluster};
use tinylet::cri::proto::{ContainerFilter, ContainerState, ContainerStateValue};
use tinylet::cri::proto_stream::ExecRequest;
use tinylet::cri::{CriClient, CriOptions};

/// The WebSocket subprotocol the exec clients ask for.
const PROTOCOL: &str = "v4.channel.k8s.io";

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

fn line(what: &str, v: &mut [Duration]) -> Duration {
    v.sort();
    let p50 = percentile(v, 0.5);
    println!(
        "{what:<58} p50 {:>9}  p99 {:>9}  (n={})",
        ms(p50),
        ms(percentile(v, 0.99)),
        v.len()
    );
    p50
}

fn main() {
    let runs = std::env::var("EXEC_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50usize);
    let Some(assets) = Assets::from_env() else {
        println!("exec bench SKIPPED: {}", real::HOW_TO_ENABLE);
        return;
    };
    let Some(bed) = Bed::get("bench_exec") else {
        return;
    };
    let endpoint = bed.endpoint.clone();
    let c = RealCluster::start(&assets).unwrap_or_else(|e| panic!("{e}"));
    // The 10 MB log (14 MB on disk with the runtime's prefixes) must not be rotated while it
    // is read: above the default 10Mi.
    let node = kubelet_api::served_node_with(&c, bed, "benchexec", "containerLogMaxSize: 64Mi\n");
    let (a, k, ns) = (&node.a, &node.k, node.ns.clone());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "target", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
            }],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    scenarios::wait_ready(&c, &ns, "target");
    let uid = c
        .get(&scenarios::pod_path(&ns, "target"))
        .unwrap()
        .pointer("/metadata/uid")
        .and_then(|u| u.as_str())
        .unwrap_or_default()
        .to_string();

    // kubectl exec through the API server.
    let mut kubectl = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = k
            .cmd(&["exec", "target", "--", "true"])
            .output()
            .expect("run kubectl");
        kubectl.push(t0.elapsed());
        assert!(
            out.status.success(),
            "kubectl exec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The three ways below run interleaved, so load on the shared machine hits them alike.
    let tls = kubelet_exec::tls_client(&c);
    let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
    let connect = || {
        let tcp = TcpStream::connect(addr).expect("connect to the kubelet API");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(tls.clone(), name).expect("TLS client");
        rustls::StreamOwned::new(conn, tcp)
    };
    // WebSocket straight to tinylet's /exec.
    let path = format!("/exec/{ns}/target/main?command=true&output=1&error=1");
    let via_tinylet_once = || {
        let t0 = Instant::now();
        let mut s = connect();
        let status = kubelet_exec::ws_exec(&mut s, &addr.to_string(), &path, PROTOCOL)
            .unwrap_or_else(|e| panic!("exec via tinylet: {e}"))
            .status;
        let took = t0.elapsed();
        assert!(
            status.is_empty() || status.contains("Success"),
            "exec via tinylet: {status}"
        );
        took
    };
    // The connection alone: TLS with a client certificate and a GET /healthz (authorized from
    // the cache), the part of the above that is no exec.
    let healthz_once = || {
        let t0 = Instant::now();
        let mut s = connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let took = t0.elapsed();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        took
    };
    // CRI Exec + WebSocket straight to containerd's streaming server.
    let cri = CriClient::new(&endpoint, CriOptions::default()).expect("CRI endpoint");
    let filter = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        label_selector: BTreeMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid),
            (
                "io.kubernetes.container.name".to_string(),
                "main".to_string(),
            ),
        ]),
        ..ContainerFilter::default()
    };
    let id = smol::block_on(cri.list_containers(Some(filter)))
        .expect("ListContainers")
        .containers
        .first()
        .map(|c| c.id.clone())
        .expect("the pod's container runs");
    let direct_once = || {
        let t0 = Instant::now();
        let req = ExecRequest {
            container_id: id.clone(),
            cmd: vec!["true".into()],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let url = smol::block_on(cri.exec(&req)).expect("CRI Exec").url;
        let (dial, host, path) =
            tinylet::server::stream::split_url(&url).unwrap_or_else(|e| panic!("{e}"));
        let mut tcp = TcpStream::connect(dial).expect("connect to the streaming server");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let status = kubelet_exec::ws_exec(&mut tcp, &host, &path, PROTOCOL)
            .unwrap_or_else(|e| panic!("exec direct: {e}"))
            .status;
        let took = t0.elapsed();
        assert!(
            status.is_empty() || status.contains("Success"),
            "exec direct: {status}"
        );
        took
    };
    // The first exec fills the authorization cache and opens the CRI connections: not counted.
    via_tinylet_once();
    direct_once();
    let (mut via_tinylet, mut healthz, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        via_tinylet.push(via_tinylet_once());
        healthz.push(healthz_once());
        direct.push(direct_once());
    }

    println!("exec of `true` in a running busybox container, one at a time:");
    line(
        "kubectl exec POD -- true (kubectl, API server, tinylet)",
        &mut kubectl,
    );
    let t = line(
        "WebSocket exec to tinylet :10250 (TLS, authn, CRI, relay)",
        &mut via_tinylet,
    );
    line(
        "  of which TLS connection + GET /healthz alone",
        &mut healthz,
    );
    let d = line(
        "WebSocket exec straight to containerd (CRI Exec + stream)",
        &mut direct,
    );
    println!(
        "tinylet's added time per exec (p50 difference): {}",
        ms(t.saturating_sub(d))
    );

    let _ = c.delete(&scenarios::pod_path(&ns, "target"), None);
    c.wait_until(scenarios::LIMIT, &mut || {
        c.get_opt(&scenarios::pod_path(&ns, "target")).is_none()
    });

    logs_and_rss(&c, &node, &connect);
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `r` to the end: (time to the first byte, bytes, time to the end), from `t0`.
fn drain(mut r: impl Read, t0: Instant) -> (Duration, usize, Duration) {
    let mut buf = vec![0u8; 64 << 10];
    let (mut first, mut total) = (None, 0usize);
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first.get_or_insert_with(|| t0.elapsed());
                total += n;
            }
        }
    }
    (first.unwrap_or_default(), total, t0.elapsed())
}

fn mb_per_s(bytes: usize, d: Duration) -> String {
    format!("{:.1} MB/s", bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9))
}

fn logs_and_rss<S: Read + Write>(
    c: &RealCluster,
    node: &kubelet_api::ServedNode,
    connect: &dyn Fn() -> S,
) {
    let (a, k, ns) = (&node.a, &node.k, node.ns.clone());
    const LINES: usize = 100_000;
    let line99 = "x".repeat(99);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "logger", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", format!(
                    "yes {line99} | head -n {LINES}; trap 'exit 0' TERM; while true; do sleep 1; done")],
            }],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    scenarios::wait_ready(c, &ns, "logger");
    let want = LINES * 100;
    // Wait until the whole log is written (bounded).
    let t0 = Instant::now();
    loop {
        let out = k.cmd(&["logs", "logger"]).output().expect("kubectl logs");
        if out.stdout.len() >= want || t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut rows = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let mut child = k
            .cmd(&["logs", "logger"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl logs");
        let out = child.stdout.take().expect("stdout");
        let (first, bytes, all) = drain(out, t0);
        let _ = child.wait();
        rows.push(("kubectl logs POD (API server, tinylet)", first, bytes, all));

        let t0 = Instant::now();
        let mut s = connect();
        // Raw HTTP: the byte count includes the response head (~100 B).
        let req = format!(
            "GET /containerLogs/{ns}/logger/main HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("request");
        let (first, bytes, all) = drain(s, t0);
        rows.push(("GET /containerLogs straight to tinylet", first, bytes, all));
    }
    println!("\nlogs of a {want}-byte log ({LINES} lines), three reads each:");
    for (what, first, bytes, all) in &rows {
        println!(
            "  {what:<42} first byte {:>9}  {bytes} B in {:>9}  {}",
            ms(*first),
            ms(*all),
            mb_per_s(*bytes, *all)
        );
    }

    let Some(pid) = a.pid() else {
        return;
    };
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kib(pid);
    let mut followers: Vec<std::process::Child> = (0..10)
        .map(|_| {
            k.cmd(&["logs", "-f", "logger", "--tail", "1"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("kubectl logs -f")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let following = rss_kib(pid);
    for f in &mut followers {
        let _ = f.kill();
        let _ = f.wait();
    }
    println!(
        "\nagent RSS with the kubelet API on: idle {idle} KiB; with 10 `kubectl logs -f` \
         followers {following} KiB (+{} KiB)",
        following.saturating_sub(idle)
    );
    let _ = c.delete(&scenarios::pod_path(&ns, "logger"), None);
    c.wait_until(scenarios::LIMIT, &mut || {
        c.get_opt(&scenarios::pod_path(&ns, "logger")).is_none()
    });
}
