//! Host checks: CNI config, clock, free space and inodes, memory against the reservations, the
//! node name. The decisions take numbers and texts; reading them (statvfs, files below the
//! injected root) is the few lines around them.

use std::fs;
use std::path::{Path, PathBuf};

use super::Finding;
use crate::config::{AgentConfig, EvictionThreshold};

/// CNI network configs in `dir` (`*.conf`, `*.conflist`, `*.json`), sorted as containerd reads
/// them: the first one is the pod network.
pub fn cni_configs(dir: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            [".conf", ".conflist", ".json"]
                .iter()
                .any(|ext| n.ends_with(ext))
        })
        .collect();
    names.sort();
    Some(names)
}

/// A CNI config is there, so pods other than hostNetwork ones get a network.
pub fn cni_config(dir: &Path) -> Finding {
    const CHECK: &str = "cni.config";
    let fix = format!(
        "install containernetworking-plugins and put a bridge + host-local conflist in {} \
         (the tinylet package ships one as an example)",
        dir.display()
    );
    match cni_configs(dir) {
        None => Finding::warn(
            CHECK,
            format!(
                "{} does not exist: only hostNetwork pods can run",
                dir.display()
            ),
            fix,
        ),
        Some(names) if names.is_empty() => Finding::warn(
            CHECK,
            format!(
                "no network config in {}: only hostNetwork pods can run",
                dir.display()
            ),
            fix,
        ),
        Some(names) => Finding::ok(
            CHECK,
            format!("{} (pod network from {})", dir.display(), names[0]),
        ),
    }
}

/// systemd-timesyncd's view: synchronised, waiting, or not in use (`None`).
pub fn ntp_synchronised(root: &Path) -> Option<bool> {
    let dir = root.join("run/systemd/timesync");
    if dir.join("synchronized").exists() {
        Some(true)
    } else if dir.is_dir() {
        Some(false)
    } else {
        None
    }
}

