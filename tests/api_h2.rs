//! The API client's HTTP/2 link against the project's API test server (which speaks h2 when
//! offered) and against hostile HTTP/2 peers on 127.0.0.1: verified TLS with client
//! certificates or tokens, Status errors and Retry-After, dropped connections and reconnects,
//! the HTTP/1.1 fallback, bounded bodies, garbage frames and GOAWAY. Also prints the bytes one
//! Lease renewal costs over HTTP/1.1 and over HTTP/2.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tinylet::api::client::{
    ApiErrorKind, Client, ClientConfig, ListParams, ACCEPT_METADATA, MERGE_PATCH,
};
use tinylet::api::h2link::TlsStream;
use tinylet::api::{Auth, Bearer, ClusterConfig};
use tinylet::k8s::coordination::{format_micro_time, Lease};
use tinylet::k8s::node::Node;

#[path = "apiserver/mod.rs"]
mod apiserver;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

fn fast_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        watch_idle_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

fn cluster(srv: &apiserver::ApiServer, auth: Auth) -> ClusterConfig {
    ClusterConfig {
        server: srv.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth,
        namespace: None,
    }
}

fn cert_auth(srv: &apiserver::ApiServer, node: &str) -> Auth {
    let creds = srv.node_cert(node).unwrap();
    Auth {
        client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
        bearer: None,
    }
}

fn node_client(srv: &apiserver::ApiServer, node: &str, cfg: ClientConfig) -> Client {
    Client::new(&cluster(srv, cert_auth(srv, node)), cfg).unwrap()
}

fn node(name: &str) -> Node {
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: tinylet::k8s::meta::ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn renewal_patch(rv: &str, name: &str) -> Value {
    json!({
        "metadata": {"resourceVersion": rv},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": format_micro_time(SystemTime::now()),
        },
    })
}

#[test]
fn client_certificate_over_verified_h2_for_every_single_object_verb() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let created: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    assert!(
        c.uses_http2(),
        "the server offers h2 but the client did not use it"
    );
    assert_eq!(created.metadata.name, "n1");
    let got: Node = c.get("/api/v1/nodes/n1").unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    let patched: Node = c
        .patch_strategic(
            "/api/v1/nodes/n1/status",
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap();
    assert_eq!(patched.status.condition("Ready").unwrap().status, "True");
    let lease: Lease = c
        .create(LEASES, &Lease::for_node("n1", 40, SystemTime::now()))
        .unwrap();
    let renewed: Lease = c
        .patch_merge(
            &format!("{LEASES}/n1"),
            &renewal_patch(&lease.metadata.resource_version, "n1"),
        )
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        lease.metadata.resource_version
    );
    let replaced: Lease = c.replace(&format!("{LEASES}/n1"), &renewed).unwrap();
    assert_eq!(replaced.spec.holder_identity.as_deref(), Some("n1"));
    // A stale resourceVersion is a conflict over h2 as over HTTP/1.1.
    let e = c
        .patch_merge::<_, Lease>(
            &format!("{LEASES}/n1"),
            &renewal_patch(&lease.metadata.resource_version, "n1"),
        )
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    // Lists stay on HTTP/1.1 and still work next to the link.
    let nodes = c
        .list::<Node>("/api/v1/nodes", &ListParams::default())
        .unwrap();
    assert_eq!(nodes.items.len(), 1);
    let log = srv.stats().log();
    assert!(log.iter().all(|r| r.user == "system:node:n1"), "{log:?}");
    assert_eq!(srv.stats().count("patch", "leases.coordination.k8s.io"), 2);
    // One h2 connection for all single-object requests, one HTTP/1.1 for the list.
    assert_eq!(srv.stats().connections(), 2);
}

#[test]
fn tls_server_name_is_verified_over_h2() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let mut cfg = cluster(&srv, cert_auth(&srv, "n1"));
    cfg.tls_server_name = Some("localhost".into());
    let c = Client::new(&cfg, fast_config()).unwrap();
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    assert!(c.uses_http2());
    cfg.tls_server_name = Some("kubernetes.default.svc".into());
    let c = Client::new(&cfg, fast_config()).unwrap();
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    // Nothing reached the handler over the unverified name.
    assert_eq!(srv.stats().count("get", "nodes"), 0);
}

