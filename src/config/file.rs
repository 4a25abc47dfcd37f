//! The KubeletConfiguration-style YAML layer (config file and board profiles): decoding,
//! warnings for fields tinylet does not know, and applying a layer onto an [`AgentConfig`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::parse_duration;
use super::AuthorizationMode;
use super::{
    AgentConfig, CgroupDriver, ConfigError, ConfigSource, ConfigWarning, EvictionThreshold,
    ProxyMode, Reserved, Taint,
};
use crate::k8s::quantity::Quantity;

/// apiVersion a config layer must declare (when it declares one).
pub const CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// kind a config layer must declare (when it declares one).
pub const CONFIG_KIND: &str = "KubeletConfiguration";

/// One layer as written: every field optional, upstream field names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawConfig {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub static_pod_path: Option<String>,
    pub pod_logs_dir: Option<String>,
    pub sync_frequency: Option<String>,
    pub file_check_frequency: Option<String>,
    pub address: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub cgroup_driver: Option<String>,
    pub cgroup_root: Option<String>,
    pub system_reserved: Option<BTreeMap<String, Quantity>>,
    pub kube_reserved: Option<BTreeMap<String, Quantity>>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i64>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i64>,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<String>,
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<String>,
    pub max_pods: Option<i64>,
    pub node_status_update_frequency: Option<String>,
    pub node_status_report_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<i64>,
    pub register_with_taints: Option<Vec<RawTaint>>,
    pub container_runtime_endpoint: Option<String>,
    pub runtime_request_timeout: Option<String>,
    pub serialize_image_pulls: Option<bool>,
    pub pod_pids_limit: Option<i64>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i64>,
    pub container_log_monitor_interval: Option<String>,
    pub shutdown_grace_period: Option<String>,
    pub shutdown_grace_period_critical_pods: Option<String>,
    pub port: Option<i64>,
    pub healthz_port: Option<i64>,
    pub healthz_bind_address: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub authentication: Option<RawAuthentication>,
    pub authorization: Option<RawAuthorization>,
    pub tinylet: Option<RawTinylet>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml_ng::Value>,
}

/// tinylet's own settings, kept apart from the upstream field names.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawTinylet {
    pub root_dir: Option<String>,
    pub board: Option<String>,
    pub offline_autonomy: Option<bool>,
    pub status_socket: Option<String>,
    pub proxy_mode: Option<String>,
    pub proxy_manifest_path: Option<String>,
    pub log_level: Option<String>,
    pub node_labels: Option<BTreeMap<String, String>>,
    pub kubeconfig: Option<String>,
    pub bootstrap_kubeconfig: Option<String>,
    pub cert_dir: Option<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml_ng::Value>,
}

/// `authentication` of the kubelet API.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAuthentication {
    pub x509: Option<RawX509>,
    pub webhook: Option<RawAuthnWebhook>,
    pub anonymous: Option<RawEnabled>,
}

/// `authentication.x509`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawX509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// `authentication.webhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAuthnWebhook {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

/// `{enabled: bool}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawEnabled {
    pub enabled: Option<bool>,
}

/// `authorization` of the kubelet API.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAuthorization {
    pub mode: Option<String>,
    pub webhook: Option<RawAuthzWebhook>,
}

/// `authorization.webhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAuthzWebhook {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// A taint as written in `registerWithTaints`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTaint {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub effect: String,
}

