//! Services and EndpointSlices reduced to what the nftables ruleset reads of them, sans I/O.
//!
//! A parsed Service with its EndpointSlice takes about 3 KB (every field of the API types,
//! most of them empty); the records here keep only the fields [`super::ruleset`] reads,
//! with addresses parsed once and namespaces and port names shared, in a few hundred bytes.
//! The daemon holds a [`Catalog`] between syncs instead of the objects, and
//! [`super::ruleset::build`] over objects goes through the same records, so there is one
//! ruleset function either way. Unusable values (a bad address, an unknown protocol) are
//! kept as their text, so the ruleset still warns about them exactly as before.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;
use crate::proxy::desired::{port_u16, DEFAULT_AFFINITY_SECONDS};
use crate::proxy::source::Object;
use crate::proxy::table::Proto;

/// An address as the object gave it: parsed, or the text that did not parse.
pub type Addr = Result<IpAddr, Box<str>>;

/// Values that repeat across objects (namespaces, port and node names, port lists), kept
/// once.
#[derive(Debug, Default)]
pub struct Interner {
    strs: HashSet<Arc<str>>,
    ports: HashSet<Arc<[PortRec]>>,
    slice_ports: HashSet<Arc<[SlicePortRec]>>,
}

fn shared<T: ?Sized + Hash + Eq>(seen: &mut HashSet<Arc<T>>, v: &T) -> Arc<T>
where
    Arc<T>: for<'a> From<&'a T>,
{
    if let Some(a) = seen.get(v) {
        return a.clone();
    }
    let a: Arc<T> = Arc::from(v);
    seen.insert(a.clone());
    a
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        shared(&mut self.strs, s)
    }
}

/// A Service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortRec {
    /// Port name ("" when unnamed).
    pub name: Arc<str>,
    /// Protocol, or the protocol text that is not one we support.
    pub proto: Result<Proto, Box<str>>,
    /// `port` as given.
    pub port: i32,
    /// `nodePort` as given (0 = none).
    pub node_port: i32,
}

/// What the ruleset reads of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRec {
    /// `namespace/name` (or the name alone when the namespace is empty).
    pub key: Box<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// `type: ExternalName` (no rules).
    pub external_name: bool,
    /// NodePort or LoadBalancer.
    pub node_port: bool,
    /// Cluster IPs (without empty and "None").
    pub cluster: Box<[Addr]>,
    /// External IPs, then load-balancer VIPs.
    pub external: Box<[Addr]>,
    /// ClientIP affinity timeout in seconds.
    pub affinity: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// Ports in order.
    pub ports: Arc<[PortRec]>,
}

fn addrs<'a>(list: impl IntoIterator<Item = &'a str>) -> Box<[Addr]> {
    list.into_iter()
        .map(|ip| ip.parse::<IpAddr>().map_err(|_| Box::from(ip)))
        .collect()
}

impl ServiceRec {
    /// The record of `svc`, sharing strings through `names`.
    pub fn of(svc: &Service, names: &mut Interner) -> ServiceRec {
        let mut external: Vec<&str> = svc.spec.external_ips.iter().map(|s| s.as_str()).collect();
        external.extend(svc.load_balancer_vips());
        ServiceRec {
            key: svc.metadata.key().into(),
            namespace: names.get(&svc.metadata.namespace),
            external_name: svc.spec.type_ == "ExternalName",
            node_port: svc.is_node_port(),
            cluster: addrs(svc.cluster_ips()),
            external: addrs(external),
            affinity: svc.client_ip_affinity_seconds(DEFAULT_AFFINITY_SECONDS),
            internal_local: svc.spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: svc.spec.external_traffic_policy == "Local",
            ports: {
                let ports: Vec<PortRec> = svc
                    .spec
                    .ports
                    .iter()
                    .map(|sp| PortRec {
                        name: names.get(&sp.name),
                        proto: Proto::from_k8s(&sp.protocol)
                            .ok_or_else(|| sp.protocol.as_str().into()),
                        port: sp.port,
                        node_port: sp.node_port,
                    })
                    .collect();
                shared(&mut names.ports, &ports[..])
            },
        }
    }

    /// `namespace/name`, as warnings name the service.
    pub fn id(&self) -> &str {
        &self.key
    }

    /// The name (the key after `namespace/`).
    pub fn name(&self) -> &str {
        if self.namespace.is_empty() {
            &self.key
        } else {
            self.key.get(self.namespace.len() + 1..).unwrap_or("")
        }
    }
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlicePortRec {
    /// Name ("" when unnamed).
    pub name: Arc<str>,
    /// Protocol, when one we support ("" is TCP).
    pub proto: Option<Proto>,
    /// Port, when a usable one.
    pub port: Option<u16>,
}

/// An endpoint with a usable first address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRec {
    /// Its first address.
    pub addr: IpAddr,
    /// Ready (API default: true).
    pub ready: bool,
    /// Serving (API default: ready).
    pub serving: bool,
    /// Terminating (API default: false).
    pub terminating: bool,
    /// The node it runs on.
    pub node: Option<Arc<str>>,
}

