//! `tinylet proxy --proxy-mode=nftables` and `tinylet nft list`: wiring only.
//!
//! Reads the node's addresses, reduces the source's objects to records (a catalog: read anew
//! from the manifest directory at each change, or kept event by event from the API watch,
//! which then keeps no parsed objects), and hands the syncer either the pieces of the
//! services that changed since the last sync or both whole tables; `--cleanup` removes our
//! tables (and nothing else).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::catalog::{changed_services, Catalog, CatalogBuilder, LiveCatalog};
use super::lower::NetlinkKernel;
use super::model::{Cidr, Family};
use super::ruleset::{build_records, chain_names, service_delta, Config, TABLE};
use super::sync::{NftSyncer, Outcome};
use crate::proxy::apisource::ApiSource;
use crate::proxy::backend::SyncMode;
use crate::proxy::cmd::{Cidr as ArgCidr, ProxyArgs};
use crate::proxy::heap::release_free_memory;
use crate::proxy::schedule::Schedule;
use crate::proxy::source::{dir_digest, load_dir_each};

/// What a sync needs besides the model.
struct Node {
    name: String,
    ranges: Option<Vec<ArgCidr>>,
    masquerade_all: bool,
    cluster_cidrs: Vec<Cidr>,
}

impl Node {
    /// The ruleset config with the node's current addresses (one rtnetlink dump).
    fn config(&self) -> Result<Config, String> {
        let mut rtnl = crate::netlink::Rtnl::open().map_err(|e| e.to_string())?;
        let all: BTreeSet<IpAddr> = rtnl
            .all_addrs()
            .map_err(|e| format!("find node addresses: {e}"))?
            .into_iter()
            .map(|a| a.addr)
            .collect();
        let node_ports = all
            .iter()
            .copied()
            .filter(|a| match &self.ranges {
                Some(r) => r.iter().any(|c| c.contains(a)),
                None => {
                    let link_local6 =
                        matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80);
                    !a.is_loopback() && !link_local6
                }
            })
            .collect();
        Ok(Config {
            node_name: self.name.clone(),
            node_port_addresses: node_ports,
            node_addresses: all,
            masquerade_all: self.masquerade_all,
            cluster_cidrs: self.cluster_cidrs.clone(),
        })
    }
}

/// Print what a sync did; false when it failed.
fn report(result: Result<Outcome, String>, started: Instant) -> bool {
    match result {
        Ok(Outcome::Unchanged) => true,
        Ok(o) => {
            let (kind, n) = match o {
                Outcome::Full { messages } => ("full", messages),
                Outcome::Partial { messages } => ("partial", messages),
                Outcome::Unchanged => ("none", 0),
            };
            println!(
                "nftables {kind} sync: {n} messages in one batch, {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            );
            true
        }
        Err(e) => {
            eprintln!("tinylet proxy: sync: {e}");
            false
        }
    }
}

/// `tinylet proxy --proxy-mode=nftables ...`: returns the exit code.
pub fn run(a: &ProxyArgs, hostname: String, api: Option<ApiSource>) -> i32 {
    let node = Node {
        name: hostname,
        ranges: a.nodeport_addresses.clone(),
        masquerade_all: a.masquerade_all,
        cluster_cidrs: a
            .cluster_cidrs
            .iter()
            .map(|c| Cidr::new(c.addr, c.prefix))
            .collect(),
    };
    let kernel = match NetlinkKernel::open() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("tinylet proxy: {e}");
            return 1;
        }
    };
    let mut syncer = NftSyncer::new(kernel);
    if a.cleanup {
        return match syncer.cleanup() {
            Ok(()) => {
                println!("delete table ip {TABLE}\ndelete table ip6 {TABLE}");
                0
            }
            Err(e) => {
                eprintln!("tinylet proxy --cleanup: {e}");
                1
            }
        };
    }
    match (api, &a.manifest_path) {
        (Some(api), _) => api_loop(&mut syncer, &api, &node, a.sync_period, a.once),
        (None, Some(dir)) => dir_loop(&mut syncer, dir, &node, a.sync_period, a.once),
        (None, None) => 2,
    }
}