/// Decodes one layer; syntax and type errors name the source and, where known, the field.
pub(super) fn decode(source: &ConfigSource, text: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let raw: Option<RawConfig> = serde_yaml_ng::from_str(text).map_err(|e| {
        let loc = e.location();
        let message = e.to_string();
        let (field, message) = match message.split_once(": ") {
            Some((path, rest))
                if !path.contains(' ') && !path.is_empty() && !path.starts_with("invalid") =>
            {
                (Some(path.to_string()), rest.to_string())
            }
            _ => (None, message),
        };
        ConfigError::Syntax {
            source: source.clone(),
            field,
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            message,
        }
    })?;
    let raw = raw.unwrap_or_default();
    if let Some(v) = &raw.api_version {
        if v != CONFIG_API_VERSION {
            return Err(field_error(
                source,
                "apiVersion",
                v,
                &format!("must be {CONFIG_API_VERSION}"),
            ));
        }
    }
    if let Some(k) = &raw.kind {
        if k != CONFIG_KIND {
            return Err(field_error(
                source,
                "kind",
                k,
                &format!("must be {CONFIG_KIND}"),
            ));
        }
    }
    Ok(raw)
}

/// The fields of a layer tinylet does not know, as warnings naming their path.
pub(super) fn unknown_fields(source: &ConfigSource, raw: &RawConfig) -> Vec<ConfigWarning> {
    let top = raw.unknown.keys().cloned();
    let nested = raw
        .tinylet
        .iter()
        .flat_map(|t| t.unknown.keys().map(|k| format!("tinylet.{k}")));
    top.chain(nested)
        .map(|field| ConfigWarning::UnknownField {
            source: source.clone(),
            field,
        })
        .collect()
}

