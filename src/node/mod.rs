//! The Node side of joining a cluster: TLS bootstrap (`bootstrap`, `x509`), registration and
//! status (`register`, from `host` facts), and the heartbeat loop (`heartbeat` timing) that
//! renews the Lease and reports status on its own thread, riding out links that drop for
//! hours with a jittered back-off and catching up at once when the link returns.
//!
//! Owns the Node object, its Lease and the node's client credentials. It must not touch pods
//! (the pod sources and status reporters do) and never reads a status subresource.

pub mod bootstrap;
pub mod heartbeat;
pub mod host;
pub mod register;
pub mod x509;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::api::backoff::{random_between, Backoff, BackoffConfig, RandomSource, XorShift64};
use crate::api::client::{ACCEPT_METADATA, MERGE_PATCH, STRATEGIC_MERGE_PATCH};
use crate::api::{ApiError, Client, ClientConfig, ClusterConfig, Kubeconfig};
use crate::config::AgentConfig;
use crate::k8s::coordination::{format_micro_time, Lease, NODE_LEASE_NAMESPACE};
use crate::k8s::meta::OwnerReference;
use crate::k8s::node::NodeStatus;
use crate::k8s::protobuf;

use bootstrap::{BootstrapOptions, CertState};
use heartbeat::{Cadence, Heartbeat};
use host::HostInfo;
use register::NodeSettings;

/// Why the node side could not do something.
#[derive(Debug)]
pub enum NodeError {
    /// An API request failed.
    Api(ApiError),
    /// A kubeconfig could not be read, resolved or written.
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Neither a usable kubeconfig nor a bootstrap kubeconfig.
    NoCredentials {
        /// The kubeconfig that was looked for.
        path: PathBuf,
    },
    /// The certificate request was refused, failed or not answered in time.
    Csr {
        /// The CertificateSigningRequest's name.
        name: String,
        /// What happened.
        message: String,
    },
    /// Key generation or signing failed.
    Crypto(String),
    /// A credential file could not be written.
    Io {
        /// "write", "create", ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The wall clock is before the certificates' `notBefore` (a device without a real-time
    /// clock that has not synced its time yet).
    ClockBehind {
        /// The wall clock when it was seen.
        now: SystemTime,
        /// The latest `notBefore` in the future.
        not_before: SystemTime,
    },
    /// Stopped while waiting.
    Stopped,
    /// The node thread could not be started.
    Thread(std::io::Error),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Api(e) => write!(f, "{e}"),
            NodeError::Kubeconfig { path, message } => {
                write!(f, "kubeconfig {}: {message}", path.display())
            }
            NodeError::NoCredentials { path } => write!(
                f,
                "no credentials: kubeconfig {} does not exist and no --bootstrap-kubeconfig is set",
                path.display()
            ),
            NodeError::Csr { name, message } => {
                write!(f, "certificate signing request {name}: {message}")
            }
            NodeError::Crypto(m) => write!(f, "client key: {m}"),
            NodeError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            NodeError::ClockBehind { now, not_before } => {
                f.write_str(&bootstrap::clock_behind_message(*now, Some(*not_before)))
            }
            NodeError::Stopped => write!(f, "stopped"),
            NodeError::Thread(e) => write!(f, "starting the node thread: {e}"),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Api(e) => Some(e),
            NodeError::Io { source, .. } | NodeError::Thread(source) => Some(source),
            _ => None,
        }
    }
}

/// Host facts on demand (the real host in production, fixed facts in benches).
pub type HostSource = Box<dyn FnMut() -> HostInfo + Send>;

/// Everything the node thread needs besides credentials.
pub struct NodeOptions {
    /// What the Node is registered with.
    pub settings: NodeSettings,
    /// Lease and status timing.
    pub cadence: Cadence,
    /// Retry timing while the API is unreachable (cap = longest silence after the link returns).
    pub backoff: BackoffConfig,
    /// API client timeouts and limits.
    pub client: ClientConfig,
    /// Where host facts come from.
    pub host: HostSource,
    /// Seed for jitter; differs per node so a fleet never retries in step.
    pub seed: u64,
    /// TLS bootstrap waiting.
    pub bootstrap: BootstrapOptions,
}

