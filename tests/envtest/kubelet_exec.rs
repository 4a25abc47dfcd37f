//! `kubectl exec`, `attach` and `port-forward` on a tinylet node, through the real
//! kube-apiserver with the real kubectl: the API server opens an upgraded (SPDY) connection
//! to the node's `/exec`, `/attach` or `/portForward`, and the agent relays it to containerd's
//! streaming server, as the kubelet does.
//!
//! Upstream behaviour checked: `kubectl exec` carries stdout and stderr apart and exits with
//! the command's exit code; `-i` passes stdin and its end; `-t` gives the command a terminal
//! (stdin and stdout are TTYs); `attach -i` joins a running container's stdin and stdout;
//! `port-forward` tunnels TCP connections to a port in the pod's network namespace; the
//! WebSocket protocol (`v4.channel.k8s.io`) passes through as well as SPDY; a user
//! RBAC does not allow is refused with the kubelet's message and verb `create`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;

use super::apiserver::client::TestClient;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::kubelet_api::served_node;
use super::real::RealCluster;
use super::scenarios::{pod_path, poll, wait_ready, LIMIT};

/// A child process killed and reaped when the test lets go of it (pass or fail).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a reader yields, sent from a thread.
fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line satisfying `want`; the lines seen so far on failure.
fn wait_line(
    rx: &mpsc::Receiver<String>,
    want: impl Fn(&str) -> bool,
) -> Result<String, Vec<String>> {
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < LIMIT {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if want(&l) => return Ok(l),
            Ok(l) => seen.push(l),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Err(seen)
}

/// Waits (bounded) for a child to exit.
fn wait_exit(child: &mut Child) -> Option<std::process::ExitStatus> {
    poll(LIMIT, || child.try_wait().ok().flatten())
}

/// An HTTP/1.0 GET through `addr`; the whole answer.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What a WebSocket exec returned.
#[derive(Debug, Default)]
pub struct WsExec {
    /// The subprotocol the server chose.
    pub protocol: String,
    /// Channels 1 and 2.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Channel 3: the exit status the server reports (a Status object from v4 on).
    pub status: String,
}

/// A WebSocket exec over `s` as a channel.k8s.io client with no stdin: the upgrade on `path`
/// offering `protocols`, then server frames (unmasked) until a close frame or the end.
pub fn ws_exec(
    s: &mut (impl Read + Write),
    host: &str,
    path: &str,
    protocols: &str,
) -> Result<WsExec, String> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGlueWxldC1iZW5jaC0xMg==\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    s.flush().map_err(|e| e.to_string())?;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            let got = String::from_utf8_lossy(&data).into_owned();
            return Err(format!("closed before a response: {got:?}"));
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("no upgrade: {head}"));
    }
    let mut out = WsExec {
        protocol: head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default(),
        ..WsExec::default()
    };
    let mut frames = data.split_off(head_end);
    loop {
        while frames.len() >= 2 {
            let opcode = frames[0] & 0x0f;
            let (len, at) = match frames[1] & 0x7f {
                126 if frames.len() >= 4 => {
                    (u16::from_be_bytes([frames[2], frames[3]]) as usize, 4)
                }
                127 if frames.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&frames[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if frames.len() < at + len {
                break;
            }
            let payload: Vec<u8> = frames.drain(..at + len).skip(at).collect();
            if opcode == 8 {
                return Ok(out);
            }
            match payload.split_first() {
                Some((1, d)) => out.stdout.extend_from_slice(d),
                Some((2, d)) => out.stderr.extend_from_slice(d),
                Some((3, d)) => out.status.push_str(&String::from_utf8_lossy(d)),
                _ => {}
            }
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        frames.extend_from_slice(&buf[..n]);
    }
}

/// A TLS client of the kubelet API as the API server is one: the test CA, and the
/// `kube-apiserver-kubelet-client` certificate.
pub fn tls_client(c: &RealCluster) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(c.ca_pem().as_bytes()).flatten() {
        roots.add(cert).expect("test CA");
    }
    let who = c
        .pki()
        .client_cert("kube-apiserver-kubelet-client", &[])
        .expect("client certificate");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(who.cert_pem.as_bytes())
            .flatten()
            .collect();
    let key = PrivateKeyDer::from_pem_slice(who.key_pem.as_bytes()).expect("client key");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client auth"),
    )
}

/// What the pod's httpd serves.
const PAGE: &str = "hello-from-pod";

