//! `/exec`, `/attach` and `/portForward`: the streams of `kubectl exec`, `attach` and
//! `port-forward`, served as the kubelet serves them. The request is checked (flags, upgrade
//! headers, pod and container), the runtime is asked over CRI (`Exec`, `Attach`,
//! `PortForward`) for a one-time URL on its own streaming server, and the upgraded connection
//! is relayed to that URL byte for byte: the client's request line and headers (path replaced
//! by the URL's), the runtime's `101 Switching Protocols`, then both directions until either
//! side closes. SPDY/3.1, WebSocket (`v4/v5.channel.k8s.io`) and `portforward.k8s.io` all pass
//! through unchanged; nothing here speaks them.
//!
//! Parsing, checks and the forwarded head are pure ([`parse`], [`check_upgrade`],
//! [`split_url`], [`forward_head`]); the CRI lookups and the relay are thin I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::lock::Semaphore;
use smol::Async;

use super::conn::TlsConn;
use super::http::{self, RequestHead};
use super::path::Target;
use super::view::NodeView;
use crate::cri::proto::{
    ContainerFilter, ContainerState, ContainerStateValue, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue,
};
use crate::cri::proto_stream::{AttachRequest, ExecRequest, PortForwardRequest};
use crate::cri::{CriClient, CriError, CriOptions};
use crate::reconcile::labels;

/// Streams relayed at once (each also holds one connection slot).
pub const MAX_STREAMS: usize = 32;
/// Bound of the TCP connect to the runtime's streaming server (it is on this host).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How streams are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The CRI endpoint asked for streaming URLs; None: every stream is refused with 503.
    pub runtime_endpoint: Option<String>,
    /// Streams relayed at once; more are refused with 429.
    pub max_streams: usize,
    /// Bound of a CRI call and of the connect to the runtime's streaming server.
    pub timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            runtime_endpoint: None,
            max_streams: MAX_STREAMS,
            timeout: CONNECT_TIMEOUT,
        }
    }
}

/// The server's stream state: the CRI client and the bound.
pub struct Streams {
    cri: Option<CriClient>,
    slots: Arc<Semaphore>,
    max: usize,
    timeout: Duration,
}

impl Streams {
    /// From the settings; a CRI endpoint that is not a unix socket is logged and streams off.
    pub fn new(s: &StreamSettings) -> Streams {
        let cri = s.runtime_endpoint.as_deref().and_then(|e| {
            let opts = CriOptions {
                call_timeout: s.timeout,
                ..CriOptions::default()
            };
            CriClient::new(e, opts)
                .map_err(|err| log::warn!("kubelet API: exec/attach/port-forward off: {err}"))
                .ok()
        });
        Streams {
            cri,
            slots: Arc::new(Semaphore::new(s.max_streams)),
            max: s.max_streams,
            timeout: s.timeout,
        }
    }
}

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// A checked stream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub kind: Kind,
    pub namespace: String,
    pub pod: String,
    /// The pod UID when the path names one.
    pub uid: Option<String>,
    /// Exec and attach only.
    pub container: String,
    /// Exec only.
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Port-forward only (the client may name ports in the stream instead).
    pub ports: Vec<i32>,
}

