use super::*;
use crate::cri::proto::{
    ContainerAttributes, ContainerMetadata, CpuUsage, FilesystemUsage, UInt64Value,
};
use crate::cri::proto_stats::{NetworkUsage, ProcessUsage};

const S: u64 = 1_000_000_000;

fn u(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn proc_texts_parse() {
    let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 1 2 3 4\nbtime 1700000000\n";
    // user+nice+system+irq+softirq+steal = 161 ticks of 10 ms.
    assert_eq!(parse_proc_stat_cpu(stat), Some(161 * 10_000_000));
    assert_eq!(parse_boot_time(stat), Some(at(1_700_000_000)));
    assert_eq!(parse_proc_stat_cpu("cpu  x y z"), None);
    assert_eq!(parse_proc_stat_cpu(""), None);
    let mem = parse_node_memory(
        "MemTotal: 1000 kB\nMemFree: 400 kB\nInactive(file): 100 kB\nAnonPages: 200 kB\n",
        "pgfault 77\npgmajfault 3\n",
    )
    .unwrap();
    assert_eq!(
        mem,
        NodeMemory {
            total: 1_024_000,
            free: 409_600,
            inactive_file: 102_400,
            anon: 204_800,
            page_faults: Some(77),
            major_page_faults: Some(3),
        }
    );
    assert_eq!(parse_node_memory("garbage", ""), None);
    let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 9 2 0 0 0 0 0 2000 8 1 0 0 0 0 0\n wlan0: bad\n";
    let ifaces = parse_net_dev(dev);
    assert_eq!(
        ifaces,
        vec![InterfaceStats {
            name: "eth0".into(),
            rx_bytes: Some(1000),
            rx_errors: Some(2),
            tx_bytes: Some(2000),
            tx_errors: Some(1),
        }]
    );
    let route =
        "Iface\tDestination\tGateway\nwlan0\t0001A8C0\t00000000\neth0\t00000000\t0101A8C0\n";
    assert_eq!(parse_default_route(route).as_deref(), Some("eth0"));
    assert_eq!(parse_default_route(""), None);
}

#[test]
fn cgroup_files_parse_in_both_versions() {
    let v2 = parse_cgroup_v2(
        "usage_usec 1500\nuser_usec 1000\n",
        "8192\n",
        "anon 4096\ninactive_file 1024\npgfault 9\npgmajfault 1\n",
        "max\n",
    );
    assert_eq!(v2.cpu_ns, Some(1_500_000));
    assert_eq!(v2.memory_usage, Some(8192));
    assert_eq!(
        (v2.inactive_file, v2.rss, v2.limit),
        (1024, Some(4096), None)
    );
    let v1 = parse_cgroup_v1(
        "123456\n",
        "10000\n",
        "rss 1\ntotal_rss 4000\ntotal_inactive_file 2000\ntotal_pgfault 5\ntotal_pgmajfault 0\n",
        "9223372036854771712\n",
    );
    assert_eq!(v1.cpu_ns, Some(123_456));
    assert_eq!(
        (v1.rss, v1.inactive_file, v1.limit),
        (Some(4000), 2000, None)
    );
    let limited = parse_cgroup_v1("", "", "", "1048576");
    assert_eq!((limited.cpu_ns, limited.limit), (None, Some(1 << 20)));
    // The working set (usage − inactive file) and what is left under the limit.
    let m = memory_of_cgroup(
        &CgroupUsage {
            limit: Some(20_000),
            ..v1
        },
        "t",
    )
    .unwrap();
    assert_eq!(
        (m.working_set_bytes, m.usage_bytes, m.available_bytes),
        (Some(8000), Some(10_000), Some(12_000))
    );
}

fn container(id: &str, name: &str, cpu_ns: u64, ts: u64) -> ContainerReadings {
    ContainerReadings {
        name: name.into(),
        created: Some(at(1000)),
        cri: Some(CriContainerStats {
            attributes: Some(ContainerAttributes {
                id: id.into(),
                metadata: Some(ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(CpuUsage {
                timestamp: i64::try_from(ts).unwrap(),
                usage_core_nano_seconds: u(cpu_ns),
                usage_nano_cores: None,
            }),
            memory: Some(CriMemory {
                timestamp: i64::try_from(ts).unwrap(),
                working_set_bytes: u(3 << 20),
                usage_bytes: u(4 << 20),
                rss_bytes: u(2 << 20),
                available_bytes: None,
                page_faults: u(10),
                major_page_faults: u(0),
            }),
            writable_layer: Some(FilesystemUsage {
                timestamp: 0,
                fs_id: None,
                used_bytes: u(4096),
                inodes_used: u(3),
            }),
        }),
        logs_used: Some((100, 1)),
    }
}

fn readings(now: u64, node_cpu: u64, c_cpu: u64) -> Readings {
    let fs = FsInfo {
        capacity: 1000,
        available: 600,
        used: 400,
        inodes: 50,
        inodes_free: 20,
    };
    Readings {
        now: Some(at(now)),
        node: NodeReadings {
            name: "pi".into(),
            boot_time: Some(at(10)),
            cpu_ns: Some(node_cpu),
            memory: Some(NodeMemory {
                total: 1000,
                free: 300,
                inactive_file: 100,
                anon: 200,
                page_faults: Some(5),
                major_page_faults: Some(1),
            }),
            interfaces: vec![
                InterfaceStats {
                    name: "wlan0".into(),
                    rx_bytes: Some(1),
                    ..Default::default()
                },
                InterfaceStats {
                    name: "eth0".into(),
                    rx_bytes: Some(7),
                    ..Default::default()
                },
            ],
            default_interface: Some("eth0".into()),
            root_fs: Some(fs),
            image_fs: Some((fs, Some(300), Some(9))),
            logs_fs: Some(fs),
            max_pid: Some(4_194_304),
            processes: Some(120),
        },
        pods: vec![PodReadings {
            name: "web".into(),
            namespace: "edge".into(),
            uid: "u1".into(),
            start: Some(at(900)),
            containers: vec![container("c1", "main", c_cpu, now * S)],
            sandbox: Some(LinuxPodSandboxStats {
                network: Some(NetworkUsage {
                    timestamp: 0,
                    default_interface: Some(NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: u(11),
                        rx_errors: u(0),
                        tx_bytes: u(22),
                        tx_errors: u(0),
                    }),
                    interfaces: vec![],
                }),
                process: Some(ProcessUsage {
                    timestamp: 0,
                    process_count: u(2),
                }),
                ..Default::default()
            }),
            cgroup: Some(CgroupUsage {
                cpu_ns: Some(c_cpu + S),
                memory_usage: Some(5 << 20),
                inactive_file: 1 << 20,
                ..Default::default()
            }),
            volumes: vec![(
                "data".into(),
                Some("claim-1".into()),
                crate::csi::stats::Usage {
                    time: at(1990),
                    available_bytes: Some(70),
                    capacity_bytes: Some(100),
                    used_bytes: Some(30),
                    inodes_free: Some(8),
                    inodes: Some(10),
                    inodes_used: Some(2),
                },
            )],
        }],
    }
}

/// The JSON field names are those of k8s.io/kubelet/pkg/apis/stats/v1alpha1 (types.go):
/// camelCase, the pod's `ephemeral-storage` and `process_stats`/`process_count`, the default
/// interface's counters inline in `network`.
#[test]
fn summary_uses_the_upstream_field_names() {
    let mut sampler = Sampler::default();
    let s = build(&readings(2000, 100 * S, 5 * S), &mut sampler);
    let v = serde_json::to_value(&s).unwrap();
    let node = &v["node"];
    assert_eq!(node["nodeName"], "pi");
    assert_eq!(node["startTime"], "1970-01-01T00:00:10Z");
    assert_eq!(node["cpu"]["usageCoreNanoSeconds"], 100 * S);
    assert!(
        node["cpu"].get("usageNanoCores").is_none(),
        "one sample: no rate yet"
    );
    assert_eq!(node["memory"]["workingSetBytes"], 600);
    assert_eq!(node["memory"]["usageBytes"], 700);
    assert_eq!(node["memory"]["availableBytes"], 400);
    assert_eq!(node["memory"]["rssBytes"], 200);
    assert_eq!(node["memory"]["pageFaults"], 5);
    assert_eq!(node["memory"]["majorPageFaults"], 1);
    assert_eq!(node["network"]["name"], "eth0");
    assert_eq!(node["network"]["rxBytes"], 7);
    assert_eq!(node["network"]["interfaces"].as_array().unwrap().len(), 2);
    for fs in [
        &node["fs"],
        &node["runtime"]["imageFs"],
        &node["runtime"]["containerFs"],
    ] {
        assert_eq!(fs["capacityBytes"], 1000);
        assert_eq!(fs["availableBytes"], 600);
        assert_eq!(fs["inodes"], 50);
        assert_eq!(fs["inodesFree"], 20);
    }
    assert_eq!(node["fs"]["usedBytes"], 400);
    assert_eq!(node["fs"]["inodesUsed"], 30);
    assert_eq!(node["runtime"]["imageFs"]["usedBytes"], 300);
    assert_eq!(node["rlimit"]["maxpid"], 4_194_304);
    assert_eq!(node["rlimit"]["curproc"], 120);

    let pod = &v["pods"][0];
    assert_eq!(
        pod["podRef"],
        serde_json::json!({"name": "web", "namespace": "edge", "uid": "u1"})
    );
    assert_eq!(pod["startTime"], "1970-01-01T00:15:00Z");
    // No CPU from the sandbox: the pod cgroup's.
    assert_eq!(pod["cpu"]["usageCoreNanoSeconds"], 6 * S);
    assert_eq!(pod["memory"]["workingSetBytes"], 4 << 20);
    assert_eq!(pod["network"]["name"], "eth0");
    assert_eq!(pod["network"]["txBytes"], 22);
    assert_eq!(pod["process_stats"]["process_count"], 2);
    assert_eq!(pod["ephemeral-storage"]["usedBytes"], 4096 + 100);
    assert_eq!(pod["ephemeral-storage"]["inodesUsed"], 4);
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["startTime"], "1970-01-01T00:16:40Z");
    assert_eq!(c["cpu"]["usageCoreNanoSeconds"], 5 * S);
    assert_eq!(c["memory"]["workingSetBytes"], 3 << 20);
    assert_eq!(c["memory"]["rssBytes"], 2 << 20);
    assert_eq!(c["rootfs"]["usedBytes"], 4096);
    assert_eq!(c["rootfs"]["capacityBytes"], 1000);
    assert_eq!(c["logs"]["usedBytes"], 100);
    // A CSI volume's NodeGetVolumeStats figures: upstream VolumeStats (FsStats inline, the pod
    // volume's name, pvcRef for a claim) in the pod's `volume` list.
    let vol = &pod["volume"][0];
    assert_eq!(vol["name"], "data");
    assert_eq!(
        vol["pvcRef"],
        serde_json::json!({"name": "claim-1", "namespace": "edge"})
    );
    assert_eq!(vol["capacityBytes"], 100);
    assert_eq!(vol["availableBytes"], 70);
    assert_eq!(vol["usedBytes"], 30);
    assert_eq!(vol["inodes"], 10);
    assert_eq!(vol["inodesFree"], 8);
    assert_eq!(vol["inodesUsed"], 2);
    assert_eq!(vol["time"], "1970-01-01T00:33:10Z");

    // It decodes back into the same types (the field names are one mapping both ways).
    let back: Summary = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}

#[test]
fn the_second_scrape_has_nano_cores_and_gone_objects_are_forgotten() {
    let mut sampler = Sampler::default();
    build(&readings(2000, 100 * S, 5 * S), &mut sampler);
    // 10 s later: node used 20 s of CPU (2 cores), the container 1 s (0.1 core).
    let s = build(&readings(2010, 120 * S, 6 * S), &mut sampler);
    assert_eq!(s.node.cpu.unwrap().usage_nano_cores, Some(2 * S));
    let pod = &s.pods[0];
    assert_eq!(
        pod.containers[0].cpu.as_ref().unwrap().usage_nano_cores,
        Some(S / 10)
    );
    assert_eq!(pod.cpu.as_ref().unwrap().usage_nano_cores, Some(S / 10));
    assert_eq!(sampler.len(), 3);
    let mut r = readings(2020, 130 * S, 7 * S);
    r.pods.clear();
    build(&r, &mut sampler);
    assert_eq!(sampler.len(), 1, "only the node is left");
}

#[test]
fn missing_readings_leave_fields_out_rather_than_invent_them() {
    let r = Readings {
        now: Some(at(5)),
        node: NodeReadings {
            name: "n".into(),
            ..Default::default()
        },
        pods: vec![PodReadings {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            containers: vec![ContainerReadings {
                name: "c".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let v = serde_json::to_value(build(&r, &mut Sampler::default())).unwrap();
    for k in ["cpu", "memory", "network", "fs", "runtime", "rlimit"] {
        assert!(v["node"].get(k).is_none(), "{k}: {v}");
    }
    let pod = &v["pods"][0];
    for k in [
        "cpu",
        "memory",
        "network",
        "ephemeral-storage",
        "process_stats",
    ] {
        assert!(pod.get(k).is_none(), "{k}: {v}");
    }
    assert_eq!(
        pod["containers"][0],
        serde_json::json!({"name": "c", "startTime": "1970-01-01T00:00:05Z"})
    );
}

#[test]
fn sandbox_stats_win_over_the_cgroup() {
    let mut r = readings(2000, S, S);
    if let Some(sb) = r.pods[0].sandbox.as_mut() {
        sb.cpu = Some(CpuUsage {
            timestamp: 0,
            usage_core_nano_seconds: u(42),
            usage_nano_cores: u(7),
        });
        sb.memory = Some(CriMemory {
            working_set_bytes: u(99),
            ..Default::default()
        });
    }
    let s = build(&r, &mut Sampler::default());
    let cpu = s.pods[0].cpu.clone().unwrap();
    // The runtime's own rate stands in until the sampler has two readings.
    assert_eq!(
        (cpu.usage_core_nano_seconds, cpu.usage_nano_cores),
        (Some(42), Some(7))
    );
    assert_eq!(
        s.pods[0].memory.as_ref().unwrap().working_set_bytes,
        Some(99)
    );
}

/// The working set eviction ranks pods by: usage minus the inactive file cache, on both
/// cgroup versions; none without a usage reading.
#[test]
fn working_set_subtracts_inactive_file_on_both_versions() {
    let v1 = parse_cgroup_v1("", "10000\n", "cache 100\ntotal_inactive_file 4096\n", "");
    assert_eq!(v1.working_set(), Some(5904));
    let v2 = parse_cgroup_v2("", "3000", "anon 1\ninactive_file 1000\n", "max");
    assert_eq!(v2.working_set(), Some(2000));
    assert_eq!(
        parse_cgroup_v2("", "10", "inactive_file 99", "").working_set(),
        Some(0)
    );
    assert_eq!(parse_cgroup_v2("", "max", "", "").working_set(), None);
}
