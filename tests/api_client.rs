//! The API client against local fakes: TLS servers on 127.0.0.1 answering canned HTTP, with
//! certificates made at test time by the `openssl` CLI. Covers kubeconfig variants, TLS
//! verification, list+watch with bookmarks and 410 re-list, hostile responses and Retry-After.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tinylet::api::client::{ApiErrorKind, Client, ClientConfig, ListParams};
use tinylet::api::kubeconfig::{write_cert_kubeconfig, Kubeconfig, KubeconfigError};
use tinylet::api::watch::{Informer, InformerConfig, InformerEvent, ListWatch};
use tinylet::api::{backoff::XorShift64, ClusterConfig};
use tinylet::k8s::list::WatchEvent;
use tinylet::k8s::node::Node;
use tinylet::k8s::status::DeleteOptions;

// ---------------------------------------------------------------- certificates

/// Certificates made once per test binary, held in memory (the files are removed at once).
struct Pki {
    files: std::collections::HashMap<String, Vec<u8>>,
}

impl Pki {
    fn read(&self, name: &str) -> Vec<u8> {
        self.files[name].clone()
    }
}

/// A directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("tinylet-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    /// Writes one of the test certificates into the directory.
    fn put(&self, rel: &str, name: &str) -> PathBuf {
        let full = self.0.join(rel);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&full, pki().read(name)).unwrap();
        full
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI must be installed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_leaf(dir: &Path, ca: &str, name: &str, subj: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subj,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// One set of certificates for the whole test binary (openssl is slow-ish).
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let tmp = TempDir::new("pki");
        let dir = tmp.path();
        make_ca(dir, "ca");
        make_ca(dir, "other-ca");
        make_leaf(
            dir,
            "ca",
            "server",
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        );
        make_leaf(
            dir,
            "ca",
            "named-server",
            "/CN=kubernetes",
            "subjectAltName=DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        );
        make_leaf(
            dir,
            "ca",
            "client",
            "/O=system:nodes/CN=system:node:test",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        let mut files = std::collections::HashMap::new();
        for f in std::fs::read_dir(dir).unwrap() {
            let f = f.unwrap();
            files.insert(
                f.file_name().to_string_lossy().into_owned(),
                std::fs::read(f.path()).unwrap(),
            );
        }
        Pki { files }
    })
}

// ---------------------------------------------------------------- fake API server

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    client_cert: bool,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }
    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.replace("%3D", "=").replace("%2C", ","))
        })
    }
}

type Handler = dyn Fn(&Req, &mut dyn Write) + Send + Sync;

struct FakeServer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Req>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(cert: &str, handler: impl Fn(&Req, &mut dyn Write) + Send + Sync + 'static) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let p = pki();
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&p.files[&format!("{cert}.crt")])
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(&p.files[&format!("{cert}.key")]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&p.files["ca.crt"]) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            // Bounded: no test needs more connections than this.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept() else {
                    break;
                };
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let (config, seen, handler) = (config.clone(), seen2.clone(), handler.clone());
                workers.push(std::thread::spawn(move || {
                    serve_one(tcp, config, &seen, handler.as_ref())
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        FakeServer {
            port,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    seen: &Mutex<Vec<Req>>,
    handler: &Handler,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut tls);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return; // handshake failed or client went away
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    drop(reader);
    let req = Req {
        method,
        target,
        headers,
        body,
        client_cert: tls.conn.peer_certificates().is_some_and(|c| !c.is_empty()),
    };
    seen.lock().unwrap().push(req.clone());
    handler(&req, &mut tls);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn respond(w: &mut dyn Write, code: u16, extra_headers: &str, body: &[u8]) {
    let _ = write!(
        w,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        body.len()
    );
    let _ = w.write_all(body);
}

fn chunked_head(w: &mut dyn Write) {
    let _ = write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
}

fn chunk(w: &mut dyn Write, data: &[u8]) -> bool {
    write!(w, "{:x}\r\n", data.len()).is_ok()
        && w.write_all(data).is_ok()
        && w.write_all(b"\r\n").is_ok()
        && w.flush().is_ok()
}

fn end_chunks(w: &mut dyn Write) {
    let _ = w.write_all(b"0\r\n\r\n");
}

// ---------------------------------------------------------------- client helpers

fn cluster(port: u16, ca: &str, client_cert: bool) -> ClusterConfig {
    let p = pki();
    let mut auth = tinylet::api::Auth::default();
    if client_cert {
        auth.client_cert = Some((p.read("client.crt"), p.read("client.key")));
    }
    ClusterConfig {
        server: format!("https://127.0.0.1:{port}"),
        ca_pem: p.read(&format!("{ca}.crt")),
        tls_server_name: None,
        auth,
        namespace: None,
    }
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        watch_idle_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn client(port: u16) -> Client {
    Client::new(&cluster(port, "ca", true), fast_config()).unwrap()
}

const NODE: &str = r#"{"kind":"Node","apiVersion":"v1","metadata":{"name":"test","resourceVersion":"1"},"status":{"capacity":{"cpu":"4"}}}"#;

fn pod(name: &str, rv: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"{name}","namespace":"default","resourceVersion":"{rv}"}},"spec":{{"nodeName":"test"}}}}"#
    )
}

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- TLS and kubeconfig

#[test]
fn client_certificate_auth_over_verified_tls() {
    let srv = FakeServer::start("server", |_, w| respond(w, 200, "", NODE.as_bytes()));
    let node: Node = client(srv.port).get("/api/v1/nodes/test").unwrap();
    assert_eq!(node.metadata.name, "test");
    assert_eq!(node.status.capacity["cpu"], "4");
    let reqs = srv.requests();
    assert!(reqs[0].client_cert, "client certificate was not presented");
    assert_eq!(reqs[0].header("Accept"), Some("application/json"));
    assert!(reqs[0].header("Authorization").is_none());
}

