//! Events and container states as a cluster operator sees them (`kubectl describe pod`):
//! repeated events are one object whose count grows, probe failures and kills say why,
//! waiting reasons follow the kubelet (ErrImagePull then ImagePullBackOff,
//! CreateContainerConfigError, ContainerCreating with FailedMount), and a restarted
//! container's lastState is complete. Written against `&dyn Cluster`; registered for the real
//! kube-apiserver. Every wait is bounded.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod_path, poll, OnFailure, LIMIT};

/// A busybox pod bound to the agent's node, without the API access volume (these pods need
/// none), running `script`.
fn pod(a: &Agent, name: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            }],
        }
    })
}

/// The Events of pod `name` with `reason`, as the server holds them.
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

fn container_status(c: &dyn Cluster, ns: &str, name: &str) -> Value {
    c.get_opt(&pod_path(ns, name))
        .and_then(|p| p.pointer("/status/containerStatuses/0").cloned())
        .unwrap_or(Value::Null)
}

fn waiting_reason(cs: &Value) -> Option<String> {
    cs.pointer("/state/waiting/reason")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn describe(c: &dyn Cluster, ns: &str, name: &str) -> String {
    let pod = c.get_opt(&pod_path(ns, name)).unwrap_or_default();
    let evs = c
        .get_opt(&format!("/api/v1/namespaces/{ns}/events"))
        .unwrap_or_default();
    format!("pod: {}\nevents: {}", pod["status"], evs["items"])
}

/// (start, finish) of the instance `attempt` of pod `name`'s container, from the runtime.
fn instance_times(a: &Agent, ns: &str, name: &str, attempt: u32) -> Option<(i64, i64)> {
    let id = a
        .containers(ns)
        .into_iter()
        .find(|(_, p, _, at)| p == name && *at == attempt)?
        .0;
    let client = a.bed.client();
    let st = smol::block_on(client.container_status(&id, false)).ok()?;
    let st = st.status?;
    Some((st.started_at, st.finished_at))
}

fn rfc3339_secs(t: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SSZ → seconds since the epoch (UTC, proleptic Gregorian).
    let b = t.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d - 719_469;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A container that exits at once, restarting under the kubelet's back-off.
///
/// Upstream rules checked:
/// - client-go's event correlator (tools/record/events_cache.go) folds identical events
///   (same object, field path, type, reason, message) into ONE Event object, PATCHed with a
///   growing `count` and a moving `lastTimestamp`; the kubelet's BackOff message
///   "Back-off restarting failed container NAME in pod POD_NS(UID)" is the same every time.
/// - The kubelet's restart back-off (flowcontrol.Backoff: 10 s doubling to 5 min) restarts a
///   fresh crash at once only the first time; the next restart waits 10 s after the exit.
/// - `lastState.terminated` of a restarted container carries startedAt, finishedAt, exitCode
///   and reason of the previous instance (a null startedAt reads as year 1 in kubectl).
pub fn crash_loop(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "crashloop");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod(&a, "crash", "echo bye; exit 3"),
    )
    .unwrap();

    // Two back-offs (after the 2nd and 3rd exit: ~1 s and ~11 s in) → count 2 on one object.
    let grown = poll(Duration::from_secs(90), || {
        let ev = events(c, &ns, "crash", "BackOff");
        ev.iter()
            .any(|e| e["count"].as_i64().unwrap_or(0) >= 2)
            .then_some(ev)
    });
    let ev = grown.unwrap_or_else(|| {
        panic!(
            "one BackOff event whose count reaches 2; {}",
            describe(c, &ns, "crash")
        )
    });
    assert_eq!(ev.len(), 1, "one object, counted up: {ev:?}");
    let e = &ev[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["source"]["component"], "kubelet");
    assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{main}");
    let uid = c.get(&pod_path(&ns, "crash")).unwrap()["metadata"]["uid"].clone();
    assert_eq!(
        e["message"],
        format!(
            "Back-off restarting failed container main in pod crash_{ns}({})",
            uid.as_str().unwrap_or_default()
        )
    );
    assert!(
        e["lastTimestamp"].as_str() > e["firstTimestamp"].as_str(),
        "lastTimestamp moved: {e}"
    );

    // lastState.terminated complete once restarted.
    let cs = poll(LIMIT, || {
        let cs = container_status(c, &ns, "crash");
        (cs["restartCount"].as_i64().unwrap_or(0) >= 1
            && cs.pointer("/lastState/terminated").is_some())
        .then_some(cs)
    })
    .expect("a restarted container with lastState.terminated");
    let last = &cs["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 3, "{cs}");
    assert_eq!(last["reason"], "Error", "{cs}");
    let started = last["startedAt"].as_str().and_then(rfc3339_secs);
    let finished = last["finishedAt"].as_str().and_then(rfc3339_secs);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    assert!(
        started.is_some_and(|s| now - s < 3600),
        "lastState.terminated.startedAt is a recent time: {cs}"
    );
    assert!(started <= finished, "started before it finished: {cs}");
    assert!(
        last["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("containerd://")),
        "{cs}"
    );

    // No burst: the instance after the first restart starts no sooner than 10 s after the
    // previous one exited (times as the runtime recorded them).
    let gap = poll(Duration::from_secs(60), || {
        let (_, finished1) = instance_times(&a, &ns, "crash", 1)?;
        let (started2, _) = instance_times(&a, &ns, "crash", 2)?;
        (finished1 > 0 && started2 > 0).then_some(started2 - finished1)
    })
    .expect("the third instance starts");
    assert!(
        gap >= Duration::from_secs(9).as_nanos() as i64,
        "second restart {} ms after the exit; the kubelet waits 10 s",
        gap / 1_000_000
    );
}

/// An exec liveness probe that fails.
///
/// Upstream rules checked (prober.go, kuberuntime_manager.go): each failure is Warning
/// Unhealthy "Liveness probe failed: <the command's output>"; the kill after
/// failureThreshold failures is Normal Killing "Container NAME failed liveness probe, will be
/// restarted"; repeats are counted on one object each.
pub fn liveness_failure(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "liveness");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let mut p = pod(&a, "sick", "trap 'exit 0' TERM; sleep 3600 & wait");
    p["spec"]["containers"][0]["livenessProbe"] = json!({
        "exec": {"command": ["sh", "-c", "echo not feeling well; exit 1"]},
        "periodSeconds": 1, "failureThreshold": 2,
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), p)
        .unwrap();

    let killing = poll(Duration::from_secs(90), || {
        let k = events(c, &ns, "sick", "Killing");
        (!k.is_empty()).then_some(k)
    })
    .unwrap_or_else(|| panic!("a Killing event; {}", describe(c, &ns, "sick")));
    assert_eq!(killing[0]["type"], "Normal");
    assert_eq!(
        killing[0]["message"],
        "Container main failed liveness probe, will be restarted"
    );
    let unhealthy = poll(LIMIT, || {
        let u = events(c, &ns, "sick", "Unhealthy");
        u.iter()
            .any(|e| e["count"].as_i64().unwrap_or(0) >= 2)
            .then_some(u)
    })
    .unwrap_or_else(|| panic!("Unhealthy counted up; {}", describe(c, &ns, "sick")));
    assert_eq!(unhealthy.len(), 1, "one object: {unhealthy:?}");
    assert_eq!(unhealthy[0]["type"], "Warning");
    assert_eq!(
        unhealthy[0]["message"]
            .as_str()
            .map(|m| m.trim_end().to_string()),
        Some("Liveness probe failed: not feeling well".to_string()),
        "{unhealthy:?}"
    );
}

/// Pods that cannot start, each for its own reason.
///
/// Upstream rules checked:
/// - images/image_manager.go + the pod worker's back-off: a failed pull is ErrImagePull with
///   the pull error as message (events Failed "Failed to pull image \"IMG\": ..."), and a
///   later sync within the back-off shows ImagePullBackOff "Back-off pulling image \"IMG\""
///   (event BackOff with that text).
/// - kubelet_pods.go makeEnvironmentVariables: an env key missing from its configMap is
///   CreateContainerConfigError "couldn't find key K in ConfigMap NS/NAME" (event Failed
///   "Error: ..."); a configMap that does not exist, its manager's `configmap "NAME" not
///   found`.
/// - the volume manager: a configMap volume whose configMap is missing keeps the containers
///   ContainerCreating and raises FailedMount "MountVolume.SetUp failed for volume \"V\" :
///   configmap \"C\" not found".
pub fn waiting_reasons(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "waiting");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    c.create(
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"present": "yes"}}),
    )
    .unwrap();
    join(c, &mut a);
    let pods = format!("/api/v1/namespaces/{ns}/pods");

    // A missing image at the test bed's loopback registry.
    let image = format!("{}/tinylet/does-not-exist:1", a.bed.registry);
    let mut p = pod(&a, "noimage", "true");
    p["spec"]["containers"][0]["image"] = json!(image);
    c.create(&pods, p).unwrap();
    // A missing configMap key in env.
    let mut p = pod(&a, "nokey", "sleep 3600");
    p["spec"]["containers"][0]["env"] = json!([{"name": "X", "valueFrom":
        {"configMapKeyRef": {"name": "cfg", "key": "absent"}}}]);
    c.create(&pods, p).unwrap();
    // An env configMap that does not exist at all.
    let mut p = pod(&a, "nocm", "sleep 3600");
    p["spec"]["containers"][0]["env"] = json!([{"name": "X", "valueFrom":
        {"configMapKeyRef": {"name": "absent-cm", "key": "k"}}}]);
    c.create(&pods, p).unwrap();
    // A configMap volume whose configMap does not exist.
    let mut p = pod(&a, "novolume", "sleep 3600");
    p["spec"]["volumes"] = json!([{"name": "settings", "configMap": {"name": "missing"}}]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "settings", "mountPath": "/etc/settings"}]);
    c.create(&pods, p).unwrap();

    // ErrImagePull first, with the pull error; ImagePullBackOff later.
    let mut seen: Vec<String> = Vec::new();
    let mut err_message = String::new();
    let both = poll(Duration::from_secs(90), || {
        let cs = container_status(c, &ns, "noimage");
        if let Some(r) = waiting_reason(&cs) {
            if seen.last() != Some(&r) {
                if r == "ErrImagePull" && err_message.is_empty() {
                    err_message = cs["state"]["waiting"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
                seen.push(r);
            }
        }
        let first = seen.iter().position(|r| r == "ErrImagePull");
        let later = seen.iter().rposition(|r| r == "ImagePullBackOff");
        matches!((first, later), (Some(f), Some(l)) if f < l).then_some(cs)
    });
    let cs = both.unwrap_or_else(|| {
        panic!(
            "ErrImagePull, then ImagePullBackOff; seen {seen:?}; {}",
            describe(c, &ns, "noimage")
        )
    });
    assert!(!err_message.is_empty(), "ErrImagePull says why");
    assert_eq!(
        cs["state"]["waiting"]["message"],
        format!("Back-off pulling image \"{image}\"")
    );
    let failed = events(c, &ns, "noimage", "Failed");
    let prefix = format!("Failed to pull image \"{image}\": ");
    assert!(
        failed.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&prefix))),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|e| e["message"] == "Error: ErrImagePull"),
        "{failed:?}"
    );
    let backoff = events(c, &ns, "noimage", "BackOff");
    assert!(
        backoff
            .iter()
            .any(|e| e["message"] == format!("Back-off pulling image \"{image}\"")),
        "{backoff:?}"
    );

    // CreateContainerConfigError in the kubelet's words.
    let want = format!("couldn't find key absent in ConfigMap {ns}/cfg");
    let cs = poll(LIMIT, || {
        let cs = container_status(c, &ns, "nokey");
        (waiting_reason(&cs).as_deref() == Some("CreateContainerConfigError")).then_some(cs)
    })
    .unwrap_or_else(|| panic!("CreateContainerConfigError; {}", describe(c, &ns, "nokey")));
    assert_eq!(cs["state"]["waiting"]["message"], want.as_str(), "{cs}");
    let failed = events(c, &ns, "nokey", "Failed");
    assert!(
        failed
            .iter()
            .any(|e| e["message"] == format!("Error: {want}")),
        "{failed:?}"
    );

    let cs = poll(LIMIT, || {
        let cs = container_status(c, &ns, "nocm");
        (waiting_reason(&cs).as_deref() == Some("CreateContainerConfigError")).then_some(cs)
    })
    .unwrap_or_else(|| panic!("CreateContainerConfigError; {}", describe(c, &ns, "nocm")));
    assert_eq!(
        cs["state"]["waiting"]["message"], "configmap \"absent-cm\" not found",
        "{cs}"
    );

    // ContainerCreating + FailedMount.
    let want = "MountVolume.SetUp failed for volume \"settings\" : configmap \"missing\" not found";
    let mount = poll(LIMIT, || {
        let ev = events(c, &ns, "novolume", "FailedMount");
        (!ev.is_empty()).then_some(ev)
    })
    .unwrap_or_else(|| panic!("a FailedMount event; {}", describe(c, &ns, "novolume")));
    assert_eq!(mount[0]["type"], "Warning");
    assert_eq!(mount[0]["message"], want, "{mount:?}");
    let cs = container_status(c, &ns, "novolume");
    assert_eq!(
        waiting_reason(&cs).as_deref(),
        Some("ContainerCreating"),
        "{cs}"
    );
    assert!(
        events(c, &ns, "novolume", "FailedCreatePodSandBox").is_empty(),
        "a missing volume is not a sandbox failure"
    );
}
