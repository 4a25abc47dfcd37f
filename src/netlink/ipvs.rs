//! IPVS over generic netlink: request encoding and reply decoding, sans I/O.
//!
//! Owns the IPVS attribute layout (services, destinations, info, timeouts) as small `Repr`
//! types that emit into a [`Builder`] and parse from reply payloads. Requests match the bytes
//! `ipvsadm` sends, so captures from real kernels serve as golden vectors. No sockets here:
//! `client` sends what this module builds.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::genl::GenlHeader;
use super::wire::{attrs, Builder, NlAttr, WireError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

/// Family name to resolve through the generic netlink controller.
pub const FAMILY_NAME: &str = "IPVS";
/// Generic netlink interface version of IPVS.
pub const GENL_VERSION: u8 = 1;

/// IPVS commands (`enum ipvs_cmds`).
pub mod cmd {
    /// Add a service.
    pub const NEW_SERVICE: u8 = 1;
    /// Edit a service.
    pub const SET_SERVICE: u8 = 2;
    /// Delete a service.
    pub const DEL_SERVICE: u8 = 3;
    /// Get one or dump all services.
    pub const GET_SERVICE: u8 = 4;
    /// Add a destination.
    pub const NEW_DEST: u8 = 5;
    /// Edit a destination.
    pub const SET_DEST: u8 = 6;
    /// Delete a destination.
    pub const DEL_DEST: u8 = 7;
    /// Dump the destinations of a service.
    pub const GET_DEST: u8 = 8;
    /// Set timeouts.
    pub const SET_CONFIG: u8 = 12;
    /// Get timeouts.
    pub const GET_CONFIG: u8 = 13;
    /// Reply carrying info.
    pub const SET_INFO: u8 = 14;
    /// Get version and connection table size.
    pub const GET_INFO: u8 = 15;
    /// Delete every service.
    pub const FLUSH: u8 = 17;
}

mod attr {
    pub const CMD_SERVICE: u16 = 1;
    pub const CMD_DEST: u16 = 2;
    pub const CMD_TIMEOUT_TCP: u16 = 4;
    pub const CMD_TIMEOUT_TCP_FIN: u16 = 5;
    pub const CMD_TIMEOUT_UDP: u16 = 6;

    pub const SVC_AF: u16 = 1;
    pub const SVC_PROTOCOL: u16 = 2;
    pub const SVC_ADDR: u16 = 3;
    pub const SVC_PORT: u16 = 4;
    pub const SVC_FWMARK: u16 = 5;
    pub const SVC_SCHED_NAME: u16 = 6;
    pub const SVC_FLAGS: u16 = 7;
    pub const SVC_TIMEOUT: u16 = 8;
    pub const SVC_NETMASK: u16 = 9;

    pub const DEST_ADDR: u16 = 1;
    pub const DEST_PORT: u16 = 2;
    pub const DEST_FWD_METHOD: u16 = 3;
    pub const DEST_WEIGHT: u16 = 4;
    pub const DEST_U_THRESH: u16 = 5;
    pub const DEST_L_THRESH: u16 = 6;
    pub const DEST_ACTIVE_CONNS: u16 = 7;
    pub const DEST_INACT_CONNS: u16 = 8;
    pub const DEST_PERSIST_CONNS: u16 = 9;
    pub const DEST_ADDR_FAMILY: u16 = 11;
    pub const DEST_TUN_TYPE: u16 = 13;
    pub const DEST_TUN_PORT: u16 = 14;
    pub const DEST_TUN_FLAGS: u16 = 15;

    pub const INFO_VERSION: u16 = 1;
    pub const INFO_CONN_TAB_SIZE: u16 = 2;
}

/// Service flag: persistent (client affinity).
pub const SVC_F_PERSISTENT: u32 = 0x1;
/// Service flag set by the kernel on every hashed service; not a setting.
pub const SVC_F_HASHED: u32 = 0x2;
/// Service flag: one-packet scheduling (UDP).
pub const SVC_F_ONEPACKET: u32 = 0x4;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// Anything else the kernel reports.
    Unknown(u16),
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Unknown(n) => n,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(n: u16) -> Self {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            n => Protocol::Unknown(n),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => write!(f, "TCP"),
            Protocol::Udp => write!(f, "UDP"),
            Protocol::Sctp => write!(f, "SCTP"),
            Protocol::Unknown(n) => write!(f, "proto{n}"),
        }
    }
}

