//! The kernel's copy of our table → our model, for `tinylet nft list` and read-back checks.
//!
//! Recognises the expression sequences [`super::lower`] emits; anything else (a rule someone
//! added by hand) is reported by name instead of guessed at. Never panics on a kernel reply.
//! Listing sends one request per set for the elements: fine for a command a person runs,
//! never done by a sync.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{
    Chain, ChainType, Cidr, Family, Fields, Hook, HookPoint, Key, Set, SetKind, Stmt, Table,
    Verdict,
};
use crate::netlink::nftables::expr::ct_state;
use crate::netlink::nftables::msg::{datatype, MapData};
use crate::netlink::nftables::{
    self as nl, CmpOp, CtKey, DynsetOp, Expr, MetaKey, NatType, NumgenType, PayloadBase,
};
use crate::netlink::nftables::{Data, Reg};
use crate::proxy::table::Proto;

fn nl_family(f: Family) -> nl::Family {
    match f {
        Family::Ip => nl::Family::Ip,
        Family::Ip6 => nl::Family::Ip6,
    }
}

fn addr(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        _ => None,
    }
}

fn proto(n: u8) -> Option<Proto> {
    match n {
        6 => Some(Proto::Tcp),
        17 => Some(Proto::Udp),
        132 => Some(Proto::Sctp),
        _ => None,
    }
}

fn u32_ne(b: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(b).ok().map(u32::from_ne_bytes)
}

fn verdict(v: &nl::Verdict) -> Option<Verdict> {
    match v {
        nl::Verdict::Jump(c) => Some(Verdict::Jump(c.clone())),
        nl::Verdict::Goto(c) => Some(Verdict::Goto(c.clone())),
        nl::Verdict::Return => Some(Verdict::Return),
        nl::Verdict::Drop => Some(Verdict::Drop),
        _ => None,
    }
}

fn is_addr_load(e: &Expr, f: Family) -> Option<bool> {
    let (src, dst) = match f {
        Family::Ip => (12, 16),
        Family::Ip6 => (8, 24),
    };
    match e {
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            ..
        } if *offset == src => Some(true),
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            ..
        } if *offset == dst => Some(false),
        _ => None,
    }
}

fn is_dport(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            ..
        }
    )
}

