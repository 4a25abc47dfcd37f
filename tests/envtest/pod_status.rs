//! What the API shows about pods and the node must match the kubelet: host IPs, the Node's
//! Hostname address, `tinylet status` with no static pods, init container status, the active
//! deadline and mirror pods. Each scenario reads the status back from the server; every wait
//! is bounded, and a failure prints the agent's log and the cluster's diagnostics.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{condition, join, poll, OnFailure};

/// Bound of every "it comes up" wait.
const LIMIT: Duration = Duration::from_secs(60);

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

/// A busybox container running `script`, then idling until SIGTERM.
fn container(a: &Agent, name: &str, script: &str) -> Value {
    json!({
        "name": name, "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script}; sleep 3600 & wait")],
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    })
}

/// A pod bound to the agent's node, without a service account token, whose containers see
/// the agent's output dir for this pod at /out.
fn pod(a: &Agent, ns: &str, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!(a.node);
    spec["automountServiceAccountToken"] = json!(false);
    spec["terminationGracePeriodSeconds"] = json!(2);
    spec["volumes"] = json!([{"name": "out", "hostPath": {
        "path": a.out.join(name).display().to_string(), "type": "DirectoryOrCreate"}}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": spec})
}

/// Waits until pod `ns/name` satisfies `check`; panics naming `what` with the last object.
fn wait_pod(
    c: &dyn Cluster,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_pod_for(c, ns, name, LIMIT, what, check)
}

fn wait_pod_for(
    c: &dyn Cluster,
    ns: &str,
    name: &str,
    limit: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let path = pod_path(ns, name);
    match poll(limit, || c.get_opt(&path).filter(|p| check(p))) {
        Some(p) => p,
        None => panic!(
            "pod {ns}/{name}: {what}; last seen: {}",
            c.get_opt(&path).unwrap_or_default()
        ),
    }
}

fn cond<'a>(pod: &'a Value, t: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == t))
        .unwrap_or(&Value::Null)
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

/// The Node's addresses of one type.
fn node_addresses(node: &Value, ty: &str) -> Vec<String> {
    node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == ty)
        .filter_map(|a| a["address"].as_str().map(str::to_string))
        .collect()
}

/// Item: hostIP/hostIPs on every pod, node IPs as podIP/podIPs of hostNetwork pods.
/// Upstream (kubelet generateAPIPodStatus): `status.hostIP`/`hostIPs` are the node's IPs (its
/// first InternalIP of each family, primary first) for every pod; a hostNetwork pod, which has
/// no IP of its own, reports those same IPs as `podIP`/`podIPs`.
pub fn host_ips(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "hostips");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let node = join(c, &mut a);
    let internal = node_addresses(&node, "InternalIP");
    let Some(primary) = internal.first().cloned() else {
        panic!("the Node has an InternalIP to compare with: {node}");
    };
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let web = json!({"containers": [container(&a, "main", "true")]});
    c.create(&pods, pod(&a, &ns, "web", web)).unwrap();
    let hn = json!({"hostNetwork": true, "containers": [container(&a, "main", "true")]});
    c.create(&pods, pod(&a, &ns, "hostnet", hn)).unwrap();

    for name in ["web", "hostnet"] {
        let p = wait_pod_for(c, &ns, name, LIMIT, "Running with a hostIP", |p| {
            running(p) && p["status"]["hostIP"].is_string()
        });
        let st = &p["status"];
        assert_eq!(st["hostIP"], primary.as_str(), "{name}: {st}");
        assert_eq!(st["hostIPs"][0]["ip"], primary.as_str(), "{name}: {st}");
        let host_ips: Vec<&str> = st["hostIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["ip"].as_str())
            .collect();
        assert!(
            host_ips.iter().all(|ip| internal.iter().any(|i| i == ip)),
            "{name}: hostIPs {host_ips:?} are the Node's InternalIPs {internal:?}"
        );
    }
    let p = wait_pod_for(c, &ns, "hostnet", LIMIT, "a pod IP", |p| {
        p["status"]["podIP"].is_string()
    });
    let st = &p["status"];
    assert_eq!(st["podIP"], primary.as_str(), "hostNetwork pod: {st}");
    assert_eq!(st["podIPs"], st["hostIPs"], "hostNetwork pod: {st}");
    let web = c.get(&pod_path(&ns, "web")).unwrap();
    assert_ne!(
        web["status"]["podIP"],
        primary.as_str(),
        "a pod with its own network namespace keeps its own IP"
    );
}