/// A flag as the kubelet reads it: `1` is true (the API server sends `1`; `true` is taken
/// too). The API server names them `input`/`output`/`error`; `stdin`/`stdout`/`stderr` are
/// accepted as well.
fn flag(t: &Target, names: &[&str]) -> bool {
    names
        .iter()
        .filter_map(|n| t.param(n))
        .any(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The stream route a target names: None when it is no stream route; Err is a 400 message.
pub fn parse(t: &Target) -> Option<Result<StreamRequest, String>> {
    let segs: Vec<&str> = t.segments.iter().map(String::as_str).collect();
    let (kind, ns, pod, uid, container) = match segs.as_slice() {
        ["exec", ns, pod, c] => (Kind::Exec, ns, pod, None, *c),
        ["exec", ns, pod, uid, c] => (Kind::Exec, ns, pod, Some(uid), *c),
        ["attach", ns, pod, c] => (Kind::Attach, ns, pod, None, *c),
        ["attach", ns, pod, uid, c] => (Kind::Attach, ns, pod, Some(uid), *c),
        ["portForward", ns, pod] => (Kind::PortForward, ns, pod, None, ""),
        ["portForward", ns, pod, uid] => (Kind::PortForward, ns, pod, Some(uid), ""),
        _ => return None,
    };
    let mut r = StreamRequest {
        kind,
        namespace: ns.to_string(),
        pod: pod.to_string(),
        uid: uid.map(|u| u.to_string()),
        container: container.to_string(),
        command: Vec::new(),
        stdin: false,
        stdout: false,
        stderr: false,
        tty: false,
        ports: Vec::new(),
    };
    if kind == Kind::PortForward {
        for (k, v) in &t.query {
            if k != "port" {
                continue;
            }
            match v.parse::<u16>() {
                Ok(p) if p > 0 => r.ports.push(i32::from(p)),
                _ => return Some(Err(format!("invalid port {v:?}: 1-65535 expected"))),
            }
        }
        return Some(Ok(r));
    }
    r.tty = flag(t, &["tty"]);
    r.stdin = flag(t, &["input", "stdin"]);
    r.stdout = flag(t, &["output", "stdout"]);
    // With a TTY there is one output stream: the kubelet drops stderr rather than refuse.
    r.stderr = flag(t, &["error", "stderr"]) && !r.tty;
    if !(r.stdin || r.stdout || r.stderr) {
        return Some(Err(
            "you must specify at least 1 of stdin, stdout, stderr".to_string()
        ));
    }
    if kind == Kind::Exec {
        r.command = t
            .query
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if r.command.is_empty() {
            return Some(Err("command is required".to_string()));
        }
    }
    Some(Ok(r))
}

/// The request asks for an upgrade this proxy can relay: `Connection: upgrade` and an
/// `Upgrade` of SPDY/3.1 or websocket. The message is the 400 body otherwise.
pub fn check_upgrade(head: &RequestHead) -> Result<(), String> {
    let connection = head
        .headers
        .iter()
        .filter(|(k, _)| k == "connection")
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let Some(upgrade) = head.header("upgrade") else {
        return Err("Upgrade request required".to_string());
    };
    if !connection {
        return Err("Upgrade request required".to_string());
    }
    let proto = upgrade.trim();
    if proto.eq_ignore_ascii_case("SPDY/3.1") || proto.eq_ignore_ascii_case("websocket") {
        Ok(())
    } else {
        Err(format!(
            "unsupported upgrade {proto:?}: SPDY/3.1 or websocket expected"
        ))
    }
}

/// Splits the runtime's streaming URL (`http://127.0.0.1:PORT/exec/TOKEN`) into the address
/// to dial, the `Host` to send and the path (with query) to request. Only plain HTTP to an IP
/// literal or `localhost` is accepted: the runtime's server is on this host.
pub fn split_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(format!(
                "streaming URL {url:?} is TLS: set the runtime's enable_tls_streaming = false"
            ))
        }
        _ => return Err(format!("streaming URL {url:?} is not an http URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let bad = || format!("streaming URL {url:?} has no IP address and port");
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().map_err(|_| bad())?
    };
    if path.bytes().any(|c| c < 0x21 || c == 0x7f) {
        return Err(format!("streaming URL {url:?} has a malformed path"));
    }
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

/// The request sent to the runtime: the client's method and headers with the path replaced
/// and `Host` set to the runtime's; the client's credentials are not passed on.
pub fn forward_head(head: &RequestHead, authority: &str, path: &str) -> Vec<u8> {
    let mut out = format!("{} {path} HTTP/1.1\r\nHost: {authority}\r\n", head.method);
    for (k, v) in &head.headers {
        if k == "host" || k == "authorization" || k == "proxy-authorization" {
            continue;
        }
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The status and body of a CRI failure, as the kubelet's streaming errors map them
/// (NotFound → 404, everything else → 500).
pub fn cri_failure(e: &CriError) -> (u16, String) {
    if e.is_not_found() {
        (404, e.to_string())
    } else {
        (500, e.to_string())
    }
}

/// The runtime's streaming URL for `r`, or the status and message to answer with.
async fn runtime_url(
    cri: &CriClient,
    view: &NodeView,
    r: &StreamRequest,
) -> Result<String, (u16, String)> {
    let Some(pod) = view.pod(&r.namespace, &r.pod) else {
        return Err((404, "pod does not exist".to_string()));
    };
    let uid = pod.metadata.uid.clone();
    let uid_matches = r.uid.as_ref().is_none_or(|u| *u == uid);
    if r.kind == Kind::PortForward {
        if !uid_matches {
            return Err((404, "pod not found".to_string()));
        }
        let filter = PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: BTreeMap::from([(labels::POD_UID.to_string(), uid.clone())]),
            ..PodSandboxFilter::default()
        };
        let list = cri
            .list_pod_sandbox(Some(filter))
            .await
            .map_err(|e| cri_failure(&e))?;
        let Some(sandbox) = list.items.iter().max_by_key(|s| s.created_at) else {
            let full = format!("{}_{}", r.pod, r.namespace);
            return Err((404, format!("pod not found ({full:?})")));
        };
        let req = PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: r.ports.clone(),
        };
        let resp = cri.port_forward(&req).await.map_err(|e| cri_failure(&e))?;
        return Ok(resp.url);
    }
    let not_found = || (404, format!("container not found ({:?})", r.container));
    let in_spec = pod
        .spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .any(|c| c.name == r.container);
    if !uid_matches || !in_spec {
        return Err(not_found());
    }
    let filter = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning as i32,
        }),
        label_selector: BTreeMap::from([
            (labels::POD_UID.to_string(), uid.clone()),
            (labels::CONTAINER_NAME.to_string(), r.container.clone()),
        ]),
        ..ContainerFilter::default()
    };
    let list = cri
        .list_containers(Some(filter))
        .await
        .map_err(|e| cri_failure(&e))?;
    let Some(c) = list.containers.iter().max_by_key(|c| c.created_at) else {
        return Err(not_found());
    };
    let url = if r.kind == Kind::Exec {
        let req = ExecRequest {
            container_id: c.id.clone(),
            cmd: r.command.clone(),
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        };
        cri.exec(&req).await.map_err(|e| cri_failure(&e))?.url
    } else {
        let req = AttachRequest {
            container_id: c.id.clone(),
            stdin: r.stdin,
            tty: r.tty,
            stdout: r.stdout,
            stderr: r.stderr,
        };
        cri.attach(&req).await.map_err(|e| cri_failure(&e))?.url
    };
    Ok(url)
}

