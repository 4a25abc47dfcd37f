//! Container log rotation as the kubelet's container log manager does it
//! (`pkg/kubelet/logs/container_log_manager.go`): every `containerLogMonitorInterval`, each running
//! container whose log file has reached `containerLogMaxSize` gets it renamed to
//! `<log>.<YYYYMMDD-hhmmss>` and the runtime is asked to reopen the log (CRI
//! `ReopenContainerLog`, so it writes a fresh file at the old path); rotated files beyond
//! `containerLogMaxFiles - 1` are removed, oldest first. If the runtime cannot reopen, the
//! rename is undone so the container keeps logging to the file the kubelet API reads.
//! Only logs under this node's `podLogsDir` are touched.
//!
//! Rotated files are removed rather than gzip-compressed: logs on the edge boards live in
//! tmpfs, and a bounded number of bounded files bounds their RAM without a compressor in the
//! binary. [`plan`] decides (pure); [`check`] does the file and CRI work.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::AgentConfig;
use crate::cri::proto::{ContainerFilter, ContainerState, ContainerStateValue};
use crate::cri::CriClient;
use crate::k8s::coordination::format_time;

/// Size and count bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Rotate at this many bytes.
    pub max_size: u64,
    /// Files kept per container, the current one included (≥ 2).
    pub max_files: u32,
}

impl Policy {
    /// From `containerLogMaxSize` and `containerLogMaxFiles`.
    pub fn from_config(cfg: &AgentConfig) -> Policy {
        Policy {
            max_size: cfg.container_log_max_size,
            max_files: cfg.container_log_max_files.max(2),
        }
    }
}

/// What to do with one container's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Rotated files to remove (names in the log's directory), oldest first.
    pub remove: Vec<String>,
    /// The name to rename the current log to, when it is due.
    pub rotate_to: Option<String>,
}

/// The rotation suffix of `now` (UTC `YYYYMMDD-hhmmss`, the kubelet's format).
pub fn suffix(now: SystemTime) -> String {
    // format_time gives 2024-05-01T12:00:00Z.
    let t = format_time(now);
    let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
    let (date, time) = digits.split_at(digits.len().min(8));
    format!("{date}-{time}")
}

/// Whether `name` is a rotated copy of `log` (`<log>.<timestamp>`, possibly compressed by
/// someone else as `.gz`; never a `.tmp` file being written).
fn is_rotated(log: &str, name: &str) -> bool {
    name.strip_prefix(log)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()) && !r.ends_with(".tmp"))
}

/// Decides for the log file `log` (a name in its directory) of `size` bytes, given the names
/// in that directory. Nothing happens below `max_size`; at or above it, rotated files are
/// trimmed to `max_files - 2` (the rotation about to happen makes `max_files - 1`, plus the
/// new current file) and the log is renamed, unless that name is taken (a second rotation
/// within one second waits for the next check).
pub fn plan(log: &str, size: u64, names: &[String], p: Policy, now: SystemTime) -> Plan {
    if size < p.max_size {
        return Plan::default();
    }
    let mut rotated: Vec<&String> = names.iter().filter(|n| is_rotated(log, n)).collect();
    rotated.sort();
    let keep = usize::try_from(p.max_files.saturating_sub(2)).unwrap_or(usize::MAX);
    let excess = rotated.len().saturating_sub(keep);
    let target = format!("{log}.{}", suffix(now));
    let taken = names.contains(&target);
    Plan {
        remove: rotated.iter().take(excess).map(|n| n.to_string()).collect(),
        rotate_to: (!taken).then_some(target),
    }
}

/// Why one container's log could not be rotated.
#[derive(Debug)]
pub enum RotateError {
    Io(PathBuf, std::io::Error),
    Reopen(String),
}

impl std::fmt::Display for RotateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RotateError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            RotateError::Reopen(e) => write!(f, "reopen: {e}"),
        }
    }
}

/// Rotates one container's log at `path` if due; true when it was rotated.
pub async fn rotate_one(
    cri: &CriClient,
    id: &str,
    path: &Path,
    p: Policy,
    now: SystemTime,
) -> Result<bool, RotateError> {
    let io = |e| RotateError::Io(path.to_path_buf(), e);
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    let (Some(dir), Some(log)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(false);
    };
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let plan = plan(log, size, &names, p, now);
    for old in &plan.remove {
        let old = dir.join(old);
        if let Err(e) = std::fs::remove_file(&old) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(RotateError::Io(old, e));
            }
        }
    }
    let Some(to) = plan.rotate_to else {
        return Ok(false);
    };
    let to = dir.join(to);
    std::fs::rename(path, &to).map_err(io)?;
    if let Err(e) = cri.reopen_container_log(id).await {
        // The runtime still writes to the renamed file: put it back where readers look.
        if let Err(back) = std::fs::rename(&to, path) {
            log::warn!(
                "log rotation: {} could not be renamed back: {back}",
                to.display()
            );
        }
        return Err(RotateError::Reopen(e.to_string()));
    }
    Ok(true)
}

