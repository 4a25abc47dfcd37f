//! Against a real kernel with IPVS (the cross/vm guest): program services and destinations
//! through our netlink layer, read them back, edit, delete; create the dummy interface and
//! addresses; apply a manifest directory through the proxy code. Runs only with
//! TINYLET_IPVS_KERNEL=1 (as root, in a throwaway VM); otherwise prints SKIPPED and passes.
//!
//! Output for the VM script: our listings are printed between
//! `=== TINYLET <name> BEGIN ===` and `=== TINYLET <name> END ===` lines right after the
//! table was programmed, so `ipvsadm -Ln` taken at the end of a step can be compared.
//! The benchmark (`bench_sync`, run with `--ignored`) prints `BENCH ...` lines.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use nix::errno::Errno;
use tinylet::netlink::ipvs::{
    format_listing, DestRepr, Forward, Protocol, Request, ServiceKey, ServiceRepr, Timeouts,
    SVC_F_PERSISTENT,
};
use tinylet::netlink::wire::Builder;
use tinylet::netlink::{Error, Ipvs, Rtnl};
use tinylet::proxy::backend::{ipvs_requests, Backend, IpvsBackend, SyncMode, Syncer, DUMMY_LINK};
use tinylet::proxy::desired::{desired_state, Config};
use tinylet::proxy::diff::diff;
use tinylet::proxy::source::{load_dir, Model};
use tinylet::proxy::table::{
    Proto, RealKey, RealParams, SchedName, State, VirtualKey, VirtualParams, VirtualServer,
};

/// IPVS is global kernel state: tests take turns.
static KERNEL: Mutex<()> = Mutex::new(());