#[test]
fn raw_patch_asks_for_another_content_type_over_both_transports() {
    for http2 in [true, false] {
        let srv = apiserver::start(apiserver::Config::tls()).unwrap();
        let c = node_client(
            &srv,
            "n1",
            ClientConfig {
                http2,
                ..fast_config()
            },
        );
        let lease: Lease = c
            .create(LEASES, &Lease::for_node("n1", 40, SystemTime::now()))
            .unwrap();
        let body =
            serde_json::to_vec(&renewal_patch(&lease.metadata.resource_version, "n1")).unwrap();
        let (ctype, bytes) = c
            .patch_raw(
                &format!("{LEASES}/n1"),
                MERGE_PATCH,
                &body,
                "application/vnd.kubernetes.protobuf, application/json",
            )
            .unwrap();
        // Protobuf, as a real server answers for a Lease.
        assert_eq!(ctype, "application/vnd.kubernetes.protobuf");
        let l = tinylet::k8s::protobuf::decode_lease(&bytes).unwrap();
        assert_eq!(l.spec.holder_identity.as_deref(), Some("n1"));
        assert_ne!(l.metadata.resource_version, lease.metadata.resource_version);
        // JSON only: JSON.
        let (ctype, bytes) = c
            .patch_raw(
                &format!("{LEASES}/n1"),
                MERGE_PATCH,
                &serde_json::to_vec(&renewal_patch(&l.metadata.resource_version, "n1")).unwrap(),
                "application/json",
            )
            .unwrap();
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let l: Lease = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(l.spec.holder_identity.as_deref(), Some("n1"));
        // The metadata alone, in protobuf: what renewals ask for.
        let (ctype, bytes) = c
            .patch_raw(
                &format!("{LEASES}/n1"),
                MERGE_PATCH,
                &serde_json::to_vec(&renewal_patch(&l.metadata.resource_version, "n1")).unwrap(),
                ACCEPT_METADATA,
            )
            .unwrap();
        assert_eq!(ctype, "application/vnd.kubernetes.protobuf");
        assert!(
            tinylet::k8s::protobuf::decode_lease(&bytes).is_err(),
            "no spec: not a Lease"
        );
        let (kind, meta) = tinylet::k8s::protobuf::decode_metadata(&bytes).unwrap();
        assert_eq!(kind, "PartialObjectMetadata");
        assert_eq!(meta.name, "n1");
        assert_ne!(meta.resource_version, l.metadata.resource_version);
        // An error asked for in protobuf comes back in protobuf and still reads as a Status.
        let err = c
            .patch_raw(
                &format!("{LEASES}/n1"),
                MERGE_PATCH,
                &serde_json::to_vec(&renewal_patch("1", "n1")).unwrap(),
                ACCEPT_METADATA,
            )
            .unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(err.to_string().contains("modified"), "{err}");
        assert_eq!(c.uses_http2(), http2);
    }
}

#[test]
fn bearer_tokens_and_rotated_token_files_over_h2() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let token = srv.node_token("n1");
    let c = Client::new(
        &cluster(
            &srv,
            Auth {
                client_cert: None,
                bearer: Some(Bearer::Static(token)),
            },
        ),
        fast_config(),
    )
    .unwrap();
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    assert!(c.uses_http2());

    let dir = std::env::temp_dir().join(format!("tinylet-api-h2-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    srv.add_token("first", apiserver::User::node("n1"));
    srv.add_token("second-longer", apiserver::User::node("n1"));
    std::fs::write(&file, "first\n").unwrap();
    let c = Client::new(
        &cluster(
            &srv,
            Auth {
                client_cert: None,
                bearer: Some(Bearer::File(file.clone())),
            },
        ),
        fast_config(),
    )
    .unwrap();
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    std::fs::write(&file, "second-longer\n").unwrap();
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    std::fs::write(&file, "unknown\n").unwrap();
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let users: Vec<String> = srv.stats().log().iter().map(|r| r.user.clone()).collect();
    assert_eq!(
        users,
        ["system:node:n1", "system:node:n1", "system:node:n1", ""]
    );
}

#[test]
fn status_errors_and_retry_after_over_h2() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let e = c.get::<Node>("/api/v1/nodes/missing").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    match &e.kind {
        ApiErrorKind::Status { reason, .. } => assert_eq!(reason, "NotFound"),
        other => panic!("{other:?}"),
    }
    let e = c
        .create::<_, Node>("/api/v1/nodes", &node("n2"))
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(!e.is_retryable());

    srv.faults().throttle_next(1, 7);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.code(), Some(429), "{e}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(e.is_retryable());
    srv.faults().fail_next(1, 503);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.code(), Some(503), "{e}");
    assert!(c.uses_http2());
    // Errors did not cost the connection.
    assert_eq!(srv.stats().connections(), 1);
}

