//! Sockets of the test API server: the listener on 127.0.0.1, one thread per connection, TLS
//! (rustls) with client-certificate or bearer-token authentication, the HTTP/1.1 keep-alive
//! loop, where the fault injector's decisions are carried out, and the DOWN switch (listener
//! closed so connections are refused, open streams killed) and back UP on the same port.
//!
//! It owns no API semantics: requests go to `handler::Api`, watch bodies to `watch::stream`.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;

use super::authz::User;
use super::fault::{Fault, FaultInjector, FaultyWriter, Hostile, RequestInfo};
use super::handler::{self, lock, status, Api, Reply, Target};
use super::http::{self, HttpError};
use super::pki;
use super::proto;
use super::stats::{Counting, Stats};
use super::watch;

#[path = "h2.rs"]
mod h2;

/// State shared by the listener, the connections and the test-facing handle.
pub struct Shared {
    /// API semantics and store.
    pub api: Api,
    /// Fault rules.
    pub faults: FaultInjector,
    /// Counters and log.
    pub stats: Arc<Stats>,
    /// TLS configuration (None: plain HTTP).
    pub tls: Option<Arc<ServerConfig>>,
    /// User for requests without credentials (None: 401).
    pub anonymous: Option<User>,
    /// Listening address (stable across DOWN/UP).
    pub addr: SocketAddr,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    epoch: AtomicU64,
    down: AtomicBool,
    shutdown: AtomicBool,
    accept: Mutex<Option<JoinHandle<()>>>,
    listener_ctl: Mutex<Option<TcpListener>>,
}

impl Shared {
    /// Wraps the parts; call `listen` next.
    pub fn new(
        api: Api,
        faults: FaultInjector,
        stats: Arc<Stats>,
        tls: Option<Arc<ServerConfig>>,
        anonymous: Option<User>,
        addr: SocketAddr,
    ) -> Shared {
        Shared {
            api,
            faults,
            stats,
            tls,
            anonymous,
            addr,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            epoch: AtomicU64::new(0),
            down: AtomicBool::new(true),
            shutdown: AtomicBool::new(false),
            accept: Mutex::new(None),
            listener_ctl: Mutex::new(None),
        }
    }

