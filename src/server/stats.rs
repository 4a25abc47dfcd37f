//! `/stats/summary`: the kubelet's stats/v1alpha1 `Summary` (k8s.io/kubelet
//! `pkg/apis/stats/v1alpha1/types.go`, same JSON field names), built from readings.
//!
//! Three layers: the `Summary` types; [`build`], which turns [`Readings`] (CRI answers, /proc
//! and cgroup file texts already parsed, filesystem figures) into a `Summary` and is pure,
//! CPU rates included through the [`Sampler`]; and [`collect`], the thin I/O that takes the
//! readings. Per-container CPU, memory and writable layer come from CRI `ListContainerStats`;
//! per-pod CPU, memory, network and process count from CRI `ListPodSandboxStats` where the
//! runtime answers it, else CPU and memory from the pod's cgroup (v1 or v2 files); the node
//! from /proc (stat, meminfo, vmstat, net/dev, net/route) and statvfs. Only the pods this node
//! runs (the [`NodeView`]) are reported, never other sandboxes of a shared runtime.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::sampler::Sampler;
use super::view::NodeView;
use crate::cri::proto::{
    ContainerState, ContainerStats as CriContainerStats, MemoryUsage as CriMemory, PodSandboxState,
};
use crate::cri::proto_stats::{LinuxPodSandboxStats, NetworkInterfaceUsage};
use crate::cri::CriClient;
use crate::k8s::coordination::format_time;

// ---------------------------------------------------------------------------------------------
// stats/v1alpha1 types

/// The whole summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// Node-level figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub system_containers: Vec<ContainerStats>,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
}

/// Image and container filesystems of the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_fs: Option<FsStats>,
}

/// Process id limits of the node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RlimitStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curproc: Option<i64>,
}

/// Reference to a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// Pod-level figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: String,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(rename = "process_stats", skip_serializing_if = "Option::is_none")]
    pub process_stats: Option<ProcessStats>,
    /// Volumes with usage figures (CSI volumes whose driver reports them).
    #[serde(rename = "volume", skip_serializing_if = "Vec::is_empty", default)]
    pub volume_stats: Vec<VolumeStats>,
}

/// Reference to a claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PvcReference {
    pub name: String,
    pub namespace: String,
}

/// One volume of a pod: its usage, its name in the pod, and its claim if it has one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc_ref: Option<PvcReference>,
}

/// Processes of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    #[serde(rename = "process_count", skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u64>,
}

/// Container-level figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
}

/// CPU usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

/// Counters of one interface (inlined for the default one, as upstream does).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

/// Network usage: the default interface inline, every interface in `interfaces`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    pub time: String,
    #[serde(flatten)]
    pub default: InterfaceStats,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub interfaces: Vec<InterfaceStats>,
}

/// Filesystem usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Readings (what `collect` measured) and their parsers

/// A filesystem as statvfs sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// Node memory from /proc/meminfo and /proc/vmstat (bytes, counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeMemory {
    pub total: u64,
    pub free: u64,
    pub inactive_file: u64,
    pub anon: u64,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// A cgroup's CPU and memory (v1 or v2 files, parsed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    pub cpu_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    pub inactive_file: u64,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The memory limit, when one is set.
    pub limit: Option<u64>,
}

impl CgroupUsage {
    /// The working set as the kubelet computes it: usage minus the inactive file cache
    /// (`total_inactive_file` on cgroup v1, `inactive_file` on v2).
    pub fn working_set(&self) -> Option<u64> {
        self.memory_usage
            .map(|u| u.saturating_sub(self.inactive_file))
    }
}

/// The node's own readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReadings {
    pub name: String,
    pub boot_time: Option<SystemTime>,
    /// Cumulative CPU of all cores (ns).
    pub cpu_ns: Option<u64>,
    pub memory: Option<NodeMemory>,
    pub interfaces: Vec<InterfaceStats>,
    /// The interface of the default route.
    pub default_interface: Option<String>,
    /// The filesystem of the agent's root directory.
    pub root_fs: Option<FsInfo>,
    /// The runtime's image filesystem: statvfs and the bytes/inodes the runtime says it uses.
    pub image_fs: Option<(FsInfo, Option<u64>, Option<u64>)>,
    /// The filesystem of the pod logs directory.
    pub logs_fs: Option<FsInfo>,
    pub max_pid: Option<i64>,
    pub processes: Option<i64>,
}

