//! Observability of the test API server for tests and benches: request counters by verb and
//! resource, bytes in/out as seen at the socket (below TLS), and a timestamped request log
//! (for request-rate profiles).
//!
//! It only records; it never changes how a request is served.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::handler::lock;

/// Requests kept in the log; older entries are dropped first.
pub const LOG_LIMIT: usize = 1_000_000;

/// One served (or refused) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Time since the server started.
    pub at: Duration,
    /// HTTP method.
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// get, list, watch, create, update, patch, delete, or "nonresource".
    pub verb: String,
    /// "pods", "pods/status", "leases.coordination.k8s.io", ... or the path.
    pub resource: String,
    /// Authenticated user name ("" if none).
    pub user: String,
    /// Status code sent (0 if the connection was dropped without an answer).
    pub code: u16,
}

/// Counters and log of one server.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    counts: Mutex<BTreeMap<(String, String), u64>>,
    log: Mutex<VecDeque<RequestRecord>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections: AtomicU64,
    /// Live connections: a handle on the socket and its segment count at the last reset.
    live: Mutex<HashMap<u64, (TcpStream, u64)>>,
    next_conn: AtomicU64,
    closed_segments: AtomicU64,
}

/// IPv4 header + TCP header with the timestamp option Linux sends on every segment.
pub const IP_TCP_HEADER_BYTES: u64 = 52;

/// Segments in + out of a TCP socket so far (TCP_INFO), 0 if the kernel does not say.
fn segments_of(s: &TcpStream) -> u64 {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it and the
    // fd stays open for the call (borrowed from `s`).
    unsafe {
        let mut info: nix::libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<nix::libc::tcp_info>() as nix::libc::socklen_t;
        let rc = nix::libc::getsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            (&mut info as *mut nix::libc::tcp_info).cast(),
            &mut len,
        );
        if rc != 0 {
            return 0;
        }
        u64::from(info.tcpi_segs_in) + u64::from(info.tcpi_segs_out)
    }
}

/// Counts one connection's segments into [`Stats::segments`] until dropped.
pub struct SegmentGuard {
    stats: Arc<Stats>,
    id: u64,
}

impl Drop for SegmentGuard {
    fn drop(&mut self) {
        if let Some((s, base)) = lock(&self.stats.live).remove(&self.id) {
            let n = segments_of(&s).saturating_sub(base);
            self.stats.closed_segments.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Stats {
    /// Fresh counters; times in the log are relative to `started`.
    pub fn new(started: Instant) -> Stats {
        Stats {
            started,
            counts: Mutex::new(BTreeMap::new()),
            log: Mutex::new(VecDeque::new()),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            closed_segments: AtomicU64::new(0),
        }
    }

    /// The time the log would give an event now (relative to `started`).
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts counting the TCP segments of `tcp` (both directions) until the guard drops.
    pub fn track_segments(self: &Arc<Self>, tcp: &TcpStream) -> Option<SegmentGuard> {
        let handle = tcp.try_clone().ok()?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(id, (handle, 0));
        Some(SegmentGuard {
            stats: Arc::clone(self),
            id,
        })
    }

    /// TCP segments exchanged since the last reset, both directions, all connections.
    pub fn segments(&self) -> u64 {
        let live: u64 = lock(&self.live)
            .values()
            .map(|(s, base)| segments_of(s).saturating_sub(*base))
            .sum();
        live + self.closed_segments.load(Ordering::Relaxed)
    }

    /// What the link carried below TLS: bytes in + out plus an IP and TCP header per segment.
    pub fn wire_bytes(&self) -> u64 {
        self.bytes_in() + self.bytes_out() + self.segments() * IP_TCP_HEADER_BYTES
    }

    /// Records one request.
    pub fn record(
        &self,
        method: &str,
        target: &str,
        verb: &str,
        resource: &str,
        user: &str,
        code: u16,
    ) {
        *lock(&self.counts)
            .entry((verb.to_string(), resource.to_string()))
            .or_insert(0) += 1;
        let mut log = lock(&self.log);
        if log.len() >= LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            at: self.started.elapsed(),
            method: method.into(),
            target: target.into(),
            verb: verb.into(),
            resource: resource.into(),
            user: user.into(),
            code,
        });
    }

    /// Counts an accepted TCP connection.
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests with this verb on this resource (e.g. ("patch", "pods/status")).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.counts)
            .get(&(verb.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// All counters by (verb, resource).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        lock(&self.counts).clone()
    }

    /// Total requests.
    pub fn total_requests(&self) -> u64 {
        lock(&self.counts).values().sum()
    }

    /// The request log.
    pub fn log(&self) -> Vec<RequestRecord> {
        lock(&self.log).iter().cloned().collect()
    }

    /// Requests per `window` since the start (index i covers [i*window, (i+1)*window)),
    /// optionally only those whose resource label equals `resource`.
    pub fn rate_profile(&self, window: Duration, resource: Option<&str>) -> Vec<u64> {
        let w = window.as_nanos().max(1);
        let mut out: Vec<u64> = Vec::new();
        for r in lock(&self.log)
            .iter()
            .filter(|r| resource.is_none_or(|x| r.resource == x))
        {
            let i = usize::try_from(r.at.as_nanos() / w).unwrap_or(usize::MAX);
            if i >= 1 << 24 {
                continue;
            }
            if out.len() <= i {
                out.resize(i + 1, 0);
            }
            if let Some(slot) = out.get_mut(i) {
                *slot += 1;
            }
        }
        out
    }

    /// Bytes read from sockets (TLS records included).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes written to sockets (TLS records included).
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Clears counters, bytes and log.
    pub fn reset(&self) {
        lock(&self.counts).clear();
        lock(&self.log).clear();
        self.bytes_in.store(0, Ordering::Relaxed);
        self.bytes_out.store(0, Ordering::Relaxed);
        self.connections.store(0, Ordering::Relaxed);
        self.closed_segments.store(0, Ordering::Relaxed);
        for (s, base) in lock(&self.live).values_mut() {
            *base = segments_of(s);
        }
    }
}

/// A transport that counts the bytes passing through it into `Stats`.
pub struct Counting<S> {
    /// The wrapped transport.
    pub inner: S,
    stats: Arc<Stats>,
}

impl<S> Counting<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, stats: Arc<Stats>) -> Self {
        Counting { inner, stats }
    }
}

impl<S: Read> Read for Counting<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<S: Write> Write for Counting<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
