//! nftables mode at scale, in a fresh network namespace: first full sync at 1,000 and
//! 10,000 services × 2 endpoints, an endpoint change (compute + one partial batch), an
//! unchanged resync, and the process's memory, next to upstream kube-proxy's figures
//! (v1.32.13 nftables mode on this kind of machine, notes/anchors.md).
//!
//! An endpoint change is split four ways: "compute" (the desired state from the records the
//! manifest-directory daemon keeps; reading the directory is not counted), "diff+print"
//! (the syncer's diff and its print of what was programmed), "lower" (transactions to
//! netlink bytes) and "kernel" (sending the batch and reading the answer). It is measured
//! the way the daemon makes it, service by service, and by whole tables beside it. Two
//! two-message batches show the kernel's own cost at this size: one touching only a set's
//! elements, one re-adding a chain's rule (which makes the kernel validate the table).
//!
//! Run as root: `cargo bench --bench nft` (or `cargo test --bench nft` for a debug build).
//! The process moves itself into a new network namespace first, so the host's ruleset is
//! never touched. Prints figures; asserts nothing about time.
//!
//! The API source's change is measured too: the watch's EndpointSlice update folded into the
//! catalog the API-mode daemon keeps (no parsed objects), then the same piecewise sync; next
//! to it, what rebuilding a catalog from the parsed objects at every change cost.
//!
//! Memory is shown three ways: where the heap bytes of one sync go (counted by this bench's
//! own allocator), this bench process's VmRSS, and a real `tinylet proxy` daemon in
//! nftables mode over a manifest directory (in a network namespace of its own): VmRSS after
//! its first sync, VmRSS after a series of endpoint changes, and VmHWM; and the same for a
//! daemon watching the project's API test server (run last, in this bench's namespace). The
//! daemon is the binary cargo built with this bench (the
//! bench profile: release with symbols) or the one `TINYLET_NFT_BENCH_BIN` names.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;

use tinylet::k8s::discovery::EndpointSlice;
use tinylet::k8s::service::Service;
use tinylet::proxy::apisource::Change as WatchChange;
use tinylet::proxy::nft::catalog::{changed_services, Catalog, CatalogBuilder, LiveCatalog};
use tinylet::proxy::nft::diff::full;
use tinylet::proxy::nft::diff::{Change, Transaction};
use tinylet::proxy::nft::lower::{each_message, NetlinkKernel};
use tinylet::proxy::nft::model::{Family, Key, Stmt, Table};
use tinylet::proxy::nft::ruleset::{
    build_records, chain_names, service_delta, Config, ServiceDelta, MARK_FOR_MASQUERADE,
    MASQ_MARK, NODE_IPS, TABLE,
};
use tinylet::proxy::nft::sync::{Kernel, NftSyncer, Outcome};
use tinylet::proxy::source::{parse_manifest, Model, Object};

/// The system allocator, counting live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is passed on unchanged to the system allocator; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        shrank(l.size());
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                grew(new - l.size());
            } else {
                shrank(l.size() - new);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Peak live bytes from now on, relative to now.
fn peak_from_here() -> usize {
    let now = live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// kube-proxy v1.32.13 nftables mode (anchors.md): first full sync, endpoint change → kernel.
const UPSTREAM: &[(usize, &str, &str, &str)] = &[
    (1_000, "0.41–0.72 s", "0.14–0.32 s", "77–81 MiB"),
    (10_000, "57.2–76.0 s", "3.5–6.0 s", "219–227 MiB"),
];

fn objects(n: usize, variant: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let (hi, lo) = (i / 250, i % 250 + 1);
        let svc = format!(
            r#"{{"kind":"Service","metadata":{{"name":"s{i}","namespace":"bench"}},
            "spec":{{"clusterIP":"10.96.{hi}.{lo}","ports":[{{"name":"http","port":80,"targetPort":8080}}]}}}}"#
        );
        // Service 0's second endpoint differs between variants: one endpoint change.
        let second = if i == 0 && variant == 1 { 250 } else { 2 };
        let slice = format!(
            r#"{{"kind":"EndpointSlice","metadata":{{"name":"s{i}-1","namespace":"bench",
            "labels":{{"kubernetes.io/service-name":"s{i}"}}}},"addressType":"IPv4",
            "ports":[{{"name":"http","port":8080,"protocol":"TCP"}}],
            "endpoints":[{{"addresses":["10.{}.{hi}.{lo}"],"conditions":{{"ready":true}}}},
                         {{"addresses":["10.{}.{hi}.{lo}"],"conditions":{{"ready":true}}}}]}}"#,
            1, second
        );
        for text in [svc, slice] {
            match parse_manifest(&text, true) {
                Ok(objs) => {
                    for o in objs {
                        match o {
                            Object::Service(s) => services.push(s),
                            Object::EndpointSlice(e) => slices.push(e),
                        }
                    }
                }
                Err(e) => panic!("bench manifest {i}: {e}"),
            }
        }
    }
    (services, slices)
}