/// One container's readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerReadings {
    pub name: String,
    pub created: Option<SystemTime>,
    pub cri: Option<CriContainerStats>,
    /// Bytes and files of its log directory.
    pub logs_used: Option<(u64, u64)>,
}

/// One pod's readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodReadings {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub start: Option<SystemTime>,
    pub containers: Vec<ContainerReadings>,
    pub sandbox: Option<LinuxPodSandboxStats>,
    pub cgroup: Option<CgroupUsage>,
    /// Volumes with usage readings: (pod volume name, claim name, usage).
    pub volumes: Vec<(String, Option<String>, crate::csi::stats::Usage)>,
}

/// Everything a summary is built from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    pub now: Option<SystemTime>,
    pub node: NodeReadings,
    pub pods: Vec<PodReadings>,
}

/// A `key: value` (or `key value`) number from /proc-style text.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Cumulative CPU (ns) of all cores from /proc/stat's `cpu` line: every state but idle and
/// iowait (the kernel's busy time), in USER_HZ (100 on every Linux target) ticks.
pub fn parse_proc_stat_cpu(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is inside user already).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .fold(0u64, |a, i| a.saturating_add(get(*i)));
    (ticks.len() >= 4).then(|| busy.saturating_mul(10_000_000))
}

/// Boot time (seconds since the epoch) from /proc/stat's `btime`.
pub fn parse_boot_time(text: &str) -> Option<SystemTime> {
    field(text, "btime").map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Node memory from /proc/meminfo and /proc/vmstat texts.
pub fn parse_node_memory(meminfo: &str, vmstat: &str) -> Option<NodeMemory> {
    let kb = |k: &str| field(meminfo, k).map(|v| v.saturating_mul(1024));
    Some(NodeMemory {
        total: kb("MemTotal")?,
        free: kb("MemFree")?,
        inactive_file: kb("Inactive(file)").unwrap_or(0),
        anon: kb("AnonPages").unwrap_or(0),
        page_faults: field(vmstat, "pgfault"),
        major_page_faults: field(vmstat, "pgmajfault"),
    })
}

/// Interface counters from /proc/net/dev (loopback left out, as upstream's node stats do).
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            // rx: bytes packets errs drop fifo frame compressed multicast; then tx: bytes packets errs …
            if name == "lo" || name.is_empty() || v.len() < 11 {
                return None;
            }
            Some(InterfaceStats {
                name: name.to_string(),
                rx_bytes: v.first().copied(),
                rx_errors: v.get(2).copied(),
                tx_bytes: v.get(8).copied(),
                tx_errors: v.get(10).copied(),
            })
        })
        .collect()
}

/// The interface of the IPv4 default route from /proc/net/route.
pub fn parse_default_route(text: &str) -> Option<String> {
    text.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let iface = f.next()?;
        (f.next()? == "00000000").then(|| iface.to_string())
    })
}

/// A cgroup v2 directory's `cpu.stat`, `memory.current`, `memory.stat`, `memory.max`.
pub fn parse_cgroup_v2(cpu_stat: &str, current: &str, memory_stat: &str, max: &str) -> CgroupUsage {
    CgroupUsage {
        cpu_ns: field(cpu_stat, "usage_usec").map(|u| u.saturating_mul(1000)),
        memory_usage: current.trim().parse().ok(),
        inactive_file: field(memory_stat, "inactive_file").unwrap_or(0),
        rss: field(memory_stat, "anon"),
        page_faults: field(memory_stat, "pgfault"),
        major_page_faults: field(memory_stat, "pgmajfault"),
        limit: max.trim().parse().ok(),
    }
}

/// Limits at or above this are "no limit" in cgroup v1 (the page-rounded i64 max).
const V1_UNLIMITED: u64 = 1 << 62;

