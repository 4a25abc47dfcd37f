//! nf_tables objects (tables, chains, sets, elements, rules, the generation) as Reprs, and
//! the messages that add, delete, flush or list them.
//!
//! Owns each object's attribute layout and the one-line description errors use ("add chain
//! ip kube-proxy service-XYZ"). Parsing reads a zero-copy [`NftMsg`] view and never panics.

use std::fmt;

use super::super::wire::{
    attrs, Builder, NlAttr, NlMsg, WireError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use super::expr::{self, Expr};
use super::{
    attr, be32, be64, emit_value, msgtype, nft_type, put_be32, put_be64, Data, Family, Verdict,
    NFGENMSG_LEN, NFNETLINK_V0, NFNL_SUBSYS_NFTABLES, NLM_F_APPEND,
};

mod a {
    pub const TABLE_NAME: u16 = 1;
    pub const TABLE_FLAGS: u16 = 2;
    pub const TABLE_HANDLE: u16 = 4;

    pub const HOOK_HOOKNUM: u16 = 1;
    pub const HOOK_PRIORITY: u16 = 2;
    pub const HOOK_DEV: u16 = 3;

    pub const CHAIN_TABLE: u16 = 1;
    pub const CHAIN_HANDLE: u16 = 2;
    pub const CHAIN_NAME: u16 = 3;
    pub const CHAIN_HOOK: u16 = 4;
    pub const CHAIN_POLICY: u16 = 5;
    pub const CHAIN_TYPE: u16 = 7;

    pub const RULE_TABLE: u16 = 1;
    pub const RULE_CHAIN: u16 = 2;
    pub const RULE_HANDLE: u16 = 3;
    pub const RULE_EXPRESSIONS: u16 = 4;
    pub const RULE_POSITION: u16 = 6;
    pub const RULE_USERDATA: u16 = 7;
    pub const RULE_ID: u16 = 9;

    pub const SET_TABLE: u16 = 1;
    pub const SET_NAME: u16 = 2;
    pub const SET_FLAGS: u16 = 3;
    pub const SET_KEY_TYPE: u16 = 4;
    pub const SET_KEY_LEN: u16 = 5;
    pub const SET_DATA_TYPE: u16 = 6;
    pub const SET_DATA_LEN: u16 = 7;
    pub const SET_POLICY: u16 = 8;
    pub const SET_DESC: u16 = 9;
    pub const SET_ID: u16 = 10;
    pub const SET_TIMEOUT: u16 = 11;
    pub const SET_GC_INTERVAL: u16 = 12;
    pub const SET_USERDATA: u16 = 13;
    pub const SET_HANDLE: u16 = 16;

    pub const SET_DESC_SIZE: u16 = 1;
    pub const SET_DESC_CONCAT: u16 = 2;
    pub const SET_FIELD_LEN: u16 = 1;

    pub const ELEM_LIST_TABLE: u16 = 1;
    pub const ELEM_LIST_SET: u16 = 2;
    pub const ELEM_LIST_ELEMENTS: u16 = 3;
    pub const ELEM_LIST_SET_ID: u16 = 4;

    pub const ELEM_KEY: u16 = 1;
    pub const ELEM_DATA: u16 = 2;
    pub const ELEM_FLAGS: u16 = 3;
    pub const ELEM_TIMEOUT: u16 = 4;
    pub const ELEM_EXPIRATION: u16 = 5;
    pub const ELEM_USERDATA: u16 = 6;
    pub const ELEM_KEY_END: u16 = 10;

    pub const GEN_ID: u16 = 1;
    pub const GEN_PROC_PID: u16 = 2;
    pub const GEN_PROC_NAME: u16 = 3;
}

/// Set flags (`enum nft_set_flags`).
pub mod set_flags {
    /// Anonymous (bound to one rule, named by the kernel).
    pub const ANONYMOUS: u32 = 0x1;
    /// Contents may not change while bound.
    pub const CONSTANT: u32 = 0x2;
    /// Elements are intervals.
    pub const INTERVAL: u32 = 0x4;
    /// A map (elements carry data).
    pub const MAP: u32 = 0x8;
    /// Elements time out.
    pub const TIMEOUT: u32 = 0x10;
    /// Updated from the packet path (`dynamic`).
    pub const EVAL: u32 = 0x20;
    /// Elements refer to stateful objects.
    pub const OBJECT: u32 = 0x40;
    /// The key is a concatenation.
    pub const CONCAT: u32 = 0x80;
}

/// NFT_DATA_VERDICT: the data type of a verdict map.
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// Element flag: this element closes an interval.
pub const SET_ELEM_INTERVAL_END: u32 = 0x1;

/// `nft`'s data type ids (userspace numbers the kernel stores as the set's key/data type, so
/// that `nft list` can print the elements).
pub mod datatype {
    /// Bits per concatenated type in a key type id.
    pub const TYPE_BITS: u32 = 6;
    /// verdict.
    pub const VERDICT: u32 = 1;
    /// integer.
    pub const INTEGER: u32 = 4;
    /// ipv4_addr.
    pub const IPV4_ADDR: u32 = 7;
    /// ipv6_addr.
    pub const IPV6_ADDR: u32 = 8;
    /// inet_proto.
    pub const INET_PROTO: u32 = 12;
    /// inet_service.
    pub const INET_SERVICE: u32 = 13;
    /// mark.
    pub const MARK: u32 = 19;
    /// ifname.
    pub const IFNAME: u32 = 41;

    /// Byte length of a value of type `t` (0 for unknown ones).
    pub fn len(t: u32) -> u32 {
        match t {
            IPV4_ADDR | MARK | INTEGER => 4,
            IPV6_ADDR | IFNAME => 16,
            INET_PROTO => 1,
            INET_SERVICE => 2,
            _ => 0,
        }
    }
}

/// A view over one nf_tables message: netlink header, nfgenmsg, attributes. Zero-copy.
#[derive(Debug, Clone, Copy)]
pub struct NftMsg<'a> {
    msg: NlMsg<&'a [u8]>,
}

impl<'a> NftMsg<'a> {
    /// Wrap a message whose type belongs to nf_tables; None for anything else.
    pub fn new(msg: NlMsg<&'a [u8]>) -> Option<Self> {
        (msg.msg_type() >> 8 == NFNL_SUBSYS_NFTABLES as u16).then_some(NftMsg { msg })
    }

