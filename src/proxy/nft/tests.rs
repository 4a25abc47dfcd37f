//! Ruleset, diff and syncer tests for nftables mode: no kernel, no I/O.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::catalog::{changed_services, Catalog, CatalogBuilder, LiveCatalog};
use super::diff::{changes, full, partial, service_changes, Change, Programmed, Transaction};
use super::model::{render, Cidr, Family, Key, SetKind, Stmt, Table, Verdict};
use super::ruleset::*;
use super::sync::{Kernel, NftSyncer, Outcome};
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;
use crate::proxy::apisource::Change as WatchChange;
use crate::proxy::source::{parse_manifest, Model, Object};
use crate::proxy::table::Proto;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn objects(yaml: &str) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for o in parse_manifest(yaml, false).unwrap() {
        match o {
            Object::Service(s) => svcs.push(s),
            Object::EndpointSlice(s) => slices.push(s),
        }
    }
    (svcs, slices)
}

fn cfg() -> Config {
    Config {
        node_name: "n1".into(),
        node_port_addresses: [ip("192.168.1.5")].into(),
        node_addresses: [ip("192.168.1.5"), ip("10.244.1.1")].into(),
        masquerade_all: false,
        cluster_cidrs: Vec::new(),
    }
}

/// `web`: ClusterIP 10.96.0.10:80 → 8080, NodePort 30080, external IP 203.0.113.7;
/// endpoints .5 (ready, n1), .6 (ready, n2), .7 (not ready).
fn web(extra_spec: &str, eps: &[(&str, bool, &str)]) -> String {
    let mut y = format!(
        "kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalIPs: [203.0.113.7]
  ports:
  - {{name: http, port: 80, targetPort: 8080, nodePort: 30080}}
{extra_spec}
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
    for (a, ready, node) in eps {
        y.push_str(&format!(
            "- {{addresses: [{a}], conditions: {{ready: {ready}}}, nodeName: {node}}}\n"
        ));
    }
    y
}

const EPS: &[(&str, bool, &str)] = &[
    ("10.244.1.5", true, "n1"),
    ("10.244.2.6", true, "n2"),
    ("10.244.2.7", false, "n2"),
];

fn table(yaml: &str, c: &Config) -> Table {
    let (s, e) = objects(yaml);
    let b = build(&s, &e, c, Family::Ip);
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    b.table
}

const SVC: &str = "service-default/web/tcp/http";
const EXT: &str = "external-default/web/tcp/http";
const EP5: &str = "endpoint-default/web/tcp/http__10.244.1.5/8080";
const EP6: &str = "endpoint-default/web/tcp/http__10.244.2.6/8080";

fn goto(c: &str) -> Stmt {
    Stmt::Verdict(Verdict::Goto(c.into()))
}

#[test]
fn cluster_ip_dispatches_through_one_map_and_spreads_without_sets() {
    let t = table(&web("", EPS), &cfg());
    let map = &t.sets[SERVICE_IPS];
    assert_eq!(map.kind, SetKind::AddrPortMap);
    assert_eq!(
        map.elements[&Key::AddrPort(ip("10.96.0.10"), Proto::Tcp, 80)],
        Some(Verdict::Goto(SVC.into()))
    );
    // Uniform spread over the 2 ready endpoints: 1/2, then the rest; never the not-ready one.
    assert_eq!(
        t.chains[SVC].rules,
        vec![
            vec![
                Stmt::Numgen {
                    modulus: 2,
                    value: 0
                },
                goto(EP5)
            ],
            vec![goto(EP6)],
        ]
    );
    assert!(!render(&t).contains("10.244.2.7"));
    // No per-service set: the sets are the fixed ones whatever the number of services.
    let names: BTreeSet<&str> = t.sets.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            NO_ENDPOINT_NODEPORTS,
            NO_ENDPOINT_SERVICES,
            NODE_IPS,
            NODEPORT_IPS,
            SERVICE_IPS,
            SERVICE_NODEPORTS
        ]
        .into()
    );
    // Endpoint chain: hairpin masquerade, then DNAT.
    assert_eq!(
        t.chains[EP5].rules,
        vec![
            vec![
                Stmt::Saddr(Cidr::host(ip("10.244.1.5")), true),
                Stmt::Verdict(Verdict::Jump(MARK_FOR_MASQUERADE.into()))
            ],
            vec![
                Stmt::L4Proto(Proto::Tcp),
                Stmt::Dnat(ip("10.244.1.5"), 8080)
            ],
        ]
    );
}

#[test]
fn spread_is_uniform() {
    // Rule i is reached with probability prod_{j<i}(1 - 1/(n-j)) and taken with 1/(n-i).
    let eps: Vec<(String, bool, String)> = (0..5)
        .map(|i| (format!("10.244.3.{i}"), true, "n1".to_string()))
        .collect();
    let eps: Vec<(&str, bool, &str)> = eps
        .iter()
        .map(|(a, r, n)| (a.as_str(), *r, n.as_str()))
        .collect();
    let t = table(&web("", &eps), &cfg());
    let mut reach = 1.0f64;
    for r in &t.chains[SVC].rules {
        let p = match r.first() {
            Some(Stmt::Numgen { modulus, value: 0 }) => 1.0 / f64::from(*modulus),
            _ => 1.0,
        };
        assert!((reach * p - 0.2).abs() < 1e-9, "{r:?}");
        reach *= 1.0 - p;
    }
}

