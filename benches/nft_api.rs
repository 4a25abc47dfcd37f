//! `tinylet proxy --proxy-mode=nftables --kubeconfig` against a real kube-apiserver, measured
//! the way upstream kube-proxy's nftables mode was (docs: the kube-proxy anchors). `cargo bench
//! --bench nft_api` as root, with TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD set
//! (`eval "$(tests/envtest/assets.sh)"`); prints figures, asserts nothing about time.
//!
//! For each N (NFT_API_N, comma-separated, default `1000,10000`), on a fresh control plane:
//! N Services (ClusterIP, one TCP port) each with an EndpointSlice of 2 ready IPv4 endpoints
//! are created through the API as admin; then the daemon starts in a network namespace of its
//! own, and the bench reports
//! - start → all N services in the kernel: `nft list map ip kube-proxy service-ips` in the
//!   namespace, polled, until all N service addresses are there;
//! - VmRSS once settled, and where it is (`/proc/PID/smaps`: the main heap, anonymous
//!   mappings such as other malloc arenas and large allocations, stacks, mapped files);
//! - one endpoint added → in the kernel: the time just before the PATCH that adds a third
//!   endpoint to one EndpointSlice, to the line of `nft monitor` (in the namespace) naming the
//!   new address; 5 services, min–max and median.
//!
//! The API server listens on the host's loopback only; the daemon reaches it through a relay
//! this bench listens with on 127.0.0.1 inside the namespace. The control plane's service
//! range (a /24) cannot hold 10,000 ClusterIPs, so kube-apiserver is started through a wrapper
//! that widens it to 10.0.0.0/16 (its last flag wins). Everything made here (namespace,
//! processes, temp dir, control plane) goes at the end, pass or fail.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "../tests/envtest/cluster.rs"]
mod cluster;
#[path = "../tests/envtest/real.rs"]
mod real;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use apiserver::client::TestClient;
use cluster::Cluster;
use real::{Assets, RealCluster};

/// The namespace the objects live in.
const NS: &str = "nft-bench";
/// Parallel API clients creating the objects.
const CREATORS: usize = 8;
/// Endpoint additions timed per N.
const ADDS: usize = 5;
/// How long the daemon may take to put all services in the kernel.
const START_LIMIT: Duration = Duration::from_secs(600);
/// How long one endpoint addition may take to reach the kernel.
const ADD_LIMIT: Duration = Duration::from_secs(120);
/// How long one `nft list` may take.
const LIST_LIMIT: Duration = Duration::from_secs(60);

extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
}
/// CLONE_NEWNET.
const NEWNET: i32 = 0x4000_0000;

type Res<T> = Result<T, String>;

/// Service `i`'s ClusterIP, and its endpoints' addresses `10.{k}.x.y`.
fn service_ip(i: usize) -> String {
    format!("10.0.{}.{}", 1 + i / 250, i % 250 + 1)
}

fn endpoint_ip(k: usize, i: usize) -> String {
    format!("10.{k}.{}.{}", i / 250, i % 250 + 1)
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s{i}"), "namespace": NS},
        "spec": {"type": "ClusterIP", "clusterIP": service_ip(i),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
    })
}

fn endpoints(i: usize, ks: &[usize]) -> Value {
    let eps: Vec<Value> = ks
        .iter()
        .map(|&k| json!({"addresses": [endpoint_ip(k, i)], "conditions": {"ready": true}}))
        .collect();
    json!(eps)
}

fn slice(i: usize) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{i}-1"), "namespace": NS,
                     "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints(i, &[1, 2]),
    })
}

/// Kills and reaps a child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A named network namespace (`ip netns`), deleted on drop.
struct Netns(String);

impl Netns {
    fn add(name: &str) -> Res<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        // A node address, as a node would have (on lo: no link type needs a module).
        ip(&["-n", name, "addr", "add", "192.0.2.10/32", "dev", "lo"])?;
        Ok(ns)
    }

    fn file(&self) -> Res<std::fs::File> {
        let p = format!("/run/netns/{}", self.0);
        std::fs::File::open(&p).map_err(|e| format!("{p}: {e}"))
    }

    /// `ip netns exec NAME args…`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) -> Res<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` and returns its stdout, or None when it fails or takes longer than `limit`.
fn bounded_output(mut cmd: Command, limit: Duration) -> Option<String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut child = Reaped(child);
    let mut out = child.0.stdout.take()?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let s = rx.recv_timeout(limit).ok()?;
    let ok = child.0.wait().map(|st| st.success()).unwrap_or(false);
    ok.then_some(s)
}

