//! Real packets through the proxy: network namespaces made by the test (see
//! tests/common/netns.rs), `tinylet proxy --proxy-mode=nftables` programming the node
//! namespace from a manifest directory, and real HTTP connections from the node, from pods
//! and from an outside client. Everything lives in the test's own namespaces.

#[path = "common/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use netns::{Lab, CLIENT_IP, NODE_BRIDGE_IP, NODE_OUTSIDE_IP};

const TINYLET: &str = env!("CARGO_BIN_EXE_tinylet");
const CLUSTER_IP: &str = "10.96.0.10";
const NODE_PORT: u16 = 30080;

macro_rules! need_lab {
    () => {
        if !netns::available() {
            eprintln!("skipped: needs root, ip, nft and /usr/bin/busybox");
            return;
        }
    };
}

/// A Service `name` (NodePort) with `spec_extra` lines, and its EndpointSlice of
/// (pod address, ready, node name) endpoints on port 8080.
fn service(
    name: &str,
    cluster_ip: &str,
    node_port: u16,
    spec_extra: &str,
    eps: &[(&str, bool, &str)],
) -> String {
    let mut y = format!(
        "kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: NodePort
  clusterIP: {cluster_ip}
  ports:
  - {{name: http, port: 80, targetPort: 8080, nodePort: {node_port}}}
{spec_extra}
---
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:{}
",
        if eps.is_empty() { " []" } else { "" }
    );
    for (a, ready, node) in eps {
        y.push_str(&format!(
            "- {{addresses: [{a}], conditions: {{ready: {ready}}}, nodeName: {node}}}\n"
        ));
    }
    y
}