/// Item: the Node's Hostname address is `--hostname-override`.
/// Upstream (kubelet node status setter NodeAddress): the Hostname address is the kubelet's
/// hostname, which is `--hostname-override` when given (lowercased), else the machine's.
pub fn hostname_address(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "hostname");
    let _dump = OnFailure::new(c, &a);
    let machine = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    assert_ne!(machine.to_lowercase(), a.node, "the override differs");
    let node = join(c, &mut a);
    assert_eq!(
        node_addresses(&node, "Hostname"),
        [a.node.clone()],
        "{}",
        node["status"]["addresses"]
    );
}

/// Item: `tinylet status` says the boot is complete when there are no static pods (it said
/// "in progress" forever).
pub fn status_boot_without_static_pods(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "bootnone");
    let _dump = OnFailure::new(c, &a);
    join(c, &mut a);
    let socket = a.root.join("tinylet.sock");
    let mut last = String::new();
    let done = poll(Duration::from_secs(20), || {
        let out = std::process::Command::new(&a.bin)
            .arg("status")
            .arg("--status-socket")
            .arg(&socket)
            .output()
            .ok()?;
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        last.lines()
            .next()
            .is_some_and(|l| l.contains("boot complete"))
            .then_some(())
    });
    assert!(done.is_some(), "tinylet status: {last}");
}

/// Item: init container status the kubelet's way.
/// Upstream: the prober manager marks a regular init container that terminated with exit
/// code 0 `ready: true` (its state is terminated, reason Completed); containers the runtime
/// does not know yet wait with reason PodInitializing in a pod with init containers
/// (convertToAPIContainerStatuses); the Initialized condition is False with reason
/// ContainersNotInitialized and the message `containers with incomplete status: [init2]`
/// naming the init containers not complete yet (GeneratePodInitializedCondition).
pub fn init_container_status(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "initst");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let init = |name: &str, script: &str| {
        let mut ct = container(&a, name, script);
        ct["command"] = json!(["sh", "-c", script]);
        ct
    };
    let spec = json!({
        "restartPolicy": "Never",
        "initContainers": [
            init("init1", "true"),
            init("init2", "while [ ! -e /out/go ]; do sleep 0.2; done"),
        ],
        "containers": [container(&a, "app", "true")],
    });
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod(&a, &ns, "inits", spec),
    )
    .unwrap();
    let p = wait_pod_for(c, &ns, "inits", LIMIT, "init2 running", |p| {
        p["status"]["initContainerStatuses"][1]["state"]["running"].is_object()
            && p["status"]["initContainerStatuses"][0]["state"]["terminated"].is_object()
    });
    let st = &p["status"];
    let i1 = &st["initContainerStatuses"][0];
    assert_eq!(i1["name"], "init1");
    assert_eq!(
        i1["ready"], true,
        "a finished init container is ready: {i1}"
    );
    assert_eq!(i1["state"]["terminated"]["reason"], "Completed", "{i1}");
    assert_eq!(i1["state"]["terminated"]["exitCode"], 0, "{i1}");
    let i2 = &st["initContainerStatuses"][1];
    assert_eq!(i2["ready"], false, "{i2}");
    let app = &st["containerStatuses"][0];
    assert_eq!(
        app["state"]["waiting"]["reason"], "PodInitializing",
        "{app}"
    );
    assert_eq!(st["phase"], "Pending");
    let ini = cond(&p, "Initialized");
    assert_eq!(ini["status"], "False", "{ini}");
    assert_eq!(ini["reason"], "ContainersNotInitialized", "{ini}");
    assert_eq!(
        ini["message"], "containers with incomplete status: [init2]",
        "{ini}"
    );

    std::fs::write(a.out.join("inits").join("go"), "").unwrap();
    let p = wait_pod_for(c, &ns, "inits", LIMIT, "initialized and running", |p| {
        running(p) && condition(p, "Initialized").as_deref() == Some("True")
    });
    let st = &p["status"];
    for (i, s) in st["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        assert_eq!(s["ready"], true, "init container {i}: {s}");
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    assert!(cond(&p, "Initialized").get("message").is_none());
}

