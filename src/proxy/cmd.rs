//! The `tinylet proxy` and `tinylet ipvs` commands: argument parsing and wiring only.
//!
//! Flag names follow kube-proxy where one exists. Everything these functions call is library
//! code tested elsewhere; this file decides nothing about the table itself.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::apisource::{ApiSource, Change, Fold};
use super::backend::{Backend, IpvsBackend, SyncMode, SyncReport, Syncer, DUMMY_LINK};
use super::desired::{desired_state, Config, Desired};
use super::nft::ipvs_masq::{self, IpvsMasq};
use super::nft::model::Cidr as NftCidr;
use super::schedule::Schedule;
use super::source::{dir_digest, load_dir, Model};
use super::table::{SchedName, State};
use crate::api::client::{Client, ClientConfig};
use crate::api::kubeconfig::Kubeconfig;
use crate::api::watch::InformerConfig;
use crate::netlink::ipvs::format_listing;
use crate::netlink::{Ipvs, Rtnl};

const PROXY_USAGE: &str = "\
usage: tinylet proxy --proxy-manifest-path DIR [flags]

Programs IPVS (kube-proxy's IPVS mode) or our own nf_tables tables (its nftables mode)
from Service and EndpointSlice manifests.

  --proxy-mode=MODE            ipvs (default) or nftables
  --masquerade-all             SNAT all traffic sent to a service
  --cluster-cidr=LIST          comma-separated pod ranges; traffic from outside them to a
                               cluster IP is masqueraded
  --ipvs-scheduler=NAME        IPVS scheduler (default rr)
  --proxy-manifest-path=DIR    directory of Service/EndpointSlice YAML or JSON manifests
  --kubeconfig=FILE            watch Services and EndpointSlices at the API server
  --hostname-override=NAME     node name for Local traffic policies (default: hostname)
  --nodeport-addresses=LIST    comma-separated CIDRs or IPs node ports are served on
                               (default: every non-loopback address of the host)
  --sync-period=DURATION       full resync interval, e.g. 30s, 1m (default 30s);
                               --ipvs-sync-period is the same flag
  --once                       sync once, print what changed, exit non-zero on failure
  --cleanup                    remove what the proxy made (its virtual servers, the
                               kube-ipvs0 interface and its addresses, the ip/ip6
                               tinylet-ipvs masquerading tables; in nftables mode the
                               ip/ip6 kube-proxy tables), print it and exit
  -h, --help                   this help
";

const IPVS_USAGE: &str = "\
usage: tinylet ipvs list     print the kernel's IPVS table like `ipvsadm -Ln`
       tinylet ipvs flush    delete every IPVS service
";

/// Parsed `tinylet proxy` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyArgs {
    /// --proxy-mode.
    pub mode: String,
    /// --ipvs-scheduler.
    pub scheduler: SchedName,
    /// --proxy-manifest-path.
    pub manifest_path: Option<PathBuf>,
    /// --kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// --hostname-override.
    pub hostname: Option<String>,
    /// --nodeport-addresses, parsed.
    pub nodeport_addresses: Option<Vec<Cidr>>,
    /// --sync-period.
    pub sync_period: Duration,
    /// --once.
    pub once: bool,
    /// --cleanup.
    pub cleanup: bool,
    /// --masquerade-all.
    pub masquerade_all: bool,
    /// --cluster-cidr, parsed.
    pub cluster_cidrs: Vec<Cidr>,
    /// --help.
    pub help: bool,
}

impl Default for ProxyArgs {
    fn default() -> Self {
        ProxyArgs {
            mode: "ipvs".into(),
            scheduler: SchedName::RR,
            manifest_path: None,
            kubeconfig: None,
            hostname: None,
            nodeport_addresses: None,
            sync_period: Duration::from_secs(30),
            once: false,
            cleanup: false,
            masquerade_all: false,
            cluster_cidrs: Vec::new(),
            help: false,
        }
    }
}

/// An address range given to --nodeport-addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parse "10.0.0.0/8" or a bare address (a host range).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv6() { 128 } else { 32 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// Is `a` inside this range?
    pub fn contains(&self, a: &IpAddr) -> bool {
        let bits = |x: &IpAddr| -> u128 {
            match x {
                IpAddr::V4(v) => u32::from(*v) as u128,
                IpAddr::V6(v) => u128::from(*v),
            }
        };
        if a.is_ipv6() != self.addr.is_ipv6() {
            return false;
        }
        let width = if a.is_ipv6() { 128 } else { 32 };
        let shift = width - u32::from(self.prefix);
        shift >= 128 || (bits(a) >> shift) == (bits(&self.addr) >> shift)
    }
}

