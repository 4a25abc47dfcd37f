//! The kubelet API through the real kube-apiserver with the real kubectl: `kubectl logs`
//! (plain, `--tail`, `--timestamps`, `--limit-bytes`, `-f` seeing a line written after it
//! started and ending when the container exits, `-p` after a restart), and the node's own
//! authentication and authorization (no client certificate → 401, a certificate from another
//! CA → 401, a user RBAC does not allow → 403 with the kubelet's message).
//!
//! The API server reaches the agent as it reaches a kubelet: `--kubelet-preferred-address-
//! types=Hostname` (the test host's name, which must resolve to loopback: traffic stays on
//! 127.0.0.1, and a loopback InternalIP is never advertised), the port from the Node's
//! `daemonEndpoints`, the agent's serving certificate (issued here by the test CA for that
//! name) verified with `--kubelet-certificate-authority`, and the API server's own client
//! certificate (`kube-apiserver-kubelet-client`, bound to `system:kubelet-api-admin` as kubeadm
//! does).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::agent::Agent;
use super::apiserver::client::TestClient;
use super::apiserver::pki::Pki;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::real::RealCluster;
use super::scenarios::{join, pod_path, poll, wait_ready, OnFailure, LIMIT};

/// The real kubectl this machine image ships.
const KUBECTL: &str = "/usr/bin/kubectl";

/// The kubectl to run, or a failure saying it is missing (these tests must not skip).
fn kubectl_bin() -> PathBuf {
    let p = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KUBECTL));
    assert!(
        p.is_file(),
        "kubectl is missing: {} does not exist (install kubectl v1.32 or set KUBECTL=PATH); \
         the kubelet API end-to-end tests need the real client",
        p.display()
    );
    p
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A serving certificate for `host` and 127.0.0.1 signed by the test CA (cert, key).
fn serving_cert(c: &RealCluster, dir: &Path, host: &str, node: &str) -> (PathBuf, PathBuf) {
    let ca = c.ca_cert_path();
    let ca_key = ca.with_extension("key");
    let (key, csr, crt, ext) = (
        dir.join("kubelet-serving.key"),
        dir.join("kubelet-serving.csr"),
        dir.join("kubelet-serving.crt"),
        dir.join("kubelet-serving.ext"),
    );
    std::fs::write(
        &ext,
        format!(
            "[s]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{host},IP:127.0.0.1\n"
        ),
    )
    .unwrap();
    let s = |p: &Path| p.display().to_string();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        &format!("/O=system:nodes/CN=system:node:{node}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-set_serial",
        "77",
        "-days",
        "1",
        "-extfile",
        &s(&ext),
        "-extensions",
        "s",
        "-out",
        &s(&crt),
    ]);
    (crt, key)
}

/// A kubeconfig for the admin (system:masters) of `c`.
fn admin_kubeconfig(c: &RealCluster, dir: &Path) -> PathBuf {
    let admin = c.admin_credentials();
    let path = dir.join("admin.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: admin\nclusters:\n- name: envtest\n  \
             cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: admin\n  \
             context: {{cluster: envtest, user: admin}}\nusers:\n- name: admin\n  user:\n    \
             client-certificate: {}\n    client-key: {}\n",
            c.url(),
            c.ca_cert_path().display(),
            admin.cert_path.display(),
            admin.key_path.display()
        ),
    )
    .unwrap();
    path
}

/// The real kubectl with a kubeconfig and a namespace.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub ns: String,
}

impl Kubectl {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .arg("-n")
            .arg(&self.ns)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl; (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cmd(args).output().expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// stdout of a kubectl that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed: {err}\nstdout: {out}");
        out
    }
}

/// The pod's script: a stderr line, three stdout lines, then a line once `/out/go` exists,
/// then exit 3 once `/out/exit` exists; its second run says so and waits.
const SCRIPT: &str = "trap 'exit 0' TERM; \
    if [ -e /out/ran ]; then echo second-run; while true; do sleep 0.2; done; fi; \
    touch /out/ran; echo to-stderr >&2; sleep 0.3; echo one; echo two; echo three; \
    while [ ! -e /out/go ]; do sleep 0.2; done; echo after-follow; \
    while [ ! -e /out/exit ]; do sleep 0.2; done; exit 3";

