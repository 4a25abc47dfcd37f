//! Desired-table, diff and syncer tests: no kernel, no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::backend::{Backend, SyncMode, Syncer};
use super::desired::{desired_state, Config, DEFAULT_AFFINITY_SECONDS};
use super::diff::{after, diff};
use super::source::{parse_manifest, Model, Object};
use super::table::{
    Op, Proto, RealKey, RealParams, SchedName, State, VirtualKey, VirtualParams, VirtualServer,
};
use super::Error;
use crate::k8s::discovery::EndpointSlice;
use crate::k8s::service::Service;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vk(proto: Proto, a: &str, port: u16) -> VirtualKey {
    VirtualKey {
        proto,
        addr: ip(a),
        port,
    }
}

fn rk(a: &str, port: u16) -> RealKey {
    RealKey { addr: ip(a), port }
}

fn svc(yaml: &str) -> Service {
    match parse_manifest(yaml, false).unwrap().pop().unwrap() {
        Object::Service(s) => s,
        o => panic!("not a service: {o:?}"),
    }
}

fn slice(yaml: &str) -> EndpointSlice {
    match parse_manifest(yaml, false).unwrap().pop().unwrap() {
        Object::EndpointSlice(s) => s,
        o => panic!("not a slice: {o:?}"),
    }
}

const WEB: &str = "
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
";

/// An EndpointSlice for `web` with (address, ready, serving, terminating, node) endpoints.
fn web_slice(eps: &[(&str, bool, bool, bool, &str)]) -> EndpointSlice {
    let mut y = String::from(
        "kind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {name: http, port: 8080}\n- {name: dns, port: 5353, protocol: UDP}\nendpoints:\n",
    );
    for (a, r, s, t, n) in eps {
        y.push_str(&format!(
            "- addresses: [{a}]\n  conditions: {{ready: {r}, serving: {s}, terminating: {t}}}\n  nodeName: {n}\n"
        ));
    }
    slice(&y)
}

fn cfg() -> Config {
    Config {
        scheduler: SchedName::RR,
        node_name: "n1".into(),
        node_addresses: [ip("192.168.1.10"), ip("fd00:1::10")].into_iter().collect(),
    }
}

fn reals(st: &State, k: VirtualKey) -> Vec<RealKey> {
    st.services[&k].reals.keys().copied().collect()
}

#[test]
fn cluster_ip_and_node_port_virtual_servers() {
    let s = web_slice(&[
        ("10.244.0.5", true, true, false, "n1"),
        ("10.244.1.5", true, true, false, "n2"),
    ]);
    let d = desired_state(&[svc(WEB)], &[s], &cfg());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let st = &d.state;
    // 2 ports × (cluster IP + one IPv4 node address); the IPv6 node address does not match.
    assert_eq!(st.services.len(), 3);
    let http = vk(Proto::Tcp, "10.96.0.10", 80);
    assert_eq!(
        reals(st, http),
        vec![rk("10.244.0.5", 8080), rk("10.244.1.5", 8080)]
    );
    assert_eq!(
        reals(st, vk(Proto::Udp, "10.96.0.10", 53)),
        vec![rk("10.244.0.5", 5353), rk("10.244.1.5", 5353)]
    );
    assert_eq!(reals(st, vk(Proto::Tcp, "192.168.1.10", 30080)).len(), 2);
    assert_eq!(st.services[&http].params.scheduler, "rr");
    assert_eq!(st.services[&http].params.affinity_timeout, None);
    assert_eq!(
        st.services[&http].reals[&rk("10.244.0.5", 8080)],
        RealParams {
            weight: 1,
            masquerade: true
        }
    );
    // Only cluster (and external) IPs are bound locally, never node addresses.
    assert_eq!(st.addresses, [ip("10.96.0.10")].into_iter().collect());
}

#[test]
fn headless_external_name_and_other_namespaces_are_ignored() {
    let headless =
        svc("kind: Service\nmetadata: {name: h}\nspec: {clusterIP: None, ports: [{port: 80}]}");
    let ext =
        svc("kind: Service\nmetadata: {name: e}\nspec: {type: ExternalName, ports: [{port: 80}]}");
    let mut other_ns = web_slice(&[("10.244.0.9", true, true, false, "n1")]);
    other_ns.metadata.namespace = "prod".into();
    let d = desired_state(&[headless, ext, svc(WEB)], &[other_ns], &cfg());
    assert!(d.state.services.values().all(|v| v.reals.is_empty()));
    assert_eq!(d.state.services.len(), 3);
}