/// Parse "30s", "1m30s", "500ms", "2h" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        rest = rest.get(digits..)?;
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(n), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(n.checked_mul(3600)?), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(n.checked_mul(60)?), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(n), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit)?;
        rest = rest.get(len..)?;
    }
    (!s.is_empty()).then_some(total)
}

/// Parse `tinylet proxy` arguments (without the program and subcommand names).
pub fn parse_proxy_args(args: &[String]) -> Result<ProxyArgs, String> {
    let mut a = ProxyArgs::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let value = |it: &mut std::slice::Iter<'_, String>| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name {
            "-h" | "--help" => a.help = true,
            "--once" => a.once = true,
            "--cleanup" => a.cleanup = true,
            "--masquerade-all" => a.masquerade_all = true,
            "--cluster-cidr" => {
                let v = value(&mut it)?;
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    a.cluster_cidrs.push(
                        Cidr::parse(part)
                            .ok_or_else(|| format!("bad --cluster-cidr entry {part:?}"))?,
                    );
                }
            }
            "--proxy-mode" => a.mode = value(&mut it)?,
            "--ipvs-scheduler" => {
                let v = value(&mut it)?;
                a.scheduler = SchedName::new(&v).ok_or_else(|| {
                    format!("bad --ipvs-scheduler {v:?}: 1 to 15 bytes, as IPVS keeps it")
                })?;
            }
            "--proxy-manifest-path" => a.manifest_path = Some(value(&mut it)?.into()),
            "--kubeconfig" => a.kubeconfig = Some(value(&mut it)?.into()),
            "--hostname-override" => a.hostname = Some(value(&mut it)?),
            "--nodeport-addresses" => {
                let v = value(&mut it)?;
                let mut list = Vec::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    list.push(
                        Cidr::parse(part)
                            .ok_or_else(|| format!("bad --nodeport-addresses entry {part:?}"))?,
                    );
                }
                a.nodeport_addresses = Some(list);
            }
            "--sync-period" | "--ipvs-sync-period" => {
                let v = value(&mut it)?;
                a.sync_period = parse_duration(&v)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("bad {name} {v:?}"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Node-port addresses: host addresses in the given ranges, or every usable host address.
fn node_addresses(rtnl: &mut Rtnl, ranges: Option<&[Cidr]>) -> Result<BTreeSet<IpAddr>, String> {
    let dummy = rtnl.link_index(DUMMY_LINK).map_err(|e| e.to_string())?;
    let all = rtnl.all_addrs().map_err(|e| e.to_string())?;
    Ok(all
        .into_iter()
        .filter(|a| Some(a.index) != dummy)
        .map(|a| a.addr)
        .filter(|a| match ranges {
            Some(r) => r.iter().any(|c| c.contains(a)),
            None => {
                let link_local6 =
                    matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80);
                !a.is_loopback() && !link_local6
            }
        })
        .collect())
}

fn print_report(r: &SyncReport) {
    for op in &r.ops {
        println!("{op}");
    }
    for f in &r.failures {
        eprintln!("tinylet proxy: {f}");
    }
}

fn compute(model: &Model, cfg: &Config) -> Desired {
    let d = desired_state(&model.services(), &model.slices(), cfg);
    for w in &d.warnings {
        eprintln!("tinylet proxy: warning: {w}");
    }
    d
}

/// `tinylet proxy`: returns the process exit code.
pub fn proxy_main(args: &[String]) -> i32 {
    let a = match parse_proxy_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tinylet proxy: {e}\n{PROXY_USAGE}");
            return 2;
        }
    };
    if a.help {
        print!("{PROXY_USAGE}");
        return 0;
    }
    if a.mode != "ipvs" && a.mode != "nftables" {
        eprintln!(
            "tinylet proxy: --proxy-mode={} is not supported (ipvs or nftables)",
            a.mode
        );
        return 2;
    }
    if a.mode == "nftables" {
        return nftables(&a);
    }
    if a.cleanup {
        return cleanup(a.nodeport_addresses.as_deref());
    }
    let source = match (&a.manifest_path, &a.kubeconfig) {
        (Some(dir), _) => Source::Dir(dir.clone()),
        (None, Some(kc)) => match api_source(kc) {
            Ok(s) => Source::Api(s),
            Err(e) => {
                eprintln!("tinylet proxy: {e}");
                return 1;
            }
        },
        (None, None) => {
            eprintln!("tinylet proxy: --proxy-manifest-path DIR or --kubeconfig FILE is required\n{PROXY_USAGE}");
            return 2;
        }
    };
    let (backend, node_addrs) = match open_backend(a.nodeport_addresses.as_deref()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tinylet proxy: {e}");
            return 1;
        }
    };
    let cfg = Config {
        scheduler: a.scheduler,
        node_name: a.hostname.clone().unwrap_or_else(host_name),
        node_addresses: node_addrs.clone(),
    };
    let mut masq = match IpvsMasq::open(ipvs_masq::Config {
        node_name: cfg.node_name.clone(),
        node_port_addresses: node_addrs.clone(),
        masquerade_all: a.masquerade_all,
        cluster_cidrs: a
            .cluster_cidrs
            .iter()
            .map(|c| NftCidr::new(c.addr, c.prefix))
            .collect(),
    }) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tinylet proxy: masquerading table: {e}");
            return 1;
        }
    };
    let mut syncer = Syncer::new(backend, node_addrs);
    match source {
        Source::Api(api) => run_api_loop_with(
            &mut syncer,
            &api,
            &cfg,
            a.sync_period,
            a.once,
            Some(&mut masq),
        ),
        Source::Dir(dir) if a.once => match load_dir(&dir) {
            Err(e) => {
                eprintln!("tinylet proxy: {e}");
                1
            }
            Ok(objs) => {
                let mut model = Model::default();
                model.replace(objs);
                let d = compute(&model, &cfg);
                let masq_ok = sync_masq(&mut masq, &model, SyncMode::Full);
                match syncer.sync(&d.state, SyncMode::Full) {
                    Ok(r) => {
                        print_report(&r);
                        i32::from(!r.failures.is_empty() || !masq_ok)
                    }
                    Err(e) => {
                        eprintln!("tinylet proxy: {e}");
                        1
                    }
                }
            }
        },
        Source::Dir(dir) => run_loop(&mut syncer, &mut masq, &dir, &cfg, a.sync_period),
    }
}

