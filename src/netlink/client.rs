//! IPVS and rtnetlink clients: typed operations over one long-lived [`Socket`] each.
//!
//! Owns the request/reply pairing per operation and the cached IPVS family id. Encoding and
//! decoding live in `ipvs`/`rtnl`; policy (what to program) lives in `proxy`.

use std::net::IpAddr;

use nix::errno::Errno;

use super::genl::{emit_get_family, parse_family_id, GENL_ID_CTRL};
use super::ipvs::{self, DestRepr, Info, Reply, Request, ServiceKey, ServiceRepr, Timeouts};
use super::rtnl::{self, AddrRepr, LinkRepr};
use super::socket::{Counters, Kind, OnReply, Outcome, Socket};
use super::wire::NlMsg;
use super::Error;

/// IPVS over generic netlink; resolves the family once at open.
#[derive(Debug)]
pub struct Ipvs {
    sock: Socket,
    family: u16,
}

fn malformed(op: &str) -> impl Fn(super::wire::WireError) -> Error + '_ {
    move |source| Error::Malformed {
        op: op.to_string(),
        source,
    }
}

impl Ipvs {
    /// Open a socket and resolve the "IPVS" family id.
    pub fn open() -> Result<Self, Error> {
        let mut sock = Socket::open(Kind::Generic)?;
        let mut family = None;
        let op = || format!("resolve generic netlink family {}", ipvs::FAMILY_NAME);
        let res = sock.transact(
            &|b, seq| emit_get_family(b, seq, ipvs::FAMILY_NAME),
            false,
            &op,
            &mut |m: &NlMsg<&[u8]>| {
                if m.msg_type() == GENL_ID_CTRL {
                    family = Some(parse_family_id(m.payload()).map_err(malformed(&op()))?);
                }
                Ok(())
            },
        );
        match res {
            Err(Error::Kernel {
                errno: Errno::ENOENT,
                ..
            }) => return Err(Error::FamilyNotFound(ipvs::FAMILY_NAME)),
            r => r?,
        }
        let family = family.ok_or(Error::FamilyNotFound(ipvs::FAMILY_NAME))?;
        Ok(Ipvs { sock, family })
    }

    /// The resolved family id.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    /// Messages and sendmsg calls so far (including the family lookup).
    pub fn counters(&self) -> Counters {
        self.sock.counters()
    }

    /// Run one request, collecting decoded replies.
    pub fn request(&mut self, req: &Request, service_v6: bool) -> Result<Vec<Reply>, Error> {
        let family = self.family;
        let mut out = Vec::new();
        let op = || req.describe();
        self.sock.transact(
            &|b, seq| req.emit(b, family, seq),
            req.is_dump(),
            &op,
            &mut |m: &NlMsg<&[u8]>| {
                if m.msg_type() == family {
                    out.push(Reply::parse(m.payload(), service_v6).map_err(malformed(&op()))?);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// See [`Socket::set_quiet_batches`].
    pub fn set_quiet_batches(&mut self, quiet: bool) {
        self.sock.set_quiet_batches(quiet);
    }

    /// Run many change requests in few sendmsg calls; one outcome per request, in order.
    pub fn execute(&mut self, reqs: &[Request]) -> Vec<Outcome> {
        let family = self.family;
        self.sock.batch(
            reqs.len(),
            &|i, b, seq| {
                if let Some(r) = reqs.get(i) {
                    r.emit(b, family, seq)
                }
            },
            &|i| reqs.get(i).map(Request::describe).unwrap_or_default(),
        )
    }

    fn one(&mut self, req: Request) -> Result<(), Error> {
        self.request(&req, false).map(|_| ())
    }

    /// IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, Error> {
        let r = self.request(&Request::GetInfo, false)?;
        r.into_iter()
            .find_map(|r| {
                if let Reply::Info(i) = r {
                    Some(i)
                } else {
                    None
                }
            })
            .ok_or(Error::Incomplete {
                op: Request::GetInfo.describe(),
                reason: "no info in reply",
            })
    }

    /// Connection timeouts.
    pub fn timeouts(&mut self) -> Result<Timeouts, Error> {
        let r = self.request(&Request::GetTimeouts, false)?;
        r.into_iter()
            .find_map(|r| {
                if let Reply::Timeouts(t) = r {
                    Some(t)
                } else {
                    None
                }
            })
            .ok_or(Error::Incomplete {
                op: Request::GetTimeouts.describe(),
                reason: "no timeouts in reply",
            })
    }

    /// Set connection timeouts (0 leaves a value unchanged).
    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<(), Error> {
        self.one(Request::SetTimeouts(t))
    }

    /// Delete every service.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.one(Request::Flush)
    }

    /// Add a service.
    pub fn add_service(&mut self, s: &ServiceRepr) -> Result<(), Error> {
        self.one(Request::NewService(s.clone()))
    }

    /// Change a service's settings.
    pub fn edit_service(&mut self, s: &ServiceRepr) -> Result<(), Error> {
        self.one(Request::EditService(s.clone()))
    }

    /// Delete a service and its destinations.
    pub fn del_service(&mut self, k: &ServiceKey) -> Result<(), Error> {
        self.one(Request::DelService(*k))
    }

    /// Read one service.
    pub fn service(&mut self, k: &ServiceKey) -> Result<ServiceRepr, Error> {
        let req = Request::GetService(*k);
        let r = self.request(&req, false)?;
        r.into_iter()
            .find_map(|r| {
                if let Reply::Service(s) = r {
                    Some(s)
                } else {
                    None
                }
            })
            .ok_or(Error::Incomplete {
                op: req.describe(),
                reason: "no service in reply",
            })
    }

    /// Dump all services.
    pub fn services(&mut self) -> Result<Vec<ServiceRepr>, Error> {
        let r = self.request(&Request::DumpServices, false)?;
        Ok(r.into_iter()
            .filter_map(|r| {
                if let Reply::Service(s) = r {
                    Some(s)
                } else {
                    None
                }
            })
            .collect())
    }

    /// Dump the destinations of a service.
    pub fn dests(&mut self, k: &ServiceKey) -> Result<Vec<DestRepr>, Error> {
        let v6 = matches!(
            k,
            ServiceKey::Addr {
                addr: IpAddr::V6(_),
                ..
            } | ServiceKey::Fwmark { ipv6: true, .. }
        );
        let r = self.request(&Request::DumpDests(*k), v6)?;
        Ok(r.into_iter()
            .filter_map(|r| {
                if let Reply::Dest(d) = r {
                    Some(d)
                } else {
                    None
                }
            })
            .collect())
    }

    /// Add a destination to a service.
    pub fn add_dest(&mut self, k: &ServiceKey, d: &DestRepr) -> Result<(), Error> {
        self.one(Request::NewDest(*k, d.clone()))
    }

    /// Change a destination's settings.
    pub fn edit_dest(&mut self, k: &ServiceKey, d: &DestRepr) -> Result<(), Error> {
        self.one(Request::EditDest(*k, d.clone()))
    }

    /// Remove a destination from a service.
    pub fn del_dest(&mut self, k: &ServiceKey, d: &DestRepr) -> Result<(), Error> {
        self.one(Request::DelDest(*k, d.clone()))
    }

    /// Every service with its destinations.
    pub fn table(&mut self) -> Result<Vec<(ServiceRepr, Vec<DestRepr>)>, Error> {
        let services = self.services()?;
        let mut out = Vec::with_capacity(services.len());
        for s in services {
            let d = self.dests(&s.key)?;
            out.push((s, d));
        }
        Ok(out)
    }
}

/// rtnetlink for the dummy interface and its addresses.
#[derive(Debug)]
pub struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    /// Open a NETLINK_ROUTE socket.
    pub fn open() -> Result<Self, Error> {
        Ok(Rtnl {
            sock: Socket::open(Kind::Route)?,
        })
    }

    /// Messages and sendmsg calls so far.
    pub fn counters(&self) -> Counters {
        self.sock.counters()
    }

    fn run(&mut self, req: &rtnl::Request, on: &mut OnReply<'_>) -> Result<(), Error> {
        let op = || req.describe();
        self.sock
            .transact(&|b, seq| req.emit(b, seq), req.is_dump(), &op, on)
    }

    /// Index of the link called `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        let req = rtnl::Request::GetLink(name.to_string());
        let op = req.describe();
        let mut index = None;
        let res = self.run(&req, &mut |m| {
            if m.msg_type() == rtnl::RTM_NEWLINK {
                index = Some(LinkRepr::parse(m.payload()).map_err(malformed(&op))?.index);
            }
            Ok(())
        });
        match res {
            Err(Error::Kernel {
                errno: Errno::ENODEV,
                ..
            }) => Ok(None),
            r => r.map(|_| index),
        }
    }

