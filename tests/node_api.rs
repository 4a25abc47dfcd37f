//! The node side against the project's API test server (tests/apiserver): TLS bootstrap
//! through a CSR, registration, NodeRestriction, Lease renewal, outage and catch-up, and the
//! refusal of a kubeconfig without a CA. Cadences are shortened; every wait is bounded.

#[path = "apiserver/mod.rs"]
mod apiserver;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use tinylet::api::backoff::BackoffConfig;
use tinylet::api::{Auth, Bearer, ClientConfig, ClusterConfig, Kubeconfig};
use tinylet::config::AgentConfig;
use tinylet::k8s::configmap::base64_encode;
use tinylet::node::bootstrap::{self, BootstrapOptions};
use tinylet::node::heartbeat::Cadence;
use tinylet::node::host::HostInfo;
use tinylet::node::register::NodeSettings;
use tinylet::node::x509::{first_certificate, pem_encode, GeneratedKey};
use tinylet::node::{self, Credentials, NodeError, NodeOptions};

/// A directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("tinylet-node-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fast_cadence() -> Cadence {
    Cadence {
        lease_duration: Duration::from_secs(4),
        renew_interval: Duration::from_millis(300),
        status_compute: Duration::from_millis(300),
        status_report: Duration::from_secs(60),
        ..Cadence::default()
    }
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(100),
        cap: Duration::from_millis(800),
        ..BackoffConfig::default()
    }
}

fn fixed_host() -> HostInfo {
    HostInfo {
        hostname: "edge-host".into(),
        cpus: 4,
        memory_total: 4 << 30,
        memory_available: 3 << 30,
        disk_total: 32 << 30,
        disk_available: 20 << 30,
        pid_max: 32768,
        pids_running: 200,
        kernel_version: "6.6.0-test".into(),
        os_image: "Test Linux".into(),
        architecture: "arm64".into(),
        machine_id: "mid".into(),
        boot_id: "bid".into(),
    }
}

fn options(cfg: &AgentConfig, name: &str) -> NodeOptions {
    NodeOptions {
        settings: NodeSettings::from_config(cfg, name, "containerd://1.6.20"),
        cadence: fast_cadence(),
        backoff: fast_backoff(),
        client: ClientConfig {
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(3),
            ..ClientConfig::default()
        },
        host: Box::new(fixed_host),
        seed: name.len() as u64 + 7,
        bootstrap: BootstrapOptions {
            approval_timeout: Duration::from_secs(20),
            poll_initial: Duration::from_millis(50),
            poll_max: Duration::from_millis(500),
            expiration: None,
        },
    }
}

fn node_cluster(srv: &apiserver::ApiServer, node: &str) -> ClusterConfig {
    let creds = srv.node_cert(node).unwrap();
    ClusterConfig {
        server: srv.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    }
}

fn agent_config(dir: &Path) -> AgentConfig {
    let mut cfg = AgentConfig {
        root_dir: dir.to_path_buf(),
        kubeconfig: Some(dir.join("kubelet.conf")),
        bootstrap_kubeconfig: Some(dir.join("bootstrap.conf")),
        cert_dir: Some(dir.join("pki")),
        node_ips: vec!["192.0.2.10".parse().unwrap()],
        ..AgentConfig::default()
    };
    cfg.node_labels
        .insert("tinylet.io/board".into(), "raspberry-pi-4".into());
    cfg.register_with_taints.push(tinylet::config::Taint {
        key: "edge.tinylet.io/flaky-link".into(),
        value: "true".into(),
        effect: "PreferNoSchedule".into(),
    });
    cfg
}

fn write_bootstrap_kubeconfig(path: &Path, server: &str, ca_pem: &str, token: &str) {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: boot\nclusters:\n- name: k\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: boot\n  context: {{cluster: k, user: b}}\nusers:\n- name: b\n  user:\n    token: {token}\n",
        base64_encode(ca_pem.as_bytes())
    );
    std::fs::write(path, text).unwrap();
}

fn renew_time(srv: &apiserver::ApiServer, node: &str) -> Option<String> {
    srv.lease(node)?
        .pointer("/spec/renewTime")?
        .as_str()
        .map(str::to_string)
}

fn condition(node: &Value, t: &str) -> Option<String> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)?
        .get("status")?
        .as_str()
        .map(str::to_string)
}