#[test]
fn node_port_and_external_ip_masquerade_with_cluster_policy() {
    let t = table(&web("", EPS), &cfg());
    assert_eq!(
        t.sets[SERVICE_NODEPORTS].elements[&Key::Port(Proto::Tcp, 30080)],
        Some(Verdict::Goto(EXT.into()))
    );
    assert_eq!(
        t.sets[SERVICE_IPS].elements[&Key::AddrPort(ip("203.0.113.7"), Proto::Tcp, 80)],
        Some(Verdict::Goto(EXT.into()))
    );
    let ext = &t.chains[EXT].rules;
    assert_eq!(
        ext[0],
        vec![Stmt::Verdict(Verdict::Jump(MARK_FOR_MASQUERADE.into()))]
    );
    assert_eq!(ext.len(), 3);
    assert!(t.sets[NODEPORT_IPS]
        .elements
        .contains_key(&Key::Addr(ip("192.168.1.5"))));
    // The dispatch matches node ports only on node-port addresses.
    assert_eq!(
        t.chains[SERVICES].rules[1],
        vec![
            Stmt::DaddrIn(NODEPORT_IPS.into()),
            Stmt::DispatchPort(SERVICE_NODEPORTS.into())
        ]
    );
}

#[test]
fn local_external_policy_keeps_the_client_address_and_uses_local_endpoints() {
    let t = table(
        &web("  externalTrafficPolicy: Local", EPS),
        &Config {
            cluster_cidrs: vec![Cidr::new(ip("10.244.0.0"), 16)],
            ..cfg()
        },
    );
    let ext = &t.chains[EXT].rules;
    // Only the node's own traffic is masqueraded.
    assert_eq!(
        ext[0],
        vec![
            Stmt::SaddrIn(NODE_IPS.into()),
            Stmt::Verdict(Verdict::Jump(MARK_FOR_MASQUERADE.into()))
        ]
    );
    // Last rule: from outside, the only local endpoint.
    assert_eq!(ext.last(), Some(&vec![goto(EP5)]));
    // A node without local endpoints drops external traffic (not rejects).
    let none_local = table(
        &web(
            "  externalTrafficPolicy: Local",
            &[("10.244.2.6", true, "n2")],
        ),
        &cfg(),
    );
    assert!(!none_local.chains.contains_key(EXT));
    assert_eq!(
        none_local.sets[NO_ENDPOINT_NODEPORTS].elements[&Key::Port(Proto::Tcp, 30080)],
        Some(Verdict::Drop)
    );
    // Cluster IPs still work (internal policy Cluster).
    assert!(none_local.chains.contains_key(SVC));
}

#[test]
fn internal_local_policy_uses_only_local_endpoints() {
    let t = table(&web("  internalTrafficPolicy: Local", EPS), &cfg());
    assert_eq!(t.chains[SVC].rules, vec![vec![goto(EP5)]]);
}

#[test]
fn no_endpoints_are_rejected() {
    let t = table(&web("", &[("10.244.2.7", false, "n2")]), &cfg());
    let reject = Some(Verdict::Goto(REJECT_CHAIN.into()));
    assert_eq!(
        t.sets[NO_ENDPOINT_SERVICES].elements[&Key::AddrPort(ip("10.96.0.10"), Proto::Tcp, 80)],
        reject
    );
    assert_eq!(
        t.sets[NO_ENDPOINT_NODEPORTS].elements[&Key::Port(Proto::Tcp, 30080)],
        reject
    );
    assert!(t.sets[SERVICE_IPS].elements.is_empty());
    assert_eq!(t.chains[REJECT_CHAIN].rules, vec![vec![Stmt::Reject]]);
    assert!(!t.chains.contains_key(SVC));
}

#[test]
fn client_ip_affinity_checks_a_timed_set_before_spreading() {
    let t = table(
        &web(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}",
            EPS,
        ),
        &cfg(),
    );
    let aff5 = "affinity-default/web/tcp/http__10.244.1.5/8080";
    assert_eq!(t.sets[aff5].kind, SetKind::Affinity { timeout: 60 });
    let rules = &t.chains[SVC].rules;
    assert_eq!(rules[0], vec![Stmt::SaddrIn(aff5.into()), goto(EP5)]);
    assert!(matches!(rules[2].first(), Some(Stmt::Numgen { .. })));
    assert!(t.chains[EP5]
        .rules
        .contains(&vec![Stmt::UpdateSaddr(aff5.into())]));
}

#[test]
fn masquerade_all_and_cluster_cidr() {
    let all = table(
        &web("", EPS),
        &Config {
            masquerade_all: true,
            ..cfg()
        },
    );
    assert_eq!(
        all.chains[SVC].rules[0],
        vec![Stmt::Verdict(Verdict::Jump(MARK_FOR_MASQUERADE.into()))]
    );
    let cidr = Cidr::new(ip("10.244.0.0"), 16);
    let t = table(
        &web("", EPS),
        &Config {
            cluster_cidrs: vec![cidr],
            ..cfg()
        },
    );
    assert_eq!(
        t.chains[SVC].rules[0],
        vec![
            Stmt::Daddr(Cidr::host(ip("10.96.0.10")), true),
            Stmt::L4Proto(Proto::Tcp),
            Stmt::Dport(80),
            Stmt::Saddr(cidr, false),
            Stmt::Verdict(Verdict::Jump(MARK_FOR_MASQUERADE.into()))
        ]
    );
    // The masquerading chain SNATs only marked packets.
    assert_eq!(
        render(&t)
            .lines()
            .filter(|l| l.contains("masquerade fully-random"))
            .count(),
        1
    );
}