/// How many of our services (port 80) are in the `service-ips` map in the namespace.
fn services_in_kernel(ns: &Netns) -> usize {
    let cmd = ns.cmd(&["nft", "list", "map", "ip", "kube-proxy", "service-ips"]);
    bounded_output(cmd, LIST_LIMIT)
        .map(|s| s.matches(" . 80 : ").count())
        .unwrap_or(0)
}

/// A listener on 127.0.0.1 inside `ns` whose connections are relayed to `to` on the host's
/// loopback. Returns its port.
fn relay(ns: &Netns, to: SocketAddr) -> Res<u16> {
    let f = ns.file()?;
    // Only this short-lived thread enters the namespace; the listener stays in it.
    let listener = std::thread::spawn(move || -> Res<TcpListener> {
        // SAFETY: setns(2) on a valid fd, for the calling thread only.
        if unsafe { setns(f.as_raw_fd(), NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind in the namespace: {e}"))
    })
    .join()
    .map_err(|_| "relay thread failed".to_string())??;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { break };
            let Ok(outbound) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
                continue;
            };
            let pipe = |mut a: TcpStream, mut b: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(Shutdown::Write);
                    let _ = a.shutdown(Shutdown::Read);
                });
            };
            if let (Ok(i2), Ok(o2)) = (inbound.try_clone(), outbound.try_clone()) {
                pipe(inbound, o2);
                pipe(outbound, i2);
            }
        }
    });
    Ok(port)
}

/// A kube-apiserver wrapper that widens the service range (kube-apiserver keeps a flag's last
/// value).
fn wrapped_assets(assets: &Assets, dir: &Path) -> Res<Assets> {
    let path = dir.join("kube-apiserver");
    let real = assets.kube_apiserver.display().to_string();
    if real.contains('\'') {
        return Err(format!("kube-apiserver path with a quote: {real}"));
    }
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec '{real}' \"$@\" --service-cluster-ip-range=10.0.0.0/16\n"),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    Ok(Assets {
        kube_apiserver: path,
        etcd: assets.etcd.clone(),
    })
}

fn api_addr(c: &RealCluster) -> Res<SocketAddr> {
    let url = c.url();
    url.trim_start_matches("https://")
        .parse()
        .map_err(|e| format!("API address {url}: {e}"))
}

/// Creates the N services and their slices, `CREATORS` requests at a time.
fn create_objects(c: &RealCluster, n: usize) -> Res<Duration> {
    let addr = api_addr(c)?;
    c.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .map_err(|e| format!("namespace: {e}"))?;
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let ca = c.ca_pem();
    let creds = c.admin_credentials().clone();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..CREATORS)
            .map(|_| {
                s.spawn(|| -> Res<()> {
                    let mut cl = TestClient::tls(addr, &ca, Some(&creds))
                        .map_err(|e| format!("API client: {e}"))?
                        .with_timeout(Duration::from_secs(30));
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        for (path, obj) in [
                            (format!("/api/v1/namespaces/{NS}/services"), service(i)),
                            (
                                format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
                                slice(i),
                            ),
                        ] {
                            let mut tries = 0;
                            loop {
                                tries += 1;
                                match cl.post(&path, &obj) {
                                    Ok((code, _)) if code < 300 || code == 409 => break,
                                    Ok((code, v)) if tries >= 3 => {
                                        return Err(format!("POST {path} s{i}: {code} {v}"))
                                    }
                                    Err(e) if tries >= 3 => {
                                        return Err(format!("POST {path} s{i}: {e}"))
                                    }
                                    _ => std::thread::sleep(Duration::from_millis(200)),
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("creator panicked".into())))
            .collect::<Res<Vec<()>>>()
    })?;
    Ok(t0.elapsed())
}

fn write_kubeconfig(c: &RealCluster, dir: &Path, port: u16) -> Res<PathBuf> {
    let admin = c.admin_credentials();
    let path = dir.join("proxy.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin\nclusters:\n- name: bench\n  \
         cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
         contexts:\n- name: admin\n  context: {{cluster: bench, user: admin}}\nusers:\n\
         - name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\n",
        c.ca_cert_path().display(),
        admin.cert_path.display(),
        admin.key_path.display()
    );
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The daemon, in the namespace, dying with this process.
fn start_daemon(bin: &Path, ns: &Netns, kubeconfig: &Path, log: &Path) -> Res<Reaped> {
    let f = ns.file()?;
    let fd = f.as_raw_fd();
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "proxy",
        "--proxy-mode=nftables",
        "--hostname-override=bench-node",
    ])
    .arg(format!("--kubeconfig={}", kubeconfig.display()))
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err);
    // SAFETY: only setns(2) and prctl(2), both async-signal-safe, run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if setns(fd, NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    drop(f);
    Ok(Reaped(child))
}

