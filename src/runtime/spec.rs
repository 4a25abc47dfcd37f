//! Pure translation of a Pod into CRI configs: PodSandboxConfig and ContainerConfig.
//!
//! Everything the kubelet derives from a pod spec for the runtime is computed here from plain
//! inputs (the pod, host facts, resolved volume paths), so it is tested without a runtime. No
//! I/O: host facts such as resolv.conf are passed in by the caller.

use std::collections::BTreeMap;

use crate::cri::proto::{
    Capability, ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use crate::k8s::pod::{Container, Pod};
use crate::runtime::env;

/// The CPU CFS period the kubelet uses (100 ms), in microseconds.
pub const CPU_PERIOD_US: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const MIN_QUOTA_US: i64 = 1_000;

/// A pod's or container's spec cannot be turned into a runtime config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The field at fault, e.g. `spec.containers[web].env[DB].valueFrom`.
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}: {}", self.pod, self.field, self.reason)
    }
}

impl std::error::Error for SpecError {}

/// Quality of service class, which decides the pod's cgroup parent and OOM score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Node-level facts the translation needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    pub node_name: String,
    pub host_ip: String,
    /// Cluster DNS servers (`clusterDNS`); empty on a node without cluster DNS.
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    /// The host's resolv.conf, for dnsPolicy Default (and ClusterFirst without cluster DNS).
    pub host_dns: DnsConfig,
    /// The cgroupfs root under which pod cgroups live (`/kubepods` by default).
    pub cgroup_root: String,
    /// The directory under which per-pod log directories are created.
    pub pod_logs_root: String,
    /// Node allocatable: what `resourceFieldRef` reports for a limit a container does not set.
    pub allocatable: env::Allocatable,
}

/// One volume as the runtime sees it: a host path, prepared by the volume manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub host_path: String,
    /// Forced read-only (configMap, secret, projected and downwardAPI volumes).
    pub read_only: bool,
}

/// Parses resolv.conf text into a CRI DnsConfig (nameserver, search/domain, options).
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut dns = DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(String::from)),
            Some("search") | Some("domain") => {
                dns.searches = words.map(String::from).collect();
            }
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
}

/// The QoS class, by the kubelet's rules (requests default to limits when only limits are set).
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in pod.spec.all_containers() {
        let r = &c.resources;
        if !r.limits.is_empty() || !r.requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (r.limits.get(res), r.requests.get(res)) {
                (Some(l), Some(q)) if l.parse().ok() == q.parse().ok() => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// The pod's cgroupfs parent: `/kubepods/pod<uid>`, `/kubepods/burstable/pod<uid>`, or
/// `/kubepods/besteffort/pod<uid>`.
pub fn cgroup_parent(pod: &Pod, root: &str) -> String {
    let root = if root.is_empty() { "/kubepods" } else { root };
    let root = root.trim_end_matches('/');
    let uid = &pod.metadata.uid;
    match qos_class(pod) {
        QosClass::Guaranteed => format!("{root}/pod{uid}"),
        QosClass::Burstable => format!("{root}/burstable/pod{uid}"),
        QosClass::BestEffort => format!("{root}/besteffort/pod{uid}"),
    }
}

/// The per-pod log directory: `<root>/<namespace>_<name>_<uid>`, as the kubelet lays it out.
pub fn pod_log_dir(pod: &Pod, root: &str) -> String {
    format!(
        "{}/{}_{}_{}",
        root.trim_end_matches('/'),
        pod.metadata.namespace,
        pod.metadata.name,
        pod.metadata.uid
    )
}

/// A container's log path relative to the pod log directory: `<container>/<attempt>.log`.
pub fn container_log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

fn dns_config(pod: &Pod, host: &HostFacts) -> DnsConfig {
    let policy = pod.spec.dns_policy();
    let cluster = !host.cluster_dns.is_empty()
        && (policy == "ClusterFirstWithHostNet"
            || (policy == "ClusterFirst" && !pod.spec.host_network));
    let mut dns = if policy == "None" {
        DnsConfig::default()
    } else if cluster {
        let ns = &pod.metadata.namespace;
        let d = if host.cluster_domain.is_empty() {
            "cluster.local"
        } else {
            host.cluster_domain.as_str()
        };
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.to_string()];
        searches.extend(host.host_dns.searches.iter().cloned());
        DnsConfig {
            servers: host.cluster_dns.clone(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        host.host_dns.clone()
    };
    if let Some(extra) = &pod.spec.dns_config {
        for s in &extra.nameservers {
            if !dns.servers.contains(s) {
                dns.servers.push(s.clone());
            }
        }
        for s in &extra.searches {
            if !dns.searches.contains(s) {
                dns.searches.push(s.clone());
            }
        }
        for o in &extra.options {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            };
            let name = o.name.as_str();
            dns.options
                .retain(|x| x.split(':').next().unwrap_or("") != name);
            dns.options.push(text);
        }
    }
    // resolv.conf allows at most 3 nameservers and 32 search domains.
    dns.servers.truncate(3);
    dns.searches.truncate(32);
    dns
}

fn protocol(p: &str) -> i32 {
    match p {
        "UDP" => Protocol::Udp as i32,
        "SCTP" => Protocol::Sctp as i32,
        _ => Protocol::Tcp as i32,
    }
}

/// The PodSandboxConfig for a pod's `attempt`-th sandbox.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    host: &HostFacts,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> PodSandboxConfig {
    let spec = &pod.spec;
    // runc cannot set a hostname without a private UTS namespace.
    let hostname = if spec.host_network {
        String::new()
    } else {
        let h = if spec.hostname.is_empty() {
            pod.metadata.name.as_str()
        } else {
            spec.hostname.as_str()
        };
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| PortMapping {
            protocol: protocol(p.protocol()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone(),
        })
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let ns = NamespaceOption {
        network: if spec.host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        pid: if spec.host_pid {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: if spec.host_ipc {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        target_id: String::new(),
    };
    let privileged = spec
        .all_containers()
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            namespace: pod.metadata.namespace.clone(),
            attempt,
        }),
        hostname,
        log_directory: pod_log_dir(pod, &host.pod_logs_root),
        dns_config: Some(dns_config(pod, host)),
        port_mappings,
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod, &host.cgroup_root),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                run_as_user: psc.run_as_user.map(|value| Int64Value { value }),
                run_as_group: psc.run_as_group.map(|value| Int64Value { value }),
                supplemental_groups: supplemental_groups(&psc),
                privileged,
                ..Default::default()
            }),
            sysctls: psc
                .sysctls
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
        }),
    }
}

