//! What ended pods leave on the host, and its removal: the pod directory with its volume
//! mounts (`<root-dir>/pods/<uid>`), the pod log directory (`<podLogsDir>/<ns>_<name>_<uid>`)
//! and the pod cgroups (`<cgroup root>/{,burstable/,besteffort/}pod<uid>` in every hierarchy).
//!
//! One path for every way a pod ends (API delete, force delete, static manifest removed, spec
//! replaced, evicted, deleted while the agent was down): the agent scans these three places
//! and cleans what belongs to no known pod, where "known" means desired, tracked by the
//! engine, or still holding a sandbox or container in the runtime. The runtime is the ground
//! truth for "its containers are gone": nothing of a pod is removed while the runtime has any
//! of it, and nothing at all when the runtime could not be listed.
//!
//! The choice ([`orphans`]) is pure; [`scan`] and [`clean`] are the thin I/O around it.
//! Removal never follows a symlink and never crosses into another mount: a hostPath's host
//! directory or a driver's mount can never be deleted through a pod directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::volumes::{remove_tree, valid_uid, VolumeManager};

/// How often a pass runs when nothing asked for one: the backstop for what the triggers miss
/// (a pod dir planted by hand, an unmount that failed once).
pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// When the agent runs a housekeeping pass: at start, whenever the engine stops tracking a
/// pod or a pod's last sandbox goes, and every [`PERIOD`]. Sans-I/O: the caller hands in the
/// time and the counts.
#[derive(Debug, Clone)]
pub struct Schedule {
    next: std::time::Instant,
    tracked: usize,
}

impl Schedule {
    /// A schedule whose first pass is due at `now`.
    pub fn new(now: std::time::Instant) -> Self {
        Schedule {
            next: now,
            tracked: 0,
        }
    }

    /// Whether a pass is due at `now`, given how many pods the engine tracks and whether a
    /// sandbox removal asked for one. A due pass moves the next periodic one a period on.
    pub fn due(&mut self, now: std::time::Instant, tracked: usize, asked: bool) -> bool {
        let shrank = tracked < self.tracked;
        self.tracked = tracked;
        if shrank || asked || now >= self.next {
            self.next = now + PERIOD;
            true
        } else {
            false
        }
    }
}

/// What one pod left on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Its directory under the pods root.
    pub pod_dir: Option<PathBuf>,
    /// Its log directories (one normally; a renamed pod could leave two).
    pub log_dirs: Vec<PathBuf>,
    /// Its cgroup directories, one per hierarchy (cgroup v1) or one (v2).
    pub cgroups: Vec<PathBuf>,
}

/// Where pods leave things.
#[derive(Debug, Clone)]
pub struct Places {
    /// `<root-dir>/pods`.
    pub pods_root: PathBuf,
    /// `podLogsDir`.
    pub logs_root: PathBuf,
    /// The cgroupfs root of pods inside each hierarchy (`/kubepods`).
    pub cgroup_root: String,
    /// The mounted cgroup filesystem (`/sys/fs/cgroup`).
    pub cgroup_fs: PathBuf,
}

/// The UID of a pod log directory name `<namespace>_<name>_<uid>` (none of the three may
/// contain `_`, so the UID is what follows the last one).
pub fn log_dir_uid(name: &str) -> Option<&str> {
    let (head, uid) = name.rsplit_once('_')?;
    (head.contains('_') && valid_uid(uid)).then_some(uid)
}

/// The UID of a pod cgroup directory name `pod<uid>`.
pub fn cgroup_uid(name: &str) -> Option<&str> {
    name.strip_prefix("pod").filter(|u| valid_uid(u))
}

/// The pods whose leftovers may go: those not in `known`. Pure.
pub fn orphans(
    found: BTreeMap<String, Leftovers>,
    known: &BTreeSet<String>,
) -> Vec<(String, Leftovers)> {
    found
        .into_iter()
        .filter(|(uid, _)| !known.contains(uid))
        .collect()
}

