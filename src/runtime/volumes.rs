//! Host side of pod volumes: hostPath type checks, emptyDir (disk or tmpfs), and file volumes
//! (downwardAPI now; configMap, secret and projected through a [`VolumeData`] source) written
//! atomically the way the kubelet's `..data` symlink swap does.
//!
//! Layout: `<pods_root>/<uid>/volumes/<plugin>/<name>`, as the kubelet has it. Teardown of a
//! pod unmounts what this module mounted and removes the pod's directory; nothing else on the
//! host is touched.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::k8s::pod::{KeyToPath, Pod, Volume};
use crate::runtime::spec::{field_ref, HostFacts, HostVolume};

/// A volume could not be prepared or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeError {
    /// `namespace/name` of the pod (or its UID during teardown).
    pub pod: String,
    /// The volume's name.
    pub volume: String,
    pub reason: String,
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pod {}: volume {:?}: {}",
            self.pod, self.volume, self.reason
        )
    }
}

impl std::error::Error for VolumeError {}

/// Where the data of API-backed volumes comes from. Static pods have none. Shared with the
/// threads that prepare volumes, and read there while the agent loop goes on.
pub trait VolumeData: Send + Sync {
    /// Fetches whatever `pod`'s volumes and env will read, so the reads that follow find it
    /// (a pod's sandbox step calls it off the agent loop). Nothing to do by default.
    fn warm(&self, _pod: &Pod) {}
    /// The data of a ConfigMap (keys to bytes), or `None` if it is not available.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// The data of a Secret, or `None` if it is not available.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// A service account token for the pod, or `None` if none can be had.
    fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: i64,
    ) -> Option<String>;
}

/// The source of a node without an API server: nothing is available.
pub struct NoApiData;

impl VolumeData for NoApiData {
    fn config_map(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
    fn service_account_token(&self, _: &Pod, _: &str, _: i64) -> Option<String> {
        None
    }
}

/// Prepares and removes pod volumes under one root.
#[derive(Debug, Clone)]
pub struct VolumeManager {
    pods_root: PathBuf,
}

impl VolumeManager {
    /// A manager keeping pod directories under `pods_root` (`<root-dir>/pods`).
    pub fn new(pods_root: impl Into<PathBuf>) -> Self {
        VolumeManager {
            pods_root: pods_root.into(),
        }
    }

    /// The directory of one pod.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_root.join(uid)
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(plugin).join(name)
    }

