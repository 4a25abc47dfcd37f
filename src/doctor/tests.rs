//! Each check over fake /proc, /sys, /lib/modules and /boot trees, and over canned answers.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::host::{self, FsStats};
use super::kernel::{self, Evidence, Presence};
use super::runtime;
use super::{apiserver, Finding, Report, Verdict};
use crate::api::{ApiError, ApiErrorKind};
use crate::config::{self, AgentConfig, CgroupDriver, FlagOverrides, ProxyMode};
use crate::cri::proto::{RuntimeCondition, RuntimeStatus, StatusResponse, VersionResponse};

/// A fresh fake root; removed when dropped.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!(
            "tinylet-doctor-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }

    fn file(&self, path: &str, text: &str) -> &Tree {
        let p = self.0.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
        self
    }

    fn dir(&self, path: &str) -> &Tree {
        fs::create_dir_all(self.0.join(path)).unwrap();
        self
    }

    fn root(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const PROC_CGROUPS_PI: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t2\t1\t1
cpu\t3\t60\t1
cpuacct\t3\t60\t1
blkio\t4\t60\t1
memory\t0\t70\t0
devices\t5\t60\t1
freezer\t6\t1\t1
pids\t7\t66\t1
";

const SELF_CGROUP_V1: &str = "\
7:pids:/user.slice
6:freezer:/
5:devices:/user.slice
4:blkio:/user.slice
3:cpu,cpuacct:/user.slice
2:cpuset:/
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
";

#[test]
fn kernel_release_parses_distribution_suffixes() {
    assert_eq!(kernel::parse_release("6.1.0-18-arm64"), Some((6, 1)));
    assert_eq!(kernel::parse_release("6.6.31+rpt-rpi-v8"), Some((6, 6)));
    assert_eq!(kernel::parse_release("garbage"), None);
    assert_eq!(kernel::version("6.1.0-18-arm64").verdict, Verdict::Ok);
    // kubeadm's system validator accepts 3.10 and newer.
    assert_eq!(kernel::version("3.2.0").verdict, Verdict::Fail);
    assert_eq!(kernel::version("").verdict, Verdict::Warn);
}

#[test]
fn cgroup_v2_needs_cpu_memory_pids() {
    let t = Tree::new("cg2");
    t.file(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids\n",
    )
    .file("proc/self/cgroup", "0::/system.slice/tinylet.service\n");
    let f = kernel::cgroups(t.root(), "6.1.0");
    assert_eq!(f.verdict, Verdict::Ok, "{f:?}");
    assert!(f.detail.contains("v2"), "{f:?}");
    // Kubernetes documents 5.8 as the minimum kernel for cgroup v2.
    assert_eq!(kernel::cgroups(t.root(), "5.4.0").verdict, Verdict::Warn);
    t.file("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n");
    let f = kernel::cgroups(t.root(), "6.1.0");
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("memory"), "{f:?}");
    assert!(f.fix.contains("cgroup_enable=memory"), "{f:?}");
}

#[test]
fn raspberry_pi_without_the_memory_controller_fails_with_the_cmdline_fix() {
    let t = Tree::new("cgpi");
    t.file("proc/cgroups", PROC_CGROUPS_PI)
        .file("proc/self/cgroup", SELF_CGROUP_V1)
        .file(
            "proc/cmdline",
            "console=tty1 root=PARTUUID=1 rootfstype=ext4 cgroup_disable=memory\n",
        );
    let f = kernel::cgroups(t.root(), "5.10.103-v7l+");
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    assert!(f.detail.contains("memory"), "{f:?}");
    assert!(f.fix.contains("cmdline.txt"), "{f:?}");
    assert!(f.fix.contains("remove `cgroup_disable=memory`"), "{f:?}");

    // Enabled in /proc/cgroups and mounted: fine, and the hybrid layout is named.
    t.file(
        "proc/cgroups",
        &PROC_CGROUPS_PI.replace("memory\t0\t70\t0", "memory\t8\t70\t1"),
    )
    .file("proc/self/cgroup", &format!("8:memory:/\n{SELF_CGROUP_V1}"));
    let f = kernel::cgroups(t.root(), "5.10.103-v7l+");
    assert_eq!(f.verdict, Verdict::Ok, "{f:?}");
    assert!(f.detail.contains("v1 (hybrid)"), "{f:?}");

    // Enabled but not mounted is as good as absent.
    t.file("proc/self/cgroup", SELF_CGROUP_V1);
    assert_eq!(kernel::cgroups(t.root(), "5.10.0").verdict, Verdict::Fail);
}