/// Write a manifest atomically (the proxy polls the directory).
fn write_manifest(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// Start `tinylet proxy --proxy-mode=nftables` in the node namespace on `dir`, and wait
/// (bounded) until the kernel holds `expect` in our table.
fn start_proxy(lab: &mut Lab, dir: &Path, extra: &[&str], expect: &str) {
    let mut cmd = lab.node_command(Path::new(TINYLET));
    cmd.args(["proxy", "--proxy-mode=nftables", "--hostname-override=n1"])
        .arg(format!("--proxy-manifest-path={}", dir.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    lab.spawn_in_node(&mut cmd).unwrap();
    wait_for_table(lab, expect);
}

fn wait_for_table(lab: &Lab, expect: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        last = lab.node_ruleset().unwrap_or_default();
        if last.contains(expect) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the node's ruleset never showed {expect:?}:\n{last}");
}

fn manifests(lab: &Lab) -> PathBuf {
    lab.dir.join("manifests")
}

fn pods_seen(lab: &Lab, from: &str, addr: &str, port: u16, tries: usize) -> Vec<(String, String)> {
    (0..tries)
        .map(|i| {
            lab.who(from, addr, port)
                .unwrap_or_else(|e| panic!("try {i} from {from} to {addr}:{port}: {e}"))
        })
        .collect()
}

/// Upstream: a Service's traffic goes to its ready endpoints only; kube-proxy picks one at
/// random per connection. From a pod in the cluster CIDR the source is kept.
#[test]
fn cluster_ip_spreads_over_ready_endpoints_from_node_and_pod() {
    need_lab!();
    let mut lab = Lab::new(4).unwrap();
    let (p0, p1, p2) = (
        lab.pods[0].ip.clone(),
        lab.pods[1].ip.clone(),
        lab.pods[2].ip.clone(),
    );
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "web.yaml",
        &service(
            "web",
            CLUSTER_IP,
            NODE_PORT,
            "",
            &[(&p0, true, "n1"), (&p1, true, "n1"), (&p2, false, "n1")],
        ),
    );
    start_proxy(
        &mut lab,
        &dir,
        &["--cluster-cidr=10.244.0.0/16"],
        CLUSTER_IP,
    );
    let node = lab.node.clone();
    let client_pod = lab.pods[3].clone();
    for from in [node.as_str(), client_pod.ns.as_str()] {
        let seen = pods_seen(&lab, from, CLUSTER_IP, 80, 20);
        let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.len() >= 2, "from {from}: {seen:?}");
        assert!(
            !names.contains("pod2"),
            "a not-ready endpoint answered: {seen:?}"
        );
        if from == client_pod.ns {
            assert!(
                seen.iter().all(|(_, peer)| *peer == client_pod.ip),
                "pod traffic inside the cluster CIDR keeps its source: {seen:?}"
            );
        }
    }
}

/// Upstream: with externalTrafficPolicy Cluster, node-port traffic is masqueraded so that
/// replies return through the node; with Local it keeps the client address and goes only to
/// endpoints on this node (no answer on a node without local endpoints).
#[test]
fn node_port_masquerades_with_cluster_policy_and_keeps_the_client_with_local() {
    need_lab!();
    let mut lab = Lab::new(3).unwrap();
    let (p0, p1) = (lab.pods[0].ip.clone(), lab.pods[1].ip.clone());
    let dir = manifests(&lab);
    let eps = [(p0.as_str(), true, "n1"), (p1.as_str(), true, "n2")];
    write_manifest(
        &dir,
        "cluster.yaml",
        &service("web", CLUSTER_IP, NODE_PORT, "", &eps),
    );
    write_manifest(
        &dir,
        "local.yaml",
        &service(
            "loc",
            "10.96.0.11",
            30081,
            "  externalTrafficPolicy: Local",
            &eps,
        ),
    );
    write_manifest(
        &dir,
        "remote.yaml",
        &service(
            "rem",
            "10.96.0.12",
            30082,
            "  externalTrafficPolicy: Local",
            &[(p1.as_str(), true, "n2")],
        ),
    );
    start_proxy(&mut lab, &dir, &[], "30082");
    let client = lab.client.clone();
    let seen = pods_seen(&lab, &client, NODE_OUTSIDE_IP, NODE_PORT, 10);
    for (name, peer) in &seen {
        assert!(name == "pod0" || name == "pod1", "{seen:?}");
        assert_eq!(peer, NODE_BRIDGE_IP, "masqueraded to the node: {seen:?}");
    }
    let seen = pods_seen(&lab, &client, NODE_OUTSIDE_IP, 30081, 10);
    for (name, peer) in &seen {
        assert_eq!(name, "pod0", "only the local endpoint: {seen:?}");
        assert_eq!(peer, CLIENT_IP, "the client's own address: {seen:?}");
    }
    let r = lab.who(&client, NODE_OUTSIDE_IP, 30082);
    assert!(r.is_err(), "no local endpoint, yet an answer: {r:?}");
}

/// Upstream: sessionAffinity ClientIP sends a client to the same endpoint while its entry
/// lives; a Service without endpoints rejects (ICMP) rather than letting connections hang.
#[test]
fn affinity_sticks_and_no_endpoints_are_refused_at_once() {
    need_lab!();
    let mut lab = Lab::new(3).unwrap();
    let eps: Vec<String> = lab.pods.iter().map(|p| p.ip.clone()).collect();
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "sticky.yaml",
        &service(
            "sticky",
            CLUSTER_IP,
            NODE_PORT,
            "  sessionAffinity: ClientIP",
            &[
                (&eps[0], true, "n1"),
                (&eps[1], true, "n1"),
                (&eps[2], true, "n1"),
            ],
        ),
    );
    write_manifest(
        &dir,
        "empty.yaml",
        &service("empty", "10.96.0.13", 30083, "", &[]),
    );
    start_proxy(&mut lab, &dir, &[], "10.96.0.13");
    let node = lab.node.clone();
    let seen = pods_seen(&lab, &node, CLUSTER_IP, 80, 20);
    let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 1, "20/20 the same endpoint: {seen:?}");
    let err = lab.who(&node, "10.96.0.13", 80).unwrap_err();
    assert!(err.contains("refused"), "{err}");
    let client = lab.client.clone();
    let err = lab.who(&client, NODE_OUTSIDE_IP, 30083).unwrap_err();
    assert!(
        err.contains("refused"),
        "node port without endpoints: {err}"
    );
}

/// Upstream: a pod reaching its own Service and landing on itself is masqueraded (hairpin),
/// otherwise its reply would not pass back through the node's DNAT.
#[test]
fn hairpin_pod_reaches_itself_through_its_service() {
    need_lab!();
    let mut lab = Lab::new(2).unwrap();
    let p0 = lab.pods[0].clone();
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "self.yaml",
        &service("self", CLUSTER_IP, NODE_PORT, "", &[(&p0.ip, true, "n1")]),
    );
    start_proxy(
        &mut lab,
        &dir,
        &["--cluster-cidr=10.244.0.0/16"],
        CLUSTER_IP,
    );
    let seen = pods_seen(&lab, &p0.ns, CLUSTER_IP, 80, 5);
    for (name, peer) in &seen {
        assert_eq!(name, &p0.name);
        assert_eq!(
            peer, NODE_BRIDGE_IP,
            "hairpin traffic is masqueraded: {seen:?}"
        );
    }
}

