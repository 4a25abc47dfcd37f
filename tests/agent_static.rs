//! `tinylet run` with static pods against the bed's real containerd: the binary runs as a child
//! with its own root, manifest and log dirs; the tests read `tinylet status --json`, the files
//! the pods write, /proc/self/mountinfo and containerd's own lists. One agent at a time (agents
//! on one containerd remove each other's pods); every test removes its pods in a guard.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use agent::*;
use cri_bed::Bed;

/// Waits for `check` on the status or fails with the agent's log.
fn must(t: &AgentEnv, limit: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    match t.wait_status(limit, check) {
        Some(v) => v,
        None => panic!(
            "timed out after {limit:?} waiting for {what}\nlast status: {}\nagent log:\n{}",
            t.status().map(|v| v.to_string()).unwrap_or_default(),
            t.agent_log()
        ),
    }
}

fn uid_of(doc: &Value, name: &str) -> String {
    pod(doc, name)
        .and_then(|p| p.get("uid")?.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Waits (bounded) until a file exists and returns its contents.
fn read_when_there(path: &Path, limit: Duration) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} did not appear within {limit:?}", path.display());
}

fn free_loopback_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn init_container_completes_before_two_app_containers_run() {
    let Some(mut t) = setup("init_container_completes_before_two_app_containers_run") else {
        return;
    };
    t.put_manifest("inits.yaml", &t.template("init-two-apps.yaml", &[]));
    t.start();
    let name = t.pod_name("inits");
    let doc = must(
        &t,
        Duration::from_secs(60),
        "both app containers running",
        |d| pod_running(d, &name) && running(d, &name, "app-a") && running(d, &name, "app-b"),
    );
    let init = container(&doc, &name, "prepare").unwrap();
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed", "{init}");
    assert_eq!(pod(&doc, &name).unwrap()["conditions"]["initialized"], true);
    let data = t.dir.join("data");
    assert_eq!(
        read_when_there(&data.join("init"), Duration::from_secs(5)),
        "done\n"
    );
    // Each app container checked for the init container's file when it started.
    assert_eq!(
        read_when_there(&data.join("a"), Duration::from_secs(5)),
        "saw-init\n"
    );
    assert_eq!(
        read_when_there(&data.join("b"), Duration::from_secs(5)),
        "saw-init\n"
    );
    assert_eq!(
        restarts(&doc, &name, "app-a") + restarts(&doc, &name, "app-b"),
        0
    );
    let table = t.status_table();
    assert!(table.contains(&format!("{NAMESPACE}/{name}")), "{table}");
    assert!(table.contains("init:prepare"), "{table}");
    assert!(table.contains("terminated(Completed, exit 0)"), "{table}");
    assert!(table.contains("running("), "{table}");

    // SIGTERM stops the agent cleanly; its pods keep running, the socket goes away.
    let st = t.stop(Signal::SIGTERM);
    assert!(
        st.is_some_and(|s| s.success()),
        "exit {st:?}\n{}",
        t.agent_log()
    );
    assert!(!t.root.join("tinylet.sock").exists(), "status socket left");
    assert_eq!(
        t.runtime_containers().len(),
        3,
        "{:?}",
        t.runtime_containers()
    );
}

