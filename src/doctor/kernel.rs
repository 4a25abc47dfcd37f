//! Kernel checks: version, namespaces, cgroup controllers, overlayfs, and the modules CNI and the
//! service proxy need. Every function reads only below the injected root (`/proc`, `/sys`,
//! `/lib/modules`, `/boot`), so tests run them over fake trees.
//!
//! A module counts as present when it is loaded (`/proc/modules`, `/sys/module`), built in
//! (`modules.builtin`, `=y` in the kernel config) or installed as a loadable module
//! (`modules.dep`, `=m`): every module named here is loaded on demand by the kernel itself
//! (netlink link kinds, the overlay mount, the IPVS generic netlink family and its schedulers).
//! `/proc/config.gz` is compressed and not read; Debian and Raspberry Pi OS kernels ship their
//! config as `/boot/config-RELEASE`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::Finding;
use crate::config::ProxyMode;

/// The kernel release (`uname -r`), from `/proc/sys/kernel/osrelease`.
pub fn release(root: &Path) -> String {
    fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Major and minor version of a release string such as `6.1.0-18-arm64`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The oldest kernel Kubernetes' node validator accepts (kubeadm preflight's KernelSpec: 3.10+).
const MIN_KERNEL: (u32, u32) = (3, 10);
/// Kubernetes' documented minimum for cgroup v2 nodes.
const MIN_KERNEL_CGROUP2: (u32, u32) = (5, 8);

