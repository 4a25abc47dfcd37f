//! Command line parsing and each command's help.
//!
//! Flag names are the kubelet's (and kube-proxy's) wherever such a flag exists, so existing
//! unit files and muscle memory carry over. The spelling is Go's flag package's, as the kubelet
//! accepts it: `--flag value`, `--flag=value`, one or two dashes (`-v=4`, `--v 4`), and a
//! repeated flag's last value wins. This module only turns words into a [`Command`]; it opens
//! no files and starts nothing.
//!
//! The parser is hand-written rather than a crate: lexopt reads `-v=4` as the value `=4` and
//! pico-args needs a feature for `=`, neither writes help, and both would only replace the
//! forty lines of [`Flags`]; the help texts, defaults and flag table stay ours either way.

use std::fmt;
use std::time::Duration;

use crate::config::{self, AgentConfig};

/// How long `run --once` waits for the runtime and the pods when `--once-timeout` is not given.
pub const DEFAULT_ONCE_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// `tinylet nft ...`: show our nf_tables tables; parsed by the proxy module.
    Nft(Vec<String>),
    /// `tinylet doctor`: preflight checks of the device for the configuration `run` would use.
    Doctor(Box<DoctorFlags>),
    /// `tinylet shutdown`: stop this node's pods with their grace, as a system shutdown does.
    Shutdown(Box<ShutdownFlags>),
    /// `tinylet --version`.
    Version,
    /// `--help` of the binary or of one command: the text to print.
    Help(Topic),
}

/// Whose help was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `tinylet --help`: the commands.
    Main,
    /// `tinylet run --help`.
    Run,
    /// `tinylet status --help`.
    Status,
    /// `tinylet doctor --help`.
    Doctor,
    /// `tinylet shutdown --help`.
    Shutdown,
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
    pub rotate_server_certificates: Option<bool>,
    pub authentication_token_webhook: Option<bool>,
    pub authorization_mode: Option<String>,
    pub healthz_port: Option<String>,
    pub healthz_bind_address: Option<String>,
    /// `--once`: converge once and exit (for scripts and tests).
    pub once: bool,
    /// `--once-timeout`: the bound on `--once` ([`DEFAULT_ONCE_TIMEOUT`] when not given).
    pub once_timeout: Option<Duration>,
    /// `--json`: `--once` prints its report as JSON instead of a table.
    pub json: bool,
}

impl RunFlags {
    /// The bound on `--once`.
    pub fn once_timeout(&self) -> Duration {
        self.once_timeout.unwrap_or(DEFAULT_ONCE_TIMEOUT)
    }
}

/// Flags of `tinylet status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFlags {
    pub status_socket: Option<String>,
    pub root_dir: Option<String>,
    pub json: bool,
}

/// Flags of `tinylet doctor`: run's configuration flags (so it checks what that run would
/// need) and `--json`; run's `--once` and `--once-timeout` are not accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorFlags {
    pub run: RunFlags,
    pub json: bool,
}

/// Flags of `tinylet shutdown`: where the configuration and the runtime are (run's `--config`,
/// `--board`, `--container-runtime-endpoint`, `-v`), a `--shutdown-grace-period` that overrides
/// the configured one, and `--only-at-system-shutdown`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownFlags {
    pub run: RunFlags,
    pub grace_period: Option<Duration>,
    /// Do nothing unless systemd says the system is going down.
    pub only_at_system_shutdown: bool,
}

/// A command line that could not be understood, and the help that lists the right flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// What was wrong, naming the word.
    pub message: String,
    /// The command whose usage applies.
    pub topic: Topic,
}

impl CliError {
    fn new(topic: Topic, message: String) -> CliError {
        CliError { message, topic }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let help = match self.topic {
            Topic::Main => "tinylet --help",
            Topic::Run => "tinylet run --help",
            Topic::Status => "tinylet status --help",
            Topic::Doctor => "tinylet doctor --help",
            Topic::Shutdown => "tinylet shutdown --help",
        };
        write!(f, "{} (see `{help}`)", self.message)
    }
}

