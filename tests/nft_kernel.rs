//! Against the host's kernel, inside a network namespace of our own: program a small service
//! ruleset through our nf_tables batches, read it back with the real `nft -j list ruleset`
//! and with our own dumps, and check that the kernel's errors come back naming the object.
//!
//! The test binary re-runs itself under `unshare -n` (the namespace dies with that process,
//! pass or fail); the inner test is ignored unless TINYLET_NFT_INNER=1. Skips with a SKIPPED
//! line when not root or when namespaces cannot be made (no CAP_NET_ADMIN / CAP_SYS_ADMIN).

#[path = "common/inner_netns.rs"]
mod inner_netns;

use std::process::Command;

use nix::errno::Errno;
use serde_json::{json, Value};
use tinylet::netlink::nftables::expr::{
    ct_state, CmpOp, CtKey, DynsetOp, Expr, MetaKey, NatType, NumgenType, PayloadBase, RejectType,
    NAT_RANGE_PROTO_SPECIFIED,
};
use tinylet::netlink::nftables::msg::{datatype, set_flags, MapData, SetElem, SetElems};
use tinylet::netlink::nftables::{
    Chain, ChainType, Data, Family, Hook, Msg, Nftables, Reg, Rule, Set, Table, Verdict,
};
use tinylet::netlink::Error;

const T: &str = "tl-nftw";
const F: Family = Family::Ip;

#[test]
fn ruleset_reads_back_in_a_fresh_netns() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED (needs root for a network namespace)");
        return;
    }
    inner_netns::run_inner("inner_readback");
}

fn chain(name: &str) -> Chain {
    Chain::regular(F, T, name)
}

fn rule(chain: &str, exprs: Vec<Expr>) -> Msg {
    Msg::NewRule(Rule::new(F, T, chain, exprs))
}

fn cmp(op: CmpOp, data: &[u8]) -> Expr {
    Expr::Cmp {
        sreg: Reg::R1,
        op,
        data: data.to_vec(),
    }
}

fn payload(base: PayloadBase, offset: u32, len: u32, dreg: Reg) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

fn goto(c: &str) -> Expr {
    Expr::Verdict(Verdict::Goto(c.into()))
}

