//! nf_tables rule expressions: the register machine a rule is made of, as one `Expr` enum.
//!
//! Owns the attribute layout of each expression a service proxy needs (meta, payload, cmp,
//! lookup, immediate, bitwise, ct, nat, masq, numgen, counter, reject, dynset) and keeps any
//! other expression as its raw bytes, so a rule read from the kernel re-emits unchanged.

use std::fmt;

use super::super::wire::{attrs, Builder, NlAttr, WireError};
use super::{attr, be32, be64, emit_value, put_be32, put_be64, Data, Family, Reg, Verdict};

mod a {
    pub const EXPR_NAME: u16 = 1;
    pub const EXPR_DATA: u16 = 2;

    pub const META_DREG: u16 = 1;
    pub const META_KEY: u16 = 2;
    pub const META_SREG: u16 = 3;

    pub const PAYLOAD_DREG: u16 = 1;
    pub const PAYLOAD_BASE: u16 = 2;
    pub const PAYLOAD_OFFSET: u16 = 3;
    pub const PAYLOAD_LEN: u16 = 4;
    pub const PAYLOAD_SREG: u16 = 5;

    pub const CMP_SREG: u16 = 1;
    pub const CMP_OP: u16 = 2;
    pub const CMP_DATA: u16 = 3;

    pub const LOOKUP_SET: u16 = 1;
    pub const LOOKUP_SREG: u16 = 2;
    pub const LOOKUP_DREG: u16 = 3;
    pub const LOOKUP_SET_ID: u16 = 4;
    pub const LOOKUP_FLAGS: u16 = 5;

    pub const IMMEDIATE_DREG: u16 = 1;
    pub const IMMEDIATE_DATA: u16 = 2;

    pub const BITWISE_SREG: u16 = 1;
    pub const BITWISE_DREG: u16 = 2;
    pub const BITWISE_LEN: u16 = 3;
    pub const BITWISE_MASK: u16 = 4;
    pub const BITWISE_XOR: u16 = 5;
    pub const BITWISE_OP: u16 = 6;

    pub const CT_DREG: u16 = 1;
    pub const CT_KEY: u16 = 2;
    pub const CT_DIRECTION: u16 = 3;
    pub const CT_SREG: u16 = 4;

    pub const NAT_TYPE: u16 = 1;
    pub const NAT_FAMILY: u16 = 2;
    pub const NAT_REG_ADDR_MIN: u16 = 3;
    pub const NAT_REG_ADDR_MAX: u16 = 4;
    pub const NAT_REG_PROTO_MIN: u16 = 5;
    pub const NAT_REG_PROTO_MAX: u16 = 6;
    pub const NAT_FLAGS: u16 = 7;

    pub const MASQ_FLAGS: u16 = 1;
    pub const MASQ_REG_PROTO_MIN: u16 = 2;
    pub const MASQ_REG_PROTO_MAX: u16 = 3;

    pub const NG_DREG: u16 = 1;
    pub const NG_MODULUS: u16 = 2;
    pub const NG_TYPE: u16 = 3;
    pub const NG_OFFSET: u16 = 4;

    pub const COUNTER_BYTES: u16 = 1;
    pub const COUNTER_PACKETS: u16 = 2;

    pub const REJECT_TYPE: u16 = 1;
    pub const REJECT_ICMP_CODE: u16 = 2;

    pub const DYNSET_SET_NAME: u16 = 1;
    pub const DYNSET_SET_ID: u16 = 2;
    pub const DYNSET_OP: u16 = 3;
    pub const DYNSET_SREG_KEY: u16 = 4;
    pub const DYNSET_SREG_DATA: u16 = 5;
    pub const DYNSET_TIMEOUT: u16 = 6;
    pub const DYNSET_EXPR: u16 = 7;
    pub const DYNSET_FLAGS: u16 = 9;
    pub const DYNSET_EXPRESSIONS: u16 = 10;
}

/// NFT_LOOKUP_F_INV: the lookup matches when the key is absent.
pub const LOOKUP_F_INV: u32 = 1;
/// NFT_DYNSET_F_INV.
pub const DYNSET_F_INV: u32 = 1;

/// NAT range flag: addresses given (`NF_NAT_RANGE_MAP_IPS`).
pub const NAT_RANGE_MAP_IPS: u32 = 0x1;
/// NAT range flag: ports given (`NF_NAT_RANGE_PROTO_SPECIFIED`).
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
/// NAT range flag: random source ports (`NF_NAT_RANGE_PROTO_RANDOM`).
pub const NAT_RANGE_PROTO_RANDOM: u32 = 0x4;
/// NAT range flag: same mapping for a client (`NF_NAT_RANGE_PERSISTENT`).
pub const NAT_RANGE_PERSISTENT: u32 = 0x8;
/// NAT range flag: fully random source ports (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`).
pub const NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;