/// cgroup v1 `cpuacct.usage`, `memory.usage_in_bytes`, `memory.stat`, `memory.limit_in_bytes`.
pub fn parse_cgroup_v1(cpuacct: &str, usage: &str, memory_stat: &str, limit: &str) -> CgroupUsage {
    CgroupUsage {
        cpu_ns: cpuacct.trim().parse().ok(),
        memory_usage: usage.trim().parse().ok(),
        inactive_file: field(memory_stat, "total_inactive_file").unwrap_or(0),
        rss: field(memory_stat, "total_rss"),
        page_faults: field(memory_stat, "total_pgfault"),
        major_page_faults: field(memory_stat, "total_pgmajfault"),
        limit: limit
            .trim()
            .parse()
            .ok()
            .filter(|l: &u64| *l < V1_UNLIMITED),
    }
}

// ---------------------------------------------------------------------------------------------
// Building the summary (pure)

fn ns_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn time_of_ns(ns: i64) -> Option<SystemTime> {
    (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs()))
}

fn fs_stats(time: &str, fs: &FsInfo, used: Option<u64>, inodes_used: Option<u64>) -> FsStats {
    FsStats {
        time: time.to_string(),
        available_bytes: Some(fs.available),
        capacity_bytes: Some(fs.capacity),
        used_bytes: Some(used.unwrap_or(fs.used)),
        inodes_free: Some(fs.inodes_free),
        inodes: Some(fs.inodes),
        inodes_used: Some(inodes_used.unwrap_or(fs.inodes.saturating_sub(fs.inodes_free))),
    }
}

fn cpu(
    sampler: &mut Sampler,
    seen: &mut HashSet<String>,
    key: String,
    usage: Option<u64>,
    runtime_rate: Option<u64>,
    at: SystemTime,
) -> Option<CpuStats> {
    let usage = usage?;
    let rate = sampler.rate(&key, usage, ns_of(at)).or(runtime_rate);
    seen.insert(key);
    Some(CpuStats {
        time: format_time(at),
        usage_nano_cores: rate,
        usage_core_nano_seconds: Some(usage),
    })
}

fn memory_of_cri(m: &CriMemory, fallback_time: &str) -> MemoryStats {
    let v = |x: &Option<crate::cri::proto::UInt64Value>| x.as_ref().map(|u| u.value);
    MemoryStats {
        time: time_of_ns(m.timestamp).map_or_else(|| fallback_time.to_string(), format_time),
        available_bytes: v(&m.available_bytes),
        usage_bytes: v(&m.usage_bytes),
        working_set_bytes: v(&m.working_set_bytes),
        rss_bytes: v(&m.rss_bytes),
        page_faults: v(&m.page_faults),
        major_page_faults: v(&m.major_page_faults),
    }
}

fn memory_of_cgroup(c: &CgroupUsage, time: &str) -> Option<MemoryStats> {
    let usage = c.memory_usage?;
    // Working set as cAdvisor defines it: usage minus inactive file pages.
    let working_set = usage.saturating_sub(c.inactive_file);
    Some(MemoryStats {
        time: time.to_string(),
        available_bytes: c.limit.map(|l| l.saturating_sub(working_set)),
        usage_bytes: Some(usage),
        working_set_bytes: Some(working_set),
        rss_bytes: c.rss,
        page_faults: c.page_faults,
        major_page_faults: c.major_page_faults,
    })
}

fn interface(i: &NetworkInterfaceUsage) -> InterfaceStats {
    let v = |x: &Option<crate::cri::proto::UInt64Value>| x.as_ref().map(|u| u.value);
    InterfaceStats {
        name: i.name.clone(),
        rx_bytes: v(&i.rx_bytes),
        rx_errors: v(&i.rx_errors),
        tx_bytes: v(&i.tx_bytes),
        tx_errors: v(&i.tx_errors),
    }
}