/// Packet forwarding method of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Forward {
    /// NAT (masquerade), 0.
    Masq,
    /// Local node, 1.
    Local,
    /// IP-in-IP tunnel, 2.
    Tunnel,
    /// Direct routing (gatewaying), 3.
    Route,
    /// Bypass, 4.
    Bypass,
    /// Anything else the kernel reports.
    Unknown(u32),
}

impl Forward {
    /// Kernel value (IP_VS_CONN_F_*).
    pub fn number(self) -> u32 {
        match self {
            Forward::Masq => 0,
            Forward::Local => 1,
            Forward::Tunnel => 2,
            Forward::Route => 3,
            Forward::Bypass => 4,
            Forward::Unknown(n) => n,
        }
    }

    /// From the kernel value; only the low bits carry the method.
    pub fn from_number(n: u32) -> Self {
        match n & 0x7 {
            0 => Forward::Masq,
            1 => Forward::Local,
            2 => Forward::Tunnel,
            3 => Forward::Route,
            4 => Forward::Bypass,
            _ => Forward::Unknown(n),
        }
    }

    /// The word ipvsadm prints in listings.
    pub fn listing_name(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel => "Tunnel",
            Forward::Route => "Route",
            Forward::Bypass | Forward::Unknown(_) => "Unknown",
        }
    }
}

/// What identifies a virtual service in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// Protocol + virtual address + port.
    Addr {
        /// Transport protocol.
        protocol: Protocol,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// Firewall-mark service.
    Fwmark {
        /// true for an IPv6 service.
        ipv6: bool,
        /// The mark.
        mark: u32,
    },
}

impl ServiceKey {
    /// A protocol/address/port key.
    pub fn new(protocol: Protocol, addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        }
    }

    fn af(&self) -> u16 {
        let v6 = match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        };
        if v6 {
            AF_INET6
        } else {
            AF_INET
        }
    }

    /// The netmask ipvsadm sends by default for this family (/32 or /128).
    pub fn default_netmask(&self) -> u32 {
        if self.af() == AF_INET6 {
            128
        } else {
            0xffff_ffff
        }
    }

    fn emit_id(&self, b: &mut Builder) {
        b.attr_u16(attr::SVC_AF, self.af());
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                b.attr_u16(attr::SVC_PROTOCOL, protocol.number());
                b.attr_16(attr::SVC_ADDR, addr16(addr));
                b.attr_be16(attr::SVC_PORT, *port);
            }
            ServiceKey::Fwmark { mark, .. } => b.attr_u32(attr::SVC_FWMARK, *mark),
        }
    }

    /// Emit a SERVICE nest holding only the identity (as a destination dump request does).
    pub fn emit_nest(&self, b: &mut Builder) {
        let n = b.begin_nest(attr::CMD_SERVICE);
        self.emit_id(b);
        b.end_nest(n);
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                write!(f, "{protocol} {}", SockAddr(*addr, *port))
            }
            ServiceKey::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// `addr:port`, with brackets for IPv6, as ipvsadm prints it.
#[derive(Debug, Clone, Copy)]
pub struct SockAddr(pub IpAddr, pub u16);

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

fn addr16(a: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn parse_addr(af: u16, a: &NlAttr<'_>) -> Result<IpAddr, WireError> {
    match af {
        AF_INET => {
            let s = a.value.get(..4).ok_or(WireError::BadAttribute(a.kind))?;
            Ok(IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])))
        }
        AF_INET6 => {
            let s: [u8; 16] = a
                .value
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(WireError::BadAttribute(a.kind))?;
            Ok(IpAddr::V6(Ipv6Addr::from(s)))
        }
        _ => Err(WireError::BadAttribute(a.kind)),
    }
}

/// A virtual service and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRepr {
    /// Identity.
    pub key: ServiceKey,
    /// Scheduler name ("rr", "wrr", "sh", ...).
    pub scheduler: String,
    /// IP_VS_SVC_F_* flags (replies include HASHED).
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence netmask (an IPv4 mask, or a prefix length for IPv6).
    pub netmask: u32,
}

