//! CSI volumes with the real kubernetes-csi hostpath driver and node-driver-registrar (from
//! ../shared/csi, unpacked by tests/envtest/csi-assets.sh into TEST_ASSET_CSI_HOSTPATH and
//! TEST_ASSET_CSI_REGISTRAR) against a real kube-apiserver on the containerd bed.
//!
//! The kubelet's rules followed: the plugin watcher registers a driver through a socket in
//! `<root-dir>/plugins_registry` (GetInfo, NodeGetInfo, NotifyRegistrationStatus) and records
//! it in the node's CSINode (`spec.drivers[].nodeID`) and the Node annotation
//! `csi.volume.kubernetes.io/nodeid`; a driver whose socket goes away is deregistered; a
//! claim's volume is staged (STAGE_UNSTAGE_VOLUME) and published at
//! `pods/<uid>/volumes/kubernetes.io~csi/<name>/mount`, unpublished and unstaged when the pod
//! goes, also after the agent restarted under the pod (adopted, not published twice) and
//! the driver restarted under another; an inline volume gets `csi.storage.k8s.io/ephemeral: "true"` when the CSIDriver has
//! podInfoOnMount; a volume of an unregistered driver keeps the pod in ContainerCreating with
//! a FailedMount event. With offline autonomy, an API pod with a claim comes back after a
//! reboot with the API server unreachable, its volume published again from the PersistentVolume
//! kept on flash.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use tinylet::csi::proto::{AccessModeKind, CreateVolumeRequest, VolumeCapability};
use tinylet::csi::CsiClient;

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::{stop_child, unmount_below, Bed};
use super::kubelet_api::{admin_kubectl, serve_kubelet_api, Kubectl, ServedApi};
use super::real::RealCluster;
use super::scenarios::{join, pod, pod_path, poll, wait_ready, OnFailure, LIMIT};

const DRIVER: &str = "hostpath.csi.k8s.io";

/// The driver and registrar binaries, or None (skip line printed).
fn binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (
        get("TEST_ASSET_CSI_HOSTPATH"),
        get("TEST_ASSET_CSI_REGISTRAR"),
    ) {
        (Some(d), Some(r)) => Some((d, r)),
        _ => {
            super::skip(&format!(
                "SKIPPED (no CSI driver): {test} — eval \"$(tests/envtest/csi-assets.sh)\" first"
            ));
            None
        }
    }
}

/// Processes the test started; killed and reaped on drop, pass or fail.
#[derive(Default)]
struct Procs(Vec<(String, Child)>);

impl Procs {
    fn start(&mut self, name: &str, bin: &Path, args: &[String], log: &Path) {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        self.0.push((name.to_string(), child));
    }

    fn stop(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, child) = self.0.remove(i);
            stop_child(child, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in self.0.drain(..) {
            stop_child(child, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Mount points at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(String::from)
        .collect()
}

fn events(c: &dyn Cluster, ns: &str, name: &str, reason: &str) -> Vec<Value> {
    let Some(list) = c.get_opt(&format!("/api/v1/namespaces/{ns}/events")) else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .cloned()
        .collect()
}

fn uid_of(c: &dyn Cluster, ns: &str, name: &str) -> String {
    c.get(&pod_path(ns, name)).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The busybox pod of the scenarios with one more volume mounted at `at`.
fn pod_with(a: &Agent, ns: &str, name: &str, script: &str, volume: Value, at: &str) -> Value {
    let mut p = pod(a, ns, name, script);
    let vname = volume["name"].clone();
    p["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": vname, "mountPath": at}));
    p["spec"]["volumes"].as_array_mut().unwrap().push(volume);
    p
}

fn delete_and_wait(c: &dyn Cluster, ns: &str, name: &str) {
    c.delete(&pod_path(ns, name), None).unwrap();
    let gone = c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(ns, name)).is_none());
    assert!(gone, "pod {name} deleted at the server");
}