/// Serves one authorized stream request; the connection ends with it. `early` holds client
/// bytes that arrived after the request head (relayed first).
pub async fn serve(
    streams: &Streams,
    view: &NodeView,
    conn: &mut TlsConn,
    head: &RequestHead,
    req: Result<StreamRequest, String>,
    early: &[u8],
) -> std::io::Result<()> {
    let what = head
        .target
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let fail = |code: u16, msg: &str| {
        log::debug!("kubelet API: {} {what}: {code} {msg}", head.method);
        http::text(code, msg, false)
    };
    if head.method != "GET" && head.method != "POST" {
        return conn.write_all(&fail(405, "Method Not Allowed")).await;
    }
    let req = match req {
        Ok(r) => r,
        Err(msg) => return conn.write_all(&fail(400, &msg)).await,
    };
    if let Err(msg) = check_upgrade(head) {
        return conn.write_all(&fail(400, &msg)).await;
    }
    let Some(cri) = streams.cri.as_ref() else {
        let msg = "streaming is off: no container runtime endpoint";
        return conn.write_all(&fail(503, msg)).await;
    };
    let Some(_slot) = streams.slots.try_acquire_arc() else {
        let msg = format!(
            "maximum number of in-flight streams exceeded ({} at once)",
            streams.max
        );
        return conn.write_all(&fail(429, &msg)).await;
    };
    let url = match runtime_url(cri, view, &req).await {
        Ok(u) => u,
        Err((code, msg)) => return conn.write_all(&fail(code, &msg)).await,
    };
    let (addr, authority, path) = match split_url(&url) {
        Ok(x) => x,
        Err(msg) => {
            log::warn!("kubelet API: {msg}");
            return conn.write_all(&fail(502, &msg)).await;
        }
    };
    let dial = async { Some(Async::<TcpStream>::connect(addr).await) };
    let timer = async {
        smol::Timer::after(streams.timeout).await;
        None
    };
    let mut up = match dial.or(timer).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            let msg = format!("runtime streaming server {addr}: {e}");
            return conn.write_all(&fail(502, &msg)).await;
        }
        None => {
            let msg = format!("runtime streaming server {addr}: connect timed out");
            return conn.write_all(&fail(502, &msg)).await;
        }
    };
    log::debug!(
        "kubelet API: {} {what}: relaying to {addr}{}",
        head.method,
        path.split('/').take(2).collect::<Vec<_>>().join("/")
    );
    up.write_all(&forward_head(head, &authority, &path)).await?;
    if !early.is_empty() {
        up.write_all(early).await?;
    }
    relay(conn, &mut up).await
}

