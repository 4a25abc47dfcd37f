//! Links that come back: the node's Lease and the pod watch against the project's API test
//! server behind a relay that can cut the link hard (FIN both ways, connections refused) or
//! black-hole it (bytes swallowed, nothing ever closed), plus the server's fault injector for
//! resets and latency. Cadences and back-offs are scaled down by ten; every wait is bounded
//! and nothing here asserts how long anything took (benches/link.rs prints the figures).

#[path = "apiserver/mod.rs"]
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
    ListWatch, XorShift64,
};
use tinylet::config::AgentConfig;
use tinylet::k8s::pod::Pod;
use tinylet::node::bootstrap::BootstrapOptions;
use tinylet::node::heartbeat::Cadence;
use tinylet::node::host::HostInfo;
use tinylet::node::register::NodeSettings;
use tinylet::node::{self, Credentials, NodeHandle, NodeOptions};

/// The kubelet's cadence divided by ten: Lease of 4 s renewed every second, renewal retries
/// within 0.7 s (upstream's lease controller: within 7 s).
fn cadence() -> Cadence {
    Cadence {
        lease_duration: Duration::from_secs(4),
        renew_interval: Duration::from_secs(1),
        status_compute: Duration::from_secs(1),
        status_report: Duration::from_secs(30),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(700),
    }
}

/// client-go's reflector back-off divided by ten (0.08 s doubling to 3 s).
fn backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(80),
        cap: Duration::from_secs(3),
        reset_after: Duration::from_secs(12),
        ..BackoffConfig::default()
    }
}

fn host() -> HostInfo {
    HostInfo {
        hostname: "edge".into(),
        cpus: 4,
        memory_total: 4 << 30,
        memory_available: 3 << 30,
        disk_total: 32 << 30,
        disk_available: 20 << 30,
        pid_max: 32768,
        pids_running: 200,
        kernel_version: "6.6.0-test".into(),
        os_image: "Test Linux".into(),
        architecture: "arm64".into(),
        machine_id: "mid".into(),
        boot_id: "bid".into(),
    }
}

fn cluster(srv: &apiserver::ApiServer, server: String, node: &str) -> ClusterConfig {
    let creds = srv.node_cert(node).unwrap();
    ClusterConfig {
        server,
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(500),
        ping_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    }
}

fn start_node(cluster: ClusterConfig, name: &str, client: ClientConfig) -> NodeHandle {
    let cfg = AgentConfig {
        node_ips: vec!["192.0.2.10".parse().unwrap()],
        ..AgentConfig::default()
    };
    let opts = NodeOptions {
        settings: NodeSettings::from_config(&cfg, name, "containerd://1.6.20"),
        cadence: cadence(),
        backoff: backoff(),
        client,
        host: Box::new(host),
        seed: 11,
        bootstrap: BootstrapOptions::default(),
    };
    node::start_with(opts, Credentials::Ready(cluster)).unwrap()
}

/// Successful Lease writes the server saw, as times since it started.
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

fn max_gap(writes: &[Duration]) -> Duration {
    writes
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or_default()
}

/// The server's clock (time since it started): the time its log gives a request made now.
fn now_on(srv: &apiserver::ApiServer) -> Duration {
    srv.stats().now()
}