/// An endpoint removed from the slice gets no new connection after the sync; `--cleanup`
/// leaves no trace of our tables in the namespace.
#[test]
fn removed_endpoint_gets_no_new_connections_and_cleanup_leaves_nothing() {
    need_lab!();
    let mut lab = Lab::new(3).unwrap();
    let eps: Vec<String> = lab.pods.iter().map(|p| p.ip.clone()).collect();
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "web.yaml",
        &service(
            "web",
            CLUSTER_IP,
            NODE_PORT,
            "",
            &[(&eps[0], true, "n1"), (&eps[1], true, "n1")],
        ),
    );
    start_proxy(&mut lab, &dir, &[], &eps[1]);
    write_manifest(
        &dir,
        "web.yaml",
        &service("web", CLUSTER_IP, NODE_PORT, "", &[(&eps[0], true, "n1")]),
    );
    // Bounded wait for the partial sync to drop pod1's endpoint chain.
    let mut gone = false;
    for _ in 0..100 {
        if !lab.node_ruleset().unwrap_or_default().contains(&eps[1]) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "pod1 still in the table");
    let node = lab.node.clone();
    let seen = pods_seen(&lab, &node, CLUSTER_IP, 80, 20);
    assert!(seen.iter().all(|(n, _)| n == "pod0"), "{seen:?}");

    // The running proxy would put its table back at its next resync.
    lab.stop_node_processes();
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &node,
            TINYLET,
            "proxy",
            "--proxy-mode=nftables",
            "--cleanup",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rules = lab.node_ruleset().unwrap();
    assert!(!rules.contains("kube-proxy"), "{rules}");
}

/// Run `tinylet proxy ARGS` in the node namespace to its end (`--once`, `--cleanup`).
fn proxy_in_node(lab: &Lab, args: &[&str]) {
    let out = lab
        .node_command(Path::new(TINYLET))
        .arg("proxy")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "tinylet proxy {args:?}: {out:?}");
}

/// Cross-node paths (upstream: with externalTrafficPolicy Cluster a NodePort may land on an
/// endpoint on another node; it is masqueraded so that the reply comes back through the
/// node that did the DNAT). The second node's default route goes straight to the client:
/// without masquerading the reply would take that path and the connection would die. A pod
/// reaching a cluster IP whose endpoint is on the other node keeps its own address.
#[test]
fn node_port_to_an_endpoint_on_another_node_comes_back_through_this_node() {
    need_lab!();
    let mut lab = Lab::new(1).unwrap();
    let far = lab.add_remote_node().unwrap();
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "web.yaml",
        &service("web", CLUSTER_IP, NODE_PORT, "", &[(&far.ip, true, "n2")]),
    );
    let path = format!("--proxy-manifest-path={}", dir.display());
    let once = [
        "--proxy-mode=nftables",
        "--once",
        "--hostname-override=n1",
        "--cluster-cidr=10.244.0.0/16",
        path.as_str(),
    ];
    proxy_in_node(&lab, &once);

    let client = lab.client.clone();
    let seen = pods_seen(&lab, &client, NODE_OUTSIDE_IP, NODE_PORT, 5);
    for (name, peer) in &seen {
        assert_eq!(name, "far0", "{seen:?}");
        assert_eq!(
            peer, "192.168.78.1",
            "masqueraded to the node's own address: {seen:?}"
        );
    }
    let pod0 = lab.pods[0].clone();
    let seen = pods_seen(&lab, &pod0.ns, CLUSTER_IP, 80, 5);
    for (name, peer) in &seen {
        assert_eq!(name, "far0", "{seen:?}");
        assert_eq!(peer, &pod0.ip, "a pod's own address is kept: {seen:?}");
    }

    // The control: without the masquerading chain's rule the reply leaves the far node by its
    // own default route, and the client's connection gets no answer.
    let node = lab.node.clone();
    netns::run(&[
        "ip",
        "netns",
        "exec",
        &node,
        "nft",
        "flush",
        "chain",
        "ip",
        "kube-proxy",
        "masquerading",
    ])
    .unwrap();
    let r = lab.who(&client, NODE_OUTSIDE_IP, NODE_PORT);
    assert!(r.is_err(), "an answer without masquerading: {r:?}");

    proxy_in_node(&lab, &["--proxy-mode=nftables", "--cleanup"]);
    let rules = lab.node_ruleset().unwrap();
    assert!(!rules.contains("kube-proxy"), "{rules}");
}