/// The civil year of a Unix time in seconds (proleptic Gregorian, UTC).
pub fn year_of(unix_secs: u64) -> i64 {
    // Days to civil date (H. Hinnant's algorithm, public domain description).
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// The clock is not before the code it runs (certificates would not be valid yet) and, when
/// systemd-timesyncd is in use, synchronised.
pub fn clock(now_secs: u64, build_year: i64, ntp: Option<bool>) -> Finding {
    const CHECK: &str = "clock";
    let year = year_of(now_secs);
    if year < build_year {
        return Finding::fail(
            CHECK,
            format!("the clock says {year}, before this build ({build_year}): TLS certificates are not yet valid"),
            "set the time (a Raspberry Pi has no RTC battery: enable NTP with \
             `timedatectl set-ntp true` and open UDP 123)",
        );
    }
    match ntp {
        Some(true) => Finding::ok(CHECK, format!("{year}, synchronised by systemd-timesyncd")),
        Some(false) => Finding::warn(
            CHECK,
            format!("{year}, systemd-timesyncd has not synchronised yet"),
            "check `timedatectl timesync-status`; the NTP server must be reachable on UDP 123",
        ),
        None => Finding::ok(
            CHECK,
            format!("{year} (synchronisation state not known: systemd-timesyncd not in use)"),
        ),
    }
}

/// Sizes of one filesystem, from statvfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub bytes_total: u64,
    pub bytes_available: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// statvfs of `dir` or, when it does not exist yet (first boot), of its nearest ancestor.
// statvfs field widths differ between 32- and 64-bit targets.
#[allow(clippy::useless_conversion)]
pub fn statvfs(dir: &Path) -> Option<(PathBuf, FsStats)> {
    let mut p = dir;
    loop {
        if let Ok(s) = nix::sys::statvfs::statvfs(p) {
            let frag = u64::from(s.fragment_size());
            return Some((
                p.to_path_buf(),
                FsStats {
                    bytes_total: u64::from(s.blocks()).saturating_mul(frag),
                    bytes_available: u64::from(s.blocks_available()).saturating_mul(frag),
                    inodes_total: u64::from(s.files()),
                    inodes_free: u64::from(s.files_available()),
                },
            ));
        }
        p = p.parent()?;
    }
}

/// How much of `total` a threshold keeps free, in the same unit.
fn threshold_of(t: Option<&EvictionThreshold>, total: u64) -> u64 {
    match t {
        Some(EvictionThreshold::Quantity(q)) => *q,
        Some(EvictionThreshold::Percent { milli_percent }) => {
            u64::try_from(u128::from(total) * u128::from(*milli_percent) / 100_000)
                .unwrap_or(u64::MAX)
        }
        None => 0,
    }
}

/// Free space and inodes against the eviction thresholds: below them the agent reports
/// DiskPressure and new pods are not admitted (`fail`); within 5% of capacity above them,
/// `warn`.
pub fn disk(
    check: &'static str,
    dir: &Path,
    stats: Option<(PathBuf, FsStats)>,
    cfg: &AgentConfig,
) -> Finding {
    let Some((measured, s)) = stats else {
        return Finding::fail(
            check,
            format!("cannot statvfs {} or any parent", dir.display()),
            "check that the file system is mounted",
        );
    };
    let (bytes_signal, inodes_signal) = if check == "disk.image-fs" {
        ("imagefs.available", "imagefs.inodesFree")
    } else {
        ("nodefs.available", "nodefs.inodesFree")
    };
    let min_bytes = threshold_of(cfg.eviction_hard.get(bytes_signal), s.bytes_total);
    let min_inodes = threshold_of(cfg.eviction_hard.get(inodes_signal), s.inodes_total);
    let mib = |b: u64| b / (1 << 20);
    let at = if measured == dir {
        dir.display().to_string()
    } else {
        format!("{} (measured at {})", dir.display(), measured.display())
    };
    let detail = format!(
        "{at}: {} MiB of {} MiB free, {} of {} inodes free",
        mib(s.bytes_available),
        mib(s.bytes_total),
        s.inodes_free,
        s.inodes_total
    );
    let fix = "free space (`crictl rmi --prune`, old logs) or move the root dir / containerd's \
               root to a larger partition";
    // Some file systems (btrfs, tmpfs in places) report no inode counts at all.
    let inodes_known = s.inodes_total > 0;
    if s.bytes_available < min_bytes || (inodes_known && s.inodes_free < min_inodes) {
        return Finding::fail(
            check,
            format!(
                "{detail}: below the eviction threshold ({bytes_signal} {} MiB, {inodes_signal} {min_inodes})",
                mib(min_bytes)
            ),
            fix,
        );
    }
    // Within 5% of the capacity above a threshold: a few image pulls from DiskPressure.
    let margin = |min: u64, total: u64| min.saturating_add(total / 20);
    if s.bytes_available < margin(min_bytes, s.bytes_total)
        || (inodes_known && s.inodes_free < margin(min_inodes, s.inodes_total))
    {
        return Finding::warn(
            check,
            format!("{detail}: close to the eviction threshold"),
            fix,
        );
    }
    Finding::ok(check, detail)
}

/// Memory against the board's reservations: what is left for pods (allocatable) must be
/// positive, and what is free now must be above the eviction threshold.
pub fn memory(meminfo: &str, cfg: &AgentConfig) -> Finding {
    const CHECK: &str = "memory";
    let (total, available) = crate::node::host::parse_meminfo(meminfo);
    if total == 0 {
        return Finding::warn(
            CHECK,
            "cannot read MemTotal from /proc/meminfo",
            "check that /proc is mounted",
        );
    }
    let eviction = threshold_of(cfg.eviction_hard.get("memory.available"), total);
    let reserved = cfg
        .system_reserved
        .memory_bytes
        .saturating_add(cfg.kube_reserved.memory_bytes)
        .saturating_add(eviction);
    let mib = |b: u64| b / (1 << 20);
    let detail = format!(
        "{} MiB total, {} MiB available; board {} reserves {} MiB (system + kube + eviction)",
        mib(total),
        mib(available),
        cfg.board,
        mib(reserved)
    );
    if reserved >= total {
        return Finding::fail(
            CHECK,
            format!("{detail}: nothing is left for pods"),
            "choose the board profile of this device (--board) or lower systemReserved / \
             kubeReserved in the config file",
        );
    }
    if available < eviction {
        return Finding::warn(
            CHECK,
            format!("{detail}: available memory is below the eviction threshold now"),
            "stop what uses the memory, or add swap/zram for the OS",
        );
    }
    Finding::ok(
        CHECK,
        format!("{detail}; {} MiB allocatable", mib(total - reserved)),
    )
}

/// Why `name` is not a DNS-1123 subdomain, if it is not one.
pub fn dns_subdomain_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "it is {} characters long (at most 253)",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (two dots, or a dot at an end)".into());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Some(format!("{c:?} is not allowed (a-z, 0-9, '-' and '.' only)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} starts or ends with '-'"));
        }
    }
    None
}

/// The node name is a valid Node object name (DNS-1123 subdomain).
pub fn node_name(name: &str) -> Finding {
    const CHECK: &str = "node.name";
    match dns_subdomain_error(name) {
        None => Finding::ok(CHECK, name.to_string()),
        Some(why) => Finding::fail(
            CHECK,
            format!("node name {name:?} is not a DNS-1123 subdomain: {why}"),
            "set a valid host name (`hostnamectl set-hostname pi-0042`) or --hostname-override",
        ),
    }
}