#[test]
fn ipv6_services_go_to_the_ip6_table_only() {
    let y = "kind: Service
metadata: {name: v6, namespace: default}
spec:
  clusterIP: fd00::10
  ports: [{port: 80}]
";
    let (s, e) = objects(y);
    let v4 = build(&s, &e, &cfg(), Family::Ip).table;
    let v6 = build(&s, &e, &cfg(), Family::Ip6).table;
    assert!(v4.sets[NO_ENDPOINT_SERVICES].elements.is_empty());
    assert_eq!(v6.sets[NO_ENDPOINT_SERVICES].elements.len(), 1);
    assert!(render(&v6).starts_with("table ip6 kube-proxy {"));
}

#[test]
fn unchanged_table_diffs_to_nothing_and_an_endpoint_change_is_small() {
    let old = table(&web("", EPS), &cfg());
    assert!(partial(&old, &old).unwrap().is_empty());
    let new = table(
        &web(
            "",
            &[
                ("10.244.1.5", true, "n1"),
                ("10.244.2.6", true, "n2"),
                ("10.244.2.7", true, "n2"),
            ],
        ),
        &cfg(),
    );
    let tx = partial(&old, &new).unwrap();
    // New endpoint chain + its 2 rules, flush + 3 rules of the service chain, flush + 4 of
    // the external chain.
    assert_eq!(tx.len(), 1 + 2 + 4 + 5, "{tx:#?}");
    assert!(matches!(tx.changes[0], Change::AddChain(..)));
    // And back: the removed endpoint's chain is flushed and deleted after the service chain
    // stopped jumping to it.
    let back = partial(&new, &old).unwrap();
    let del = back
        .changes
        .iter()
        .position(|c| matches!(c, Change::DelChain(_)))
        .unwrap();
    let flush_svc = back
        .changes
        .iter()
        .position(|c| *c == Change::FlushChain(SVC.into()))
        .unwrap();
    assert!(flush_svc < del);
}

#[test]
fn full_sync_replaces_the_table_in_one_transaction() {
    let t = table(&web("", EPS), &cfg());
    let tx = full(&t);
    assert_eq!(
        tx.changes[..3],
        [Change::AddTable, Change::DelTable, Change::AddTable]
    );
    let chains = tx
        .changes
        .iter()
        .filter(|c| matches!(c, Change::AddChain(..)))
        .count();
    assert_eq!(chains, t.chains.len());
    let rules = tx
        .changes
        .iter()
        .filter(|c| matches!(c, Change::AddRule(..)))
        .count();
    assert_eq!(rules, t.rule_count());
    // Every chain exists before any rule or element refers to it.
    let first_rule = tx
        .changes
        .iter()
        .position(|c| matches!(c, Change::AddRule(..)))
        .unwrap();
    let last_chain = tx
        .changes
        .iter()
        .rposition(|c| matches!(c, Change::AddChain(..)))
        .unwrap();
    assert!(last_chain < first_rule);
}

#[derive(Default)]
struct Recorder {
    batches: Vec<Vec<Transaction>>,
    generation: u32,
    fail: bool,
}

impl Kernel for Recorder {
    fn commit(&mut self, txs: &[Transaction]) -> Result<(), String> {
        if self.fail {
            return Err("refused".into());
        }
        self.batches.push(txs.to_vec());
        self.generation += 1;
        Ok(())
    }
    fn generation(&mut self) -> Result<Option<u32>, String> {
        Ok(Some(self.generation))
    }
}

#[test]
fn syncer_writes_nothing_when_nothing_changed_and_replaces_after_drift() {
    let t = table(&web("", EPS), &cfg());
    let mut s = NftSyncer::new(Recorder::default());
    assert!(matches!(
        s.sync(vec![t.clone()], false).unwrap(),
        Outcome::Full { .. }
    ));
    assert_eq!(s.sync(vec![t.clone()], false).unwrap(), Outcome::Unchanged);
    assert_eq!(s.sync(vec![t.clone()], true).unwrap(), Outcome::Unchanged);
    assert_eq!(s.kernel().batches.len(), 1);
    // Someone else committed: a resync replaces our table.
    s.kernel().generation += 1;
    assert!(matches!(
        s.sync(vec![t.clone()], true).unwrap(),
        Outcome::Full { .. }
    ));
    // A failed commit makes the next sync a full one.
    s.kernel().fail = true;
    let changed = table(&web("", &EPS[..1]), &cfg());
    assert!(s.sync(vec![changed.clone()], false).is_err());
    s.kernel().fail = false;
    assert!(matches!(
        s.sync(vec![changed], false).unwrap(),
        Outcome::Full { .. }
    ));
    assert_eq!(s.batches, 3);
}