#[test]
fn wrong_ca_is_a_transport_error() {
    let srv = FakeServer::start("server", |_, w| respond(w, 200, "", NODE.as_bytes()));
    let c = Client::new(&cluster(srv.port, "other-ca", true), fast_config()).unwrap();
    let e = c.get::<Node>("/api/v1/nodes/test").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(
        srv.requests().is_empty(),
        "a request went through an unverified connection"
    );
}

#[test]
fn server_certificate_for_another_name_is_refused_unless_tls_server_name_says_so() {
    let srv = FakeServer::start("named-server", |_, w| respond(w, 200, "", NODE.as_bytes()));
    let mut cfg = cluster(srv.port, "ca", true);
    let e = Client::new(&cfg, fast_config())
        .unwrap()
        .get::<Node>("/api/v1/nodes/test")
        .unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    cfg.tls_server_name = Some("kubernetes.default.svc".into());
    let node: Node = Client::new(&cfg, fast_config())
        .unwrap()
        .get("/api/v1/nodes/test")
        .unwrap();
    assert_eq!(node.metadata.name, "test");
}

#[test]
fn kubeconfig_without_ca_or_with_skip_verify_is_refused() {
    let tmp = TempDir::new("kc-refuse");
    let dir = tmp.path();
    let base = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nusers: [{name: u, user: {token: t}}]\n";
    std::fs::write(
        dir.join("no-ca"),
        format!("{base}clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:1'}}}}]\n"),
    )
    .unwrap();
    let e = Kubeconfig::load(&dir.join("no-ca"), None).unwrap_err();
    assert!(matches!(e, KubeconfigError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("certificate-authority"), "{e}");
    std::fs::write(
        dir.join("skip"),
        format!("{base}clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}}}]\n"),
    )
    .unwrap();
    let e = Kubeconfig::load(&dir.join("skip"), None).unwrap_err();
    assert!(e.to_string().contains("insecure-skip-tls-verify"), "{e}");
}

#[test]
fn kubeconfig_with_relative_files_and_written_bootstrap_kubeconfig_connect() {
    let srv = FakeServer::start("server", |_, w| respond(w, 200, "", NODE.as_bytes()));
    let tmp = TempDir::new("kc-rel");
    let dir = tmp.path();
    for f in ["ca.crt", "client.crt", "client.key"] {
        tmp.put(&format!("pki/{f}"), f);
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: node\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: pki/ca.crt\ncontexts:\n- name: node\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user:\n    client-certificate: pki/client.crt\n    client-key: pki/client.key\n",
        srv.port
    );
    std::fs::write(dir.join("kubelet.conf"), text).unwrap();
    let cfg = Kubeconfig::load(&dir.join("kubelet.conf"), None).unwrap();
    let n: Node = Client::new(&cfg, fast_config())
        .unwrap()
        .get("/api/v1/nodes/test")
        .unwrap();
    assert_eq!(n.metadata.name, "test");

    let written = dir.join("bootstrapped.conf");
    write_cert_kubeconfig(
        &written,
        &format!("https://127.0.0.1:{}", srv.port),
        &dir.join("pki/ca.crt"),
        &dir.join("pki/client.crt"),
        &dir.join("pki/client.key"),
    )
    .unwrap();
    let cfg = Kubeconfig::load(&written, None).unwrap();
    let n: Node = Client::new(&cfg, fast_config())
        .unwrap()
        .get("/api/v1/nodes/test")
        .unwrap();
    assert_eq!(n.metadata.name, "test");
    assert!(srv.requests().iter().all(|r| r.client_cert));
}

#[test]
fn bearer_token_and_token_file_rotation() {
    let srv = FakeServer::start("server", |_, w| respond(w, 200, "", NODE.as_bytes()));
    let tmp = TempDir::new("kc-token");
    let dir = tmp.path();
    tmp.put("ca.crt", "ca.crt");
    std::fs::write(dir.join("token"), "first-token\n").unwrap();
    let text = format!(
        "current-context: c\nclusters: [{{name: k, cluster: {{server: 'https://localhost:{}', certificate-authority: ca.crt}}}}]\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\nusers: [{{name: u, user: {{tokenFile: token}}}}]\n",
        srv.port
    );
    std::fs::write(dir.join("kc"), text).unwrap();
    let c = Client::new(
        &Kubeconfig::load(&dir.join("kc"), None).unwrap(),
        fast_config(),
    )
    .unwrap();
    let _: Node = c.get("/api/v1/nodes/test").unwrap();
    // Rotation: a new token of another length is picked up on the next request.
    std::fs::write(dir.join("token"), "second-longer-token\n").unwrap();
    let _: Node = c.get("/api/v1/nodes/test").unwrap();
    let auth: Vec<_> = srv
        .requests()
        .iter()
        .map(|r| r.header("Authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(auth, ["Bearer first-token", "Bearer second-longer-token"]);
    assert!(!srv.requests()[0].client_cert);
}

// ---------------------------------------------------------------- verbs

#[test]
fn write_verbs_send_the_right_content_types_and_bodies() {
    let srv = FakeServer::start("server", |r, w| {
        let body = format!(
            r#"{{"kind":"Status","status":"Success","message":"{}"}}"#,
            r.method
        );
        respond(w, 200, "", body.as_bytes());
    });
    let c = client(srv.port);
    let patch = serde_json::json!({"status":{"conditions":[{"type":"Ready","status":"True"}]}});
    let _: serde_json::Value = c
        .create(
            "/api/v1/nodes",
            &serde_json::json!({"metadata":{"name":"test"}}),
        )
        .unwrap();
    let _: serde_json::Value = c
        .replace("/api/v1/nodes/test", &serde_json::json!({}))
        .unwrap();
    let _: serde_json::Value = c.patch_merge("/api/v1/nodes/test/status", &patch).unwrap();
    let _: serde_json::Value = c
        .patch_strategic("/api/v1/nodes/test/status", &patch)
        .unwrap();
    let _: serde_json::Value = c
        .delete(
            "/api/v1/namespaces/default/pods/p",
            &DeleteOptions::confirm_gone("uid-1"),
        )
        .unwrap();
    let reqs = srv.requests();
    let got: Vec<(&str, Option<&str>)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.header("Content-Type")))
        .collect();
    assert_eq!(
        got,
        [
            ("POST", Some("application/json")),
            ("PUT", Some("application/json")),
            ("PATCH", Some("application/merge-patch+json")),
            ("PATCH", Some("application/strategic-merge-patch+json")),
            ("DELETE", Some("application/json")),
        ]
    );
    let del: serde_json::Value = serde_json::from_slice(&reqs[4].body).unwrap();
    assert_eq!(del["gracePeriodSeconds"], 0);
    assert_eq!(del["preconditions"]["uid"], "uid-1");
    assert_eq!(reqs[2].path(), "/api/v1/nodes/test/status");
}

#[test]
fn status_errors_carry_code_reason_and_message() {
    let srv = FakeServer::start("server", |r, w| {
        if r.path().ends_with("forbidden") {
            respond(w, 403, "", br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes \"other\" is forbidden: node \"test\" cannot modify node \"other\"","reason":"Forbidden","code":403}"#);
        } else {
            respond(w, 502, "", b"<html>bad gateway</html>");
        }
    });
    let c = client(srv.port);
    let e = c.get::<Node>("/api/v1/nodes/forbidden").unwrap_err();
    match &e.kind {
        ApiErrorKind::Status {
            code,
            reason,
            message,
        } => {
            assert_eq!(*code, 403);
            assert_eq!(reason, "Forbidden");
            assert!(message.contains("cannot modify"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());
    let e = c.get::<Node>("/api/v1/nodes/proxy").unwrap_err();
    assert_eq!(e.code(), Some(502));
    assert!(e.is_retryable());
    assert!(e.to_string().contains("bad gateway"), "{e}");
}

// ---------------------------------------------------------------- list + watch

#[test]
fn list_watch_bookmark_and_410_relist_against_fake() {
    let srv = FakeServer::start("server", |r, w| {
        let watching = r.query("watch").is_some();
        let rv = r.query("resourceVersion").unwrap_or_default();
        if !watching {
            // First list at RV 10 with pod a; after the 410, a list at RV 20 with b and c.
            static LISTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let body = if LISTS.fetch_add(1, Ordering::SeqCst) == 0 {
                format!(
                    r#"{{"kind":"PodList","metadata":{{"resourceVersion":"10"}},"items":[{}]}}"#,
                    pod("a", "9")
                )
            } else {
                format!(
                    r#"{{"kind":"PodList","metadata":{{"resourceVersion":"20"}},"items":[{},{}]}}"#,
                    pod("b", "11"),
                    pod("c", "19")
                )
            };
            respond(w, 200, "", body.as_bytes());
            return;
        }
        chunked_head(w);
        match rv.as_str() {
            "10" => {
                let ev = format!("{{\"type\":\"ADDED\",\"object\":{}}}\n", pod("b", "11"));
                // Split an event across chunks on purpose.
                let (x, y) = ev.split_at(17);
                chunk(w, x.as_bytes());
                chunk(w, y.as_bytes());
                chunk(w, b"{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"15\"}}}\n");
                end_chunks(w);
            }
            "15" => {
                chunk(w, b"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"too old resource version: 15 (18)\",\"reason\":\"Expired\",\"code\":410}}\n");
                end_chunks(w);
            }
            "20" => {
                let ev = format!("{{\"type\":\"DELETED\",\"object\":{}}}\n", pod("c", "21"));
                chunk(w, ev.as_bytes());
                end_chunks(w);
            }
            _ => end_chunks(w),
        }
    });
    let informer = Informer::<TestPod>::with_rng(
        InformerConfig::default(),
        |p| &p.metadata,
        Box::new(XorShift64::new(5)),
    );
    let mut lw = Mirrored::new(ListWatch::new(
        client(srv.port),
        "/api/v1/pods",
        ListParams::fields("spec.nodeName=test"),
        informer,
    ));
    let mut sleeps = 0;
    let mut sleep = |_d: Duration| {
        sleeps += 1;
        sleeps < 5
    };
    let names =
        |v: &[TestPod]| -> Vec<String> { v.iter().map(|p| p.metadata.name.clone()).collect() };
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Resync(v) => assert_eq!(names(&v), ["a"]),
        other => panic!("{other:?}"),
    }
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Applied(p) => assert_eq!(p.metadata.name, "b"),
        other => panic!("{other:?}"),
    }
    // Bookmark (RV 15), stream end, re-watch from 15 → ERROR 410 → re-list → full resync.
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Resync(v) => assert_eq!(names(&v), ["b", "c"]),
        other => panic!("{other:?}"),
    }
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Deleted(p) => assert_eq!(p.metadata.name, "c"),
        other => panic!("{other:?}"),
    }
    assert_eq!(lw.names.len(), 1);
    assert_eq!(lw.informer().resource_version(), "21");

    let reqs = srv.requests();
    let kinds: Vec<String> = reqs
        .iter()
        .map(|r| match r.query("watch") {
            Some(_) => format!("watch@{}", r.query("resourceVersion").unwrap()),
            None => "list".into(),
        })
        .collect();
    assert_eq!(
        kinds[..5],
        ["list", "watch@10", "watch@15", "list", "watch@20"]
    );
    for r in &reqs {
        assert_eq!(
            r.query("fieldSelector").as_deref(),
            Some("spec.nodeName=test")
        );
        if r.query("watch").is_some() {
            assert_eq!(r.query("allowWatchBookmarks").as_deref(), Some("true"));
            let t: u64 = r.query("timeoutSeconds").unwrap().parse().unwrap();
            assert!((1800..=3600).contains(&t), "{t}");
        }
    }
    assert_eq!(sleeps, 0, "no back-off expected on a healthy stream");
}

