//! HTTP/2 over TLS for the test API server, chosen when the client offers ALPN `h2`: each
//! stream becomes one request served exactly like an HTTP/1.1 one (authentication,
//! authorization, handler, request log and counters, fault injector). Bytes are counted on the
//! TCP stream below TLS, as for HTTP/1.1.
//!
//! The connection runs on its own thread: a smol executor drives the h2 connection and one task
//! per stream, so a delayed or trickled answer does not hold up the others. Watches are not
//! served here (400): clients watch over HTTP/1.1. Faults that cut the connection close the
//! TCP socket, which ends every stream on it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rustls::ServerConnection;
use smol::Async;

use super::super::authz::User;
use super::super::fault::{Fault, Hostile, RequestInfo};
use super::super::handler::{self, status, Reply, Target};
use super::super::http::{RequestHead, MAX_BODY};
use super::super::stats::Counting;
use super::{
    api_headers, api_reply, authenticate, injected_status, json_body, json_reply, reset, Shared,
    ENDLESS_CAP,
};

/// rustls over the counted socket; readiness comes from a smol handle on the same socket.
struct ServerIo {
    tls: ServerConnection,
    sock: Counting<TcpStream>,
    ready: Async<TcpStream>,
    closing: bool,
    /// Plaintext since the last flush, sealed into one record as Go's buffered writer does.
    pending: Vec<u8>,
}

/// Plaintext gathered before sealing (one full TLS record).
const COALESCE: usize = 16 << 10;