pub fn kubectl_exec_attach_port_forward(c: &RealCluster, bed: Bed) {
    let node = served_node(c, bed, "kubeexec");
    let (a, k, ns) = (&node.a, &node.k, node.ns.clone());
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "shell", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", format!(
                        "mkdir -p /tmp/www && echo {PAGE} > /tmp/www/index.html && \
                         exec httpd -f -p 8080 -h /tmp/www")],
                },
                {
                    // attach joins this one: it answers each stdin line on stdout.
                    "name": "echoer", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                    "stdin": true,
                    "command": ["sh", "-c",
                                "trap 'exit 0' TERM; while read l; do echo got:$l; done"],
                },
            ],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    wait_ready(c, &ns, "shell");

    // exec: stdout and stderr apart, the command's exit code is kubectl's.
    let out = k
        .cmd(&[
            "exec",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert_eq!(stdout, "out\n", "stderr {stderr:?}");
    assert!(stderr.starts_with("err\n"), "{stderr:?}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr:?}"
    );

    // exec -i: stdin reaches the command, and its end ends the command.
    let mut child = k
        .cmd(&[
            "exec",
            "-i",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "read l; echo got:$l; tr a-z A-Z",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\nworld\n").unwrap();
    drop(stdin);
    let mut child = Reaped(child);
    let status = wait_exit(&mut child.0).expect("kubectl exec -i ends once its stdin ends");
    let mut got = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    let mut err = String::new();
    let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "{status}: {got:?} {err:?}");
    assert_eq!(got, "got:hello\nWORLD\n", "{err:?}");
    drop(child);

    // exec -t: on a terminal, the command gets one (kubectl uses a TTY only when its own
    // stdin is one, so it runs on a pseudo-terminal here).
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave: OwnedFd = pty.slave;
    let mut child = Reaped(
        k.cmd(&[
            "exec",
            "-i",
            "-t",
            "shell",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo is-a-tty",
        ])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap(),
    );
    let master = std::fs::File::from(pty.master);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut master = master;
        let mut buf = [0u8; 4096];
        // Ends with EIO once kubectl, the last holder of the terminal, is gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let status = wait_exit(&mut child.0).expect("kubectl exec -t ends with its command");
    let mut term = Vec::new();
    while let Ok(b) = rx.recv_timeout(Duration::from_secs(2)) {
        term.extend_from_slice(&b);
    }
    let term = String::from_utf8_lossy(&term).into_owned();
    assert!(status.success(), "{status}: {term:?}");
    // A terminal ends lines with CR LF.
    assert!(term.contains("is-a-tty\r\n"), "{term:?}");
    drop(child);

    // attach -i: stdin into the running container, its answer on stdout.
    let mut child = Reaped(
        k.cmd(&["attach", "-i", "shell", "-c", "echoer"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines(child.0.stdout.take().unwrap());
    let errs = lines(child.0.stderr.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    // kubectl sends stdin once the stream is up; a line before that waits in the pipe.
    stdin.write_all(b"ping\n").unwrap();
    stdin.flush().unwrap();
    let seen = wait_line(&rx, |l| l == "got:ping");
    if seen.is_err() {
        let err: Vec<String> = errs.try_iter().collect();
        let status = c.get_opt(&pod_path(&ns, "shell")).unwrap_or_default();
        panic!(
            "kubectl attach saw {seen:?}, stderr {err:?}; pod status {}",
            status["status"]
        );
    }
    drop(stdin);
    drop(child);

    // port-forward: a local port tunnelled to the pod's httpd, two connections in turn.
    let mut child = Reaped(
        k.cmd(&["port-forward", "pod/shell", ":8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines(child.0.stdout.take().unwrap());
    let errs = lines(child.0.stderr.take().unwrap());
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let line =
        wait_line(&rx, |l| l.starts_with("Forwarding from 127.0.0.1:")).unwrap_or_else(|seen| {
            let err: Vec<String> = errs.try_iter().collect();
            panic!("kubectl port-forward printed {seen:?}, stderr {err:?}")
        });
    let local: SocketAddr = line
        .trim_start_matches("Forwarding from ")
        .split(" -> ")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    for _ in 0..2 {
        let answer = http_get(local, "/index.html").unwrap();
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
            "{answer}"
        );
        assert!(answer.contains(PAGE), "{answer}");
    }
    drop(child);

    // A WebSocket client straight to the node (as an API server that does not translate to
    // SPDY would be): the runtime's WebSocket protocol is relayed as it is.
    let addr = SocketAddr::from(([127, 0, 0, 1], node.port));
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let tls = rustls::ClientConnection::new(tls_client(c), ServerName::IpAddress(addr.ip().into()))
        .unwrap();
    let mut s = rustls::StreamOwned::new(tls, tcp);
    let path = format!(
        "/exec/{ns}/shell/main?command=sh&command=-c&command=echo+ws-out%3B+echo+ws-err+%3E%262\
         &output=1&error=1"
    );
    let ws = ws_exec(&mut s, &addr.to_string(), &path, "v4.channel.k8s.io").unwrap();
    assert_eq!(ws.protocol, "v4.channel.k8s.io", "{ws:?}");
    assert_eq!(String::from_utf8_lossy(&ws.stdout), "ws-out\n", "{ws:?}");
    assert_eq!(String::from_utf8_lossy(&ws.stderr), "ws-err\n", "{ws:?}");
    assert!(ws.status.contains("Success"), "{ws:?}");

    // The node's own authorization: exec is `create` on nodes/proxy; RBAC refuses nobody.
    let nobody = c.pki().client_cert("nobody", &[]).unwrap();
    let mut t = TestClient::tls(addr, &c.ca_pem(), Some(&nobody))
        .unwrap()
        .with_timeout(Duration::from_secs(15));
    let r = t
        .request(
            "POST",
            &format!("/exec/{ns}/shell/main?command=true&output=1"),
            None,
            b"",
        )
        .unwrap();
    assert_eq!(
        (r.code, String::from_utf8_lossy(&r.body).trim()),
        (
            403,
            "Forbidden (user=nobody, verb=create, resource=nodes, subresource(s)=[proxy])"
        )
    );

    c.delete(&pod_path(&ns, "shell"), None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "shell")).is_none()));
}