/// A minimal typed object for the informer (it keys a resync by its metadata).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct TestPod {
    metadata: tinylet::k8s::meta::ObjectMeta,
}

/// A list+watch and what its consumer knows from its events: the names of the pods there.
struct Mirrored {
    lw: ListWatch<TestPod>,
    names: std::collections::BTreeSet<String>,
}

impl Mirrored {
    fn new(lw: ListWatch<TestPod>) -> Self {
        Mirrored {
            lw,
            names: Default::default(),
        }
    }

    fn next_event(
        &mut self,
        sleep: &mut dyn FnMut(Duration) -> bool,
    ) -> Option<InformerEvent<TestPod>> {
        let ev = self.lw.next_event(sleep)?;
        match &ev {
            InformerEvent::Resync(v) => {
                self.names = v.iter().map(|p| p.metadata.name.clone()).collect();
            }
            InformerEvent::Applied(p) => {
                self.names.insert(p.metadata.name.clone());
            }
            InformerEvent::Deleted(p) => {
                self.names.remove(&p.metadata.name);
            }
        }
        Some(ev)
    }

    fn informer(&self) -> &Informer<TestPod> {
        self.lw.informer()
    }
}

#[test]
fn paged_lists_follow_continue_and_start_over_when_a_page_expires() {
    let srv = FakeServer::start("server", |r, w| {
        let list = |rv: &str, names: &[&str], next: &str| {
            let items: Vec<String> = names.iter().map(|n| pod(n, "1")).collect();
            format!(
                r#"{{"kind":"PodList","metadata":{{"resourceVersion":"{rv}","continue":"{next}"}},"items":[{}]}}"#,
                items.join(",")
            )
        };
        let token = r.query("continue").unwrap_or_default();
        let body = match (r.path(), token.as_str()) {
            ("/api/v1/pods", "") => list("30", &["a", "b"], "t1"),
            ("/api/v1/pods", "t1") => list("31", &["c", "d"], "t2"),
            ("/api/v1/pods", "t2") => list("32", &["e"], ""),
            ("/api/v1/namespaces/x/pods", "") if r.query("limit").is_none() => {
                list("40", &["a", "b", "c"], "")
            }
            ("/api/v1/namespaces/x/pods", "") => list("35", &["a"], "t1"),
            ("/api/v1/namespaces/x/pods", _) => {
                let gone = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the provided continue parameter is too old","reason":"Expired","code":410}"#;
                return respond(w, 410, "", gone);
            }
            // A new token every time, each page as long as the last.
            ("/api/v1/namespaces/endless/pods", t) => {
                let n: u32 = t.trim_start_matches('t').parse().unwrap_or(0);
                list(
                    "60",
                    &["a", "b", "c", "d", "e", "f"],
                    &format!("t{}", n + 1),
                )
            }
            _ => list("50", &["a"], "again"),
        };
        respond(w, 200, "", body.as_bytes());
    });
    let c = client(srv.port);
    let names = |items: &[TestPod]| -> Vec<String> {
        items.iter().map(|p| p.metadata.name.clone()).collect()
    };
    let pages = ListParams {
        limit: Some(2),
        ..Default::default()
    };

    // Three pages, one list at the first page's version.
    let l = c.list::<TestPod>("/api/v1/pods", &pages).unwrap();
    assert_eq!(names(&l.items), ["a", "b", "c", "d", "e"]);
    assert_eq!(l.metadata.resource_version, "30");
    let seen = srv.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|r| r.query("limit").as_deref() == Some("2")));
    assert_eq!(seen[1].query("continue").as_deref(), Some("t1"));
    assert_eq!(seen[2].query("continue").as_deref(), Some("t2"));

    // The second page expired: the list starts over in one request, without a limit.
    let l = c
        .list::<TestPod>("/api/v1/namespaces/x/pods", &pages)
        .unwrap();
    assert_eq!(names(&l.items), ["a", "b", "c"]);
    assert_eq!(l.metadata.resource_version, "40");
    assert_eq!(srv.requests().len(), 6);

    // A server that answers every page with the same token is an error, not a loop.
    let e = c
        .list::<TestPod>("/api/v1/namespaces/loop/pods", &pages)
        .unwrap_err();
    assert!(e.to_string().contains("repeats its continue token"), "{e}");
    assert_eq!(srv.requests().len(), 8);

    // A server that never stops paging is stopped where one answer would be.
    let small = Client::new(
        &cluster(srv.port, "ca", true),
        ClientConfig {
            max_body: 2000,
            ..fast_config()
        },
    )
    .unwrap();
    let e = small
        .list::<TestPod>("/api/v1/namespaces/endless/pods", &pages)
        .unwrap_err();
    assert!(
        matches!(e.kind, ApiErrorKind::TooLarge { limit: 2000 }),
        "{e}"
    );
    let pages_read = srv.requests().len() - 8;
    assert!((2..=5).contains(&pages_read), "{pages_read}");

    // Informers list in pages of 500 unless told otherwise.
    let informer = Informer::new(InformerConfig::default(), |p: &TestPod| &p.metadata);
    let mut lw = ListWatch::new(c, "/api/v1/pods", ListParams::default(), informer);
    let ev = lw.next_event(&mut |_| false);
    let Some(InformerEvent::Resync(items)) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(names(&items), ["a", "b", "c", "d", "e"]);
    let seen = srv.requests();
    assert_eq!(seen.len(), 11 + pages_read);
    assert!(seen[8 + pages_read..]
        .iter()
        .all(|r| r.query("limit").as_deref() == Some("500")));
}