/// Decode one statement at the start of `e`: the statement and how many expressions it took.
fn statement(f: Family, e: &[Expr]) -> Option<(Stmt, usize)> {
    let first = e.first()?;
    if let Some(source) = is_addr_load(first, f) {
        return match e.get(1..) {
            Some([Expr::Cmp { op, data, .. }, ..]) => {
                let a = addr(data)?;
                let s = Cidr::host(a);
                let eq = *op == CmpOp::Eq;
                Some((
                    if source {
                        Stmt::Saddr(s, eq)
                    } else {
                        Stmt::Daddr(s, eq)
                    },
                    2,
                ))
            }
            Some([Expr::Bitwise { mask, .. }, Expr::Cmp { op, data, .. }, ..]) => {
                let prefix = mask.iter().map(|b| b.count_ones()).sum::<u32>() as u8;
                let c = Cidr::new(addr(data)?, prefix);
                let eq = *op == CmpOp::Eq;
                Some((
                    if source {
                        Stmt::Saddr(c, eq)
                    } else {
                        Stmt::Daddr(c, eq)
                    },
                    3,
                ))
            }
            Some(
                [Expr::Lookup {
                    set, dreg: None, ..
                }, ..],
            ) => Some((
                if source {
                    Stmt::SaddrIn(set.clone())
                } else {
                    Stmt::DaddrIn(set.clone())
                },
                2,
            )),
            Some(
                [Expr::Dynset {
                    op: DynsetOp::Update,
                    set,
                    ..
                }, ..],
            ) if source => Some((Stmt::UpdateSaddr(set.clone()), 2)),
            Some(
                [Expr::Meta {
                    key: MetaKey::L4proto,
                    ..
                }, d, Expr::Lookup {
                    set,
                    dreg: Some(Reg::VERDICT),
                    ..
                }, ..],
            ) if !source && is_dport(d) => Some((Stmt::DispatchAddrPort(set.clone()), 4)),
            Some(
                [Expr::Meta {
                    key: MetaKey::L4proto,
                    ..
                }, d, Expr::Lookup {
                    set, dreg: None, ..
                }, ..],
            ) if is_dport(d) => {
                let fields = if source {
                    Fields::SaddrProtoPort
                } else {
                    Fields::DaddrProtoPort
                };
                Some((Stmt::Lookup(fields, set.clone()), 4))
            }
            Some(
                [Expr::Meta {
                    key: MetaKey::L4proto,
                    ..
                }, d, a, Expr::Lookup {
                    set, dreg: None, ..
                }, ..],
            ) if !source && is_dport(d) && is_addr_load(a, f) == Some(true) => {
                Some((Stmt::Lookup(Fields::DaddrProtoPortSaddr, set.clone()), 5))
            }
            _ => None,
        };
    }
    match e {
        [Expr::Ct {
            key: CtKey::State, ..
        }, Expr::Bitwise { mask, .. }, Expr::Cmp { op: CmpOp::Neq, .. }, ..]
            if u32_ne(mask) == Some(ct_state::NEW) =>
        {
            Some((Stmt::CtStateNew, 3))
        }
        [Expr::Meta {
            key: MetaKey::L4proto,
            ..
        }, Expr::Cmp { data, .. }, ..] => Some((Stmt::L4Proto(proto(*data.first()?)?), 2)),
        [Expr::Meta {
            key: MetaKey::L4proto,
            ..
        }, d, Expr::Lookup {
            set,
            dreg: Some(Reg::VERDICT),
            ..
        }, ..]
            if is_dport(d) =>
        {
            Some((Stmt::DispatchPort(set.clone()), 3))
        }
        [Expr::Meta {
            key: MetaKey::L4proto,
            ..
        }, d, Expr::Lookup {
            set, dreg: None, ..
        }, ..]
            if is_dport(d) =>
        {
            Some((Stmt::Lookup(Fields::ProtoPort, set.clone()), 3))
        }
        [d, Expr::Cmp { data, .. }, ..] if is_dport(d) => {
            let port = u16::from_be_bytes(<[u8; 2]>::try_from(data.as_slice()).ok()?);
            Some((Stmt::Dport(port), 2))
        }
        [Expr::Meta {
            key: MetaKey::Mark, ..
        }, Expr::Bitwise { mask, xor, .. }, Expr::MetaSet {
            key: MetaKey::Mark, ..
        }, ..] => {
            let (mask, xor) = (u32_ne(mask)?, u32_ne(xor)?);
            let s = if mask == u32::MAX {
                Stmt::MarkXor(xor)
            } else {
                Stmt::MarkOr(xor)
            };
            Some((s, 3))
        }
        [Expr::Meta {
            key: MetaKey::Mark, ..
        }, Expr::Bitwise { mask, .. }, Expr::Cmp { op: CmpOp::Eq, .. }, ..] => {
            Some((Stmt::MarkClear(u32_ne(mask)?), 3))
        }
        [Expr::Numgen {
            modulus,
            kind: NumgenType::Random,
            ..
        }, Expr::Cmp { data, .. }, ..] => Some((
            Stmt::Numgen {
                modulus: *modulus,
                value: u32_ne(data)?,
            },
            2,
        )),
        [Expr::Masq { .. }, ..] => Some((Stmt::Masquerade, 1)),
        [Expr::Immediate { value: a, .. }, Expr::Immediate { value: p, .. }, Expr::Nat {
            kind: NatType::Dnat,
            ..
        }, ..] => {
            let port = u16::from_be_bytes(<[u8; 2]>::try_from(p.as_slice()).ok()?);
            Some((Stmt::Dnat(addr(a)?, port), 3))
        }
        [Expr::Reject { .. }, ..] => Some((Stmt::Reject, 1)),
        [Expr::Verdict(v), ..] => Some((Stmt::Verdict(verdict(v)?), 1)),
        _ => None,
    }
}

/// A rule's statements; Err names the first expression not made by us.
pub fn rule(f: Family, exprs: &[Expr]) -> Result<Vec<Stmt>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < exprs.len() {
        let rest = exprs.get(i..).unwrap_or(&[]);
        match statement(f, rest) {
            Some((s, n)) => {
                out.push(s);
                i += n;
            }
            None => {
                let name = rest.first().map(Expr::name).unwrap_or("?");
                return Err(format!(
                    "expression `{name}` at {i} is not one tinylet makes"
                ));
            }
        }
    }
    Ok(out)
}

