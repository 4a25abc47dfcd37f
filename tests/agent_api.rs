//! `tinylet run` joined to the project's API test server (TLS, node client certificate) on the
//! bed's real containerd: pods from the API start, report status, read configMaps and tokens,
//! are deleted with upstream semantics, survive watch compaction, outages and an offline
//! restart without container restarts; static pods get mirror pods. One agent at a time.

#[path = "apiserver/mod.rs"]
mod apiserver;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/podsync.rs"]
mod podsync;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use cri_bed::Bed;
use podsync::{mount_config_map, ready, Env};

fn setup(test: &str) -> Option<Env> {
    let bed = Bed::get(test)?;
    Some(Env::new(
        bed,
        Path::new(env!("CARGO_BIN_EXE_tinylet")),
        test,
    ))
}

const START: Duration = Duration::from_secs(60);

/// Successful status PATCHes of pod `name` so far.
fn status_patches(env: &Env, name: &str) -> usize {
    let suffix = format!("/pods/{name}/status");
    env.srv
        .stats()
        .log()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.code == 200
                && r.target.split('?').next().unwrap_or("").ends_with(&suffix)
        })
        .count()
}

#[test]
fn api_pod_runs_reads_config_and_token_then_is_deleted() {
    let Some(mut env) = setup("api_pod_lifecycle") else {
        return;
    };
    env.srv
        .create(
            &format!("/api/v1/namespaces/{}/configmaps", env.ns),
            json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello from the API"}}),
        )
        .unwrap();
    env.start();
    let mut pod = env.pod(
        "web",
        "cat /etc/cfg/greeting > /out/cfg; echo -n \"$GREETING\" > /out/env; \
         cat /var/run/secrets/kubernetes.io/serviceaccount/token > /out/token; \
         cat /var/run/secrets/kubernetes.io/serviceaccount/namespace > /out/ns; \
         echo -n \"$POD_IP\" > /out/ip",
    );
    mount_config_map(&mut pod, "cfg");
    pod["spec"]["containers"][0]["env"] = json!([{"name": "GREETING",
        "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]);
    let created = env.create_pod(pod);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    env.wait_ready("web", START);

    let st = env.srv.pod_status(&env.ns, "web").unwrap();
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["name"], "main");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    assert!(cs["state"]["running"]["startedAt"].is_string());
    // The runtime's image reference, as `kubectl get pod -o yaml` shows it.
    assert!(
        cs["imageID"]
            .as_str()
            .is_some_and(|i| i.contains("sha256:")),
        "{cs}"
    );
    assert!(st["podIP"].as_str().is_some_and(|s| !s.is_empty()), "{st}");
    assert!(st["startTime"].is_string());
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
    );
    assert_eq!(
        env.srv.stats().count("get", "pods/status"),
        0,
        "status never read"
    );

    assert_eq!(env.read_out("web", "cfg", START), "hello from the API");
    assert_eq!(env.read_out("web", "env", START), "hello from the API");
    assert_eq!(env.read_out("web", "ns", START), env.ns);
    assert_eq!(
        env.read_out("web", "ip", START),
        st["podIP"].as_str().unwrap()
    );
    let token = env.read_out("web", "token", START);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token:?}");
    assert!(env.srv.stats().count("create", "serviceaccounts/token") >= 1);

    env.srv
        .delete(&format!("/api/v1/namespaces/{}/pods/web", env.ns), None)
        .unwrap();
    let gone = env
        .srv
        .wait_until(START, |s| s.pod(&env.ns, "web").is_none());
    assert!(gone, "pod object still there:\n{}", env.log());
    assert!(
        env.running_ids("web").is_empty(),
        "containers stopped before the final delete"
    );
    let deletes: Vec<_> = env
        .srv
        .stats()
        .log()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.user.starts_with("system:node:"))
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    // Events recorded by the node for the pod.
    let events = env
        .srv
        .list(&format!("/api/v1/namespaces/{}/events", env.ns))
        .unwrap();
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["uid"] == uid.as_str())
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for r in ["Created", "Started", "Killing"] {
        assert!(reasons.contains(&r), "{r} in {reasons:?}");
    }
    // The agent removes the sandbox as well.
    let t0 = std::time::Instant::now();
    while !env.sandboxes().is_empty() && t0.elapsed() < START {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(env.sandboxes().is_empty());
}