#[test]
fn http_410_on_watch_and_retry_after_on_list() {
    let srv = FakeServer::start("server", |r, w| {
        if r.query("watch").is_some() {
            respond(
                w,
                410,
                "",
                br#"{"kind":"Status","status":"Failure","reason":"Expired","code":410}"#,
            );
        } else {
            static LISTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            match LISTS.fetch_add(1, Ordering::SeqCst) {
                0 => respond(
                    w,
                    200,
                    "",
                    br#"{"metadata":{"resourceVersion":"5"},"items":[]}"#,
                ),
                _ => respond(
                    w,
                    429,
                    "Retry-After: 7\r\n",
                    br#"{"kind":"Status","reason":"TooManyRequests","code":429}"#,
                ),
            }
        }
    });
    let informer = Informer::<Node>::with_rng(
        InformerConfig::default(),
        |n| &n.metadata,
        Box::new(XorShift64::new(5)),
    );
    let mut lw = ListWatch::new(
        client(srv.port),
        "/api/v1/nodes",
        ListParams::default(),
        informer,
    );
    let mut slept = Vec::new();
    let mut sleep = |d: Duration| {
        slept.push(d);
        false
    };
    assert!(matches!(lw.next_event(&mut sleep), Some(InformerEvent::Resync(v)) if v.is_empty()));
    // Watch → HTTP 410 → re-list → 429 Retry-After 7 → the informer sleeps at least 7 s.
    assert!(lw.next_event(&mut sleep).is_none());
    assert_eq!(slept.len(), 1);
    // The deadline is 7 s after the failure; the sleep is what remains of it.
    assert!(
        slept[0] > Duration::from_millis(6500) && slept[0] <= Duration::from_secs(7),
        "{slept:?}"
    );
    let kinds: Vec<bool> = srv
        .requests()
        .iter()
        .map(|r| r.query("watch").is_some())
        .collect();
    assert_eq!(kinds, [false, true, false]);
}

