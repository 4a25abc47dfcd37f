//! Which CSI drivers this node knows, as the kubelet's plugin watcher learns them: the
//! registration sockets found in `<root-dir>/plugins_registry/`, what their GetInfo said, and
//! what each driver's NodeGetInfo/NodeGetCapabilities answered.
//!
//! [`Registry`] is sans-I/O: the watcher ([`super::watcher`]) hands it the sockets it sees and
//! the answers it got, and asks it what to probe and what to forget. One registry serves the
//! whole process ([`global`]), read by the volume code when it needs a driver's endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::proto::PluginInfo;

/// The plugin type a CSI driver's registration socket reports.
pub const CSI_PLUGIN: &str = "CSIPlugin";
/// How long a socket that failed to register is left alone before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A registered driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// Driver name (`hostpath.csi.k8s.io`).
    pub name: String,
    /// The driver's own socket (from GetInfo's endpoint).
    pub endpoint: String,
    /// The registration socket it came from.
    pub registration: PathBuf,
    /// The driver's id of this node (NodeGetInfo).
    pub node_id: String,
    /// Volume limit (0: none).
    pub max_volumes: i64,
    /// Topology keys of this node (NodeGetInfo's segments' keys).
    pub topology_keys: Vec<String>,
    /// Whether the node service stages volumes (NodeGetCapabilities).
    pub stage_unstage: bool,
    /// Whether the node service reports volume usage (GET_VOLUME_STATS).
    pub volume_stats: bool,
}

/// What the watcher should do after a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sockets to register (GetInfo, validate, NodeGetInfo, notify).
    pub probe: Vec<PathBuf>,
    /// Drivers whose socket went away: forget them.
    pub gone: Vec<String>,
}

/// The registered drivers and the sockets seen.
#[derive(Debug, Default)]
pub struct Registry {
    drivers: BTreeMap<String, Driver>,
    /// Sockets that failed to register, and when they may be tried again.
    failed: BTreeMap<PathBuf, Instant>,
    /// Bumped on every change, so the node's CSINode object follows.
    generation: u64,
}