#[test]
fn no_cgroups_at_all_fails() {
    let t = Tree::new("cgnone");
    let f = kernel::cgroups(t.root(), "6.1.0");
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
}

#[test]
fn namespaces_are_read_from_proc_self_ns() {
    let t = Tree::new("ns");
    for ns in ["mnt", "uts", "ipc", "pid"] {
        t.file(&format!("proc/self/ns/{ns}"), "");
    }
    let f = kernel::namespaces(t.root());
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("net"), "{f:?}");
    t.file("proc/self/ns/net", "");
    assert_eq!(kernel::namespaces(t.root()).verdict, Verdict::Ok);
}

/// A Debian-like kernel: module lists under /lib/modules and the config under /boot.
fn debian_kernel(t: &Tree, release: &str) {
    t.file(
        &format!("lib/modules/{release}/modules.dep"),
        "kernel/drivers/net/veth.ko.xz:\n\
         kernel/net/bridge/bridge.ko.xz: kernel/net/802/stp.ko.xz kernel/net/llc/llc.ko.xz\n\
         kernel/fs/overlayfs/overlay.ko.xz:\n\
         kernel/net/netfilter/ipvs/ip_vs.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n\
         kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko.xz\n\
         kernel/net/netfilter/nf_conntrack.ko.xz:\n\
         kernel/net/netfilter/nf_tables.ko.xz:\n\
         kernel/net/netfilter/nft_masq.ko.xz: kernel/net/netfilter/nf_tables.ko.xz\n\
         kernel/net/netfilter/nft_ct.ko.xz: kernel/net/netfilter/nf_tables.ko.xz\n\
         kernel/net/netfilter/nft_reject.ko.xz: kernel/net/netfilter/nf_tables.ko.xz\n",
    )
    .file(
        &format!("lib/modules/{release}/modules.builtin"),
        "kernel/drivers/net/dummy.ko\nkernel/fs/ext4/ext4.ko\n",
    )
    .file(
        "proc/modules",
        "bridge 311296 0 - Live 0x0000000000000000\nstp 16384 1 bridge, Live 0x0\n",
    )
    .file("proc/filesystems", "nodev\tsysfs\nnodev\ttmpfs\n\text4\n");
}

#[test]
fn modules_are_loaded_built_in_installed_or_absent() {
    let t = Tree::new("mods");
    debian_kernel(&t, "6.1.0-18-arm64");
    let e = Evidence::read(t.root(), "6.1.0-18-arm64");
    assert_eq!(e.presence("bridge", "BRIDGE"), Presence::Loaded);
    assert_eq!(e.presence("dummy", "DUMMY"), Presence::BuiltIn);
    assert_eq!(e.presence("veth", "VETH"), Presence::Module);
    assert_eq!(e.presence("ip_vs_wrr", "IP_VS_WRR"), Presence::Absent);

    assert_eq!(kernel::cni_modules(&e).verdict, Verdict::Ok);
    // overlay is not in /proc/filesystems yet, but installed: the first mount loads it.
    assert_eq!(kernel::overlayfs(&e).verdict, Verdict::Ok);
    assert_eq!(
        kernel::proxy_modules(ProxyMode::Ipvs, &e).verdict,
        Verdict::Ok
    );
    assert_eq!(
        kernel::proxy_modules(ProxyMode::Disabled, &e).verdict,
        Verdict::Skip
    );
}

#[test]
fn ipvs_mode_without_ip_vs_fails_and_names_the_module() {
    let t = Tree::new("noipvs");
    t.file(
        "lib/modules/5.15.0/modules.dep",
        "kernel/drivers/net/veth.ko:\n",
    )
    .file(
        "lib/modules/5.15.0/modules.builtin",
        "kernel/net/bridge/bridge.ko\n",
    );
    let e = Evidence::read(t.root(), "5.15.0");
    let f = kernel::proxy_modules(ProxyMode::Ipvs, &e);
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    assert!(f.detail.contains("ip_vs ("), "{f:?}");
    assert!(f.fix.contains("--proxy-mode none"), "{f:?}");
    // No packet filter for the bridge plugin's NAT: a warning, not a failure.
    let f = kernel::cni_modules(&e);
    assert_eq!(f.verdict, Verdict::Warn, "{f:?}");
    assert!(f.detail.contains("ipMasq"), "{f:?}");
    // Neither overlay in /proc/filesystems nor a module: containerd's snapshotter cannot work.
    assert_eq!(kernel::overlayfs(&e).verdict, Verdict::Fail);
}