/// Upstream rule: a node whose Lease is not renewed within leaseDurationSeconds is marked
/// NotReady by the node lifecycle controller. So on a link that is up, however flaky, the gap
/// between two renewals must stay below the Lease duration, also right after a long outage
/// grew every back-off (where a renewal once waited on the 30 s cap and the gap reached
/// 42.6 s of a 40 s Lease).
#[test]
fn flaky_link_after_an_outage_never_lets_the_lease_lapse() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let relay = Relay::start(srv.addr()).unwrap();
    let mut h = start_node(
        cluster(&srv, relay.url(), "flaky"),
        "flaky",
        client_config(),
    );
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| !lease_writes(s, Duration::ZERO)
            .is_empty())
    );

    // A long hard outage: every back-off reaches its cap.
    relay.cut();
    std::thread::sleep(Duration::from_secs(8));
    // Back, but flaky: a quarter of the requests reset, half of them slowed by 80 ms
    // (800 ms at full scale).
    let resets = srv.faults().add(Fault::Reset, Trigger::Probability(0.25));
    let slow = srv.faults().add(
        Fault::Delay(Duration::from_millis(80)),
        Trigger::Probability(0.5),
    );
    relay.restore();
    let back = now_on(&srv);
    assert!(
        srv.wait_until(Duration::from_secs(10), |s| !lease_writes(s, back)
            .is_empty())
    );
    let first = lease_writes(&srv, back)[0];
    std::thread::sleep(Duration::from_secs(20));
    srv.faults().remove(resets);
    srv.faults().remove(slow);
    let writes = lease_writes(&srv, first);
    let gap = max_gap(&writes);
    println!(
        "{} renewals over the flaky 20 s, longest gap {} ms, {} faults injected",
        writes.len(),
        gap.as_millis(),
        srv.faults().injected()
    );
    assert!(srv.faults().injected() > 10, "the link was not flaky");
    assert!(
        gap < cadence().lease_duration,
        "the Lease went {gap:?} without renewal on a link that was up: {writes:?}"
    );
    h.stop();
}

/// One success on the link resets every client's back-off: the pod watch, whose own back-off
/// grew without bound during the outage (cap of an hour here, so it could only come back by
/// chance on its own), re-lists as soon as the Lease gets through, and sees the pod created
/// while the node was cut off.
#[test]
fn pod_created_during_an_outage_is_seen_once_the_lease_gets_through() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.ensure_namespace("default");
    let relay = Relay::start(srv.addr()).unwrap();
    let cl = cluster(&srv, relay.url(), "back");
    let mut h = start_node(cl.clone(), "back", client_config());
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());

    let (stop, rx, watcher) = spawn_pod_watch(&cl, "back");
    // The first (empty) list.
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());

    relay.cut();
    // Long enough for the watch's back-off to grow well past the bounded waits below.
    std::thread::sleep(Duration::from_secs(12));
    srv.create(
        "/api/v1/namespaces/default/pods",
        json!({
            "metadata": {"name": "made-offline", "namespace": "default"},
            "spec": {"nodeName": "back", "containers": [{"name": "c", "image": "busybox"}]}
        }),
    )
    .unwrap();
    let renewals = h.state().lease_renewals;
    relay.restore();

    // The Lease gets through on its short schedule, then the watch follows it.
    let seen = saw_pod(&rx, "made-offline", Duration::from_secs(8));
    assert!(
        wait_for(Duration::from_secs(5), || h.state().lease_renewals
            > renewals),
        "{:?}",
        h.state()
    );
    assert!(
        seen,
        "the pod made during the outage never reached the watch"
    );
    stop.store(true, Ordering::SeqCst);
    relay.cut();
    drop(rx);
    let _ = watcher.join();
    h.stop();
}

/// A connection that goes silent without a FIN or RST (a NAT that rebinds) is noticed by its
/// HTTP/2 PINGs, not by waiting for a request timeout: here requests may take up to 60 s, so
/// only the PINGs can bring the Lease back within the bounded wait. Upstream rule kept: the
/// Lease is renewed again well before its duration once new connections work.
#[test]
fn black_holed_connection_is_noticed_and_the_lease_renewed() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let relay = Relay::start(srv.addr()).unwrap();
    let config = ClientConfig {
        read_timeout: Duration::from_secs(60),
        ..client_config()
    };
    let mut h = start_node(cluster(&srv, relay.url(), "hole"), "hole", config);
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| lease_writes(s, Duration::ZERO)
            .len()
            >= 2)
    );

    relay.black_hole();
    let renewals = h.state().lease_renewals;
    // The open connection is dead for good; new ones work again after 3 s.
    std::thread::sleep(Duration::from_secs(3));
    relay.heal();
    let healed = now_on(&srv);
    assert!(
        srv.wait_until(Duration::from_secs(10), |s| !lease_writes(s, healed)
            .is_empty()),
        "no Lease renewal after the path healed: {:?}",
        h.state()
    );
    // The server logs a write before its answer reaches the node.
    assert!(
        wait_for(Duration::from_secs(5), || h.state().lease_renewals
            > renewals),
        "{:?}",
        h.state()
    );
    h.stop();
}

