//! Termination messages, the kubelet's way: each container instance gets an empty file, writable
//! by any user, under `<pods_root>/<uid>/containers/<name>/`, bind-mounted at its
//! `terminationMessagePath` (default `/dev/termination-log`); once the container exited, the
//! file's tail becomes `state.terminated.message`, and with `FallbackToLogsOnError` a failed
//! container with an empty file reports the tail of its log instead.
//!
//! The choice of message and the reading of CRI log lines are pure; the file I/O here is only
//! creating the file and reading bounded tails. It must not touch the pod's other files (the
//! volume manager removes the pod directory with everything in it).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cri::proto::Mount;

/// Annotation with the container's termination message path (kubelet key).
pub const PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// Annotation with the container's termination message policy (kubelet key).
pub const POLICY_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The path when the spec leaves it empty (the API server's default).
pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// The policy that falls back to the log on failure.
pub const FALLBACK_TO_LOGS: &str = "FallbackToLogsOnError";
/// At most this much of the file is reported (kubelet `MaxContainerTerminationMessageLength`).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The log fallback reports at most this many lines... (`MaxContainerTerminationMessageLogLines`)
pub const MAX_LOG_LINES: usize = 80;
/// ...and at most this many bytes of them (`MaxContainerTerminationMessageLogLength`).
pub const MAX_LOG_BYTES: usize = 2048;
/// How much of a log file's end is read for the fallback: enough for 80 lines' prefixes and
/// 2 KiB of content with room to spare, without reading a large log whole.
const LOG_WINDOW: u64 = 64 * 1024;

/// The path and policy of a container as the spec gives them, with the API's defaults.
pub fn path_and_policy(c: &crate::k8s::pod::Container) -> (String, String) {
    let path = if c.termination_message_path.is_empty() {
        DEFAULT_PATH.to_string()
    } else {
        c.termination_message_path.clone()
    };
    let policy = if c.termination_message_policy.is_empty() {
        "File".to_string()
    } else {
        c.termination_message_policy.clone()
    };
    (path, policy)
}

/// Creates a fresh, empty termination message file for one instance of container `name` of
/// pod `uid` (mode 0666 whatever the umask, so a container running as any user can write
/// it), and returns the mount that puts it at `path` in the container.
pub fn prepare(pod_dir: &Path, name: &str, path: &str, stamp: &str) -> Result<Mount, String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("container name {name:?} cannot name a directory"));
    }
    let dir = pod_dir.join("containers").join(name);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let file = dir.join(stamp);
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .open(&file)
        .map_err(|e| format!("create termination message file {}: {e}", file.display()))?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("chmod {}: {e}", file.display()))?;
    Ok(Mount {
        container_path: path.to_string(),
        host_path: file.display().to_string(),
        readonly: false,
        selinux_relabel: false,
        propagation: 0,
    })
}

/// The message of an exited container, by the kubelet's rules: the file's last
/// [`MAX_MESSAGE_BYTES`]; with `FallbackToLogsOnError`, a non-zero exit and an empty or absent
/// file, the log's tail. `file` is `None` when there is no file, `Err` when it could not be
/// read; `log_tail` is called only when the log is needed.
pub fn message(
    file: Option<Result<Vec<u8>, String>>,
    file_path: &str,
    policy: &str,
    exit_code: i32,
    reason: &str,
    log_tail: &dyn Fn() -> String,
) -> String {
    // A container that could not even be started has no log to fall back to.
    let fallback = policy == FALLBACK_TO_LOGS && exit_code != 0 && reason != "ContainerCannotRun";
    let text = match file {
        Some(Ok(bytes)) => String::from_utf8_lossy(tail_bytes(&bytes, MAX_MESSAGE_BYTES)).into(),
        Some(Err(e)) => return format!("Error on reading termination log {file_path}: {e}"),
        None => String::new(),
    };
    if text.is_empty() && fallback {
        log_tail()
    } else {
        text
    }
}

fn tail_bytes(b: &[u8], max: usize) -> &[u8] {
    &b[b.len().saturating_sub(max)..]
}