/// What a source's loop programmed last: its catalog, and the config it was
/// programmed with when the syncer's print is exactly that catalog's tables (the last sync
/// succeeded and no two services overlapped), so the next change can go service by service.
#[derive(Default)]
struct Programmed {
    catalog: Catalog,
    piecewise: Option<Config>,
}

impl Programmed {
    /// Make `fresh` (when there is one) the catalog, keeping the records that did not change
    /// where they are.
    fn adopt(&mut self, fresh: Option<Catalog>) {
        if let Some(mut c) = fresh {
            c.keep_unchanged(&mut self.catalog);
            self.catalog = c;
        }
    }
}

/// Sync a manifest directory's catalog: `fresh` when it was read anew (else the last one
/// again), compared with the last one to find the services that changed.
fn sync_catalog(
    syncer: &mut NftSyncer<NetlinkKernel>,
    node: &Node,
    resync: bool,
    last: &mut Programmed,
    fresh: Option<Catalog>,
) -> bool {
    let started = Instant::now();
    let changed = fresh
        .as_ref()
        .map(|new| changed_services(&last.catalog, new));
    let (now, change) = match (&fresh, &changed) {
        (Some(new), Some(c)) => (new, Some((&last.catalog, c.as_slice()))),
        _ => (&last.catalog, None),
    };
    let ok = sync_records(
        syncer,
        node,
        resync,
        &mut last.piecewise,
        now,
        change,
        started,
    );
    drop(changed);
    // The catalog read anew replaces the old one: give its pages back.
    last.adopt(fresh);
    release_free_memory();
    ok
}

/// Sync the records `now`. A change goes service by service when it can: `change` names
/// the services whose records may differ and holds their records as last programmed (a
/// catalog with at least those), and only they are built and diffed against the print of
/// what was programmed for them; a resync, a changed node config, the first sync, any
/// failure and `change: None` build and diff whole tables. `piecewise` is the config the
/// syncer's print was last made with, when it is exactly a catalog's tables.
fn sync_records(
    syncer: &mut NftSyncer<NetlinkKernel>,
    node: &Node,
    resync: bool,
    piecewise: &mut Option<Config>,
    now: &Catalog,
    change: Option<(&Catalog, &[(&str, &str)])>,
    started: Instant,
) -> bool {
    let cfg = match node.config() {
        Ok(c) => c,
        Err(e) => {
            *piecewise = None;
            return report(Err(e), started);
        }
    };
    if let (Some((before, changed)), Some(was), false) = (change, piecewise.as_ref(), resync) {
        if *was == cfg {
            let deltas: Option<Vec<_>> = [Family::Ip, Family::Ip6]
                .into_iter()
                .map(|f| service_delta((before, was), (now, &cfg), changed, f))
                .collect();
            if let Some(deltas) = deltas {
                match syncer.sync_services(&deltas) {
                    Ok(Some(outcome)) => {
                        // Both families see the same objects: say it once, for the changed
                        // services only.
                        for w in deltas.first().map(|d| d.warnings.as_slice()).unwrap_or(&[]) {
                            eprintln!("tinylet proxy: warning: {w}");
                        }
                        return report(Ok(outcome), started);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        *piecewise = None;
                        return report(Err(e), started);
                    }
                }
            }
        }
    }
    let mut overlap = false;
    let mut out = Vec::new();
    for f in [Family::Ip, Family::Ip6] {
        let b = build_records(now.services(), now.slices(), &cfg, f);
        if f == Family::Ip {
            for w in &b.warnings {
                eprintln!("tinylet proxy: warning: {w}");
            }
        }
        overlap |= b.overlap;
        out.push(b.table);
    }
    // The chains the changed services had, as they were programmed: what may go.
    let gone = change.map_or_else(Vec::new, |(before, changed)| {
        chain_names(before, piecewise.as_ref().unwrap_or(&cfg), changed)
    });
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    let result = syncer.sync_naming(out, resync, &gone);
    *piecewise = match (&result, overlap) {
        (Ok(_), false) => Some(cfg),
        _ => None,
    };
    report(result, started)
}

