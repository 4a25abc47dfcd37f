//! One long-lived AF_NETLINK socket: sequence numbers, ACK/error collection, multipart dumps
//! and batched requests.
//!
//! Owns the syscalls. Knows nothing of what the messages mean: callers hand in encoded
//! requests and a description for errors, and get reply payloads back.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use std::io::IoSliceMut;

use nix::sys::socket::{
    self, setsockopt, sockopt, AddressFamily, MsgFlags, MultiHeaders, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};

use super::wire::{
    align, messages, Builder, NlMsg, HDR_LEN, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
    NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use super::Error;

/// Receive buffer requested from the kernel: a batch's ACKs and a dump's chunks must fit.
const RCVBUF_BYTES: usize = 8 << 20;
/// Size of one read: the kernel sends dump chunks of up to 32 KiB.
const READ_BYTES: usize = 64 << 10;
/// Receive buffer slot per ACK in a batch: an ACK is 36 bytes, an error echoes the request.
const ACK_SLOT_BYTES: usize = 1024;
/// Most datagrams taken by one recvmmsg.
const RECV_SLOTS_MAX: usize = 256;
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
    /// NETLINK_NETFILTER (nf_tables).
    Netfilter,
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
    /// The request bytes being built, reused by every request (a builder carries a 4 KiB
    /// stage: a resync's ten thousand dumps should not each set up a new one).
    tx: Builder,
    hdrs: MultiHeaders<NetlinkAddr>,
    /// Largest number of messages put in one batch; smaller when the buffer could not grow.
    batch_msgs: usize,
    quiet: bool,
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
            Kind::Netfilter => SockProtocol::NetlinkNetFilter,
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
            &TimeVal::seconds(RECV_TIMEOUT_SECS),
        )
        .map_err(io("set netlink receive timeout"))?;
        Ok(Socket {
            fd,
            seq: 1,
            rx: vec![0; RECV_SLOTS_MAX * ACK_SLOT_BYTES],
            tx: Builder::new(),
            hdrs: MultiHeaders::preallocate(RECV_SLOTS_MAX, None),
            batch_msgs,
            quiet: false,
            counters: Counters::default(),
        })
    }

    /// Batches without a per-request ACK: the kernel still answers every failure, and one
    /// NLMSG_NOOP with NLM_F_ACK closes each batch. Off by default (one ACK per request).
    pub fn set_quiet_batches(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// What went over this socket so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Send what `tx` holds: `n_msgs` messages.
    fn send(&mut self, n_msgs: usize, op: &dyn Fn() -> String) -> Result<(), Error> {
        let bytes = self.tx.as_bytes();
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

    /// Read the datagrams waiting (at least one; blocks up to the timeout for the first) with
    /// one recvmmsg, each into its own `slot`-byte part of the receive buffer. Returns each
    /// datagram's (offset, length, truncated). Netlink queues every ACK as its own datagram,
    /// so reading many per syscall is what keeps a large batch's ACK collection cheap.
    fn recv_multi(
        &mut self,
        slot: usize,
        op: &dyn Fn() -> String,
    ) -> Result<Vec<(usize, usize, bool)>, Error> {
        loop {
            let res = {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                    .rx
                    .chunks_mut(slot)
                    .take(RECV_SLOTS_MAX)
                    .map(|c| [IoSliceMut::new(c)])
                    .collect();
                socket::recvmmsg(
                    self.fd.as_raw_fd(),
                    &mut self.hdrs,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                )
                .map(|r| {
                    r.enumerate()
                        .map(|(i, m)| (i * slot, m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC)))
                        .collect::<Vec<_>>()
                })
            };
            match res {
                Ok(v) => return Ok(v),
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
        self.tx.clear();
        emit(&mut self.tx, seq);
        self.send(1, op)?;
        let mut interrupted = false;
        'recv: loop {
            let got = self.recv_multi(READ_BYTES, op)?;
            for (off, len, truncated) in got {
                if truncated {
                    return Err(Error::Incomplete {
                        op: op(),
                        reason: "reply larger than the read buffer",
                    });
                }
                let buf = self.rx.get(off..off + len).unwrap_or(&[]);
                if scan(buf, seq, dump, op, &mut interrupted, on_reply)? {
                    break 'recv;
                }
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

    /// The sequence number the next request will use.
    pub fn peek_seq(&self) -> u32 {
        self.seq.wrapping_add(1).max(1)
    }

    /// Send a prebuilt nfnetlink batch whose messages use sequence numbers up to `last_seq`,
    /// then an NLMSG_NOOP asking for an ACK. nfnetlink answers a whole batch while it is being
    /// sent, so that ACK comes after every reply to the batch: `on_ack` sees the (seq, error
    /// code) of each ACK or error until then. `acks` is how many replies to make room for.
    pub fn send_batch(
        &mut self,
        bytes: &[u8],
        n_msgs: usize,
        last_seq: u32,
        acks: usize,
        op: &dyn Fn() -> String,
        on_ack: &mut dyn FnMut(u32, i32),
    ) -> Result<(), Error> {
        let io = |errno| Error::Io { op: op(), errno };
        // The kernel refuses a datagram larger than the send buffer; an ACK takes about 1 KiB
        // of receive buffer (its skb), so a large batch needs both raised, as nft does.
        if bytes.len() + 4096 > BATCH_BYTES * 2 {
            let want = bytes.len() + 64 * 1024;
            if setsockopt(&self.fd, sockopt::SndBufForce, &want).is_err() {
                setsockopt(&self.fd, sockopt::SndBuf, &want).map_err(io)?;
            }
        }
        if acks > RCVBUF_BYTES / ACK_SLOT_BYTES {
            let want = acks.saturating_mul(ACK_SLOT_BYTES + 256);
            let _ = setsockopt(&self.fd, sockopt::RcvBufForce, &want);
        }
        let dest = NetlinkAddr::new(0, 0);
        let sent =
            socket::sendto(self.fd.as_raw_fd(), bytes, &dest, MsgFlags::empty()).map_err(io)?;
        if sent != bytes.len() {
            return Err(Error::Incomplete {
                op: op(),
                reason: "short netlink send",
            });
        }
        self.counters.sends += 1;
        self.counters.messages += n_msgs as u64;
        let marker = last_seq.wrapping_add(1).max(1);
        self.seq = marker;
        self.tx.clear();
        let m = self
            .tx
            .begin_msg(NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, marker);
        self.tx.end_msg(m);
        self.send(0, op)?;
        loop {
            let got = self.recv_multi(ACK_SLOT_BYTES, op)?;
            let mut done = false;
            for (off, len, _) in got {
                let buf = self.rx.get(off..off + len).unwrap_or(&[]);
                for (seq, code) in acks_in(buf) {
                    if seq == marker {
                        done = true;
                    } else {
                        on_ack(seq, code);
                    }
                }
            }
            if done {
                return Ok(());
            }
        }
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
        let mut next = 0;
        while next < count {
            self.tx.clear();
            let first = next;
            let base = self.seq.wrapping_add(1);
            while next < count && next - first < self.batch_msgs && self.tx.len() < BATCH_BYTES {
                let seq = self.next_seq();
                let at = align(self.tx.len());
                emit(next, &mut self.tx, seq);
                if self.quiet {
                    self.tx.clear_flag(at, NLM_F_ACK);
                }
                next += 1;
            }
            let n = next - first;
            if self.quiet {
                // Control messages are acknowledged in order after everything before them.
                let seq = self.next_seq();
                let m = self
                    .tx
                    .begin_msg(NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, seq);
                self.tx.end_msg(m);
            }
            let chunk_op = || format!("{} (and {} more in the batch)", describe(first), n - 1);
            let mut results: Vec<Option<Outcome>> =
                (0..n + usize::from(self.quiet)).map(|_| None).collect();
            if let Err(e) = self.send(n + usize::from(self.quiet), &chunk_op) {
                let text = e.to_string();
                out.extend((0..n).map(|_| Err(Error::Batch(text.clone()))));
                continue;
            }
            let mut pending = if self.quiet { 1 } else { n };
            while pending > 0 {
                let got = match self.recv_multi(ACK_SLOT_BYTES, &chunk_op) {
                    Ok(got) => got,
                    Err(e) => {
                        let text = e.to_string();
                        for r in results.iter_mut().filter(|r| r.is_none()) {
                            *r = Some(Err(Error::Batch(text.clone())));
                        }
                        break;
                    }
                };
                for (off, len, _) in got {
                    let buf = self.rx.get(off..off + len).unwrap_or(&[]);
                    // An error echoes the request and may be cut at the slot size: the header
                    // and error code come first, which is all an outcome needs.
                    for (seq, code) in acks_in(buf) {
                        let idx = seq.wrapping_sub(base) as usize;
                        let Some(slot) = results.get_mut(idx) else {
                            continue;
                        };
                        if slot.is_some() {
                            continue;
                        }
                        if !self.quiet || idx == n {
                            pending -= 1;
                        }
                        *slot = Some(match code {
                            0 => Ok(()),
                            code => Err(Error::Kernel {
                                op: describe(first + idx),
                                errno: Errno::from_raw(code.saturating_neg()),
                            }),
                        });
                    }
                }
            }
            results.truncate(n);
            out.extend(results.into_iter().map(|r| r.unwrap_or(Ok(()))));
        }
        out
    }
}

/// (seq, error code) of each NLMSG_ERROR in a datagram, reading a cut-off last message by its
/// header alone.
fn acks_in(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= HDR_LEN + 4 {
        let f = |at: usize| [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
        let len = u32::from_ne_bytes(f(0)) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if kind == NLMSG_ERROR {
            out.push((u32::from_ne_bytes(f(8)), i32::from_ne_bytes(f(16))));
        }
        if len < HDR_LEN {
            break;
        }
        rest = rest.get(align(len)..).unwrap_or(&[]);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_read_errors_even_when_cut_short() {
        let mut b = Builder::new();
        for (seq, code) in [(7u32, 0i32), (8, -17)] {
            let m = b.begin_msg(NLMSG_ERROR, 0, seq);
            b.put_bytes(&code.to_ne_bytes());
            // The echoed request header (and, without NETLINK_CAP_ACK, its payload).
            b.put_bytes(&[0u8; 16 + 64]);
            b.end_msg(m);
        }
        let bytes = b.into_bytes();
        assert_eq!(acks_in(&bytes), vec![(7, 0), (8, -17)]);
        // A datagram cut by the receive slot keeps its header and error code.
        assert_eq!(acks_in(&bytes[..bytes.len() - 40]), vec![(7, 0), (8, -17)]);
        assert_eq!(acks_in(&bytes[..10]), vec![]);
        assert!(acks_in(&[0u8; 64]).is_empty());
    }
}
