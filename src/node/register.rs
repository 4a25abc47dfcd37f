//! The Node object as this agent registers and reports it: labels, taints, addresses,
//! capacity and allocatable, nodeInfo and the four conditions, built from host facts (pure),
//! plus the thin register call (create; on 409 get and patch labels and taints).
//!
//! Owns what the Node says about the host. It does not decide when to report (that is
//! `heartbeat`) and never reads a status subresource (a node may not).

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::json;

use crate::api::Client;
use crate::config::{AgentConfig, EvictionThreshold, Reserved};
use crate::k8s::coordination::format_time;
use crate::k8s::meta::ObjectMeta;
use crate::k8s::node::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};

use super::host::{HostInfo, Pressure, Thresholds};
use super::NodeError;

/// What the Node is registered with, taken from the agent configuration once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSettings {
    /// The node name.
    pub name: String,
    /// Extra labels (board profile + `--node-labels`).
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<Taint>,
    /// `--node-ip`; empty: the default-route interface's address.
    pub node_ips: Vec<IpAddr>,
    /// `maxPods`.
    pub max_pods: u32,
    /// systemReserved + kubeReserved.
    pub reserved: Reserved,
    /// Hard eviction: memory bytes that must stay available.
    pub eviction_memory: u64,
    /// Hard eviction: nodefs share (thousandths of a percent) that must stay available.
    pub eviction_nodefs_milli_percent: u32,
    /// e.g. `containerd://1.6.20`.
    pub container_runtime_version: String,
    /// e.g. `v1.32.0-tinylet.0.1.0`.
    pub kubelet_version: String,
    /// The port the kubelet API serves (`daemonEndpoints.kubeletEndpoint.Port`); 0: none.
    pub kubelet_port: u16,
}

/// The kubelet version this agent reports (the API level it implements, then its own).
pub fn kubelet_version() -> String {
    format!("v1.32.0-tinylet.{}", env!("CARGO_PKG_VERSION"))
}

impl NodeSettings {
    /// Settings from the agent configuration.
    pub fn from_config(cfg: &AgentConfig, name: &str, runtime_version: &str) -> NodeSettings {
        let reserved = Reserved {
            cpu_millis: cfg
                .system_reserved
                .cpu_millis
                .saturating_add(cfg.kube_reserved.cpu_millis),
            memory_bytes: cfg
                .system_reserved
                .memory_bytes
                .saturating_add(cfg.kube_reserved.memory_bytes),
            ephemeral_storage_bytes: cfg
                .system_reserved
                .ephemeral_storage_bytes
                .saturating_add(cfg.kube_reserved.ephemeral_storage_bytes),
            pids: cfg
                .system_reserved
                .pids
                .saturating_add(cfg.kube_reserved.pids),
        };
        let eviction_memory = match cfg.eviction_hard.get("memory.available") {
            Some(EvictionThreshold::Quantity(b)) => *b,
            _ => 0,
        };
        let eviction_nodefs_milli_percent = match cfg.eviction_hard.get("nodefs.available") {
            Some(EvictionThreshold::Percent { milli_percent }) => *milli_percent,
            _ => 0,
        };
        NodeSettings {
            name: name.to_string(),
            labels: cfg.node_labels.clone(),
            taints: cfg
                .register_with_taints
                .iter()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect: t.effect.clone(),
                    time_added: None,
                })
                .collect(),
            node_ips: cfg.node_ips.clone(),
            max_pods: cfg.max_pods,
            reserved,
            eviction_memory,
            eviction_nodefs_milli_percent,
            container_runtime_version: runtime_version.to_string(),
            kubelet_version: kubelet_version(),
            kubelet_port: cfg.kubelet_api.port,
        }
    }

    /// Pressure thresholds from the hard eviction settings.
    pub fn thresholds(&self) -> Thresholds {
        let d = Thresholds::default();
        Thresholds {
            memory_available: if self.eviction_memory > 0 {
                self.eviction_memory
            } else {
                d.memory_available
            },
            disk_available_percent: if self.eviction_nodefs_milli_percent > 0 {
                u8::try_from(self.eviction_nodefs_milli_percent / 1000).unwrap_or(100)
            } else {
                d.disk_available_percent
            },
            pid_available_percent: d.pid_available_percent,
        }
    }

    /// Labels the node registers with: well-known ones first, configured ones over them.
    pub fn all_labels(&self, host: &HostInfo) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
        l.insert("kubernetes.io/arch".into(), host.architecture.clone());
        l.insert("kubernetes.io/os".into(), "linux".into());
        l.insert("kubernetes.io/hostname".into(), self.name.clone());
        l.insert("beta.kubernetes.io/arch".into(), host.architecture.clone());
        l.insert("beta.kubernetes.io/os".into(), "linux".into());
        for (k, v) in &self.labels {
            l.insert(k.clone(), v.clone());
        }
        l
    }
}

