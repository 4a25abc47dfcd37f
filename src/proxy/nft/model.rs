//! Our nf_tables table as values: chains of rules, named sets and maps with their elements.
//!
//! Statements are the few a service proxy needs, at the level of meaning (`jump`, `dnat to`,
//! `numgen random mod N == k`), so the same model renders as `nft list table` text and
//! lowers to netlink expressions. Sans I/O; rendering never fails.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::proxy::table::Proto;

/// Address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
}

impl Family {
    /// The family's word in nft syntax (`ip`/`ip6`), also the payload keyword.
    pub fn word(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }

    /// nft's address type name.
    pub fn addr_type(self) -> &'static str {
        match self {
            Family::Ip => "ipv4_addr",
            Family::Ip6 => "ipv6_addr",
        }
    }

    /// Does `a` belong to this family?
    pub fn holds(self, a: &IpAddr) -> bool {
        a.is_ipv6() == (self == Family::Ip6)
    }
}

/// An address range (an address with a prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// A range.
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        Cidr { addr, prefix }
    }

    /// A single address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr::new(addr, if addr.is_ipv6() { 128 } else { 32 })
    }

    /// Is this a single address?
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv6() { 128 } else { 32 }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// nft's lowercase protocol name.
pub fn proto_word(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    }
}

/// IANA protocol number.
pub fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

/// Netfilter hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookPoint {
    /// prerouting.
    Prerouting,
    /// input.
    Input,
    /// forward.
    Forward,
    /// output.
    Output,
    /// postrouting.
    Postrouting,
}

impl HookPoint {
    /// nft keyword.
    pub fn word(self) -> &'static str {
        match self {
            HookPoint::Prerouting => "prerouting",
            HookPoint::Input => "input",
            HookPoint::Forward => "forward",
            HookPoint::Output => "output",
            HookPoint::Postrouting => "postrouting",
        }
    }

    /// The kernel's NF_INET_* number.
    pub fn number(self) -> u32 {
        match self {
            HookPoint::Prerouting => 0,
            HookPoint::Input => 1,
            HookPoint::Forward => 2,
            HookPoint::Output => 3,
            HookPoint::Postrouting => 4,
        }
    }
}

/// Base chain type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainType {
    /// `filter`.
    Filter,
    /// `nat`.
    Nat,
}

impl ChainType {
    /// nft keyword.
    pub fn word(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// Where a base chain hooks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hook {
    /// filter or nat.
    pub kind: ChainType,
    /// Hook point.
    pub point: HookPoint,
    /// Priority (lower runs first; dstnat = -100, srcnat = 100).
    pub priority: i32,
}

/// The verdict a rule or map element ends with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
    /// `return`.
    Return,
    /// `drop`.
    Drop,
}

impl Verdict {
    /// The chain it names, if any.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            Verdict::Return | Verdict::Drop => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
            Verdict::Return => f.write_str("return"),
            Verdict::Drop => f.write_str("drop"),
        }
    }
}

/// One statement of a rule: matches first, then at most one action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stmt {
    /// `ct state new`.
    CtStateNew,
    /// `ip saddr CIDR` (or `!=` when `eq` is false).
    Saddr(Cidr, bool),
    /// `ip daddr CIDR` (or `!=`).
    Daddr(Cidr, bool),
    /// `ip saddr @SET`.
    SaddrIn(String),
    /// `ip daddr @SET`.
    DaddrIn(String),
    /// `meta l4proto P`.
    L4Proto(Proto),
    /// `th dport N` (after an `L4Proto` match).
    Dport(u16),
    /// `meta mark & BITS == 0`.
    MarkClear(u32),
    /// `numgen random mod M == K`.
    Numgen {
        /// Modulus.
        modulus: u32,
        /// The value that matches.
        value: u32,
    },
    /// `ip daddr . meta l4proto . th dport vmap @MAP`.
    DispatchAddrPort(String),
    /// `meta l4proto . th dport vmap @MAP`.
    DispatchPort(String),
    /// `FIELDS @SET`: a concatenation of packet fields looked up in a plain set.
    Lookup(Fields, String),
    /// `update @SET { ip saddr }` (refreshes the element's timeout).
    UpdateSaddr(String),
    /// `meta mark set meta mark | BITS`.
    MarkOr(u32),
    /// `meta mark set meta mark ^ BITS`.
    MarkXor(u32),
    /// `masquerade fully-random`.
    Masquerade,
    /// `dnat to ADDR:PORT` (after an `L4Proto` match).
    Dnat(IpAddr, u16),
    /// `reject` (ICMP port unreachable).
    Reject,
    /// A verdict.
    Verdict(Verdict),
}

