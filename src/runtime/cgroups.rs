//! Pod-level and QoS-level cgroups the kubelet's way (cgroupfs driver, cgroup v1 or v2).
//!
//! The runtime creates each container's cgroup below the pod's parent
//! (`<root>/{,burstable/,besteffort/}pod<uid>`), but it configures only the container's own.
//! Without values on the pod and QoS levels, every BestEffort pod weighs as much as a
//! Guaranteed one under CPU contention and a Burstable pod has no bound of its own. This module
//! computes the kubelet's values ([`pod_values`], pure, as `ResourceConfigForPod` does) and
//! writes them before the pod's sandbox is created ([`apply`]); removal is housekeeping's.
//!
//! Rules followed (kubelet `pkg/kubelet/cm/helpers_linux.go`, `qos_container_manager_linux.go`):
//! the pod's requests and limits are the larger of the sum over its app containers and the
//! largest init container; cpu.shares = requests.cpu in millicores × 1024 / 1000 (at least 2);
//! BestEffort pods get 2 shares and nothing else; a CPU quota (period 100 ms) and a memory
//! limit are set only when every container declares that limit (always, for Guaranteed); the
//! BestEffort QoS level has 2 shares, the Burstable level the sum of its pods' CPU requests.

use std::fs;
use std::path::{Path, PathBuf};

use crate::k8s::pod::{Container, Pod};
use crate::runtime::spec::{qos_class, QosClass, CPU_PERIOD_US};

/// The smallest cpu.shares the kernel takes (and the kubelet gives BestEffort).
pub const MIN_SHARES: u64 = 2;
/// The largest cpu.shares the kernel takes.
pub const MAX_SHARES: u64 = 262_144;
/// The smallest CFS quota the kubelet sets (1 ms).
const MIN_QUOTA_US: i64 = 1_000;

/// What one pod cgroup is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCgroup {
    /// cpu.shares (v1) / converted to cpu.weight (v2).
    pub cpu_shares: u64,
    /// CFS quota in µs per [`CPU_PERIOD_US`], when the pod's CPU is bounded.
    pub cpu_quota_us: Option<i64>,
    /// Memory limit in bytes, when the pod's memory is bounded.
    pub memory_limit: Option<u64>,
    /// pids.max, when `podPidsLimit` is set.
    pub pids_limit: Option<i64>,
}

/// Millicores to cpu.shares, as the kubelet converts them.
pub fn milli_to_shares(milli: u64) -> u64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// Millicores to a CFS quota in µs per [`CPU_PERIOD_US`].
pub fn milli_to_quota(milli: u64) -> i64 {
    let q = i64::try_from(milli.saturating_mul(CPU_PERIOD_US as u64) / 1000).unwrap_or(i64::MAX);
    q.max(MIN_QUOTA_US)
}

/// cpu.shares to cgroup v2 cpu.weight (the runtime's conversion: [2, 262144] → [1, 10000]).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((s - 2) * 9999) / 262_142
}

/// One resource of one container: (request, limit), the request defaulting to the limit.
fn amounts(c: &Container, res: &str) -> (Option<u64>, Option<u64>) {
    let get = |m: &std::collections::BTreeMap<String, crate::k8s::quantity::Quantity>| {
        m.get(res).and_then(|q| {
            if res == "cpu" {
                q.to_millis().ok()
            } else {
                q.to_units().ok()
            }
        })
    };
    let limit = get(&c.resources.limits);
    (get(&c.resources.requests).or(limit), limit)
}

/// The pod's request and limit of `res` (limit `None` unless every container declares one):
/// the larger of the app containers' sum and the largest init container.
fn pod_amounts(pod: &Pod, res: &str) -> (u64, Option<u64>) {
    let mut req_sum = 0u64;
    let mut lim_sum = Some(0u64);
    for c in &pod.spec.containers {
        let (r, l) = amounts(c, res);
        req_sum = req_sum.saturating_add(r.unwrap_or(0));
        lim_sum = match (lim_sum, l) {
            (Some(s), Some(l)) => Some(s.saturating_add(l)),
            _ => None,
        };
    }
    let mut req = req_sum;
    let mut lim = lim_sum;
    for c in &pod.spec.init_containers {
        let (r, l) = amounts(c, res);
        req = req.max(r.unwrap_or(0));
        lim = match (lim, l) {
            (Some(s), Some(l)) => Some(s.max(l)),
            _ => None,
        };
    }
    (req, lim)
}

/// The kubelet's values for a pod's cgroup. Pure.
pub fn pod_values(pod: &Pod, pids_limit: i64) -> PodCgroup {
    let pids_limit = (pids_limit > 0).then_some(pids_limit);
    let qos = qos_class(pod);
    if qos == QosClass::BestEffort {
        return PodCgroup {
            cpu_shares: MIN_SHARES,
            cpu_quota_us: None,
            memory_limit: None,
            pids_limit,
        };
    }
    let (cpu_req, cpu_lim) = pod_amounts(pod, "cpu");
    let (_, mem_lim) = pod_amounts(pod, "memory");
    PodCgroup {
        cpu_shares: milli_to_shares(cpu_req),
        cpu_quota_us: cpu_lim.filter(|m| *m > 0).map(milli_to_quota),
        memory_limit: mem_lim.filter(|m| *m > 0),
        pids_limit,
    }
}

