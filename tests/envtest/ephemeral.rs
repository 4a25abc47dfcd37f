//! An ephemeral container (`kubectl debug`) added to a running pod through the
//! `ephemeralcontainers` subresource runs in the pod's sandbox and is reported.
//!
//! The kubelet's rules: ephemeral containers are started in the pod's existing sandbox, with no
//! restart of the pod or its app containers (they are not part of the pod's hash); they may
//! mount the pod's existing volumes; they are never restarted; their status is reported under
//! `status.ephemeralContainerStatuses` (not ready, restart count 0).
#![allow(dead_code)]

use serde_json::{json, Value};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod_path, wait_ready, OnFailure, LIMIT};

fn ephemeral_status(pod: &Value) -> Option<Value> {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "debugger")
        .cloned()
}

pub fn ephemeral_container_runs_in_the_pod(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "ephem");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let out = a.out.join("dbg").display().to_string();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dbg", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.5; done"],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [
                {"name": "out", "hostPath": {"path": out, "type": "DirectoryOrCreate"}},
            ],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    wait_ready(c, &ns, "dbg");
    let before = a.running_ids(&ns, "dbg");
    assert_eq!(before.len(), 1, "one app container runs: {before:?}");

    // What `kubectl debug` sends: the pod's ephemeralContainers through the subresource.
    let path = pod_path(&ns, "dbg");
    c.merge_patch(
        &format!("{path}/ephemeralcontainers"),
        json!({"spec": {"ephemeralContainers": [{
            "name": "debugger", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "echo debugged > /out/dbg.t && mv /out/dbg.t /out/dbg"],
            "volumeMounts": [{"name": "out", "mountPath": "/out"}],
        }]}}),
    )
    .unwrap();

    assert_eq!(a.read_out("dbg", "dbg", LIMIT).trim(), "debugged");
    let mut last = Value::Null;
    let done = c.wait_until(LIMIT, &mut || {
        last = c.get_opt(&path).unwrap_or(Value::Null);
        ephemeral_status(&last).is_some_and(|s| s["state"]["terminated"].is_object())
    });
    assert!(done, "ephemeral container not reported terminated: {last}");
    let st = ephemeral_status(&last).unwrap_or(Value::Null);
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
    assert_eq!(st["ready"], false, "{st}");
    assert_eq!(st["restartCount"], 0, "{st}");
    assert!(st["image"].as_str().is_some_and(|s| !s.is_empty()), "{st}");
    assert!(
        st["imageID"].as_str().is_some_and(|s| !s.is_empty()),
        "{st}"
    );
    assert!(
        st["containerID"]
            .as_str()
            .is_some_and(|s| s.contains("://")),
        "{st}"
    );

    // The pod was not touched: same app container, no restart, still ready.
    assert_eq!(a.running_ids(&ns, "dbg"), before, "app container kept");
    assert_eq!(last["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(last["status"]["phase"], "Running");
    // An exited ephemeral container is not started again.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let again = c.get_opt(&path).unwrap_or(Value::Null);
    let st2 = ephemeral_status(&again).unwrap_or(Value::Null);
    assert_eq!(st2["containerID"], st["containerID"], "{st2}");
    assert!(st2["state"]["terminated"].is_object(), "{st2}");

    c.delete(&path, None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&path).is_none()));
}