#[test]
fn retry_after_http_date_on_503() {
    let srv = FakeServer::start("server", |_, w| {
        respond(
            w,
            503,
            "Retry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\n",
            b"{}",
        )
    });
    let e = client(srv.port)
        .get::<Node>("/api/v1/nodes/test")
        .unwrap_err();
    assert_eq!(e.code(), Some(503));
    assert!(e.retry_after.unwrap() > Duration::from_secs(365 * 24 * 3600));
}

#[test]
fn poll_only_mode_lists_without_streams() {
    let srv = FakeServer::start("server", |_, w| {
        respond(
            w,
            200,
            "",
            format!(r#"{{"metadata":{{"resourceVersion":"3"}},"items":[{NODE}]}}"#).as_bytes(),
        )
    });
    let informer = Informer::<Node>::with_rng(
        InformerConfig {
            mode: tinylet::api::WatchMode::Poll {
                interval: Duration::from_secs(30),
            },
            ..Default::default()
        },
        |n| &n.metadata,
        Box::new(XorShift64::new(5)),
    );
    // Fake time: sleeping advances the clock instead of waiting.
    let base = Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let clock_offset = offset.clone();
    let mut lw = ListWatch::new(
        client(srv.port),
        "/api/v1/nodes",
        ListParams::default(),
        informer,
    )
    .with_clock(Box::new(move || base + *clock_offset.lock().unwrap()));
    let mut polls = 0;
    let mut sleep = |d: Duration| {
        assert!(
            d > Duration::from_secs(29) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        *offset.lock().unwrap() += d;
        polls += 1;
        polls < 3
    };
    let mut resyncs = 0;
    while let Some(ev) = lw.next_event(&mut sleep) {
        assert!(matches!(ev, InformerEvent::Resync(v) if v.len() == 1));
        resyncs += 1;
    }
    assert_eq!(resyncs, 3);
    assert!(srv.requests().iter().all(|r| r.query("watch").is_none()));
}

// ---------------------------------------------------------------- hostile servers

#[test]
fn invalid_json_and_wrong_types_are_decode_errors() {
    let srv = FakeServer::start("server", |r, w| match r.path() {
        "/garbage" => respond(w, 200, "", b"{not json"),
        "/types" => respond(w, 200, "", br#"{"metadata":{"name":7}}"#),
        _ => respond(w, 200, "", br#"[1,2,3]"#),
    });
    let c = client(srv.port);
    for path in ["/garbage", "/types", "/array"] {
        let e = c.get::<Node>(path).unwrap_err();
        match &e.kind {
            ApiErrorKind::Decode { what, .. } => assert_eq!(what, "Node"),
            other => panic!("{path}: {other:?}"),
        }
        assert!(e.to_string().contains(path));
    }
}

/// Peak memory is per process, and tests run in parallel: measure in a child process that
/// runs only this test.
#[test]
fn hundred_megabyte_object_is_too_large_with_bounded_memory() {
    const CHILD: &str = "TINYLET_API_MEM_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hundred_megabyte_object_is_too_large_with_bounded_memory",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!("{text}");
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("peak RSS growth"),
            "child did not run the test: {text}"
        );
        return;
    }
    const HUNDRED_MB: usize = 100 << 20;
    let srv = FakeServer::start("server", |r, w| {
        let block = vec![b' '; 64 << 10];
        if r.path() == "/warm" {
            respond(w, 200, "", NODE.as_bytes());
        } else if r.path() == "/sized" {
            let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"metadata\":{{\"name\":\"", HUNDRED_MB);
            let mut sent = 0;
            while sent < HUNDRED_MB && w.write_all(&block).is_ok() {
                sent += block.len();
            }
        } else {
            chunked_head(w);
            let mut sent = 0;
            while sent < HUNDRED_MB && chunk(w, &block) {
                sent += block.len();
            }
            end_chunks(w);
        }
    });
    let c = client(srv.port);
    // Warm up TLS and allocator so the measurement sees only the body handling.
    let _ = c.get::<Node>("/warm");
    let before = peak_rss_kib();
    for path in ["/sized", "/chunked"] {
        let e = c.get::<Node>(path).unwrap_err();
        assert_eq!(
            e.kind,
            ApiErrorKind::TooLarge { limit: 4 << 20 },
            "{path}: {e}"
        );
    }
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    println!(
        "peak RSS growth while refusing two 100 MB bodies (4 MiB single-object limit): \
         {grown_mib} MiB"
    );
    assert!(grown_mib < 12, "memory not bounded: grew {grown_mib} MiB");
}

#[test]
fn endless_watch_line_without_newline_is_refused_at_the_limit() {
    let srv = FakeServer::start("server", |_, w| {
        chunked_head(w);
        let block = vec![b'x'; 64 << 10];
        // Bounded: 64 MiB at most, the client must give up long before.
        for _ in 0..1024 {
            if !chunk(w, &block) {
                return;
            }
        }
    });
    let c = Client::new(
        &cluster(srv.port, "ca", true),
        ClientConfig {
            max_watch_line: 1 << 20,
            ..fast_config()
        },
    )
    .unwrap();
    let mut s = c
        .watch::<Node>("/api/v1/nodes", &ListParams::default(), "1", 300)
        .unwrap();
    let e = s.next_event().unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::TooLarge { limit: 1 << 20 });
    assert!(e.to_string().contains("1048576"), "{e}");
}