fn enabled() -> bool {
    if std::env::var("TINYLET_IPVS_KERNEL").as_deref() == Ok("1") {
        return true;
    }
    println!("SKIPPED (needs a kernel with IPVS: cross/vm)");
    false
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(p: Protocol, a: &str, port: u16) -> ServiceKey {
    ServiceKey::new(p, ip(a), port)
}

fn dest(a: &str, port: u16, weight: u32) -> DestRepr {
    let mut d = DestRepr::new(ip(a), port, Forward::Masq);
    d.weight = weight;
    d
}

fn listing(ipvs: &mut Ipvs) -> String {
    let info = ipvs.info().unwrap();
    format_listing(Some(&info), &ipvs.table().unwrap())
}

fn show(name: &str, text: &str) {
    println!("=== TINYLET {name} BEGIN ===");
    print!("{text}");
    println!("=== TINYLET {name} END ===");
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
";

#[test]
fn ipvs_services_and_destinations() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut ipvs = Ipvs::open().unwrap();
    println!("IPVS family id {:#x}", ipvs.family_id());
    let info = ipvs.info().unwrap();
    assert_eq!(info.version_string(), "1.2.1");
    ipvs.flush().unwrap();

    let web = key(Protocol::Tcp, "10.0.0.1", 80);
    let dns = key(Protocol::Udp, "10.0.0.1", 53);
    let v6 = key(Protocol::Tcp, "fd00::1", 443);
    let sticky = key(Protocol::Sctp, "10.0.0.2", 80);
    ipvs.add_service(&ServiceRepr::new(web, "rr")).unwrap();
    ipvs.add_service(&ServiceRepr::new(dns, "sh")).unwrap();
    ipvs.add_service(&ServiceRepr::new(v6, "rr")).unwrap();
    let mut st = ServiceRepr::new(sticky, "wlc");
    st.flags = SVC_F_PERSISTENT;
    st.timeout = 600;
    ipvs.add_service(&st).unwrap();
    ipvs.add_dest(&web, &dest("10.0.0.2", 8080, 1)).unwrap();
    ipvs.add_dest(&web, &dest("10.0.0.3", 8080, 3)).unwrap();
    ipvs.add_dest(&v6, &dest("fd00::2", 8443, 1)).unwrap();

    // Errors name the operation and the object.
    let e = ipvs.add_service(&ServiceRepr::new(web, "rr")).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST));
    assert_eq!(e.to_string(), "add service TCP 10.0.0.1:80: File exists");
    let e = ipvs
        .add_service(&ServiceRepr::new(
            key(Protocol::Tcp, "10.0.0.9", 1),
            "nosuch",
        ))
        .unwrap_err();
    println!("unknown scheduler: {e}");
    assert!(e.errno().is_some());

    let got = ipvs.service(&sticky).unwrap();
    assert_eq!(
        (
            got.scheduler.as_str(),
            got.flags & SVC_F_PERSISTENT,
            got.timeout
        ),
        ("wlc", 1, 600)
    );
    assert_eq!(ipvs.services().unwrap().len(), 4);
    let mut d = ipvs.dests(&web).unwrap();
    d.sort_by_key(|d| d.addr);
    assert_eq!(
        d,
        vec![dest("10.0.0.2", 8080, 1), dest("10.0.0.3", 8080, 3)]
    );

    ipvs.edit_service(&ServiceRepr::new(web, "wrr")).unwrap();
    ipvs.edit_dest(&web, &dest("10.0.0.3", 8080, 5)).unwrap();
    let text = listing(&mut ipvs);
    show("IPVS-EDITED", &text);
    // ipvsadm's order: family, then protocol number (SCTP is 132), address, port.
    let want = format!(
        "{HEADER}TCP  10.0.0.1:80 wrr
  -> 10.0.0.2:8080                Masq    1      0          0         
  -> 10.0.0.3:8080                Masq    5      0          0         
UDP  10.0.0.1:53 sh
SCTP 10.0.0.2:80 wlc persistent 600
TCP  [fd00::1]:443 rr
  -> [fd00::2]:8443               Masq    1      0          0         
"
    );
    assert_eq!(text, want);

    let t = Timeouts {
        tcp: 900,
        tcp_fin: 120,
        udp: 300,
    };
    ipvs.set_timeouts(t).unwrap();
    assert_eq!(ipvs.timeouts().unwrap(), t);

    ipvs.del_dest(&web, &dest("10.0.0.2", 8080, 1)).unwrap();
    assert_eq!(ipvs.dests(&web).unwrap().len(), 1);
    ipvs.del_service(&web).unwrap();
    let e = ipvs.del_service(&web).unwrap_err();
    println!("delete twice: {e}");
    assert!(e
        .to_string()
        .starts_with("delete service TCP 10.0.0.1:80: "));
    assert_eq!(ipvs.services().unwrap().len(), 3);

    // Batching: many requests, few sendmsg calls, one outcome each.
    let before = ipvs.counters();
    let reqs: Vec<Request> = (0..500u32)
        .map(|i| {
            Request::NewService(ServiceRepr::new(
                key(
                    Protocol::Tcp,
                    &format!("10.1.{}.{}", i / 250, i % 250 + 1),
                    80,
                ),
                "rr",
            ))
        })
        .chain(std::iter::once(Request::NewService(ServiceRepr::new(
            dns, "sh",
        ))))
        .collect();
    let out = ipvs.execute(&reqs);
    let after = ipvs.counters();
    println!(
        "batch: {} requests in {} sendmsg calls",
        after.messages - before.messages,
        after.sends - before.sends
    );
    assert!(after.sends - before.sends <= 2);
    assert!(out[..500].iter().all(Result::is_ok));
    assert_eq!(out[500].as_ref().unwrap_err().errno(), Some(Errno::EEXIST));
    assert_eq!(ipvs.services().unwrap().len(), 503);
    // Quiet batches: no ACK per request, yet each failure still maps to its request.
    ipvs.set_quiet_batches(true);
    let before = ipvs.counters();
    let q = |a: &str| Request::NewService(ServiceRepr::new(key(Protocol::Tcp, a, 80), "rr"));
    let out = ipvs.execute(&[q("10.2.0.1"), q("10.1.0.1"), q("10.2.0.2"), q("10.1.0.2")]);
    let errs: Vec<Option<Errno>> = out
        .iter()
        .map(|r| r.as_ref().err().and_then(Error::errno))
        .collect();
    assert_eq!(
        errs,
        vec![None, Some(Errno::EEXIST), None, Some(Errno::EEXIST)]
    );
    assert_eq!(ipvs.counters().sends - before.sends, 1);
    assert_eq!(ipvs.services().unwrap().len(), 505);
    ipvs.set_quiet_batches(false);
    ipvs.flush().unwrap();
    assert!(ipvs.services().unwrap().is_empty());
    show("IPVS-EMPTY", &listing(&mut ipvs));
}