impl ServiceRepr {
    /// A non-persistent service with the family's default netmask.
    pub fn new(key: ServiceKey, scheduler: &str) -> Self {
        ServiceRepr {
            key,
            scheduler: scheduler.to_string(),
            flags: 0,
            timeout: 0,
            netmask: key.default_netmask(),
        }
    }

    /// Emit the SERVICE nest with every setting, the way ipvsadm does for add/edit.
    pub fn emit_nest(&self, b: &mut Builder) {
        let n = b.begin_nest(attr::CMD_SERVICE);
        self.key.emit_id(b);
        b.attr_strz(attr::SVC_SCHED_NAME, &self.scheduler);
        // ipvsadm always sends a full mask: the flags given replace all of the old ones.
        let mut fl = [0u8; 8];
        fl[..4].copy_from_slice(&self.flags.to_ne_bytes());
        fl[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        b.attr_8(attr::SVC_FLAGS, fl);
        b.attr_u32(attr::SVC_TIMEOUT, self.timeout);
        b.attr_u32(attr::SVC_NETMASK, self.netmask);
        b.end_nest(n);
    }

    /// Parse the attributes inside a SERVICE nest.
    pub fn parse_nest(nest: &[u8]) -> Result<Self, WireError> {
        let (mut af, mut proto, mut addr, mut port, mut fwmark) = (None, None, None, None, None);
        let mut r = ServiceRepr {
            key: ServiceKey::Fwmark {
                ipv6: false,
                mark: 0,
            },
            scheduler: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0,
        };
        for a in attrs(nest) {
            let a = a?;
            match a.kind {
                attr::SVC_AF => af = Some(a.u16()?),
                attr::SVC_PROTOCOL => proto = Some(a.u16()?),
                attr::SVC_ADDR => addr = Some(a),
                attr::SVC_PORT => port = Some(a.be16()?),
                attr::SVC_FWMARK => fwmark = Some(a.u32()?),
                attr::SVC_SCHED_NAME => r.scheduler = a.string(),
                attr::SVC_FLAGS => r.flags = a.u32()?,
                attr::SVC_TIMEOUT => r.timeout = a.u32()?,
                attr::SVC_NETMASK => r.netmask = a.u32()?,
                _ => {}
            }
        }
        let af = af.ok_or(WireError::MissingAttribute("IPVS_SVC_ATTR_AF"))?;
        r.key = match (fwmark, addr) {
            (Some(mark), _) if mark != 0 => ServiceKey::Fwmark {
                ipv6: af == AF_INET6,
                mark,
            },
            (_, Some(a)) => ServiceKey::Addr {
                protocol: Protocol::from_number(
                    proto.ok_or(WireError::MissingAttribute("IPVS_SVC_ATTR_PROTOCOL"))?,
                ),
                addr: parse_addr(af, &a)?,
                port: port.ok_or(WireError::MissingAttribute("IPVS_SVC_ATTR_PORT"))?,
            },
            _ => return Err(WireError::MissingAttribute("IPVS_SVC_ATTR_ADDR")),
        };
        Ok(r)
    }
}

/// A real server (destination) of a service, with the counters replies carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestRepr {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Forwarding method.
    pub forward: Forward,
    /// Scheduling weight.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
    /// Active connections (replies only).
    pub active_conns: u32,
    /// Inactive connections (replies only).
    pub inactive_conns: u32,
    /// Persistent connection entries (replies only).
    pub persist_conns: u32,
}

impl DestRepr {
    /// A destination with weight 1, no thresholds.
    pub fn new(addr: IpAddr, port: u16, forward: Forward) -> Self {
        DestRepr {
            addr,
            port,
            forward,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 0,
            inactive_conns: 0,
            persist_conns: 0,
        }
    }