#[test]
fn every_rule_lowers_and_reads_back_to_itself() {
    use super::lower::stmt_exprs;
    use super::readback::rule;
    let c = Config {
        cluster_cidrs: vec![Cidr::new(ip("10.244.0.0"), 16)],
        masquerade_all: false,
        ..cfg()
    };
    let t = table(
        &web(
            "  sessionAffinity: ClientIP\n  externalTrafficPolicy: Local",
            EPS,
        ),
        &c,
    );
    let mut n = 0;
    for (name, chain) in &t.chains {
        for r in &chain.rules {
            let exprs: Vec<_> = r.iter().flat_map(|s| stmt_exprs(Family::Ip, s)).collect();
            assert_eq!(rule(Family::Ip, &exprs).as_ref(), Ok(r), "chain {name}");
            n += 1;
        }
    }
    assert_eq!(n, t.rule_count());
    // IPv6 addresses and a prefix match.
    let r6 = vec![
        Stmt::Saddr(Cidr::new(ip("fd00::"), 64), false),
        Stmt::L4Proto(Proto::Udp),
        Stmt::Dnat(ip("fd00::5"), 53),
    ];
    let exprs: Vec<_> = r6.iter().flat_map(|s| stmt_exprs(Family::Ip6, s)).collect();
    assert_eq!(rule(Family::Ip6, &exprs), Ok(r6));
    // Something we never make is named, not guessed at.
    let odd = vec![crate::netlink::nftables::Expr::Counter {
        bytes: 0,
        packets: 0,
    }];
    assert!(rule(Family::Ip, &odd).unwrap_err().contains("counter"));
}

#[test]
fn element_keys_round_trip() {
    use super::lower::key_bytes;
    for k in [
        Key::AddrPort(ip("10.96.0.10"), Proto::Tcp, 80),
        Key::AddrPort(ip("fd00::10"), Proto::Sctp, 9000),
        Key::Port(Proto::Udp, 30053),
        Key::Addr(ip("192.168.1.5")),
        Key::AddrPortAddr(ip("10.244.1.10"), Proto::Tcp, 8080, ip("10.244.1.10")),
        Key::AddrPortAddr(ip("fd00::a"), Proto::Udp, 53, ip("fd00::a")),
    ] {
        let b = key_bytes(&k);
        let kind = match k {
            Key::AddrPort(..) => SetKind::AddrPortMap,
            Key::Port(..) => SetKind::PortMap,
            Key::Addr(..) => SetKind::Addrs,
            Key::AddrPortAddr(..) => SetKind::LoopBack,
        };
        assert_eq!(super::readback::decode_key(kind, &b), Some(k));
    }
    // Short or odd bytes from the kernel decode to nothing rather than panic.
    for b in [
        &[][..],
        &[6],
        &[1, 2, 3, 4, 5, 6, 7],
        &[99, 0, 0, 0, 0, 80, 0, 0],
    ] {
        let _ = super::readback::decode_key(SetKind::AddrPortMap, b);
        let _ = super::readback::decode_key(SetKind::PortMap, b);
        let _ = super::readback::decode_key(SetKind::LoopBack, b);
        let _ = super::readback::decode_key(SetKind::AddrPorts, b);
    }
}

#[test]
fn large_element_lists_are_split_below_the_netlink_attribute_limit() {
    use super::diff::Transaction;
    use super::lower::messages;
    let els: Vec<(Key, Option<Verdict>)> = (0..5000u32)
        .map(|i| {
            (
                Key::AddrPort(
                    IpAddr::from((0x0a60_0000 + i).to_be_bytes()),
                    Proto::Tcp,
                    80,
                ),
                Some(Verdict::Goto(format!(
                    "service-namespace-{i}/name-{i}/tcp/http"
                ))),
            )
        })
        .collect();
    let tx = Transaction {
        family: Family::Ip,
        table: TABLE.into(),
        changes: vec![Change::AddElements(SERVICE_IPS.into(), els)],
    };
    let msgs = messages(&tx, &mut 0);
    assert!(msgs.len() > 1);
    let mut total = 0;
    for m in &msgs {
        let crate::netlink::nftables::Msg::NewElems(e) = m else {
            panic!("{m:?}");
        };
        total += e.elems.len();
        let mut b = crate::netlink::wire::Builder::new();
        m.emit(&mut b, 1);
        assert!(b.len() < 64 * 1024, "{} bytes", b.len());
    }
    assert_eq!(total, 5000);
}

/// A second service, `db` (ClusterIP 10.96.0.20:5432, two ready endpoints), and an IPv6
/// one, `v6` (fd00::30:53/udp, one endpoint), beside `web`.
const OTHERS: &str = "
---
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: pg, port: 5432, targetPort: 5432}]
---
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [10.244.3.1], conditions: {ready: true}, nodeName: n2}
- {addresses: [10.244.3.2], conditions: {ready: true}, nodeName: n1}
---
kind: Service
metadata: {name: v6, namespace: other}
spec:
  clusterIP: fd00::30
  ipFamilies: [IPv6]
  ports: [{name: dns, port: 53, targetPort: 53, protocol: UDP}]
---
kind: EndpointSlice
metadata:
  name: v6-1
  namespace: other
  labels: {kubernetes.io/service-name: v6}
addressType: IPv6
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints:
- {addresses: ['fd00:244::9'], conditions: {ready: true}, nodeName: n2}
";

fn catalog(yaml: &str) -> Catalog {
    let mut b = CatalogBuilder::default();
    for o in parse_manifest(yaml, false).unwrap() {
        b.add(&o);
    }
    b.finish()
}

