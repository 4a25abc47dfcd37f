//! Command line parsing.
//!
//! Flag names are the kubelet's (and kube-proxy's) wherever such a flag exists, so existing
//! unit files and muscle memory carry over. Both `--flag value` and `--flag=value` are accepted.
//! This module only turns words into a [`Command`]; it opens no files and starts nothing.

use std::fmt;

/// What the binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `tinylet run`: the node agent (the default when no subcommand is given).
    Run(Box<RunFlags>),
    /// `tinylet status`: ask a running agent for its view of desired versus actual state.
    Status(StatusFlags),
    /// `tinylet proxy ...`: the service proxy alone; arguments are parsed by the proxy module.
    Proxy(Vec<String>),
    /// `tinylet ipvs ...`: inspect the kernel's IPVS table; parsed by the proxy module.
    Ipvs(Vec<String>),
    /// `tinylet --version`.
    Version,
    /// `tinylet --help`.
    Help,
}

/// Flags of `tinylet run`; `None` means "not given": the config file or board profile decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    pub config: Option<String>,
    pub board: Option<String>,
    pub root_dir: Option<String>,
    pub pod_manifest_path: Option<String>,
    pub container_runtime_endpoint: Option<String>,
    pub kubeconfig: Option<String>,
    pub bootstrap_kubeconfig: Option<String>,
    pub cert_dir: Option<String>,
    pub hostname_override: Option<String>,
    pub node_ip: Option<String>,
    pub node_labels: Option<String>,
    pub register_with_taints: Option<String>,
    pub offline_autonomy: Option<bool>,
    pub proxy_mode: Option<String>,
    pub proxy_manifest_path: Option<String>,
    pub status_socket: Option<String>,
    pub verbosity: Option<u8>,
    pub address: Option<String>,
    pub port: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub client_ca_file: Option<String>,
    pub anonymous_auth: Option<bool>,
    pub authentication_token_webhook: Option<bool>,
    pub authorization_mode: Option<String>,
    pub healthz_port: Option<String>,
    pub healthz_bind_address: Option<String>,
    /// `--once`: converge once and exit (for scripts and tests).
    pub once: bool,
}

/// Flags of `tinylet status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFlags {
    pub status_socket: Option<String>,
    pub root_dir: Option<String>,
    pub json: bool,
}

/// A command line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see `tinylet --help`)", self.0)
    }
}

impl std::error::Error for CliError {}

/// The text of `tinylet --help`.
pub const HELP: &str = "\
tinylet: a small Kubernetes node agent (kubelet + kube-proxy) for edge and ARM devices

USAGE:
    tinylet [run] [FLAGS]     run the node agent (static pods; API server when a kubeconfig is given)
    tinylet status [--json]   show a running agent's desired vs actual pods
    tinylet proxy [FLAGS]     run the service proxy alone (see `tinylet proxy --help`)
    tinylet ipvs list|flush   show or clear the kernel's IPVS table
    tinylet --version

FLAGS of run (kubelet names):
    --config FILE                     KubeletConfiguration-style YAML
    --board NAME                      board profile (see boards/), default: dev-host
    --root-dir DIR                    state on flash (store, pod dirs)
    --pod-manifest-path DIR           static pod manifests (YAML or JSON)
    --container-runtime-endpoint EP   CRI socket, e.g. unix:///run/containerd/containerd.sock
    --kubeconfig FILE                 join a cluster with this identity
    --bootstrap-kubeconfig FILE       TLS bootstrap identity when --kubeconfig has no valid cert
    --cert-dir DIR                    where bootstrapped certificates are kept
    --hostname-override NAME          node name
    --node-ip IP                      node address to report
    --node-labels K=V,...             extra node labels
    --register-with-taints K=V:E,...  taints to register with
    --offline-autonomy=true|false     restart API pods from flash when the API is unreachable
    --proxy-mode ipvs                 also run the service proxy in-process
    --proxy-manifest-path DIR         Services/EndpointSlices for the proxy, offline
    --status-socket PATH              local unix socket for `tinylet status`
    --once                            converge once, report, and exit
    -v, --v N                         log verbosity (0-1 info, 2-3 debug, 4+ trace)
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let Some(first) = args.first() else {
        return Ok(Command::Run(Box::default()));
    };
    match first.as_str() {
        "run" => parse_run(&args[1..]).map(|f| Command::Run(Box::new(f))),
        "status" => parse_status(&args[1..]).map(Command::Status),
        "proxy" => Ok(Command::Proxy(args[1..].to_vec())),
        "ipvs" => Ok(Command::Ipvs(args[1..].to_vec())),
        "--version" | "version" => Ok(Command::Version),
        "--help" | "-h" | "help" => Ok(Command::Help),
        s if s.starts_with('-') => parse_run(args).map(|f| Command::Run(Box::new(f))),
        other => Err(CliError(format!("unknown command {other:?}"))),
    }
}

