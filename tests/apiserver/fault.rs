//! Fault injection for the test API server, as a reusable component: rules (what fault, when,
//! for which requests) that tests change at runtime, a seeded PRNG for probabilistic faults,
//! and `FaultyWriter`, a transport wrapper that trickles or truncates whatever goes through it.
//!
//! It decides and shapes; it does not know HTTP routes or the store. The server asks it once
//! per request (`decide`) and wraps the response writer with what it returns.

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

/// A body the server sends instead of the real answer, for client robustness tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// 200 with a body that is not JSON (for watches: one event line that is not JSON).
    InvalidJson,
    /// 200 with JSON of the right shape but wrong types (name is a number, items an object...).
    WrongTypes,
    /// 200 with one object of about this many bytes (streamed; the server never holds it).
    HugeObject(usize),
    /// 200 chunked, a JSON event that never ends and never has a newline (bounded at 1 GiB or
    /// until the client goes away).
    EndlessLine,
}

/// One fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Close the connection after reading the request, without answering.
    Drop,
    /// Abort the connection with a TCP RST after reading the request.
    Reset,
    /// Wait this long before answering (then answer normally, unless another fault applies).
    Delay(Duration),
    /// Answer with this status (5xx, 429...) and a Status body; `retry_after` in seconds.
    Status {
        /// HTTP status code.
        code: u16,
        /// Retry-After header value in seconds, if any.
        retry_after: Option<u32>,
    },
    /// Send the response `chunk` bytes at a time with `interval` between pieces.
    Trickle {
        /// Bytes per write.
        chunk: usize,
        /// Pause after each write.
        interval: Duration,
    },
    /// Cut the connection after this many response bytes (headers included).
    TruncateAfterBytes(usize),
    /// Cut a watch stream after this many events (without the terminating chunk).
    TruncateWatchAfterEvents(usize),
    /// Answer with a hostile body.
    Hostile(Hostile),
}

/// When a rule fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// The next N matching requests.
    Next(u32),
    /// Each matching request with this probability (0.0..=1.0), from the seeded PRNG.
    Probability(f64),
    /// Every matching request until removed.
    Always,
}

/// Which requests a rule applies to. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matcher {
    /// HTTP method, e.g. "GET".
    pub method: Option<String>,
    /// Substring of the path, e.g. "/pods" or "/leases/".
    pub path_contains: Option<String>,
    /// Only watch requests (Some(true)) or only non-watch (Some(false)).
    pub watch: Option<bool>,
    /// Match new TCP connections (before TLS and any request) instead of requests; only
    /// Drop, Reset and Delay make sense there.
    pub on_connect: bool,
}

/// What `decide` needs to know about a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Decoded path.
    pub path: &'a str,
    /// Whether this is a watch.
    pub watch: bool,
    /// A new connection rather than a request (method and path are empty).
    pub connect: bool,
}

impl Matcher {
    fn matches(&self, r: &RequestInfo<'_>) -> bool {
        self.on_connect == r.connect
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(r.method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| r.path.contains(p))
            && self.watch.is_none_or(|w| w == r.watch)
    }
}

/// Identifies a rule for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleId(u64);

#[derive(Debug)]
struct Rule {
    id: u64,
    fault: Fault,
    trigger: Trigger,
    matcher: Matcher,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<Rule>,
    next_id: u64,
    rng: u64,
    injected: u64,
}

/// Runtime-configurable fault rules shared by all connections of one server.
#[derive(Debug)]
pub struct FaultInjector {
    inner: Mutex<Inner>,
}