/// Program `before` whole; the piecewise change to `after` must be exactly the transaction
/// the whole-table diff makes, and the print updated in place must equal the new table's.
/// Returns the number of services seen as changed and the transactions.
fn piecewise_equals_whole(before: &str, after: &str, c: &Config) -> (usize, Vec<Transaction>) {
    let (old, new) = (catalog(before), catalog(after));
    let changed = changed_services(&old, &new);
    let mut txs = Vec::new();
    for f in [Family::Ip, Family::Ip6] {
        let was = build_records(old.services(), old.slices(), c, f);
        let now = build_records(new.services(), new.slices(), c, f);
        assert!(!was.overlap && !now.overlap);
        let print = Programmed::of(&was.table);
        // The whole-table diff names the chains to delete from the changed services' old
        // pieces, as the daemon does; naming every old chain makes the same transaction.
        let names = chain_names(&old, c, &changed);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let want = changes(&print, &now.table, &names).unwrap();
        let every: Vec<&str> = was.table.chains.keys().map(String::as_str).collect();
        assert_eq!(changes(&print, &now.table, &every).as_ref(), Some(&want));
        // Without names, chains that go cannot be deleted: only then is it refused.
        let deletes = want
            .changes
            .iter()
            .any(|c| matches!(c, Change::DelChain(_)));
        assert_eq!(changes(&print, &now.table, &[]).is_none(), deletes);
        let d = service_delta((&old, c), (&new, c), &changed, f).unwrap();
        let got = service_changes(&print, &d.old, &d.new).unwrap();
        assert_eq!(got, want, "{f:?}: piecewise\n{got:#?}\nwhole\n{want:#?}");
        let mut p = print.clone();
        p.apply(&d.old, &d.new);
        assert_eq!(p, Programmed::of(&now.table), "{f:?}: print after apply");
        txs.push(got);
    }
    (changed.len(), txs)
}

fn with_others(web_yaml: String) -> String {
    web_yaml + OTHERS
}

#[test]
fn piecewise_endpoint_changes_equal_the_whole_diff() {
    let base = with_others(web("", EPS));
    let c = cfg();
    // Readiness flip.
    let flipped = with_others(web(
        "",
        &[
            ("10.244.1.5", true, "n1"),
            ("10.244.2.6", true, "n2"),
            ("10.244.2.7", true, "n2"),
        ],
    ));
    let (n, txs) = piecewise_equals_whole(&base, &flipped, &c);
    assert_eq!(n, 1);
    assert!(!txs[0].is_empty() && txs[1].is_empty());
    piecewise_equals_whole(&flipped, &base, &c);
    // Endpoint added, endpoint removed.
    let added = with_others(web(
        "",
        &[
            ("10.244.1.5", true, "n1"),
            ("10.244.2.6", true, "n2"),
            ("10.244.2.7", false, "n2"),
            ("10.244.2.8", true, "n2"),
        ],
    ));
    piecewise_equals_whole(&base, &added, &c);
    piecewise_equals_whole(&added, &base, &c);
    let removed = with_others(web("", &EPS[1..]));
    piecewise_equals_whole(&base, &removed, &c);
    // No endpoint left (rejected), and back.
    let none = with_others(web("", &[]).replace("endpoints:\n", "endpoints: []\n"));
    let (_, txs) = piecewise_equals_whole(&base, &none, &c);
    assert!(txs[0]
        .changes
        .iter()
        .any(|c| matches!(c, Change::AddElements(m, _) if m == NO_ENDPOINT_SERVICES)));
    piecewise_equals_whole(&none, &base, &c);
    // Only local endpoints not ready: drop instead of reject, with the Local policy.
    let local = with_others(web("  internalTrafficPolicy: Local", EPS));
    let local_none = with_others(web("  internalTrafficPolicy: Local", &EPS[1..]));
    piecewise_equals_whole(&local, &local_none, &c);
    piecewise_equals_whole(&local_none, &local, &c);
    // The IPv6 service's endpoint changes.
    let v6_moved = base.replace("fd00:244::9", "fd00:244::10");
    let (n, txs) = piecewise_equals_whole(&base, &v6_moved, &c);
    assert_eq!(n, 1);
    assert!(txs[0].is_empty() && !txs[1].is_empty());
    // Nothing changed: nothing to send.
    let (n, txs) = piecewise_equals_whole(&base, &base, &c);
    assert_eq!(n, 0);
    assert!(txs.iter().all(Transaction::is_empty));
}