#[test]
fn crashing_container_restarts_with_growing_back_off() {
    let Some(mut t) = setup("crashing_container_restarts_with_growing_back_off") else {
        return;
    };
    t.put_manifest("crash.yaml", &t.template("crash.yaml", &[]));
    t.start();
    let name = t.pod_name("crash");
    let mut delays: Vec<u64> = Vec::new();
    let mut max_restarts = 0;
    let mut saw_crash_loop = false;
    let t0 = Instant::now();
    // Run 0.5 s, restart at once (as upstream), run 0.5 s, back-off 10 s, run 0.5 s, back-off
    // 20 s: the second restart lands near 12 s and the 20 s delay shows right after it.
    while t0.elapsed() < Duration::from_secs(40) && !(max_restarts >= 2 && delays.len() >= 2) {
        if let Some(d) = t.status() {
            if let Some(c) = container(&d, &name, "crasher") {
                if let Some(delay) = c.get("backoff").and_then(|b| b.get("delaySecs")?.as_u64()) {
                    if delays.last() != Some(&delay) {
                        delays.push(delay);
                    }
                }
                if c["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
                    saw_crash_loop = true;
                }
                max_restarts = max_restarts.max(restarts(&d, &name, "crasher"));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "back-off delays seen {delays:?}, restarts {max_restarts} after {:?}",
        t0.elapsed()
    );
    assert!(
        delays.len() >= 2 && delays[0] == 10 && delays[1] == 20,
        "delays {delays:?}\nagent log:\n{}",
        t.agent_log()
    );
    assert!(
        max_restarts >= 2,
        "restart count only reached {max_restarts}"
    );
    assert!(saw_crash_loop, "no CrashLoopBackOff waiting reason seen");
}

#[test]
fn failing_liveness_probe_restarts_the_container() {
    let Some(mut t) = setup("failing_liveness_probe_restarts_the_container") else {
        return;
    };
    t.put_manifest("live.yaml", &t.template("liveness.yaml", &[]));
    t.start();
    let name = t.pod_name("live");
    let first = must(&t, Duration::from_secs(30), "the container running", |d| {
        running(d, &name, "sleeper")
    });
    let first_id = cfield(&first, &name, "sleeper", "containerId").unwrap();
    let doc = must(
        &t,
        Duration::from_secs(30),
        "a restart after the probe failed",
        |d| {
            restarts(d, &name, "sleeper") >= 1
                && running(d, &name, "sleeper")
                && cfield(d, &name, "sleeper", "containerId").as_ref() != Some(&first_id)
        },
    );
    let c = container(&doc, &name, "sleeper").unwrap();
    assert!(c.get("lastState").is_some(), "no last state: {c}");
}

#[test]
fn readiness_follows_an_http_get_probe() {
    let Some(mut t) = setup("readiness_follows_an_http_get_probe") else {
        return;
    };
    let www = t.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let page = www.join("ready.html");
    std::fs::write(&page, "ok\n").unwrap();
    let port = free_loopback_port().to_string();
    t.put_manifest(
        "ready.yaml",
        &t.template("readiness.yaml", &[("PORT", &port)]),
    );
    t.start();
    let name = t.pod_name("ready");
    let is_ready = |d: &Value| {
        container(d, &name, "httpd").and_then(|c| c.get("ready")?.as_bool()) == Some(true)
            && pod(d, &name).map(|p| p["conditions"]["ready"] == true) == Some(true)
    };
    must(&t, Duration::from_secs(30), "ready while served", is_ready);
    std::fs::remove_file(&page).unwrap();
    let d = must(&t, Duration::from_secs(15), "not ready after a 404", |d| {
        running(d, &name, "httpd") && !is_ready(d)
    });
    assert_eq!(
        restarts(&d, &name, "httpd"),
        0,
        "readiness must not restart"
    );
    std::fs::write(&page, "ok again\n").unwrap();
    must(&t, Duration::from_secs(15), "ready again", is_ready);
}

#[test]
fn host_path_and_empty_dir_volumes_disk_and_memory() {
    let Some(mut t) = setup("host_path_and_empty_dir_volumes_disk_and_memory") else {
        return;
    };
    t.put_manifest("vols.yaml", &t.template("volumes.yaml", &[]));
    t.start();
    let name = t.pod_name("vols");
    let doc = must(&t, Duration::from_secs(60), "the writer running", |d| {
        pod_running(d, &name)
    });
    let uid = uid_of(&doc, &name);
    let host = t.dir.join("created/by/agent");
    assert_eq!(
        read_when_there(&host.join("f"), Duration::from_secs(5)),
        "host\n"
    );
    let vols = t
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir");
    assert_eq!(
        read_when_there(&vols.join("disk/f"), Duration::from_secs(5)),
        "disk\n"
    );
    assert_eq!(
        read_when_there(&vols.join("mem/f"), Duration::from_secs(5)),
        "mem\n"
    );
    let tmpfs = tmpfs_mounts_under(&t.root);
    let mem = vols.join("mem").display().to_string();
    assert!(tmpfs.contains(&mem), "no tmpfs at {mem}: {tmpfs:?}");
    assert!(
        !tmpfs.iter().any(|p| p.ends_with("/disk")),
        "disk emptyDir is a tmpfs: {tmpfs:?}"
    );
    // Inside the container /mem is a tmpfs of the size limit (8Mi = 8192k).
    let mounts = read_when_there(&host.join("mounts"), Duration::from_secs(5));
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/mem"))
        .unwrap_or_else(|| panic!("/mem not mounted in the container:\n{mounts}"));
    assert!(line.starts_with("tmpfs "), "{line}");
    assert!(line.contains("size=8192k"), "{line}");

    t.stop(Signal::SIGTERM);
    t.clear_manifests();
    let (ok, doc) = t.run_once(Duration::from_secs(60));
    assert!(ok, "--once did not settle: {doc:?}");
    assert!(
        tmpfs_mounts_under(&t.root).is_empty(),
        "tmpfs left: {:?}",
        tmpfs_mounts_under(&t.root)
    );
    assert!(!t.root.join("pods").join(&uid).exists(), "pod dir left");
    assert!(host.join("f").exists(), "a hostPath outlives its pod");
    assert!(t.runtime_pods().is_empty());
}

#[test]
fn manifest_edit_replaces_the_pod() {
    let Some(mut t) = setup("manifest_edit_replaces_the_pod") else {
        return;
    };
    let v1 = t.template("sleeper.yaml", &[("POD", "edit"), ("GEN", "1")]);
    t.put_manifest("edit.yaml", &v1);
    t.start();
    let name = t.pod_name("edit");
    let doc = must(&t, Duration::from_secs(30), "generation 1 running", |d| {
        pod_running(d, &name)
    });
    let uid1 = uid_of(&doc, &name);
    let hash1 = pod(&doc, &name).unwrap()["specHash"].clone();
    let cid1 = cfield(&doc, &name, "sleep", "containerId").unwrap();
    let sandboxes1 = t.runtime_pods();
    assert_eq!(sandboxes1.len(), 1, "{sandboxes1:?}");

    let v2 = t.template("sleeper.yaml", &[("POD", "edit"), ("GEN", "2")]);
    t.put_manifest("edit.yaml", &v2);
    let doc = must(
        &t,
        Duration::from_secs(60),
        "generation 2 running alone",
        |d| {
            let n = d["pods"].as_array().map_or(0, Vec::len);
            n == 1 && pod_running(d, &name) && uid_of(d, &name) != uid1
        },
    );
    assert_ne!(pod(&doc, &name).unwrap()["specHash"], hash1);
    let cid2 = cfield(&doc, &name, "sleep", "containerId").unwrap();
    assert_ne!(cid1, cid2);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && t.runtime_pods().len() > 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pods = t.runtime_pods();
    assert_eq!(pods.len(), 1, "old sandbox left: {pods:?}");
    assert_ne!(pods[0].0, sandboxes1[0].0);
    let containers = t.runtime_containers();
    assert!(
        !containers.iter().any(|(id, _, _)| *id == cid1),
        "old container left: {containers:?}"
    );
}

#[test]
fn manifest_removal_removes_the_pod_and_its_files() {
    let Some(mut t) = setup("manifest_removal_removes_the_pod_and_its_files") else {
        return;
    };
    t.put_manifest(
        "gone.yaml",
        &t.template("sleeper.yaml", &[("POD", "gone"), ("GEN", "1")]),
    );
    t.put_manifest(
        "keep.yaml",
        &t.template("sleeper.yaml", &[("POD", "keep"), ("GEN", "1")]),
    );
    t.start();
    let gone = t.pod_name("gone");
    let keep = t.pod_name("keep");
    let doc = must(&t, Duration::from_secs(30), "both running", |d| {
        pod_running(d, &gone) && pod_running(d, &keep)
    });
    let uid = uid_of(&doc, &gone);
    let keep_cid = cfield(&doc, &keep, "sleep", "containerId").unwrap();
    let pod_dir = t.root.join("pods").join(&uid);
    let log_dir = t.logs.join(format!("{NAMESPACE}_{gone}_{uid}"));
    assert!(pod_dir.is_dir(), "no pod dir {}", pod_dir.display());
    assert!(log_dir.is_dir(), "no log dir {}", log_dir.display());

    t.remove_manifest("gone.yaml");
    let doc = must(
        &t,
        Duration::from_secs(30),
        "the pod gone from status",
        |d| pod(d, &gone).is_none() && pod_running(d, &keep),
    );
    assert_eq!(
        cfield(&doc, &keep, "sleep", "containerId").as_deref(),
        Some(keep_cid.as_str())
    );
    let t0 = Instant::now();
    let left = || t.runtime_pods().into_iter().any(|(_, n)| n == gone);
    while t0.elapsed() < Duration::from_secs(10) && (left() || pod_dir.exists() || log_dir.exists())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!left(), "sandbox left: {:?}", t.runtime_pods());
    assert!(!pod_dir.exists(), "pod dir left");
    assert!(!log_dir.exists(), "log dir left");
    let containers = t.runtime_containers();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0].0, keep_cid);
}

