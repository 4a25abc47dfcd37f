//! The kubelet API on `address:port` (10250): HTTPS only, every request authenticated
//! (client certificate, bearer token via TokenReview, anonymous only when enabled) and
//! authorized (SubjectAccessReview, or AlwaysAllow when configured) before it is routed.
//!
//! One concern per file: `conn` (TLS over smol), `http` (request heads, responses), `path`
//! (request targets), `authn`/`authz` (who and whether, sans-I/O), `cache`, `routes`, `logs`
//! (CRI log format and options, sans-I/O), `logstream` (log files), `stream` (exec, attach
//! and port-forward relayed to the runtime's streaming server), `view` (what the server
//! may read of the agent), `healthz` (the plain local health port), `stats` and `sampler`
//! (`/stats/summary`), `metrics` (`/metrics/resource`, `/metrics`), `tls` and `serving` (the
//! serving certificate: files, self-signed, or issued by the cluster and rotated). The server
//! never changes
//! pods: it reads the [`NodeView`] the agent
//! publishes and asks the API server about users with the node's own credentials.

pub mod authn;
pub mod authz;
pub mod cache;
pub mod conn;
pub mod healthz;
pub mod http;
pub mod logs;
pub mod logstream;
pub mod metrics;
pub mod path;
pub mod routes;
pub mod sampler;
pub mod serving;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod view;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use smol::future::FutureExt;
use smol::lock::Semaphore;
use smol::Async;

use crate::api::client::{Client, ClientConfig};
use crate::config::{AgentConfig, AuthorizationMode};
use crate::cri::{CriClient, CriOptions};
use crate::node::x509;
use authn::{Authn, AuthnPolicy, PeerCert, TokenCache, User};
use authz::DecisionCache;
use conn::TlsConn;
use http::HeadError;
pub use view::NodeView;

