//! The API objects CSI volumes need — a claim's bound PersistentVolume, CSIDriver objects,
//! VolumeAttachments — read through the node's API client with a small cache. The PVs (their
//! CSI source: no secret is in them) and CSIDriver facts are also kept in one file on flash, so
//! pods with claims and inline volumes can be published again after an offline reboot.

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
    match serde_json::from_slice::<Kept>(&bytes) {
        Ok(k) => k.drivers,
        Err(e) => {
            log::warn!("{}: not CSI objects ({e}); ignored", path.display());
            BTreeMap::new()
        }
    }
}

/// How long a fetched PV or CSIDriver is served before it is read again.
pub const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Kept {
    /// `namespace/claim` → bound PV.
    claims: BTreeMap<String, PersistentVolume>,
    /// Driver name → CSIDriver.
    drivers: BTreeMap<String, CsiDriver>,
}

#[derive(Default)]
struct Cache {
    kept: Kept,
    fetched: BTreeMap<String, Instant>,
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
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| match serde_json::from_slice::<Kept>(&b) {
                Ok(k) => Some(k),
                Err(e) => {
                    log::warn!("CSI objects file: not CSI objects ({e}); ignored");
                    None
                }
            })
            .unwrap_or_default();
        ApiObjects {
            client,
            keep,
            cache: Mutex::new(Cache {
                kept,
                fetched: BTreeMap::new(),
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

    fn fresh(&self, key: &str) -> bool {
        self.lock()
            .fetched
            .get(key)
            .is_some_and(|t| t.elapsed() < TTL)
    }

    /// The PV bound to `ns/claim`: fresh from the API, else the one kept (offline).
    pub fn persistent_volume(&self, ns: &str, claim: &str) -> Result<PersistentVolume, String> {
        let key = format!("{ns}/{claim}");
        let cached = self.lock().kept.claims.get(&key).cloned();
        if let Some(pv) = &cached {
            if self.fresh(&format!("pvc/{key}")) {
                return Ok(pv.clone());
            }
        }
        match self.fetch_bound(ns, claim) {
            Ok(pv) => {
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
            Err((e, retryable)) => match cached {
                Some(pv) if retryable => Ok(pv),
                _ => Err(e),
            },
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

    /// The CSIDriver `name`: fresh, else the one kept; `None` if it does not exist.
    pub fn csi_driver(&self, name: &str) -> Option<CsiDriver> {
        let cached = self.lock().kept.drivers.get(name).cloned();
        if cached.is_some() && self.fresh(&format!("driver/{name}")) {
            return cached;
        }
        let r = self
            .client
            .get::<CsiDriver>(&format!("/apis/storage.k8s.io/v1/csidrivers/{name}"));
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