pub(crate) fn set_kind(s: &nl::Set) -> SetKind {
    // Maps by key length: protocol . port is 8 bytes, address . protocol . port 12 or 24;
    // plain sets by their key type (concatenations of different lengths can collide).
    let of = |types: &[u32]| nl::msg::key_spec(types).0;
    let addr = |t: u32| t == datatype::IPV4_ADDR || t == datatype::IPV6_ADDR;
    let (p, sv) = (datatype::INET_PROTO, datatype::INET_SERVICE);
    let bits = datatype::TYPE_BITS;
    let low3 = s.key_type & ((1 << (3 * bits)) - 1);
    match (&s.data, s.key_len, s.timeout_ms) {
        (Some(MapData::Verdict), 8, _) => SetKind::PortMap,
        (Some(MapData::Verdict), _, _) => SetKind::AddrPortMap,
        (_, _, Some(ms)) => SetKind::Affinity {
            timeout: u32::try_from(ms / 1000).unwrap_or(u32::MAX),
        },
        _ if s.key_type == of(&[p, sv]) => SetKind::Ports,
        _ if addr(s.key_type >> (2 * bits))
            && s.key_type & ((1 << (2 * bits)) - 1) == of(&[p, sv]) =>
        {
            SetKind::AddrPorts
        }
        _ if addr(s.key_type >> (3 * bits)) && addr(low3 & ((1 << bits) - 1)) => SetKind::LoopBack,
        _ => SetKind::Addrs,
    }
}

/// An element key from its bytes, by the kind of set it is in.
pub fn decode_key(kind: SetKind, b: &[u8]) -> Option<Key> {
    let port = |x: &[u8]| -> Option<u16> { Some(u16::from_be_bytes([*x.first()?, *x.get(1)?])) };
    match kind {
        SetKind::AddrPortMap => {
            let alen = b.len().checked_sub(8)?;
            let a = addr(b.get(..alen)?)?;
            Some(Key::AddrPort(
                a,
                proto(*b.get(alen)?)?,
                port(b.get(alen + 4..)?)?,
            ))
        }
        SetKind::AddrPorts => decode_key(SetKind::AddrPortMap, b),
        SetKind::PortMap | SetKind::Ports => {
            Some(Key::Port(proto(*b.first()?)?, port(b.get(4..)?)?))
        }
        SetKind::LoopBack => {
            // Both addresses have the family's length: (len - 8) / 2 each.
            let alen = b.len().checked_sub(8)? / 2;
            let a = addr(b.get(..alen)?)?;
            let rest = b.get(alen..)?;
            Some(Key::AddrPortAddr(
                a,
                proto(*rest.first()?)?,
                port(rest.get(4..)?)?,
                addr(rest.get(8..)?)?,
            ))
        }
        SetKind::Addrs | SetKind::Affinity { .. } => addr(b).map(Key::Addr),
    }
}

/// Read our table of `family` back; `None` when it does not exist. Rules not made by us
/// become an error naming the chain.
pub fn read_table(
    nft: &mut nl::Nftables,
    family: Family,
    name: &str,
) -> Result<Option<Table>, String> {
    let d = nft
        .dump_table(nl_family(family), name)
        .map_err(|e| e.to_string())?;
    if d.table.is_none() {
        return Ok(None);
    }
    let mut t = Table::new(family, name);
    for c in &d.chains {
        let hook = c.base.as_ref().map(|b| Hook {
            kind: match b.kind {
                nl::ChainType::Nat => ChainType::Nat,
                _ => ChainType::Filter,
            },
            point: match b.hook {
                nl::Hook::Prerouting => HookPoint::Prerouting,
                nl::Hook::Input => HookPoint::Input,
                nl::Hook::Forward => HookPoint::Forward,
                nl::Hook::Output => HookPoint::Output,
                _ => HookPoint::Postrouting,
            },
            priority: b.priority,
        });
        t.chains.insert(
            c.name.clone(),
            Chain {
                hook,
                rules: Vec::new(),
            },
        );
    }
    for r in &d.rules {
        let stmts = rule(family, &r.exprs).map_err(|e| format!("chain {}: {e}", r.chain))?;
        t.chains
            .entry(r.chain.clone())
            .or_default()
            .rules
            .push(stmts);
    }
    let mut sets = BTreeMap::new();
    for s in &d.sets {
        let kind = set_kind(s);
        let mut set = Set::new(kind);
        // The packet path fills affinity sets; their entries are not part of our model.
        if !matches!(kind, SetKind::Affinity { .. }) {
            let elems = nft
                .elements(nl_family(family), name, &s.name)
                .map_err(|e| e.to_string())?;
            for e in elems {
                let k = decode_key(kind, &e.key).ok_or_else(|| {
                    format!("set {}: an element key tinylet did not make", s.name)
                })?;
                let v = match &e.data {
                    Some(Data::Verdict(v)) => verdict(v),
                    _ => None,
                };
                set.elements.insert(k, v);
            }
        }
        sets.insert(s.name.clone(), set);
    }
    t.sets = sets;
    Ok(Some(t))
}