#[test]
fn truncated_chunked_bodies_are_transport_errors() {
    let srv = FakeServer::start("server", |r, w| {
        chunked_head(w);
        if r.query("watch").is_some() {
            chunk(
                w,
                format!("{{\"type\":\"ADDED\",\"object\":{NODE}}}\n").as_bytes(),
            );
        }
        // Announce 256 bytes, send 10, hang up.
        let _ = w.write_all(b"100\r\n{\"metadata");
        let _ = w.flush();
    });
    let c = client(srv.port);
    let e = c.get::<Node>("/api/v1/nodes/test").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    let mut s = c
        .watch::<Node>("/api/v1/nodes", &ListParams::default(), "1", 300)
        .unwrap();
    assert!(matches!(s.next_event(), Ok(Some(WatchEvent::Added(n))) if n.metadata.name == "test"));
    let e = s.next_event().unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[test]
fn slowloris_servers_hit_the_timeouts() {
    let srv = FakeServer::start("server", |r, w| {
        if r.path() == "/no-headers" {
            std::thread::sleep(Duration::from_secs(4));
            return;
        }
        if r.query("watch").is_some() {
            chunked_head(w);
            let _ = w.flush();
            std::thread::sleep(Duration::from_secs(4));
            return;
        }
        // Headers promptly, then one byte every 300 ms: each read succeeds, the whole never ends.
        let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n");
        for _ in 0..20 {
            if w.write_all(b" ").and_then(|_| w.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let c = client(srv.port);
    for path in ["/no-headers", "/drip"] {
        let t = Instant::now();
        let e = c.get::<Node>(path).unwrap_err();
        assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{path}: {e}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{path}: took {:?}",
            t.elapsed()
        );
    }
    // A silent watch is dropped after the idle timeout, well before the server's timeoutSeconds.
    let t = Instant::now();
    let mut s = c
        .watch::<Node>("/api/v1/nodes", &ListParams::default(), "1", 300)
        .unwrap();
    let e = s.next_event().unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------- the project's API test server

#[path = "apiserver/mod.rs"]
mod apiserver;

fn node_client(srv: &apiserver::ApiServer, node: &str) -> Client {
    let creds = srv.node_cert(node).unwrap();
    let cfg = ClusterConfig {
        server: srv.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: tinylet::api::Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    };
    Client::new(&cfg, fast_config()).unwrap()
}

fn server_pod(name: &str, node: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

/// Fake time for a ListWatch: `sleep` advances it instead of waiting.
/// The list+watch of node n1's pods with a seeded informer on a fake clock.
fn node_pods(
    srv: &apiserver::ApiServer,
    seed: u64,
    clock: Box<dyn FnMut() -> Instant + Send>,
) -> Mirrored {
    let informer = Informer::<TestPod>::with_rng(
        InformerConfig::default(),
        |p| &p.metadata,
        Box::new(XorShift64::new(seed)),
    );
    Mirrored::new(
        ListWatch::new(
            node_client(srv, "n1"),
            "/api/v1/pods",
            ListParams::fields("spec.nodeName=n1"),
            informer,
        )
        .with_clock(clock),
    )
}

fn fake_clock() -> (Box<dyn FnMut() -> Instant + Send>, Arc<Mutex<Duration>>) {
    let base = Instant::now();
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let o = offset.clone();
    (Box::new(move || base + *o.lock().unwrap()), offset)
}

#[test]
fn test_server_node_registration_status_patch_lease_and_node_authorizer() {
    use tinylet::k8s::coordination::{format_micro_time, Lease};
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1");
    let node = Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: tinylet::k8s::meta::ObjectMeta {
            name: "n1".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let created: Node = c.create("/api/v1/nodes", &node).unwrap();
    assert_eq!(created.metadata.name, "n1");
    assert!(!created.metadata.uid.is_empty());

    // NodeRestriction: another node's Node is forbidden.
    let mut other = node.clone();
    other.metadata.name = "n2".into();
    let e = c.create::<_, Node>("/api/v1/nodes", &other).unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");

    // Status goes through PATCH of the subresource, never a read of it.
    let patch = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "ok"}]}});
    let patched: Node = c
        .patch_strategic("/api/v1/nodes/n1/status", &patch)
        .unwrap();
    assert_eq!(patched.status.condition("Ready").unwrap().status, "True");
    let merged: Node = c
        .patch_merge(
            "/api/v1/nodes/n1/status",
            &serde_json::json!({"status": {"capacity": {"cpu": "4"}}}),
        )
        .unwrap();
    assert_eq!(merged.status.capacity["cpu"], "4");

    // Lease heartbeat: create, then renew with an optimistic-concurrency PUT.
    let lease = Lease::for_node("n1", 40, std::time::SystemTime::now());
    let mut held: Lease = c
        .create(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            &lease,
        )
        .unwrap();
    held.spec.renew_time = Some(format_micro_time(std::time::SystemTime::now()));
    let renewed: Lease = c
        .replace(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            &held,
        )
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        held.metadata.resource_version
    );
    // A stale resourceVersion is a conflict, not silently overwritten.
    let e = c
        .replace::<_, Lease>(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            &held,
        )
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    let stored = srv.lease("n1").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], "n1");
}