/// The head of a request must arrive within this (slow-loris bound).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection may sit idle this long before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections served at once (log followers included); more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Bound of each runtime call a stats request makes (a scrape must not hang on the runtime).
pub const STATS_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug)]
pub enum ServerError {
    /// Serving certificate, key or client CA.
    Tls(String),
    /// The address could not be bound.
    Listen(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Tls(m) => write!(f, "TLS: {m}"),
            ServerError::Listen(m) => write!(f, "listen: {m}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// What the server runs with, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub node_name: String,
    pub authn: AuthnPolicy,
    pub authorization: AuthorizationMode,
    pub token_ttl: Duration,
    pub allowed_ttl: Duration,
    pub denied_ttl: Duration,
    /// Where container logs are (`podLogsDir`).
    pub pod_logs_dir: PathBuf,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bound of the TLS handshake (a slow device signs slowly: it has its own bound).
    pub handshake_timeout: Duration,
    /// Bound of a request head once it began.
    pub header_timeout: Duration,
    /// Bound of a kept-alive connection's wait for its next request.
    pub idle_timeout: Duration,
    /// exec/attach/port-forward: the runtime to ask and the bound of streams.
    pub streams: stream::StreamSettings,
    /// Where resource stats come from (None: `/stats` and `/metrics/resource` answer 503).
    pub stats: Option<StatsSettings>,
}

/// The runtime endpoint and places the stats routes read.
#[derive(Debug, Clone)]
pub struct StatsSettings {
    /// The CRI endpoint (`containerRuntimeEndpoint`), asked only for stats.
    pub runtime_endpoint: String,
    pub sources: stats::Sources,
}

impl Settings {
    /// From the agent configuration; None when the port is 0 (no server).
    pub fn from_config(
        cfg: &AgentConfig,
        node_name: &str,
    ) -> Result<Option<Settings>, ServerError> {
        let api = &cfg.kubelet_api;
        if api.port == 0 {
            return Ok(None);
        }
        let ip: IpAddr = match &cfg.address {
            Some(a) => a
                .parse()
                .map_err(|_| ServerError::Listen(format!("address {a:?} is not an IP address")))?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        Ok(Some(Settings {
            bind: SocketAddr::new(ip, api.port),
            node_name: node_name.to_string(),
            authn: AuthnPolicy {
                token_webhook: api.token_webhook,
                anonymous: api.anonymous_auth,
            },
            authorization: api.authorization_mode,
            token_ttl: api.token_webhook_cache_ttl,
            allowed_ttl: api.authorized_ttl,
            denied_ttl: api.unauthorized_ttl,
            pod_logs_dir: cfg.pod_logs_dir.clone(),
            max_connections: MAX_CONNECTIONS,
            handshake_timeout: HEADER_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            streams: stream::StreamSettings {
                runtime_endpoint: Some(cfg.container_runtime_endpoint.clone()),
                timeout: cfg.runtime_request_timeout,
                ..stream::StreamSettings::default()
            },
            stats: Some(StatsSettings {
                runtime_endpoint: cfg.container_runtime_endpoint.clone(),
                sources: stats::Sources {
                    node_name: node_name.to_string(),
                    root_dir: cfg.root_dir.clone(),
                    pod_logs_dir: cfg.pod_logs_dir.clone(),
                    cgroup_fs: PathBuf::from("/sys/fs/cgroup"),
                    cgroup_root: cfg.cgroup_root.clone(),
                    proc_dir: PathBuf::from("/proc"),
                },
            }),
        }))
    }
}

struct State {
    settings: Settings,
    tls: Arc<tls::TlsSlot>,
    client_auth: tls::ClientAuth,
    view: NodeView,
    tokens: Mutex<TokenCache>,
    decisions: Mutex<DecisionCache>,
    /// The review client and the credentials generation it was built from.
    client: Mutex<Option<(u64, Client)>>,
    slots: Arc<Semaphore>,
    streams: stream::Streams,
    /// The runtime client for stats, with its sources.
    stats: Option<(CriClient, stats::Sources)>,
    sampler: Mutex<sampler::Sampler>,
    counters: metrics::Counters,
}

/// The running server; it stops when dropped.
pub struct Server {
    /// The address actually bound (with a serving certificate still to be issued: the
    /// address that will be bound).
    pub addr: SocketAddr,
    _task: smol::Task<()>,
    /// The TLS configuration new connections take.
    slot: Arc<tls::TlsSlot>,
    /// The serving certificate's upkeep (self-signed renewal or rotation), if any.
    _upkeep: Option<Upkeep>,
}

impl Server {
    /// A server without TLS (the plain healthz port).
    fn plain(addr: SocketAddr, task: smol::Task<()>) -> Server {
        Server {
            addr,
            _task: task,
            slot: Arc::default(),
            _upkeep: None,
        }
    }
}

/// What keeps the serving certificate current while the server runs (held to be dropped
/// with the server).
#[allow(dead_code)]
enum Upkeep {
    SelfSigned(smol::Task<()>),
    Rotation(serving::Handle),
}

/// How often a self-signed pair is checked against the wall clock.
const SELF_SIGNED_CHECK: Duration = Duration::from_secs(60);

/// Starts the kubelet API when configured (None for port 0). Certificate problems and a
/// taken port are errors naming the file or address.
pub fn start(
    cfg: &AgentConfig,
    node_name: &str,
    view: NodeView,
) -> Result<Option<Server>, ServerError> {
    let Some(settings) = Settings::from_config(cfg, node_name)? else {
        return Ok(None);
    };
    let api = &cfg.kubelet_api;
    if api.server_tls_bootstrap {
        return start_bootstrapped(cfg, settings, view).map(Some);
    }
    let files = api
        .tls_cert_file
        .as_deref()
        .zip(api.tls_private_key_file.as_deref());
    let dns = vec![node_name.to_string()];
    let cert_dir = cfg.cert_dir();
    let pair = tls::serving_pair(
        files,
        &cert_dir,
        node_name,
        &dns,
        &cfg.node_ips,
        SystemTime::now(),
    )?;
    let client_ca = api.client_ca_file.as_deref();
    let mut server = start_with(settings, &pair, client_ca, view)?;
    if files.is_none() {
        // A self-signed pair made while the clock was wrong is remade once it is right.
        let client = tls::client_tls(client_ca)?;
        let slot = server_slot(&server);
        let (name, ips) = (node_name.to_string(), cfg.node_ips.clone());
        let mut current = x509::first_certificate(&pair.cert_pem).ok();
        server._upkeep = Some(Upkeep::SelfSigned(smol::spawn(async move {
            loop {
                smol::Timer::after(SELF_SIGNED_CHECK).await;
                let now = SystemTime::now();
                if current
                    .as_ref()
                    .is_some_and(|i| tls::self_signed_usable(i, now))
                {
                    continue;
                }
                let made = tls::serving_pair(None, &cert_dir, &name, &dns, &ips, now)
                    .and_then(|p| Ok((tls::config_with(&p, &client)?, p)));
                match made {
                    Ok((cfg, p)) => {
                        log::info!(
                            "kubelet API: self-signed certificate remade for the current time"
                        );
                        current = x509::first_certificate(&p.cert_pem).ok();
                        if let Some(slot) = slot.upgrade() {
                            slot.set(Some(cfg));
                        }
                    }
                    Err(e) => log::warn!("kubelet API: remaking the self-signed certificate: {e}"),
                }
            }
        })));
    }
    Ok(Some(server))
}

/// The server's TLS slot, weakly (the upkeep must not keep a stopped server's state alive).
fn server_slot(server: &Server) -> std::sync::Weak<tls::TlsSlot> {
    Arc::downgrade(&server.slot)
}

/// Starts the server with a serving certificate from the cluster: the port is bound once the
/// first certificate is issued (or a current one is found under the cert dir), and rotation
/// swaps it for new connections.
fn start_bootstrapped(
    cfg: &AgentConfig,
    settings: Settings,
    view: NodeView,
) -> Result<Server, ServerError> {
    let api = &cfg.kubelet_api;
    let client = tls::client_tls(api.client_ca_file.as_deref())?;
    let slot = Arc::new(tls::TlsSlot::default());
    let rotation = serving::RotationSettings {
        cert_dir: cfg.cert_dir(),
        node_name: settings.node_name.clone(),
        node_ips: cfg.node_ips.clone(),
        client: client.clone(),
        opts: crate::node::bootstrap::BootstrapOptions::default(),
    };
    let (first_tx, first_rx) = smol::channel::bounded(1);
    let handle =
        serving::spawn(rotation, view.clone(), slot.clone(), first_tx).map_err(ServerError::Tls)?;
    let bind = settings.bind;
    let state = new_state(settings, slot.clone(), client.auth, view)?;
    log::info!(
        "kubelet API on https://{bind} once the serving certificate is issued (CSR to kubernetes.io/kubelet-serving)"
    );
    let task = smol::spawn(async move {
        if first_rx.recv().await.is_err() {
            return;
        }
        let listener = match TcpListener::bind(bind).and_then(Async::new) {
            Ok(l) => l,
            Err(e) => {
                log::error!("kubelet API not served: listen {bind}: {e}");
                return;
            }
        };
        log::info!("kubelet API on https://{bind}: serving certificate issued");
        accept_loop(listener, state).await;
    });
    Ok(Server {
        addr: bind,
        _task: task,
        _upkeep: Some(Upkeep::Rotation(handle)),
        slot,
    })
}

/// Starts the plain `/healthz` when configured (None for `healthzPort: 0`).
pub fn start_healthz(cfg: &AgentConfig) -> Result<Option<Server>, ServerError> {
    let api = &cfg.kubelet_api;
    if api.healthz_port == 0 {
        return Ok(None);
    }
    healthz::start(SocketAddr::new(api.healthz_bind_address, api.healthz_port)).map(Some)
}

/// Starts the server with explicit settings and serving pair.
pub fn start_with(
    settings: Settings,
    pair: &tls::ServingPair,
    client_ca: Option<&std::path::Path>,
    view: NodeView,
) -> Result<Server, ServerError> {
    let (tls_cfg, client_auth) = tls::server_config(pair, client_ca)?;
    let listener = TcpListener::bind(settings.bind)
        .map_err(|e| ServerError::Listen(format!("{}: {e}", settings.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServerError::Listen(e.to_string()))?;
    let listener = Async::new(listener).map_err(|e| ServerError::Listen(e.to_string()))?;
    log::info!(
        "kubelet API on https://{addr} (certificate {}, client CA {}, anonymous {}, authorization {:?})",
        pair.source,
        client_ca.map_or("none".to_string(), |p| p.display().to_string()),
        if settings.authn.anonymous {
            "allowed"
        } else {
            "refused"
        },
        settings.authorization
    );
    let slot = Arc::new(tls::TlsSlot::with(tls_cfg));
    let state = new_state(settings, slot.clone(), client_auth, view)?;
    let task = smol::spawn(accept_loop(listener, state));
    Ok(Server {
        addr,
        _task: task,
        slot,
        _upkeep: None,
    })
}

/// The shared state of a server.
fn new_state(
    settings: Settings,
    tls: Arc<tls::TlsSlot>,
    client_auth: tls::ClientAuth,
    view: NodeView,
) -> Result<Arc<State>, ServerError> {
    let stats = match &settings.stats {
        Some(s) => {
            let opts = CriOptions {
                call_timeout: STATS_CALL_TIMEOUT,
                ..CriOptions::default()
            };
            let cri = CriClient::new(&s.runtime_endpoint, opts)
                .map_err(|e| ServerError::Listen(format!("stats runtime client: {e}")))?;
            Some((cri, s.sources.clone()))
        }
        None => None,
    };
    Ok(Arc::new(State {
        tokens: Mutex::new(TokenCache::new(settings.token_ttl)),
        decisions: Mutex::new(DecisionCache::new(
            settings.allowed_ttl,
            settings.denied_ttl,
        )),
        slots: Arc::new(Semaphore::new(settings.max_connections)),
        streams: stream::Streams::new(&settings.streams),
        settings,
        tls,
        client_auth,
        view,
        client: Mutex::new(None),
        stats,
        sampler: Mutex::new(sampler::Sampler::default()),
        counters: metrics::Counters::default(),
    }))
}

/// Accepts connections, each served on its own task within the connection bound.
async fn accept_loop(listener: Async<TcpListener>, state: Arc<State>) {
    {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    log::warn!("kubelet API: accept: {e}");
                    smol::Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = state.slots.try_acquire_arc() else {
                log::warn!(
                    "kubelet API: {peer}: over {} connections, closed",
                    state.settings.max_connections
                );
                continue;
            };
            let state = state.clone();
            smol::spawn(async move {
                serve(&state, tcp).await;
                drop(slot);
            })
            .detach();
        }
    }
}

async fn serve(state: &State, tcp: Async<std::net::TcpStream>) {
    // No certificate to serve (an issued one expired): the connection is closed.
    let Some(cfg) = state.tls.get() else {
        return;
    };
    let Ok(mut conn) = TlsConn::new(tcp, cfg) else {
        return;
    };
    let handshake = async { conn.handshake().await.is_ok() };
    let timeout = async {
        smol::Timer::after(state.settings.handshake_timeout).await;
        false
    };
    if !handshake.or(timeout).await {
        return;
    }
    let peer = state.client_auth.check(conn.peer_certificates());
    let mut buf = Vec::new();
    loop {
        let (idle, header) = (state.settings.idle_timeout, state.settings.header_timeout);
        let head = match http::read_head(&mut conn, &mut buf, idle, header).await {
            Ok(h) => h,
            Err(HeadError::Closed) => break,
            Err(e) => {
                let (code, msg) = match e {
                    HeadError::TooLarge => (431, "request header fields too large".to_string()),
                    HeadError::Timeout => (408, "request header read timeout".to_string()),
                    HeadError::Malformed(m) => (400, format!("malformed request: {m}")),
                    HeadError::Closed => break,
                };
                let _ = conn.write_all(&http::text(code, &msg, false)).await;
                break;
            }
        };
        let answer = handle(state, &mut conn, &head, &peer, &buf).await;
        if let Some(code) = conn.take_status() {
            state.counters.response(code);
        }
        match answer {
            Ok(true) => continue,
            _ => break,
        }
    }
    conn.close().await;
}

/// One request: target check, authentication, authorization, route.
async fn handle(
    state: &State,
    conn: &mut TlsConn,
    head: &http::RequestHead,
    peer: &PeerCert,
    early: &[u8],
) -> std::io::Result<bool> {
    // A body is never read: answer, then close rather than misread it as the next request.
    let keep = head.keep_alive && !head.has_body();
    let target = match path::parse_target(&head.target) {
        Ok(t) => t,
        Err(e) => {
            conn.write_all(&http::text(400, &e.to_string(), false))
                .await?;
            return Ok(false);
        }
    };
    let user = match authenticate(state, peer, head.header("authorization")).await {
        Ok(u) => u,
        Err(why) => {
            log::debug!(
                "kubelet API: {} {}: unauthorized: {why}",
                head.method,
                head.target
            );
            conn.write_all(&http::text(401, "Unauthorized", keep))
                .await?;
            return Ok(keep);
        }
    };
    let clean = format!("/{}", target.segments.join("/"));
    let mut attrs = authz::attributes(&head.method, &clean, &state.settings.node_name);
    let stream_req = stream::parse(&target);
    if stream_req.is_some() {
        // Exec, attach and port-forward create a process or a tunnel whatever the method. The
        // kubelet maps a WebSocket's GET to verb get, so `get nodes/proxy` (granted to
        // monitoring) can exec; here the verb is create for these routes, as the API server
        // does for pods/exec since AuthorizePodWebsocketUpgradeCreatePermission and as
        // proposed for the kubelet (kubernetes/kubernetes#136550).
        attrs.verb = "create".to_string();
    }
    match authorize(state, &user, &attrs).await {
        Ok(true) => {}
        Ok(false) => {
            let msg = authz::forbidden_message(&user, &attrs);
            log::debug!("kubelet API: {msg}");
            conn.write_all(&http::text(403, &msg, keep)).await?;
            return Ok(keep);
        }
        Err(why) => {
            log::warn!("kubelet API: authorization of {}: {why}", user.name);
            let msg = format!(
                "Authorization error (user={}, verb={}, resource=nodes, subresource(s)=[{}])",
                user.name, attrs.verb, attrs.subresource
            );
            conn.write_all(&http::text(500, &msg, keep)).await?;
            return Ok(keep);
        }
    }
    if let Some(req) = stream_req {
        stream::serve(&state.streams, &state.view, conn, head, req, early).await?;
        return Ok(false);
    }
    if head.method != "GET" {
        conn.write_all(&http::text(405, "Method Not Allowed", false))
            .await?;
        return Ok(false);
    }
    let segs: Vec<&str> = target.segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["stats", "summary"] => resource_stats(state, conn, true, keep).await,
        ["metrics", "resource"] => resource_stats(state, conn, false, keep).await,
        ["metrics"] => {
            let body = metrics::own(&state.view, &state.counters);
            conn.write_all(&http::response(
                200,
                metrics::CONTENT_TYPE,
                body.as_bytes(),
                keep,
            ))
            .await?;
            Ok(keep)
        }
        _ => {
            routes::route(
                conn,
                &target,
                &state.view,
                &state.settings.pod_logs_dir,
                keep,
            )
            .await
        }
    }
}

/// `/stats/summary` (JSON) or `/metrics/resource` (Prometheus text) from one collection.
async fn resource_stats(
    state: &State,
    conn: &mut TlsConn,
    summary_json: bool,
    keep: bool,
) -> std::io::Result<bool> {
    let Some((cri, sources)) = &state.stats else {
        conn.write_all(&http::text(503, "stats are not available", keep))
            .await?;
        return Ok(keep);
    };
    let t0 = Instant::now();
    let (readings, problems) = stats::collect(sources, &state.view, cri).await;
    let failed = !problems.0.is_empty();
    state.counters.collected(t0.elapsed(), failed);
    if failed {
        log::debug!("kubelet API: stats: {}", problems.0.join("; "));
    }
    let summary = {
        let mut sampler = state.sampler.lock().unwrap_or_else(|p| p.into_inner());
        stats::build(&readings, &mut sampler)
    };
    let (ctype, body) = if summary_json {
        let body = serde_json::to_vec(&summary).unwrap_or_default();
        ("application/json", body)
    } else {
        let body = metrics::resource(&summary, failed).into_bytes();
        (metrics::CONTENT_TYPE, body)
    };
    conn.write_all(&http::response(200, ctype, &body, keep))
        .await?;
    Ok(keep)
}

/// The API client for reviews, built from the node's credentials once they exist.
fn client(state: &State) -> Result<Client, String> {
    let mut g = state.client.lock().unwrap_or_else(|p| p.into_inner());
    let generation = state.view.cluster_generation();
    if let Some((built, c)) = g.as_ref() {
        if *built == generation {
            return Ok(c.clone());
        }
    }
    let (generation, cluster) = state
        .view
        .cluster()
        .ok_or("the node has no API credentials yet")?;
    let c = Client::new(&cluster, ClientConfig::default()).map_err(|e| e.to_string())?;
    *g = Some((generation, c.clone()));
    Ok(c)
}

async fn review(state: &State, path: &'static str, body: Value) -> Result<Value, String> {
    let c = client(state)?;
    smol::unblock(move || c.create::<Value, Value>(path, &body))
        .await
        .map_err(|e| e.to_string())
}

async fn authenticate(
    state: &State,
    peer: &PeerCert,
    authorization: Option<&str>,
) -> Result<User, String> {
    let token = match authn::decide(peer, authorization, state.settings.authn) {
        Authn::User(u) => return Ok(u),
        Authn::Unauthorized(why) => return Err(why),
        Authn::ReviewToken(t) => t,
    };
    let now = Instant::now();
    if let Some(answer) = state
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&token, now)
    {
        return answer;
    }
    let answer = review(
        state,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        authn::token_review_body(&token),
    )
    .await?;
    let user = authn::token_review_user(&answer);
    state.tokens.lock().unwrap_or_else(|p| p.into_inner()).put(
        &token,
        user.clone(),
        Instant::now(),
    );
    user
}

async fn authorize(state: &State, user: &User, attrs: &authz::Attributes) -> Result<bool, String> {
    if state.settings.authorization == AuthorizationMode::AlwaysAllow {
        return Ok(true);
    }
    let now = Instant::now();
    if let Some(d) = state
        .decisions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(user, attrs, now)
    {
        return Ok(d);
    }
    let answer = review(
        state,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        authz::sar_body(user, attrs),
    )
    .await?;
    let allowed = authz::sar_allowed(&answer);
    state
        .decisions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(user, attrs, allowed, Instant::now());
    Ok(allowed)
}

#[cfg(test)]
mod tests;
