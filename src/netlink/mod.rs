//! Netlink: wire format, generic netlink, IPVS, nf_tables and rtnetlink over one socket each.
//!
//! Owns everything between typed kernel objects (IPVS services and destinations, nf_tables
//! tables, chains, sets and rules, links, addresses) and the bytes on an AF_NETLINK socket.
//! Layers: `wire` (framing views and a builder), `genl`, `ipvs`, `nftables` and `rtnl`
//! (sans-I/O Reprs and requests; `nftables` also has its transaction client), `socket` (the
//! syscalls, batching, dumps), `client` (typed operations). It decides nothing about what to
//! program: that is `proxy`'s job. No libnl, no libnftnl, no ipvsadm, no nft.

pub mod client;
pub mod genl;
pub mod ipvs;
pub mod nftables;
pub mod rtnl;
pub mod socket;
pub mod wire;

use std::fmt;

use nix::errno::Errno;

pub use client::{Ipvs, Rtnl};
pub use wire::WireError;

/// What went wrong talking to the kernel, naming the operation and the object.
#[derive(Debug)]
pub enum Error {
    /// The kernel refused a request ("add service TCP 10.0.0.1:80: File exists").
    Kernel {
        /// The operation and object.
        op: String,
        /// The errno the kernel returned.
        errno: Errno,
    },
    /// A socket call failed.
    Io {
        /// The operation.
        op: String,
        /// The errno of the syscall.
        errno: Errno,
    },
    /// The kernel sent bytes that do not parse.
    Malformed {
        /// The operation.
        op: String,
        /// What was wrong.
        source: WireError,
    },
    /// A generic netlink family is not registered (module not loaded).
    FamilyNotFound(&'static str),
    /// A reply did not arrive whole (timeout, truncation, interrupted dump).
    Incomplete {
        /// The operation.
        op: String,
        /// Why.
        reason: &'static str,
    },
    /// A batched request's fate is unknown because its batch failed as a whole.
    Batch(String),
}

impl Error {
    /// The kernel's errno, if the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel { op, errno } => write!(f, "{op}: {}", errno.desc()),
            Error::Io { op, errno } => write!(f, "{op}: {}", errno.desc()),
            Error::Malformed { op, source } => write!(f, "{op}: malformed reply: {source}"),
            Error::FamilyNotFound(name) => write!(
                f,
                "generic netlink family {name} not found: is the kernel module (ip_vs) loaded?"
            ),
            Error::Incomplete { op, reason } => write!(f, "{op}: {reason}"),
            Error::Batch(text) => write!(f, "batched request not confirmed: {text}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Malformed { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Parse arbitrary bytes as netlink messages carrying IPVS, controller and rtnetlink replies;
/// returns how many messages decoded. The fuzz target's body: it must never panic.
pub fn parse_any(data: &[u8]) -> usize {
    let mut ok = 0;
    for m in wire::messages(data).flatten() {
        let p = m.payload();
        let _ = m.error_code();
        // Type numbers overlap between protocols (GENL_ID_CTRL == RTM_NEWLINK), so every
        // decoder sees every message.
        let decoded = [
            genl::parse_family_id(p).is_ok(),
            rtnl::LinkRepr::parse(p).is_ok(),
            rtnl::AddrRepr::parse(p).is_ok(),
            ipvs::Reply::parse(p, false).is_ok(),
            ipvs::Reply::parse(p, true).is_ok(),
        ]
        .contains(&true);
        if decoded {
            ok += 1;
        }
        for a in wire::attrs(p.get(genl::GENL_HDR_LEN..).unwrap_or(&[])).flatten() {
            let _ = a.nested().count();
        }
    }
    ok
}
