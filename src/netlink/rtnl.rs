//! rtnetlink: the few link and address messages kube-proxy's dummy interface needs.
//!
//! Owns the encoding of RTM_{NEW,DEL,GET}LINK for a `dummy` link and RTM_{NEW,DEL,GET}ADDR for
//! host addresses (/32, /128) on it, and the decoding of their replies. No I/O here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::{
    attrs, Builder, WireError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};

/// RTM_NEWLINK.
pub const RTM_NEWLINK: u16 = 16;
/// RTM_DELLINK.
pub const RTM_DELLINK: u16 = 17;
/// RTM_GETLINK.
pub const RTM_GETLINK: u16 = 18;
/// RTM_NEWADDR.
pub const RTM_NEWADDR: u16 = 20;
/// RTM_DELADDR.
pub const RTM_DELADDR: u16 = 21;
/// RTM_GETADDR.
pub const RTM_GETADDR: u16 = 22;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = 0x1;
const IFADDRMSG_LEN: usize = 8;
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One rtnetlink request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Create a dummy link with this name (fails if it exists).
    NewDummy(String),
    /// Delete the link with this index.
    DelLink(u32),
    /// Look a link up by name.
    GetLink(String),
    /// Set a link administratively up.
    SetLinkUp(u32),
    /// Add a host address to the link with this index.
    NewAddr(u32, IpAddr),
    /// Remove a host address from the link with this index.
    DelAddr(u32, IpAddr),
    /// Dump all addresses (filtered by index by the caller).
    DumpAddrs,
}

impl Request {
    /// Is this a dump?
    pub fn is_dump(&self) -> bool {
        matches!(self, Request::DumpAddrs)
    }

    /// Append this request as one message.
    pub fn emit(&self, b: &mut Builder, seq: u32) {
        match self {
            Request::NewDummy(name) => {
                let m = b.begin_msg(
                    RTM_NEWLINK,
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                    seq,
                );
                ifinfomsg(b, 0);
                b.attr_strz(IFLA_IFNAME, name);
                let n = b.begin_nest(IFLA_LINKINFO);
                b.attr(IFLA_INFO_KIND, b"dummy");
                b.end_nest(n);
                b.end_msg(m);
            }
            Request::DelLink(index) => {
                let m = b.begin_msg(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
                ifinfomsg(b, *index);
                b.end_msg(m);
            }
            Request::SetLinkUp(index) => {
                let m = b.begin_msg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
                let mut h = [0u8; IFINFOMSG_LEN];
                h[4..8].copy_from_slice(&index.to_ne_bytes());
                h[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
                h[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
                b.put_bytes(&h);
                b.end_msg(m);
            }
            Request::GetLink(name) => {
                let m = b.begin_msg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
                ifinfomsg(b, 0);
                b.attr_strz(IFLA_IFNAME, name);
                b.end_msg(m);
            }
            Request::NewAddr(index, addr) | Request::DelAddr(index, addr) => {
                let (t, f) = if matches!(self, Request::NewAddr(..)) {
                    (RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)
                } else {
                    (RTM_DELADDR, 0)
                };
                let m = b.begin_msg(t, NLM_F_REQUEST | NLM_F_ACK | f, seq);
                let (fam, plen, bytes) = match addr {
                    IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
                    IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
                };
                b.put_bytes(&[fam, plen, 0, 0]);
                b.put_bytes(&index.to_ne_bytes());
                b.attr(IFA_LOCAL, &bytes);
                b.attr(IFA_ADDRESS, &bytes);
                b.end_msg(m);
            }
            Request::DumpAddrs => {
                let m = b.begin_msg(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
                b.put_bytes(&[AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0]);
                b.end_msg(m);
            }
        }
    }

    /// How errors name this request.
    pub fn describe(&self) -> String {
        match self {
            Request::NewDummy(n) => format!("create dummy link {n}"),
            Request::DelLink(i) => format!("delete link #{i}"),
            Request::GetLink(n) => format!("look up link {n}"),
            Request::SetLinkUp(i) => format!("set link #{i} up"),
            Request::NewAddr(i, a) => format!("add address {a} to link #{i}"),
            Request::DelAddr(i, a) => format!("delete address {a} from link #{i}"),
            Request::DumpAddrs => "list addresses".into(),
        }
    }
}

fn ifinfomsg(b: &mut Builder, index: u32) {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[0] = AF_UNSPEC;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    b.put_bytes(&h);
}

/// A link as RTM_NEWLINK reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRepr {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
}

impl LinkRepr {
    /// Parse an RTM_NEWLINK payload.
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let h = payload.get(..IFINFOMSG_LEN).ok_or(WireError::Truncated)?;
        let index = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        let mut name = String::new();
        for a in attrs(payload.get(IFINFOMSG_LEN..).unwrap_or(&[])) {
            let a = a?;
            if a.kind == IFLA_IFNAME {
                name = a.string();
            }
        }
        Ok(LinkRepr { index, name })
    }
}

/// An address as RTM_NEWADDR reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrRepr {
    /// Interface index.
    pub index: u32,
    /// Prefix length.
    pub prefix_len: u8,
    /// The address (IFA_LOCAL, else IFA_ADDRESS).
    pub addr: IpAddr,
}

impl AddrRepr {
    /// Parse an RTM_NEWADDR payload; `None` for families other than IPv4/IPv6.
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, WireError> {
        let h = payload.get(..IFADDRMSG_LEN).ok_or(WireError::Truncated)?;
        let (fam, prefix_len) = (h[0], h[1]);
        let index = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        let mut local = None;
        let mut address = None;
        for a in attrs(payload.get(IFADDRMSG_LEN..).unwrap_or(&[])) {
            let a = a?;
            let ip = match (fam, a.value.len()) {
                (AF_INET, 4) => {
                    let v = a.value;
                    Some(IpAddr::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])))
                }
                (AF_INET6, 16) => {
                    let arr: Option<[u8; 16]> = a.value.try_into().ok();
                    arr.map(|o| IpAddr::V6(Ipv6Addr::from(o)))
                }
                _ => None,
            };
            match a.kind {
                IFA_LOCAL => local = ip,
                IFA_ADDRESS => address = ip,
                _ => {}
            }
        }
        Ok(local.or(address).map(|addr| AddrRepr {
            index,
            prefix_len,
            addr,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::messages;

    #[test]
    fn address_request_parses_back() {
        for ip in ["10.96.0.1", "fd00::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut b = Builder::new();
            Request::NewAddr(7, ip).emit(&mut b, 1);
            let bytes = b.into_bytes();
            let m = messages(&bytes).next().unwrap().unwrap();
            let a = AddrRepr::parse(m.payload()).unwrap().unwrap();
            assert_eq!((a.index, a.addr), (7, ip));
        }
    }

    #[test]
    fn link_request_parses_back() {
        let mut b = Builder::new();
        Request::NewDummy("kube-ipvs0".into()).emit(&mut b, 1);
        let bytes = b.into_bytes();
        let m = messages(&bytes).next().unwrap().unwrap();
        assert_eq!(LinkRepr::parse(m.payload()).unwrap().name, "kube-ipvs0");
    }
}