    /// Whether the server is DOWN.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

/// Starts accepting on `listener` (the server is UP).
pub fn listen(shared: &Arc<Shared>, listener: TcpListener) {
    shared.down.store(false, Ordering::SeqCst);
    *lock(&shared.listener_ctl) = listener.try_clone().ok();
    let s = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("apiserver-accept".into())
        .spawn(move || accept_loop(s, listener))
        .ok();
    *lock(&shared.accept) = handle;
}

/// Binds the same address again and accepts (UP after DOWN).
pub fn up(shared: &Arc<Shared>) -> io::Result<()> {
    if !shared.is_down() || shared.shutdown.load(Ordering::SeqCst) {
        return Ok(());
    }
    let listener = TcpListener::bind(shared.addr)?;
    listen(shared, listener);
    Ok(())
}

/// Takes the server DOWN: the listener closes (new connections are refused) and every open
/// connection, watch streams included, is shut down.
pub fn down(shared: &Arc<Shared>) {
    if shared.down.swap(true, Ordering::SeqCst) {
        return;
    }
    shared.epoch.fetch_add(1, Ordering::SeqCst);
    // shutdown(2) on a listening socket makes a blocked accept(2) fail at once on Linux and
    // stops the socket listening, so the loop sees the flag and new connections are refused.
    if let Some(l) = lock(&shared.listener_ctl).take() {
        let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
    if let Some(h) = lock(&shared.accept).take() {
        let _ = h.join();
    }
    for (_, s) in lock(&shared.conns).drain() {
        let _ = s.shutdown(Shutdown::Both);
    }
    shared.api.changed.notify_all();
}

/// Stops the server for good.
pub fn shutdown(shared: &Arc<Shared>) {
    shared.shutdown.store(true, Ordering::SeqCst);
    down(shared);
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for conn in listener.incoming() {
        if shared.is_down() {
            break;
        }
        let Ok(tcp) = conn else {
            // EMFILE and friends: back off briefly rather than spin.
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let Ok(ctl) = tcp.try_clone() else { continue };
        lock(&shared.conns).insert(id, ctl);
        shared.stats.connection_opened();
        let s = Arc::clone(&shared);
        let epoch = shared.epoch.load(Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("apiserver-conn".into())
            .spawn(move || {
                serve_connection(&s, tcp, epoch);
                lock(&s.conns).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
        }
    }
}

fn serve_connection(shared: &Arc<Shared>, tcp: TcpStream, epoch: u64) {
    let _ = tcp.set_nodelay(true);
    let Ok(ctl) = tcp.try_clone() else { return };
    let faults = shared.faults.decide(&RequestInfo {
        method: "",
        path: "",
        watch: false,
        connect: true,
    });
    for f in &faults {
        match f {
            Fault::Delay(d) => std::thread::sleep(*d),
            Fault::Reset => {
                reset(&ctl);
                return;
            }
            Fault::Drop => {
                let _ = ctl.shutdown(Shutdown::Both);
                return;
            }
            _ => {}
        }
    }
    let _segments = shared.stats.track_segments(&tcp);
    let counted = Counting::new(tcp, Arc::clone(&shared.stats));
    match &shared.tls {
        None => serve_stream(shared, counted, None, &ctl, epoch),
        Some(cfg) => {
            let Ok(conn) = ServerConnection::new(Arc::clone(cfg)) else {
                return;
            };
            let mut tls = StreamOwned::new(conn, counted);
            // Bounded: a stalled handshake fails on the socket timeout.
            let _ = ctl.set_read_timeout(Some(Duration::from_secs(10)));
            while tls.conn.is_handshaking() {
                if tls.conn.complete_io(&mut tls.sock).is_err() {
                    return;
                }
            }
            let _ = ctl.set_read_timeout(None);
            let h2 = tls.conn.alpn_protocol() == Some(b"h2");
            let cert_user = tls
                .conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| pki::cert_subject(c.as_ref()))
                .map(|s| User::from_subject(&s));
            if h2 {
                let StreamOwned { conn, sock } = tls;
                h2::serve(shared, conn, sock, cert_user, &ctl);
                return;
            }
            serve_stream(shared, tls, cert_user, &ctl, epoch);
        }
    }
}

fn authenticate(
    shared: &Shared,
    head: &http::RequestHead,
    cert_user: &Option<User>,
) -> Option<User> {
    if let Some(u) = cert_user {
        return Some(u.clone());
    }
    if let Some(auth) = head.header("authorization") {
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))?;
        return lock(&shared.api.tokens).get(token.trim()).cloned();
    }
    Some(shared.anonymous.clone().unwrap_or_else(User::anonymous))
}

fn reset(ctl: &TcpStream) {
    let lin = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = nix::sys::socket::setsockopt(ctl, nix::sys::socket::sockopt::Linger, &lin);
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

fn serve_stream<S: Read + Write>(
    shared: &Arc<Shared>,
    stream: S,
    cert_user: Option<User>,
    ctl: &TcpStream,
    epoch: u64,
) {
    let mut rd = BufReader::new(stream);
    // Bounded: every request is finite and the loop ends with the connection.
    loop {
        let head = match http::read_head(&mut rd) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(HttpError::Malformed(_)) | Err(HttpError::TooLarge(_)) => {
                let body = json_body(&status(400, "BadRequest", "malformed HTTP request", None));
                let w = rd.get_mut();
                let _ = http::write_head(
                    w,
                    400,
                    &[("Content-Type", "application/json".into())],
                    Some(body.len()),
                    false,
                );
                let _ = w.write_all(&body);
                let _ = w.flush();
                return;
            }
            Err(_) => return,
        };
        if head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let w = rd.get_mut();
            if w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| w.flush())
                .is_err()
            {
                return;
            }
        }
        let body = match http::read_body(&mut rd, &head) {
            Ok(b) => b,
            Err(HttpError::TooLarge(_)) => {
                let body = json_body(&status(
                    413,
                    "RequestEntityTooLarge",
                    "request entity too large",
                    None,
                ));
                let w = rd.get_mut();
                let _ = http::write_head(
                    w,
                    413,
                    &[("Content-Type", "application/json".into())],
                    Some(body.len()),
                    false,
                );
                let _ = w.write_all(&body);
                return;
            }
            Err(_) => return,
        };
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
                std::thread::sleep(*d);
            }
        }
        if faults.contains(&Fault::Reset) {
            record(0);
            reset(ctl);
            return;
        }
        if faults.contains(&Fault::Drop) {
            record(0);
            let _ = ctl.shutdown(Shutdown::Both);
            return;
        }
        let keep = head.keep_alive();
        let max_events = faults.iter().find_map(|f| match f {
            Fault::TruncateWatchAfterEvents(n) => Some(*n),
            _ => None,
        });
        let mut w = FaultyWriter::new(rd.get_mut(), &faults);
        let result = if let Some((code, retry)) = faults.iter().find_map(|f| match f {
            Fault::Status { code, retry_after } => Some((*code, *retry_after)),
            _ => None,
        }) {
            record(code);
            let (headers, body) = injected_status(code, retry);
            write_full(&mut w, code, &headers, &body, keep)
        } else if let Some(mode) = faults.iter().find_map(|f| match f {
            Fault::Hostile(m) => Some(*m),
            _ => None,
        }) {
            record(200);
            write_hostile(&mut w, mode, verb == "watch").map(|()| false)
        } else {
            match api_reply(shared, user.as_ref(), &head, &path, &q, &body) {
                Reply::Json { code, body } => {
                    let (code, headers, bytes) = json_reply(head.header("accept"), code, &body);
                    record(code);
                    write_full(&mut w, code, &headers, &bytes, keep)
                }
                Reply::Text(code, text) => {
                    record(code);
                    write_full(
                        &mut w,
                        code,
                        &api_headers("text/plain; charset=utf-8"),
                        text.as_bytes(),
                        keep,
                    )
                }
                Reply::Watch(plan) => {
                    record(200);
                    let alive =
                        || !shared.is_down() && shared.epoch.load(Ordering::SeqCst) == epoch;
                    http::write_head(&mut w, 200, &api_headers("application/json"), None, keep)
                        .and_then(|()| w.flush())
                        .and_then(|()| {
                            watch::stream(&shared.api, &plan, &mut w, max_events, &alive)
                        })
                        .and_then(|()| http::write_last_chunk(&mut w))
                        .and_then(|()| w.flush())
                        .map(|()| keep)
                }
            }
        };
        match result {
            Ok(true) => continue,
            _ => {
                let _ = ctl.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

static AUDIT_ID: AtomicU64 = AtomicU64::new(1);

/// Headers a real apiserver sends on API responses: Audit-Id, the API Priority and Fairness
/// flow schema and priority level UIDs, and the Date every Go HTTP server adds. They cost
/// ~300 bytes per response, which the idle-link figures must include.
fn api_headers(content_type: &str) -> Vec<(&'static str, String)> {
    let n = AUDIT_ID.fetch_add(1, Ordering::Relaxed);
    vec![
        ("Audit-Id", format!("00000000-0000-4000-8000-{n:012x}")),
        ("Cache-Control", "no-cache, private".to_string()),
        ("Content-Type", content_type.to_string()),
        (
            "X-Kubernetes-Pf-Flowschema-Uid",
            "6f3b1d0e-7c1a-4a52-9f0e-2b8d9c4e5a17".to_string(),
        ),
        (
            "X-Kubernetes-Pf-Prioritylevel-Uid",
            "c2a4e9b1-3d5f-4e7a-8b6c-0d1e2f3a4b5c".to_string(),
        ),
        (
            "Date",
            http_date(super::store::now_unix_nanos() / 1_000_000_000),
        ),
    ]
}

/// The answer to an injected Status fault (500s, or 429 with its Retry-After): headers, body.
pub(super) fn injected_status(
    code: u16,
    retry: Option<u32>,
) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let (reason, msg) = if code == 429 {
        (
            "TooManyRequests",
            "Too many requests, please try again later.",
        )
    } else {
        ("InternalError", "injected server error")
    };
    let mut headers = api_headers("application/json");
    if let Some(s) = retry {
        headers.push(("Retry-After", s.to_string()));
    }
    (headers, json_body(&status(code, reason, msg, None)))
}

/// What the API makes of a request (401 without a user), for either HTTP version.
pub(super) fn api_reply(
    shared: &Shared,
    user: Option<&User>,
    head: &http::RequestHead,
    path: &str,
    q: &[(String, String)],
    body: &[u8],
) -> Reply {
    match user {
        None => Reply::Json {
            code: 401,
            body: status(401, "Unauthorized", "Unauthorized", None),
        },
        Some(u) => shared.api.handle(
            u,
            &head.method,
            path,
            q,
            &handler::RequestMeta {
                content_type: head.header("content-type").unwrap_or(""),
                user_agent: head.header("user-agent").unwrap_or(""),
            },
            body,
        ),
    }
}

/// A JSON reply in the media type the request accepts (protobuf for the kinds that have
/// it), or 406 when it accepts none: code, headers, body.
pub(super) fn json_reply(
    accept: Option<&str>,
    code: u16,
    body: &Value,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    match proto::negotiate(accept, body) {
        Ok((ctype, bytes)) => (code, api_headers(ctype), bytes),
        Err(msg) => {
            let body = json_body(&status(406, "NotAcceptable", &msg, None));
            (406, api_headers("application/json"), body)
        }
    }
}

/// RFC 9110 IMF-fixdate, e.g. `Sat, 28 Nov 2026 05:40:00 GMT`.
fn http_date(unix_secs: u128) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = i64::try_from(unix_secs).unwrap_or(0);
    let iso = super::store::rfc3339(secs);
    let (y, m, d) = (&iso[0..4], &iso[5..7], &iso[8..10]);
    let month = m.parse::<usize>().unwrap_or(1).clamp(1, 12);
    let wd = DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize];
    format!("{wd}, {d} {} {y} {} GMT", MONTHS[month - 1], &iso[11..19])
}

