//! Services + EndpointSlices → our nf_tables table, sans I/O.
//!
//! The layout follows kube-proxy's nftables mode (KEP-3866): base chains hook nat
//! prerouting/output into a `services` chain, which dispatches through ONE verdict map keyed
//! by `daddr . l4proto . dport` (`service-ips`), and node ports through `service-nodeports`;
//! per-service chains pick an endpoint; per-endpoint chains DNAT; `mark-for-masquerade` sets
//! bit 0x4000 and the `masquerading` postrouting chain masquerades marked packets; services
//! without endpoints are rejected through `no-endpoint-services`/`no-endpoint-nodeports`.
//!
//! One deliberate difference: upstream picks an endpoint with an anonymous
//! `numgen random mod N vmap { … }` per service, and the kernel binds each anonymous set by
//! walking the whole transaction, so a full sync costs O(services²). Here a service chain is
//! a cascade of plain rules, `numgen random mod (N-i) == 0 goto endpoint-i` for i < N-1 and
//! a last `goto endpoint-(N-1)`: endpoint i is taken with probability 1/N (the same spread
//! upstream's iptables mode gets from `statistic --probability 1/(N-i)`), no set is created,
//! and the kernel's cost grows linearly with services and endpoints.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::catalog::{by_service, Addr, Catalog, Interner, ServiceRec, SliceRec};
use super::model::{
    proto_word, Chain, ChainType, Cidr, Family, Hook, HookPoint, Key, Set, SetKind, Stmt, Table,
    Verdict,
};
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;
use crate::proxy::desired::{candidates, port_u16, select};
use crate::proxy::table::{Proto, RealKey};

/// Our table's name in both families.
pub const TABLE: &str = "kube-proxy";
/// The mark bit that asks the `masquerading` chain to SNAT a packet (kube-proxy's).
pub const MASQ_MARK: u32 = 0x4000;

/// Chain: marks a packet for masquerading.
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
/// Chain: masquerades marked packets.
pub const MASQUERADING: &str = "masquerading";
/// Chain: dispatches service traffic.
pub const SERVICES: &str = "services";
/// Chain: rejects new connections to services without endpoints.
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
/// Chain: the same for node ports.
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
/// Chain: `reject`.
pub const REJECT_CHAIN: &str = "reject-chain";
/// Map: service address . protocol . port → service chain.
pub const SERVICE_IPS: &str = "service-ips";
/// Map: protocol . node port → external chain.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Map: address . protocol . port of services without endpoints → reject/drop.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Map: protocol . node port of services without endpoints → reject/drop.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Set: the addresses node ports are served on.
pub const NODEPORT_IPS: &str = "nodeport-ips";
/// Set: every address of the node (traffic from the node itself).
pub const NODE_IPS: &str = "node-ips";

/// Node-specific inputs of the ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// This node's name (for "Local" traffic policies).
    pub node_name: String,
    /// Node ports are served on these addresses (`--nodeport-addresses`, or every
    /// non-loopback address of the node).
    pub node_port_addresses: BTreeSet<IpAddr>,
    /// Every address of the node: traffic from these is the node's own. Explicit sets
    /// rather than `fib ... type local` keep the expressions to the ones our netlink layer
    /// speaks; the proxy refreshes them at every sync.
    pub node_addresses: BTreeSet<IpAddr>,
    /// `--masquerade-all`: SNAT every packet sent to a service.
    pub masquerade_all: bool,
    /// `--cluster-cidr`: traffic to a cluster IP from outside these ranges is masqueraded.
    pub cluster_cidrs: Vec<Cidr>,
}

/// The table plus what was skipped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The table to program.
    pub table: Table,
    /// Objects or fields that could not be used.
    pub warnings: Vec<String>,
    /// Two services claimed the same chain, set or map key (the later one's won): the
    /// table cannot be changed one service at a time.
    pub overlap: bool,
}

fn jump(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Jump(c.to_string()))
}

fn goto(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(c.to_string()))
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

