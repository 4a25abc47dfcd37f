//! A TCP relay in front of the test API server that can turn into a black hole: connections
//! that stop carrying bytes in either direction without ever closing (no RST, no FIN), as a
//! cellular NAT that rebinds or a middlebox that forgets its mapping leaves them.
//!
//! It shapes the path only; it knows nothing of TLS or HTTP (it forwards ciphertext), so the
//! same relay serves HTTP/1.1 watches and the HTTP/2 link. The server's own fault injector
//! still applies behind it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a pump looks at the relay's switches while its socket is quiet.
const POLL: Duration = Duration::from_millis(50);

struct Shared {
    target: SocketAddr,
    /// Connections born before this epoch are dead for good once a black hole starts.
    cut_epoch: AtomicU64,
    /// New connections are dead from birth while this is set.
    black: AtomicBool,
    /// New connections are closed at once while this is set (a hard outage).
    refuse: AtomicBool,
    stop: AtomicBool,
    open: AtomicUsize,
    sockets: Mutex<Vec<TcpStream>>,
}

/// Per connection: whether it still carries bytes.
struct Conn {
    shared: Arc<Shared>,
    epoch: u64,
    dead_at_birth: bool,
}

impl Conn {
    fn dead(&self) -> bool {
        self.dead_at_birth || self.shared.cut_epoch.load(Ordering::SeqCst) > self.epoch
    }
}

/// The relay: listening on 127.0.0.1, forwarding to the server.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    /// Starts relaying from a fresh port on 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            target,
            cut_epoch: AtomicU64::new(0),
            black: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            sockets: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(s, listener))?;
        Ok(Relay { addr, shared })
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` of the relay (the server certificate names 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Every open connection goes silent for good (bytes are swallowed both ways, nothing is
    /// closed), and so does every connection opened until [`Relay::heal`].
    pub fn black_hole(&self) {
        self.shared.black.store(true, Ordering::SeqCst);
        self.shared.cut_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// New connections work again; the ones the black hole swallowed stay dead, as a NAT
    /// mapping that was forgotten does not come back.
    pub fn heal(&self) {
        self.shared.black.store(false, Ordering::SeqCst);
    }

    /// A hard outage: every relayed connection is closed (FIN both ways) and new ones are
    /// closed as soon as they are accepted, until [`Relay::restore`].
    pub fn cut(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
        for s in lock(&self.shared.sockets).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Ends a [`Relay::cut`].
    pub fn restore(&self) {
        self.shared.refuse.store(false, Ordering::SeqCst);
    }

    /// Connections currently held open (dead ones included).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in lock(&self.shared.sockets).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        if shared.refuse.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let conn = Arc::new(Conn {
            shared: Arc::clone(&shared),
            epoch: shared.cut_epoch.load(Ordering::SeqCst),
            dead_at_birth: shared.black.load(Ordering::SeqCst),
        });
        // A dead-at-birth connection never reaches the server: the SYN went into the void
        // after the local stack accepted it.
        let server = if conn.dead_at_birth {
            None
        } else {
            match TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) {
                Ok(s) => Some(s),
                Err(_) => {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
            }
        };
        shared.open.fetch_add(1, Ordering::SeqCst);
        {
            let mut socks = lock(&shared.sockets);
            socks.retain(|s| s.peer_addr().is_ok());
            if let Ok(c) = client.try_clone() {
                socks.push(c);
            }
            if let Some(s) = server.as_ref().and_then(|s| s.try_clone().ok()) {
                socks.push(s);
            }
        }
        match server {
            Some(server) => {
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    shared.open.fetch_sub(1, Ordering::SeqCst);
                    continue;
                };
                let up = Arc::clone(&conn);
                let done = Arc::new(AtomicUsize::new(0));
                let d1 = Arc::clone(&done);
                let _ = std::thread::Builder::new()
                    .name("relay-up".into())
                    .spawn(move || pump(&up, client, server, &d1));
                let _ = std::thread::Builder::new()
                    .name("relay-down".into())
                    .spawn(move || pump(&conn, s2, c2, &done));
            }
            None => {
                let _ = std::thread::Builder::new()
                    .name("relay-void".into())
                    .spawn(move || swallow(&conn, client));
            }
        }
    }
}

/// Copies `from` to `to` until either side ends, or only swallows once the connection is dead.
fn pump(conn: &Conn, mut from: TcpStream, mut to: TcpStream, done: &AtomicUsize) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 16 << 10];
    loop {
        if conn.shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            // The peer closed: pass the FIN on, unless the path is dead (then nothing passes).
            Ok(0) => {
                if !conn.dead() {
                    let _ = to.shutdown(Shutdown::Write);
                }
                break;
            }
            Ok(n) => {
                if conn.dead() {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                if !conn.dead() {
                    let _ = to.shutdown(Shutdown::Both);
                }
                break;
            }
        }
    }
    // The second pump to finish accounts for the connection.
    if done.fetch_add(1, Ordering::SeqCst) == 1 {
        conn.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Holds a dead-at-birth connection open, reading and dropping whatever the client sends.
fn swallow(conn: &Conn, mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 16 << 10];
    while !conn.shared.stop.load(Ordering::SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    conn.shared.open.fetch_sub(1, Ordering::SeqCst);
}