    /// The nf_tables message type (NFT_MSG_*).
    pub fn kind(&self) -> u8 {
        (self.msg.msg_type() & 0xff) as u8
    }

    /// nfgen_family.
    pub fn family(&self) -> Family {
        Family::from_number(self.msg.payload().first().copied().unwrap_or(0))
    }

    /// res_id (the generation id's low 16 bits in kernel replies).
    pub fn res_id(&self) -> u16 {
        let p = self.msg.payload();
        match (p.get(2), p.get(3)) {
            (Some(&h), Some(&l)) => u16::from_be_bytes([h, l]),
            _ => 0,
        }
    }

    /// The netlink header flags.
    pub fn flags(&self) -> u16 {
        self.msg.flags()
    }

    /// The attribute bytes after nfgenmsg.
    pub fn attr_bytes(&self) -> Result<&'a [u8], WireError> {
        let p: &'a [u8] = {
            let b: &'a [u8] = self.msg.into_inner();
            b.get(super::super::wire::HDR_LEN..self.msg.length())
                .unwrap_or(&[])
        };
        p.get(NFGENMSG_LEN..).ok_or(WireError::Truncated)
    }
}

/// A table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Address family.
    pub family: Family,
    /// Name.
    pub name: String,
    /// NFT_TABLE_F_* flags (dormant, owner, persist).
    pub flags: u32,
    /// Kernel handle (replies only).
    pub handle: Option<u64>,
}

impl Table {
    /// A table with no flags.
    pub fn new(family: Family, name: &str) -> Self {
        Table {
            family,
            name: name.to_string(),
            flags: 0,
            handle: None,
        }
    }

    fn emit(&self, b: &mut Builder, full: bool) {
        b.attr_strz(a::TABLE_NAME, &self.name);
        if full {
            put_be32(b, a::TABLE_FLAGS, self.flags);
        }
        if let Some(h) = self.handle {
            put_be64(b, a::TABLE_HANDLE, h);
        }
    }

    fn parse(family: Family, body: &[u8]) -> Result<Self, WireError> {
        let mut t = Table::new(family, "");
        let mut name = None;
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::TABLE_NAME => name = Some(x.string()),
                a::TABLE_FLAGS => t.flags = be32(&x)?,
                a::TABLE_HANDLE => t.handle = Some(be64(&x)?),
                _ => {}
            }
        }
        t.name = name.ok_or(WireError::MissingAttribute("NFTA_TABLE_NAME"))?;
        Ok(t)
    }
}

/// A netfilter hook a base chain attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// NF_INET_PRE_ROUTING.
    Prerouting,
    /// NF_INET_LOCAL_IN.
    Input,
    /// NF_INET_FORWARD.
    Forward,
    /// NF_INET_LOCAL_OUT.
    Output,
    /// NF_INET_POST_ROUTING.
    Postrouting,
    /// Another hook number.
    Unknown(u32),
}

impl Hook {
    /// Hook number.
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
            Hook::Unknown(n) => n,
        }
    }

    /// From a hook number.
    pub fn from_number(n: u32) -> Self {
        match n {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            n => Hook::Unknown(n),
        }
    }
}

/// A base chain's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// "filter".
    Filter,
    /// "nat".
    Nat,
    /// "route".
    Route,
    /// Any other name.
    Unknown(String),
}

impl ChainType {
    /// The kernel's name.
    pub fn as_str(&self) -> &str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
            ChainType::Unknown(s) => s,
        }
    }

    fn from_name(s: String) -> Self {
        match s.as_str() {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => ChainType::Unknown(s),
        }
    }
}

/// What makes a chain a base chain: where it hooks in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// Chain type.
    pub kind: ChainType,
    /// Hook.
    pub hook: Hook,
    /// Priority (lower runs first; dstnat is -100, srcnat 100).
    pub priority: i32,
    /// Policy: accept or drop (accept when the message has none, as the kernel does).
    pub policy: Verdict,
}

/// A chain: regular when `base` is None.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Address family of its table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Kernel handle (replies only).
    pub handle: Option<u64>,
    /// Hook, type, priority and policy of a base chain.
    pub base: Option<BaseChain>,
}

impl Chain {
    /// A regular chain (reached only by jump/goto).
    pub fn regular(family: Family, table: &str, name: &str) -> Self {
        Chain {
            family,
            table: table.to_string(),
            name: name.to_string(),
            handle: None,
            base: None,
        }
    }

    /// A base chain with policy accept.
    pub fn base(
        family: Family,
        table: &str,
        name: &str,
        kind: ChainType,
        hook: Hook,
        priority: i32,
    ) -> Self {
        Chain {
            base: Some(BaseChain {
                kind,
                hook,
                priority,
                policy: Verdict::Accept,
            }),
            ..Chain::regular(family, table, name)
        }
    }

    fn emit(&self, b: &mut Builder, full: bool) {
        b.attr_strz(a::CHAIN_TABLE, &self.table);
        b.attr_strz(a::CHAIN_NAME, &self.name);
        if let Some(h) = self.handle {
            put_be64(b, a::CHAIN_HANDLE, h);
        }
        if let (true, Some(base)) = (full, &self.base) {
            // nft's order: type, policy, hook.
            b.attr_strz(a::CHAIN_TYPE, base.kind.as_str());
            put_be32(b, a::CHAIN_POLICY, base.policy.code() as u32);
            let n = b.begin_nest(a::CHAIN_HOOK);
            put_be32(b, a::HOOK_HOOKNUM, base.hook.number());
            put_be32(b, a::HOOK_PRIORITY, base.priority as u32);
            b.end_nest(n);
        }
    }