#[test]
fn dropped_reset_and_down_connections_are_transport_errors_then_reconnect() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    srv.faults().drop_next(1);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(
        matches!(e.kind, ApiErrorKind::Transport(_)) && e.is_retryable(),
        "{e}"
    );
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    srv.faults().reset_next(1);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    assert_eq!(srv.stats().connections(), 3);

    srv.down();
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    srv.up().unwrap();
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    assert!(c.uses_http2());

    // A server slower than the read timeout: transport error, then the next request works.
    let rule = srv.faults().delay_all(Duration::from_millis(2500));
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    srv.faults().remove(rule);
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
}

#[test]
fn concurrent_callers_share_one_connection() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    // One slow request does not hold up the others on the same connection.
    srv.faults().add_matching(
        apiserver::Fault::Delay(Duration::from_millis(600)),
        apiserver::Trigger::Next(1),
        apiserver::Matcher {
            path_contains: Some("/nodes/n1".into()),
            ..Default::default()
        },
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(srv.stats().count("get", "nodes"), 40);
    assert_eq!(srv.stats().connections(), 1);
}

#[test]
fn falls_back_to_http1_when_the_server_has_no_h2() {
    let srv = apiserver::start(apiserver::Config {
        http2: false,
        ..apiserver::Config::tls()
    })
    .unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    assert!(!c.uses_http2());
    for _ in 0..3 {
        let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    }
    srv.faults().throttle_next(1, 3);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.retry_after, Some(Duration::from_secs(3)), "{e}");
    // The h2 probe once, then the HTTP/1.1 keep-alive connection.
    assert_eq!(srv.stats().connections(), 2);
    // Switched off: never probes.
    let off = node_client(
        &srv,
        "n1",
        ClientConfig {
            http2: false,
            ..fast_config()
        },
    );
    srv.stats().reset();
    let _: Node = off.get("/api/v1/nodes/n1").unwrap();
    assert_eq!(srv.stats().connections(), 1);
}

#[test]
fn hostile_bodies_over_h2_are_bounded_errors() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(
        &srv,
        "n1",
        ClientConfig {
            max_body: 1 << 20,
            read_timeout: Duration::from_secs(5),
            ..fast_config()
        },
    );
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    srv.faults()
        .hostile_next(apiserver::Hostile::HugeObject(8 << 20));
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::TooLarge { limit: 1 << 20 }, "{e}");
    srv.faults().hostile_next(apiserver::Hostile::EndlessLine);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert_eq!(e.kind, ApiErrorKind::TooLarge { limit: 1 << 20 }, "{e}");
    srv.faults().hostile_next(apiserver::Hostile::InvalidJson);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Decode { .. }), "{e}");
    srv.faults().hostile_next(apiserver::Hostile::WrongTypes);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Decode { .. }), "{e}");
    // Cut mid-answer: a transport error, and the link recovers.
    srv.faults().add(
        apiserver::Fault::TruncateAfterBytes(10),
        apiserver::Trigger::Next(1),
    );
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
    assert!(c.uses_http2());
}