/// The records the manifest-directory daemon keeps for these objects.
fn catalog_of(s: &[Service], e: &[EndpointSlice]) -> Catalog {
    let mut b = CatalogBuilder::default();
    for x in s {
        b.add(&Object::Service(x.clone()));
    }
    for x in e {
        b.add(&Object::EndpointSlice(x.clone()));
    }
    b.finish()
}

fn rss_kib(field: &str) -> u64 {
    status_kib(std::process::id(), field)
}

/// Where the heap bytes of a full sync at `n` services go, counted by this process's
/// allocator: what the daemon holds between syncs (the objects as parsed, which the API
/// source keeps; the records the manifest-directory source keeps; the syncer's print of what
/// it programmed) and what one full sync builds and frees.
fn breakdown(n: usize, cfg: &Config) {
    let (s, e) = objects(n, 0);
    let at = live();
    let mut model = Model::default();
    for x in s {
        model.upsert(Object::Service(x));
    }
    for x in e {
        model.upsert(Object::EndpointSlice(x));
    }
    let held_model = live().saturating_sub(at);
    let at = live();
    let mut builder = CatalogBuilder::default();
    for x in model.service_refs() {
        builder.add(&Object::Service(x.clone()));
    }
    for x in model.slice_refs() {
        builder.add(&Object::EndpointSlice(x.clone()));
    }
    let catalog = builder.finish();
    let held_catalog = live().saturating_sub(at);
    drop(model);
    let at = live();
    let built = catalog_tables(&catalog, cfg);
    let desired = live().saturating_sub(at);
    let at = live();
    let mut b = tinylet::netlink::nftables::Batch::new(1);
    let mut id = 0;
    for t in &built {
        each_message(&full(t), &mut id, |m| {
            b.push(&m);
        });
    }
    let batch = b.finish();
    let batch_heap = live().saturating_sub(at);
    let batch_bytes = batch.bytes().len();
    drop((batch, built));
    let kernel = match NetlinkKernel::open() {
        Ok(k) => k,
        Err(e) => {
            println!("nft bench: {e}");
            return;
        }
    };
    let mut syncer = NftSyncer::new(kernel);
    let before = peak_from_here();
    let out = syncer.sync(catalog_tables(&catalog, cfg), false);
    let sync_peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let kept = live().saturating_sub(before);
    let per = |b: usize| b / n.max(1);
    println!(
        "{n:>7} | held: objects as parsed {} ({} B/service), as records {} ({} B/service), \
         syncer's print {} ({} B/service)",
        mib(held_model),
        per(held_model),
        mib(held_catalog),
        per(held_catalog),
        mib(kept),
        per(kept)
    );
    println!(
        "{:>7} | one full sync: desired tables {}, batch {} ({} bytes sent); \
         peak of the sync call {} ({out:?})",
        "",
        mib(desired),
        mib(batch_heap),
        batch_bytes,
        mib(sync_peak),
    );
    if let Err(e) = syncer.cleanup() {
        println!("nft bench: cleanup: {e}");
    }
}

