//! CRI container log path layout: `<root>/pods/<ns>_<name>_<uid>/<container>/<attempt>.log`.
//!
//! The same layout as the kubelet's `/var/log/pods`, with the root a parameter. Pure path
//! arithmetic; creating directories is the caller's business.

use std::path::{Path, PathBuf};

/// Replaces what could escape the directory (separators, NUL, `.`/`..`) so that a bad
/// name from a manifest can never point outside `root`.
fn component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "_".to_string()
    } else {
        cleaned
    }
}

/// The pod's log directory (the sandbox's `log_directory`).
pub fn pod_log_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join("pods")
        .join(component(&format!("{namespace}_{name}_{uid}")))
}

/// A container instance's log path relative to the pod log directory (the container's `log_path`).
pub fn container_log_relpath(container: &str, attempt: u32) -> PathBuf {
    Path::new(&component(container)).join(format!("{attempt}.log"))
}

/// A container instance's absolute log path.
pub fn container_log_path(
    root: &Path,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    pod_log_dir(root, namespace, name, uid).join(container_log_relpath(container, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_layout() {
        let p = container_log_path(Path::new("/var/log"), "default", "web", "u-1", "app", 2);
        assert_eq!(p, PathBuf::from("/var/log/pods/default_web_u-1/app/2.log"));
        assert_eq!(
            pod_log_dir(Path::new("/data/logs"), "kube-system", "dns", "x"),
            PathBuf::from("/data/logs/pods/kube-system_dns_x")
        );
        assert_eq!(container_log_relpath("c", 0), PathBuf::from("c/0.log"));
    }

    #[test]
    fn names_cannot_escape_the_root() {
        let root = Path::new("/r");
        let p = container_log_path(root, "../..", "a/b", "", "..", 0);
        assert!(p.starts_with("/r/pods"));
        assert!(!p.components().any(|c| c == std::path::Component::ParentDir));
        assert_eq!(container_log_relpath("", 1), PathBuf::from("_/1.log"));
    }
}
