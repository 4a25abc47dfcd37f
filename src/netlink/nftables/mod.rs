//! nf_tables over nfnetlink: tables, chains, sets, elements and rules as Reprs, their
//! messages, atomic batches and the transaction that sends them.
//!
//! Owns the nf_tables attribute layout (`msg`, `expr`), batch framing with sequence numbers
//! (`batch`) and the send/ack/dump exchange (`client`). Requests follow what `nft` 1.0.6
//! sends, so its captures serve as golden vectors. Decoding never panics on any input.
//! It decides nothing about what to program: that is `proxy`'s job. No libnftnl, no `nft`.
//!
//! Constant values come from Linux's `include/uapi/linux/netfilter/nf_tables.h` and
//! `nfnetlink.h`. nf_tables wants every integer attribute in network byte order (the kernel
//! reads them with `ntohl`/`be64_to_cpu`), unlike most netlink families.

pub mod batch;
pub mod client;
pub mod expr;
pub mod msg;

use std::fmt;

use super::wire::{Builder, NlAttr, WireError};

pub use batch::{Batch, BatchMsgs};
pub use client::{Nftables, TableDump};
pub use expr::{
    CmpOp, CtKey, DynsetOp, Expr, MetaKey, NatType, NumgenType, PayloadBase, RejectType,
};
pub use msg::{BaseChain, Chain, ChainType, Gen, Hook, Msg, Rule, Set, SetElem, SetElems, Table};

/// nfnetlink subsystem id of nf_tables (`NFNL_SUBSYS_NFTABLES`).
pub const NFNL_SUBSYS_NFTABLES: u8 = 10;
/// Batch start (`NFNL_MSG_BATCH_BEGIN` = NLMSG_MIN_TYPE).
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// Batch end (`NFNL_MSG_BATCH_END`).
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
/// nfgenmsg version (`NFNETLINK_V0`).
pub const NFNETLINK_V0: u8 = 0;
/// Length of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Flag (NEW): add at the end of the list (rules).
pub const NLM_F_APPEND: u16 = 0x800;
/// Flag (NEW): replace an existing object (rules by handle).
pub const NLM_F_REPLACE: u16 = 0x100;

/// nf_tables message types (`enum nf_tables_msg_types`); the netlink type is
/// `NFNL_SUBSYS_NFTABLES << 8 | type`.
pub mod msgtype {
    /// NFT_MSG_NEWTABLE.
    pub const NEWTABLE: u8 = 0;
    /// NFT_MSG_GETTABLE.
    pub const GETTABLE: u8 = 1;
    /// NFT_MSG_DELTABLE.
    pub const DELTABLE: u8 = 2;
    /// NFT_MSG_NEWCHAIN.
    pub const NEWCHAIN: u8 = 3;
    /// NFT_MSG_GETCHAIN.
    pub const GETCHAIN: u8 = 4;
    /// NFT_MSG_DELCHAIN.
    pub const DELCHAIN: u8 = 5;
    /// NFT_MSG_NEWRULE.
    pub const NEWRULE: u8 = 6;
    /// NFT_MSG_GETRULE.
    pub const GETRULE: u8 = 7;
    /// NFT_MSG_DELRULE.
    pub const DELRULE: u8 = 8;
    /// NFT_MSG_NEWSET.
    pub const NEWSET: u8 = 9;
    /// NFT_MSG_GETSET.
    pub const GETSET: u8 = 10;
    /// NFT_MSG_DELSET.
    pub const DELSET: u8 = 11;
    /// NFT_MSG_NEWSETELEM.
    pub const NEWSETELEM: u8 = 12;
    /// NFT_MSG_GETSETELEM.
    pub const GETSETELEM: u8 = 13;
    /// NFT_MSG_DELSETELEM.
    pub const DELSETELEM: u8 = 14;
    /// NFT_MSG_NEWGEN.
    pub const NEWGEN: u8 = 15;
    /// NFT_MSG_GETGEN.
    pub const GETGEN: u8 = 16;
}

/// Netlink message type of an nf_tables message.
pub const fn nft_type(t: u8) -> u16 {
    ((NFNL_SUBSYS_NFTABLES as u16) << 8) | t as u16
}