    fn parse(family: Family, body: &[u8]) -> Result<Self, WireError> {
        let mut c = Chain::regular(family, "", "");
        let (mut table, mut name) = (None, None);
        let (mut hook, mut prio, mut policy, mut kind) = (None, 0i32, None, None);
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::CHAIN_TABLE => table = Some(x.string()),
                a::CHAIN_NAME => name = Some(x.string()),
                a::CHAIN_HANDLE => c.handle = Some(be64(&x)?),
                a::CHAIN_HOOK => {
                    for h in x.nested() {
                        let h = h?;
                        match h.kind {
                            a::HOOK_HOOKNUM => hook = Some(Hook::from_number(be32(&h)?)),
                            a::HOOK_PRIORITY => prio = be32(&h)? as i32,
                            a::HOOK_DEV => {}
                            _ => {}
                        }
                    }
                }
                a::CHAIN_POLICY => policy = Some(be32(&x)? as i32),
                a::CHAIN_TYPE => kind = Some(ChainType::from_name(x.string())),
                _ => {}
            }
        }
        c.table = table.ok_or(WireError::MissingAttribute("NFTA_CHAIN_TABLE"))?;
        c.name = name.ok_or(WireError::MissingAttribute("NFTA_CHAIN_NAME"))?;
        if let Some(hook) = hook {
            c.base = Some(BaseChain {
                kind: kind.unwrap_or(ChainType::Filter),
                hook,
                priority: prio,
                policy: match policy {
                    None | Some(super::verdict_code::ACCEPT) => Verdict::Accept,
                    Some(super::verdict_code::DROP) => Verdict::Drop,
                    Some(code) => Verdict::Unknown(code),
                },
            });
        }
        Ok(c)
    }
}

/// The data a map's elements carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapData {
    /// Verdicts (a verdict map).
    Verdict,
    /// Values of an nft data type id and byte length.
    Value {
        /// Data type id (see [`datatype`]).
        type_id: u32,
        /// Byte length.
        len: u32,
    },
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Address family of its table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Set name.
    pub name: String,
    /// Kernel handle (replies only).
    pub handle: Option<u64>,
    /// NFT_SET_* flags; MAP is kept in step with `data`.
    pub flags: u32,
    /// Key type id (a concatenation packs one id per 6 bits).
    pub key_type: u32,
    /// Key length in bytes (concatenated fields each padded to 4).
    pub key_len: u32,
    /// Byte length of each concatenated field; empty for a plain key.
    pub fields: Vec<u32>,
    /// What a map's elements map to; None for a plain set.
    pub data: Option<MapData>,
    /// Default element timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Garbage collection interval in milliseconds.
    pub gc_interval_ms: Option<u32>,
    /// Selection policy (0 performance, 1 memory).
    pub policy: Option<u32>,
    /// Expected number of elements.
    pub size: Option<u32>,
    /// Transaction id, for rules referring to the set in the same batch (None: the message's
    /// sequence number is sent, as the kernel requires one).
    pub id: Option<u32>,
    /// nft's user data (key byte order and the like); opaque here.
    pub userdata: Option<Vec<u8>>,
}

impl Set {
    /// A set whose key is one data type, or a concatenation of several (sent as `nft`
    /// does: type and length only; see [`Set::with_concat_fields`] for interval sets).
    pub fn new(family: Family, table: &str, name: &str, key: &[u32]) -> Self {
        let (key_type, key_len) = key_spec(key);
        Set {
            family,
            table: table.to_string(),
            name: name.to_string(),
            handle: None,
            flags: 0,
            key_type,
            key_len,
            fields: Vec::new(),
            data: None,
            timeout_ms: None,
            gc_interval_ms: None,
            policy: None,
            size: None,
            id: None,
            userdata: None,
        }
    }

    /// Make it a verdict map.
    pub fn verdict_map(mut self) -> Self {
        self.flags |= set_flags::MAP;
        self.data = Some(MapData::Verdict);
        self
    }

    /// Make it a map to values of data type `t`.
    pub fn map_to(mut self, t: u32) -> Self {
        self.flags |= set_flags::MAP;
        self.data = Some(MapData::Value {
            type_id: t,
            len: datatype::len(t),
        });
        self
    }

    /// Elements time out after `ms` unless refreshed.
    pub fn with_timeout(mut self, ms: u64) -> Self {
        self.flags |= set_flags::TIMEOUT;
        self.timeout_ms = Some(ms);
        self
    }

    /// Describe each concatenated field and set NFT_SET_CONCAT, as the kernel requires for a
    /// concatenated key in an interval set.
    pub fn with_concat_fields(mut self, key: &[u32]) -> Self {
        self.flags |= set_flags::CONCAT;
        self.fields = key.iter().map(|&t| datatype::len(t)).collect();
        self
    }

    /// Add flags (set_flags::EVAL for `dynamic`, CONSTANT, INTERVAL, TIMEOUT).
    pub fn with_flags(mut self, f: u32) -> Self {
        self.flags |= f;
        self
    }

    fn emit(&self, b: &mut Builder, full: bool, seq: u32) {
        b.attr_strz(a::SET_TABLE, &self.table);
        b.attr_strz(a::SET_NAME, &self.name);
        if let Some(h) = self.handle {
            put_be64(b, a::SET_HANDLE, h);
        }
        if !full {
            return;
        }
        put_be32(b, a::SET_FLAGS, self.flags);
        put_be32(b, a::SET_KEY_TYPE, self.key_type);
        put_be32(b, a::SET_KEY_LEN, self.key_len);
        match self.data {
            Some(MapData::Verdict) => {
                put_be32(b, a::SET_DATA_TYPE, NFT_DATA_VERDICT);
                put_be32(b, a::SET_DATA_LEN, 0);
            }
            Some(MapData::Value { type_id, len }) => {
                put_be32(b, a::SET_DATA_TYPE, type_id);
                put_be32(b, a::SET_DATA_LEN, len);
            }
            None => {}
        }
        if let Some(p) = self.policy {
            put_be32(b, a::SET_POLICY, p);
        }
        if self.size.is_some() || !self.fields.is_empty() {
            let d = b.begin_nest(a::SET_DESC);
            if let Some(s) = self.size {
                put_be32(b, a::SET_DESC_SIZE, s);
            }
            if !self.fields.is_empty() {
                let c = b.begin_nest(a::SET_DESC_CONCAT);
                for f in &self.fields {
                    let e = b.begin_nest(attr::LIST_ELEM);
                    put_be32(b, a::SET_FIELD_LEN, *f);
                    b.end_nest(e);
                }
                b.end_nest(c);
            }
            b.end_nest(d);
        }
        // The kernel requires a transaction id on every new set; without one of ours, the
        // message's sequence number is unique in its batch.
        put_be32(b, a::SET_ID, self.id.unwrap_or(seq));
        if let Some(t) = self.timeout_ms {
            put_be64(b, a::SET_TIMEOUT, t);
        }
        if let Some(g) = self.gc_interval_ms {
            put_be32(b, a::SET_GC_INTERVAL, g);
        }
        if let Some(u) = &self.userdata {
            b.attr(a::SET_USERDATA, u);
        }
    }

