//! HTTPS requests to the API server: TLS verified against the cluster CA only, client
//! certificate or bearer token auth, bounded time (connect/read timeouts well under the lease
//! duration) and bounded memory (size-limited bodies, line-limited watch streams).
//!
//! Owns the wire exchange and turning every failure into an [`ApiError`] that says whether
//! to retry and when. It does not retry by itself: the caller's back-off decides.
//! Single-object requests travel over one shared HTTP/2 connection (`h2link`) when the
//! server offers h2, else over HTTP/1.1 like lists and watches; either way the headers and
//! the error mapping are decided here.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, DefaultConnector, NextTimeout, ShutdownHandle, Transport,
};

use super::h2link::{self, Endpoint, Link, LinkConfig, LinkError, LinkRequest};
use super::kubeconfig::{Bearer, ClusterConfig};
use super::linkhealth::{LinkConnection, LinkHealth};
use super::watch::{EventDecoder, WatchDecodeError, DEFAULT_MAX_LINE};
use crate::k8s::coordination::parse_time;
use crate::k8s::list::{List, WatchEvent};
use crate::k8s::status::{DeleteOptions, Status};

/// Content type of a JSON merge patch (RFC 7386).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// Content type of a strategic merge patch (lists merged by their keys).
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// Accept header for writes whose answer is only needed for its metadata (the new
/// resourceVersion): the metadata alone (`PartialObjectMetadata`), protobuf first; the whole
/// object, protobuf or JSON, from a server that cannot transform. Errors come back as a
/// Status in the first plain range (protobuf). A Node's status answer shrinks from the whole
/// Node to its metadata this way.
pub const ACCEPT_METADATA: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/vnd.kubernetes.protobuf, application/json";

/// Largest token file read (projected tokens are ~1 KiB).
const MAX_TOKEN_FILE: u64 = 64 << 10;
/// Error bodies are read only this far: enough for any Status, no more.
const MAX_ERROR_BODY: u64 = 256 << 10;

/// Most pages one [`Client::list`] follows: 5 million objects at 500 a page, and a bound
/// on a server that never stops answering with another `continue`.
const MAX_LIST_PAGES: usize = 10_000;

/// Timeouts and limits of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// Waiting for response headers, and for the whole body of a non-watch request.
    pub read_timeout: Duration,
    /// A watch with no byte received for this long is considered dead (flaky links often
    /// drop silently, without a reset).
    pub watch_idle_timeout: Duration,
    /// Largest response body accepted (non-watch).
    pub max_body: u64,
    /// Largest single-object answer accepted (get, create, patch, ...). etcd refuses objects
    /// over 1.5 MiB by default, so anything far beyond is hostile, and the agent's memory
    /// stays bounded by these limits, not by what a server sends.
    pub max_object: u64,
    /// Largest single watch event line.
    pub max_watch_line: usize,
    /// Sent as User-Agent, so server logs tell the agent apart.
    pub user_agent: String,
    /// Carry single-object requests (get, create, replace, patch, delete) over one HTTP/2
    /// connection when the server offers `h2`; lists and watches always use HTTP/1.1.
    pub http2: bool,
    /// The link-health signal this client reports to and reads (None: the one shared by every
    /// client of this process talking to the same server).
    pub link_health: Option<LinkHealth>,
    /// PING interval on the HTTP/2 connection (zero: no PINGs): with `ping_timeout`, a
    /// connection gone silent is noticed within their sum even when nothing else is sent.
    pub ping_interval: Duration,
    /// How long a PING may go unanswered before the connection is given up.
    pub ping_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
            watch_idle_timeout: Duration::from_secs(180),
            max_body: 16 << 20,
            max_object: 4 << 20,
            max_watch_line: DEFAULT_MAX_LINE,
            user_agent: concat!("tinylet/", env!("CARGO_PKG_VERSION")).to_string(),
            http2: true,
            link_health: None,
            // Dead within 25 s at worst (a Lease write every 10 s would also notice, at its
            // 15 s read timeout); the PINGs cost about 40 bytes each way per interval.
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// What went wrong with an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// Connect, TLS, timeout or a broken stream: retryable after back-off.
    Transport(String),
    /// The server answered with an error status (and usually a Status body).
    Status {
        /// HTTP status code.
        code: u16,
        /// Status.reason, or the HTTP reason phrase without a Status body.
        reason: String,
        /// Status.message, or the start of a non-Status body.
        message: String,
    },
    /// The response body exceeded the limit.
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body is not the expected object.
    Decode {
        /// The expected object, e.g. `Node` or `watch event of Pod`.
        what: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The client cannot even be set up or the request built (bad PEM, unusable token).
    Config(String),
}