/// The agent's kubelet API as the API server reaches it (see the module docs).
pub struct ServedApi {
    /// The kubelet API port (loopback).
    pub port: u16,
    /// The plain /healthz port.
    pub healthz_port: u16,
    /// The agent's namespace for test objects (created).
    pub ns: String,
}

/// Configures `a` to serve its kubelet API for the real API server (serving certificate from
/// the test CA for the host name, client CA), joins it, and waits until the Node advertises
/// the port.
pub fn serve_kubelet_api(c: &RealCluster, a: &mut Agent) -> ServedApi {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .to_lowercase();
    let resolved: Vec<SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .map(|it| it.collect())
            .unwrap_or_default();
    assert!(
        resolved
            .iter()
            .any(|s| s.ip() == std::net::IpAddr::from([127, 0, 0, 1])),
        "the host name {host:?} must resolve to 127.0.0.1 (the API server dials the node's \
         Hostname address and traffic stays on loopback); it resolves to {resolved:?}"
    );
    // The node is named after the host: a Node's Hostname address is its name (the kubelet
    // reports the --hostname-override), and that is the address the API server dials here.
    a.node = host.clone();
    let (cert, key) = serving_cert(c, &a.dir, &host, &a.node);
    let healthz_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut cfg = std::fs::read_to_string(&a.config).unwrap();
    cfg.push_str(&format!(
        "address: 127.0.0.1\nport: {port}\nhealthzPort: {healthz_port}\ntlsCertFile: {}\ntlsPrivateKeyFile: {}\n\
         authentication:\n  x509: {{clientCAFile: {}}}\n",
        cert.display(),
        key.display(),
        c.ca_cert_path().display()
    ));
    std::fs::write(&a.config, cfg).unwrap();
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let node = join(c, a);
    // The Node advertises the port actually served.
    let node = poll(LIMIT, || {
        let n = c.get_opt(&format!("/api/v1/nodes/{}", a.node))?;
        (n.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")? == port).then_some(n)
    })
    .unwrap_or_else(|| panic!("daemonEndpoints carries port {port}: {node}"));
    assert!(
        node["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["type"] == "Hostname" && x["address"] == host.as_str()),
        "{}",
        node["status"]["addresses"]
    );
    ServedApi {
        port,
        healthz_port,
        ns,
    }
}

/// The real kubectl as the cluster admin, in namespace `ns`.
pub fn admin_kubectl(c: &RealCluster, a: &Agent, ns: &str) -> Kubectl {
    Kubectl {
        bin: kubectl_bin(),
        kubeconfig: admin_kubeconfig(c, &a.dir),
        ns: ns.to_string(),
    }
}

/// A joined node serving the kubelet API as the API server reaches it, and the admin's kubectl.
/// Fields drop in order: the failure dump reads the agent's files before the agent goes.
pub struct ServedNode<'c> {
    pub dump: OnFailure<'c>,
    pub a: Agent,
    /// The kubelet API port (HTTPS) and the plain healthz port, both on 127.0.0.1.
    pub port: u16,
    pub healthz_port: u16,
    pub ns: String,
    pub k: Kubectl,
}

/// Starts an agent named after the host with the kubelet API served (see [`serve_kubelet_api`])
/// and the admin's kubectl in its namespace.
pub fn served_node<'c>(c: &'c RealCluster, bed: Bed, tag: &str) -> ServedNode<'c> {
    served_node_with(c, bed, tag, "")
}