/// nftables mode: the source, then the nftables command's own loop.
fn nftables(a: &ProxyArgs) -> i32 {
    let api = match (&a.manifest_path, &a.kubeconfig, a.cleanup) {
        (_, _, true) | (Some(_), _, _) => None,
        (None, Some(kc), _) => match api_source(kc) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("tinylet proxy: {e}");
                return 1;
            }
        },
        (None, None, false) => {
            eprintln!("tinylet proxy: --proxy-manifest-path DIR or --kubeconfig FILE is required\n{PROXY_USAGE}");
            return 2;
        }
    };
    let hostname = a.hostname.clone().unwrap_or_else(host_name);
    super::nft::cmd::run(a, hostname, api)
}

/// The IPVS backend and the node-port addresses in `ranges` (see [`node_addresses`]).
fn open_backend(ranges: Option<&[Cidr]>) -> Result<(IpvsBackend, BTreeSet<IpAddr>), String> {
    let mut backend = IpvsBackend::open(DUMMY_LINK).map_err(|e| e.to_string())?;
    let addrs =
        node_addresses(backend.rtnl(), ranges).map_err(|e| format!("find node addresses: {e}"))?;
    Ok((backend, addrs))
}

/// The masquerading table's part of a sync (before IPVS, so a new virtual server's packets
/// are marked from its first one); says whether it succeeded.
fn sync_masq(masq: &mut IpvsMasq, model: &Model, mode: SyncMode) -> bool {
    match masq.sync(&model.services(), &model.slices(), mode == SyncMode::Full) {
        Ok(o) => {
            if let Some(line) = ipvs_masq::describe(o) {
                println!("{line}");
            }
            true
        }
        Err(e) => {
            eprintln!("tinylet proxy: masquerading table: {e}");
            false
        }
    }
}

