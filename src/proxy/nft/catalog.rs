//! Services and EndpointSlices reduced to what the nftables ruleset reads of them, sans I/O.
//!
//! A parsed Service with its EndpointSlice takes about 3 KB (every field of the API types,
//! most of them empty); the records here keep only the fields [`super::ruleset`] reads,
//! with addresses parsed once and namespaces and port names shared, in a few hundred bytes.
//! The daemon holds a [`Catalog`] between syncs instead of the objects, and
//! [`super::ruleset::build`] over objects goes through the same records, so there is one
//! ruleset function either way. Unusable values (a bad address, an unknown protocol) are
//! kept as their text, so the ruleset still warns about them exactly as before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;
use crate::proxy::apisource::{Change, Fold};
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

    /// Number of values kept.
    fn len(&self) -> usize {
        self.strs.len() + self.ports.len() + self.slice_ports.len()
    }

    /// Forget the values no record uses any more.
    fn prune(&mut self) {
        self.strs.retain(|a| Arc::strong_count(a) > 1);
        self.ports.retain(|a| Arc::strong_count(a) > 1);
        self.slice_ports.retain(|a| Arc::strong_count(a) > 1);
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
    /// `namespace/name` of the slice itself.
    pub key: Box<str>,
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
            key: s.metadata.key().into(),
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
    let mut out = Vec::new();
    changed_records(&old.services, &new.services, &mut out);
    changed_runs(&old.slices, &new.slices, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// Into `out`: the services whose record differs between `old` and `new` or is in one only
/// (both in key order).
fn changed_records<'a>(
    old: &'a [ServiceRec],
    new: &'a [ServiceRec],
    out: &mut Vec<(&'a str, &'a str)>,
) {
    let id = |s: &'a ServiceRec| (&*s.namespace, s.name());
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
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
}

/// Into `out`: the services whose slices differ between `old` and `new` (both in catalog
/// order).
fn changed_runs<'a>(old: &'a [SliceRec], new: &'a [SliceRec], out: &mut Vec<(&'a str, &'a str)>) {
    let (mut a, mut b) = (groups(old).peekable(), groups(new).peekable());
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
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    services: Vec<ServiceRec>,
    slices: Vec<SliceRec>,
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
        self.slices
            .get(self.run((namespace, Some(name))))
            .unwrap_or(&[])
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

    /// The range of the slices of `owner` (namespace, service name or none).
    fn run(&self, owner_: (&str, Option<&str>)) -> Range<usize> {
        let start = self.slices.partition_point(|s| owner(s) < owner_);
        let len = self
            .slices
            .get(start..)
            .unwrap_or(&[])
            .partition_point(|s| owner(s) <= owner_);
        start..start + len
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
    slices: Vec<SliceRec>,
    names: Interner,
}

/// `v` without spare capacity: a catalog built whole holds no more than its records.
fn shrunk<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
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
        self.slices.push(SliceRec::of(s, &mut self.names));
    }

    /// The catalog.
    pub fn finish(self) -> Catalog {
        let services = latest_by_key(self.services, |s| &s.key);
        let mut slices = latest_by_key(self.slices, |s| &s.key);
        // Stable: key order within one service stays.
        slices.sort_by(|a, b| owner(a).cmp(&owner(b)));
        Catalog {
            services: shrunk(services),
            slices: shrunk(slices),
        }
    }
}

/// A service's (namespace, name), owned.
pub type ServiceId = (Box<str>, Box<str>);

fn owned(ids: Vec<(&str, &str)>) -> Vec<ServiceId> {
    ids.into_iter()
        .map(|(ns, n)| (ns.into(), n.into()))
        .collect()
}

/// How a service looked before its first change since [`LiveCatalog::take_changes`].
#[derive(Debug)]
struct Before {
    service: Option<ServiceRec>,
    slices: Vec<SliceRec>,
}

