//! Whether the link to one API server works, shared by every client that uses it: one success
//! after a failure (a Lease write, a list, a watch event) tells all the others that the link is
//! back, so none of them keeps sleeping on a back-off grown during the outage.
//!
//! The decision core ([`LinkSignal`], [`LinkCursor`]) is sans-I/O and takes the time from its
//! caller. [`LinkHealth`] is the thin shared handle around it; it never sleeps on its own and
//! owns no sockets. It does not choose delays either: each client keeps its own back-off and
//! jitter (see `backoff`), so a fleet whose links return at once still spreads its retries.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The link's state as its clients report it (sans-I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSignal {
    generation: u64,
    last_success: Option<Instant>,
    down_since: Option<Instant>,
}

impl LinkSignal {
    /// A link never used yet (neither up nor down).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an answer from the server (any status: the link carried it). Returns true when
    /// this success ends a failure, i.e. the link just came back and the generation moved on.
    pub fn success(&mut self, now: Instant) -> bool {
        self.last_success = Some(self.last_success.map_or(now, |t| t.max(now)));
        if self.down_since.take().is_some() {
            self.generation = self.generation.wrapping_add(1);
            return true;
        }
        false
    }

    /// Records a transport failure (connect, TLS, timeout, reset, a silent connection).
    pub fn failure(&mut self, now: Instant) {
        if self.down_since.is_none() {
            self.down_since = Some(now);
        }
    }

    /// Counts the recoveries: it changes each time the link comes back after a failure, and
    /// only then, so steady traffic never disturbs a client backing off for its own reasons.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the server last answered anyone.
    pub fn last_success(&self) -> Option<Instant> {
        self.last_success
    }

    /// Since when the link has been failing (None: it works, or nobody tried).
    pub fn down_since(&self) -> Option<Instant> {
        self.down_since
    }

    /// How long ago the server last answered anyone, at `now`.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        self.last_success.map(|t| now.saturating_duration_since(t))
    }
}

/// One client's view of the shared signal: which recoveries it has already acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCursor {
    seen: u64,
}

impl LinkCursor {
    /// A cursor that has seen everything up to `generation`.
    pub fn new(generation: u64) -> Self {
        LinkCursor { seen: generation }
    }

    /// True once per recovery not yet seen by this client (then the client resets its
    /// back-off and retries after its own first, jittered, delay).
    pub fn recovered(&mut self, generation: u64) -> bool {
        if generation == self.seen {
            return false;
        }
        self.seen = generation;
        true
    }
}

/// An open connection to the server that can be broken off from another thread, so that a
/// read blocked on a link found silently dead returns at once instead of waiting out its own
/// idle deadline (a watch waits minutes for its next event by design).
pub trait LinkConnection: Send + Sync {
    /// False once the connection is gone (then it is forgotten).
    fn is_open(&self) -> bool;
    /// Ends the connection: blocked reads and writes on it fail straight away.
    fn interrupt(&self);
}

/// Connections registered at most at once; the oldest closed ones are pruned first, and a
/// client opens only a few, so the bound is never reached in practice.
const MAX_CONNECTIONS: usize = 256;

struct Shared {
    signal: Mutex<LinkSignal>,
    changed: Condvar,
    connections: Mutex<Vec<Box<dyn LinkConnection>>>,
}

/// The shared handle: cheap to clone; all clones see one signal.
#[derive(Clone)]
pub struct LinkHealth(Arc<Shared>);

impl fmt::Debug for LinkHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LinkHealth").field(&self.snapshot()).finish()
    }
}

/// Two handles are equal when they share one signal.
impl PartialEq for LinkHealth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LinkHealth {}

impl Default for LinkHealth {
    fn default() -> Self {
        Self::new()
    }
}