fn supplemental_groups(psc: &crate::k8s::pod::PodSecurityContext) -> Vec<i64> {
    let mut g = psc.supplemental_groups.clone();
    if let Some(fs) = psc.fs_group {
        if !g.contains(&fs) {
            g.push(fs);
        }
    }
    g
}

/// Linux resources for a container: CPU shares from the request, CFS quota from the limit,
/// memory limit, and the OOM score adjustment of the pod's QoS class.
pub fn container_resources(
    pod: &Pod,
    c: &Container,
    memory_capacity: u64,
) -> Result<LinuxContainerResources, SpecError> {
    let err = |field: String, e: &dyn std::fmt::Display| SpecError {
        pod: pod.key(),
        field,
        reason: e.to_string(),
    };
    let r = &c.resources;
    let field = |k: &str, res: &str| format!("spec.containers[{}].resources.{k}.{res}", c.name);
    let cpu_limit = match r.limits.get("cpu") {
        Some(q) => Some(q.to_millis().map_err(|e| err(field("limits", "cpu"), &e))?),
        None => None,
    };
    let cpu_request = match r.requests.get("cpu") {
        Some(q) => Some(
            q.to_millis()
                .map_err(|e| err(field("requests", "cpu"), &e))?,
        ),
        None => cpu_limit,
    };
    let mem_limit = match r.limits.get("memory") {
        Some(q) => Some(
            q.to_units()
                .map_err(|e| err(field("limits", "memory"), &e))?,
        ),
        None => None,
    };
    let mem_request = match r.requests.get("memory") {
        Some(q) => Some(
            q.to_units()
                .map_err(|e| err(field("requests", "memory"), &e))?,
        ),
        None => mem_limit,
    };
    let shares = match cpu_request {
        Some(m) => {
            (m.min(i64::MAX as u64 / 1024) as i64 * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
        }
        None => MIN_SHARES,
    };
    let quota = match cpu_limit {
        Some(m) => (m.min(i64::MAX as u64 / 1000) as i64 * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US),
        None => 0,
    };
    let oom_score_adj = match qos_class(pod) {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            // 1000 - 1000 * request / capacity, kept within [3, 999] as the kubelet does.
            let req = mem_request.unwrap_or(0) as u128;
            let cap = memory_capacity.max(1) as u128;
            let adj = 1000i64 - (1000u128 * req / cap).min(1000) as i64;
            adj.clamp(3, 999)
        }
    };
    Ok(LinuxContainerResources {
        cpu_period: if quota > 0 { CPU_PERIOD_US } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_limit
            .map(|m| m.min(i64::MAX as u64) as i64)
            .unwrap_or(0),
        oom_score_adj,
        ..Default::default()
    })
}