/// Conntrack state bits as `ct state` loads them (`NF_CT_STATE_BIT` of ip_conntrack_info).
pub mod ct_state {
    /// invalid.
    pub const INVALID: u32 = 1;
    /// established.
    pub const ESTABLISHED: u32 = 1 << 1;
    /// related.
    pub const RELATED: u32 = 1 << 2;
    /// new.
    pub const NEW: u32 = 1 << 3;
    /// untracked.
    pub const UNTRACKED: u32 = 1 << 6;
}

macro_rules! numbered {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $v:ident = $n:expr),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $v,)*
            /// A number this model does not name.
            Unknown(u32),
        }

        impl $name {
            /// The kernel's number.
            pub fn number(self) -> u32 {
                match self {
                    $($name::$v => $n,)*
                    $name::Unknown(n) => n,
                }
            }

            /// From the kernel's number.
            pub fn from_number(n: u32) -> Self {
                match n {
                    $(x if x == $n => $name::$v,)*
                    n => $name::Unknown(n),
                }
            }
        }
    };
}

numbered!(
    /// What `meta` loads or sets (`enum nft_meta_keys`).
    MetaKey {
        /// Packet length.
        Len = 0,
        /// Ethertype.
        Protocol = 1,
        /// skb priority.
        Priority = 2,
        /// Packet mark.
        Mark = 3,
        /// Input interface index.
        Iif = 4,
        /// Output interface index.
        Oif = 5,
        /// Input interface name.
        Iifname = 6,
        /// Output interface name.
        Oifname = 7,
        /// Input interface type.
        Iiftype = 8,
        /// Output interface type.
        Oiftype = 9,
        /// netfilter protocol family (ip/ip6 in an inet table).
        Nfproto = 15,
        /// Layer 4 protocol number.
        L4proto = 16,
        /// Packet type (unicast, broadcast...).
        Pkttype = 19,
    }
);

numbered!(
    /// Where `payload` counts its offset from (`enum nft_payload_bases`).
    PayloadBase {
        /// Link layer header.
        LinkLayer = 0,
        /// Network header.
        Network = 1,
        /// Transport header.
        Transport = 2,
        /// Inner header.
        Inner = 3,
    }
);

numbered!(
    /// Relational operator of `cmp` (`enum nft_cmp_ops`).
    CmpOp {
        /// ==
        Eq = 0,
        /// !=
        Neq = 1,
        /// <
        Lt = 2,
        /// <=
        Lte = 3,
        /// >
        Gt = 4,
        /// >=
        Gte = 5,
    }
);

numbered!(
    /// What `ct` loads (`enum nft_ct_keys`).
    CtKey {
        /// Conntrack state bits.
        State = 0,
        /// Direction (original/reply).
        Direction = 1,
        /// Status bits (snat, dnat, ...).
        Status = 2,
        /// Conntrack mark.
        Mark = 3,
        /// Layer 3 protocol.
        L3Protocol = 7,
        /// Layer 4 protocol.
        Protocol = 10,
        /// Layer 4 source (port).
        ProtoSrc = 11,
        /// Layer 4 destination (port).
        ProtoDst = 12,
        /// IPv4 source.
        SrcIp = 19,
        /// IPv4 destination.
        DstIp = 20,
        /// IPv6 source.
        SrcIp6 = 21,
        /// IPv6 destination.
        DstIp6 = 22,
    }
);

numbered!(
    /// NAT type (`enum nft_nat_types`).
    NatType {
        /// Source NAT.
        Snat = 0,
        /// Destination NAT.
        Dnat = 1,
    }
);

numbered!(
    /// Number generator type (`enum nft_ng_types`).
    NumgenType {
        /// Round robin counter.
        Inc = 0,
        /// Random number.
        Random = 1,
    }
);

numbered!(
    /// How `reject` answers (`enum nft_reject_types`).
    RejectType {
        /// ICMP (v4 or v6 by table) unreachable with a code.
        IcmpUnreach = 0,
        /// TCP reset.
        TcpRst = 1,
        /// Family-independent ICMP unreachable (inet tables).
        IcmpxUnreach = 2,
    }
);

numbered!(
    /// What `dynset` does with the key (`enum nft_dynset_ops`).
    DynsetOp {
        /// Add if absent.
        Add = 0,
        /// Add or refresh the timeout.
        Update = 1,
        /// Remove.
        Delete = 2,
    }
);

