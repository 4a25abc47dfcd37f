//! What a container reads about its surroundings, computed the kubelet's way: the variables of
//! `envFrom` sources, Service link variables, and `resourceFieldRef` values (env and
//! downwardAPI files alike).
//!
//! Pure: the Services, configMap/secret data and node allocatable are passed in. It must not
//! fetch anything or decide what to do when a value is missing; callers turn its errors into
//! the container's start failure.

use std::collections::BTreeMap;

use crate::k8s::pod::{Container, Pod, ResourceFieldSelector};
use crate::k8s::quantity::Quantity;
use crate::k8s::service::Service;

/// The node's allocatable resources, the default of a `limits.*` resource a container does not
/// limit (as the kubelet merges node allocatable into unset limits for the downward API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in millicores (0: unknown).
    pub cpu_millis: u64,
    /// Memory in bytes (0: unknown).
    pub memory: u64,
    /// Ephemeral storage in bytes (0: unknown).
    pub ephemeral_storage: u64,
}

/// The namespace of the cluster's master service.
pub const MASTER_NAMESPACE: &str = "default";
/// The master service, whose variables every pod gets.
pub const MASTER_SERVICE: &str = "kubernetes";

/// Whether `name` may be an environment variable name. kube-apiserver and kubelet 1.32 default
/// to the relaxed rule (RelaxedEnvironmentVariableValidation, beta and on): any printable
/// ASCII character except `=`, at least one.
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// The variables one `envFrom` source contributes, in key order, and the names it skipped as
/// invalid (after the prefix), sorted. Values that are not UTF-8 text are skipped too: an
/// environment holds text.
pub fn env_from_vars(
    prefix: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut vars = Vec::with_capacity(data.len());
    let mut invalid = Vec::new();
    for (k, v) in data {
        let name = format!("{prefix}{k}");
        if !valid_env_name(&name) {
            invalid.push(name);
            continue;
        }
        match std::str::from_utf8(v) {
            Ok(text) => vars.push((name, text.to_string())),
            Err(_) => invalid.push(name),
        }
    }
    invalid.sort();
    (vars, invalid)
}

/// The kubelet's warning for skipped envFrom keys (its `InvalidEnvironmentVariableNames`
/// event text). `kind` is `configMap` or `secret`.
pub fn invalid_names_message(
    invalid: &[String],
    kind: &str,
    namespace: &str,
    name: &str,
) -> String {
    format!(
        "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are \
         considered invalid environment variable names.",
        invalid.join(", ")
    )
}

/// A Service name as a variable prefix: upper case, `-` as `_`.
fn var_prefix(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// Whether a Service has a cluster IP (headless `None` and ExternalName services have none).
fn has_cluster_ip(s: &Service) -> bool {
    let ip = s.spec.cluster_ip.as_str();
    !ip.is_empty() && ip != "None"
}

/// The Services whose variables a pod in `namespace` gets: the master service `kubernetes` of
/// `default` always, every Service of the pod's own namespace when `enable_links` (a same-named
/// one there wins over the master's). Services without a cluster IP are skipped.
pub fn linked_services<'a>(
    services: &'a [Service],
    namespace: &str,
    enable_links: bool,
) -> Vec<&'a Service> {
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services.iter().filter(|s| has_cluster_ip(s)) {
        let name = s.metadata.name.as_str();
        let ns = s.metadata.namespace.as_str();
        if enable_links && ns == namespace {
            by_name.insert(name, s);
        } else if ns == MASTER_NAMESPACE && name == MASTER_SERVICE {
            by_name.entry(name).or_insert(s);
        }
    }
    by_name.into_values().collect()
}