type Registry = Mutex<HashMap<String, Weak<Shared>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl LinkHealth {
    /// A signal of its own (a client that shares its link with nobody, a simulated device).
    pub fn new() -> Self {
        LinkHealth(Arc::new(Shared {
            signal: Mutex::new(LinkSignal::new()),
            changed: Condvar::new(),
            connections: Mutex::new(Vec::new()),
        }))
    }

    /// The signal every client of this process uses for the server at `base` (scheme,
    /// authority and path prefix): the agent's watch, Lease and status clients meet here
    /// without being wired together.
    pub fn for_server(base: &str) -> Self {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = reg.get(base).and_then(Weak::upgrade) {
            return LinkHealth(s);
        }
        reg.retain(|_, w| w.strong_count() > 0);
        let h = LinkHealth::new();
        reg.insert(base.to_string(), Arc::downgrade(&h.0));
        h
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkSignal> {
        self.0.signal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an answer from the server; true when the link just came back.
    pub fn success(&self, now: Instant) -> bool {
        let back = self.lock().success(now);
        if back {
            self.0.changed.notify_all();
        }
        back
    }

    /// Records a transport failure.
    pub fn failure(&self, now: Instant) {
        self.lock().failure(now);
    }

    /// Registers an open connection to the server, to be broken off by [`LinkHealth::silent`].
    pub fn track(&self, conn: Box<dyn LinkConnection>) {
        let mut conns = self.0.connections.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| c.is_open());
        if conns.len() >= MAX_CONNECTIONS {
            conns.remove(0);
        }
        conns.push(conn);
    }

    /// Open connections registered with [`LinkHealth::track`].
    pub fn tracked(&self) -> usize {
        let mut conns = self.0.connections.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| c.is_open());
        conns.len()
    }

    /// Records that the link went silent without closing (a PING unanswered: a NAT that
    /// forgot its mapping, a dead radio): a failure, and every tracked connection to the
    /// server is broken off, since packets on it will never arrive either. Their clients see
    /// a transport error at once and reconnect on their own back-off.
    pub fn silent(&self, now: Instant) {
        self.failure(now);
        let conns =
            std::mem::take(&mut *self.0.connections.lock().unwrap_or_else(|p| p.into_inner()));
        for c in conns.iter().filter(|c| c.is_open()) {
            c.interrupt();
        }
    }

    /// The current recovery count (see [`LinkSignal::generation`]).
    pub fn generation(&self) -> u64 {
        self.lock().generation()
    }

    /// A copy of the signal.
    pub fn snapshot(&self) -> LinkSignal {
        self.lock().clone()
    }

    /// A cursor that has seen every recovery so far.
    pub fn cursor(&self) -> LinkCursor {
        LinkCursor::new(self.generation())
    }

    /// Waits up to `timeout` for a recovery `cursor` has not seen; true if there is one (the
    /// cursor is then moved past it). Callers that must also watch a stop flag pass short
    /// timeouts.
    pub fn wait_recovered(&self, cursor: &mut LinkCursor, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut sig = self.lock();
        loop {
            if cursor.recovered(sig.generation()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            sig = match self.0.changed.wait_timeout(sig, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn generation_moves_only_when_a_failure_ends() {
        let t0 = Instant::now();
        let mut l = LinkSignal::new();
        // Steady successes: nothing for the other clients to act on.
        assert!(!l.success(t0));
        assert!(!l.success(t0 + s(10)));
        assert_eq!(l.generation(), 0);
        // Failures from several clients during an outage count once.
        l.failure(t0 + s(11));
        l.failure(t0 + s(40));
        assert_eq!(l.down_since(), Some(t0 + s(11)));
        assert!(l.success(t0 + s(200)));
        assert_eq!(l.generation(), 1);
        assert_eq!(l.down_since(), None);
        assert!(!l.success(t0 + s(201)));
        assert_eq!(l.generation(), 1);
        assert_eq!(l.silent_for(t0 + s(211)), Some(s(10)));
        // A success reported late (an older instant) does not move last_success back.
        l.success(t0 + s(150));
        assert_eq!(l.last_success(), Some(t0 + s(201)));
    }

    #[test]
    fn each_cursor_sees_each_recovery_once() {
        let t0 = Instant::now();
        let mut l = LinkSignal::new();
        let mut watch = LinkCursor::new(l.generation());
        let mut lease = LinkCursor::new(l.generation());
        l.failure(t0);
        assert!(!watch.recovered(l.generation()));
        l.success(t0 + s(1));
        assert!(watch.recovered(l.generation()));
        assert!(!watch.recovered(l.generation()));
        // The lease client was busy and looks later: it still sees the recovery, once.
        l.failure(t0 + s(2));
        l.success(t0 + s(3));
        assert!(lease.recovered(l.generation()));
        assert!(!lease.recovered(l.generation()));
        assert!(watch.recovered(l.generation()));
    }

    #[test]
    fn handles_share_a_signal_and_wake_waiters() {
        let base = "https://linkhealth-test.invalid:6443";
        let a = LinkHealth::for_server(base);
        let b = LinkHealth::for_server(base);
        assert_eq!(a, b);
        assert_ne!(a, LinkHealth::for_server("https://other.invalid:6443"));
        assert_ne!(LinkHealth::new(), LinkHealth::new());
        let mut cursor = b.cursor();
        let t0 = Instant::now();
        a.failure(t0);
        assert!(!b.wait_recovered(&mut cursor, Duration::ZERO));
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.wait_recovered(&mut cursor, s(30)))
        };
        assert!(a.success(t0));
        assert_eq!(waiter.join().ok(), Some(true));
        assert_eq!(b.generation(), 1);
    }

    struct Conn {
        open: std::sync::atomic::AtomicBool,
        interrupted: std::sync::atomic::AtomicUsize,
    }

    impl LinkConnection for Arc<Conn> {
        fn is_open(&self) -> bool {
            self.open.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn interrupt(&self) {
            self.interrupted
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_silent_link_breaks_off_every_open_connection_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let h = LinkHealth::new();
        let conn = || {
            Arc::new(Conn {
                open: true.into(),
                interrupted: 0.into(),
            })
        };
        let (watch, closed) = (conn(), conn());
        h.track(Box::new(watch.clone()));
        h.track(Box::new(closed.clone()));
        closed.open.store(false, SeqCst);
        assert_eq!(h.tracked(), 1);
        let t0 = Instant::now();
        h.silent(t0);
        assert_eq!(watch.interrupted.load(SeqCst), 1);
        assert_eq!(closed.interrupted.load(SeqCst), 0);
        assert_eq!(h.snapshot().down_since(), Some(t0));
        // Broken-off connections are forgotten: a second signal touches nothing old.
        h.silent(t0 + s(1));
        assert_eq!(watch.interrupted.load(SeqCst), 1);
        assert_eq!(h.tracked(), 0);
    }

    #[test]
    fn tracking_is_bounded() {
        let h = LinkHealth::new();
        for _ in 0..MAX_CONNECTIONS + 10 {
            h.track(Box::new(Arc::new(Conn {
                open: true.into(),
                interrupted: 0.into(),
            })));
        }
        assert_eq!(h.tracked(), MAX_CONNECTIONS);
    }
}