/// IPv6 through the `ip6 kube-proxy` table: a single-stack IPv6 Service spreads over its
/// ready endpoints from the node (masqueraded: the node is outside the cluster CIDR), its
/// NodePort from the outside client is masqueraded with policy Cluster, and a pod keeps its
/// own address.
#[test]
fn ipv6_cluster_ip_and_node_port_through_the_ip6_table() {
    need_lab!();
    let mut lab = Lab::new(3).unwrap();
    lab.enable_ipv6().unwrap();
    let dir = manifests(&lab);
    let manifest = "kind: Service
metadata: {name: web6, namespace: default}
spec:
  type: NodePort
  ipFamilies: [IPv6]
  clusterIP: fd00:96::10
  clusterIPs: [fd00:96::10]
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30086}
---
kind: EndpointSlice
metadata:
  name: web6-1
  namespace: default
  labels: {kubernetes.io/service-name: web6}
addressType: IPv6
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ['fd00:10:244:1::10'], conditions: {ready: true}, nodeName: n1}
- {addresses: ['fd00:10:244:1::11'], conditions: {ready: true}, nodeName: n1}
- {addresses: ['fd00:10:244:1::12'], conditions: {ready: false}, nodeName: n1}
";
    write_manifest(&dir, "web6.yaml", manifest);
    let path = format!("--proxy-manifest-path={}", dir.display());
    proxy_in_node(
        &lab,
        &[
            "--proxy-mode=nftables",
            "--once",
            "--hostname-override=n1",
            "--cluster-cidr=10.244.0.0/16,fd00:10:244::/48",
            path.as_str(),
        ],
    );
    let rules = lab.node_ruleset().unwrap();
    assert!(rules.contains("table ip6 kube-proxy"), "{rules}");

    let node = lab.node.clone();
    let seen = pods_seen(&lab, &node, "[fd00:96::10]", 80, 20);
    let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["pod0", "pod1"]), "{seen:?}");
    for (_, peer) in &seen {
        assert_eq!(
            peer, "fd00:10:244:1::1",
            "masqueraded to the node: {seen:?}"
        );
    }
    let client = lab.client.clone();
    let seen = pods_seen(&lab, &client, "[fd00:77::1]", 30086, 10);
    for (name, peer) in &seen {
        assert!(name == "pod0" || name == "pod1", "{seen:?}");
        assert_eq!(
            peer, "fd00:10:244:1::1",
            "masqueraded to the node: {seen:?}"
        );
    }
    let pod2 = lab.pods[2].ns.clone();
    let seen = pods_seen(&lab, &pod2, "[fd00:96::10]", 80, 5);
    for (name, peer) in &seen {
        assert!(name == "pod0" || name == "pod1", "{seen:?}");
        assert_eq!(
            peer, "fd00:10:244:1::12",
            "a pod keeps its address: {seen:?}"
        );
    }

    proxy_in_node(&lab, &["--proxy-mode=nftables", "--cleanup"]);
    let rules = lab.node_ruleset().unwrap();
    assert!(!rules.contains("kube-proxy"), "{rules}");
}