/// Item: activeDeadlineSeconds, at creation and patched in later.
/// Upstream (kubelet active_deadline.go): once `now - status.startTime >=
/// activeDeadlineSeconds`, the pod is evicted: phase Failed, reason DeadlineExceeded, message
/// "Pod was active on the node longer than the specified deadline"; its containers are
/// killed and, being terminal, it is never restarted.
pub fn active_deadline(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "deadline");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let spec = json!({"activeDeadlineSeconds": 6, "containers": [container(&a, "main", "true")]});
    c.create(&pods, pod(&a, &ns, "limited", spec)).unwrap();
    let spec = json!({"containers": [container(&a, "main", "true")]});
    c.create(&pods, pod(&a, &ns, "patched", spec)).unwrap();
    wait_pod(c, &ns, "patched", "Running", running);
    // A deadline patched in later counts from the pod's start.
    c.merge_patch(
        &pod_path(&ns, "patched"),
        json!({"spec": {"activeDeadlineSeconds": 3}}),
    )
    .unwrap();

    for name in ["limited", "patched"] {
        let p = wait_pod(c, &ns, name, "Failed", |p| p["status"]["phase"] == "Failed");
        let st = &p["status"];
        assert_eq!(st["reason"], "DeadlineExceeded", "{name}: {st}");
        assert_eq!(
            st["message"], "Pod was active on the node longer than the specified deadline",
            "{name}: {st}"
        );
        let stopped = poll(LIMIT, || a.running_ids(&ns, name).is_empty().then_some(()));
        assert!(stopped.is_some(), "{name}: containers stopped");
        wait_pod(c, &ns, name, "container reported terminated", |p| {
            p["status"]["containerStatuses"][0]["state"]["terminated"].is_object()
        });
    }
    // Not restarted: a few relist periods later still Failed, nothing running, no restart.
    std::thread::sleep(Duration::from_secs(5));
    for name in ["limited", "patched"] {
        let p = c.get(&pod_path(&ns, name)).unwrap();
        assert_eq!(p["status"]["phase"], "Failed", "{name}: {p}");
        assert_eq!(
            p["status"]["containerStatuses"][0]["restartCount"], 0,
            "{name}: {p}"
        );
        assert!(a.running_ids(&ns, name).is_empty(), "{name} stays stopped");
    }
}

/// Item: mirror pods show their static pod's status, and a deleted mirror comes back.
/// Upstream: the kubelet's status manager writes a static pod's status onto its mirror pod
/// (phase, conditions, podIP, container statuses), and a sync that finds the mirror pod
/// missing or being deleted deletes it for good and creates it anew.
pub fn mirror_pods(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "mirror");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            }],
        },
    });
    std::fs::write(a.manifests.join("web.json"), manifest.to_string()).unwrap();
    join(c, &mut a);
    let name = format!("web-{}", a.node);

    let status_reported = |p: &Value| {
        running(p)
            && condition(p, "Ready").as_deref() == Some("True")
            && p["status"]["podIP"].is_string()
            && p["status"]["containerStatuses"][0]["ready"] == true
    };
    let first = wait_pod_for(c, &ns, &name, LIMIT, "mirror shows Running/Ready", |p| {
        status_reported(p)
    });
    let st = &first["status"];
    assert!(
        st["containerStatuses"][0]["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("containerd://")),
        "{st}"
    );
    assert!(st["hostIP"].is_string(), "{st}");
    let uid = first["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let running_before = a.running_ids(&ns, &name);
    assert_eq!(running_before.len(), 1, "the static pod runs");

    // An ordinary (graceful) delete of the mirror: it is replaced promptly, and the new one
    // shows the status too; the static pod itself is untouched.
    c.delete(&pod_path(&ns, &name), None).unwrap();
    let second = wait_pod_for(
        c,
        &ns,
        &name,
        Duration::from_secs(30),
        "a new mirror pod with the status",
        |p| {
            p["metadata"]["uid"].as_str().is_some_and(|u| u != uid)
                && p["metadata"]["deletionTimestamp"].is_null()
                && status_reported(p)
        },
    );
    assert_eq!(
        second["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        first["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    );
    assert_eq!(
        a.running_ids(&ns, &name),
        running_before,
        "deleting the mirror does not restart the static pod"
    );
}
