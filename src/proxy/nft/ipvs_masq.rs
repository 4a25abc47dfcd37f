//! IPVS mode's other half: the packet marking and masquerading kube-proxy's IPVS mode does
//! with iptables and ipsets, as one nf_tables table of our own (`ip`/`ip6 tinylet-ipvs`).
//!
//! IPVS rewrites the destination of a packet for a virtual server but never its source. A
//! reply must come back through the node that rewrote the request, so upstream marks the
//! packets that need a source rewrite (bit 0x4000) and masquerades marked packets in
//! postrouting. The conditions are upstream's (pkg/proxy/ipvs, `writeIptablesRules`):
//! - `services` (nat prerouting and output): traffic from loopback returns first; a cluster IP
//!   . protocol . port (`KUBE-CLUSTER-IP`) is marked with `--masquerade-all`, or when it comes
//!   from outside `--cluster-cidr`, or — without a cluster CIDR — when its SOURCE is a
//!   cluster IP (the node reaching a VIP picks the VIP on kube-ipvs0 as source); an external
//!   or load-balancer IP . protocol . port of a service with `externalTrafficPolicy: Cluster`
//!   (`KUBE-EXTERNAL-IP`, `KUBE-LOAD-BALANCER`) is marked; a node port with policy Cluster
//!   on a node-port address (`KUBE-NODE-PORT-*`, upstream's `addrtype --dst-type LOCAL`) is
//!   marked. Policy Local keeps the client's address (upstream's `*-LOCAL` sets → RETURN).
//! - `masquerading` (nat postrouting): hairpin first — a packet whose destination endpoint
//!   . protocol . port . source is a local endpoint reaching itself (`KUBE-LOOP-BACK`,
//!   `dst,dst,src`) is masqueraded; then marked packets lose the mark and are masqueraded.
//! - `filter-input` (upstream's `KUBE-IPVS-FILTER`): packets to a service's address and port
//!   are accepted (returned from our chain); a NEW connection to any other port of an address
//!   on kube-ipvs0 (`KUBE-IPVS-IPS`) is rejected, so the VIPs do not expose the node's own
//!   listening sockets.
//!
//! Upstream's `KUBE-FORWARD` accept rules are not made: in nf_tables an `accept` in our own
//! table cannot overrule another table's `drop`, so they would only be noise.
//!
//! Every rule is fixed; services come and go as set elements, so an endpoint or service
//! change is a partial sync of element messages. Sans I/O except [`IpvsMasq`], which
//! programs the tables through [`super::sync::NftSyncer`] and our netlink layer.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::catalog::{by_service, SliceRec};
use super::lower::NetlinkKernel;
use super::model::{
    Chain, ChainType, Cidr, Family, Fields, Hook, HookPoint, Key, Set, SetKind, Stmt, Table,
    Verdict,
};
use super::ruleset::MASQ_MARK;
use super::sync::{NftSyncer, Outcome};
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;
use crate::proxy::desired::{candidates, port_u16, select};
use crate::proxy::table::Proto;

/// Our table's name in both families.
pub const TABLE: &str = "tinylet-ipvs";

/// Set: cluster IP . protocol . port of every service port (upstream `KUBE-CLUSTER-IP`).
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Set: external and load-balancer IP . protocol . port, policy Cluster.
pub const EXTERNAL_IPS: &str = "external-ips";
/// Set: the same with `externalTrafficPolicy: Local` (not masqueraded).
pub const EXTERNAL_IPS_LOCAL: &str = "external-ips-local";
/// Set: protocol . node port of services with policy Cluster.
pub const NODE_PORTS: &str = "node-ports";
/// Set: the addresses node ports are served on.
pub const NODE_PORT_IPS: &str = "nodeport-ips";
/// Set: local endpoint . protocol . port . the same endpoint (hairpin).
pub const LOOP_BACK: &str = "loop-back";
/// Set: every address bound to kube-ipvs0 (cluster, external and load-balancer IPs).
pub const IPVS_IPS: &str = "ipvs-ips";

/// Chain: marks a packet for masquerading.
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
/// Chain: masquerades hairpin and marked packets.
pub const MASQUERADING: &str = "masquerading";
/// Chain: decides which service packets to mark.
pub const SERVICES: &str = "services";
/// Chain: marks cluster-IP traffic from outside the cluster CIDRs.
pub const FROM_OUTSIDE_CLUSTER: &str = "from-outside-cluster";