impl std::error::Error for CliError {}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let Some(first) = args.first() else {
        return Ok(Command::Run(Box::default()));
    };
    let rest = &args[1..];
    match first.as_str() {
        "run" => parse_run(rest),
        "status" => parse_status(rest),
        "doctor" => parse_doctor(rest),
        "shutdown" => parse_shutdown(rest),
        "proxy" => Ok(Command::Proxy(rest.to_vec())),
        "ipvs" => Ok(Command::Ipvs(rest.to_vec())),
        "nft" => Ok(Command::Nft(rest.to_vec())),
        "--version" | "-version" | "version" => Ok(Command::Version),
        "--help" | "-help" | "-h" => Ok(Command::Help(Topic::Main)),
        "help" => match rest.first().map(String::as_str) {
            None => Ok(Command::Help(Topic::Main)),
            Some("run") => Ok(Command::Help(Topic::Run)),
            Some("status") => Ok(Command::Help(Topic::Status)),
            Some("doctor") => Ok(Command::Help(Topic::Doctor)),
            Some("shutdown") => Ok(Command::Help(Topic::Shutdown)),
            Some("proxy") => Ok(Command::Proxy(vec!["--help".into()])),
            Some("ipvs") => Ok(Command::Ipvs(vec!["--help".into()])),
            Some("nft") => Ok(Command::Nft(vec!["--help".into()])),
            Some(other) => Err(CliError::new(
                Topic::Main,
                format!(
                    "no help for {other:?}: the commands are run, status, doctor, shutdown, proxy, ipvs and nft"
                ),
            )),
        },
        s if s.starts_with('-') => parse_run(args),
        other => Err(CliError::new(
            Topic::Main,
            format!(
                "unknown command {other:?}: the commands are run, status, doctor, shutdown, proxy, ipvs and nft"
            ),
        )),
    }
}

/// Walks `--name value` / `--name=value` pairs.
struct Flags<'a> {
    args: &'a [String],
    pos: usize,
    topic: Topic,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String], topic: Topic) -> Self {
        Flags {
            args,
            pos: 0,
            topic,
        }
    }

    fn error(&self, message: String) -> CliError {
        CliError::new(self.topic, message)
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
            .filter(|b| !b.is_empty())
            .ok_or_else(|| self.error(format!("unexpected argument {arg:?}")))?;
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
            .ok_or_else(|| self.error(format!("flag --{name} needs a value")))?;
        self.pos += 1;
        Ok(v.clone())
    }

    /// A boolean flag: bare means true, or `=true|false` inline (never the next word).
    fn boolean(&self, name: &str, inline: Option<String>) -> Result<bool, CliError> {
        match inline.as_deref() {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(v) => Err(self.error(format!("flag --{name}: {v:?} is not true or false"))),
        }
    }
}

fn parse_run(args: &[String]) -> Result<Command, CliError> {
    Ok(match run_flags(args, Topic::Run)? {
        Some(f) => Command::Run(Box::new(f)),
        None => Command::Help(Topic::Run),
    })
}

/// Doctor takes run's flags, minus the ones that only steer a run.
fn parse_doctor(args: &[String]) -> Result<Command, CliError> {
    let Some(mut run) = run_flags(args, Topic::Doctor)? else {
        return Ok(Command::Help(Topic::Doctor));
    };
    if run.once || run.once_timeout.is_some() {
        return Err(CliError::new(
            Topic::Doctor,
            "--once and --once-timeout are run's flags, not doctor's".into(),
        ));
    }
    let json = std::mem::take(&mut run.json);
    Ok(Command::Doctor(Box::new(DoctorFlags { run, json })))
}

