//! The API objects CSI volumes need — a claim's bound PersistentVolume, CSIDriver objects,
//! VolumeAttachments — read through the node's API client with a small cache. The PVs (their
//! CSI source: no secret is in them) and CSIDriver facts are also kept in one file on flash, so
//! pods with claims and inline volumes can be published again after an offline reboot: the
//! API pods themselves are in the store, each claim's binding (`namespace/claim` → its PV)
//! here. While the API is unreachable the kept objects are served without asking it, so an
//! offline start does not wait out a connection timeout per volume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::Client;
use crate::k8s::storage::{CsiDriver, PersistentVolume, PersistentVolumeClaim, VolumeAttachment};

/// The file under the root dir that keeps the objects.
pub const KEEP_FILE: &str = "csi-objects.json";

/// The CSIDriver objects kept in `path` by an earlier online run (none when the file is
/// missing or unreadable: a node that was never online knows no CSIDriver).
pub fn kept_drivers(path: &Path) -> BTreeMap<String, CsiDriver> {
    let Ok(bytes) = std::fs::read(path) else {
        return BTreeMap::new();
    };
    warn_all(path, decode_kept(&bytes)).drivers
}

/// How long kept objects are served without asking the API once it did not answer.
pub const OFFLINE_HOLD: Duration = Duration::from_secs(10);

/// How long a fetched PV or CSIDriver is served before it is read again.
pub const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Kept {
    /// `namespace/claim` → bound PV.
    claims: BTreeMap<String, PersistentVolume>,
    /// Driver name → CSIDriver.
    drivers: BTreeMap<String, CsiDriver>,
}

/// What was wrong with one part of a kept file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeptFault(String);

/// The objects in a kept file, entry by entry: an entry that does not decode is left out and
/// named in a fault (the others stay usable); a file that is not a JSON object at all gives
/// nothing and one fault. Never panics.
fn decode_kept(bytes: &[u8]) -> (Kept, Vec<KeptFault>) {
    let mut kept = Kept::default();
    let mut faults = Vec::new();
    let top = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => {
            faults.push(KeptFault("not a JSON object".into()));
            return (kept, faults);
        }
        Err(e) => {
            faults.push(KeptFault(format!("not JSON ({e})")));
            return (kept, faults);
        }
    };
    fn entries<T: serde::de::DeserializeOwned>(
        top: &serde_json::Map<String, serde_json::Value>,
        field: &str,
        what: &str,
        faults: &mut Vec<KeptFault>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        match top.get(field) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    match T::deserialize(v) {
                        Ok(obj) => {
                            out.insert(k.clone(), obj);
                        }
                        Err(e) => faults.push(KeptFault(format!("{what} {k}: unreadable ({e})"))),
                    }
                }
            }
            Some(_) => faults.push(KeptFault(format!("{field}: not a JSON object"))),
        }
        out
    }
    kept.claims = entries(&top, "claims", "the PersistentVolume of claim", &mut faults);
    kept.drivers = entries(&top, "drivers", "CSIDriver", &mut faults);
    (kept, faults)
}

/// Logs each fault of a decoded kept file (what is named is left out) and returns the rest.
fn warn_all(path: &Path, (kept, faults): (Kept, Vec<KeptFault>)) -> Kept {
    for KeptFault(f) in faults {
        log::warn!("{}: {f}; left out", path.display());
    }
    kept
}

/// Whether a kept object is served without asking the API: it was fetched within the TTL,
/// or the API is known to be unreachable (the caller's view, or a failure of our own within
/// the hold).
fn serve_kept(
    now: Instant,
    fetched: Option<Instant>,
    offline_until: Option<Instant>,
    link_down: bool,
) -> bool {
    fetched.is_some_and(|t| now.saturating_duration_since(t) < TTL)
        || link_down
        || offline_until.is_some_and(|t| now < t)
}

#[derive(Default)]
struct Cache {
    kept: Kept,
    fetched: BTreeMap<String, Instant>,
    /// Set when the API did not answer; until then kept objects are served without a try.
    offline_until: Option<Instant>,
}

/// Cached reads of the storage objects a node may read.
pub struct ApiObjects {
    client: Client,
    keep: Option<PathBuf>,
    cache: Mutex<Cache>,
}