fn status_kib(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `nft monitor` in the namespace; its lines with the time each was read.
fn monitor(ns: &Netns) -> Res<(Reaped, Receiver<(Instant, String)>)> {
    let mut child = ns
        .cmd(&["stdbuf", "-oL", "nft", "monitor"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nft monitor: {e}"))?;
    let out = child.stdout.take().ok_or("nft monitor: no stdout")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok((Reaped(child), rx))
}

/// Returns once `nft monitor` reports changes: it reads the whole ruleset before it listens,
/// which takes seconds with many services. A probe table is added and removed until it shows.
fn wait_monitoring(ns: &Netns, lines: &Receiver<(Instant, String)>) -> Res<()> {
    let t0 = Instant::now();
    while t0.elapsed() < ADD_LIMIT {
        for args in [
            ["nft", "add", "table", "inet", "nft-api-probe"],
            ["nft", "delete", "table", "inet", "nft-api-probe"],
        ] {
            let _ = bounded_output(ns.cmd(&args), LIST_LIMIT);
        }
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok((_, line)) =
            lines.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if line.contains("nft-api-probe") {
                // Let the probe's other lines pass.
                std::thread::sleep(Duration::from_millis(200));
                while lines.try_recv().is_ok() {}
                return Ok(());
            }
        }
    }
    Err(format!("nft monitor silent for {}", secs(ADD_LIMIT)))
}

/// Whether `line` names `addr` (not a longer address it is a prefix of).
fn names(line: &str, addr: &str) -> bool {
    line.match_indices(addr).any(|(at, _)| {
        !line[at + addr.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Figures {
    create: Duration,
    start: Duration,
    polls: usize,
    rss_kib: u64,
    hwm_kib: u64,
    /// Where the settled RSS is, as [`rss_by_mapping`] tells it.
    rss_where: String,
    adds: Vec<Duration>,
}

/// The process's resident memory by kind of mapping (`/proc/PID/smaps`): the main heap,
/// anonymous mappings (other threads' malloc arenas, large allocations), stacks, files.
fn rss_by_mapping(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut heap, mut anon, mut stack, mut files) = (0u64, Vec::new(), 0u64, 0u64);
    let (mut name, mut size) = (String::new(), 0u64);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            name = words.nth(4).unwrap_or("").to_string();
        } else if first == "Size:" {
            size = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match name.as_str() {
                "[heap]" => heap += kib,
                "" => anon.push((kib, size)),
                n if n.starts_with("[stack") => stack += kib,
                n if n.starts_with('[') => {}
                _ => files += kib,
            }
        }
    }
    anon.sort_unstable_by(|a, b| b.cmp(a));
    let big: Vec<String> = anon
        .iter()
        .take_while(|(k, _)| *k >= 1024)
        .map(|(k, size)| format!("{:.1} of {:.1}", *k as f64 / 1024.0, *size as f64 / 1024.0))
        .collect();
    format!(
        "heap {:.1}, anonymous {:.1} ({} mappings; ≥ 1 MiB: {}), stack {:.1}, files {:.1} MiB",
        heap as f64 / 1024.0,
        anon.iter().map(|(k, _)| k).sum::<u64>() as f64 / 1024.0,
        anon.len(),
        if big.is_empty() {
            "none".into()
        } else {
            big.join(", ")
        },
        stack as f64 / 1024.0,
        files as f64 / 1024.0
    )
}

fn run(assets: &Assets, bin: &Path, n: usize) -> Res<Figures> {
    let dir = TempDir(
        std::env::temp_dir().join(format!("tinylet-nft-api-bench-{}-{n}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let wrapped = wrapped_assets(assets, &dir.0)?;
    let c = RealCluster::start(&wrapped).map_err(|e| format!("control plane: {e}"))?;
    let result = measure(&c, bin, n, &dir.0);
    if result.is_err() {
        eprintln!("{}", c.diagnostics());
    }
    result
}

fn measure(c: &RealCluster, bin: &Path, n: usize, dir: &Path) -> Res<Figures> {
    let create = create_objects(c, n)?;
    let ns = Netns::add(&format!("tnb{}", std::process::id()))?;
    let port = relay(&ns, api_addr(c)?)?;
    let kubeconfig = write_kubeconfig(c, dir, port)?;
    let log = dir.join("proxy.log");

    let t0 = Instant::now();
    let daemon = start_daemon(bin, &ns, &kubeconfig, &log)?;
    let pid = daemon.0.id();
    let step = if n > 2_000 {
        Duration::from_millis(250)
    } else {
        Duration::from_millis(50)
    };
    let mut polls = 0;
    let start = loop {
        polls += 1;
        let seen = services_in_kernel(&ns);
        if seen >= n {
            break t0.elapsed();
        }
        if t0.elapsed() > START_LIMIT {
            return Err(format!(
                "{seen} of {n} services in the kernel after {}; daemon log:\n{}",
                secs(START_LIMIT),
                real::tail(&log, 20)
            ));
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("daemon exited; log:\n{}", real::tail(&log, 20)));
        }
        std::thread::sleep(step);
    };

    // Settled: VmRSS no longer moving by more than 1 % over 2 s (at most 30 s).
    let mut rss_kib = status_kib(pid, "VmRSS:");
    let settle = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = status_kib(pid, "VmRSS:");
        let stable = now.abs_diff(rss_kib) * 100 <= rss_kib;
        rss_kib = now;
        if stable || settle.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let hwm_kib = status_kib(pid, "VmHWM:");
    let rss_where = rss_by_mapping(pid);

    let (_mon, lines) = monitor(&ns)?;
    wait_monitoring(&ns, &lines)?;
    let mut adds = Vec::new();
    for r in 0..ADDS.min(n) {
        let i = (r * n) / ADDS.min(n) + r;
        let i = i.min(n - 1);
        let addr = endpoint_ip(3, i);
        while lines.try_recv().is_ok() {}
        let path = format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices/s{i}-1");
        let patch = json!({"endpoints": endpoints(i, &[1, 2, 3])});
        let t = Instant::now();
        c.call("PATCH", &path, "application/merge-patch+json", Some(&patch))
            .map_err(|e| format!("PATCH s{i}-1: {e}"))?;
        let seen = loop {
            let left = ADD_LIMIT.saturating_sub(t.elapsed());
            match lines.recv_timeout(left) {
                Ok((at, line)) if names(&line, &addr) => break at,
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "endpoint {addr} of s{i} not seen by nft monitor within {}; log:\n{}",
                        secs(ADD_LIMIT),
                        real::tail(&log, 20)
                    ))
                }
            }
        };
        adds.push(seen.saturating_duration_since(t));
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(daemon);
    Ok(Figures {
        create,
        start,
        polls,
        rss_kib,
        hwm_kib,
        rss_where,
        adds,
    })
}

fn main() {
    let Some(assets) = Assets::from_env() else {
        println!(
            "nft_api bench SKIPPED: {} (`eval \"$(tests/envtest/assets.sh)\"` unpacks them and prints the exports)",
            real::HOW_TO_ENABLE
        );
        return;
    };
    if !nix::unistd::Uid::effective().is_root() {
        println!("nft_api bench SKIPPED: it needs root (network namespaces, nftables)");
        return;
    }
    let sizes: Vec<usize> = std::env::var("NFT_API_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .filter(|&n| n > 0 && n <= 60_000)
        .collect();
    let bin = std::env::var_os("TINYLET_NFT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tinylet")));
    println!(
        "tinylet proxy --proxy-mode=nftables --kubeconfig, real kube-apiserver, own netns ({})",
        bin.display()
    );
    println!("N services × 1 TCP port, each with an EndpointSlice of 2 ready endpoints");
    for n in sizes {
        println!("\nN = {n} (load average before: {})", loadavg());
        let upstream = |k1: &'static str, k10: &'static str| match n {
            1_000 => k1,
            10_000 => k10,
            _ => "-",
        };
        match run(&assets, &bin, n) {
            Ok(f) => {
                let mut adds = f.adds.clone();
                adds.sort();
                let add = match (adds.first(), adds.last()) {
                    (Some(lo), Some(hi)) => format!(
                        "{}–{} (median {}, n={})",
                        secs(*lo),
                        secs(*hi),
                        secs(adds[adds.len() / 2]),
                        adds.len()
                    ),
                    _ => "-".into(),
                };
                let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
                println!("  (objects created through the API in {})", secs(f.create));
                println!("  {:<44} {:>34} | kube-proxy nftables", "", "tinylet");
                println!(
                    "  {:<44} {:>34} | {}",
                    "start → all N services in the kernel",
                    format!("{} ({} polls)", secs(f.start), f.polls),
                    upstream("1.26–1.48 s", "58.2–77.2 s")
                );
                println!(
                    "  {:<44} {:>34} | {}",
                    "RSS settled",
                    format!("{} (VmHWM {})", mib(f.rss_kib), mib(f.hwm_kib)),
                    upstream("77–81 MiB", "219–227 MiB")
                );
                println!("  {:<44} {}", "  of which", f.rss_where);
                println!(
                    "  {:<44} {:>34} | {}",
                    "one endpoint added → in the kernel",
                    add,
                    upstream("0.14–0.32 s", "3.5–6.0 s")
                );
            }
            Err(e) => println!("  N = {n}: FAILED: {e}"),
        }
        println!("  load average after: {}", loadavg());
    }
}