/// Run's flags (`None` when help was asked for); `topic` names the command in errors.
fn run_flags(args: &[String], topic: Topic) -> Result<Option<RunFlags>, CliError> {
    let mut f = RunFlags::default();
    let mut it = Flags::new(args, topic);
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
                f.anonymous_auth = Some(it.boolean(&name, inline)?);
                continue;
            }
            "rotate-server-certificates" => {
                f.rotate_server_certificates = Some(it.boolean(&name, inline)?);
                continue;
            }
            "authentication-token-webhook" => {
                f.authentication_token_webhook = Some(it.boolean(&name, inline)?);
                continue;
            }
            "offline-autonomy" => {
                f.offline_autonomy = Some(it.boolean(&name, inline)?);
                continue;
            }
            "once" => {
                f.once = it.boolean(&name, inline)?;
                continue;
            }
            "json" => {
                f.json = it.boolean(&name, inline)?;
                continue;
            }
            "once-timeout" => {
                let v = it.value(&name, inline)?;
                let d = config::parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        it.error(format!(
                            "flag --once-timeout: {v:?} is not a duration such as 60s or 2m"
                        ))
                    })?;
                f.once_timeout = Some(d);
                continue;
            }
            "v" => {
                let v = it.value(&name, inline)?;
                let n = v
                    .parse::<u8>()
                    .map_err(|_| it.error(format!("flag -v: {v:?} is not a number 0-255")))?;
                f.verbosity = Some(n);
                continue;
            }
            "help" | "h" => return Ok(None),
            _ => {
                let command = if topic == Topic::Doctor {
                    "doctor"
                } else {
                    "run"
                };
                return Err(it.error(format!("unknown flag --{name} for {command}")));
            }
        };
        *slot = Some(it.value(&name, inline)?);
    }
    Ok(Some(f))
}

fn parse_shutdown(args: &[String]) -> Result<Command, CliError> {
    let mut f = ShutdownFlags::default();
    let mut it = Flags::new(args, Topic::Shutdown);
    while let Some((name, inline)) = it.next_flag()? {
        match name.as_str() {
            "config" => f.run.config = Some(it.value(&name, inline)?),
            "board" => f.run.board = Some(it.value(&name, inline)?),
            "container-runtime-endpoint" => {
                f.run.container_runtime_endpoint = Some(it.value(&name, inline)?)
            }
            "shutdown-grace-period" => {
                let v = it.value(&name, inline)?;
                let d = config::parse_duration(&v).map_err(|_| {
                    it.error(format!(
                        "flag --shutdown-grace-period: {v:?} is not a duration such as 30s or 2m"
                    ))
                })?;
                f.grace_period = Some(d);
            }
            "only-at-system-shutdown" => f.only_at_system_shutdown = it.boolean(&name, inline)?,
            "v" => {
                let v = it.value(&name, inline)?;
                f.run.verbosity = Some(
                    v.parse::<u8>()
                        .map_err(|_| it.error(format!("flag -v: {v:?} is not a number 0-255")))?,
                );
            }
            "help" | "h" => return Ok(Command::Help(Topic::Shutdown)),
            _ => return Err(it.error(format!("unknown flag --{name} for shutdown"))),
        }
    }
    Ok(Command::Shutdown(Box::new(f)))
}

fn parse_status(args: &[String]) -> Result<Command, CliError> {
    let mut f = StatusFlags::default();
    let mut it = Flags::new(args, Topic::Status);
    while let Some((name, inline)) = it.next_flag()? {
        match name.as_str() {
            "status-socket" => f.status_socket = Some(it.value(&name, inline)?),
            "root-dir" => f.root_dir = Some(it.value(&name, inline)?),
            "json" => f.json = it.boolean(&name, inline)?,
            "help" | "h" => return Ok(Command::Help(Topic::Status)),
            _ => return Err(it.error(format!("unknown flag --{name} for status"))),
        }
    }
    Ok(Command::Status(f))
}

/// The help text of `topic`, with the built-in defaults filled in from the configuration.
pub fn help(topic: Topic) -> String {
    match topic {
        Topic::Main => MAIN_HELP.to_string(),
        Topic::Run => run_help(),
        Topic::Status => status_help(),
        Topic::Doctor => DOCTOR_HELP.to_string(),
        Topic::Shutdown => SHUTDOWN_HELP.to_string(),
    }
}