/// Expands `$(VAR)` references the way the kubelet does: known names are replaced, `$$`
/// escapes a dollar, unknown references are left as written.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    expand_with(text, &|k| vars.get(k).map(String::as_str))
}

/// [`expand`] over any lookup (several maps searched in turn, for instance).
pub fn expand_with<'a>(text: &str, lookup: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    match lookup(&inner[..end]) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&rest[i..i + 3 + end]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether container `c`'s config depends on the pod IP: an env var or a downward-API file of
/// the pod referring to `status.podIP(s)`. Only then must the IP be known before the
/// container is created.
pub fn uses_pod_ip(pod: &Pod, c: &Container) -> bool {
    let is_ip = |f: &Option<crate::k8s::pod::ObjectFieldSelector>| {
        f.as_ref()
            .is_some_and(|f| matches!(f.field_path.as_str(), "status.podIP" | "status.podIPs"))
    };
    let env = c
        .env
        .iter()
        .filter_map(|e| e.value_from.as_ref())
        .any(|v| is_ip(&v.field_ref));
    let files = pod.spec.volumes.iter().any(|v| {
        let direct = v.downward_api.iter().flat_map(|d| &d.items);
        let projected = v
            .projected
            .iter()
            .flat_map(|p| &p.sources)
            .filter_map(|s| s.downward_api.as_ref())
            .flat_map(|d| &d.items);
        direct.chain(projected).any(|f| is_ip(&f.field_ref))
    });
    env || files
}

/// Resolves a downward-API `fieldPath` for a pod (the fields a static pod can use).
pub fn field_ref(pod: &Pod, host: &HostFacts, pod_ip: &str, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let bracket = |prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(key.to_string())
    };
    Some(match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => host.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.service_account_name.clone(),
        "status.hostIP" | "status.hostIPs" => host.host_ip.clone(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                m.labels.get(&k).cloned().unwrap_or_default()
            } else if let Some(k) = bracket("metadata.annotations['") {
                m.annotations.get(&k).cloned().unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// The data of a configMap (`"configmap"`) or secret (`"secret"`) of the pod's namespace by
/// name; `None` when it is not available.
pub type ObjectLookup<'a> = dyn Fn(&str, &str) -> Option<BTreeMap<String, Vec<u8>>> + 'a;

/// What a container's environment reads from outside the pod spec.
pub struct EnvSources<'a> {
    /// The pod's IP ("" while unknown).
    pub pod_ip: &'a str,
    /// Where configMap and secret data come from.
    pub object: &'a ObjectLookup<'a>,
    /// The pod's Service link variables ([`env::service_env`]).
    pub services: &'a BTreeMap<String, String>,
}

/// A container's environment and what was skipped on the way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerEnv {
    /// The variables, in order: envFrom's, then env's, then Service links not set otherwise.
    pub vars: Vec<KeyValue>,
    /// Warnings for the pod's events/log (envFrom keys skipped as invalid names).
    pub warnings: Vec<String>,
}

