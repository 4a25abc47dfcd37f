//! Golden vectors: requests and replies captured from ipvsadm against real kernels (x86_64,
//! arm64, armv7). Our encoder must produce ipvsadm's request bytes (apart from sequence, port
//! id and the dynamic family id), and our decoder must read every kernel reply into what
//! ipvsadm printed. Also property tests of encode/decode round trips with a tiny PRNG.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use tinylet::netlink::genl::{emit_get_family, parse_family_id, GENL_ID_CTRL};
use tinylet::netlink::ipvs::{
    format_listing, DestRepr, Forward, Info, Protocol, Reply, Request, ServiceKey, ServiceRepr,
    Timeouts, SVC_F_ONEPACKET, SVC_F_PERSISTENT,
};
use tinylet::netlink::wire::{messages, Builder, NLMSG_DONE, NLMSG_ERROR};

const ARCHES: [(&str, u16); 3] = [("amd64", 0x20), ("arm64", 0x1e), ("armhf", 0x1f)];

struct Capture {
    sent: Vec<Vec<u8>>,
    received: Vec<Vec<u8>>,
    /// Direction and bytes in capture order.
    all: Vec<(bool, Vec<u8>)>,
    stdout: String,
}

fn dir(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ipvs-golden")
        .join(arch)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn load(arch: &str, name: &str) -> Capture {
    let d = dir(arch);
    let nl = fs::read_to_string(d.join(format!("{name}.nl"))).unwrap();
    let stdout = fs::read_to_string(d.join(format!("{name}.stdout"))).unwrap();
    let mut c = Capture {
        sent: vec![],
        received: vec![],
        all: vec![],
        stdout,
    };
    for line in nl.lines() {
        let (dirc, h) = line.split_once(' ').unwrap();
        let bytes = hex(h.trim());
        let out = dirc == ">";
        if out {
            c.sent.push(bytes.clone());
        } else {
            c.received.push(bytes.clone());
        }
        c.all.push((out, bytes));
    }
    c
}

fn names(arch: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir(arch))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".nl").map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp80() -> ServiceKey {
    ServiceKey::new(Protocol::Tcp, ip("10.0.0.1"), 80)
}

fn v6_443() -> ServiceKey {
    ServiceKey::new(Protocol::Tcp, ip("fd00::1"), 443)
}

fn dest(a: &str, port: u16, fwd: Forward, weight: u32) -> DestRepr {
    let mut d = DestRepr::new(ip(a), port, fwd);
    d.weight = weight;
    d
}

/// The IPVS requests ipvsadm sent for each capture, after its initial GET_INFO.
fn expected_requests(name: &str, dump_order: &[ServiceKey]) -> Vec<Request> {
    let tail = match name {
        "01-new-service" => vec![Request::NewService(ServiceRepr::new(tcp80(), "rr"))],
        "02-new-dest" => vec![Request::NewDest(
            tcp80(),
            dest("10.0.0.2", 8080, Forward::Masq, 1),
        )],
        "03-new-dest-weight" => {
            vec![Request::NewDest(
                tcp80(),
                dest("10.0.0.3", 8080, Forward::Masq, 3),
            )]
        }
        "04-get-services" => vec![Request::DumpServices, Request::DumpDests(tcp80())],
        "05-edit-service" => vec![Request::EditService(ServiceRepr::new(tcp80(), "wrr"))],
        "06-edit-dest" => {
            vec![Request::EditDest(
                tcp80(),
                dest("10.0.0.3", 8080, Forward::Masq, 5),
            )]
        }
        "07-new-service-udp" => vec![Request::NewService(ServiceRepr::new(
            ServiceKey::new(Protocol::Udp, ip("10.0.0.1"), 53),
            "sh",
        ))],
        "08-new-service-v6" => vec![Request::NewService(ServiceRepr::new(v6_443(), "rr"))],
        "09-new-dest-v6" => vec![Request::NewDest(
            v6_443(),
            dest("fd00::2", 8443, Forward::Masq, 1),
        )],
        "10-get-services-2" => std::iter::once(Request::DumpServices)
            .chain(dump_order.iter().map(|k| Request::DumpDests(*k)))
            .collect(),
        "11-get-service-one" => vec![Request::GetService(tcp80()), Request::DumpDests(tcp80())],
        "12-get-info" => vec![],
        "13-get-timeout" => vec![Request::GetTimeouts],
        "14-set-timeout" => {
            vec![Request::SetTimeouts(Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            })]
        }
        // ipvsadm's default forwarding method is direct routing; it sends it even on delete.
        "15-del-dest" => vec![Request::DelDest(
            tcp80(),
            dest("10.0.0.2", 8080, Forward::Route, 1),
        )],
        "16-del-service" => vec![Request::DelService(tcp80())],
        "17-flush" => vec![Request::Flush],
        "18-get-empty" => vec![Request::DumpServices],
        other => panic!("no expectation for capture {other}"),
    };
    std::iter::once(Request::GetInfo).chain(tail).collect()
}