/// One expression of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// Load packet metadata into `dreg`.
    Meta {
        /// What to load.
        key: MetaKey,
        /// Destination register.
        dreg: Reg,
    },
    /// Set packet metadata from `sreg` (`meta mark set ...`).
    MetaSet {
        /// What to set.
        key: MetaKey,
        /// Source register.
        sreg: Reg,
    },
    /// Load `len` packet bytes at `base + offset` into `dreg`.
    Payload {
        /// Header the offset counts from.
        base: PayloadBase,
        /// Byte offset.
        offset: u32,
        /// Byte count.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// Compare a register with a value; the rule stops here when false.
    Cmp {
        /// Register compared.
        sreg: Reg,
        /// Operator.
        op: CmpOp,
        /// The value (packet byte order).
        data: Vec<u8>,
    },
    /// Look a register up in a set; with `dreg`, load the mapped data (a verdict into
    /// register 0 for verdict maps).
    Lookup {
        /// Set name.
        set: String,
        /// Set id, for a set created in the same batch.
        set_id: Option<u32>,
        /// Register holding the key.
        sreg: Reg,
        /// Where the mapped data goes (maps only).
        dreg: Option<Reg>,
        /// Match when the key is absent.
        invert: bool,
    },
    /// Load a constant into a register.
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// The bytes.
        value: Vec<u8>,
    },
    /// A verdict (an immediate into the verdict register).
    Verdict(Verdict),
    /// `dreg = (sreg & mask) ^ xor` over `len` bytes.
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// Operand length.
        len: u32,
        /// AND mask.
        mask: Vec<u8>,
        /// XOR value.
        xor: Vec<u8>,
    },
    /// Load conntrack data into `dreg`.
    Ct {
        /// What to load.
        key: CtKey,
        /// Destination register.
        dreg: Reg,
        /// Direction for directional keys (0 original, 1 reply).
        direction: Option<u8>,
    },
    /// Source or destination NAT to the addresses/ports in registers.
    Nat {
        /// snat or dnat.
        kind: NatType,
        /// Address family of the registers (ip or ip6).
        family: Family,
        /// Register with the (first) address.
        addr_min: Option<Reg>,
        /// Register with the last address of a range.
        addr_max: Option<Reg>,
        /// Register with the (first) port.
        proto_min: Option<Reg>,
        /// Register with the last port of a range.
        proto_max: Option<Reg>,
        /// NF_NAT_RANGE_* flags, when sent.
        flags: Option<u32>,
    },
    /// Masquerade to the outgoing interface's address.
    Masq {
        /// NF_NAT_RANGE_* flags, when sent.
        flags: Option<u32>,
        /// Register with the first port.
        proto_min: Option<Reg>,
        /// Register with the last port.
        proto_max: Option<Reg>,
    },
    /// Load a generated number (`offset + n % modulus`) into `dreg`.
    Numgen {
        /// Destination register.
        dreg: Reg,
        /// Modulus.
        modulus: u32,
        /// Random or incremental.
        kind: NumgenType,
        /// Added to the result.
        offset: u32,
    },
    /// Count packets and bytes.
    Counter {
        /// Bytes so far (kernel replies; 0 to start from zero).
        bytes: u64,
        /// Packets so far.
        packets: u64,
    },
    /// Reject with an ICMP error or a TCP reset.
    Reject {
        /// How.
        kind: RejectType,
        /// ICMP code.
        code: u8,
    },
    /// Add or update the key in `sreg_key` in a set from the packet path (affinity).
    Dynset {
        /// Add, update or delete.
        op: DynsetOp,
        /// Set name.
        set: String,
        /// Set id, for a set created in the same batch.
        set_id: Option<u32>,
        /// Register holding the key.
        sreg_key: Reg,
        /// Register holding the mapped data (maps only).
        sreg_data: Option<Reg>,
        /// Element timeout in milliseconds.
        timeout_ms: Option<u64>,
        /// Expressions attached to the element (counters and the like).
        exprs: Vec<Expr>,
    },
    /// An expression this model does not read, kept as its name and raw data attributes.
    Unknown {
        /// NFTA_EXPR_NAME.
        name: String,
        /// The bytes inside NFTA_EXPR_DATA.
        data: Vec<u8>,
    },
}