/// Kernel version against the oldest one containers run on.
pub fn version(release: &str) -> Finding {
    const CHECK: &str = "kernel.version";
    match parse_release(release) {
        None => Finding::warn(
            CHECK,
            format!("cannot read the kernel release ({release:?} in /proc/sys/kernel/osrelease)"),
            "check that /proc is mounted",
        ),
        Some(v) if v < MIN_KERNEL => Finding::fail(
            CHECK,
            format!(
                "kernel {release} is older than {}.{}",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
            "install a current kernel (Debian bookworm ships 6.1)",
        ),
        Some(_) => Finding::ok(CHECK, format!("kernel {release}")),
    }
}

/// The namespaces every pod sandbox needs.
pub fn namespaces(root: &Path) -> Finding {
    const CHECK: &str = "kernel.namespaces";
    let missing: Vec<&str> = ["mnt", "uts", "ipc", "pid", "net"]
        .into_iter()
        .filter(|ns| fs::symlink_metadata(root.join("proc/self/ns").join(ns)).is_err())
        .collect();
    if missing.is_empty() {
        Finding::ok(CHECK, "mnt, uts, ipc, pid and net namespaces")
    } else {
        Finding::fail(
            CHECK,
            format!("missing namespaces: {}", missing.join(", ")),
            "use a kernel built with CONFIG_NAMESPACES and the missing CONFIG_*_NS options",
        )
    }
}

/// The cgroup hierarchy in use and whether the controllers pods need are enabled and mounted.
pub fn cgroups(root: &Path, release: &str) -> Finding {
    const CHECK: &str = "kernel.cgroups";
    let cmdline = fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    let unified = fs::read_to_string(root.join("sys/fs/cgroup/cgroup.controllers")).ok();
    let self_cgroup = fs::read_to_string(root.join("proc/self/cgroup")).unwrap_or_default();
    let (mode, available, required): (&str, BTreeSet<String>, &[&str]) = match &unified {
        Some(text) => (
            "v2 (unified)",
            text.split_whitespace().map(str::to_string).collect(),
            &["cpu", "memory", "pids"],
        ),
        None => {
            let table = fs::read_to_string(root.join("proc/cgroups")).unwrap_or_default();
            let mounted = v1_mounted(&self_cgroup);
            let enabled: BTreeSet<String> = v1_enabled(&table)
                .into_iter()
                .filter(|c| mounted.contains(c))
                .collect();
            let mode = if self_cgroup.lines().any(|l| l.starts_with("0::")) {
                "v1 (hybrid)"
            } else {
                "v1"
            };
            (
                mode,
                enabled,
                &["cpu", "cpuacct", "memory", "pids", "devices"],
            )
        }
    };
    if unified.is_none() && available.is_empty() && self_cgroup.is_empty() {
        return Finding::fail(
            CHECK,
            "no cgroup hierarchy found (no /sys/fs/cgroup/cgroup.controllers, no /proc/self/cgroup)",
            "mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)",
        );
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !available.contains(*c))
        .collect();
    if !missing.is_empty() {
        let disabled_on_cmdline = cmdline
            .split_whitespace()
            .any(|w| w.starts_with("cgroup_disable=") && w.contains("memory"));
        let fix = if missing.contains(&"memory") {
            format!(
                "add `cgroup_enable=memory cgroup_memory=1` to the kernel command line \
                 (/boot/firmware/cmdline.txt on Raspberry Pi OS bookworm, /boot/cmdline.txt \
                 before){} and reboot",
                if disabled_on_cmdline {
                    ", remove `cgroup_disable=memory`"
                } else {
                    ""
                }
            )
        } else {
            "enable the missing controllers in the kernel (CONFIG_CGROUP_*, CONFIG_MEMCG) and \
             reboot"
                .to_string()
        };
        return Finding::fail(
            CHECK,
            format!(
                "cgroup {mode}: controllers {} not available",
                missing.join(", ")
            ),
            fix,
        );
    }
    let list: Vec<&str> = available.iter().map(String::as_str).collect();
    let detail = format!("cgroup {mode}: {}", list.join(" "));
    match parse_release(release) {
        Some(v) if unified.is_some() && v < MIN_KERNEL_CGROUP2 => Finding::warn(
            CHECK,
            format!("{detail}; kernel {release} is older than 5.8"),
            "use kernel 5.8 or newer with cgroup v2 (Kubernetes' minimum for v2 nodes)",
        ),
        _ => Finding::ok(CHECK, detail),
    }
}

/// Enabled cgroup v1 controllers from `/proc/cgroups` (`name hierarchy count enabled`).
pub fn v1_enabled(table: &str) -> BTreeSet<String> {
    table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

/// Controllers with a v1 hierarchy this process is in (`N:cpu,cpuacct:/path` lines).
pub fn v1_mounted(self_cgroup: &str) -> BTreeSet<String> {
    self_cgroup
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .flat_map(|names| names.split(','))
        .filter(|n| !n.is_empty() && !n.starts_with("name="))
        .map(str::to_string)
        .collect()
}

/// Whether a kernel feature is there, as far as the files tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Loaded now (or built in with a /sys/module entry).
    Loaded,
    /// Compiled into the kernel.
    BuiltIn,
    /// Installed as a module, loaded on first use.
    Module,
    /// The kernel's module lists or config say it is not there.
    Absent,
    /// Nothing to tell either way (no module lists, no config).
    Unknown,
}

impl Presence {
    fn usable(self) -> bool {
        matches!(
            self,
            Presence::Loaded | Presence::BuiltIn | Presence::Module
        )
    }
}

/// What the kernel's files say about its modules and config.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// `/proc/modules` and `/sys/module` names (underscores).
    pub loaded: BTreeSet<String>,
    /// `modules.builtin` names, when the file exists.
    pub builtin: Option<BTreeSet<String>>,
    /// `modules.dep` names, when the file exists.
    pub installed: Option<BTreeSet<String>>,
    /// `CONFIG_X` → `y`/`m` from `/boot/config-RELEASE`, when it exists.
    pub config: Option<BTreeMap<String, String>>,
    /// `/proc/filesystems` names.
    pub filesystems: BTreeSet<String>,
}