pub(super) fn field_error(
    source: &ConfigSource,
    field: &str,
    value: &str,
    reason: &str,
) -> ConfigError {
    ConfigError::Field {
        source: source.clone(),
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn duration(
    source: &ConfigSource,
    field: &str,
    text: &Option<String>,
    into: &mut std::time::Duration,
) -> Result<(), ConfigError> {
    if let Some(t) = text {
        *into = parse_duration(t).map_err(|e| field_error(source, field, t, &e.to_string()))?;
    }
    Ok(())
}

fn int_in<T: TryFrom<i64>>(
    source: &ConfigSource,
    field: &str,
    v: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    into: &mut T,
) -> Result<(), ConfigError> {
    if let Some(v) = v {
        let bad = || {
            field_error(
                source,
                field,
                &v.to_string(),
                &format!("must be between {} and {}", range.start(), range.end()),
            )
        };
        if !range.contains(&v) {
            return Err(bad());
        }
        *into = T::try_from(v).map_err(|_| bad())?;
    }
    Ok(())
}

fn path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Parses `systemReserved`/`kubeReserved` (cpu, memory, ephemeral-storage, pid).
pub(super) fn reserved(
    source: &ConfigSource,
    field: &str,
    map: &BTreeMap<String, Quantity>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Reserved, ConfigError> {
    let mut r = Reserved::default();
    for (name, q) in map {
        let at = format!("{field}.{name}");
        let bad = |e: crate::k8s::quantity::QuantityError| {
            field_error(source, &at, q.as_str(), &e.to_string())
        };
        match name.as_str() {
            "cpu" => r.cpu_millis = q.to_millis().map_err(bad)?,
            "memory" => r.memory_bytes = q.to_units().map_err(bad)?,
            "ephemeral-storage" => r.ephemeral_storage_bytes = q.to_units().map_err(bad)?,
            "pid" => r.pids = q.to_units().map_err(bad)?,
            _ => warnings.push(ConfigWarning::UnknownField {
                source: source.clone(),
                field: at,
            }),
        }
    }
    Ok(r)
}

/// Parses one eviction threshold: a quantity or a percentage.
pub(super) fn eviction_threshold(text: &str) -> Result<EvictionThreshold, String> {
    if let Some(p) = text.strip_suffix('%') {
        let millis = crate::k8s::quantity::parse_millis(p).map_err(|e| e.to_string())?;
        if millis > 100_000 {
            return Err("a percentage must be at most 100%".to_string());
        }
        // Thousandths of a percent, exactly.
        return Ok(EvictionThreshold::Percent {
            milli_percent: u32::try_from(millis).unwrap_or(100_000),
        });
    }
    crate::k8s::quantity::parse_units(text)
        .map(EvictionThreshold::Quantity)
        .map_err(|e| e.to_string())
}

/// Parses a taint; `effect` must be one of the three the API knows.
pub(super) fn taint(key: &str, value: &str, effect: &str) -> Result<Taint, String> {
    if key.is_empty() {
        return Err("a taint needs a key".to_string());
    }
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "effect {effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.to_string(),
        effect: effect.to_string(),
    })
}

/// Maps a log level name (or a kubelet `-v` number) to a verbosity.
pub(super) fn log_level_verbosity(level: &str) -> Option<u8> {
    match level {
        "info" => Some(0),
        "debug" => Some(2),
        "trace" => Some(4),
        n => n.parse::<u8>().ok(),
    }
}

/// Applies every field a layer sets onto `cfg`; unknown fields become warnings.
pub(super) fn apply(
    cfg: &mut AgentConfig,
    source: &ConfigSource,
    raw: &RawConfig,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    warnings.extend(unknown_fields(source, raw));
    if let Some(p) = &raw.static_pod_path {
        cfg.static_pod_path = path(p);
    }
    if let Some(p) = raw.pod_logs_dir.as_deref().and_then(path) {
        cfg.pod_logs_dir = p;
    }
    duration(
        source,
        "syncFrequency",
        &raw.sync_frequency,
        &mut cfg.sync_frequency,
    )?;
    duration(
        source,
        "fileCheckFrequency",
        &raw.file_check_frequency,
        &mut cfg.file_check_frequency,
    )?;
    if let Some(a) = &raw.address {
        cfg.address = (!a.is_empty()).then(|| a.clone());
    }
    if let Some(list) = &raw.cluster_dns {
        let mut ips = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let ip = s.parse().map_err(|_| {
                field_error(source, &format!("clusterDNS[{i}]"), s, "not an IP address")
            })?;
            ips.push(ip);
        }
        cfg.cluster_dns = ips;
    }
    if let Some(d) = &raw.cluster_domain {
        cfg.cluster_domain = d.trim_end_matches('.').to_string();
    }
    if let Some(d) = &raw.cgroup_driver {
        cfg.cgroup_driver = match d.as_str() {
            "cgroupfs" => CgroupDriver::Cgroupfs,
            _ => {
                return Err(field_error(
                    source,
                    "cgroupDriver",
                    d,
                    "tinylet supports only the cgroupfs driver",
                ))
            }
        };
    }
    if let Some(r) = &raw.cgroup_root {
        cfg.cgroup_root = if r.is_empty() { "/".into() } else { r.clone() };
    }
    if let Some(m) = &raw.system_reserved {
        cfg.system_reserved = reserved(source, "systemReserved", m, warnings)?;
    }
    if let Some(m) = &raw.kube_reserved {
        cfg.kube_reserved = reserved(source, "kubeReserved", m, warnings)?;
    }
    if let Some(m) = &raw.eviction_hard {
        let mut out = BTreeMap::new();
        for (signal, text) in m {
            let t = eviction_threshold(text).map_err(|reason| {
                field_error(source, &format!("evictionHard.{signal}"), text, &reason)
            })?;
            out.insert(signal.clone(), t);
        }
        cfg.eviction_hard = out;
    }
    int_in(
        source,
        "imageGCHighThresholdPercent",
        raw.image_gc_high_threshold_percent,
        0..=100,
        &mut cfg.image_gc_high_threshold_percent,
    )?;
    int_in(
        source,
        "imageGCLowThresholdPercent",
        raw.image_gc_low_threshold_percent,
        0..=100,
        &mut cfg.image_gc_low_threshold_percent,
    )?;
    duration(
        source,
        "imageMinimumGCAge",
        &raw.image_minimum_gc_age,
        &mut cfg.image_minimum_gc_age,
    )?;
    duration(
        source,
        "imageMaximumGCAge",
        &raw.image_maximum_gc_age,
        &mut cfg.image_maximum_gc_age,
    )?;
    int_in(
        source,
        "maxPods",
        raw.max_pods,
        1..=10_000,
        &mut cfg.max_pods,
    )?;
    duration(
        source,
        "nodeStatusUpdateFrequency",
        &raw.node_status_update_frequency,
        &mut cfg.node_status_update_frequency,
    )?;
    duration(
        source,
        "nodeStatusReportFrequency",
        &raw.node_status_report_frequency,
        &mut cfg.node_status_report_frequency,
    )?;
    int_in(
        source,
        "nodeLeaseDurationSeconds",
        raw.node_lease_duration_seconds,
        1..=3600,
        &mut cfg.node_lease_duration_seconds,
    )?;
    if let Some(list) = &raw.register_with_taints {
        let mut taints = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            taints.push(taint(&t.key, &t.value, &t.effect).map_err(|reason| {
                field_error(
                    source,
                    &format!("registerWithTaints[{i}]"),
                    &format!("{}={}:{}", t.key, t.value, t.effect),
                    &reason,
                )
            })?);
        }
        cfg.register_with_taints = taints;
    }
    if let Some(e) = &raw.container_runtime_endpoint {
        cfg.container_runtime_endpoint = e.clone();
    }
    duration(
        source,
        "shutdownGracePeriod",
        &raw.shutdown_grace_period,
        &mut cfg.shutdown_grace_period,
    )?;
    duration(
        source,
        "shutdownGracePeriodCriticalPods",
        &raw.shutdown_grace_period_critical_pods,
        &mut cfg.shutdown_grace_period_critical_pods,
    )?;
    duration(
        source,
        "runtimeRequestTimeout",
        &raw.runtime_request_timeout,
        &mut cfg.runtime_request_timeout,
    )?;
    if let Some(b) = raw.serialize_image_pulls {
        cfg.serialize_image_pulls = b;
    }
    int_in(
        source,
        "podPidsLimit",
        raw.pod_pids_limit,
        -1..=i64::from(u32::MAX),
        &mut cfg.pod_pids_limit,
    )?;
    if let Some(text) = &raw.container_log_max_size {
        // A quantity (`10Mi`), as upstream; a zero size would rotate on every check.
        cfg.container_log_max_size = crate::k8s::quantity::parse_units(text)
            .map_err(|e| e.to_string())
            .and_then(|n| {
                (n > 0)
                    .then_some(n)
                    .ok_or_else(|| "must be greater than 0".to_string())
            })
            .map_err(|why| field_error(source, "containerLogMaxSize", text, &why))?;
    }
    // Upstream validation: at least 2 (the current file and one rotated).
    int_in(
        source,
        "containerLogMaxFiles",
        raw.container_log_max_files,
        2..=i64::from(u16::MAX),
        &mut cfg.container_log_max_files,
    )?;
    duration(
        source,
        "containerLogMonitorInterval",
        &raw.container_log_monitor_interval,
        &mut cfg.container_log_monitor_interval,
    )?;
    // Upstream validation: at least 3 s.
    if cfg.container_log_monitor_interval < std::time::Duration::from_secs(3) {
        let text = raw
            .container_log_monitor_interval
            .clone()
            .unwrap_or_default();
        return Err(field_error(
            source,
            "containerLogMonitorInterval",
            &text,
            "must be at least 3s",
        ));
    }
    apply_api(cfg, source, raw)?;
    if let Some(t) = &raw.tinylet {
        apply_tinylet(cfg, source, t)?;
    }
    Ok(())
}

