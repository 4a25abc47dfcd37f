//! Agent configuration: KubeletConfiguration-style file, board profiles, command line overrides,
//! resolved into one [`AgentConfig`].
//!
//! Layers, each overriding the one before it field by field:
//! 1. built-in values (upstream kubelet defaults where tinylet has the same setting),
//! 2. the `dev-host` board profile (the embedded default),
//! 3. the selected board profile (`--board`, else `tinylet.board` in the config file),
//! 4. the `--config` file,
//! 5. command line flags ([`FlagOverrides`]).
//!
//! Maps replace the previous layer's map as a whole, except node labels, which merge (so a
//! board's `tinylet.io/board` label survives `--node-labels`). Unknown fields are warned about
//! (naming the field path), never fatal; a bad value is an error naming the source and field.
//! This module only reads configuration: it must not create directories, sockets or cgroups.

pub mod board;
pub mod duration;
mod file;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use board::{board, board_names, boards, Board, DEFAULT_BOARD};
pub use duration::{parse_duration, DurationError};
pub use file::{CONFIG_API_VERSION, CONFIG_KIND};

/// Reservations of node resources for the OS or the agent (systemReserved, kubeReserved).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub pids: u64,
}

/// A hard eviction threshold: an absolute amount or a share of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionThreshold {
    /// Bytes (or inodes) that must remain available.
    Quantity(u64),
    /// Thousandths of a percent of capacity that must remain available (10% = 10_000).
    Percent { milli_percent: u32 },
}

/// A taint the node registers with (`registerWithTaints`, `--register-with-taints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// The cgroup driver; tinylet manages cgroups itself through cgroupfs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
}

/// Whether and how tinylet programs Service load balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// No service proxy: the host's IPVS/netfilter state is left untouched.
    Disabled,
    /// Services programmed into IPVS.
    Ipvs,
    /// Services programmed as our own nf_tables tables (kube-proxy's nftables mode).
    Nftables,
}

impl ProxyMode {
    /// Parses `ipvs`, `nftables` or `none` (also `disabled`, empty).
    pub fn parse(s: &str) -> Option<ProxyMode> {
        match s {
            "ipvs" => Some(ProxyMode::Ipvs),
            "nftables" => Some(ProxyMode::Nftables),
            "none" | "disabled" | "" => Some(ProxyMode::Disabled),
            _ => None,
        }
    }
}

/// How requests to the kubelet API are authorized (`authorization.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// SubjectAccessReview against the API server (the default).
    Webhook,
    /// Every authenticated request is allowed; only when configured.
    AlwaysAllow,
}

impl AuthorizationMode {
    /// Parses `Webhook` or `AlwaysAllow`, as spelled upstream.
    pub fn parse(s: &str) -> Option<AuthorizationMode> {
        match s {
            "Webhook" => Some(AuthorizationMode::Webhook),
            "AlwaysAllow" => Some(AuthorizationMode::AlwaysAllow),
            _ => None,
        }
    }
}

/// The kubelet API server's settings (KubeletConfiguration names in the field docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletApiConfig {
    /// `port`, `--port`: HTTPS port of the kubelet API; 0 disables the server.
    pub port: u16,
    /// `tlsCertFile`, `--tls-cert-file`: serving certificate (PEM, may hold a chain).
    pub tls_cert_file: Option<PathBuf>,
    /// `tlsPrivateKeyFile`, `--tls-private-key-file`.
    pub tls_private_key_file: Option<PathBuf>,
    /// `serverTLSBootstrap`, `--rotate-server-certificates`: the serving certificate comes
    /// from a CSR to `kubernetes.io/kubelet-serving` and is rotated; it takes precedence over
    /// the TLS files, as upstream.
    pub server_tls_bootstrap: bool,
    /// `authentication.x509.clientCAFile`, `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `authentication.anonymous.enabled`, `--anonymous-auth`. Off by default (the
    /// kubeadm/CIS setting rather than the upstream flag's default).
    pub anonymous_auth: bool,
    /// `authentication.webhook.enabled`, `--authentication-token-webhook`.
    pub token_webhook: bool,
    /// `authentication.webhook.cacheTTL`.
    pub token_webhook_cache_ttl: Duration,
    /// `authorization.mode`, `--authorization-mode`.
    pub authorization_mode: AuthorizationMode,
    /// `authorization.webhook.cacheAuthorizedTTL`.
    pub authorized_ttl: Duration,
    /// `authorization.webhook.cacheUnauthorizedTTL`.
    pub unauthorized_ttl: Duration,
    /// `healthzPort`, `--healthz-port`: plain-HTTP `/healthz`; 0 disables it.
    pub healthz_port: u16,
    /// `healthzBindAddress`, `--healthz-bind-address`.
    pub healthz_bind_address: IpAddr,
}

