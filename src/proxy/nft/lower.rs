//! Our model's statements and changes → nf_tables messages of the netlink layer, and the
//! [`Kernel`] that commits them over a NETLINK_NETFILTER socket.
//!
//! Expressions are the ones `nft` 1.0.6 builds for the same statements (checked with
//! `nft --debug=netlink`): loads into register 1 (concatenations packed 4-byte aligned from
//! it), then `cmp`/`lookup`/`bitwise`; integers the kernel produces in host order (`ct
//! state`, `meta mark`, `numgen`) are compared in host order, packet fields in network order.

use std::net::IpAddr;

use super::diff::{Change, Transaction};
use super::model::{proto_number, Family, Fields, Key, SetKind, Stmt, Verdict};
use super::sync::Kernel;
use crate::netlink::nftables::expr::ct_state;
use crate::netlink::nftables::msg::{datatype, set_flags};
use crate::netlink::nftables::{
    self as nl, CmpOp, CtKey, DynsetOp, Expr, MetaKey, Msg, NatType, NumgenType, PayloadBase,
    RejectType,
};
use crate::netlink::nftables::{Data, Reg};

/// NF_NAT_RANGE_PROTO_RANDOM_FULLY.
const NAT_RANDOM_FULLY: u32 = 0x10;

fn family(f: Family) -> nl::Family {
    match f {
        Family::Ip => nl::Family::Ip,
        Family::Ip6 => nl::Family::Ip6,
    }
}

fn verdict(v: &Verdict) -> nl::Verdict {
    match v {
        Verdict::Jump(c) => nl::Verdict::Jump(c.clone()),
        Verdict::Goto(c) => nl::Verdict::Goto(c.clone()),
        Verdict::Return => nl::Verdict::Return,
        Verdict::Drop => nl::Verdict::Drop,
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// (offset, length) of the source and destination address in the network header.
fn addr_field(f: Family, source: bool) -> (u32, u32) {
    match (f, source) {
        (Family::Ip, true) => (12, 4),
        (Family::Ip, false) => (16, 4),
        (Family::Ip6, true) => (8, 16),
        (Family::Ip6, false) => (24, 16),
    }
}

fn load_addr(f: Family, source: bool, dreg: Reg) -> Expr {
    let (offset, len) = addr_field(f, source);
    Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len,
        dreg,
    }
}

fn load_dport(dreg: Reg) -> Expr {
    Expr::Payload {
        base: PayloadBase::Transport,
        offset: 2,
        len: 2,
        dreg,
    }
}

fn meta(key: MetaKey) -> Expr {
    Expr::Meta { key, dreg: Reg::R1 }
}

fn cmp(op: CmpOp, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op,
        data,
    }
}

fn lookup(set: &str, dreg: Option<Reg>) -> Expr {
    Expr::Lookup {
        set: set.to_string(),
        set_id: None,
        sreg: Reg::R1,
        dreg,
        invert: false,
    }
}

/// Mask of a prefix over `len` bytes, network order.
fn prefix_mask(prefix: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = (u32::from(prefix)).saturating_sub(i as u32 * 8).min(8);
            if bits == 0 {
                0
            } else {
                0xffu8 << (8 - bits)
            }
        })
        .collect()
}

fn addr_match(f: Family, source: bool, c: &super::model::Cidr, eq: bool) -> Vec<Expr> {
    let mut out = vec![load_addr(f, source, Reg::R1)];
    let bytes = addr_bytes(&c.addr);
    let op = if eq { CmpOp::Eq } else { CmpOp::Neq };
    if c.is_host() {
        out.push(cmp(op, bytes));
    } else {
        let mask = prefix_mask(c.prefix, bytes.len());
        let net: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
        out.push(Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            len: bytes.len() as u32,
            mask,
            xor: vec![0; bytes.len()],
        });
        out.push(cmp(op, net));
    }
    out
}

fn mark_rewrite(mask: u32, xor: u32) -> Vec<Expr> {
    vec![
        meta(MetaKey::Mark),
        Expr::Bitwise {
            sreg: Reg::R1,
            dreg: Reg::R1,
            len: 4,
            mask: mask.to_ne_bytes().to_vec(),
            xor: xor.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: Reg::R1,
        },
    ]
}

