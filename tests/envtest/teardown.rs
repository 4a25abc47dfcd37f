//! What ended pods leave on the node: nothing. API pods with configMap, secret, projected
//! token and emptyDir (disk and tmpfs) volumes deleted through the API (gracefully and
//! forced), a static pod replaced and then removed, a pod deleted while the agent was down,
//! and orphans planted by the test: afterwards no mount under the root dir, no pod directory,
//! no pod log directory and no pod cgroup remain, a hostPath's files survive, and no token
//! byte was ever written to a file outside tmpfs. A crash-looping container keeps only the
//! logs of the containers the runtime still holds (the current one and the one before).
//!
//! The kubelet's rules followed: `kubelet_pods.go` cleanupOrphanedPodDirs (pod dirs of pods
//! that are neither desired nor running are removed once their volumes are unmounted, and
//! never through a mount), the container GC removing a dead container's log with it
//! (`MaxPerPodContainer` 1 dead instance kept), pod cgroups of pods that are gone removed by
//! housekeeping, and bound service-account tokens kept in memory and on the pod's tmpfs only.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use tinylet::k8s::configmap::base64_encode;
use tinylet::runtime::housekeeping::hierarchies;

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod, pod_path, poll, wait_ready, OnFailure, LIMIT, SA_DIR};

/// How long an ended pod's leftovers may take to go ("within a few seconds", with margin for
/// a loaded machine).
const CLEAN_LIMIT: Duration = Duration::from_secs(30);

/// Mount points at or below `dir`, from this process's mountinfo.
fn mounts_below(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(String::from)
        .collect()
}

/// Regular files below `dir` that are not on a mount below it (tmpfs volumes are skipped),
/// symlinks not followed.
fn files_off_tmpfs(dir: &Path, mounts: &BTreeSet<PathBuf>, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            if !mounts.contains(&p) {
                files_off_tmpfs(&p, mounts, out);
            }
        } else if t.is_file() {
            out.push(p);
        }
    }
}