/// The kubelet API fields: `port`, TLS files, `authentication`, `authorization`.
fn apply_api(
    cfg: &mut AgentConfig,
    source: &ConfigSource,
    raw: &RawConfig,
) -> Result<(), ConfigError> {
    let api = &mut cfg.kubelet_api;
    int_in(source, "port", raw.port, 0..=65535, &mut api.port)?;
    int_in(
        source,
        "healthzPort",
        raw.healthz_port,
        0..=65535,
        &mut api.healthz_port,
    )?;
    if let Some(a) = &raw.healthz_bind_address {
        api.healthz_bind_address = a
            .parse()
            .map_err(|_| field_error(source, "healthzBindAddress", a, "not an IP address"))?;
    }
    if let Some(p) = &raw.tls_cert_file {
        api.tls_cert_file = path(p);
    }
    if let Some(p) = &raw.tls_private_key_file {
        api.tls_private_key_file = path(p);
    }
    if let Some(b) = raw.server_tls_bootstrap {
        api.server_tls_bootstrap = b;
    }
    if let Some(a) = &raw.authentication {
        if let Some(p) = a.x509.as_ref().and_then(|x| x.client_ca_file.as_ref()) {
            api.client_ca_file = path(p);
        }
        if let Some(w) = &a.webhook {
            if let Some(b) = w.enabled {
                api.token_webhook = b;
            }
            duration(
                source,
                "authentication.webhook.cacheTTL",
                &w.cache_ttl,
                &mut api.token_webhook_cache_ttl,
            )?;
        }
        if let Some(b) = a.anonymous.as_ref().and_then(|x| x.enabled) {
            api.anonymous_auth = b;
        }
    }
    if let Some(z) = &raw.authorization {
        if let Some(m) = &z.mode {
            api.authorization_mode = AuthorizationMode::parse(m).ok_or_else(|| {
                field_error(
                    source,
                    "authorization.mode",
                    m,
                    "must be Webhook or AlwaysAllow",
                )
            })?;
        }
        if let Some(w) = &z.webhook {
            duration(
                source,
                "authorization.webhook.cacheAuthorizedTTL",
                &w.cache_authorized_ttl,
                &mut api.authorized_ttl,
            )?;
            duration(
                source,
                "authorization.webhook.cacheUnauthorizedTTL",
                &w.cache_unauthorized_ttl,
                &mut api.unauthorized_ttl,
            )?;
        }
    }
    Ok(())
}

