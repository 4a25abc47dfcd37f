//! Network probes (httpGet, tcpSocket) as the kubelet runs them; exec probes go through CRI.
//!
//! Each probe is one bounded attempt: a connect, at most one small request, at most a few KB
//! read, all under the probe's timeout. Results are plain values for the reconcile engine.

use std::net::SocketAddr;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

/// The outcome of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    /// The probe ran and failed; the text says why (shown in status and events).
    Failure(String),
}

impl ProbeOutcome {
    /// True for [`ProbeOutcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeOutcome::Success)
    }
}

/// An HTTP GET probe target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// The most of a response the probe reads: the status line is all that matters.
const MAX_RESPONSE: usize = 4096;

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = ProbeOutcomeOr<T>>,
) -> ProbeOutcomeOr<T> {
    fut.or(async {
        smol::Timer::after(timeout).await;
        Err(ProbeOutcome::Failure(format!(
            "{TIMEOUT_PREFIX}{}ms",
            timeout.as_millis()
        )))
    })
    .await
}

type ProbeOutcomeOr<T> = Result<T, ProbeOutcome>;

async fn connect(host: &str, port: u16) -> ProbeOutcomeOr<TcpStream> {
    let addr = resolve(host, port)?;
    TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeOutcome::Failure(format!("dial tcp {addr}: {}", go_dial_error(&e))))
}

/// A connect error as Go's net package words it, which the kubelet's probe messages carry
/// (`dial tcp 10.0.0.5:80: connect: connection refused`).
fn go_dial_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        ErrorKind::TimedOut => "i/o timeout".into(),
        ErrorKind::HostUnreachable => "connect: no route to host".into(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or_default();
            format!("connect: {}", text.to_lowercase())
        }
    }
}

fn resolve(host: &str, port: u16) -> ProbeOutcomeOr<SocketAddr> {
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) if host == "localhost" => Ok(SocketAddr::new([127, 0, 0, 1].into(), port)),
        Err(_) => Err(ProbeOutcome::Failure(format!(
            "probe host {host:?} is not an IP address (tinylet resolves no names for probes)"
        ))),
    }
}

/// Runs a tcpSocket probe: success when a connection is established within `timeout`.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    match with_timeout(timeout, connect(host, port)).await {
        Ok(_) => ProbeOutcome::Success,
        // Go's dialer words a timeout "dial tcp ADDR: i/o timeout" (the kubelet's output).
        Err(ProbeOutcome::Failure(m)) if m.starts_with(TIMEOUT_PREFIX) => {
            let addr =
                resolve(host, port).map_or_else(|_| format!("{host}:{port}"), |a| a.to_string());
            ProbeOutcome::Failure(format!("dial tcp {addr}: i/o timeout"))
        }
        Err(o) => o,
    }
}

/// How `with_timeout` starts its failure text.
const TIMEOUT_PREFIX: &str = "timeout after ";

/// An httpGet probe's failure as Go's HTTP client words it, which the kubelet reports:
/// `Get "URL": <why>`, a timeout being `context deadline exceeded (Client.Timeout exceeded
/// while awaiting headers)`.
fn http_failure(probe: &HttpProbe, why: &str) -> String {
    let host = if probe.host.is_empty() {
        "127.0.0.1"
    } else {
        probe.host.as_str()
    };
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]"),
        Err(_) => host.to_string(),
    };
    let path = if probe.path.starts_with('/') {
        probe.path.clone()
    } else {
        format!("/{}", probe.path)
    };
    let why = if why.starts_with(TIMEOUT_PREFIX) {
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    } else {
        why
    };
    format!("Get \"http://{host}:{}{path}\": {why}", probe.port)
}

/// Runs an httpGet probe: success for a status code in 200..400, as the kubelet does.
pub async fn http_get(probe: &HttpProbe, timeout: Duration) -> ProbeOutcome {
    match with_timeout(timeout, http_get_inner(probe)).await {
        Ok(code) if (200..400).contains(&code) => ProbeOutcome::Success,
        Ok(code) => ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(ProbeOutcome::Failure(m)) => ProbeOutcome::Failure(http_failure(probe, &m)),
        Err(o) => o,
    }
}