#[test]
fn bootstrap_csr_approved_node_registered_and_ready() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let tmp = TempDir::new("boot");
    let cfg = agent_config(tmp.path());
    let token = srv.add_bootstrap_token("abcdef", "0123456789abcdef");
    write_bootstrap_kubeconfig(
        cfg.bootstrap_kubeconfig.as_deref().unwrap(),
        &srv.url(),
        srv.ca_pem(),
        &token,
    );

    let mut h = node::start_with(
        options(&cfg, "edge-1"),
        Credentials::FromConfig(Box::new(cfg.clone())),
    )
    .unwrap();
    let uid = h.wait_registered(Duration::from_secs(30));
    assert!(uid.is_some(), "not registered: {:?}", h.state());
    assert_eq!(h.name(), "edge-1");

    // The CSR went through the kubelet-client signer, from the bootstrap identity.
    assert_eq!(
        srv.stats()
            .count("create", "certificatesigningrequests.certificates.k8s.io"),
        1
    );
    // Files: one 0600 PEM with cert and key, the CA, and a kubeconfig that uses them.
    use std::os::unix::fs::PermissionsExt;
    let pem_path = cfg.cert_dir().join(bootstrap::CLIENT_PEM);
    let mode = std::fs::metadata(&pem_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read(&pem_path).unwrap();
    let info = first_certificate(&pem).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("system:node:edge-1"));
    assert_eq!(info.organizations, vec!["system:nodes".to_string()]);
    let kc = Kubeconfig::load(cfg.kubeconfig.as_deref().unwrap(), None).unwrap();
    assert!(kc.auth.client_cert.is_some() && kc.auth.bearer.is_none());
    assert_eq!(h.cluster().unwrap().server, srv.url());
    assert_eq!(
        h.wait_credentials(Duration::from_secs(1)).unwrap().auth,
        kc.auth
    );

    // The Node as the server holds it: Ready, labels, taints, resources, addresses, info.
    assert!(srv.wait_until(Duration::from_secs(10), |s| s
        .node("edge-1")
        .is_some_and(|n| condition(&n, "Ready").as_deref() == Some("True"))));
    let n = srv.node("edge-1").unwrap();
    assert_eq!(n["metadata"]["uid"].as_str(), uid.as_deref());
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/arch"], "arm64");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
    assert_eq!(labels["tinylet.io/board"], "raspberry-pi-4");
    assert_eq!(n["spec"]["taints"][0]["key"], "edge.tinylet.io/flaky-link");
    assert_eq!(n["status"]["capacity"]["cpu"], "4");
    assert_eq!(n["status"]["allocatable"]["pods"], "110");
    assert_eq!(n["status"]["addresses"][0]["address"], "192.0.2.10");
    assert_eq!(
        n["status"]["nodeInfo"]["containerRuntimeVersion"],
        "containerd://1.6.20"
    );
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&n, c).as_deref(), Some("False"), "{c}");
    }
    // The Lease exists, held by the node, owned by the Node.
    assert!(
        srv.wait_until(Duration::from_secs(10), |s| renew_time(s, "edge-1")
            .is_some())
    );
    let lease = srv.lease("edge-1").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "edge-1");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"].as_str(),
        uid.as_deref()
    );
    h.stop();

    // Restart with the stored certificate: no new CSR.
    let again = bootstrap::ensure_credentials(&cfg, "edge-1").unwrap();
    assert!(again.auth.client_cert.is_some());
    assert_eq!(
        srv.stats()
            .count("create", "certificatesigningrequests.certificates.k8s.io"),
        1
    );

    // Rotation as the node itself: a new CSR, approved, the files replaced.
    let client = tinylet::api::Client::new(&again, ClientConfig::default()).unwrap();
    let rotated = bootstrap::request_certificate(
        &client,
        &again,
        &cfg,
        "edge-1",
        &BootstrapOptions::default(),
        &|| false,
    )
    .unwrap();
    assert_eq!(rotated.common_name.as_deref(), Some("system:node:edge-1"));
    assert_ne!(std::fs::read(&pem_path).unwrap(), pem);
    assert_eq!(
        srv.stats()
            .count("create", "certificatesigningrequests.certificates.k8s.io"),
        2
    );
}