/// Address family of a table (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `inet` (1): IPv4 and IPv6.
    Inet,
    /// `ip` (2).
    Ip,
    /// `ip6` (10).
    Ip6,
    /// Anything else (arp, bridge, netdev, unspec).
    Unknown(u8),
}

impl Family {
    /// NFPROTO number.
    pub fn number(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Ip6 => 10,
            Family::Unknown(n) => n,
        }
    }

    /// From an NFPROTO number.
    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Family::Inet,
            2 => Family::Ip,
            10 => Family::Ip6,
            n => Family::Unknown(n),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Family::Inet => write!(f, "inet"),
            Family::Ip => write!(f, "ip"),
            Family::Ip6 => write!(f, "ip6"),
            Family::Unknown(0) => write!(f, "unspec"),
            Family::Unknown(n) => write!(f, "family{n}"),
        }
    }
}

/// A register number as the wire carries it (`enum nft_registers`): 0 is the verdict
/// register, 1–4 the 16-byte registers, 8–23 the 4-byte ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(pub u32);

impl Reg {
    /// NFT_REG_VERDICT.
    pub const VERDICT: Reg = Reg(0);
    /// NFT_REG_1 (16 bytes; the same storage as NFT_REG32_00..03).
    pub const R1: Reg = Reg(1);
    /// NFT_REG_2.
    pub const R2: Reg = Reg(2);
    /// NFT_REG_3.
    pub const R3: Reg = Reg(3);
    /// NFT_REG_4.
    pub const R4: Reg = Reg(4);

    /// NFT_REG32_00 + n (4-byte register n, 0..=15).
    pub const fn r32(n: u32) -> Reg {
        Reg(8 + n)
    }

    /// The register `bytes` bytes after this one, as `nft` numbers it: a whole 16-byte step
    /// stays a 16-byte register, anything else becomes a 4-byte register.
    pub fn offset(self, bytes: u32) -> Reg {
        let start32 = match self.0 {
            1..=4 => (self.0 - 1) * 4,
            n if n >= 8 => n - 8,
            _ => return self,
        };
        let at = start32 + bytes.div_ceil(4);
        if at % 4 == 0 {
            Reg(1 + at / 4)
        } else {
            Reg(8 + at)
        }
    }
}

/// nf_tables verdict codes (netfilter's NF_* and `enum nft_verdicts`).
pub mod verdict_code {
    /// NF_DROP.
    pub const DROP: i32 = 0;
    /// NF_ACCEPT.
    pub const ACCEPT: i32 = 1;
    /// NF_QUEUE.
    pub const QUEUE: i32 = 3;
    /// NFT_CONTINUE.
    pub const CONTINUE: i32 = -1;
    /// NFT_BREAK.
    pub const BREAK: i32 = -2;
    /// NFT_JUMP.
    pub const JUMP: i32 = -3;
    /// NFT_GOTO.
    pub const GOTO: i32 = -4;
    /// NFT_RETURN.
    pub const RETURN: i32 = -5;
}

/// A verdict: what happens to the packet, or where evaluation continues.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let the packet through.
    Accept,
    /// Drop the packet.
    Drop,
    /// Go on with the next expression.
    Continue,
    /// Stop this rule, go on with the next.
    Break,
    /// Return to the calling chain.
    Return,
    /// Evaluate a chain, then come back.
    Jump(String),
    /// Evaluate a chain and do not come back.
    Goto(String),
    /// A code this model does not name (queue numbers and the like).
    Unknown(i32),
}

impl Verdict {
    /// The kernel's code.
    pub fn code(&self) -> i32 {
        use verdict_code::*;
        match self {
            Verdict::Accept => ACCEPT,
            Verdict::Drop => DROP,
            Verdict::Continue => CONTINUE,
            Verdict::Break => BREAK,
            Verdict::Return => RETURN,
            Verdict::Jump(_) => JUMP,
            Verdict::Goto(_) => GOTO,
            Verdict::Unknown(c) => *c,
        }
    }