/// `tinylet proxy --cleanup`: sync to an empty table (which removes only virtual servers on
/// kube-ipvs0's addresses or the node's, and unbinds the addresses), then delete kube-ipvs0
/// and our masquerading tables.
fn cleanup(ranges: Option<&[Cidr]>) -> i32 {
    let (backend, node_addrs) = match open_backend(ranges) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tinylet proxy --cleanup: {e}");
            return 1;
        }
    };
    let mut syncer = Syncer::new(backend, node_addrs);
    let mut failed = match syncer.sync(&State::default(), SyncMode::Full) {
        Ok(r) => {
            print_report(&r);
            !r.failures.is_empty()
        }
        Err(e) => {
            eprintln!("tinylet proxy --cleanup: {e}");
            true
        }
    };
    match syncer.backend().rtnl().delete_link(DUMMY_LINK) {
        Ok(true) => println!("delete interface {DUMMY_LINK}"),
        Ok(false) => {}
        Err(e) => {
            eprintln!("tinylet proxy --cleanup: {e}");
            failed = true;
        }
    }
    match IpvsMasq::cleanup() {
        Ok(()) => println!(
            "delete table ip {t}\ndelete table ip6 {t}",
            t = ipvs_masq::TABLE
        ),
        Err(e) => {
            eprintln!("tinylet proxy --cleanup: {e}");
            failed = true;
        }
    }
    i32::from(failed)
}

/// Where Services and EndpointSlices come from.
enum Source {
    Dir(PathBuf),
    Api(ApiSource),
}

fn api_source(kubeconfig: &Path) -> Result<ApiSource, String> {
    super::heap::one_arena();
    let cluster = Kubeconfig::load(kubeconfig, None).map_err(|e| e.to_string())?;
    let client = Client::new(&cluster, ClientConfig::default()).map_err(|e| e.to_string())?;
    ApiSource::start(client, InformerConfig::default())
        .map_err(|e| format!("start the watch threads: {e}"))
}

/// Syncs from the API watch: a partial sync as soon as anything changed (one endpoint → its
/// own ops), a full resync every `period` to repair drift. With `once`, waits for the first
/// complete lists of both kinds, syncs, reports and returns.
pub fn run_api_loop<B: Backend>(
    syncer: &mut Syncer<B>,
    api: &ApiSource,
    cfg: &Config,
    period: Duration,
    once: bool,
) -> i32 {
    run_api_loop_with(syncer, api, cfg, period, once, None)
}

/// [`run_api_loop`], also syncing the masquerading table when given.
fn run_api_loop_with<B: Backend>(
    syncer: &mut Syncer<B>,
    api: &ApiSource,
    cfg: &Config,
    period: Duration,
    once: bool,
    mut masq: Option<&mut IpvsMasq>,
) -> i32 {
    api_watch_loop(api, period, once, |model: &mut Model, mode| {
        let d = compute(model, cfg);
        let masq_ok = masq.as_mut().is_none_or(|m| sync_masq(m, model, mode));
        match syncer.sync(&d.state, mode) {
            Ok(r) => {
                print_report(&r);
                r.failures.is_empty() && masq_ok
            }
            Err(e) => {
                eprintln!("tinylet proxy: sync: {e}");
                false
            }
        }
    })
}

/// The API-watch driver every proxy mode shares: folds the watch's changes into what the
/// mode keeps of the objects (`S`: the parsed objects, or records) and calls
/// `sync(state, mode)` when the schedule says so (partial at once after a change, full
/// every `period`), once both kinds have been listed. `sync` says whether it succeeded; with
/// `once` the first sync's outcome is the exit code.
pub(crate) fn api_watch_loop<S: Fold>(
    api: &ApiSource,
    period: Duration,
    once: bool,
    mut sync: impl FnMut(&mut S, SyncMode) -> bool,
) -> i32 {
    let mut state = S::default();
    let mut schedule = Schedule::new(period);
    let (mut have_services, mut have_slices) = (false, false);
    loop {
        let changed = match api.changes.recv_timeout(Duration::from_secs(1)) {
            Ok(c) => {
                let mut batch = vec![c];
                batch.extend(api.changes.try_iter());
                for c in batch {
                    have_services |= matches!(c, Change::Services(_));
                    have_slices |= matches!(c, Change::Slices(_));
                    state.fold(c);
                }
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("tinylet proxy: the API watch stopped");
                return 1;
            }
        };
        if !(have_services && have_slices) {
            continue;
        }
        let now = Instant::now();
        let mode = if once {
            Some(SyncMode::Full)
        } else {
            schedule.next(now, changed)
        };
        if let Some(mode) = mode {
            schedule.attempted(now, mode);
            let ok = sync(&mut state, mode);
            if once {
                return i32::from(!ok);
            }
        }
    }
}