#[test]
fn dummy_interface_and_addresses() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = Rtnl::open().unwrap();
    let name = "tinylet-t0";
    let _ = r.delete_link(name);
    let idx = r.ensure_dummy(name).unwrap();
    assert_eq!(r.ensure_dummy(name).unwrap(), idx, "ensure is idempotent");
    let addrs = [ip("10.96.0.1"), ip("10.96.0.2"), ip("fd00:96::1")];
    for a in addrs {
        r.add_addr(idx, a).unwrap();
    }
    let e = r.add_addr(idx, addrs[0]).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST));
    let got: BTreeSet<IpAddr> = r
        .addrs(idx)
        .unwrap()
        .into_iter()
        .filter(|a| !matches!(a, IpAddr::V6(v) if v.segments()[0] == 0xfe80))
        .collect();
    assert_eq!(got, addrs.iter().copied().collect());
    r.del_addr(idx, addrs[1]).unwrap();
    assert!(!r.addrs(idx).unwrap().contains(&addrs[1]));
    assert!(r.delete_link(name).unwrap());
    assert_eq!(r.link_index(name).unwrap(), None);
    assert!(!r.delete_link(name).unwrap());
}

const MANIFESTS: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.53
  clusterIPs: [10.96.0.53, 'fd00:96::53']
  ipFamilies: [IPv4, IPv6]
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
";

fn slices(web_endpoints: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n",
    );
    for a in web_endpoints {
        s.push_str(&format!(
            "- addresses: [{a}]\n  conditions: {{ready: true}}\n"
        ));
    }
    s.push_str("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: dns-v4, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}\naddressType: IPv4\nports: [{name: dns, port: 5353, protocol: UDP}, {name: dns-tcp, port: 5353, protocol: TCP}]\nendpoints:\n- addresses: [10.244.0.53]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: dns-v6, namespace: kube-system, labels: {kubernetes.io/service-name: dns}}\naddressType: IPv6\nports: [{name: dns, port: 5353, protocol: UDP}]\nendpoints:\n- addresses: ['fd00:244::53']\n  conditions: {ready: false, serving: true, terminating: true}\n");
    s
}