#[test]
fn the_kernel_config_answers_when_module_lists_are_missing() {
    let t = Tree::new("kcfg");
    t.file(
        "boot/config-6.6.31+rpt-rpi-v8",
        "CONFIG_VETH=m\nCONFIG_BRIDGE=y\n# CONFIG_IP_VS is not set\nCONFIG_NF_TABLES=m\n",
    );
    let e = Evidence::read(t.root(), "6.6.31+rpt-rpi-v8");
    assert_eq!(e.presence("veth", "VETH"), Presence::Module);
    assert_eq!(e.presence("bridge", "BRIDGE"), Presence::BuiltIn);
    assert_eq!(e.presence("ip_vs", "IP_VS"), Presence::Absent);
    assert_eq!(kernel::cni_modules(&e).verdict, Verdict::Ok);
    // Nothing at all to go by: a warning that says how to find out.
    let empty = Evidence::read(Tree::new("knone").root(), "6.1.0");
    let f = kernel::cni_modules(&empty);
    assert_eq!(f.verdict, Verdict::Warn, "{f:?}");
    assert!(f.fix.contains("modprobe veth bridge"), "{f:?}");
}

#[test]
fn cni_config_is_found_in_the_runtimes_dir() {
    let t = Tree::new("cni");
    let dir = t.root().join("etc/cni/net.d");
    assert_eq!(host::cni_config(&dir).verdict, Verdict::Warn);
    t.dir("etc/cni/net.d").file("etc/cni/net.d/README", "");
    assert_eq!(host::cni_config(&dir).verdict, Verdict::Warn);
    t.file("etc/cni/net.d/20-b.conf", "{}")
        .file("etc/cni/net.d/10-a.conflist", "{}");
    let f = host::cni_config(&dir);
    assert_eq!(f.verdict, Verdict::Ok);
    // containerd loads the lexically first config.
    assert!(f.detail.contains("10-a.conflist"), "{f:?}");
}

#[test]
fn clock_before_the_build_year_fails() {
    // 2026-06-01T00:00:00Z and 1970 (a Pi without RTC before NTP).
    let june_2026 = 1_780_272_000;
    assert_eq!(host::year_of(june_2026), 2026);
    assert_eq!(host::year_of(0), 1970);
    assert_eq!(host::year_of(951_782_400), 2000); // 2000-02-29
    assert_eq!(host::year_of(1_704_067_199), 2023); // 2023-12-31T23:59:59Z
    assert_eq!(host::year_of(1_704_067_200), 2024);
    let f = host::clock(0, 2026, None);
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.fix.contains("timedatectl"), "{f:?}");
    assert_eq!(
        host::clock(june_2026, 2026, Some(true)).verdict,
        Verdict::Ok
    );
    assert_eq!(
        host::clock(june_2026, 2026, Some(false)).verdict,
        Verdict::Warn
    );
    assert_eq!(host::clock(june_2026, 2026, None).verdict, Verdict::Ok);
}

#[test]
fn ntp_state_comes_from_timesyncd() {
    let t = Tree::new("ntp");
    assert_eq!(host::ntp_synchronised(t.root()), None);
    t.dir("run/systemd/timesync");
    assert_eq!(host::ntp_synchronised(t.root()), Some(false));
    t.file("run/systemd/timesync/synchronized", "");
    assert_eq!(host::ntp_synchronised(t.root()), Some(true));
}

fn stats(total_mib: u64, free_mib: u64, inodes: u64, inodes_free: u64) -> FsStats {
    FsStats {
        bytes_total: total_mib << 20,
        bytes_available: free_mib << 20,
        inodes_total: inodes,
        inodes_free,
    }
}