#[test]
fn sigkilled_agent_restarts_without_restarting_containers() {
    let Some(mut t) = setup("sigkilled_agent_restarts_without_restarting_containers") else {
        return;
    };
    for p in ["one", "two"] {
        t.put_manifest(
            &format!("{p}.yaml"),
            &t.template("sleeper.yaml", &[("POD", p), ("GEN", "1")]),
        );
    }
    t.start();
    let (one, two) = (t.pod_name("one"), t.pod_name("two"));
    let doc = must(&t, Duration::from_secs(30), "both running", |d| {
        pod_running(d, &one) && pod_running(d, &two)
    });
    let ids =
        |d: &Value| [&one, &two].map(|n| cfield(d, n, "sleep", "containerId").unwrap_or_default());
    let before = ids(&doc);
    let runtime_before = t.runtime_containers();
    t.stop(Signal::SIGKILL);
    t.start();
    let doc = must(&t, Duration::from_secs(30), "both adopted", |d| {
        d["booted"] == true && pod_running(d, &one) && pod_running(d, &two)
    });
    assert_eq!(ids(&doc), before);
    // A few relists later nothing has been restarted either.
    std::thread::sleep(Duration::from_secs(3));
    let doc = t.status().unwrap();
    assert_eq!(ids(&doc), before);
    assert_eq!(
        restarts(&doc, &one, "sleep") + restarts(&doc, &two, "sleep"),
        0
    );
    let mut a: Vec<String> = runtime_before.into_iter().map(|c| c.0).collect();
    let mut b: Vec<String> = t.runtime_containers().into_iter().map(|c| c.0).collect();
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "containers were created or removed across the restart"
    );
}