/// Walks `--name value` / `--name=value` pairs.
struct Flags<'a> {
    args: &'a [String],
    pos: usize,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Self {
        Flags { args, pos: 0 }
    }

    /// The next flag's name (without dashes) and its inline `=value`, if any.
    fn next_flag(&mut self) -> Result<Option<(String, Option<String>)>, CliError> {
        let Some(arg) = self.args.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .ok_or_else(|| CliError(format!("unexpected argument {arg:?}")))?;
        Ok(Some(match body.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (body.to_string(), None),
        }))
    }

    /// The value of a flag: inline, or the next argument.
    fn value(&mut self, name: &str, inline: Option<String>) -> Result<String, CliError> {
        if let Some(v) = inline {
            return Ok(v);
        }
        let v = self
            .args
            .get(self.pos)
            .ok_or_else(|| CliError(format!("flag --{name} needs a value")))?;
        self.pos += 1;
        Ok(v.clone())
    }
}

fn parse_bool(name: &str, inline: Option<String>) -> Result<bool, CliError> {
    match inline.as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(CliError(format!(
            "flag --{name}: {v:?} is not true or false"
        ))),
    }
}

fn parse_run(args: &[String]) -> Result<RunFlags, CliError> {
    let mut f = RunFlags::default();
    let mut it = Flags::new(args);
    while let Some((name, inline)) = it.next_flag()? {
        let slot = match name.as_str() {
            "config" => &mut f.config,
            "board" => &mut f.board,
            "root-dir" => &mut f.root_dir,
            "pod-manifest-path" => &mut f.pod_manifest_path,
            "container-runtime-endpoint" => &mut f.container_runtime_endpoint,
            "kubeconfig" => &mut f.kubeconfig,
            "bootstrap-kubeconfig" => &mut f.bootstrap_kubeconfig,
            "cert-dir" => &mut f.cert_dir,
            "hostname-override" => &mut f.hostname_override,
            "node-ip" => &mut f.node_ip,
            "node-labels" => &mut f.node_labels,
            "register-with-taints" => &mut f.register_with_taints,
            "proxy-mode" => &mut f.proxy_mode,
            "proxy-manifest-path" => &mut f.proxy_manifest_path,
            "status-socket" => &mut f.status_socket,
            "address" => &mut f.address,
            "port" => &mut f.port,
            "tls-cert-file" => &mut f.tls_cert_file,
            "tls-private-key-file" => &mut f.tls_private_key_file,
            "client-ca-file" => &mut f.client_ca_file,
            "authorization-mode" => &mut f.authorization_mode,
            "healthz-port" => &mut f.healthz_port,
            "healthz-bind-address" => &mut f.healthz_bind_address,
            "anonymous-auth" => {
                f.anonymous_auth = Some(parse_bool(&name, inline)?);
                continue;
            }
            "authentication-token-webhook" => {
                f.authentication_token_webhook = Some(parse_bool(&name, inline)?);
                continue;
            }
            "offline-autonomy" => {
                f.offline_autonomy = Some(parse_bool(&name, inline)?);
                continue;
            }
            "once" => {
                f.once = parse_bool(&name, inline)?;
                continue;
            }
            "v" => {
                let v = it.value(&name, inline)?;
                let n = v
                    .parse::<u8>()
                    .map_err(|_| CliError(format!("flag -v: {v:?} is not a number 0-255")))?;
                f.verbosity = Some(n);
                continue;
            }
            "help" | "h" => return Err(CliError("help".into())),
            _ => return Err(CliError(format!("unknown flag --{name}"))),
        };
        *slot = Some(it.value(&name, inline)?);
    }
    Ok(f)
}