#[test]
fn external_ips_and_session_affinity() {
    let s = svc("
kind: Service
metadata: {name: a}
spec:
  clusterIP: 10.96.0.20
  externalIPs: [203.0.113.5, bogus]
  sessionAffinity: ClientIP
  ports: [{port: 443}]
");
    let d = desired_state(std::slice::from_ref(&s), &[], &cfg());
    assert_eq!(d.warnings.len(), 1);
    let ext = vk(Proto::Tcp, "203.0.113.5", 443);
    assert_eq!(
        d.state.services[&ext].params.affinity_timeout,
        Some(DEFAULT_AFFINITY_SECONDS)
    );
    assert!(d.state.addresses.contains(&ip("203.0.113.5")));
    let mut s2 = s;
    s2.spec.session_affinity_config =
        svc("kind: Service\nspec: {sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}}")
            .spec
            .session_affinity_config;
    let d2 = desired_state(&[s2], &[], &cfg());
    assert_eq!(d2.state.services[&ext].params.affinity_timeout, Some(60));
    // A changed affinity is an edit of the virtual server, not a re-create.
    let ops = diff(&d2.state, &d.state, &BTreeSet::new());
    assert_eq!(ops.len(), 2);
    assert!(ops
        .iter()
        .all(|o| matches!(o, Op::EditVirtual(_, p) if p.affinity_timeout == Some(60))));
}

#[test]
fn one_endpoint_change_is_one_op() {
    let c = cfg();
    let before = desired_state(
        &[svc(WEB)],
        &[web_slice(&[("10.244.0.5", true, true, false, "n1")])],
        &c,
    );
    let after = desired_state(
        &[svc(WEB)],
        &[web_slice(&[
            ("10.244.0.5", true, true, false, "n1"),
            ("10.244.0.6", true, true, false, "n1"),
        ])],
        &c,
    );
    let only_cluster = |st: &State| {
        let mut st = st.clone();
        st.services
            .retain(|k, _| k.addr == ip("10.96.0.10") && k.port == 80);
        st
    };
    let (b, a) = (only_cluster(&before.state), only_cluster(&after.state));
    let none = BTreeSet::new();
    assert_eq!(
        diff(&a, &b, &none),
        vec![Op::AddReal(
            vk(Proto::Tcp, "10.96.0.10", 80),
            rk("10.244.0.6", 8080),
            RealParams::default()
        )]
    );
    assert_eq!(
        diff(&b, &a, &none),
        vec![Op::DelReal(
            vk(Proto::Tcp, "10.96.0.10", 80),
            rk("10.244.0.6", 8080)
        )]
    );
    assert!(diff(&a, &a, &none).is_empty());
    // Across all three virtual servers of the service, one endpoint is one op per server.
    assert_eq!(diff(&after.state, &before.state, &none).len(), 3);
}

#[test]
fn terminating_endpoints_follow_upstream_fallback() {
    let http = vk(Proto::Tcp, "10.96.0.10", 80);
    // A ready endpoint exists: terminating ones are not used.
    let d = desired_state(
        &[svc(WEB)],
        &[web_slice(&[
            ("10.244.0.5", true, true, false, "n1"),
            ("10.244.0.6", false, true, true, "n1"),
        ])],
        &cfg(),
    );
    assert_eq!(reals(&d.state, http), vec![rk("10.244.0.5", 8080)]);
    // None ready: serving + terminating ones are used, not-serving ones never.
    let d = desired_state(
        &[svc(WEB)],
        &[web_slice(&[
            ("10.244.0.6", false, true, true, "n1"),
            ("10.244.0.7", false, false, true, "n1"),
        ])],
        &cfg(),
    );
    assert_eq!(reals(&d.state, http), vec![rk("10.244.0.6", 8080)]);
    // None ready, none terminating: no real servers.
    let d = desired_state(
        &[svc(WEB)],
        &[web_slice(&[("10.244.0.8", false, false, false, "n1")])],
        &cfg(),
    );
    assert!(reals(&d.state, http).is_empty());
}

#[test]
fn local_traffic_policies() {
    let mut s = svc(WEB);
    s.spec.external_traffic_policy = "Local".into();
    s.spec.internal_traffic_policy = None;
    let eps = [
        ("10.244.0.5", true, true, false, "n1"),
        ("10.244.1.5", true, true, false, "n2"),
    ];
    let d = desired_state(&[s.clone()], &[web_slice(&eps)], &cfg());
    assert_eq!(
        reals(&d.state, vk(Proto::Tcp, "192.168.1.10", 30080)),
        vec![rk("10.244.0.5", 8080)]
    );
    assert_eq!(reals(&d.state, vk(Proto::Tcp, "10.96.0.10", 80)).len(), 2);
    s.spec.internal_traffic_policy = Some("Local".into());
    let d = desired_state(&[s], &[web_slice(&eps)], &cfg());
    assert_eq!(
        reals(&d.state, vk(Proto::Tcp, "10.96.0.10", 80)),
        vec![rk("10.244.0.5", 8080)]
    );
}

#[test]
fn ipv6_and_dual_stack() {
    let s = svc("
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, 'fd00:96::10']
  ipFamilies: [IPv4, IPv6]
  ports: [{name: http, port: 80, nodePort: 30080}]
");
    let v6 = slice(
        "
kind: EndpointSlice
metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ['fd00:244::5']}]
",
    );
    let d = desired_state(
        &[s],
        &[v6, web_slice(&[("10.244.0.5", true, true, false, "n1")])],
        &cfg(),
    );
    assert_eq!(
        reals(&d.state, vk(Proto::Tcp, "fd00:96::10", 80)),
        vec![rk("fd00:244::5", 8080)]
    );
    assert_eq!(
        reals(&d.state, vk(Proto::Tcp, "10.96.0.10", 80)),
        vec![rk("10.244.0.5", 8080)]
    );
    assert_eq!(
        reals(&d.state, vk(Proto::Tcp, "fd00:1::10", 30080)),
        vec![rk("fd00:244::5", 8080)]
    );
    assert!(d.state.addresses.contains(&ip("fd00:96::10")));
}

