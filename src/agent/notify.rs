//! systemd's service notification protocol (`sd_notify`): a `Type=notify` unit learns that the
//! agent is ready, what it is doing, that it is stopping, and that its loop is alive.
//!
//! The protocol is one datagram per message, newline-separated `KEY=VALUE` lines, to the unix
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Without
//! that variable every call does nothing, so the agent behaves the same outside systemd. The
//! watchdog interval is `$WATCHDOG_USEC`, which applies to this process only when
//! `$WATCHDOG_PID` is unset or names it; systemd recommends pinging at half the interval.
//! Sending is best effort: a notification that cannot be sent is logged once at debug level
//! and never stops the agent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Where notifications go, parsed from `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file.
    Path(String),
    /// An abstract-namespace socket (`@name`), without the `@`.
    Abstract(String),
}

impl Target {
    /// Parses `$NOTIFY_SOCKET`; `None` when unset, empty, or neither `/path` nor `@name`.
    pub fn parse(value: Option<&str>) -> Option<Target> {
        let v = value?;
        if let Some(name) = v.strip_prefix('@') {
            return (!name.is_empty()).then(|| Target::Abstract(name.to_string()));
        }
        v.starts_with('/').then(|| Target::Path(v.to_string()))
    }

    fn address(&self) -> std::io::Result<SocketAddr> {
        match self {
            Target::Path(p) => SocketAddr::from_pathname(p),
            Target::Abstract(n) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(n.as_bytes())
            }
        }
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when it is meant for `pid`.
pub fn watchdog_period(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if let Some(p) = for_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// The agent's side of the protocol.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
}

impl Notifier {
    /// From the process environment (systemd sets it for `Type=notify` units).
    pub fn from_env(now: Instant) -> Notifier {
        let var = |k: &str| std::env::var(k).ok();
        Notifier::new(
            Target::parse(var("NOTIFY_SOCKET").as_deref()),
            watchdog_period(
                var("WATCHDOG_USEC").as_deref(),
                var("WATCHDOG_PID").as_deref(),
                std::process::id(),
            ),
            now,
        )
    }

    /// A notifier sending to `target` (nothing when `None`), pinging every `watchdog`.
    pub fn new(target: Option<Target>, watchdog: Option<Duration>, now: Instant) -> Notifier {
        let watchdog = watchdog.filter(|_| target.is_some());
        Notifier {
            target,
            watchdog,
            next_ping: watchdog.map(|w| now + w),
        }
    }

    /// Sends `message` (`KEY=VALUE` lines); false when it could not be sent or there is no
    /// socket.
    pub fn send(&self, message: &str) -> bool {
        let Some(target) = &self.target else {
            return false;
        };
        let sent = target.address().and_then(|addr| {
            let sock = UnixDatagram::unbound()?;
            sock.send_to_addr(message.as_bytes(), &addr)
        });
        match sent {
            Ok(_) => true,
            Err(e) => {
                log::debug!("sd_notify {target:?}: {e}");
                false
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A status line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `STOPPING=1`: the agent is shutting down (and leaves its pods running).
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping; pods keep running");
    }

    /// When the next watchdog ping is due, if the watchdog is on.
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Pings the watchdog if a ping is due at `now`; call once per loop iteration.
    pub fn tick(&mut self, now: Instant) {
        if let (Some(period), Some(due)) = (self.watchdog, self.next_ping) {
            if now >= due {
                self.send("WATCHDOG=1");
                self.next_ping = Some(now + period);
            }
        }
    }
}

/// A status must not span lines: a newline would start another `KEY=VALUE` pair.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(tag: &str) -> (UnixDatagram, String) {
        let path =
            std::env::temp_dir().join(format!("tinylet-notify-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, path.to_string_lossy().into_owned())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn notify_socket_values() {
        // sd_notify(3): an absolute path, or '@' for the abstract namespace.
        assert_eq!(
            Target::parse(Some("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse(Some("@/org/freedesktop/systemd1/notify/1")),
            Some(Target::Abstract(
                "/org/freedesktop/systemd1/notify/1".into()
            ))
        );
        for bad in [None, Some(""), Some("@"), Some("relative.sock")] {
            assert_eq!(Target::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn watchdog_at_half_the_interval_and_only_for_this_pid() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_period(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_period(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_period(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }

    #[test]
    fn ready_status_and_stopping_reach_the_socket() {
        let (sock, path) = socket("msgs");
        let n = Notifier::new(Some(Target::Path(path.clone())), None, Instant::now());
        n.ready("serving; 2 static pods\nstarting");
        assert_eq!(
            recv(&sock),
            "READY=1\nSTATUS=serving; 2 static pods starting"
        );
        n.status("boot complete");
        assert_eq!(recv(&sock), "STATUS=boot complete");
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn abstract_sockets_work_too() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tinylet-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::new(Some(Target::Abstract(name)), None, Instant::now());
        n.ready("up");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=up");
    }

    #[test]
    fn watchdog_pings_when_due_and_not_before() {
        let (sock, path) = socket("wd");
        sock.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut n = Notifier::new(Some(Target::Path(path.clone())), Some(period), t0);
        assert_eq!(n.next_ping(), Some(t0 + period));
        n.tick(t0 + Duration::from_secs(9));
        let mut buf = [0u8; 64];
        assert!(sock.recv(&mut buf).is_err(), "pinged early");
        n.tick(t0 + period);
        let got = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"WATCHDOG=1");
        assert_eq!(n.next_ping(), Some(t0 + period * 2));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let mut n = Notifier::new(None, Some(Duration::from_secs(1)), Instant::now());
        assert!(!n.send("READY=1"));
        assert_eq!(n.next_ping(), None);
        n.tick(Instant::now() + Duration::from_secs(5));
        // A socket that went away: logged, not fatal.
        let gone = Notifier::new(
            Some(Target::Path("/nonexistent/tinylet/notify.sock".into())),
            None,
            Instant::now(),
        );
        assert!(!gone.send("READY=1"));
    }
}