/// The packet fields a [`Stmt::Lookup`] concatenates into its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fields {
    /// `ip daddr . meta l4proto . th dport` (a [`SetKind::AddrPorts`] set).
    DaddrProtoPort,
    /// `ip saddr . meta l4proto . th dport` (a [`SetKind::AddrPorts`] set).
    SaddrProtoPort,
    /// `meta l4proto . th dport` (a [`SetKind::Ports`] set).
    ProtoPort,
    /// `ip daddr . meta l4proto . th dport . ip saddr` (a [`SetKind::LoopBack`] set).
    DaddrProtoPortSaddr,
}

impl Fields {
    /// nft's text for the concatenation in `family`.
    pub fn text(self, family: Family) -> String {
        let ip = family.word();
        match self {
            Fields::DaddrProtoPort => format!("{ip} daddr . meta l4proto . th dport"),
            Fields::SaddrProtoPort => format!("{ip} saddr . meta l4proto . th dport"),
            Fields::ProtoPort => "meta l4proto . th dport".to_string(),
            Fields::DaddrProtoPortSaddr => {
                format!("{ip} daddr . meta l4proto . th dport . {ip} saddr")
            }
        }
    }
}

/// A rule: statements in order.
pub type Rule = Vec<Stmt>;

/// A chain: a base chain has a hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// Hook, for base chains.
    pub hook: Option<Hook>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// What a named set or map holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// `addr . inet_proto . inet_service : verdict`.
    AddrPortMap,
    /// `inet_proto . inet_service : verdict`.
    PortMap,
    /// A set of addresses.
    Addrs,
    /// A set of `addr . inet_proto . inet_service`.
    AddrPorts,
    /// A set of `inet_proto . inet_service`.
    Ports,
    /// A set of `addr . inet_proto . inet_service . addr` (hairpin: destination and source).
    LoopBack,
    /// Client addresses with a timeout, filled by the packet path (`update`).
    Affinity {
        /// Seconds an entry lives after its last use.
        timeout: u32,
    },
}

/// A set or map element key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `ADDR . PROTO . PORT`.
    AddrPort(IpAddr, Proto, u16),
    /// `PROTO . PORT`.
    Port(Proto, u16),
    /// `ADDR`.
    Addr(IpAddr),
    /// `ADDR . PROTO . PORT . ADDR`.
    AddrPortAddr(IpAddr, Proto, u16, IpAddr),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::AddrPort(a, p, n) => write!(f, "{a} . {} . {n}", proto_word(*p)),
            Key::Port(p, n) => write!(f, "{} . {n}", proto_word(*p)),
            Key::Addr(a) => write!(f, "{a}"),
            Key::AddrPortAddr(a, p, n, b) => write!(f, "{a} . {} . {n} . {b}", proto_word(*p)),
        }
    }
}

/// A named set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Its type.
    pub kind: SetKind,
    /// Elements (maps carry a verdict; the packet path fills affinity sets).
    pub elements: BTreeMap<Key, Option<Verdict>>,
}

impl Set {
    /// An empty set of `kind`.
    pub fn new(kind: SetKind) -> Set {
        Set {
            kind,
            elements: BTreeMap::new(),
        }
    }
}

/// One table: `ip kube-proxy` or `ip6 kube-proxy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Family.
    pub family: Family,
    /// Name.
    pub name: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
}

impl Table {
    /// An empty table.
    pub fn new(family: Family, name: &str) -> Table {
        Table {
            family,
            name: name.to_string(),
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
        }
    }

    /// Number of rules in all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }

    /// Number of elements in all sets.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum()
    }
}

