//! Facts about the host the Node object reports: capacity, pressure signals, node info.
//!
//! Reading is thin (a few /proc and /etc files, uname, statvfs); parsing is pure and tested.
//! Nothing here changes the host.

use std::path::Path;

/// What the host looks like right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    pub cpus: u32,
    pub memory_total: u64,
    pub memory_available: u64,
    pub disk_total: u64,
    pub disk_available: u64,
    pub pid_max: u64,
    pub pids_running: u64,
    pub kernel_version: String,
    pub os_image: String,
    /// GOARCH spelling (amd64, arm64, arm), as `kubernetes.io/arch` wants it.
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
}

/// Pressure thresholds (the kubelet's evictionHard defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// memory.available below this many bytes → MemoryPressure.
    pub memory_available: u64,
    /// nodefs.available below this percentage → DiskPressure.
    pub disk_available_percent: u8,
    /// Free PIDs below this percentage of pid_max → PIDPressure.
    pub pid_available_percent: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_available: 100 << 20,
            disk_available_percent: 10,
            pid_available_percent: 10,
        }
    }
}

/// The pressure conditions computed from host facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl HostInfo {
    /// Reads the host's facts; `root_dir` is the filesystem whose space counts as node storage.
    pub fn read(root_dir: &Path) -> HostInfo {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (memory_total, memory_available) = parse_meminfo(&meminfo);
        let (disk_total, disk_available) = disk_space(root_dir);
        let uname = nix::sys::utsname::uname().ok();
        HostInfo {
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_total,
            memory_available,
            disk_total,
            disk_available,
            pid_max: read_trim("/proc/sys/kernel/pid_max")
                .parse()
                .unwrap_or(32768),
            pids_running: count_pids(),
            kernel_version: uname
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image: parse_os_release(
                &std::fs::read_to_string("/etc/os-release").unwrap_or_default(),
            ),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            machine_id: read_trim("/etc/machine-id"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        }
    }

    /// Pressure conditions by the given thresholds.
    pub fn pressure(&self, t: &Thresholds) -> Pressure {
        let pct = |avail: u64, total: u64| -> u64 {
            if total == 0 {
                100
            } else {
                (avail as u128 * 100 / total as u128) as u64
            }
        };
        Pressure {
            memory: self.memory_total > 0 && self.memory_available < t.memory_available,
            disk: self.disk_total > 0
                && pct(self.disk_available, self.disk_total) < t.disk_available_percent as u64,
            pid: pct(self.pid_max.saturating_sub(self.pids_running), self.pid_max)
                < t.pid_available_percent as u64,
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn count_pids() -> u64 {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        })
        .unwrap_or(0)
}

// statvfs field widths differ between 32- and 64-bit targets.
#[allow(clippy::useless_conversion)]
fn disk_space(dir: &Path) -> (u64, u64) {
    // The root dir may not exist yet on first boot: measure the nearest existing ancestor.
    let mut p = dir;
    loop {
        if let Ok(s) = nix::sys::statvfs::statvfs(p) {
            let frag = u64::from(s.fragment_size());
            return (
                u64::from(s.blocks()).saturating_mul(frag),
                u64::from(s.blocks_available()).saturating_mul(frag),
            );
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return (0, 0),
        }
    }
}

/// `MemTotal` and `MemAvailable` in bytes from /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
            .unwrap_or(0)
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// `PRETTY_NAME` from /etc/os-release text ("Linux" when absent).
pub fn parse_os_release(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "Linux".to_string())
}

/// Rust's architecture name in Go's spelling, as Kubernetes labels use it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_os_release() {
        let (t, a) = parse_meminfo("MemTotal:  1000 kB\nMemFree: 5 kB\nMemAvailable: 250 kB\n");
        assert_eq!((t, a), (1_024_000, 256_000));
        assert_eq!(parse_meminfo("garbage\nMemTotal: x kB"), (0, 0));
        assert_eq!(
            parse_os_release("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(parse_os_release(""), "Linux");
        assert_eq!(go_arch("aarch64"), "arm64");
    }

    #[test]
    fn pressure_thresholds() {
        let mut h = HostInfo {
            memory_total: 1 << 30,
            memory_available: 50 << 20,
            disk_total: 100,
            disk_available: 50,
            pid_max: 1000,
            pids_running: 100,
            ..Default::default()
        };
        let p = h.pressure(&Thresholds::default());
        assert!(p.memory && !p.disk && !p.pid);
        h.disk_available = 9;
        h.pids_running = 950;
        h.memory_available = 1 << 29;
        let p = h.pressure(&Thresholds::default());
        assert!(!p.memory && p.disk && p.pid);
    }

    #[test]
    fn reads_this_host() {
        let h = HostInfo::read(Path::new("/nonexistent/dir/below/root"));
        assert!(h.cpus >= 1);
        assert!(h.memory_total > 0);
        assert!(h.disk_total > 0, "falls back to an existing ancestor");
        assert!(!h.kernel_version.is_empty());
    }
}