/// The chains and sets every table has, whatever the services.
fn skeleton(family: Family, cfg: &Config) -> Table {
    let mut t = Table::new(family, TABLE);
    let nodeport_match = vec![Stmt::DaddrIn(NODEPORT_IPS.into())];
    for (name, addrs) in [
        (NODEPORT_IPS, &cfg.node_port_addresses),
        (NODE_IPS, &cfg.node_addresses),
    ] {
        let mut s = Set::new(SetKind::Addrs);
        for a in addrs.iter().filter(|a| family.holds(a)) {
            s.elements.insert(Key::Addr(*a), None);
        }
        t.sets.insert(name.into(), s);
    }
    for m in [SERVICE_IPS, NO_ENDPOINT_SERVICES] {
        t.sets.insert(m.into(), Set::new(SetKind::AddrPortMap));
    }
    for m in [SERVICE_NODEPORTS, NO_ENDPOINT_NODEPORTS] {
        t.sets.insert(m.into(), Set::new(SetKind::PortMap));
    }
    let new_conn = |c: &str| vec![Stmt::CtStateNew, jump(c)];
    // Filter chains run before DNAT (priority dstnat - 10, as upstream) so that a service
    // without endpoints is refused at once instead of timing out.
    let c = &mut t.chains;
    c.insert(
        "filter-input".into(),
        base(
            ChainType::Filter,
            HookPoint::Input,
            -110,
            vec![
                new_conn(NODEPORT_ENDPOINTS_CHECK),
                new_conn(SERVICE_ENDPOINTS_CHECK),
            ],
        ),
    );
    c.insert(
        "filter-forward".into(),
        base(
            ChainType::Filter,
            HookPoint::Forward,
            -110,
            vec![new_conn(SERVICE_ENDPOINTS_CHECK)],
        ),
    );
    c.insert(
        "filter-output".into(),
        base(
            ChainType::Filter,
            HookPoint::Output,
            -110,
            vec![new_conn(SERVICE_ENDPOINTS_CHECK)],
        ),
    );
    c.insert(
        "nat-prerouting".into(),
        base(
            ChainType::Nat,
            HookPoint::Prerouting,
            -100,
            vec![vec![jump(SERVICES)]],
        ),
    );
    c.insert(
        "nat-output".into(),
        base(
            ChainType::Nat,
            HookPoint::Output,
            -100,
            vec![vec![jump(SERVICES)]],
        ),
    );
    c.insert(
        "nat-postrouting".into(),
        base(
            ChainType::Nat,
            HookPoint::Postrouting,
            100,
            vec![vec![jump(MASQUERADING)]],
        ),
    );
    c.insert(
        SERVICE_ENDPOINTS_CHECK.into(),
        plain(vec![vec![Stmt::DispatchAddrPort(
            NO_ENDPOINT_SERVICES.into(),
        )]]),
    );
    let mut np_check = nodeport_match.clone();
    np_check.push(Stmt::DispatchPort(NO_ENDPOINT_NODEPORTS.into()));
    c.insert(NODEPORT_ENDPOINTS_CHECK.into(), plain(vec![np_check]));
    let mut np_dispatch = nodeport_match;
    np_dispatch.push(Stmt::DispatchPort(SERVICE_NODEPORTS.into()));
    c.insert(
        SERVICES.into(),
        plain(vec![
            vec![Stmt::DispatchAddrPort(SERVICE_IPS.into())],
            np_dispatch,
        ]),
    );
    c.insert(
        MARK_FOR_MASQUERADE.into(),
        plain(vec![vec![Stmt::MarkOr(MASQ_MARK)]]),
    );
    c.insert(
        MASQUERADING.into(),
        plain(vec![
            vec![Stmt::MarkClear(MASQ_MARK), Stmt::Verdict(Verdict::Return)],
            // Clear the bit so a packet that is masqueraded and then re-enters (a tunnel)
            // is not masqueraded twice.
            vec![Stmt::MarkXor(MASQ_MARK)],
            vec![Stmt::Masquerade],
        ]),
    );
    c.insert(REJECT_CHAIN.into(), plain(vec![vec![Stmt::Reject]]));
    t
}

/// Rules that send a packet to one of `eps` (endpoint chain names) with equal probability,
/// each rule starting with `prefix` matches.
fn spread(prefix: &[Stmt], eps: &[String]) -> Vec<Vec<Stmt>> {
    let n = eps.len();
    let mut rules = Vec::with_capacity(n);
    for (i, ep) in eps.iter().enumerate() {
        let mut r = prefix.to_vec();
        let left = (n - i) as u32;
        if left > 1 {
            r.push(Stmt::Numgen {
                modulus: left,
                value: 0,
            });
        }
        r.push(goto(ep));
        rules.push(r);
    }
    rules
}

/// A service port's chains' common suffix: `namespace/name/proto/portname`.
fn port_id(svc: &ServiceRec, proto: Proto, port_name: &str) -> String {
    format!(
        "{}/{}/{}/{}",
        svc.namespace,
        svc.name(),
        proto_word(proto),
        port_name
    )
}