/// One check over every running container whose log is under `logs_dir` (this node's
/// `podLogsDir`: a runtime shared with other tools keeps their logs untouched); how many logs
/// were rotated.
pub async fn check(cri: &CriClient, p: Policy, logs_dir: &Path) -> usize {
    let filter = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    let containers = match cri.list_containers(Some(filter)).await {
        Ok(r) => r.containers,
        Err(e) => {
            log::debug!("log rotation: {e}");
            return 0;
        }
    };
    let mut rotated = 0;
    for c in containers {
        let path = match cri.container_status(&c.id, false).await {
            Ok(s) => s.status.map(|s| s.log_path).unwrap_or_default(),
            Err(e) => {
                log::debug!("log rotation: {e}");
                continue;
            }
        };
        if path.is_empty() || !Path::new(&path).starts_with(logs_dir) {
            continue;
        }
        match rotate_one(cri, &c.id, Path::new(&path), p, SystemTime::now()).await {
            Ok(true) => rotated += 1,
            Ok(false) => {}
            Err(e) => log::warn!("log rotation of container {}: {e}", c.id),
        }
    }
    rotated
}

/// Runs [`check`] every `interval` until the task is dropped.
pub fn spawn(cri: CriClient, p: Policy, logs_dir: PathBuf, interval: Duration) -> smol::Task<()> {
    smol::spawn(async move {
        loop {
            smol::Timer::after(interval).await;
            check(&cri, p, &logs_dir).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const P: Policy = Policy {
        max_size: 100,
        max_files: 3,
    };

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suffix_is_the_kubelets_timestamp_format() {
        // 2024-05-01T12:03:04Z
        assert_eq!(suffix(at(1_714_564_984)), "20240501-120304");
    }

    #[test]
    fn below_the_size_nothing_happens() {
        let n = names(&["0.log", "0.log.20240101-000000", "0.log.20240101-000001"]);
        assert_eq!(plan("0.log", 99, &n, P, at(0)), Plan::default());
    }

    #[test]
    fn at_the_size_the_log_is_renamed_and_old_files_trimmed_to_max_files_minus_two() {
        let n = names(&[
            "0.log",
            "0.log.20240101-000002",
            "0.log.20240101-000001",
            "1.log",
            "0.log.tmp",
            "0.log.20240101-000003.tmp",
            "10.log.20240101-000000",
        ]);
        let p = plan("0.log", 100, &n, P, at(1_714_564_984));
        // max 3 files: the new current + 2 rotated after this one; so 1 kept before.
        assert_eq!(
            p.remove,
            ["0.log.20240101-000001", "0.log.20240101-000002"][..1].to_vec()
        );
        assert_eq!(p.rotate_to.as_deref(), Some("0.log.20240501-120304"));
        // Other containers' attempts and temporary files are not touched.
        let big = Policy {
            max_size: 1,
            max_files: 2,
        };
        let p = plan("1.log", 5, &n, big, at(0));
        assert!(p.remove.is_empty());
    }

    #[test]
    fn compressed_copies_count_and_a_taken_name_waits() {
        let n = names(&["0.log", "0.log.20240101-000001.gz", "0.log.19700101-000000"]);
        let p = plan("0.log", 500, &n, P, at(0));
        assert_eq!(
            p.remove,
            ["0.log.19700101-000000", "0.log.20240101-000001.gz"][..1]
        );
        assert_eq!(p.rotate_to, None, "the name of this second is taken");
    }

    #[test]
    fn the_minimum_of_two_files_keeps_no_rotated_file_before_rotating() {
        let p2 = Policy {
            max_size: 10,
            max_files: 2,
        };
        let n = names(&["0.log", "0.log.20240101-000001"]);
        let p = plan("0.log", 10, &n, p2, at(5));
        assert_eq!(p.remove, ["0.log.20240101-000001"]);
        assert_eq!(p.rotate_to.as_deref(), Some("0.log.19700101-000005"));
    }
}
