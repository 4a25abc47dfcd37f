//! The proxy's API source: Services and EndpointSlices watched at the project's API test server
//! reach the desired IPVS table (through an in-memory backend: this machine's kernel has no
//! IPVS; the real-kernel path is tested in cross/vm), and the nftables mode's daemon follows
//! them into the kernel's ruleset, in a network namespace of the test's own (the test binary
//! re-runs itself under `unshare -n`, API test server and daemon both inside).

#[path = "apiserver/mod.rs"]
mod apiserver;
#[path = "common/inner_netns.rs"]
mod inner_netns;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tinylet::api::client::{Client, ClientConfig};
use tinylet::api::watch::InformerConfig;
use tinylet::api::{Auth, ClusterConfig};
use tinylet::proxy::apisource::ApiSource;
use tinylet::proxy::backend::{Backend, Syncer};
use tinylet::proxy::cmd::run_api_loop;
use tinylet::proxy::desired::Config;
use tinylet::proxy::table::{Op, State};
use tinylet::proxy::Error;

#[derive(Default)]
struct Memory {
    state: State,
}

impl Backend for Memory {
    fn dump(&mut self) -> Result<State, Error> {
        Ok(self.state.clone())
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        for op in ops {
            self.state.apply(op);
        }
        Vec::new()
    }
}

fn admin_client(srv: &apiserver::ApiServer) -> Client {
    let creds = srv.admin_cert().unwrap();
    let cfg = ClusterConfig {
        server: srv.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    };
    Client::new(&cfg, ClientConfig::default()).unwrap()
}

#[test]
fn services_and_slices_from_the_api_reach_the_table() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.create(
        "/api/v1/namespaces/default/services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20",
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}}),
    )
    .unwrap();
    srv.create(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.0.7"], "conditions": {"ready": false}}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
    )
    .unwrap();

    let api = ApiSource::start(admin_client(&srv), InformerConfig::default()).unwrap();
    let mut syncer = Syncer::new(Memory::default(), BTreeSet::new());
    let cfg = Config {
        node_name: "n1".into(),
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let code = run_api_loop(&mut syncer, &api, &cfg, Duration::from_secs(30), true);
        let _ = tx.send((code, syncer.backend().state.clone()));
    });
    let (code, state) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the proxy synced within 20 s");
    assert_eq!(code, 0);
    assert_eq!(state.real_count(), 2, "only ready endpoints: {state:?}");
    let text = format!("{state:?}");
    assert!(text.contains("10.96.0.20"), "{text}");
    assert!(
        text.contains("10.244.0.5") && text.contains("10.244.0.6"),
        "{text}"
    );
    assert!(!text.contains("10.244.0.7"), "{text}");
}

const TINYLET: &str = env!("CARGO_BIN_EXE_tinylet");

fn web_service() -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
}

fn web_slice(addrs: &[&str]) -> serde_json::Value {
    let eps: Vec<serde_json::Value> = addrs
        .iter()
        .map(|a| serde_json::json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
}

/// The daemon and its files: killed and removed when dropped, pass or fail.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `tinylet proxy --proxy-mode=nftables` watching `srv` with admin credentials.
fn start_nft_daemon(srv: &apiserver::ApiServer) -> Daemon {
    let dir = std::env::temp_dir().join(format!("tl-proxy-api-{}", std::process::id()));
    let mut d = Daemon {
        child: None,
        dir: dir.clone(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let creds = srv.admin_cert().unwrap();
    let file = |name: &str, text: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca, cert, key) = (
        file("ca.crt", srv.ca_pem()),
        file("admin.crt", &creds.cert_pem),
        file("admin.key", &creds.key_pem),
    );
    let kubeconfig = dir.join("kubeconfig");
    tinylet::api::write_cert_kubeconfig(&kubeconfig, &srv.url(), &ca, &cert, &key).unwrap();
    let log = std::fs::File::create(dir.join("stdout")).unwrap();
    let child = Command::new(TINYLET)
        .args(["proxy", "--proxy-mode=nftables", "--hostname-override=n1"])
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .stdin(Stdio::null())
        .stdout(log)
        .spawn()
        .unwrap();
    d.child = Some(child);
    d
}

/// The namespace's ruleset as the real `nft` prints it.
fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("running nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll the ruleset (bounded) until `ok` holds of it; panics with the last one read.
fn wait_for_ruleset(what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = ruleset();
        if ok(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the ruleset never showed {what}:\n{last}");
}

/// Poll `path` (bounded) until it holds `what`; returns its text.
fn wait_for_file(path: &Path, what: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = std::fs::read_to_string(path).unwrap_or_default();
        if last.contains(what) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} never said {what:?}:\n{last}", path.display());
}

const WEB_MAP: &str = "10.96.0.20 . tcp . 80 : goto service-default/web/tcp/http";

#[test]
fn nftables_mode_follows_the_api_into_the_kernel() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED (needs root for a network namespace)");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        println!("SKIPPED (no nft to read the ruleset with)");
        return;
    }
    inner_netns::run_inner("nftables_mode_follows_the_api_inner");
}

#[test]
#[ignore = "run by nftables_mode_follows_the_api_into_the_kernel in a network namespace"]
fn nftables_mode_follows_the_api_inner() {
    if !inner_netns::is_inner() {
        return;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success());
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.create("/api/v1/namespaces/default/services", web_service())
        .unwrap();
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    srv.create(slices, web_slice(&["10.244.0.5", "10.244.0.6"]))
        .unwrap();
    let mut daemon = start_nft_daemon(&srv);

    wait_for_ruleset("the service and both endpoints", |r| {
        r.contains(WEB_MAP)
            && r.contains("dnat to 10.244.0.5:8080")
            && r.contains("dnat to 10.244.0.6:8080")
    });

    // One endpoint replaced through the API: the kernel follows.
    srv.update(
        &format!("{slices}/web-1"),
        web_slice(&["10.244.0.5", "10.244.0.9"]),
    )
    .unwrap();
    let r = wait_for_ruleset("the endpoint replaced", |r| {
        r.contains("dnat to 10.244.0.9:8080") && !r.contains("10.244.0.6")
    });
    assert!(
        r.contains(WEB_MAP) && r.contains("dnat to 10.244.0.5:8080"),
        "{r}"
    );
    // ...service by service, not by whole tables.
    let said = wait_for_file(&daemon.dir.join("stdout"), "nftables partial sync");
    assert!(said.starts_with("nftables full sync"), "{said}");

    // The Service deleted (its slice stays): its rules go.
    srv.delete("/api/v1/namespaces/default/services/web", None)
        .unwrap();
    let r = wait_for_ruleset("the service gone", |r| {
        !r.contains("service-default/web") && !r.contains("10.244.0.")
    });
    assert!(r.contains("table ip kube-proxy"), "our table stays: {r}");

    // The daemon is still running (it did not exit on its own).
    let child = daemon.child.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    drop(daemon);
    assert!(
        !Path::new(&std::env::temp_dir().join(format!("tl-proxy-api-{}", std::process::id())))
            .exists()
    );
    println!("INNER OK");
}