/// `n` bytes as a quantity: Ki when it divides evenly (the kubelet's form), else plain.
fn bytes_quantity(n: u64) -> String {
    if n % 1024 == 0 && n > 0 {
        format!("{}Ki", n / 1024)
    } else {
        n.to_string()
    }
}

fn cpu_quantity(millis: u64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Capacity and allocatable (capacity − reservations − hard eviction), as quantities.
pub fn resources(
    s: &NodeSettings,
    host: &HostInfo,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let cpu = u64::from(host.cpus.max(1)) * 1000;
    let disk_eviction = (u128::from(host.disk_total) * u128::from(s.eviction_nodefs_milli_percent)
        / 100_000) as u64;
    let mut cap = BTreeMap::new();
    cap.insert("cpu".to_string(), cpu_quantity(cpu));
    cap.insert("memory".to_string(), bytes_quantity(host.memory_total));
    cap.insert("pods".to_string(), s.max_pods.to_string());
    cap.insert(
        "ephemeral-storage".to_string(),
        bytes_quantity(host.disk_total),
    );
    let mut alloc = BTreeMap::new();
    alloc.insert(
        "cpu".to_string(),
        cpu_quantity(cpu.saturating_sub(s.reserved.cpu_millis)),
    );
    alloc.insert(
        "memory".to_string(),
        bytes_quantity(
            host.memory_total
                .saturating_sub(s.reserved.memory_bytes)
                .saturating_sub(s.eviction_memory),
        ),
    );
    alloc.insert("pods".to_string(), s.max_pods.to_string());
    alloc.insert(
        "ephemeral-storage".to_string(),
        bytes_quantity(
            host.disk_total
                .saturating_sub(s.reserved.ephemeral_storage_bytes)
                .saturating_sub(disk_eviction),
        ),
    );
    (cap, alloc)
}

/// The node's IPs as its pods' `status.hostIPs` show them: the `--node-ip` addresses, else
/// the detected one; never loopback; the first of each family, the very first one first (the
/// kubelet takes the node's first InternalIP of each family, primary first).
pub fn host_ips(node_ips: &[IpAddr], detected: Option<IpAddr>) -> Vec<IpAddr> {
    let candidates: Vec<IpAddr> = if node_ips.is_empty() {
        detected.into_iter().collect()
    } else {
        node_ips.to_vec()
    };
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in candidates.into_iter().filter(|ip| !ip.is_loopback()) {
        if !out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
            out.push(ip);
        }
    }
    out
}

