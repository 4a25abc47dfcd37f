//! Host side of pod volumes: hostPath type checks, emptyDir (disk or tmpfs), file volumes
//! (downwardAPI now; configMap, secret and projected through a [`VolumeData`] source) written
//! atomically the way the kubelet's `..data` symlink swap does, and CSI volumes (inline and
//! claims), whose driver calls live in [`crate::csi::volume`].
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
    /// Whether the API is unreachable right now (offline autonomy): a token that cannot be
    /// had is then written later, when the link returns, instead of holding the pod back.
    fn link_down(&self) -> bool {
        false
    }
    /// The Services of a namespace, for the pods' Service link variables (none by default:
    /// a node without an API server knows no Services).
    fn services(&self, _namespace: &str) -> Vec<crate::k8s::service::Service> {
        Vec::new()
    }
    /// One Service (the master service `default/kubernetes`), if known; none by default.
    fn service(&self, _namespace: &str, _name: &str) -> Option<crate::k8s::service::Service> {
        None
    }
    /// The PersistentVolume bound to claim `namespace/claim`, or why it cannot be had (a node
    /// without an API server has none).
    fn persistent_volume(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Result<crate::k8s::storage::PersistentVolume, String> {
        Err(format!(
            "claim {namespace}/{claim}: no API server to read it from"
        ))
    }
    /// The CSIDriver object of a driver, if known (none by default).
    fn csi_driver(&self, _name: &str) -> Option<crate::k8s::storage::CsiDriver> {
        None
    }
    /// A VolumeAttachment, if known (none by default).
    fn volume_attachment(&self, _name: &str) -> Option<crate::k8s::storage::VolumeAttachment> {
        None
    }
}

/// The CSI volume code's view of a [`VolumeData`] source.
struct CsiLookup<'a>(&'a dyn VolumeData);

impl crate::csi::volume::Lookup for CsiLookup<'_> {
    fn persistent_volume(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Result<crate::k8s::storage::PersistentVolume, String> {
        self.0.persistent_volume(namespace, claim)
    }
    fn csi_driver(&self, name: &str) -> Option<crate::k8s::storage::CsiDriver> {
        self.0.csi_driver(name)
    }
    fn volume_attachment(&self, name: &str) -> Option<crate::k8s::storage::VolumeAttachment> {
        self.0.volume_attachment(name)
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.0.secret(namespace, name)
    }
    fn service_account_token(&self, pod: &Pod, audience: &str, expiration: i64) -> Option<String> {
        self.0.service_account_token(pod, audience, expiration)
    }
}

/// The source of a node with no API server (yet): nothing from the API, but the CSIDriver
/// objects an earlier online run kept on flash (`<root-dir>/csi-objects.json`), so an inline
/// CSI volume of a static pod is published as its CSIDriver says even offline.
pub struct OfflineData {
    drivers: BTreeMap<String, crate::k8s::storage::CsiDriver>,
}

impl OfflineData {
    /// Reads what is kept under `root_dir` (nothing, when there is no such file).
    pub fn load(root_dir: &Path) -> OfflineData {
        OfflineData {
            drivers: crate::csi::objects::kept_drivers(
                &root_dir.join(crate::csi::objects::KEEP_FILE),
            ),
        }
    }
}

