//! The plain-HTTP `/healthz` on `healthzBindAddress:healthzPort` (127.0.0.1:10248), as the
//! kubelet serves it for local probes and supervisors: one answer per connection, nothing
//! else served, no credentials involved (it tells only that the agent is up).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::lock::Semaphore;
use smol::Async;

use super::{http, path, Server, ServerError, HEADER_TIMEOUT};

/// Connections answered at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 8;

/// The answer to one request head (None: not a complete head yet).
pub fn answer(buf: &[u8]) -> Option<Vec<u8>> {
    match http::parse_head(buf) {
        Ok(None) => None,
        Ok(Some((head, _))) => {
            let healthz = path::parse_target(&head.target)
                .is_ok_and(|t| t.segments.len() == 1 && t.segments[0] == "healthz");
            Some(match (head.method.as_str(), healthz) {
                ("GET" | "HEAD", true) => {
                    http::response(200, "text/plain; charset=utf-8", b"ok", false)
                }
                (_, true) => http::text(405, "Method Not Allowed", false),
                _ => http::text(404, "404 page not found", false),
            })
        }
        Err(http::HeadError::TooLarge) => {
            Some(http::text(431, "request header fields too large", false))
        }
        Err(_) => Some(http::text(400, "malformed request", false)),
    }
}

async fn serve(mut tcp: Async<TcpStream>) {
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 1024];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
            if let Some(a) = answer(&buf) {
                return Some(a);
            }
        }
    };
    let timeout = async {
        smol::Timer::after(HEADER_TIMEOUT).await;
        Some(http::text(408, "request header read timeout", false))
    };
    if let Some(a) = read.or(timeout).await {
        let _ = tcp.write_all(&a).await;
        let _ = tcp.flush().await;
    }
}

/// Starts `/healthz` on `addr`.
pub fn start(addr: SocketAddr) -> Result<Server, ServerError> {
    let listener =
        TcpListener::bind(addr).map_err(|e| ServerError::Listen(format!("healthz {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Listen(e.to_string()))?;
    let listener = Async::new(listener).map_err(|e| ServerError::Listen(e.to_string()))?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    log::info!("healthz on http://{addr}/healthz");
    let task = smol::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            };
            let Some(slot) = slots.try_acquire_arc() else {
                continue;
            };
            smol::spawn(async move {
                serve(tcp).await;
                drop(slot);
            })
            .detach();
        }
    });
    Ok(Server::plain(addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn answers() {
        let ok = String::from_utf8(answer(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap()).unwrap();
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("\r\n\r\nok"),
            "{ok}"
        );
        let nf = answer(b"GET /pods HTTP/1.1\r\n\r\n").unwrap();
        assert!(nf.starts_with(b"HTTP/1.1 404"));
        assert!(answer(b"POST /healthz HTTP/1.1\r\n\r\n")
            .unwrap()
            .starts_with(b"HTTP/1.1 405"));
        assert!(answer(b"GET /healthz HTTP/1.1\r\nHost").is_none());
        assert!(answer(b"\x00\x01 garbage\r\n\r\n")
            .unwrap()
            .starts_with(b"HTTP/1.1 400"));
    }

    #[test]
    fn serves_over_tcp() {
        let server = start("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200 OK") && out.ends_with("ok"),
            "{out}"
        );
    }
}