fn run_loop<B: Backend>(
    syncer: &mut Syncer<B>,
    masq: &mut IpvsMasq,
    dir: &Path,
    cfg: &Config,
    period: Duration,
) -> i32 {
    let mut model = Model::default();
    let mut schedule = Schedule::new(period);
    let mut last_fp = None;
    // Whether the directory was ever read whole: until then a bad file must not lead to a
    // sync of an empty model, which would remove the table an earlier run made.
    let mut loaded = false;
    // The same bad file is read again at every resync: say so once, not every period.
    let mut last_error: Option<String> = None;
    loop {
        let fp = dir_digest(dir);
        let now = Instant::now();
        if let Some(mode) = schedule.next(now, last_fp.as_ref() != Some(&fp)) {
            schedule.attempted(now, mode);
            last_fp = Some(fp);
            match load_dir(dir) {
                Ok(objs) => {
                    model.replace(objs);
                    loaded = true;
                    last_error = None;
                }
                // The last good model stays in force; a full resync of it still repairs drift.
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        eprintln!("tinylet proxy: {text} (keeping the previous table)");
                        last_error = Some(text);
                    }
                }
            }
            if loaded {
                let d = compute(&model, cfg);
                sync_masq(masq, &model, mode);
                match syncer.sync(&d.state, mode) {
                    Ok(r) => print_report(&r),
                    Err(e) => eprintln!("tinylet proxy: sync: {e}"),
                }
            }
        }
        // Rescanning the directory is cheap; once a second keeps changes prompt.
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `tinylet ipvs list|flush`: returns the process exit code.
pub fn ipvs_main(args: &[String]) -> i32 {
    let sub = args.first().map(String::as_str).unwrap_or("");
    if matches!(sub, "-h" | "--help" | "help") {
        print!("{IPVS_USAGE}");
        return 0;
    }
    if !matches!(sub, "list" | "flush") || args.len() > 1 {
        eprintln!("tinylet ipvs: expected `list` or `flush`\n{IPVS_USAGE}");
        return 2;
    }
    let run = || -> Result<(), crate::netlink::Error> {
        let mut ipvs = Ipvs::open()?;
        if sub == "flush" {
            return ipvs.flush();
        }
        let info = ipvs.info()?;
        let table = ipvs.table()?;
        print!("{}", format_listing(Some(&info), &table));
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tinylet ipvs {sub}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_kube_proxy_flags() {
        let a = parse_proxy_args(&s(&[
            "--proxy-mode=ipvs",
            "--ipvs-scheduler",
            "wrr",
            "--proxy-manifest-path=/etc/m",
            "--nodeport-addresses=192.168.0.0/16, fd00::1",
            "--sync-period=1m30s",
            "--once",
        ]))
        .unwrap();
        assert_eq!(a.scheduler, "wrr");
        assert_eq!(a.manifest_path, Some(PathBuf::from("/etc/m")));
        assert_eq!(a.sync_period, Duration::from_secs(90));
        assert!(a.once);
        let r = a.nodeport_addresses.unwrap();
        assert!(r[0].contains(&"192.168.7.1".parse().unwrap()));
        assert!(!r[0].contains(&"10.0.0.1".parse().unwrap()));
        assert!(r[1].contains(&"fd00::1".parse().unwrap()));
        assert!(!r[1].contains(&"fd00::2".parse().unwrap()));
        let b = parse_proxy_args(&s(&["--ipvs-sync-period", "5s", "--cleanup"])).unwrap();
        assert_eq!(b.sync_period, Duration::from_secs(5));
        assert!(b.cleanup && !b.once);
        assert!(parse_proxy_args(&s(&["--ipvs-sync-period=0"])).is_err());
        assert!(parse_proxy_args(&s(&["--bogus"])).is_err());
        assert!(parse_proxy_args(&s(&["--sync-period=0s"])).is_err());
        assert!(parse_proxy_args(&s(&["--ipvs-scheduler"])).is_err());
        assert!(parse_proxy_args(&s(&["--ipvs-scheduler="])).is_err());
        assert!(parse_proxy_args(&s(&["--ipvs-scheduler=sixteen-bytes-xy"])).is_err());
        let fifteen = parse_proxy_args(&s(&["--ipvs-scheduler=fifteen-bytes-x"])).unwrap();
        assert_eq!(fifteen.scheduler, "fifteen-bytes-x");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("15"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration(""), None);
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(&"1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(
            proxy_main(&s(&["--proxy-mode=iptables", "--proxy-manifest-path=/x"])),
            2
        );
        // An unreadable kubeconfig is a runtime failure, not a usage error.
        assert_eq!(proxy_main(&s(&["--kubeconfig=/nonexistent/k"])), 1);
        assert_eq!(proxy_main(&s(&["--help"])), 0);
        assert_eq!(ipvs_main(&s(&["bogus"])), 2);
    }
}