/// Files under the agent's root dir, outside its tmpfs mounts, that hold `needle`.
fn files_holding(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mounts: BTreeSet<PathBuf> = mounts_below(root).into_iter().map(PathBuf::from).collect();
    let mut files = Vec::new();
    files_off_tmpfs(root, &mounts, &mut files);
    files
        .into_iter()
        .filter(|f| {
            std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Pod cgroup directories of `uid` in any hierarchy and QoS level.
fn pod_cgroups(uid: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for h in hierarchies(Path::new("/sys/fs/cgroup")) {
        for qos in ["kubepods", "kubepods/burstable", "kubepods/besteffort"] {
            let p = h.join(qos).join(format!("pod{uid}"));
            if p.exists() {
                v.push(p);
            }
        }
    }
    v
}

/// Log directories of pod `uid` under the agent's logs dir.
fn pod_log_dirs(a: &Agent, uid: &str) -> Vec<PathBuf> {
    std::fs::read_dir(a.dir.join("logs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&format!("_{uid}")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What is left on the node of pod `uid`, as one line per kind (empty when nothing).
fn leftovers(a: &Agent, uid: &str) -> Vec<String> {
    let mut left = Vec::new();
    let dir = a.root.join("pods").join(uid);
    if dir.exists() {
        left.push(format!("pod dir {}", dir.display()));
    }
    let mounts = mounts_below(&dir);
    if !mounts.is_empty() {
        left.push(format!("mounts {mounts:?}"));
    }
    let logs = pod_log_dirs(a, uid);
    if !logs.is_empty() {
        left.push(format!("log dirs {logs:?}"));
    }
    let cg = pod_cgroups(uid);
    if !cg.is_empty() {
        left.push(format!("cgroups {cg:?}"));
    }
    left
}

/// Waits until nothing of each pod in `uids` is left on the node.
fn assert_all_gone(a: &Agent, uids: &[String], what: &str) {
    let clean = poll(CLEAN_LIMIT, || {
        uids.iter()
            .all(|u| leftovers(a, u).is_empty())
            .then_some(())
    });
    if clean.is_none() {
        let left: Vec<(String, Vec<String>)> = uids
            .iter()
            .map(|u| (u.clone(), leftovers(a, u)))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        panic!("{what}: left on the node after {CLEAN_LIMIT:?}: {left:#?}");
    }
}

/// A pod with every kind of volume that leaves something on the node: configMap, secret and
/// projected token (tmpfs for the last two), emptyDir on disk and in memory, and a hostPath
/// whose host directory must survive. It writes its token and a file into each volume.
fn volume_pod(a: &Agent, ns: &str, name: &str) -> Value {
    let script = format!(
        "cat {SA_DIR}/token > /out/token; echo kept > /out/kept; echo d > /scratch/d; \
         echo m > /mem/m; cat /etc/sec/pw > /dev/null"
    );
    let mut p = pod(a, ns, name, &script);
    let mounts = p["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap();
    for (v, path) in [
        ("cfg", "/etc/cfg"),
        ("sec", "/etc/sec"),
        ("scratch", "/scratch"),
        ("mem", "/mem"),
    ] {
        mounts.push(json!({"name": v, "mountPath": path}));
    }
    let volumes = p["spec"]["volumes"].as_array_mut().unwrap();
    volumes.extend([
        json!({"name": "cfg", "configMap": {"name": "cfg"}}),
        json!({"name": "sec", "secret": {"secretName": "sec"}}),
        json!({"name": "scratch", "emptyDir": {}}),
        json!({"name": "mem", "emptyDir": {"medium": "Memory"}}),
    ]);
    p
}

fn uid_of(c: &dyn Cluster, ns: &str, name: &str) -> String {
    c.get(&pod_path(ns, name)).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sandboxes of namespace `ns` on the bed: (pod name, pod UID).
fn sandboxes(bed: &Bed, ns: &str) -> Vec<(String, String)> {
    let client = bed.client();
    smol::block_on(async {
        client
            .list_pod_sandbox(None)
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|s| s.metadata)
                    .filter(|m| m.namespace == ns)
                    .map(|m| (m.name, m.uid))
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn static_manifest(a: &Agent, ns: &str, message: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: edge\n  namespace: {ns}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    \
         imagePullPolicy: IfNotPresent\n    command: [sh, -c, \"trap 'exit 0' TERM; echo {message} > /mem/m; sleep 3600 & wait\"]\n    \
         volumeMounts:\n    - {{name: mem, mountPath: /mem}}\n  volumes:\n  - name: mem\n    \
         emptyDir: {{medium: Memory}}\n",
        a.bed.test_image
    )
}

/// The UID of the running static pod `edge-NODE` other than `not`, waited for.
fn static_uid(a: &Agent, ns: &str, not: Option<&str>) -> String {
    let name = format!("edge-{}", a.node);
    poll(LIMIT, || {
        let running = !a.running_ids(ns, &name).is_empty();
        let uid = sandboxes(&a.bed, ns)
            .into_iter()
            .find(|(n, u)| *n == name && Some(u.as_str()) != not)
            .map(|(_, u)| u);
        uid.filter(|_| running)
    })
    .unwrap_or_else(|| panic!("static pod {name} running (other than {not:?})"))
}

/// The agent's namespace with the configMap `cfg` and secret `sec` that [`volume_pod`] uses.
fn namespace_with_sources(c: &dyn Cluster, a: &Agent) -> String {
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    c.create(
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"greeting": "hello"}}),
    )
    .unwrap();
    c.create(
        &format!("/api/v1/namespaces/{ns}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
               "data": {"pw": base64_encode(b"s3cret")}}),
    )
    .unwrap();
    ns
}

/// API pods deleted gracefully and by force, a crash-looping container's logs, a static pod
/// replaced and removed: nothing of an ended pod stays, and no token reaches the disk.
pub fn deleted_pods_leave_nothing(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "teardown");
    let _dump = OnFailure::new(c, &a);
    let ns = namespace_with_sources(c, &a);
    join(c, &mut a);

    // The crash loop first: its restarts take the longest.
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "namespace": ns},
               "spec": {"nodeName": a.node, "terminationGracePeriodSeconds": 1,
                        "automountServiceAccountToken": false,
                        "containers": [{"name": "main", "image": a.bed.test_image,
                                        "imagePullPolicy": "IfNotPresent",
                                        "command": ["sh", "-c", "echo attempt; exit 1"]}]}}),
    )
    .unwrap();
    let names = ["vol-a", "vol-b", "vol-c"];
    for n in names {
        c.create(
            &format!("/api/v1/namespaces/{ns}/pods"),
            volume_pod(&a, &ns, n),
        )
        .unwrap();
    }
    for n in names {
        wait_ready(c, &ns, n);
    }
    let uids: Vec<String> = names.iter().map(|n| uid_of(c, &ns, n)).collect();
    let mut tokens = Vec::new();
    for n in names {
        let t = a.read_out(n, "token", LIMIT);
        assert_eq!(t.split('.').count(), 3, "pod {n} read a JWT: {t:?}");
        tokens.push(t);
    }
    for u in &uids {
        let m = mounts_below(&a.root.join("pods").join(u));
        assert!(
            m.len() >= 3,
            "secret, token and memory emptyDir on tmpfs: {m:?}"
        );
    }
    // Tokens live in memory and on the pods' tmpfs, never in a file on the root dir's disk.
    for t in &tokens {
        let found = files_holding(&a.root, t.trim());
        assert!(found.is_empty(), "a token was written to disk: {found:?}");
    }

    // Two graceful deletes and one forced.
    c.delete(&pod_path(&ns, "vol-a"), None).unwrap();
    c.delete(&pod_path(&ns, "vol-b"), None).unwrap();
    c.delete(&pod_path(&ns, "vol-c"), Some(0)).unwrap();
    for n in names {
        let gone = c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, n)).is_none());
        assert!(gone, "pod {n} deleted at the server");
    }
    assert_all_gone(&a, &uids, "API pods deleted");
    for n in names {
        assert_eq!(
            std::fs::read_to_string(a.out.join(n).join("kept")).unwrap_or_default(),
            "kept\n",
            "the hostPath of {n} keeps its files"
        );
    }

    // A static pod with a tmpfs volume, its spec replaced (a new UID), then removed.
    let manifest = a.manifests.join("edge.yaml");
    std::fs::write(&manifest, static_manifest(&a, &ns, "one")).unwrap();
    let first = static_uid(&a, &ns, None);
    std::fs::write(&manifest, static_manifest(&a, &ns, "two")).unwrap();
    let second = static_uid(&a, &ns, Some(&first));
    assert_all_gone(&a, std::slice::from_ref(&first), "static pod replaced");
    std::fs::remove_file(&manifest).unwrap();
    assert_all_gone(&a, std::slice::from_ref(&second), "static pod removed");

    // The crash loop: once a third instance exists, the log files are exactly those of the
    // containers the runtime still holds (the current one and the one before it).
    let crash_uid = uid_of(c, &ns, "crash");
    let third = poll(Duration::from_secs(150), || {
        a.containers(&ns)
            .iter()
            .any(|(_, p, _, attempt)| p == "crash" && *attempt >= 2)
            .then_some(())
    });
    assert!(third.is_some(), "the crashing container restarted twice");
    let log_dir = a
        .dir
        .join("logs")
        .join(format!("{ns}_crash_{crash_uid}"))
        .join("main");
    let mut last = (Vec::new(), Vec::new());
    let matched = poll(LIMIT, || {
        let mut held: Vec<String> = a
            .containers(&ns)
            .into_iter()
            .filter(|(_, p, ..)| p == "crash")
            .map(|(.., attempt)| format!("{attempt}.log"))
            .collect();
        held.sort();
        let mut files: Vec<String> = std::fs::read_dir(&log_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let ok = files == held && files.len() <= 2;
        last = (files, held);
        ok.then_some(())
    });
    assert!(
        matched.is_some(),
        "crash loop log files {:?} vs containers the runtime holds {:?}",
        last.0,
        last.1
    );
    c.delete(&pod_path(&ns, "crash"), Some(0)).unwrap();
    assert_all_gone(&a, &[crash_uid], "crash-looping pod deleted");
    assert!(
        mounts_below(&a.root).is_empty(),
        "no mount under the root dir: {:?}",
        mounts_below(&a.root)
    );
}