impl Default for KubeletApiConfig {
    /// KubeletConfiguration v1beta1 defaults, except anonymous access (off).
    fn default() -> Self {
        KubeletApiConfig {
            port: 10250,
            tls_cert_file: None,
            tls_private_key_file: None,
            server_tls_bootstrap: false,
            client_ca_file: None,
            anonymous_auth: false,
            token_webhook: true,
            token_webhook_cache_ttl: Duration::from_secs(120),
            authorization_mode: AuthorizationMode::Webhook,
            authorized_ttl: Duration::from_secs(300),
            unauthorized_ttl: Duration::from_secs(30),
            healthz_port: 10248,
            healthz_bind_address: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// The fully resolved configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The board profile applied (`dev-host` when none was chosen).
    pub board: String,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// tinylet's state directory (pods, volumes, store); on the device's flash.
    pub root_dir: PathBuf,
    /// Static pod manifest directory; `None` disables static pods.
    pub static_pod_path: Option<PathBuf>,
    /// Where container logs go (`podLogsDir`); edge boards keep them off flash, on tmpfs.
    pub pod_logs_dir: PathBuf,
    pub sync_frequency: Duration,
    /// How often the static pod directory is rescanned as a backstop to inotify.
    pub file_check_frequency: Duration,
    /// Address the kubelet API listens on (`address`, `--address`); `None` means 0.0.0.0.
    pub address: Option<String>,
    /// The kubelet API (`port`, TLS, authentication, authorization).
    pub kubelet_api: KubeletApiConfig,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub cgroup_driver: CgroupDriver,
    pub cgroup_root: String,
    pub system_reserved: Reserved,
    pub kube_reserved: Reserved,
    /// Signal name (`memory.available`, `nodefs.available`, ...) to threshold.
    pub eviction_hard: BTreeMap<String, EvictionThreshold>,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub image_minimum_gc_age: Duration,
    /// `imageMaximumGCAge`: images unused this long are removed whatever the usage (0: off).
    pub image_maximum_gc_age: Duration,
    pub max_pods: u32,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: u32,
    pub register_with_taints: Vec<Taint>,
    /// CRI endpoint, e.g. `unix:///run/containerd/containerd.sock`.
    pub container_runtime_endpoint: String,
    pub runtime_request_timeout: Duration,
    pub serialize_image_pulls: bool,
    /// Per-pod PID limit; -1 for none.
    pub pod_pids_limit: i64,
    /// A running container's log is rotated once it reaches this many bytes
    /// (`containerLogMaxSize`, default 10Mi).
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included (`containerLogMaxFiles`, ≥ 2).
    pub container_log_max_files: u32,
    /// How often container logs are checked for rotation (`containerLogMonitorInterval`).
    pub container_log_monitor_interval: Duration,
    /// Keep running (and restart) pods from the local store while the API server is away.
    pub offline_autonomy: bool,
    /// Local status socket, if enabled.
    pub status_socket: Option<PathBuf>,
    pub proxy_mode: ProxyMode,
    /// Where the proxy's desired Services/EndpointSlices come from when offline, if set.
    pub proxy_manifest_path: Option<PathBuf>,
    /// Log verbosity in kubelet `-v` terms (see `logging::init`).
    pub verbosity: u8,
    pub node_labels: BTreeMap<String, String>,
    pub kubeconfig: Option<PathBuf>,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Client certificate directory; [`AgentConfig::cert_dir`] gives the effective one.
    pub cert_dir: Option<PathBuf>,
    pub hostname_override: Option<String>,
    /// Node IPs (one per family at most).
    pub node_ips: Vec<IpAddr>,
    /// `shutdownGracePeriod`: what a system shutdown grants this node's pods in all, through
    /// `tinylet shutdown` (0: off, pods are left to the runtime, as upstream).
    pub shutdown_grace_period: Duration,
    /// `shutdownGracePeriodCriticalPods`: the part of it kept for the critical pods, stopped
    /// after the others (≤ `shutdown_grace_period`).
    pub shutdown_grace_period_critical_pods: Duration,
}

impl Default for AgentConfig {
    /// Built-in values, before any profile: upstream kubelet defaults for shared settings.
    fn default() -> Self {
        let mut eviction_hard = BTreeMap::new();
        eviction_hard.insert(
            "memory.available".to_string(),
            EvictionThreshold::Quantity(100 * 1024 * 1024),
        );
        for (signal, pct) in [
            ("nodefs.available", 10),
            ("imagefs.available", 15),
            ("nodefs.inodesFree", 5),
        ] {
            eviction_hard.insert(
                signal.to_string(),
                EvictionThreshold::Percent {
                    milli_percent: pct * 1000,
                },
            );
        }
        AgentConfig {
            board: DEFAULT_BOARD.to_string(),
            config_file: None,
            root_dir: PathBuf::from("/var/lib/tinylet"),
            static_pod_path: Some(PathBuf::from("/etc/tinylet/manifests")),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            sync_frequency: Duration::from_secs(60),
            file_check_frequency: Duration::from_secs(20),
            address: None,
            kubelet_api: KubeletApiConfig::default(),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            cgroup_root: "/".to_string(),
            system_reserved: Reserved::default(),
            kube_reserved: Reserved::default(),
            eviction_hard,
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: Duration::from_secs(120),
            image_maximum_gc_age: Duration::ZERO,
            max_pods: 110,
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            node_lease_duration_seconds: 40,
            register_with_taints: Vec::new(),
            container_runtime_endpoint: "unix:///run/containerd/containerd.sock".to_string(),
            runtime_request_timeout: Duration::from_secs(120),
            serialize_image_pulls: true,
            pod_pids_limit: -1,
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
            container_log_monitor_interval: Duration::from_secs(10),
            offline_autonomy: false,
            status_socket: None,
            proxy_mode: ProxyMode::Disabled,
            proxy_manifest_path: None,
            verbosity: 0,
            node_labels: BTreeMap::new(),
            kubeconfig: None,
            bootstrap_kubeconfig: None,
            cert_dir: None,
            hostname_override: None,
            node_ips: Vec::new(),
            shutdown_grace_period: Duration::ZERO,
            shutdown_grace_period_critical_pods: Duration::ZERO,
        }
    }
}

impl AgentConfig {
    /// The certificate directory: as configured, else `<rootDir>/pki`.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| self.root_dir.join("pki"))
    }

    /// The node name: `--hostname-override` if set, else the system hostname; lowercased and
    /// trimmed, as the kubelet does.
    pub fn node_name(&self, system_hostname: &str) -> String {
        self.hostname_override
            .as_deref()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or(system_hostname)
            .trim()
            .to_lowercase()
    }
}

/// Command line values, each `None` when the flag was not given. The argument parser fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagOverrides {
    /// `--root-dir`
    pub root_dir: Option<PathBuf>,
    /// `--pod-manifest-path` (empty disables static pods)
    pub pod_manifest_path: Option<PathBuf>,
    /// `--container-runtime-endpoint`
    pub container_runtime_endpoint: Option<String>,
    /// `--kubeconfig`
    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--hostname-override`
    pub hostname_override: Option<String>,
    /// `--node-ip`: one IP or two comma-separated (dual stack).
    pub node_ip: Option<String>,
    /// `--config`
    pub config: Option<PathBuf>,
    /// `--board`
    pub board: Option<String>,
    /// `-v` / `--v`
    pub verbosity: Option<u8>,
    /// `--cert-dir`
    pub cert_dir: Option<PathBuf>,
    /// `--node-labels`: `key=value,key2=value2`, merged over the profile's labels.
    pub node_labels: Option<String>,
    /// `--register-with-taints`: `key=value:Effect,key2:Effect`, replacing the file's list.
    pub register_with_taints: Option<String>,
    /// `--offline-autonomy`
    pub offline_autonomy: Option<bool>,
    /// `--proxy-mode`: `ipvs`, `nftables` or `none`.
    pub proxy_mode: Option<String>,
    /// `--proxy-manifest-path`
    pub proxy_manifest_path: Option<PathBuf>,
    /// `--status-socket` (empty disables it)
    pub status_socket: Option<PathBuf>,
    /// `--address`
    pub address: Option<String>,
    /// `--port`
    pub port: Option<String>,
    /// `--tls-cert-file`
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`
    pub client_ca_file: Option<PathBuf>,
    /// `--anonymous-auth`
    pub anonymous_auth: Option<bool>,
    /// `--rotate-server-certificates`
    pub rotate_server_certificates: Option<bool>,
    /// `--authentication-token-webhook`
    pub authentication_token_webhook: Option<bool>,
    /// `--authorization-mode`
    pub authorization_mode: Option<String>,
    /// `--healthz-port`
    pub healthz_port: Option<String>,
    /// `--healthz-bind-address`
    pub healthz_bind_address: Option<String>,
}