#[test]
fn hand_built_csr_verifies_with_openssl() {
    let tmp = TempDir::new("openssl");
    let key = GeneratedKey::generate().unwrap();
    let der = key
        .certificate_request("system:node:pi-7", &["system:nodes"])
        .unwrap();
    let f = tmp.path().join("r.csr");
    std::fs::write(&f, pem_encode("CERTIFICATE REQUEST", &der)).unwrap();
    let out = Command::new("openssl")
        .args(["req", "-in"])
        .arg(&f)
        .args(["-noout", "-verify", "-subject", "-nameopt", "RFC2253"])
        .output()
        .expect("the openssl CLI must be installed");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("verify OK") || all.contains("Certificate request self-signature verify OK"),
        "{all}"
    );
    assert!(all.contains("CN=system:node:pi-7,O=system:nodes"), "{all}");

    // A corrupted signature must fail verification (the check is real).
    let mut bad = der.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x55;
    std::fs::write(&f, pem_encode("CERTIFICATE REQUEST", &bad)).unwrap();
    let out = Command::new("openssl")
        .args(["req", "-in"])
        .arg(&f)
        .args(["-noout", "-verify"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() || text.contains("failure"), "{text}");
}

#[test]
fn registering_another_nodes_name_is_refused() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let tmp = TempDir::new("other");
    let cfg = agent_config(tmp.path());
    // Credentials of n1, registering as n2.
    let mut h = node::start_with(
        options(&cfg, "n2"),
        Credentials::Ready(node_cluster(&srv, "n1")),
    )
    .unwrap();
    assert_eq!(h.wait_registered(Duration::from_secs(2)), None);
    let st = h.state();
    assert!(st.failures >= 1, "{st:?}");
    let err = st.last_error.unwrap_or_default();
    assert!(err.contains("403"), "{err}");
    assert!(srv.node("n2").is_none());
    h.stop();
}

#[test]
fn lease_renewed_and_status_patched_only_on_change() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let tmp = TempDir::new("lease");
    let cfg = agent_config(tmp.path());
    let mut h = node::start_with(
        options(&cfg, "n3"),
        Credentials::Ready(node_cluster(&srv, "n3")),
    )
    .unwrap();
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());
    assert!(srv.wait_until(Duration::from_secs(5), |s| renew_time(s, "n3").is_some()));
    let first = renew_time(&srv, "n3").unwrap();
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| renew_time(s, "n3")
            .is_some_and(|t| t > first))
    );
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = h.state();
    assert!(st.lease_renewals >= 5, "{st:?}");
    // Unchanged status: only the report right after registration.
    assert_eq!(srv.stats().count("patch", "nodes/status"), 1);
    assert_eq!(srv.stats().count("get", "nodes/status"), 0);
    // Lease writes are merge patches guarded by the cached resourceVersion after the create.
    assert_eq!(srv.stats().count("create", "leases.coordination.k8s.io"), 1);
    assert!(srv.stats().count("patch", "leases.coordination.k8s.io") >= 4);
    // After the first renewal's managedFields reset, the node's entry covers renewTime only
    // (the answer to every renewal stays small).
    let lease = srv
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n3")
        .unwrap();
    let entries = lease["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{lease}");
    assert_eq!(
        entries[0]["fieldsV1"],
        serde_json::json!({"f:spec": {"f:renewTime": {}}}),
        "{lease}"
    );

    // Someone else writes the Lease: the cached resourceVersion is stale, the next patch gets
    // 409, the node reads it again and renews.
    let gets = srv.stats().count("get", "leases.coordination.k8s.io");
    srv.merge_patch(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n3",
        serde_json::json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .unwrap();
    let touched = renew_time(&srv, "n3").unwrap();
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| renew_time(s, "n3")
            .is_some_and(|t| t > touched))
    );
    assert_eq!(
        srv.stats().count("get", "leases.coordination.k8s.io"),
        gets + 1
    );
    assert!(h.state().last_error.is_none(), "{:?}", h.state());
    h.stop();
}