fn node_stats(
    r: &NodeReadings,
    now: SystemTime,
    sampler: &mut Sampler,
    seen: &mut HashSet<String>,
) -> NodeStats {
    let time = format_time(now);
    let memory = r.memory.map(|m| {
        let usage = m.total.saturating_sub(m.free);
        let working_set = usage.saturating_sub(m.inactive_file);
        MemoryStats {
            time: time.clone(),
            available_bytes: Some(m.total.saturating_sub(working_set)),
            usage_bytes: Some(usage),
            working_set_bytes: Some(working_set),
            rss_bytes: Some(m.anon),
            page_faults: m.page_faults,
            major_page_faults: m.major_page_faults,
        }
    });
    let network = (!r.interfaces.is_empty()).then(|| {
        let default = r
            .default_interface
            .as_ref()
            .and_then(|d| r.interfaces.iter().find(|i| &i.name == d))
            .or(r.interfaces.first())
            .cloned()
            .unwrap_or_default();
        NetworkStats {
            time: time.clone(),
            default,
            interfaces: r.interfaces.clone(),
        }
    });
    let image_fs = r
        .image_fs
        .as_ref()
        .map(|(fs, used, inodes)| fs_stats(&time, fs, *used, *inodes));
    NodeStats {
        node_name: r.name.clone(),
        system_containers: Vec::new(),
        start_time: format_time(r.boot_time.unwrap_or(UNIX_EPOCH)),
        cpu: cpu(sampler, seen, "node".into(), r.cpu_ns, None, now),
        memory,
        network,
        fs: r.root_fs.as_ref().map(|fs| fs_stats(&time, fs, None, None)),
        runtime: image_fs.map(|i| RuntimeStats {
            image_fs: Some(i.clone()),
            // One filesystem holds images and writable layers on containerd's default setup.
            container_fs: Some(i),
        }),
        rlimit: (r.max_pid.is_some() || r.processes.is_some()).then(|| RlimitStats {
            time: time.clone(),
            maxpid: r.max_pid,
            curproc: r.processes,
        }),
    }
}

fn container_stats(
    c: &ContainerReadings,
    node: &NodeReadings,
    now: SystemTime,
    sampler: &mut Sampler,
    seen: &mut HashSet<String>,
) -> ContainerStats {
    let time = format_time(now);
    let cri = c.cri.as_ref();
    let id = cri
        .and_then(|s| s.attributes.as_ref())
        .map(|a| a.id.clone())
        .unwrap_or_default();
    let cpu_usage = cri.and_then(|s| s.cpu.as_ref());
    let at = cpu_usage
        .and_then(|u| time_of_ns(u.timestamp))
        .unwrap_or(now);
    let rootfs = cri.and_then(|s| s.writable_layer.as_ref()).map(|w| {
        let used = w.used_bytes.as_ref().map(|u| u.value);
        let inodes = w.inodes_used.as_ref().map(|u| u.value);
        match node.image_fs.as_ref() {
            Some((fs, _, _)) => fs_stats(&time, fs, used, inodes),
            None => FsStats {
                time: time.clone(),
                used_bytes: used,
                inodes_used: inodes,
                ..Default::default()
            },
        }
    });
    let logs = c
        .logs_used
        .map(|(bytes, files)| match node.logs_fs.as_ref() {
            Some(fs) => fs_stats(&time, fs, Some(bytes), Some(files)),
            None => FsStats {
                time: time.clone(),
                used_bytes: Some(bytes),
                inodes_used: Some(files),
                ..Default::default()
            },
        });
    ContainerStats {
        name: c.name.clone(),
        start_time: format_time(c.created.unwrap_or(now)),
        cpu: cpu(
            sampler,
            seen,
            format!("container/{id}"),
            cpu_usage.and_then(|u| u.usage_core_nano_seconds.as_ref().map(|v| v.value)),
            cpu_usage.and_then(|u| u.usage_nano_cores.as_ref().map(|v| v.value)),
            at,
        ),
        memory: cri
            .and_then(|s| s.memory.as_ref())
            .map(|m| memory_of_cri(m, &time)),
        rootfs,
        logs,
    }
}