fn apply_tinylet(
    cfg: &mut AgentConfig,
    source: &ConfigSource,
    t: &RawTinylet,
) -> Result<(), ConfigError> {
    if let Some(r) = &t.root_dir {
        if !r.starts_with('/') {
            return Err(field_error(
                source,
                "tinylet.rootDir",
                r,
                "must be absolute",
            ));
        }
        cfg.root_dir = PathBuf::from(r);
    }
    if let Some(b) = t.offline_autonomy {
        cfg.offline_autonomy = b;
    }
    if let Some(s) = &t.status_socket {
        cfg.status_socket = path(s);
    }
    if let Some(m) = &t.proxy_mode {
        cfg.proxy_mode = ProxyMode::parse(m).ok_or_else(|| {
            field_error(
                source,
                "tinylet.proxyMode",
                m,
                "must be ipvs, nftables or none",
            )
        })?;
    }
    if let Some(p) = &t.proxy_manifest_path {
        cfg.proxy_manifest_path = path(p);
    }
    if let Some(l) = &t.log_level {
        cfg.verbosity = log_level_verbosity(l).ok_or_else(|| {
            field_error(
                source,
                "tinylet.logLevel",
                l,
                "must be info, debug, trace or a -v number",
            )
        })?;
    }
    if let Some(labels) = &t.node_labels {
        cfg.node_labels
            .extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(p) = &t.kubeconfig {
        cfg.kubeconfig = path(p);
    }
    if let Some(p) = &t.bootstrap_kubeconfig {
        cfg.bootstrap_kubeconfig = path(p);
    }
    if let Some(p) = &t.cert_dir {
        cfg.cert_dir = path(p);
    }
    Ok(())
}