/// Copies both directions until either side ends. Waits on readiness (cancel-safe) and then
/// finishes each read and write, so no bytes are lost to a cancelled future.
async fn relay(conn: &mut TlsConn, up: &mut Async<TcpStream>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let from_client = if conn.buffered() > 0 {
            true
        } else {
            let client = async { conn.readable().await.map(|()| true) };
            let runtime = async { up.readable().await.map(|()| false) };
            client.or(runtime).await?
        };
        if from_client {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            up.write_all(buf.get(..n).unwrap_or_default()).await?;
        } else {
            let n = up.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            conn.write_all(buf.get(..n).unwrap_or_default()).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::path::parse_target;

    fn req(raw: &str) -> Option<Result<StreamRequest, String>> {
        parse(&parse_target(raw).unwrap())
    }

    #[test]
    fn exec_flags_as_the_api_server_sends_them() {
        // The API server adds input/output/error/tty=1 and one command= per argument.
        let r = req("/exec/ns/web/main?command=sh&command=-c&command=echo+a&output=1&error=1")
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, Kind::Exec);
        assert_eq!((r.namespace.as_str(), r.pod.as_str()), ("ns", "web"));
        assert_eq!(r.container, "main");
        assert_eq!(r.uid, None);
        assert_eq!(r.command, ["sh", "-c", "echo a"]);
        assert!(r.stdout && r.stderr && !r.stdin && !r.tty);
        let r = req("/exec/ns/web/u-1/main?command=sh&input=1&output=1&error=1&tty=1")
            .unwrap()
            .unwrap();
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        // A TTY has one output stream: stderr is dropped, as the kubelet does.
        assert!(r.stdin && r.stdout && r.tty && !r.stderr);
        let r = req("/attach/ns/web/main?stdin=true&stdout=true")
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, Kind::Attach);
        assert!(r.stdin && r.stdout && r.command.is_empty());
    }

    #[test]
    fn bad_stream_requests_are_400_messages() {
        // Upstream: "you must specify at least 1 of stdin, stdout, stderr".
        assert_eq!(
            req("/exec/ns/web/main?command=sh&output=0"),
            Some(Err(
                "you must specify at least 1 of stdin, stdout, stderr".to_string()
            ))
        );
        assert_eq!(
            req("/exec/ns/web/main?output=1"),
            Some(Err("command is required".to_string()))
        );
        assert!(matches!(
            req("/portForward/ns/web?port=0"),
            Some(Err(m)) if m.contains("\"0\"")
        ));
        assert!(matches!(
            req("/portForward/ns/web?port=70000"),
            Some(Err(_))
        ));
        assert!(matches!(req("/portForward/ns/web?port=x"), Some(Err(_))));
        // Not stream routes.
        assert_eq!(req("/exec/ns/web"), None);
        assert_eq!(req("/containerLogs/ns/web/main"), None);
        assert_eq!(req("/portForward/ns/web/uid/extra"), None);
    }

    #[test]
    fn port_forward_ports_and_uid() {
        let r = req("/portForward/ns/web/u-2?port=80&port=8080")
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, Kind::PortForward);
        assert_eq!(r.uid.as_deref(), Some("u-2"));
        assert_eq!(r.ports, [80, 8080]);
        assert_eq!(req("/portForward/ns/web").unwrap().unwrap().ports, [0; 0]);
    }

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: "/exec/ns/p/c?command=sh".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            keep_alive: true,
        }
    }

    #[test]
    fn upgrades_spdy_and_websocket_only() {
        let spdy = head(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert_eq!(check_upgrade(&spdy), Ok(()));
        let ws = head(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(check_upgrade(&ws), Ok(()));
        for h in [
            head(&[]),
            head(&[("upgrade", "SPDY/3.1")]),
            head(&[("connection", "upgrade")]),
        ] {
            assert_eq!(check_upgrade(&h), Err("Upgrade request required".into()));
        }
        let h2c = head(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(check_upgrade(&h2c).unwrap_err().contains("\"h2c\""));
    }

    #[test]
    fn runtime_urls_split_into_dial_host_and_path() {
        let (addr, host, path) = split_url("http://127.0.0.1:44517/exec/AbC-1").unwrap();
        assert_eq!(addr, "127.0.0.1:44517".parse().unwrap());
        assert_eq!(
            (host.as_str(), path.as_str()),
            ("127.0.0.1:44517", "/exec/AbC-1")
        );
        let (addr, _, path) = split_url("http://[::1]:10010/portforward/t?x=1").unwrap();
        assert_eq!(addr, "[::1]:10010".parse().unwrap());
        assert_eq!(path, "/portforward/t?x=1");
        let (addr, _, path) = split_url("http://localhost:1").unwrap();
        assert_eq!((addr.port(), path.as_str()), (1, "/"));
        assert!(split_url("https://127.0.0.1:1/exec/t")
            .unwrap_err()
            .contains("enable_tls_streaming"));
        for bad in [
            "",
            "127.0.0.1:1/exec",
            "http://127.0.0.1/exec",
            "http://host.example:1/x",
            "http://127.0.0.1:99999/x",
            "http://127.0.0.1:1/a b",
        ] {
            assert!(split_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_head_replaces_path_and_host_and_drops_credentials() {
        let mut h = head(&[
            ("host", "node-a:10250"),
            ("authorization", "Bearer secret"),
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ]);
        h.method = "POST".into();
        let out = String::from_utf8(forward_head(&h, "127.0.0.1:9", "/exec/T")).unwrap();
        assert_eq!(
            out,
            "POST /exec/T HTTP/1.1\r\nHost: 127.0.0.1:9\r\nconnection: Upgrade\r\n\
             upgrade: SPDY/3.1\r\nx-stream-protocol-version: v5.channel.k8s.io\r\n\
             x-stream-protocol-version: v4.channel.k8s.io\r\n\r\n"
        );
    }
}