fn pod_stats(
    p: &PodReadings,
    node: &NodeReadings,
    now: SystemTime,
    sampler: &mut Sampler,
    seen: &mut HashSet<String>,
) -> PodStats {
    let time = format_time(now);
    let containers: Vec<ContainerStats> = p
        .containers
        .iter()
        .map(|c| container_stats(c, node, now, sampler, seen))
        .collect();
    let key = format!("pod/{}", p.uid);
    let sb = p.sandbox.as_ref();
    let (cpu_stats, memory) = match (sb.and_then(|s| s.cpu.as_ref()), p.cgroup.as_ref()) {
        (Some(c), _) => {
            let at = time_of_ns(c.timestamp).unwrap_or(now);
            let usage = c.usage_core_nano_seconds.as_ref().map(|v| v.value);
            let rate = c.usage_nano_cores.as_ref().map(|v| v.value);
            (
                cpu(sampler, seen, key, usage, rate, at),
                sb.and_then(|s| s.memory.as_ref())
                    .map(|m| memory_of_cri(m, &time)),
            )
        }
        (None, Some(cg)) => (
            cpu(sampler, seen, key, cg.cpu_ns, None, now),
            memory_of_cgroup(cg, &time),
        ),
        (None, None) => (None, None),
    };
    let network = sb.and_then(|s| s.network.as_ref()).map(|n| NetworkStats {
        time: time_of_ns(n.timestamp).map_or_else(|| time.clone(), format_time),
        default: n
            .default_interface
            .as_ref()
            .map(interface)
            .unwrap_or_default(),
        interfaces: n
            .default_interface
            .iter()
            .chain(&n.interfaces)
            .map(interface)
            .collect(),
    });
    // Ephemeral storage: writable layers and logs of the pod's containers, as upstream sums it
    // (volumes are not measured here).
    let used = containers.iter().fold(0u64, |a, c| {
        let r = c.rootfs.as_ref().and_then(|f| f.used_bytes).unwrap_or(0);
        let l = c.logs.as_ref().and_then(|f| f.used_bytes).unwrap_or(0);
        a.saturating_add(r).saturating_add(l)
    });
    let inodes = containers.iter().fold(0u64, |a, c| {
        let r = c.rootfs.as_ref().and_then(|f| f.inodes_used).unwrap_or(0);
        let l = c.logs.as_ref().and_then(|f| f.inodes_used).unwrap_or(0);
        a.saturating_add(r).saturating_add(l)
    });
    let ephemeral_storage = node
        .image_fs
        .as_ref()
        .map(|(fs, _, _)| fs_stats(&time, fs, Some(used), Some(inodes)));
    PodStats {
        pod_ref: PodReference {
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            uid: p.uid.clone(),
        },
        start_time: format_time(p.start.unwrap_or(now)),
        containers,
        cpu: cpu_stats,
        memory,
        network,
        ephemeral_storage,
        process_stats: sb.and_then(|s| s.process.as_ref()).map(|pr| ProcessStats {
            process_count: pr.process_count.as_ref().map(|v| v.value),
        }),
        volume_stats: p
            .volumes
            .iter()
            .map(|(name, claim, u)| VolumeStats {
                fs: FsStats {
                    time: format_time(u.time),
                    available_bytes: u.available_bytes,
                    capacity_bytes: u.capacity_bytes,
                    used_bytes: u.used_bytes,
                    inodes_free: u.inodes_free,
                    inodes: u.inodes,
                    inodes_used: u.inodes_used,
                },
                name: name.clone(),
                pvc_ref: claim.as_ref().map(|c| PvcReference {
                    name: c.clone(),
                    namespace: p.namespace.clone(),
                }),
            })
            .collect(),
    }
}

/// The summary of `r`; CPU rates from `sampler`, which forgets what is gone.
pub fn build(r: &Readings, sampler: &mut Sampler) -> Summary {
    let now = r.now.unwrap_or(UNIX_EPOCH);
    let mut seen = HashSet::new();
    let node = node_stats(&r.node, now, sampler, &mut seen);
    let pods = r
        .pods
        .iter()
        .map(|p| pod_stats(p, &r.node, now, sampler, &mut seen))
        .collect();
    sampler.retain(&seen);
    Summary { node, pods }
}

// ---------------------------------------------------------------------------------------------
// Collecting (thin I/O)