/// `--once` programs the table in one batch and exits; `tinylet nft list` reads it back
/// through our netlink layer (every rule decodes to a statement we make), and the real `nft`
/// reads the same services, endpoints and spread from the kernel.
#[test]
fn once_then_read_back_by_tinylet_and_by_nft() {
    need_lab!();
    let lab = Lab::new(0).unwrap();
    let dir = manifests(&lab);
    write_manifest(
        &dir,
        "web.yaml",
        &service(
            "web",
            CLUSTER_IP,
            NODE_PORT,
            "  sessionAffinity: ClientIP",
            &[("10.244.1.10", true, "n1"), ("10.244.1.11", true, "n1")],
        ),
    );
    let run = |args: &[&str]| {
        let out = lab
            .node_command(Path::new(TINYLET))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let synced = run(&[
        "proxy",
        "--proxy-mode=nftables",
        "--once",
        &format!("--proxy-manifest-path={}", dir.display()),
    ]);
    assert!(synced.contains("full sync"), "{synced}");
    let ours = run(&["nft", "list"]);
    let real = lab.node_ruleset().unwrap();
    for text in [&ours, &real] {
        for want in [
            "10.96.0.10 . tcp . 80 : goto service-default/web/tcp/http",
            "tcp . 30080 : goto external-default/web/tcp/http",
            "numgen random mod 2 0 goto endpoint-default/web/tcp/http__10.244.1.10/8080",
            "dnat to 10.244.1.11:8080",
            "update @affinity-default/web/tcp/http__10.244.1.10/8080 { ip saddr }",
            "masquerade fully-random",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
    assert!(ours.starts_with("table ip kube-proxy {"), "{ours}");
    assert!(ours.contains("table ip6 kube-proxy {"), "{ours}");
}

/// An echo service on port 90 → 9090 with one endpoint per address in `eps` (all on n1).
fn echo_service(eps: &[&str]) -> String {
    let mut y = "kind: Service
metadata: {name: echo, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {name: echo, port: 90, targetPort: 9090}
---
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: echo, port: 9090, protocol: TCP}]
endpoints:
"
    .to_string();
    for a in eps {
        y.push_str(&format!(
            "- {{addresses: [{a}], conditions: {{ready: true}}, nodeName: n1}}\n"
        ));
    }
    y
}

/// Upstream kube-proxy keeps established TCP connections across syncs: the DNAT lives in
/// conntrack, and it clears conntrack entries only for UDP. So a connection keeps talking to
/// its endpoint when a partial sync removes that very endpoint, and when a full sync replaces
/// the whole table; only new connections follow the new rules.
#[test]
fn established_connection_survives_partial_and_full_syncs() {
    use std::io::{BufRead, BufReader, Write};
    need_lab!();
    let mut lab = Lab::new(2).unwrap();
    let pods = lab.pods.clone();
    // Each pod runs an echo server that first says which pod it is.
    for p in &pods {
        let script = lab.dir.join(format!("echo-{}", p.name));
        std::fs::write(&script, format!("#!/bin/sh\necho {}\nexec cat\n", p.name)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &p.ns, "/usr/bin/busybox", "nc", "-ll"])
            .args(["-p", "9090", "-e"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn_in_node(&mut cmd).unwrap();
    }
    let dir = manifests(&lab);
    let ips: Vec<&str> = pods.iter().map(|p| p.ip.as_str()).collect();
    write_manifest(&dir, "echo.yaml", &echo_service(&ips));
    start_proxy(&mut lab, &dir, &[], &format!("dnat to {}:9090", ips[1]));

    // A connection from the node to the cluster IP; bounded retries while nc starts listening.
    let (mut conn, lines, first) = (0..50)
        .find_map(|_| {
            let mut c = lab
                .node_command(Path::new("/usr/bin/busybox"))
                .args(["nc", "10.96.0.20", "90"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = c.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines() {
                    if tx.send(l.unwrap_or_default()).is_err() {
                        break;
                    }
                }
            });
            match rx.recv_timeout(Duration::from_secs(3)) {
                Ok(name) if !name.is_empty() => Some((c, rx, name)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    None
                }
            }
        })
        .expect("no connection to the echo service");
    let mine = pods.iter().position(|p| p.name == first).unwrap();
    let other = 1 - mine;
    let mut stdin = conn.stdin.take().unwrap();
    let mut echo = |word: &str| -> String {
        writeln!(stdin, "{word}").unwrap();
        stdin.flush().unwrap();
        lines
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| format!("no answer to {word}: {e}"))
    };
    assert_eq!(echo("before"), "before");

    // A partial sync removes the connection's own endpoint.
    write_manifest(&dir, "echo.yaml", &echo_service(&[ips[other]]));
    let mut gone = false;
    for _ in 0..100 {
        if !lab
            .node_ruleset()
            .unwrap_or_default()
            .contains(&format!("dnat to {}:9090", ips[mine]))
        {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "{}'s endpoint still in the table", pods[mine].name);
    assert_eq!(echo("after-partial"), "after-partial");

    // A full sync replaces the table in one batch: still the same connection.
    let out = lab
        .node_command(Path::new(TINYLET))
        .args([
            "proxy",
            "--proxy-mode=nftables",
            "--once",
            "--hostname-override=n1",
        ])
        .arg(format!("--proxy-manifest-path={}", dir.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("full sync"),
        "{out:?}"
    );
    assert_eq!(echo("after-full"), "after-full");
    let _ = conn.kill();
    let _ = conn.wait();
}