    /// Emit the DEST nest as ipvsadm does (counters are never sent).
    pub fn emit_nest(&self, b: &mut Builder) {
        let n = b.begin_nest(attr::CMD_DEST);
        b.attr_u16(
            attr::DEST_ADDR_FAMILY,
            if self.addr.is_ipv6() {
                AF_INET6
            } else {
                AF_INET
            },
        );
        b.attr_16(attr::DEST_ADDR, addr16(&self.addr));
        b.attr_be16(attr::DEST_PORT, self.port);
        b.attr_u32(attr::DEST_FWD_METHOD, self.forward.number());
        b.attr_u32(attr::DEST_WEIGHT, self.weight);
        b.attr_u8(attr::DEST_TUN_TYPE, 0);
        b.attr_be16(attr::DEST_TUN_PORT, 0);
        b.attr_u16(attr::DEST_TUN_FLAGS, 0);
        b.attr_u32(attr::DEST_U_THRESH, self.upper_threshold);
        b.attr_u32(attr::DEST_L_THRESH, self.lower_threshold);
        b.end_nest(n);
    }

    /// Parse a DEST nest; `service_af_v6` is used when the reply has no ADDR_FAMILY.
    pub fn parse_nest(nest: &[u8], service_af_v6: bool) -> Result<Self, WireError> {
        let mut af = if service_af_v6 { AF_INET6 } else { AF_INET };
        let mut addr = None;
        let mut port = None;
        let mut d = DestRepr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, Forward::Masq);
        for a in attrs(nest) {
            let a = a?;
            match a.kind {
                attr::DEST_ADDR => addr = Some(a),
                attr::DEST_PORT => port = Some(a.be16()?),
                attr::DEST_FWD_METHOD => d.forward = Forward::from_number(a.u32()?),
                attr::DEST_WEIGHT => d.weight = a.u32()?,
                attr::DEST_U_THRESH => d.upper_threshold = a.u32()?,
                attr::DEST_L_THRESH => d.lower_threshold = a.u32()?,
                attr::DEST_ACTIVE_CONNS => d.active_conns = a.u32()?,
                attr::DEST_INACT_CONNS => d.inactive_conns = a.u32()?,
                attr::DEST_PERSIST_CONNS => d.persist_conns = a.u32()?,
                attr::DEST_ADDR_FAMILY => af = a.u16()?,
                _ => {}
            }
        }
        let addr = addr.ok_or(WireError::MissingAttribute("IPVS_DEST_ATTR_ADDR"))?;
        d.addr = parse_addr(af, &addr)?;
        d.port = port.ok_or(WireError::MissingAttribute("IPVS_DEST_ATTR_PORT"))?;
        Ok(d)
    }
}

/// IPVS version and connection table size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Version as 0x00MMmmpp.
    pub version: u32,
    /// Connection hash table size.
    pub conn_tab_size: u32,
}

impl Info {
    /// "1.2.1".
    pub fn version_string(&self) -> String {
        format!(
            "{}.{}.{}",
            (self.version >> 16) & 0xff,
            (self.version >> 8) & 0xff,
            self.version & 0xff
        )
    }
}

/// Connection timeouts in seconds (0 = leave unchanged when setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP.
    pub tcp: u32,
    /// TCP after FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

/// One IPVS request, owned so that many can be queued for a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// IPVS_CMD_GET_INFO.
    GetInfo,
    /// IPVS_CMD_GET_CONFIG.
    GetTimeouts,
    /// IPVS_CMD_SET_CONFIG.
    SetTimeouts(Timeouts),
    /// IPVS_CMD_FLUSH.
    Flush,
    /// IPVS_CMD_NEW_SERVICE.
    NewService(ServiceRepr),
    /// IPVS_CMD_SET_SERVICE.
    EditService(ServiceRepr),
    /// IPVS_CMD_DEL_SERVICE.
    DelService(ServiceKey),
    /// IPVS_CMD_GET_SERVICE for one service.
    GetService(ServiceKey),
    /// IPVS_CMD_GET_SERVICE as a dump.
    DumpServices,
    /// IPVS_CMD_NEW_DEST.
    NewDest(ServiceKey, DestRepr),
    /// IPVS_CMD_SET_DEST.
    EditDest(ServiceKey, DestRepr),
    /// IPVS_CMD_DEL_DEST.
    DelDest(ServiceKey, DestRepr),
    /// IPVS_CMD_GET_DEST as a dump.
    DumpDests(ServiceKey),
}

