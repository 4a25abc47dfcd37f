//! The thin I/O around [`super::registry`]: a thread that watches
//! `<root-dir>/plugins_registry/` with inotify (and rescans it every second as a backstop) for
//! `*.sock` registration sockets, registers new ones the way the kubelet's plugin watcher does
//! (GetInfo, validate, the driver's NodeGetInfo and NodeGetCapabilities, then
//! NotifyRegistrationStatus), forgets drivers whose socket went away, and keeps the node's
//! CSINode object and its `csi.volume.kubernetes.io/nodeid` annotation in step once an API
//! client is set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::json;

use super::client::CsiClient;
use super::registry::{self, Driver};
use crate::api::Client;
use crate::k8s::meta::{ObjectMeta, OwnerReference};
use crate::k8s::storage::{CsiNode, CsiNodeDriver, CsiNodeSpec, VolumeNodeResources};

/// How often the registration directory is rescanned without an inotify event.
pub const RESCAN: Duration = Duration::from_secs(1);
/// The Node annotation mapping driver names to their node ids.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";

static API: Mutex<Option<Client>> = Mutex::new(None);

/// Hands the watcher the API client it writes the node's CSINode object with (once the node
/// has credentials).
pub fn set_api_client(client: Client) {
    *API.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
}

fn api_client() -> Option<Client> {
    API.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Starts the watcher thread for `<root_dir>/plugins_registry` of node `node_name`.
pub fn start(root_dir: &Path, node_name: &str) -> std::io::Result<()> {
    let dir = root_dir.join("plugins_registry");
    std::fs::create_dir_all(&dir)?;
    let node = node_name.to_owned();
    std::thread::Builder::new()
        .name("csi-plugins".into())
        .spawn(move || run(&dir, &node))?;
    Ok(())
}

fn sockets(dir: &Path) -> BTreeSet<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect()
}

/// After a failed CSINode update, the next try waits this long.
const SYNC_RETRY: Duration = Duration::from_secs(10);

fn run(dir: &Path, node: &str) {
    // Nothing is written for a node that never had a driver.
    let mut synced: Option<u64> = Some(0);
    let mut next_try = Instant::now();
    let inotify = watch_dir(dir);
    loop {
        scan_once(dir);
        let generation = registry::global().generation();
        if synced != Some(generation) && Instant::now() >= next_try {
            if let Some(client) = api_client() {
                let drivers: Vec<Driver> = registry::global().drivers().cloned().collect();
                match sync_node_objects(&client, node, &drivers) {
                    Ok(()) => {
                        log::info!(
                            "CSI: node {node}: CSINode lists {} driver(s)",
                            drivers.len()
                        );
                        synced = Some(generation);
                    }
                    Err(e) => {
                        log::warn!("CSI: node {node}: CSINode not updated: {e}");
                        next_try = Instant::now() + SYNC_RETRY;
                    }
                }
            }
        }
        wait_for_change(inotify.as_ref());
    }
}

/// An inotify watch on the registration directory, so a new socket is seen at once; `None`
/// when inotify cannot be had (the rescan alone then finds sockets).
fn watch_dir(dir: &Path) -> Option<smol::Async<Inotify>> {
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM;
    let made = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| e.to_string())
        .and_then(|i| {
            i.add_watch(dir, flags)
                .map(|_| i)
                .map_err(|e| e.to_string())
        })
        .and_then(|i| smol::Async::new(i).map_err(|e| e.to_string()));
    match made {
        Ok(i) => Some(i),
        Err(e) => {
            log::warn!(
                "CSI: no inotify on {} ({e}); rescanning every {RESCAN:?}",
                dir.display()
            );
            None
        }
    }
}

/// Returns when the directory changed or [`RESCAN`] passed.
fn wait_for_change(inotify: Option<&smol::Async<Inotify>>) {
    let Some(i) = inotify else {
        std::thread::sleep(RESCAN);
        return;
    };
    smol::block_on(smol::future::or(
        async {
            let _ = i.readable().await;
            // Drain what arrived: the rescan that follows reads the directory itself.
            let _ = i.get_ref().read_events();
        },
        async {
            smol::Timer::after(RESCAN).await;
        },
    ));
}

/// One pass: registers new sockets, forgets drivers whose socket went away.
pub fn scan_once(dir: &Path) {
    let present = sockets(dir);
    let changes = {
        let mut r = registry::global();
        r.retain_failed(&present);
        r.diff(&present, Instant::now())
    };
    for name in changes.gone {
        if registry::global().forget(&name).is_some() {
            log::info!("CSI: driver {name} deregistered: its registration socket is gone");
        }
    }
    for socket in changes.probe {
        match smol::block_on(register(&socket)) {
            Ok(d) => {
                log::info!(
                    "CSI: driver {} registered (endpoint {}, node id {:?}, stage/unstage {}, volume stats {})",
                    d.name,
                    d.endpoint,
                    d.node_id,
                    d.stage_unstage,
                    d.volume_stats
                );
                registry::global().register(d);
            }
            Err(e) => {
                log::warn!("CSI: registration socket {}: {e}", socket.display());
                registry::global().failed(socket, Instant::now());
            }
        }
    }
}