fn parse_status(args: &[String]) -> Result<StatusFlags, CliError> {
    let mut f = StatusFlags::default();
    let mut it = Flags::new(args);
    while let Some((name, inline)) = it.next_flag()? {
        match name.as_str() {
            "status-socket" => f.status_socket = Some(it.value(&name, inline)?),
            "root-dir" => f.root_dir = Some(it.value(&name, inline)?),
            "json" => f.json = parse_bool(&name, inline)?,
            _ => return Err(CliError(format!("unknown flag --{name} for status"))),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn no_arguments_runs_the_agent_on_defaults() {
        assert_eq!(parse(&[]).unwrap(), Command::Run(Box::default()));
    }

    #[test]
    fn kubelet_flags_in_both_spellings() {
        let c = parse(&args(
            "run --root-dir /data/tl --container-runtime-endpoint=unix:///x.sock -v=3 --offline-autonomy=false --once",
        ))
        .unwrap();
        let Command::Run(f) = c else {
            panic!("not run")
        };
        assert_eq!(f.root_dir.as_deref(), Some("/data/tl"));
        assert_eq!(
            f.container_runtime_endpoint.as_deref(),
            Some("unix:///x.sock")
        );
        assert_eq!(f.verbosity, Some(3));
        assert_eq!(f.offline_autonomy, Some(false));
        assert!(f.once);
    }

    #[test]
    fn flags_without_subcommand_mean_run() {
        let c = parse(&args("--v 2 --hostname-override pi4")).unwrap();
        let Command::Run(f) = c else {
            panic!("not run")
        };
        assert_eq!(f.verbosity, Some(2));
        assert_eq!(f.hostname_override.as_deref(), Some("pi4"));
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(parse(&args("run --nope 1"))
            .unwrap_err()
            .0
            .contains("--nope"));
        assert!(parse(&args("run --root-dir"))
            .unwrap_err()
            .0
            .contains("--root-dir"));
        assert!(parse(&args("run -v x")).unwrap_err().0.contains("-v"));
        assert!(parse(&args("run --once=maybe"))
            .unwrap_err()
            .0
            .contains("--once"));
        assert!(parse(&args("frobnicate")).is_err());
    }

    #[test]
    fn subcommands_pass_their_arguments_through() {
        assert_eq!(
            parse(&args("proxy --once --proxy-manifest-path /d")).unwrap(),
            Command::Proxy(args("--once --proxy-manifest-path /d"))
        );
        assert_eq!(
            parse(&args("ipvs list")).unwrap(),
            Command::Ipvs(args("list"))
        );
        assert_eq!(parse(&args("--version")).unwrap(), Command::Version);
        let Command::Status(s) = parse(&args("status --json")).unwrap() else {
            panic!("not status")
        };
        assert!(s.json);
    }

    #[test]
    fn kubelet_api_flags() {
        let Command::Run(f) = parse(&args(
            "run --address 127.0.0.1 --port=11250 --tls-cert-file /c --tls-private-key-file /k \
             --client-ca-file /ca --anonymous-auth=false --authentication-token-webhook \
             --authorization-mode AlwaysAllow",
        ))
        .unwrap() else {
            panic!("not run");
        };
        assert_eq!(f.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(f.port.as_deref(), Some("11250"));
        assert_eq!(f.tls_cert_file.as_deref(), Some("/c"));
        assert_eq!(f.tls_private_key_file.as_deref(), Some("/k"));
        assert_eq!(f.client_ca_file.as_deref(), Some("/ca"));
        assert_eq!(f.anonymous_auth, Some(false));
        assert_eq!(f.authentication_token_webhook, Some(true));
        assert_eq!(f.authorization_mode.as_deref(), Some("AlwaysAllow"));
    }
}