#[test]
fn proxy_applies_a_manifest_directory() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join("tinylet-ipvs-kernel-manifests");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("services.yaml"), MANIFESTS).unwrap();
    std::fs::write(
        dir.join("slices.yaml"),
        slices(&["10.244.0.5", "10.244.1.5"]),
    )
    .unwrap();

    let mut backend = IpvsBackend::open(DUMMY_LINK).unwrap();
    backend.ipvs().flush().unwrap();
    let node: BTreeSet<IpAddr> = [ip("192.168.50.1")].into_iter().collect();
    let cfg = Config {
        scheduler: SchedName::RR,
        node_name: "vm".into(),
        node_addresses: node.clone(),
    };
    let mut syncer = Syncer::new(backend, node);
    let mut model = Model::default();
    model.replace(load_dir(&dir).unwrap());
    let d = desired_state(&model.services(), &model.slices(), &cfg);
    let r = syncer.sync(&d.state, SyncMode::Full).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let text = listing(syncer.backend().ipvs());
    show("PROXY-APPLIED", &text);
    assert_eq!(
        text,
        format!(
            // ipvsadm's order: 192.168.x before 10.x (wrapping 32-bit differences).
            "{HEADER}TCP  192.168.50.1:30080 rr persistent 10800
  -> 10.244.0.5:8080              Masq    1      0          0         
  -> 10.244.1.5:8080              Masq    1      0          0         
TCP  10.96.0.10:80 rr persistent 10800
  -> 10.244.0.5:8080              Masq    1      0          0         
  -> 10.244.1.5:8080              Masq    1      0          0         
TCP  10.96.0.53:53 rr
  -> 10.244.0.53:5353             Masq    1      0          0         
UDP  10.96.0.53:53 rr
  -> 10.244.0.53:5353             Masq    1      0          0         
TCP  [fd00:96::53]:53 rr
UDP  [fd00:96::53]:53 rr
  -> [fd00:244::53]:5353          Masq    1      0          0         
"
        )
    );
    let dummy = syncer
        .backend()
        .rtnl()
        .link_index(DUMMY_LINK)
        .unwrap()
        .unwrap();
    let bound: BTreeSet<IpAddr> = syncer
        .backend()
        .rtnl()
        .addrs(dummy)
        .unwrap()
        .into_iter()
        .collect();
    assert!(bound.is_superset(
        &[ip("10.96.0.10"), ip("10.96.0.53"), ip("fd00:96::53")]
            .into_iter()
            .collect()
    ));

    // A full resync of an unchanged table changes nothing.
    assert!(syncer
        .sync(&d.state, SyncMode::Full)
        .unwrap()
        .ops
        .is_empty());

    // One more endpoint: one op on each of the two web virtual servers, one message each.
    std::fs::write(
        dir.join("slices.yaml"),
        slices(&["10.244.0.5", "10.244.1.5", "10.244.2.5"]),
    )
    .unwrap();
    model.replace(load_dir(&dir).unwrap());
    let d2 = desired_state(&model.services(), &model.slices(), &cfg);
    let before = syncer.backend().messages_sent();
    let r = syncer.sync(&d2.state, SyncMode::Incremental).unwrap();
    let sent = syncer.backend().messages_sent() - before;
    println!("one endpoint added: {} ops, {} messages", r.ops.len(), sent);
    // Quiet batches add one closing NOOP to the two destination requests.
    assert_eq!((r.ops.len(), sent), (2, 3));

    // Drift: someone removes a destination and adds a service on our address.
    let web = ServiceKey::new(Protocol::Tcp, ip("10.96.0.10"), 80);
    syncer
        .backend()
        .ipvs()
        .del_dest(&web, &dest("10.244.0.5", 8080, 1))
        .unwrap();
    syncer
        .backend()
        .ipvs()
        .add_service(&ServiceRepr::new(
            ServiceKey::new(Protocol::Tcp, ip("10.96.0.10"), 81),
            "rr",
        ))
        .unwrap();
    let r = syncer.sync(&d2.state, SyncMode::Full).unwrap();
    let ops: Vec<String> = r.ops.iter().map(ToString::to_string).collect();
    println!("drift repaired: {ops:?}");
    assert_eq!(
        ops,
        vec![
            "add destination 10.244.0.5:8080 weight 1 to TCP 10.96.0.10:80",
            "delete service TCP 10.96.0.10:81"
        ]
    );

    // The command the binary runs does the same from the directory.
    let args: Vec<String> = [
        "--once",
        "--proxy-manifest-path",
        dir.to_str().unwrap(),
        "--nodeport-addresses=192.168.50.1/32",
        "--hostname-override=vm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(tinylet::proxy::proxy_main(&args), 0);

    // Nothing desired: everything ours goes, including the bound addresses.
    let r = syncer.sync(&State::default(), SyncMode::Full).unwrap();
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    assert!(syncer.backend().ipvs().services().unwrap().is_empty());
    assert!(syncer
        .backend()
        .rtnl()
        .addrs(dummy)
        .unwrap()
        .iter()
        .all(|a| a.is_ipv6() && !bound.contains(a)));
    assert!(syncer.backend().rtnl().delete_link(DUMMY_LINK).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    // The VM script compares the last listing printed with `ipvsadm -Ln` after the run.
    show("PROXY-CLEARED", &listing(syncer.backend().ipvs()));
}

/// N services × 2 endpoints, as a desired state (no dummy addresses, like `ipvsadm -R`).
fn bench_state(n: u32, extra_endpoint: bool) -> State {
    let mut st = State::default();
    for i in 0..n {
        let addr = IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        let mut reals = std::collections::BTreeMap::new();
        for e in 0..2u32 + u32::from(extra_endpoint && i == 0) {
            let j = i * 3 + e;
            reals.insert(
                RealKey {
                    addr: IpAddr::from([10, 200 + (j >> 16) as u8, (j >> 8) as u8, j as u8]),
                    port: 8080,
                },
                RealParams::default(),
            );
        }
        st.services.insert(
            VirtualKey {
                proto: Proto::Tcp,
                addr,
                port: 80,
            },
            VirtualServer {
                params: VirtualParams {
                    scheduler: SchedName::RR,
                    affinity_timeout: None,
                },
                reals,
            },
        );
    }
    st
}

/// Move this thread into a new network namespace with loopback up; false if not permitted.
fn fresh_netns() -> bool {
    // SAFETY: unshare takes no pointers; it only changes the calling thread's namespaces.
    if unsafe { nix::libc::unshare(nix::libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    // IPVS checks destination addresses against the routing tables, which a namespace gets
    // once an interface is up.
    let mut r = Rtnl::open().unwrap();
    let lo = r.link_index("lo").unwrap().unwrap();
    r.set_up(lo).unwrap();
    true
}

#[test]
#[ignore = "benchmark: run in the VM with --ignored"]
fn bench_sync() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let ns: Vec<u32> = std::env::var("TINYLET_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10000]);
    for n in ns {
        // IPVS state is per network namespace, including the trash of deleted destinations
        // that every add scans: a fresh namespace keeps earlier runs (ours or ipvsadm's) from
        // skewing this one.
        println!("BENCH setup n={n} fresh_netns={}", fresh_netns());
        let mut backend = IpvsBackend::open(DUMMY_LINK).unwrap();
        backend.ipvs().flush().unwrap();
        let mut syncer = Syncer::new(backend, BTreeSet::new());
        let st = bench_state(n, false);
        // User-space share: diff against an empty table and encode every request, no I/O.
        let t = Instant::now();
        let ops = diff(&st, &State::default(), &BTreeSet::new());
        let mut b = Builder::new();
        for (i, r) in ipvs_requests(&ops).iter().enumerate() {
            r.emit(&mut b, 0x20, i as u32);
        }
        println!(
            "BENCH encode_only n={n} ops={} bytes={} time_ms={:.1}",
            ops.len(),
            b.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        let m0 = syncer.backend().messages_sent();
        let t = Instant::now();
        let r = syncer.sync(&st, SyncMode::Full).unwrap();
        let full = t.elapsed();
        assert!(
            r.failures.is_empty(),
            "{:?}",
            &r.failures[..r.failures.len().min(5)]
        );
        let sent = syncer.backend().messages_sent() - m0;
        println!(
            "BENCH full_sync n={n} services={} reals={} time_ms={:.1} messages={sent}",
            st.services.len(),
            st.real_count(),
            full.as_secs_f64() * 1e3
        );

        let st2 = bench_state(n, true);
        let m1 = syncer.backend().messages_sent();
        let t = Instant::now();
        let r = syncer.sync(&st2, SyncMode::Incremental).unwrap();
        let one = t.elapsed();
        let sent = syncer.backend().messages_sent() - m1;
        assert!(r.failures.is_empty());
        println!(
            "BENCH add_one_endpoint n={n} ops={} time_ms={:.3} messages={sent}",
            r.ops.len(),
            one.as_secs_f64() * 1e3
        );

        let m2 = syncer.backend().messages_sent();
        let t = Instant::now();
        let r = syncer.sync(&st2, SyncMode::Full).unwrap();
        let resync = t.elapsed();
        let sent = syncer.backend().messages_sent() - m2;
        assert!(
            r.ops.is_empty(),
            "unexpected drift: {:?}",
            &r.ops[..r.ops.len().min(5)]
        );
        println!(
            "BENCH full_resync_nochange n={n} time_ms={:.1} messages={sent}",
            resync.as_secs_f64() * 1e3
        );

        let t = Instant::now();
        syncer.backend().ipvs().flush().unwrap();
        println!(
            "BENCH flush n={n} time_ms={:.1}",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// Same-boot A/B of batch acknowledgement modes at N services × 2 (TINYLET_BENCH_N, first
/// value): one ACK per request vs quiet batches closed by one NOOP ACK.
#[test]
#[ignore = "benchmark: run in the VM with --ignored --exact bench_ack_modes"]
fn bench_ack_modes() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    let n: u32 = std::env::var("TINYLET_BENCH_N")
        .ok()
        .and_then(|v| v.split(',').next().and_then(|x| x.trim().parse().ok()))
        .unwrap_or(10000);
    let st = bench_state(n, false);
    for round in 0..2 {
        for quiet in [false, true] {
            fresh_netns();
            let mut backend = IpvsBackend::open(DUMMY_LINK).unwrap();
            backend.ipvs().set_quiet_batches(quiet);
            let mut syncer = Syncer::new(backend, BTreeSet::new());
            let t = Instant::now();
            let r = syncer.sync(&st, SyncMode::Full).unwrap();
            assert!(r.failures.is_empty());
            println!(
                "BENCH ack_mode round={round} quiet={quiet} n={n} time_ms={:.1}",
                t.elapsed().as_secs_f64() * 1e3
            );
            // Quiet batches still report failures, one per failed request.
            let dup = vec![Request::NewService(ServiceRepr::new(
                ServiceKey::new(Protocol::Tcp, IpAddr::from([10, 100, 0, 0]), 80),
                "rr",
            ))];
            let out = syncer.backend().ipvs().execute(&dup);
            assert_eq!(out[0].as_ref().unwrap_err().errno(), Some(Errno::EEXIST));
        }
    }
}

/// Print the kernel's table through our layer, between markers, for the VM script to compare
/// with `ipvsadm -Ln` after it programmed the table with ipvsadm (run with `--ignored`).
#[test]
#[ignore = "a tool for the VM script: run with --ignored --exact print_listing"]
fn print_listing() {
    if !enabled() {
        return;
    }
    let _g = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    show("LISTING", &listing(&mut Ipvs::open().unwrap()));
}

/// Runs everywhere: the socket layer against this machine's kernel, whatever it has.
#[test]
fn socket_layer_against_the_running_kernel() {
    // Without IPVS the family lookup must fail with a clear error, not hang or panic.
    match Ipvs::open() {
        Ok(mut i) => println!(
            "IPVS present, family {:#x}, version {}",
            i.family_id(),
            i.info().map(|x| x.version_string()).unwrap_or_default()
        ),
        Err(e @ Error::FamilyNotFound(_)) => println!("as expected here: {e}"),
        Err(e) => panic!("unexpected: {e}"),
    }
    let mut r = Rtnl::open().unwrap();
    assert_eq!(r.link_index("lo").unwrap(), Some(1));
    assert_eq!(r.link_index("tinylet-none0").unwrap(), None);
    let lo = r.addrs(1).unwrap();
    assert!(lo.contains(&ip("127.0.0.1")), "{lo:?}");
}
