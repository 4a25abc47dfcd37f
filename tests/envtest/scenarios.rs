//! The scenarios, written once against `&dyn Cluster`: TLS bootstrap and Lease, a pod's whole
//! life on containerd with configMap and projected token volumes, NodeRestriction as the node
//! sees it, and an API outage under a running pod. Every wait is bounded; a failure prints the
//! agent's log and the cluster's diagnostics.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use tinylet::api::{Client, ClientConfig, Kubeconfig};

use super::agent::Agent;
use super::apiserver::pki;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::podsync::{mount_config_map, ready};

/// Bound of every "it comes up" wait (CSR, registration, pod start, deletion).
pub const LIMIT: Duration = Duration::from_secs(60);
/// The kubelet-client signer a node's CSR must name.
const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Where the ServiceAccount admission mounts the API access volume.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Prints the agent logs and the cluster's diagnostics if the scenario panics. It copies what
/// it needs so the agent stays free to be mutated; declared after the agent, it drops first.
pub struct OnFailure<'a> {
    cluster: &'a dyn Cluster,
    node: String,
    dir: std::path::PathBuf,
    since: Instant,
}

impl<'a> OnFailure<'a> {
    pub fn new(cluster: &'a dyn Cluster, a: &Agent) -> Self {
        OnFailure {
            cluster,
            node: a.node.clone(),
            dir: a.dir.clone(),
            since: Instant::now(),
        }
    }
}

impl Drop for OnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // Visible with --nocapture: how long the scenario ran once it held the agent lock.
            eprintln!(
                "{} cluster, node {}: scenario took {:?}",
                self.cluster.kind(),
                self.node,
                self.since.elapsed()
            );
            return;
        }
        let mut logs = String::new();
        for n in 1..=4 {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(format!("agent-{n}.log"))) {
                logs.push_str(&format!("--- agent log {n} ---\n{t}\n"));
            }
        }
        eprintln!(
            "=== {} cluster, node {} ===\n{logs}{}",
            self.cluster.kind(),
            self.node,
            self.cluster.diagnostics()
        );
    }
}

/// Polls `f` every 100 ms until it returns Some or `limit` passes.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn condition(obj: &Value, t: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?
        .get("status")?
        .as_str()
        .map(str::to_string)
}

fn lease_path(node: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
}

/// The node Lease's `spec.renewTime` (RFC 3339 with microseconds: ordered as text).
pub fn renew_time(c: &dyn Cluster, node: &str) -> Option<String> {
    c.get_opt(&lease_path(node))?
        .pointer("/spec/renewTime")?
        .as_str()
        .map(str::to_string)
}

/// The subject of a CSR object's `spec.request` (base64 of a PEM CERTIFICATE REQUEST).
fn csr_subject(csr: &Value) -> Option<pki::Subject> {
    let pem = pki::base64_decode(csr.pointer("/spec/request")?.as_str()?)?;
    let der = pki::pem_block(&pem, "CERTIFICATE REQUEST")?;
    pki::csr_subject(&der)
}

/// The pending CSR whose subject names `node`.
fn pending_csr(c: &dyn Cluster, node: &str) -> Option<Value> {
    let list = c
        .get("/apis/certificates.k8s.io/v1/certificatesigningrequests")
        .ok()?;
    let cn = format!("system:node:{node}");
    list["items"].as_array()?.iter().find_map(|csr| {
        let subject = csr_subject(csr)?;
        (subject.common_name.as_deref() == Some(cn.as_str())
            && csr.pointer("/status/certificate").is_none())
        .then(|| csr.clone())
    })
}