impl fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeOptions")
            .field("settings", &self.settings)
            .field("cadence", &self.cadence)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Where the node's credentials come from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Use these (no bootstrap, no rotation).
    Ready(ClusterConfig),
    /// `--kubeconfig` / `--bootstrap-kubeconfig` / `--cert-dir` of this configuration:
    /// bootstrap if needed and rotate before expiry.
    FromConfig(Box<AgentConfig>),
}

/// What the node thread has done so far (for the agent's status, tests and benches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The Node's UID once registered.
    pub uid: Option<String>,
    /// Successful Lease writes.
    pub lease_renewals: u64,
    /// Successful status PATCHes.
    pub status_reports: u64,
    /// Failed API attempts.
    pub failures: u64,
    /// When the Lease was last renewed.
    pub last_renewal: Option<Instant>,
    /// The latest error, if the latest attempt failed.
    pub last_error: Option<String>,
    /// Set when the thread gave up for good (unusable configuration).
    pub fatal: Option<String>,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    state: Mutex<NodeState>,
    cluster: Mutex<Option<ClusterConfig>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn stopped(&self) -> bool {
        *lock(&self.stop)
    }

    /// Sleeps until `until` or a stop; true if stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut g = lock(&self.stop);
        loop {
            if *g {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            g = match self.wake.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn update(&self, f: impl FnOnce(&mut NodeState)) {
        f(&mut lock(&self.state));
        self.wake.notify_all();
    }
}

/// The running node thread.
pub struct NodeHandle {
    name: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl NodeHandle {
    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Node's UID once registered (owner references of mirror pods need it).
    pub fn uid(&self) -> Option<String> {
        lock(&self.shared.state).uid.clone()
    }

    /// The credentials in use once bootstrapped (the pod side can build its client from them).
    pub fn cluster(&self) -> Option<ClusterConfig> {
        lock(&self.shared.cluster).clone()
    }

    /// Waits up to `timeout` for credentials (after TLS bootstrap, if one is needed), so the
    /// pod side shares them instead of bootstrapping a second time.
    pub fn wait_credentials(&self, timeout: Duration) -> Option<ClusterConfig> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.cluster() {
                return Some(c);
            }
            let st = lock(&self.shared.state);
            if st.fatal.is_some() {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let _ = self
                .shared
                .wake
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(200)));
        }
    }

    /// A copy of the thread's progress counters.
    pub fn state(&self) -> NodeState {
        lock(&self.shared.state).clone()
    }

    /// Waits up to `timeout` for registration; the UID, or None.
    pub fn wait_registered(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if st.uid.is_some() || st.fatal.is_some() {
                return st.uid.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = match self.shared.wake.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Stops the thread and waits for it (it is between requests within a read timeout).
    pub fn stop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lease and status cadence from the agent configuration (renew at a quarter of the
/// lease duration, as the kubelet does).
pub fn cadence_from_config(cfg: &AgentConfig) -> Cadence {
    let lease = Duration::from_secs(u64::from(cfg.node_lease_duration_seconds.max(4)));
    Cadence {
        lease_duration: lease,
        renew_interval: lease / 4,
        status_compute: cfg.node_status_update_frequency,
        status_report: cfg.node_status_report_frequency,
        ..Cadence::default()
    }
}

fn seed_for(name: &str) -> u64 {
    let mut s = XorShift64::from_entropy();
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    s.next_u64() ^ h
}

/// Starts the node side for the agent: credentials (bootstrap if needed), registration,
/// Lease and status, all on one thread. `runtime_version` is e.g. `containerd://1.6.20`.
///
/// Fails at once only on a kubeconfig that exists and cannot be used (e.g. without a CA);
/// everything that may heal (the API unreachable, approval pending) is retried on the thread.
pub fn start(
    cfg: &AgentConfig,
    node_name: &str,
    runtime_version: &str,
) -> Result<NodeHandle, NodeError> {
    let path = bootstrap::kubeconfig_path(cfg);
    if path.exists() {
        Kubeconfig::load(&path, None).map_err(|e| NodeError::Kubeconfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
    } else if cfg.bootstrap_kubeconfig.is_none() {
        return Err(NodeError::NoCredentials { path });
    }
    let root = cfg.root_dir.clone();
    let opts = NodeOptions {
        settings: NodeSettings::from_config(cfg, node_name, runtime_version),
        cadence: cadence_from_config(cfg),
        backoff: BackoffConfig::default(),
        client: ClientConfig::default(),
        host: Box::new(move || HostInfo::read(&root)),
        seed: seed_for(node_name),
        bootstrap: BootstrapOptions::default(),
    };
    start_with(opts, Credentials::FromConfig(Box::new(cfg.clone())))
}

/// Starts the node thread with explicit options and credentials.
pub fn start_with(opts: NodeOptions, creds: Credentials) -> Result<NodeHandle, NodeError> {
    let name = opts.settings.name.clone();
    let shared = Arc::new(Shared {
        stop: Mutex::new(false),
        wake: Condvar::new(),
        state: Mutex::new(NodeState::default()),
        cluster: Mutex::new(None),
    });
    let s = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(format!(
            "node-{}",
            name.chars().take(10).collect::<String>()
        ))
        .stack_size(256 << 10)
        .spawn(move || {
            let mut worker = Worker::new(opts, s);
            worker.run(creds);
        })
        .map_err(NodeError::Thread)?;
    Ok(NodeHandle {
        name,
        shared,
        thread: Some(thread),
    })
}

/// Longest local wait for the clock to catch up with the certificates before trying again.
const CLOCK_WAIT_MAX: Duration = Duration::from_secs(300);

/// Longest sleep of the node loop while the link is down: how soon it notices that another
/// client of the link got through.
const LINK_CHECK: Duration = Duration::from_millis(250);

/// The node thread's state.
struct Worker {
    opts: NodeOptions,
    shared: Arc<Shared>,
    rng: XorShift64,
    backoff: Backoff,
    hb: Heartbeat,
    lease: Option<Lease>,
    /// Whether the Lease's managedFields hold only renewTime for us (reset once, then each
    /// renewal of renewTime alone keeps it so).
    lease_fields_lean: bool,
    last_sent: Option<NodeStatus>,
    /// Whether the server holds `last_sent` from our own status PATCH (then the next report
    /// may be a diff against it); false after registering, after the link was down, and every
    /// [`FULL_STATUS_EVERY`] reports, so whatever someone else changed is put right.
    status_synced: bool,
    diff_reports: u32,
    uid: String,
    link_down: bool,
}

impl Worker {
    fn new(opts: NodeOptions, shared: Arc<Shared>) -> Worker {
        Worker {
            rng: XorShift64::new(opts.seed),
            backoff: Backoff::new(opts.backoff),
            hb: Heartbeat::new(opts.cadence),
            opts,
            shared,
            lease: None,
            lease_fields_lean: false,
            last_sent: None,
            status_synced: false,
            diff_reports: 0,
            uid: String::new(),
            link_down: false,
        }
    }

    fn name(&self) -> &str {
        &self.opts.settings.name
    }

    /// Records a failed attempt; returns when to try again.
    fn failed(&mut self, what: &str, e: &NodeError, retry_after: Option<Duration>) -> Instant {
        let now = Instant::now();
        let delay = self.backoff.on_failure(now, retry_after, &mut self.rng);
        let first = self.backoff.failures() <= 1;
        self.report_failure(what, e, delay, first);
        now + delay
    }

    /// A failed Lease write, or a failed status report that makes the next Lease write probe
    /// the link: retried on the Lease's own short schedule, never on the long shared back-off
    /// (a renewal waiting 30 s after one reset would let a 40 s Lease lapse on a working link).
    fn lease_failed(&mut self, what: &str, e: ApiError) {
        let now = Instant::now();
        let ra = e.retry_after;
        let at = self
            .hb
            .renew_failed_jittered(now, self.opts.backoff.initial, ra, &mut self.rng);
        let first = self.hb.renew_failures() <= 1;
        self.report_failure(what, &NodeError::Api(e), at - now, first);
        self.link_down = true;
        // The node controller may mark conditions Unknown meanwhile: send them all when the
        // link is back.
        self.status_synced = false;
    }

    fn report_failure(&self, what: &str, e: &NodeError, delay: Duration, first: bool) {
        let mut msg = format!("{what}: {e}");
        if bootstrap::is_not_yet_valid_error(&msg) {
            // The server's certificate is from the future as far as this device knows.
            msg = format!(
                "{what}: {}",
                bootstrap::clock_behind_message(SystemTime::now(), None)
            );
        }
        if first {
            log::warn!(
                "node {}: {msg}; retrying in {} ms",
                self.name(),
                delay.as_millis()
            );
        } else {
            log::debug!(
                "node {}: {msg}; retrying in {} ms",
                self.name(),
                delay.as_millis()
            );
        }
        self.shared.update(|s| {
            s.failures += 1;
            s.last_error = Some(msg);
        });
    }

    fn fatal(&self, msg: String) {
        log::error!("node {}: {msg}; the node side stops", self.name());
        self.shared.update(|s| s.fatal = Some(msg));
    }

    fn run(&mut self, creds: Credentials) {
        let Some((cluster, agent_cfg)) = self.credentials(creds) else {
            return;
        };
        let mut client = match Client::new(&cluster, self.opts.client.clone()) {
            Ok(c) => c,
            Err(e) => return self.fatal(format!("API client: {e}")),
        };
        *lock(&self.shared.cluster) = Some(cluster.clone());
        self.shared.wake.notify_all();
        let mut link = client.link_health().cursor();
        let mut rotate_at = agent_cfg
            .as_ref()
            .and_then(|_| self.rotation_deadline(&cluster));
        let mut rotate_retry: Option<Instant> = None;
        // No TLS handshake can succeed while the clock is behind the cluster's certificates.
        while let Some(nb) = bootstrap::clock_behind(&cluster, SystemTime::now()) {
            if self.wait_for_clock(SystemTime::now(), nb) {
                return;
            }
        }
        if !self.register(&client) {
            return;
        }
        loop {
            if self.shared.stopped() {
                return;
            }
            if link.recovered(client.link_health().generation()) && self.link_down {
                // Another client of the link (the pod watch) got through first.
                let first = self.opts.backoff.initial;
                self.hb.renew_soon(Instant::now(), first, &mut self.rng);
            }
            self.tick(&client);
            let retry_due = rotate_retry.is_none_or(|t| Instant::now() >= t);
            if let (Some(at), Some(cfg)) = (rotate_at, agent_cfg.as_deref()) {
                if !self.link_down && retry_due && SystemTime::now() >= at {
                    rotate_at = match self.rotate(&client, &cluster, cfg) {
                        Some((c, cl)) => {
                            client = c;
                            let next = self.rotation_deadline(&cl);
                            *lock(&self.shared.cluster) = Some(cl);
                            next
                        }
                        // Try again in a few minutes (monotonic: a clock jump must not make
                        // this wait decades or nothing) while the old certificate still works.
                        None => {
                            rotate_retry = Some(Instant::now() + Duration::from_secs(300));
                            Some(at)
                        }
                    };
                }
            }
            let now = Instant::now();
            let mut wake = self.hb.next_wake(now);
            if self.link_down {
                // Look at the shared link signal now and then while renewals fail.
                wake = wake.min(now + LINK_CHECK);
            }
            if self.shared.sleep_until(wake) {
                return;
            }
        }
    }

    fn credentials(
        &mut self,
        creds: Credentials,
    ) -> Option<(ClusterConfig, Option<Box<AgentConfig>>)> {
        match creds {
            Credentials::Ready(c) => Some((c, None)),
            Credentials::FromConfig(cfg) => loop {
                let shared = Arc::clone(&self.shared);
                let stop = move || shared.stopped();
                let name = self.name().to_string();
                match bootstrap::ensure_credentials_with(&cfg, &name, &self.opts.bootstrap, &stop) {
                    Ok(c) => return Some((c, Some(cfg))),
                    Err(NodeError::Stopped) => return None,
                    Err(e @ (NodeError::Kubeconfig { .. } | NodeError::NoCredentials { .. })) => {
                        self.fatal(e.to_string());
                        return None;
                    }
                    Err(NodeError::ClockBehind { now, not_before }) => {
                        if self.wait_for_clock(now, not_before) {
                            return None;
                        }
                    }
                    Err(e) => {
                        let ra = match &e {
                            NodeError::Api(a) => a.retry_after,
                            _ => None,
                        };
                        let at = self.failed("TLS bootstrap", &e, ra);
                        if self.shared.sleep_until(at) {
                            return None;
                        }
                    }
                }
            },
        }
    }

    /// Waits, without a request, until the wall clock passes `not_before` (time sync came) or
    /// a few minutes passed; true if stopped meanwhile. Reported once per wait, in words an
    /// operator recognises, instead of as a stream of failed TLS handshakes.
    fn wait_for_clock(&mut self, now: SystemTime, not_before: SystemTime) -> bool {
        let msg = bootstrap::clock_behind_message(now, Some(not_before));
        log::warn!("node {}: {msg}", self.name());
        self.shared.update(|s| {
            s.failures += 1;
            s.last_error = Some(msg);
        });
        let give_up = Instant::now() + CLOCK_WAIT_MAX;
        loop {
            let at = Instant::now() + bootstrap::CLOCK_CHECK;
            if self.shared.sleep_until(at.min(give_up)) {
                return true;
            }
            if SystemTime::now() >= not_before || Instant::now() >= give_up {
                if SystemTime::now() >= not_before {
                    log::info!("node {}: system clock synced; going on", self.name());
                }
                return false;
            }
        }
    }

    fn rotation_deadline(&mut self, cluster: &ClusterConfig) -> Option<SystemTime> {
        // From the certificate alone: a clock that is behind now and jumps forward later
        // finds the same deadline, and rotates only if the certificate really is that old.
        match bootstrap::client_cert_state(cluster, SystemTime::now()) {
            CertState::Valid(info) | CertState::Expired(info) | CertState::NotYetValid(info) => {
                Some(bootstrap::rotation_deadline(&info, &mut self.rng))
            }
            _ => None,
        }
    }

    /// Requests a new certificate as the node itself; the new client and credentials.
    fn rotate(
        &mut self,
        client: &Client,
        cluster: &ClusterConfig,
        cfg: &AgentConfig,
    ) -> Option<(Client, ClusterConfig)> {
        let name = self.name().to_string();
        // Short wait: the lease must not lapse while the request is pending.
        let opts = BootstrapOptions {
            approval_timeout: self
                .opts
                .bootstrap
                .approval_timeout
                .min(Duration::from_secs(20)),
            ..self.opts.bootstrap
        };
        let shared = Arc::clone(&self.shared);
        let stop = move || shared.stopped();
        let result = bootstrap::request_certificate(client, cluster, cfg, &name, &opts, &stop)
            .and_then(|_| {
                let path = bootstrap::kubeconfig_path(cfg);
                Kubeconfig::load(&path, None).map_err(|e| NodeError::Kubeconfig {
                    path,
                    message: e.to_string(),
                })
            })
            .and_then(|cl| {
                Client::new(&cl, self.opts.client.clone())
                    .map(|c| (c, cl))
                    .map_err(NodeError::Api)
            });
        match result {
            Ok(r) => {
                log::info!("node {name}: client certificate rotated");
                Some(r)
            }
            Err(e) => {
                log::warn!("node {name}: certificate rotation: {e}; keeping the current one");
                None
            }
        }
    }

    fn compute_status(&mut self) -> NodeStatus {
        let host = (self.opts.host)();
        let detected = if self.opts.settings.node_ips.is_empty() {
            register::detect_node_ip()
        } else {
            None
        };
        register::compute_status(&self.opts.settings, &host, detected)
    }

    /// Registers the node, retrying with back-off; false if stopped or hopeless.
    fn register(&mut self, client: &Client) -> bool {
        loop {
            if self.shared.stopped() {
                return false;
            }
            let host = (self.opts.host)();
            let status = self.compute_status();
            let mut sent = status.clone();
            register::stamp_conditions(&mut sent, None, SystemTime::now());
            let node = register::build_node(&self.opts.settings, &host, sent.clone());
            match register::register(client, &node) {
                Ok(n) => {
                    let now = Instant::now();
                    self.backoff.on_success(now);
                    self.uid = n.metadata.uid.clone();
                    // Whatever the server kept of the registered status, report ours at once.
                    self.hb.force_report();
                    self.hb.compute_at(now);
                    self.last_sent = Some(sent);
                    self.status_synced = false;
                    let uid = self.uid.clone();
                    self.shared.update(|s| {
                        s.uid = Some(uid);
                        s.last_error = None;
                    });
                    return true;
                }
                Err(e) => {
                    let ra = match &e {
                        NodeError::Api(a) => a.retry_after,
                        _ => None,
                    };
                    let at = self.failed("registering the Node", &e, ra);
                    if self.shared.sleep_until(at) {
                        return false;
                    }
                }
            }
        }
    }

    /// Does whatever is due: renew the Lease, compute status and report it if needed.
    fn tick(&mut self, client: &Client) {
        let now = Instant::now();
        if self.hb.due(now).renew_lease {
            match self.renew_lease(client) {
                Ok(()) => {
                    let now = Instant::now();
                    self.hb.renewed(now);
                    self.backoff.on_success(now);
                    if self.link_down {
                        // Back. A fleet whose link returned at once renews nearly every Lease
                        // within the first few seconds (retries are at most 7 s apart), so:
                        // the next renewals are spread over half an interval, and the status,
                        // reported whatever changed, comes at a jittered point after this
                        // first round, over the next few status intervals. The Lease is what
                        // keeps the node alive (upstream reports an unchanged status only
                        // every 5 min); bunched with the Leases, statuses would double the peak.
                        self.link_down = false;
                        self.hb.renewed_after_outage(now, &mut self.rng);
                        self.hb.force_report();
                        let cadence = &self.opts.cadence;
                        let from = cadence.renew_interval.min(cadence.status_compute * 4);
                        let at =
                            now + random_between(&mut self.rng, from, cadence.status_compute * 4);
                        self.hb.compute_at(at);
                        log::info!("node {}: API reachable again", self.name());
                    }
                    self.shared.update(|s| {
                        s.lease_renewals += 1;
                        s.last_renewal = Some(now);
                        s.last_error = None;
                    });
                }
                Err(e) => self.lease_failed("renewing the Lease", e),
            }
        }
        let now = Instant::now();
        if !self.hb.due(now).compute_status {
            return;
        }
        let status = self.compute_status();
        let hash = register::status_hash(&status);
        // While the link is down nothing is sent: the first good lease write forces a report.
        if !self.hb.status_computed(now, hash) || self.link_down {
            return;
        }
        let mut sent = status;
        register::stamp_conditions(&mut sent, self.last_sent.as_ref(), SystemTime::now());
        let path = format!("/api/v1/nodes/{}/status", self.name());
        let diff = self.status_synced && self.diff_reports < FULL_STATUS_EVERY;
        let base = self.last_sent.as_ref().filter(|_| diff);
        let patch = register::status_patch(&sent, base);
        // The answer is not read: its metadata alone is asked for, not the whole Node.
        let sent_patch = serde_json::to_vec(&patch).unwrap_or_default();
        match client.patch_raw(&path, STRATEGIC_MERGE_PATCH, &sent_patch, ACCEPT_METADATA) {
            Ok(_) => {
                self.hb.status_reported(Instant::now(), hash);
                self.last_sent = Some(sent);
                self.status_synced = true;
                self.diff_reports = if diff { self.diff_reports + 1 } else { 0 };
                self.shared.update(|s| s.status_reports += 1);
            }
            // Probe the link with the next lease write rather than retrying the patch.
            Err(e) => self.lease_failed("reporting node status", e),
        }
    }

    /// One Lease write: merge-PATCH renewTime guarded by the cached resourceVersion; GET the
    /// Lease when unknown or on 409; create it when absent.
    fn renew_lease(&mut self, client: &Client) -> Result<(), ApiError> {
        let name = self.name().to_string();
        let path =
            format!("/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{name}");
        let duration = i32::try_from(self.opts.cadence.lease_duration.as_secs()).unwrap_or(40);
        for attempt in 0..2 {
            let lease = match self.lease.clone() {
                Some(l) => l,
                None => match client.get::<Lease>(&path) {
                    Ok(l) => l,
                    Err(e) if e.is_not_found() => {
                        let mut l = Lease::for_node(&name, duration, SystemTime::now());
                        if !self.uid.is_empty() {
                            l.metadata.owner_references = vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid: self.uid.clone(),
                                controller: None,
                                block_owner_deletion: None,
                            }];
                        }
                        let created: Lease = client.create(
                            &format!("/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases"),
                            &l,
                        )?;
                        self.lease = Some(created);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                },
            };
            let now = SystemTime::now();
            let patch = renewal_patch(&lease, &name, duration, now, !self.lease_fields_lean);
            match patch_lease(client, &path, &patch, renewed(lease, &name, duration, now)) {
                Ok(l) => {
                    // A renewal of renewTime alone, after a reset, leaves our entry lean.
                    self.lease_fields_lean =
                        patch["spec"].as_object().is_some_and(|s| s.len() == 1);
                    self.lease = Some(l);
                    return Ok(());
                }
                // Stale or gone: forget the cached copy and read it again (once).
                Err(e) if (e.is_conflict() || e.is_not_found()) && attempt == 0 => {
                    self.lease = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::new(
            "PATCH",
            &path,
            crate::api::ApiErrorKind::Config("lease kept conflicting".into()),
        ))
    }
}

/// Sends the renewal asking for the answer's metadata alone (the new resourceVersion is all
/// the next renewal needs; protobuf, about half the size of JSON) and returns the Lease as
/// the server now holds it: `renewed` (the cached Lease with the patch applied) under the
/// answer's metadata, or the whole Lease from a server that answered with it.
fn patch_lease(
    client: &Client,
    path: &str,
    patch: &serde_json::Value,
    renewed: Lease,
) -> Result<Lease, ApiError> {
    let decode_err = |message: String| {
        ApiError::new(
            "PATCH",
            path,
            crate::api::ApiErrorKind::Decode {
                what: "Lease".into(),
                message,
            },
        )
    };
    let body = serde_json::to_vec(patch).map_err(|e| decode_err(e.to_string()))?;
    let (ctype, bytes) = client.patch_raw(path, MERGE_PATCH, &body, ACCEPT_METADATA)?;
    let proto = ctype.starts_with(protobuf::MEDIA_TYPE);
    let (kind, metadata) = if proto {
        protobuf::decode_metadata(&bytes).map_err(|e| decode_err(e.to_string()))?
    } else {
        #[derive(serde::Deserialize)]
        struct KindAndMeta {
            #[serde(default)]
            kind: String,
            #[serde(default)]
            metadata: crate::k8s::meta::ObjectMeta,
        }
        let v: KindAndMeta =
            serde_json::from_slice(&bytes).map_err(|e| decode_err(e.to_string()))?;
        (v.kind, v.metadata)
    };
    match kind.as_str() {
        "PartialObjectMetadata" => Ok(Lease {
            metadata,
            ..renewed
        }),
        _ if proto => protobuf::decode_lease(&bytes).map_err(|e| decode_err(e.to_string())),
        _ => serde_json::from_slice(&bytes).map_err(|e| decode_err(e.to_string())),
    }
}

/// The cached Lease as a successful [`renewal_patch`] leaves it (before the server's metadata).
fn renewed(mut lease: Lease, name: &str, duration: i32, now: SystemTime) -> Lease {
    lease.spec.holder_identity = Some(name.to_string());
    lease.spec.lease_duration_seconds = Some(duration);
    lease.spec.renew_time = Some(format_micro_time(now));
    lease
}

/// Status reports sent as a diff before one carries the whole status again (5-minute
/// heartbeats: the whole status every 30 minutes).
const FULL_STATUS_EVERY: u32 = 5;

/// The Lease renewal as a merge patch: guarded by the cached resourceVersion (the same
/// conflict semantics as a PUT of the whole object), carrying only renewTime unless the holder
/// or duration differ from ours. With `reset_fields` it also resets managedFields (a list with
/// one empty entry, the API's documented reset), after which the server's answer carries one
/// small entry for renewTime instead of every field tinylet ever wrote; later renewals of
/// renewTime alone keep it that way without repeating the reset. This request and its answer
/// are most of an idle node's traffic: every byte here is sent 360 times an hour.
fn renewal_patch(
    lease: &Lease,
    name: &str,
    duration: i32,
    now: SystemTime,
    reset_fields: bool,
) -> serde_json::Value {
    let mut spec = serde_json::Map::new();
    if lease.spec.holder_identity.as_deref() != Some(name) {
        spec.insert("holderIdentity".into(), name.into());
    }
    if lease.spec.lease_duration_seconds != Some(duration) {
        spec.insert("leaseDurationSeconds".into(), duration.into());
    }
    spec.insert("renewTime".into(), format_micro_time(now).into());
    let mut meta = serde_json::Map::new();
    meta.insert(
        "resourceVersion".into(),
        lease.metadata.resource_version.clone().into(),
    );
    if reset_fields {
        meta.insert("managedFields".into(), serde_json::json!([{}]));
    }
    serde_json::json!({"metadata": meta, "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn renewal_patch_carries_renew_time_rv_and_the_managed_fields_reset_only() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_844_400);
        let mut lease = Lease::for_node("edge-1", 40, t0);
        lease.metadata.resource_version = "812".into();
        let p = renewal_patch(&lease, "edge-1", 40, t0 + Duration::from_secs(10), true);
        assert_eq!(
            p.to_string(),
            r#"{"metadata":{"managedFields":[{}],"resourceVersion":"812"},"spec":{"renewTime":"2026-11-28T05:40:10.000000Z"}}"#
        );
        let p = renewal_patch(&lease, "edge-1", 40, t0 + Duration::from_secs(20), false);
        assert_eq!(
            p.to_string(),
            r#"{"metadata":{"resourceVersion":"812"},"spec":{"renewTime":"2026-11-28T05:40:20.000000Z"}}"#
        );
        // Someone else's holder or another duration is put right in the same write.
        lease.spec.holder_identity = Some("other".into());
        lease.spec.lease_duration_seconds = None;
        let p = renewal_patch(&lease, "edge-1", 40, t0, false);
        assert_eq!(p["spec"]["holderIdentity"], "edge-1");
        assert_eq!(p["spec"]["leaseDurationSeconds"], 40);
    }
}