/// Where the collector looks.
#[derive(Debug, Clone)]
pub struct Sources {
    pub node_name: String,
    /// The agent's root directory (its filesystem is the node's `fs`).
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    /// The cgroup filesystem (`/sys/fs/cgroup`) and the kubelet's `cgroupRoot`.
    pub cgroup_fs: PathBuf,
    pub cgroup_root: String,
    /// /proc.
    pub proc_dir: PathBuf,
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

// statvfs field widths differ between 32- and 64-bit targets.
#[allow(clippy::useless_conversion)]
pub fn statvfs(p: &Path) -> Option<FsInfo> {
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    let frag = u64::from(s.fragment_size());
    let blocks = u64::from(s.blocks());
    let free = u64::from(s.blocks_free());
    Some(FsInfo {
        capacity: blocks.saturating_mul(frag),
        available: u64::from(s.blocks_available()).saturating_mul(frag),
        used: blocks.saturating_sub(free).saturating_mul(frag),
        inodes: u64::from(s.files()),
        inodes_free: u64::from(s.files_free()),
    })
}

/// Bytes and files under `dir` (one level of subdirectories, as the log layout has).
fn dir_usage(dir: &Path) -> Option<(u64, u64)> {
    let mut bytes = 0u64;
    let mut files = 0u64;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(md) = e.metadata() else { continue };
        files += 1;
        bytes = bytes.saturating_add(md.len());
    }
    Some((bytes, files))
}

/// A cgroup's usage below `cgroup_fs` (v2 when `cgroup.controllers` is there, else v1).
pub fn read_cgroup(cgroup_fs: &Path, rel: &Path) -> Option<CgroupUsage> {
    if cgroup_fs.join("cgroup.controllers").exists() {
        let d = cgroup_fs.join(rel);
        d.is_dir().then(|| {
            parse_cgroup_v2(
                &read(&d.join("cpu.stat")),
                &read(&d.join("memory.current")),
                &read(&d.join("memory.stat")),
                &read(&d.join("memory.max")),
            )
        })
    } else {
        let cpu = cgroup_fs.join("cpuacct").join(rel);
        let mem = cgroup_fs.join("memory").join(rel);
        (cpu.is_dir() || mem.is_dir()).then(|| {
            parse_cgroup_v1(
                &read(&cpu.join("cpuacct.usage")),
                &read(&mem.join("memory.usage_in_bytes")),
                &read(&mem.join("memory.stat")),
                &read(&mem.join("memory.limit_in_bytes")),
            )
        })
    }
}

/// The cached usage of `pod`'s published CSI volumes (see [`crate::csi::stats`]: never a
/// driver call on this path): (volume name, claim name, usage), by volume name.
fn csi_volume_readings(
    src: &Sources,
    pod: &crate::k8s::pod::Pod,
) -> Vec<(String, Option<String>, crate::csi::stats::Usage)> {
    let dir = src
        .root_dir
        .join("pods")
        .join(&pod.metadata.uid)
        .join("volumes")
        .join(crate::csi::volume::PLUGIN_DIR);
    let mut out: Vec<_> = pod
        .spec
        .volumes
        .iter()
        .filter(|v| v.csi.is_some() || v.persistent_volume_claim.is_some())
        .filter_map(|v| {
            let u = crate::csi::stats::volume_usage(&dir.join(&v.name))?;
            let claim = v
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone());
            Some((v.name.clone(), claim, u))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn node_readings(src: &Sources) -> NodeReadings {
    let proc = &src.proc_dir;
    let stat = read(&proc.join("stat"));
    let processes = read(&proc.join("loadavg"))
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, total)| total.parse().ok());
    NodeReadings {
        name: src.node_name.clone(),
        boot_time: parse_boot_time(&stat),
        cpu_ns: parse_proc_stat_cpu(&stat),
        memory: parse_node_memory(&read(&proc.join("meminfo")), &read(&proc.join("vmstat"))),
        interfaces: parse_net_dev(&read(&proc.join("net/dev"))),
        default_interface: parse_default_route(&read(&proc.join("net/route"))),
        root_fs: statvfs(&src.root_dir),
        image_fs: None,
        logs_fs: statvfs(&src.pod_logs_dir),
        max_pid: read(&proc.join("sys/kernel/pid_max")).trim().parse().ok(),
        processes,
    }
}