/// The expressions of one statement.
pub fn stmt_exprs(f: Family, s: &Stmt) -> Vec<Expr> {
    let addr_len = if f == Family::Ip6 { 16 } else { 4 };
    match s {
        Stmt::CtStateNew => vec![
            Expr::Ct {
                key: CtKey::State,
                dreg: Reg::R1,
                direction: None,
            },
            Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                len: 4,
                mask: ct_state::NEW.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            cmp(CmpOp::Neq, vec![0; 4]),
        ],
        Stmt::Saddr(c, eq) => addr_match(f, true, c, *eq),
        Stmt::Daddr(c, eq) => addr_match(f, false, c, *eq),
        Stmt::SaddrIn(set) => vec![load_addr(f, true, Reg::R1), lookup(set, None)],
        Stmt::DaddrIn(set) => vec![load_addr(f, false, Reg::R1), lookup(set, None)],
        Stmt::L4Proto(p) => vec![
            meta(MetaKey::L4proto),
            cmp(CmpOp::Eq, vec![proto_number(*p)]),
        ],
        Stmt::Dport(n) => vec![
            load_dport(Reg::R1),
            cmp(CmpOp::Eq, n.to_be_bytes().to_vec()),
        ],
        Stmt::MarkClear(b) => vec![
            meta(MetaKey::Mark),
            Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                len: 4,
                mask: b.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            cmp(CmpOp::Eq, vec![0; 4]),
        ],
        Stmt::Numgen { modulus, value } => vec![
            Expr::Numgen {
                dreg: Reg::R1,
                modulus: *modulus,
                kind: NumgenType::Random,
                offset: 0,
            },
            cmp(CmpOp::Eq, value.to_ne_bytes().to_vec()),
        ],
        Stmt::DispatchAddrPort(map) => vec![
            load_addr(f, false, Reg::R1),
            Expr::Meta {
                key: MetaKey::L4proto,
                dreg: Reg::R1.offset(addr_len),
            },
            load_dport(Reg::R1.offset(addr_len + 4)),
            lookup(map, Some(Reg::VERDICT)),
        ],
        Stmt::DispatchPort(map) => vec![
            meta(MetaKey::L4proto),
            load_dport(Reg::R1.offset(4)),
            lookup(map, Some(Reg::VERDICT)),
        ],
        Stmt::Lookup(fields, set) => {
            let mut out = Vec::with_capacity(5);
            let rest = match fields {
                Fields::ProtoPort => 0,
                Fields::DaddrProtoPort | Fields::DaddrProtoPortSaddr => {
                    out.push(load_addr(f, false, Reg::R1));
                    addr_len
                }
                Fields::SaddrProtoPort => {
                    out.push(load_addr(f, true, Reg::R1));
                    addr_len
                }
            };
            out.push(Expr::Meta {
                key: MetaKey::L4proto,
                dreg: Reg::R1.offset(rest),
            });
            out.push(load_dport(Reg::R1.offset(rest + 4)));
            if *fields == Fields::DaddrProtoPortSaddr {
                out.push(load_addr(f, true, Reg::R1.offset(rest + 8)));
            }
            out.push(lookup(set, None));
            out
        }
        Stmt::UpdateSaddr(set) => vec![
            load_addr(f, true, Reg::R1),
            Expr::Dynset {
                op: DynsetOp::Update,
                set: set.clone(),
                set_id: None,
                sreg_key: Reg::R1,
                sreg_data: None,
                timeout_ms: None,
                exprs: Vec::new(),
            },
        ],
        Stmt::MarkOr(b) => mark_rewrite(!b, *b),
        Stmt::MarkXor(b) => mark_rewrite(u32::MAX, *b),
        Stmt::Masquerade => vec![Expr::Masq {
            flags: Some(NAT_RANDOM_FULLY),
            proto_min: None,
            proto_max: None,
        }],
        Stmt::Dnat(a, port) => {
            let preg = Reg::R1.offset(addr_len);
            vec![
                Expr::Immediate {
                    dreg: Reg::R1,
                    value: addr_bytes(a),
                },
                Expr::Immediate {
                    dreg: preg,
                    value: port.to_be_bytes().to_vec(),
                },
                Expr::Nat {
                    kind: NatType::Dnat,
                    family: family(f),
                    addr_min: Some(Reg::R1),
                    addr_max: None,
                    proto_min: Some(preg),
                    proto_max: None,
                    flags: None,
                },
            ]
        }
        // ICMP port unreachable (3) / ICMPv6 port unreachable (4), as `reject` sends.
        Stmt::Reject => vec![Expr::Reject {
            kind: RejectType::IcmpUnreach,
            code: if f == Family::Ip6 { 4 } else { 3 },
        }],
        Stmt::Verdict(v) => vec![Expr::Verdict(verdict(v))],
    }
}