    /// Makes every volume of `pod` ready and returns the host path of each, by volume name.
    /// Idempotent: an already prepared volume is reused (file volumes are refreshed).
    pub fn prepare(
        &self,
        pod: &Pod,
        host: &HostFacts,
        pod_ip: &str,
        data: &dyn VolumeData,
    ) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
        let mut out = BTreeMap::new();
        for v in &pod.spec.volumes {
            let hv = self
                .prepare_one(pod, v, host, pod_ip, data)
                .map_err(|reason| VolumeError {
                    pod: pod.key(),
                    volume: v.name.clone(),
                    reason,
                })?;
            out.insert(v.name.clone(), hv);
        }
        Ok(out)
    }

    fn prepare_one(
        &self,
        pod: &Pod,
        v: &Volume,
        host: &HostFacts,
        pod_ip: &str,
        data: &dyn VolumeData,
    ) -> Result<HostVolume, String> {
        let uid = &pod.metadata.uid;
        if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
            return Err(format!("pod UID {uid:?} cannot name a directory"));
        }
        if let Some(hp) = &v.host_path {
            check_host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
            return Ok(HostVolume {
                host_path: hp.path.clone(),
                read_only: false,
            });
        }
        if let Some(ed) = &v.empty_dir {
            let dir = self.volume_dir(uid, "kubernetes.io~empty-dir", &v.name);
            mkdir_all(&dir, 0o777)?;
            // The kubelet makes emptyDir world-writable so any container user can use it.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
            if ed.medium == "Memory" {
                let size = match &ed.size_limit {
                    Some(q) => Some(q.to_units().map_err(|e| format!("sizeLimit: {e}"))?),
                    None => None,
                };
                mount_tmpfs(&dir, size)?;
            }
            return Ok(HostVolume {
                host_path: dir.display().to_string(),
                read_only: false,
            });
        }
        if let Some(d) = &v.downward_api {
            let dir = self.volume_dir(uid, "kubernetes.io~downward-api", &v.name);
            let files = downward_files(pod, host, pod_ip, &d.items, d.default_mode)?;
            write_atomic(&dir, &files)?;
            return Ok(read_only(&dir));
        }
        if let Some(cm) = &v.config_map {
            let dir = self.volume_dir(uid, "kubernetes.io~configmap", &v.name);
            let found = data.config_map(&pod.metadata.namespace, &cm.name);
            let files = fetched(
                found,
                "configMap",
                &cm.name,
                cm.optional,
                &cm.items,
                cm.default_mode,
            )?;
            write_atomic(&dir, &files)?;
            return Ok(read_only(&dir));
        }
        if let Some(s) = &v.secret {
            let dir = self.volume_dir(uid, "kubernetes.io~secret", &v.name);
            let found = data.secret(&pod.metadata.namespace, &s.secret_name);
            let files = fetched(
                found,
                "secret",
                &s.secret_name,
                s.optional,
                &s.items,
                s.default_mode,
            )?;
            // Secrets never touch flash: they live on a tmpfs of their own.
            mkdir_all(&dir, 0o750)?;
            mount_tmpfs(&dir, Some(16 << 20))?;
            write_atomic(&dir, &files)?;
            return Ok(read_only(&dir));
        }
        if let Some(p) = &v.projected {
            let dir = self.volume_dir(uid, "kubernetes.io~projected", &v.name);
            let mut files = BTreeMap::new();
            for src in &p.sources {
                if let Some(t) = &src.service_account_token {
                    let exp = t.expiration_seconds.unwrap_or(3600);
                    let token = data
                        .service_account_token(pod, &t.audience, exp)
                        .ok_or_else(|| "service account token is not available".to_string())?;
                    files.insert(
                        t.path.clone(),
                        (token.into_bytes(), mode(None, p.default_mode, 0o644)),
                    );
                }
                if let Some(c) = &src.config_map {
                    let found = data.config_map(&pod.metadata.namespace, &c.name);
                    files.extend(fetched(
                        found,
                        "configMap",
                        &c.name,
                        c.optional,
                        &c.items,
                        p.default_mode,
                    )?);
                }
                if let Some(s) = &src.secret {
                    let found = data.secret(&pod.metadata.namespace, &s.name);
                    files.extend(fetched(
                        found,
                        "secret",
                        &s.name,
                        s.optional,
                        &s.items,
                        p.default_mode,
                    )?);
                }
                if let Some(d) = &src.downward_api {
                    files.extend(downward_files(pod, host, pod_ip, &d.items, p.default_mode)?);
                }
            }
            mkdir_all(&dir, 0o750)?;
            mount_tmpfs(&dir, Some(16 << 20))?;
            write_atomic(&dir, &files)?;
            return Ok(read_only(&dir));
        }
        let kinds = v.source_kinds();
        Err(format!("unsupported volume source {kinds:?}"))
    }

    /// Unmounts what this module mounted for the pod and removes its directory.
    pub fn cleanup(&self, uid: &str) -> Result<(), VolumeError> {
        let err = |reason: String| VolumeError {
            pod: uid.to_string(),
            volume: String::new(),
            reason,
        };
        if uid.is_empty() || uid.contains('/') || uid.starts_with('.') {
            return Err(err(format!("pod UID {uid:?} cannot name a directory")));
        }
        let dir = self.pod_dir(uid);
        if !dir.exists() {
            return Ok(());
        }
        for m in mounts_under(&dir) {
            nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| err(format!("unmount {}: {e}", m.display())))?;
        }
        fs::remove_dir_all(&dir).map_err(|e| err(format!("remove {}: {e}", dir.display())))
    }

    /// UIDs of pods that have a directory here (for cleaning up after pods that are gone).
    pub fn pod_uids(&self) -> Vec<String> {
        fs::read_dir(&self.pods_root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn mode(item: Option<i32>, default: Option<i32>, fallback: u32) -> u32 {
    item.or(default)
        .map(|m| (m as u32) & 0o777)
        .unwrap_or(fallback)
}

type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// A prepared file volume, mounted read-only into containers.
fn read_only(dir: &Path) -> HostVolume {
    HostVolume {
        host_path: dir.display().to_string(),
        read_only: true,
    }
}

/// The files of a configMap or secret source: projected by `items`, empty when the object is
/// missing but optional, an error naming it when missing and required.
fn fetched(
    found: Option<BTreeMap<String, Vec<u8>>>,
    what: &str,
    name: &str,
    optional: Option<bool>,
    items: &[KeyToPath],
    default_mode: Option<i32>,
) -> Result<Files, String> {
    match found {
        Some(d) => project(&d, items, default_mode, 0o644),
        None if optional == Some(true) => Ok(BTreeMap::new()),
        // The kubelet's wording (its configMap/secret manager's NotFound error).
        None => Err(format!("{} \"{name}\" not found", what.to_lowercase())),
    }
}

/// The files of a downwardAPI source.
fn downward_files(
    pod: &Pod,
    host: &HostFacts,
    pod_ip: &str,
    items: &[crate::k8s::pod::DownwardApiVolumeFile],
    default_mode: Option<i32>,
) -> Result<Files, String> {
    let mut files = BTreeMap::new();
    for item in items {
        let value = downward_value(pod, host, pod_ip, item)?;
        files.insert(
            item.path.clone(),
            (value.into_bytes(), mode(item.mode, default_mode, 0o644)),
        );
    }
    Ok(files)
}

fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: Option<i32>,
    fallback: u32,
) -> Result<Files, String> {
    let mut out = BTreeMap::new();
    if items.is_empty() {
        for (k, v) in data {
            out.insert(k.clone(), (v.clone(), mode(None, default_mode, fallback)));
        }
    } else {
        for it in items {
            let v = data
                .get(&it.key)
                .ok_or_else(|| format!("key {:?} is missing", it.key))?;
            out.insert(
                it.path.clone(),
                (v.clone(), mode(it.mode, default_mode, fallback)),
            );
        }
    }
    Ok(out)
}

fn downward_value(
    pod: &Pod,
    host: &HostFacts,
    pod_ip: &str,
    item: &crate::k8s::pod::DownwardApiVolumeFile,
) -> Result<String, String> {
    if let Some(f) = &item.field_ref {
        if f.field_path == "metadata.labels" || f.field_path == "metadata.annotations" {
            let map = if f.field_path == "metadata.labels" {
                &pod.metadata.labels
            } else {
                &pod.metadata.annotations
            };
            return Ok(map.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect());
        }
        return field_ref(pod, host, pod_ip, &f.field_path)
            .ok_or_else(|| format!("unsupported fieldPath {:?}", f.field_path));
    }
    Err(format!(
        "item {:?} has no fieldRef (resourceFieldRef files are not supported)",
        item.path
    ))
}

/// A relative path inside a volume: no absolute paths, no `..`, no `..data` tricks.
fn safe_rel(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with(".."))
}