#[test]
fn drift_is_repaired_and_foreign_servers_left_alone() {
    let c = cfg();
    let want = desired_state(
        &[svc(WEB)],
        &[web_slice(&[("10.244.0.5", true, true, false, "n1")])],
        &c,
    )
    .state;
    let mut kernel = want.clone();
    let http = vk(Proto::Tcp, "10.96.0.10", 80);
    // Someone added a real server, changed a weight and the scheduler, removed a service,
    // added one on our address and one elsewhere, and unbound our address.
    let sv = kernel.services.get_mut(&http).unwrap();
    sv.reals.insert(rk("10.9.9.9", 1), RealParams::default());
    sv.reals.insert(
        rk("10.244.0.5", 8080),
        RealParams {
            weight: 7,
            masquerade: true,
        },
    );
    sv.params.scheduler = SchedName::new("wrr").unwrap();
    kernel.services.remove(&vk(Proto::Udp, "10.96.0.10", 53));
    let template = kernel.services[&http].clone();
    kernel
        .services
        .insert(vk(Proto::Tcp, "10.96.0.10", 9999), template.clone());
    kernel
        .services
        .insert(vk(Proto::Tcp, "172.16.0.1", 80), template);
    kernel.addresses.clear();
    let ops = diff(&want, &kernel, &c.node_addresses);
    let text: Vec<String> = ops.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "bind address 10.96.0.10",
            "edit service TCP 10.96.0.10:80 rr",
            "edit destination 10.244.0.5:8080 weight 1 of TCP 10.96.0.10:80",
            "delete destination 10.9.9.9:1 from TCP 10.96.0.10:80",
            "add service UDP 10.96.0.10:53 rr",
            "add destination 10.244.0.5:5353 weight 1 to UDP 10.96.0.10:53",
            "delete service TCP 10.96.0.10:9999",
        ]
    );
}

#[test]
fn removed_service_is_deleted_and_unbound() {
    let c = cfg();
    let before = desired_state(&[svc(WEB)], &[], &c).state;
    let ops = diff(&State::default(), &before, &c.node_addresses);
    assert_eq!(
        ops.iter()
            .filter(|o| matches!(o, Op::DelVirtual(_)))
            .count(),
        3
    );
    assert_eq!(ops.last(), Some(&Op::UnbindAddress(ip("10.96.0.10"))));
}

