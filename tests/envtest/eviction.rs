//! Node-pressure eviction against the real control plane: a memory threshold no machine
//! meets (`evictionHard: memory.available: 1000Gi`) puts the node under memory pressure for
//! real, measured from /proc/meminfo. The kubelet's rules: the Node reports MemoryPressure,
//! an API pod is evicted (phase Failed, reason Evicted, a message naming the resource and the
//! threshold) and its containers stopped; a static pod is never evicted.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{condition, join, pod_path, poll, OnFailure, LIMIT};

fn busybox(a: &Agent, ns: &str, name: &str, node: bool) -> Value {
    let mut spec = json!({
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        }],
    });
    if node {
        spec["nodeName"] = json!(a.node);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

pub fn memory_pressure_evicts_api_pods_not_static_ones(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "eviction");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let cfg = std::fs::read_to_string(&a.config).unwrap().replace(
        super::agent::EVICTION_HARD,
        "evictionHard: {memory.available: 1000Gi}\n",
    );
    assert!(cfg.contains("1000Gi"), "{cfg}");
    std::fs::write(&a.config, cfg).unwrap();
    std::fs::write(
        a.manifests.join("keep.json"),
        busybox(&a, &ns, "keep", false).to_string(),
    )
    .unwrap();
    join(c, &mut a);
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        busybox(&a, &ns, "victim", true),
    )
    .unwrap();

    let evicted = poll(Duration::from_secs(90), || {
        let p = c.get_opt(&pod_path(&ns, "victim"))?;
        (p["status"]["reason"] == "Evicted").then_some(p)
    })
    .unwrap_or_else(|| panic!("the API pod was not evicted\nagent log:\n{}", a.log()));
    let st = &evicted["status"];
    assert_eq!(st["phase"], "Failed", "{st}");
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Gi, available: "
        ),
        "{msg}"
    );
    let node = c.get(&format!("/api/v1/nodes/{}", a.node)).unwrap();
    assert_eq!(
        condition(&node, "MemoryPressure").as_deref(),
        Some("True"),
        "{}",
        node["status"]["conditions"]
    );
    // Its container is stopped; the static pod still runs after several eviction rounds.
    let stopped = poll(LIMIT, || {
        a.running_ids(&ns, "victim").is_empty().then_some(())
    });
    assert!(stopped.is_some(), "the evicted pod's container still runs");
    std::thread::sleep(Duration::from_secs(25));
    let keep = format!("keep-{}", a.node);
    assert_eq!(
        a.running_ids(&ns, &keep).len(),
        1,
        "the static pod runs\nagent log:\n{}",
        a.log()
    );
    let mirror = c.get(&pod_path(&ns, &keep)).unwrap();
    assert_ne!(
        mirror["status"]["reason"], "Evicted",
        "{}",
        mirror["status"]
    );
}