/// A rule as nft prints it.
pub fn render_rule(family: Family, rule: &[Stmt]) -> String {
    let ip = family.word();
    let mut out = Vec::with_capacity(rule.len());
    for s in rule {
        out.push(match s {
            Stmt::CtStateNew => "ct state new".to_string(),
            Stmt::Saddr(c, eq) => format!("{ip} saddr {}{c}", if *eq { "" } else { "!= " }),
            Stmt::Daddr(c, eq) => format!("{ip} daddr {}{c}", if *eq { "" } else { "!= " }),
            Stmt::SaddrIn(s) => format!("{ip} saddr @{s}"),
            Stmt::DaddrIn(s) => format!("{ip} daddr @{s}"),
            Stmt::L4Proto(p) => format!("meta l4proto {}", proto_word(*p)),
            Stmt::Dport(n) => format!("th dport {n}"),
            Stmt::MarkClear(b) => format!("meta mark & {b:#010x} == 0x00000000"),
            Stmt::Numgen { modulus, value } => format!("numgen random mod {modulus} {value}"),
            Stmt::DispatchAddrPort(m) => {
                format!("{ip} daddr . meta l4proto . th dport vmap @{m}")
            }
            Stmt::DispatchPort(m) => format!("meta l4proto . th dport vmap @{m}"),
            Stmt::Lookup(fields, s) => format!("{} @{s}", fields.text(family)),
            Stmt::UpdateSaddr(s) => format!("update @{s} {{ {ip} saddr }}"),
            Stmt::MarkOr(b) => format!("meta mark set meta mark | {b:#010x}"),
            Stmt::MarkXor(b) => format!("meta mark set meta mark ^ {b:#010x}"),
            Stmt::Masquerade => "masquerade fully-random".to_string(),
            Stmt::Dnat(IpAddr::V4(a), p) => format!("dnat to {a}:{p}"),
            Stmt::Dnat(IpAddr::V6(a), p) => format!("dnat to [{a}]:{p}"),
            Stmt::Reject => "reject".to_string(),
            Stmt::Verdict(v) => v.to_string(),
        });
    }
    out.join(" ")
}

fn render_set(out: &mut String, family: Family, name: &str, set: &Set) {
    let addr = family.addr_type();
    let (word, ty, extra) = match set.kind {
        SetKind::AddrPortMap => (
            "map",
            format!("{addr} . inet_proto . inet_service : verdict"),
            String::new(),
        ),
        SetKind::PortMap => (
            "map",
            "inet_proto . inet_service : verdict".to_string(),
            String::new(),
        ),
        SetKind::Addrs => ("set", addr.to_string(), String::new()),
        SetKind::AddrPorts => (
            "set",
            format!("{addr} . inet_proto . inet_service"),
            String::new(),
        ),
        SetKind::Ports => (
            "set",
            "inet_proto . inet_service".to_string(),
            String::new(),
        ),
        SetKind::LoopBack => (
            "set",
            format!("{addr} . inet_proto . inet_service . {addr}"),
            String::new(),
        ),
        SetKind::Affinity { timeout } => (
            "set",
            addr.to_string(),
            format!("\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n"),
        ),
    };
    let _ = write!(out, "\t{word} {name} {{\n\t\ttype {ty}\n{extra}");
    if !set.elements.is_empty() && !matches!(set.kind, SetKind::Affinity { .. }) {
        let items: Vec<String> = set
            .elements
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k} : {v}"),
                None => k.to_string(),
            })
            .collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
    }
    let _ = writeln!(out, "\t}}\n");
}

/// The table as `nft list table` prints it (sets first, then chains).
pub fn render(t: &Table) -> String {
    let mut out = format!("table {} {} {{\n", t.family.word(), t.name);
    for (name, set) in &t.sets {
        render_set(&mut out, t.family, name, set);
    }
    let mut first = true;
    for (name, chain) in &t.chains {
        if !first {
            out.push('\n');
        }
        first = false;
        let _ = writeln!(out, "\tchain {name} {{");
        if let Some(h) = chain.hook {
            let _ = writeln!(
                out,
                "\t\ttype {} hook {} priority {}; policy accept;",
                h.kind.word(),
                h.point.word(),
                h.priority
            );
        }
        for r in &chain.rules {
            let _ = writeln!(out, "\t\t{}", render_rule(t.family, r));
        }
        let _ = writeln!(out, "\t}}");
    }
    out.push_str("}\n");
    out
}