/// [`served_node`] with `extra` lines added to the agent's KubeletConfiguration.
pub fn served_node_with<'c>(
    c: &'c RealCluster,
    bed: Bed,
    tag: &str,
    extra: &str,
) -> ServedNode<'c> {
    // Fail first, clearly, when the client is missing.
    kubectl_bin();
    let mut a = Agent::new(bed, c, tag);
    if !extra.is_empty() {
        let mut cfg = std::fs::read_to_string(&a.config).unwrap_or_default();
        cfg.push_str(extra);
        std::fs::write(&a.config, cfg).expect("write the agent's config");
    }
    let dump = OnFailure::new(c, &a);
    let ServedApi {
        port,
        healthz_port,
        ns,
    } = serve_kubelet_api(c, &mut a);
    let k = admin_kubectl(c, &a, &ns);
    ServedNode {
        dump,
        a,
        port,
        healthz_port,
        ns,
        k,
    }
}

pub fn kubectl_logs_and_node_auth(c: &RealCluster, bed: Bed) {
    // Fail first, clearly, when the client is missing.
    kubectl_bin();
    let mut a = Agent::new(bed, c, "kubeapi");
    let _dump = OnFailure::new(c, &a);
    let ServedApi {
        port,
        healthz_port,
        ns,
    } = serve_kubelet_api(c, &mut a);

    let out_dir = a.out.join("talker");
    std::fs::create_dir_all(&out_dir).unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "talker", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SCRIPT],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out_dir.display().to_string()}}],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    wait_ready(c, &ns, "talker");

    let k = admin_kubectl(c, &a, &ns);
    // Plain: both streams, in the order written.
    let plain = poll(LIMIT, || {
        let (ok, out, _) = k.run(&["logs", "talker"]);
        (ok && out.contains("three")).then_some(out)
    })
    .unwrap_or_else(|| panic!("kubectl logs: {:?}", k.run(&["logs", "talker"])));
    assert_eq!(plain, "to-stderr\none\ntwo\nthree\n");
    assert_eq!(
        k.ok(&["logs", "talker", "-c", "main", "--tail=2"]),
        "two\nthree\n"
    );
    assert_eq!(k.ok(&["logs", "talker", "--limit-bytes=5"]), "to-st");
    // --since / --since-time: lines at or after the time (sinceSeconds, sinceTime).
    assert_eq!(k.ok(&["logs", "talker", "--since=1h"]), plain);
    assert_eq!(
        k.ok(&["logs", "talker", "--since-time=2099-01-01T00:00:00Z"]),
        ""
    );
    let stamped = k.ok(&["logs", "talker", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 4, "{stamped}");
    for (line, want) in lines.iter().zip(["to-stderr", "one", "two", "three"]) {
        let (ts, msg) = line.split_once(' ').unwrap();
        assert_eq!(msg, want);
        assert!(
            tinylet::k8s::coordination::parse_time(ts).is_some(),
            "RFC 3339 timestamp first: {line}"
        );
    }

    // -f: sees a line written after it started, ends when the container exits.
    let mut follower = k
        .cmd(&["logs", "-f", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let until = |seen: &mut Vec<String>, want: &str| {
        let t0 = Instant::now();
        while t0.elapsed() < LIMIT {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(l) => {
                    let hit = l == want;
                    seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    };
    assert!(until(&mut seen, "three"), "follower saw {seen:?}");
    std::fs::write(out_dir.join("go"), b"").unwrap();
    assert!(until(&mut seen, "after-follow"), "follower saw {seen:?}");
    std::fs::write(out_dir.join("exit"), b"").unwrap();
    let ended = poll(LIMIT, || follower.try_wait().ok().flatten());
    if ended.is_none() {
        let _ = follower.kill();
        let _ = follower.wait();
    }
    let status = ended.expect("kubectl logs -f ends when the container exits");
    assert!(status.success(), "kubectl logs -f: {status}");

    // -p after the restart: the first instance's whole log; the current one is the second run.
    let current = poll(LIMIT, || {
        let (ok, out, _) = k.run(&["logs", "talker"]);
        (ok && out.contains("second-run")).then_some(out)
    })
    .expect("the restarted container logs its second run");
    assert_eq!(current, "second-run\n");
    assert_eq!(
        k.ok(&["logs", "-p", "talker"]),
        "to-stderr\none\ntwo\nthree\nafter-follow\n"
    );

    // The node's own authn/authz, straight to the kubelet port.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let get = |client: Option<&super::apiserver::pki::ClientCredentials>, path: &str| {
        let mut t = TestClient::tls(addr, &c.ca_pem(), client)
            .unwrap()
            .with_timeout(Duration::from_secs(15));
        let r = t.request("GET", path, None, b"").unwrap();
        (r.code, String::from_utf8_lossy(&r.body).into_owned())
    };
    // Anonymous access is off: no client certificate → 401.
    assert_eq!(get(None, "/pods").0, 401);
    // A certificate from another CA → 401.
    let other_dir = a.dir.join("other-ca");
    let other = Pki::generate(&other_dir).unwrap();
    let stranger = other
        .client_cert("kube-apiserver-kubelet-client", &[])
        .unwrap();
    assert_eq!(get(Some(&stranger), "/pods").0, 401);
    // A user of the right CA that RBAC does not allow → 403 in the kubelet's words.
    let nobody = c.pki().client_cert("nobody", &[]).unwrap();
    let (code, body) = get(Some(&nobody), &format!("/containerLogs/{ns}/talker/main"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[proxy])"
    );
    // The API server's identity may: /pods lists the pod; bad input is a clear error.
    let admin = c
        .pki()
        .client_cert("kube-apiserver-kubelet-client", &[])
        .unwrap();
    let (code, body) = get(Some(&admin), "/pods");
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["metadata"]["name"] == "talker"));
    let (code, body) = get(Some(&admin), &format!("/containerLogs/{ns}/nope/main"));
    assert_eq!((code, body.trim()), (404, "pod \"nope\" does not exist"));
    let (code, body) = get(Some(&admin), &format!("/containerLogs/{ns}/talker/nope"));
    assert_eq!(
        (code, body.trim()),
        (404, "container \"nope\" not found in pod \"talker\"")
    );
    assert_eq!(get(Some(&admin), "/containerLogs/%2e%2e/x/y").0, 400);
    assert_eq!(
        get(
            Some(&admin),
            &format!("/containerLogs/{ns}/talker/main?tailLines=-5")
        )
        .0,
        422
    );
    assert_eq!(get(Some(&admin), "/healthz"), (200, "ok".to_string()));
    // The plain /healthz on healthzPort, for local probes (no TLS, no credentials).
    let mut plain = TestClient::plain(SocketAddr::from(([127, 0, 0, 1], healthz_port)));
    let r = plain.request("GET", "/healthz", None, b"").unwrap();
    assert_eq!((r.code, r.body.as_slice()), (200, &b"ok"[..]));

    // Bearer tokens go through TokenReview, then SubjectAccessReview: a service account RBAC
    // lets use the kubelet API is allowed, one it does not is refused in the kubelet's words.
    let token = |sa: &str| -> String {
        c.create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        )
        .unwrap();
        let tr = c
            .create(
                &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": 600}}),
            )
            .unwrap();
        tr["status"]["token"].as_str().unwrap().to_string()
    };
    let binding = format!("tinylet-envtest:{ns}:scraper");
    c.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:kubelet-api-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": ns}],
        }),
    )
    .unwrap();
    let bearer = |tok: &str, path: &str| {
        let mut t = TestClient::tls(addr, &c.ca_pem(), None)
            .unwrap()
            .with_timeout(Duration::from_secs(15))
            .with_token(tok);
        let r = t.request("GET", path, None, b"").unwrap();
        (r.code, String::from_utf8_lossy(&r.body).trim().to_string())
    };
    let allowed = token("scraper");
    assert_eq!(bearer(&allowed, "/healthz"), (200, "ok".to_string()));
    let denied = token("stranger");
    assert_eq!(
        bearer(&denied, "/pods"),
        (
            403,
            format!(
                "Forbidden (user=system:serviceaccount:{ns}:stranger, verb=get, \
                 resource=nodes, subresource(s)=[proxy])"
            )
        )
    );
    assert_eq!(bearer("not-a-token", "/pods").0, 401);
    let _ = c.delete(
        &format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}"),
        None,
    );
    drop(other);
    let _ = std::fs::remove_dir_all(&other_dir);

    c.delete(&pod_path(&ns, "talker"), None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "talker")).is_none()));
}
