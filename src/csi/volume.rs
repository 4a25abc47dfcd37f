//! CSI volumes of a pod: what to ask the driver for ([`request`], pure), and the stage/publish
//! and unpublish/unstage calls with the directories the kubelet uses ([`publish`],
//! [`unpublish_pod`]).
//!
//! Layout (as the kubelet has it): a volume is published at
//! `<root>/pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`, with `vol_data.json` beside it
//! naming the driver, the volume id and the staging path (never a secret), so that teardown
//! needs neither the pod nor the API. Drivers with STAGE_UNSTAGE_VOLUME stage a persistent
//! volume once per node at
//! `<root>/plugins/kubernetes.io/csi/<driver>/<sha256 hex of the volume handle>/globalmount`,
//! unstaged when the last published copy goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::client::CsiClient;
use super::proto::{AccessModeKind, NodePublishVolumeRequest, NodeStageVolumeRequest};
use super::registry;
use crate::k8s::pod::{Pod, Volume};
use crate::k8s::storage::{CsiDriver, PersistentVolume, VolumeAttachment};

/// The volume plugin directory name of CSI volumes in a pod's `volumes/`.
pub const PLUGIN_DIR: &str = "kubernetes.io~csi";
/// The volume-context key telling a driver a volume is an inline ephemeral one.
pub const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";

/// Where the volume code reads API objects a CSI volume needs (the runtime's volume data
/// source implements it).
pub trait Lookup {
    /// The PV bound to claim `namespace/claim`, or why it cannot be had yet.
    fn persistent_volume(&self, namespace: &str, claim: &str) -> Result<PersistentVolume, String>;
    /// The CSIDriver object of `name`, if known.
    fn csi_driver(&self, name: &str) -> Option<CsiDriver>;
    /// The VolumeAttachment `name`, if known.
    fn volume_attachment(&self, name: &str) -> Option<VolumeAttachment>;
    /// A Secret's data, if available.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// A service account token bound to `pod` for `audience`, if one can be had (the
    /// CSIDriver's `tokenRequests`).
    fn service_account_token(&self, pod: &Pod, audience: &str, expiration: i64) -> Option<String>;
}

/// Everything one publish needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountRequest {
    /// Driver name.
    pub driver: String,
    /// The driver's volume id (PV volumeHandle, or the generated id of an inline volume).
    pub volume_id: String,
    /// Publish read-only.
    pub read_only: bool,
    /// Filesystem type ("" for the driver's default).
    pub fs_type: String,
    /// Mount options (the PV's).
    pub mount_options: Vec<String>,
    /// Access mode.
    pub access_mode: Option<AccessModeKind>,
    /// Volume context (attributes, pod info, ephemeral flag).
    pub volume_context: BTreeMap<String, String>,
    /// From the VolumeAttachment, when the driver attaches.
    pub publish_context: BTreeMap<String, String>,
    /// nodeStageSecretRef data.
    pub stage_secrets: BTreeMap<String, String>,
    /// nodePublishSecretRef data.
    pub publish_secrets: BTreeMap<String, String>,
    /// An inline ephemeral volume (never staged).
    pub ephemeral: bool,
    /// The group to give the published volume to (the pod's fsGroup, when the CSIDriver's
    /// fsGroupPolicy says so; see [`fs_group_to_apply`]).
    pub fs_group: Option<i64>,
    /// Only chown/chmod when the volume's root does not match already (the pod's
    /// `fsGroupChangePolicy: OnRootMismatch`).
    pub fs_group_on_root_mismatch: bool,
}

/// What `vol_data.json` keeps of a published volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolData {
    /// Driver name.
    pub driver_name: String,
    /// Volume id.
    pub volume_handle: String,
    /// The staging path, when staged.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub staging_path: String,
    /// The pod volume's name.
    pub spec_volume_name: String,
    /// Inline ephemeral volume.
    pub ephemeral: bool,
    /// Published read-only.
    pub read_only: bool,
}

fn sha256_hex(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The volume-context key carrying the service account tokens a CSIDriver asked for.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// Lifetime asked for a CSIDriver token request without `expirationSeconds` (the API
/// server's default for a TokenRequest).
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Whether the pod's fsGroup is applied to a published CSI volume, as the kubelet's CSI
/// mounter decides it: never without an fsGroup, for a read-only publish or with policy
/// `None`; always with `File`; with `ReadWriteOnceWithFSType` (the default, also for an
/// unknown policy or no CSIDriver object) only when an fsType is set and the volume is an
/// inline one (published single-node-writer) or a PV whose access modes include
/// ReadWriteOnce (or ReadWriteOncePod). Returns the group to apply. Pure.
pub fn fs_group_to_apply(
    policy: Option<&str>,
    fs_group: Option<i64>,
    read_only: bool,
    fs_type: &str,
    inline: bool,
    pv_access_modes: &[String],
) -> Option<i64> {
    let g = fs_group?;
    if read_only {
        return None;
    }
    match policy {
        Some("None") => None,
        Some("File") => Some(g),
        _ if fs_type.is_empty() => None,
        _ if inline => Some(g),
        _ => pv_access_modes
            .iter()
            .any(|m| m == "ReadWriteOnce" || m == "ReadWriteOncePod")
            .then_some(g),
    }
}

/// The `exp` claim of a JWT (seconds since the epoch), if it has one. Pure.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    // base64url without padding → standard base64.
    let std: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let bytes = crate::k8s::configmap::base64_decode(&std)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// The value of [`TOKENS_KEY`]: a JSON object audience → `{"token", "expirationTimestamp"}`
/// (RFC 3339), from (audience, token, expiry in seconds since the epoch). Pure.
pub fn encode_tokens(tokens: &[(String, String, i64)]) -> String {
    let m: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .map(|(aud, token, exp)| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs((*exp).max(0) as u64);
            (
                aud.clone(),
                serde_json::json!({
                    "token": token,
                    "expirationTimestamp": crate::k8s::coordination::format_time(at),
                }),
            )
        })
        .collect();
    serde_json::Value::Object(m).to_string()
}

