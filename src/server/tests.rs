//! The server over real sockets on 127.0.0.1: TLS, request heads (bounded in size and time),
//! bounded connections, authentication refusals, hostile paths and container logs (tail,
//! timestamps, follow until the container ends).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, RootCertStore, StreamOwned};

use super::tls::{self, ServingPair};
use super::view::{ContainerRun, NodeView};
use super::*;

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinylet-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pair() -> ServingPair {
    tls::self_signed(
        "node-a",
        &[],
        &["127.0.0.1".parse().unwrap()],
        SystemTime::now(),
    )
    .unwrap()
}

fn settings(anonymous: bool, logs: &std::path::Path) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().unwrap(),
        node_name: "node-a".into(),
        authn: AuthnPolicy {
            token_webhook: false,
            anonymous,
        },
        authorization: AuthorizationMode::AlwaysAllow,
        token_ttl: Duration::from_secs(120),
        allowed_ttl: Duration::from_secs(300),
        denied_ttl: Duration::from_secs(30),
        pod_logs_dir: logs.to_path_buf(),
        max_connections: 8,
        // The handshake gets the production bound: under emulation (armv7 in qemu-user) a
        // TLS handshake alone takes longer than the short head bound the stall test wants.
        handshake_timeout: super::HEADER_TIMEOUT,
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(5),
        streams: stream::StreamSettings::default(),
        stats: None,
    }
}

fn connect(server: &Server, pair: &ServingPair) -> std::io::Result<Tls> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pair.cert_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let name = ServerName::IpAddress(server.addr.ip().into());
    let mut s = StreamOwned::new(
        ClientConnection::new(Arc::new(cfg), name).map_err(std::io::Error::other)?,
        tcp,
    );
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// Reads one response: status code and body (whole or de-chunked).
fn response(rd: &mut BufReader<&mut Tls>) -> (u16, String) {
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    let code: u16 = line.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).unwrap();
        let h = h.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length: ") {
            len = v.parse::<usize>().ok();
        }
        chunked |= h == "transfer-encoding: chunked";
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            rd.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; n + 2];
            rd.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len.unwrap_or(0), 0);
        rd.read_exact(&mut body).unwrap();
    }
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn get(server: &Server, pair: &ServingPair, path: &str) -> (u16, String) {
    let mut s = connect(server, pair).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: n\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    response(&mut rd)
}