#[test]
fn test_server_list_watch_by_node_and_relist_after_compaction() {
    for mode in [
        apiserver::ExpiredMode::ErrorEvent,
        apiserver::ExpiredMode::Http410,
    ] {
        let srv = apiserver::start(apiserver::Config {
            history_limit: 4,
            expired: mode,
            ..apiserver::Config::tls()
        })
        .unwrap();
        srv.create(
            "/api/v1/namespaces/default/pods",
            server_pod("mine-0", "n1"),
        )
        .unwrap();
        srv.create(
            "/api/v1/namespaces/default/pods",
            server_pod("theirs", "n2"),
        )
        .unwrap();
        let (clock, offset) = fake_clock();
        let mut lw = node_pods(&srv, 9, clock);
        let mut sleep = |d: Duration| {
            *offset.lock().unwrap() += d;
            true
        };
        match lw.next_event(&mut sleep).unwrap() {
            InformerEvent::Resync(v) => {
                let names: Vec<_> = v.iter().map(|p| p.metadata.name.as_str()).collect();
                assert_eq!(names, ["mine-0"], "{mode:?}");
            }
            other => panic!("{other:?}"),
        }
        // While no watch is open, more changes than the history holds: the list's version
        // is compacted away, so the watch is refused and the informer must re-list.
        for i in 1..=8 {
            srv.create(
                "/api/v1/namespaces/default/pods",
                server_pod(&format!("mine-{i}"), "n1"),
            )
            .unwrap();
        }
        match lw.next_event(&mut sleep).unwrap() {
            InformerEvent::Resync(v) => assert_eq!(v.len(), 9, "{mode:?}"),
            other => panic!("{mode:?}: expected a resync after 410, got {other:?}"),
        }
        // And the watch from the new version delivers live changes.
        srv.create("/api/v1/namespaces/default/pods", server_pod("late", "n1"))
            .unwrap();
        srv.create(
            "/api/v1/namespaces/default/pods",
            server_pod("not-mine", "n2"),
        )
        .unwrap();
        match lw.next_event(&mut sleep).unwrap() {
            InformerEvent::Applied(p) => assert_eq!(p.metadata.name, "late"),
            other => panic!("{other:?}"),
        }
        assert_eq!(lw.names.len(), 10);
    }
}

#[test]
fn test_server_faults_throttle_and_cut_watch_are_survived() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.create("/api/v1/namespaces/default/pods", server_pod("a", "n1"))
        .unwrap();
    let (clock, offset) = fake_clock();
    let slept = Arc::new(Mutex::new(Vec::new()));
    let mut lw = node_pods(&srv, 11, clock);
    let slept2 = slept.clone();
    let mut sleep = move |d: Duration| {
        slept2.lock().unwrap().push(d);
        *offset.lock().unwrap() += d;
        true
    };
    // The first list is throttled with Retry-After: 3.
    srv.faults().throttle_next(1, 3);
    assert!(matches!(lw.next_event(&mut sleep), Some(InformerEvent::Resync(v)) if v.len() == 1));
    assert!(
        slept.lock().unwrap()[0] >= Duration::from_secs(3),
        "{:?}",
        slept.lock().unwrap()
    );
    // The watch is cut after one event; the informer re-watches from the last version and
    // nothing is lost or repeated.
    srv.faults().truncate_next_watch_after_events(1);
    srv.create("/api/v1/namespaces/default/pods", server_pod("b", "n1"))
        .unwrap();
    srv.create("/api/v1/namespaces/default/pods", server_pod("c", "n1"))
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match lw.next_event(&mut sleep).unwrap() {
            InformerEvent::Applied(p) => seen.push(p.metadata.name),
            InformerEvent::Resync(v) => panic!("unexpected relist: {v:?}"),
            InformerEvent::Deleted(p) => panic!("unexpected delete {p:?}"),
        }
    }
    assert_eq!(seen, ["b", "c"]);
    assert_eq!(lw.names.len(), 3);
}

