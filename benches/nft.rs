//! nftables mode at scale, in a fresh network namespace: first full sync at 1,000 and
//! 10,000 services × 2 endpoints, an endpoint change (compute + one partial batch), an
//! unchanged resync, and the process's memory, next to upstream kube-proxy's figures
//! (v1.32.13 nftables mode on this kind of machine, notes/anchors.md).
//!
//! Run as root: `cargo bench --bench nft` (or `cargo test --bench nft` for a debug build).
//! The process moves itself into a new network namespace first, so the host's ruleset is
//! never touched. Prints figures; asserts nothing about time.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tinylet::k8s::discovery::EndpointSlice;
use tinylet::k8s::service::Service;
use tinylet::proxy::nft::lower::NetlinkKernel;
use tinylet::proxy::nft::model::{Family, Table};
use tinylet::proxy::nft::ruleset::{build, Config};
use tinylet::proxy::nft::sync::{NftSyncer, Outcome};
use tinylet::proxy::source::{parse_manifest, Object};

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

fn tables(s: &[Service], e: &[EndpointSlice], cfg: &Config) -> Vec<Table> {
    [Family::Ip, Family::Ip6]
        .into_iter()
        .map(|f| build(s, e, cfg, f).table)
        .collect()
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
    println!(
        "{:>7} | {:>26} | {:>32} | {:>14} | kube-proxy nftables: full sync, endpoint change, RSS",
        "N", "first full sync (compute+batch)", "endpoint change (compute / batch)", "resync"
    );
    let only: Option<usize> = std::env::var("TINYLET_NFT_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok());
    for (n, up_full, up_change, up_rss) in UPSTREAM {
        let n = &only.unwrap_or(*n);
        let (s0, e0) = objects(*n, 0);
        let (s1, e1) = objects(*n, 1);
        let kernel = match NetlinkKernel::open() {
            Ok(k) => k,
            Err(e) => {
                println!("nft bench: {e}");
                return;
            }
        };
        let mut syncer = NftSyncer::new(kernel);

        let t = Instant::now();
        let first = tables(&s0, &e0, &cfg);
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

        let t = Instant::now();
        let changed = tables(&s1, &e1, &cfg);
        let change_compute = t.elapsed();
        let t = Instant::now();
        let out = syncer.sync(changed.clone(), false);
        let change_commit = t.elapsed();
        let change_msgs = match out {
            Ok(Outcome::Partial { messages }) => messages,
            other => {
                println!("nft bench: endpoint change at {n}: {other:?}");
                return;
            }
        };

        let t = Instant::now();
        let resync = syncer.sync(changed, true);
        let resync_time = t.elapsed();
        let resync_text = match resync {
            Ok(Outcome::Unchanged) => format!("0 msgs {}", ms(resync_time)),
            other => format!("{other:?}"),
        };
        println!(
            "{n:>7} | {:>9} + {:>9} = {:>9} | {:>9} / {:>9} ({change_msgs} msgs) | {resync_text:>14} | {up_full}, {up_change}, {up_rss}",
            ms(compute),
            ms(commit),
            ms(compute + commit),
            ms(change_compute),
            ms(change_commit),
        );
        println!(
            "{:>7}   {messages} messages in one batch: {chains} chains, {rules} rules, no anonymous sets",
            ""
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
}