/// Whether `v` is a plugin-registration version this node speaks: CSI 1.x (`1.0.0`, `v1.2`).
pub fn supported_version(v: &str) -> bool {
    let v = v.trim().trim_start_matches('v');
    let major = v.split('.').next().unwrap_or("");
    major == "1"
        && v.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks GetInfo's answer the way the kubelet's CSI plugin handler does: a CSIPlugin with a
/// name, an endpoint and a supported version. The error says what is wrong.
pub fn validate(info: &PluginInfo) -> Result<(), String> {
    if info.r#type != CSI_PLUGIN {
        return Err(format!(
            "plugin type {:?} is not supported (only {CSI_PLUGIN})",
            info.r#type
        ));
    }
    if info.name.is_empty() {
        return Err("plugin has no name".into());
    }
    if info.endpoint.is_empty() {
        return Err(format!("plugin {} has no endpoint", info.name));
    }
    if !info.supported_versions.iter().any(|v| supported_version(v)) {
        return Err(format!(
            "plugin {}: none of the versions {:?} is supported (1.x)",
            info.name, info.supported_versions
        ));
    }
    Ok(())
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Registry {
        Registry {
            drivers: BTreeMap::new(),
            failed: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Given the registration sockets present at `now`, what to probe and what to forget.
    pub fn diff(&self, present: &BTreeSet<PathBuf>, now: Instant) -> Changes {
        let known: BTreeSet<&Path> = self
            .drivers
            .values()
            .map(|d| d.registration.as_path())
            .collect();
        let probe = present
            .iter()
            .filter(|p| !known.contains(p.as_path()))
            .filter(|p| self.failed.get(*p).is_none_or(|t| now >= *t))
            .cloned()
            .collect();
        let gone = self
            .drivers
            .values()
            .filter(|d| !present.contains(&d.registration))
            .map(|d| d.name.clone())
            .collect();
        Changes { probe, gone }
    }

    /// Records a registered driver (replacing one of the same name: a driver restarted).
    pub fn register(&mut self, d: Driver) {
        self.failed.remove(&d.registration);
        // Another socket registering the same name replaces the old one.
        self.drivers.insert(d.name.clone(), d);
        self.generation += 1;
    }

    /// Records a socket that failed to register at `now`; it is tried again later.
    pub fn failed(&mut self, socket: PathBuf, now: Instant) {
        self.failed.insert(socket, now + RETRY_AFTER);
    }

    /// Forgets a driver; returns it if it was known.
    pub fn forget(&mut self, name: &str) -> Option<Driver> {
        let d = self.drivers.remove(name);
        if d.is_some() {
            self.generation += 1;
        }
        d
    }

    /// Drops failure records of sockets that are gone.
    pub fn retain_failed(&mut self, present: &BTreeSet<PathBuf>) {
        self.failed.retain(|p, _| present.contains(p));
    }

    /// A registered driver.
    pub fn driver(&self, name: &str) -> Option<&Driver> {
        self.drivers.get(name)
    }

    /// All registered drivers, by name.
    pub fn drivers(&self) -> impl Iterator<Item = &Driver> {
        self.drivers.values()
    }

    /// Changes so far (see [`Registry::register`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

static GLOBAL: Mutex<Registry> = Mutex::new(Registry::new());

/// The process's registry.
pub fn global() -> MutexGuard<'static, Registry> {
    GLOBAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(t: &str, name: &str, versions: &[&str]) -> PluginInfo {
        PluginInfo {
            r#type: t.into(),
            name: name.into(),
            endpoint: "/e.sock".into(),
            supported_versions: versions.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The kubelet's CSI plugin handler accepts a CSIPlugin whose versions include a 1.x.
    #[test]
    fn validation() {
        assert!(validate(&info("CSIPlugin", "d", &["1.0.0"])).is_ok());
        assert!(validate(&info("CSIPlugin", "d", &["0.3.0", "v1.2.0"])).is_ok());
        assert!(validate(&info("DevicePlugin", "d", &["1.0.0"]))
            .unwrap_err()
            .contains("DevicePlugin"));
        assert!(validate(&info("CSIPlugin", "d", &["0.3.0", "2.0.0"])).is_err());
        assert!(validate(&info("CSIPlugin", "", &["1.0.0"])).is_err());
        assert!(!supported_version("1."));
        assert!(!supported_version("1.x"));
        assert!(supported_version("1"));
    }

    fn driver(name: &str, sock: &str) -> Driver {
        Driver {
            name: name.into(),
            endpoint: "/d.sock".into(),
            registration: sock.into(),
            node_id: "n".into(),
            max_volumes: 0,
            topology_keys: vec![],
            stage_unstage: false,
            volume_stats: false,
        }
    }

    #[test]
    fn diff_probes_new_sockets_and_forgets_gone_ones() {
        let t0 = Instant::now();
        let mut r = Registry::new();
        let present: BTreeSet<PathBuf> = ["/r/a-reg.sock".into(), "/r/b-reg.sock".into()].into();
        let c = r.diff(&present, t0);
        assert_eq!(c.probe.len(), 2);
        assert!(c.gone.is_empty());
        r.register(driver("a", "/r/a-reg.sock"));
        r.failed("/r/b-reg.sock".into(), t0);
        assert_eq!(r.diff(&present, t0), Changes::default());
        // A failed socket is tried again after a while.
        let later = t0 + RETRY_AFTER;
        assert_eq!(
            r.diff(&present, later).probe,
            vec![PathBuf::from("/r/b-reg.sock")]
        );
        // a's socket goes away: a is forgotten.
        let only_b: BTreeSet<PathBuf> = ["/r/b-reg.sock".into()].into();
        assert_eq!(r.diff(&only_b, t0).gone, vec!["a".to_string()]);
        let g = r.generation();
        assert!(r.forget("a").is_some());
        assert!(r.forget("a").is_none());
        assert_eq!(r.generation(), g + 1);
        assert!(r.driver("a").is_none());
    }
}