/// The cgroup hierarchies to look in: the unified one (cgroup v2), or every controller
/// hierarchy mounted below `cgroup_fs` (v1; links such as `cpu -> cpu,cpuacct` skipped).
pub fn hierarchies(cgroup_fs: &Path) -> Vec<PathBuf> {
    if cgroup_fs.join("cgroup.controllers").exists() {
        return vec![cgroup_fs.to_path_buf()];
    }
    let Ok(rd) = fs::read_dir(cgroup_fs) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// The pod cgroup parents inside one hierarchy: the QoS levels under the pods' root.
fn qos_dirs(hierarchy: &Path, cgroup_root: &str) -> [PathBuf; 3] {
    let root = if cgroup_root.is_empty() {
        "/kubepods"
    } else {
        cgroup_root
    };
    let base = hierarchy.join(root.trim_start_matches('/'));
    [base.join("burstable"), base.join("besteffort"), base]
}

fn dir_names(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

/// Everything pods left in the three places, by pod UID.
pub fn scan(p: &Places) -> BTreeMap<String, Leftovers> {
    let mut found: BTreeMap<String, Leftovers> = BTreeMap::new();
    for (name, path) in dir_names(&p.pods_root) {
        if valid_uid(&name) {
            found.entry(name).or_default().pod_dir = Some(path);
        }
    }
    for (name, path) in dir_names(&p.logs_root) {
        if let Some(uid) = log_dir_uid(&name) {
            found
                .entry(uid.to_string())
                .or_default()
                .log_dirs
                .push(path);
        }
    }
    for h in hierarchies(&p.cgroup_fs) {
        for parent in qos_dirs(&h, &p.cgroup_root) {
            for (name, path) in dir_names(&parent) {
                if let Some(uid) = cgroup_uid(&name) {
                    found.entry(uid.to_string()).or_default().cgroups.push(path);
                }
            }
        }
    }
    found
}

/// What one clean-up did, for its log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// Mounts taken down under the pod directory.
    pub mounts: usize,
    /// The pod directory went.
    pub pod_dir: bool,
    /// Log directories removed.
    pub log_dirs: usize,
    /// Cgroup directories removed.
    pub cgroups: usize,
    /// What could not be removed (retried at the next housekeeping).
    pub errors: Vec<String>,
}

impl Cleaned {
    /// Whether nothing was left behind.
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
    }
}