/// The Service link variables for a pod in `namespace` (kubelet `envvars.FromServices`):
/// `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT` (first port), `{SVC}_SERVICE_PORT_{NAME}` per
/// named port, and the Docker link ones: `{SVC}_PORT` (first port) and per port
/// `{SVC}_PORT_{PORT}_{PROTO}` with `_PROTO`, `_PORT` and `_ADDR`.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_links: bool,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in linked_services(services, namespace, enable_links) {
        let prefix = var_prefix(&s.metadata.name);
        let ip = s.spec.cluster_ip.as_str();
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        let Some(first) = s.spec.ports.first() else {
            continue;
        };
        out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in s.spec.ports.iter().filter(|p| !p.name.is_empty()) {
            out.insert(
                format!("{prefix}_SERVICE_PORT_{}", var_prefix(&p.name)),
                p.port.to_string(),
            );
        }
        // An IPv6 address is bracketed in a URL, as Go's net.JoinHostPort does.
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        for (i, p) in s.spec.ports.iter().enumerate() {
            let proto = if p.protocol.is_empty() {
                "TCP"
            } else {
                p.protocol.as_str()
            };
            let lower = proto.to_ascii_lowercase();
            let url = format!("{lower}://{host}:{}", p.port);
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
            out.insert(format!("{pp}_PROTO"), lower);
            out.insert(format!("{pp}_PORT"), p.port.to_string());
            out.insert(format!("{pp}_ADDR"), ip.to_string());
            out.insert(pp, url);
        }
    }
    out
}