/// The services changed since the last [`LiveCatalog::take_changes`]: their records as they
/// were then (a catalog of those services only) and their ids, in order.
#[derive(Debug, Default)]
pub struct Changes {
    /// The changed services' records as they were.
    pub before: Catalog,
    /// The changed services, (namespace, name) in order, each once.
    pub services: Vec<ServiceId>,
}

impl Changes {
    /// The ids as [`super::ruleset::service_delta`] takes them.
    pub fn ids(&self) -> Vec<(&str, &str)> {
        self.services.iter().map(|(ns, n)| (&**ns, &**n)).collect()
    }
}

/// A [`Catalog`] kept up to date one object at a time, as the API watch reports them,
/// instead of the parsed objects: an object is reduced to its record as it arrives, and the
/// records of the services it touches are kept as they were until the next
/// [`LiveCatalog::take_changes`]. A change to one object costs a search and a move of the
/// records after it; a re-list compares the whole new set with the records and remembers
/// every service that differs, so objects deleted while the watch was down disappear.
#[derive(Debug, Default)]
pub struct LiveCatalog {
    catalog: Catalog,
    names: Interner,
    /// How many values `names` kept after its last pruning.
    names_kept: usize,
    before: BTreeMap<ServiceId, Before>,
}

impl LiveCatalog {
    /// The records now.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Copy every record into new memory and free the old. Records made while a list was
    /// decoded sit between its freed objects, one or two to a page, and keep those pages
    /// resident; made again once that memory was handed back
    /// ([`crate::proxy::heap::release_free_memory`]), they fill few pages.
    pub fn compact(&mut self) {
        let c = &mut self.catalog;
        *c = Catalog {
            services: c.services.to_vec(),
            slices: c.slices.to_vec(),
        };
    }

    /// How many shared values (names, port lists) it keeps.
    pub fn kept_values(&self) -> usize {
        self.names.len()
    }