/// What a sync of the manifest-directory daemon computes from its records.
fn catalog_tables(catalog: &Catalog, cfg: &Config) -> Vec<Table> {
    [Family::Ip, Family::Ip6]
        .into_iter()
        .map(|f| build_records(catalog.services(), catalog.slices(), cfg, f).table)
        .collect()
}

/// Endpoint changes the daemon is put through after its first sync.
const DAEMON_CHANGES: usize = 10;

/// What a `tinylet proxy` daemon showed: VmRSS after its first sync, VmRSS after
/// [`DAEMON_CHANGES`] endpoint changes, VmHWM at the end (KiB); the line it printed for its
/// first sync and for its last change.
struct DaemonFigures {
    rss_first: u64,
    rss_changed: u64,
    hwm: u64,
    first: String,
    last: String,
}

/// [`DaemonFigures`] of a daemon in nftables mode over a directory of `n` services × 2
/// endpoints, in a network namespace of its own.
fn daemon_rss(bin: &Path, n: usize) -> Result<DaemonFigures, String> {
    let dir = std::env::temp_dir().join(format!("tinylet-nft-bench-{}-{n}", std::process::id()));
    let result = daemon_rss_in(bin, n, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Service `i`'s manifest, its second endpoint at `10.{second}.x.y`.
fn daemon_manifest(i: usize, second: usize) -> String {
    let (hi, lo) = (i / 250, i % 250 + 1);
    format!(
        r#"{{"kind":"List","items":[
{{"kind":"Service","metadata":{{"name":"s{i}","namespace":"bench"}},
"spec":{{"clusterIP":"10.96.{hi}.{lo}","ports":[{{"name":"http","port":80,"targetPort":8080}}]}}}},
{{"kind":"EndpointSlice","metadata":{{"name":"s{i}-1","namespace":"bench",
"labels":{{"kubernetes.io/service-name":"s{i}"}}}},"addressType":"IPv4",
"ports":[{{"name":"http","port":8080,"protocol":"TCP"}}],
"endpoints":[{{"addresses":["10.1.{hi}.{lo}"],"conditions":{{"ready":true}}}},
{{"addresses":["10.{second}.{hi}.{lo}"],"conditions":{{"ready":true}}}}]}}]}}"#
    )
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

fn daemon_rss_in(bin: &Path, n: usize, dir: &Path) -> Result<DaemonFigures, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for i in 0..n {
        std::fs::write(dir.join(format!("s{i}.json")), daemon_manifest(i, 2))
            .map_err(|e| e.to_string())?;
    }
    // `unshare -n` execs the daemon in a new network namespace, which goes with it.
    let mut cmd = Command::new("unshare");
    cmd.arg("-n")
        .arg(bin)
        .args(["proxy", "--proxy-mode=nftables", "--hostname-override=n1"])
        .arg("--sync-period=1h")
        .arg("--proxy-manifest-path")
        .arg(dir);
    measure_daemon(cmd, bin, n, |second| {
        std::fs::write(dir.join("s0.json"), daemon_manifest(0, second)).map_err(|e| e.to_string())
    })
}