impl Request {
    /// Is this a dump (answered by a multipart reply ending in NLMSG_DONE)?
    pub fn is_dump(&self) -> bool {
        matches!(self, Request::DumpServices | Request::DumpDests(_))
    }

    /// Append this request as one netlink message for IPVS family `family`.
    pub fn emit(&self, b: &mut Builder, family: u16, seq: u32) {
        let (c, flags) = match self {
            Request::GetInfo => (cmd::GET_INFO, 0),
            Request::GetTimeouts => (cmd::GET_CONFIG, 0),
            Request::SetTimeouts(_) => (cmd::SET_CONFIG, 0),
            Request::Flush => (cmd::FLUSH, 0),
            Request::NewService(_) => (cmd::NEW_SERVICE, 0),
            Request::EditService(_) => (cmd::SET_SERVICE, 0),
            Request::DelService(_) => (cmd::DEL_SERVICE, 0),
            Request::GetService(_) => (cmd::GET_SERVICE, 0),
            Request::DumpServices => (cmd::GET_SERVICE, NLM_F_DUMP),
            Request::NewDest(..) => (cmd::NEW_DEST, 0),
            Request::EditDest(..) => (cmd::SET_DEST, 0),
            Request::DelDest(..) => (cmd::DEL_DEST, 0),
            Request::DumpDests(_) => (cmd::GET_DEST, NLM_F_DUMP),
        };
        let m = b.begin_msg(family, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        GenlHeader {
            cmd: c,
            version: GENL_VERSION,
        }
        .emit(b);
        match self {
            Request::GetInfo | Request::GetTimeouts | Request::Flush | Request::DumpServices => {}
            Request::SetTimeouts(t) => {
                b.attr_u32(attr::CMD_TIMEOUT_TCP, t.tcp);
                b.attr_u32(attr::CMD_TIMEOUT_TCP_FIN, t.tcp_fin);
                b.attr_u32(attr::CMD_TIMEOUT_UDP, t.udp);
            }
            Request::NewService(s) | Request::EditService(s) => s.emit_nest(b),
            Request::DelService(k) => ServiceRepr::new(*k, "").emit_nest(b),
            Request::GetService(k) => {
                // A lookup matches on identity only; ipvsadm leaves the mask empty.
                let mut s = ServiceRepr::new(*k, "");
                s.netmask = 0;
                s.emit_nest(b)
            }
            Request::NewDest(k, d) | Request::EditDest(k, d) | Request::DelDest(k, d) => {
                ServiceRepr::new(*k, "").emit_nest(b);
                d.emit_nest(b);
            }
            Request::DumpDests(k) => k.emit_nest(b),
        }
        b.end_msg(m);
    }

    /// How errors name this request: "add service TCP 10.0.0.1:80".
    pub fn describe(&self) -> String {
        match self {
            Request::GetInfo => "get IPVS info".into(),
            Request::GetTimeouts => "get IPVS timeouts".into(),
            Request::SetTimeouts(_) => "set IPVS timeouts".into(),
            Request::Flush => "flush IPVS".into(),
            Request::NewService(s) => format!("add service {}", s.key),
            Request::EditService(s) => format!("edit service {}", s.key),
            Request::DelService(k) => format!("delete service {k}"),
            Request::GetService(k) => format!("get service {k}"),
            Request::DumpServices => "list services".into(),
            Request::NewDest(k, d) => {
                format!("add destination {} to {k}", SockAddr(d.addr, d.port))
            }
            Request::EditDest(k, d) => {
                format!("edit destination {} of {k}", SockAddr(d.addr, d.port))
            }
            Request::DelDest(k, d) => {
                format!("delete destination {} from {k}", SockAddr(d.addr, d.port))
            }
            Request::DumpDests(k) => format!("list destinations of {k}"),
        }
    }
}

/// A decoded IPVS reply message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A service (from a get or dump).
    Service(ServiceRepr),
    /// A destination (from a dump); the service's family decides a v4/v6 fallback.
    Dest(DestRepr),
    /// Version info.
    Info(Info),
    /// Timeouts.
    Timeouts(Timeouts),
    /// A command this decoder does not model.
    Other(u8),
}