/// Node-specific inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// This node's name (which endpoints are local, for hairpin).
    pub node_name: String,
    /// The addresses IPVS serves node ports on.
    pub node_port_addresses: BTreeSet<IpAddr>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--cluster-cidr`.
    pub cluster_cidrs: Vec<Cidr>,
}

fn jump(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(c.to_string()))
}

fn ret() -> Stmt {
    Stmt::Verdict(Verdict::Return)
}

fn base(kind: ChainType, point: HookPoint, priority: i32, rules: Vec<Vec<Stmt>>) -> Chain {
    Chain {
        hook: Some(Hook {
            kind,
            point,
            priority,
        }),
        rules,
    }
}

fn plain(rules: Vec<Vec<Stmt>>) -> Chain {
    Chain { hook: None, rules }
}

fn loopback(family: Family) -> Cidr {
    match family {
        Family::Ip => Cidr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
        Family::Ip6 => Cidr::host(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    }
}

/// The fixed chains and (empty) sets of the table.
fn skeleton(family: Family, cfg: &Config) -> Table {
    let mut t = Table::new(family, TABLE);
    for (name, kind) in [
        (CLUSTER_IPS, SetKind::AddrPorts),
        (EXTERNAL_IPS, SetKind::AddrPorts),
        (EXTERNAL_IPS_LOCAL, SetKind::AddrPorts),
        (NODE_PORTS, SetKind::Ports),
        (NODE_PORT_IPS, SetKind::Addrs),
        (LOOP_BACK, SetKind::LoopBack),
        (IPVS_IPS, SetKind::Addrs),
    ] {
        t.sets.insert(name.into(), Set::new(kind));
    }
    let cidrs: Vec<Cidr> = cfg
        .cluster_cidrs
        .iter()
        .filter(|c| family.holds(&c.addr))
        .copied()
        .collect();
    let lookup = |f: Fields, set: &str| Stmt::Lookup(f, set.to_string());
    let cluster_rule = if cfg.masquerade_all {
        vec![
            lookup(Fields::DaddrProtoPort, CLUSTER_IPS),
            jump(MARK_FOR_MASQUERADE),
        ]
    } else if !cidrs.is_empty() {
        vec![
            lookup(Fields::DaddrProtoPort, CLUSTER_IPS),
            jump(FROM_OUTSIDE_CLUSTER),
        ]
    } else {
        vec![
            lookup(Fields::SaddrProtoPort, CLUSTER_IPS),
            jump(MARK_FOR_MASQUERADE),
        ]
    };
    let c = &mut t.chains;
    if !cfg.masquerade_all && !cidrs.is_empty() {
        let mut rules: Vec<Vec<Stmt>> = cidrs
            .iter()
            .map(|cidr| vec![Stmt::Saddr(*cidr, true), ret()])
            .collect();
        rules.push(vec![jump(MARK_FOR_MASQUERADE)]);
        c.insert(FROM_OUTSIDE_CLUSTER.into(), plain(rules));
    }
    c.insert(
        SERVICES.into(),
        plain(vec![
            vec![Stmt::Saddr(loopback(family), true), ret()],
            cluster_rule,
            vec![
                lookup(Fields::DaddrProtoPort, EXTERNAL_IPS),
                jump(MARK_FOR_MASQUERADE),
            ],
            vec![
                Stmt::DaddrIn(NODE_PORT_IPS.into()),
                lookup(Fields::ProtoPort, NODE_PORTS),
                jump(MARK_FOR_MASQUERADE),
            ],
        ]),
    );
    c.insert(
        MARK_FOR_MASQUERADE.into(),
        plain(vec![vec![Stmt::MarkOr(MASQ_MARK)]]),
    );
    c.insert(
        MASQUERADING.into(),
        plain(vec![
            vec![
                lookup(Fields::DaddrProtoPortSaddr, LOOP_BACK),
                Stmt::Masquerade,
            ],
            vec![Stmt::MarkClear(MASQ_MARK), ret()],
            // Clear the bit so a packet that re-enters the stack is not masqueraded twice.
            vec![Stmt::MarkXor(MASQ_MARK)],
            vec![Stmt::Masquerade],
        ]),
    );
    for (name, point, prio, to) in [
        ("nat-prerouting", HookPoint::Prerouting, -100, SERVICES),
        ("nat-output", HookPoint::Output, -100, SERVICES),
        ("nat-postrouting", HookPoint::Postrouting, 100, MASQUERADING),
    ] {
        c.insert(
            name.into(),
            base(ChainType::Nat, point, prio, vec![vec![jump(to)]]),
        );
    }
    c.insert(
        "filter-input".into(),
        base(
            ChainType::Filter,
            HookPoint::Input,
            0,
            vec![
                vec![lookup(Fields::DaddrProtoPort, CLUSTER_IPS), ret()],
                vec![lookup(Fields::DaddrProtoPort, EXTERNAL_IPS), ret()],
                vec![lookup(Fields::DaddrProtoPort, EXTERNAL_IPS_LOCAL), ret()],
                vec![
                    Stmt::CtStateNew,
                    Stmt::DaddrIn(IPVS_IPS.into()),
                    Stmt::Reject,
                ],
            ],
        ),
    );
    t
}

impl Table {
    fn insert_key(&mut self, set: &str, key: Key) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.insert(key, None);
        }
    }
}

/// The table of `family` for these services and slices (objects that cannot be used are
/// skipped: the IPVS side reports them).
pub fn build(
    services: &[Service],
    slices: &[EndpointSlice],
    cfg: &Config,
    family: Family,
) -> Table {
    let mut t = skeleton(family, cfg);
    for a in cfg.node_port_addresses.iter().filter(|a| family.holds(a)) {
        t.insert_key(NODE_PORT_IPS, Key::Addr(*a));
    }
    let v6 = family == Family::Ip6;
    let slices = SliceRec::all_of(slices);
    let by_service = by_service(&slices);
    let parse = |list: Vec<&str>| -> Vec<IpAddr> {
        let mut out = Vec::new();
        for a in list.into_iter().filter_map(|s| s.parse::<IpAddr>().ok()) {
            if family.holds(&a) && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    };
    for svc in services {
        if svc.spec.type_ == "ExternalName" {
            continue;
        }
        let cluster = parse(svc.cluster_ips());
        if cluster.is_empty() {
            continue;
        }
        let mut ext: Vec<&str> = svc.spec.external_ips.iter().map(String::as_str).collect();
        ext.extend(svc.load_balancer_vips());
        let external = parse(ext);
        let external_local = svc.spec.external_traffic_policy == "Local";
        let my_slices = by_service
            .get(&(svc.metadata.namespace.as_str(), svc.metadata.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for a in cluster.iter().chain(&external) {
            t.insert_key(IPVS_IPS, Key::Addr(*a));
        }
        for sp in &svc.spec.ports {
            let (Some(proto), Some(port)) = (Proto::from_k8s(&sp.protocol), port_u16(sp.port))
            else {
                continue;
            };
            for a in &cluster {
                t.insert_key(CLUSTER_IPS, Key::AddrPort(*a, proto, port));
            }
            let ext_set = if external_local {
                EXTERNAL_IPS_LOCAL
            } else {
                EXTERNAL_IPS
            };
            for a in &external {
                t.insert_key(ext_set, Key::AddrPort(*a, proto, port));
            }
            if svc.is_node_port() && !external_local {
                if let Some(np) = port_u16(sp.node_port) {
                    t.insert_key(NODE_PORTS, Key::Port(proto, np));
                }
            }
            // Hairpin: the endpoints on this node that IPVS may pick.
            let cands = candidates(my_slices, &sp.name, proto, &cfg.node_name);
            for k in select(&cands, true, v6).into_keys() {
                t.insert_key(LOOP_BACK, Key::AddrPortAddr(k.addr, proto, k.port, k.addr));
            }
        }
    }
    t
}

/// Both families' tables.
pub fn build_all(services: &[Service], slices: &[EndpointSlice], cfg: &Config) -> Vec<Table> {
    [Family::Ip, Family::Ip6]
        .into_iter()
        .map(|f| build(services, slices, cfg, f))
        .collect()
}

/// IPVS connections must pass netfilter for the masquerading rules to see them (upstream
/// kube-proxy sets this too). Per network namespace; exists once ip_vs is loaded.
const VS_CONNTRACK: &str = "/proc/sys/net/ipv4/vs/conntrack";

/// Programs the masquerading tables next to IPVS, one batch per sync.
#[derive(Debug)]
pub struct IpvsMasq {
    syncer: NftSyncer<NetlinkKernel>,
    /// Node inputs; the node-port addresses are refreshed by the caller.
    pub cfg: Config,
}

impl IpvsMasq {
    /// Open the nf_tables socket and turn on `net.ipv4.vs.conntrack`.
    pub fn open(cfg: Config) -> Result<Self, String> {
        let kernel = NetlinkKernel::open()?;
        if let Err(e) = std::fs::write(VS_CONNTRACK, "1") {
            return Err(format!("set {VS_CONNTRACK}: {e}"));
        }
        Ok(IpvsMasq {
            syncer: NftSyncer::named(kernel, TABLE),
            cfg,
        })
    }

    /// Bring our tables to what these services need. `resync` also replaces them when
    /// someone else changed the ruleset since our last commit.
    pub fn sync(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        resync: bool,
    ) -> Result<Outcome, String> {
        let tables = build_all(services, slices, &self.cfg);
        self.syncer.sync(tables, resync)
    }

    /// Remove our tables in both families (one batch).
    pub fn cleanup() -> Result<(), String> {
        NftSyncer::named(NetlinkKernel::open()?, TABLE).cleanup()
    }
}

/// What a sync did, as one line (None when nothing changed).
pub fn describe(o: Outcome) -> Option<String> {
    match o {
        Outcome::Unchanged => None,
        Outcome::Partial { messages } => Some(format!(
            "nftables {TABLE}: partial sync, {messages} messages in one batch"
        )),
        Outcome::Full { messages } => Some(format!(
            "nftables {TABLE}: full sync, {messages} messages in one batch"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::diff::{full, partial, Change};
    use super::super::lower::{messages, stmt_exprs};
    use super::super::model::render;
    use super::super::readback::{rule, set_kind};
    use super::*;
    use crate::netlink::nftables::Msg;
    use crate::proxy::source::{parse_manifest, Object};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `web`: ClusterIP 10.96.0.10:80 → 8080, NodePort 30080, external IP 203.0.113.7, a
    /// load-balancer IP 198.51.100.9; endpoints .1.5 (ready, this node n1), .2.6 (ready, n2).
    fn web(extra_spec: &str, eps: &[(&str, &str)]) -> (Vec<Service>, Vec<EndpointSlice>) {
        let mut y = format!(
            "kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalIPs: [203.0.113.7]
  ports:
  - {{name: http, port: 80, targetPort: 8080, nodePort: 30080}}
{extra_spec}
status: {{loadBalancer: {{ingress: [{{ip: 198.51.100.9}}]}}}}
---
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
"
        );
        for (a, node) in eps {
            y.push_str(&format!(
                "- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: {node}}}\n"
            ));
        }
        let (mut svcs, mut slices) = (Vec::new(), Vec::new());
        for o in parse_manifest(&y, false).unwrap() {
            match o {
                Object::Service(s) => svcs.push(s),
                Object::EndpointSlice(s) => slices.push(s),
            }
        }
        (svcs, slices)
    }

    const EPS: &[(&str, &str)] = &[("10.244.1.5", "n1"), ("10.244.2.6", "n2")];

    fn cfg() -> Config {
        Config {
            node_name: "n1".into(),
            node_port_addresses: [ip("192.168.1.5"), ip("fd00::5")].into(),
            masquerade_all: false,
            cluster_cidrs: Vec::new(),
        }
    }

    fn keys(t: &Table, set: &str) -> Vec<Key> {
        t.sets[set].elements.keys().copied().collect()
    }

    fn lookup(f: Fields, set: &str) -> Stmt {
        Stmt::Lookup(f, set.into())
    }

    /// Upstream IPVS mode: KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP / KUBE-LOAD-BALANCER and
    /// KUBE-NODE-PORT-TCP with policy Cluster are masqueraded; KUBE-LOOP-BACK holds only this
    /// node's endpoints; KUBE-IPVS-IPS holds every address bound to kube-ipvs0.
    #[test]
    fn sets_follow_upstreams_ipsets() {
        let (s, e) = web("", EPS);
        let t = build(&s, &e, &cfg(), Family::Ip);
        let tcp = Proto::Tcp;
        assert_eq!(
            keys(&t, CLUSTER_IPS),
            vec![Key::AddrPort(ip("10.96.0.10"), tcp, 80)]
        );
        assert_eq!(
            keys(&t, EXTERNAL_IPS),
            vec![
                Key::AddrPort(ip("198.51.100.9"), tcp, 80),
                Key::AddrPort(ip("203.0.113.7"), tcp, 80),
            ]
        );
        assert!(t.sets[EXTERNAL_IPS_LOCAL].elements.is_empty());
        assert_eq!(keys(&t, NODE_PORTS), vec![Key::Port(tcp, 30080)]);
        assert_eq!(keys(&t, NODE_PORT_IPS), vec![Key::Addr(ip("192.168.1.5"))]);
        assert_eq!(
            keys(&t, LOOP_BACK),
            vec![Key::AddrPortAddr(
                ip("10.244.1.5"),
                tcp,
                8080,
                ip("10.244.1.5")
            )]
        );
        assert_eq!(
            keys(&t, IPVS_IPS),
            vec![
                Key::Addr(ip("10.96.0.10")),
                Key::Addr(ip("198.51.100.9")),
                Key::Addr(ip("203.0.113.7")),
            ]
        );
        // The IPv6 table has the same shape and none of the IPv4 elements.
        let t6 = build(&s, &e, &cfg(), Family::Ip6);
        assert_eq!(
            t6.chains.keys().collect::<Vec<_>>(),
            t.chains.keys().collect::<Vec<_>>()
        );
        assert_eq!(keys(&t6, NODE_PORT_IPS), vec![Key::Addr(ip("fd00::5"))]);
        assert_eq!(t6.element_count(), 1);
    }

    /// Upstream: `externalTrafficPolicy: Local` puts the addresses in the `*-LOCAL` sets,
    /// whose rules RETURN before marking: the endpoint sees the client's address.
    #[test]
    fn local_policy_is_not_masqueraded() {
        let (s, e) = web("  externalTrafficPolicy: Local", EPS);
        let t = build(&s, &e, &cfg(), Family::Ip);
        assert!(t.sets[EXTERNAL_IPS].elements.is_empty());
        assert!(t.sets[NODE_PORTS].elements.is_empty());
        assert_eq!(t.sets[EXTERNAL_IPS_LOCAL].elements.len(), 2);
        // Still a service address for the input filter.
        let filter = &t.chains["filter-input"].rules;
        assert_eq!(
            filter[2],
            vec![lookup(Fields::DaddrProtoPort, EXTERNAL_IPS_LOCAL), ret()]
        );
    }

    /// Upstream's three cluster-IP rules: --masquerade-all marks every packet to a cluster
    /// IP; with a cluster CIDR only those from outside it; with neither, packets whose
    /// SOURCE is a cluster IP (`src,dst`: the node reaching a VIP from kube-ipvs0).
    #[test]
    fn cluster_ip_rule_by_masquerade_all_and_cluster_cidr() {
        let (s, e) = web("", EPS);
        let services = |c: &Config| build(&s, &e, c, Family::Ip).chains[SERVICES].rules.clone();
        let none = services(&cfg());
        assert_eq!(
            none[1],
            vec![
                lookup(Fields::SaddrProtoPort, CLUSTER_IPS),
                jump(MARK_FOR_MASQUERADE)
            ]
        );
        let all = services(&Config {
            masquerade_all: true,
            cluster_cidrs: vec![Cidr::new(ip("10.244.0.0"), 16)],
            ..cfg()
        });
        assert_eq!(
            all[1],
            vec![
                lookup(Fields::DaddrProtoPort, CLUSTER_IPS),
                jump(MARK_FOR_MASQUERADE)
            ]
        );
        let c = Config {
            cluster_cidrs: vec![
                Cidr::new(ip("10.244.0.0"), 16),
                Cidr::new(ip("fd00:244::"), 64),
            ],
            ..cfg()
        };
        let t = build(&s, &e, &c, Family::Ip);
        assert_eq!(
            t.chains[SERVICES].rules[1],
            vec![
                lookup(Fields::DaddrProtoPort, CLUSTER_IPS),
                jump(FROM_OUTSIDE_CLUSTER)
            ]
        );
        assert_eq!(
            t.chains[FROM_OUTSIDE_CLUSTER].rules,
            vec![
                vec![Stmt::Saddr(Cidr::new(ip("10.244.0.0"), 16), true), ret()],
                vec![jump(MARK_FOR_MASQUERADE)],
            ]
        );
        // Loopback first, as upstream's `-s 127.0.0.0/8 -j RETURN`.
        assert_eq!(
            t.chains[SERVICES].rules[0],
            vec![Stmt::Saddr(Cidr::new(ip("127.0.0.0"), 8), true), ret()]
        );
    }

    #[test]
    fn renders_as_nft_prints_it() {
        let (s, e) = web("", EPS);
        let text = render(&build(&s, &e, &cfg(), Family::Ip));
        for want in [
            "table ip tinylet-ipvs {",
            "\tset loop-back {\n\t\ttype ipv4_addr . inet_proto . inet_service . ipv4_addr\n\t\telements = { 10.244.1.5 . tcp . 8080 . 10.244.1.5 }",
            "\tset node-ports {\n\t\ttype inet_proto . inet_service\n\t\telements = { tcp . 30080 }",
            "ip daddr . meta l4proto . th dport . ip saddr @loop-back masquerade fully-random",
            "ip saddr . meta l4proto . th dport @cluster-ips jump mark-for-masquerade",
            "ip daddr @nodeport-ips meta l4proto . th dport @node-ports jump mark-for-masquerade",
            "ct state new ip daddr @ipvs-ips reject",
            "type nat hook postrouting priority 100; policy accept;",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    /// Every rule lowers to expressions that read back to the same statements, and every
    /// set's netlink description reads back to the same kind, in both families.
    #[test]
    fn lowers_and_reads_back_to_itself() {
        let (s, e) = web("", EPS);
        let c = Config {
            cluster_cidrs: vec![Cidr::new(ip("10.244.0.0"), 16)],
            ..cfg()
        };
        for f in [Family::Ip, Family::Ip6] {
            let t = build(&s, &e, &c, f);
            for (name, chain) in &t.chains {
                for r in &chain.rules {
                    let exprs: Vec<_> = r.iter().flat_map(|s| stmt_exprs(f, s)).collect();
                    assert_eq!(rule(f, &exprs).as_ref(), Ok(r), "{f:?} chain {name}");
                }
            }
            let mut id = 0;
            let mut seen = 0;
            for m in messages(&full(&t), &mut id) {
                if let Msg::NewSet(ns) = m {
                    assert_eq!(
                        set_kind(&ns),
                        t.sets[&ns.name].kind,
                        "{f:?} set {}",
                        ns.name
                    );
                    seen += 1;
                }
            }
            assert_eq!(seen, t.sets.len());
        }
    }

    /// Rules never change with services: a new endpoint on this node, or a new node port,
    /// is a handful of element messages.
    #[test]
    fn service_changes_are_element_messages_only() {
        let (s, e) = web("", EPS);
        let before = build(&s, &e, &cfg(), Family::Ip);
        let (s2, e2) = web("", &[("10.244.1.5", "n1"), ("10.244.1.8", "n1")]);
        let after = build(&s2, &e2, &cfg(), Family::Ip);
        let tx = partial(&before, &after).unwrap();
        assert_eq!(
            tx.changes,
            vec![Change::AddElements(
                LOOP_BACK.into(),
                vec![(
                    Key::AddrPortAddr(ip("10.244.1.8"), Proto::Tcp, 8080, ip("10.244.1.8")),
                    None
                )]
            )]
        );
        assert!(partial(&after, &after).unwrap().is_empty());
        // No services at all: the same chains, empty sets but the node-port addresses.
        let empty = build(&[], &[], &cfg(), Family::Ip);
        assert_eq!(empty.rule_count(), before.rule_count());
        assert_eq!(empty.element_count(), 1);
    }
}