impl Expr {
    /// The kernel's name of this expression.
    pub fn name(&self) -> &str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Ct { .. } => "ct",
            Expr::Nat { .. } => "nat",
            Expr::Masq { .. } => "masq",
            Expr::Numgen { .. } => "numgen",
            Expr::Counter { .. } => "counter",
            Expr::Reject { .. } => "reject",
            Expr::Dynset { .. } => "dynset",
            Expr::Unknown { name, .. } => name,
        }
    }

    /// Emit one NFTA_LIST_ELEM nest holding this expression.
    pub fn emit(&self, b: &mut Builder) {
        let elem = b.begin_nest(attr::LIST_ELEM);
        b.attr_strz(a::EXPR_NAME, self.name());
        let data = b.begin_nest(a::EXPR_DATA);
        self.emit_data(b);
        b.end_nest(data);
        b.end_nest(elem);
    }

    fn emit_data(&self, b: &mut Builder) {
        let reg = |b: &mut Builder, kind: u16, r: &Reg| put_be32(b, kind, r.0);
        match self {
            Expr::Meta { key, dreg } => {
                put_be32(b, a::META_KEY, key.number());
                reg(b, a::META_DREG, dreg);
            }
            Expr::MetaSet { key, sreg } => {
                put_be32(b, a::META_KEY, key.number());
                reg(b, a::META_SREG, sreg);
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                reg(b, a::PAYLOAD_DREG, dreg);
                put_be32(b, a::PAYLOAD_BASE, base.number());
                put_be32(b, a::PAYLOAD_OFFSET, *offset);
                put_be32(b, a::PAYLOAD_LEN, *len);
            }
            Expr::Cmp { sreg, op, data } => {
                reg(b, a::CMP_SREG, sreg);
                put_be32(b, a::CMP_OP, op.number());
                emit_value(b, a::CMP_DATA, data);
            }
            Expr::Lookup {
                set,
                set_id,
                sreg,
                dreg,
                invert,
            } => {
                reg(b, a::LOOKUP_SREG, sreg);
                if let Some(d) = dreg {
                    reg(b, a::LOOKUP_DREG, d);
                }
                b.attr_strz(a::LOOKUP_SET, set);
                if let Some(id) = set_id {
                    put_be32(b, a::LOOKUP_SET_ID, *id);
                }
                if *invert {
                    put_be32(b, a::LOOKUP_FLAGS, LOOKUP_F_INV);
                }
            }
            Expr::Immediate { dreg, value } => {
                reg(b, a::IMMEDIATE_DREG, dreg);
                emit_value(b, a::IMMEDIATE_DATA, value);
            }
            Expr::Verdict(v) => {
                reg(b, a::IMMEDIATE_DREG, &Reg::VERDICT);
                let n = b.begin_nest(a::IMMEDIATE_DATA);
                v.emit_data(b);
                b.end_nest(n);
            }
            Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask,
                xor,
            } => {
                reg(b, a::BITWISE_SREG, sreg);
                reg(b, a::BITWISE_DREG, dreg);
                // NFT_BITWISE_MASK_XOR, as nft sends it for expressions (not for flag
                // matches, where it leaves the kernel's default, the same operation).
                put_be32(b, a::BITWISE_OP, 0);
                put_be32(b, a::BITWISE_LEN, *len);
                emit_value(b, a::BITWISE_MASK, mask);
                emit_value(b, a::BITWISE_XOR, xor);
            }
            Expr::Ct {
                key,
                dreg,
                direction,
            } => {
                put_be32(b, a::CT_KEY, key.number());
                reg(b, a::CT_DREG, dreg);
                if let Some(d) = direction {
                    b.attr_u8(a::CT_DIRECTION, *d);
                }
            }
            Expr::Nat {
                kind,
                family,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
                flags,
            } => {
                put_be32(b, a::NAT_TYPE, kind.number());
                put_be32(b, a::NAT_FAMILY, family.number() as u32);
                for (k, r) in [
                    (a::NAT_REG_ADDR_MIN, addr_min),
                    (a::NAT_REG_ADDR_MAX, addr_max),
                    (a::NAT_REG_PROTO_MIN, proto_min),
                    (a::NAT_REG_PROTO_MAX, proto_max),
                ] {
                    if let Some(r) = r {
                        reg(b, k, r);
                    }
                }
                if let Some(f) = flags {
                    put_be32(b, a::NAT_FLAGS, *f);
                }
            }
            Expr::Masq {
                flags,
                proto_min,
                proto_max,
            } => {
                if let Some(f) = flags {
                    put_be32(b, a::MASQ_FLAGS, *f);
                }
                if let Some(r) = proto_min {
                    reg(b, a::MASQ_REG_PROTO_MIN, r);
                }
                if let Some(r) = proto_max {
                    reg(b, a::MASQ_REG_PROTO_MAX, r);
                }
            }
            Expr::Numgen {
                dreg,
                modulus,
                kind,
                offset,
            } => {
                reg(b, a::NG_DREG, dreg);
                put_be32(b, a::NG_MODULUS, *modulus);
                put_be32(b, a::NG_TYPE, kind.number());
                put_be32(b, a::NG_OFFSET, *offset);
            }
            Expr::Counter { bytes, packets } => {
                if *bytes != 0 || *packets != 0 {
                    put_be64(b, a::COUNTER_BYTES, *bytes);
                    put_be64(b, a::COUNTER_PACKETS, *packets);
                }
            }
            Expr::Reject { kind, code } => {
                put_be32(b, a::REJECT_TYPE, kind.number());
                b.attr_u8(a::REJECT_ICMP_CODE, *code);
            }
            Expr::Dynset {
                op,
                set,
                set_id,
                sreg_key,
                sreg_data,
                timeout_ms,
                exprs,
            } => {
                reg(b, a::DYNSET_SREG_KEY, sreg_key);
                if let Some(r) = sreg_data {
                    reg(b, a::DYNSET_SREG_DATA, r);
                }
                put_be32(b, a::DYNSET_OP, op.number());
                if let Some(t) = timeout_ms {
                    put_be64(b, a::DYNSET_TIMEOUT, *t);
                }
                b.attr_strz(a::DYNSET_SET_NAME, set);
                if let Some(id) = set_id {
                    put_be32(b, a::DYNSET_SET_ID, *id);
                }
                match exprs.as_slice() {
                    [] => {}
                    [one] => {
                        let n = b.begin_nest(a::DYNSET_EXPR);
                        b.attr_strz(a::EXPR_NAME, one.name());
                        let d = b.begin_nest(a::EXPR_DATA);
                        one.emit_data(b);
                        b.end_nest(d);
                        b.end_nest(n);
                    }
                    many => {
                        let n = b.begin_nest(a::DYNSET_EXPRESSIONS);
                        for e in many {
                            e.emit(b);
                        }
                        b.end_nest(n);
                    }
                }
            }
            Expr::Unknown { data, .. } => b.put_bytes(data),
        }
    }

    /// Parse the inside of one NFTA_LIST_ELEM (name + data).
    pub fn parse_elem(elem: &[u8]) -> Result<Expr, WireError> {
        Expr::parse_elem_in(elem, false)
    }

    /// `inside_dynset`: an expression attached to a set element, where the kernel allows no
    /// dynset; refusing it here also bounds the recursion on crafted input.
    fn parse_elem_in(elem: &[u8], inside_dynset: bool) -> Result<Expr, WireError> {
        let mut name = None;
        let mut data: &[u8] = &[];
        for x in attrs(elem) {
            let x = x?;
            match x.kind {
                a::EXPR_NAME => name = Some(x.string()),
                a::EXPR_DATA => data = x.value,
                _ => {}
            }
        }
        let name = name.ok_or(WireError::MissingAttribute("NFTA_EXPR_NAME"))?;
        if inside_dynset && name == "dynset" {
            return Err(WireError::BadAttribute(a::DYNSET_EXPR));
        }
        Expr::parse_data(&name, data)
    }

    /// Parse an expression's NFTA_EXPR_DATA payload given its name.
    pub fn parse_data(name: &str, data: &[u8]) -> Result<Expr, WireError> {
        let mut f = Fields::default();
        for x in attrs(data) {
            let x = x?;
            if let Some(slot) = f.0.get_mut(x.kind as usize) {
                *slot = Some(x);
            }
        }
        let unknown = || Expr::Unknown {
            name: name.to_string(),
            data: data.to_vec(),
        };
        Ok(match name {
            "meta" => {
                let key = MetaKey::from_number(f.req_be32(a::META_KEY, "NFTA_META_KEY")?);
                match (f.reg(a::META_DREG)?, f.reg(a::META_SREG)?) {
                    (Some(dreg), _) => Expr::Meta { key, dreg },
                    (None, Some(sreg)) => Expr::MetaSet { key, sreg },
                    (None, None) => return Err(WireError::MissingAttribute("NFTA_META_DREG")),
                }
            }
            "payload" => {
                if f.get(a::PAYLOAD_SREG).is_some() {
                    return Ok(unknown());
                }
                Expr::Payload {
                    base: PayloadBase::from_number(
                        f.req_be32(a::PAYLOAD_BASE, "NFTA_PAYLOAD_BASE")?,
                    ),
                    offset: f.req_be32(a::PAYLOAD_OFFSET, "NFTA_PAYLOAD_OFFSET")?,
                    len: f.req_be32(a::PAYLOAD_LEN, "NFTA_PAYLOAD_LEN")?,
                    dreg: f.req_reg(a::PAYLOAD_DREG, "NFTA_PAYLOAD_DREG")?,
                }
            }
            "cmp" => Expr::Cmp {
                sreg: f.req_reg(a::CMP_SREG, "NFTA_CMP_SREG")?,
                op: CmpOp::from_number(f.req_be32(a::CMP_OP, "NFTA_CMP_OP")?),
                data: Data::parse_value(&f.req(a::CMP_DATA, "NFTA_CMP_DATA")?)?,
            },
            "lookup" => Expr::Lookup {
                set: f.req(a::LOOKUP_SET, "NFTA_LOOKUP_SET")?.string(),
                set_id: f.be32(a::LOOKUP_SET_ID)?,
                sreg: f.req_reg(a::LOOKUP_SREG, "NFTA_LOOKUP_SREG")?,
                dreg: f.reg(a::LOOKUP_DREG)?,
                invert: f.be32(a::LOOKUP_FLAGS)?.unwrap_or(0) & LOOKUP_F_INV != 0,
            },
            "immediate" => {
                let dreg = f.req_reg(a::IMMEDIATE_DREG, "NFTA_IMMEDIATE_DREG")?;
                let d = f.req(a::IMMEDIATE_DATA, "NFTA_IMMEDIATE_DATA")?;
                match Data::parse_nest(d.value)? {
                    Data::Verdict(v) => Expr::Verdict(v),
                    Data::Value(value) => Expr::Immediate { dreg, value },
                }
            }
            "bitwise" => {
                if f.be32(a::BITWISE_OP)?.unwrap_or(0) != 0 {
                    return Ok(unknown());
                }
                Expr::Bitwise {
                    sreg: f.req_reg(a::BITWISE_SREG, "NFTA_BITWISE_SREG")?,
                    dreg: f.req_reg(a::BITWISE_DREG, "NFTA_BITWISE_DREG")?,
                    len: f.req_be32(a::BITWISE_LEN, "NFTA_BITWISE_LEN")?,
                    mask: Data::parse_value(&f.req(a::BITWISE_MASK, "NFTA_BITWISE_MASK")?)?,
                    xor: Data::parse_value(&f.req(a::BITWISE_XOR, "NFTA_BITWISE_XOR")?)?,
                }
            }
            "ct" => {
                if f.get(a::CT_SREG).is_some() {
                    return Ok(unknown());
                }
                Expr::Ct {
                    key: CtKey::from_number(f.req_be32(a::CT_KEY, "NFTA_CT_KEY")?),
                    dreg: f.req_reg(a::CT_DREG, "NFTA_CT_DREG")?,
                    direction: f.get(a::CT_DIRECTION).map(|x| x.u8()).transpose()?,
                }
            }
            "nat" => Expr::Nat {
                kind: NatType::from_number(f.req_be32(a::NAT_TYPE, "NFTA_NAT_TYPE")?),
                family: Family::from_number(
                    u8::try_from(f.req_be32(a::NAT_FAMILY, "NFTA_NAT_FAMILY")?)
                        .map_err(|_| WireError::BadAttribute(a::NAT_FAMILY))?,
                ),
                addr_min: f.reg(a::NAT_REG_ADDR_MIN)?,
                addr_max: f.reg(a::NAT_REG_ADDR_MAX)?,
                proto_min: f.reg(a::NAT_REG_PROTO_MIN)?,
                proto_max: f.reg(a::NAT_REG_PROTO_MAX)?,
                flags: f.be32(a::NAT_FLAGS)?,
            },
            "masq" => Expr::Masq {
                flags: f.be32(a::MASQ_FLAGS)?,
                proto_min: f.reg(a::MASQ_REG_PROTO_MIN)?,
                proto_max: f.reg(a::MASQ_REG_PROTO_MAX)?,
            },
            "numgen" => Expr::Numgen {
                dreg: f.req_reg(a::NG_DREG, "NFTA_NG_DREG")?,
                modulus: f.req_be32(a::NG_MODULUS, "NFTA_NG_MODULUS")?,
                kind: NumgenType::from_number(f.req_be32(a::NG_TYPE, "NFTA_NG_TYPE")?),
                offset: f.be32(a::NG_OFFSET)?.unwrap_or(0),
            },
            "counter" => Expr::Counter {
                bytes: f
                    .get(a::COUNTER_BYTES)
                    .map(|x| be64(&x))
                    .transpose()?
                    .unwrap_or(0),
                packets: f
                    .get(a::COUNTER_PACKETS)
                    .map(|x| be64(&x))
                    .transpose()?
                    .unwrap_or(0),
            },
            "reject" => Expr::Reject {
                kind: RejectType::from_number(f.req_be32(a::REJECT_TYPE, "NFTA_REJECT_TYPE")?),
                code: f
                    .get(a::REJECT_ICMP_CODE)
                    .map(|x| x.u8())
                    .transpose()?
                    .unwrap_or(0),
            },
            "dynset" => {
                let mut exprs = Vec::new();
                if let Some(one) = f.get(a::DYNSET_EXPR) {
                    exprs.push(Expr::parse_elem_in(one.value, true)?);
                }
                if let Some(list) = f.get(a::DYNSET_EXPRESSIONS) {
                    for e in list.nested() {
                        exprs.push(Expr::parse_elem_in(e?.value, true)?);
                    }
                }
                if f.be32(a::DYNSET_FLAGS)?.unwrap_or(0) & DYNSET_F_INV != 0 {
                    return Ok(unknown());
                }
                Expr::Dynset {
                    op: DynsetOp::from_number(f.req_be32(a::DYNSET_OP, "NFTA_DYNSET_OP")?),
                    set: f.req(a::DYNSET_SET_NAME, "NFTA_DYNSET_SET_NAME")?.string(),
                    set_id: f.be32(a::DYNSET_SET_ID)?,
                    sreg_key: f.req_reg(a::DYNSET_SREG_KEY, "NFTA_DYNSET_SREG_KEY")?,
                    sreg_data: f.reg(a::DYNSET_SREG_DATA)?,
                    // The kernel reports 0 for "the set's default", which is what absent means.
                    timeout_ms: f
                        .get(a::DYNSET_TIMEOUT)
                        .map(|x| be64(&x))
                        .transpose()?
                        .filter(|&t| t != 0),
                    exprs,
                }
            }
            _ => unknown(),
        })
    }
}

