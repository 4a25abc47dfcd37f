//! One long-lived AF_NETLINK socket: sequence numbers, ACK/error collection, multipart dumps
//! and batched requests.
//!
//! Owns the syscalls. Knows nothing of what the messages mean: callers hand in encoded
//! requests and a description for errors, and get reply payloads back.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;

use super::wire::{
    messages, Builder, NlMsg, NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, NLM_F_DUMP_INTR,
};
use super::Error;

/// Receive buffer requested from the kernel: a batch's ACKs and a dump's chunks must fit.
const RCVBUF_BYTES: usize = 8 << 20;
/// Size of one read: the kernel sends dump chunks of up to 32 KiB.
const READ_BYTES: usize = 64 << 10;
/// Upper bound on the bytes of one batched sendmsg.
const BATCH_BYTES: usize = 60 << 10;
/// How long to wait for the kernel before declaring a request lost.
const RECV_TIMEOUT_SECS: i64 = 30;

/// Which netlink protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NETLINK_GENERIC (IPVS).
    Generic,
    /// NETLINK_ROUTE (links, addresses).
    Route,
}

/// Counts of what went over the socket, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Netlink request messages sent.
    pub messages: u64,
    /// sendmsg calls made.
    pub sends: u64,
}

/// A netlink socket with its own sequence numbers.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    rx: Vec<u8>,
    /// Largest number of messages put in one batch; smaller when the buffer could not grow.
    batch_msgs: usize,
    counters: Counters,
}

/// Callback receiving each reply message of a request.
pub type OnReply<'a> = dyn FnMut(&NlMsg<&[u8]>) -> Result<(), Error> + 'a;

/// How one request of a batch ended.
pub type Outcome = Result<(), Error>;