impl VolumeData for OfflineData {
    fn config_map(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
    fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }
    fn service_account_token(&self, _: &Pod, _: &str, _: i64) -> Option<String> {
        None
    }
    fn csi_driver(&self, name: &str) -> Option<crate::k8s::storage::CsiDriver> {
        self.drivers.get(name).cloned()
    }
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
    /// Idempotent: an already prepared volume is reused (file volumes are refreshed). One
    /// pod's volumes are prepared (or removed) by one thread at a time.
    pub fn prepare(
        &self,
        pod: &Pod,
        host: &HostFacts,
        pod_ip: &str,
        data: &dyn VolumeData,
    ) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
        let _busy = PodBusy::take(self.pod_dir(&pod.metadata.uid));
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
        if !valid_uid(uid) {
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
                    // Tokens are never kept on disk: while the API cannot give one, the
                    // still-valid token already in this pod's own tmpfs serves; with none
                    // (an offline reboot) the pod starts without it, and the periodic volume
                    // refresh writes a fresh one once the link is back.
                    let token = data
                        .service_account_token(pod, &t.audience, exp)
                        .or_else(|| valid_token_in(&dir, &t.path, std::time::SystemTime::now()));
                    match token {
                        Some(token) => {
                            files.insert(
                                t.path.clone(),
                                (token.into_bytes(), mode(None, p.default_mode, 0o644)),
                            );
                        }
                        None if data.link_down() => log::warn!(
                            "pod {}: volume {:?}: no service account token while the API is \
                             unreachable; starting without it until the link returns",
                            pod.key(),
                            v.name
                        ),
                        None => return Err("service account token is not available".into()),
                    }
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
        if v.csi.is_some() || v.persistent_volume_claim.is_some() {
            let dir = self.volume_dir(uid, crate::csi::volume::PLUGIN_DIR, &v.name);
            let mut again = false;
            if let Some((path, read_only)) = crate::csi::volume::published(&dir) {
                let driver = crate::csi::volume::vol_data(&dir).map(|d| d.driver_name);
                let drv = driver.and_then(|d| data.csi_driver(&d));
                if !crate::csi::volume::requires_republish(drv.as_ref()) {
                    return Ok(HostVolume {
                        host_path: path.display().to_string(),
                        read_only,
                    });
                }
                again = true;
            }
            let req = crate::csi::volume::request(pod, v, &host.node_name, &CsiLookup(data))?;
            let root = self.pods_root.parent().unwrap_or(&self.pods_root);
            let path = crate::csi::volume::publish(root, &dir, &v.name, &req, again)?;
            return Ok(HostVolume {
                host_path: path.display().to_string(),
                read_only: req.read_only,
            });
        }
        let kinds = v.source_kinds();
        Err(format!("unsupported volume source {kinds:?}"))
    }

    /// Unmounts everything mounted below the pod's directory (deepest first), then removes
    /// the directory without following symlinks or crossing into a mount that is still
    /// there. Returns how many mounts were taken down.
    pub fn cleanup(&self, uid: &str) -> Result<usize, VolumeError> {
        let err = |reason: String| VolumeError {
            pod: uid.to_string(),
            volume: String::new(),
            reason,
        };
        if !valid_uid(uid) {
            return Err(err(format!("pod UID {uid:?} cannot name a directory")));
        }
        let dir = self.pod_dir(uid);
        // Never wait here: the caller is the agent loop, and a preparation may be waiting for
        // the link. A busy pod is cleaned at the next pass.
        let busy = PodBusy::try_take(dir.clone()).ok_or_else(|| {
            err("its volumes are being prepared or removed; retried later".into())
        })?;
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(0);
        }
        if !crate::csi::volume::has_published(&dir) {
            return remove_pod_dir(&dir).map_err(err);
        }
        // CSI volumes go back to their driver first (unpublish, then unstage the last user),
        // and a driver call may take up to its deadline: the whole removal runs on a thread
        // of its own, which holds the directory busy, instead of stalling the agent loop.
        drop(busy);
        let bg = dir.clone();
        let pod = uid.to_string();
        std::thread::Builder::new()
            .name("csi-teardown".into())
            .spawn(move || {
                let Some(_busy) = PodBusy::try_take(bg.clone()) else {
                    return;
                };
                match remove_pod_dir(&bg) {
                    Ok(n) => log::info!(
                        "pod {pod}: CSI volumes unpublished, {n} volume mount(s) and its directory removed"
                    ),
                    Err(e) => log::warn!("pod {pod}: removing its volumes: {e}; retried later"),
                }
            })
            .map_err(|e| err(format!("cannot start the CSI teardown thread: {e}")))?;
        Err(err(
            "its CSI volumes are being unpublished in the background".into(),
        ))
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

/// Pod directories some thread is preparing or removing, process-wide (every volume manager
/// over the same root shares it).
static BUSY: (std::sync::Mutex<Vec<PathBuf>>, std::sync::Condvar) =
    (std::sync::Mutex::new(Vec::new()), std::sync::Condvar::new());

/// The right to work on one pod directory; others wait for it to drop.
struct PodBusy(PathBuf);

impl PodBusy {
    fn take(dir: PathBuf) -> PodBusy {
        let (m, cv) = &BUSY;
        let mut busy = m.lock().unwrap_or_else(|p| p.into_inner());
        while busy.contains(&dir) {
            busy = cv.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        busy.push(dir.clone());
        PodBusy(dir)
    }

    fn try_take(dir: PathBuf) -> Option<PodBusy> {
        let mut busy = BUSY.0.lock().unwrap_or_else(|p| p.into_inner());
        if busy.contains(&dir) {
            return None;
        }
        busy.push(dir.clone());
        Some(PodBusy(dir))
    }
}

impl Drop for PodBusy {
    fn drop(&mut self) {
        let (m, cv) = &BUSY;
        m.lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|d| d != &self.0);
        cv.notify_all();
    }
}

/// Unpublishes the CSI volumes of the pod directory `dir` (unstaging what no other pod uses),
/// unmounts everything else below it and removes it; how many mounts were taken down. The
/// caller holds the directory busy.
fn remove_pod_dir(dir: &Path) -> Result<usize, String> {
    crate::csi::volume::unpublish_pod(dir)?;
    let mounts = mounts_under(dir);
    for m in &mounts {
        nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmount {}: {e}", m.display()))?;
    }
    remove_tree(dir)?;
    Ok(mounts.len())
}

/// Whether a pod UID can name a directory of its own (no separators, no dot names).
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && !uid.contains('/') && !uid.starts_with('.') && !uid.contains('\0')
}

