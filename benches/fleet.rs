//! Fleet reconnect: many node instances against the API test server, which goes down for a
//! while and comes back. Prints the request-rate profile per 5 s (steady, during, after), the
//! peak rate after recovery against the steady rate (target ≤ 2×) and the time until every
//! node has renewed its Lease and re-reported its status (target ≤ 60 s).
//!
//! Each instance is the production node thread (`node::start_with`: Lease PUT every 10 s,
//! status computed every 10 s and reported on change or every 5 min, jittered back-off while
//! the server is away), one thread per node with its own HTTPS connection, bearer token and
//! link-health signal: the closest in-process stand-in for separate devices. Host facts are fixed so that no node
//! reports a change of its own.
//!
//! Run: `cargo bench --bench fleet`. Environment (all optional):
//! TINYLET_FLEET_NODES (200), TINYLET_FLEET_OUTAGE_SECS (300), TINYLET_FLEET_STEADY_SECS (60),
//! TINYLET_FLEET_AFTER_SECS (90), TINYLET_FLEET_CAP_SECS (back-off cap, 30).
//! Prints figures; asserts nothing about time.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;

use std::time::{Duration, Instant};

use tinylet::api::backoff::BackoffConfig;
use tinylet::api::{Auth, Bearer, ClientConfig, ClusterConfig, LinkHealth};
use tinylet::config::AgentConfig;
use tinylet::node::bootstrap::BootstrapOptions;
use tinylet::node::heartbeat::Cadence;
use tinylet::node::host::HostInfo;
use tinylet::node::register::NodeSettings;
use tinylet::node::{self, Credentials, NodeHandle, NodeOptions};