/// Writes `files` into `dir` atomically, the kubelet's way: the content goes to a fresh
/// timestamped directory, `..data` is switched to it with one rename of a symlink, and each
/// user-visible name is a symlink through `..data`. Readers see the old set or the new set,
/// never a mix. Unchanged content is not rewritten.
pub fn write_atomic(dir: &Path, files: &Files) -> Result<(), String> {
    for p in files.keys() {
        if !safe_rel(p) {
            return Err(format!(
                "file path {p:?} must be relative and stay inside the volume"
            ));
        }
    }
    mkdir_all(dir, 0o755)?;
    let data_link = dir.join("..data");
    if let Ok(cur) = fs::read_link(&data_link) {
        if same_content(&dir.join(&cur), files) {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let ts_dir = dir.join(&stamp);
    mkdir_all(&ts_dir, 0o755)?;
    for (rel, (bytes, m)) in files {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            mkdir_all(parent, 0o755)?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*m)
            .open(&path)
            .map_err(|e| format!("create {}: {e}", path.display()))?;
        f.write_all(bytes)
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*m))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)
        .map_err(|e| format!("symlink ..data_tmp: {e}"))?;
    let old = fs::read_link(&data_link).ok();
    fs::rename(&tmp_link, &data_link).map_err(|e| format!("rename ..data: {e}"))?;
    // User-visible names: top-level entries point through ..data.
    let mut top: Vec<String> = files
        .keys()
        .filter_map(|k| k.split('/').next().map(String::from))
        .collect();
    top.dedup();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)
                .map_err(|e| format!("symlink {name}: {e}"))?;
        }
    }
    // Names that are gone from the new set.
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !top.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        if old != Path::new(&stamp) && old.to_string_lossy().starts_with("..") {
            let _ = fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

fn same_content(dir: &Path, files: &Files) -> bool {
    let mut count = 0usize;
    let ok = files.iter().all(|(rel, (bytes, m))| {
        count += 1;
        let p = dir.join(rel);
        match (fs::read(&p), fs::metadata(&p)) {
            (Ok(b), Ok(md)) => &b == bytes && md.permissions().mode() & 0o777 == *m,
            _ => false,
        }
    });
    ok && count_files(dir) == count
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

fn mkdir_all(dir: &Path, mode: u32) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))
}