/// Starts the agent with its bootstrap kubeconfig, checks the CSR it files, approves and
/// signs it, and waits for the Node to be Ready and its Lease to exist. Returns the Node.
pub fn join(c: &dyn Cluster, a: &mut Agent) -> Value {
    a.start();
    let csr = poll(LIMIT, || pending_csr(c, &a.node)).expect("the node files a CSR");
    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(csr["spec"]["signerName"], KUBELET_SIGNER, "{csr}");
    assert_eq!(
        csr["spec"]["username"],
        format!("system:bootstrap:{}", a.token_id),
        "filed with the bootstrap identity"
    );
    let subject = csr_subject(&csr).unwrap();
    assert_eq!(subject.organizations, ["system:nodes"]);
    let usages: Vec<&str> = csr["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(usages.contains(&"client auth"), "{usages:?}");
    c.approve_and_sign(&name).expect("approve and sign the CSR");

    let node_path = format!("/api/v1/nodes/{}", a.node);
    let registered = c.wait_until(LIMIT, &mut || {
        c.get_opt(&node_path)
            .is_some_and(|n| condition(&n, "Ready").as_deref() == Some("True"))
    });
    assert!(registered, "Node {} registered and Ready", a.node);
    assert!(
        c.wait_until(LIMIT, &mut || renew_time(c, &a.node).is_some()),
        "a Lease for {}",
        a.node
    );
    c.get(&node_path).unwrap()
}

/// (a) TLS bootstrap: CSR through the kubelet-client signer with the node's subject, the
/// certificate stored, Node registered Ready, Lease held and renewed.
pub fn bootstrap(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "bootstrap");
    let _dump = OnFailure::new(c, &a);
    let node = join(c, &mut a);
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], a.node);
    assert!(node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("containerd://")));

    // The node now speaks with its own certificate, written where --kubeconfig points.
    let kc = Kubeconfig::load(&a.kubeconfig, None).expect("the node kubeconfig tinylet wrote");
    assert!(kc.auth.client_cert.is_some() && kc.auth.bearer.is_none());
    assert_eq!(kc.server, c.url());

    let lease = c.get(&lease_path(&a.node)).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], a.node.as_str());
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let first = renew_time(c, &a.node).unwrap();
    assert!(
        c.wait_until(Duration::from_secs(15), &mut || renew_time(c, &a.node)
            .is_some_and(|t| t > first)),
        "renewTime advances past {first}"
    );
}

/// The API access volume the ServiceAccount admission would add, spelled out so both
/// clusters run the very same pod.
pub fn api_access_volume() -> Value {
    json!({"name": "kube-api-access-envtest", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

/// A busybox pod bound to the agent's node that runs `script` with /out on the host.
pub fn pod(a: &Agent, ns: &str, name: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main", "image": a.bed.test_image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script}; sleep 3600 & wait")],
                "volumeMounts": [
                    {"name": "out", "mountPath": "/out"},
                    {"name": "kube-api-access-envtest", "mountPath": SA_DIR, "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "out", "hostPath": {"path": a.out.join(name).display().to_string(),
                                             "type": "DirectoryOrCreate"}},
                api_access_volume(),
            ],
        }
    })
}

pub fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

pub fn wait_ready(c: &dyn Cluster, ns: &str, name: &str) {
    let path = pod_path(ns, name);
    let ok = c.wait_until(LIMIT, &mut || c.get_opt(&path).is_some_and(|p| ready(&p)));
    assert!(
        ok,
        "pod {ns}/{name} Running and Ready; last seen: {}",
        c.get_opt(&path).unwrap_or_default()
    );
}

/// (b) A pod from the API on the real containerd: configMap and projected token volumes,
/// Running and Ready at the server, files visible inside, then deleted: containers stopped,
/// object gone.
pub fn pod_lifecycle(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "pod");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    c.create(
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"greeting": "hello from the API"}}),
    )
    .unwrap();
    join(c, &mut a);

    let mut p = pod(
        &a,
        &ns,
        "web",
        &format!(
            "cat /etc/cfg/greeting > /out/cfg; cat {SA_DIR}/token > /out/token; \
             cat {SA_DIR}/namespace > /out/ns; cat {SA_DIR}/ca.crt > /out/ca"
        ),
    );
    mount_config_map(&mut p, "cfg");
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), p)
        .unwrap();
    wait_ready(c, &ns, "web");

    let st = c.get(&pod_path(&ns, "web")).unwrap()["status"].clone();
    assert_eq!(st["phase"], "Running");
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["ready"], true, "{st}");
    assert_eq!(cs["restartCount"], 0, "{st}");
    assert!(cs["containerID"]
        .as_str()
        .is_some_and(|id| id.starts_with("containerd://")));
    assert_eq!(a.running_ids(&ns, "web").len(), 1, "one running container");

    assert_eq!(a.read_out("web", "cfg", LIMIT), "hello from the API");
    assert_eq!(a.read_out("web", "ns", LIMIT), ns);
    assert_eq!(a.read_out("web", "ca", LIMIT).trim(), c.ca_pem().trim());
    let token = a.read_out("web", "token", LIMIT);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token:?}");

    c.delete(&pod_path(&ns, "web"), None).unwrap();
    let gone = c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "web")).is_none());
    assert!(gone, "pod object removed after the node confirmed the stop");
    assert!(
        a.running_ids(&ns, "web").is_empty(),
        "containers stopped before the object went"
    );
}