impl Socket {
    /// Open and configure a socket.
    pub fn open(kind: Kind) -> Result<Self, Error> {
        let io = |op: &str| {
            let op = op.to_string();
            move |errno| Error::Io { op, errno }
        };
        let proto = match kind {
            Kind::Generic => SockProtocol::NetlinkGeneric,
            Kind::Route => SockProtocol::NetlinkRoute,
        };
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            proto,
        )
        .map_err(io("open netlink socket"))?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io("bind netlink socket"))?;
        // Forcing the size needs CAP_NET_ADMIN; without it the kernel caps the plain request
        // at rmem_max, and batches are kept small enough for that.
        let batch_msgs = if setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF_BYTES).is_ok() {
            1024
        } else {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RCVBUF_BYTES);
            128
        };
        let _ = setsockopt(&fd, sockopt::SndBuf, &(BATCH_BYTES * 2));
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT_SECS, 0),
        )
        .map_err(io("set netlink receive timeout"))?;
        Ok(Socket {
            fd,
            seq: 1,
            rx: vec![0; READ_BYTES],
            batch_msgs,
            counters: Counters::default(),
        })
    }

    /// What went over this socket so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn send(&mut self, bytes: &[u8], n_msgs: usize, op: &dyn Fn() -> String) -> Result<(), Error> {
        let dest = NetlinkAddr::new(0, 0);
        let sent = socket::sendto(self.fd.as_raw_fd(), bytes, &dest, MsgFlags::empty())
            .map_err(|errno| Error::Io { op: op(), errno })?;
        if sent != bytes.len() {
            return Err(Error::Incomplete {
                op: op(),
                reason: "short netlink send",
            });
        }
        self.counters.sends += 1;
        self.counters.messages += n_msgs as u64;
        Ok(())
    }

    /// Read one datagram into the receive buffer; returns its length.
    fn recv(&mut self, op: &dyn Fn() -> String) -> Result<usize, Error> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut self.rx, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > self.rx.len() => {
                    return Err(Error::Incomplete {
                        op: op(),
                        reason: "reply larger than the read buffer",
                    })
                }
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return Err(Error::Incomplete {
                        op: op(),
                        reason: "no reply from the kernel",
                    })
                }
                Err(errno) => return Err(Error::Io { op: op(), errno }),
            }
        }
    }

    /// Send one request and feed each reply message to `on_reply` until its ACK (or, for a
    /// dump, NLMSG_DONE). An error reply becomes [`Error::Kernel`] naming `op`.
    pub fn transact(
        &mut self,
        emit: &dyn Fn(&mut Builder, u32),
        dump: bool,
        op: &dyn Fn() -> String,
        on_reply: &mut OnReply<'_>,
    ) -> Result<(), Error> {
        let seq = self.next_seq();
        let mut b = Builder::new();
        emit(&mut b, seq);
        self.send(b.as_bytes(), 1, op)?;
        let mut interrupted = false;
        loop {
            let n = self.recv(op)?;
            let rx = std::mem::take(&mut self.rx);
            let res = scan(
                rx.get(..n).unwrap_or(&[]),
                seq,
                dump,
                op,
                &mut interrupted,
                on_reply,
            );
            self.rx = rx;
            if res? {
                break;
            }
        }
        if interrupted {
            return Err(Error::Incomplete {
                op: op(),
                reason: "dump interrupted by a concurrent change; retry",
            });
        }
        Ok(())
    }

    /// Send many requests, packed into few sendmsg calls, each asking for an ACK; returns one
    /// outcome per request, in order. This is what makes large syncs fast.
    pub fn batch(
        &mut self,
        count: usize,
        emit: &dyn Fn(usize, &mut Builder, u32),
        describe: &dyn Fn(usize) -> String,
    ) -> Vec<Outcome> {
        let mut out: Vec<Outcome> = Vec::with_capacity(count);
        let mut b = Builder::new();
        let mut next = 0;
        while next < count {
            b.clear();
            let first = next;
            let base = self.seq.wrapping_add(1);
            while next < count && next - first < self.batch_msgs && b.len() < BATCH_BYTES {
                let seq = self.next_seq();
                emit(next, &mut b, seq);
                next += 1;
            }
            let n = next - first;
            let chunk_op = || format!("{} (and {} more in the batch)", describe(first), n - 1);
            let mut results: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
            if let Err(e) = self.send(b.as_bytes(), n, &chunk_op) {
                let text = e.to_string();
                out.extend((0..n).map(|_| Err(Error::Batch(text.clone()))));
                continue;
            }
            let mut pending = n;
            while pending > 0 {
                let len = match self.recv(&chunk_op) {
                    Ok(len) => len,
                    Err(e) => {
                        let text = e.to_string();
                        for r in results.iter_mut().filter(|r| r.is_none()) {
                            *r = Some(Err(Error::Batch(text.clone())));
                        }
                        break;
                    }
                };
                for m in messages(self.rx.get(..len).unwrap_or(&[])).flatten() {
                    if m.msg_type() != NLMSG_ERROR {
                        continue;
                    }
                    let idx = m.seq().wrapping_sub(base) as usize;
                    let Some(slot) = results.get_mut(idx) else {
                        continue;
                    };
                    if slot.is_some() {
                        continue;
                    }
                    *slot = Some(match m.error_code() {
                        Ok(0) => Ok(()),
                        Ok(code) => Err(Error::Kernel {
                            op: describe(first + idx),
                            errno: Errno::from_raw(-code),
                        }),
                        Err(source) => Err(Error::Malformed {
                            op: describe(first + idx),
                            source,
                        }),
                    });
                    pending -= 1;
                }
            }
            out.extend(results.into_iter().map(|r| r.unwrap_or(Ok(()))));
        }
        out
    }
}

/// Walk one datagram; returns true when the request `seq` is finished.
fn scan(
    buf: &[u8],
    seq: u32,
    dump: bool,
    op: &dyn Fn() -> String,
    interrupted: &mut bool,
    on_reply: &mut OnReply<'_>,
) -> Result<bool, Error> {
    for m in messages(buf) {
        let m = m.map_err(|source| Error::Malformed { op: op(), source })?;
        if m.seq() != seq {
            // A late answer to an earlier request that timed out.
            continue;
        }
        if m.flags() & NLM_F_DUMP_INTR != 0 {
            *interrupted = true;
        }
        match m.msg_type() {
            NLMSG_ERROR => {
                let code = m
                    .error_code()
                    .map_err(|source| Error::Malformed { op: op(), source })?;
                if code != 0 {
                    return Err(Error::Kernel {
                        op: op(),
                        errno: Errno::from_raw(-code),
                    });
                }
                return Ok(true);
            }
            NLMSG_DONE if dump => return Ok(true),
            NLMSG_OVERRUN => {
                return Err(Error::Incomplete {
                    op: op(),
                    reason: "netlink overrun",
                })
            }
            _ => on_reply(&m)?,
        }
    }
    Ok(false)
}