/// Where a setting came from, for errors and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Board(String),
    File(PathBuf),
    CommandLine,
    /// A rule spanning fields checked after every layer was applied.
    Combined,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Board(b) => write!(f, "board profile {b}"),
            ConfigSource::File(p) => write!(f, "config file {}", p.display()),
            ConfigSource::CommandLine => f.write_str("command line"),
            ConfigSource::Combined => f.write_str("combined configuration"),
        }
    }
}

/// Something in the configuration that was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWarning {
    /// A field tinylet does not know or support (dotted path).
    UnknownField { source: ConfigSource, field: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownField { source, field } => write!(
                f,
                "{source}: unknown or unsupported field {field:?} is ignored"
            ),
        }
    }
}

/// The configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The config file could not be read.
    Read { path: PathBuf, message: String },
    /// YAML syntax or a field of the wrong type.
    Syntax {
        source: ConfigSource,
        field: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A field has a value tinylet cannot use (flags are named like `--node-ip`).
    Field {
        source: ConfigSource,
        field: String,
        value: String,
        reason: String,
    },
    /// `--board`/`tinylet.board` names no compiled-in profile.
    UnknownBoard { name: String, source: ConfigSource },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, message } => {
                write!(f, "reading config file {}: {message}", path.display())
            }
            ConfigError::Syntax {
                source,
                field,
                line,
                column,
                message,
            } => {
                write!(f, "{source}: ")?;
                if let Some(field) = field {
                    write!(f, "{field}: ")?;
                }
                let mut message = message.clone();
                if let (Some(l), Some(c)) = (line, column) {
                    write!(f, "line {l} column {c}: ")?;
                    message = message.replace(&format!(" at line {l} column {c}"), "");
                }
                f.write_str(&message)
            }
            ConfigError::Field {
                source,
                field,
                value,
                reason,
            } => write!(f, "{source}: {field}: {value:?}: {reason}"),
            ConfigError::UnknownBoard { name, source } => write!(
                f,
                "{source}: unknown board {name:?} (known: {})",
                board_names().join(", ")
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A resolved configuration and what was ignored on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub config: AgentConfig,
    pub warnings: Vec<ConfigWarning>,
}