/// The attributes of one expression, indexed by type (the last of a repeated type wins).
#[derive(Default)]
struct Fields<'a>([Option<NlAttr<'a>>; 16]);

impl<'a> Fields<'a> {
    fn get(&self, kind: u16) -> Option<NlAttr<'a>> {
        self.0.get(kind as usize).copied().flatten()
    }

    fn req(&self, kind: u16, name: &'static str) -> Result<NlAttr<'a>, WireError> {
        self.get(kind).ok_or(WireError::MissingAttribute(name))
    }

    fn be32(&self, kind: u16) -> Result<Option<u32>, WireError> {
        self.get(kind).map(|x| be32(&x)).transpose()
    }

    fn req_be32(&self, kind: u16, name: &'static str) -> Result<u32, WireError> {
        be32(&self.req(kind, name)?)
    }

    fn reg(&self, kind: u16) -> Result<Option<Reg>, WireError> {
        Ok(self.be32(kind)?.map(Reg))
    }

    fn req_reg(&self, kind: u16, name: &'static str) -> Result<Reg, WireError> {
        self.req_be32(kind, name).map(Reg)
    }
}

/// Emit a rule's NFTA_RULE_EXPRESSIONS-style list body (one LIST_ELEM per expression).
pub fn emit_list(b: &mut Builder, exprs: &[Expr]) {
    for e in exprs {
        e.emit(b);
    }
}

