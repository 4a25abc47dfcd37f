//! Links that come back: one node (the production node thread, kubelet cadence, client-go
//! back-off) and its pod watch against the API test server behind a relay, through a hard
//! outage followed by a flaky link, then a black-holed connection. Prints, each beside the
//! figure measured before the shared link-health signal, the short Lease retries and the
//! HTTP/2 PINGs:
//! - the pod created during the outage reaching the node's watch after the link returns
//!   (before: the pod started 53 s after; the runtime's own start, see benches/podstart.rs,
//!   comes on top of the figure printed here);
//! - the first Lease renewal after the link returns (before: 20 s);
//! - the longest gap between Lease renewals on the flaky link (before: 42.6 s, target ≤ 15 s,
//!   Lease duration 40 s);
//! - how long a black-holed connection (no FIN, no RST) goes unnoticed, and the Lease renewal
//!   after the path heals (targets ≤ 30 s and ≤ 10 s).
//!
//! Run: `cargo bench --bench link`. Environment (all optional): TINYLET_LINK_OUTAGE_SECS (180),
//! TINYLET_LINK_FLAKY_SECS (120), TINYLET_LINK_HOLE_SECS (60). Prints figures; asserts nothing.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use apiserver::relay::Relay;
use apiserver::{Fault, Trigger};
use tinylet::api::backoff::BackoffConfig;
use tinylet::api::{
    Auth, Client, ClientConfig, ClusterConfig, Informer, InformerConfig, InformerEvent, ListParams,
    ListWatch,
};
use tinylet::config::AgentConfig;
use tinylet::k8s::pod::Pod;
use tinylet::node::bootstrap::BootstrapOptions;
use tinylet::node::heartbeat::Cadence;
use tinylet::node::host::HostInfo;
use tinylet::node::register::NodeSettings;
use tinylet::node::{self, Credentials, NodeOptions};

const NODE: &str = "edge-link";

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn host() -> HostInfo {
    HostInfo {
        hostname: NODE.into(),
        cpus: 4,
        memory_total: 4 << 30,
        memory_available: 3 << 30,
        disk_total: 32 << 30,
        disk_available: 20 << 30,
        pid_max: 32768,
        pids_running: 200,
        kernel_version: "6.6.0".into(),
        os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        architecture: "arm64".into(),
        machine_id: "m".into(),
        boot_id: "b".into(),
    }
}