/// A backend that records what it was asked, holding its state in memory.
#[derive(Default)]
struct Fake {
    state: State,
    dumps: usize,
    applied: usize,
    fail_next: bool,
}

impl Backend for Fake {
    fn dump(&mut self) -> Result<State, Error> {
        self.dumps += 1;
        Ok(self.state.clone())
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        self.applied += ops.len();
        if std::mem::take(&mut self.fail_next) {
            return vec!["injected".into()];
        }
        for op in ops {
            self.state.apply(op);
        }
        Vec::new()
    }
}

#[test]
fn syncer_trusts_last_apply_until_a_full_resync() {
    let c = cfg();
    let one = desired_state(
        &[svc(WEB)],
        &[web_slice(&[("10.244.0.5", true, true, false, "n1")])],
        &c,
    )
    .state;
    let two = desired_state(
        &[svc(WEB)],
        &[web_slice(&[
            ("10.244.0.5", true, true, false, "n1"),
            ("10.244.0.6", true, true, false, "n1"),
        ])],
        &c,
    )
    .state;
    let mut s = Syncer::new(Fake::default(), c.node_addresses.clone());
    let r = s.sync(&one, SyncMode::Incremental).unwrap();
    assert_eq!(s.backend().dumps, 1, "first sync reads the backend");
    assert!(r.failures.is_empty() && !r.ops.is_empty());
    let r = s.sync(&two, SyncMode::Incremental).unwrap();
    assert_eq!(s.backend().dumps, 1, "incremental sync does not dump");
    assert_eq!(r.ops.len(), 3);
    // Drift behind our back is invisible to incremental syncs, repaired by a full one.
    s.backend().state.services.clear();
    assert!(s.sync(&two, SyncMode::Incremental).unwrap().ops.is_empty());
    let r = s.sync(&two, SyncMode::Full).unwrap();
    assert_eq!(r.ops.len(), 3 + 6);
    assert_eq!(s.backend().state, two);
    // After a failure the next sync dumps again even if incremental.
    s.backend().fail_next = true;
    assert_eq!(
        s.sync(&one, SyncMode::Incremental).unwrap().failures,
        vec!["injected".to_string()]
    );
    let dumps = s.backend().dumps;
    s.sync(&one, SyncMode::Incremental).unwrap();
    assert_eq!(s.backend().dumps, dumps + 1);
    assert_eq!(s.backend().state, one);
}

