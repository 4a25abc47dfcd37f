//! Services + EndpointSlices → the desired [`State`], sans I/O.
//!
//! Follows kube-proxy's IPVS rules: a virtual server per cluster IP × port, per node address
//! × node port (NodePort/LoadBalancer), per external IP × port; real servers are the ready
//! endpoints, or when none is ready the serving-and-terminating ones; traffic policies
//! "Local" restrict to endpoints on this node; ClientIP affinity becomes persistence.
//! Cluster and external IPs are bound to the dummy interface. Does no I/O and never fails:
//! objects it cannot use are skipped with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::nft::catalog::{by_service, SliceRec};
use super::table::{
    Proto, RealKey, RealParams, SchedName, State, VirtualKey, VirtualParams, VirtualServer,
};
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;

/// Affinity timeout when a ClientIP service gives none (the API default).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// Node-specific inputs of the desired table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// IPVS scheduler for every virtual server.
    pub scheduler: SchedName,
    /// This node's name (for "Local" traffic policies).
    pub node_name: String,
    /// Addresses node ports are served on.
    pub node_addresses: BTreeSet<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler: SchedName::RR,
            node_name: String::new(),
            node_addresses: BTreeSet::new(),
        }
    }
}

/// The desired state plus what was skipped and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// What the backend must hold.
    pub state: State,
    /// Objects or fields that could not be used.
    pub warnings: Vec<String>,
}

/// One endpoint of a service port, with what the selection rules need to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) key: RealKey,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Pick real servers the way kube-proxy does: ready ones, else serving+terminating ones.
pub(crate) fn select(
    cands: &[Candidate],
    local_only: bool,
    v6: bool,
) -> BTreeMap<RealKey, RealParams> {
    let pool: Vec<&Candidate> = cands
        .iter()
        .filter(|c| c.key.addr.is_ipv6() == v6 && (!local_only || c.local))
        .collect();
    let any_ready = pool.iter().any(|c| c.ready);
    pool.into_iter()
        .filter(|c| {
            if any_ready {
                c.ready
            } else {
                c.serving && c.terminating
            }
        })
        .map(|c| (c.key, RealParams::default()))
        .collect()
}

pub(crate) fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// Endpoints of `slices` that serve service port `port_name`/`proto`, each address:port
/// once, with their conditions; `local` when on `node`.
pub(crate) fn candidates(
    slices: &[&SliceRec],
    port_name: &str,
    proto: Proto,
    node: &str,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for s in slices {
        if !s.ip {
            continue;
        }
        let Some(port) = s
            .ports
            .iter()
            .find(|p| *p.name == *port_name && p.proto == Some(proto))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in s.endpoints.iter() {
            let key = RealKey { addr: e.addr, port };
            if !seen.insert(key) {
                continue;
            }
            out.push(Candidate {
                key,
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                local: !node.is_empty() && e.node.as_deref() == Some(node),
            });
        }
    }
    out
}

/// Compute the desired state.
pub fn desired_state(services: &[Service], slices: &[EndpointSlice], cfg: &Config) -> Desired {
    let mut d = Desired::default();
    let slices = SliceRec::all_of(slices);
    let by_service = by_service(&slices);
    for svc in services {
        let id = svc.metadata.key();
        if svc.spec.type_ == "ExternalName" {
            continue;
        }
        let mut cluster = Vec::new();
        for ip in svc.cluster_ips() {
            match ip.parse::<IpAddr>() {
                Ok(a) => cluster.push(a),
                Err(_) => d
                    .warnings
                    .push(format!("service {id}: bad cluster IP {ip:?}")),
            }
        }
        if cluster.is_empty() {
            continue;
        }
        let mut external = Vec::new();
        for ip in &svc.spec.external_ips {
            match ip.parse::<IpAddr>() {
                Ok(a) => external.push(a),
                Err(_) => d
                    .warnings
                    .push(format!("service {id}: bad external IP {ip:?}")),
            }
        }
        // Load-balancer VIPs are handled like external IPs (kube-proxy binds them to the
        // dummy interface too); source ranges would need a packet filter this proxy does not
        // program, so they are reported rather than silently ignored.
        let vips = svc.load_balancer_vips();
        if !svc.spec.load_balancer_source_ranges.is_empty() && !vips.is_empty() {
            d.warnings.push(format!(
                "service {id}: loadBalancerSourceRanges are not enforced (no packet filter is \
                 programmed); its load-balancer IPs accept every client"
            ));
        }
        for ip in vips {
            match ip.parse::<IpAddr>() {
                Ok(a) if !external.contains(&a) => external.push(a),
                Ok(_) => {}
                Err(_) => d
                    .warnings
                    .push(format!("service {id}: bad load-balancer IP {ip:?}")),
            }
        }
        let affinity_timeout = svc.client_ip_affinity_seconds(DEFAULT_AFFINITY_SECONDS);
        let params = VirtualParams {
            scheduler: cfg.scheduler,
            affinity_timeout,
        };
        let internal_local = svc.spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = svc.spec.external_traffic_policy == "Local";
        let families: BTreeSet<bool> = cluster.iter().map(IpAddr::is_ipv6).collect();
        let my_slices = by_service
            .get(&(svc.metadata.namespace.as_str(), svc.metadata.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for sp in &svc.spec.ports {
            let Some(proto) = Proto::from_k8s(&sp.protocol) else {
                d.warnings.push(format!(
                    "service {id}: unsupported protocol {:?}",
                    sp.protocol
                ));
                continue;
            };
            let Some(port) = port_u16(sp.port) else {
                d.warnings
                    .push(format!("service {id}: bad port {}", sp.port));
                continue;
            };
            let cands = candidates(my_slices, &sp.name, proto, &cfg.node_name);
            let mut add = |addr: IpAddr, port: u16, local: bool| {
                let reals = select(&cands, local, addr.is_ipv6());
                d.state.services.insert(
                    VirtualKey { proto, addr, port },
                    VirtualServer { params, reals },
                );
            };
            for a in &cluster {
                add(*a, port, internal_local);
            }
            for a in &external {
                add(*a, port, external_local);
            }
            if svc.is_node_port() {
                if let Some(np) = port_u16(sp.node_port) {
                    for a in cfg
                        .node_addresses
                        .iter()
                        .filter(|a| families.contains(&a.is_ipv6()))
                    {
                        add(*a, np, external_local);
                    }
                }
            }
        }
        d.state.addresses.extend(cluster);
        d.state.addresses.extend(external);
    }
    d
}