/// Checks (and for the *OrCreate types, creates) a hostPath by its declared type.
pub fn check_host_path(path: &str, kind: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("hostPath {path:?} must be absolute"));
    }
    let p = Path::new(path);
    let md = fs::metadata(p);
    let want = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "hostPath type check failed: {path} is not a {what}"
            ))
        }
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match md {
            Ok(m) => want(m.is_dir(), "directory"),
            Err(_) => mkdir_all(p, 0o755),
        },
        "Directory" => want(md.map(|m| m.is_dir()).unwrap_or(false), "directory"),
        "FileOrCreate" => match md {
            Ok(m) => want(m.is_file(), "file"),
            Err(_) => {
                if let Some(parent) = p.parent() {
                    mkdir_all(parent, 0o755)?;
                }
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(p)
                    .map(|_| ())
                    .map_err(|e| format!("create {path}: {e}"))
            }
        },
        "File" => want(md.map(|m| m.is_file()).unwrap_or(false), "file"),
        "Socket" => want(
            md.map(|m| m.file_type().is_socket()).unwrap_or(false),
            "socket",
        ),
        "CharDevice" => want(
            md.map(|m| m.file_type().is_char_device()).unwrap_or(false),
            "character device",
        ),
        "BlockDevice" => want(
            md.map(|m| m.file_type().is_block_device()).unwrap_or(false),
            "block device",
        ),
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

fn mount_tmpfs(dir: &Path, size: Option<u64>) -> Result<(), String> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut data = String::from("mode=0777");
    if let Some(s) = size {
        data.push_str(&format!(",size={s}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| format!("mount tmpfs on {}: {e}", dir.display()))
}

/// Whether something is mounted at `dir`: it sits on another device than its parent. Two
/// stats instead of reading /proc/self/mountinfo, which on a node with many pods is hundreds
/// of lines read on every container start. (A bind mount of the parent's own filesystem would
/// not show; nothing here makes one.)
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::symlink_metadata(dir), fs::metadata(dir.join(".."))) {
        (Ok(d), Ok(parent)) => d.is_dir() && d.dev() != parent.dev(),
        _ => false,
    }
}