async fn http_get_inner(probe: &HttpProbe) -> ProbeOutcomeOr<u16> {
    let mut stream = connect(&probe.host, probe.port).await?;
    let request = build_request(probe);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeOutcome::Failure(format!("write: {e}")))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        if let Some(code) = parse_status_line(&buf) {
            return code;
        }
        if buf.len() >= MAX_RESPONSE {
            return Err(ProbeOutcome::Failure("malformed HTTP response".into()));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| ProbeOutcome::Failure(format!("read: {e}")))?;
        if n == 0 {
            return parse_status_line(&buf).unwrap_or_else(|| {
                Err(ProbeOutcome::Failure(
                    "connection closed before a status line".into(),
                ))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn build_request(probe: &HttpProbe) -> String {
    let path = if probe.path.is_empty() {
        "/"
    } else {
        probe.path.as_str()
    };
    let mut host_header = None;
    let mut extra = String::new();
    for (k, v) in &probe.headers {
        // Header names and values with line breaks would smuggle requests: drop them.
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            continue;
        }
        if k.eq_ignore_ascii_case("host") {
            host_header = Some(v.clone());
        } else {
            extra.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    let host = host_header.unwrap_or_else(|| {
        let h = if probe.host.is_empty() {
            "127.0.0.1"
        } else {
            &probe.host
        };
        format!("{h}:{}", probe.port)
    });
    let path: String = path
        .chars()
        .filter(|c| !c.is_control() && *c != ' ')
        .collect();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tinylet-probe\r\nAccept: */*\r\nConnection: close\r\n{extra}\r\n"
    )
}

/// `Some(Ok(code))` once a full status line is buffered, `Some(Err)` if it is malformed.
fn parse_status_line(buf: &[u8]) -> Option<ProbeOutcomeOr<u16>> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..end]).ok();
    let code = line.and_then(|l| {
        let mut parts = l.split(' ');
        let version = parts.next()?;
        if !version.starts_with("HTTP/") {
            return None;
        }
        parts.next()?.parse::<u16>().ok()
    });
    Some(code.ok_or_else(|| ProbeOutcome::Failure("malformed HTTP status line".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn serve_once(response: &'static [u8]) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                let _ = s.write_all(response);
            }
        });
        port
    }

    fn probe(port: u16) -> HttpProbe {
        HttpProbe {
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: vec![("X-A".into(), "b".into())],
        }
    }

    #[test]
    fn http_codes_follow_the_kubelet() {
        let t = Duration::from_secs(2);
        let ok = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(
            smol::block_on(http_get(&probe(ok), t)),
            ProbeOutcome::Success
        );
        let redirect = serve_once(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n");
        assert!(smol::block_on(http_get(&probe(redirect), t)).is_success());
        let bad = serve_once(b"HTTP/1.1 503 Unavailable\r\n\r\n");
        assert!(matches!(
            smol::block_on(http_get(&probe(bad), t)),
            ProbeOutcome::Failure(m) if m.contains("503")
        ));
        let garbage = serve_once(b"SSH-2.0-x\r\n");
        assert!(!smol::block_on(http_get(&probe(garbage), t)).is_success());
    }

    #[test]
    fn closed_port_and_silent_peer_fail() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        // The kubelet's probe output for a closed port is Go's dial error.
        let out = smol::block_on(tcp("127.0.0.1", port, Duration::from_secs(1)));
        let want = format!("dial tcp 127.0.0.1:{port}: connect: connection refused");
        assert!(
            matches!(&out, ProbeOutcome::Failure(m) if *m == want),
            "{out:?}"
        );
        // A peer that accepts but never answers: the timeout decides.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // The kubelet's output (Go's HTTP client) for a timeout.
        let out = smol::block_on(http_get(&probe(port), Duration::from_millis(200)));
        let want = format!(
            "Get \"http://127.0.0.1:{port}/healthz\": context deadline exceeded \
             (Client.Timeout exceeded while awaiting headers)"
        );
        assert_eq!(out, ProbeOutcome::Failure(want));
        assert!(smol::block_on(tcp("127.0.0.1", port, Duration::from_secs(1))).is_success());
        drop(l);
        // A refused httpGet names the URL, then the dial error.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let out = smol::block_on(http_get(&probe(port), Duration::from_secs(1)));
        let want = format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
             connection refused"
        );
        assert_eq!(out, ProbeOutcome::Failure(want));
    }

    #[test]
    fn request_is_well_formed_and_headers_cannot_smuggle() {
        let mut p = probe(80);
        p.headers.push(("Evil\r\nX".into(), "1".into()));
        p.headers.push(("Host".into(), "example".into()));
        let r = build_request(&p);
        assert!(r.starts_with("GET /healthz HTTP/1.1\r\nHost: example\r\n"));
        assert!(r.contains("X-A: b\r\n"));
        assert!(!r.contains("Evil"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn names_are_refused_not_resolved() {
        assert!(resolve("db.example", 1).is_err());
        assert!(resolve("localhost", 1).is_ok());
        assert!(resolve("::1", 1).is_ok());
        assert!(resolve("", 1).is_ok());
    }
}