fn endpoint_suffix(k: &RealKey) -> String {
    match k.addr {
        IpAddr::V4(a) => format!("{a}/{}", k.port),
        IpAddr::V6(a) => format!("[{a}]/{}", k.port),
    }
}

/// Build the table of `family` for these services and slices (a slice or a map's values:
/// they are only read).
pub fn build<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    cfg: &Config,
    family: Family,
) -> Built {
    let mut names = Interner::default();
    let services: Vec<ServiceRec> = services
        .into_iter()
        .map(|s| ServiceRec::of(s, &mut names))
        .collect();
    let slices: Vec<SliceRec> = slices
        .into_iter()
        .map(|s| SliceRec::of(s, &mut names))
        .collect();
    build_records(&services, &slices, cfg, family)
}

/// [`build`] from the records of a [`super::catalog::Catalog`] (or any list of them).
pub fn build_records<'a>(
    services: impl IntoIterator<Item = &'a ServiceRec>,
    slices: impl IntoIterator<Item = &'a SliceRec>,
    cfg: &Config,
    family: Family,
) -> Built {
    let mut t = skeleton(family, cfg);
    let mut warnings = Vec::new();
    let mut overlap = false;
    let by_service = by_service(slices);
    for svc in services {
        let my_slices = by_service
            .get(&(&*svc.namespace, svc.name()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut p = pieces_table(family);
        service_into(svc, my_slices, cfg, family, &mut p, &mut warnings);
        overlap |= merge(&mut t, p);
    }
    Built {
        table: t,
        warnings,
        overlap,
    }
}

/// Some services' pieces in one family, as they were programmed and as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDelta {
    /// Their pieces from the catalog and config that were programmed last.
    pub old: Table,
    /// Their pieces now.
    pub new: Table,
    /// What could not be used of them now.
    pub warnings: Vec<String>,
}

/// The pieces of the services named in `changed` (namespace, name; see
/// [`super::catalog::changed_services`]), from `old` under
/// `old_cfg` and from `new` under `cfg`. `None` when two of them claim the same name or
/// key: such a change is made by diffing whole tables.
pub fn service_delta(
    old: (&Catalog, &Config),
    new: (&Catalog, &Config),
    changed: &[(&str, &str)],
    family: Family,
) -> Option<ServiceDelta> {
    let mut warnings = Vec::new();
    let mut sorted = changed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let changed = sorted.as_slice();
    let side = |(catalog, cfg): (&Catalog, &Config), warnings: &mut Vec<String>| {
        let mut all = pieces_table(family);
        if changed.is_empty() {
            return Some(all);
        }
        for (ns, name) in changed {
            let Some(p) = pieces_of(catalog, cfg, ns, name, family, warnings) else {
                continue;
            };
            if merge(&mut all, p) {
                return None;
            }
        }
        Some(all)
    };
    let old = side(old, &mut Vec::new())?;
    let new = side(new, &mut warnings)?;
    Some(ServiceDelta { old, new, warnings })
}

/// The maps every service puts elements into (the skeleton makes them).
pub const SHARED_MAPS: [&str; 4] = [
    SERVICE_IPS,
    NO_ENDPOINT_SERVICES,
    SERVICE_NODEPORTS,
    NO_ENDPOINT_NODEPORTS,
];

/// The names of the chains the services named in `changed` have in `catalog` under `cfg`,
/// in both families: the chains a whole-table diff may have to delete once they changed
/// (see [`super::diff::changes`]).
pub fn chain_names(catalog: &Catalog, cfg: &Config, changed: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for family in [Family::Ip, Family::Ip6] {
        for (ns, name) in changed {
            if let Some(p) = pieces_of(catalog, cfg, ns, name, family, &mut Vec::new()) {
                out.extend(p.chains.into_keys());
            }
        }
    }
    out
}

/// The pieces of the service `ns`/`name` in `catalog` under `cfg`; `None` when it has none.
fn pieces_of(
    catalog: &Catalog,
    cfg: &Config,
    ns: &str,
    name: &str,
    family: Family,
    warnings: &mut Vec<String>,
) -> Option<Table> {
    let svc = catalog.service(ns, name)?;
    let my_slices: Vec<&SliceRec> = catalog.slices_of(ns, name).iter().collect();
    let mut p = pieces_table(family);
    service_into(svc, &my_slices, cfg, family, &mut p, warnings);
    Some(p)
}

/// An empty table to hold services' pieces: their chains and sets, and the elements they
/// put into the [`SHARED_MAPS`] (which it has, empty).
pub fn pieces_table(family: Family) -> Table {
    let mut t = Table::new(family, TABLE);
    for m in [SERVICE_IPS, NO_ENDPOINT_SERVICES] {
        t.sets.insert(m.into(), Set::new(SetKind::AddrPortMap));
    }
    for m in [SERVICE_NODEPORTS, NO_ENDPOINT_NODEPORTS] {
        t.sets.insert(m.into(), Set::new(SetKind::PortMap));
    }
    t
}

/// Move the pieces `p` into `t` (a later piece replaces an earlier one of the same name or
/// key); true when some name or key was already there.
pub fn merge(t: &mut Table, p: Table) -> bool {
    let mut overlap = false;
    for (name, c) in p.chains {
        overlap |= t.chains.insert(name, c).is_some();
    }
    for (name, s) in p.sets {
        match t.sets.get_mut(&name) {
            Some(old) if SHARED_MAPS.contains(&name.as_str()) && old.kind == s.kind => {
                for (k, v) in s.elements {
                    overlap |= old.elements.insert(k, v).is_some();
                }
            }
            _ => overlap |= t.sets.insert(name, s).is_some(),
        }
    }
    overlap
}

/// The pieces of one service (chains, sets, shared-map elements) into `t`, a
/// [`pieces_table`]; `my_slices` are its EndpointSlices.
pub fn service_into(
    svc: &ServiceRec,
    my_slices: &[&SliceRec],
    cfg: &Config,
    family: Family,
    t: &mut Table,
    warnings: &mut Vec<String>,
) {
    let v6 = family == Family::Ip6;
    {
        if svc.external_name {
            return;
        }
        let parse = |list: &[Addr], what: &str, warnings: &mut Vec<String>| -> Vec<IpAddr> {
            let mut out = Vec::new();
            for ip in list {
                match ip {
                    Ok(a) if family.holds(a) && !out.contains(a) => out.push(*a),
                    Ok(_) => {}
                    Err(ip) => warnings.push(format!("service {}: bad {what} {ip:?}", svc.id())),
                }
            }
            out
        };
        let cluster = parse(&svc.cluster, "cluster IP", warnings);
        if cluster.is_empty() {
            return;
        }
        let external = parse(&svc.external, "external IP", warnings);
        let affinity = svc.affinity;
        let internal_local = svc.internal_local;
        let external_local = svc.external_local;
        for sp in svc.ports.iter() {
            let proto = match &sp.proto {
                Ok(p) => *p,
                Err(text) => {
                    warnings.push(format!(
                        "service {}: unsupported protocol {text:?}",
                        svc.id()
                    ));
                    continue;
                }
            };
            let Some(port) = port_u16(sp.port) else {
                warnings.push(format!("service {}: bad port {}", svc.id(), sp.port));
                continue;
            };
            let node_port = if svc.node_port {
                port_u16(sp.node_port)
            } else {
                None
            };
            let pid = port_id(svc, proto, &sp.name);
            let cands = candidates(my_slices, &sp.name, proto, &cfg.node_name);
            let all: Vec<RealKey> = select(&cands, false, v6).into_keys().collect();
            let local: Vec<RealKey> = select(&cands, true, v6).into_keys().collect();
            let internal = if internal_local { &local } else { &all };
            let external_eps = if external_local { &local } else { &all };
            // Endpoint chains, for every endpoint some path below uses.
            let mut used: BTreeSet<RealKey> = internal.iter().copied().collect();
            used.extend(external_eps.iter().copied());
            if external_local {
                // Node-local and pod traffic to an external address goes to any endpoint.
                used.extend(all.iter().copied());
            }
            let ep_chain = |k: &RealKey| format!("endpoint-{pid}__{}", endpoint_suffix(k));
            let aff_set = |k: &RealKey| format!("affinity-{pid}__{}", endpoint_suffix(k));
            for k in &used {
                let mut rules = vec![vec![
                    Stmt::Saddr(Cidr::host(k.addr), true),
                    jump(MARK_FOR_MASQUERADE),
                ]];
                if let Some(timeout) = affinity {
                    t.sets
                        .insert(aff_set(k), Set::new(SetKind::Affinity { timeout }));
                    rules.push(vec![Stmt::UpdateSaddr(aff_set(k))]);
                }
                rules.push(vec![Stmt::L4Proto(proto), Stmt::Dnat(k.addr, k.port)]);
                t.chains.insert(ep_chain(k), plain(rules));
            }
            // Affinity first: a client seen recently goes back to the same endpoint.
            let sticky = |eps: &[RealKey], prefix: &[Stmt]| -> Vec<Vec<Stmt>> {
                if affinity.is_none() {
                    return Vec::new();
                }
                eps.iter()
                    .map(|k| {
                        let mut r = prefix.to_vec();
                        r.push(Stmt::SaddrIn(aff_set(k)));
                        r.push(goto(&ep_chain(k)));
                        r
                    })
                    .collect()
            };
            let names = |eps: &[RealKey]| -> Vec<String> { eps.iter().map(&ep_chain).collect() };

            // Cluster IPs.
            let svc_chain = format!("service-{pid}");
            if !internal.is_empty() {
                let mut rules = Vec::new();
                if cfg.masquerade_all {
                    rules.push(vec![jump(MARK_FOR_MASQUERADE)]);
                } else {
                    for cidr in cfg.cluster_cidrs.iter().filter(|c| family.holds(&c.addr)) {
                        for a in &cluster {
                            rules.push(vec![
                                Stmt::Daddr(Cidr::host(*a), true),
                                Stmt::L4Proto(proto),
                                Stmt::Dport(port),
                                Stmt::Saddr(*cidr, false),
                                jump(MARK_FOR_MASQUERADE),
                            ]);
                        }
                    }
                }
                rules.extend(sticky(internal, &[]));
                rules.extend(spread(&[], &names(internal)));
                t.chains.insert(svc_chain.clone(), plain(rules));
            }
            // What the cluster IPs do with no usable endpoint: reject when the service has
            // none at all, drop when only the Local policy leaves none (upstream's rule).
            let none_verdict = |eps_any: bool| {
                if eps_any {
                    Verdict::Drop
                } else {
                    Verdict::Goto(REJECT_CHAIN.into())
                }
            };
            for a in &cluster {
                let key = Key::AddrPort(*a, proto, port);
                if internal.is_empty() {
                    t.set_element(NO_ENDPOINT_SERVICES, key, none_verdict(!all.is_empty()));
                } else {
                    t.set_element(SERVICE_IPS, key, Verdict::Goto(svc_chain.clone()));
                }
            }

            // External IPs, load-balancer IPs and node ports.
            if external.is_empty() && node_port.is_none() {
                continue;
            }
            let ext_chain = format!("external-{pid}");
            let ext_target = if external_eps.is_empty() {
                None
            } else {
                let mut rules = Vec::new();
                if external_local {
                    // Keeps the client address (no SNAT) for traffic from outside; the
                    // node's own traffic must be masqueraded and may use any endpoint, and
                    // so may pods' (upstream's short-circuit for the cluster CIDR).
                    let from_node = [Stmt::SaddrIn(NODE_IPS.into())];
                    rules.push(vec![
                        Stmt::SaddrIn(NODE_IPS.into()),
                        jump(MARK_FOR_MASQUERADE),
                    ]);
                    rules.extend(sticky(&all, &from_node));
                    rules.extend(spread(&from_node, &names(&all)));
                    for cidr in cfg.cluster_cidrs.iter().filter(|c| family.holds(&c.addr)) {
                        let from_pods = [Stmt::Saddr(*cidr, true)];
                        rules.extend(sticky(&all, &from_pods));
                        rules.extend(spread(&from_pods, &names(&all)));
                    }
                } else {
                    // Cluster policy: SNAT, so the reply comes back through this node.
                    rules.push(vec![jump(MARK_FOR_MASQUERADE)]);
                }
                rules.extend(sticky(external_eps, &[]));
                rules.extend(spread(&[], &names(external_eps)));
                t.chains.insert(ext_chain.clone(), plain(rules));
                Some(Verdict::Goto(ext_chain))
            };
            for a in &external {
                let key = Key::AddrPort(*a, proto, port);
                match &ext_target {
                    Some(v) => t.set_element(SERVICE_IPS, key, v.clone()),
                    None => t.set_element(NO_ENDPOINT_SERVICES, key, none_verdict(!all.is_empty())),
                }
            }
            if let Some(np) = node_port {
                let key = Key::Port(proto, np);
                match &ext_target {
                    Some(v) => t.set_element(SERVICE_NODEPORTS, key, v.clone()),
                    None => {
                        t.set_element(NO_ENDPOINT_NODEPORTS, key, none_verdict(!all.is_empty()))
                    }
                }
            }
        }
    }
}

impl Table {
    /// Put `key : verdict` into map `set` (which the skeleton made).
    fn set_element(&mut self, set: &str, key: Key, v: Verdict) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.insert(key, Some(v));
        }
    }
}
