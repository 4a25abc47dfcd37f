//! The IPVS mode's masquerading table against the host's kernel, in a network namespace of
//! our own: program it through our netlink layer, read it back with the real `nft` and with
//! our own dump, change one endpoint (a partial sync of element messages), and remove it as
//! `--cleanup` does. IPVS itself is not needed: the table is plain nf_tables (the packet test
//! with IPVS runs in the QEMU guests, cross/vm/guest/test.sh).
//!
//! The test binary re-runs itself under `unshare -n` (the namespace dies with that process,
//! pass or fail); the inner test is ignored unless TINYLET_NFT_INNER=1. Skips with a SKIPPED
//! line when not root, without `nft`, or when namespaces cannot be made.

#[path = "common/inner_netns.rs"]
mod inner_netns;

use std::process::Command;

use tinylet::k8s::discovery::EndpointSlice;
use tinylet::k8s::service::Service;
use tinylet::proxy::nft::ipvs_masq::{build_all, Config, TABLE};
use tinylet::proxy::nft::lower::NetlinkKernel;
use tinylet::proxy::nft::model::{Cidr, Family};
use tinylet::proxy::nft::readback::read_table;
use tinylet::proxy::nft::sync::{NftSyncer, Outcome};
use tinylet::proxy::source::{parse_manifest, Object};

#[test]
fn masquerading_table_reads_back_in_a_fresh_netns() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED (needs root for a network namespace)");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        println!("SKIPPED (no nft)");
        return;
    }
    inner_netns::run_inner("inner_masq");
}

fn objects(eps: &[&str]) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut y = "kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalIPs: [203.0.113.7]
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
---
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
"
    .to_string();
    for a in eps {
        y.push_str(&format!(
            "- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: n1}}\n"
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

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().unwrap();
    assert!(out.status.success(), "nft {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore]
fn inner_masq() {
    if !inner_netns::is_inner() {
        return;
    }
    // Someone else's table in the same namespace must stay as it is.
    nft(&["add", "table", "inet", "filter"]);
    nft(&["add chain inet filter input { type filter hook input priority 0; policy accept; }"]);
    let cfg = Config {
        node_name: "n1".into(),
        node_port_addresses: ["192.168.7.1".parse().unwrap()].into(),
        masquerade_all: false,
        cluster_cidrs: vec![Cidr::new("10.244.0.0".parse().unwrap(), 16)],
    };
    let mut syncer = NftSyncer::named(NetlinkKernel::open().unwrap(), TABLE);
    let (s, e) = objects(&["10.244.1.5"]);
    let tables = build_all(&s, &e, &cfg);
    let first = syncer.sync(tables.clone(), false).unwrap();
    assert!(matches!(first, Outcome::Full { .. }), "{first:?}");

    // The real nft reads what we meant.
    let text = nft(&["list", "table", "ip", TABLE]);
    for want in [
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr",
        "elements = { 10.244.1.5 . tcp . 8080 . 10.244.1.5 }",
        "elements = { 10.96.0.10 . tcp . 80 }",
        "elements = { 203.0.113.7 . tcp . 80 }",
        "elements = { tcp . 30080 }",
        "ip saddr 127.0.0.0/8 return",
        "ip daddr . meta l4proto . th dport @cluster-ips jump from-outside-cluster",
        "ip saddr 10.244.0.0/16 return",
        "ip daddr @nodeport-ips meta l4proto . th dport @node-ports jump mark-for-masquerade",
        "ip daddr . meta l4proto . th dport . ip saddr @loop-back masquerade fully-random",
        "meta mark set meta mark | 0x00004000",
        "meta mark & 0x00004000 == 0x00000000 return",
        "ct state new ip daddr @ipvs-ips reject",
        "type nat hook prerouting priority dstnat; policy accept;",
        "type nat hook postrouting priority srcnat; policy accept;",
    ] {
        assert!(text.contains(want), "nft is missing {want:?} in:\n{text}");
    }
    let json = nft(&["-j", "list", "ruleset"]);
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = j["nftables"].as_array().unwrap();
    let ours = |kind: &str| {
        items
            .iter()
            .filter(|i| i[kind]["table"] == TABLE && i[kind]["family"] == "ip")
            .count()
    };
    assert_eq!(ours("set"), tables[0].sets.len());
    assert_eq!(ours("chain"), tables[0].chains.len());
    assert_eq!(ours("rule"), tables[0].rule_count());

    // Our own dump decodes every rule and element back to the model.
    let mut reader = NetlinkKernel::open().unwrap();
    for t in &tables {
        let back = read_table(reader.client(), t.family, TABLE)
            .unwrap()
            .unwrap();
        assert_eq!(&back, t, "{:?} table read back", t.family);
    }

    // A second endpoint on this node: element messages only, the rules stay.
    let (s2, e2) = objects(&["10.244.1.5", "10.244.1.6"]);
    let again = syncer.sync(build_all(&s2, &e2, &cfg), false).unwrap();
    assert_eq!(again, Outcome::Partial { messages: 1 });
    assert!(nft(&["list", "set", "ip", TABLE, "loop-back"]).contains("10.244.1.6 . tcp . 8080"));
    assert_eq!(
        syncer.sync(build_all(&s2, &e2, &cfg), false).unwrap(),
        Outcome::Unchanged
    );

    // --cleanup: both families gone, the other table untouched.
    syncer.cleanup().unwrap();
    let rest = nft(&["list", "ruleset"]);
    assert!(!rest.contains(TABLE), "{rest}");
    assert!(rest.contains("table inet filter"), "{rest}");
    assert!(read_table(reader.client(), Family::Ip, TABLE)
        .unwrap()
        .is_none());
    println!("INNER OK");
}