/// Compare requests, ignoring family id (4..6), seq and port id (8..16).
fn assert_same_request(ours: &[u8], theirs: &[u8], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length differs");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if (4..6).contains(&i) || (8..16).contains(&i) {
            continue;
        }
        assert_eq!(
            a, b,
            "{what}: byte {i} differs\n ours   {ours:02x?}\n theirs {theirs:02x?}"
        );
    }
}

fn family_of(c: &Capture) -> u16 {
    let reply = c.received.first().unwrap();
    let m = messages(reply).next().unwrap().unwrap();
    assert_eq!(m.msg_type(), GENL_ID_CTRL);
    parse_family_id(m.payload()).unwrap()
}

/// ipvsadm's order: family, protocol, address, port (it fetches destinations in this order).
fn ipvsadm_order(k: &ServiceKey) -> (bool, u16, IpAddr, u16) {
    match *k {
        ServiceKey::Addr {
            protocol,
            addr,
            port,
        } => (addr.is_ipv6(), protocol.number(), addr, port),
        ServiceKey::Fwmark { ipv6, mark } => (ipv6, 0, IpAddr::from([0u8; 4]), mark as u16),
    }
}

type Table = Vec<(ServiceRepr, Vec<DestRepr>)>;

/// Decode the replies of a capture the way `ipvsadm -Ln` reads them.
fn decode_table(c: &Capture, family: u16) -> (Option<Info>, Table, Option<Timeouts>) {
    let mut info = None;
    let mut timeouts = None;
    let mut services: Vec<ServiceRepr> = vec![];
    let mut groups: Vec<Vec<DestRepr>> = vec![];
    for (out, bytes) in &c.all {
        let m = messages(bytes).next().unwrap().unwrap();
        if *out {
            if m.msg_type() == family && m.payload()[0] == 8 {
                groups.push(vec![]);
            }
            continue;
        }
        match m.msg_type() {
            NLMSG_ERROR => assert_eq!(m.error_code().unwrap(), 0, "kernel reported an error"),
            NLMSG_DONE | GENL_ID_CTRL => {}
            t if t == family => match Reply::parse(m.payload(), false).unwrap() {
                Reply::Info(i) => info = Some(i),
                Reply::Timeouts(t) => timeouts = Some(t),
                Reply::Service(s) => services.push(s),
                Reply::Dest(d) => groups.last_mut().unwrap().push(d),
                Reply::Other(c) => panic!("unexpected command {c}"),
            },
            t => panic!("unexpected message type {t}"),
        }
    }
    services.sort_by_key(|s| ipvsadm_order(&s.key));
    groups.resize(services.len(), vec![]);
    (info, services.into_iter().zip(groups).collect(), timeouts)
}