    /// Emit an NFTA_DATA_VERDICT nest (code, then chain).
    pub(crate) fn emit_data(&self, b: &mut Builder) {
        let n = b.begin_nest(attr::DATA_VERDICT);
        put_be32(b, attr::VERDICT_CODE, self.code() as u32);
        if let Verdict::Jump(c) | Verdict::Goto(c) = self {
            b.attr_strz(attr::VERDICT_CHAIN, c);
        }
        b.end_nest(n);
    }

    /// Parse the inside of an NFTA_DATA_VERDICT nest.
    pub(crate) fn parse_nest(nest: &[u8]) -> Result<Verdict, WireError> {
        let mut code = None;
        let mut chain = None;
        for a in super::wire::attrs(nest) {
            let a = a?;
            match a.kind {
                attr::VERDICT_CODE => code = Some(be32(&a)? as i32),
                attr::VERDICT_CHAIN => chain = Some(a.string()),
                _ => {}
            }
        }
        let code = code.ok_or(WireError::MissingAttribute("NFTA_VERDICT_CODE"))?;
        use verdict_code::*;
        Ok(match code {
            ACCEPT => Verdict::Accept,
            DROP => Verdict::Drop,
            CONTINUE => Verdict::Continue,
            BREAK => Verdict::Break,
            RETURN => Verdict::Return,
            JUMP => Verdict::Jump(chain.ok_or(WireError::MissingAttribute("NFTA_VERDICT_CHAIN"))?),
            GOTO => Verdict::Goto(chain.ok_or(WireError::MissingAttribute("NFTA_VERDICT_CHAIN"))?),
            c => Verdict::Unknown(c),
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => write!(f, "accept"),
            Verdict::Drop => write!(f, "drop"),
            Verdict::Continue => write!(f, "continue"),
            Verdict::Break => write!(f, "break"),
            Verdict::Return => write!(f, "return"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Unknown(c) => write!(f, "verdict {c}"),
        }
    }
}

/// A value as nf_tables carries it (`NFTA_DATA_*`): bytes, or a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Data {
    /// Generic bytes, in the byte order of the packet field they stand for.
    Value(Vec<u8>),
    /// A verdict (verdict maps, immediate verdicts).
    Verdict(Verdict),
}

impl Data {
    /// Emit a nest of type `kind` holding this data.
    pub(crate) fn emit(&self, b: &mut Builder, kind: u16) {
        match self {
            Data::Value(v) => emit_value(b, kind, v),
            Data::Verdict(v) => {
                let n = b.begin_nest(kind);
                v.emit_data(b);
                b.end_nest(n);
            }
        }
    }

    /// Parse a nest holding NFTA_DATA_VALUE or NFTA_DATA_VERDICT.
    pub(crate) fn parse_nest(nest: &[u8]) -> Result<Data, WireError> {
        for a in super::wire::attrs(nest) {
            let a = a?;
            match a.kind {
                attr::DATA_VALUE => return Ok(Data::Value(a.value.to_vec())),
                attr::DATA_VERDICT => return Verdict::parse_nest(a.value).map(Data::Verdict),
                _ => {}
            }
        }
        Err(WireError::MissingAttribute("NFTA_DATA_VALUE"))
    }