    fn parse(family: Family, body: &[u8]) -> Result<Self, WireError> {
        let mut s = Set::new(family, "", "", &[]);
        let (mut table, mut name) = (None, None);
        let (mut data_type, mut data_len) = (None, 0);
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::SET_TABLE => table = Some(x.string()),
                a::SET_NAME => name = Some(x.string()),
                a::SET_HANDLE => s.handle = Some(be64(&x)?),
                a::SET_FLAGS => s.flags = be32(&x)?,
                a::SET_KEY_TYPE => s.key_type = be32(&x)?,
                a::SET_KEY_LEN => s.key_len = be32(&x)?,
                a::SET_DATA_TYPE => data_type = Some(be32(&x)?),
                a::SET_DATA_LEN => data_len = be32(&x)?,
                a::SET_POLICY => s.policy = Some(be32(&x)?),
                a::SET_DESC => {
                    for d in x.nested() {
                        let d = d?;
                        match d.kind {
                            a::SET_DESC_SIZE => s.size = Some(be32(&d)?),
                            a::SET_DESC_CONCAT => {
                                for e in d.nested() {
                                    // Each field's nest: NFTA_LIST_ELEM (any type read).
                                    for f in e?.nested() {
                                        let f = f?;
                                        if f.kind == a::SET_FIELD_LEN {
                                            s.fields.push(be32(&f)?);
                                        }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                a::SET_ID => s.id = Some(be32(&x)?),
                a::SET_TIMEOUT => s.timeout_ms = Some(be64(&x)?),
                a::SET_GC_INTERVAL => s.gc_interval_ms = Some(be32(&x)?),
                a::SET_USERDATA => s.userdata = Some(x.value.to_vec()),
                _ => {}
            }
        }
        s.table = table.ok_or(WireError::MissingAttribute("NFTA_SET_TABLE"))?;
        s.name = name.ok_or(WireError::MissingAttribute("NFTA_SET_NAME"))?;
        s.data = match data_type {
            None => None,
            Some(NFT_DATA_VERDICT) => Some(MapData::Verdict),
            Some(type_id) => Some(MapData::Value {
                type_id,
                len: data_len,
            }),
        };
        Ok(s)
    }
}

/// Key type id and length of a (possibly concatenated) key of nft data types.
pub fn key_spec(types: &[u32]) -> (u32, u32) {
    let mut id = 0u32;
    let mut len = 0u32;
    for &t in types {
        id = (id << datatype::TYPE_BITS) | t;
        len += if types.len() > 1 {
            datatype::len(t).div_ceil(4) * 4
        } else {
            datatype::len(t)
        };
    }
    (id, len)
}

/// One element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetElem {
    /// Key bytes (concatenated fields each padded to 4 bytes).
    pub key: Vec<u8>,
    /// End of an interval (interval sets with concatenations).
    pub key_end: Option<Vec<u8>>,
    /// What the key maps to (maps only).
    pub data: Option<Data>,
    /// NFT_SET_ELEM_* flags.
    pub flags: u32,
    /// Timeout in milliseconds (None: the set's default).
    pub timeout_ms: Option<u64>,
    /// Time left in milliseconds (replies only).
    pub expiration_ms: Option<u64>,
    /// nft's user data; opaque here.
    pub userdata: Option<Vec<u8>>,
}

impl SetElem {
    /// A plain element.
    pub fn key(key: Vec<u8>) -> Self {
        SetElem {
            key,
            key_end: None,
            data: None,
            flags: 0,
            timeout_ms: None,
            expiration_ms: None,
            userdata: None,
        }
    }

    /// A map element.
    pub fn map(key: Vec<u8>, data: Data) -> Self {
        SetElem {
            data: Some(data),
            ..SetElem::key(key)
        }
    }

    /// Emit the element as list nest `index` (nft numbers them 1, 2, 3...).
    fn emit(&self, b: &mut Builder, index: u16) {
        // nft's order: flags and timeouts first, then key and data.
        let n = b.begin_nest(index);
        if self.flags != 0 {
            put_be32(b, a::ELEM_FLAGS, self.flags);
        }
        if let Some(t) = self.timeout_ms {
            put_be64(b, a::ELEM_TIMEOUT, t);
        }
        if let Some(t) = self.expiration_ms {
            put_be64(b, a::ELEM_EXPIRATION, t);
        }
        emit_value(b, a::ELEM_KEY, &self.key);
        if let Some(k) = &self.key_end {
            emit_value(b, a::ELEM_KEY_END, k);
        }
        if let Some(d) = &self.data {
            d.emit(b, a::ELEM_DATA);
        }
        if let Some(u) = &self.userdata {
            b.attr(a::ELEM_USERDATA, u);
        }
        b.end_nest(n);
    }

    fn parse(nest: &[u8]) -> Result<Self, WireError> {
        let mut e = SetElem::key(Vec::new());
        let mut key = None;
        for x in attrs(nest) {
            let x = x?;
            match x.kind {
                a::ELEM_KEY => key = Some(Data::parse_value(&x)?),
                a::ELEM_KEY_END => e.key_end = Some(Data::parse_value(&x)?),
                a::ELEM_DATA => e.data = Some(Data::parse_nest(x.value)?),
                a::ELEM_FLAGS => e.flags = be32(&x)?,
                a::ELEM_TIMEOUT => e.timeout_ms = Some(be64(&x)?),
                a::ELEM_EXPIRATION => e.expiration_ms = Some(be64(&x)?),
                a::ELEM_USERDATA => e.userdata = Some(x.value.to_vec()),
                _ => {}
            }
        }
        // A catch-all element has no key; an empty key stands for it.
        e.key = key.unwrap_or_default();
        Ok(e)
    }
}

/// Elements of one set, as added, deleted or listed together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetElems {
    /// Address family of the table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Set name.
    pub set: String,
    /// Set transaction id (a set created in the same batch).
    pub set_id: Option<u32>,
    /// The elements (none in a flush).
    pub elems: Vec<SetElem>,
}

impl SetElems {
    /// Elements for set `set`.
    pub fn new(family: Family, table: &str, set: &str, elems: Vec<SetElem>) -> Self {
        SetElems {
            family,
            table: table.to_string(),
            set: set.to_string(),
            set_id: None,
            elems,
        }
    }

    fn emit(&self, b: &mut Builder) {
        // A flush names the set before the table, as nft sends it.
        if self.elems.is_empty() {
            b.attr_strz(a::ELEM_LIST_SET, &self.set);
            b.attr_strz(a::ELEM_LIST_TABLE, &self.table);
        } else {
            b.attr_strz(a::ELEM_LIST_TABLE, &self.table);
            b.attr_strz(a::ELEM_LIST_SET, &self.set);
        }
        if let Some(id) = self.set_id {
            put_be32(b, a::ELEM_LIST_SET_ID, id);
        }
        if !self.elems.is_empty() {
            let n = b.begin_nest(a::ELEM_LIST_ELEMENTS);
            for (i, e) in self.elems.iter().enumerate() {
                // Past 0x3fff the type would collide with the nest flags; the kernel ignores it.
                e.emit(b, (i % 0x3fff) as u16 + 1);
            }
            b.end_nest(n);
        }
    }

    fn parse(family: Family, body: &[u8]) -> Result<Self, WireError> {
        let mut s = SetElems::new(family, "", "", Vec::new());
        let (mut table, mut set) = (None, None);
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::ELEM_LIST_TABLE => table = Some(x.string()),
                a::ELEM_LIST_SET => set = Some(x.string()),
                a::ELEM_LIST_SET_ID => s.set_id = Some(be32(&x)?),
                a::ELEM_LIST_ELEMENTS => {
                    // nft numbers the list's nests 1, 2, 3...; the kernel reads any type.
                    for e in x.nested() {
                        s.elems.push(SetElem::parse(e?.value)?);
                    }
                }
                _ => {}
            }
        }
        s.table = table.ok_or(WireError::MissingAttribute("NFTA_SET_ELEM_LIST_TABLE"))?;
        s.set = set.ok_or(WireError::MissingAttribute("NFTA_SET_ELEM_LIST_SET"))?;
        Ok(s)
    }
}