/// What the ruleset reads of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRec {
    /// Namespace.
    pub namespace: Arc<str>,
    /// The service it belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<Box<str>>,
    /// Address type IPv4 or IPv6 (other slices are ignored).
    pub ip: bool,
    /// Ports in order.
    pub ports: Arc<[SlicePortRec]>,
    /// Endpoints with a usable address, in order.
    pub endpoints: Box<[EndpointRec]>,
}

impl SliceRec {
    /// The record of `s`, sharing strings through `names`.
    pub fn of(s: &EndpointSlice, names: &mut Interner) -> SliceRec {
        SliceRec {
            namespace: names.get(&s.metadata.namespace),
            service: s.service_name().map(Box::from),
            ip: s.address_type == "IPv4" || s.address_type == "IPv6",
            ports: {
                let ports: Vec<SlicePortRec> = s
                    .ports
                    .iter()
                    .map(|p| SlicePortRec {
                        name: names.get(p.name.as_deref().unwrap_or("")),
                        proto: Proto::from_k8s(p.protocol.as_deref().unwrap_or("")),
                        port: p.port.and_then(port_u16),
                    })
                    .collect();
                shared(&mut names.slice_ports, &ports[..])
            },
            endpoints: s
                .endpoints
                .iter()
                .filter_map(|e| {
                    let addr = e.addresses.first()?.parse::<IpAddr>().ok()?;
                    Some(EndpointRec {
                        addr,
                        ready: e.conditions.is_ready(),
                        serving: e.conditions.is_serving(),
                        terminating: e.conditions.is_terminating(),
                        node: e.node_name.as_deref().map(|n| names.get(n)),
                    })
                })
                .collect(),
        }
    }
}

impl SliceRec {
    /// Records of `slices`, sharing their strings.
    pub fn all_of<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<SliceRec> {
        let mut names = Interner::default();
        slices
            .into_iter()
            .map(|s| SliceRec::of(s, &mut names))
            .collect()
    }
}

/// Slices grouped by the (namespace, service name) they belong to; slices of no service are
/// left out.
pub fn by_service<'a>(
    slices: impl IntoIterator<Item = &'a SliceRec>,
) -> HashMap<(&'a str, &'a str), Vec<&'a SliceRec>> {
    let mut out: HashMap<(&str, &str), Vec<&SliceRec>> = HashMap::new();
    for s in slices {
        if let Some(name) = s.service.as_deref() {
            out.entry((&*s.namespace, name)).or_default().push(s);
        }
    }
    out
}

/// A service's `namespace/name` key (the name alone without a namespace).
fn service_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The (namespace, name) of every service whose rules may differ between `old` and `new`:
/// its record differs, or it is in one only, or the EndpointSlices that name it differ.
/// In order, each once.
pub fn changed_services<'a>(old: &'a Catalog, new: &'a Catalog) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    let id = |s: &'a ServiceRec| (&*s.namespace, s.name());
    let (mut a, mut b) = (
        old.services.iter().peekable(),
        new.services.iter().peekable(),
    );
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                std::cmp::Ordering::Less => {
                    out.push(id(x));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(id(y));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if x != y {
                        out.push(id(y));
                    }
                    a.next();
                    b.next();
                }
            },
            (Some(x), None) => {
                out.push(id(x));
                a.next();
            }
            (None, Some(y)) => {
                out.push(id(y));
                b.next();
            }
            (None, None) => break,
        }
    }
    // The slices, one service's run at a time, in the same order on both sides.
    let (mut a, mut b) = (
        groups(&old.slices).peekable(),
        groups(&new.slices).peekable(),
    );
    let mut mark = |(ns, name): (&'a str, Option<&'a str>)| {
        if let Some(name) = name {
            out.push((ns, name));
        }
    };
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                std::cmp::Ordering::Less => {
                    mark(x.0);
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    mark(y.0);
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if x.1 != y.1 {
                        mark(y.0);
                    }
                    a.next();
                    b.next();
                }
            },
            (Some(x), None) => {
                mark(x.0);
                a.next();
            }
            (None, Some(y)) => {
                mark(y.0);
                b.next();
            }
            (None, None) => break,
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The (namespace, service name) a slice belongs to: how a [`Catalog`] orders its slices.
fn owner(s: &SliceRec) -> (&str, Option<&str>) {
    (&s.namespace, s.service.as_deref())
}

/// Runs of slices of one owner, in order.
fn groups(slices: &[SliceRec]) -> impl Iterator<Item = ((&str, Option<&str>), &[SliceRec])> {
    slices
        .chunk_by(|a, b| owner(a) == owner(b))
        .filter_map(|run| run.first().map(|s| (owner(s), run)))
}