impl FaultInjector {
    /// No rules; `seed` drives probabilistic triggers reproducibly.
    pub fn new(seed: u64) -> FaultInjector {
        FaultInjector {
            inner: Mutex::new(Inner {
                rules: Vec::new(),
                next_id: 1,
                rng: seed | 1,
                injected: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule for every request.
    pub fn add(&self, fault: Fault, trigger: Trigger) -> RuleId {
        self.add_matching(fault, trigger, Matcher::default())
    }

    /// Adds a rule for the requests `matcher` selects.
    pub fn add_matching(&self, fault: Fault, trigger: Trigger, matcher: Matcher) -> RuleId {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        g.rules.push(Rule {
            id,
            fault,
            trigger,
            matcher,
        });
        RuleId(id)
    }

    /// Removes one rule.
    pub fn remove(&self, id: RuleId) {
        self.lock().rules.retain(|r| r.id != id.0);
    }

    /// Removes all rules.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// How many faults have been applied so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Reseeds the PRNG.
    pub fn reseed(&self, seed: u64) {
        self.lock().rng = seed | 1;
    }

    /// The faults that fire for this request, in rule order; consumes `Next(n)` budgets.
    pub fn decide(&self, req: &RequestInfo<'_>) -> Vec<Fault> {
        let mut g = self.lock();
        let mut out = Vec::new();
        let mut rng = g.rng;
        for rule in g.rules.iter_mut() {
            if !rule.matcher.matches(req) {
                continue;
            }
            let fire = match &mut rule.trigger {
                Trigger::Always => true,
                Trigger::Next(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                Trigger::Next(_) => false,
                Trigger::Probability(p) => {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng >> 11) as f64 / (1u64 << 53) as f64) < *p
                }
            };
            if fire {
                out.push(rule.fault.clone());
            }
        }
        g.rng = rng;
        g.rules.retain(|r| r.trigger != Trigger::Next(0));
        g.injected += out.len() as u64;
        out
    }

    // Shorthands for the common cases.

    /// Drop (close without answer) the next `n` requests.
    pub fn drop_next(&self, n: u32) -> RuleId {
        self.add(Fault::Drop, Trigger::Next(n))
    }

    /// Reset (TCP RST) the next `n` requests.
    pub fn reset_next(&self, n: u32) -> RuleId {
        self.add(Fault::Reset, Trigger::Next(n))
    }

    /// Drop each request with probability `p`.
    pub fn drop_with_probability(&self, p: f64) -> RuleId {
        self.add(Fault::Drop, Trigger::Probability(p))
    }

    /// Delay every response by `d`.
    pub fn delay_all(&self, d: Duration) -> RuleId {
        self.add(Fault::Delay(d), Trigger::Always)
    }

    /// Answer the next `n` requests with `code` (e.g. 500, 503).
    pub fn fail_next(&self, n: u32, code: u16) -> RuleId {
        self.add(
            Fault::Status {
                code,
                retry_after: None,
            },
            Trigger::Next(n),
        )
    }

    /// Answer the next `n` requests with 429 and `Retry-After: secs`.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u32) -> RuleId {
        self.add(
            Fault::Status {
                code: 429,
                retry_after: Some(retry_after_secs),
            },
            Trigger::Next(n),
        )
    }

    /// Trickle every response.
    pub fn trickle_all(&self, chunk: usize, interval: Duration) -> RuleId {
        self.add(Fault::Trickle { chunk, interval }, Trigger::Always)
    }

    /// Cut the next watch after `events` events.
    pub fn truncate_next_watch_after_events(&self, events: usize) -> RuleId {
        self.add_matching(
            Fault::TruncateWatchAfterEvents(events),
            Trigger::Next(1),
            Matcher {
                watch: Some(true),
                ..Matcher::default()
            },
        )
    }

    /// Cut the next watch after `bytes` response bytes.
    pub fn truncate_next_watch_after_bytes(&self, bytes: usize) -> RuleId {
        self.add_matching(
            Fault::TruncateAfterBytes(bytes),
            Trigger::Next(1),
            Matcher {
                watch: Some(true),
                ..Matcher::default()
            },
        )
    }

    /// Close the next `n` new connections at once (before TLS).
    pub fn drop_next_connections(&self, n: u32) -> RuleId {
        self.add_matching(
            Fault::Drop,
            Trigger::Next(n),
            Matcher {
                on_connect: true,
                ..Matcher::default()
            },
        )
    }

    /// Reset (TCP RST) the next `n` new connections at once (before TLS).
    pub fn reset_next_connections(&self, n: u32) -> RuleId {
        self.add_matching(
            Fault::Reset,
            Trigger::Next(n),
            Matcher {
                on_connect: true,
                ..Matcher::default()
            },
        )
    }

    /// Answer the next request with a hostile body.
    pub fn hostile_next(&self, mode: Hostile) -> RuleId {
        self.add(Fault::Hostile(mode), Trigger::Next(1))
    }
}

/// Error kind of a write cut short by the injector.
pub const TRUNCATED: io::ErrorKind = io::ErrorKind::ConnectionAborted;

/// A writer that trickles and/or truncates what passes through it.
pub struct FaultyWriter<W: Write> {
    inner: W,
    trickle: Option<(usize, Duration)>,
    budget: Option<usize>,
}

impl<W: Write> FaultyWriter<W> {
    /// Wraps `inner`, applying the `Trickle` and `TruncateAfterBytes` faults among `faults`.
    pub fn new(inner: W, faults: &[Fault]) -> Self {
        let mut w = FaultyWriter {
            inner,
            trickle: None,
            budget: None,
        };
        for f in faults {
            match *f {
                Fault::Trickle { chunk, interval } => w.trickle = Some((chunk.max(1), interval)),
                Fault::TruncateAfterBytes(n) => w.budget = Some(n),
                _ => {}
            }
        }
        w
    }

    /// The wrapped writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for FaultyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = buf.len();
        if let Some(b) = self.budget {
            if b == 0 {
                return Err(io::Error::new(
                    TRUNCATED,
                    "response truncated by fault injector",
                ));
            }
            n = n.min(b);
        }
        if let Some((chunk, _)) = self.trickle {
            n = n.min(chunk);
        }
        let piece = buf.get(..n).unwrap_or(buf);
        self.inner.write_all(piece)?;
        if let Some(b) = self.budget.as_mut() {
            *b -= n;
        }
        if let Some((_, interval)) = self.trickle {
            self.inner.flush()?;
            std::thread::sleep(interval);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_is_consumed_and_matchers_filter() {
        let f = FaultInjector::new(7);
        f.add_matching(
            Fault::Drop,
            Trigger::Next(2),
            Matcher {
                path_contains: Some("/pods".into()),
                ..Matcher::default()
            },
        );
        let pods = RequestInfo {
            method: "GET",
            path: "/api/v1/pods",
            watch: false,
            connect: false,
        };
        let nodes = RequestInfo {
            method: "GET",
            path: "/api/v1/nodes",
            watch: false,
            connect: false,
        };
        assert!(f.decide(&nodes).is_empty());
        assert_eq!(f.decide(&pods), vec![Fault::Drop]);
        assert_eq!(f.decide(&pods), vec![Fault::Drop]);
        assert!(f.decide(&pods).is_empty());
        assert_eq!(f.injected(), 2);
    }

    #[test]
    fn probability_is_roughly_honoured() {
        let f = FaultInjector::new(42);
        f.drop_with_probability(0.25);
        let r = RequestInfo {
            method: "GET",
            path: "/",
            watch: false,
            connect: false,
        };
        let hits = (0..4000).filter(|_| !f.decide(&r).is_empty()).count();
        assert!((800..1200).contains(&hits), "{hits}");
    }

    #[test]
    fn faulty_writer_truncates() {
        let mut out = Vec::new();
        let mut w = FaultyWriter::new(&mut out, &[Fault::TruncateAfterBytes(5)]);
        assert!(w.write_all(b"hello world").is_err());
        assert_eq!(out, b"hello");
    }
}