#[test]
fn piecewise_service_changes_equal_the_whole_diff() {
    let base = with_others(web("", EPS));
    let c = cfg();
    // Service added and removed (web alone, then with the others).
    piecewise_equals_whole(&web("", EPS), &base, &c);
    piecewise_equals_whole(&base, &web("", EPS), &c);
    // A service whose EndpointSlice is gone, and back.
    let (head, _) = OTHERS.split_at(OTHERS.find("kind: EndpointSlice").unwrap());
    let no_db_slice = web("", EPS) + head.trim_end().trim_end_matches("---");
    piecewise_equals_whole(&base, &no_db_slice, &c);
    piecewise_equals_whole(&no_db_slice, &base, &c);
    // Affinity on and off.
    let sticky = with_others(web(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}",
        EPS,
    ));
    piecewise_equals_whole(&base, &sticky, &c);
    piecewise_equals_whole(&sticky, &base, &c);
    // Its timeout changes: the sets change type.
    let stickier = sticky.replace("timeoutSeconds: 60", "timeoutSeconds: 90");
    let (old, new) = (catalog(&sticky), catalog(&stickier));
    let changed = changed_services(&old, &new);
    let was = build_records(old.services(), old.slices(), &c, Family::Ip);
    let d = service_delta((&old, &c), (&new, &c), &changed, Family::Ip).unwrap();
    let print = Programmed::of(&was.table);
    let now = build_records(new.services(), new.slices(), &c, Family::Ip);
    let names = chain_names(&old, &c, &changed);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        service_changes(&print, &d.old, &d.new),
        changes(&print, &now.table, &names)
    );
    // Node port changed, node port gone (ClusterIP), external policy Local.
    piecewise_equals_whole(
        &base,
        &base.replace("nodePort: 30080", "nodePort: 30081"),
        &c,
    );
    let cluster_ip = base
        .replace("type: NodePort", "type: ClusterIP")
        .replace(", nodePort: 30080", "")
        .replace("  externalIPs: [203.0.113.7]\n", "");
    piecewise_equals_whole(&base, &cluster_ip, &c);
    piecewise_equals_whole(&cluster_ip, &base, &c);
    piecewise_equals_whole(
        &base,
        &with_others(web("  externalTrafficPolicy: Local", EPS)),
        &c,
    );
    // Several services at once.
    let both = base
        .replace("10.244.3.2", "10.244.3.3")
        .replace("nodePort: 30080", "nodePort: 30082");
    let (n, _) = piecewise_equals_whole(&base, &both, &c);
    assert_eq!(n, 2);
}

#[test]
fn piecewise_refuses_a_name_or_key_taken_by_another_service() {
    let c = cfg();
    let base = with_others(web("", EPS));
    // db moves onto web's cluster IP and port: a key web holds.
    let clash = base
        .replace("clusterIP: 10.96.0.20", "clusterIP: 10.96.0.10")
        .replace("port: 5432, targetPort", "port: 80, targetPort");
    let (old, new) = (catalog(&base), catalog(&clash));
    let changed = changed_services(&old, &new);
    let was = build_records(old.services(), old.slices(), &c, Family::Ip);
    let now = build_records(new.services(), new.slices(), &c, Family::Ip);
    assert!(!was.overlap && now.overlap);
    let d = service_delta((&old, &c), (&new, &c), &changed, Family::Ip).unwrap();
    assert_eq!(
        service_changes(&Programmed::of(&was.table), &d.old, &d.new),
        None
    );
    // Both services change onto one key at once: no delta.
    let clash_both = catalog(&clash.replace("10.244.1.5", "10.244.1.9"));
    let changed = changed_services(&old, &clash_both);
    assert_eq!(changed.len(), 2);
    assert_eq!(
        service_delta((&old, &c), (&clash_both, &c), &changed, Family::Ip),
        None
    );
    // A print that does not hold what the old pieces say: refused, not guessed.
    let moved = base.replace("10.244.3.2", "10.244.3.3");
    let d = service_delta(
        (&old, &c),
        (&catalog(&moved), &c),
        &changed_services(&old, &catalog(&moved)),
        Family::Ip,
    )
    .unwrap();
    let empty = Programmed::of(&Table::new(Family::Ip, TABLE));
    assert_eq!(service_changes(&empty, &d.old, &d.new), None);
}

#[test]
fn syncer_changes_services_in_place_and_replaces_after_a_failed_commit() {
    let c = cfg();
    let (old, new) = (
        catalog(&with_others(web("", EPS))),
        catalog(&with_others(web("", &EPS[1..]))),
    );
    let tables = |cat: &Catalog| -> Vec<Table> {
        [Family::Ip, Family::Ip6]
            .into_iter()
            .map(|f| build_records(cat.services(), cat.slices(), &c, f).table)
            .collect()
    };
    let deltas = |a: &Catalog, b: &Catalog| -> Vec<ServiceDelta> {
        let changed = changed_services(a, b);
        [Family::Ip, Family::Ip6]
            .into_iter()
            .map(|f| service_delta((a, &c), (b, &c), &changed, f).unwrap())
            .collect()
    };
    let mut s = NftSyncer::new(Recorder::default());
    // Nothing programmed yet: not piecewise.
    assert_eq!(s.sync_services(&deltas(&old, &new)).unwrap(), None);
    assert!(matches!(
        s.sync(tables(&old), false).unwrap(),
        Outcome::Full { .. }
    ));
    assert!(matches!(
        s.sync_services(&deltas(&old, &new)).unwrap(),
        Some(Outcome::Partial { .. })
    ));
    assert_eq!(s.kernel().batches.len(), 2);
    // The print now is the new tables': a whole resync finds nothing to do.
    assert_eq!(s.sync(tables(&new), true).unwrap(), Outcome::Unchanged);
    assert_eq!(
        s.sync_services(&deltas(&new, &new)).unwrap(),
        Some(Outcome::Unchanged)
    );
    // A failed commit: the next piecewise sync is refused, a whole one replaces.
    s.kernel().fail = true;
    assert!(s.sync_services(&deltas(&new, &old)).is_err());
    s.kernel().fail = false;
    assert_eq!(s.sync_services(&deltas(&new, &old)).unwrap(), None);
    assert!(matches!(
        s.sync(tables(&old), false).unwrap(),
        Outcome::Full { .. }
    ));
    assert_eq!(s.batches, 3);
}