/// Restarts the bed's containerd on drop if it is not answering (also after a failed assert).
struct ContainerdBack<'a>(&'a Bed);

fn bed_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bed")
        .join(name)
}

fn containerd_answers(bed: &Bed) -> bool {
    let c = tinylet::cri::CriClient::new(
        &bed.endpoint,
        tinylet::cri::CriOptions {
            call_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    );
    match c {
        Ok(c) => smol::block_on(c.version()).is_ok(),
        Err(_) => false,
    }
}

fn start_containerd() {
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(bed_script("containerd-restart.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "containerd-restart.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for ContainerdBack<'_> {
    fn drop(&mut self) {
        if !containerd_answers(self.0) {
            eprintln!("cleanup: restarting containerd");
            start_containerd();
        }
    }
}

#[test]
fn agent_waits_for_containerd_then_starts_the_pods() {
    let Some(mut t) = setup("agent_waits_for_containerd_then_starts_the_pods") else {
        return;
    };
    t.put_manifest(
        "late.yaml",
        &t.template("sleeper.yaml", &[("POD", "late"), ("GEN", "1")]),
    );
    let pidfile = t.bed.dir.join("containerd.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bed = Bed::get("containerd").unwrap();
    let _back = ContainerdBack(&bed);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) && containerd_answers(&bed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!containerd_answers(&bed), "containerd did not stop");
    // Keep the window short: other tests on this machine share the containerd.
    t.start();
    std::thread::sleep(Duration::from_secs(2));
    assert!(t.agent_alive(), "the agent exited:\n{}", t.agent_log());
    assert!(
        t.agent_log().contains("waiting for the container runtime"),
        "{}",
        t.agent_log()
    );
    start_containerd();
    let name = t.pod_name("late");
    must(&t, Duration::from_secs(60), "the pod running", |d| {
        pod_running(d, &name)
    });
}

#[test]
fn corrupt_store_record_is_quarantined_and_other_pods_start() {
    let Some(mut t) = setup("corrupt_store_record_is_quarantined_and_other_pods_start") else {
        return;
    };
    for p in ["bad", "good"] {
        t.put_manifest(
            &format!("{p}.yaml"),
            &t.template("sleeper.yaml", &[("POD", p), ("GEN", "1")]),
        );
    }
    let (bad, good) = (t.pod_name("bad"), t.pod_name("good"));
    let (ok, doc) = t.run_once(Duration::from_secs(60));
    let doc = doc.unwrap();
    assert!(
        ok && pod_running(&doc, &bad) && pod_running(&doc, &good),
        "{doc}"
    );
    let bad_uid = uid_of(&doc, &bad);
    // Take the pods down behind the agent's back so that booting from flash must start them.
    let client = t.bed.client();
    let pods = t.runtime_pods();
    smol::block_on(async {
        for (id, _) in &pods {
            client.stop_pod_sandbox(id).await.unwrap();
            client.remove_pod_sandbox(id).await.unwrap();
        }
    });
    let store = t.root.join("store");
    let record = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.display().to_string().contains(&bad_uid))
        .unwrap_or_else(|| panic!("no record for {bad_uid} in {}", store.display()));
    let mut bytes = std::fs::read(&record).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 4] {
        *b ^= 0x5a;
    }
    std::fs::write(&record, &bytes).unwrap();

    // No manifest dir this time: the pods come from the flash store alone.
    let absent = t.dir.join("no-manifests");
    t.start_with_manifests(&absent);
    let doc = must(&t, Duration::from_secs(30), "the good pod running", |d| {
        pod_running(d, &good)
    });
    assert!(pod(&doc, &bad).is_none(), "{doc}");
    let quarantined: Vec<_> = std::fs::read_dir(store.join("quarantine"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(!record.exists(), "the damaged record is still in place");
    assert!(
        !t.runtime_pods().iter().any(|(_, n)| *n == bad),
        "the pod of the damaged record was started"
    );
}

#[test]
fn invalid_manifest_is_reported_and_valid_pods_run() {
    let Some(mut t) = setup("invalid_manifest_is_reported_and_valid_pods_run") else {
        return;
    };
    for p in ["fine", "also"] {
        t.put_manifest(
            &format!("{p}.yaml"),
            &t.template("sleeper.yaml", &[("POD", p), ("GEN", "1")]),
        );
    }
    t.put_manifest("invalid.yaml", &t.template("invalid.yaml", &[]));
    t.start();
    let (fine, also) = (t.pod_name("fine"), t.pod_name("also"));
    let doc = must(&t, Duration::from_secs(30), "valid pods running", |d| {
        pod_running(d, &fine)
            && pod_running(d, &also)
            && d["manifestErrors"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
    });
    let errors = doc["manifestErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0].as_str().unwrap();
    assert!(e.contains("invalid.yaml"), "{e}");
    assert!(
        e.contains("image"),
        "the error does not name the field: {e}"
    );
    assert_eq!(doc["pods"].as_array().unwrap().len(), 2, "{doc}");
}

/// A full flash (the root dir on a 4 MiB tmpfs the test fills): running pods keep running,
/// a new static pod still starts and the status is still served, the refused store write is
/// reported once, no temporary or torn record is left, and once there is room again the
/// write catches up by itself.
#[test]
fn full_flash_keeps_pods_running_and_the_store_catches_up() {
    let Some(mut t) = setup("full_flash_keeps_pods_running_and_the_store_catches_up") else {
        return;
    };
    std::fs::create_dir_all(&t.root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &t.root,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("size=4m,mode=0700"),
    )
    .expect("mount a small tmpfs as the root dir");
    let image = t.bed.test_image.clone();
    let manifest = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
             spec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 1\n  containers:\n  \
             - {{name: main, image: {image}, command: [sleep, \"3600\"]}}\n"
        )
    };
    t.put_manifest("a.yaml", &manifest("a"));
    t.start();
    let a = t.pod_name("a");
    must(&t, Duration::from_secs(60), "pod a running", |d| {
        pod_running(d, &a)
    });
    let store = t.root.join("store");
    let records = || -> Vec<String> {
        std::fs::read_dir(&store)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".rec") || n.ends_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(records().len(), 1, "{:?}", records());

    // Fill the flash.
    let filler = t.root.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a; 64 << 10];
        for _ in 0..256 {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
    }
    t.put_manifest("b.yaml", &manifest("b"));
    let b = t.pod_name("b");
    must(
        &t,
        Duration::from_secs(60),
        "pod b running on a full flash",
        |d| pod_running(d, &b) && pod_running(d, &a),
    );
    let full_log = || {
        let log = t.agent_log();
        log.lines()
            .filter(|l| l.starts_with('W') && l.contains("No space left on device"))
            .count()
    };
    let t0 = Instant::now();
    while full_log() == 0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(full_log(), 1, "reported once:\n{}", t.agent_log());
    let now = records();
    assert_eq!(now.len(), 1, "b's record could not be written yet: {now:?}");
    assert!(
        now.iter().all(|n| n.ends_with(".rec")),
        "no temp file left: {now:?}"
    );

    // Room again: the kept write goes through by itself.
    std::fs::remove_file(&filler).unwrap();
    let t0 = Instant::now();
    while records().len() < 2 && t0.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = records();
    assert_eq!(now.len(), 2, "caught up: {now:?}\n{}", t.agent_log());
    assert!(now.iter().all(|n| n.ends_with(".rec")), "{now:?}");
    assert!(t.agent_log().contains("caught up"), "{}", t.agent_log());
    assert!(t.agent_alive(), "the agent kept running");
}