fn dir_loop(
    syncer: &mut NftSyncer<NetlinkKernel>,
    dir: &Path,
    node: &Node,
    period: Duration,
    once: bool,
) -> i32 {
    // Records, not the parsed objects: what the ruleset reads, a fraction of the bytes.
    let mut last = Programmed::default();
    let mut schedule = Schedule::new(period);
    let mut last_fp = None;
    let mut loaded = false;
    let mut last_error: Option<String> = None;
    loop {
        let fp = dir_digest(dir);
        let now = Instant::now();
        let mode = if once {
            Some(SyncMode::Full)
        } else {
            schedule.next(now, last_fp.as_ref() != Some(&fp))
        };
        if let Some(mode) = mode {
            schedule.attempted(now, mode);
            last_fp = Some(fp);
            let mut builder = CatalogBuilder::default();
            let mut fresh = None;
            match load_dir_each(dir, |o| builder.add(&o)) {
                Ok(()) => {
                    fresh = Some(builder.finish());
                    loaded = true;
                    last_error = None;
                }
                // Until the directory was read whole once, an empty model must not wipe
                // the table an earlier run made; later the last good model stays in force.
                Err(e) => {
                    let text = e.to_string();
                    if once {
                        eprintln!("tinylet proxy: {text}");
                        return 1;
                    }
                    if last_error.as_deref() != Some(text.as_str()) {
                        eprintln!("tinylet proxy: {text} (keeping the previous table)");
                        last_error = Some(text);
                    }
                }
            }
            if loaded {
                let ok = sync_catalog(syncer, node, mode == SyncMode::Full, &mut last, fresh);
                if once {
                    return i32::from(!ok);
                }
            }
        }
        // Rescanning the directory is cheap; 200 ms keeps an endpoint change prompt.
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn api_loop(
    syncer: &mut NftSyncer<NetlinkKernel>,
    api: &ApiSource,
    node: &Node,
    period: Duration,
    once: bool,
) -> i32 {
    // The watch's changes go straight into records (no parsed objects are kept), and the
    // catalog remembers how the services they touched looked, so that a change goes service
    // by service and costs only those services.
    let mut piecewise = None;
    crate::proxy::cmd::api_watch_loop(api, period, once, |live: &mut LiveCatalog, mode| {
        let started = Instant::now();
        let changes = live.take_changes();
        let ids = changes.ids();
        let ok = sync_records(
            syncer,
            node,
            mode == SyncMode::Full,
            &mut piecewise,
            live.catalog(),
            Some((&changes.before, &ids)),
            started,
        );
        drop(ids);
        drop(changes);
        release_free_memory();
        if mode == SyncMode::Full {
            live.compact();
            syncer.compact();
            release_free_memory();
        }
        ok
    })
}

const NFT_USAGE: &str = "\
usage: tinylet nft list [TABLE]   print our kube-proxy tables (ip, ip6) as `nft list table`
                                  would; TABLE=tinylet-ipvs: the IPVS mode's masquerading ones
";

/// `tinylet nft list`: our tables as the kernel holds them, in `nft list table` style.
pub fn nft_main(args: &[String]) -> i32 {
    let sub = args.first().map(String::as_str).unwrap_or("");
    if matches!(sub, "-h" | "--help" | "help") {
        print!("{NFT_USAGE}");
        return 0;
    }
    let name = match args.get(1).map(String::as_str) {
        None => TABLE,
        Some(n) if n == super::ipvs_masq::TABLE => super::ipvs_masq::TABLE,
        Some(_) => "",
    };
    if sub != "list" || args.len() > 2 || name.is_empty() {
        eprintln!(
            "tinylet nft: expected `list [{}]`\n{NFT_USAGE}",
            super::ipvs_masq::TABLE
        );
        return 2;
    }
    let mut kernel = match NetlinkKernel::open() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("tinylet nft list: {e}");
            return 1;
        }
    };
    let mut failed = false;
    for f in [Family::Ip, Family::Ip6] {
        match super::readback::read_table(kernel.client(), f, name) {
            Ok(Some(t)) => print!("{}", super::model::render(&t)),
            Ok(None) => {}
            Err(e) => {
                eprintln!("tinylet nft list: table {} {name}: {e}", f.word());
                failed = true;
            }
        }
    }
    i32::from(failed)
}