/// Mount points at or below `dir`, deepest first, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unescape_mount_path(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tl-vol-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_whole_sets() {
        let d = tmp("atomic");
        write_atomic(&d, &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        let first = fs::read_link(d.join("..data")).unwrap();
        write_atomic(&d, &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(
            fs::read_link(d.join("..data")).unwrap(),
            first,
            "unchanged content is not rewritten"
        );
        write_atomic(&d, &files(&[("a", "3")])).unwrap();
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(
            fs::symlink_metadata(d.join("sub")).is_err(),
            "removed names disappear"
        );
        assert!(!d.join(&first).exists(), "old generation removed");
        assert!(write_atomic(&d, &files(&[("../x", "1")])).is_err());
        assert!(write_atomic(&d, &files(&[("..data", "1")])).is_err());
        assert!(write_atomic(&d, &files(&[("/etc/x", "1")])).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn mount_point_check_agrees_with_mountinfo() {
        let d = tmp("mountpoint");
        fs::create_dir_all(&d).unwrap();
        assert!(!is_mount_point(&d));
        assert!(!is_mount_point(&d.join("missing")));
        // Whatever this host has mounted, the two ways of asking agree on /proc and /.
        let proc_listed = mounts_under(Path::new("/proc")).contains(&PathBuf::from("/proc"));
        assert_eq!(is_mount_point(Path::new("/proc")), proc_listed);
        assert!(!is_mount_point(Path::new("/")), "/ is its own parent");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn host_path_types() {
        let d = tmp("hostpath");
        let s = d.to_str().unwrap().to_string();
        assert!(check_host_path(&s, "Directory").is_err());
        check_host_path(&s, "DirectoryOrCreate").unwrap();
        check_host_path(&s, "Directory").unwrap();
        assert!(check_host_path(&s, "File").is_err());
        let f = format!("{s}/f");
        check_host_path(&f, "FileOrCreate").unwrap();
        check_host_path(&f, "File").unwrap();
        assert!(check_host_path(&f, "Socket").is_err());
        assert!(check_host_path("relative", "").is_err());
        assert!(check_host_path(&s, "Bogus").unwrap_err().contains("Bogus"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_dir_and_downward_api_then_cleanup() {
        let root = tmp("mgr");
        let m = VolumeManager::new(&root);
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","namespace":"n","uid":"uid-1","labels":{"a":"b"}},
            "spec":{"containers":[{"name":"c","image":"i"}],"volumes":[
              {"name":"scratch","emptyDir":{}},
              {"name":"info","downwardAPI":{"items":[{"path":"name","fieldRef":{"fieldPath":"metadata.name"}},
                                                      {"path":"labels","fieldRef":{"fieldPath":"metadata.labels"}}]}},
              {"name":"cfg","configMap":{"name":"x","optional":true}}]}}"#,
        )
        .unwrap();
        let vols = m
            .prepare(&pod, &HostFacts::default(), "", &NoApiData)
            .unwrap();
        assert!(Path::new(&vols["scratch"].host_path).is_dir());
        let info = Path::new(&vols["info"].host_path);
        assert_eq!(fs::read_to_string(info.join("name")).unwrap(), "p");
        assert_eq!(
            fs::read_to_string(info.join("labels")).unwrap(),
            "a=\"b\"\n"
        );
        assert!(vols["info"].read_only);
        m.cleanup("uid-1").unwrap();
        assert!(!m.pod_dir("uid-1").exists());
        assert!(m.cleanup("../etc").is_err());

        let mut bad = pod.clone();
        bad.spec.volumes[2].config_map.as_mut().unwrap().optional = None;
        let e = m
            .prepare(&bad, &HostFacts::default(), "", &NoApiData)
            .unwrap_err();
        assert_eq!(e.volume, "cfg");
        assert!(e.to_string().contains(r#"configmap "x" not found"#), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mount_path("/a\\04"), PathBuf::from("/a\\04"));
    }
}