/// The pod's memory request (bytes): what eviction compares its usage with.
pub fn memory_request(pod: &Pod) -> u64 {
    pod_amounts(pod, "memory").0
}

/// The Burstable QoS level's cpu.shares: the sum of its pods' CPU requests.
pub fn burstable_shares<'a>(pods: impl Iterator<Item = &'a Pod>) -> u64 {
    let milli = pods
        .filter(|p| qos_class(p) == QosClass::Burstable)
        .map(|p| pod_amounts(p, "cpu").0)
        .fold(0u64, u64::saturating_add);
    milli_to_shares(milli)
}

/// The pod's cgroup path below a hierarchy (`kubepods/burstable/pod<uid>`).
pub fn pod_path(pod: &Pod, cgroup_root: &str) -> PathBuf {
    PathBuf::from(
        crate::runtime::spec::cgroup_parent(pod, cgroup_root)
            .trim_start_matches('/')
            .to_string(),
    )
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    fs::write(dir.join(file), value)
        .map_err(|e| format!("write {value:?} to {}: {e}", dir.join(file).display()))
}

fn mkdir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create cgroup {}: {e}", dir.display()))
}

/// Creates the pod's cgroup with `v`, and the QoS levels with theirs, under `cgroup_fs`
/// (`/sys/fs/cgroup`). cgroup v2 when `cgroup.controllers` is there, else the v1 `cpu`,
/// `memory` and `pids` hierarchies (the runtime creates the others as it needs them).
pub fn apply(
    cgroup_fs: &Path,
    cgroup_root: &str,
    pod: &Pod,
    v: &PodCgroup,
    burstable: u64,
) -> Result<(), String> {
    let rel = pod_path(pod, cgroup_root);
    let root = if cgroup_root.is_empty() {
        "/kubepods"
    } else {
        cgroup_root
    };
    let root = PathBuf::from(root.trim_start_matches('/'));
    if cgroup_fs.join("cgroup.controllers").exists() {
        return apply_v2(cgroup_fs, &root, &rel, v, burstable);
    }
    let cpu = cgroup_fs.join("cpu");
    if cpu.is_dir() {
        let (be, bu) = (
            cpu.join(&root).join("besteffort"),
            cpu.join(&root).join("burstable"),
        );
        mkdir(&be)?;
        mkdir(&bu)?;
        write(&be, "cpu.shares", &MIN_SHARES.to_string())?;
        write(&bu, "cpu.shares", &burstable.to_string())?;
        let dir = cpu.join(&rel);
        mkdir(&dir)?;
        write(&dir, "cpu.shares", &v.cpu_shares.to_string())?;
        if let Some(q) = v.cpu_quota_us {
            write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
    }
    let mem = cgroup_fs.join("memory");
    if mem.is_dir() {
        let dir = mem.join(&rel);
        mkdir(&dir)?;
        if let Some(m) = v.memory_limit {
            write(&dir, "memory.limit_in_bytes", &m.to_string())?;
        }
    }
    let pids = cgroup_fs.join("pids");
    if pids.is_dir() {
        let dir = pids.join(&rel);
        mkdir(&dir)?;
        if let Some(p) = v.pids_limit {
            write(&dir, "pids.max", &p.to_string())?;
        }
    }
    Ok(())
}

fn apply_v2(
    fs_root: &Path,
    root: &Path,
    rel: &Path,
    v: &PodCgroup,
    burstable: u64,
) -> Result<(), String> {
    // Controllers reach a cgroup only through every ancestor's subtree_control.
    let enable = |dir: &Path| {
        let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
    };
    enable(fs_root);
    let base = fs_root.join(root);
    mkdir(&base)?;
    enable(&base);
    for (qos, shares) in [("besteffort", MIN_SHARES), ("burstable", burstable)] {
        let d = base.join(qos);
        mkdir(&d)?;
        enable(&d);
        write(&d, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    let dir = fs_root.join(rel);
    mkdir(&dir)?;
    enable(&dir);
    write(
        &dir,
        "cpu.weight",
        &shares_to_weight(v.cpu_shares).to_string(),
    )?;
    if let Some(q) = v.cpu_quota_us {
        write(&dir, "cpu.max", &format!("{q} {CPU_PERIOD_US}"))?;
    }
    if let Some(m) = v.memory_limit {
        write(&dir, "memory.max", &m.to_string())?;
    }
    if let Some(p) = v.pids_limit {
        write(&dir, "pids.max", &p.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap()
    }

    fn with(containers: &str, init: &str) -> Pod {
        pod(&format!(
            r#"{{"metadata":{{"name":"p","namespace":"n","uid":"u"}},
               "spec":{{"containers":[{containers}],"initContainers":[{init}]}}}}"#
        ))
    }

    fn c(name: &str, requests: &str, limits: &str) -> String {
        format!(
            r#"{{"name":"{name}","image":"i","resources":{{"requests":{{{requests}}},"limits":{{{limits}}}}}}}"#
        )
    }

    #[test]
    fn best_effort_gets_two_shares_and_nothing_else() {
        let p = with(&c("a", "", ""), "");
        assert_eq!(
            pod_values(&p, 0),
            PodCgroup {
                cpu_shares: 2,
                cpu_quota_us: None,
                memory_limit: None,
                pids_limit: None
            }
        );
        assert_eq!(pod_values(&p, 1024).pids_limit, Some(1024));
        assert_eq!(
            pod_path(&p, "/kubepods"),
            PathBuf::from("kubepods/besteffort/podu")
        );
    }

    #[test]
    fn guaranteed_sums_its_containers() {
        let p = with(
            &[
                c(
                    "a",
                    r#""cpu":"250m","memory":"64Mi""#,
                    r#""cpu":"250m","memory":"64Mi""#,
                ),
                c("b", "", r#""cpu":"1","memory":"1Gi""#),
            ]
            .join(","),
            "",
        );
        let v = pod_values(&p, 0);
        assert_eq!(v.cpu_shares, 1250 * 1024 / 1000);
        assert_eq!(v.cpu_quota_us, Some(125_000));
        assert_eq!(v.memory_limit, Some((64 << 20) + (1 << 30)));
        assert_eq!(pod_path(&p, ""), PathBuf::from("kubepods/podu"));
    }

    /// Burstable: shares from requests; a quota or memory limit only when every container
    /// declares that limit.
    #[test]
    fn burstable_bounds_only_what_every_container_declares() {
        let p = with(
            &[
                c(
                    "a",
                    r#""cpu":"100m","memory":"32Mi""#,
                    r#""cpu":"300m","memory":"64Mi""#,
                ),
                c("b", r#""cpu":"50m""#, r#""memory":"16Mi""#),
            ]
            .join(","),
            "",
        );
        let v = pod_values(&p, 0);
        assert_eq!(v.cpu_shares, 150 * 1024 / 1000);
        assert_eq!(v.cpu_quota_us, None, "b has no CPU limit");
        assert_eq!(v.memory_limit, Some(80 << 20));
        let one = with(
            &c(
                "a",
                r#""cpu":"100m","memory":"32Mi""#,
                r#""cpu":"300m","memory":"64Mi""#,
            ),
            "",
        );
        let v = pod_values(&one, 0);
        assert_eq!((v.cpu_shares, v.cpu_quota_us), (102, Some(30_000)));
        assert_eq!(v.memory_limit, Some(64 << 20));
    }

    /// Init containers run alone: the pod needs the larger of their largest and the sum.
    #[test]
    fn init_containers_count_by_their_largest() {
        let p = with(
            &c("a", r#""cpu":"100m""#, r#""cpu":"200m""#),
            &c("init", r#""cpu":"500m""#, r#""cpu":"1""#),
        );
        let v = pod_values(&p, 0);
        assert_eq!(v.cpu_shares, 512);
        assert_eq!(v.cpu_quota_us, Some(100_000));
    }

    #[test]
    fn conversions() {
        assert_eq!(milli_to_shares(0), 2);
        assert_eq!(milli_to_shares(1), 2);
        assert_eq!(milli_to_shares(1000), 1024);
        assert_eq!(milli_to_shares(u64::MAX), MAX_SHARES);
        assert_eq!(milli_to_quota(1), 1_000);
        assert_eq!(milli_to_quota(1500), 150_000);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(MAX_SHARES), 10_000);
        let pods = [
            with(&c("a", r#""cpu":"100m""#, ""), ""),
            with(&c("a", r#""cpu":"400m""#, ""), ""),
            with(&c("a", "", ""), ""),
        ];
        assert_eq!(burstable_shares(pods.iter()), 512);
    }

    /// The files written into a fake v1 tree (plain directories stand in for cgroupfs).
    #[test]
    fn apply_writes_the_v1_files() {
        let d = std::env::temp_dir().join(format!("tl-cg-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for ctl in ["cpu", "memory", "pids"] {
            fs::create_dir_all(d.join(ctl)).unwrap();
        }
        let p = with(
            &c(
                "a",
                r#""cpu":"100m","memory":"32Mi""#,
                r#""cpu":"300m","memory":"64Mi""#,
            ),
            "",
        );
        apply(&d, "/kubepods", &p, &pod_values(&p, 100), 300).unwrap();
        let read = |f: &str| fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("cpu/kubepods/burstable/podu/cpu.shares"), "102");
        assert_eq!(
            read("cpu/kubepods/burstable/podu/cpu.cfs_quota_us"),
            "30000"
        );
        assert_eq!(read("cpu/kubepods/besteffort/cpu.shares"), "2");
        assert_eq!(read("cpu/kubepods/burstable/cpu.shares"), "300");
        assert_eq!(
            read("memory/kubepods/burstable/podu/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read("pids/kubepods/burstable/podu/pids.max"), "100");
        fs::remove_dir_all(&d).unwrap();
    }
}