#[test]
fn anonymous_is_refused_unless_enabled_and_keep_alive_works() {
    let dir = temp_dir("anon");
    let p = pair();
    let closed = start_with(settings(false, &dir), &p, None, NodeView::default()).unwrap();
    assert_eq!(get(&closed, &p, "/healthz"), (401, "Unauthorized\n".into()));
    let open = start_with(settings(true, &dir), &p, None, NodeView::default()).unwrap();
    let mut s = connect(&open, &p).unwrap();
    // Two pipelined requests on one connection.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: n\r\n\r\nGET /pods HTTP/1.1\r\nHost: n\r\n\r\n")
        .unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    assert_eq!(response(&mut rd), (200, "ok".into()));
    let (code, body) = response(&mut rd);
    assert_eq!(code, 200);
    assert!(body.contains("\"kind\":\"PodList\""), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_requests_get_clear_errors() {
    let dir = temp_dir("hostile");
    let p = pair();
    let server = start_with(settings(true, &dir), &p, None, NodeView::default()).unwrap();
    for path in [
        "/containerLogs/%2e%2e/x/y",
        "/containerLogs/a/b%00/c",
        &format!("/{}", "a".repeat(5000)),
    ] {
        assert_eq!(
            get(&server, &p, path).0,
            400,
            "{}",
            &path[..path.len().min(40)]
        );
    }
    assert_eq!(get(&server, &p, "/nothing/here").0, 404);
    // A client that stalls mid-headers gets 408 once the header timeout passes.
    let mut s = connect(&server, &p).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    assert_eq!(response(&mut rd).0, 408);
    // Oversized heads: 431.
    let mut s = connect(&server, &p).unwrap();
    let pad = "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(400);
    let _ = write!(s, "GET /healthz HTTP/1.1\r\n{pad}\r\n");
    let _ = s.flush();
    let mut rd = BufReader::new(&mut s);
    assert_eq!(response(&mut rd).0, 431);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_over_the_bound_are_closed() {
    let dir = temp_dir("bound");
    let p = pair();
    let mut st = settings(true, &dir);
    st.max_connections = 1;
    st.header_timeout = Duration::from_secs(5);
    let server = start_with(st, &p, None, NodeView::default()).unwrap();
    let held = connect(&server, &p).unwrap();
    // The second connection is closed before its handshake completes.
    assert!(connect(&server, &p).is_err());
    drop(held);
    // Once the first is gone (the server sees its close), there is room again.
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut s) = connect(&server, &p) {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: n\r\n\r\n")
                .unwrap();
            let mut rd = BufReader::new(&mut s);
            ok = response(&mut rd).0 == 200;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "a slot frees when a connection ends");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn container_logs_tail_timestamps_and_follow() {
    let dir = temp_dir("logs");
    let p = pair();
    let view = NodeView::default();
    let pod: crate::k8s::pod::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
    }))
    .unwrap();
    view.set_pods(vec![Arc::new(pod)]);
    let cdir = dir.join("default_web_u1").join("app");
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        cdir.join("0.log"),
        "2024-01-01T00:00:00.000000001Z stdout F first\n\
         2024-01-01T00:00:01.000000001Z stderr P sec\n\
         2024-01-01T00:00:01.000000002Z stderr F ond\n",
    )
    .unwrap();
    let server = start_with(settings(true, &dir), &p, None, view.clone()).unwrap();
    let logs = "/containerLogs/default/web/app";
    assert_eq!(get(&server, &p, logs), (200, "first\nsecond\n".into()));
    assert_eq!(
        get(&server, &p, &format!("{logs}?tailLines=1&timestamps=true")),
        (200, "2024-01-01T00:00:01.000000001Z second\n".into())
    );
    assert_eq!(
        get(&server, &p, "/containerLogs/default/nope/app"),
        (404, "pod \"nope\" does not exist\n".into())
    );
    assert_eq!(
        get(&server, &p, "/containerLogs/default/web/db"),
        (404, "container \"db\" not found in pod \"web\"\n".into())
    );
    assert_eq!(get(&server, &p, &format!("{logs}?previous=true")).0, 400);
    assert_eq!(get(&server, &p, &format!("{logs}?tailLines=-5")).0, 422);

    // Follow: a line appended later arrives; the stream ends when the container stops.
    view.put_container(
        "u1",
        "app",
        ContainerRun {
            attempt: 0,
            running: true,
        },
    );
    let mut s = connect(&server, &p).unwrap();
    write!(s, "GET {logs}?follow=true HTTP/1.1\r\nHost: n\r\n\r\n").unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    let mut head = String::new();
    rd.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
    }
    let mut next_chunk = || {
        let mut size = String::new();
        rd.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut c = vec![0u8; n + 2];
        rd.read_exact(&mut c).unwrap();
        String::from_utf8_lossy(&c[..n]).into_owned()
    };
    assert_eq!(next_chunk(), "first\nsecond\n");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(cdir.join("0.log"))
        .unwrap();
    f.write_all(b"2024-01-01T00:00:02Z stdout F later\n")
        .unwrap();
    assert_eq!(next_chunk(), "later\n");
    view.put_container(
        "u1",
        "app",
        ContainerRun {
            attempt: 0,
            running: false,
        },
    );
    assert_eq!(next_chunk(), "", "the last chunk ends the stream");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ten_megabyte_log_is_read_whole() {
    let dir = temp_dir("big");
    let p = pair();
    let view = NodeView::default();
    let pod: crate::k8s::pod::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "big", "namespace": "default", "uid": "u2"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
    }))
    .unwrap();
    view.set_pods(vec![Arc::new(pod)]);
    let cdir = dir.join("default_big_u2").join("app");
    std::fs::create_dir_all(&cdir).unwrap();
    let mut file = Vec::new();
    let mut want = Vec::new();
    let mut i = 0u64;
    while want.len() < 10 << 20 {
        let msg = format!("line {i:08} {}", "x".repeat(100));
        file.extend_from_slice(format!("2024-01-01T00:00:00.{i:09}Z stdout F {msg}\n").as_bytes());
        want.extend_from_slice(msg.as_bytes());
        want.push(b'\n');
        i += 1;
    }
    std::fs::write(cdir.join("0.log"), &file).unwrap();
    let server = start_with(settings(true, &dir), &p, None, view).unwrap();
    let (code, body) = get(&server, &p, "/containerLogs/default/big/app");
    assert_eq!(code, 200);
    assert_eq!(body.len(), want.len());
    assert!(body.as_bytes() == want.as_slice(), "content differs");
    let _ = std::fs::remove_dir_all(&dir);
}

fn send(server: &Server, pair: &ServingPair, head: &str) -> (u16, String) {
    let mut s = connect(server, pair).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    response(&mut rd)
}