/// An API request failure with the operation and object it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP method (or WATCH / SETUP).
    pub method: String,
    /// Request path, naming the object.
    pub path: String,
    /// What went wrong.
    pub kind: ApiErrorKind,
    /// From `Retry-After` on 429/5xx answers: never retry sooner.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error for `method path` of the given kind, with no Retry-After.
    pub fn new(method: &str, path: &str, kind: ApiErrorKind) -> Self {
        ApiError {
            method: method.to_string(),
            path: path.to_string(),
            kind,
            retry_after: None,
        }
    }

    /// The HTTP status code, for `Status` errors.
    pub fn code(&self) -> Option<u16> {
        match self.kind {
            ApiErrorKind::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// 410 Gone: the resourceVersion is too old; re-list.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 Conflict (stale resourceVersion on update, or already exists on create).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    /// True when the same request may succeed later without changes.
    pub fn is_retryable(&self) -> bool {
        match &self.kind {
            ApiErrorKind::Transport(_) => true,
            ApiErrorKind::Status { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.path)?;
        match &self.kind {
            ApiErrorKind::Transport(m) => write!(f, "transport error (will retry): {m}")?,
            ApiErrorKind::Status {
                code,
                reason,
                message,
            } => write!(f, "server answered {code} {reason}: {message}")?,
            ApiErrorKind::TooLarge { limit } => {
                write!(f, "response larger than the limit of {limit} bytes")?
            }
            ApiErrorKind::Decode { what, message } => write!(f, "decoding {what}: {message}")?,
            ApiErrorKind::Config(m) => write!(f, "{m}")?,
        }
        if let Some(ra) = self.retry_after {
            write!(f, " (retry after {} s)", ra.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Selectors and paging for list and watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// e.g. `spec.nodeName=NAME`.
    pub field_selector: Option<String>,
    /// e.g. `app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// Page size of [`Client::list`] (`limit`); it follows `continue` to the end.
    pub limit: Option<u32>,
}

impl ListParams {
    /// Only objects whose field matches, e.g. `ListParams::fields("spec.nodeName=n1")`.
    pub fn fields(selector: &str) -> Self {
        ListParams {
            field_selector: Some(selector.to_string()),
            ..Default::default()
        }
    }

    /// The same params with a label selector.
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(f) = &self.field_selector {
            q.push(("fieldSelector", f.clone()));
        }
        if let Some(l) = &self.label_selector {
            q.push(("labelSelector", l.clone()));
        }
        q
    }
}

/// Where the bearer token comes from; files are re-read when they change (rotation).
enum TokenSource {
    Static(String),
    File {
        path: PathBuf,
        cache: Mutex<Option<(SystemTime, u64, String)>>,
    },
}

impl TokenSource {
    fn token(&self) -> Result<String, String> {
        match self {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::File { path, cache } => {
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                let stamp = std::fs::metadata(path)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                if let (Some((mtime, len)), Some((cm, cl, tok))) = (stamp, cache.as_ref()) {
                    if mtime == *cm && len == *cl {
                        return Ok(tok.clone());
                    }
                }
                match read_token_file(path) {
                    Ok(tok) => {
                        if let Some((mtime, len)) = stamp {
                            *cache = Some((mtime, len, tok.clone()));
                        }
                        Ok(tok)
                    }
                    // Mid-rotation the file may briefly be missing: keep the last good token.
                    Err(e) => match cache.as_ref() {
                        Some((_, _, tok)) => {
                            log::warn!(
                                "token file {}: {e}; using the previous token",
                                path.display()
                            );
                            Ok(tok.clone())
                        }
                        None => Err(format!("token file {}: {e}", path.display())),
                    },
                }
            }
        }
    }
}

fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_end(&mut buf))
        .map_err(|e| e.to_string())?;
    let s = String::from_utf8(buf).map_err(|_| "not UTF-8".to_string())?;
    let t = s.trim();
    if t.is_empty() {
        return Err("empty".into());
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("token has characters not allowed in a header".into());
    }
    Ok(t.to_string())
}

/// The default connector, with every socket it opens also registered with the link's health
/// (see [`LinkHealth::silent`]).
#[derive(Debug)]
struct TrackingConnector {
    inner: DefaultConnector,
    health: LinkHealth,
}

impl Connector<()> for TrackingConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let register = details.register_shutdown.clone();
        let health = self.health.clone();
        let tracked = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: Arc::new(move |handle: Weak<dyn ShutdownHandle>| {
                health.track(Box::new(TrackedSocket(handle.clone())));
                register(handle)
            }),
        };
        self.inner.connect(&tracked, chained)
    }
}

/// A socket of the HTTP/1.1 agent, held weakly: it closes as usual when its request ends.
struct TrackedSocket(Weak<dyn ShutdownHandle>);

impl LinkConnection for TrackedSocket {
    fn is_open(&self) -> bool {
        self.0.strong_count() > 0
    }

    fn interrupt(&self) {
        if let Some(h) = self.0.upgrade() {
            h.shutdown();
        }
    }
}

/// Resolves the `tls-server-name` host to the real server address, so the certificate is
/// verified (and SNI sent) for that name while connecting where the kubeconfig says.
#[derive(Debug)]
struct PinnedResolver {
    name: String,
    real: ureq::http::Uri,
    inner: DefaultResolver,
}