/// The environment of a container, by the kubelet's rules: the `envFrom` sources in order
/// (later sources win; keys that are not valid names after the prefix are skipped and
/// reported), then `env` entries, which override them (`$(VAR)` in a value expands against
/// what is defined so far and the Service variables), then the Service link variables not set
/// by either. A missing configMap or secret that is not optional fails the container, naming
/// it.
pub fn container_env(
    pod: &Pod,
    c: &Container,
    host: &HostFacts,
    src: &EnvSources<'_>,
) -> Result<ContainerEnv, SpecError> {
    let ns = &pod.metadata.namespace;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let set = |vars: &mut BTreeMap<String, String>, order: &mut Vec<String>, k: String, v| {
        if !vars.contains_key(&k) {
            order.push(k.clone());
        }
        vars.insert(k, v);
    };
    for (i, from) in c.env_from.iter().enumerate() {
        let (kind, api_kind, r) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => ("configmap", "configMap", r),
            (None, Some(r)) => ("secret", "secret", r),
            (None, None) => continue,
        };
        let data = match (src.object)(kind, &r.name) {
            Some(d) => d,
            None if r.optional == Some(true) => continue,
            None => {
                return Err(SpecError {
                    pod: pod.key(),
                    field: format!("spec.containers[{}].envFrom[{i}]", c.name),
                    reason: format!("{api_kind} {:?} is not available", r.name),
                })
            }
        };
        let (from_vars, invalid) = env::env_from_vars(&from.prefix, &data);
        if !invalid.is_empty() {
            warnings.push(env::invalid_names_message(&invalid, api_kind, ns, &r.name));
        }
        for (k, v) in from_vars {
            set(&mut vars, &mut order, k, v);
        }
    }
    let fail = |name: &str, reason: String| SpecError {
        pod: pod.key(),
        field: format!("spec.containers[{}].env[{name}]", c.name),
        reason,
    };
    // The kubelet's words (makeEnvironmentVariables and its configMap/secret managers).
    let key_of = |kind: &str, api_kind: &str, k: &crate::k8s::pod::KeySelector| {
        let Some(data) = (src.object)(kind, &k.name) else {
            return Err(format!("{kind} {:?} not found", k.name));
        };
        match data.get(&k.key) {
            Some(v) => Ok(String::from_utf8_lossy(v).into_owned()),
            None => Err(format!(
                "couldn't find key {} in {api_kind} {}/{}",
                k.key, pod.metadata.namespace, k.name
            )),
        }
    };
    for e in &c.env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => expand_with(v, &|k| {
                vars.get(k)
                    .or_else(|| src.services.get(k))
                    .map(String::as_str)
            }),
            (None, None) => String::new(),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_ref(pod, host, src.pod_ip, &f.field_path).ok_or_else(|| {
                        fail(&e.name, format!("unsupported fieldPath {:?}", f.field_path))
                    })?
                } else if let Some(r) = &from.resource_field_ref {
                    env::resource_field_value(pod, c, r, &host.allocatable)
                        .map_err(|m| fail(&e.name, m))?
                } else if let Some(k) = &from.config_map_key_ref {
                    match key_of("configmap", "ConfigMap", k) {
                        Ok(v) => v,
                        Err(_) if k.optional == Some(true) => continue,
                        Err(m) => return Err(fail(&e.name, m)),
                    }
                } else if let Some(k) = &from.secret_key_ref {
                    match key_of("secret", "Secret", k) {
                        Ok(v) => v,
                        Err(_) if k.optional == Some(true) => continue,
                        Err(m) => return Err(fail(&e.name, m)),
                    }
                } else {
                    String::new()
                }
            }
        };
        set(&mut vars, &mut order, e.name.clone(), value);
    }
    for (k, v) in src.services {
        if !vars.contains_key(k) {
            set(&mut vars, &mut order, k.clone(), v.clone());
        }
    }
    let vars = order
        .into_iter()
        .map(|k| {
            let value = vars.get(&k).cloned().unwrap_or_default();
            KeyValue { key: k, value }
        })
        .collect();
    Ok(ContainerEnv { vars, warnings })
}

