//! One HTTP/2 connection over TLS to the API server for small, bounded requests (get of one
//! object, create, replace, patch, delete): HPACK makes the repeated request and response
//! headers of the Lease renewal and status patches cost a few bytes instead of hundreds.
//!
//! Owns the transport only: the TLS adapter (rustls over a smol socket, presented to h2 through
//! tokio's I/O traits), the lazily opened connection shared by all callers and re-opened after
//! any failure, per-request timeouts and body limits. It does not authenticate, choose headers,
//! interpret status codes or retry: `client` does that, and falls back to HTTP/1.1 when the
//! server does not offer `h2`. Watches and lists never come here.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use rustls::{ConnectionCommon, SideData};
use smol::Async;

/// The ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1, offered so servers without h2 still complete the handshake.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

// ---------------------------------------------------------------- TLS adapter

/// A rustls connection (client or server side) over any smol byte stream, usable by h2.
///
/// Reads and writes are non-blocking: a socket that would block registers the task's waker and
/// returns `Pending`, so one thread can drive the connection next to timers.
pub struct TlsStream<C, S> {
    conn: C,
    io: S,
    closing: bool,
}

/// `std::io` view of an async stream for rustls: `Pending` becomes `WouldBlock`.
struct Blocking<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: smol::io::AsyncRead + Unpin> Read for Blocking<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: smol::io::AsyncWrite + Unpin> Write for Blocking<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl<C, D, S> TlsStream<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    /// Wraps a fresh rustls connection and a connected stream; call `handshake` next.
    pub fn new(conn: C, io: S) -> Self {
        TlsStream {
            conn,
            io,
            closing: false,
        }
    }

    /// The rustls connection (negotiated ALPN protocol, peer certificates).
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Drives the handshake to completion (the caller bounds it with a timeout).
    pub async fn handshake(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_handshake(cx)).await
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bounded: every turn either consumes bytes from the peer or returns.
        loop {
            match self.poll_flush_tls(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match self.poll_read_tls(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    )))
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes queued TLS records until rustls has none left.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut w = Blocking {
                io: &mut self.io,
                cx: &mut *cx,
            };
            match self.conn.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads TLS records once and processes them; `Ok(0)` at end of stream.
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut r = Blocking {
            io: &mut self.io,
            cx: &mut *cx,
        };
        match self.conn.read_tls(&mut r) {
            Ok(0) => Poll::Ready(Ok(0)),
            Ok(n) => match self.conn.process_new_packets() {
                Ok(_) => Poll::Ready(Ok(n)),
                Err(e) => {
                    // Tell the peer why (the alert is queued); the error stands either way.
                    let _ = self.poll_flush_tls(cx);
                    Poll::Ready(Err(tls_error(e)))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<C, D, S> tokio::io::AsyncRead for TlsStream<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Bounded: each turn returns, or consumes peer bytes; after end of stream the
        // plaintext reader stops answering WouldBlock.
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Replies rustls owes the peer (key updates, alerts) go out opportunistically.
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

impl<C, D, S> tokio::io::AsyncWrite for TlsStream<C, S>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>> + Unpin,
    D: SideData,
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Bounded: when rustls refuses more plaintext, a completed flush makes room.
        loop {
            let n = this.conn.writer().write(buf)?;
            let flushed = this.poll_flush_tls(cx);
            if n > 0 {
                // Records that could not go out yet leave on the next write or flush.
                return match flushed {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(n)),
                };
            }
            match flushed {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.conn.send_close_notify();
            this.closing = true;
        }
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_close(cx),
            other => other,
        }
    }
}

// ---------------------------------------------------------------- the link

/// Timeouts and limits of a [`Link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// TCP connect + TLS handshake + HTTP/2 preface.
    pub connect_timeout: Duration,
    /// One whole exchange: request sent, headers and body received.
    pub request_timeout: Duration,
    /// Largest 2xx response body.
    pub max_body: u64,
    /// Error bodies are read this far and cut there (a Status fits easily).
    pub max_error_body: u64,
}

/// Where the API server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub connect_to: String,
    /// Name the server certificate is verified against and sent as SNI.
    pub server_name: ServerName<'static>,
}

/// One request handed to the link; the caller chose every header.
#[derive(Debug, Clone)]
pub struct LinkRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URL (scheme and authority become `:scheme` and `:authority`).
    pub url: &'a str,
    /// Header names and values, sent in this order.
    pub headers: &'a [(&'static str, String)],
    /// Request body (empty: none).
    pub body: &'a [u8],
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkResponse {
    /// HTTP status code.
    pub status: u16,
    /// `content-type`, if sent.
    pub content_type: Option<String>,
    /// `retry-after`, if sent.
    pub retry_after: Option<String>,
    /// The body: whole for 2xx, cut at `max_error_body` otherwise.
    pub body: Vec<u8>,
}