/// Removes `path` and everything below it. Symlinks are removed, never followed; a mount
/// still in place below `path` (listed in mountinfo, which catches bind mounts of the same
/// filesystem, or a directory on another device, which catches one made meanwhile) stops the
/// removal with an error, so nothing is ever deleted through a mount.
pub fn remove_tree(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("stat {}: {e}", path.display())),
    };
    if !md.is_dir() {
        return fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()));
    }
    if let Some(m) = mounts_under(path).first() {
        return Err(format!(
            "{} is a mount point: not removed through it",
            m.display()
        ));
    }
    remove_below(path, md.dev())?;
    fs::remove_dir(path).map_err(|e| format!("remove {}: {e}", path.display()))
}

fn remove_below(dir: &Path, dev: u64) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let rd = fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for e in rd {
        let e = e.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let p = e.path();
        let md = fs::symlink_metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
        if md.is_dir() {
            if md.dev() != dev {
                return Err(format!(
                    "{} is a mount point: not removed through it",
                    p.display()
                ));
            }
            remove_below(&p, dev)?;
            fs::remove_dir(&p).map_err(|e| format!("remove {}: {e}", p.display()))?;
        } else {
            fs::remove_file(&p).map_err(|e| format!("remove {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// The token file `rel` of a projected volume at `dir`, if it holds a JWT that has not
/// expired at `now` (the `exp` claim of its payload).
fn valid_token_in(dir: &Path, rel: &str, now: std::time::SystemTime) -> Option<String> {
    if !safe_rel(rel) {
        return None;
    }
    let text = fs::read_to_string(dir.join(rel)).ok()?;
    let exp = jwt_expiry(text.trim())?;
    let now = now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    (exp > now).then(|| text.trim().to_string())
}

/// The `exp` claim (seconds since the epoch) of a compact JWT; `None` for anything else.
pub fn jwt_expiry(jwt: &str) -> Option<u64> {
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let std_alphabet: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let bytes = crate::k8s::configmap::base64_decode(&std_alphabet)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
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
    if let Some(r) = &item.resource_field_ref {
        // A volume item must name its container (API validation); the kubelet resolves it
        // with node allocatable for unset limits, as for env.
        if r.container_name.is_empty() {
            return Err(format!(
                "item {:?}: resourceFieldRef needs a containerName",
                item.path
            ));
        }
        let any = pod
            .spec
            .all_containers()
            .next()
            .ok_or_else(|| "pod has no containers".to_string())?;
        return crate::runtime::env::resource_field_value(pod, any, r, &host.allocatable)
            .map_err(|e| format!("item {:?}: {e}", item.path));
    }
    Err(format!(
        "item {:?} has neither fieldRef nor resourceFieldRef",
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

    /// Upstream downwardAPI volume plugin (`ExtractResourceValueByContainerNameAndNodeAllocatable`)
    /// and the conformance tests "should provide container's cpu/memory limit/request" and
    /// "should provide node allocatable (cpu/memory) as default ... limit if the limit is not
    /// set": resourceFieldRef items are written like env values, divisor and rounding included.
    #[test]
    fn downward_resource_files() {
        let root = tmp("resfiles");
        let m = VolumeManager::new(&root);
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","namespace":"n","uid":"uid-r"},
            "spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"memory":"64Mi","cpu":"500m"},
                                                               "requests":{"memory":"32Mi","cpu":"250m"}}},
                                  {"name":"free","image":"i"}],
              "volumes":[{"name":"info","downwardAPI":{"items":[
                {"path":"cpu_limit","resourceFieldRef":{"containerName":"c","resource":"limits.cpu","divisor":"1m"}},
                {"path":"cpu_request","resourceFieldRef":{"containerName":"c","resource":"requests.cpu"}},
                {"path":"mem_limit","resourceFieldRef":{"containerName":"c","resource":"limits.memory","divisor":"1Mi"}},
                {"path":"mem_request","resourceFieldRef":{"containerName":"c","resource":"requests.memory"}},
                {"path":"free_cpu","resourceFieldRef":{"containerName":"free","resource":"limits.cpu"}},
                {"path":"free_mem","resourceFieldRef":{"containerName":"free","resource":"limits.memory"}}]}}]}}"#,
        )
        .unwrap();
        let host = HostFacts {
            allocatable: crate::runtime::env::Allocatable {
                cpu_millis: 2000,
                memory: 1 << 30,
                ephemeral_storage: 0,
            },
            ..HostFacts::default()
        };
        let vols = m.prepare(&pod, &host, "", &NoApiData).unwrap();
        let dir = Path::new(&vols["info"].host_path);
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu_limit"), "500");
        assert_eq!(read("cpu_request"), "1");
        assert_eq!(read("mem_limit"), "64");
        assert_eq!(read("mem_request"), (32u64 << 20).to_string());
        assert_eq!(read("free_cpu"), "2");
        assert_eq!(read("free_mem"), (1u64 << 30).to_string());
        m.cleanup("uid-r").unwrap();

        let mut bad = pod.clone();
        let d = bad.spec.volumes[0].downward_api.as_mut().unwrap();
        d.items[0]
            .resource_field_ref
            .as_mut()
            .unwrap()
            .container_name = String::new();
        let e = m.prepare(&bad, &host, "", &NoApiData).unwrap_err();
        assert!(e.to_string().contains("containerName"), "{e}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn jwt_expiry_reads_the_exp_claim() {
        use crate::k8s::configmap::base64_encode;
        let url = |s: &str| {
            base64_encode(s.as_bytes())
                .trim_end_matches('=')
                .replace('+', "-")
                .replace('/', "_")
        };
        let jwt = format!(
            "{}.{}.sig",
            url(r#"{"alg":"RS256"}"#),
            url(r#"{"exp":2000000000,"sub":"x?>"}"#)
        );
        assert_eq!(jwt_expiry(&jwt), Some(2_000_000_000));
        assert_eq!(jwt_expiry("a.b"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
        assert_eq!(jwt_expiry(&format!("h.{}.s", url("[]"))), None);
        assert_eq!(jwt_expiry("h.!!!.s"), None);

        let d = tmp("token");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("token"), format!("{jwt}\n")).unwrap();
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(
            valid_token_in(&d, "token", at(1_999_999_999)),
            Some(jwt.clone())
        );
        assert_eq!(
            valid_token_in(&d, "token", at(2_000_000_000)),
            None,
            "expired"
        );
        assert_eq!(valid_token_in(&d, "../token", at(0)), None);
        assert_eq!(valid_token_in(&d, "missing", at(0)), None);
        fs::remove_dir_all(&d).unwrap();
    }

    /// Removal never follows a symlink and never deletes through a mount: a hostPath-like
    /// directory linked or bind-mounted below the tree keeps its files.
    #[test]
    fn remove_tree_stays_on_its_filesystem() {
        let d = tmp("rmtree");
        let host = d.join("host");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("keep"), b"precious").unwrap();
        let tree = d.join("pod");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&host, tree.join("a/link")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert_eq!(fs::read(host.join("keep")).unwrap(), b"precious");
        assert!(
            remove_tree(&tree).is_ok(),
            "a missing tree is already removed"
        );

        if nix::unistd::Uid::effective().is_root() {
            fs::create_dir_all(tree.join("vol")).unwrap();
            nix::mount::mount(
                Some(&host),
                &tree.join("vol"),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
            // The bind mount is of the same filesystem (same device): only mountinfo shows it.
            let e = remove_tree(&tree).unwrap_err();
            assert!(e.contains("mount point"), "{e}");
            assert_eq!(fs::read(host.join("keep")).unwrap(), b"precious");
            fs::create_dir_all(tree.join("tmp")).unwrap();
            mount_tmpfs(&tree.join("tmp"), Some(1 << 20)).unwrap();
            fs::write(tree.join("tmp/secret"), b"s").unwrap();
            let e = remove_tree(&tree).unwrap_err();
            assert!(e.contains("mount point"), "{e}");
            assert!(
                tree.join("tmp/secret").exists(),
                "nothing removed through the mount"
            );
            let m = VolumeManager::new(&d);
            // The volume manager's cleanup unmounts first, then removes: "pod" is the UID.
            assert_eq!(m.cleanup("pod").unwrap(), 2);
            assert!(!tree.exists());
            assert_eq!(fs::read(host.join("keep")).unwrap(), b"precious");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount_path("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mount_path("/a\\04"), PathBuf::from("/a\\04"));
    }
}