/// A pod deleted while the agent was down, and orphans planted by hand (a pod dir with a
/// tmpfs inside, a stray pod log dir, stray pod cgroups): the agent's start cleans them all,
/// one log line per pod.
pub fn ended_while_down_and_orphans(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "orphans");
    let _dump = OnFailure::new(c, &a);
    let ns = namespace_with_sources(c, &a);
    join(c, &mut a);
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        volume_pod(&a, &ns, "away"),
    )
    .unwrap();
    wait_ready(c, &ns, "away");
    let uid = uid_of(c, &ns, "away");

    // The agent goes down (pods keep running); the pod is force-deleted meanwhile.
    a.stop();
    c.delete(&pod_path(&ns, "away"), Some(0)).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "away")).is_none()));
    assert!(
        !a.running_ids(&ns, "away").is_empty(),
        "still running meanwhile"
    );

    // Orphans of a pod nobody knows.
    let ghost = format!("0rphan-{}", std::process::id());
    let vol = a
        .root
        .join("pods")
        .join(&ghost)
        .join("volumes/kubernetes.io~empty-dir/mem");
    std::fs::create_dir_all(&vol).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &vol,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    std::fs::write(vol.join("data"), b"ghost").unwrap();
    let stray_log = a
        .dir
        .join("logs")
        .join(format!("{ns}_ghost_{ghost}"))
        .join("main");
    std::fs::create_dir_all(&stray_log).unwrap();
    std::fs::write(stray_log.join("0.log"), b"old\n").unwrap();
    let mut planted = 0;
    for h in hierarchies(Path::new("/sys/fs/cgroup")).into_iter().take(3) {
        let cg = h.join("kubepods/besteffort").join(format!("pod{ghost}"));
        if std::fs::create_dir_all(&cg).is_ok() {
            planted += 1;
        }
    }
    assert!(planted > 0, "stray cgroups planted");
    assert_eq!(
        leftovers(&a, &ghost).len(),
        4,
        "{:?}",
        leftovers(&a, &ghost)
    );

    a.start();
    assert_all_gone(&a, &[uid.clone(), ghost.clone()], "after the agent's start");
    assert!(
        a.running_ids(&ns, "away").is_empty(),
        "the deleted pod's containers were stopped"
    );
    assert_eq!(
        std::fs::read_to_string(a.out.join("away").join("kept")).unwrap_or_default(),
        "kept\n",
        "the hostPath keeps its files"
    );
    let log = a.log();
    assert!(
        log.contains(&format!("pod {ghost}: ended; cleaned up after it")),
        "one line per cleaned pod:\n{log}"
    );
    assert!(
        mounts_below(&a.root).is_empty(),
        "{:?}",
        mounts_below(&a.root)
    );
}