#[test]
fn requests_match_ipvsadm_bytes_on_every_arch() {
    let mut checked = 0;
    for (arch, family_id) in ARCHES {
        for name in names(arch) {
            let c = load(arch, &name);
            let family = family_of(&c);
            assert_eq!(family, family_id, "{arch}/{name}: family id");
            let (_, table, _) = decode_table(&c, family);
            let order: Vec<ServiceKey> = table.iter().map(|(s, _)| s.key).collect();
            let mut ipvs_sent = vec![];
            for s in &c.sent {
                let m = messages(s).next().unwrap().unwrap();
                if m.msg_type() == GENL_ID_CTRL {
                    let mut b = Builder::new();
                    emit_get_family(&mut b, 1, "IPVS");
                    assert_same_request(b.as_bytes(), s, &format!("{arch}/{name} GETFAMILY"));
                } else {
                    assert_eq!(m.msg_type(), family);
                    ipvs_sent.push(s.clone());
                }
            }
            let want = expected_requests(&name, &order);
            assert_eq!(ipvs_sent.len(), want.len(), "{arch}/{name}: request count");
            for (theirs, req) in ipvs_sent.iter().zip(&want) {
                let mut b = Builder::new();
                req.emit(&mut b, family, 1);
                assert_same_request(b.as_bytes(), theirs, &format!("{arch}/{name} {req:?}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 25, "only {checked} requests checked");
}

#[test]
fn replies_decode_to_what_ipvsadm_printed() {
    for (arch, _) in ARCHES {
        for name in names(arch) {
            let c = load(arch, &name);
            let family = family_of(&c);
            let (info, table, timeouts) = decode_table(&c, family);
            let ctx = format!("{arch}/{name}");
            match name.as_str() {
                "04-get-services" | "10-get-services-2" | "18-get-empty" => {
                    assert_eq!(format_listing(info.as_ref(), &table), c.stdout, "{ctx}");
                }
                "11-get-service-one" => {
                    assert_eq!(format_listing(None, &table), c.stdout, "{ctx}");
                }
                "12-get-info" => {
                    let i = info.unwrap();
                    assert_eq!(i.conn_tab_size, 4096);
                    assert!(
                        c.stdout.contains(&format!("IPVS v{})", i.version_string())),
                        "{ctx}"
                    );
                }
                "13-get-timeout" => {
                    let t = timeouts.unwrap();
                    assert_eq!(
                        c.stdout.trim_end(),
                        format!(
                            "Timeout (tcp tcpfin udp): {} {} {}",
                            t.tcp, t.tcp_fin, t.udp
                        )
                    );
                }
                _ => assert!(c.stdout.is_empty() && table.is_empty(), "{ctx}"),
            }
        }
    }
}

#[test]
fn replies_lack_nested_flag_and_still_parse() {
    let c = load("amd64", "10-get-services-2");
    let (_, table, _) = decode_table(&c, 0x20);
    assert_eq!(table.len(), 3);
    let v6 = table.iter().find(|(s, _)| s.key == v6_443()).unwrap();
    assert_eq!(v6.0.netmask, 128);
    assert_eq!(v6.1, vec![dest("fd00::2", 8443, Forward::Masq, 1)]);
    // The kernel marks every service it hashed; that is not a setting.
    assert_eq!(v6.0.flags & SVC_F_PERSISTENT, 0);
}

/// xorshift64*: deterministic, dependency-free randomness for property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn addr(&mut self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::from(std::net::Ipv6Addr::from(
                (self.next() as u128) << 64 | self.next() as u128,
            ))
        } else {
            IpAddr::from((self.next() as u32).to_be_bytes())
        }
    }
}

fn random_key(r: &mut Rng) -> ServiceKey {
    let v6 = r.below(2) == 0;
    match r.below(8) {
        0 => ServiceKey::Fwmark {
            ipv6: v6,
            mark: 1 + r.below(1000) as u32,
        },
        n => ServiceKey::new(
            [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][n as usize % 3],
            r.addr(v6),
            r.next() as u16,
        ),
    }
}

fn reparse(req: &Request, cmd: u8, v6: bool) -> Reply {
    let mut b = Builder::new();
    req.emit(&mut b, 0x20, 9);
    let bytes = b.into_bytes();
    let m = messages(&bytes).next().unwrap().unwrap();
    let mut p = m.payload().to_vec();
    p[0] = cmd;
    Reply::parse(&p, v6).unwrap()
}

#[test]
fn property_service_and_destination_round_trip() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let key = random_key(&mut r);
        let mut s = ServiceRepr::new(
            key,
            ["rr", "wrr", "sh", "lc", "mh", ""][r.below(6) as usize],
        );
        s.flags = [0, SVC_F_PERSISTENT, SVC_F_ONEPACKET][r.below(3) as usize];
        s.timeout = r.next() as u32;
        s.netmask = r.next() as u32;
        assert_eq!(
            reparse(&Request::NewService(s.clone()), 1, false),
            Reply::Service(s)
        );

        let dv6 = r.below(2) == 0;
        let a = r.addr(dv6);
        let mut d = DestRepr::new(a, r.next() as u16, Forward::from_number(r.below(4) as u32));
        d.weight = r.next() as u32;
        d.upper_threshold = r.next() as u32;
        d.lower_threshold = r.next() as u32;
        let req = Request::NewDest(key, d.clone());
        // The reply carries only the DEST nest's meaning; the request has SERVICE first.
        assert_eq!(reparse(&req, 5, false), Reply::Dest(d));
    }
}

#[test]
fn property_mutated_replies_never_panic() {
    let mut r = Rng(42);
    let mut seeds = vec![];
    for (arch, _) in ARCHES {
        for name in ["10-get-services-2", "11-get-service-one", "13-get-timeout"] {
            seeds.extend(load(arch, name).received);
        }
    }
    for i in 0..20_000 {
        let mut m = seeds[i % seeds.len()].clone();
        for _ in 0..1 + r.below(4) {
            let at = r.below(m.len() as u64) as usize;
            match r.below(3) {
                0 => m[at] = r.next() as u8,
                1 => m.truncate(at),
                _ => m.insert(at, r.next() as u8),
            }
            if m.is_empty() {
                break;
            }
        }
        let _ = tinylet::netlink::parse_any(&m);
    }
}