/// Writes a whole response; Ok(keep-alive).
fn write_full<W: Write>(
    w: &mut W,
    code: u16,
    headers: &[(&str, String)],
    body: &[u8],
    keep: bool,
) -> io::Result<bool> {
    // One write, as a buffered Go server does: one TLS record and one segment, not two.
    let mut out = Vec::with_capacity(body.len() + 512);
    http::write_head(&mut out, code, headers, Some(body.len()), keep)?;
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()?;
    Ok(keep)
}

/// Cap on the endless hostile stream, so even a client that reads forever ends.
const ENDLESS_CAP: usize = 1 << 30;

fn write_hostile<W: Write>(w: &mut W, mode: Hostile, watch: bool) -> io::Result<()> {
    let json_head = [("Content-Type", "application/json".to_string())];
    match mode {
        Hostile::InvalidJson => {
            let body: &[u8] = if watch {
                b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":}\n"
            } else {
                b"{\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\""
            };
            if watch {
                http::write_head(w, 200, &json_head, None, false)?;
                http::write_chunk(w, body)?;
                http::write_last_chunk(w)?;
            } else {
                http::write_head(w, 200, &json_head, Some(body.len()), false)?;
                w.write_all(body)?;
            }
        }
        Hostile::WrongTypes => {
            let obj = r#"{"kind":7,"apiVersion":["v1"],"metadata":{"name":42,"namespace":false,"resourceVersion":12,"labels":[1,2],"uid":{}},"spec":"oops","status":[null],"items":{"not":"a list"}}"#;
            if watch {
                http::write_head(w, 200, &json_head, None, false)?;
                http::write_chunk(w, b"{\"type\":42,\"object\":\"not an object\"}\n")?;
                http::write_chunk(
                    w,
                    format!("{{\"type\":\"ADDED\",\"object\":{obj}}}\n").as_bytes(),
                )?;
                http::write_last_chunk(w)?;
            } else {
                http::write_head(w, 200, &json_head, Some(obj.len()), false)?;
                w.write_all(obj.as_bytes())?;
            }
        }
        Hostile::HugeObject(size) => {
            let pre: &[u8] = if watch {
                b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"huge\",\"namespace\":\"default\",\"annotations\":{\"blob\":\""
            } else {
                b"{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"huge\",\"namespace\":\"default\",\"annotations\":{\"blob\":\""
            };
            let post: &[u8] = if watch { b"\"}}}}\n" } else { b"\"}}}" };
            let filler = vec![b'a'; 64 * 1024];
            if watch {
                http::write_head(w, 200, &json_head, None, false)?;
                http::write_chunk(w, pre)?;
            } else {
                http::write_head(
                    w,
                    200,
                    &json_head,
                    Some(pre.len() + size + post.len()),
                    false,
                )?;
                w.write_all(pre)?;
            }
            let mut left = size;
            while left > 0 {
                let n = left.min(filler.len());
                let piece = filler.get(..n).unwrap_or(&[]);
                if watch {
                    http::write_chunk(w, piece)?;
                } else {
                    w.write_all(piece)?;
                }
                left -= n;
            }
            if watch {
                http::write_chunk(w, post)?;
                http::write_last_chunk(w)?;
            } else {
                w.write_all(post)?;
            }
        }
        Hostile::EndlessLine => {
            http::write_head(w, 200, &json_head, None, false)?;
            http::write_chunk(
                w,
                b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"",
            )?;
            let filler = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < ENDLESS_CAP {
                http::write_chunk(w, &filler)?;
                sent += filler.len();
            }
        }
    }
    w.flush()
}