const WINDOW: Duration = Duration::from_secs(5);

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn host() -> HostInfo {
    HostInfo {
        hostname: "gw".into(),
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

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn main() {
    let n = env_secs("TINYLET_FLEET_NODES", 200) as usize;
    let outage = Duration::from_secs(env_secs("TINYLET_FLEET_OUTAGE_SECS", 300));
    let steady = Duration::from_secs(env_secs("TINYLET_FLEET_STEADY_SECS", 60));
    let after = Duration::from_secs(env_secs("TINYLET_FLEET_AFTER_SECS", 90));
    let cap = Duration::from_secs(env_secs("TINYLET_FLEET_CAP_SECS", 30));
    println!(
        "fleet: {n} nodes, outage {} s, steady window {} s, after {} s, back-off cap {} s",
        outage.as_secs(),
        steady.as_secs(),
        after.as_secs(),
        cap.as_secs()
    );

    let t_srv = Instant::now();
    let mut cfg = apiserver::Config::tls();
    cfg.bookmark_interval = Duration::from_secs(60);
    let srv = apiserver::start(cfg).expect("API test server");
    let rel = |t: Instant| t.saturating_duration_since(t_srv);

    // Start nodes spread over 10 s, as devices of a fleet never boot at the same instant.
    let agent = AgentConfig::default();
    let spread = Duration::from_secs(10);
    let mut nodes: Vec<NodeHandle> = Vec::with_capacity(n);
    let t_start = Instant::now();
    for i in 0..n {
        sleep_until(t_start + spread.mul_f64(i as f64 / n.max(1) as f64));
        let name = format!("gw-{i:04}");
        let mut agent = agent.clone();
        agent.node_ips = vec![format!("10.{}.{}.1", i / 250, i % 250).parse().unwrap()];
        let cluster = ClusterConfig {
            server: srv.url(),
            ca_pem: srv.ca_pem().as_bytes().to_vec(),
            tls_server_name: None,
            auth: Auth {
                client_cert: None,
                bearer: Some(Bearer::Static(srv.node_token(&name))),
            },
            namespace: None,
        };
        let opts = NodeOptions {
            settings: NodeSettings::from_config(&agent, &name, "containerd://1.6.20"),
            cadence: Cadence::default(),
            backoff: BackoffConfig::default().with_cap(cap),
            // Each simulated device has a link of its own: without this every node of the
            // process would share one link-health signal (they talk to the same server).
            client: ClientConfig {
                link_health: Some(LinkHealth::new()),
                ..ClientConfig::default()
            },
            host: Box::new(host),
            seed: 0x5eed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            bootstrap: BootstrapOptions::default(),
        };
        nodes.push(node::start_with(opts, Credentials::Ready(cluster)).expect("node thread"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for h in &nodes {
        let left = deadline.saturating_duration_since(Instant::now());
        if h.wait_registered(left).is_none() {
            println!("node {} not registered: {:?}", h.name(), h.state());
        }
    }
    println!(
        "all registered {:.1} s after the first start",
        t_start.elapsed().as_secs_f64()
    );

    // Warm-up: registration traffic and the first report settle before measuring.
    sleep_until(Instant::now() + Duration::from_secs(20));
    let steady_from = Instant::now();
    sleep_until(steady_from + steady);
    let steady_to = Instant::now();

    let renewals_before: Vec<u64> = nodes.iter().map(|h| h.state().lease_renewals).collect();
    srv.down();
    let down_at = Instant::now();
    println!("server DOWN at t={:.1} s", rel(down_at).as_secs_f64());
    sleep_until(down_at + outage);
    let reports_at_up: Vec<u64> = nodes.iter().map(|h| h.state().status_reports).collect();
    srv.up().expect("server up again");
    let up_at = Instant::now();
    println!("server UP at t={:.1} s", rel(up_at).as_secs_f64());

    // Time until every node has renewed its Lease and re-reported status after recovery.
    let mut all_renewed: Option<Duration> = None;
    let mut all_reported: Option<Duration> = None;
    let end = up_at + after;
    while Instant::now() < end {
        let states: Vec<_> = nodes.iter().map(|h| h.state()).collect();
        if all_renewed.is_none()
            && states
                .iter()
                .all(|s| s.last_renewal.is_some_and(|t| t > up_at))
        {
            all_renewed = Some(up_at.elapsed());
        }
        if all_reported.is_none()
            && states
                .iter()
                .zip(&reports_at_up)
                .all(|(s, before)| s.status_reports > *before)
        {
            all_reported = Some(up_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop_at = Instant::now();

    let failures: u64 = nodes.iter().map(|h| h.state().failures).sum();
    let renewed_in_outage = nodes
        .iter()
        .zip(&renewals_before)
        .filter(|(h, b)| {
            h.state()
                .last_renewal
                .is_some_and(|t| t > down_at && t < up_at)
                && **b > 0
        })
        .count();

    let profile = srv.stats().rate_profile(WINDOW, None);
    let idx = |t: Instant| (rel(t).as_nanos() / WINDOW.as_nanos()) as usize;
    // Whole windows only: the ones cut by the start or the end of the steady period are left out.
    let (s0, s1) = (idx(steady_from) + 1, idx(steady_to).saturating_sub(1));
    let (d0, u0, e0) = (idx(down_at), idx(up_at), idx(stop_at));
    println!("\nrequests per 5 s (t = window start since server start):");
    for (i, c) in profile.iter().enumerate().take(e0 + 1) {
        let phase = if i < s0 {
            "start"
        } else if i <= s1 {
            "steady"
        } else if i < d0 {
            "-"
        } else if i < u0 {
            "DOWN"
        } else if i == u0 {
            "UP"
        } else {
            "after"
        };
        if phase == "DOWN" && i > d0 + 1 && i + 1 < u0 {
            continue; // all zero: the server is not there to count
        }
        println!("  t={:>5} s  {:>5}  {phase}", i * 5, c);
    }
    let steady_windows: Vec<u64> = profile.get(s0..=s1).unwrap_or_default().to_vec();
    let steady_rate =
        steady_windows.iter().sum::<u64>() as f64 / steady_windows.len().max(1) as f64;
    let after_windows = profile
        .get(u0..=e0.min(profile.len().saturating_sub(1)))
        .unwrap_or_default();
    let peak = after_windows.iter().copied().max().unwrap_or(0);
    let during: u64 = profile.get(d0 + 1..u0).unwrap_or_default().iter().sum();
    println!(
        "\nsteady: {steady_rate:.1} requests per 5 s ({:.2}/s, {} windows)",
        steady_rate / 5.0,
        steady_windows.len()
    );
    println!("during the outage: {during} requests reached the server (it is down)");
    println!(
        "peak after recovery: {peak} requests per 5 s = {:.2}x steady (target <= 2x)",
        peak as f64 / steady_rate.max(1.0)
    );
    match all_renewed {
        Some(d) => println!(
            "all {n} leases renewed {:.1} s after recovery (target <= 60 s)",
            d.as_secs_f64()
        ),
        None => println!(
            "NOT all leases renewed within {} s after recovery",
            after.as_secs()
        ),
    }
    match all_reported {
        Some(d) => println!(
            "all {n} node statuses re-reported {:.1} s after recovery",
            d.as_secs_f64()
        ),
        None => println!(
            "NOT all statuses re-reported within {} s after recovery",
            after.as_secs()
        ),
    }
    println!("failed attempts during the outage (never reached the server): {failures}");
    println!("nodes that renewed while the server was down (should be 0): {renewed_in_outage}");
    let counts = srv.stats().counts();
    println!("requests by verb/resource over the whole run: {counts:?}");

    for h in &mut nodes {
        h.stop();
    }
}