/// (c) NodeRestriction from the node's own credentials: its Node is readable, another
/// Node's status may not be patched; and tinylet itself never drew a 403.
pub fn node_restriction(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "restrict");
    let _dump = OnFailure::new(c, &a);
    join(c, &mut a);
    let other = format!("{}-other", a.node);
    c.create(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": other}}),
    )
    .unwrap();

    let creds = Kubeconfig::load(&a.kubeconfig, None).expect("the node kubeconfig tinylet wrote");
    let client = Client::new(&creds, ClientConfig::default()).unwrap();
    let own: Value = client
        .get(&format!("/api/v1/nodes/{}", a.node))
        .expect("a node reads its own Node");
    assert_eq!(own["metadata"]["name"], a.node.as_str());
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
        "reason": "Hijacked", "message": "written by another node"}]}});
    let err = client
        .patch_merge::<_, Value>(&format!("/api/v1/nodes/{other}/status"), &patch)
        .expect_err("patching another node's status must be refused");
    assert_eq!(err.code(), Some(403), "{err}");
    let err = client
        .patch_merge::<_, Value>(
            &format!("/api/v1/nodes/{other}"),
            &json!({"metadata": {"labels": {"stolen": "yes"}}}),
        )
        .expect_err("patching another node must be refused");
    assert_eq!(err.code(), Some(403), "{err}");
    let after = c.get(&format!("/api/v1/nodes/{other}")).unwrap();
    assert!(after["metadata"]["labels"]["stolen"].is_null());
    assert!(condition(&after, "Ready").is_none());

    // Let the agent work a few Lease periods, then look at what it was refused.
    std::thread::sleep(Duration::from_secs(3));
    if let Some(refused) = c.node_forbidden(&a.node) {
        let own_refusals: Vec<&String> = refused.iter().filter(|r| !r.contains(&other)).collect();
        assert!(
            own_refusals.is_empty(),
            "tinylet got 403s: {own_refusals:?}"
        );
    }
}

/// (d) The API goes away for `outage` under a running pod: the container is not restarted,
/// and once the API is back the Lease is renewed again within 30 s.
pub fn outage(c: &dyn Cluster, bed: Bed, outage: Duration) {
    let mut a = Agent::new(bed, c, "outage");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod(&a, &ns, "steady", "true"),
    )
    .unwrap();
    wait_ready(c, &ns, "steady");
    let before = a.running_ids(&ns, "steady");
    assert_eq!(before.len(), 1);

    c.down();
    let t0 = Instant::now();
    while t0.elapsed() < outage {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ids_during = a.running_ids(&ns, "steady");
    c.up();
    let back = Instant::now();
    let last = renew_time(c, &a.node).unwrap_or_default();
    let renewed = poll(Duration::from_secs(30), || {
        renew_time(c, &a.node).filter(|t| *t > last)
    });
    assert!(
        renewed.is_some(),
        "Lease renewed within 30 s of the API coming back (last {last})"
    );
    eprintln!(
        "{} cluster: Lease renewed {:?} after the API came back",
        c.kind(),
        back.elapsed()
    );
    assert!(a.running(), "the agent survived the outage");
    assert_eq!(ids_during, before, "container kept during the outage");
    assert_eq!(a.running_ids(&ns, "steady"), before, "no container restart");
    wait_ready(c, &ns, "steady");
    let st = c.get(&pod_path(&ns, "steady")).unwrap()["status"].clone();
    assert_eq!(st["containerStatuses"][0]["restartCount"], 0, "{st}");
}