/// Why the link could not carry a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The server does not speak HTTP/2 (ALPN chose something else): use HTTP/1.1.
    NotAvailable,
    /// Connect, TLS, timeout, GOAWAY, RST_STREAM or a broken connection: retryable.
    Transport(String),
    /// The 2xx body is larger than `max_body`.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request could not be built (bad URL or header).
    Request(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::NotAvailable => write!(f, "the API server does not offer HTTP/2"),
            LinkError::Transport(m) => write!(f, "HTTP/2 link: {m}"),
            LinkError::TooLarge { limit } => {
                write!(f, "response larger than the limit of {limit} bytes")
            }
            LinkError::Request(m) => write!(f, "building HTTP/2 request: {m}"),
        }
    }
}

impl std::error::Error for LinkError {}

/// A live connection: the request handle, the flag its driver clears when it ends, and the
/// sender whose drop tells the driver to close the socket at once.
struct Conn {
    sender: h2::client::SendRequest<Bytes>,
    alive: Arc<AtomicBool>,
    _kill: smol::channel::Sender<()>,
}

enum State {
    /// No connection yet, or the last one failed.
    Idle,
    /// A connection that was alive when last looked at.
    Up(Conn),
    /// ALPN did not select h2: the link stays unused for its lifetime.
    Unavailable,
}

/// An HTTP/2 connection to one API server, opened on first use and shared by all callers.
pub struct Link {
    endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    config: LinkConfig,
    state: Mutex<State>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish()
    }
}

type ClientTls = TlsStream<rustls::ClientConnection, Async<TcpStream>>;

fn transport(what: &str, e: impl fmt::Display) -> LinkError {
    LinkError::Transport(format!("{what}: {e}"))
}

/// Maps an h2 failure to a transport error that names GOAWAY / RST_STREAM when it was one.
fn h2_error(what: &str, e: h2::Error) -> LinkError {
    let detail = if e.is_go_away() {
        format!("server sent GOAWAY ({e})")
    } else if e.is_reset() {
        format!("stream reset by the server ({e})")
    } else {
        e.to_string()
    };
    LinkError::Transport(format!("{what}: {detail}"))
}

/// Runs `fut` for at most `limit`; `None` on timeout.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(fut.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