/// Expands a `subPathExpr` against the container's environment; a reference to a variable
/// that is unset or empty is an error, as in the kubelet's `ExpandContainerVolumeMounts`.
pub fn sub_path_expr(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let out = expand_with(expr, &|k| match vars.get(k) {
        Some(v) if !v.is_empty() => Some(v.as_str()),
        _ => {
            missing.borrow_mut().insert(k.to_string());
            Some("")
        }
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(out)
    } else {
        let names: Vec<String> = missing.into_iter().collect();
        Err(format!("missing value for {}", names.join(", ")))
    }
}

/// A sub path must stay inside its volume: not absolute, no `..` segment (the kubelet's
/// `makeMounts` checks, with its messages).
pub fn check_sub_path(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split('/').any(|p| p == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// The ContainerConfig for `c` (attempt `attempt`), given resolved env, mounts and labels.
#[allow(clippy::too_many_arguments)]
pub fn container_config(
    pod: &Pod,
    c: &Container,
    attempt: u32,
    envs: Vec<KeyValue>,
    volumes: &BTreeMap<String, HostVolume>,
    resources: LinuxContainerResources,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<ContainerConfig, SpecError> {
    let vars: BTreeMap<String, String> = envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let mut mounts = Vec::with_capacity(c.volume_mounts.len());
    for (i, vm) in c.volume_mounts.iter().enumerate() {
        let field = format!("spec.containers[{}].volumeMounts[{i}]", c.name);
        let fail = |reason: String| SpecError {
            pod: pod.key(),
            field: field.clone(),
            reason,
        };
        let v = volumes
            .get(&vm.name)
            .ok_or_else(|| fail(format!("volume {:?} is not prepared", vm.name)))?;
        let mut host_path = v.host_path.clone();
        let sub = if !vm.sub_path_expr.is_empty() {
            let sub = sub_path_expr(&vm.sub_path_expr, &vars).map_err(|m| {
                fail(format!(
                    "volumeMount {:?}: subPathExpr {:?}: {m}",
                    vm.name, vm.sub_path_expr
                ))
            })?;
            Some(sub)
        } else if !vm.sub_path.is_empty() {
            Some(expand(&vm.sub_path, &vars))
        } else {
            None
        };
        if let Some(sub) = sub {
            check_sub_path(&sub).map_err(|m| fail(format!("volumeMount {:?}: {m}", vm.name)))?;
            host_path = format!("{}/{}", host_path.trim_end_matches('/'), sub);
        }
        let propagation = match vm.mount_propagation.as_deref() {
            Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => MountPropagation::PropagationBidirectional,
            _ => MountPropagation::PropagationPrivate,
        } as i32;
        mounts.push(Mount {
            container_path: vm.mount_path.clone(),
            host_path,
            readonly: vm.read_only || v.read_only,
            selinux_relabel: false,
            propagation,
        });
    }
    let psc = pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let security = LinuxContainerSecurityContext {
        capabilities: (!caps.add.is_empty() || !caps.drop.is_empty()).then(|| Capability {
            add_capabilities: caps.add.clone(),
            drop_capabilities: caps.drop.clone(),
        }),
        privileged: sc.privileged == Some(true),
        namespace_options: Some(NamespaceOption {
            network: if pod.spec.host_network {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            pid: if pod.spec.host_pid {
                NamespaceMode::Node
            } else {
                NamespaceMode::Container
            } as i32,
            ipc: if pod.spec.host_ipc {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            target_id: String::new(),
        }),
        run_as_user: sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|value| Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|value| Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem == Some(true),
        supplemental_groups: supplemental_groups(&psc),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        ..Default::default()
    };
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(ImageSpec {
            image: c.image.clone(),
            annotations: BTreeMap::new(),
        }),
        command: c.command.iter().map(|s| expand(s, &vars)).collect(),
        args: c.args.iter().map(|s| expand(s, &vars)).collect(),
        working_dir: c.working_dir.clone(),
        envs,
        mounts,
        labels,
        annotations,
        log_path: container_log_path(&c.name, attempt),
        stdin: c.stdin,
        stdin_once: false,
        tty: c.tty,
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn pod_ip_use_is_seen_in_env_and_downward_files() {
        let p = pod(WEB);
        assert!(!uses_pod_ip(&p, &p.spec.containers[0]));
        let with_env = pod(
            r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i",
              "env":[{"name":"IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}}]}]}}"#,
        );
        assert!(uses_pod_ip(&with_env, &with_env.spec.containers[0]));
        let projected = pod(
            r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}],
              "volumes":[{"name":"v","projected":{"sources":[{"downwardAPI":{"items":[
                {"path":"ips","fieldRef":{"fieldPath":"status.podIPs"}}]}}]}}]}}"#,
        );
        assert!(uses_pod_ip(&projected, &projected.spec.containers[0]));
        let direct = pod(
            r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}],
              "volumes":[{"name":"v","downwardAPI":{"items":[
                {"path":"n","fieldRef":{"fieldPath":"metadata.name"}}]}}]}}"#,
        );
        assert!(!uses_pod_ip(&direct, &direct.spec.containers[0]));
    }

    fn host() -> HostFacts {
        HostFacts {
            node_name: "pi4".into(),
            host_ip: "192.0.2.10".into(),
            host_dns: parse_resolv_conf("nameserver 9.9.9.9\nsearch lan\noptions edns0\n"),
            pod_logs_root: "/var/log/pods".into(),
            ..Default::default()
        }
    }

    const WEB: &str = r#"{"metadata":{"name":"web","namespace":"edge","uid":"u1","labels":{"app":"w"}},
      "spec":{"containers":[{"name":"c","image":"busybox",
        "command":["sh","-c","echo $(GREETING) $$(x) $(MISSING)"],
        "env":[{"name":"NODE","valueFrom":{"fieldRef":{"fieldPath":"spec.nodeName"}}},
               {"name":"GREETING","value":"hi-$(NODE)"},
               {"name":"APP","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['app']"}}},
               {"name":"MEM","valueFrom":{"resourceFieldRef":{"resource":"limits.memory"}}}],
        "ports":[{"containerPort":80,"hostPort":8080},{"containerPort":53,"protocol":"UDP"}],
        "resources":{"limits":{"cpu":"250m","memory":"64Mi"},"requests":{"cpu":"100m"}},
        "volumeMounts":[{"name":"data","mountPath":"/data","subPath":"$(NODE)"}],
        "securityContext":{"capabilities":{"add":["NET_ADMIN"],"drop":["ALL"]},"readOnlyRootFilesystem":true}}]}}"#;

    #[test]
    fn qos_and_cgroup_parent() {
        assert_eq!(qos_class(&pod(WEB)), QosClass::Burstable);
        assert_eq!(cgroup_parent(&pod(WEB), ""), "/kubepods/burstable/podu1");
        let be =
            pod(r#"{"metadata":{"uid":"u2"},"spec":{"containers":[{"name":"a","image":"i"}]}}"#);
        assert_eq!(qos_class(&be), QosClass::BestEffort);
        assert_eq!(
            cgroup_parent(&be, "/kubepods/"),
            "/kubepods/besteffort/podu2"
        );
        let g = pod(
            r#"{"metadata":{"uid":"u3"},"spec":{"containers":[{"name":"a","image":"i",
            "resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}}"#,
        );
        assert_eq!(qos_class(&g), QosClass::Guaranteed);
        assert_eq!(cgroup_parent(&g, ""), "/kubepods/podu3");
    }

    #[test]
    fn resources_follow_the_kubelet_formulas() {
        let p = pod(WEB);
        let r = container_resources(&p, &p.spec.containers[0], 1 << 30).unwrap();
        assert_eq!(r.cpu_shares, 102);
        assert_eq!(r.cpu_quota, 25_000);
        assert_eq!(r.cpu_period, CPU_PERIOD_US);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert!((3..=999).contains(&r.oom_score_adj));
        let be = pod(r#"{"spec":{"containers":[{"name":"a","image":"i"}]}}"#);
        let r = container_resources(&be, &be.spec.containers[0], 1 << 30).unwrap();
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 1000)
        );
        let bad = pod(
            r#"{"metadata":{"name":"b"},"spec":{"containers":[{"name":"a","image":"i",
            "resources":{"limits":{"memory":"lots"}}}]}}"#,
        );
        let e = container_resources(&bad, &bad.spec.containers[0], 1).unwrap_err();
        assert!(e.field.contains("limits.memory"), "{e}");
    }

    fn no_objects(_: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        None
    }

    fn sources<'a>(
        pod_ip: &'a str,
        object: &'a ObjectLookup<'a>,
        services: &'a BTreeMap<String, String>,
    ) -> EnvSources<'a> {
        EnvSources {
            pod_ip,
            object,
            services,
        }
    }

    #[test]
    fn env_expansion_and_downward_api() {
        let p = pod(WEB);
        let none = BTreeMap::new();
        let env = container_env(
            &p,
            &p.spec.containers[0],
            &host(),
            &sources("10.1.0.5", &no_objects, &none),
        )
        .unwrap()
        .vars;
        let get = |k: &str| env.iter().find(|kv| kv.key == k).map(|kv| kv.value.clone());
        assert_eq!(get("NODE").as_deref(), Some("pi4"));
        assert_eq!(get("GREETING").as_deref(), Some("hi-pi4"));
        assert_eq!(get("APP").as_deref(), Some("w"));
        assert_eq!(get("MEM").as_deref(), Some("67108864"));
        let missing = pod(
            r#"{"metadata":{"name":"m","namespace":"d"},"spec":{"containers":[{"name":"a","image":"i",
            "env":[{"name":"X","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k"}}},
                   {"name":"Y","valueFrom":{"secretKeyRef":{"name":"s","key":"k","optional":true}}}]}]}}"#,
        );
        let e = container_env(
            &missing,
            &missing.spec.containers[0],
            &host(),
            &sources("", &no_objects, &none),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("env[X]") && e.to_string().contains("cm"),
            "{e}"
        );
        let cm = |kind: &str, n: &str| {
            (kind == "configmap" && n == "cm")
                .then(|| [("k".to_string(), b"v".to_vec())].into_iter().collect())
        };
        let ok = container_env(
            &missing,
            &missing.spec.containers[0],
            &host(),
            &sources("", &cm, &none),
        )
        .unwrap();
        assert_eq!(ok.vars.len(), 1);
    }

    /// Upstream `makeEnvironmentVariables`: envFrom sources first (in order, later ones win),
    /// then `env` entries override them and may refer to them and to the Service variables
    /// with `$(VAR)`; Service variables come last unless set otherwise; invalid names are
    /// skipped and reported; a missing source fails unless `optional`.
    #[test]
    fn env_from_then_env_then_services() {
        let p = pod(
            r#"{"metadata":{"name":"m","namespace":"d"},"spec":{"containers":[{"name":"a","image":"i",
            "envFrom":[{"configMapRef":{"name":"cm"}},
                       {"prefix":"S_","secretRef":{"name":"sec"}},
                       {"configMapRef":{"name":"gone","optional":true}},
                       {"prefix":"B=","configMapRef":{"name":"cm"}}],
            "env":[{"name":"MODE","value":"env-wins"},
                   {"name":"URL","value":"$(S_user)@$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
                   {"name":"KUBERNETES_SERVICE_PORT","value":"1"}]}]}}"#,
        );
        let objects = |kind: &str, n: &str| -> Option<BTreeMap<String, Vec<u8>>> {
            let pairs: &[(&str, &str)] = match (kind, n) {
                ("configmap", "cm") => &[("MODE", "cm"), ("LEVEL", "3")],
                ("secret", "sec") => &[("user", "admin"), ("MODE", "secret")],
                _ => return None,
            };
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let services: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let out = container_env(
            &p,
            &p.spec.containers[0],
            &host(),
            &sources("", &objects, &services),
        )
        .unwrap();
        let keys: Vec<&str> = out.vars.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "LEVEL",
                "MODE",
                "S_MODE",
                "S_user",
                "URL",
                "KUBERNETES_SERVICE_PORT",
                "KUBERNETES_SERVICE_HOST"
            ]
        );
        let get = |k: &str| {
            out.vars
                .iter()
                .find(|kv| kv.key == k)
                .map(|kv| kv.value.as_str())
        };
        assert_eq!(get("MODE"), Some("env-wins"));
        assert_eq!(get("LEVEL"), Some("3"));
        assert_eq!(get("S_user"), Some("admin"));
        assert_eq!(get("URL"), Some("admin@10.0.0.1:443"));
        assert_eq!(
            get("KUBERNETES_SERVICE_PORT"),
            Some("1"),
            "explicit env wins"
        );
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains("Keys [B=LEVEL, B=MODE] from the EnvFrom configMap d/cm"),
            "{:?}",
            out.warnings
        );

        let mut required = p.clone();
        required.spec.containers[0].env_from[2]
            .config_map_ref
            .as_mut()
            .unwrap()
            .optional = None;
        let e = container_env(
            &required,
            &required.spec.containers[0],
            &host(),
            &sources("", &objects, &services),
        )
        .unwrap_err();
        assert_eq!(e.field, "spec.containers[a].envFrom[2]");
        assert!(e.reason.contains("configMap \"gone\""), "{e}");
    }

    /// Upstream `makeMounts` / `ExpandContainerVolumeMounts` and the conformance tests
    /// "should fail substituting values in a volume subpath with absolute path" (value `/tmp`)
    /// and "... with backticks" (whose value is in fact `..`): a subPathExpr expanding to an
    /// absolute path or with a `..` segment, or naming an unset variable, refuses the
    /// container; the error names the volume mount.
    #[test]
    fn sub_path_expr_expands_and_is_checked() {
        let vars: BTreeMap<String, String> = [
            ("POD", "web-1"),
            ("ABS", "/tmp"),
            ("UP", ".."),
            ("EMPTY", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(sub_path_expr("logs/$(POD)", &vars).unwrap(), "logs/web-1");
        assert_eq!(sub_path_expr("$$(POD)", &vars).unwrap(), "$(POD)");
        assert_eq!(
            sub_path_expr("$(NOPE)/$(EMPTY)", &vars).unwrap_err(),
            "missing value for EMPTY, NOPE"
        );
        assert!(check_sub_path("logs/web-1").is_ok());
        assert!(check_sub_path("a..b/c").is_ok());
        assert_eq!(
            check_sub_path("/tmp").unwrap_err(),
            "error SubPath `/tmp` must not be an absolute path"
        );
        assert_eq!(
            check_sub_path("a/../..").unwrap_err(),
            "unable to provision SubPath `a/../..`: must not contain '..'"
        );

        let vols: BTreeMap<String, HostVolume> = [(
            "work".to_string(),
            HostVolume {
                host_path: "/srv/w".into(),
                read_only: false,
            },
        )]
        .into();
        let build = |expr: &str| {
            let p = pod(&format!(
                r#"{{"metadata":{{"name":"s","namespace":"n"}},"spec":{{"containers":[{{"name":"c",
                  "image":"i","volumeMounts":[{{"name":"work","mountPath":"/w","subPathExpr":"{expr}"}}]}}]}}}}"#
            ));
            let envs = vars
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            container_config(
                &p,
                &p.spec.containers[0],
                0,
                envs,
                &vols,
                LinuxContainerResources::default(),
                BTreeMap::new(),
                BTreeMap::new(),
            )
        };
        assert_eq!(build("$(POD)").unwrap().mounts[0].host_path, "/srv/w/web-1");
        for (expr, why) in [
            ("$(ABS)", "must not be an absolute path"),
            ("$(UP)", "must not contain '..'"),
            ("x/$(UP)/y", "must not contain '..'"),
            ("$(NOPE)", "missing value for NOPE"),
        ] {
            let e = build(expr).unwrap_err();
            assert_eq!(e.field, "spec.containers[c].volumeMounts[0]");
            assert!(e.reason.contains("volumeMount \"work\""), "{e}");
            assert!(e.reason.contains(why), "{expr}: {e}");
        }
    }

    #[test]
    fn expand_matches_kubelet_rules() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "1-$(B)-$(A)-$");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("", &vars), "");
        assert_eq!(expand("ünï$(A)çødé", &vars), "ünï1çødé");
    }

    #[test]
    fn container_config_carries_everything() {
        let p = pod(WEB);
        let c = &p.spec.containers[0];
        let none = BTreeMap::new();
        let env = container_env(&p, c, &host(), &sources("", &no_objects, &none))
            .unwrap()
            .vars;
        let res = container_resources(&p, c, 1 << 30).unwrap();
        let vols: BTreeMap<String, HostVolume> = [(
            "data".to_string(),
            HostVolume {
                host_path: "/srv/d".into(),
                read_only: false,
            },
        )]
        .into();
        let cfg =
            container_config(&p, c, 2, env, &vols, res, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert_eq!(cfg.command, vec!["sh", "-c", "echo hi-pi4 $(x) $(MISSING)"]);
        assert_eq!(cfg.mounts[0].host_path, "/srv/d/pi4");
        assert_eq!(cfg.log_path, "c/2.log");
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert!(sc.readonly_rootfs);
        assert_eq!(sc.capabilities.unwrap().add_capabilities, vec!["NET_ADMIN"]);

        let mut escape = p.clone();
        escape.spec.containers[0].volume_mounts[0].sub_path = "../../etc".into();
        let c = &escape.spec.containers[0];
        let e = container_config(
            &escape,
            c,
            0,
            vec![],
            &vols,
            LinuxContainerResources::default(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.field.contains("volumeMounts[0]"), "{e}");
    }

    #[test]
    fn sandbox_config_dns_ports_and_namespaces() {
        let p = pod(WEB);
        let s = sandbox_config(&p, 1, &host(), BTreeMap::new(), BTreeMap::new());
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "/var/log/pods/edge_web_u1");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(s.port_mappings[0].host_port, 8080);
        let dns = s.dns_config.unwrap();
        assert_eq!(dns.servers, vec!["9.9.9.9"]);
        let mut with_cluster = host();
        with_cluster.cluster_dns = vec!["10.96.0.10".into()];
        let s = sandbox_config(&p, 1, &with_cluster, BTreeMap::new(), BTreeMap::new());
        let dns = s.dns_config.unwrap();
        assert_eq!(dns.servers, vec!["10.96.0.10"]);
        assert_eq!(dns.searches[0], "edge.svc.cluster.local");
        assert_eq!(dns.options, vec!["ndots:5"]);

        let hn = pod(
            r#"{"metadata":{"name":"h"},"spec":{"hostNetwork":true,"containers":[{"name":"a","image":"i"}]}}"#,
        );
        let s = sandbox_config(&hn, 0, &with_cluster, BTreeMap::new(), BTreeMap::new());
        assert_eq!(s.hostname, "");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        assert_eq!(s.dns_config.unwrap().servers, vec!["9.9.9.9"]);
    }

    #[test]
    fn resolv_conf_parsing_tolerates_junk() {
        let d = parse_resolv_conf("# c\nnameserver 1.1.1.1 # x\nnameserver\ndomain a\nsearch b c\noptions ndots:2 rotate\n\u{0}garbage");
        assert_eq!(d.servers, vec!["1.1.1.1"]);
        assert_eq!(d.searches, vec!["b", "c"]);
        assert_eq!(d.options, vec!["ndots:2", "rotate"]);
    }
}