/// Reads `flags.config` (if given) and resolves every layer; warnings are also logged.
pub fn resolve(flags: &FlagOverrides) -> Result<Resolved, ConfigError> {
    let text = match &flags.config {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
            path: p.clone(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let file = flags.config.as_deref().zip(text.as_deref());
    let resolved = resolve_from(flags, file)?;
    for w in &resolved.warnings {
        log::warn!("{w}");
    }
    Ok(resolved)
}

/// Resolves every layer from the config file's text (path, contents) without I/O.
pub fn resolve_from(
    flags: &FlagOverrides,
    config_file: Option<(&Path, &str)>,
) -> Result<Resolved, ConfigError> {
    let mut warnings = Vec::new();
    let file_layer = match config_file {
        Some((path, text)) => {
            let source = ConfigSource::File(path.to_path_buf());
            Some((file::decode(&source, text)?, source))
        }
        None => None,
    };
    let (board_name, board_source) = match (&flags.board, &file_layer) {
        (Some(b), _) => (b.clone(), ConfigSource::CommandLine),
        (None, Some((raw, source))) => match raw.tinylet.as_ref().and_then(|t| t.board.clone()) {
            Some(b) => (b, source.clone()),
            None => (DEFAULT_BOARD.to_string(), ConfigSource::CommandLine),
        },
        (None, None) => (DEFAULT_BOARD.to_string(), ConfigSource::CommandLine),
    };
    let selected = board(&board_name).ok_or_else(|| ConfigError::UnknownBoard {
        name: board_name.clone(),
        source: board_source,
    })?;

    let mut cfg = AgentConfig::default();
    let mut layers = vec![DEFAULT_BOARD];
    if selected.name != DEFAULT_BOARD {
        layers.push(selected.name);
    }
    for name in layers {
        let source = ConfigSource::Board(name.to_string());
        let text = board(name).map_or("", |b| b.yaml);
        let raw = file::decode(&source, text)?;
        file::apply(&mut cfg, &source, &raw, &mut warnings)?;
    }
    cfg.board = selected.name.to_string();
    if let Some((raw, source)) = &file_layer {
        file::apply(&mut cfg, source, raw, &mut warnings)?;
        cfg.config_file = config_file.map(|(p, _)| p.to_path_buf());
    }
    apply_flags(&mut cfg, flags)?;
    check_consistency(&cfg)?;
    Ok(Resolved {
        config: cfg,
        warnings,
    })
}

fn flag_error(flag: &str, value: &str, reason: &str) -> ConfigError {
    file::field_error(&ConfigSource::CommandLine, flag, value, reason)
}

fn non_empty_path(p: &Path) -> Option<PathBuf> {
    (!p.as_os_str().is_empty()).then(|| p.to_path_buf())
}

fn apply_flags(cfg: &mut AgentConfig, f: &FlagOverrides) -> Result<(), ConfigError> {
    if let Some(p) = &f.root_dir {
        if !p.is_absolute() {
            return Err(flag_error(
                "--root-dir",
                &p.to_string_lossy(),
                "must be absolute",
            ));
        }
        cfg.root_dir = p.clone();
    }
    if let Some(p) = &f.pod_manifest_path {
        cfg.static_pod_path = non_empty_path(p);
    }
    if let Some(e) = &f.container_runtime_endpoint {
        cfg.container_runtime_endpoint = e.clone();
    }
    if let Some(p) = &f.kubeconfig {
        cfg.kubeconfig = non_empty_path(p);
    }
    if let Some(p) = &f.bootstrap_kubeconfig {
        cfg.bootstrap_kubeconfig = non_empty_path(p);
    }
    if let Some(h) = &f.hostname_override {
        cfg.hostname_override = (!h.is_empty()).then(|| h.clone());
    }
    if let Some(ips) = &f.node_ip {
        let mut out = Vec::new();
        for part in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip: IpAddr = part
                .parse()
                .map_err(|_| flag_error("--node-ip", part, "not an IP address"))?;
            out.push(ip);
        }
        let families = (
            out.iter().filter(|i| i.is_ipv4()).count(),
            out.iter().filter(|i| i.is_ipv6()).count(),
        );
        if families.0 > 1 || families.1 > 1 {
            return Err(flag_error(
                "--node-ip",
                ips,
                "at most one IPv4 and one IPv6 address",
            ));
        }
        cfg.node_ips = out;
    }
    if let Some(v) = f.verbosity {
        cfg.verbosity = v;
    }
    if let Some(p) = &f.cert_dir {
        cfg.cert_dir = non_empty_path(p);
    }
    if let Some(labels) = &f.node_labels {
        for item in labels.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| flag_error("--node-labels", item, "expected key=value"))?;
            if k.is_empty() {
                return Err(flag_error("--node-labels", item, "empty label key"));
            }
            cfg.node_labels.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(taints) = &f.register_with_taints {
        let mut out = Vec::new();
        for item in taints.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (kv, effect) = item.rsplit_once(':').ok_or_else(|| {
                flag_error(
                    "--register-with-taints",
                    item,
                    "expected key=value:Effect or key:Effect",
                )
            })?;
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            out.push(
                file::taint(k, v, effect)
                    .map_err(|r| flag_error("--register-with-taints", item, &r))?,
            );
        }
        cfg.register_with_taints = out;
    }
    if let Some(b) = f.offline_autonomy {
        cfg.offline_autonomy = b;
    }
    if let Some(m) = &f.proxy_mode {
        cfg.proxy_mode = ProxyMode::parse(m)
            .ok_or_else(|| flag_error("--proxy-mode", m, "must be ipvs, nftables or none"))?;
    }
    if let Some(p) = &f.proxy_manifest_path {
        cfg.proxy_manifest_path = non_empty_path(p);
    }
    if let Some(p) = &f.status_socket {
        cfg.status_socket = non_empty_path(p);
    }
    apply_api_flags(cfg, f)
}