/// InternalIP(s) and Hostname. The Hostname address is the node name, which is
/// `--hostname-override` when given and the machine's hostname (lowercased) otherwise, as the
/// kubelet reports it.
pub fn addresses(s: &NodeSettings, host: &HostInfo, detected: Option<IpAddr>) -> Vec<NodeAddress> {
    let mut out: Vec<NodeAddress> = Vec::new();
    let ips: Vec<IpAddr> = if s.node_ips.is_empty() {
        detected.into_iter().collect()
    } else {
        s.node_ips.clone()
    };
    for ip in ips.into_iter().filter(|ip| !ip.is_loopback()) {
        out.push(NodeAddress {
            address_type: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    let hostname = if s.name.is_empty() {
        host.hostname.to_lowercase()
    } else {
        s.name.clone()
    };
    out.push(NodeAddress {
        address_type: "Hostname".into(),
        address: hostname,
    });
    out
}

/// The four conditions, without times (those are stamped when reported).
pub fn conditions(p: &Pressure) -> Vec<NodeCondition> {
    let cond = |t: &str, status: bool, reason: &str, message: &str| NodeCondition {
        condition_type: t.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_heartbeat_time: None,
        last_transition_time: None,
    };
    vec![
        if p.memory {
            cond(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            cond(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if p.disk {
            cond(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            cond(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if p.pid {
            cond(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            cond(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        cond(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// The node's status as computed now (conditions without times).
pub fn compute_status(s: &NodeSettings, host: &HostInfo, detected: Option<IpAddr>) -> NodeStatus {
    let (capacity, allocatable) = resources(s, host);
    NodeStatus {
        capacity,
        allocatable,
        conditions: conditions(&host.pressure(&s.thresholds())),
        addresses: addresses(s, host, detected),
        daemon_endpoints: (s.kubelet_port > 0).then(|| NodeDaemonEndpoints {
            kubelet_endpoint: DaemonEndpoint {
                port: i32::from(s.kubelet_port),
            },
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: host.machine_id.clone(),
            system_uuid: String::new(),
            boot_id: host.boot_id.clone(),
            kernel_version: host.kernel_version.clone(),
            os_image: host.os_image.clone(),
            container_runtime_version: s.container_runtime_version.clone(),
            kubelet_version: s.kubelet_version.clone(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: host.architecture.clone(),
        }),
    }
}

/// A content hash of a status (times excluded), to tell a change from a heartbeat.
pub fn status_hash(status: &NodeStatus) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(status)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// Stamps heartbeat and transition times on the conditions: transition times change only
/// when a condition's status changed since `previous`.
pub fn stamp_conditions(status: &mut NodeStatus, previous: Option<&NodeStatus>, now: SystemTime) {
    let t = format_time(now);
    for c in &mut status.conditions {
        let prev = previous.and_then(|p| p.condition(&c.condition_type));
        c.last_heartbeat_time = Some(t.clone());
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(t.clone())),
            _ => Some(t.clone()),
        };
    }
}

/// The status PATCH body (strategic merge): the whole status on the first report or when
/// anything but the conditions changed, otherwise only what changed in each condition, keyed
/// by type (conditions merge by type and are never removed) — as the kubelet's two-way merge
/// patch sends its 5-minute heartbeat, about 300 bytes instead of the whole status.
pub fn status_patch(sent: &NodeStatus, previous: Option<&NodeStatus>) -> serde_json::Value {
    let full = || serde_json::json!({ "status": sent });
    let Some(prev) = previous else {
        return full();
    };
    let mut same_but_conditions = sent.clone();
    same_but_conditions.conditions.clone_from(&prev.conditions);
    if &same_but_conditions != prev {
        return full();
    }
    let mut changed = Vec::new();
    for c in &sent.conditions {
        let (Ok(now), Ok(before)) = (
            serde_json::to_value(c),
            serde_json::to_value(prev.condition(&c.condition_type)),
        ) else {
            return full();
        };
        let Some(before) = before.as_object() else {
            // A new condition type: send it whole.
            changed.push(now);
            continue;
        };
        let Some(now) = now.as_object() else {
            return full();
        };
        let mut diff = serde_json::Map::new();
        for (k, v) in now {
            if before.get(k) != Some(v) {
                diff.insert(k.clone(), v.clone());
            }
        }
        if !diff.is_empty() {
            diff.insert("type".into(), c.condition_type.clone().into());
            changed.push(serde_json::Value::Object(diff));
        }
    }
    serde_json::json!({ "status": { "conditions": changed } })
}

/// The Node object to create.
pub fn build_node(s: &NodeSettings, host: &HostInfo, status: NodeStatus) -> Node {
    Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        metadata: ObjectMeta {
            name: s.name.clone(),
            labels: s.all_labels(host),
            annotations: [(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        },
        spec: NodeSpec {
            taints: s.taints.clone(),
            ..Default::default()
        },
        status,
    }
}

/// Registers the node: create, or on 409 get it and patch labels and missing taints.
/// Returns the Node as the server holds it (its UID is what owner references need).
pub fn register(client: &Client, node: &Node) -> Result<Node, NodeError> {
    match client.create::<_, Node>("/api/v1/nodes", node) {
        Ok(n) => {
            log::info!(
                "node {}: registered (uid {})",
                n.metadata.name,
                n.metadata.uid
            );
            Ok(n)
        }
        Err(e) if e.is_conflict() => {
            let path = format!("/api/v1/nodes/{}", node.metadata.name);
            let existing: Node = client.get(&path).map_err(NodeError::Api)?;
            match reconcile_patch(&existing, node) {
                None => Ok(existing),
                Some(patch) => {
                    let n: Node = client.patch_merge(&path, &patch).map_err(NodeError::Api)?;
                    log::info!(
                        "node {}: already registered (uid {}); labels/taints updated",
                        n.metadata.name,
                        n.metadata.uid
                    );
                    Ok(n)
                }
            }
        }
        Err(e) => Err(NodeError::Api(e)),
    }
}

/// The merge patch that brings an existing Node's labels and taints to what this agent
/// registers with (other labels and taints are left alone), or None if nothing differs.
pub fn reconcile_patch(existing: &Node, wanted: &Node) -> Option<serde_json::Value> {
    let labels: BTreeMap<&String, &String> = wanted
        .metadata
        .labels
        .iter()
        .filter(|(k, v)| existing.metadata.labels.get(*k) != Some(*v))
        .collect();
    let missing: Vec<&Taint> = wanted
        .spec
        .taints
        .iter()
        .filter(|t| {
            !existing
                .spec
                .taints
                .iter()
                .any(|e| e.key == t.key && e.effect == t.effect)
        })
        .collect();
    if labels.is_empty() && missing.is_empty() {
        return None;
    }
    let mut patch = json!({});
    if !labels.is_empty() {
        patch["metadata"] = json!({ "labels": labels });
    }
    if !missing.is_empty() {
        // A merge patch replaces the list: send the existing taints plus ours.
        let mut all = existing.spec.taints.clone();
        all.extend(missing.into_iter().cloned());
        patch["spec"] = json!({ "taints": all });
    }
    Some(patch)
}

// ---- the node's address: first global address of the default-route interface ----

/// The interface of the IPv4 default route in /proc/net/route text.
pub fn default_route_interface(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let mut f = l.split_whitespace();
        let iface = f.next()?;
        let dest = f.next()?;
        let _gw = f.next()?;
        let flags = u32::from_str_radix(f.next()?, 16).ok()?;
        // RTF_UP; the mask column (8th) must be 0 too for a default route.
        let mask = l.split_whitespace().nth(7)?;
        (dest == "00000000" && mask == "00000000" && flags & 1 == 1).then(|| iface.to_string())
    })
}

/// The interface of the IPv6 default route in /proc/net/ipv6_route text.
pub fn default_route_interface_v6(route: &str) -> Option<String> {
    route.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (dest, plen, iface) = (f.first()?, f.get(1)?, f.get(9)?);
        (dest.bytes().all(|b| b == b'0') && *plen == "00" && *iface != "lo")
            .then(|| iface.to_string())
    })
}

/// Whether an address is usable as a node address (not loopback, link-local, unspecified or
/// multicast).
pub fn is_global(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments().first().copied().unwrap_or(0) & 0xffc0) == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || link_local)
        }
    }
}

/// The first global address of `iface` among `(interface, address)` pairs, IPv4 first.
pub fn pick_address(iface: &str, addrs: &[(String, IpAddr)]) -> Option<IpAddr> {
    let on_iface = || addrs.iter().filter(|(i, a)| i == iface && is_global(a));
    on_iface()
        .find(|(_, a)| a.is_ipv4())
        .or_else(|| on_iface().next())
        .map(|(_, a)| *a)
}

/// Detects the node address from the host's routes and interfaces (None if there is no
/// default route or no global address on its interface).
pub fn detect_node_ip() -> Option<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut addrs = Vec::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for ifa in ifs {
            let Some(a) = ifa.address else { continue };
            let ip = if let Some(s) = a.as_sockaddr_in() {
                IpAddr::V4(s.ip())
            } else if let Some(s) = a.as_sockaddr_in6() {
                IpAddr::V6(s.ip())
            } else {
                continue;
            };
            addrs.push((ifa.interface_name, ip));
        }
    }
    default_route_interface(&v4)
        .and_then(|i| pick_address(&i, &addrs))
        .or_else(|| default_route_interface_v6(&v6).and_then(|i| pick_address(&i, &addrs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "Pi-1".into(),
            cpus: 4,
            memory_total: 4 << 30,
            memory_available: 3 << 30,
            disk_total: 100 << 30,
            disk_available: 50 << 30,
            pid_max: 32768,
            pids_running: 100,
            kernel_version: "6.6.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "arm64".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    fn settings() -> NodeSettings {
        let mut cfg = AgentConfig::default();
        cfg.node_labels
            .insert("tinylet.io/board".into(), "raspberry-pi-4".into());
        cfg.system_reserved.cpu_millis = 100;
        cfg.system_reserved.memory_bytes = 256 << 20;
        cfg.kube_reserved.memory_bytes = 64 << 20;
        cfg.register_with_taints.push(crate::config::Taint {
            key: "edge".into(),
            value: "true".into(),
            effect: "NoSchedule".into(),
        });
        NodeSettings::from_config(&cfg, "pi-1", "containerd://1.6.20")
    }

    #[test]
    fn node_has_labels_taints_resources_and_info() {
        let s = settings();
        let h = host();
        let st = compute_status(&s, &h, Some("192.168.1.10".parse().unwrap()));
        let n = build_node(&s, &h, st);
        let l = &n.metadata.labels;
        assert_eq!(l["kubernetes.io/arch"], "arm64");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["kubernetes.io/hostname"], "pi-1");
        assert_eq!(l["tinylet.io/board"], "raspberry-pi-4");
        assert_eq!(n.spec.taints[0].key, "edge");
        // The port the kubelet API serves, 10250 unless configured.
        assert_eq!(
            n.status
                .daemon_endpoints
                .as_ref()
                .map(|d| d.kubelet_endpoint.port),
            Some(10250)
        );
        let cap = &n.status.capacity;
        assert_eq!(cap["cpu"], "4");
        assert_eq!(cap["memory"], "4194304Ki");
        assert_eq!(cap["pods"], "110");
        let alloc = &n.status.allocatable;
        assert_eq!(alloc["cpu"], "3900m");
        // 4 GiB − 320 MiB reserved − 100 MiB eviction.
        assert_eq!(alloc["memory"], format!("{}Ki", (4096 - 420) * 1024));
        // 100 GiB − 10% hard eviction.
        assert_eq!(
            alloc["ephemeral-storage"],
            format!("{}Ki", 90 * 1024 * 1024)
        );
        let info = n.status.node_info.as_ref().unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert!(info.kubelet_version.starts_with("v1.32.0-tinylet."));
        assert_eq!(info.architecture, "arm64");
        assert_eq!(n.status.addresses[0].address, "192.168.1.10");
        assert_eq!(n.status.addresses[1].address_type, "Hostname");
        assert_eq!(n.status.addresses[1].address, "pi-1");
        let types: Vec<&str> = n
            .status
            .conditions
            .iter()
            .map(|c| c.condition_type.as_str())
            .collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn loopback_is_never_a_node_address() {
        let mut s = settings();
        s.node_ips = vec!["127.0.0.1".parse().unwrap()];
        let a = addresses(&s, &host(), None);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].address_type, "Hostname");
        let addrs = vec![
            ("lo".to_string(), "127.0.0.1".parse().unwrap()),
            ("eth0".to_string(), "fe80::1".parse().unwrap()),
            ("eth0".to_string(), "2001:db8::5".parse().unwrap()),
            ("eth0".to_string(), "10.0.0.7".parse().unwrap()),
            ("wlan0".to_string(), "10.1.0.7".parse().unwrap()),
        ];
        assert_eq!(
            pick_address("eth0", &addrs),
            Some("10.0.0.7".parse().unwrap())
        );
        assert_eq!(pick_address("lo", &addrs), None);
        let v6only = vec![("eth0".to_string(), "2001:db8::5".parse().unwrap())];
        assert_eq!(
            pick_address("eth0", &v6only),
            Some("2001:db8::5".parse().unwrap())
        );
    }

    /// The kubelet's Hostname address is `--hostname-override` when given (it is also the
    /// node name), not the machine's hostname.
    #[test]
    fn hostname_address_is_the_override() {
        let cfg = AgentConfig {
            hostname_override: Some("edge-7".into()),
            ..AgentConfig::default()
        };
        let name = cfg.node_name("Pi-1");
        let s = NodeSettings::from_config(&cfg, &name, "");
        let a = addresses(&s, &host(), None);
        assert_eq!(a.last().map(|a| a.address_type.as_str()), Some("Hostname"));
        assert_eq!(a.last().map(|a| a.address.as_str()), Some("edge-7"));
        // Without an override the node name is the machine's hostname, lowercased.
        let plain = AgentConfig::default();
        let s = NodeSettings::from_config(&plain, &plain.node_name("Pi-1"), "");
        assert_eq!(addresses(&s, &host(), None)[0].address, "pi-1");
    }

    /// `status.hostIPs`: `--node-ip` wins over detection, loopback never counts, and there is
    /// one address per family with the first one first (the kubelet's primary IP).
    #[test]
    fn host_ips_one_per_family_primary_first() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(host_ips(&[], Some(ip("192.0.2.2"))), [ip("192.0.2.2")]);
        assert_eq!(host_ips(&[], None), Vec::<IpAddr>::new());
        assert_eq!(host_ips(&[], Some(ip("127.0.0.1"))), Vec::<IpAddr>::new());
        let given = [
            ip("2001:db8::5"),
            ip("10.0.0.7"),
            ip("10.0.0.8"),
            ip("2001:db8::6"),
        ];
        assert_eq!(
            host_ips(&given, Some(ip("192.0.2.2"))),
            [ip("2001:db8::5"), ip("10.0.0.7")]
        );
        assert_eq!(
            host_ips(&[ip("127.0.0.1"), ip("10.0.0.7")], None),
            [ip("10.0.0.7")]
        );
    }

    #[test]
    fn default_route_from_proc() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\n"), None);
        assert_eq!(default_route_interface("x\ny z\n\u{0}"), None);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n";
        assert_eq!(default_route_interface_v6(v6).as_deref(), Some("wlan0"));
    }

    #[test]
    fn hash_ignores_times_and_stamps_keep_transitions() {
        let s = settings();
        let mut h = host();
        let a = compute_status(&s, &h, None);
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800);
        let mut sent = a.clone();
        stamp_conditions(&mut sent, None, t0);
        assert_eq!(status_hash(&a), status_hash(&compute_status(&s, &h, None)));
        h.memory_available = 1 << 20;
        let mut b = compute_status(&s, &h, None);
        assert_ne!(status_hash(&a), status_hash(&b));
        stamp_conditions(&mut b, Some(&sent), t0 + std::time::Duration::from_secs(60));
        let mem = b.condition("MemoryPressure").unwrap();
        assert_eq!(mem.status, "True");
        assert_eq!(
            mem.last_transition_time.as_deref(),
            Some("2024-05-01T12:01:00Z")
        );
        let ready = b.condition("Ready").unwrap();
        assert_eq!(
            ready.last_transition_time.as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            ready.last_heartbeat_time.as_deref(),
            Some("2024-05-01T12:01:00Z")
        );
    }

    #[test]
    fn status_patch_is_whole_first_then_only_changed_condition_fields() {
        let s = settings();
        let mut h = host();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800);
        let mut first = compute_status(&s, &h, None);
        stamp_conditions(&mut first, None, t0);
        let p = status_patch(&first, None);
        assert!(p["status"]["capacity"].is_object(), "{p}");
        assert!(p["status"]["nodeInfo"].is_object(), "{p}");

        // The 5-minute heartbeat: only lastHeartbeatTime of each condition, keyed by type.
        let mut beat = compute_status(&s, &h, None);
        stamp_conditions(
            &mut beat,
            Some(&first),
            t0 + std::time::Duration::from_secs(300),
        );
        let p = status_patch(&beat, Some(&first));
        let conds = p["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), first.conditions.len(), "{p}");
        for c in conds {
            let o = c.as_object().unwrap();
            assert_eq!(o.len(), 2, "{c}");
            assert_eq!(c["lastHeartbeatTime"], "2024-05-01T12:05:00Z");
            assert!(c["type"].is_string());
        }
        assert!(p["status"].get("capacity").is_none());
        assert!(p.to_string().len() < 400, "{p}");

        // A condition that flips carries status, reason, message and transition time too.
        h.memory_available = 1 << 20;
        let mut flip = compute_status(&s, &h, None);
        stamp_conditions(
            &mut flip,
            Some(&first),
            t0 + std::time::Duration::from_secs(310),
        );
        let mut same_capacity = flip.clone();
        same_capacity.allocatable.clone_from(&first.allocatable);
        same_capacity.capacity.clone_from(&first.capacity);
        let p = status_patch(&same_capacity, Some(&first));
        let mem = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "MemoryPressure")
            .unwrap()
            .clone();
        assert_eq!(mem["status"], "True");
        assert!(mem["lastTransitionTime"].is_string());

        // Anything else changed (addresses, capacity...): the whole status again.
        let mut moved = beat.clone();
        moved.addresses.clear();
        let p = status_patch(&moved, Some(&first));
        assert!(p["status"]["nodeInfo"].is_object(), "{p}");
    }

    #[test]
    fn existing_node_gets_only_missing_labels_and_taints() {
        let s = settings();
        let wanted = build_node(&s, &host(), NodeStatus::default());
        let mut existing = wanted.clone();
        assert_eq!(reconcile_patch(&existing, &wanted), None);
        existing
            .metadata
            .labels
            .insert("tinylet.io/board".into(), "old".into());
        existing
            .metadata
            .labels
            .insert("other".into(), "kept".into());
        existing.spec.taints = vec![Taint {
            key: "admin".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        }];
        let p = reconcile_patch(&existing, &wanted).unwrap();
        assert_eq!(
            p["metadata"]["labels"]["tinylet.io/board"],
            "raspberry-pi-4"
        );
        assert!(p["metadata"]["labels"].get("other").is_none());
        assert_eq!(p["spec"]["taints"].as_array().unwrap().len(), 2);
    }
}