#[test]
fn a_catalog_read_anew_keeps_the_unchanged_records_of_the_old_one() {
    let base = with_others(web("", EPS));
    let moved = base.replace("10.244.3.2", "10.244.3.3");
    let mut old = catalog(&base);
    let mut new = catalog(&moved);
    let (old_copy, new_copy) = (catalog(&base), catalog(&moved));
    let web_at = old.service("default", "web").unwrap().key.as_ptr();
    let web_slice_at = old.slices_of("default", "web")[0].endpoints.as_ptr();
    let db_slice_at = old.slices_of("default", "db")[0].endpoints.as_ptr();
    new.keep_unchanged(&mut old);
    // Same values on both sides as before.
    assert!(new.services().eq(new_copy.services()) && new.slices().eq(new_copy.slices()));
    assert!(old.services().eq(old_copy.services()) && old.slices().eq(old_copy.slices()));
    // The unchanged records moved over; db's changed slice did not.
    assert_eq!(new.service("default", "web").unwrap().key.as_ptr(), web_at);
    assert_eq!(
        new.slices_of("default", "web")[0].endpoints.as_ptr(),
        web_slice_at
    );
    assert_ne!(
        new.slices_of("default", "db")[0].endpoints.as_ptr(),
        db_slice_at
    );
    assert_eq!(new.slices_of("default", "nope"), &[]);
}

#[test]
fn a_catalog_orders_slices_by_service_without_changing_the_tables() {
    // Slices named so that key order and service order differ.
    let yaml = with_others(web("", EPS)).replace("name: db-1", "name: zz-db-1")
        + "
---
kind: EndpointSlice
metadata:
  name: aa-web-2
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.4.4], conditions: {ready: true}, nodeName: n2}
---
kind: EndpointSlice
metadata: {name: orphan, namespace: default}
addressType: IPv4
endpoints:
- {addresses: [10.244.9.9]}
";
    let (s, e) = objects(&yaml);
    let cat = catalog(&yaml);
    assert_eq!(cat.slices_of("default", "web").len(), 2);
    assert_eq!(cat.slices_of("default", "db").len(), 1);
    for f in [Family::Ip, Family::Ip6] {
        assert_eq!(
            build_records(cat.services(), cat.slices(), &cfg(), f),
            build(&s, &e, &cfg(), f)
        );
    }
}

/// The one object of `yaml`.
fn one(yaml: &str) -> Object {
    let mut v = parse_manifest(yaml, false).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0)
}

/// Follows a [`LiveCatalog`] with the objects themselves and, at each sync, checks it against
/// a catalog built from those objects: the same records, the changed services exactly those
/// whose records differ from the last sync's, and their pieces turn the last sync's tables
/// into the new ones.
struct Follow {
    live: LiveCatalog,
    objects: Model,
    synced: Catalog,
}

impl Follow {
    fn new() -> Follow {
        Follow {
            live: LiveCatalog::default(),
            objects: Model::default(),
            synced: Catalog::default(),
        }
    }

    fn apply(&mut self, c: WatchChange) {
        c.clone().apply(&mut self.objects);
        self.live.apply(c);
    }

    fn upsert(&mut self, yaml: &str) {
        self.apply(WatchChange::Upsert(one(yaml)));
    }

    fn delete(&mut self, yaml: &str) {
        self.apply(WatchChange::Delete(one(yaml)));
    }

    fn relist(&mut self, yaml: &str) {
        let (s, e) = objects(yaml);
        self.apply(WatchChange::Services(s));
        self.apply(WatchChange::Slices(e));
    }

    /// Check as above; returns the changed services.
    fn sync(&mut self) -> Vec<(String, String)> {
        let c = cfg();
        let mut want = CatalogBuilder::default();
        self.objects
            .service_refs()
            .for_each(|s| want.add_service(s));
        self.objects.slice_refs().for_each(|s| want.add_slice(s));
        let want = want.finish();
        assert_eq!(self.live.catalog(), &want);
        let changes = self.live.take_changes();
        let ids = changes.ids();
        assert_eq!(ids, changed_services(&self.synced, &want));
        for f in [Family::Ip, Family::Ip6] {
            let was = build_records(self.synced.services(), self.synced.slices(), &c, f);
            let now = build_records(want.services(), want.slices(), &c, f);
            let (s, e) = (self.objects.services(), self.objects.slices());
            assert_eq!(now, build(&s, &e, &c, f));
            let d =
                service_delta((&changes.before, &c), (self.live.catalog(), &c), &ids, f).unwrap();
            let mut print = Programmed::of(&was.table);
            print.apply(&d.old, &d.new);
            assert_eq!(print, Programmed::of(&now.table), "{f:?}");
        }
        let out = ids
            .iter()
            .map(|(ns, n)| (ns.to_string(), n.to_string()))
            .collect();
        // The daemon moves its records after a full sync: they stay the same records.
        drop(changes);
        self.live.compact();
        assert_eq!(self.live.catalog(), &want);
        self.synced = want;
        out
    }
}

fn ids(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(ns, n)| (ns.to_string(), n.to_string()))
        .collect()
}

const WEB_SVC: &str = "
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
";

fn slice(name: &str, service: Option<&str>, addr: &str) -> String {
    let label = service.map_or(String::new(), |s| {
        format!("\n  labels: {{kubernetes.io/service-name: {s}}}")
    });
    format!(
        "
kind: EndpointSlice
metadata:
  name: {name}
  namespace: default{label}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}, {{name: pg, port: 5432, protocol: TCP}}]
