//! The agent: wires configuration, desired-state sources, the reconcile loop, the runtime and
//! status together. It owns no logic of its own beyond that wiring.

pub mod apipods;
pub mod apivolumes;
pub mod eventcorrelator;
pub mod kubelet;
pub mod notify;
pub mod once;
pub mod podevents;
pub mod podstatus;
pub mod status;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use crate::cli::{RunFlags, StatusFlags};
use crate::config::{self, FlagOverrides};

/// Why the agent stopped or could not start.
#[derive(Debug)]
pub enum AgentError {
    Config(String),
    RootDir(String),
    Store(String),
    Runtime(String),
    Manifests(String),
    Status(String),
    Signals(String),
    Interrupted,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Config(m) => write!(f, "configuration: {m}"),
            AgentError::RootDir(m) => write!(f, "root dir {m}"),
            AgentError::Store(m) => write!(f, "flash store: {m}"),
            AgentError::Runtime(m) => write!(f, "container runtime: {m}"),
            AgentError::Manifests(m) => write!(f, "static pod manifests: {m}"),
            AgentError::Status(m) => write!(f, "{m}"),
            AgentError::Signals(m) => write!(f, "signal handling: {m}"),
            AgentError::Interrupted => write!(f, "interrupted before the runtime answered"),
        }
    }
}

impl std::error::Error for AgentError {}

/// The configuration layers' view of run's flags (doctor resolves the same configuration).
pub(crate) fn overrides(f: &RunFlags) -> FlagOverrides {
    let path = |s: &Option<String>| s.as_ref().map(PathBuf::from);
    FlagOverrides {
        root_dir: path(&f.root_dir),
        pod_manifest_path: path(&f.pod_manifest_path),
        container_runtime_endpoint: f.container_runtime_endpoint.clone(),
        kubeconfig: path(&f.kubeconfig),
        bootstrap_kubeconfig: path(&f.bootstrap_kubeconfig),
        hostname_override: f.hostname_override.clone(),
        node_ip: f.node_ip.clone(),
        config: path(&f.config),
        board: f.board.clone(),
        verbosity: f.verbosity,
        cert_dir: path(&f.cert_dir),
        node_labels: f.node_labels.clone(),
        register_with_taints: f.register_with_taints.clone(),
        offline_autonomy: f.offline_autonomy,
        proxy_mode: f.proxy_mode.clone(),
        proxy_manifest_path: path(&f.proxy_manifest_path),
        status_socket: path(&f.status_socket),
        address: f.address.clone(),
        port: f.port.clone(),
        tls_cert_file: path(&f.tls_cert_file),
        tls_private_key_file: path(&f.tls_private_key_file),
        client_ca_file: path(&f.client_ca_file),
        anonymous_auth: f.anonymous_auth,
        rotate_server_certificates: f.rotate_server_certificates,
        authentication_token_webhook: f.authentication_token_webhook,
        authorization_mode: f.authorization_mode.clone(),
        healthz_port: f.healthz_port.clone(),
        healthz_bind_address: f.healthz_bind_address.clone(),
    }
}

/// The status socket when none is configured: inside the root dir, reachable by root only.
fn default_status_socket(root_dir: &std::path::Path) -> PathBuf {
    status::default_socket(root_dir)
}

/// `tinylet run`.
pub fn run_main(flags: RunFlags) -> i32 {
    let started = Instant::now();
    kubelet::block_signals();
    crate::logging::init(flags.verbosity.unwrap_or(0));
    let resolved = match config::resolve(&overrides(&flags)) {
        Ok(r) => r,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    let mut cfg = resolved.config;
    crate::logging::init(cfg.verbosity);
    if let Err(e) = check_endpoint(&cfg.container_runtime_endpoint) {
        log::error!("{e}");
        return 2;
    }
    if cfg.status_socket.is_none() {
        cfg.status_socket = Some(default_status_socket(&cfg.root_dir));
    }
    log::info!("{} starting, board {}", crate::version_line(), cfg.board);
    start_proxy(&cfg);
    let ex = Rc::new(smol::LocalExecutor::new());
    let opts = kubelet::RunOptions {
        once: flags.once,
        once_timeout: flags.once_timeout(),
        json: flags.json,
    };
    let socket = cfg.status_socket.clone();
    let result = smol::block_on(ex.run(kubelet::run(cfg, started, ex.clone(), opts)));
    if let Some(p) = socket {
        let _ = std::fs::remove_file(p);
    }
    match result {
        Ok(code) => {
            if !flags.once {
                log::info!("stopped");
            }
            code
        }
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

/// The runtime endpoint must be a unix socket: CRI over TCP is not implemented.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') && path.len() > 1 {
        return Ok(());
    }
    Err(format!(
        "container runtime endpoint {endpoint:?}: only unix:// endpoints are supported, \
         e.g. --container-runtime-endpoint unix:///run/containerd/containerd.sock"
    ))
}

/// With `--proxy-mode=ipvs` or `nftables` the service proxy runs in-process, on its own thread, exactly as
/// `tinylet proxy` runs it; a proxy failure is logged and never stops the pods.
fn start_proxy(cfg: &config::AgentConfig) {
    let mode = match cfg.proxy_mode {
        config::ProxyMode::Disabled => return,
        config::ProxyMode::Ipvs => "ipvs",
        config::ProxyMode::Nftables => "nftables",
    };
    let mut args = vec![format!("--proxy-mode={mode}")];
    match (&cfg.proxy_manifest_path, &cfg.kubeconfig) {
        (Some(dir), _) => {
            args.push("--proxy-manifest-path".into());
            args.push(dir.display().to_string());
        }
        (None, Some(kc)) => {
            args.push("--kubeconfig".into());
            args.push(kc.display().to_string());
        }
        (None, None) => {
            log::warn!("proxy mode {mode} needs --proxy-manifest-path or --kubeconfig; the proxy does not run");
            return;
        }
    }
    if let Some(h) = &cfg.hostname_override {
        args.push("--hostname-override".into());
        args.push(h.clone());
    }
    let spawned = std::thread::Builder::new()
        .name("proxy".into())
        .spawn(move || {
            let code = crate::proxy::cmd::proxy_main(&args);
            log::error!("service proxy stopped (exit code {code}); pods are not affected");
        });
    if let Err(e) = spawned {
        log::error!("service proxy: cannot start its thread: {e}");
    }
}

/// `tinylet status`.
pub fn status_main(flags: StatusFlags) -> i32 {
    status::client_main(&flags)
}
