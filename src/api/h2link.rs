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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use rustls::{ConnectionCommon, SideData};
use smol::Async;

use super::linkhealth::LinkHealth;

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
    /// Plaintext written since the last flush: h2 writes a frame header and its payload
    /// separately, and sealing them together saves a TLS record (22 bytes) per frame.
    pending: Vec<u8>,
    cork: Option<Cork>,
}

/// Holds back flushes while a caller queues the frames of one request (HEADERS, then DATA
/// from another thread), so they leave in one TLS record: TCP_CORK for the TLS layer.
#[derive(Clone, Default)]
pub struct Cork(Arc<CorkState>);

#[derive(Default)]
struct CorkState {
    held: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

/// Releases the cork when dropped.
pub struct CorkGuard<'a>(&'a Cork);

impl Cork {
    /// Holds flushes until the guard drops (never hold it across an await).
    pub fn hold(&self) -> CorkGuard<'_> {
        self.0.held.fetch_add(1, Ordering::AcqRel);
        CorkGuard(self)
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.held.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        *self.0.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        // Released between the check and the registration: nobody would wake us.
        if self.0.held.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for CorkGuard<'_> {
    fn drop(&mut self) {
        if self.0 .0.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            let w = self
                .0
                 .0
                .waker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// Plaintext gathered before it is sealed into records (one full TLS record).
const COALESCE: usize = 16 << 10;

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
            pending: Vec::new(),
            cork: None,
        }
    }

    /// Makes flushes wait while `cork` is held.
    pub fn with_cork(mut self, cork: Cork) -> Self {
        self.cork = Some(cork);
        self
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

    /// Seals the gathered plaintext and writes out every record.
    fn poll_seal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut refused = 0;
        // Bounded: rustls only refuses plaintext while unsent records exceed its buffer
        // limit, and a completed flush empties that buffer.
        loop {
            if !self.pending.is_empty() {
                let n = self.conn.writer().write(&self.pending)?;
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
        let this = self.get_mut();
        if let Some(cork) = &this.cork {
            if cork.poll_open(cx).is_pending() {
                return Poll::Pending;
            }
        }
        match this.poll_seal(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_seal(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
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
    /// A PING goes out this often on an open connection (zero: never). A connection that went
    /// silent without a FIN or RST (a NAT that forgot its mapping) is noticed by the missing
    /// answer instead of by the next request's timeout, and even while nothing else is sent.
    pub ping_interval: Duration,
    /// A PING not answered within this long ends the connection.
    pub ping_timeout: Duration,
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
    cork: Cork,
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
    health: Option<LinkHealth>,
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

/// What a caller needs of the current connection: its request handle, liveness flag, cork.
type Handle = (h2::client::SendRequest<Bytes>, Arc<AtomicBool>, Cork);

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
            health: None,
        }
    }

    /// Reports a connection found dead by its PINGs to `health` (the other clients of the
    /// server then know the link failed before their own requests time out).
    pub fn with_health(mut self, health: LinkHealth) -> Self {
        self.health = Some(health);
        self
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
        let (sender, alive, cork) = self.connection()?;
        let body = Bytes::copy_from_slice(req.body);
        let cfg = self.config.clone();
        // On the heap: callers may run on small stacks (the node thread has 256 KiB), and
        // h2 and rustls futures are large in debug builds.
        let result = smol::block_on(Box::pin(within(
            cfg.request_timeout,
            Box::pin(exchange(sender, &cork, http_req, body, &cfg)),
        )))
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
    fn connection(&self) -> Result<Handle, LinkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*st {
            State::Unavailable => return Err(LinkError::NotAvailable),
            State::Up(c) if c.alive.load(Ordering::Acquire) => {
                return Ok((c.sender.clone(), c.alive.clone(), c.cork.clone()))
            }
            _ => {}
        }
        *st = State::Idle;
        match self.connect() {
            Ok(Some(c)) => {
                let out = (c.sender.clone(), c.alive.clone(), c.cork.clone());
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
        let cork = Cork::default();
        let stream_cork = cork.clone();
        let opened = smol::block_on(Box::pin(within(
            limit,
            Box::pin(async move {
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
                    (None, Some(e)) => {
                        return Err(transport(&format!("connecting to {target}"), e))
                    }
                    (None, None) => {
                        return Err(LinkError::Transport(format!(
                            "connecting to {target}: no address"
                        )))
                    }
                };
                let _ = tcp.get_ref().set_nodelay(true);
                let mut tls: ClientTls = TlsStream::new(conn, tcp).with_cork(stream_cork);
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
            }),
        )))
        .unwrap_or_else(|| {
            Err(LinkError::Transport(format!(
                "connecting to {}: no TLS session within {} ms",
                self.endpoint.connect_to,
                limit.as_millis()
            )))
        })?;
        let Some((sender, mut connection)) = opened else {
            return Ok(None);
        };
        let pinger = connection.ping_pong();
        let (interval, answer_within) = (self.config.ping_interval, self.config.ping_timeout);
        let health = self.health.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&alive);
        let (kill, killed) = smol::channel::bounded::<()>(1);
        let name = self.endpoint.connect_to.clone();
        std::thread::Builder::new()
            .name("api-h2".into())
            .spawn(move || {
                smol::block_on(smol::future::or(
                    Box::pin(async {
                        if let Err(e) = connection.await {
                            log::debug!("HTTP/2 connection to {name} ended: {e}");
                        }
                    }),
                    smol::future::or(
                        async {
                            // Resolves when the link drops its handle: close without waiting
                            // on a peer that may be gone.
                            let _ = killed.recv().await;
                        },
                        Box::pin(keepalive(pinger, interval, answer_within, &name, health)),
                    ),
                ));
                flag.store(false, Ordering::Release);
            })
            .map_err(|e| transport("starting the HTTP/2 connection thread", e))?;
        Ok(Some(Conn {
            sender,
            alive,
            cork,
            _kill: kill,
        }))
    }
}

/// PINGs the server every `interval`; returns (ending the connection) when an answer does not
/// come within `answer_within`, or never when PINGs are off.
async fn keepalive(
    pinger: Option<h2::PingPong>,
    interval: Duration,
    answer_within: Duration,
    name: &str,
    health: Option<LinkHealth>,
) {
    let Some(mut pinger) = pinger.filter(|_| !interval.is_zero()) else {
        return std::future::pending().await;
    };
    loop {
        smol::Timer::after(interval).await;
        match within(answer_within, pinger.ping(h2::Ping::opaque())).await {
            Some(Ok(_)) => {}
            // The connection itself failed: its driver reports that.
            Some(Err(_)) => return std::future::pending().await,
            None => {
                log::warn!(
                    "HTTP/2 connection to {name}: no PING answer within {} ms; \
                     the connection is dead, a new one will be opened",
                    answer_within.as_millis()
                );
                if let Some(h) = &health {
                    h.silent(std::time::Instant::now());
                }
                return;
            }
        }
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
    cork: &Cork,
    req: http::Request<()>,
    body: Bytes,
    cfg: &LinkConfig,
) -> Result<LinkResponse, LinkError> {
    let mut sender = sender
        .ready()
        .await
        .map_err(|e| h2_error("opening a stream", e))?;
    let (response, stream) = {
        // HEADERS and DATA leave in one TLS record: the connection thread may encode HEADERS
        // at once but cannot flush before the body is queued too. No await while corked.
        let _corked = (!body.is_empty()).then(|| cork.hold());
        let (response, mut stream) = sender
            .send_request(req, body.is_empty())
            .map_err(|e| h2_error("sending the request", e))?;
        if !body.is_empty() {
            // h2 asks for the window itself and sends as the server grants it; the body is
            // already in memory, so nothing is gained by feeding it piecewise.
            stream
                .send_data(body, true)
                .map_err(|e| h2_error("sending the request body", e))?;
        }
        (response, stream)
    };
    // Held until the answer is in: the send half stays owned while h2 drains the body.
    let _send = stream;
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::net::TcpListener;
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    /// CA, server certificate for 127.0.0.1 and its key, made once by the `openssl` CLI.
    fn certs() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
        static CERTS: OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = OnceLock::new();
        CERTS.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("tinylet-h2link-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let run = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{args:?}: {out:?}");
            };
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ];
            let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=ca"];
            a.extend(ec);
            a.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
            a.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            a.extend(["-addext", "keyUsage=critical,keyCertSign"]);
            run(&a);
            let mut a = vec![
                "req", "-subj", "/CN=srv", "-keyout", "s.key", "-out", "s.csr",
            ];
            a.extend(ec);
            run(&a);
            std::fs::write(
                dir.join("ext"),
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                "s.csr",
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
                "s.crt",
            ]);
            let read = |f: &str| std::fs::read(Path::new(&dir).join(f)).unwrap();
            let out = (read("ca.crt"), read("s.crt"), read("s.key"));
            let _ = std::fs::remove_dir_all(&dir);
            out
        })
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn server_config() -> Arc<rustls::ServerConfig> {
        let (_, cert, key) = certs();
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivateKeyDer::from_pem_slice(key).unwrap())
            .unwrap();
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        Arc::new(cfg)
    }

    fn client_config(trust_ca: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        if trust_ca {
            for c in CertificateDer::pem_slice_iter(&certs().0) {
                roots.add(c.unwrap()).unwrap();
            }
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn_protocols();
        Arc::new(cfg)
    }

    /// A stream that hands over at most 3 bytes per read and 5 per write, and answers every
    /// other call `Pending`: TLS records always arrive in pieces.
    struct Choppy {
        inner: Async<TcpStream>,
        turn: bool,
    }

    impl Choppy {
        fn stall(&mut self, cx: &mut Context<'_>) -> bool {
            self.turn = !self.turn;
            if self.turn {
                cx.waker().wake_by_ref();
            }
            self.turn
        }
    }

    impl smol::io::AsyncRead for Choppy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.stall(cx) {
                return Poll::Pending;
            }
            let n = buf.len().min(3);
            Pin::new(&mut self.inner).poll_read(cx, &mut buf[..n])
        }
    }

    impl smol::io::AsyncWrite for Choppy {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stall(cx) {
                return Poll::Pending;
            }
            let n = buf.len().min(5);
            Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_close(cx)
        }
    }

    async fn write_all<T: AsyncWrite + Unpin>(t: &mut T, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *t).poll_write(cx, data)).await?;
            data = &data[n..];
        }
        std::future::poll_fn(|cx| Pin::new(&mut *t).poll_flush(cx)).await
    }

    async fn read_n<T: AsyncRead + Unpin>(t: &mut T, n: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let mut rb = ReadBuf::new(&mut out[got..]);
            std::future::poll_fn(|cx| Pin::new(&mut *t).poll_read(cx, &mut rb)).await?;
            let k = rb.filled().len();
            if k == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += k;
        }
        Ok(out)
    }

    /// A blocking rustls echo server for one connection: echoes `n` bytes, then closes.
    fn echo_server(n: usize) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let cfg = server_config();
        let t = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(cfg).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = vec![0u8; n];
            if tls.read_exact(&mut buf).is_err() {
                return;
            }
            tls.write_all(&buf).unwrap();
            tls.conn.send_close_notify();
            tls.flush().unwrap();
        });
        (addr, t)
    }

    #[test]
    fn handshake_and_echo_through_chopped_reads_and_writes() {
        const N: usize = 40_000;
        let (addr, t) = echo_server(N);
        let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
        smol::block_on(async {
            let tcp = Async::<TcpStream>::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(client_config(true), name).unwrap();
            let mut tls = TlsStream::new(
                conn,
                Choppy {
                    inner: tcp,
                    turn: false,
                },
            );
            tls.handshake().await.unwrap();
            assert_eq!(tls.connection().alpn_protocol(), Some(ALPN_H2));
            write_all(&mut tls, &data).await.unwrap();
            let back = read_n(&mut tls, N).await.unwrap();
            assert!(back == data, "echo differs");
            // The server's close_notify reads as a clean end of stream.
            let mut one = [0u8; 1];
            let mut rb = ReadBuf::new(&mut one);
            std::future::poll_fn(|cx| Pin::new(&mut tls).poll_read(cx, &mut rb))
                .await
                .unwrap();
            assert!(rb.filled().is_empty());
        });
        t.join().unwrap();
    }

    #[test]
    fn untrusted_server_fails_the_handshake_naming_the_certificate() {
        let (addr, t) = echo_server(1);
        let e = smol::block_on(async {
            let tcp = Async::<TcpStream>::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(client_config(false), name).unwrap();
            TlsStream::new(conn, tcp).handshake().await.unwrap_err()
        });
        assert!(e.to_string().contains("certificate"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn peer_closing_during_the_handshake_is_an_error_not_a_hang() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || drop(l.accept()));
        let e = smol::block_on(async {
            let tcp = Async::<TcpStream>::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(client_config(true), name).unwrap();
            TlsStream::new(conn, tcp).handshake().await.unwrap_err()
        });
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
        t.join().unwrap();
    }

    #[test]
    fn a_held_cork_keeps_flushes_pending_and_its_release_wakes_them() {
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let cork = Cork::default();
        assert!(cork.poll_open(&mut cx).is_ready());
        let a = cork.hold();
        let b = cork.hold();
        assert!(cork.poll_open(&mut cx).is_pending());
        drop(a);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            0,
            "still held by the other caller"
        );
        assert!(cork.poll_open(&mut cx).is_pending());
        drop(b);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(cork.poll_open(&mut cx).is_ready());
    }

    #[test]
    fn link_to_a_closed_port_is_a_transport_error_and_alpn_lists_h2_first() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let link = Link::new(
            Endpoint {
                connect_to: addr.to_string(),
                server_name: ServerName::try_from("127.0.0.1").unwrap(),
            },
            client_config(true),
            LinkConfig {
                connect_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(2),
                max_body: 1 << 20,
                max_error_body: 1 << 10,
                ping_interval: Duration::ZERO,
                ping_timeout: Duration::ZERO,
            },
        );
        let url = format!("https://{addr}/api");
        let e = link
            .send(&LinkRequest {
                method: "GET",
                url: &url,
                headers: &[],
                body: &[],
            })
            .unwrap_err();
        assert!(matches!(e, LinkError::Transport(_)), "{e}");
        assert!(link.is_available());
        let bad = link
            .send(&LinkRequest {
                method: "GET",
                url: "not a url",
                headers: &[("bad header", String::new())],
                body: &[],
            })
            .unwrap_err();
        assert!(matches!(bad, LinkError::Request(_)), "{bad}");
        assert_eq!(alpn_protocols().first().map(Vec::as_slice), Some(ALPN_H2));
    }
}