impl Resolver for PinnedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if uri
            .host()
            .is_some_and(|h| h.eq_ignore_ascii_case(&self.name))
        {
            self.inner.resolve(&self.real, config, timeout)
        } else {
            self.inner.resolve(uri, config, timeout)
        }
    }
}

struct Inner {
    agent: ureq::Agent,
    /// Scheme, authority (possibly the tls-server-name) and path prefix, no trailing slash.
    base: String,
    token: Option<TokenSource>,
    config: ClientConfig,
    /// The HTTP/2 link for single-object requests (None: off, or not an https server).
    link: Option<Link>,
    /// Whether the server answers, shared with the other clients of the same link.
    health: LinkHealth,
}

/// A blocking API client; cheap to clone and share between threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish()
    }
}

fn setup_err(m: String) -> ApiError {
    ApiError::new("SETUP", "API client", ApiErrorKind::Config(m))
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<ureq::tls::Certificate<'static>>, ApiError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(setup_err(format!("{what}: invalid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(setup_err(format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<ureq::tls::PrivateKey<'static>, ApiError> {
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(e) => return Err(setup_err(format!("client key: invalid PEM: {e}"))),
        }
    }
    Err(setup_err("client key: no PEM private key found".into()))
}

/// The rustls configuration of the HTTP/2 link, from the same roots and client certificate
/// the HTTP/1.1 agent uses: only the cluster CA is trusted, and ALPN offers h2 then HTTP/1.1.
fn link_tls_config(
    roots: &[ureq::tls::Certificate<'static>],
    client: Option<(&[ureq::tls::Certificate<'static>], &[u8])>,
) -> Result<rustls::ClientConfig, ApiError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store
            .add(CertificateDer::from(c.der().to_vec()))
            .map_err(|e| setup_err(format!("cluster CA: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_err(format!("TLS setup: {e}")))?
        .with_root_certificates(store);
    let mut cfg = match client {
        Some((chain, key_pem)) => {
            let chain = chain
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()))
                .collect();
            // The same PEM the HTTP/1.1 agent's key came from, read as rustls wants it.
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| setup_err(format!("client key: invalid PEM: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| setup_err(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = h2link::alpn_protocols();
    Ok(cfg)
}

/// Where the link connects and which name it verifies: the URL's host and port, and the
/// `tls-server-name` when the kubeconfig gives one (as the HTTP/1.1 agent does).
fn link_endpoint(
    real: &ureq::http::Uri,
    tls_server_name: Option<&str>,
) -> Result<Endpoint, ApiError> {
    let host = real
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| setup_err(format!("server URL {real} has no host")))?;
    let port = real.port_u16().unwrap_or(443);
    let name = tls_server_name
        .unwrap_or(host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server_name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|e| setup_err(format!("server name for {real}: {e}")))?;
    Ok(Endpoint {
        connect_to: format!("{host}:{port}"),
        server_name,
    })
}

impl Client {
    /// A client for the cluster described by a resolved kubeconfig.
    pub fn new(cluster: &ClusterConfig, config: ClientConfig) -> Result<Self, ApiError> {
        let roots = parse_certs(&cluster.ca_pem, "cluster CA")?;
        let client_parts = match &cluster.auth.client_cert {
            Some((cert, key)) => Some((
                parse_certs(cert, "client certificate")?,
                parse_key(key)?,
                key.as_slice(),
            )),
            None => None,
        };
        let link_tls = if config.http2 {
            Some(link_tls_config(
                &roots,
                client_parts
                    .as_ref()
                    .map(|(c, _, pem)| (c.as_slice(), *pem)),
            )?)
        } else {
            None
        };
        let client_cert = client_parts.map(|(c, k, _)| ClientCert::new_with_certs(&c, k));
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(client_cert)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent_config = ureq::Agent::config_builder()
            .tls_config(tls)
            .https_only(true)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_recv_body(Some(config.read_timeout))
            .user_agent(config.user_agent.as_str())
            .accept("application/json")
            .build();

        let real: ureq::http::Uri = cluster
            .server
            .parse()
            .map_err(|e| setup_err(format!("server URL {:?}: {e}", cluster.server)))?;
        let base = match &cluster.tls_server_name {
            Some(name) => {
                let authority = real.authority().ok_or_else(|| {
                    setup_err(format!("server URL {:?} has no host", cluster.server))
                })?;
                let port = authority.port_u16().unwrap_or(443);
                let path = real.path().trim_end_matches('/');
                format!("https://{name}:{port}{path}")
            }
            None => cluster.server.trim_end_matches('/').to_string(),
        };
        let health = config
            .link_health
            .clone()
            .unwrap_or_else(|| LinkHealth::for_server(&base));
        // Every HTTP/1.1 connection (a watch above all) is tracked by the link's health, so
        // that a link found silently dead by the HTTP/2 PINGs breaks off its blocked reads.
        let connector = TrackingConnector {
            inner: DefaultConnector::new(),
            health: health.clone(),
        };
        let agent = match &cluster.tls_server_name {
            Some(name) => ureq::Agent::with_parts(
                agent_config,
                connector,
                PinnedResolver {
                    name: name.clone(),
                    real: real.clone(),
                    inner: DefaultResolver::default(),
                },
            ),
            None => ureq::Agent::with_parts(agent_config, connector, DefaultResolver::default()),
        };
        let link = match link_tls {
            Some(tls) if real.scheme_str() == Some("https") => Some(
                Link::new(
                    link_endpoint(&real, cluster.tls_server_name.as_deref())?,
                    Arc::new(tls),
                    LinkConfig {
                        connect_timeout: config.connect_timeout,
                        request_timeout: config.read_timeout,
                        max_body: config.max_object.min(config.max_body),
                        max_error_body: MAX_ERROR_BODY,
                        ping_interval: config.ping_interval,
                        ping_timeout: config.ping_timeout,
                    },
                )
                .with_health(health.clone()),
            ),
            _ => None,
        };
        let token = match &cluster.auth.bearer {
            Some(Bearer::Static(t)) => Some(TokenSource::Static(t.clone())),
            Some(Bearer::File(p)) => Some(TokenSource::File {
                path: p.clone(),
                cache: Mutex::new(None),
            }),
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                agent,
                base,
                token,
                config,
                link,
                health,
            }),
        })
    }

    /// The link-health signal shared with the other clients of this server.
    pub fn link_health(&self) -> &LinkHealth {
        &self.inner.health
    }

    /// Tells the link-health signal what `result` says about the link: any answer from the
    /// server means it carries traffic, a transport error that it may not.
    fn note_link<T>(&self, result: &Result<T, ApiError>) {
        let now = Instant::now();
        match result {
            Ok(_) => {
                self.inner.health.success(now);
            }
            Err(e) => match e.kind {
                ApiErrorKind::Transport(_) => self.inner.health.failure(now),
                ApiErrorKind::Config(_) => {}
                _ => {
                    self.inner.health.success(now);
                }
            },
        }
    }

    /// The limits and timeouts in force.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// GET one object.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.request_json("GET", path, &[], None, Via::Link)
    }

    /// GET a collection: in pages of `params.limit` objects when it is set, following the
    /// server's `continue` tokens to the end, so no answer holds more than one page. All pages
    /// are one snapshot; the list carries the first page's resourceVersion. A token that
    /// expires before the end (410) starts the list over in one request, as an expired
    /// snapshot cannot be resumed. The pages together are held to `max_body`, as one answer
    /// would be: a server cannot grow the list without end a page at a time.
    pub fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &ListParams,
    ) -> Result<List<T>, ApiError> {
        let Some(limit) = params.limit else {
            return self.request_json("GET", path, &params.pairs(), None, Via::Http1);
        };
        let mut list: List<T> = List::default();
        let mut token = String::new();
        let mut bytes = 0u64;
        for page in 0..MAX_LIST_PAGES {
            let mut q = params.pairs();
            q.push(("limit", limit.to_string()));
            if !token.is_empty() {
                q.push(("continue", token.clone()));
            }
            let body = match self.request_bytes("GET", path, &q, None, None, Via::Http1) {
                Ok((_, body)) => body,
                Err(e) if page > 0 && e.is_gone() => {
                    log::info!("list {path}: page {page} expired ({e}); listing it whole");
                    return self.request_json("GET", path, &params.pairs(), None, Via::Http1);
                }
                Err(e) => return Err(e),
            };
            bytes = bytes.saturating_add(body.len() as u64);
            let max = self.inner.config.max_body;
            if bytes > max {
                return Err(ApiError::new(
                    "GET",
                    path,
                    ApiErrorKind::TooLarge { limit: max },
                ));
            }
            let mut got: List<T> = decode_json("GET", path, &body)?;
            drop(body);
            if page == 0 {
                list.metadata.resource_version = std::mem::take(&mut got.metadata.resource_version);
                list.items = got.items;
            } else {
                list.items.append(&mut got.items);
            }
            let next = got.metadata.continue_token;
            if next.is_empty() {
                return Ok(list);
            }
            if next == token {
                return Err(ApiError::new(
                    "GET",
                    path,
                    ApiErrorKind::Decode {
                        what: "list".into(),
                        message: format!("page {page} repeats its continue token"),
                    },
                ));
            }
            token = next;
        }
        Err(ApiError::new(
            "GET",
            path,
            ApiErrorKind::Decode {
                what: "list".into(),
                message: format!("more than {MAX_LIST_PAGES} pages"),
            },
        ))
    }

    /// POST a new object.
    pub fn create<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let b = encode("POST", path, body)?;
        self.request_json("POST", path, &[], Some(("application/json", b)), Via::Link)
    }

    /// PUT (replace) an object; the server checks `metadata.resourceVersion` (409 if stale).
    pub fn replace<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let b = encode("PUT", path, body)?;
        self.request_json("PUT", path, &[], Some(("application/json", b)), Via::Link)
    }

    /// PATCH with a JSON merge patch (RFC 7386).
    pub fn patch_merge<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        patch: &B,
    ) -> Result<T, ApiError> {
        let b = encode("PATCH", path, patch)?;
        self.request_json("PATCH", path, &[], Some((MERGE_PATCH, b)), Via::Link)
    }

    /// PATCH with a patch of `patch_type` (e.g. [`MERGE_PATCH`]) given as bytes, asking for the
    /// answer in `accept` (e.g. [`ACCEPT_METADATA`]); returns the answer's content type and body
    /// undecoded. Uses the HTTP/2 link when there is one, HTTP/1.1 otherwise.
    pub fn patch_raw(
        &self,
        path: &str,
        patch_type: &'static str,
        patch: &[u8],
        accept: &str,
    ) -> Result<(String, Vec<u8>), ApiError> {
        let (ctype, body) = self.request_bytes(
            "PATCH",
            path,
            &[],
            Some((patch_type, patch.to_vec())),
            Some(accept),
            Via::Link,
        )?;
        Ok((ctype.unwrap_or_default(), body))
    }

    /// PATCH with a strategic merge patch (lists merged by key, e.g. conditions by type).
    pub fn patch_strategic<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        patch: &B,
    ) -> Result<T, ApiError> {
        let b = encode("PATCH", path, patch)?;
        self.request_json(
            "PATCH",
            path,
            &[],
            Some((STRATEGIC_MERGE_PATCH, b)),
            Via::Link,
        )
    }

    /// DELETE with options in the body; the answer is the object or a Status.
    pub fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        options: &DeleteOptions,
    ) -> Result<T, ApiError> {
        let b = encode("DELETE", path, options)?;
        self.request_json(
            "DELETE",
            path,
            &[],
            Some(("application/json", b)),
            Via::Link,
        )
    }

    /// Whether single-object requests currently go over HTTP/2 (false when disabled, or once
    /// the server was seen not to offer h2).
    pub fn uses_http2(&self) -> bool {
        self.inner.link.as_ref().is_some_and(Link::is_available)
    }

    /// Opens a watch from `resource_version`; the server ends it after `timeout_seconds`.
    pub fn watch<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &ListParams,
        resource_version: &str,
        timeout_seconds: u64,
    ) -> Result<WatchStream<T>, ApiError> {
        let mut q = params.pairs();
        q.push(("watch", "1".into()));
        q.push(("allowWatchBookmarks", "true".into()));
        q.push(("resourceVersion", resource_version.to_string()));
        q.push(("timeoutSeconds", timeout_seconds.to_string()));
        self.open_watch(path, &q, timeout_seconds)
    }

    /// Opens a streaming list: the current objects arrive as ADDED events, ended by a BOOKMARK
    /// annotated `k8s.io/initial-events-end`, then the watch goes on.
    pub fn watch_list<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &ListParams,
        timeout_seconds: u64,
    ) -> Result<WatchStream<T>, ApiError> {
        let mut q = params.pairs();
        q.push(("watch", "1".into()));
        q.push(("sendInitialEvents", "true".into()));
        q.push(("resourceVersionMatch", "NotOlderThan".into()));
        q.push(("allowWatchBookmarks", "true".into()));
        q.push(("timeoutSeconds", timeout_seconds.to_string()));
        self.open_watch(path, &q, timeout_seconds)
    }

    fn open_watch<T: DeserializeOwned>(
        &self,
        path: &str,
        q: &[(&'static str, String)],
        timeout_seconds: u64,
    ) -> Result<WatchStream<T>, ApiError> {
        let r = self.open_watch_inner(path, q, timeout_seconds);
        self.note_link(&r);
        r
    }

    fn open_watch_inner<T: DeserializeOwned>(
        &self,
        path: &str,
        q: &[(&'static str, String)],
        timeout_seconds: u64,
    ) -> Result<WatchStream<T>, ApiError> {
        let cfg = &self.inner.config;
        // The server closes at timeoutSeconds; allow slack before calling it dead.
        let body_timeout = Duration::from_secs(timeout_seconds.saturating_add(60));
        let resp = self.send(
            "GET",
            path,
            q,
            None,
            Some((body_timeout, cfg.watch_idle_timeout)),
            None,
        )?;
        let resp = self.check_status("GET", path, resp)?;
        let reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        Ok(WatchStream {
            path: path.to_string(),
            reader: Box::new(reader),
            decoder: EventDecoder::new(cfg.max_watch_line),
            buf: vec![0u8; 16 << 10],
            done: false,
        })
    }

    fn request_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        via: Via,
    ) -> Result<T, ApiError> {
        let (_, bytes) = self.request_bytes(method, path, query, body, None, via)?;
        decode_json(method, path, &bytes)
    }

    /// One bounded request; the answer's content type and body, or the error it maps to.
    fn request_bytes(
        &self,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        accept: Option<&str>,
        via: Via,
    ) -> Result<Answer, ApiError> {
        let r = self.request_bytes_inner(method, path, query, body, accept, via);
        self.note_link(&r);
        r
    }

    fn request_bytes_inner(
        &self,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        accept: Option<&str>,
        via: Via,
    ) -> Result<Answer, ApiError> {
        if let (Via::Link, Some(link)) = (via, &self.inner.link) {
            if let Some(answer) = self.send_link(link, method, path, query, &body, accept) {
                return answer;
            }
        }
        let resp = self.send(method, path, query, body, None, accept)?;
        let mut resp = self.check_status(method, path, resp)?;
        let cfg = &self.inner.config;
        let limit = match via {
            Via::Link => cfg.max_object.min(cfg.max_body),
            Via::Http1 => cfg.max_body,
        };
        let too_large = || ApiError::new(method, path, ApiErrorKind::TooLarge { limit });
        let hint = resp.body().content_length();
        // Refuse before reading a byte when the server announces too much.
        if hint.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let ctype = resp
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut reader = resp.body_mut().as_reader();
        match read_limited(&mut reader, limit, hint) {
            Ok(Some(b)) => Ok((ctype, b)),
            Ok(None) => Err(too_large()),
            Err(e) => Err(ApiError::new(
                method,
                path,
                ApiErrorKind::Transport(format!("reading response body: {e}")),
            )),
        }
    }

    /// Sends over the HTTP/2 link; None when the server does not offer h2 (use HTTP/1.1).
    fn send_link(
        &self,
        link: &Link,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
        body: &Option<(&'static str, Vec<u8>)>,
        accept: Option<&str>,
    ) -> Option<Result<Answer, ApiError>> {
        let err = |kind| Some(Err(ApiError::new(method, path, kind)));
        let url = match self.url(method, path, query) {
            Ok(u) => u,
            Err(e) => return Some(Err(e)),
        };
        // Few and stable headers: HPACK sends repeats as one-byte indexes.
        let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(4);
        headers.push(("accept", accept.unwrap_or("application/json").to_string()));
        headers.push(("user-agent", self.inner.config.user_agent.clone()));
        match self.bearer(method, path) {
            Ok(Some(t)) => headers.push(("authorization", format!("Bearer {t}"))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        if let Some((ctype, _)) = body {
            headers.push(("content-type", (*ctype).to_string()));
        }
        let req = LinkRequest {
            method,
            url: &url,
            headers: &headers,
            body: body.as_ref().map(|(_, b)| b.as_slice()).unwrap_or_default(),
        };
        match link.send(&req) {
            Err(LinkError::NotAvailable) => None,
            Err(LinkError::Transport(m)) => err(ApiErrorKind::Transport(format!("HTTP/2: {m}"))),
            Err(LinkError::TooLarge { limit }) => err(ApiErrorKind::TooLarge { limit }),
            Err(LinkError::Request(m)) => err(ApiErrorKind::Config(m)),
            Ok(r) if (200..300).contains(&r.status) => Some(Ok((r.content_type, r.body))),
            Ok(r) => {
                let reason = http::StatusCode::from_u16(r.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                Some(Err(status_error(
                    method,
                    path,
                    r.status,
                    reason,
                    r.retry_after.as_deref(),
                    &r.body,
                )))
            }
        }
    }

    /// The full URL of `path` with `query` percent-encoded.
    fn url(
        &self,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
    ) -> Result<String, ApiError> {
        if !path.starts_with('/') {
            return Err(ApiError::new(
                method,
                path,
                ApiErrorKind::Config("request path must start with '/'".into()),
            ));
        }
        let mut url = format!("{}{}", self.inner.base, path);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 && !path.contains('?') {
                '?'
            } else {
                '&'
            });
            url.push_str(k);
            url.push('=');
            percent_encode_into(&mut url, v);
        }
        Ok(url)
    }

    /// The bearer token to send now (token files are re-read when rotated).
    fn bearer(&self, method: &str, path: &str) -> Result<Option<String>, ApiError> {
        match &self.inner.token {
            Some(tok) => tok
                .token()
                .map(Some)
                .map_err(|m| ApiError::new(method, path, ApiErrorKind::Config(m))),
            None => Ok(None),
        }
    }

    /// Sends one request over HTTP/1.1. `watch` = (total body timeout, idle timeout) for
    /// streams; `accept` overrides `application/json`.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&'static str, String)],
        body: Option<(&'static str, Vec<u8>)>,
        watch: Option<(Duration, Duration)>,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let url = self.url(method, path, query)?;
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = self.bearer(method, path)? {
            builder = builder.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(a) = accept {
            builder = builder.header("Accept", a);
        }
        let (ctype, bytes) = match body {
            Some((ctype, bytes)) => (Some(ctype), bytes),
            None => (None, Vec::new()),
        };
        if let Some(ctype) = ctype {
            builder = builder.header("Content-Type", ctype);
        }
        let req = builder.body(bytes).map_err(|e| {
            ApiError::new(
                method,
                path,
                ApiErrorKind::Config(format!("building request: {e}")),
            )
        })?;
        let agent = &self.inner.agent;
        let req = match watch {
            Some((total, idle)) => agent
                .configure_request(req)
                .timeout_recv_body(Some(total))
                .timeout_per_read(Some(idle))
                .build(),
            None => req,
        };
        let result = if ctype.is_some() {
            agent.run(req)
        } else {
            let (parts, _) = req.into_parts();
            agent.run(ureq::http::Request::from_parts(parts, ()))
        };
        result.map_err(|e| map_ureq(method, path, e))
    }

    /// Turns a non-2xx answer into an error, reading its Status body within a small limit.
    fn check_status(
        &self,
        method: &str,
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let code = resp.status().as_u16();
        if (200..300).contains(&code) {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .unwrap_or_default();
        Err(status_error(
            method,
            path,
            code,
            resp.status().canonical_reason().unwrap_or(""),
            retry_after.as_deref(),
            &body,
        ))
    }
}

/// A bounded answer: its content type (if sent) and whole body.
type Answer = (Option<String>, Vec<u8>);

/// Which transport a bounded request may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// The HTTP/2 link when there is one (single objects).
    Link,
    /// Always HTTP/1.1 (lists, whose answers can be large and slow).
    Http1,
}

/// The error for a non-2xx answer: Status reason and message when the body is a Status,
/// Retry-After (header, or `details.retryAfterSeconds`) on 429 and 5xx.
fn status_error(
    method: &str,
    path: &str,
    code: u16,
    canonical_reason: &str,
    retry_after_header: Option<&str>,
    body: &[u8],
) -> ApiError {
    let throttled = code == 429 || code >= 500;
    let mut retry_after = if throttled {
        retry_after_header.and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let (reason, message) = match serde_json::from_slice::<Status>(body) {
        Ok(s) if s.is_status() => {
            // Some servers say it only in the body: details.retryAfterSeconds.
            if retry_after.is_none() && throttled {
                retry_after = s
                    .details
                    .as_ref()
                    .and_then(|d| u64::try_from(d.retry_after_seconds).ok())
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs);
            }
            (s.reason, s.message)
        }
        _ => match crate::k8s::protobuf::decode_status(body) {
            // A server asked for protobuf answers its errors in protobuf too.
            Ok(s) => {
                if retry_after.is_none() && throttled && s.retry_after_seconds > 0 {
                    retry_after = u64::try_from(s.retry_after_seconds)
                        .ok()
                        .map(Duration::from_secs);
                }
                (s.reason, s.message)
            }
            Err(_) => (
                canonical_reason.to_string(),
                String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into_owned(),
            ),
        },
    };
    let mut e = ApiError::new(
        method,
        path,
        ApiErrorKind::Status {
            code,
            reason,
            message,
        },
    );
    e.retry_after = retry_after;
    e
}

/// Reads at most `limit` bytes; `Ok(None)` if there is more. Capacity never grows past the
/// limit (plain `read_to_end` could double it), so memory stays bounded by the limit.
fn read_limited(
    r: &mut dyn Read,
    limit: u64,
    hint: Option<u64>,
) -> std::io::Result<Option<Vec<u8>>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let initial = hint
        .and_then(|h| usize::try_from(h).ok())
        .unwrap_or(8 << 10)
        .min(limit);
    let mut buf = Vec::with_capacity(initial);
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(Some(buf)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = chunk.get(..n).unwrap_or_default();
        if buf.len().saturating_add(n) > limit {
            return Ok(None);
        }
        if buf.capacity() < buf.len() + n {
            let want = buf
                .capacity()
                .saturating_mul(2)
                .max(buf.len() + n)
                .min(limit);
            buf.reserve_exact(want - buf.len());
        }
        buf.extend_from_slice(data);
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
fn percent_encode_into(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A JSON answer as `T`, or a decode error naming the request and the type.
fn decode_json<T: DeserializeOwned>(method: &str, path: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            method,
            path,
            ApiErrorKind::Decode {
                what: short_type_name::<T>(),
                message: e.to_string(),
            },
        )
    })
}

fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    // `tinylet::k8s::node::Node` → `Node`; generics keep their inner names readable.
    let outer = full.split('<').next().unwrap_or(full);
    let tail = outer.rsplit("::").next().unwrap_or(outer);
    match full.find('<') {
        Some(i) => format!("{tail}{}", full.get(i..).unwrap_or("")),
        None => tail.to_string(),
    }
}

fn encode<B: Serialize>(method: &str, path: &str, body: &B) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|e| {
        ApiError::new(
            method,
            path,
            ApiErrorKind::Config(format!("encoding request body: {e}")),
        )
    })
}

fn map_ureq(method: &str, path: &str, e: ureq::Error) -> ApiError {
    let kind = match e {
        ureq::Error::BodyExceedsLimit(limit) => ApiErrorKind::TooLarge { limit },
        ureq::Error::Io(ref io) => match io.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>())
        {
            Some(ureq::Error::BodyExceedsLimit(limit)) => ApiErrorKind::TooLarge { limit: *limit },
            _ => ApiErrorKind::Transport(e.to_string()),
        },
        ureq::Error::BadUri(m) => ApiErrorKind::Config(format!("bad URL: {m}")),
        other => ApiErrorKind::Transport(other.to_string()),
    };
    ApiError::new(method, path, kind)
}