#[test]
fn pods_started_together_fetch_a_shared_config_map_once() {
    let Some(mut env) = setup("api_pods_shared_cm") else {
        return;
    };
    env.srv
        .create(
            &format!("/api/v1/namespaces/{}/configmaps", env.ns),
            json!({"metadata": {"name": "shared"}, "data": {"k": "v"}}),
        )
        .unwrap();
    env.start();
    let names = ["s1", "s2", "s3"];
    for name in names {
        let mut pod = env.pod(name, "cat /etc/cfg/k > /out/cfg");
        mount_config_map(&mut pod, "shared");
        env.create_pod(pod);
    }
    for name in names {
        env.wait_ready(name, START);
        assert_eq!(env.read_out(name, "cfg", START), "v");
    }
    // Their volumes are made in parallel; one fetch serves all (the others wait for it).
    let gets = |suffix: &str| {
        env.srv
            .stats()
            .log()
            .iter()
            .filter(|r| r.method == "GET" && r.target.split('?').next().unwrap().ends_with(suffix))
            .count()
    };
    assert_eq!(gets("/configmaps/shared"), 1, "{}", env.log());
    assert_eq!(gets("/configmaps/kube-root-ca.crt"), 1, "{}", env.log());
    assert_eq!(
        env.srv.stats().count("create", "serviceaccounts/token"),
        names.len() as u64,
        "one token per pod"
    );
}