/// The content of the last `max_lines` lines of a CRI log (`TIMESTAMP STREAM P|F CONTENT`),
/// both streams, cut to the last `max_bytes` bytes: partial (`P`) entries join the next one,
/// full (`F`) entries end a line. Malformed lines are skipped. When `cut` is true the text
/// starts mid-file and its first line is dropped as possibly incomplete.
pub fn log_tail(text: &str, cut: bool, max_lines: usize, max_bytes: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut raw = text.split('\n');
    if cut {
        raw.next();
    }
    for l in raw {
        let mut parts = l.splitn(4, ' ');
        let (Some(_ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if stream != "stdout" && stream != "stderr" {
            continue;
        }
        let content = parts.next().unwrap_or("");
        current.push_str(content);
        match tag {
            "P" => {}
            _ => {
                current.push('\n');
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    let start = lines.len().saturating_sub(max_lines);
    let joined: String = lines[start..].concat();
    let b = joined.as_bytes();
    String::from_utf8_lossy(tail_bytes(b, max_bytes)).into_owned()
}

/// Reads at most the last `max` bytes of a file; `None` if it does not exist.
fn read_tail(path: &Path, max: u64) -> Option<Result<(Vec<u8>, bool), String>> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut read = || -> std::io::Result<(Vec<u8>, bool)> {
        let len = f.metadata()?.len();
        let start = len.saturating_sub(max);
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        (&mut f).take(max).read_to_end(&mut buf)?;
        Ok((buf, start > 0))
    };
    Some(read().map_err(|e| e.to_string()))
}

/// The termination message of an exited container from its runtime status: the host file
/// mounted at the annotated path, the annotated policy, its exit and its log.
pub fn read_message(
    annotations: &BTreeMap<String, String>,
    mounts: &[Mount],
    exit_code: i32,
    reason: &str,
    log_path: &str,
) -> Option<String> {
    let path = annotations.get(PATH_ANNOTATION)?;
    let policy = annotations
        .get(POLICY_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("File");
    let host: Option<PathBuf> = mounts
        .iter()
        .find(|m| &m.container_path == path)
        .map(|m| PathBuf::from(&m.host_path));
    let file = host
        .as_deref()
        .and_then(|h| read_tail(h, MAX_MESSAGE_BYTES as u64).map(|r| r.map(|(b, _)| b)));
    let shown = host
        .as_deref()
        .map(|h| h.display().to_string())
        .unwrap_or_default();
    let log_tail = || -> String {
        if log_path.is_empty() {
            return String::new();
        }
        match read_tail(Path::new(log_path), LOG_WINDOW) {
            Some(Ok((bytes, cut))) => log_tail(
                &String::from_utf8_lossy(&bytes),
                cut,
                MAX_LOG_LINES,
                MAX_LOG_BYTES,
            ),
            _ => String::new(),
        }
    };
    let m = message(file, &shown, policy, exit_code, reason, &log_tail);
    (!m.is_empty()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream kuberuntime `getTerminationMessage` and the conformance tests "should report
    /// termination message ... from file / from log output if TerminationMessagePolicy
    /// FallbackToLogsOnError is set": the file wins when it has content; the log is used only
    /// with FallbackToLogsOnError, a non-zero exit and an empty file; never for
    /// ContainerCannotRun.
    #[test]
    fn message_prefers_the_file_and_falls_back_only_on_failure() {
        let log = || "from the log\n".to_string();
        let f = |s: &str| Some(Ok(s.as_bytes().to_vec()));
        assert_eq!(message(f("DONE"), "p", "File", 0, "", &log), "DONE");
        assert_eq!(
            message(f("DONE"), "p", FALLBACK_TO_LOGS, 1, "", &log),
            "DONE"
        );
        assert_eq!(
            message(f(""), "p", FALLBACK_TO_LOGS, 1, "", &log),
            "from the log\n"
        );
        assert_eq!(
            message(None, "p", FALLBACK_TO_LOGS, 2, "", &log),
            "from the log\n"
        );
        assert_eq!(message(f(""), "p", FALLBACK_TO_LOGS, 0, "", &log), "");
        assert_eq!(message(f(""), "p", "File", 1, "", &log), "");
        assert_eq!(
            message(
                f(""),
                "p",
                FALLBACK_TO_LOGS,
                128,
                "ContainerCannotRun",
                &log
            ),
            ""
        );
        let big = "x".repeat(5000) + "END";
        let m = message(f(&big), "p", "File", 0, "", &log);
        assert_eq!(m.len(), MAX_MESSAGE_BYTES);
        assert!(m.ends_with("END"));
        assert_eq!(
            message(Some(Err("denied".into())), "/h/f", "File", 0, "", &log),
            "Error on reading termination log /h/f: denied"
        );
    }

    /// Upstream `readLastStringFromContainerLogs`: the last 80 lines of both streams, at most
    /// the last 2048 bytes of them.
    #[test]
    fn log_tail_reads_cri_lines() {
        let text = "2026-01-01T00:00:00.1Z stdout F first\n\
                    2026-01-01T00:00:00.2Z stderr P par\n\
                    2026-01-01T00:00:00.3Z stderr F tial\n\
                    garbage\n\
                    2026-01-01T00:00:00.4Z stdout F \n";
        assert_eq!(log_tail(text, false, 80, 2048), "first\npartial\n\n");
        assert_eq!(log_tail(text, false, 2, 2048), "partial\n\n");
        assert_eq!(log_tail(text, false, 80, 5), "ial\n\n");
        assert_eq!(log_tail(text, true, 80, 2048), "partial\n\n");
        let many: String = (0..200)
            .map(|i| format!("2026-01-01T00:00:00Z stdout F line {i}\n"))
            .collect();
        let t = log_tail(&many, false, MAX_LOG_LINES, MAX_LOG_BYTES);
        assert!(
            t.starts_with("line 120\n") && t.ends_with("line 199\n"),
            "{t}"
        );
        assert_eq!(log_tail("", false, 80, 2048), "");
    }

    #[test]
    fn file_is_created_writable_and_read_back() {
        let root = std::env::temp_dir().join(format!("tl-term-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let m = prepare(&root, "app", DEFAULT_PATH, "0-1").unwrap();
        assert_eq!(m.container_path, DEFAULT_PATH);
        let md = fs::metadata(&m.host_path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o666);
        assert!(prepare(&root, "../x", DEFAULT_PATH, "0-1").is_err());
        let ann: BTreeMap<String, String> = [
            (PATH_ANNOTATION.to_string(), DEFAULT_PATH.to_string()),
            (POLICY_ANNOTATION.to_string(), FALLBACK_TO_LOGS.to_string()),
        ]
        .into();
        let log = root.join("0.log");
        fs::write(&log, "2026-01-01T00:00:00Z stderr F boom\n").unwrap();
        let log = log.display().to_string();
        let mounts = vec![m.clone()];
        assert_eq!(
            read_message(&ann, &mounts, 1, "Error", &log).as_deref(),
            Some("boom\n")
        );
        assert_eq!(read_message(&ann, &mounts, 0, "Completed", &log), None);
        fs::write(&m.host_path, "bye").unwrap();
        assert_eq!(
            read_message(&ann, &mounts, 1, "Error", &log).as_deref(),
            Some("bye")
        );
        assert_eq!(read_message(&BTreeMap::new(), &mounts, 1, "", &log), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