#[test]
fn manifests_yaml_documents_lists_and_json() {
    let yaml = format!(
        "{WEB}\n---\n# comment only\n---\nkind: ConfigMap\nmetadata: {{name: x}}\n---\nkind: List\nitems:\n- kind: EndpointSlice\n  metadata: {{name: s, labels: {{kubernetes.io/service-name: web}}}}\n  addressType: IPv4\n"
    );
    let objs = parse_manifest(&yaml, false).unwrap();
    assert_eq!(objs.len(), 2);
    let json = r#"{"kind":"List","items":[{"kind":"Service","metadata":{"name":"j"},"spec":{"clusterIP":"10.96.0.30","ports":[{"port":1}]}}]}"#;
    let objs2 = parse_manifest(json, true).unwrap();
    let mut m = Model::default();
    m.replace(objs.into_iter().chain(objs2).collect());
    assert_eq!(m.services().len(), 2);
    assert_eq!(m.slices().len(), 1);
    assert_eq!(m.services()[0].metadata.namespace, "default");
    assert!(parse_manifest("kind: Service\nspec: [", false).is_err());
    assert!(parse_manifest("{", true).is_err());
    let d = tempdir();
    std::fs::write(d.join("a.yaml"), WEB).unwrap();
    std::fs::write(d.join("b.json"), json).unwrap();
    std::fs::write(d.join("notes.txt"), "ignored").unwrap();
    assert_eq!(super::source::load_dir(&d).unwrap().len(), 2);
    std::fs::write(d.join("c.yml"), "kind: Service\nspec: [").unwrap();
    let e = super::source::load_dir(&d).unwrap_err().to_string();
    assert!(e.contains("c.yml"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tinylet-proxy-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn load_balancer_vips_are_served_like_external_ips_proxy_mode_ones_are_not() {
    let lb = svc("
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
status:
  loadBalancer:
    ingress:
    - {ip: 203.0.113.7}
    - {ip: 203.0.113.8, ipMode: Proxy}
    - {hostname: lb.example.com}
");
    let s = web_slice(&[
        ("10.244.0.5", true, true, false, "n1"),
        ("10.244.1.5", true, true, false, "n2"),
    ]);
    let d = desired_state(&[lb], &[s], &cfg());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let st = &d.state;
    // The VIP only gets this node's endpoints (externalTrafficPolicy: Local), and is bound.
    assert_eq!(
        reals(st, vk(Proto::Tcp, "203.0.113.7", 80)),
        vec![rk("10.244.0.5", 8080)]
    );
    assert!(st.addresses.contains(&ip("203.0.113.7")));
    // ipMode Proxy: the balancer rewrites the destination; the node must not capture the IP.
    assert!(!st.services.contains_key(&vk(Proto::Tcp, "203.0.113.8", 80)));
    assert!(!st.addresses.contains(&ip("203.0.113.8")));
    // Cluster IP + VIP + node port on the IPv4 node address.
    assert_eq!(st.services.len(), 3);

    // Source ranges cannot be enforced without a packet filter: said, not silently dropped.
    let mut ranged = svc("
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  loadBalancerSourceRanges: [198.51.100.0/24]
  ports: [{name: http, port: 80, nodePort: 30080}]
");
    ranged.status.load_balancer.ingress = vec![crate::k8s::service::LoadBalancerIngress {
        ip: "203.0.113.7".into(),
        ip_mode: None,
    }];
    let d = desired_state(&[ranged], &[], &cfg());
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("loadBalancerSourceRanges"));
}

#[test]
fn scheduler_names_are_what_ipvs_can_hold() {
    assert_eq!(SchedName::new("rr"), Some(SchedName::RR));
    assert_eq!(SchedName::RR.to_string(), "rr");
    assert_eq!(format!("{:?}", SchedName::RR), "\"rr\"");
    assert_eq!(
        SchedName::new("fifteen-bytes-x").unwrap(),
        "fifteen-bytes-x"
    );
    assert_eq!(SchedName::new("sixteen-bytes-xy"), None);
    assert_eq!(SchedName::new(""), None);
    assert_eq!(SchedName::new("r\0r"), None);
    assert_eq!(SchedName::new("wrr").unwrap().as_str(), "wrr");
}

/// A small deterministic generator for the property test below (no extra crate).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A random table over a small universe, so that desired and current overlap: addresses
/// 10.0.0.0-7 (some bound), ports 80/81, two schedulers, affinity or not, reals 10.1.0.0-3
/// with weights 0-2.
fn random_state(g: &mut XorShift) -> State {
    let mut st = State::default();
    for _ in 0..g.below(6) {
        let a = IpAddr::from([10, 0, 0, g.below(8) as u8]);
        if g.below(2) == 0 {
            st.addresses.insert(a);
        }
        let key = VirtualKey {
            proto: if g.below(2) == 0 {
                Proto::Tcp
            } else {
                Proto::Udp
            },
            addr: a,
            port: 80 + g.below(2) as u16,
        };
        let params = VirtualParams {
            scheduler: if g.below(2) == 0 {
                SchedName::RR
            } else {
                SchedName::new("wrr").unwrap()
            },
            affinity_timeout: (g.below(2) == 0).then_some(600),
        };
        let mut reals = BTreeMap::new();
        for _ in 0..g.below(4) {
            reals.insert(
                RealKey {
                    addr: IpAddr::from([10, 1, 0, g.below(4) as u8]),
                    port: 8080,
                },
                RealParams {
                    weight: g.below(3) as u32,
                    masquerade: true,
                },
            );
        }
        st.services.insert(key, VirtualServer { params, reals });
    }
    st
}

#[test]
fn remembered_table_equals_current_with_every_op_applied() {
    let mut g = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let desired = random_state(&mut g);
        let current = random_state(&mut g);
        let node: BTreeSet<IpAddr> = (0..g.below(3))
            .map(|_| IpAddr::from([10, 0, 0, g.below(8) as u8]))
            .collect();
        let mut applied = current.clone();
        for op in diff(&desired, &current, &node) {
            applied.apply(&op);
        }
        assert_eq!(
            after(&desired, current.clone(), &node),
            applied,
            "desired {desired:?}\ncurrent {current:?}\nnode {node:?}"
        );
    }
}