endpoints:
- {{addresses: [{addr}], conditions: {{ready: true}}, nodeName: n2}}
"
    )
}

#[test]
fn a_catalog_kept_change_by_change_equals_one_built_from_the_objects() {
    let mut f = Follow::new();
    let base = with_others(web("", EPS));
    f.relist(&base);
    assert_eq!(
        f.sync(),
        ids(&[("default", "db"), ("default", "web"), ("other", "v6")])
    );
    // Nothing between two syncs: nothing changed.
    assert!(f.sync().is_empty());

    // An endpoint change: its service only.
    f.upsert(web("", &EPS[1..]).split("---").nth(1).unwrap());
    assert_eq!(f.sync(), ids(&[("default", "web")]));

    // A second slice for web, in key order before the first.
    f.upsert(&slice("aa-web-2", Some("web"), "10.244.4.4"));
    assert_eq!(f.sync(), ids(&[("default", "web")]));

    // The slice moves to db: both services change.
    f.upsert(&slice("aa-web-2", Some("db"), "10.244.4.4"));
    assert_eq!(f.sync(), ids(&[("default", "db"), ("default", "web")]));

    // A slice of no service: no service changes, but the record is kept.
    f.upsert(&slice("orphan", None, "10.244.9.9"));
    assert!(f.sync().is_empty());
    // ...and it joins web.
    f.upsert(&slice("orphan", Some("web"), "10.244.9.9"));
    assert_eq!(f.sync(), ids(&[("default", "web")]));

    // The Service goes while its slices remain; then comes back.
    f.delete(WEB_SVC);
    assert_eq!(f.sync(), ids(&[("default", "web")]));
    assert!(f.live.catalog().service("default", "web").is_none());
    assert_eq!(f.live.catalog().slices_of("default", "web").len(), 2);
    f.upsert(WEB_SVC);
    assert_eq!(f.sync(), ids(&[("default", "web")]));

    // A delete whose object names another service than the one its slice was under (a
    // label changed between the last update seen and the delete).
    f.delete(&slice("orphan", Some("db"), "10.244.9.9"));
    assert_eq!(f.sync(), ids(&[("default", "web")]));
    // Deleting what is not there changes nothing.
    f.delete(&slice("nothing", Some("web"), "10.244.9.9"));
    f.delete(&WEB_SVC.replace("name: web", "name: nothing"));
    assert!(f.sync().is_empty());

    // Changed and changed back before a sync: nothing to do.
    f.upsert(&slice("aa-web-2", Some("db"), "10.244.4.5"));
    f.upsert(&slice("aa-web-2", Some("db"), "10.244.4.4"));
    assert!(f.sync().is_empty());

    // Several changes to one service between syncs: the first state is what it is compared
    // with.
    f.upsert(&slice("aa-web-2", Some("web"), "10.244.4.5"));
    f.upsert(&slice("aa-web-2", Some("db"), "10.244.4.6"));
    f.upsert(&slice("aa-web-2", Some("v6"), "10.244.4.7"));
    assert_eq!(f.sync(), ids(&[("default", "db"), ("default", "v6")]));
}

#[test]
fn a_relist_makes_the_catalog_exactly_the_listed_objects() {
    let mut f = Follow::new();
    let base = with_others(web("", EPS));
    f.relist(&base);
    f.upsert(&slice("aa-web-2", Some("web"), "10.244.4.4"));
    f.sync();
    // While the watch was down: db and its slice were deleted, web's extra slice too, and
    // an endpoint of web changed. The relists say so.
    let without_db = with_others(web("", &EPS[..2]))
        .split("---")
        .filter(|d| !d.contains("name: db"))
        .collect::<Vec<_>>()
        .join("---");
    f.relist(&without_db);
    assert_eq!(f.sync(), ids(&[("default", "db"), ("default", "web")]));
    assert!(f.live.catalog().service("default", "db").is_none());
    assert!(f.live.catalog().slices_of("default", "db").is_empty());
    assert_eq!(f.live.catalog().slices_of("default", "web").len(), 1);
    // The same lists again: nothing.
    f.relist(&without_db);
    assert!(f.sync().is_empty());
    // Only the Services re-listed (empty), then a slice change: every service goes.
    f.apply(WatchChange::Services(Vec::new()));
    f.upsert(&slice("aa-web-2", Some("web"), "10.244.4.4"));
    assert_eq!(f.sync(), ids(&[("default", "web"), ("other", "v6")]));
    assert!(f.live.catalog().is_empty());
    // An empty slice list: every slice goes.
    f.apply(WatchChange::Slices(Vec::new()));
    f.sync();
    assert_eq!(f.live.catalog().slices().count(), 0);
}

#[test]
fn a_catalog_kept_change_by_change_forgets_values_no_record_uses() {
    let mut live = LiveCatalog::default();
    // Many distinct port lists, one after the other for the same service.
    for port in 1000..1400 {
        live.apply(WatchChange::Upsert(one(
            &WEB_SVC.replace("nodePort: 30080", &format!("nodePort: {port}"))
        )));
        live.take_changes();
    }
    let mut b = CatalogBuilder::default();
    b.add(&one(&WEB_SVC.replace("nodePort: 30080", "nodePort: 1399")));
    assert_eq!(live.catalog(), &b.finish());
    assert!(live.kept_values() < 200, "{}", live.kept_values());
}