impl Evidence {
    /// Reads the evidence below `root` for kernel `release`.
    pub fn read(root: &Path, release: &str) -> Evidence {
        let text = |p: &str| fs::read_to_string(root.join(p)).ok();
        let mut loaded: BTreeSet<String> = text("proc/modules")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(normalise)
            .collect();
        if let Ok(dir) = fs::read_dir(root.join("sys/module")) {
            loaded.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .map(|n| normalise(&n)),
            );
        }
        let modules_dir = format!("lib/modules/{release}");
        let names = |t: String| -> BTreeSet<String> {
            t.lines()
                .filter_map(|l| l.split(':').next())
                .filter_map(module_name)
                .collect()
        };
        Evidence {
            loaded,
            builtin: text(&format!("{modules_dir}/modules.builtin")).map(names),
            installed: text(&format!("{modules_dir}/modules.dep")).map(names),
            config: text(&format!("boot/config-{release}")).map(|t| parse_config(&t)),
            filesystems: text("proc/filesystems")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().last())
                .map(str::to_string)
                .collect(),
        }
    }

    /// Whether module `module` (config symbol `CONFIG_<symbol>`) is there.
    pub fn presence(&self, module: &str, symbol: &str) -> Presence {
        let module = normalise(module);
        if self.loaded.contains(&module) {
            return Presence::Loaded;
        }
        if self.builtin.as_ref().is_some_and(|b| b.contains(&module)) {
            return Presence::BuiltIn;
        }
        if self.installed.as_ref().is_some_and(|m| m.contains(&module)) {
            return Presence::Module;
        }
        if let Some(cfg) = &self.config {
            return match cfg.get(symbol).map(String::as_str) {
                Some("y") => Presence::BuiltIn,
                Some("m") if self.installed.is_none() => Presence::Module,
                _ => Presence::Absent,
            };
        }
        if self.builtin.is_some() && self.installed.is_some() {
            return Presence::Absent;
        }
        Presence::Unknown
    }
}