/// Parses `Retry-After`: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    let mut parts = v.split_ascii_whitespace();
    let _weekday = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() || time.len() != 8 {
        return None;
    }
    let at = parse_time(&format!("{year:04}-{month:02}-{day:02}T{time}Z"))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An open watch: yields typed events as they arrive, never buffering more than one line.
pub struct WatchStream<T> {
    path: String,
    reader: Box<dyn Read + Send>,
    decoder: EventDecoder<T>,
    buf: Vec<u8>,
    done: bool,
}

impl<T: DeserializeOwned> WatchStream<T> {
    /// Builds a stream over any reader (for tests and non-HTTP sources).
    pub fn from_reader(path: &str, reader: Box<dyn Read + Send>, max_line: usize) -> Self {
        WatchStream {
            path: path.to_string(),
            reader,
            decoder: EventDecoder::new(max_line),
            buf: vec![0u8; 16 << 10],
            done: false,
        }
    }

    /// The next event; `Ok(None)` when the server closed the stream cleanly.
    pub fn next_event(&mut self) -> Result<Option<WatchEvent<T>>, ApiError> {
        loop {
            match self.decoder.next_event() {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(e) => return Err(self.decode_error(e)),
            }
            if self.done {
                return self.decoder.finish().map_err(|e| self.decode_error(e));
            }
            match self.reader.read(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(n) => self.decoder.push(self.buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Err(ApiError::new(
                        "WATCH",
                        &self.path,
                        ApiErrorKind::Transport(e.to_string()),
                    ));
                }
            }
        }
    }