/// Key bytes of an element (concatenated fields padded to 4 bytes).
pub fn key_bytes(k: &Key) -> Vec<u8> {
    let proto = |p| vec![proto_number(p), 0, 0, 0];
    let port = |n: u16| {
        let b = n.to_be_bytes();
        vec![b[0], b[1], 0, 0]
    };
    match k {
        Key::AddrPort(a, p, n) => [addr_bytes(a), proto(*p), port(*n)].concat(),
        Key::Port(p, n) => [proto(*p), port(*n)].concat(),
        Key::Addr(a) => addr_bytes(a),
        Key::AddrPortAddr(a, p, n, b) => {
            [addr_bytes(a), proto(*p), port(*n), addr_bytes(b)].concat()
        }
    }
}

fn set_msg(f: Family, table: &str, name: &str, kind: SetKind) -> nl::Set {
    let addr = if f == Family::Ip6 {
        datatype::IPV6_ADDR
    } else {
        datatype::IPV4_ADDR
    };
    let fam = family(f);
    match kind {
        SetKind::AddrPortMap => nl::Set::new(
            fam,
            table,
            name,
            &[addr, datatype::INET_PROTO, datatype::INET_SERVICE],
        )
        .verdict_map(),
        SetKind::PortMap => nl::Set::new(
            fam,
            table,
            name,
            &[datatype::INET_PROTO, datatype::INET_SERVICE],
        )
        .verdict_map(),
        SetKind::Addrs => nl::Set::new(fam, table, name, &[addr]),
        SetKind::AddrPorts => nl::Set::new(
            fam,
            table,
            name,
            &[addr, datatype::INET_PROTO, datatype::INET_SERVICE],
        ),
        SetKind::Ports => nl::Set::new(
            fam,
            table,
            name,
            &[datatype::INET_PROTO, datatype::INET_SERVICE],
        ),
        SetKind::LoopBack => nl::Set::new(
            fam,
            table,
            name,
            &[addr, datatype::INET_PROTO, datatype::INET_SERVICE, addr],
        ),
        SetKind::Affinity { timeout } => nl::Set::new(fam, table, name, &[addr])
            .with_timeout(u64::from(timeout) * 1000)
            .with_flags(set_flags::EVAL),
    }
}

/// Room for one element in a message: key and data nests, a verdict's chain name.
fn element_bytes(k: &Key, v: Option<&Verdict>) -> usize {
    48 + key_bytes(k).len() + v.and_then(Verdict::chain).map_or(0, str::len)
}

/// Netlink attribute lengths are 16 bits: an element list nest must stay under 64 KiB, so
/// a large set's elements go in several messages of the same batch (as nft does).
const ELEMENTS_NEST_BYTES: usize = 48 * 1024;