/// The value of a `resourceFieldRef` for container `c` of `pod` (or the container the selector
/// names), by the kubelet's rules: unset limits of cpu, memory and ephemeral-storage default to
/// the node's allocatable; unset requests are 0; the value is divided by `divisor` (default,
/// also when zero, 1) and rounded up (CPU in millicores over the divisor's millicores, so "1"
/// gives whole cores).
pub fn resource_field_value(
    pod: &Pod,
    c: &Container,
    sel: &ResourceFieldSelector,
    alloc: &Allocatable,
) -> Result<String, String> {
    let target = if sel.container_name.is_empty() {
        c
    } else {
        pod.spec
            .all_containers()
            .find(|x| x.name == sel.container_name)
            .ok_or_else(|| format!("container {:?} not found", sel.container_name))?
    };
    let (limit, resource) = match sel.resource.split_once('.') {
        Some(("limits", r)) => (true, r),
        Some(("requests", r)) => (false, r),
        _ => return Err(format!("unsupported container resource {:?}", sel.resource)),
    };
    let default = match resource {
        "cpu" => alloc.cpu_millis,
        "memory" => alloc.memory,
        "ephemeral-storage" => alloc.ephemeral_storage,
        _ => return Err(format!("unsupported container resource {:?}", sel.resource)),
    };
    let cpu = resource == "cpu";
    let amount = |q: &Quantity| -> Result<u64, String> {
        let r = if cpu { q.to_millis() } else { q.to_units() };
        r.map_err(|e| format!("{}: {e}", sel.resource))
    };
    let map = if limit {
        &target.resources.limits
    } else {
        &target.resources.requests
    };
    let value = match map.get(resource) {
        Some(q) => amount(q)?,
        None => 0,
    };
    // A zero limit counts as unset, as the kubelet's merge has it.
    let value = if limit && value == 0 { default } else { value };
    // The API server defaults an absent divisor to "0", which means 1 as an absent one does.
    let divisor = match &sel.divisor {
        Some(d) => amount(d).map_err(|e| format!("divisor: {e}"))?,
        None => 0,
    };
    let divisor = match divisor {
        0 if cpu => 1000,
        0 => 1,
        d => d,
    };
    Ok(value.div_ceil(divisor).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports.iter().map(|(n, p, proto)| serde_json::json!(
                {"name": n, "port": p, "protocol": proto})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    /// Upstream `pkg/kubelet/envvars`: `{SVC}_SERVICE_HOST`, `_SERVICE_PORT` (first port),
    /// `_SERVICE_PORT_{NAME}` for named ports, and Docker links: `{SVC}_PORT` = first port's
    /// `proto://ip:port`, per port `{SVC}_PORT_{PORT}_{PROTO}` plus `_PROTO` (lower case),
    /// `_PORT`, `_ADDR`; names upper-cased with `-` → `_`.
    #[test]
    fn service_variables_follow_the_docker_link_format() {
        let all = vec![
            svc(
                "default",
                "kubernetes",
                "10.0.0.1",
                &[("https", 443, "TCP")],
            ),
            svc(
                "app",
                "redis-primary",
                "10.0.0.11",
                &[("", 6379, ""), ("metrics", 9121, "TCP"), ("dns", 53, "UDP")],
            ),
            svc("app", "headless", "None", &[("x", 80, "TCP")]),
            svc("other", "elsewhere", "10.0.0.12", &[("", 80, "TCP")]),
        ];
        let env = service_env(&all, "app", true);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.0.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.0.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.0.0.1"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_HOST"), Some("10.0.0.11"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT"), Some("6379"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_METRICS"), Some("9121"));
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_DNS"), Some("53"));
        assert_eq!(get("REDIS_PRIMARY_PORT"), Some("tcp://10.0.0.11:6379"));
        assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP"), Some("udp://10.0.0.11:53"));
        assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("REDIS_PRIMARY_PORT_9121_TCP_ADDR"), Some("10.0.0.11"));
        assert!(
            !env.keys().any(|k| k.starts_with("HEADLESS")),
            "headless services are skipped"
        );
        assert!(
            !env.keys().any(|k| k.starts_with("ELSEWHERE")),
            "other namespaces' services are not linked"
        );
        // 1 host + 1 port + 1 named + 1 link + 4 per port, for the master service.
        assert_eq!(
            env.keys().filter(|k| k.starts_with("KUBERNETES_")).count(),
            8
        );
    }

    /// Upstream `getServiceEnvVarMap`: the master service's variables are always set, even
    /// with `enableServiceLinks: false`; the namespace's other services only when enabled; a
    /// same-named service in the pod's namespace wins over the master service.
    #[test]
    fn master_service_always_and_links_only_when_enabled() {
        let all = vec![
            svc(
                "default",
                "kubernetes",
                "10.0.0.1",
                &[("https", 443, "TCP")],
            ),
            svc("default", "web", "10.0.0.5", &[("", 80, "TCP")]),
        ];
        let off = service_env(&all, "app", false);
        assert_eq!(off["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
        assert!(!off.contains_key("WEB_SERVICE_HOST"));
        let in_default = service_env(&all, "default", true);
        assert_eq!(in_default["WEB_SERVICE_HOST"], "10.0.0.5");
        let in_default_off = service_env(&all, "default", false);
        assert!(!in_default_off.contains_key("WEB_SERVICE_HOST"));
        assert_eq!(in_default_off["KUBERNETES_SERVICE_PORT"], "443");
        let shadow = vec![
            all[0].clone(),
            svc("app", "kubernetes", "10.0.9.9", &[("", 8443, "TCP")]),
        ];
        assert_eq!(
            service_env(&shadow, "app", true)["KUBERNETES_SERVICE_HOST"],
            "10.0.9.9"
        );
        assert_eq!(
            service_env(&shadow, "app", false)["KUBERNETES_SERVICE_HOST"],
            "10.0.0.1"
        );
        let v6 = vec![svc("app", "v6", "fd00::1", &[("", 80, "TCP")])];
        assert_eq!(
            service_env(&v6, "app", true)["V6_PORT"],
            "tcp://[fd00::1]:80"
        );
        let no_ports = vec![svc("app", "bare", "10.0.0.7", &[])];
        let bare = service_env(&no_ports, "app", true);
        assert_eq!(bare.len(), 1, "{bare:?}");
    }

    /// Upstream `makeEnvironmentVariables`: envFrom keys get the prefix, names that are not
    /// valid environment variable names after it are skipped and reported in one sorted list.
    #[test]
    fn env_from_prefix_and_invalid_names() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("b".to_string(), b"2".to_vec()),
            ("a".to_string(), b"1".to_vec()),
            ("1st".to_string(), b"ok".to_vec()),
            ("bin".to_string(), vec![0xff, 0xfe]),
        ]
        .into();
        let (vars, invalid) = env_from_vars("P_", &data);
        assert_eq!(
            vars,
            vec![
                ("P_1st".to_string(), "ok".to_string()),
                ("P_a".to_string(), "1".to_string()),
                ("P_b".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(invalid, vec!["P_bin"]);
        let (vars, invalid) = env_from_vars("X=", &data);
        assert!(vars.is_empty());
        assert_eq!(invalid, vec!["X=1st", "X=a", "X=b", "X=bin"]);
        assert_eq!(
            invalid_names_message(&invalid[..2], "configMap", "ns", "cm"),
            "Keys [X=1st, X=a] from the EnvFrom configMap ns/cm were skipped since they are \
             considered invalid environment variable names."
        );
        assert!(valid_env_name("a.b-c 1"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("tab\there"));
        assert!(!valid_env_name("ü"));
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: String::new(),
            resource: resource.to_string(),
            divisor: divisor.map(Quantity::new),
        }
    }

    /// Upstream `ExtractContainerResourceValue`: ceil(value / divisor), CPU compared in
    /// millicores (default divisor 1 → whole cores rounded up), memory in bytes; with no limit
    /// set, `limits.*` is the node's allocatable (`MergeContainerResourceLimits`), an unset
    /// request is 0.
    #[test]
    fn resource_values_round_up_and_default_to_allocatable() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "i", "resources": {
                "limits": {"cpu": "1250m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                "requests": {"cpu": "250m", "memory": "32Mi"}}},
            {"name": "b", "image": "i"}]}}),
        );
        let alloc = Allocatable {
            cpu_millis: 4000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
        };
        let a = &p.spec.containers[0];
        let b = &p.spec.containers[1];
        let v = |c: &Container, r: &str, d: Option<&str>| {
            resource_field_value(&p, c, &sel(r, d), &alloc).unwrap()
        };
        assert_eq!(v(a, "limits.cpu", None), "2");
        assert_eq!(v(a, "limits.cpu", Some("1m")), "1250");
        assert_eq!(v(a, "limits.cpu", Some("100m")), "13");
        assert_eq!(v(a, "requests.cpu", None), "1");
        assert_eq!(v(a, "requests.cpu", Some("1m")), "250");
        assert_eq!(v(a, "limits.memory", None), "67108864");
        assert_eq!(v(a, "limits.memory", Some("1Mi")), "64");
        assert_eq!(v(a, "limits.memory", Some("1M")), "68");
        assert_eq!(v(a, "requests.memory", Some("1Mi")), "32");
        assert_eq!(v(a, "limits.ephemeral-storage", Some("1Mi")), "1024");
        assert_eq!(v(b, "limits.cpu", None), "4");
        assert_eq!(v(b, "limits.cpu", Some("1m")), "4000");
        assert_eq!(v(b, "limits.memory", Some("1Gi")), "8");
        assert_eq!(v(b, "requests.memory", None), "0");
        assert_eq!(v(b, "requests.cpu", None), "0");
        // A container named in the selector, from any container's env.
        let named = ResourceFieldSelector {
            container_name: "a".into(),
            ..sel("limits.memory", Some("1Mi"))
        };
        assert_eq!(resource_field_value(&p, b, &named, &alloc).unwrap(), "64");
        let missing = ResourceFieldSelector {
            container_name: "zz".into(),
            ..sel("limits.memory", None)
        };
        assert!(resource_field_value(&p, b, &missing, &alloc)
            .unwrap_err()
            .contains("zz"));
        assert!(resource_field_value(&p, a, &sel("limits.gpu", None), &alloc).is_err());
        assert!(resource_field_value(&p, a, &sel("cpu", None), &alloc).is_err());
        // The API server's default divisor "0" is the default divisor 1.
        assert_eq!(v(a, "limits.cpu", Some("0")), "2");
        assert_eq!(
            v(a, "requests.memory", Some("0")),
            (32u64 << 20).to_string()
        );
        assert!(resource_field_value(&p, a, &sel("limits.cpu", Some("lots")), &alloc).is_err());
    }
}