/// Registers the plugin behind one registration socket; tells it the outcome.
async fn register(socket: &Path) -> Result<Driver, String> {
    let reg = CsiClient::new(&socket.display().to_string(), &socket.display().to_string());
    let info = reg.get_info().await.map_err(|e| e.to_string())?;
    let outcome = async {
        registry::validate(&info)?;
        let driver = CsiClient::new(&info.name, &info.endpoint);
        let node = driver.node_get_info().await.map_err(|e| e.to_string())?;
        if node.node_id.is_empty() {
            return Err(format!("driver {}: NodeGetInfo gave no node id", info.name));
        }
        let caps = driver
            .node_get_capabilities()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Driver {
            name: info.name.clone(),
            endpoint: info.endpoint.clone(),
            registration: socket.to_path_buf(),
            node_id: node.node_id,
            max_volumes: node.max_volumes_per_node.max(0),
            topology_keys: node
                .accessible_topology
                .map(|t| t.segments.into_keys().collect())
                .unwrap_or_default(),
            stage_unstage: caps.has(super::proto::NodeRpcType::StageUnstageVolume),
            volume_stats: caps.has(super::proto::NodeRpcType::GetVolumeStats),
        })
    }
    .await;
    let (ok, msg) = match &outcome {
        Ok(_) => (true, String::new()),
        Err(e) => (false, e.clone()),
    };
    if let Err(e) = reg.notify_registration_status(ok, &msg).await {
        log::warn!("CSI: {e}");
    }
    outcome
}

/// The CSINode drivers list for the registered drivers. Pure.
pub fn csinode_drivers(drivers: &[Driver]) -> Vec<CsiNodeDriver> {
    drivers
        .iter()
        .map(|d| CsiNodeDriver {
            name: d.name.clone(),
            node_id: d.node_id.clone(),
            topology_keys: d.topology_keys.clone(),
            allocatable: (d.max_volumes > 0).then_some(VolumeNodeResources {
                count: Some(d.max_volumes),
            }),
        })
        .collect()
}

/// The value of the node-id annotation (a JSON object driver → node id). Pure.
pub fn node_id_annotation(drivers: &[Driver]) -> String {
    let m: BTreeMap<&str, &str> = drivers
        .iter()
        .map(|d| (d.name.as_str(), d.node_id.as_str()))
        .collect();
    serde_json::to_string(&m).unwrap_or_else(|_| "{}".into())
}

/// Writes the node's annotation, then its CSINode (created owned by the Node, else replaced):
/// the kubelet's order, so whoever sees the driver in the CSINode finds the node id on the
/// Node too.
fn sync_node_objects(client: &Client, node: &str, drivers: &[Driver]) -> Result<(), String> {
    let patch =
        json!({"metadata": {"annotations": {NODE_ID_ANNOTATION: node_id_annotation(drivers)}}});
    client
        .patch_merge::<_, serde_json::Value>(&format!("/api/v1/nodes/{node}"), &patch)
        .map_err(|e| e.to_string())?;
    let path = format!("/apis/storage.k8s.io/v1/csinodes/{node}");
    let spec = CsiNodeSpec {
        drivers: csinode_drivers(drivers),
    };
    match client.get::<CsiNode>(&path) {
        Ok(mut existing) => {
            if existing.spec != spec {
                existing.spec = spec;
                existing.api_version = "storage.k8s.io/v1".into();
                existing.kind = "CSINode".into();
                client
                    .replace::<_, CsiNode>(&path, &existing)
                    .map_err(|e| e.to_string())?;
            }
        }
        Err(e) if e.is_not_found() => {
            let node_obj: serde_json::Value = client
                .get(&format!("/api/v1/nodes/{node}"))
                .map_err(|e| e.to_string())?;
            let uid = node_obj
                .pointer("/metadata/uid")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let obj = CsiNode {
                api_version: "storage.k8s.io/v1".into(),
                kind: "CSINode".into(),
                metadata: ObjectMeta {
                    name: node.to_owned(),
                    owner_references: vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.to_owned(),
                        uid,
                        controller: None,
                        block_owner_deletion: None,
                    }],
                    ..Default::default()
                },
                spec,
            };
            client
                .create::<_, CsiNode>("/apis/storage.k8s.io/v1/csinodes", &obj)
                .map_err(|e| e.to_string())?;
        }
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket in plugins_registry that is not a registration server (it answers garbage, or
    /// nobody listens) is logged and left for a later try; nothing panics and no driver is
    /// registered.
    #[test]
    fn a_socket_that_is_not_a_registration_server_is_refused() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("tinylet-csi-reg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage-reg.sock");
        let listener = std::os::unix::net::UnixListener::bind(&garbage).unwrap();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"HTTP/1.1 400 nope\r\n\r\n\x00\xff garbage");
            }
        });
        // A stale socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(dir.join("stale-reg.sock")).unwrap());
        let before = registry::global().generation();
        scan_once(&dir);
        let _ = server.join();
        assert_eq!(registry::global().generation(), before);
        let present = sockets(&dir);
        assert_eq!(present.len(), 2);
        // Both are now waiting for their retry, not probed again at once.
        assert!(registry::global()
            .diff(&present, Instant::now())
            .probe
            .is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn node_objects_follow_the_drivers() {
        let d = Driver {
            name: "hostpath.csi.k8s.io".into(),
            endpoint: "/d.sock".into(),
            registration: "/r.sock".into(),
            node_id: "node-1".into(),
            max_volumes: 5,
            topology_keys: vec!["topology.hostpath.csi/node".into()],
            stage_unstage: false,
            volume_stats: false,
        };
        let list = csinode_drivers(std::slice::from_ref(&d));
        assert_eq!(list[0].allocatable.as_ref().and_then(|a| a.count), Some(5));
        assert_eq!(list[0].topology_keys, d.topology_keys);
        assert_eq!(
            node_id_annotation(&[d]),
            r#"{"hostpath.csi.k8s.io":"node-1"}"#
        );
        assert_eq!(node_id_annotation(&[]), "{}");
    }
}