    fn decode_error(&mut self, e: WatchDecodeError) -> ApiError {
        self.done = true;
        let kind = match e {
            WatchDecodeError::LineTooLong { limit } => ApiErrorKind::TooLarge {
                limit: limit as u64,
            },
            // A cut-off stream is a broken connection: retry from the last version.
            WatchDecodeError::Truncated { .. } => ApiErrorKind::Transport(e.to_string()),
            WatchDecodeError::Json { message } => ApiErrorKind::Decode {
                what: format!("watch event of {}", short_type_name::<T>()),
                message,
            },
        };
        ApiError::new("WATCH", &self.path, kind)
    }
}

impl<T: DeserializeOwned> Iterator for WatchStream<T> {
    type Item = Result<WatchEvent<T>, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.decoder.buffered() == 0 {
            return None;
        }
        self.next_event().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_700);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(77))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "1.5",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn errors_classify_and_display_context() {
        let mut e = ApiError::new(
            "GET",
            "/api/v1/nodes/n1",
            ApiErrorKind::Status {
                code: 429,
                reason: "TooManyRequests".into(),
                message: "slow down".into(),
            },
        );
        e.retry_after = Some(Duration::from_secs(5));
        assert!(e.is_retryable());
        let s = e.to_string();
        assert!(
            s.contains("/api/v1/nodes/n1") && s.contains("429") && s.contains("retry after 5"),
            "{s}"
        );
        let t = ApiError::new("GET", "/x", ApiErrorKind::TooLarge { limit: 16 });
        assert!(!t.is_retryable());
        assert!(t.to_string().contains("16 bytes"));
    }

    #[test]
    fn type_names_are_short() {
        assert_eq!(short_type_name::<crate::k8s::node::Node>(), "Node");
        assert!(short_type_name::<List<crate::k8s::node::Node>>().starts_with("List<"));
    }

    #[test]
    fn list_params_query() {
        let p = ListParams::fields("spec.nodeName=n1").labels("a=b");
        assert_eq!(
            p.pairs(),
            vec![
                ("fieldSelector", "spec.nodeName=n1".to_string()),
                ("labelSelector", "a=b".to_string())
            ]
        );
    }

    #[test]
    fn read_limited_bounds_capacity() {
        let data = vec![7u8; 100_000];
        let got = read_limited(&mut &data[..], 100_000, None)
            .unwrap()
            .unwrap();
        assert_eq!(got, data);
        assert!(got.capacity() <= 100_000);
        assert_eq!(read_limited(&mut &data[..], 99_999, None).unwrap(), None);
        assert_eq!(read_limited(&mut &data[..], 0, Some(5)).unwrap(), None);
        assert_eq!(read_limited(&mut &b""[..], 0, None).unwrap(), Some(vec![]));
    }

    #[test]
    fn watch_stream_over_a_reader() {
        let data = b"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"3\"}}}\n{\"type\":\"ADDED\",\"obj";
        let mut s: WatchStream<serde_json::Value> =
            WatchStream::from_reader("/p", Box::new(&data[..]), 1024);
        assert!(matches!(s.next_event(), Ok(Some(WatchEvent::Bookmark(_)))));
        let e = s.next_event().unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }
}