impl Reply {
    /// Decode a genetlink payload (genlmsghdr + attributes) of an IPVS message.
    pub fn parse(payload: &[u8], service_v6: bool) -> Result<Reply, WireError> {
        let (h, rest) = GenlHeader::parse(payload)?;
        match h.cmd {
            cmd::NEW_SERVICE => {
                for a in attrs(rest) {
                    let a = a?;
                    if a.kind == attr::CMD_SERVICE {
                        return ServiceRepr::parse_nest(a.value).map(Reply::Service);
                    }
                }
                Err(WireError::MissingAttribute("IPVS_CMD_ATTR_SERVICE"))
            }
            cmd::NEW_DEST => {
                for a in attrs(rest) {
                    let a = a?;
                    if a.kind == attr::CMD_DEST {
                        return DestRepr::parse_nest(a.value, service_v6).map(Reply::Dest);
                    }
                }
                Err(WireError::MissingAttribute("IPVS_CMD_ATTR_DEST"))
            }
            cmd::SET_INFO => {
                let mut i = Info {
                    version: 0,
                    conn_tab_size: 0,
                };
                for a in attrs(rest) {
                    let a = a?;
                    match a.kind {
                        attr::INFO_VERSION => i.version = a.u32()?,
                        attr::INFO_CONN_TAB_SIZE => i.conn_tab_size = a.u32()?,
                        _ => {}
                    }
                }
                Ok(Reply::Info(i))
            }
            cmd::SET_CONFIG => {
                let mut t = Timeouts::default();
                for a in attrs(rest) {
                    let a = a?;
                    match a.kind {
                        attr::CMD_TIMEOUT_TCP => t.tcp = a.u32()?,
                        attr::CMD_TIMEOUT_TCP_FIN => t.tcp_fin = a.u32()?,
                        attr::CMD_TIMEOUT_UDP => t.udp = a.u32()?,
                        _ => {}
                    }
                }
                Ok(Reply::Timeouts(t))
            }
            c => Ok(Reply::Other(c)),
        }
    }
}

/// Render a table the way `ipvsadm -Ln` does (sorted by family, protocol, address, port).
pub fn format_listing(info: Option<&Info>, table: &[(ServiceRepr, Vec<DestRepr>)]) -> String {
    use fmt::Write;
    let mut out = String::new();
    if let Some(i) = info {
        let _ = writeln!(
            out,
            "IP Virtual Server version {} (size={})",
            i.version_string(),
            i.conn_tab_size
        );
    }
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    let mut sorted: Vec<&(ServiceRepr, Vec<DestRepr>)> = table.iter().collect();
    ipvsadm_sort(&mut sorted, |a, b| cmp_services(&a.0.key, &b.0.key));
    for (s, dests) in sorted {
        match s.key {
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => {
                // ipvsadm pads the protocol to 4 columns: "TCP  ...", "SCTP ...".
                let _ = write!(
                    out,
                    "{:<4} {} {}",
                    protocol.to_string(),
                    SockAddr(addr, port),
                    s.scheduler
                );
            }
            ServiceKey::Fwmark { mark, .. } => {
                let _ = write!(out, "FWM  {mark} {}", s.scheduler);
            }
        }
        if s.flags & SVC_F_PERSISTENT != 0 {
            let _ = write!(out, " persistent {}", s.timeout);
            if s.key.default_netmask() != s.netmask {
                if s.key.af() == AF_INET {
                    let _ = write!(out, " mask {}", Ipv4Addr::from(s.netmask.to_be()));
                } else {
                    let _ = write!(out, " mask {}", s.netmask);
                }
            }
        }
        if s.flags & SVC_F_ONEPACKET != 0 {
            out.push_str(" ops");
        }
        out.push('\n');
        let mut ds: Vec<&DestRepr> = dests.iter().collect();
        ipvsadm_sort(&mut ds, |a, b| {
            cmp_addr_port(a.addr, a.port, b.addr, b.port)
        });
        for d in ds {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                SockAddr(d.addr, d.port).to_string(),
                d.forward.listing_name(),
                d.weight,
                d.active_conns,
                d.inactive_conns
            );
        }
    }
    out
}