#[test]
fn api_down_no_panic_and_lease_and_status_catch_up() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let tmp = TempDir::new("down");
    let cfg = agent_config(tmp.path());
    let mut h = node::start_with(
        options(&cfg, "n4"),
        Credentials::Ready(node_cluster(&srv, "n4")),
    )
    .unwrap();
    assert!(h.wait_registered(Duration::from_secs(10)).is_some());
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| renew_time(s, "n4").is_some()
            && s.stats().count("patch", "nodes/status") == 1)
    );
    let patches_before = srv.stats().count("patch", "nodes/status");

    srv.down();
    let down_at = Instant::now();
    while down_at.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let failures = h.state().failures;
    assert!(failures >= 2, "{:?}", h.state());
    let before_up = renew_time(&srv, "n4").unwrap();
    srv.up().unwrap();
    let up_at = Instant::now();
    // Back within the back-off cap (800 ms) plus a request.
    assert!(
        srv.wait_until(Duration::from_secs(5), |s| renew_time(s, "n4")
            .is_some_and(|t| t > before_up))
    );
    assert!(srv.wait_until(Duration::from_secs(5), |s| s
        .stats()
        .count("patch", "nodes/status")
        > patches_before));
    let caught_up = up_at.elapsed();
    assert!(caught_up < Duration::from_secs(3), "{caught_up:?}");
    // Exactly one catch-up status report: the status itself did not change.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        srv.stats().count("patch", "nodes/status"),
        patches_before + 1
    );
    assert!(h.state().last_error.is_none(), "{:?}", h.state());
    h.stop();
}

#[test]
fn kubeconfig_without_ca_is_refused() {
    let tmp = TempDir::new("noca");
    let cfg = agent_config(tmp.path());
    std::fs::write(
        cfg.kubeconfig.as_deref().unwrap(),
        "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {token: t}}]\nclusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n",
    )
    .unwrap();
    let e = node::start(&cfg, "n5", "containerd://1.6.20").unwrap_err();
    assert!(matches!(e, NodeError::Kubeconfig { .. }), "{e}");
    assert!(e.to_string().contains("certificate-authority"), "{e}");
    // Explicit credentials with no CA are refused by the client on the thread, not trusted.
    let mut h = node::start_with(
        options(&cfg, "n5"),
        Credentials::Ready(ClusterConfig {
            server: "https://127.0.0.1:1".into(),
            ca_pem: Vec::new(),
            tls_server_name: None,
            auth: Auth {
                client_cert: None,
                bearer: Some(Bearer::Static("t".into())),
            },
            namespace: None,
        }),
    )
    .unwrap();
    assert_eq!(h.wait_registered(Duration::from_secs(5)), None);
    let fatal = h.state().fatal.unwrap_or_default();
    assert!(fatal.contains("cluster CA"), "{fatal}");
    h.stop();
    // Without any kubeconfig or bootstrap kubeconfig: a clear error.
    let mut cfg2 = agent_config(tmp.path());
    cfg2.kubeconfig = Some(tmp.path().join("absent.conf"));
    cfg2.bootstrap_kubeconfig = None;
    let e = node::start(&cfg2, "n5", "x").unwrap_err();
    assert!(matches!(e, NodeError::NoCredentials { .. }), "{e}");
}

#[test]
fn existing_node_is_adopted_and_its_labels_and_taints_patched() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let tmp = TempDir::new("adopt");
    let cfg = agent_config(tmp.path());
    let created = srv
        .create(
            "/api/v1/nodes",
            serde_json::json!({"metadata": {"name": "n6", "labels": {"tinylet.io/board": "old", "team": "ops"}},
                "spec": {"taints": [{"key": "admin", "effect": "NoExecute"}]}}),
        )
        .unwrap();
    let mut h = node::start_with(
        options(&cfg, "n6"),
        Credentials::Ready(node_cluster(&srv, "n6")),
    )
    .unwrap();
    let uid = h.wait_registered(Duration::from_secs(10));
    assert_eq!(uid.as_deref(), created["metadata"]["uid"].as_str());
    let n = srv.node("n6").unwrap();
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["tinylet.io/board"], "raspberry-pi-4");
    assert_eq!(labels["team"], "ops", "labels set by others are kept");
    assert_eq!(labels["kubernetes.io/hostname"], "n6");
    let taints: Vec<&str> = n["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(taints, ["admin", "edge.tinylet.io/flaky-link"]);
    // Its status comes with the first report (a node may not read it back).
    assert!(srv.wait_until(Duration::from_secs(5), |s| s
        .node("n6")
        .is_some_and(|n| condition(&n, "Ready").as_deref() == Some("True"))));
    h.stop();
}