/// The ruleset: dispatch by a verdict map with a concatenated key, random spread, affinity
/// with a timed dynamic set, DNAT, mark-for-masquerade and masquerading, reject, ct state.
fn ruleset() -> Vec<Msg> {
    let key = [
        datatype::IPV4_ADDR,
        datatype::INET_PROTO,
        datatype::INET_SERVICE,
    ];
    let vmap = Set::new(F, T, "service-ips", &key).verdict_map();
    let affinity = Set::new(F, T, "affinity-a", &[datatype::IPV4_ADDR])
        .with_timeout(10_800_000)
        .with_flags(set_flags::EVAL);
    let no_ep = Set::new(F, T, "no-endpoint-services", &key).verdict_map();
    let mark = |bits: u32, xor: u32| Expr::Bitwise {
        sreg: Reg::R1,
        dreg: Reg::R1,
        len: 4,
        mask: bits.to_ne_bytes().to_vec(),
        xor: xor.to_ne_bytes().to_vec(),
    };
    let dispatch = |set: &str| {
        vec![
            payload(PayloadBase::Network, 16, 4, Reg::R1),
            Expr::Meta {
                key: MetaKey::L4proto,
                dreg: Reg::R1.offset(4),
            },
            payload(PayloadBase::Transport, 2, 2, Reg::R1.offset(8)),
            Expr::Lookup {
                set: set.into(),
                set_id: None,
                sreg: Reg::R1,
                dreg: Some(Reg::VERDICT),
                invert: false,
            },
        ]
    };
    vec![
        Msg::NewTable(Table::new(F, T)),
        Msg::NewChain(Chain::base(
            F,
            T,
            "nat-prerouting",
            ChainType::Nat,
            Hook::Prerouting,
            -100,
        )),
        Msg::NewChain(Chain::base(
            F,
            T,
            "nat-postrouting",
            ChainType::Nat,
            Hook::Postrouting,
            100,
        )),
        Msg::NewChain(Chain::base(
            F,
            T,
            "filter-input",
            ChainType::Filter,
            Hook::Input,
            -110,
        )),
        Msg::NewChain(chain("mark-for-masquerade")),
        Msg::NewChain(chain("service-a")),
        Msg::NewChain(chain("endpoint-a1")),
        Msg::NewChain(chain("endpoint-a2")),
        Msg::NewChain(chain("reject-chain")),
        Msg::NewSet(vmap),
        Msg::NewSet(affinity),
        Msg::NewSet(no_ep),
        Msg::NewElems(SetElems::new(
            F,
            T,
            "service-ips",
            vec![SetElem::map(
                vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0],
                Data::Verdict(Verdict::Goto("service-a".into())),
            )],
        )),
        Msg::NewElems(SetElems::new(
            F,
            T,
            "no-endpoint-services",
            vec![SetElem::map(
                vec![10, 96, 0, 2, 6, 0, 0, 0, 0, 80, 0, 0],
                Data::Verdict(Verdict::Jump("reject-chain".into())),
            )],
        )),
        rule("nat-prerouting", dispatch("service-ips")),
        rule(
            "mark-for-masquerade",
            vec![
                Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: Reg::R1,
                },
                mark(!0x4000, 0x4000),
                Expr::MetaSet {
                    key: MetaKey::Mark,
                    sreg: Reg::R1,
                },
            ],
        ),
        rule(
            "nat-postrouting",
            vec![
                Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: Reg::R1,
                },
                mark(0x4000, 0),
                cmp(CmpOp::Eq, &[0; 4]),
                Expr::Verdict(Verdict::Return),
            ],
        ),
        rule(
            "nat-postrouting",
            vec![
                Expr::Counter {
                    bytes: 0,
                    packets: 0,
                },
                Expr::Masq {
                    flags: None,
                    proto_min: None,
                    proto_max: None,
                },
            ],
        ),
        rule(
            "service-a",
            vec![
                payload(PayloadBase::Network, 12, 4, Reg::R1),
                Expr::Lookup {
                    set: "affinity-a".into(),
                    set_id: None,
                    sreg: Reg::R1,
                    dreg: None,
                    invert: false,
                },
                goto("endpoint-a1"),
            ],
        ),
        rule(
            "service-a",
            vec![
                Expr::Numgen {
                    dreg: Reg::R1,
                    modulus: 2,
                    kind: NumgenType::Random,
                    offset: 0,
                },
                cmp(CmpOp::Eq, &0u32.to_ne_bytes()),
                goto("endpoint-a1"),
            ],
        ),
        rule("service-a", vec![goto("endpoint-a2")]),
        rule(
            "endpoint-a1",
            vec![
                payload(PayloadBase::Network, 12, 4, Reg::R1),
                cmp(CmpOp::Eq, &[10, 1, 0, 5]),
                Expr::Verdict(Verdict::Jump("mark-for-masquerade".into())),
            ],
        ),
        rule(
            "endpoint-a1",
            vec![
                payload(PayloadBase::Network, 12, 4, Reg::R1),
                Expr::Dynset {
                    op: DynsetOp::Update,
                    set: "affinity-a".into(),
                    set_id: None,
                    sreg_key: Reg::R1,
                    sreg_data: None,
                    timeout_ms: None,
                    exprs: vec![],
                },
            ],
        ),
        rule(
            "endpoint-a1",
            vec![
                Expr::Meta {
                    key: MetaKey::L4proto,
                    dreg: Reg::R1,
                },
                cmp(CmpOp::Eq, &[6]),
                Expr::Immediate {
                    dreg: Reg::R1,
                    value: vec![10, 1, 0, 5],
                },
                Expr::Immediate {
                    dreg: Reg::R2,
                    value: 8080u16.to_be_bytes().to_vec(),
                },
                Expr::Nat {
                    kind: NatType::Dnat,
                    family: Family::Ip,
                    addr_min: Some(Reg::R1),
                    addr_max: None,
                    proto_min: Some(Reg::R2),
                    proto_max: None,
                    flags: Some(NAT_RANGE_PROTO_SPECIFIED),
                },
            ],
        ),
        rule(
            "filter-input",
            vec![
                Expr::Ct {
                    key: CtKey::State,
                    dreg: Reg::R1,
                    direction: None,
                },
                mark(ct_state::INVALID, 0),
                cmp(CmpOp::Neq, &[0; 4]),
                Expr::Verdict(Verdict::Drop),
            ],
        ),
        rule("filter-input", dispatch("no-endpoint-services")),
        rule(
            "reject-chain",
            vec![Expr::Reject {
                kind: RejectType::IcmpUnreach,
                code: 3,
            }],
        ),
    ]
}