/// Module names use `_` where files may use `-`.
fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/net/bridge/bridge.ko.xz` → `bridge`.
fn module_name(path: &str) -> Option<String> {
    let file = path.trim().rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (!stem.is_empty() && file.contains(".ko")).then(|| normalise(stem))
}

/// `CONFIG_X=y|m` lines of a kernel config (the `CONFIG_` prefix dropped).
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("CONFIG_")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Checks a list of (module, config symbol, why) and folds it into one finding.
fn modules(
    check: &'static str,
    evidence: &Evidence,
    wanted: &[(&str, &str, &str)],
    fix: &str,
) -> Finding {
    let mut absent = Vec::new();
    let mut unknown = Vec::new();
    let mut seen = Vec::new();
    for (module, symbol, why) in wanted {
        match evidence.presence(module, symbol) {
            Presence::Absent => absent.push(format!("{module} ({why})")),
            Presence::Unknown => unknown.push(*module),
            p if p.usable() => seen.push(format!("{module} {}", presence_word(p))),
            _ => unknown.push(*module),
        }
    }
    if !absent.is_empty() {
        return Finding::fail(check, format!("missing: {}", absent.join(", ")), fix);
    }
    if !unknown.is_empty() {
        return Finding::warn(
            check,
            format!(
                "cannot tell whether {} {} available (no modules.dep, modules.builtin or \
                 /boot/config for this kernel)",
                unknown.join(", "),
                if unknown.len() == 1 { "is" } else { "are" }
            ),
            format!("load them to be sure: modprobe {}", unknown.join(" ")),
        );
    }
    Finding::ok(check, seen.join(", "))
}

fn presence_word(p: Presence) -> &'static str {
    match p {
        Presence::Loaded => "loaded",
        Presence::BuiltIn => "built in",
        Presence::Module => "module",
        Presence::Absent => "absent",
        Presence::Unknown => "unknown",
    }
}

/// overlayfs, the snapshotter containerd uses by default.
pub fn overlayfs(evidence: &Evidence) -> Finding {
    const CHECK: &str = "kernel.overlayfs";
    if evidence.filesystems.contains("overlay") {
        return Finding::ok(CHECK, "overlay in /proc/filesystems");
    }
    modules(
        CHECK,
        evidence,
        &[(
            "overlay",
            "OVERLAY_FS",
            "containerd's overlayfs snapshotter",
        )],
        "use a kernel with CONFIG_OVERLAY_FS, or set snapshotter = \"native\" in containerd's \
         CRI config (slower, more flash written)",
    )
}

/// veth and bridge for the CNI bridge plugin; a packet filter for its outbound NAT.
pub fn cni_modules(evidence: &Evidence) -> Finding {
    const CHECK: &str = "kernel.cni";
    let required = modules(
        CHECK,
        evidence,
        &[
            ("veth", "VETH", "pod network interfaces"),
            ("bridge", "BRIDGE", "the CNI bridge plugin"),
        ],
        "use a kernel with CONFIG_VETH and CONFIG_BRIDGE (Debian's and Raspberry Pi OS's have \
         them as modules: install linux-modules for the running kernel)",
    );
    if required.verdict != super::Verdict::Ok {
        return required;
    }
    let nat = [("nf_tables", "NF_TABLES"), ("ip_tables", "IP_NF_IPTABLES")]
        .iter()
        .any(|(m, s)| evidence.presence(m, s).usable());
    if nat {
        return Finding::ok(
            CHECK,
            format!("{}; nf_tables or ip_tables", required.detail),
        );
    }
    Finding::warn(
        CHECK,
        format!(
            "{}; neither nf_tables nor ip_tables found: the bridge plugin's ipMasq cannot NAT \
             pod traffic leaving the node",
            required.detail
        ),
        "use a kernel with CONFIG_NF_TABLES (Debian's iptables uses it), or turn ipMasq off",
    )
}

/// What the chosen proxy mode needs from the kernel.
pub fn proxy_modules(mode: ProxyMode, evidence: &Evidence) -> Finding {
    const CHECK: &str = "kernel.proxy";
    match mode {
        ProxyMode::Disabled => {
            Finding::skip(CHECK, "proxy mode none: no service proxy modules needed")
        }
        ProxyMode::Ipvs => modules(
            CHECK,
            evidence,
            &[
                ("ip_vs", "IP_VS", "IPVS virtual servers"),
                ("ip_vs_rr", "IP_VS_RR", "the round-robin scheduler"),
                ("nf_conntrack", "NF_CONNTRACK", "IPVS NAT"),
                (
                    "dummy",
                    "DUMMY",
                    "the kube-ipvs0 interface holding service addresses",
                ),
                // The masquerading half of IPVS mode is a nf_tables table of its own.
                ("nf_tables", "NF_TABLES", "the masquerading table"),
                (
                    "nft_masq",
                    "NFT_MASQ",
                    "masquerading NodePort and hairpin traffic",
                ),
                (
                    "nft_ct",
                    "NFT_CT",
                    "new connections to kube-ipvs0 addresses",
                ),
                (
                    "nft_reject",
                    "NFT_REJECT",
                    "refusing other ports on service addresses",
                ),
            ],
            "use a kernel with CONFIG_IP_VS, CONFIG_IP_VS_RR, CONFIG_NF_CONNTRACK, \
             CONFIG_DUMMY, CONFIG_NF_TABLES, CONFIG_NFT_MASQ, CONFIG_NFT_CT and \
             CONFIG_NFT_REJECT, or run with --proxy-mode none",
        ),
        ProxyMode::Nftables => modules(
            CHECK,
            evidence,
            &[
                ("nf_tables", "NF_TABLES", "nf_tables itself"),
                ("nft_nat", "NFT_NAT", "DNAT to endpoints"),
                ("nft_masq", "NFT_MASQ", "masquerading"),
                ("nft_numgen", "NFT_NUMGEN", "random spread over endpoints"),
                ("nft_ct", "NFT_CT", "connection tracking state"),
                (
                    "nft_reject",
                    "NFT_REJECT",
                    "refusing services without endpoints",
                ),
            ],
            "use a kernel with CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, \
             CONFIG_NFT_NUMGEN, CONFIG_NFT_CT and CONFIG_NFT_REJECT, or run with \
             --proxy-mode ipvs",
        ),
    }
}