    /// Create a dummy link unless it exists; returns its index.
    pub fn ensure_dummy(&mut self, name: &str) -> Result<u32, Error> {
        if let Some(i) = self.link_index(name)? {
            return Ok(i);
        }
        let req = rtnl::Request::NewDummy(name.to_string());
        self.run(&req, &mut |_| Ok(()))?;
        self.link_index(name)?.ok_or(Error::Incomplete {
            op: req.describe(),
            reason: "link missing after creation",
        })
    }

    /// Delete the link called `name`; Ok(false) if it did not exist.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, Error> {
        let Some(i) = self.link_index(name)? else {
            return Ok(false);
        };
        self.run(&rtnl::Request::DelLink(i), &mut |_| Ok(()))?;
        Ok(true)
    }

    /// Set a link administratively up.
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        self.run(&rtnl::Request::SetLinkUp(index), &mut |_| Ok(()))
    }

    /// Add a host address (/32 or /128) to a link.
    pub fn add_addr(&mut self, index: u32, addr: IpAddr) -> Result<(), Error> {
        self.run(&rtnl::Request::NewAddr(index, addr), &mut |_| Ok(()))
    }

    /// Remove a host address from a link.
    pub fn del_addr(&mut self, index: u32, addr: IpAddr) -> Result<(), Error> {
        self.run(&rtnl::Request::DelAddr(index, addr), &mut |_| Ok(()))
    }

    /// Add or remove many addresses in batched sendmsg calls.
    pub fn execute(&mut self, reqs: &[rtnl::Request]) -> Vec<Outcome> {
        self.sock.batch(
            reqs.len(),
            &|i, b, seq| {
                if let Some(r) = reqs.get(i) {
                    r.emit(b, seq)
                }
            },
            &|i| reqs.get(i).map(rtnl::Request::describe).unwrap_or_default(),
        )
    }

    /// Addresses on the link with this index.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .all_addrs()?
            .into_iter()
            .filter(|a| a.index == index)
            .map(|a| a.addr)
            .collect())
    }

    /// Every IPv4/IPv6 address on the host, with its link index.
    pub fn all_addrs(&mut self) -> Result<Vec<AddrRepr>, Error> {
        let req = rtnl::Request::DumpAddrs;
        let op = req.describe();
        let mut out = Vec::new();
        self.run(&req, &mut |m| {
            if m.msg_type() == rtnl::RTM_NEWADDR {
                if let Some(a) = AddrRepr::parse(m.payload()).map_err(malformed(&op))? {
                    out.push(a);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}