/// A rule: a list of expressions in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Address family of the table.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Chain name (empty in a table-wide flush).
    pub chain: String,
    /// Kernel handle (replies; deletes and replaces name a rule by it).
    pub handle: Option<u64>,
    /// Handle of the rule to add this one after.
    pub position: Option<u64>,
    /// Transaction id.
    pub id: Option<u32>,
    /// The expressions, in order.
    pub exprs: Vec<Expr>,
    /// nft's user data (comments); opaque here.
    pub userdata: Option<Vec<u8>>,
}

impl Rule {
    /// A rule appended to `chain`.
    pub fn new(family: Family, table: &str, chain: &str, exprs: Vec<Expr>) -> Self {
        Rule {
            family,
            table: table.to_string(),
            chain: chain.to_string(),
            handle: None,
            position: None,
            id: None,
            exprs,
            userdata: None,
        }
    }

    /// The comment in nft's user data (TLV type 0), if any.
    pub fn comment(&self) -> Option<String> {
        let mut u = self.userdata.as_deref()?;
        while let [t, l, rest @ ..] = u {
            let v = rest.get(..*l as usize)?;
            if *t == 0 {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                return Some(String::from_utf8_lossy(v.get(..end)?).into_owned());
            }
            u = rest.get(*l as usize..)?;
        }
        None
    }

    /// Set the comment as nft stores it in user data.
    pub fn with_comment(mut self, c: &str) -> Self {
        let bytes = c.as_bytes();
        let n = bytes.len().min(254);
        let mut u = vec![0u8, (n + 1) as u8];
        u.extend_from_slice(bytes.get(..n).unwrap_or(&[]));
        u.push(0);
        self.userdata = Some(u);
        self
    }

    fn emit(&self, b: &mut Builder) {
        b.attr_strz(a::RULE_TABLE, &self.table);
        if !self.chain.is_empty() {
            b.attr_strz(a::RULE_CHAIN, &self.chain);
        }
        if let Some(h) = self.handle {
            put_be64(b, a::RULE_HANDLE, h);
        }
        if !self.exprs.is_empty() {
            let n = b.begin_nest(a::RULE_EXPRESSIONS);
            expr::emit_list(b, &self.exprs);
            b.end_nest(n);
        }
        if let Some(p) = self.position {
            put_be64(b, a::RULE_POSITION, p);
        }
        if let Some(u) = &self.userdata {
            b.attr(a::RULE_USERDATA, u);
        }
        if let Some(id) = self.id {
            put_be32(b, a::RULE_ID, id);
        }
    }

    fn parse(family: Family, body: &[u8]) -> Result<Self, WireError> {
        let mut r = Rule::new(family, "", "", Vec::new());
        let mut table = None;
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::RULE_TABLE => table = Some(x.string()),
                a::RULE_CHAIN => r.chain = x.string(),
                a::RULE_HANDLE => r.handle = Some(be64(&x)?),
                a::RULE_EXPRESSIONS => r.exprs = expr::parse_list(x.value)?,
                a::RULE_POSITION => r.position = Some(be64(&x)?),
                a::RULE_USERDATA => r.userdata = Some(x.value.to_vec()),
                a::RULE_ID => r.id = Some(be32(&x)?),
                _ => {}
            }
        }
        r.table = table.ok_or(WireError::MissingAttribute("NFTA_RULE_TABLE"))?;
        Ok(r)
    }
}

/// The ruleset generation: bumped by every committed batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gen {
    /// Generation id.
    pub id: u32,
    /// Process that committed it (events only).
    pub proc_pid: Option<u32>,
    /// Its name.
    pub proc_name: Option<String>,
}