fn csinode_drivers(c: &dyn Cluster, node: &str) -> Option<Vec<Value>> {
    // The server sends an empty list as null.
    let n = c.get_opt(&format!("/apis/storage.k8s.io/v1/csinodes/{node}"))?;
    match n.pointer("/spec/drivers") {
        Some(Value::Array(d)) => Some(d.clone()),
        _ => Some(Vec::new()),
    }
}

/// A volume made by the driver's Controller service (no external-provisioner here), a
/// PersistentVolume `<volume>-pv` for it and claim `ns/claim` bound to it (no PV controller
/// either: the caller binds them, as the controller would). Returns the volume id.
pub fn bound_claim(
    c: &dyn Cluster,
    client: &CsiClient,
    volume: &str,
    ns: &str,
    claim: &str,
) -> String {
    let created = smol::block_on(client.create_volume(&CreateVolumeRequest {
        name: volume.to_string(),
        capacity_range: None,
        volume_capabilities: vec![VolumeCapability::mount(
            "",
            vec![],
            AccessModeKind::SingleNodeWriter,
        )],
        parameters: Default::default(),
        secrets: Default::default(),
    }))
    .expect("CreateVolume")
    .volume
    .expect("a volume");
    let pv = format!("{volume}-pv");
    c.create(
        "/api/v1/persistentvolumes",
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                        "claimRef": {"namespace": ns, "name": claim},
                        "csi": {"driver": DRIVER, "volumeHandle": created.volume_id,
                                "volumeAttributes": created.volume_context}}}),
    )
    .unwrap();
    c.create(
        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                        "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .unwrap();
    c.merge_patch(
        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}/status"),
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                          "capacity": {"storage": "1Gi"}}}),
    )
    .unwrap();
    created.volume_id
}