#[test]
fn bodies_larger_than_the_flow_control_windows_go_both_ways() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let admin = srv.admin_cert().unwrap();
    let c = Client::new(
        &cluster(
            &srv,
            Auth {
                client_cert: Some((admin.cert_pem.into_bytes(), admin.key_pem.into_bytes())),
                bearer: None,
            },
        ),
        ClientConfig {
            read_timeout: Duration::from_secs(10),
            ..fast_config()
        },
    )
    .unwrap();
    // 3 MiB: beyond the server's 1 MiB stream window and the client's 256 KiB one.
    let blob: String = (0..3 << 20)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": "default"}, "data": {"blob": blob}});
    let created: Value = c
        .create("/api/v1/namespaces/default/configmaps", &cm)
        .unwrap();
    assert_eq!(
        created["data"]["blob"].as_str().map(str::len),
        Some(3 << 20)
    );
    let got: Value = c.get("/api/v1/namespaces/default/configmaps/big").unwrap();
    assert_eq!(got["data"]["blob"], cm["data"]["blob"]);
    assert!(c.uses_http2());
}

#[test]
fn trickled_answers_complete_or_hit_the_request_timeout() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    let c = node_client(&srv, "n1", fast_config());
    let _: Node = c.create("/api/v1/nodes", &node("n1")).unwrap();
    // 64 bytes every 5 ms: a few hundred bytes arrive well within the timeout.
    let rule = srv.faults().trickle_all(64, Duration::from_millis(5));
    let got: Node = c.get("/api/v1/nodes/n1").unwrap();
    assert_eq!(got.metadata.name, "n1");
    srv.faults().remove(rule);
    // 16 bytes every 200 ms never finishes within 2 s.
    let rule = srv.faults().trickle_all(16, Duration::from_millis(200));
    let t = std::time::Instant::now();
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    srv.faults().remove(rule);
    let _: Node = c.get("/api/v1/nodes/n1").unwrap();
}

// ---------------------------------------------------------------- hostile raw peers

/// A CA and a server certificate for 127.0.0.1, made once by the `openssl` CLI.
struct Certs {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("tinylet-api-h2-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut a = vec![
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=h2-test-ca",
        ];
        a.extend(ec);
        a.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        a.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&dir, &a);
        let mut a = vec!["req", "-nodes", "-subj", "/CN=h2-test-server"];
        a.extend(ec);
        a.extend(["-keyout", "srv.key", "-out", "srv.csr"]);
        openssl(&dir, &a);
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "srv.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext",
                "-out",
                "srv.crt",
            ],
        );
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let c = Certs {
            ca: read("ca.crt"),
            cert: read("srv.crt"),
            key: read("srv.key"),
        };
        let _ = std::fs::remove_dir_all(&dir);
        c
    })
}

fn server_tls(alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let c = certs();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.cert)
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&c.key).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn raw_client(port: u16) -> Client {
    Client::new(
        &ClusterConfig {
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: certs().ca.clone(),
            tls_server_name: None,
            auth: Auth::default(),
            namespace: None,
        },
        fast_config(),
    )
    .unwrap()
}

/// Accepts up to `conns` connections, completing TLS with ALPN h2, and hands each to `serve`.
fn raw_h2_peer(
    conns: usize,
    serve: impl Fn(rustls::StreamOwned<rustls::ServerConnection, TcpStream>) + Send + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = server_tls(&[b"h2"]);
    let t = std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            while tls.conn.is_handshaking() {
                if tls.conn.complete_io(&mut tls.sock).is_err() {
                    return;
                }
            }
            serve(tls);
        }
    });
    (port, t)
}

