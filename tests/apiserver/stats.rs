//! Observability of the test API server for tests and benches: request counters by verb and
//! resource, bytes in/out as seen at the socket (below TLS), and a timestamped request log
//! (for request-rate profiles).
//!
//! It only records; it never changes how a request is served.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
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
        }
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