impl ApiObjects {
    /// Reads through `client`; with `keep`, what was read is also kept in that file and read
    /// back from it now.
    pub fn new(client: Client, keep: Option<PathBuf>) -> Self {
        let kept = keep
            .as_ref()
            .and_then(|p| Some(warn_all(p, decode_kept(&std::fs::read(p).ok()?))))
            .unwrap_or_default();
        ApiObjects {
            client,
            keep,
            cache: Mutex::new(Cache {
                kept,
                ..Cache::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self) {
        let Some(path) = &self.keep else {
            return;
        };
        let kept = self.lock().kept.clone();
        match serde_json::to_vec(&kept) {
            Ok(b) => {
                if let Err(e) = crate::store::fs::write_private(path, &b) {
                    log::warn!("keeping CSI objects in {}: {e}", path.display());
                }
            }
            Err(e) => log::warn!("encoding CSI objects: {e}"),
        }
    }

    fn serve_kept(&self, key: &str, link_down: bool) -> bool {
        let c = self.lock();
        serve_kept(
            Instant::now(),
            c.fetched.get(key).copied(),
            c.offline_until,
            link_down,
        )
    }

    /// Notes whether the API answered (a failure of the link starts the offline hold).
    fn note_link(&self, answered: bool) {
        self.lock().offline_until = (!answered).then(|| Instant::now() + OFFLINE_HOLD);
    }

    /// The PV bound to `ns/claim`: fresh from the API, else the one kept (offline). With
    /// `link_down` (the caller found the API unreachable) a kept one is served without a try.
    pub fn persistent_volume(
        &self,
        ns: &str,
        claim: &str,
        link_down: bool,
    ) -> Result<PersistentVolume, String> {
        let key = format!("{ns}/{claim}");
        let cached = self.lock().kept.claims.get(&key).cloned();
        if let Some(pv) = &cached {
            if self.serve_kept(&format!("pvc/{key}"), link_down) {
                return Ok(pv.clone());
            }
        }
        match self.fetch_bound(ns, claim) {
            Ok(pv) => {
                self.note_link(true);
                let changed = {
                    let mut c = self.lock();
                    c.fetched.insert(format!("pvc/{key}"), Instant::now());
                    c.kept.claims.insert(key, pv.clone()) != Some(pv.clone())
                };
                if changed {
                    self.persist();
                }
                Ok(pv)
            }
            Err((e, retryable)) => {
                self.note_link(!retryable);
                match cached {
                    Some(pv) if retryable => Ok(pv),
                    None if retryable => Err(format!(
                        "{e} (and no PersistentVolume of claim {ns}/{claim} is kept on this node)"
                    )),
                    _ => Err(e),
                }
            }
        }
    }

    /// Error text and whether the link (not the objects) failed.
    fn fetch_bound(&self, ns: &str, claim: &str) -> Result<PersistentVolume, (String, bool)> {
        let path = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}");
        let pvc: PersistentVolumeClaim = self
            .client
            .get(&path)
            .map_err(|e| (format!("claim {ns}/{claim}: {e}"), e.is_retryable()))?;
        if pvc.status.phase != "Bound" || pvc.spec.volume_name.is_empty() {
            let phase = if pvc.status.phase.is_empty() {
                "Pending"
            } else {
                &pvc.status.phase
            };
            return Err((
                format!("claim {ns}/{claim} is not bound to a volume yet (phase {phase})"),
                false,
            ));
        }
        let pv_name = &pvc.spec.volume_name;
        self.client
            .get(&format!("/api/v1/persistentvolumes/{pv_name}"))
            .map_err(|e| {
                (
                    format!("claim {ns}/{claim}: PersistentVolume {pv_name}: {e}"),
                    e.is_retryable(),
                )
            })
    }

    /// The CSIDriver `name`: fresh, else the one kept; `None` if it does not exist. With
    /// `link_down` (the caller found the API unreachable) a kept one is served without a try.
    pub fn csi_driver(&self, name: &str, link_down: bool) -> Option<CsiDriver> {
        let cached = self.lock().kept.drivers.get(name).cloned();
        if cached.is_some() && self.serve_kept(&format!("driver/{name}"), link_down) {
            return cached;
        }
        let r = self
            .client
            .get::<CsiDriver>(&format!("/apis/storage.k8s.io/v1/csidrivers/{name}"));
        self.note_link(!matches!(&r, Err(e) if e.is_retryable()));
        let out = match r {
            Ok(d) => Some(d),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                log::warn!("CSIDriver {name}: {e}");
                return cached;
            }
        };
        let changed = {
            let mut c = self.lock();
            c.fetched.insert(format!("driver/{name}"), Instant::now());
            let before = match &out {
                Some(d) => c.kept.drivers.insert(name.to_owned(), d.clone()),
                None => c.kept.drivers.remove(name),
            };
            before != out
        };
        if changed {
            self.persist();
        }
        out
    }

    /// A VolumeAttachment (never cached: it is read while waiting for it).
    pub fn volume_attachment(&self, name: &str) -> Option<VolumeAttachment> {
        self.client
            .get(&format!("/apis/storage.k8s.io/v1/volumeattachments/{name}"))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kept() -> Kept {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv-1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "mountOptions": ["noatime"],
                     "csi": {"driver": "hostpath.csi.k8s.io", "volumeHandle": "vol-1",
                             "fsType": "ext4", "volumeAttributes": {"k": "v"},
                             "nodeStageSecretRef": {"name": "s", "namespace": "n"}}}
        }))
        .unwrap();
        let drv: CsiDriver = serde_json::from_value(json!({
            "metadata": {"name": "hostpath.csi.k8s.io"},
            "spec": {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "File"}
        }))
        .unwrap();
        Kept {
            claims: [("ns/data".to_string(), pv)].into(),
            drivers: [("hostpath.csi.k8s.io".to_string(), drv)].into(),
        }
    }

    /// What is written is what is read back: the claim's binding with its whole CSI source
    /// (driver, handle, attributes, secret references, access modes, mount options) and the
    /// CSIDriver facts.
    #[test]
    fn kept_file_round_trip() {
        let k = kept();
        let bytes = serde_json::to_vec(&k).unwrap();
        let (back, faults) = decode_kept(&bytes);
        assert!(faults.is_empty(), "{faults:?}");
        assert_eq!(back, k);
        let src = back.claims["ns/data"].spec.csi.as_ref().unwrap();
        assert_eq!(src.volume_handle, "vol-1");
        assert_eq!(src.volume_attributes["k"], "v");
        assert_eq!(
            back.drivers["hostpath.csi.k8s.io"].spec.attach_required,
            Some(false)
        );
    }

    /// A damaged entry is left out and named; the rest of the file still serves. Garbage of
    /// any kind gives nothing and one fault, never a panic.
    #[test]
    fn damaged_kept_file_names_what_is_left_out() {
        let mut v = serde_json::to_value(kept()).unwrap();
        v["claims"]["ns/broken"] = json!({"spec": {"csi": {"volumeHandle": 7}}});
        v["drivers"]["bad.example"] = json!("not a driver");
        let (back, faults) = decode_kept(v.to_string().as_bytes());
        assert_eq!(back, kept());
        let text: Vec<&str> = faults.iter().map(|KeptFault(f)| f.as_str()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .any(|f| f.starts_with("the PersistentVolume of claim ns/broken: unreadable")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|f| f.starts_with("CSIDriver bad.example: unreadable")),
            "{text:?}"
        );

        for input in [
            &b""[..],
            b"null",
            b"[1,2]",
            b"{\"claims\": 3}",
            b"{\"claims\": {\"a/b\": null}}",
            &[0xff, 0xfe, 0x00],
        ] {
            let (k, faults) = decode_kept(input);
            assert_eq!(k, Kept::default(), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(faults.len(), 1, "{faults:?}");
        }
        // Every truncation of a good file, as a torn write would leave it: nothing, named.
        let full = serde_json::to_vec(&kept()).unwrap();
        for n in 0..full.len() {
            let (k, faults) = decode_kept(&full[..n]);
            assert_eq!(k, Kept::default(), "{n} bytes");
            assert_eq!(faults.len(), 1, "{n} bytes");
        }
    }

    #[test]
    fn kept_objects_are_served_without_a_try_while_offline() {
        let t0 = Instant::now();
        let later = |s: u64| t0 + Duration::from_secs(s);
        // Fetched within the TTL: no try.
        assert!(serve_kept(later(10), Some(t0), None, false));
        // Stale, API fine: ask it.
        assert!(!serve_kept(later(61), Some(t0), None, false));
        assert!(!serve_kept(t0, None, None, false));
        // Kept from an earlier run (never fetched in this one) while the link is down: served.
        assert!(serve_kept(t0, None, None, true));
        // Our own failure holds for OFFLINE_HOLD, then the API is asked again.
        let hold = Some(t0 + OFFLINE_HOLD);
        assert!(serve_kept(later(1), None, hold, false));
        assert!(!serve_kept(t0 + OFFLINE_HOLD, None, hold, false));
    }
}