impl Link {
    /// A link that connects on first use; `tls` must offer ALPN `h2` (see [`alpn_protocols`]).
    pub fn new(endpoint: Endpoint, tls: Arc<rustls::ClientConfig>, config: LinkConfig) -> Self {
        Link {
            endpoint,
            tls,
            config,
            state: Mutex::new(State::Idle),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// False once the server was seen not to offer h2.
    pub fn is_available(&self) -> bool {
        !matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Unavailable
        )
    }

    /// Sends one request and reads the whole answer within the request timeout.
    pub fn send(&self, req: &LinkRequest<'_>) -> Result<LinkResponse, LinkError> {
        let http_req = build_request(req)?;
        let (sender, alive) = self.connection()?;
        let body = Bytes::copy_from_slice(req.body);
        let cfg = self.config.clone();
        let result = smol::block_on(within(
            cfg.request_timeout,
            exchange(sender, http_req, body, &cfg),
        ))
        .unwrap_or_else(|| {
            Err(LinkError::Transport(format!(
                "no complete answer within {} ms",
                cfg.request_timeout.as_millis()
            )))
        });
        if let Err(LinkError::Transport(_)) = &result {
            self.forget(&alive);
        }
        result
    }

    /// Drops the connection `alive` belongs to, if it is still the current one.
    fn forget(&self, alive: &Arc<AtomicBool>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Up(c) = &*st {
            if Arc::ptr_eq(&c.alive, alive) {
                *st = State::Idle;
            }
        }
    }

    /// The current connection's handle, connecting first if there is none (callers wait for
    /// one attempt instead of racing their own).
    fn connection(&self) -> Result<(h2::client::SendRequest<Bytes>, Arc<AtomicBool>), LinkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*st {
            State::Unavailable => return Err(LinkError::NotAvailable),
            State::Up(c) if c.alive.load(Ordering::Acquire) => {
                return Ok((c.sender.clone(), c.alive.clone()))
            }
            _ => {}
        }
        *st = State::Idle;
        match self.connect() {
            Ok(Some(c)) => {
                let out = (c.sender.clone(), c.alive.clone());
                *st = State::Up(c);
                Ok(out)
            }
            Ok(None) => {
                log::debug!(
                    "API server {} does not offer HTTP/2; using HTTP/1.1 for every request",
                    self.endpoint.connect_to
                );
                *st = State::Unavailable;
                Err(LinkError::NotAvailable)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens TCP, TLS and HTTP/2 within the connect timeout; `Ok(None)` if ALPN chose no h2.
    fn connect(&self) -> Result<Option<Conn>, LinkError> {
        let addrs: Vec<SocketAddr> = self
            .endpoint
            .connect_to
            .to_socket_addrs()
            .map_err(|e| transport(&format!("resolving {}", self.endpoint.connect_to), e))?
            .collect();
        let conn =
            rustls::ClientConnection::new(Arc::clone(&self.tls), self.endpoint.server_name.clone())
                .map_err(|e| transport("TLS setup", e))?;
        let limit = self.config.connect_timeout;
        let target = self.endpoint.connect_to.clone();
        let opened = smol::block_on(within(limit, async move {
            let mut last = None;
            let mut tcp = None;
            for a in addrs {
                match Async::<TcpStream>::connect(a).await {
                    Ok(s) => {
                        tcp = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let tcp = match (tcp, last) {
                (Some(t), _) => t,
                (None, Some(e)) => return Err(transport(&format!("connecting to {target}"), e)),
                (None, None) => {
                    return Err(LinkError::Transport(format!(
                        "connecting to {target}: no address"
                    )))
                }
            };
            let _ = tcp.get_ref().set_nodelay(true);
            let mut tls: ClientTls = TlsStream::new(conn, tcp);
            tls.handshake()
                .await
                .map_err(|e| transport(&format!("TLS handshake with {target}"), e))?;
            if tls.connection().alpn_protocol() != Some(ALPN_H2) {
                return Ok(None);
            }
            let (sender, connection) = h2::client::Builder::new()
                // Room for a typical object in flight without a WINDOW_UPDATE round trip.
                .initial_window_size(256 << 10)
                .initial_connection_window_size(1 << 20)
                .max_header_list_size(64 << 10)
                .enable_push(false)
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(|e| h2_error(&format!("HTTP/2 handshake with {target}"), e))?;
            Ok(Some((sender, connection)))
        }))
        .unwrap_or_else(|| {
            Err(LinkError::Transport(format!(
                "connecting to {}: no TLS session within {} ms",
                self.endpoint.connect_to,
                limit.as_millis()
            )))
        })?;
        let Some((sender, connection)) = opened else {
            return Ok(None);
        };
        let alive = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&alive);
        let (kill, killed) = smol::channel::bounded::<()>(1);
        let name = self.endpoint.connect_to.clone();
        std::thread::Builder::new()
            .name("api-h2".into())
            .spawn(move || {
                smol::block_on(smol::future::or(
                    async {
                        if let Err(e) = connection.await {
                            log::debug!("HTTP/2 connection to {name} ended: {e}");
                        }
                    },
                    async {
                        // Resolves when the link drops its handle: close without waiting
                        // on a peer that may be gone.
                        let _ = killed.recv().await;
                    },
                ));
                flag.store(false, Ordering::Release);
            })
            .map_err(|e| transport("starting the HTTP/2 connection thread", e))?;
        Ok(Some(Conn {
            sender,
            alive,
            _kill: kill,
        }))
    }
}

fn build_request(req: &LinkRequest<'_>) -> Result<http::Request<()>, LinkError> {
    let mut b = http::Request::builder().method(req.method).uri(req.url);
    for (name, value) in req.headers {
        b = b.header(*name, value.as_str());
    }
    b.body(()).map_err(|e| LinkError::Request(e.to_string()))
}

async fn exchange(
    sender: h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    body: Bytes,
    cfg: &LinkConfig,
) -> Result<LinkResponse, LinkError> {
    let mut sender = sender
        .ready()
        .await
        .map_err(|e| h2_error("opening a stream", e))?;
    let (response, mut stream) = sender
        .send_request(req, body.is_empty())
        .map_err(|e| h2_error("sending the request", e))?;
    let mut rest = body;
    // Bounded by the request timeout around this future.
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len());
        let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(h2_error("sending the request body", e)),
            None => {
                return Err(LinkError::Transport(
                    "sending the request body: stream closed".into(),
                ))
            }
        };
        if cap == 0 {
            continue;
        }
        let chunk = rest.split_to(cap.min(rest.len()));
        stream
            .send_data(chunk, rest.is_empty())
            .map_err(|e| h2_error("sending the request body", e))?;
    }
    let resp = response
        .await
        .map_err(|e| h2_error("waiting for the answer", e))?;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let retry_after = header("retry-after");
    let ok = (200..300).contains(&status);
    let limit = if ok { cfg.max_body } else { cfg.max_error_body };
    let announced = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    // Refuse before reading a byte when the server announces too much.
    if ok && announced.is_some_and(|n| n > limit) {
        return Err(LinkError::TooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(
        announced
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(limit_usize)
            .min(1 << 20),
    );
    let mut recv = resp.into_body();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|e| h2_error("reading the answer", e))?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if body.len().saturating_add(chunk.len()) > limit_usize {
            if ok {
                return Err(LinkError::TooLarge { limit });
            }
            let room = limit_usize.saturating_sub(body.len());
            body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
            // Dropping the stream resets it: the rest is not wanted.
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(LinkResponse {
        status,
        content_type,
        retry_after,
        body,
    })
}

/// The ALPN list a link's TLS configuration must carry: h2 first, HTTP/1.1 so servers without
/// h2 still answer (and the link then reports not available).
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()]
}