#[test]
fn stream_requests_get_clear_errors() {
    let dir = temp_dir("streams");
    let p = pair();
    let view = NodeView::default();
    let pod: crate::k8s::pod::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
    }))
    .unwrap();
    view.set_pods(vec![Arc::new(pod)]);
    let mut st = settings(true, &dir);
    st.streams.runtime_endpoint = Some(dir.join("no-runtime.sock").display().to_string());
    let server = start_with(st.clone(), &p, None, view.clone()).unwrap();
    let up = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";
    let exec = "/exec/default/web/app?command=sh&output=1";
    // The kubelet's proxy requires an upgrade: without one nothing reaches the runtime.
    assert_eq!(
        send(
            &server,
            &p,
            &format!("POST {exec} HTTP/1.1\r\nHost: n\r\n\r\n")
        ),
        (400, "Upgrade request required\n".into())
    );
    let (code, body) = send(
        &server,
        &p,
        &format!("POST {exec} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
    );
    assert_eq!(code, 400, "{body}");
    // Upstream wording: "you must specify at least 1 of stdin, stdout, stderr".
    assert_eq!(
        send(
            &server,
            &p,
            &format!("POST /exec/default/web/app?command=sh HTTP/1.1\r\n{up}\r\n")
        ),
        (
            400,
            "you must specify at least 1 of stdin, stdout, stderr\n".into()
        )
    );
    assert_eq!(
        send(&server, &p, &format!("PUT {exec} HTTP/1.1\r\n{up}\r\n")).0,
        405
    );
    // Unknown pod and container: 404 in the kubelet's words.
    assert_eq!(
        send(
            &server,
            &p,
            &format!("POST /exec/default/nope/app?command=sh&output=1 HTTP/1.1\r\n{up}\r\n")
        ),
        (404, "pod does not exist\n".into())
    );
    assert_eq!(
        send(
            &server,
            &p,
            &format!("POST /attach/default/web/u1/nope?output=1 HTTP/1.1\r\n{up}\r\n")
        ),
        (404, "container not found (\"nope\")\n".into())
    );
    assert_eq!(
        send(
            &server,
            &p,
            &format!("GET /portForward/default/web/other-uid HTTP/1.1\r\n{up}\r\n")
        ),
        (404, "pod not found\n".into())
    );
    // A runtime that cannot be reached: a 500 naming the CRI call.
    let (code, body) = send(&server, &p, &format!("POST {exec} HTTP/1.1\r\n{up}\r\n"));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("ListContainers"), "{body}");
    // More streams than the bound: 429.
    st.streams.max_streams = 0;
    let full = start_with(st, &p, None, view).unwrap();
    let (code, body) = send(&full, &p, &format!("POST {exec} HTTP/1.1\r\n{up}\r\n"));
    assert_eq!(code, 429, "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn streams_are_relayed_byte_for_byte_to_the_runtime_url() {
    use crate::cri::fake_runtime::{self, framed, Reply};
    use crate::cri::proto::{Container, ContainerState, ListContainersResponse};
    use crate::cri::proto_stream::ExecResponse;

    // The runtime's streaming server: records the head it gets, answers 101, echoes bytes
    // until "bye\n", then closes.
    let runtime = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stream_addr = runtime.local_addr().unwrap();
    let (head_tx, head_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = runtime.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let _ = head_tx.send(String::from_utf8_lossy(&head).into_owned());
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
        );
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"bye\n") {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let _ = s.write_all(&buf[..n]);
        }
    });
    let url = format!("http://{stream_addr}/exec/tok123");
    let fake = fake_runtime::start("stream-relay", move |_, path| {
        if path.ends_with("/ListContainers") {
            let running = Container {
                id: "cid".into(),
                state: ContainerState::ContainerRunning as i32,
                created_at: 1,
                ..Container::default()
            };
            let list = ListContainersResponse {
                containers: vec![running],
            };
            Reply::Body(framed(&list), 1 << 16)
        } else if path.ends_with("/Exec") {
            Reply::Body(framed(&ExecResponse { url: url.clone() }), 1 << 16)
        } else {
            Reply::TrailersOnly(12, "unimplemented")
        }
    });

    let dir = temp_dir("relay");
    let p = pair();
    let view = NodeView::default();
    let pod: crate::k8s::pod::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
    }))
    .unwrap();
    view.set_pods(vec![Arc::new(pod)]);
    let mut st = settings(true, &dir);
    st.streams.runtime_endpoint = Some(format!("unix://{}", fake.path.display()));
    let server = start_with(st, &p, None, view).unwrap();

    let mut s = connect(&server, &p).unwrap();
    s.write_all(
        b"POST /exec/default/web/app?command=sh&input=1&output=1 HTTP/1.1\r\nHost: node-a\r\n\
          Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n",
    )
    .unwrap();
    s.flush().unwrap();
    let mut rd = BufReader::new(&mut s);
    let mut status = String::new();
    rd.read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols\r\n");
    loop {
        let mut h = String::new();
        rd.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
    }
    // The runtime got the client's head with its own path and host.
    let head = head_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        head.starts_with(&format!(
            "POST /exec/tok123 HTTP/1.1\r\nHost: {stream_addr}\r\n"
        )),
        "{head}"
    );
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io\r\n"),
        "{head}"
    );
    // Both directions, then the runtime's close ends the client's stream.
    for msg in ["hello\n", "bye\n"] {
        rd.get_mut().write_all(msg.as_bytes()).unwrap();
        rd.get_mut().flush().unwrap();
        let mut back = String::new();
        rd.read_line(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    let mut rest = Vec::new();
    let _ = rd.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
