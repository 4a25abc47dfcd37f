//! Updates at the server reach running pods: a configMap and a secret changed, and a label
//! patched, show in the pod's mounted files without a restart of the pod or the agent.
//!
//! The kubelet's rule: configMap, secret, downwardAPI and projected volumes of running pods are
//! rewritten at each pod resync (every `syncFrequency`, default 1 m), the cached object being
//! at most that old (`configMapAndSecretChangeDetectionStrategy`), with the atomic `..data`
//! swap; downward API files follow label and annotation changes the same way. The agent here
//! runs with `syncFrequency: 2s` so the test waits seconds, not a minute.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::json;

use tinylet::k8s::configmap::base64_encode;

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod_path, wait_ready, OnFailure, LIMIT};

/// Bound for an update to reach the files: a few resyncs of 2 s on a loaded machine.
const UPDATE_LIMIT: Duration = Duration::from_secs(45);

/// Reads `file` from the pod's output dir until it equals `want` (trimmed) or the bound passes.
fn wait_out(a: &Agent, pod: &str, file: &str, want: &str) -> Result<(), String> {
    let path = a.out.join(pod).join(file);
    let t0 = std::time::Instant::now();
    let mut last = String::new();
    while t0.elapsed() < UPDATE_LIMIT {
        last = std::fs::read_to_string(&path).unwrap_or_default();
        if last.trim() == want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("{file}: wanted {want:?}, last saw {last:?}"))
}

pub fn updates_reach_running_pods(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "liveupd");
    let _dump = OnFailure::new(c, &a);
    let mut cfg = std::fs::read_to_string(&a.config).unwrap();
    cfg.push_str("syncFrequency: 2s\n");
    std::fs::write(&a.config, cfg).unwrap();
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let secrets = format!("/api/v1/namespaces/{ns}/secrets");
    c.create(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"greeting": "one"}}),
    )
    .unwrap();
    c.create(
        &secrets,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
               "data": {"pw": base64_encode(b"one")}}),
    )
    .unwrap();
    join(c, &mut a);

    let copy =
        |from: &str, to: &str| format!("cat {from} > /out/{to}.t && mv /out/{to}.t /out/{to}");
    let script = format!(
        "trap 'exit 0' TERM; while true; do {}; {}; {}; sleep 0.5; done",
        copy("/etc/cfg/greeting", "cfg"),
        copy("/etc/sec/pw", "sec"),
        copy("/etc/info/labels", "labels"),
    );
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "live", "namespace": ns, "labels": {"app": "v1"}},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "volumeMounts": [
                    {"name": "out", "mountPath": "/out"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sec", "mountPath": "/etc/sec"},
                    {"name": "info", "mountPath": "/etc/info"},
                ],
            }],
            "volumes": [
                {"name": "out", "hostPath": {"path": a.out.join("live").display().to_string(),
                                             "type": "DirectoryOrCreate"}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "sec"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    wait_ready(c, &ns, "live");
    let before = a.running_ids(&ns, "live");
    wait_out(&a, "live", "cfg", "one").unwrap();
    wait_out(&a, "live", "sec", "one").unwrap();
    wait_out(&a, "live", "labels", "app=\"v1\"").unwrap();

    c.merge_patch(&format!("{cms}/cfg"), json!({"data": {"greeting": "two"}}))
        .unwrap();
    c.merge_patch(
        &format!("{secrets}/sec"),
        json!({"data": {"pw": base64_encode(b"two")}}),
    )
    .unwrap();
    c.merge_patch(
        &pod_path(&ns, "live"),
        json!({"metadata": {"labels": {"app": "v2"}}}),
    )
    .unwrap();
    let results = [
        wait_out(&a, "live", "cfg", "two"),
        wait_out(&a, "live", "sec", "two"),
        wait_out(&a, "live", "labels", "app=\"v2\""),
    ];
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "updates did not reach the pod: {failed:?}"
    );
    assert_eq!(
        a.running_ids(&ns, "live"),
        before,
        "no container restart for an update"
    );
    c.delete(&pod_path(&ns, "live"), None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "live")).is_none()));
}