#[test]
fn test_server_hostile_bodies_are_errors() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1");
    srv.create(
        "/api/v1/nodes",
        serde_json::json!({"metadata": {"name": "n1"}}),
    )
    .unwrap();
    for hostile in [
        apiserver::Hostile::InvalidJson,
        apiserver::Hostile::WrongTypes,
        apiserver::Hostile::HugeObject(100 << 20),
    ] {
        srv.faults().hostile_next(hostile);
        let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
        match (hostile, &e.kind) {
            (apiserver::Hostile::HugeObject(_), ApiErrorKind::TooLarge { .. }) => {}
            (apiserver::Hostile::HugeObject(_), _) => panic!("{e}"),
            (_, ApiErrorKind::Decode { .. }) => {}
            _ => panic!("{hostile:?}: {e}"),
        }
    }
    srv.faults().hostile_next(apiserver::Hostile::EndlessLine);
    let c = Client::new(
        &ClusterConfig {
            server: srv.url(),
            ca_pem: srv.ca_pem().as_bytes().to_vec(),
            tls_server_name: None,
            auth: tinylet::api::Auth {
                client_cert: None,
                bearer: Some(tinylet::api::kubeconfig::Bearer::Static(
                    srv.node_token("n1"),
                )),
            },
            namespace: None,
        },
        ClientConfig {
            max_watch_line: 1 << 20,
            ..fast_config()
        },
    )
    .unwrap();
    let mut s = c
        .watch::<TestPod>(
            "/api/v1/pods",
            &ListParams::fields("spec.nodeName=n1"),
            "1",
            60,
        )
        .unwrap();
    let e = loop {
        match s.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind, ApiErrorKind::TooLarge { limit: 1 << 20 });
}

/// Figure, not a check: how fast watch lines decode into typed objects (debug builds are
/// several times slower than release).
#[test]
fn watch_decoder_throughput_figure() {
    let mut wire = Vec::new();
    for i in 0..5000 {
        let ev = format!(
            "{{\"type\":\"MODIFIED\",\"object\":{{\"metadata\":{{\"name\":\"pod-{i}\",\"namespace\":\"default\",\"resourceVersion\":\"{i}\",\"labels\":{{\"app\":\"web\",\"tier\":\"frontend\"}},\"annotations\":{{\"kubernetes.io/config.seen\":\"2024-05-01T12:00:00Z\"}}}},\"spec\":{{\"nodeName\":\"n1\",\"containers\":[{{\"name\":\"c\",\"image\":\"nginx:1.27\",\"ports\":[{{\"containerPort\":80}}]}}]}},\"status\":{{\"phase\":\"Running\",\"podIP\":\"10.244.1.{}\"}}}}}}\n",
            i % 250
        );
        wire.extend_from_slice(ev.as_bytes());
    }
    let mut decoder = tinylet::api::watch::EventDecoder::<TestPod>::new(1 << 20);
    let start = Instant::now();
    let mut events = 0;
    for piece in wire.chunks(16 << 10) {
        decoder.push(piece);
        while let Some(ev) = decoder.next_event().unwrap() {
            assert!(matches!(ev, WatchEvent::Modified(_)));
            events += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(events, 5000);
    println!(
        "watch decode: {events} events, {:.1} MB in {:.3} s = {:.0} events/s, {:.1} MB/s",
        wire.len() as f64 / 1e6,
        secs,
        events as f64 / secs,
        wire.len() as f64 / 1e6 / secs
    );
}

#[test]
fn test_server_streaming_list_then_live_events() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    for i in 0..3 {
        srv.create(
            "/api/v1/namespaces/default/pods",
            server_pod(&format!("p{i}"), "n1"),
        )
        .unwrap();
    }
    srv.create(
        "/api/v1/namespaces/default/pods",
        server_pod("elsewhere", "n2"),
    )
    .unwrap();
    let (clock, offset) = fake_clock();
    let informer = Informer::<TestPod>::with_rng(
        InformerConfig {
            mode: tinylet::api::WatchMode::StreamingList,
            ..Default::default()
        },
        |p| &p.metadata,
        Box::new(XorShift64::new(13)),
    );
    let mut lw = ListWatch::new(
        node_client(&srv, "n1"),
        "/api/v1/pods",
        ListParams::fields("spec.nodeName=n1"),
        informer,
    )
    .with_clock(clock);
    let mut sleep = |d: Duration| {
        *offset.lock().unwrap() += d;
        true
    };
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Resync(v) => {
            let names: Vec<_> = v.iter().map(|p| p.metadata.name.as_str()).collect();
            assert_eq!(names, ["p0", "p1", "p2"]);
        }
        other => panic!("{other:?}"),
    }
    srv.create("/api/v1/namespaces/default/pods", server_pod("p3", "n1"))
        .unwrap();
    match lw.next_event(&mut sleep).unwrap() {
        InformerEvent::Applied(p) => assert_eq!(p.metadata.name, "p3"),
        other => panic!("{other:?}"),
    }
    // One request did it all: no separate list.
    let log = srv.stats().log();
    let pods: Vec<_> = log.iter().filter(|r| r.resource == "pods").collect();
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].verb, "watch");
    assert!(
        pods[0].target.contains("sendInitialEvents=true"),
        "{}",
        pods[0].target
    );
    assert!(pods[0].target.contains("resourceVersionMatch=NotOlderThan"));
}