#[test]
fn disk_space_and_inodes_against_the_eviction_thresholds() {
    let cfg = AgentConfig::default(); // nodefs 10%, imagefs 15%, inodes 5%
    let dir = Path::new("/var/lib/tinylet");
    let at = |s| Some((dir.to_path_buf(), s));
    let f = host::disk("disk.root-dir", dir, at(stats(1000, 500, 1000, 900)), &cfg);
    assert_eq!(f.verdict, Verdict::Ok, "{f:?}");
    let f = host::disk("disk.root-dir", dir, at(stats(1000, 50, 1000, 900)), &cfg);
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    // Within 5% of capacity of the threshold.
    let f = host::disk("disk.root-dir", dir, at(stats(1000, 120, 1000, 900)), &cfg);
    assert_eq!(f.verdict, Verdict::Warn, "{f:?}");
    // imagefs has its own (higher) threshold.
    let f = host::disk("disk.image-fs", dir, at(stats(1000, 120, 1000, 900)), &cfg);
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    // Out of inodes with space left.
    let f = host::disk("disk.root-dir", dir, at(stats(1000, 500, 1000, 10)), &cfg);
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    // No inode counts (btrfs): judged on space alone.
    let f = host::disk("disk.root-dir", dir, at(stats(1000, 500, 0, 0)), &cfg);
    assert_eq!(f.verdict, Verdict::Ok, "{f:?}");
    assert_eq!(
        host::disk("disk.root-dir", dir, None, &cfg).verdict,
        Verdict::Fail
    );
    // A root dir that does not exist yet is measured at its parent, and says so.
    let f = host::disk(
        "disk.root-dir",
        dir,
        Some((PathBuf::from("/var/lib"), stats(1000, 500, 1000, 900))),
        &cfg,
    );
    assert!(f.detail.contains("measured at /var/lib"), "{f:?}");
}

#[test]
fn statvfs_measures_the_nearest_existing_ancestor() {
    let t = Tree::new("statvfs");
    let (at, s) = host::statvfs(&t.root().join("not/yet")).unwrap();
    assert_eq!(at, t.root());
    assert!(s.bytes_total > 0);
}

fn board_config(board: &str) -> AgentConfig {
    let flags = FlagOverrides {
        board: Some(board.into()),
        ..FlagOverrides::default()
    };
    config::resolve_from(&flags, None).unwrap().config
}

#[test]
fn memory_against_the_boards_reservations() {
    // raspberry-pi-3: systemReserved 128Mi + kubeReserved 64Mi + eviction 64Mi = 256 MiB.
    let cfg = board_config("raspberry-pi-3");
    let pi3 = "MemTotal:         948304 kB\nMemFree: 100 kB\nMemAvailable:     612000 kB\n";
    let f = host::memory(pi3, &cfg);
    assert_eq!(f.verdict, Verdict::Ok, "{f:?}");
    assert!(f.detail.contains("reserves 256 MiB"), "{f:?}");
    // A 256 MB board under the same profile has nothing left for pods.
    let tiny = "MemTotal: 262144 kB\nMemAvailable: 200000 kB\n";
    let f = host::memory(tiny, &cfg);
    assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
    assert!(f.fix.contains("--board"), "{f:?}");
    // Under the eviction threshold right now.
    let busy = "MemTotal: 948304 kB\nMemAvailable: 30000 kB\n";
    assert_eq!(host::memory(busy, &cfg).verdict, Verdict::Warn);
    assert_eq!(host::memory("", &cfg).verdict, Verdict::Warn);
}

#[test]
fn node_names_must_be_dns_1123_subdomains() {
    // Node names are validated as DNS-1123 subdomains (ValidateNodeName upstream).
    for ok in ["pi-0042", "gw.site-3.example", "a", "0"] {
        assert_eq!(host::node_name(ok).verdict, Verdict::Ok, "{ok}");
    }
    for bad in [
        "",
        "Pi_4",
        "-pi",
        "pi-",
        "a..b",
        "pi 4",
        &"a".repeat(64),
        &"a.".repeat(127),
    ] {
        let f = host::node_name(bad);
        assert_eq!(f.verdict, Verdict::Fail, "{bad:?}");
        assert!(f.fix.contains("hostname"), "{f:?}");
    }
}

fn status(config: serde_json::Value, network_ready: bool) -> StatusResponse {
    let cond = |t: &str, s: bool| RuntimeCondition {
        condition_type: t.into(),
        status: s,
        reason: if s {
            String::new()
        } else {
            "NetworkPluginNotReady".into()
        },
        message: if s {
            String::new()
        } else {
            "cni config uninitialized".into()
        },
    };
    let mut info = BTreeMap::new();
    info.insert("config".to_string(), config.to_string());
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![
                cond("RuntimeReady", true),
                cond("NetworkReady", network_ready),
            ],
        }),
        info,
    }
}