/// The tokens `driver` asks for, bound to `pod`, encoded for the volume context; an error
/// names the audience whose token cannot be had yet (the driver would refuse the publish
/// without it).
fn token_context(
    pod: &Pod,
    driver: &CsiDriver,
    lookup: &dyn Lookup,
) -> Result<Option<String>, String> {
    let reqs = &driver.spec.token_requests;
    if reqs.is_empty() {
        return Ok(None);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out = Vec::with_capacity(reqs.len());
    for r in reqs {
        let exp = r.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        let token = lookup
            .service_account_token(pod, &r.audience, exp)
            .ok_or_else(|| {
                format!(
                    "waiting for a service account token for audience {:?} (CSIDriver {} tokenRequests)",
                    r.audience, driver.metadata.name
                )
            })?;
        let expiry = jwt_expiry(&token).unwrap_or(now + exp);
        out.push((r.audience.clone(), token, expiry));
    }
    Ok(Some(encode_tokens(&out)))
}

/// The id of an inline ephemeral volume: `csi-` + sha256(pod UID + volume name), as the
/// kubelet makes it.
pub fn ephemeral_volume_id(pod_uid: &str, volume: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{pod_uid}{volume}")))
}

/// The VolumeAttachment name of a volume on a node: `csi-` + sha256(handle + driver + node).
pub fn attachment_name(handle: &str, driver: &str, node: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{handle}{driver}{node}")))
}

/// The staging path of a volume under `root` (the agent's root dir).
pub fn staging_path(root: &Path, driver: &str, handle: &str) -> PathBuf {
    root.join("plugins/kubernetes.io/csi")
        .join(driver)
        .join(sha256_hex(handle))
        .join("globalmount")
}

/// The pod-info volume context the kubelet adds when the CSIDriver asks (`podInfoOnMount`).
pub fn pod_info(pod: &Pod, ephemeral: bool) -> BTreeMap<String, String> {
    let sa = if pod.spec.service_account_name.is_empty() {
        "default"
    } else {
        &pod.spec.service_account_name
    };
    [
        ("csi.storage.k8s.io/pod.name", pod.metadata.name.as_str()),
        (
            "csi.storage.k8s.io/pod.namespace",
            pod.metadata.namespace.as_str(),
        ),
        ("csi.storage.k8s.io/pod.uid", pod.metadata.uid.as_str()),
        ("csi.storage.k8s.io/serviceAccount.name", sa),
        (EPHEMERAL_KEY, if ephemeral { "true" } else { "false" }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn access_mode(modes: &[String], read_only: bool) -> AccessModeKind {
    // The kubelet's mapping of a PV's first access mode.
    match modes.first().map(String::as_str) {
        Some("ReadOnlyMany") => AccessModeKind::MultiNodeReaderOnly,
        Some("ReadWriteMany") => AccessModeKind::MultiNodeMultiWriter,
        _ if read_only && modes.is_empty() => AccessModeKind::SingleNodeReaderOnly,
        _ => AccessModeKind::SingleNodeWriter,
    }
}

fn secret_strings(
    lookup: &dyn Lookup,
    ns: &str,
    name: &str,
    what: &str,
) -> Result<BTreeMap<String, String>, String> {
    let data = lookup
        .secret(ns, name)
        .ok_or_else(|| format!("{what} secret {ns}/{name} is not available"))?;
    Ok(data
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect())
}

/// What to ask the driver for volume `v` of `pod` on node `node`: an inline `csi` volume or a
/// `persistentVolumeClaim` bound to a PV with a CSI source. Errors say why the volume cannot
/// be mounted yet (claim not bound, attachment pending, secret missing).
pub fn request(
    pod: &Pod,
    v: &Volume,
    node: &str,
    lookup: &dyn Lookup,
) -> Result<MountRequest, String> {
    let ns = &pod.metadata.namespace;
    if let Some(c) = &v.csi {
        if c.driver.is_empty() {
            return Err("csi.driver is empty".into());
        }
        let drv = lookup.csi_driver(&c.driver);
        if let Some(d) = &drv {
            let modes = &d.spec.volume_lifecycle_modes;
            if !modes.iter().any(|m| m == "Ephemeral") {
                return Err(format!(
                    "CSIDriver {} does not allow inline volumes (no Ephemeral in volumeLifecycleModes {modes:?})",
                    c.driver
                ));
            }
        }
        let mut ctx = c.volume_attributes.clone();
        // With no CSIDriver object known (no API server), the pod info is passed anyway: an
        // inline volume is useless to a driver that cannot tell it is ephemeral.
        if drv
            .as_ref()
            .is_none_or(|d| d.spec.pod_info_on_mount == Some(true))
        {
            ctx.extend(pod_info(pod, true));
        }
        if let Some(d) = &drv {
            if let Some(t) = token_context(pod, d, lookup)? {
                ctx.insert(TOKENS_KEY.to_owned(), t);
            }
        }
        let fs_type = c.fs_type.clone().unwrap_or_default();
        let fs_group = fs_group_to_apply(
            drv.as_ref().and_then(|d| d.spec.fs_group_policy.as_deref()),
            pod_fs_group(pod),
            c.read_only,
            &fs_type,
            true,
            &[],
        );
        let publish_secrets = match &c.node_publish_secret_ref {
            Some(r) => secret_strings(lookup, ns, &r.name, "nodePublishSecretRef")?,
            None => BTreeMap::new(),
        };
        return Ok(MountRequest {
            driver: c.driver.clone(),
            volume_id: ephemeral_volume_id(&pod.metadata.uid, &v.name),
            read_only: c.read_only,
            fs_type,
            mount_options: Vec::new(),
            access_mode: Some(AccessModeKind::SingleNodeWriter),
            volume_context: ctx,
            publish_context: BTreeMap::new(),
            stage_secrets: BTreeMap::new(),
            publish_secrets,
            ephemeral: true,
            fs_group,
            fs_group_on_root_mismatch: on_root_mismatch(pod),
        });
    }
    let Some(claim) = &v.persistent_volume_claim else {
        return Err("not a CSI volume".into());
    };
    let pv = lookup.persistent_volume(ns, &claim.claim_name)?;
    let Some(src) = &pv.spec.csi else {
        return Err(format!(
            "PersistentVolume {} has no CSI source (only CSI volumes are supported)",
            pv.metadata.name
        ));
    };
    if pv.spec.volume_mode.as_deref() == Some("Block") {
        return Err(format!(
            "PersistentVolume {}: raw block volumes are not supported",
            pv.metadata.name
        ));
    }
    let drv = lookup.csi_driver(&src.driver);
    // The kubelet waits for an attachment unless the CSIDriver says none is needed.
    let attach = drv
        .as_ref()
        .is_none_or(|d| d.spec.attach_required != Some(false));
    let mut publish_context = BTreeMap::new();
    if attach {
        let name = attachment_name(&src.volume_handle, &src.driver, node);
        let va = lookup.volume_attachment(&name);
        match va.and_then(|a| a.status) {
            Some(s) if s.attached => publish_context = s.attachment_metadata,
            _ => {
                return Err(format!(
                    "waiting for VolumeAttachment {name} of PersistentVolume {} to be attached (driver {} requires attach)",
                    pv.metadata.name, src.driver
                ))
            }
        }
    }
    let mut ctx = src.volume_attributes.clone();
    if drv
        .as_ref()
        .is_some_and(|d| d.spec.pod_info_on_mount == Some(true))
    {
        ctx.extend(pod_info(pod, false));
    }
    if let Some(d) = &drv {
        if let Some(t) = token_context(pod, d, lookup)? {
            ctx.insert(TOKENS_KEY.to_owned(), t);
        }
    }
    let stage_secrets = match &src.node_stage_secret_ref {
        Some(r) => secret_strings(lookup, &r.namespace, &r.name, "nodeStageSecretRef")?,
        None => BTreeMap::new(),
    };
    let publish_secrets = match &src.node_publish_secret_ref {
        Some(r) => secret_strings(lookup, &r.namespace, &r.name, "nodePublishSecretRef")?,
        None => BTreeMap::new(),
    };
    let read_only = claim.read_only || src.read_only;
    let fs_group = fs_group_to_apply(
        drv.as_ref().and_then(|d| d.spec.fs_group_policy.as_deref()),
        pod_fs_group(pod),
        read_only,
        &src.fs_type,
        false,
        &pv.spec.access_modes,
    );
    Ok(MountRequest {
        driver: src.driver.clone(),
        volume_id: src.volume_handle.clone(),
        read_only,
        fs_type: src.fs_type.clone(),
        mount_options: pv.spec.mount_options.clone(),
        access_mode: Some(access_mode(&pv.spec.access_modes, read_only)),
        volume_context: ctx,
        publish_context,
        stage_secrets,
        publish_secrets,
        ephemeral: false,
        fs_group,
        fs_group_on_root_mismatch: on_root_mismatch(pod),
    })
}

fn pod_fs_group(pod: &Pod) -> Option<i64> {
    pod.spec.security_context.as_ref().and_then(|s| s.fs_group)
}

fn on_root_mismatch(pod: &Pod) -> bool {
    pod.spec
        .security_context
        .as_ref()
        .and_then(|s| s.fs_group_change_policy.as_deref())
        == Some("OnRootMismatch")
}

/// The mode bits the kubelet adds for an fsGroup: group read/write (read only when
/// read-only), plus setgid and group search on directories. Pure.
pub fn fs_group_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut add = if read_only { 0o440 } else { 0o660 };
    if is_dir {
        add |= 0o2000 | 0o110;
    }
    mode | add
}

/// Gives everything below `dir` (not following symlinks) to group `gid` with the
/// [`fs_group_mode`] bits, as the kubelet's volume ownership does; with `on_root_mismatch`,
/// nothing is done when the root already has the group and the bits.
pub fn set_ownership(
    dir: &Path,
    gid: i64,
    read_only: bool,
    on_root_mismatch: bool,
) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let gid = u32::try_from(gid).map_err(|_| format!("fsGroup {gid} is not a group id"))?;
    let root = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let want = fs_group_mode(root.mode() & 0o7777, root.is_dir(), read_only);
    if on_root_mismatch && root.gid() == gid && root.mode() & 0o7777 == want {
        return Ok(());
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        std::os::unix::fs::lchown(&p, None, Some(gid))
            .map_err(|e| format!("chown {}: {e}", p.display()))?;
        if md.file_type().is_symlink() {
            continue;
        }
        let mode = fs_group_mode(md.mode() & 0o7777, md.is_dir(), read_only);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", p.display()))?;
        if md.is_dir() {
            let rd = std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

/// Mount points listed in /proc/self/mountinfo (a bind mount of the same filesystem does not
/// change the device, so stat cannot tell).
fn mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape(m)) == path)
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|x| (b'0'..=b'7').contains(x)));
        match oct {
            Some(d) if c == b'\\' => {
                out.push(((d[0] - b'0') << 6) | ((d[1] - b'0') << 3) | (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn driver_of(name: &str) -> Result<registry::Driver, String> {
    registry::global().driver(name).cloned().ok_or_else(|| {
        format!("CSI driver {name} is not registered on this node (waiting for its registration socket in plugins_registry)")
    })
}

fn write_vol_data(dir: &Path, d: &VolData) -> Result<(), String> {
    let bytes = serde_json::to_vec(d).map_err(|e| format!("encode vol_data.json: {e}"))?;
    crate::store::fs::write_private(&dir.join("vol_data.json"), &bytes)
        .map_err(|e| format!("write {}/vol_data.json: {e}", dir.display()))
}

/// Whether a published volume of the driver whose CSIDriver is `driver` is published again
/// at each volume refresh (`requiresRepublish`: the kubelet calls NodePublishVolume
/// periodically, e.g. with fresh tokens). Pure.
pub fn requires_republish(driver: Option<&CsiDriver>) -> bool {
    driver.is_some_and(|d| d.spec.requires_republish == Some(true))
}

/// Stages (if the driver stages) and publishes `req` into `vol_dir/mount` under agent root
/// `root`; returns the published path. Idempotent: a published volume is left as it is,
/// unless `again` (a driver with `requiresRepublish`), which calls NodePublishVolume on it
/// once more.
pub fn publish(
    root: &Path,
    vol_dir: &Path,
    spec_name: &str,
    req: &MountRequest,
    again: bool,
) -> Result<PathBuf, String> {
    let target = vol_dir.join("mount");
    if !again && mounted(&target) {
        return Ok(target);
    }
    let driver = driver_of(&req.driver)?;
    let client = CsiClient::new(&driver.name, &driver.endpoint);
    let capability = super::proto::VolumeCapability::mount(
        &req.fs_type,
        req.mount_options.clone(),
        req.access_mode.unwrap_or(AccessModeKind::SingleNodeWriter),
    );
    let mut staging = String::new();
    if driver.stage_unstage && !req.ephemeral {
        let path = staging_path(root, &driver.name, &req.volume_id);
        if !mounted(&path) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("create {}: {e}", parent.display()))?;
                write_vol_data(
                    parent,
                    &VolData {
                        driver_name: driver.name.clone(),
                        volume_handle: req.volume_id.clone(),
                        ..Default::default()
                    },
                )?;
            }
            let stage = NodeStageVolumeRequest {
                volume_id: req.volume_id.clone(),
                publish_context: req.publish_context.clone(),
                staging_target_path: path.display().to_string(),
                volume_capability: Some(capability.clone()),
                secrets: req.stage_secrets.clone(),
                volume_context: req.volume_context.clone(),
            };
            smol::block_on(client.node_stage_volume(&stage)).map_err(|e| e.to_string())?;
        }
        staging = path.display().to_string();
    }
    std::fs::create_dir_all(vol_dir).map_err(|e| format!("create {}: {e}", vol_dir.display()))?;
    // Written before the publish, so a crash in between still finds what to unpublish.
    write_vol_data(
        vol_dir,
        &VolData {
            driver_name: driver.name.clone(),
            volume_handle: req.volume_id.clone(),
            staging_path: staging.clone(),
            spec_volume_name: spec_name.to_owned(),
            ephemeral: req.ephemeral,
            read_only: req.read_only,
        },
    )?;
    let publish = NodePublishVolumeRequest {
        volume_id: req.volume_id.clone(),
        publish_context: req.publish_context.clone(),
        staging_target_path: staging,
        target_path: target.display().to_string(),
        volume_capability: Some(capability),
        readonly: req.read_only,
        secrets: req.publish_secrets.clone(),
        volume_context: req.volume_context.clone(),
    };
    smol::block_on(client.node_publish_volume(&publish)).map_err(|e| e.to_string())?;
    if let Some(gid) = req.fs_group {
        if let Err(e) = set_ownership(&target, gid, req.read_only, req.fs_group_on_root_mismatch) {
            // Not left half-done: unpublished, so the next try applies it again.
            let _ = smol::block_on(
                client.node_unpublish_volume(&req.volume_id, &target.display().to_string()),
            );
            return Err(format!("volume ownership for fsGroup {gid}: {e}"));
        }
    }
    Ok(target)
}

/// The published path of the volume at `vol_dir` and whether it is read-only, if it is
/// published already (re-preparing a running pod's volumes then needs no API object and no
/// driver call).
pub fn published(vol_dir: &Path) -> Option<(PathBuf, bool)> {
    let d = read_vol_data(vol_dir)?;
    let target = vol_dir.join("mount");
    mounted(&target).then_some((target, d.read_only))
}

/// The record kept beside the volume published at `dir`, if any.
pub fn vol_data(dir: &Path) -> Option<VolData> {
    read_vol_data(dir)
}

fn read_vol_data(dir: &Path) -> Option<VolData> {
    let bytes = std::fs::read(dir.join("vol_data.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the pod directory `pod_dir` has a CSI volume published (a record beside it).
pub fn has_published(pod_dir: &Path) -> bool {
    std::fs::read_dir(pod_dir.join("volumes").join(PLUGIN_DIR))
        .map(|rd| {
            rd.flatten()
                .any(|v| v.path().join("vol_data.json").exists())
        })
        .unwrap_or(false)
}

/// Every published volume's record under `pods_root` (`<root>/pods`), by its directory.
fn all_published(pods_root: &Path) -> Vec<(PathBuf, VolData)> {
    let mut out = Vec::new();
    let Ok(pods) = std::fs::read_dir(pods_root) else {
        return out;
    };
    for p in pods.flatten() {
        let Ok(vols) = std::fs::read_dir(p.path().join("volumes").join(PLUGIN_DIR)) else {
            continue;
        };
        for v in vols.flatten() {
            if let Some(d) = read_vol_data(&v.path()) {
                out.push((v.path(), d));
            }
        }
    }
    out
}

/// Unpublishes every CSI volume of the pod whose directory is `pod_dir` (under
/// `<root>/pods`), then unstages each staged one no other pod still uses. Returns how many
/// were unpublished; an unreachable driver stops it with an error (retried by the caller's
/// next pass: the kubelet too keeps such a pod's directory until the driver answers).
pub fn unpublish_pod(pod_dir: &Path) -> Result<usize, String> {
    let Ok(vols) = std::fs::read_dir(pod_dir.join("volumes").join(PLUGIN_DIR)) else {
        return Ok(0);
    };
    let pods_root = pod_dir.parent().unwrap_or(pod_dir);
    let mut n = 0;
    for v in vols.flatten() {
        let dir = v.path();
        let Some(d) = read_vol_data(&dir) else {
            continue;
        };
        let target = dir.join("mount");
        let driver = driver_of(&d.driver_name)
            .map_err(|e| format!("volume {}: cannot unpublish: {e}", d.spec_volume_name))?;
        let client = CsiClient::new(&driver.name, &driver.endpoint);
        smol::block_on(
            client.node_unpublish_volume(&d.volume_handle, &target.display().to_string()),
        )
        .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(dir.join("vol_data.json"));
        n += 1;
        if d.staging_path.is_empty() {
            continue;
        }
        let still_used = all_published(pods_root)
            .iter()
            .any(|(_, o)| o.staging_path == d.staging_path);
        if !still_used {
            smol::block_on(client.node_unstage_volume(&d.volume_handle, &d.staging_path))
                .map_err(|e| e.to_string())?;
            let staged = Path::new(&d.staging_path);
            if let Some(parent) = staged.parent() {
                if !mounted(staged) {
                    let _ = std::fs::remove_dir(staged);
                    let _ = std::fs::remove_file(parent.join("vol_data.json"));
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::storage::{CsiDriverSpec, VolumeAttachmentStatus};
    use serde_json::json;

    #[derive(Default)]
    struct Objects {
        pv: Option<PersistentVolume>,
        driver: Option<CsiDriver>,
        va: Option<VolumeAttachment>,
        secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
        tokens: bool,
    }

    impl Lookup for Objects {
        fn persistent_volume(&self, ns: &str, claim: &str) -> Result<PersistentVolume, String> {
            self.pv
                .clone()
                .ok_or_else(|| format!("claim {ns}/{claim} is not bound"))
        }
        fn csi_driver(&self, _: &str) -> Option<CsiDriver> {
            self.driver.clone()
        }
        fn volume_attachment(&self, _: &str) -> Option<VolumeAttachment> {
            self.va.clone()
        }
        fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            self.secrets.get(&format!("{ns}/{name}")).cloned()
        }
        fn service_account_token(&self, pod: &Pod, aud: &str, exp: i64) -> Option<String> {
            self.tokens
                .then(|| format!("token-{}-{aud}-{exp}", pod.metadata.uid))
        }
    }

    fn pod(volume: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [], "serviceAccountName": "sa", "volumes": [volume]}
        }))
        .unwrap()
    }

    fn driver(attach: Option<bool>, pod_info: bool, modes: &[&str]) -> CsiDriver {
        CsiDriver {
            metadata: Default::default(),
            spec: CsiDriverSpec {
                attach_required: attach,
                pod_info_on_mount: Some(pod_info),
                volume_lifecycle_modes: modes.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    /// Upstream (csi_mounter): an inline volume's id is csi-sha256(podUID+name); with
    /// podInfoOnMount the context gets the pod's name, namespace, UID, service account and
    /// `csi.storage.k8s.io/ephemeral: "true"`; a CSIDriver without the Ephemeral mode refuses.
    #[test]
    fn inline_volume_request() {
        let p = pod(
            json!({"name": "scratch", "csi": {"driver": "hostpath.csi.k8s.io",
            "volumeAttributes": {"size": "1Mi"}, "readOnly": true}}),
        );
        let v = &p.spec.volumes[0];
        let objs = Objects {
            driver: Some(driver(Some(false), true, &["Persistent", "Ephemeral"])),
            ..Default::default()
        };
        let r = request(&p, v, "node-1", &objs).unwrap();
        assert!(r.ephemeral && r.read_only);
        assert_eq!(r.volume_id, ephemeral_volume_id("u1", "scratch"));
        assert_eq!(r.volume_id.len(), 4 + 64);
        assert_eq!(r.volume_context[EPHEMERAL_KEY], "true");
        assert_eq!(r.volume_context["csi.storage.k8s.io/pod.uid"], "u1");
        assert_eq!(
            r.volume_context["csi.storage.k8s.io/serviceAccount.name"],
            "sa"
        );
        assert_eq!(r.volume_context["size"], "1Mi");
        let objs = Objects {
            driver: Some(driver(Some(false), true, &["Persistent"])),
            ..Default::default()
        };
        assert!(request(&p, v, "node-1", &objs)
            .unwrap_err()
            .contains("Ephemeral"));
        // No CSIDriver known (offline): allowed, with the pod info.
        let r = request(&p, v, "node-1", &Objects::default()).unwrap();
        assert_eq!(r.volume_context[EPHEMERAL_KEY], "true");
    }

    fn pv() -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pv1"},
            "spec": {"csi": {"driver": "d.csi", "volumeHandle": "h1", "fsType": "xfs",
                "volumeAttributes": {"a": "b"},
                "nodeStageSecretRef": {"name": "st", "namespace": "sec"}},
                "accessModes": ["ReadWriteOnce"], "mountOptions": ["noatime"]}
        }))
        .unwrap()
    }

    /// Upstream: a PV's CSI source gives handle, fsType, attributes, mount options and secrets;
    /// unless the CSIDriver says attachRequired false, the VolumeAttachment
    /// csi-sha256(handle+driver+node) must be attached first and its metadata is the publish
    /// context.
    #[test]
    fn claim_request_and_attach_wait() {
        let p = pod(json!({"name": "data", "persistentVolumeClaim": {"claimName": "c1"}}));
        let v = &p.spec.volumes[0];
        let mut objs = Objects {
            pv: Some(pv()),
            driver: Some(driver(Some(false), false, &[])),
            ..Default::default()
        };
        // A missing stage secret keeps the volume waiting.
        assert!(request(&p, v, "n", &objs).unwrap_err().contains("sec/st"));
        objs.secrets
            .insert("sec/st".into(), [("k".to_string(), b"v".to_vec())].into());
        let r = request(&p, v, "n", &objs).unwrap();
        assert_eq!(r.volume_id, "h1");
        assert_eq!(r.fs_type, "xfs");
        assert_eq!(r.mount_options, vec!["noatime".to_string()]);
        assert_eq!(r.stage_secrets["k"], "v");
        assert_eq!(r.access_mode, Some(AccessModeKind::SingleNodeWriter));
        assert!(!r.ephemeral && !r.read_only);
        assert!(!r.volume_context.contains_key(EPHEMERAL_KEY));
        // attachRequired (or no CSIDriver): wait for the attachment.
        objs.driver = None;
        let e = request(&p, v, "n", &objs).unwrap_err();
        assert!(e.contains(&attachment_name("h1", "d.csi", "n")), "{e}");
        objs.va = Some(VolumeAttachment {
            metadata: Default::default(),
            status: Some(VolumeAttachmentStatus {
                attached: true,
                attachment_metadata: [("dev".to_string(), "/dev/x".to_string())].into(),
            }),
        });
        let r = request(&p, v, "n", &objs).unwrap();
        assert_eq!(r.publish_context["dev"], "/dev/x");
        // Unbound claim / non-CSI PV.
        objs.pv = None;
        assert!(request(&p, v, "n", &objs)
            .unwrap_err()
            .contains("not bound"));
        let mut nfs = pv();
        nfs.spec.csi = None;
        objs.pv = Some(nfs);
        assert!(request(&p, v, "n", &objs)
            .unwrap_err()
            .contains("no CSI source"));
    }

    #[test]
    fn paths_and_escapes() {
        let s = staging_path(Path::new("/var/lib/t"), "d.csi", "h1");
        assert!(s.starts_with("/var/lib/t/plugins/kubernetes.io/csi/d.csi/"));
        assert!(s.ends_with("globalmount"));
        // sha256("h1") in hex.
        assert_eq!(s.parent().unwrap().file_name().unwrap().len(), 64);
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\04"), "/a\\04");
        let d = VolData {
            driver_name: "d".into(),
            volume_handle: "h".into(),
            staging_path: String::new(),
            spec_volume_name: "v".into(),
            ephemeral: true,
            read_only: false,
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<VolData>(&text).unwrap(), d);
        assert!(!text.contains("stagingPath"));
    }

    /// Upstream (csi_mounter supportsFSGroup, and the kubernetes-csi docs on fsGroupPolicy):
    /// no fsGroup, a read-only publish or policy None → nothing; File → always;
    /// ReadWriteOnceWithFSType (the default, also with no CSIDriver) → only with an fsType,
    /// and for a PV only when its access modes include ReadWriteOnce; inline volumes are
    /// published single-node-writer, so they qualify with an fsType.
    #[test]
    fn fs_group_policy_decision() {
        let rwo = ["ReadWriteOnce".to_string()];
        let rox = ["ReadOnlyMany".to_string()];
        assert_eq!(
            fs_group_to_apply(Some("File"), None, false, "", false, &rwo),
            None
        );
        assert_eq!(
            fs_group_to_apply(Some("File"), Some(7), true, "ext4", false, &rwo),
            None
        );
        assert_eq!(
            fs_group_to_apply(Some("None"), Some(7), false, "ext4", false, &rwo),
            None
        );
        assert_eq!(
            fs_group_to_apply(Some("File"), Some(7), false, "", false, &rox),
            Some(7)
        );
        assert_eq!(
            fs_group_to_apply(Some("File"), Some(7), false, "", true, &[]),
            Some(7)
        );
        for p in [None, Some("ReadWriteOnceWithFSType")] {
            assert_eq!(fs_group_to_apply(p, Some(7), false, "", false, &rwo), None);
            assert_eq!(
                fs_group_to_apply(p, Some(7), false, "ext4", false, &rwo),
                Some(7)
            );
            assert_eq!(
                fs_group_to_apply(p, Some(7), false, "ext4", false, &rox),
                None
            );
            assert_eq!(
                fs_group_to_apply(p, Some(7), false, "ext4", false, &[]),
                None
            );
            assert_eq!(
                fs_group_to_apply(p, Some(7), false, "ext4", true, &[]),
                Some(7)
            );
            assert_eq!(fs_group_to_apply(p, Some(7), false, "", true, &[]), None);
        }
        let rwop = ["ReadWriteOncePod".to_string()];
        assert_eq!(
            fs_group_to_apply(None, Some(7), false, "xfs", false, &rwop),
            Some(7)
        );
        // Group rw (r when read-only); directories also setgid and group search.
        assert_eq!(fs_group_mode(0o700, true, false), 0o2770);
        assert_eq!(fs_group_mode(0o600, false, false), 0o660);
        assert_eq!(fs_group_mode(0o600, false, true), 0o640);
    }

    /// The request carries the decision: a PV (fsType xfs, RWO) with the pod's fsGroup under
    /// a CSIDriver with the default policy gets it; the hostpath-like inline volume (no
    /// fsType) only with policy File.
    #[test]
    fn requests_carry_the_fs_group() {
        let mut p = pod(json!({"name": "data", "persistentVolumeClaim": {"claimName": "c1"}}));
        p.spec.security_context = Some(crate::k8s::pod::PodSecurityContext {
            fs_group: Some(2000),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            ..Default::default()
        });
        let mut objs = Objects {
            pv: Some(pv()),
            driver: Some(driver(Some(false), false, &["Persistent", "Ephemeral"])),
            ..Default::default()
        };
        objs.secrets
            .insert("sec/st".into(), [("k".to_string(), b"v".to_vec())].into());
        let r = request(&p, &p.spec.volumes[0], "n", &objs).unwrap();
        assert_eq!(r.fs_group, Some(2000));
        assert!(r.fs_group_on_root_mismatch);
        p.spec.volumes[0] =
            serde_json::from_value(json!({"name": "s", "csi": {"driver": "d.csi"}})).unwrap();
        let r = request(&p, &p.spec.volumes[0], "n", &objs).unwrap();
        assert_eq!(r.fs_group, None);
        if let Some(d) = objs.driver.as_mut() {
            d.spec.fs_group_policy = Some("File".into());
        }
        let r = request(&p, &p.spec.volumes[0], "n", &objs).unwrap();
        assert_eq!(r.fs_group, Some(2000));
    }

    /// Upstream (kubernetes-csi docs, Token Requests): the volume context key
    /// `csi.storage.k8s.io/serviceAccount.tokens` holds a JSON object audience →
    /// {token, expirationTimestamp (RFC 3339)}; a token that cannot be had keeps the volume
    /// waiting (the driver would refuse the publish).
    #[test]
    fn token_requests_in_the_volume_context() {
        // A JWT whose payload is {"exp":1700000000}.
        let payload = crate::k8s::configmap::base64_encode(br#"{"exp":1700000000}"#);
        let payload = payload
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.%%%.c"), None);
        let text = encode_tokens(&[("vault".into(), jwt.clone(), 1_700_000_000)]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["vault"]["token"], jwt.as_str());
        assert_eq!(v["vault"]["expirationTimestamp"], "2023-11-14T22:13:20Z");

        let p = pod(json!({"name": "s", "csi": {"driver": "d.csi"}}));
        let mut d = driver(Some(false), false, &["Ephemeral"]);
        d.spec.token_requests = vec![
            crate::k8s::storage::TokenRequest {
                audience: "vault".into(),
                expiration_seconds: Some(600),
            },
            crate::k8s::storage::TokenRequest {
                audience: String::new(),
                expiration_seconds: None,
            },
        ];
        let mut objs = Objects {
            driver: Some(d),
            ..Default::default()
        };
        let e = request(&p, &p.spec.volumes[0], "n", &objs).unwrap_err();
        assert!(e.contains("vault"), "{e}");
        objs.tokens = true;
        let r = request(&p, &p.spec.volumes[0], "n", &objs).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.volume_context[TOKENS_KEY]).unwrap();
        assert_eq!(v["vault"]["token"], "token-u1-vault-600");
        assert_eq!(v[""]["token"], format!("token-u1--{DEFAULT_TOKEN_SECONDS}"));
        assert!(v[""]["expirationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        // No tokenRequests: no key.
        objs.driver = Some(driver(Some(false), false, &["Ephemeral"]));
        let r = request(&p, &p.spec.volumes[0], "n", &objs).unwrap();
        assert!(!r.volume_context.contains_key(TOKENS_KEY));
    }

    /// The kubelet's volume ownership: every file and directory below the root gets the group
    /// and the bits, symlinks are not followed; OnRootMismatch leaves a matching root alone.
    #[test]
    fn ownership_of_a_published_tree() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("tinylet-csi-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), b"x").unwrap();
        std::fs::set_permissions(dir.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let outside = std::fs::metadata("/etc/hostname").unwrap();
        if nix::unistd::geteuid().is_root() {
            set_ownership(&dir, 4321, false, false).unwrap();
            let f = std::fs::metadata(dir.join("sub/f")).unwrap();
            assert_eq!(f.gid(), 4321);
            assert_eq!(f.mode() & 0o7777, 0o660);
            let d = std::fs::metadata(dir.join("sub")).unwrap();
            assert_eq!(d.mode() & 0o2070, 0o2070);
            assert_eq!(
                std::fs::metadata("/etc/hostname").unwrap().gid(),
                outside.gid()
            );
            // OnRootMismatch: the root matches, so a file changed since is left alone.
            std::fs::set_permissions(dir.join("sub/f"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            set_ownership(&dir, 4321, false, true).unwrap();
            let f = std::fs::metadata(dir.join("sub/f")).unwrap();
            assert_eq!(f.mode() & 0o7777, 0o600);
        }
        assert!(set_ownership(&dir, -1, false, false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Upstream (kubernetes-csi docs, Token Requests): with `requiresRepublish: true` the
    /// kubelet calls NodePublishVolume on a published volume periodically; unset or false (or
    /// no CSIDriver known) it does not.
    #[test]
    fn republish_only_when_the_driver_asks() {
        let mut d = driver(Some(false), false, &[]);
        assert!(!requires_republish(None));
        assert!(!requires_republish(Some(&d)));
        d.spec.requires_republish = Some(false);
        assert!(!requires_republish(Some(&d)));
        d.spec.requires_republish = Some(true);
        assert!(requires_republish(Some(&d)));
        let v: CsiDriver = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "spec": {"requiresRepublish": true}}),
        )
        .unwrap();
        assert!(requires_republish(Some(&v)));
    }
}