    /// Fold one change from the API watch in.
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::Upsert(Object::Service(s)) => self.upsert_service(&s),
            Change::Upsert(Object::EndpointSlice(s)) => self.upsert_slice(&s),
            Change::Delete(Object::Service(s)) => self.delete_service(&s.metadata.key()),
            Change::Delete(Object::EndpointSlice(s)) => {
                let hint = (s.metadata.namespace.as_str(), s.service_name());
                self.delete_slice(&s.metadata.key(), hint);
            }
            Change::Services(v) => self.replace_services(&v),
            Change::Slices(v) => self.replace_slices(&v),
        }
    }

    /// Remember how the service (namespace, name) looks now, unless it changed already
    /// since the last [`LiveCatalog::take_changes`].
    fn note(&mut self, namespace: &str, name: &str) {
        let id: ServiceId = (namespace.into(), name.into());
        if self.before.contains_key(&id) {
            return;
        }
        let b = Before {
            service: self.catalog.service(namespace, name).cloned(),
            slices: self.catalog.slices_of(namespace, name).to_vec(),
        };
        self.before.insert(id, b);
    }

    /// Insert or replace a Service.
    pub fn upsert_service(&mut self, s: &Service) {
        let rec = ServiceRec::of(s, &mut self.names);
        self.note(&rec.namespace, rec.name());
        let services = &mut self.catalog.services;
        match services.binary_search_by(|x| x.key.cmp(&rec.key)) {
            Ok(i) => {
                if let Some(x) = services.get_mut(i) {
                    *x = rec;
                }
            }
            Err(i) => services.insert(i, rec),
        }
    }

    /// Remove the Service of key `namespace/name`.
    pub fn delete_service(&mut self, key: &str) {
        let services = &self.catalog.services;
        let Ok(i) = services.binary_search_by(|x| (*x.key).cmp(key)) else {
            return;
        };
        let Some(rec) = services.get(i) else {
            return;
        };
        let (ns, name) = (rec.namespace.clone(), Box::<str>::from(rec.name()));
        self.note(&ns, &name);
        self.catalog.services.remove(i);
    }

    /// Where the slice of key `key` is: first among the slices of `hint` (its namespace and
    /// service as the object names them), else anywhere (a slice that moved to another
    /// service, or a new one).
    fn find_slice(&self, key: &str, hint: (&str, Option<&str>)) -> Option<usize> {
        let run = self.catalog.run(hint);
        let slices = self.catalog.slices.get(run.clone()).unwrap_or(&[]);
        if let Ok(i) = slices.binary_search_by(|s| (*s.key).cmp(key)) {
            return Some(run.start + i);
        }
        self.catalog.slices.iter().position(|s| *s.key == *key)
    }

    /// Remove the slice of key `key` (`hint`: see [`LiveCatalog::find_slice`]).
    fn delete_slice(&mut self, key: &str, hint: (&str, Option<&str>)) {
        let Some(i) = self.find_slice(key, hint) else {
            return;
        };
        let Some(old) = self.catalog.slices.get(i) else {
            return;
        };
        if let Some(name) = old.service.clone() {
            let ns = old.namespace.clone();
            self.note(&ns, &name);
        }
        self.catalog.slices.remove(i);
    }

    /// Insert or replace an EndpointSlice (it may now name another service).
    pub fn upsert_slice(&mut self, s: &EndpointSlice) {
        let rec = SliceRec::of(s, &mut self.names);
        self.delete_slice(&rec.key, owner(&rec));
        if let Some(name) = rec.service.clone() {
            let ns = rec.namespace.clone();
            self.note(&ns, &name);
        }
        let at = (owner(&rec), &*rec.key);
        let i = self
            .catalog
            .slices
            .partition_point(|s| (owner(s), &*s.key) < at);
        self.catalog.slices.insert(i, rec);
    }

    /// Replace every Service (a re-list): those not in `v` are gone.
    pub fn replace_services(&mut self, v: &[Service]) {
        let mut b = CatalogBuilder::default();
        v.iter().for_each(|s| b.add_service(s));
        let new = b.finish().services;
        let mut changed = Vec::new();
        changed_records(&self.catalog.services, &new, &mut changed);
        let changed = owned(changed);
        self.note_all(&changed);
        self.catalog.services = new;
    }

    /// Replace every EndpointSlice (a re-list): those not in `v` are gone.
    pub fn replace_slices(&mut self, v: &[EndpointSlice]) {
        let mut b = CatalogBuilder::default();
        v.iter().for_each(|s| b.add_slice(s));
        let new = b.finish().slices;
        let mut changed = Vec::new();
        changed_runs(&self.catalog.slices, &new, &mut changed);
        let changed = owned(changed);
        self.note_all(&changed);
        self.catalog.slices = new;
    }

    /// [`LiveCatalog::note`] each of `ids`.
    fn note_all(&mut self, ids: &[ServiceId]) {
        for (ns, name) in ids {
            self.note(ns, name);
        }
    }

    /// The services changed since the last call, and forget them: the caller programs the
    /// catalog now. A service changed and changed back is left out.
    pub fn take_changes(&mut self) -> Changes {
        let mut services = Vec::new();
        let mut before = Catalog::default();
        for (id, b) in std::mem::take(&mut self.before) {
            let (ns, name) = (&*id.0, &*id.1);
            if b.service.as_ref() == self.catalog.service(ns, name)
                && b.slices.as_slice() == self.catalog.slices_of(ns, name)
            {
                continue;
            }
            before.services.extend(b.service);
            before.slices.extend(b.slices);
            services.push(id);
        }
        // Values of records gone (a port list changed, a namespace deleted) would pile up:
        // drop them once there are as many again as when last pruned.
        if self.names.len() > 2 * self.names_kept + 64 {
            self.names.prune();
            self.names_kept = self.names.len();
        }
        before.services.sort_by(|a, b| a.key.cmp(&b.key));
        // Stable, and each service's slices are in key order already.
        before.slices.sort_by(|a, b| owner(a).cmp(&owner(b)));
        Changes { before, services }
    }
}

impl Fold for LiveCatalog {
    fn fold(&mut self, c: Change) {
        self.apply(c)
    }
}