fn version() -> Result<VersionResponse, String> {
    Ok(VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "containerd".into(),
        runtime_version: "1.6.20~ds1".into(),
        runtime_api_version: "v1".into(),
    })
}

fn verdicts(findings: &[Finding]) -> Vec<(&'static str, Verdict)> {
    findings.iter().map(|f| (f.check, f.verdict)).collect()
}

#[test]
fn a_compatible_containerd_passes_every_runtime_check() {
    let s = status(
        serde_json::json!({
            "containerd": {"defaultRuntimeName": "runc",
                           "runtimes": {"runc": {"options": {"SystemdCgroup": false}}}},
            "cni": {"confDir": "/etc/cni/net.d"},
            "sandboxImage": "registry.k8s.io/pause:3.6",
            "streamServerAddress": "127.0.0.1",
            "streamServerPort": "0",
            "containerdRootDir": "/var/lib/containerd",
        }),
        true,
    );
    let f = runtime::check(
        "unix:///c.sock",
        &version(),
        Ok(&s),
        Some(&Ok(true)),
        CgroupDriver::Cgroupfs,
    );
    assert!(f.iter().all(|f| f.verdict == Verdict::Ok), "{f:#?}");
    assert_eq!(f.len(), 5);
    assert_eq!(
        runtime::cni_conf_dir(&s),
        Some(PathBuf::from("/etc/cni/net.d"))
    );
    assert_eq!(
        runtime::containerd_root(&s),
        Some(PathBuf::from("/var/lib/containerd"))
    );
    assert_eq!(
        runtime::sandbox_image(&s).as_deref(),
        Some("registry.k8s.io/pause:3.6")
    );
}

#[test]
fn an_incompatible_containerd_is_named_check_by_check() {
    // Debian's containerd out of the box: systemd cgroups in a kubeadm-style config, stream
    // server on every address, pause image not pulled, no CNI config yet.
    let s = status(
        serde_json::json!({
            "containerd": {"defaultRuntimeName": "runc",
                           "runtimes": {"runc": {"options": {"SystemdCgroup": true}}}},
            "sandboxImage": "registry.k8s.io/pause:3.6",
            "streamServerAddress": "",
            "streamServerPort": "10010",
        }),
        false,
    );
    let f = runtime::check(
        "unix:///c.sock",
        &version(),
        Ok(&s),
        Some(&Ok(false)),
        CgroupDriver::Cgroupfs,
    );
    assert_eq!(
        verdicts(&f),
        vec![
            ("runtime.cri", Verdict::Ok),
            ("runtime.status", Verdict::Warn),
            ("runtime.cgroup-driver", Verdict::Fail),
            ("runtime.sandbox-image", Verdict::Warn),
            ("runtime.stream-server", Verdict::Warn),
        ]
    );
    assert!(f[2].fix.contains("SystemdCgroup = false"), "{:?}", f[2]);
    assert!(f[3].fix.contains("ctr -n k8s.io images"), "{:?}", f[3]);
    assert!(f[4].fix.contains("127.0.0.1"), "{:?}", f[4]);
    // The legacy top-level switch means the same.
    let legacy = serde_json::json!({"systemdCgroup": true});
    assert!(runtime::uses_systemd_cgroup(&legacy));
}

#[test]
fn an_unreachable_runtime_fails_once_and_stops_there() {
    let err: Result<VersionResponse, String> =
        Err("connect unix:///nope.sock: No such file or directory".into());
    let not_asked = "not asked".to_string();
    let f = runtime::check(
        "unix:///nope.sock",
        &err,
        Err(&not_asked),
        None,
        CgroupDriver::Cgroupfs,
    );
    assert_eq!(verdicts(&f), vec![("runtime.cri", Verdict::Fail)]);
    assert!(f[0].detail.contains("/nope.sock"), "{f:?}");
    // A runtime without a config in its verbose status: the config checks are a warning.
    let bare = StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![
                RuntimeCondition {
                    condition_type: "RuntimeReady".into(),
                    status: true,
                    ..Default::default()
                },
                RuntimeCondition {
                    condition_type: "NetworkReady".into(),
                    status: true,
                    ..Default::default()
                },
            ],
        }),
        info: BTreeMap::new(),
    };
    let f = runtime::check(
        "unix:///c.sock",
        &version(),
        Ok(&bare),
        None,
        CgroupDriver::Cgroupfs,
    );
    assert_eq!(
        f.last().map(|f| (f.check, f.verdict)),
        Some(("runtime.config", Verdict::Warn))
    );
}