const MAIN_HELP: &str = "\
tinylet: a small Kubernetes node agent (kubelet + kube-proxy) for edge and ARM devices

usage:
    tinylet [run] [FLAGS]      run the node agent: static pods, and API pods with a kubeconfig
    tinylet status [FLAGS]     show a running agent's desired vs actual pods
    tinylet doctor [FLAGS]     check that this device can run the agent as configured
    tinylet shutdown [FLAGS]   stop this node's pods with their grace (at system shutdown)
    tinylet proxy [FLAGS]      run the service proxy alone (kube-proxy's IPVS or nftables mode)
    tinylet ipvs list|flush    show or clear the kernel's IPVS table
    tinylet nft list [TABLE]   show our nf_tables tables (kube-proxy, or tinylet-ipvs)
    tinylet --version          print the version, target and commit
    tinylet help [COMMAND]     this text, or a command's flags (same as COMMAND --help)

Flags without a command are run's. Every command's --help lists its flags and defaults.
";

const SHUTDOWN_HELP: &str = "\
tinylet shutdown: stop every pod of this node with its grace period, as a system shutdown does

usage: tinylet shutdown [FLAGS]

The kubelet's graceful node shutdown. Regular pods are stopped first, each container with
SIGTERM and at most min(terminationGracePeriodSeconds, shutdownGracePeriod -
shutdownGracePeriodCriticalPods) before SIGKILL, then its sandbox; then the critical pods
(static pods, system-critical priorities) within shutdownGracePeriodCriticalPods. With
shutdownGracePeriod 0 (the kubelet's default) nothing is stopped. Only what tinylet created
is touched. The agent never does this itself: stopping, restarting or upgrading it leaves
every container running. The package's tinylet-shutdown.service runs this command when the
system shuts down or reboots, after the agent stopped and before containerd stops.

flags:
    --config PATH                       the configuration file (as run's)
    --board NAME                        the board profile (as run's)
    --container-runtime-endpoint URL    the CRI socket (as run's)
    --shutdown-grace-period DURATION    use this instead of the configured shutdownGracePeriod
                                        (shutdownGracePeriodCriticalPods is capped by it)
    --only-at-system-shutdown           do nothing unless `systemctl is-system-running` says
                                        stopping: the system is going down
    -v N                                log verbosity
";

fn run_help() -> String {
    let d = AgentConfig::default();
    let manifests = d
        .static_pod_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none".into());
    let boards = wrap(&config::board_names(), 58).join("\n                                      ");
    format!(
        "\
usage: tinylet run [FLAGS]

Runs the node agent: static pods from the manifest dir and, with a kubeconfig, the pods the API
server binds to this node. Settings layer, later wins: built-in defaults, the board profile,
--config, flags. Flag values are `--flag value` or `--flag=value`; a repeated flag's last
value wins. Defaults below are the built-in ones; a board profile may set its own.

flags (the kubelet's names where the kubelet has the flag):
    --config FILE                     KubeletConfiguration-style YAML (default: none)
    --board NAME                      board profile (default {board}); one of:
                                      {boards}
    --root-dir DIR                    state on flash: store, pod dirs (default {root})
    --pod-manifest-path DIR           static pod manifests, YAML or JSON; empty disables
                                      (default {manifests})
    --container-runtime-endpoint EP   CRI socket, unix:// only
                                      (default {endpoint})
    --kubeconfig FILE                 join a cluster with this identity (default: none)
    --bootstrap-kubeconfig FILE       TLS bootstrap identity when --kubeconfig has no valid
                                      certificate (default: none)
    --cert-dir DIR                    bootstrapped certificates (default ROOT-DIR/pki)
    --hostname-override NAME          node name (default: the host name, lowercased)
    --node-ip IP[,IP]                 node addresses to report (default: the host's)
    --node-labels K=V,...             extra node labels (default: none)
    --register-with-taints K=V:E,...  taints to register with (default: none)
    --offline-autonomy=true|false     restart API pods from flash while the API server is
                                      unreachable (default {autonomy})
    --proxy-mode ipvs|nftables|none   also run the service proxy in-process (default none)
    --proxy-manifest-path DIR         Services/EndpointSlices for the proxy, offline
                                      (default: none)
    --status-socket PATH              unix socket `tinylet status` reads
                                      (default ROOT-DIR/tinylet.sock)
    --address IP                      kubelet API (HTTPS) address (default 0.0.0.0)
    --port N                          kubelet API port; 0 turns it off (default 10250)
    --tls-cert-file FILE              kubelet API serving certificate (default: a self-signed
                                      CERT-DIR/kubelet.crt)
    --tls-private-key-file FILE       its key (default CERT-DIR/kubelet.key)
    --client-ca-file FILE             CA of accepted client certificates (default: none)
    --rotate-server-certificates=true|false
                                      request the serving certificate from the cluster
                                      (signer kubernetes.io/kubelet-serving) and rotate it;
                                      not served until issued (default false)
    --anonymous-auth=true|false       let unauthenticated requests in (default false)
    --authentication-token-webhook=true|false
                                      check bearer tokens with TokenReview (default true)
    --authorization-mode Webhook|AlwaysAllow
                                      SubjectAccessReview per request (default Webhook)
    --healthz-port N                  plain /healthz port; 0 turns it off (default 10248)
    --healthz-bind-address IP         its address (default 127.0.0.1)
    --once                            converge once, print the status and exit
    --once-timeout DURATION           how long --once waits for the runtime and the pods
                                      (default {once:?})
    --json                            with --once: print the status as JSON, not a table
    -v, --v N                         log verbosity: 0-1 info, 2-3 debug, 4+ trace
                                      (default {v})
    -h, --help                        this help

exit codes of --once:
    0  converged: every pod started (or finished), no manifest errors
    1  the agent could not run (configuration, root dir, store, signal)
    2  the command line is wrong
    3  the container runtime did not answer within --once-timeout
    4  converged, but a manifest (or a pod in it) has errors
    5  pods did not start within --once-timeout
",
        board = config::DEFAULT_BOARD,
        root = d.root_dir.display(),
        endpoint = d.container_runtime_endpoint,
        autonomy = d.offline_autonomy,
        once = DEFAULT_ONCE_TIMEOUT,
        v = d.verbosity,
    )
}

/// Comma-separated words in lines of at most `width` characters.
fn wrap(words: &[&str], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for (i, w) in words.iter().enumerate() {
        let piece = if i + 1 < words.len() {
            format!("{w},")
        } else {
            w.to_string()
        };
        if !line.is_empty() && line.len() + 1 + piece.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

const DOCTOR_HELP: &str = "\
usage: tinylet doctor [RUN FLAGS] [--json]

Checks that this device can run `tinylet run` with the same flags: the kernel (version,
namespaces, cgroup controllers, overlayfs, veth/bridge for CNI, the IPVS or nf_tables
modules of --proxy-mode), containerd over CRI (reachable, ready, cgroup driver, sandbox image,
stream server), the CNI config, the clock, free space and inodes on the root dir and the
image file system, memory against the board's reservations, the API server with the
kubeconfig (skipped on a standalone node) and the node name. Each check says ok, warn or
FAIL, and how to fix it. Doctor only reads: it changes nothing on the device.

flags:
    every flag of `tinylet run` except --once and --once-timeout (see `tinylet run --help`),
    most usefully --config, --board, --root-dir, --container-runtime-endpoint,
    --kubeconfig, --bootstrap-kubeconfig, --proxy-mode and --hostname-override
    --json                 one JSON document (checks, summary, ready) for fleet tooling
    -h, --help             this help

exit codes:
    0  the node can run pods (warnings allowed)
    1  a check failed: the node cannot run pods as configured
    2  the command line is wrong
";

fn status_help() -> String {
    let d = AgentConfig::default();
    format!(
        "\
usage: tinylet status [FLAGS]

Asks a running `tinylet run` for its view: per pod the spec hash, phase, containers,
restarts, back-off and errors, then manifest errors. With neither --root-dir nor
--status-socket it tries the sockets the built-in board profiles use, first
{default}.

flags:
    --root-dir DIR         the agent's --root-dir; its socket is DIR/tinylet.sock
                           (default {root})
    --status-socket PATH   the agent's --status-socket, when it set one (wins over --root-dir)
    --json                 print the agent's JSON document instead of the table
    -h, --help             this help
",
        root = d.root_dir.display(),
        default = d.root_dir.join("tinylet.sock").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run_flags(s: &str) -> RunFlags {
        match parse(&args(s)) {
            Ok(Command::Run(f)) => *f,
            other => panic!("{s}: not run: {other:?}"),
        }
    }

    #[test]
    fn no_arguments_runs_the_agent_on_defaults() {
        assert_eq!(parse(&[]).unwrap(), Command::Run(Box::default()));
    }

    #[test]
    fn kubelet_flags_in_both_spellings() {
        let f = run_flags(
            "run --root-dir /data/tl --container-runtime-endpoint=unix:///x.sock -v=3 --offline-autonomy=false --once",
        );
        assert_eq!(f.root_dir.as_deref(), Some("/data/tl"));
        assert_eq!(
            f.container_runtime_endpoint.as_deref(),
            Some("unix:///x.sock")
        );
        assert_eq!(f.verbosity, Some(3));
        assert_eq!(f.offline_autonomy, Some(false));
        assert!(f.once);
        assert_eq!(f.once_timeout(), DEFAULT_ONCE_TIMEOUT);
        assert!(!f.json);
    }

    #[test]
    fn a_repeated_flag_keeps_its_last_value() {
        // Go's flag package, which the kubelet uses, sets the flag again on each occurrence.
        let f = run_flags("run --root-dir /a --v 1 --root-dir=/b -v=4");
        assert_eq!(f.root_dir.as_deref(), Some("/b"));
        assert_eq!(f.verbosity, Some(4));
    }

    #[test]
    fn once_timeout_and_json() {
        let f = run_flags("run --once --once-timeout 90s --json");
        assert_eq!(f.once_timeout(), Duration::from_secs(90));
        assert!(f.json && f.once);
        let f = run_flags("run --once --once-timeout=1m30s");
        assert_eq!(f.once_timeout(), Duration::from_secs(90));
        for bad in [
            "run --once-timeout soon",
            "run --once-timeout 0s",
            "run --once-timeout",
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(e.message.contains("--once-timeout"), "{bad}: {e}");
            assert_eq!(e.topic, Topic::Run);
        }
    }

    #[test]
    fn flags_without_subcommand_mean_run() {
        let f = run_flags("--v 2 --hostname-override pi4");
        assert_eq!(f.verbosity, Some(2));
        assert_eq!(f.hostname_override.as_deref(), Some("pi4"));
    }

    #[test]
    fn errors_name_the_flag_and_the_help_to_read() {
        let e = parse(&args("run --nope 1")).unwrap_err();
        assert!(e.message.contains("--nope"), "{e}");
        assert!(e.to_string().contains("tinylet run --help"), "{e}");
        assert!(parse(&args("run --root-dir"))
            .unwrap_err()
            .message
            .contains("--root-dir"));
        assert!(parse(&args("run -v x")).unwrap_err().message.contains("-v"));
        assert!(parse(&args("run --once=maybe"))
            .unwrap_err()
            .message
            .contains("--once"));
        let e = parse(&args("status --root")).unwrap_err();
        assert!(e.to_string().contains("tinylet status --help"), "{e}");
        let e = parse(&args("frobnicate")).unwrap_err();
        assert!(e.to_string().contains("tinylet --help"), "{e}");
        assert!(parse(&args("run stray")).is_err());
    }

    #[test]
    fn every_command_has_its_own_help() {
        for (line, topic) in [
            ("--help", Topic::Main),
            ("-h", Topic::Main),
            ("help", Topic::Main),
            ("run --help", Topic::Run),
            ("run --root-dir /x -h", Topic::Run),
            ("help run", Topic::Run),
            ("--v 2 --help", Topic::Run),
            ("status --help", Topic::Status),
            ("status -h", Topic::Status),
            ("help status", Topic::Status),
        ] {
            assert_eq!(parse(&args(line)).unwrap(), Command::Help(topic), "{line}");
        }
        assert_eq!(
            parse(&args("help proxy")).unwrap(),
            Command::Proxy(args("--help"))
        );
        assert_eq!(
            parse(&args("help ipvs")).unwrap(),
            Command::Ipvs(args("--help"))
        );
    }

    #[test]
    fn run_help_lists_every_flag_with_defaults_and_the_boards() {
        let h = help(Topic::Run);
        for flag in [
            "--config",
            "--board",
            "--root-dir",
            "--pod-manifest-path",
            "--container-runtime-endpoint",
            "--kubeconfig",
            "--bootstrap-kubeconfig",
            "--cert-dir",
            "--hostname-override",
            "--node-ip",
            "--node-labels",
            "--register-with-taints",
            "--offline-autonomy",
            "--proxy-mode",
            "--proxy-manifest-path",
            "--status-socket",
            "--once",
            "--once-timeout",
            "--json",
            "--v",
            "--help",
        ] {
            assert!(h.contains(flag), "run help lacks {flag}:\n{h}");
        }
        for board in config::board_names() {
            assert!(h.contains(board), "run help lacks board {board}:\n{h}");
        }
        for default in [
            "(default /var/lib/tinylet)",
            "(default /etc/tinylet/manifests)",
            "(default unix:///run/containerd/containerd.sock)",
            "(default ROOT-DIR/tinylet.sock)",
            "(default 60s)",
            "(default dev-host)",
        ] {
            assert!(h.contains(default), "run help lacks {default}:\n{h}");
        }
    }

    #[test]
    fn status_help_lists_its_flags() {
        let h = help(Topic::Status);
        for s in [
            "--root-dir",
            "--status-socket",
            "--json",
            "/var/lib/tinylet/tinylet.sock",
        ] {
            assert!(h.contains(s), "status help lacks {s}:\n{h}");
        }
        let m = help(Topic::Main);
        for s in ["run", "status", "proxy", "ipvs", "--version"] {
            assert!(m.contains(s), "main help lacks {s}:\n{m}");
        }
    }

    #[test]
    fn subcommands_pass_their_arguments_through() {
        assert_eq!(
            parse(&args("proxy --once --proxy-manifest-path /d")).unwrap(),
            Command::Proxy(args("--once --proxy-manifest-path /d"))
        );
        assert_eq!(
            parse(&args("nft list")).unwrap(),
            Command::Nft(args("list"))
        );
        assert_eq!(
            parse(&args("ipvs list")).unwrap(),
            Command::Ipvs(args("list"))
        );
        assert_eq!(parse(&args("--version")).unwrap(), Command::Version);
        let Command::Status(s) = parse(&args("status --json --root-dir=/r")).unwrap() else {
            panic!("not status")
        };
        assert!(s.json);
        assert_eq!(s.root_dir.as_deref(), Some("/r"));
    }

    #[test]
    fn shutdown_takes_config_endpoint_budget_and_the_guard() {
        let Command::Shutdown(f) = parse(&args(
            "shutdown --config /etc/tinylet/config.yaml --container-runtime-endpoint=unix:///c.sock \
             --shutdown-grace-period 45s --only-at-system-shutdown -v 2",
        ))
        .unwrap() else {
            panic!("not shutdown");
        };
        assert_eq!(f.run.config.as_deref(), Some("/etc/tinylet/config.yaml"));
        assert_eq!(
            f.run.container_runtime_endpoint.as_deref(),
            Some("unix:///c.sock")
        );
        assert_eq!(f.grace_period, Some(Duration::from_secs(45)));
        assert!(f.only_at_system_shutdown);
        assert_eq!(f.run.verbosity, Some(2));
        let Command::Shutdown(plain) = parse(&args("shutdown")).unwrap() else {
            panic!("not shutdown");
        };
        assert_eq!(*plain, ShutdownFlags::default());
        for line in ["shutdown --help", "shutdown -h", "help shutdown"] {
            assert_eq!(
                parse(&args(line)).unwrap(),
                Command::Help(Topic::Shutdown),
                "{line}"
            );
        }
        for bad in [
            "shutdown --once",
            "shutdown --shutdown-grace-period soon",
            "shutdown --kubeconfig /k",
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert_eq!(e.topic, Topic::Shutdown, "{bad}");
            assert!(e.to_string().contains("tinylet shutdown --help"), "{e}");
        }
        let h = help(Topic::Shutdown);
        for s in [
            "shutdownGracePeriod",
            "shutdownGracePeriodCriticalPods",
            "--only-at-system-shutdown",
            "tinylet-shutdown.service",
        ] {
            assert!(h.contains(s), "shutdown help lacks {s}:\n{h}");
        }
        assert!(help(Topic::Main).contains("tinylet shutdown"));
    }

    #[test]
    fn doctor_takes_runs_configuration_flags() {
        let Command::Doctor(d) = parse(&args(
            "doctor --config /etc/tinylet/config.yaml --board raspberry-pi-4 --proxy-mode ipvs \
             --kubeconfig /k --root-dir=/data --container-runtime-endpoint unix:///c.sock --json",
        ))
        .unwrap() else {
            panic!("not doctor");
        };
        assert!(d.json);
        assert!(
            !d.run.json,
            "--json is doctor's own, not handed to run's flags"
        );
        assert_eq!(d.run.config.as_deref(), Some("/etc/tinylet/config.yaml"));
        assert_eq!(d.run.board.as_deref(), Some("raspberry-pi-4"));
        assert_eq!(d.run.proxy_mode.as_deref(), Some("ipvs"));
        assert_eq!(d.run.kubeconfig.as_deref(), Some("/k"));
        assert_eq!(d.run.root_dir.as_deref(), Some("/data"));
        assert_eq!(
            d.run.container_runtime_endpoint.as_deref(),
            Some("unix:///c.sock")
        );
        for (line, topic) in [
            ("doctor --help", Topic::Doctor),
            ("doctor -h", Topic::Doctor),
            ("help doctor", Topic::Doctor),
        ] {
            assert_eq!(parse(&args(line)).unwrap(), Command::Help(topic), "{line}");
        }
        for bad in ["doctor --once", "doctor --once-timeout 5s", "doctor --nope"] {
            let e = parse(&args(bad)).unwrap_err();
            assert_eq!(e.topic, Topic::Doctor, "{bad}");
            assert!(e.to_string().contains("tinylet doctor --help"), "{e}");
        }
        let h = help(Topic::Doctor);
        for s in ["--json", "--config", "--board", "exit codes", "cgroup"] {
            assert!(h.contains(s), "doctor help lacks {s}:\n{h}");
        }
        assert!(help(Topic::Main).contains("tinylet doctor"));
    }

    #[test]
    fn kubelet_api_flags() {
        let Command::Run(f) = parse(&args(
            "run --address 127.0.0.1 --port=11250 --tls-cert-file /c --tls-private-key-file /k \
             --client-ca-file /ca --rotate-server-certificates --anonymous-auth=false --authentication-token-webhook \
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
        assert_eq!(f.rotate_server_certificates, Some(true));
        assert_eq!(f.authentication_token_webhook, Some(true));
        assert_eq!(f.authorization_mode.as_deref(), Some("AlwaysAllow"));
    }
}