/// The kubelet API flags (`--address`, `--port`, TLS, authn/authz).
fn apply_api_flags(cfg: &mut AgentConfig, f: &FlagOverrides) -> Result<(), ConfigError> {
    if let Some(a) = &f.address {
        a.parse::<IpAddr>()
            .map_err(|_| flag_error("--address", a, "not an IP address"))?;
        cfg.address = Some(a.clone());
    }
    let api = &mut cfg.kubelet_api;
    if let Some(p) = &f.port {
        api.port = p
            .parse()
            .map_err(|_| flag_error("--port", p, "not a port number 0-65535"))?;
    }
    if let Some(p) = &f.tls_cert_file {
        api.tls_cert_file = non_empty_path(p);
    }
    if let Some(p) = &f.tls_private_key_file {
        api.tls_private_key_file = non_empty_path(p);
    }
    if let Some(p) = &f.client_ca_file {
        api.client_ca_file = non_empty_path(p);
    }
    if let Some(b) = f.anonymous_auth {
        api.anonymous_auth = b;
    }
    if let Some(b) = f.rotate_server_certificates {
        api.server_tls_bootstrap = b;
    }
    if let Some(b) = f.authentication_token_webhook {
        api.token_webhook = b;
    }
    if let Some(m) = &f.authorization_mode {
        api.authorization_mode = AuthorizationMode::parse(m).ok_or_else(|| {
            flag_error("--authorization-mode", m, "must be Webhook or AlwaysAllow")
        })?;
    }
    if let Some(p) = &f.healthz_port {
        api.healthz_port = p
            .parse()
            .map_err(|_| flag_error("--healthz-port", p, "not a port number 0-65535"))?;
    }
    if let Some(a) = &f.healthz_bind_address {
        api.healthz_bind_address = a
            .parse()
            .map_err(|_| flag_error("--healthz-bind-address", a, "not an IP address"))?;
    }
    Ok(())
}