impl Gen {
    fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut g = Gen {
            id: 0,
            proc_pid: None,
            proc_name: None,
        };
        let mut id = None;
        for x in attrs(body) {
            let x = x?;
            match x.kind {
                a::GEN_ID => id = Some(be32(&x)?),
                a::GEN_PROC_PID => g.proc_pid = Some(be32(&x)?),
                a::GEN_PROC_NAME => g.proc_name = Some(x.string()),
                _ => {}
            }
        }
        g.id = id.ok_or(WireError::MissingAttribute("NFTA_GEN_ID"))?;
        Ok(g)
    }
}

/// What a list (GET) request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// Tables.
    Tables,
    /// Chains.
    Chains,
    /// Sets.
    Sets,
    /// Rules.
    Rules,
    /// Elements of one set.
    Elems,
    /// The generation id.
    Gen,
}

/// One nf_tables message, in either direction.
///
/// Deletes carry the same Repr as adds; only the identity (names, handle) is sent. A
/// `DelRule` without a handle flushes its chain (or the whole table when the chain is empty);
/// `DelElems` without elements flushes the set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Msg {
    /// NFT_MSG_NEWTABLE.
    NewTable(Table),
    /// NFT_MSG_DELTABLE.
    DelTable(Table),
    /// NFT_MSG_NEWCHAIN.
    NewChain(Chain),
    /// NFT_MSG_DELCHAIN.
    DelChain(Chain),
    /// NFT_MSG_NEWSET.
    NewSet(Set),
    /// NFT_MSG_DELSET.
    DelSet(Set),
    /// NFT_MSG_NEWSETELEM.
    NewElems(SetElems),
    /// NFT_MSG_DELSETELEM.
    DelElems(SetElems),
    /// NFT_MSG_NEWRULE (appended after `position`, or at the end).
    NewRule(Rule),
    /// NFT_MSG_DELRULE.
    DelRule(Rule),
    /// NFT_MSG_NEWGEN (the reply to GETGEN, and commit events).
    NewGen(Gen),
    /// A GET request (a dump unless it asks for the generation).
    List {
        /// What.
        kind: ListKind,
        /// Family filter (Unknown(0) for all).
        family: Family,
        /// Table filter.
        table: Option<String>,
        /// Set name (elements).
        set: Option<String>,
    },
}

impl Msg {
    /// Delete a table and everything in it.
    pub fn delete_table(family: Family, name: &str) -> Msg {
        Msg::DelTable(Table::new(family, name))
    }

    /// Delete all rules of every chain in a table (`flush table`).
    pub fn flush_table(family: Family, name: &str) -> Msg {
        Msg::DelRule(Rule::new(family, name, "", Vec::new()))
    }

    /// Delete a chain (it must be empty and unreferenced).
    pub fn delete_chain(family: Family, table: &str, name: &str) -> Msg {
        Msg::DelChain(Chain::regular(family, table, name))
    }

    /// Delete all rules of a chain.
    pub fn flush_chain(family: Family, table: &str, name: &str) -> Msg {
        Msg::DelRule(Rule::new(family, table, name, Vec::new()))
    }

    /// Delete one rule by handle.
    pub fn delete_rule(family: Family, table: &str, chain: &str, handle: u64) -> Msg {
        let mut r = Rule::new(family, table, chain, Vec::new());
        r.handle = Some(handle);
        Msg::DelRule(r)
    }

    /// Delete a set.
    pub fn delete_set(family: Family, table: &str, name: &str) -> Msg {
        Msg::DelSet(Set::new(family, table, name, &[]))
    }

    /// Delete all elements of a set.
    pub fn flush_set(family: Family, table: &str, name: &str) -> Msg {
        Msg::DelElems(SetElems::new(family, table, name, Vec::new()))
    }

    /// The netlink type, header flags and family this message is sent with.
    fn header(&self) -> (u8, u16, Family) {
        use msgtype::*;
        const NEW: u16 = NLM_F_CREATE;
        match self {
            // nft sends a new table without NLM_F_CREATE (the kernel creates it anyway).
            Msg::NewTable(t) => (NEWTABLE, 0, t.family),
            Msg::DelTable(t) => (DELTABLE, 0, t.family),
            Msg::NewChain(c) => (NEWCHAIN, NEW, c.family),
            Msg::DelChain(c) => (DELCHAIN, 0, c.family),
            Msg::NewSet(s) => (NEWSET, NEW, s.family),
            Msg::DelSet(s) => (DELSET, 0, s.family),
            Msg::NewElems(e) => (NEWSETELEM, NEW, e.family),
            Msg::DelElems(e) => (DELSETELEM, 0, e.family),
            Msg::NewRule(r) => (NEWRULE, NEW | NLM_F_APPEND, r.family),
            Msg::DelRule(r) => (DELRULE, 0, r.family),
            Msg::NewGen(_) => (NEWGEN, 0, Family::Unknown(0)),
            Msg::List { kind, family, .. } => match kind {
                ListKind::Tables => (GETTABLE, NLM_F_DUMP, *family),
                ListKind::Chains => (GETCHAIN, NLM_F_DUMP, *family),
                ListKind::Sets => (GETSET, NLM_F_DUMP, *family),
                ListKind::Rules => (GETRULE, NLM_F_DUMP, *family),
                ListKind::Elems => (GETSETELEM, NLM_F_DUMP, *family),
                ListKind::Gen => (GETGEN, 0, *family),
            },
        }
    }

    /// Is this a dump request (answered by a multipart reply)?
    pub fn is_dump(&self) -> bool {
        self.header().1 & NLM_F_DUMP == NLM_F_DUMP
    }