/// Start the daemon `cmd`, wait for its first sync, then make `DAEMON_CHANGES` endpoint
/// changes with `change(second)` (service 0's second endpoint moving back and forth, each
/// change one sync) and read its memory figures; the daemon is killed at the end.
fn measure_daemon(
    mut cmd: Command,
    bin: &Path,
    n: usize,
    mut change: impl FnMut(usize) -> Result<(), String>,
) -> Result<DaemonFigures, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let pid = child.id();
    let figures = (|| {
        let first = rx
            .recv_timeout(Duration::from_secs(300))
            .map_err(|_| "no sync within 300 s".to_string())?;
        // Let the first sync's frees settle before reading the figures.
        std::thread::sleep(Duration::from_millis(300));
        let rss_first = status_kib(pid, "VmRSS:");
        let mut last = String::new();
        for c in 0..DAEMON_CHANGES.min(n) {
            change(if c % 2 == 0 { 250 } else { 2 })?;
            last = rx
                .recv_timeout(Duration::from_secs(120))
                .map_err(|_| format!("no sync for change {c} within 120 s"))?;
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(DaemonFigures {
            rss_first,
            rss_changed: status_kib(pid, "VmRSS:"),
            hwm: status_kib(pid, "VmHWM:"),
            first,
            last,
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    figures
}

/// A Service and its EndpointSlice as the API takes them (service `i`, second endpoint at
/// `10.{second}.x.y`).
fn api_objects(i: usize, second: usize) -> (serde_json::Value, serde_json::Value) {
    let (hi, lo) = (i / 250, i % 250 + 1);
    let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s{i}"), "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.{hi}.{lo}"),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    let slice = serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{i}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": format!("s{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [format!("10.1.{hi}.{lo}")], "conditions": {"ready": true}},
                      {"addresses": [format!("10.{second}.{hi}.{lo}")], "conditions": {"ready": true}}]});
    (svc, slice)
}

/// [`DaemonFigures`] of a daemon in nftables mode watching the project's API test server
/// (in this process, this network namespace) holding `n` services × 2 endpoints; the
/// endpoint changes are updates of service 0's EndpointSlice through the API.
fn api_daemon(bin: &Path, n: usize) -> Result<DaemonFigures, String> {
    let dir = std::env::temp_dir().join(format!("tinylet-nft-bench-api-{}", std::process::id()));
    let result = api_daemon_in(bin, n, &dir);
    // Our table in this namespace goes too, whatever the daemon left.
    let _ = Command::new(bin)
        .args(["proxy", "--proxy-mode=nftables", "--cleanup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn api_daemon_in(bin: &Path, n: usize, dir: &Path) -> Result<DaemonFigures, String> {
    let lo = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    if !lo.is_ok_and(|s| s.success()) {
        return Err("cannot bring lo up".into());
    }
    let srv = apiserver::start(apiserver::Config::tls()).map_err(|e| e.to_string())?;
    for i in 0..n {
        let (svc, slice) = api_objects(i, 2);
        srv.create("/api/v1/namespaces/default/services", svc)
            .map_err(|e| format!("create s{i}: {e:?}"))?;
        srv.create(SLICES, slice)
            .map_err(|e| format!("create s{i}-1: {e:?}"))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let creds = srv.admin_cert().map_err(|e| format!("{e:?}"))?;
    let file = |name: &str, text: &str| -> Result<PathBuf, String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let (ca, cert, key) = (
        file("ca.crt", srv.ca_pem())?,
        file("admin.crt", &creds.cert_pem)?,
        file("admin.key", &creds.key_pem)?,
    );
    let kubeconfig = dir.join("kubeconfig");
    tinylet::api::write_cert_kubeconfig(&kubeconfig, &srv.url(), &ca, &cert, &key)
        .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.args(["proxy", "--proxy-mode=nftables", "--hostname-override=n1"])
        .arg("--sync-period=1h")
        .arg(format!("--kubeconfig={}", kubeconfig.display()));
    measure_daemon(cmd, bin, n, |second| {
        let (_, slice) = api_objects(0, second);
        srv.update(&format!("{SLICES}/s0-1"), slice)
            .map(|_| ())
            .map_err(|e| format!("update s0-1: {e:?}"))
    })
}

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

/// The API-mode daemon's figures, a line per size.
fn api_daemon_table(only: Option<usize>) {
    daemon_rows(
        "API source (the project's API test server), this bench's netns",
        only,
        &[(1_000, "77–81 MiB"), (10_000, "219–227 MiB")],
        api_daemon,
    );
}

/// A daemon's memory figures, a line per size (`only`, else `sizes`), measured by `measure`.
fn daemon_rows(
    source: &str,
    only: Option<usize>,
    sizes: &[(usize, &str)],
    measure: fn(&Path, usize) -> Result<DaemonFigures, String>,
) {
    let bin = daemon_bin();
    println!(
        "tinylet proxy daemon, nftables mode, {source} ({}):",
        bin.display()
    );
    println!(
        "{:>7} | {:>20} | {:>22} | {:>9} | kube-proxy nftables RSS",
        "N",
        "VmRSS after 1st sync",
        format!("after {DAEMON_CHANGES} ep changes"),
        "VmHWM"
    );
    let sizes: Vec<(usize, &str)> = match only {
        Some(n) => vec![(n, "")],
        None => sizes.to_vec(),
    };
    for (n, upstream) in sizes {
        let m = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        match measure(&bin, n) {
            Ok(d) => println!(
                "{n:>7} | {:>20} | {:>22} | {:>9} | {upstream}   [{}] [{}]",
                m(d.rss_first),
                m(d.rss_changed),
                m(d.hwm),
                d.first,
                d.last,
            ),
            Err(e) => println!("{n:>7} | daemon: {e}"),
        }
    }
}

fn daemon_bin() -> PathBuf {
    std::env::var_os("TINYLET_NFT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tinylet")))
}

fn daemon_table(only: Option<usize>) {
    daemon_rows(
        "manifest dir, own netns",
        only,
        &[(0, ""), (1_000, "77–81 MiB"), (10_000, "219–227 MiB")],
        daemon_rss,
    );
}

/// The netlink kernel with its two steps timed apart: lowering the transactions to one
/// batch of netlink bytes, and the kernel's part (sending the batch and reading its
/// answer).
struct Timed {
    inner: NetlinkKernel,
    lower: Duration,
    kernel: Duration,
}

impl Timed {
    fn new(inner: NetlinkKernel) -> Timed {
        Timed {
            inner,
            lower: Duration::ZERO,
            kernel: Duration::ZERO,
        }
    }

    /// Forget the times so far.
    fn reset(&mut self) {
        self.lower = Duration::ZERO;
        self.kernel = Duration::ZERO;
    }
}

impl Kernel for Timed {
    fn commit(&mut self, txs: &[Transaction]) -> Result<(), String> {
        let t = Instant::now();
        let mut b = self.inner.client().batch();
        let mut id = 0;
        for tx in txs {
            each_message(tx, &mut id, |m| {
                b.push(&m);
            });
        }
        let bytes = b.finish();
        self.lower += t.elapsed();
        let t = Instant::now();
        let out = self
            .inner
            .client()
            .commit(&bytes)
            .map_err(|e| e.to_string());
        self.kernel += t.elapsed();
        out
    }

    fn generation(&mut self) -> Result<Option<u32>, String> {
        self.inner.generation()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("nft bench: skipped (needs root for a network namespace)");
        return;
    }
    // Re-run this binary in a new network namespace (`unshare -n`): the host's ruleset
    // is never touched, and the namespace disappears with the process.
    if std::env::var_os("TINYLET_NFT_BENCH_NETNS").is_none() {
        let me = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                println!("nft bench: skipped (own path: {e})");
                return;
            }
        };
        let status = std::process::Command::new("unshare")
            .arg("-n")
            .arg(me)
            .args(std::env::args_os().skip(1))
            .env("TINYLET_NFT_BENCH_NETNS", "1")
            .status();
        if let Err(e) = status {
            println!("nft bench: skipped (unshare -n: {e})");
        }
        return;
    }
    let node: BTreeSet<IpAddr> = ["192.168.1.5".parse().unwrap()].into();
    let cfg = Config {
        node_name: "n1".into(),
        node_port_addresses: node.clone(),
        node_addresses: node,
        masquerade_all: false,
        cluster_cidrs: Vec::new(),
    };
    let only: Option<usize> = std::env::var("TINYLET_NFT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok());
    daemon_table(only);
    println!("where the heap goes (this process's allocator):");
    for n in only.map_or(vec![1_000, 10_000], |n| vec![n]) {
        breakdown(n, &cfg);
    }
    println!(
        "{:>7} | {:>31} | {:>52} | {:>14} | kube-proxy nftables: full sync, endpoint change, RSS",
        "N",
        "first full sync (compute+batch)",
        "endpoint change: compute / diff+print / lower / kernel",
        "resync"
    );
    // With one size chosen, one row, beside upstream's figures for that size when it has them.
    let rows: Vec<_> = match only {
        None => UPSTREAM.iter().collect(),
        Some(n) => vec![UPSTREAM
            .iter()
            .find(|(m, ..)| *m == n)
            .unwrap_or(&(0, "-", "-", "-"))],
    };
    for (n, up_full, up_change, up_rss) in rows {
        let n = &only.unwrap_or(*n);
        let (s0, e0) = objects(*n, 0);
        let (s1, e1) = objects(*n, 1);
        let (c0, c1) = (catalog_of(&s0, &e0), catalog_of(&s1, &e1));
        let kernel = match NetlinkKernel::open() {
            Ok(k) => k,
            Err(e) => {
                println!("nft bench: {e}");
                return;
            }
        };
        let mut syncer = NftSyncer::new(Timed::new(kernel));

        let t = Instant::now();
        let first = catalog_tables(&c0, &cfg);
        let compute = t.elapsed();
        let (rules, chains): (usize, usize) = first
            .iter()
            .map(|t| (t.rule_count(), t.chains.len()))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let t = Instant::now();
        let out = syncer.sync(first, false);
        let commit = t.elapsed();
        let Ok(Outcome::Full { messages }) = out else {
            println!("nft bench: full sync at {n}: {out:?}");
            return;
        };

        // One endpoint change by whole tables: build both, diff against the print (the
        // chains that may go named from the changed services' old pieces, as the daemon does).
        syncer.kernel().reset();
        let t = Instant::now();
        let changed = catalog_tables(&c1, &cfg);
        let gone = chain_names(&c0, &cfg, &changed_services(&c0, &c1));
        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
        let whole_compute = t.elapsed();
        let t = Instant::now();
        let out = syncer.sync_naming(changed, false, &gone);
        let whole = (
            whole_compute,
            t.elapsed(),
            syncer.kernel().lower,
            syncer.kernel().kernel,
        );
        let whole_msgs = match out {
            Ok(Outcome::Partial { messages }) => messages,
            other => {
                println!("nft bench: endpoint change at {n}: {other:?}");
                return;
            }
        };

        // What the API mode added to a change when it kept the parsed objects: its model
        // reduced to a whole new catalog.
        let t = Instant::now();
        let mut b = CatalogBuilder::default();
        s0.iter().for_each(|x| b.add_service(x));
        e0.iter().for_each(|x| b.add_slice(x));
        let from_model = b.finish();
        let api_catalog = t.elapsed();
        drop(from_model);

        // And back, service by service: what the daemon does for a change.
        syncer.kernel().reset();
        let t = Instant::now();
        let services = changed_services(&c1, &c0);
        let deltas: Option<Vec<ServiceDelta>> = [Family::Ip, Family::Ip6]
            .into_iter()
            .map(|f| service_delta((&c1, &cfg), (&c0, &cfg), &services, f))
            .collect();
        let piece_compute = t.elapsed();
        let Some(deltas) = deltas else {
            println!("nft bench: endpoint change at {n}: no service delta");
            return;
        };
        let t = Instant::now();
        let out = syncer.sync_services(&deltas);
        let piece = (
            piece_compute,
            t.elapsed(),
            syncer.kernel().lower,
            syncer.kernel().kernel,
        );
        let piece_msgs = match out {
            Ok(Some(Outcome::Partial { messages })) => messages,
            other => {
                println!("nft bench: piecewise endpoint change at {n}: {other:?}");
                return;
            }
        };

        // Nothing changed since: whole tables diffed against the print updated in place.
        let t = Instant::now();
        let resync = syncer.sync(catalog_tables(&c0, &cfg), true);
        let resync_time = t.elapsed();
        let resync_text = match resync {
            Ok(Outcome::Unchanged) => format!("0 msgs {}", ms(resync_time)),
            other => format!("{other:?}"),
        };
        let split = |(compute, batch, lower, kernel): (Duration, Duration, Duration, Duration),
                     msgs: usize| {
            format!(
                "{:>8} / {:>8} / {:>7} / {:>8} ({msgs} msgs)",
                ms(compute),
                ms(batch.saturating_sub(lower + kernel)),
                ms(lower),
                ms(kernel)
            )
        };
        // The API source's change, event by event: the watch's EndpointSlice update folded
        // into the catalog the daemon keeps (programmed as c0 now), its service's pieces
        // built and diffed, one batch.
        let mut live = LiveCatalog::default();
        live.apply(WatchChange::Services(s0.clone()));
        live.apply(WatchChange::Slices(e0.clone()));
        drop(live.take_changes());
        let event = WatchChange::Upsert(Object::EndpointSlice(e1[0].clone()));
        syncer.kernel().reset();
        let t = Instant::now();
        live.apply(event);
        let folded = t.elapsed();
        let changes = live.take_changes();
        let ids = changes.ids();
        let deltas: Option<Vec<ServiceDelta>> = [Family::Ip, Family::Ip6]
            .into_iter()
            .map(|f| service_delta((&changes.before, &cfg), (live.catalog(), &cfg), &ids, f))
            .collect();
        let api_compute = t.elapsed();
        let api_row = match deltas.map(|d| syncer.sync_services(&d)) {
            Some(Ok(Some(Outcome::Partial { messages }))) if live.catalog() == &c1 => split(
                (
                    api_compute,
                    t.elapsed() - api_compute,
                    syncer.kernel().lower,
                    syncer.kernel().kernel,
                ),
                messages,
            ),
            other => format!("(not the expected change: {other:?})"),
        };
        drop(ids);
        drop((changes, live));

        // The kernel's part alone, for two batches of two messages: an element of a plain
        // set added and deleted (no verdict: nothing for the kernel to validate), and the
        // masquerading chain's rules flushed and put back (rules: the kernel validates
        // every chain reachable from the table's base chains before it commits).
        let probe = |changes: Vec<Change>| Transaction {
            family: Family::Ip,
            table: TABLE.to_string(),
            changes,
        };
        let extra: IpAddr = "192.0.2.99".parse().unwrap();
        let element = [
            probe(vec![
                Change::AddElements(NODE_IPS.into(), vec![(Key::Addr(extra), None)]),
                Change::DelElements(NODE_IPS.into(), vec![Key::Addr(extra)]),
            ]),
            probe(vec![
                Change::FlushChain(MARK_FOR_MASQUERADE.into()),
                Change::AddRule(MARK_FOR_MASQUERADE.into(), vec![Stmt::MarkOr(MASQ_MARK)]),
            ]),
        ];
        let mut probes = Vec::new();
        for tx in &element {
            syncer.kernel().reset();
            let out = syncer.kernel().commit(std::slice::from_ref(tx));
            probes.push(match out {
                Ok(()) => ms(syncer.kernel().kernel),
                Err(e) => format!("({e})"),
            });
        }

        println!(
            "{n:>7} | {:>9} + {:>9} = {:>9} | service by service {} | {resync_text:>14} | {up_full}, {up_change}, {up_rss}",
            ms(compute),
            ms(commit),
            ms(compute + commit),
            split(piece, piece_msgs),
        );
        println!(
            "{:>7} | {:>31} |       whole tables {} |",
            "",
            "",
            split(whole, whole_msgs),
        );
        println!("{:>7} | {:>31} |     API, one event {api_row} |", "", "");
        println!(
            "{:>7}   {messages} messages in one batch: {chains} chains, {rules} rules, no anonymous sets",
            ""
        );
        println!(
            "{:>7}   API source per change: the event folded into the catalog {:.3} ms (of the \
             compute above); a catalog rebuilt from the parsed objects, as before, was {}",
            "",
            folded.as_secs_f64() * 1000.0,
            ms(api_catalog)
        );
        println!(
            "{:>7}   kernel alone, 2 messages: set element add+delete {}, one chain's rule re-added {}",
            "", probes[0], probes[1]
        );
        if let Err(e) = syncer.cleanup() {
            println!("nft bench: cleanup: {e}");
        }
    }
    println!(
        "memory of this process (objects, models and socket buffers): VmRSS {} KiB, VmHWM {} KiB \
         (kube-proxy: 77–81 MiB at 1,000, 219–227 MiB at 10,000)",
        rss_kib("VmRSS:"),
        rss_kib("VmHWM:")
    );
    // Last: the daemon programs this namespace's table, which the figures above used.
    api_daemon_table(only);
}