fn api_error(code: Option<u16>) -> ApiError {
    let kind = match code {
        Some(code) => ApiErrorKind::Status {
            code,
            reason: "Unauthorized".into(),
            message: "nope".into(),
        },
        None => ApiErrorKind::Transport("connection refused".into()),
    };
    ApiError::new("GET", "/version", kind)
}

#[test]
fn api_server_verdicts() {
    let p = Path::new("/etc/tinylet/kubeconfig");
    let server = "https://10.0.0.1:6443";
    let version = || Ok(serde_json::json!({"gitVersion": "v1.32.0"}));
    let review = serde_json::json!({"status": {"userInfo": {"username": "system:node:pi-1"}}});
    let f = apiserver::judge("kubeconfig", server, p, version(), Some(Ok(review)));
    assert_eq!(f.verdict, Verdict::Ok);
    assert!(
        f.detail.contains("system:node:pi-1") && f.detail.contains("v1.32.0"),
        "{f:?}"
    );
    let f = apiserver::judge("kubeconfig", server, p, Err(api_error(None)), None);
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.fix.contains("certificate-authority-data"), "{f:?}");
    let f = apiserver::judge("kubeconfig", server, p, Err(api_error(Some(401))), None);
    assert_eq!(f.verdict, Verdict::Fail);
    let f = apiserver::judge(
        "kubeconfig",
        server,
        p,
        version(),
        Some(Err(api_error(Some(401)))),
    );
    assert_eq!(f.verdict, Verdict::Fail);
    // An old server without SelfSubjectReview: reachable, identity unconfirmed.
    let f = apiserver::judge(
        "kubeconfig",
        server,
        p,
        version(),
        Some(Err(api_error(Some(404)))),
    );
    assert_eq!(f.verdict, Verdict::Ok);
    let f = apiserver::judge("kubeconfig", server, p, Err(api_error(Some(500))), None);
    assert_eq!(f.verdict, Verdict::Warn);
}

#[test]
fn a_standalone_node_skips_the_api_server_and_a_missing_kubeconfig_fails() {
    let mut cfg = AgentConfig::default();
    assert_eq!(apiserver::check(&cfg).verdict, Verdict::Skip);
    cfg.kubeconfig = Some(PathBuf::from("/nonexistent/tinylet-doctor/kubeconfig"));
    let f = apiserver::check(&cfg);
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(f.detail.contains("does not exist"), "{f:?}");
}

fn report(checks: Vec<Finding>) -> Report {
    Report {
        node: "pi-1".into(),
        board: "raspberry-pi-4".into(),
        config_file: None,
        container_runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
        root_dir: PathBuf::from("/var/lib/tinylet"),
        checks,
        elapsed_ms: 12,
    }
}

#[test]
fn report_exit_code_table_and_json() {
    let ok = report(vec![
        Finding::ok("kernel.version", "kernel 6.1.0"),
        Finding::warn("clock", "not synchronised", "enable NTP"),
        Finding::skip("apiserver", "standalone node"),
    ]);
    assert_eq!(ok.exit_code(), 0);
    let table = ok.to_table();
    assert!(table.contains("warn  clock"), "{table}");
    assert!(table.contains("fix: enable NTP"), "{table}");
    assert!(table.contains("this node can run pods"), "{table}");

    let bad = report(vec![
        Finding::ok("kernel.version", "kernel 6.1.0"),
        Finding::fail("runtime.cri", "no answer", "start containerd"),
    ]);
    assert_eq!(bad.exit_code(), 1);
    assert!(bad.to_table().contains("FAIL  runtime.cri"));
    let v: serde_json::Value = serde_json::from_str(&bad.to_json()).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["summary"]["fail"], 1);
    assert_eq!(v["checks"][1]["check"], "runtime.cri");
    assert_eq!(v["checks"][1]["verdict"], "fail");
    assert_eq!(v["checks"][1]["fix"], "start containerd");
    assert_eq!(v["board"], "raspberry-pi-4");
    // An ok finding has no fix key at all.
    assert!(v["checks"][0].get("fix").is_none());
}