#[test]
fn garbage_frames_are_transport_errors_without_panics() {
    const GARBAGE: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        // A frame header announcing 16 MiB of SETTINGS.
        b"\xff\xff\xff\x04\x00\x00\x00\x00\x00",
        // A DATA frame on stream 0 before any SETTINGS.
        b"\x00\x00\x04\x00\x01\x00\x00\x00\x00abcd",
        // Nothing at all: the peer just closes.
        b"",
    ];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (port, t) = raw_h2_peer(GARBAGE.len(), move |mut tls| {
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut tls, &mut buf);
        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = tls.write_all(GARBAGE[k % GARBAGE.len()]);
        let _ = tls.flush();
        std::thread::sleep(Duration::from_millis(200));
    });
    let c = raw_client(port);
    for _ in 0..GARBAGE.len() {
        let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
        assert!(
            matches!(e.kind, ApiErrorKind::Transport(_)) && e.is_retryable(),
            "{e}"
        );
        // The server did pick h2: nothing fell back to HTTP/1.1.
        assert!(c.uses_http2());
    }
    t.join().unwrap();
}

#[test]
fn goaway_and_stream_reset_are_transport_errors() {
    use tinylet::api::h2link::ALPN_H2;
    // Served with h2 itself over the crate's TLS adapter (server side).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = server_tls(&[ALPN_H2]);
    let t = std::thread::spawn(move || {
        for round in 0..2 {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let cfg = cfg.clone();
            smol::block_on(async move {
                let tcp = smol::Async::new(tcp).unwrap();
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = TlsStream::new(conn, tcp);
                tls.handshake().await.unwrap();
                let mut h2 = h2::server::handshake(tls).await.unwrap();
                if let Some(Ok((_req, mut respond))) = h2.accept().await {
                    if round == 0 {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        h2.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    }
                }
                // Drive the connection until the client goes away (bounded by its timeouts).
                let _ = smol::future::or(
                    async { while let Some(Ok(_)) = h2.accept().await {} },
                    async {
                        smol::Timer::after(Duration::from_secs(3)).await;
                    },
                )
                .await;
            });
        }
    });
    let c = raw_client(port);
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(
        matches!(&e.kind, ApiErrorKind::Transport(m) if m.contains("reset")),
        "{e}"
    );
    let e = c.get::<Node>("/api/v1/nodes/n1").unwrap_err();
    assert!(matches!(e.kind, ApiErrorKind::Transport(_)), "{e}");
    drop(c);
    t.join().unwrap();
}

// ---------------------------------------------------------------- figures

/// Bytes at the server's socket per Lease renewal (merge PATCH, resourceVersion-guarded),
/// after the connection is up, over HTTP/1.1 and over HTTP/2.
#[test]
fn lease_renewal_bytes_http1_vs_http2() {
    const N: u64 = 50;
    let mut per = Vec::new();
    for http2 in [false, true] {
        let srv = apiserver::start(apiserver::Config::tls()).unwrap();
        let c = node_client(
            &srv,
            "n1",
            ClientConfig {
                http2,
                ..fast_config()
            },
        );
        let mut lease: Lease = c
            .create(LEASES, &Lease::for_node("n1", 40, SystemTime::now()))
            .unwrap();
        // First renewal outside the count: connection setup is paid once per link.
        lease = c
            .patch_merge(
                &format!("{LEASES}/n1"),
                &renewal_patch(&lease.metadata.resource_version, "n1"),
            )
            .unwrap();
        let (in0, out0) = (srv.stats().bytes_in(), srv.stats().bytes_out());
        for _ in 0..N {
            lease = c
                .patch_merge(
                    &format!("{LEASES}/n1"),
                    &renewal_patch(&lease.metadata.resource_version, "n1"),
                )
                .unwrap();
        }
        let up = (srv.stats().bytes_in() - in0) / N;
        let down = (srv.stats().bytes_out() - out0) / N;
        println!(
            "lease renewal over {}: {up} B up, {down} B down, {} B total per renewal",
            if http2 { "HTTP/2" } else { "HTTP/1.1" },
            up + down
        );
        assert_eq!(c.uses_http2(), http2);
        let body = serde_json::to_vec(&srv.lease("n1").unwrap()).unwrap().len();
        let patch = serde_json::to_vec(&renewal_patch("1234", "n1"))
            .unwrap()
            .len();
        println!("  (patch body about {patch} B, answer body about {body} B)");
        per.push(up + down);
    }
    assert!(
        per[1] < per[0],
        "HTTP/2 {} B vs HTTP/1.1 {} B",
        per[1],
        per[0]
    );
}