    /// Append this message (NLM_F_REQUEST | NLM_F_ACK and the flags `nft` uses for it).
    pub fn emit(&self, b: &mut Builder, seq: u32) {
        let (t, flags, family) = self.header();
        let m = b.begin_msg(nft_type(t), NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        b.put_bytes(&[family.number(), NFNETLINK_V0, 0, 0]);
        match self {
            Msg::NewTable(t) => t.emit(b, true),
            Msg::DelTable(t) => t.emit(b, false),
            Msg::NewChain(c) => c.emit(b, true),
            Msg::DelChain(c) => c.emit(b, false),
            Msg::NewSet(s) => s.emit(b, true, seq),
            Msg::DelSet(s) => s.emit(b, false, seq),
            Msg::NewElems(e) | Msg::DelElems(e) => e.emit(b),
            Msg::NewRule(r) | Msg::DelRule(r) => r.emit(b),
            Msg::NewGen(g) => put_be32(b, a::GEN_ID, g.id),
            Msg::List {
                kind, table, set, ..
            } => {
                // Every object's table attribute is number 1; a set's name is number 2 in both
                // the set and the element-list layouts.
                if let Some(t) = table {
                    b.attr_strz(1, t);
                }
                if let (ListKind::Elems, Some(s)) = (kind, set) {
                    b.attr_strz(a::ELEM_LIST_SET, s);
                }
            }
        }
        b.end_msg(m);
    }

    /// Decode one netlink message; Ok(None) when it is not an nf_tables message this model
    /// reads (batch markers, acks, object types it does not cover).
    pub fn parse(m: &NlMsg<&[u8]>) -> Result<Option<Msg>, WireError> {
        let Some(v) = NftMsg::new(*m) else {
            return Ok(None);
        };
        let body = v.attr_bytes()?;
        let family = v.family();
        use msgtype::*;
        let list = |kind| -> Result<Option<Msg>, WireError> {
            let mut table = None;
            let mut set = None;
            for x in attrs(body) {
                let x: NlAttr<'_> = x?;
                match x.kind {
                    1 => table = Some(x.string()),
                    2 if kind == ListKind::Elems => set = Some(x.string()),
                    _ => {}
                }
            }
            Ok(Some(Msg::List {
                kind,
                family,
                table,
                set,
            }))
        };
        Ok(Some(match v.kind() {
            NEWTABLE => Msg::NewTable(Table::parse(family, body)?),
            DELTABLE => Msg::DelTable(Table::parse(family, body)?),
            NEWCHAIN => Msg::NewChain(Chain::parse(family, body)?),
            DELCHAIN => Msg::DelChain(Chain::parse(family, body)?),
            NEWSET => Msg::NewSet(Set::parse(family, body)?),
            DELSET => Msg::DelSet(Set::parse(family, body)?),
            NEWSETELEM => Msg::NewElems(SetElems::parse(family, body)?),
            DELSETELEM => Msg::DelElems(SetElems::parse(family, body)?),
            NEWRULE => Msg::NewRule(Rule::parse(family, body)?),
            DELRULE => Msg::DelRule(Rule::parse(family, body)?),
            NEWGEN => Msg::NewGen(Gen::parse(body)?),
            GETTABLE => return list(ListKind::Tables),
            GETCHAIN => return list(ListKind::Chains),
            GETSET => return list(ListKind::Sets),
            GETRULE => return list(ListKind::Rules),
            GETSETELEM => return list(ListKind::Elems),
            GETGEN => return list(ListKind::Gen),
            _ => return Ok(None),
        }))
    }

    /// How errors name this message: "add chain ip kube-proxy service-XYZ".
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::NewTable(t) => write!(f, "add table {} {}", t.family, t.name),
            Msg::DelTable(t) => write!(f, "delete table {} {}", t.family, t.name),
            Msg::NewChain(c) => write!(f, "add chain {} {} {}", c.family, c.table, c.name),
            Msg::DelChain(c) => write!(f, "delete chain {} {} {}", c.family, c.table, c.name),
            Msg::NewSet(s) => {
                let what = if s.data.is_some() { "map" } else { "set" };
                write!(f, "add {what} {} {} {}", s.family, s.table, s.name)
            }
            Msg::DelSet(s) => write!(f, "delete set {} {} {}", s.family, s.table, s.name),
            Msg::NewElems(e) => write!(
                f,
                "add {} element(s) to set {} {} {}",
                e.elems.len(),
                e.family,
                e.table,
                e.set
            ),
            Msg::DelElems(e) if e.elems.is_empty() => {
                write!(f, "flush set {} {} {}", e.family, e.table, e.set)
            }
            Msg::DelElems(e) => write!(
                f,
                "delete {} element(s) from set {} {} {}",
                e.elems.len(),
                e.family,
                e.table,
                e.set
            ),
            Msg::NewRule(r) => write!(f, "add rule {} {} {}", r.family, r.table, r.chain),
            Msg::DelRule(r) => match (r.handle, r.chain.is_empty()) {
                (Some(h), _) => write!(
                    f,
                    "delete rule {} {} {} handle {h}",
                    r.family, r.table, r.chain
                ),
                (None, true) => write!(f, "flush table {} {}", r.family, r.table),
                (None, false) => write!(f, "flush chain {} {} {}", r.family, r.table, r.chain),
            },
            Msg::NewGen(g) => write!(f, "generation {}", g.id),
            Msg::List {
                kind,
                family,
                table,
                set,
            } => {
                let what = match kind {
                    ListKind::Tables => "tables",
                    ListKind::Chains => "chains",
                    ListKind::Sets => "sets",
                    ListKind::Rules => "rules",
                    ListKind::Elems => "elements",
                    ListKind::Gen => return write!(f, "get ruleset generation"),
                };
                write!(f, "list {what}")?;
                if let Some(s) = set {
                    write!(f, " of set {s}")?;
                }
                match table {
                    Some(t) => write!(f, " in table {family} {t}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::super::wire::messages;
    use super::super::expr::{CmpOp, MetaKey};
    use super::super::Reg;
    use super::*;

    pub(crate) fn samples() -> Vec<Msg> {
        let fam = Family::Ip;
        let t = "kube-proxy";
        let mut table = Table::new(fam, t);
        table.flags = 0;
        let mut nat = Chain::base(
            fam,
            t,
            "nat-prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
        );
        nat.handle = Some(7);
        let mut filt = Chain::base(fam, t, "filter-input", ChainType::Filter, Hook::Input, 0);
        if let Some(b) = filt.base.as_mut() {
            b.policy = Verdict::Drop;
        }
        let key = [
            datatype::IPV4_ADDR,
            datatype::INET_PROTO,
            datatype::INET_SERVICE,
        ];
        let vmap = Set::new(fam, t, "service-ips", &key)
            .verdict_map()
            .with_concat_fields(&key);
        let mut aff = Set::new(fam, t, "affinity-abc", &[datatype::IPV4_ADDR])
            .with_timeout(10_800_000)
            .with_flags(set_flags::EVAL);
        aff.id = Some(4);
        aff.size = Some(65535);
        aff.userdata = Some(vec![0, 4, 1, 0, 0, 0]);
        let addrmap = Set::new(fam, t, "ep-addrs", &[datatype::INET_SERVICE])
            .map_to(datatype::IPV4_ADDR)
            .with_flags(set_flags::INTERVAL);
        let mut elems = SetElems::new(
            fam,
            t,
            "service-ips",
            vec![
                SetElem::map(
                    vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0],
                    Data::Verdict(Verdict::Goto("service-abc".into())),
                ),
                SetElem {
                    timeout_ms: Some(5000),
                    expiration_ms: Some(4000),
                    flags: SET_ELEM_INTERVAL_END,
                    key_end: Some(vec![1, 2, 3, 4]),
                    userdata: Some(vec![1, 1, 0]),
                    ..SetElem::map(vec![1], Data::Value(vec![10, 0, 0, 1]))
                },
            ],
        );
        elems.set_id = Some(2);
        let mut rule = Rule::new(
            fam,
            t,
            "services",
            vec![
                Expr::Meta {
                    key: MetaKey::L4proto,
                    dreg: Reg::R1,
                },
                Expr::Cmp {
                    sreg: Reg::R1,
                    op: CmpOp::Eq,
                    data: vec![6],
                },
                Expr::Verdict(Verdict::Accept),
            ],
        )
        .with_comment("ns1/svc:http");
        rule.handle = Some(12);
        rule.position = Some(3);
        rule.id = Some(77);
        vec![
            Msg::NewTable(table),
            Msg::delete_table(fam, t),
            Msg::NewChain(nat),
            Msg::NewChain(filt),
            Msg::NewChain(Chain::regular(Family::Inet, t, "service-abc")),
            Msg::delete_chain(fam, t, "service-abc"),
            Msg::NewSet(vmap),
            Msg::NewSet(aff),
            Msg::NewSet(addrmap),
            Msg::delete_set(Family::Ip6, t, "x"),
            Msg::NewElems(elems.clone()),
            Msg::DelElems(elems),
            Msg::flush_set(fam, t, "service-ips"),
            Msg::NewRule(rule),
            Msg::flush_chain(fam, t, "services"),
            Msg::flush_table(fam, t),
            Msg::delete_rule(fam, t, "services", 12),
            Msg::NewGen(Gen {
                id: 42,
                proc_pid: None,
                proc_name: None,
            }),
            Msg::List {
                kind: ListKind::Gen,
                family: Family::Unknown(0),
                table: None,
                set: None,
            },
            Msg::List {
                kind: ListKind::Rules,
                family: fam,
                table: Some(t.into()),
                set: None,
            },
            Msg::List {
                kind: ListKind::Elems,
                family: fam,
                table: Some(t.into()),
                set: Some("service-ips".into()),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for (i, msg) in samples().into_iter().enumerate() {
            let mut b = Builder::new();
            msg.emit(&mut b, 100 + i as u32);
            let bytes = b.into_bytes();
            let m = messages(&bytes).next().unwrap().unwrap();
            assert_eq!(m.seq(), 100 + i as u32);
            assert!(m.flags() & NLM_F_ACK != 0);
            let back = Msg::parse(&m).unwrap().unwrap();
            // Deletes send only the identity.
            let want = match &msg {
                Msg::DelTable(t) => Msg::DelTable(Table {
                    flags: 0,
                    ..t.clone()
                }),
                Msg::NewSet(s) => Msg::NewSet(Set {
                    id: s.id.or(Some(100 + i as u32)),
                    ..s.clone()
                }),
                other => other.clone(),
            };
            assert_eq!(back, want, "message {i}: {msg}");
        }
    }

    #[test]
    fn descriptions_name_the_object() {
        let s: Vec<String> = samples().iter().map(Msg::describe).collect();
        assert_eq!(s[0], "add table ip kube-proxy");
        assert_eq!(s[2], "add chain ip kube-proxy nat-prerouting");
        assert_eq!(s[6], "add map ip kube-proxy service-ips");
        assert_eq!(s[12], "flush set ip kube-proxy service-ips");
        assert_eq!(s[13], "add rule ip kube-proxy services");
        assert_eq!(s[14], "flush chain ip kube-proxy services");
        assert_eq!(s[15], "flush table ip kube-proxy");
        assert_eq!(s[16], "delete rule ip kube-proxy services handle 12");
    }

    #[test]
    fn keys_comments_and_flags() {
        // ipv4_addr . inet_proto . inet_service: 6-bit packed type ids, 4-byte padded fields.
        assert_eq!(
            key_spec(&[
                datatype::IPV4_ADDR,
                datatype::INET_PROTO,
                datatype::INET_SERVICE
            ]),
            ((7 << 12) | (12 << 6) | 13, 12)
        );
        assert_eq!(key_spec(&[datatype::INET_SERVICE]), (13, 2));
        let r = Rule::new(Family::Ip, "t", "c", vec![]).with_comment("hello");
        assert_eq!(r.comment().as_deref(), Some("hello"));
        let mut bad = r.clone();
        bad.userdata = Some(vec![0, 200, 1]);
        assert_eq!(bad.comment(), None);
        let s = Set::new(Family::Ip, "t", "m", &[7, 13]).verdict_map();
        assert_eq!(s.flags, set_flags::MAP);
        assert!(s.fields.is_empty());
        let s = s.with_concat_fields(&[7, 13]);
        assert_eq!(s.flags, set_flags::CONCAT | set_flags::MAP);
        assert_eq!(s.fields, vec![4, 2]);
    }

    #[test]
    fn cut_and_corrupted_messages_never_panic() {
        for msg in samples() {
            let mut b = Builder::new();
            msg.emit(&mut b, 1);
            let bytes = b.into_bytes();
            for cut in 0..bytes.len() {
                let mut c = bytes[..cut].to_vec();
                if c.len() >= 4 {
                    c[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                }
                for m in messages(&c).flatten() {
                    let _ = Msg::parse(&m);
                }
            }
            for i in 16..bytes.len() {
                let mut c = bytes.clone();
                c[i] ^= 0xa5;
                for m in messages(&c).flatten() {
                    let _ = Msg::parse(&m);
                }
            }
        }
    }
}