fn nft_json() -> Value {
    let out = Command::new("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The objects of one kind ("chain", "rule", "map"...) in nft's JSON.
fn objects<'a>(j: &'a Value, kind: &str) -> Vec<&'a Value> {
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

/// The expression lists of a chain's rules, in order.
fn rules_of(j: &Value, chain: &str) -> Vec<Vec<Value>> {
    objects(j, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Does a rule hold this statement?
fn has(rule: &[Value], want: Value) -> bool {
    rule.contains(&want)
}

#[test]
#[ignore = "runs inside the namespace made by ruleset_reads_back_in_a_fresh_netns"]
fn inner_readback() {
    if !inner_netns::is_inner() {
        return;
    }
    let mut nft = Nftables::open().unwrap();
    let gen0 = nft.generation().unwrap();
    let msgs = ruleset();
    nft.apply(&msgs).unwrap();
    let gen1 = nft.generation().unwrap();
    assert_ne!(gen0, gen1, "a commit bumps the generation");

    // The real tool as reader.
    let j = nft_json();
    let chains = objects(&j, "chain");
    let nat = chains
        .iter()
        .find(|c| c["name"] == "nat-prerouting")
        .unwrap();
    assert_eq!(nat["table"], T);
    assert_eq!(nat["family"], "ip");
    assert_eq!(nat["type"], "nat");
    assert_eq!(nat["hook"], "prerouting");
    assert_eq!(nat["prio"], -100);
    assert_eq!(nat["policy"], "accept");
    assert!(chains
        .iter()
        .any(|c| c["name"] == "endpoint-a2" && c.get("hook").is_none()));
    let maps = objects(&j, "map");
    let vmap = maps.iter().find(|m| m["name"] == "service-ips").unwrap();
    assert_eq!(
        vmap["type"],
        json!(["ipv4_addr", "inet_proto", "inet_service"])
    );
    assert_eq!(vmap["map"], "verdict");
    assert_eq!(
        vmap["elem"],
        json!([[{"concat": ["10.96.0.1", "tcp", 80]}, {"goto": {"target": "service-a"}}]])
    );
    let sets = objects(&j, "set");
    let aff = sets.iter().find(|s| s["name"] == "affinity-a").unwrap();
    assert_eq!(aff["type"], "ipv4_addr");
    assert_eq!(aff["timeout"], 10800);
    // nft 1.0.6's JSON leaves "dynamic" out (its text listing shows it); our dump checks it.
    assert!(
        aff["flags"].to_string().contains("timeout"),
        "{}",
        aff["flags"]
    );
    let pre = rules_of(&j, "nat-prerouting");
    assert_eq!(pre.len(), 1);
    let tuple = json!({"concat": [
        {"payload": {"protocol": "ip", "field": "daddr"}},
        {"meta": {"key": "l4proto"}},
        {"payload": {"protocol": "th", "field": "dport"}}
    ]});
    assert!(
        has(
            &pre[0],
            json!({"vmap": {"key": tuple, "data": "@service-ips"}})
        ),
        "{:?}",
        pre[0]
    );
    let svc = rules_of(&j, "service-a");
    assert_eq!(svc.len(), 3);
    let saddr = json!({"payload": {"protocol": "ip", "field": "saddr"}});
    assert!(
        has(
            &svc[0],
            json!({"match": {"op": "==", "left": saddr, "right": "@affinity-a"}})
        ),
        "{:?}",
        svc[0]
    );
    assert!(
        has(
            &svc[1],
            json!({"match": {"op": "==",
            "left": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "right": 0}})
        ),
        "{:?}",
        svc[1]
    );
    assert!(has(&svc[2], json!({"goto": {"target": "endpoint-a2"}})));
    let ep = rules_of(&j, "endpoint-a1");
    assert!(has(
        &ep[0],
        json!({"jump": {"target": "mark-for-masquerade"}})
    ));
    assert!(
        has(
            &ep[1],
            json!({"set": {"op": "update", "elem": saddr, "set": "@affinity-a"}})
        ),
        "{:?}",
        ep[1]
    );
    assert!(
        has(&ep[2], json!({"dnat": {"addr": "10.1.0.5", "port": 8080}})),
        "{:?}",
        ep[2]
    );
    let mark = json!({"meta": {"key": "mark"}});
    let marking = rules_of(&j, "mark-for-masquerade");
    assert!(
        has(
            &marking[0],
            json!({"mangle": {"key": mark, "value": {"|": [mark, 16384]}}})
        ),
        "{:?}",
        marking[0]
    );
    let post = rules_of(&j, "nat-postrouting");
    assert!(
        has(
            &post[0],
            json!({"match": {"op": "==", "left": {"&": [mark, 16384]}, "right": 0}})
        ),
        "{:?}",
        post[0]
    );
    assert!(has(&post[0], json!({"return": null})));
    assert!(has(&post[1], json!({"masquerade": null})), "{:?}", post[1]);
    assert!(post[1].iter().any(|e| e.get("counter").is_some()));
    let input = rules_of(&j, "filter-input");
    assert!(
        has(
            &input[0],
            json!({"match": {"op": "in",
            "left": {"ct": {"key": "state"}}, "right": "invalid"}})
        ),
        "{:?}",
        input[0]
    );
    assert!(has(&input[0], json!({"drop": null})));
    let rej = rules_of(&j, "reject-chain");
    assert!(
        has(
            &rej[0],
            json!({"reject": {"type": "icmp", "expr": "port-unreachable"}})
        ),
        "{:?}",
        rej[0]
    );

    // Our own reader: one dump per kind gives back what we sent.
    let d = nft.dump_table(F, T).unwrap();
    assert_eq!(d.table.as_ref().map(|t| t.name.as_str()), Some(T));
    let mut sent_chains: Vec<Chain> = msgs
        .iter()
        .filter_map(|m| match m {
            Msg::NewChain(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let mut got_chains: Vec<Chain> = d
        .chains
        .iter()
        .map(|c| Chain {
            handle: None,
            ..c.clone()
        })
        .collect();
    sent_chains.sort_by(|a, b| a.name.cmp(&b.name));
    got_chains.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got_chains, sent_chains);
    assert!(d.chains.iter().all(|c| c.handle.is_some()));
    let vmap = d.sets.iter().find(|s| s.name == "service-ips").unwrap();
    assert_eq!(vmap.data, Some(MapData::Verdict));
    assert_eq!(vmap.key_len, 12);
    let aff = d.sets.iter().find(|s| s.name == "affinity-a").unwrap();
    assert_eq!(aff.timeout_ms, Some(10_800_000));
    assert_eq!(
        aff.flags & (set_flags::TIMEOUT | set_flags::EVAL),
        set_flags::TIMEOUT | set_flags::EVAL
    );
    let sent_rules: Vec<&Rule> = msgs
        .iter()
        .filter_map(|m| match m {
            Msg::NewRule(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(d.rules.len(), sent_rules.len());
    for sent in sent_rules {
        let got = d
            .rules
            .iter()
            .filter(|r| r.chain == sent.chain)
            .find(|r| normalise(&r.exprs) == normalise(&sent.exprs));
        assert!(
            got.is_some(),
            "rule in {} not read back: {:?}\nkernel has {:?}",
            sent.chain,
            sent.exprs,
            d.rules
                .iter()
                .filter(|r| r.chain == sent.chain)
                .collect::<Vec<_>>()
        );
        assert!(got.and_then(|r| r.handle).is_some());
    }
    let elems = nft.elements(F, T, "service-ips").unwrap();
    assert_eq!(elems.len(), 1);
    assert_eq!(elems[0].key, vec![10, 96, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]);
    assert_eq!(
        elems[0].data,
        Some(Data::Verdict(Verdict::Goto("service-a".into())))
    );

    // A rule in a chain that does not exist: the error names the object, nothing applies.
    let err = nft
        .apply(&[
            Msg::NewChain(chain("never-committed")),
            rule("no-such-chain", vec![Expr::Verdict(Verdict::Accept)]),
        ])
        .unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    assert_eq!(
        err.to_string(),
        format!("add rule ip {T} no-such-chain: No such file or directory")
    );
    assert!(matches!(&err, Error::Kernel { .. }));
    assert_eq!(
        nft.generation().unwrap(),
        gen1,
        "a failed batch commits nothing"
    );
    assert!(!nft
        .dump_table(F, T)
        .unwrap()
        .chains
        .iter()
        .any(|c| c.name == "never-committed"));

    // Every rejected message is reported with its index.
    let mut b = nft.batch();
    b.push(&rule("no-such-chain", vec![]));
    b.push(&Msg::NewChain(chain("fine")));
    b.push(&Msg::NewElems(SetElems::new(
        F,
        T,
        "no-such-set",
        vec![SetElem::key(vec![1, 2, 3, 4])],
    )));
    let errors = nft.commit_all(&b.finish()).unwrap();
    let idx: Vec<Option<usize>> = errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![Some(0), Some(2)]);
    assert!(errors[1]
        .1
        .to_string()
        .starts_with(&format!("add 1 element(s) to set ip {T} no-such-set: ")));

    // A batch bound to a generation that is no longer current is refused whole.
    let mut stale = nft.batch_at(gen0);
    stale.push(&Msg::NewChain(chain("late")));
    let err = nft.commit(&stale.finish()).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ERESTART), "{err}");
    assert!(err.to_string().contains("generation changed"), "{err}");
    let now = nft.generation().unwrap();
    let mut current = nft.batch_at(now);
    current.push(&Msg::NewChain(chain("late")));
    current.push(&Msg::flush_chain(F, T, "service-a"));
    current.push(&Msg::flush_set(F, T, "affinity-a"));
    nft.commit(&current.finish()).unwrap();
    let d = nft.dump_table(F, T).unwrap();
    assert!(d.chains.iter().any(|c| c.name == "late"));
    assert!(!d.rules.iter().any(|r| r.chain == "service-a"));

    // A large batch (send and receive buffers grow for it), with an ACK per message and
    // without: every message is accounted for either way.
    for (ack, prefix) in [(true, "many-"), (false, "quiet-")] {
        nft.set_ack_each(ack);
        let mut b = nft.batch();
        for i in 0..10_000 {
            let name = format!("{prefix}{i}");
            b.push(&Msg::NewChain(chain(&name)));
            b.push(&rule(&name, vec![Expr::Verdict(Verdict::Return)]));
        }
        let done = b.finish();
        assert!(done.bytes().len() > 1 << 20);
        nft.commit(&done).unwrap();
        let d = nft.dump_table(F, T).unwrap();
        let n = d
            .rules
            .iter()
            .filter(|r| r.chain.starts_with(prefix))
            .count();
        assert_eq!(n, 10_000, "{prefix}");
    }
    let mut b = nft.batch();
    b.push(&Msg::NewChain(chain("fine-too")));
    b.push(&rule("still-no-such-chain", vec![]));
    let err = nft.commit(&b.finish()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("add rule ip {T} still-no-such-chain: No such file or directory")
    );
    nft.set_ack_each(true);

    // Delete the table: nothing of ours is left.
    nft.apply(&[Msg::delete_table(F, T)]).unwrap();
    assert!(nft.dump_table(F, T).unwrap().table.is_none());
    assert!(objects(&nft_json(), "table").is_empty());
    println!("INNER OK");
}

/// What the kernel reports differently from what was sent without changing the meaning: a
/// NAT's range ends (the kernel fills max = min) and flags (it adds NF_NAT_RANGE_MAP_IPS
/// when an address register is given).
fn normalise(exprs: &[Expr]) -> Vec<Expr> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Nat {
                kind,
                family,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
                ..
            } => Expr::Nat {
                kind: *kind,
                family: *family,
                addr_min: *addr_min,
                addr_max: addr_max.filter(|m| Some(*m) != *addr_min),
                proto_min: *proto_min,
                proto_max: proto_max.filter(|m| Some(*m) != *proto_min),
                flags: None,
            },
            other => other.clone(),
        })
        .collect()
}