    /// The bytes of a value nest (an error for a verdict).
    pub(crate) fn parse_value(a: &NlAttr<'_>) -> Result<Vec<u8>, WireError> {
        match Data::parse_nest(a.value)? {
            Data::Value(v) => Ok(v),
            Data::Verdict(_) => Err(WireError::BadAttribute(a.kind)),
        }
    }
}

/// Attribute numbers shared by several objects.
pub(crate) mod attr {
    pub const LIST_ELEM: u16 = 1;
    pub const DATA_VALUE: u16 = 1;
    pub const DATA_VERDICT: u16 = 2;
    pub const VERDICT_CODE: u16 = 1;
    pub const VERDICT_CHAIN: u16 = 2;
}

/// A nest of type `kind` holding NFTA_DATA_VALUE bytes (no copy into a [`Data`]).
pub(crate) fn emit_value(b: &mut Builder, kind: u16, v: &[u8]) {
    let n = b.begin_nest(kind);
    b.attr(attr::DATA_VALUE, v);
    b.end_nest(n);
}

/// A 32-bit attribute in network byte order.
pub(crate) fn put_be32(b: &mut Builder, kind: u16, v: u32) {
    b.attr(kind, &v.to_be_bytes());
}

/// A 64-bit attribute in network byte order.
pub(crate) fn put_be64(b: &mut Builder, kind: u16, v: u64) {
    b.attr_8(kind, v.to_be_bytes());
}

/// Read a big-endian u32 attribute.
pub(crate) fn be32(a: &NlAttr<'_>) -> Result<u32, WireError> {
    a.u32().map(u32::from_be)
}

/// Read a big-endian u64 attribute.
pub(crate) fn be64(a: &NlAttr<'_>) -> Result<u64, WireError> {
    let s: [u8; 8] = a
        .value
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or(WireError::BadAttribute(a.kind))?;
    Ok(u64::from_be_bytes(s))
}

/// Decode arbitrary bytes as nf_tables messages (a batch we sent or kernel replies); returns
/// how many decoded into a [`Msg`]. The fuzz target's body: it must never panic.
pub fn parse_any(data: &[u8]) -> usize {
    let mut ok = 0;
    for m in super::wire::messages(data).flatten() {
        if let Ok(Some(msg)) = Msg::parse(&m) {
            let _ = msg.describe();
            let mut b = Builder::new();
            msg.emit(&mut b, m.seq());
            ok += 1;
        }
        let _ = m.error_code();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_offsets_follow_nft_numbering() {
        assert_eq!(Reg::R1.offset(0), Reg::R1);
        assert_eq!(Reg::R1.offset(4), Reg::r32(1));
        assert_eq!(Reg::R1.offset(16), Reg::R2);
        assert_eq!(Reg::r32(1).offset(4), Reg::r32(2));
        assert_eq!(Reg::r32(3).offset(4), Reg::R2);
        assert_eq!(Reg::R1.offset(2), Reg::r32(1));
    }

    #[test]
    fn verdicts_and_data_round_trip() {
        for v in [
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Continue,
            Verdict::Break,
            Verdict::Return,
            Verdict::Jump("svc-a".into()),
            Verdict::Goto("endpoint-1".into()),
            Verdict::Unknown(0x10003),
        ] {
            let mut b = Builder::new();
            Data::Verdict(v.clone()).emit(&mut b, 2);
            let bytes = b.into_bytes();
            let a = super::super::wire::attrs(&bytes).next().unwrap().unwrap();
            assert!(a.nested_flag);
            assert_eq!(Data::parse_nest(a.value).unwrap(), Data::Verdict(v));
        }
        let mut b = Builder::new();
        Data::Value(vec![10, 0, 0, 1, 0, 80]).emit(&mut b, 3);
        let bytes = b.into_bytes();
        let a = super::super::wire::attrs(&bytes).next().unwrap().unwrap();
        assert_eq!(Data::parse_value(&a).unwrap(), vec![10, 0, 0, 1, 0, 80]);
        // A jump without its chain is refused, not defaulted.
        let mut b = Builder::new();
        let n = b.begin_nest(attr::DATA_VERDICT);
        put_be32(&mut b, attr::VERDICT_CODE, verdict_code::JUMP as u32);
        b.end_nest(n);
        let bytes = b.into_bytes();
        assert!(Data::parse_nest(&bytes).is_err());
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        // A tiny xorshift PRNG: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seeds = Vec::new();
        for m in msg::tests::samples() {
            let mut b = Builder::new();
            m.emit(&mut b, 1);
            seeds.push(b.into_bytes());
        }
        let mut decoded = 0;
        for seed in &seeds {
            decoded += parse_any(seed);
            for _ in 0..200 {
                let mut c = seed.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % c.len();
                    c[i] = next() as u8;
                }
                let _ = parse_any(&c);
            }
        }
        assert_eq!(decoded, seeds.len());
        for len in 0..300 {
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_any(&junk);
        }
    }

    #[test]
    fn families_keep_unknown_numbers() {
        for n in 0..=255u8 {
            assert_eq!(Family::from_number(n).number(), n);
        }
        assert_eq!(Family::Ip6.to_string(), "ip6");
    }
}