/// Services and EndpointSlices as records, one record per key (as in
/// [`crate::proxy::source::Model`]): services sorted by namespace/name, slices by the service
/// they belong to and then by namespace/name, so each service's slices sit side by side; in
/// plain arrays, which take half the bytes of a map filled in key order. Made by a
/// [`CatalogBuilder`].
#[derive(Debug, Default)]
pub struct Catalog {
    services: Box<[ServiceRec]>,
    slices: Box<[SliceRec]>,
}

impl Catalog {
    /// Services in key order.
    pub fn services(&self) -> impl Iterator<Item = &ServiceRec> {
        self.services.iter()
    }

    /// EndpointSlices by the service they name (namespace, service name; slices of no
    /// service first), in key order within one service.
    pub fn slices(&self) -> impl Iterator<Item = &SliceRec> {
        self.slices.iter()
    }

    /// The EndpointSlices of the service `name` of `namespace`, in key order.
    pub fn slices_of(&self, namespace: &str, name: &str) -> &[SliceRec] {
        let at = (namespace, Some(name));
        let start = self.slices.partition_point(|s| owner(s) < at);
        let len = self
            .slices
            .get(start..)
            .unwrap_or(&[])
            .partition_point(|s| owner(s) <= at);
        self.slices.get(start..start + len).unwrap_or(&[])
    }

    /// The service `name` of `namespace`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRec> {
        let key = service_key(namespace, name);
        self.services
            .binary_search_by(|s| (*s.key).cmp(key.as_str()))
            .ok()
            .and_then(|i| self.services.get(i))
    }

    /// Take from `old` every record equal to one of ours, giving ours in exchange: what did
    /// not change stays in the memory it was first given, and the records read anew that
    /// repeat it go with `old`. A daemon that reads its whole directory at each change and
    /// keeps the new catalog would otherwise move every record to new memory each time,
    /// scattered among the reading's freed buffers, and its heap would grow holes.
    pub fn keep_unchanged(&mut self, old: &mut Catalog) {
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.services.get_mut(i), old.services.get_mut(j)) {
            match a.key.cmp(&b.key) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if a == b {
                        std::mem::swap(a, b);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.slices.get(i), old.slices.get(j)) {
            let (ka, kb) = (owner(a), owner(b));
            if ka < kb {
                i += 1;
            } else if ka > kb {
                j += 1;
            } else {
                let mine = self.slices[i..]
                    .iter()
                    .take_while(|s| owner(s) == ka)
                    .count();
                let theirs = old.slices[j..]
                    .iter()
                    .take_while(|s| owner(s) == kb)
                    .count();
                if mine == theirs && self.slices[i..i + mine] == old.slices[j..j + theirs] {
                    self.slices[i..i + mine].swap_with_slice(&mut old.slices[j..j + theirs]);
                }
                i += mine;
                j += theirs;
            }
        }
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Collects objects into a [`Catalog`]: a later object replaces an earlier one of the same
/// kind and namespace/name.
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    services: Vec<ServiceRec>,
    slices: Vec<(Box<str>, SliceRec)>,
    names: Interner,
}

/// Sort by key, keeping the last of each run of equal keys (the latest upsert).
fn latest_by_key<T>(mut v: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    // Stable: equal keys stay in the order they came; reversed, the latest comes first and
    // dedup keeps it.
    v.sort_by(|a, b| key(a).cmp(key(b)));
    v.reverse();
    v.dedup_by(|later, first| key(later) == key(first));
    v.reverse();
    v
}

impl CatalogBuilder {
    /// Add an object (replacing an earlier one of the same key).
    pub fn add(&mut self, o: &Object) {
        match o {
            Object::Service(s) => self.add_service(s),
            Object::EndpointSlice(s) => self.add_slice(s),
        }
    }

    /// Add a Service (replacing an earlier one of the same key).
    pub fn add_service(&mut self, s: &Service) {
        self.services.push(ServiceRec::of(s, &mut self.names));
    }

    /// Add an EndpointSlice (replacing an earlier one of the same key).
    pub fn add_slice(&mut self, s: &EndpointSlice) {
        let r = SliceRec::of(s, &mut self.names);
        self.slices.push((s.metadata.key().into(), r));
    }

    /// The catalog.
    pub fn finish(self) -> Catalog {
        let services = latest_by_key(self.services, |s| &s.key);
        let slices = latest_by_key(self.slices, |(k, _)| k);
        let mut slices: Vec<SliceRec> = slices.into_iter().map(|(_, s)| s).collect();
        // Stable: key order within one service stays.
        slices.sort_by(|a, b| owner(a).cmp(&owner(b)));
        Catalog {
            services: services.into_boxed_slice(),
            slices: slices.into_boxed_slice(),
        }
    }
}