/// What a collection could not read (reported as `scrape_error` and logged; the rest of the
/// summary is still served).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<String>);

/// Takes the readings: the node from /proc and statvfs, the node's pods and containers from
/// the runtime (one call each for sandboxes, containers, container stats, sandbox stats and
/// the image filesystem), pod cgroups where the runtime has no sandbox stats.
pub async fn collect(src: &Sources, view: &NodeView, cri: &CriClient) -> (Readings, Problems) {
    let mut problems = Problems::default();
    let mut node = node_readings(src);
    match cri.image_fs_info().await {
        Ok(r) => {
            if let Some(f) = r.image_filesystems.first() {
                let mount = f.fs_id.as_ref().map(|m| m.mountpoint.clone());
                if let Some(fs) = mount.as_deref().and_then(|m| statvfs(Path::new(m))) {
                    node.image_fs = Some((
                        fs,
                        f.used_bytes.as_ref().map(|u| u.value),
                        f.inodes_used.as_ref().map(|u| u.value),
                    ));
                }
            }
        }
        Err(e) => problems.0.push(e.to_string()),
    }
    let sandboxes = cri.list_pod_sandbox(None).await.map(|r| r.items);
    let containers = cri.list_containers(None).await.map(|r| r.containers);
    let stats = cri.list_container_stats(None).await.map(|r| r.stats);
    // containerd 1.6 may not answer ListPodSandboxStats (Unimplemented): cgroups then.
    let sandbox_stats = cri
        .list_pod_sandbox_stats(None)
        .await
        .map(|r| r.stats)
        .unwrap_or_default();
    let (sandboxes, containers) = match (sandboxes, containers) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            problems.0.push(e.to_string());
            (Vec::new(), Vec::new())
        }
    };
    let stats: HashMap<String, CriContainerStats> = match stats {
        Ok(s) => s
            .into_iter()
            .filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s)))
            .collect(),
        Err(e) => {
            problems.0.push(e.to_string());
            HashMap::new()
        }
    };
    let mut pods = Vec::new();
    for pod in view.pods() {
        let uid = &pod.metadata.uid;
        let ready = sandboxes.iter().find(|s| {
            s.state == PodSandboxState::SandboxReady as i32
                && s.metadata.as_ref().is_some_and(|m| &m.uid == uid)
        });
        let Some(sandbox) = ready else { continue };
        let root = src.pod_logs_dir.display().to_string();
        let log_dir = PathBuf::from(crate::runtime::spec::pod_log_dir(&pod, &root));
        let mut cs: Vec<ContainerReadings> = containers
            .iter()
            .filter(|c| {
                c.pod_sandbox_id == sandbox.id && c.state == ContainerState::ContainerRunning as i32
            })
            .filter_map(|c| {
                let name = c.metadata.as_ref()?.name.clone();
                Some(ContainerReadings {
                    logs_used: dir_usage(&log_dir.join(&name)),
                    name,
                    created: time_of_ns(c.created_at),
                    cri: stats.get(&c.id).cloned(),
                })
            })
            .collect();
        cs.sort_by(|a, b| a.name.cmp(&b.name));
        let sandbox_linux = sandbox_stats
            .iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == sandbox.id))
            .and_then(|s| s.linux.clone());
        let cgroup = match &sandbox_linux {
            Some(l) if l.cpu.is_some() => None,
            _ => read_cgroup(
                &src.cgroup_fs,
                &crate::runtime::cgroups::pod_path(&pod, &src.cgroup_root),
            ),
        };
        pods.push(PodReadings {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: uid.clone(),
            start: time_of_ns(sandbox.created_at),
            containers: cs,
            sandbox: sandbox_linux,
            cgroup,
            volumes: csi_volume_readings(src, &pod),
        });
    }
    let readings = Readings {
        now: Some(SystemTime::now()),
        node,
        pods,
    };
    (readings, problems)
}

#[cfg(test)]
mod tests;