#[test]
fn api_pod_waits_for_a_missing_config_map_without_sandboxes() {
    let Some(mut env) = setup("api_pod_missing_cm") else {
        return;
    };
    env.start();
    let mut pod = env.pod("late", "cat /etc/cfg/greeting > /out/cfg");
    mount_config_map(&mut pod, "late-cfg");
    env.create_pod(pod);
    // The pod reports why it waits, and no sandbox is left behind while it does.
    env.wait_pod(
        "late",
        START,
        "a status naming the missing configMap",
        |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
                || p["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("late-cfg"))
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(env.running_ids("late").is_empty());
    let st = env.srv.pod_status(&env.ns, "late").unwrap();
    assert_eq!(st["phase"], "Pending", "{st}");
    let kept: Vec<_> = env
        .sandboxes()
        .into_iter()
        .filter(|(_, name)| name == "late")
        .collect();
    assert!(kept.is_empty(), "sandboxes while waiting: {kept:?}");
    assert!(
        env.log().contains("late-cfg"),
        "the agent log names the missing configMap:\n{}",
        env.log()
    );

    env.srv
        .create(
            &format!("/api/v1/namespaces/{}/configmaps", env.ns),
            json!({"metadata": {"name": "late-cfg"}, "data": {"greeting": "here at last"}}),
        )
        .unwrap();
    env.wait_ready("late", START);
    assert_eq!(env.read_out("late", "cfg", START), "here at last");
}

#[test]
fn watch_410_is_recovered_without_restarting_containers() {
    let Some(mut env) = setup("watch_410") else {
        return;
    };
    env.start();
    env.create_pod(env.pod("w", "true"));
    env.wait_ready("w", START);
    let before = env.running_ids("w");
    assert_eq!(before.len(), 1);
    let lists = env.srv.stats().count("list", "pods");
    // Take the server down so the watch breaks, move the history on and compact it: the
    // agent's re-watch from its old resourceVersion gets 410 and must re-list.
    env.srv.down();
    env.srv
        .create(
            &format!("/api/v1/namespaces/{}/configmaps", env.ns),
            json!({"metadata": {"name": "bump"}, "data": {}}),
        )
        .unwrap();
    env.srv.compact();
    env.srv.up().unwrap();
    let relisted = env
        .srv
        .wait_until(START, |s| s.stats().count("list", "pods") > lists);
    assert!(relisted, "no re-list after 410:\n{}", env.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.running_ids("w"), before, "containers kept");
    assert!(ready(&env.srv.pod(&env.ns, "w").unwrap()));
}

#[test]
fn api_outage_keeps_pods_running_and_status_catches_up() {
    let Some(mut env) = setup("api_outage") else {
        return;
    };
    env.start();
    let mut pod = env.pod("o", "true");
    pod["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["cat", "/out/go"]}, "periodSeconds": 1, "failureThreshold": 1});
    env.create_pod(pod);
    env.wait_pod("o", START, "Running", |p| p["status"]["phase"] == "Running");
    let before = env.running_ids("o");
    assert_eq!(before.len(), 1);
    std::thread::sleep(Duration::from_secs(1));
    let sent = status_patches(&env, "o");
    env.srv.down_for(Duration::from_secs(8));
    // Readiness changes (several probe periods) while the link is down.
    std::fs::write(env.out.join("o").join("go"), "1").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(env.srv.is_down());
    env.wait_ready("o", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let after = status_patches(&env, "o");
    assert_eq!(after - sent, 1, "the status caught up in one PATCH");
    assert_eq!(env.running_ids("o"), before, "no container restarted");
}

#[test]
fn offline_restart_brings_pods_back_from_flash_and_reconnect_restarts_nothing() {
    let Some(mut env) = setup("offline_restart") else {
        return;
    };
    env.start();
    env.create_pod(env.pod("f", "true"));
    env.wait_ready("f", START);
    let before = env.running_ids("f");
    assert_eq!(before.len(), 1);

    // tinylet and the API server go down; tinylet restarts while the API is still down.
    env.stop();
    env.srv.down();
    env.start();
    let t0 = std::time::Instant::now();
    while !env.log().contains("API pod(s) from the flash store") && t0.elapsed() < START {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        env.log()
            .contains("starting 1 API pod(s) from the flash store"),
        "{}",
        env.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.running_ids("f"), before, "adopted, not restarted");

    // Reconnect: reconciled by UID and spec hash, nothing restarts, status is current.
    let patches = status_patches(&env, "f");
    env.srv.up().unwrap();
    env.wait_ready("f", START);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.running_ids("f"), before, "0 restarts after reconnect");
    assert!(status_patches(&env, "f") - patches <= 1);
}

#[test]
fn offline_reboot_starts_pods_from_flash() {
    let Some(mut env) = setup("offline_reboot") else {
        return;
    };
    // Volumes are refreshed every 2 s, so the token that comes after the reboot shows soon.
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str("syncFrequency: 2s\n");
    std::fs::write(&env.config, cfg).unwrap();
    env.start();
    env.create_pod(env.pod("r", "true"));
    env.wait_ready("r", START);
    let before = env.running_ids("r");
    // A reboot: tinylet, containers and tmpfs volumes are gone, and the API is unreachable.
    env.stop();
    env.srv.down();
    env.force_remove_pods();
    env.unmount_leftovers();
    env.start();
    let t0 = std::time::Instant::now();
    while env.running_ids("r").is_empty() && t0.elapsed() < START {
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = env.running_ids("r");
    assert_eq!(now.len(), 1, "pod back from flash:\n{}", env.log());
    assert_ne!(now, before);
    // Reconnect: the pod that runs is kept.
    env.srv.up().unwrap();
    env.wait_ready("r", START);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.running_ids("r"), now, "0 restarts after reconnect");
    // Tokens are never kept on flash, so the rebooted pod started without one; once the link
    // is back its projected volume gets a fresh token (none of it on disk meanwhile).
    let uid = env.srv.pod(&env.ns, "r").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let projected = env
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~projected");
    let token_file = || -> Option<String> {
        std::fs::read_dir(&projected)
            .ok()?
            .flatten()
            .find_map(|v| std::fs::read_to_string(v.path().join("token")).ok())
            .filter(|t| !t.is_empty())
    };
    assert!(
        std::fs::read_dir(&projected).is_ok(),
        "the server's admission gave the pod an API access volume"
    );
    let t0 = std::time::Instant::now();
    while token_file().is_none() && t0.elapsed() < START {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        token_file().is_some(),
        "a fresh token in the projected volume after reconnect:\n{}",
        env.log()
    );
}

#[test]
fn static_pod_gets_a_mirror_pod_recreated_when_deleted() {
    let Some(mut env) = setup("mirror") else {
        return;
    };
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: st\n  namespace: {}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    \
         command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 3600 & wait\"]\n",
        env.ns, env.bed.test_image
    );
    std::fs::write(env.manifests.join("st.yaml"), manifest).unwrap();
    env.start();
    let name = format!("st-{}", env.node);
    let mirror = |s: &apiserver::ApiServer| {
        s.pod(&env.ns, &name).filter(|p| {
            p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string()
                && p["metadata"]["deletionTimestamp"].is_null()
        })
    };
    assert!(
        env.srv.wait_until(START, |s| mirror(s).is_some()),
        "{}",
        env.log()
    );
    let m = mirror(&env.srv).unwrap();
    assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");
    let node_uid = env.srv.node(&env.node).unwrap()["metadata"]["uid"].clone();
    assert_eq!(m["metadata"]["ownerReferences"][0]["uid"], node_uid);
    let first_uid = m["metadata"]["uid"].clone();
    env.srv
        .delete(
            &format!("/api/v1/namespaces/{}/pods/{name}", env.ns),
            Some(0),
        )
        .unwrap();
    let back = env.srv.wait_until(START, |s| {
        mirror(s).is_some_and(|p| p["metadata"]["uid"] != first_uid)
    });
    assert!(back, "mirror pod recreated:\n{}", env.log());
    // The static pod runs throughout.
    let t0 = std::time::Instant::now();
    while env.running_ids(&name).is_empty() && t0.elapsed() < START {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ids = env.running_ids(&name);
    env.srv
        .delete(
            &format!("/api/v1/namespaces/{}/pods/{name}", env.ns),
            Some(0),
        )
        .unwrap();
    assert!(env.srv.wait_until(START, |s| mirror(s).is_some()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        env.running_ids(&name),
        ids,
        "deleting the mirror pod has no effect"
    );
    assert_eq!(
        env.running_ids(&name).len(),
        1,
        "{:?}\n{}",
        env.containers(),
        env.log()
    );
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_answers_to_pod_list_watch_and_lease_are_survived_with_bounded_memory() {
    use apiserver::fault::{Fault, Hostile, Matcher, Trigger};
    let Some(mut env) = setup("hostile") else {
        return;
    };
    env.start();
    env.create_pod(env.pod("h", "true"));
    env.wait_ready("h", START);
    let before = env.running_ids("h");
    let pid = env.agent.as_ref().unwrap().id();

    let modes = [
        Hostile::InvalidJson,
        Hostile::WrongTypes,
        Hostile::HugeObject(100 << 20),
        Hostile::EndlessLine,
    ];
    for mode in modes {
        let injected = env.srv.faults().injected();
        // The pod list and watch the agent makes after a reconnect, and its next Lease write.
        for (path, watch) in [
            ("/pods", Some(false)),
            ("/pods", Some(true)),
            ("/leases/", None),
        ] {
            env.srv.faults().add_matching(
                Fault::Hostile(mode),
                Trigger::Next(1),
                Matcher {
                    path_contains: Some(path.into()),
                    watch,
                    ..Default::default()
                },
            );
        }
        env.srv.down();
        env.srv.up().unwrap();
        let t0 = std::time::Instant::now();
        // After the reconnect the agent resumes its pod watch (or lists, if it must) and
        // writes its Lease within one renewal period: two of the three rules fire.
        while env.srv.faults().injected() < injected + 2 && t0.elapsed() < START {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        println!(
            "{mode:?}: {} hostile answer(s) served",
            env.srv.faults().injected() - injected
        );
        assert!(
            env.srv.faults().injected() >= injected + 2,
            "{mode:?} answers were not requested:\n{}",
            env.log()
        );
        env.srv.faults().clear();
        assert!(
            env.agent.as_mut().unwrap().try_wait().unwrap().is_none(),
            "agent exited after {mode:?}:\n{}",
            env.log()
        );
    }
    // A 100 MB object and an endless line never made the agent hold them: at worst one list
    // (16 MiB limit), one watch line (4 MiB) and one object (4 MiB) at once, on top of the
    // agent itself.
    let peak = peak_rss_kib(pid);
    println!(
        "agent peak RSS {} MiB after 100 MB and endless answers",
        peak / 1024
    );
    assert!(peak < 40 * 1024, "peak RSS {peak} KiB");
    // Nothing restarted, and the agent still follows the API: a new pod runs.
    assert_eq!(env.running_ids("h"), before);
    env.create_pod(env.pod("h2", "true"));
    env.wait_ready("h2", START);
    let log = env.log();
    assert!(!log.contains("panicked"), "{log}");
}
