//! The load-balancer table as proxy logic sees it: virtual servers, real servers, and the
//! addresses that must be local (bound to the dummy interface). Backend-neutral values, and
//! the ops that change one table into another.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// From a Kubernetes protocol name ("" means TCP).
    pub fn from_k8s(s: &str) -> Option<Proto> {
        match s {
            "" | "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        })
    }
}

/// `addr:port` with brackets for IPv6.
struct HostPort(IpAddr, u16);

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Identity of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualKey {
    /// Protocol.
    pub proto: Proto,
    /// Virtual address.
    pub addr: IpAddr,
    /// Virtual port.
    pub port: u16,
}

impl fmt::Display for VirtualKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, HostPort(self.addr, self.port))
    }
}

/// Longest scheduler name: IPVS keeps 16 bytes with the NUL (IP_VS_SCHEDNAME_MAXLEN).
pub const SCHED_NAME_MAX: usize = 15;

/// A scheduler name ("rr", "wrr", "sh", ...), kept inline so that virtual-server settings
/// copy without allocating: a large table carries one per virtual server through every diff.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchedName {
    len: u8,
    bytes: [u8; SCHED_NAME_MAX],
}

impl SchedName {
    /// Round robin, the default.
    pub const RR: SchedName = SchedName {
        len: 2,
        bytes: *b"rr\0\0\0\0\0\0\0\0\0\0\0\0\0",
    };

    /// A name IPVS can hold: 1 to 15 bytes, no NUL.
    pub fn new(name: &str) -> Option<SchedName> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > SCHED_NAME_MAX || b.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; SCHED_NAME_MAX];
        bytes[..b.len()].copy_from_slice(b);
        Some(SchedName {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Built from a &str of at most SCHED_NAME_MAX bytes: always whole UTF-8.
        std::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or(&[])).unwrap_or("")
    }
}

impl fmt::Display for SchedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SchedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<&str> for SchedName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Settings of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualParams {
    /// Scheduler name.
    pub scheduler: SchedName,
    /// Client-IP affinity timeout in seconds; `None` = no affinity.
    pub affinity_timeout: Option<u32>,
}

/// Identity of a real server within a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealKey {
    /// Backend address.
    pub addr: IpAddr,
    /// Backend port.
    pub port: u16,
}

impl fmt::Display for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        HostPort(self.addr, self.port).fmt(f)
    }
}

/// Settings of a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealParams {
    /// Scheduling weight.
    pub weight: u32,
    /// Forward by NAT (the only method kube-proxy uses); false = anything else.
    pub masquerade: bool,
}

impl Default for RealParams {
    fn default() -> Self {
        RealParams {
            weight: 1,
            masquerade: true,
        }
    }
}

/// A virtual server with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// Settings.
    pub params: VirtualParams,
    /// Real servers.
    pub reals: BTreeMap<RealKey, RealParams>,
}

/// Everything the backend must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Virtual servers.
    pub services: BTreeMap<VirtualKey, VirtualServer>,
    /// Addresses that must be bound to the dummy interface.
    pub addresses: BTreeSet<IpAddr>,
}

impl State {
    /// Apply one op to this in-memory copy, the way a backend applies it to its table.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::BindAddress(a) => {
                self.addresses.insert(*a);
            }
            Op::UnbindAddress(a) => {
                self.addresses.remove(a);
            }
            Op::AddVirtual(k, p) | Op::EditVirtual(k, p) => {
                self.services
                    .entry(*k)
                    .and_modify(|v| v.params = *p)
                    .or_insert_with(|| VirtualServer {
                        params: *p,
                        reals: BTreeMap::new(),
                    });
            }
            Op::DelVirtual(k) => {
                self.services.remove(k);
            }
            Op::AddReal(k, r, p) | Op::EditReal(k, r, p) => {
                if let Some(v) = self.services.get_mut(k) {
                    v.reals.insert(*r, *p);
                }
            }
            Op::DelReal(k, r) => {
                if let Some(v) = self.services.get_mut(k) {
                    v.reals.remove(r);
                }
            }
        }
    }

    /// Total real servers.
    pub fn real_count(&self) -> usize {
        self.services.values().map(|v| v.reals.len()).sum()
    }
}

/// One change to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Bind an address to the dummy interface.
    BindAddress(IpAddr),
    /// Add a virtual server.
    AddVirtual(VirtualKey, VirtualParams),
    /// Change a virtual server's settings.
    EditVirtual(VirtualKey, VirtualParams),
    /// Add a real server.
    AddReal(VirtualKey, RealKey, RealParams),
    /// Change a real server's settings.
    EditReal(VirtualKey, RealKey, RealParams),
    /// Remove a real server.
    DelReal(VirtualKey, RealKey),
    /// Remove a virtual server and its real servers.
    DelVirtual(VirtualKey),
    /// Unbind an address from the dummy interface.
    UnbindAddress(IpAddr),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aff = |p: &VirtualParams| match p.affinity_timeout {
            Some(t) => format!(" persistent {t}"),
            None => String::new(),
        };
        match self {
            Op::BindAddress(a) => write!(f, "bind address {a}"),
            Op::AddVirtual(k, p) => write!(f, "add service {k} {}{}", p.scheduler, aff(p)),
            Op::EditVirtual(k, p) => write!(f, "edit service {k} {}{}", p.scheduler, aff(p)),
            Op::AddReal(k, r, p) => write!(f, "add destination {r} weight {} to {k}", p.weight),
            Op::EditReal(k, r, p) => write!(f, "edit destination {r} weight {} of {k}", p.weight),
            Op::DelReal(k, r) => write!(f, "delete destination {r} from {k}"),
            Op::DelVirtual(k) => write!(f, "delete service {k}"),
            Op::UnbindAddress(a) => write!(f, "unbind address {a}"),
        }
    }
}