/// Successful Lease writes the server saw since `since` (time since server start).
fn lease_writes(srv: &apiserver::ApiServer, since: Duration) -> Vec<Duration> {
    let mut at: Vec<Duration> = srv
        .stats()
        .log()
        .into_iter()
        .filter(|r| {
            r.resource.starts_with("leases")
                && matches!(r.verb.as_str(), "patch" | "update" | "create")
                && (200..300).contains(&r.code)
                && r.at >= since
        })
        .map(|r| r.at)
        .collect();
    at.sort();
    at
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() {
    let outage = Duration::from_secs(env_secs("TINYLET_LINK_OUTAGE_SECS", 180));
    let flaky = Duration::from_secs(env_secs("TINYLET_LINK_FLAKY_SECS", 120));
    let hole = Duration::from_secs(env_secs("TINYLET_LINK_HOLE_SECS", 60));
    let mut cfg = apiserver::Config::tls();
    cfg.bookmark_interval = Duration::from_secs(60);
    let srv = apiserver::start(cfg).expect("API test server");
    // Instants in the server's log clock (time since it started).
    let (t_now, d_now) = (Instant::now(), srv.stats().now());
    let rel = move |t: Instant| d_now + t.saturating_duration_since(t_now);
    srv.ensure_namespace("default");
    let relay = Relay::start(srv.addr()).expect("relay");
    let creds = srv.node_cert(NODE).expect("node certificate");
    let cluster = ClusterConfig {
        server: relay.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    };
    let agent = AgentConfig {
        node_ips: vec!["192.0.2.10".parse().expect("address")],
        ..AgentConfig::default()
    };
    let opts = NodeOptions {
        settings: NodeSettings::from_config(&agent, NODE, "containerd://1.6.20"),
        cadence: Cadence::default(),
        backoff: BackoffConfig::default(),
        client: ClientConfig::default(),
        host: Box::new(host),
        seed: 0x11d,
        bootstrap: BootstrapOptions::default(),
    };
    let mut h = node::start_with(opts, Credentials::Ready(cluster.clone())).expect("node");
    h.wait_registered(Duration::from_secs(30))
        .expect("node registered");

    // The pod watch, as the agent runs it: its own client, same server, production back-off.
    let client = Client::new(&cluster, ClientConfig::default()).expect("client");
    let informer = Informer::new(InformerConfig::default(), |p: &Pod| &p.metadata);
    let params = ListParams::fields(&format!("spec.nodeName={NODE}"));
    let mut lw = ListWatch::new(client, "/api/v1/pods", params, informer);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(Instant, Vec<String>)>();
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sleep = |d: Duration| {
                std::thread::sleep(d);
                !stop.load(Ordering::SeqCst)
            };
            while let Some(ev) = lw.next_event(&mut sleep) {
                let names = match ev {
                    InformerEvent::Resync(p) => p.iter().map(|p| p.metadata.name.clone()).collect(),
                    InformerEvent::Applied(p) => vec![p.metadata.name.clone()],
                    InformerEvent::Deleted(_) => vec![],
                };
                if tx.send((Instant::now(), names)).is_err() {
                    return;
                }
            }
        })
    };
    let wait_pod = |name: &str, limit: Duration| -> Option<Instant> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok((at, names)) = rx.recv_timeout(Duration::from_millis(100)) {
                if names.iter().any(|n| n == name) {
                    return Some(at);
                }
            }
        }
        None
    };
    let create_pod = |name: &str| {
        srv.create(
            "/api/v1/namespaces/default/pods",
            json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}
            }),
        )
        .expect("pod created");
    };
    wait_pod("", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(20));

    // 1. Hard outage, a pod created meanwhile, then the link back but flaky.
    println!(
        "outage of {} s (connections cut and refused)",
        outage.as_secs()
    );
    relay.cut();
    let cut_at = Instant::now();
    std::thread::sleep(outage / 2);
    create_pod("made-offline");
    std::thread::sleep(outage.saturating_sub(cut_at.elapsed()));
    let faults = [
        srv.faults().add(Fault::Reset, Trigger::Probability(0.15)),
        srv.faults().add(
            Fault::Delay(Duration::from_millis(200)),
            Trigger::Probability(0.5),
        ),
        srv.faults().add(
            Fault::Delay(Duration::from_millis(300)),
            Trigger::Probability(0.5),
        ),
        srv.faults().add(
            Fault::Delay(Duration::from_millis(300)),
            Trigger::Probability(0.3),
        ),
    ];
    relay.restore();
    let back = Instant::now();
    let pod_seen = wait_pod("made-offline", Duration::from_secs(120));
    let first_lease = {
        let end = back + Duration::from_secs(120);
        loop {
            if let Some(t) = lease_writes(&srv, rel(back)).first() {
                break Some(*t);
            }
            if Instant::now() > end {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(flaky.saturating_sub(back.elapsed()));
    for f in faults {
        srv.faults().remove(f);
    }
    let writes = lease_writes(&srv, rel(back));
    let mut gaps: Vec<Duration> = writes.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let max_gap = gaps.last().copied().unwrap_or_default();
    let injected = srv.faults().injected();

    // 2. A black hole: the open connections go silent for good, new ones too for a while.
    std::thread::sleep(Duration::from_secs(15));
    let failures_before = h.state().failures;
    relay.black_hole();
    let hole_at = Instant::now();
    let mut noticed = None;
    while hole_at.elapsed() < hole {
        if noticed.is_none() && h.state().failures > failures_before {
            noticed = Some(hole_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.heal();
    let healed = Instant::now();
    let mut renewed_after_heal = None;
    while healed.elapsed() < Duration::from_secs(60) {
        if let Some(t) = lease_writes(&srv, rel(healed)).first() {
            renewed_after_heal = Some(t.saturating_sub(rel(healed)));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    create_pod("made-after-hole");
    let hole_pod = wait_pod("made-after-hole", Duration::from_secs(240));

    println!("\nfigure                                         now        before");
    let show = |what: &str, v: Option<Duration>, before: &str| {
        let v = v.map(secs).unwrap_or_else(|| "not seen".into());
        println!("{what:<46} {v:<10} {before}");
    };
    show(
        "pod made in the outage reaches the node",
        pod_seen.map(|t| t - back),
        "53 s (pod started)",
    );
    show(
        "first Lease renewal after the link returns",
        first_lease.map(|t| t.saturating_sub(rel(back))),
        "20 s",
    );
    show(
        "longest Lease gap on the flaky link",
        Some(max_gap),
        "42.6 s (target <= 15 s, lease 40 s)",
    );
    show(
        "black-holed connection noticed",
        noticed,
        "n/a (target <= 30 s)",
    );
    show(
        "Lease renewed after the path heals",
        renewed_after_heal,
        "n/a (target <= 10 s)",
    );
    show(
        "pod made after the hole reaches the watch",
        hole_pod.map(|t| t - healed),
        "137 s (watch waited out its 180 s idle deadline)",
    );
    println!(
        "\nflaky period: {} Lease writes over {} s, {injected} faults injected, gap p50 {} p99 {}",
        writes.len(),
        flaky.as_secs(),
        gaps.get(gaps.len() / 2)
            .copied()
            .map(secs)
            .unwrap_or_default(),
        gaps.get(gaps.len() * 99 / 100)
            .copied()
            .map(secs)
            .unwrap_or_default(),
    );
    stop.store(true, Ordering::SeqCst);
    relay.cut();
    drop(rx);
    let _ = watcher.join();
    h.stop();
}
