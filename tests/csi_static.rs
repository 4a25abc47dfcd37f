//! A static pod with an inline CSI volume on a node with no API server at all: `tinylet run`
//! with static manifests only, the real kubernetes-csi hostpath driver and node-driver-registrar
//! (from ../shared/csi, unpacked by tests/envtest/csi-assets.sh into TEST_ASSET_CSI_HOSTPATH
//! and TEST_ASSET_CSI_REGISTRAR) registered through `<root-dir>/plugins_registry`, on the
//! bed's containerd. Skips (one line) without the bed or the driver binaries.
//!
//! Upstream rules followed: the kubelet publishes an inline ephemeral volume at
//! `pods/<uid>/volumes/kubernetes.io~csi/<name>/mount` with the id csi-sha256(podUID+name) and
//! `csi.storage.k8s.io/ephemeral: "true"` in the volume context, never stages it, and
//! unpublishes it when the pod goes. Beyond the kubelet (which cannot read the CSIDriver
//! object without an API server and then refuses): a CSIDriver kept on flash from an earlier
//! online run is honoured (here its fsGroupPolicy File: the volume is given to the pod's
//! fsGroup, as the kubelet does with File), and with none known the volume is published as the
//! registered driver's inline volume with the pod info.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/csi.rs"]
mod csi;

use std::time::{Duration, Instant};

use agent::*;
use csi::*;

const LIMIT: Duration = Duration::from_secs(90);

fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn manifest(image: &str, name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 2345}}
  containers:
    - name: c
      image: {image}
      command: ["sh", "-c", "echo written-offline > /scratch/f; exec sleep 3600"]
      volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
  volumes:
    - name: scratch
      csi:
        driver: {DRIVER}
        volumeAttributes: {{size: 1Mi}}
"#
    )
}

/// No API server: the registered driver publishes the static pod's inline volume, the
/// container's file is under the publish path, and removing the manifest unpublishes it and
/// leaves nothing mounted.
#[test]
fn static_pod_with_inline_csi_volume_and_no_api_server() {
    let test = "csi_static_offline";
    let Some(bins) = binaries(test) else {
        return;
    };
    // Dropped after the agent environment (reverse order): the driver is still there while
    // the environment's guard removes pods.
    let mut procs = Procs::default();
    let Some(mut t) = setup(test) else {
        return;
    };
    let root = t.root.clone();
    let dir = t.dir.clone();
    let node = t.node.clone();
    // The CSIDriver an earlier online run kept on flash: honoured with no API server (its
    // fsGroupPolicy File gives the volume to the pod's fsGroup).
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("csi-objects.json"),
        serde_json::json!({"drivers": {DRIVER: {"metadata": {"name": DRIVER},
            "spec": {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "File",
                     "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}}})
        .to_string(),
    )
    .unwrap();
    t.start();
    start_driver(&mut procs, &bins, &dir, &root, &node);
    let registered = poll(LIMIT, || {
        t.agent_log()
            .contains(&format!("CSI: driver {DRIVER} registered"))
            .then_some(())
    });
    assert!(
        registered.is_some(),
        "the driver registers\nagent log:\n{}",
        t.agent_log()
    );

    let image = t.bed.test_image.clone();
    t.put_manifest("inline.yaml", &manifest(&image, "inline"));
    let name = t.pod_name("inline");
    let doc = t.wait_status(LIMIT, |v| pod_running(v, &name));
    let Some(doc) = doc else {
        panic!(
            "the static pod runs\nstatus: {}\nagent log:\n{}",
            t.status_table(),
            t.agent_log()
        );
    };
    let uid = pod(&doc, &name)
        .and_then(|p| p.get("uid")?.as_str())
        .unwrap_or_default()
        .to_string();
    assert!(!uid.is_empty(), "{doc}");
    let vol_dir = root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~csi/scratch");
    let target = vol_dir.join("mount");
    let written = poll(LIMIT, || {
        std::fs::read_to_string(target.join("f"))
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(
        written.as_deref(),
        Some("written-offline\n"),
        "the container's file under {}",
        target.display()
    );
    assert!(
        mounts_below(&target).contains(&target.display().to_string()),
        "published at {}: {:?}",
        target.display(),
        mounts_below(&root)
    );
    {
        use std::os::unix::fs::MetadataExt;
        let gid = std::fs::metadata(&target).map(|m| m.gid()).ok();
        assert_eq!(
            gid,
            Some(2345),
            "the kept CSIDriver's fsGroupPolicy File applied"
        );
    }
    // What teardown needs is kept beside the mount (never a secret).
    let vol_data = std::fs::read_to_string(vol_dir.join("vol_data.json")).unwrap();
    assert!(vol_data.contains(DRIVER), "{vol_data}");
    assert!(vol_data.contains("\"ephemeral\":true"), "{vol_data}");

    // The manifest goes: the volume is unpublished, the pod's directory removed, nothing of
    // ours stays mounted.
    t.remove_manifest("inline.yaml");
    let gone = poll(LIMIT, || {
        (!root.join("pods").join(&uid).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "pod dir removed; mounts {:?}\nagent log:\n{}",
        mounts_below(&root),
        t.agent_log()
    );
    assert!(
        mounts_below(&root).is_empty(),
        "mounts left: {:?}",
        mounts_below(&root)
    );
    let driver_log = std::fs::read_to_string(dir.join("hostpathplugin.log")).unwrap_or_default();
    assert!(
        driver_log.contains("NodeUnpublishVolume"),
        "the driver was asked to unpublish:\n{driver_log}"
    );
    // Off the agent loop: the housekeeping pass hands the pod's CSI volumes to a thread.
    assert!(
        t.agent_log().contains("CSI volumes unpublished"),
        "{}",
        t.agent_log()
    );
    assert!(t.agent_alive(), "the agent runs on");
}