fn chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, it) in items.iter().enumerate() {
        let b = size(it);
        if i > start && bytes + b > ELEMENTS_NEST_BYTES {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// The messages of one transaction, in order. New sets are numbered from `next_set_id`
/// (the kernel requires a transaction id on every new set).
pub fn messages(tx: &Transaction, next_set_id: &mut u32) -> Vec<Msg> {
    let mut out = Vec::with_capacity(tx.changes.len());
    each_message(tx, next_set_id, |m| out.push(m));
    out
}

/// [`messages`] one at a time: a large batch is encoded as it is lowered, never holding
/// every message's expressions at once.
pub fn each_message(tx: &Transaction, next_set_id: &mut u32, mut out: impl FnMut(Msg)) {
    let f = tx.family;
    let fam = family(f);
    let t = tx.table.as_str();
    for c in &tx.changes {
        // Element changes may take several messages; everything else takes one.
        let m = match c {
            Change::AddTable => Msg::NewTable(nl::Table::new(fam, t)),
            Change::DelTable => Msg::DelTable(nl::Table::new(fam, t)),
            Change::AddChain(name, chain) => Msg::NewChain(match chain.hook {
                None => nl::Chain::regular(fam, t, name),
                Some(h) => nl::Chain::base(
                    fam,
                    t,
                    name,
                    match h.kind {
                        super::model::ChainType::Filter => nl::ChainType::Filter,
                        super::model::ChainType::Nat => nl::ChainType::Nat,
                    },
                    nl::Hook::from_number(h.point.number()),
                    h.priority,
                ),
            }),
            // A rule delete naming only the chain flushes it.
            Change::FlushChain(name) => Msg::DelRule(nl::Rule::new(fam, t, name, Vec::new())),
            Change::DelChain(name) => Msg::DelChain(nl::Chain::regular(fam, t, name)),
            Change::AddRule(chain, rule) => Msg::NewRule(nl::Rule::new(
                fam,
                t,
                chain,
                rule.iter().flat_map(|s| stmt_exprs(f, s)).collect(),
            )),
            Change::AddSet(name, set) => {
                let mut m = set_msg(f, t, name, set.kind);
                *next_set_id = next_set_id.wrapping_add(1);
                m.id = Some(*next_set_id);
                Msg::NewSet(m)
            }
            Change::DelSet(name) => Msg::DelSet(nl::Set::new(fam, t, name, &[])),
            Change::AddElements(set, els) => {
                for chunk in chunks(els, |(k, v)| element_bytes(k, v.as_ref())) {
                    let elems = chunk
                        .iter()
                        .map(|(k, v)| match v {
                            Some(v) => nl::SetElem::map(key_bytes(k), Data::Verdict(verdict(v))),
                            None => nl::SetElem::key(key_bytes(k)),
                        })
                        .collect();
                    out(Msg::NewElems(nl::SetElems::new(fam, t, set, elems)));
                }
                continue;
            }
            Change::DelElements(set, keys) => {
                for chunk in chunks(keys, |k| element_bytes(k, None)) {
                    let elems = chunk
                        .iter()
                        .map(|k| nl::SetElem::key(key_bytes(k)))
                        .collect();
                    out(Msg::DelElems(nl::SetElems::new(fam, t, set, elems)));
                }
                continue;
            }
        };
        out(m);
    }
}

/// Commits transactions over our netlink layer, one batch per call.
#[derive(Debug)]
pub struct NetlinkKernel {
    nft: nl::Nftables,
}

impl NetlinkKernel {
    /// Open a NETLINK_NETFILTER socket.
    pub fn open() -> Result<Self, String> {
        let mut nft = nl::Nftables::open().map_err(|e| format!("open nf_tables netlink: {e}"))?;
        // Errors still come back for every rejected message; a large full sync does not wait
        // for one ACK per message.
        nft.set_ack_each(false);
        Ok(NetlinkKernel { nft })
    }

    /// The netlink client (for listings).
    pub fn client(&mut self) -> &mut nl::Nftables {
        &mut self.nft
    }
}

impl Kernel for NetlinkKernel {
    fn commit(&mut self, txs: &[Transaction]) -> Result<(), String> {
        let mut b = self.nft.batch();
        let mut set_id = 0;
        for tx in txs {
            each_message(tx, &mut set_id, |m| {
                b.push(&m);
            });
        }
        self.nft.commit(&b.finish()).map_err(|e| e.to_string())
    }

    fn generation(&mut self) -> Result<Option<u32>, String> {
        self.nft.generation().map(Some).map_err(|e| e.to_string())
    }
}