/// Parse a list of NFTA_LIST_ELEM expression nests.
pub fn parse_list(list: &[u8]) -> Result<Vec<Expr>, WireError> {
    let mut out = Vec::new();
    for e in attrs(list) {
        out.push(Expr::parse_elem(e?.value)?);
    }
    Ok(out)
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Verdict(v) => write!(f, "{v}"),
            Expr::Lookup { set, .. } => write!(f, "lookup @{set}"),
            Expr::Dynset { set, .. } => write!(f, "dynset @{set}"),
            e => write!(f, "{}", e.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every expression shape, with optional parts both present and absent.
    pub(crate) fn samples() -> Vec<Expr> {
        vec![
            Expr::Meta {
                key: MetaKey::L4proto,
                dreg: Reg::R1,
            },
            Expr::MetaSet {
                key: MetaKey::Mark,
                sreg: Reg::R1,
            },
            Expr::Payload {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                dreg: Reg::R1,
            },
            Expr::Cmp {
                sreg: Reg::R1,
                op: CmpOp::Neq,
                data: vec![6],
            },
            Expr::Lookup {
                set: "cluster-ips".into(),
                set_id: Some(3),
                sreg: Reg::R1,
                dreg: None,
                invert: true,
            },
            Expr::Lookup {
                set: "service-ips".into(),
                set_id: None,
                sreg: Reg::R1,
                dreg: Some(Reg::VERDICT),
                invert: false,
            },
            Expr::Immediate {
                dreg: Reg::R1,
                value: vec![10, 1, 0, 5],
            },
            Expr::Verdict(Verdict::Jump("service-abc".into())),
            Expr::Verdict(Verdict::Goto("endpoint-xyz".into())),
            Expr::Verdict(Verdict::Drop),
            Expr::Bitwise {
                sreg: Reg::R1,
                dreg: Reg::R1,
                len: 4,
                mask: vec![0xff, 0xff, 0xbf, 0xff],
                xor: vec![0, 0, 0x40, 0],
            },
            Expr::Ct {
                key: CtKey::State,
                dreg: Reg::R1,
                direction: None,
            },
            Expr::Ct {
                key: CtKey::ProtoDst,
                dreg: Reg::r32(1),
                direction: Some(0),
            },
            Expr::Nat {
                kind: NatType::Dnat,
                family: Family::Ip,
                addr_min: Some(Reg::R1),
                addr_max: None,
                proto_min: Some(Reg::r32(1)),
                proto_max: None,
                flags: Some(NAT_RANGE_MAP_IPS | NAT_RANGE_PROTO_SPECIFIED),
            },
            Expr::Masq {
                flags: None,
                proto_min: None,
                proto_max: None,
            },
            Expr::Masq {
                flags: Some(NAT_RANGE_PROTO_RANDOM_FULLY),
                proto_min: None,
                proto_max: None,
            },
            Expr::Numgen {
                dreg: Reg::R1,
                modulus: 3,
                kind: NumgenType::Random,
                offset: 0,
            },
            Expr::Counter {
                bytes: 0,
                packets: 0,
            },
            Expr::Counter {
                bytes: 1500,
                packets: 1,
            },
            Expr::Reject {
                kind: RejectType::IcmpUnreach,
                code: 3,
            },
            Expr::Reject {
                kind: RejectType::TcpRst,
                code: 0,
            },
            Expr::Dynset {
                op: DynsetOp::Update,
                set: "affinity-abc".into(),
                set_id: None,
                sreg_key: Reg::R1,
                sreg_data: None,
                timeout_ms: Some(10_800_000),
                exprs: vec![],
            },
            Expr::Dynset {
                op: DynsetOp::Add,
                set: "m".into(),
                set_id: Some(9),
                sreg_key: Reg::R1,
                sreg_data: Some(Reg::R2),
                timeout_ms: None,
                exprs: vec![Expr::Counter {
                    bytes: 0,
                    packets: 0,
                }],
            },
            Expr::Unknown {
                name: "limit".into(),
                data: vec![12, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 10],
            },
        ]
    }

    #[test]
    fn every_expression_round_trips() {
        let all = samples();
        let mut b = Builder::new();
        emit_list(&mut b, &all);
        let bytes = b.into_bytes();
        assert_eq!(parse_list(&bytes).unwrap(), all);
    }

    #[test]
    fn a_dynset_inside_a_dynset_is_refused() {
        let inner = Expr::Dynset {
            op: DynsetOp::Add,
            set: "s".into(),
            set_id: None,
            sreg_key: Reg::R1,
            sreg_data: None,
            timeout_ms: None,
            exprs: vec![],
        };
        let outer = Expr::Dynset {
            op: DynsetOp::Add,
            set: "s".into(),
            set_id: None,
            sreg_key: Reg::R1,
            sreg_data: None,
            timeout_ms: None,
            exprs: vec![inner],
        };
        let mut b = Builder::new();
        emit_list(&mut b, &[outer]);
        let bytes = b.into_bytes();
        assert_eq!(
            parse_list(&bytes),
            Err(WireError::BadAttribute(a::DYNSET_EXPR))
        );
    }

    #[test]
    fn truncated_expressions_fail_without_panic() {
        let mut b = Builder::new();
        emit_list(&mut b, &samples());
        let bytes = b.into_bytes();
        for cut in 0..bytes.len() {
            let _ = parse_list(&bytes[..cut]);
        }
        // An expression missing what it needs is an error naming the attribute.
        let mut b = Builder::new();
        let e = b.begin_nest(attr::LIST_ELEM);
        b.attr_strz(a::EXPR_NAME, "cmp");
        let d = b.begin_nest(a::EXPR_DATA);
        put_be32(&mut b, a::CMP_SREG, 1);
        b.end_nest(d);
        b.end_nest(e);
        let bytes = b.into_bytes();
        assert_eq!(
            parse_list(&bytes),
            Err(WireError::MissingAttribute("NFTA_CMP_OP"))
        );
    }
}