/// Cross-field rules the upstream kubelet enforces too.
fn check_consistency(cfg: &AgentConfig) -> Result<(), ConfigError> {
    let source = ConfigSource::Combined;
    if cfg.image_gc_low_threshold_percent >= cfg.image_gc_high_threshold_percent {
        return Err(ConfigError::Field {
            source,
            field: "imageGCLowThresholdPercent".into(),
            value: cfg.image_gc_low_threshold_percent.to_string(),
            reason: format!(
                "must be lower than imageGCHighThresholdPercent ({}) after all layers",
                cfg.image_gc_high_threshold_percent
            ),
        });
    }
    if cfg.kubelet_api.tls_cert_file.is_some() != cfg.kubelet_api.tls_private_key_file.is_some() {
        return Err(ConfigError::Field {
            source,
            field: "tlsCertFile".into(),
            value: format!("{:?}", cfg.kubelet_api.tls_cert_file),
            reason: "tlsCertFile and tlsPrivateKeyFile go together".into(),
        });
    }
    if cfg.shutdown_grace_period_critical_pods > cfg.shutdown_grace_period {
        return Err(ConfigError::Field {
            source,
            field: "shutdownGracePeriodCriticalPods".into(),
            value: format!("{:?}", cfg.shutdown_grace_period_critical_pods),
            reason: format!(
                "must not exceed shutdownGracePeriod ({:?}) after all layers",
                cfg.shutdown_grace_period
            ),
        });
    }
    if cfg.file_check_frequency.is_zero() {
        return Err(ConfigError::Field {
            source,
            field: "fileCheckFrequency".into(),
            value: "0".into(),
            reason: "must be positive".into(),
        });
    }
    if cfg.node_status_update_frequency
        >= Duration::from_secs(u64::from(cfg.node_lease_duration_seconds))
    {
        return Err(ConfigError::Field {
            source,
            field: "nodeStatusUpdateFrequency".into(),
            value: format!("{:?}", cfg.node_status_update_frequency),
            reason: "must be shorter than nodeLeaseDurationSeconds after all layers".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