/// The node's pod watch as the agent runs it (its own client, the informer's back-off with a
/// long cap); each event's pod names arrive on the channel.
fn spawn_pod_watch(
    cl: &ClusterConfig,
    node: &str,
) -> (
    Arc<AtomicBool>,
    mpsc::Receiver<Vec<String>>,
    std::thread::JoinHandle<()>,
) {
    let client = Client::new(cl, client_config()).unwrap();
    let informer = Informer::with_rng(
        InformerConfig {
            backoff: BackoffConfig {
                initial: Duration::from_secs(1),
                ..BackoffConfig::default().with_cap(Duration::from_secs(3600))
            },
            ..InformerConfig::default()
        },
        |p: &Pod| &p.metadata,
        Box::new(XorShift64::new(5)),
    );
    let mut lw = ListWatch::new(
        client,
        "/api/v1/pods",
        ListParams::fields(&format!("spec.nodeName={node}")),
        informer,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let watcher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sleep = |d: Duration| {
                std::thread::sleep(d);
                !stop.load(Ordering::SeqCst)
            };
            while let Some(ev) = lw.next_event(&mut sleep) {
                let names = match ev {
                    InformerEvent::Resync(pods) => {
                        pods.iter().map(|p| p.metadata.name.clone()).collect()
                    }
                    InformerEvent::Applied(p) => vec![p.metadata.name.clone()],
                    InformerEvent::Deleted(_) => vec![],
                };
                if tx.send(names).is_err() {
                    return;
                }
            }
        })
    };
    (stop, rx, watcher)
}

fn saw_pod(rx: &mpsc::Receiver<Vec<String>>, name: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(names) = rx.recv_timeout(Duration::from_millis(100)) {
            if names.iter().any(|n| n == name) {
                return true;
            }
        }
    }
    false
}

/// A watch idles for minutes by design (its idle deadline is 180 s), so a connection that went
/// silent under it would hide new pods that long. The HTTP/2 PINGs of the node's client find the
/// link silently dead and break off every connection to that server, the watch's included:
/// the watch reconnects once the path heals and sees a pod made after the hole, well inside
/// its own idle deadline (client-go relies on the same PINGs for its watches over HTTP/2).
#[test]
fn black_holed_watch_is_broken_off_by_the_link_pings() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.ensure_namespace("default");
    let relay = Relay::start(srv.addr()).unwrap();
    let cl = cluster(&srv, relay.url(), "holew");
    let mut h = start_node(cl.clone(), "holew", client_config());
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());
    let (stop, rx, watcher) = spawn_pod_watch(&cl, "holew");
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
    // Let the watch settle into its long read.
    std::thread::sleep(Duration::from_secs(1));

    relay.black_hole();
    std::thread::sleep(Duration::from_secs(3));
    relay.heal();
    srv.create(
        "/api/v1/namespaces/default/pods",
        json!({
            "metadata": {"name": "made-after-hole", "namespace": "default"},
            "spec": {"nodeName": "holew", "containers": [{"name": "c", "image": "busybox"}]}
        }),
    )
    .unwrap();
    // Far below the watch's own 180 s idle deadline.
    assert!(
        saw_pod(&rx, "made-after-hole", Duration::from_secs(60)),
        "the watch never came back from the black-holed connection: {:?}",
        h.state()
    );
    stop.store(true, Ordering::SeqCst);
    relay.cut();
    drop(rx);
    let _ = watcher.join();
    h.stop();
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The relay itself: a black-holed connection neither answers nor closes.
#[test]
fn relay_black_hole_keeps_connections_open_and_silent() {
    use std::io::{Read, Write};
    let srv = apiserver::start(apiserver::Config::plain()).unwrap();
    let relay = Relay::start(srv.addr()).unwrap();
    let mut c = std::net::TcpStream::connect(relay.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
    c.write_all(req).unwrap();
    let mut buf = [0u8; 12];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    relay.black_hole();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut rest = vec![0u8; 1 << 16];
    // Drain what was already on its way, then nothing more comes and nothing closes.
    while matches!(c.read(&mut rest), Ok(n) if n > 0) {}
    c.write_all(req).unwrap();
    let e = c.read(&mut rest).unwrap_err();
    assert!(matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    assert!(relay.open_connections() >= 1);
}