impl std::fmt::Display for Cleaned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} volume mount(s), {} pod dir, {} log dir(s), {} cgroup(s) removed",
            self.mounts,
            if self.pod_dir { "its" } else { "no" },
            self.log_dirs,
            self.cgroups
        )?;
        if !self.errors.is_empty() {
            write!(f, "; left for later: {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// Removes one ended pod's leftovers: unmounts and removes its directory (through the volume
/// manager, which owns those mounts), its log directories and its cgroups (deepest first).
pub fn clean(uid: &str, left: &Leftovers, volumes: &VolumeManager) -> Cleaned {
    let mut done = Cleaned::default();
    if left.pod_dir.is_some() {
        match volumes.cleanup(uid) {
            Ok(n) => {
                done.mounts = n;
                done.pod_dir = true;
            }
            Err(e) => done.errors.push(e.reason),
        }
    }
    for d in &left.log_dirs {
        match remove_tree(d) {
            Ok(()) => done.log_dirs += 1,
            Err(e) => done.errors.push(e),
        }
    }
    for c in &left.cgroups {
        match remove_cgroup(c) {
            Ok(()) => done.cgroups += 1,
            Err(e) => done.errors.push(e),
        }
    }
    done
}

/// Removes a cgroup directory and the (container) cgroups below it. cgroupfs removes a
/// directory with its control files by rmdir alone; one that still holds a process answers
/// EBUSY and stays.
pub fn remove_cgroup(dir: &Path) -> Result<(), String> {
    for (_, child) in dir_names(dir) {
        remove_cgroup(&child)?;
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove cgroup {}: {e}", dir.display())),
    }
}

/// Removes one pod's cgroups in every hierarchy under `/sys/fs/cgroup` (and the QoS levels
/// left empty), for callers that know the pod is gone.
pub fn remove_pod_cgroups(cgroup_root: &str, uid: &str) {
    let cgroup_fs = Path::new("/sys/fs/cgroup");
    for h in hierarchies(cgroup_fs) {
        for parent in qos_dirs(&h, cgroup_root) {
            let _ = remove_cgroup(&parent.join(format!("pod{uid}")));
        }
    }
    remove_empty_qos_levels(cgroup_fs, cgroup_root);
}

/// Removes the QoS-level cgroups and the pods' root cgroup where no pod is left in them (they
/// exist only for pods; rmdir fails harmlessly while any remains).
pub fn remove_empty_qos_levels(cgroup_fs: &Path, cgroup_root: &str) {
    for h in hierarchies(cgroup_fs) {
        for dir in qos_dirs(&h, cgroup_root) {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tl-hk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn schedule_runs_at_start_on_triggers_and_periodically() {
        let t0 = std::time::Instant::now();
        let mut s = Schedule::new(t0);
        assert!(s.due(t0, 3, false), "at start");
        assert!(!s.due(t0, 3, false));
        assert!(!s.due(t0, 4, false), "a new pod is no reason");
        assert!(s.due(t0, 3, false), "the engine let go of a pod");
        assert!(s.due(t0, 3, true), "a sandbox removal asked");
        let later = t0 + PERIOD;
        assert!(!s.due(later - std::time::Duration::from_millis(1), 3, false));
        assert!(s.due(later, 3, false), "the periodic backstop");
        assert!(!s.due(later, 3, false));
    }

    #[test]
    fn names_carry_the_uid() {
        assert_eq!(log_dir_uid("ns_web_1234-abcd"), Some("1234-abcd"));
        assert_eq!(log_dir_uid("web_1234"), None, "three parts");
        assert_eq!(log_dir_uid("ns_web_"), None);
        assert_eq!(log_dir_uid("ns_web_.."), None);
        assert_eq!(cgroup_uid("pod1234-abcd"), Some("1234-abcd"));
        assert_eq!(cgroup_uid("pod"), None);
        assert_eq!(cgroup_uid("burstable"), None);
        assert_eq!(cgroup_uid("pod.."), None);
    }

    #[test]
    fn only_unknown_pods_are_orphans() {
        let mut found = BTreeMap::new();
        for uid in ["a", "b", "c"] {
            found.insert(
                uid.to_string(),
                Leftovers {
                    pod_dir: Some(PathBuf::from(format!("/x/{uid}"))),
                    ..Leftovers::default()
                },
            );
        }
        let known: BTreeSet<String> = ["b".to_string(), "z".to_string()].into();
        let o: Vec<String> = orphans(found, &known).into_iter().map(|o| o.0).collect();
        assert_eq!(o, ["a", "c"]);
    }

    /// A fake cgroup v1 tree (plain directories) and v2 marker: the scan finds every pod's
    /// directories in every hierarchy and QoS level, and nothing else.
    #[test]
    fn scan_finds_pod_dirs_logs_and_cgroups() {
        let d = tmp("scan");
        let places = Places {
            pods_root: d.join("pods"),
            logs_root: d.join("logs"),
            cgroup_root: "/kubepods".into(),
            cgroup_fs: d.join("cg"),
        };
        fs::create_dir_all(places.pods_root.join("u1/volumes")).unwrap();
        fs::create_dir_all(places.pods_root.join("u2")).unwrap();
        fs::write(places.pods_root.join("not-a-dir"), b"").unwrap();
        fs::create_dir_all(places.logs_root.join("ns_web_u1/main")).unwrap();
        fs::create_dir_all(places.logs_root.join("stray")).unwrap();
        for ctl in ["memory", "cpu,cpuacct", "pids"] {
            let base = places.cgroup_fs.join(ctl).join("kubepods");
            fs::create_dir_all(base.join("besteffort/podu1/ctr1")).unwrap();
            fs::create_dir_all(base.join("podu3")).unwrap();
            fs::create_dir_all(base.join("burstable")).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", places.cgroup_fs.join("cpu")).unwrap();
        let found = scan(&places);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["u1", "u2", "u3"]);
        assert_eq!(found["u1"].log_dirs.len(), 1);
        assert_eq!(
            found["u1"].cgroups.len(),
            3,
            "one per hierarchy, links skipped"
        );
        assert!(found["u2"].cgroups.is_empty());
        assert!(found["u3"].pod_dir.is_none());

        // Cleaning u3's cgroups and u1's (with a container cgroup below) works on plain dirs.
        for c in found["u1"].cgroups.iter().chain(&found["u3"].cgroups) {
            remove_cgroup(c).unwrap();
        }
        assert!(!places
            .cgroup_fs
            .join("memory/kubepods/besteffort/podu1")
            .exists());
        remove_empty_qos_levels(&places.cgroup_fs, &places.cgroup_root);
        assert!(!places.cgroup_fs.join("memory/kubepods").exists());

        // cgroup v2: one hierarchy, the root itself.
        fs::write(places.cgroup_fs.join("cgroup.controllers"), b"cpu memory").unwrap();
        assert_eq!(
            hierarchies(&places.cgroup_fs),
            std::slice::from_ref(&places.cgroup_fs)
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn cleaned_says_what_it_did() {
        let c = Cleaned {
            mounts: 2,
            pod_dir: true,
            log_dirs: 1,
            cgroups: 3,
            errors: vec![],
        };
        assert_eq!(
            c.to_string(),
            "2 volume mount(s), its pod dir, 1 log dir(s), 3 cgroup(s) removed"
        );
        assert!(c.complete());
    }
}