/// ipvsadm orders its listing with C `int` differences of unsigned fields, which wrap: for
/// addresses the order is that of `(a - b) as i32`, so 192.168.0.1 lists before 10.0.0.1.
/// Not a total order, so the exact sort algorithm matters too: see [`ipvsadm_sort`].
fn wrapping_cmp(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn af_number(a: IpAddr) -> i32 {
    if a.is_ipv6() {
        10
    } else {
        2
    }
}

fn addr_words(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

fn cmp_addr_port(a: IpAddr, ap: u16, b: IpAddr, bp: u16) -> i32 {
    let r = af_number(a) - af_number(b);
    if r != 0 {
        return r;
    }
    let (wa, wb) = (addr_words(a), addr_words(b));
    let words = if a.is_ipv6() { 4 } else { 1 };
    for i in 0..words {
        let r = wrapping_cmp(wa[i], wb[i]);
        if r != 0 {
            return r;
        }
    }
    i32::from(ap) - i32::from(bp)
}

fn cmp_services(a: &ServiceKey, b: &ServiceKey) -> i32 {
    let mark = |k: &ServiceKey| match *k {
        ServiceKey::Fwmark { mark, .. } => mark,
        ServiceKey::Addr { .. } => 0,
    };
    let r = wrapping_cmp(mark(a), mark(b));
    if r != 0 {
        return r;
    }
    let r = i32::from(a.af()) - i32::from(b.af());
    if r != 0 {
        return r;
    }
    match (*a, *b) {
        (
            ServiceKey::Addr {
                protocol: pa,
                addr: aa,
                port: ap,
            },
            ServiceKey::Addr {
                protocol: pb,
                addr: ab,
                port: bp,
            },
        ) => {
            let r = i32::from(pa.number()) - i32::from(pb.number());
            if r != 0 {
                return r;
            }
            cmp_addr_port(aa, ap, ab, bp)
        }
        _ => 0,
    }
}

/// The merge sort of the C library ipvsadm links against (glibc's `qsort`, top-down, left
/// element first on ties), so that a comparator that is not a total order gives the very same
/// listing. Never panics whatever the comparator says.
fn ipvsadm_sort<T: Copy>(v: &mut [T], cmp: impl Fn(&T, &T) -> i32 + Copy) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let (n1, _) = (n / 2, n - n / 2);
    ipvsadm_sort(&mut v[..n1], cmp);
    ipvsadm_sort(&mut v[n1..], cmp);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::messages;

    #[test]
    fn listing_order_is_ipvsadm_wrapping_order() {
        let svc = |a: &str| {
            (
                ServiceRepr::new(ServiceKey::new(Protocol::Tcp, a.parse().unwrap(), 80), "rr"),
                Vec::new(),
            )
        };
        let table = vec![svc("10.0.0.1"), svc("192.168.0.1"), svc("10.96.0.10")];
        let text = format_listing(None, &table);
        let order: Vec<usize> = ["192.168.0.1", "10.0.0.1", "10.96.0.10"]
            .iter()
            .map(|a| text.find(a).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        let mut v = vec![3, 1, 2, 2, 0];
        ipvsadm_sort(&mut v, |a, b| a - b);
        assert_eq!(v, vec![0, 1, 2, 2, 3]);
        // A comparator that is not an order still terminates and keeps every element.
        let mut w: Vec<u32> = (0..50u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
        ipvsadm_sort(&mut w, |a, b| wrapping_cmp(*a, *b));
        assert_eq!(w.len(), 50);
    }

    #[test]
    fn service_round_trip() {
        let mut s = ServiceRepr::new(
            ServiceKey::new(Protocol::Sctp, "fd00::9".parse().unwrap(), 9),
            "wlc",
        );
        s.flags = SVC_F_PERSISTENT;
        s.timeout = 10800;
        let mut b = Builder::new();
        Request::NewService(s.clone()).emit(&mut b, 0x20, 1);
        let bytes = b.into_bytes();
        let m = messages(&bytes).next().unwrap().unwrap();
        // A request parses as the reply would: the same SERVICE nest.
        let mut p = m.payload().to_vec();
        p[0] = cmd::NEW_SERVICE;
        assert_eq!(Reply::parse(&p, true).unwrap(), Reply::Service(s));
    }
}