impl ServerIo {
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.ready.poll_writable(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_seal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut refused = 0;
        loop {
            if !self.pending.is_empty() {
                let n = self.tls.writer().write(&self.pending)?;
                self.pending.drain(..n.min(self.pending.len()));
                if n == 0 {
                    refused += 1;
                }
            }
            match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if refused > 1 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
    }

    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(n) => {
                    return match self.tls.process_new_packets() {
                        Ok(_) => Poll::Ready(Ok(n)),
                        Err(e) => {
                            let _ = self.poll_flush_tls(cx);
                            Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.ready.poll_readable(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Poll::Ready(Err(e)) = this.poll_flush_tls(cx) {
                return Poll::Ready(Err(e));
            }
            match this.poll_read_tls(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.pending.len() >= COALESCE {
            match this.poll_seal(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.len().min(COALESCE.saturating_sub(this.pending.len()));
        this.pending
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_seal(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_seal(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if !this.closing {
            this.tls.send_close_notify();
            this.closing = true;
        }
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(this.sock.inner.shutdown(Shutdown::Write)),
            other => other,
        }
    }
}

/// Serves HTTP/2 on an established TLS session until the connection ends.
pub(super) fn serve(
    shared: &Arc<Shared>,
    tls: ServerConnection,
    sock: Counting<TcpStream>,
    cert_user: Option<User>,
    ctl: &TcpStream,
) {
    let (Ok(ready), Ok(ctl)) = (
        ctl.try_clone().and_then(Async::new),
        ctl.try_clone().map(Arc::new),
    ) else {
        return;
    };
    let io = ServerIo {
        tls,
        sock,
        ready,
        closing: false,
        pending: Vec::new(),
    };
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let handshake = h2::server::Builder::new()
            .max_concurrent_streams(250)
            .initial_window_size(1 << 20)
            .max_header_list_size(64 << 10)
            .handshake::<_, Bytes>(io);
        // Bounded: a client that never sends its preface is dropped.
        let mut conn = match smol::future::or(async { Some(handshake.await) }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await
        {
            Some(Ok(c)) => c,
            _ => return,
        };
        // Bounded: ends with the connection (client GOAWAY, EOF, DOWN, a cutting fault).
        while let Some(Ok((req, respond))) = conn.accept().await {
            let shared = Arc::clone(shared);
            let cert_user = cert_user.clone();
            let ctl = Arc::clone(&ctl);
            ex.spawn(async move {
                serve_stream(&shared, req, respond, cert_user, &ctl).await;
            })
            .detach();
        }
    }));
}

/// What an answer's body is made of: `pre`, then `filler_len` copies of `filler`, then `post`.
struct Body {
    pre: Vec<u8>,
    filler: u8,
    filler_len: usize,
    post: Vec<u8>,
    /// Announce the length (false: the body just ends).
    sized: bool,
}

impl Body {
    fn of(bytes: Vec<u8>) -> Body {
        Body {
            pre: bytes,
            filler: 0,
            filler_len: 0,
            post: Vec::new(),
            sized: true,
        }
    }

    fn len(&self) -> usize {
        self.pre.len() + self.filler_len + self.post.len()
    }
}

async fn serve_stream(
    shared: &Arc<Shared>,
    req: ::http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    cert_user: Option<User>,
    ctl: &TcpStream,
) {
    let (parts, mut recv) = req.into_parts();
    let head = RequestHead {
        method: parts.method.as_str().to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
        version: "HTTP/2".into(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = recv.flow_control().release_capacity(chunk.len());
        if body.len() + chunk.len() > MAX_BODY {
            let b = json_body(&status(
                413,
                "RequestEntityTooLarge",
                "request entity too large",
                None,
            ));
            let _ = send(
                &mut respond,
                413,
                &[("Content-Type", "application/json".into())],
                Body::of(b),
                &[],
            )
            .await;
            return;
        }
        body.extend_from_slice(&chunk);
    }

    let path = head.path();
    let q = head.query();
    let target = handler::route(&head.method, &path, &q);
    let (verb, resource) = match &target {
        Ok(Target::Resource(r)) => (r.verb.to_string(), r.resource_label()),
        _ => ("nonresource".to_string(), path.clone()),
    };
    let user = authenticate(shared, &head, &cert_user);
    let user_name = user.as_ref().map(|u| u.name.clone()).unwrap_or_default();
    let record = |code: u16| {
        shared.stats.record(
            &head.method,
            &head.target,
            &verb,
            &resource,
            &user_name,
            code,
        )
    };
    let faults = shared.faults.decide(&RequestInfo {
        method: &head.method,
        path: &path,
        watch: verb == "watch",
        connect: false,
    });
    for f in &faults {
        if let Fault::Delay(d) = f {
            smol::Timer::after(*d).await;
        }
    }
    if faults.contains(&Fault::Reset) {
        record(0);
        reset(ctl);
        let _ = ctl.shutdown(Shutdown::Both);
        return;
    }
    if faults.contains(&Fault::Drop) {
        record(0);
        let _ = ctl.shutdown(Shutdown::Both);
        return;
    }
    let (code, headers, answer) = if let Some((code, retry)) = faults.iter().find_map(|f| match f {
        Fault::Status { code, retry_after } => Some((*code, *retry_after)),
        _ => None,
    }) {
        let (headers, body) = injected_status(code, retry);
        (code, headers, Body::of(body))
    } else if let Some(mode) = faults.iter().find_map(|f| match f {
        Fault::Hostile(m) => Some(*m),
        _ => None,
    }) {
        (
            200,
            vec![("Content-Type", "application/json".to_string())],
            hostile_body(mode),
        )
    } else {
        match api_reply(shared, user.as_ref(), &head, &path, &q, &body) {
            Reply::Json { code, body } => {
                let (code, headers, bytes) = json_reply(head.header("accept"), code, &body);
                (code, headers, Body::of(bytes))
            }
            Reply::Text(code, text) => (
                code,
                api_headers("text/plain; charset=utf-8"),
                Body::of(text.into_bytes()),
            ),
            Reply::Watch(_) => (
                400,
                api_headers("application/json"),
                Body::of(json_body(&status(
                    400,
                    "BadRequest",
                    "watch is served over HTTP/1.1 only",
                    None,
                ))),
            ),
        }
    };
    record(code);
    if send(&mut respond, code, &headers, answer, &faults)
        .await
        .is_err()
    {
        // A cut answer ends the connection, as over HTTP/1.1.
        let _ = ctl.shutdown(Shutdown::Both);
    }
}

fn hostile_body(mode: Hostile) -> Body {
    match mode {
        Hostile::InvalidJson => Body::of(b"{\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"".to_vec()),
        Hostile::WrongTypes => Body::of(
            br#"{"kind":7,"apiVersion":["v1"],"metadata":{"name":42,"namespace":false,"resourceVersion":12,"labels":[1,2],"uid":{}},"spec":"oops","status":[null],"items":{"not":"a list"}}"#.to_vec(),
        ),
        Hostile::HugeObject(size) => Body {
            pre: b"{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"huge\",\"namespace\":\"default\",\"annotations\":{\"blob\":\"".to_vec(),
            filler: b'a',
            filler_len: size,
            post: b"\"}}}".to_vec(),
            sized: true,
        },
        Hostile::EndlessLine => Body {
            pre: b"{\"kind\":\"Pod\",\"metadata\":{\"name\":\"".to_vec(),
            filler: b'x',
            filler_len: ENDLESS_CAP,
            post: Vec::new(),
            sized: false,
        },
    }
}

/// Sends the answer, honouring flow control and the trickle / truncate faults. Err only when
/// the truncate fault cut it; a stream the client reset (it stopped reading) just ends.
async fn send(
    respond: &mut h2::server::SendResponse<Bytes>,
    code: u16,
    headers: &[(&str, String)],
    body: Body,
    faults: &[Fault],
) -> Result<(), ()> {
    let mut resp = ::http::Response::builder().status(code);
    for (name, value) in headers {
        resp = resp.header(*name, value.as_str());
    }
    if body.sized {
        resp = resp.header("content-length", body.len().to_string());
    }
    let Ok(resp) = resp.body(()) else {
        return Ok(());
    };
    let total = body.len();
    let Ok(mut stream) = respond.send_response(resp, total == 0) else {
        return Ok(());
    };
    if total == 0 {
        return Ok(());
    }
    let mut trickle = None;
    let mut budget = None;
    for f in faults {
        match *f {
            Fault::Trickle { chunk, interval } => trickle = Some((chunk.max(1), interval)),
            Fault::TruncateAfterBytes(n) => budget = Some(n),
            _ => {}
        }
    }
    let piece_max = trickle.map(|(c, _)| c).unwrap_or(16 << 10);
    let mut sent = 0usize;
    // Bounded: `total` bytes at most, ENDLESS_CAP for the endless body.
    while sent < total {
        let mut want = (total - sent).min(piece_max);
        if let Some(b) = budget {
            if b <= sent {
                return Err(());
            }
            want = want.min(b - sent);
        }
        stream.reserve_capacity(want);
        let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            _ => return Ok(()),
        };
        if cap == 0 {
            continue;
        }
        let n = cap.min(want);
        let piece = body_slice(&body, sent, n);
        sent += n;
        if stream.send_data(Bytes::from(piece), sent == total).is_err() {
            return Ok(());
        }
        if let Some((_, interval)) = trickle {
            smol::Timer::after(interval).await;
        }
    }
    Ok(())
}

/// Bytes `from..from + n` of the body, materialised.
fn body_slice(body: &Body, from: usize, n: usize) -> Vec<u8> {
    let end = from + n;
    let mut out = Vec::with_capacity(n);
    let p = body.pre.len();
    let f = p + body.filler_len;
    if from < p {
        out.extend_from_slice(body.pre.get(from..end.min(p)).unwrap_or(&[]));
    }
    if end > p && from < f {
        let len = end.min(f) - from.max(p);
        out.resize(out.len() + len, body.filler);
    }
    if end > f {
        let a = from.max(f) - f;
        out.extend_from_slice(body.post.get(a..end - f).unwrap_or(&[]));
    }
    out
}