/// Registration, a claim's volume kept across pods, an inline volume, deregistration, and a
/// clean node afterwards.
pub fn volumes_from_the_hostpath_driver(c: &RealCluster, bed: Bed) {
    let Some((driver_bin, registrar_bin)) = binaries("envtest_real_csi") else {
        return;
    };
    let mut a = Agent::new(bed, c, "csi");
    let _dump = OnFailure::new(c, &a);
    let mut procs = Procs::default();
    // Joined, serving its kubelet API as the API server reaches it (for /stats/summary).
    let ServedApi { ns, port, .. } = serve_kubelet_api(c, &mut a);
    // The API server does not proxy to a loopback node address: /stats/summary is read at the
    // kubelet port itself, as a cluster admin (authorized through the API server's webhook).
    let admin_cert = c
        .pki()
        .client_cert("csi-stats-reader", &["system:masters"])
        .unwrap();
    let kubelet_kubeconfig = a.dir.join("kubelet-admin.kubeconfig");
    std::fs::write(
        &kubelet_kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: s\nclusters:\n- name: node\n  \
             cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
             contexts:\n- name: s\n  context: {{cluster: node, user: s}}\nusers:\n- name: s\n  \
             user:\n    client-certificate: {}\n    client-key: {}\n",
            c.ca_cert_path().display(),
            admin_cert.cert_path.display(),
            admin_cert.key_path.display()
        ),
    )
    .unwrap();
    let admin = Kubectl {
        kubeconfig: kubelet_kubeconfig,
        ..admin_kubectl(c, &a, &ns)
    };
    // As the hostpath driver's own deployment declares it.
    c.create(
        "/apis/storage.k8s.io/v1/csidrivers",
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
               "metadata": {"name": DRIVER},
               "spec": {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "File",
                        "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}),
    )
    .unwrap();

    // The driver, with its socket and state outside the agent's root dir.
    let plugin_dir = a.dir.join("csi");
    let state = plugin_dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let sock = plugin_dir.join("csi.sock");
    let driver_args = [
        format!("--endpoint=unix://{}", sock.display()),
        format!("--nodeid={}", a.node),
        format!("--drivername={DRIVER}"),
        format!("--statedir={}", state.display()),
        "--v=4".into(),
    ];
    let client = CsiClient::new(DRIVER, &sock.display().to_string());
    let logs = a.dir.clone();
    let start_driver = |procs: &mut Procs, n: u32| {
        let log = logs.join(format!("hostpathplugin-{n}.log"));
        procs.start("driver", &driver_bin, &driver_args, &log);
        let up = poll(LIMIT, || smol::block_on(client.probe()).ok().filter(|r| *r));
        assert!(
            up.is_some(),
            "the driver answers Probe on {}",
            sock.display()
        );
    };
    start_driver(&mut procs, 1);

    let registry = a.root.join("plugins_registry");
    let start_registrar = |procs: &mut Procs| {
        procs.start(
            "registrar",
            &registrar_bin,
            &[
                format!("--csi-address={}", sock.display()),
                format!("--kubelet-registration-path={}", sock.display()),
                format!("--plugin-registration-path={}", registry.display()),
                "--v=4".into(),
            ],
            &a.dir.join("registrar.log"),
        );
    };
    start_registrar(&mut procs);

    // Registered: the CSINode lists the driver with the node id the driver reports.
    let drivers = poll(LIMIT, || {
        csinode_drivers(c, &a.node).filter(|d| !d.is_empty())
    })
    .unwrap_or_else(|| panic!("CSINode {} lists {DRIVER}", a.node));
    assert_eq!(drivers[0]["name"], DRIVER, "{drivers:?}");
    assert_eq!(drivers[0]["nodeID"], a.node.as_str(), "{drivers:?}");
    let node = c.get(&format!("/api/v1/nodes/{}", a.node)).unwrap();
    let ann = node
        .pointer("/metadata/annotations/csi.volume.kubernetes.io~1nodeid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        serde_json::from_str::<Value>(&ann).ok(),
        Some(json!({DRIVER: a.node})),
        "node annotation: {ann:?}"
    );

    // A volume made by the driver's Controller service (no external-provisioner here), a PV
    // for it and a claim bound to it (no PV controller either: the test binds them).
    let created = bound_claim(c, &client, &format!("{}-data", a.node), &ns, "data");
    let claim = json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}});

    // A pod writes a file into the claim's volume.
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod_with(
            &a,
            &ns,
            "writer",
            "echo kept-by-csi > /data/f && echo ok > /out/wrote",
            claim.clone(),
            "/data",
        ),
    )
    .unwrap();
    wait_ready(c, &ns, "writer");
    assert_eq!(a.read_out("writer", "wrote", LIMIT), "ok\n");
    let writer_uid = uid_of(c, &ns, "writer");
    let target = a
        .root
        .join("pods")
        .join(&writer_uid)
        .join("volumes/kubernetes.io~csi/data/mount");
    assert!(
        mounts_below(&target).contains(&target.display().to_string()),
        "published at {}",
        target.display()
    );

    // The agent restarted with the pod running: the pod is adopted (same container) and its
    // volume is not published a second time.
    let ids = a.running_ids(&ns, "writer");
    a.stop();
    a.start();
    let again = poll(LIMIT, || a.log().contains("CSI: node").then_some(()));
    assert!(
        again.is_some(),
        "the restarted agent registers the driver again"
    );
    wait_ready(c, &ns, "writer");
    assert_eq!(
        a.running_ids(&ns, "writer"),
        ids,
        "the writer's container adopted"
    );
    let published = mounts_below(&target)
        .iter()
        .filter(|m| **m == target.display().to_string())
        .count();
    assert_eq!(published, 1, "published once: {:?}", mounts_below(&a.root));

    // Deleted: unpublished, its directory gone; a new pod on the same claim reads the file.
    delete_and_wait(c, &ns, "writer");
    let gone = poll(LIMIT, || {
        (!a.root.join("pods").join(&writer_uid).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "writer's pod dir removed; mounts {:?}",
        mounts_below(&a.root)
    );
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod_with(
            &a,
            &ns,
            "reader",
            "cat /data/f > /out/read",
            claim.clone(),
            "/data",
        ),
    )
    .unwrap();
    wait_ready(c, &ns, "reader");
    assert_eq!(a.read_out("reader", "read", LIMIT), "kept-by-csi\n");

    // The claim's volume in /stats/summary: the hostpath driver has GET_VOLUME_STATS, and the
    // kubelet lists such a volume in the pod's `volume` entries by its pod volume name, with
    // pvcRef and the NodeGetVolumeStats figures.
    let path = "/stats/summary";
    let mut last = String::new();
    let vol = poll(LIMIT, || {
        let (ok, text, err) = admin.run(&["get", "--raw", path]);
        last = format!("{err}{text}");
        let s: Value = serde_json::from_str(&text).ok().filter(|_| ok)?;
        let pod = s["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["name"] == "reader")?
            .clone();
        pod["volume"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == "data")
            .cloned()
    })
    .unwrap_or_else(|| panic!("the reader's claim volume in /stats/summary; last: {last}"));
    assert_eq!(
        vol["pvcRef"],
        json!({"name": "data", "namespace": ns}),
        "{vol}"
    );
    assert!(
        vol["capacityBytes"].as_u64().is_some_and(|b| b > 0),
        "{vol}"
    );
    assert!(vol["usedBytes"].as_u64().is_some(), "{vol}");

    // The driver restarts under a running pod: the pod keeps running, later mounts work.
    procs.stop("driver");
    start_driver(&mut procs, 2);
    assert!(
        !a.running_ids(&ns, "reader").is_empty(),
        "the reader runs on"
    );

    // An inline ephemeral volume, in a pod with an fsGroup: the CSIDriver's fsGroupPolicy File
    // has the volume given to that group (upstream: File applies the fsGroup whatever the
    // fsType and access mode).
    let mut inline = pod_with(
        &a,
        &ns,
        "inline",
        "echo scratch > /scratch/s && cat /scratch/s > /out/inline && stat -c %g /scratch > /out/gid",
        json!({"name": "scratch", "csi": {"driver": DRIVER}}),
        "/scratch",
    );
    inline["spec"]["securityContext"] = json!({"fsGroup": 2345});
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), inline)
        .unwrap();
    wait_ready(c, &ns, "inline");
    assert_eq!(a.read_out("inline", "inline", LIMIT), "scratch\n");
    assert_eq!(a.read_out("inline", "gid", LIMIT), "2345\n");
    let inline_uid = uid_of(c, &ns, "inline");
    let reader_uid = uid_of(c, &ns, "reader");
    delete_and_wait(c, &ns, "inline");
    delete_and_wait(c, &ns, "reader");
    for uid in [&inline_uid, &reader_uid] {
        let gone = poll(LIMIT, || {
            (!a.root.join("pods").join(uid).exists()).then_some(())
        });
        assert!(
            gone.is_some(),
            "pod dir {uid} removed; mounts {:?}",
            mounts_below(&a.root)
        );
    }

    // The registrar goes and its socket with it: the driver is deregistered, and a new pod
    // on the claim waits with a FailedMount event saying why.
    procs.stop("registrar");
    let _ = std::fs::remove_file(registry.join(format!("{DRIVER}-reg.sock")));
    let dropped = poll(LIMIT, || {
        csinode_drivers(c, &a.node).filter(|d| d.is_empty())
    });
    assert!(
        dropped.is_some(),
        "CSINode drops {DRIVER}: {:?}",
        csinode_drivers(c, &a.node)
    );
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod_with(&a, &ns, "waiting", "true", claim, "/data"),
    )
    .unwrap();
    let ev = poll(LIMIT, || {
        let ev = events(c, &ns, "waiting", "FailedMount");
        (!ev.is_empty()).then_some(ev)
    })
    .expect("a FailedMount event for the unregistered driver");
    let msg = ev[0]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains(DRIVER) && msg.contains("not registered"),
        "FailedMount message: {msg}"
    );
    let st = c.get(&pod_path(&ns, "waiting")).unwrap();
    assert_eq!(
        st.pointer("/status/containerStatuses/0/state/waiting/reason"),
        Some(&json!("ContainerCreating")),
        "{st}"
    );
    delete_and_wait(c, &ns, "waiting");

    // Nothing of ours stays mounted under the root dir once every pod is gone.
    let clean = poll(LIMIT, || mounts_below(&a.root).is_empty().then_some(()));
    assert!(clean.is_some(), "mounts left: {:?}", mounts_below(&a.root));
    let _ = smol::block_on(client.delete_volume(&created));
}

/// An API pod with a claim comes back after an offline reboot from what the node kept: it
/// runs and writes into its volume; the agent is killed; the reboot takes the pod's
/// containers and sandbox, its CSI publish and stage (and any other mount of the agent's) and
/// restarts the driver; the agent starts again with the API server unreachable and
/// `--offline-autonomy=true`. The pod is started from the flash store, its claim resolved to
/// the PersistentVolume kept on flash, the volume staged and published again, and the
/// container reads the file back. Once the API is back and the pod deleted, nothing of ours
/// stays mounted.
pub fn claim_volume_back_after_an_offline_reboot(c: &RealCluster, bed: Bed) {
    let Some((driver_bin, registrar_bin)) = binaries("envtest_real_csi_offline_reboot") else {
        return;
    };
    let mut a = Agent::new(bed, c, "csireboot");
    a.extra_args.push("--offline-autonomy=true".into());
    let _dump = OnFailure::new(c, &a);
    let mut procs = Procs::default();
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    c.create(
        "/apis/storage.k8s.io/v1/csidrivers",
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
               "metadata": {"name": DRIVER},
               "spec": {"attachRequired": false, "podInfoOnMount": true,
                        "volumeLifecycleModes": ["Persistent", "Ephemeral"]}}),
    )
    .unwrap();

    let plugin_dir = a.dir.join("csi");
    let state = plugin_dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let sock = plugin_dir.join("csi.sock");
    let registry = a.root.join("plugins_registry");
    let client = CsiClient::new(DRIVER, &sock.display().to_string());
    let logs = a.dir.clone();
    let node = a.node.clone();
    // The driver and its registrar, as a node's boot starts them.
    let start_plugin = |procs: &mut Procs, n: u32| {
        procs.start(
            "driver",
            &driver_bin,
            &[
                format!("--endpoint=unix://{}", sock.display()),
                format!("--nodeid={node}"),
                format!("--drivername={DRIVER}"),
                format!("--statedir={}", state.display()),
                "--v=4".into(),
            ],
            &logs.join(format!("hostpathplugin-{n}.log")),
        );
        let up = poll(LIMIT, || smol::block_on(client.probe()).ok().filter(|r| *r));
        assert!(
            up.is_some(),
            "the driver answers Probe on {}",
            sock.display()
        );
        procs.start(
            "registrar",
            &registrar_bin,
            &[
                format!("--csi-address={}", sock.display()),
                format!("--kubelet-registration-path={}", sock.display()),
                format!("--plugin-registration-path={}", registry.display()),
                "--v=4".into(),
            ],
            &logs.join(format!("registrar-{n}.log")),
        );
    };
    start_plugin(&mut procs, 1);
    let registered = poll(LIMIT, || {
        csinode_drivers(c, &a.node).filter(|d| !d.is_empty())
    });
    assert!(registered.is_some(), "CSINode {} lists {DRIVER}", a.node);

    let volume_id = bound_claim(c, &client, &format!("{}-kept", a.node), &ns, "kept");
    let claim = json!({"name": "kept", "persistentVolumeClaim": {"claimName": "kept"}});
    // First run: the file is written; after the reboot the same command finds it.
    let script = "if [ -f /data/f ]; then cat /data/f > /out/read; \
                  else echo kept-across-reboot > /data/f && echo ok > /out/wrote; fi";
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod_with(&a, &ns, "keeper", script, claim, "/data"),
    )
    .unwrap();
    wait_ready(c, &ns, "keeper");
    assert_eq!(a.read_out("keeper", "wrote", LIMIT), "ok\n");
    let uid = uid_of(c, &ns, "keeper");
    let vol_dir = a
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~csi/kept");
    let target = vol_dir.join("mount");
    let target_s = target.display().to_string();
    assert!(
        mounts_below(&target).contains(&target_s),
        "published at {target_s}"
    );
    let before = a.running_ids(&ns, "keeper");
    assert_eq!(before.len(), 1, "{:?}", a.containers(&ns));

    // The agent is killed and the API goes silent.
    a.kill();
    c.down();
    // The reboot: containers and sandbox gone; the volume neither published nor staged (the
    // driver is told, so its own state agrees); the driver restarts; every other mount of the
    // agent's (the token tmpfs) is gone.
    let data = tinylet::csi::volume::vol_data(&vol_dir).expect("vol_data.json beside the mount");
    assert_eq!(data.volume_handle, volume_id, "{data:?}");
    a.force_remove_pods(&ns);
    smol::block_on(client.node_unpublish_volume(&volume_id, &target_s)).expect("unpublish");
    if !data.staging_path.is_empty() {
        smol::block_on(client.node_unstage_volume(&volume_id, &data.staging_path))
            .expect("unstage");
    }
    procs.stop("registrar");
    procs.stop("driver");
    let _ = std::fs::remove_file(registry.join(format!("{DRIVER}-reg.sock")));
    unmount_below(&a.root);
    assert!(
        mounts_below(&a.root).is_empty(),
        "the reboot left mounts: {:?}",
        mounts_below(&a.root)
    );
    assert!(a.running_ids(&ns, "keeper").is_empty());
    start_plugin(&mut procs, 2);

    // Back with the API unreachable: the pod from the flash store, its claim's volume
    // published again from the kept PersistentVolume, the file read back.
    a.start();
    let t0 = std::time::Instant::now();
    let back = poll(Duration::from_secs(150), || {
        let ids = a.running_ids(&ns, "keeper");
        (!ids.is_empty()).then_some(ids)
    });
    assert!(
        back.is_some(),
        "the pod runs again with the API away:\n{}",
        a.log()
    );
    assert!(
        a.log()
            .contains("starting 1 API pod(s) from the flash store"),
        "{}",
        a.log()
    );
    assert_ne!(
        back.as_ref(),
        Some(&before),
        "a new container after the reboot"
    );
    eprintln!(
        "offline reboot: the pod ran again {:?} after the agent started",
        t0.elapsed()
    );
    assert_eq!(
        a.read_out("keeper", "read", LIMIT),
        "kept-across-reboot\n",
        "the file read back from the claim's volume"
    );
    assert!(
        mounts_below(&target).contains(&target_s),
        "published again at {target_s}: {:?}",
        mounts_below(&a.root)
    );

    // The API returns: the pod that runs is kept; deleted, it leaves nothing mounted.
    c.up();
    wait_ready(c, &ns, "keeper");
    assert_eq!(
        a.running_ids(&ns, "keeper"),
        back.unwrap(),
        "no restart on reconnect"
    );
    delete_and_wait(c, &ns, "keeper");
    let gone = poll(LIMIT, || {
        (!a.root.join("pods").join(&uid).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "pod dir removed; mounts {:?}",
        mounts_below(&a.root)
    );
    let clean = poll(LIMIT, || mounts_below(&a.root).is_empty().then_some(()));
    assert!(clean.is_some(), "mounts left: {:?}", mounts_below(&a.root));
    let _ = smol::block_on(client.delete_volume(&volume_id));
}
