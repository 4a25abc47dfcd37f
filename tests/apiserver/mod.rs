//! The project's API test server: a small, faithful stand-in for kube-apiserver (Node
//! authorizer + NodeRestriction, watch with bookmarks and compaction, graceful pod deletion,
//! status subresources, CSR approval, TokenRequest) over HTTPS or plain HTTP on 127.0.0.1,
//! with a runtime-configurable fault injector and counters for tests and benches.
//!
//! Used from test files as `#[path = "apiserver/mod.rs"] mod apiserver;`. It speaks JSON as
//! `serde_json::Value` and must not depend on the crate's own API client or types, so that it
//! checks them rather than mirrors them.
//!
//! ```ignore
//! let srv = apiserver::start(apiserver::Config::tls())?;   // or Config::plain()
//! let url = srv.url();                                    // https://127.0.0.1:PORT
//! let ca = srv.ca_pem();                                  // trust anchor for the client
//! let creds = srv.node_cert("n1")?;      // CN=system:node:n1, O=system:nodes (PEM + files)
//! let token = srv.add_bootstrap_token("abcdef", "0123456789abcdef");
//! srv.create("/api/v1/namespaces/default/pods", pod_json)?;       // as admin
//! srv.bind_pod("default", "web", "n1")?;                           // as the scheduler would
//! srv.faults().fail_next(2, 503);                                   // fault injection
//! srv.down_for(Duration::from_secs(1));                             // outage
//! assert_eq!(srv.pod_status("default", "web").unwrap()["phase"], "Running");
//! println!("{:?}", srv.stats().counts());                           // observability
//! ```
//!
//! Layout: `http` (framing), `pki` (openssl CA, DER subjects, base64), `store` (objects, RV,
//! history, selectors), `patch` (merge / strategic merge / JSON patch), `authz` (users, Node
//! authorizer, NodeRestriction), `handler` (verbs, routing, Status errors), `watch` (event
//! streams), `fault` (fault injector), `stats` (counters, byte counts, request log), `server`
//! (sockets, TLS, DOWN/UP; its child `h2` serves HTTP/2 when ALPN picks it), `relay` (a TCP
//! relay that can black-hole connections without closing them), `client` (a raw HTTP client
//! for self-tests and harnesses).
#![allow(dead_code, unused_imports)]

pub mod authz;
pub mod client;
pub mod fault;
pub mod handler;
pub mod http;
pub mod patch;
pub mod pki;
pub mod proto;
pub mod relay;
pub mod server;
pub mod stats;
pub mod store;
pub mod watch;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use authz::User;
pub use fault::{Fault, FaultInjector, Hostile, Matcher, RuleId, Trigger};
pub use handler::{CsrApproval, ExpiredMode};
pub use pki::ClientCredentials;
pub use stats::{RequestRecord, Stats};

use handler::{lock, Api};
use pki::{Pki, PkiError};
use server::Shared;
use store::Store;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTPS (true) or plain HTTP.
    pub tls: bool,
    /// Watch events kept before compaction.
    pub history_limit: usize,
    /// Interval of BOOKMARK events (real servers: about a minute; short here so tests see them).
    pub bookmark_interval: Duration,
    /// Length of a watch without timeoutSeconds.
    pub default_watch_timeout: Duration,
    /// CSR approval policy.
    pub csr_approval: CsrApproval,
    /// How too-old watches are refused.
    pub expired: ExpiredMode,
    /// Namespaces created at start, each with ServiceAccount "default" and ConfigMap
    /// "kube-root-ca.crt", as a real cluster has.
    pub namespaces: Vec<String>,
    /// User for requests without credentials: None answers 401.
    pub anonymous: Option<User>,
    /// Seed of the fault injector's PRNG and of generated names.
    pub seed: u64,
    /// Offer HTTP/2 (ALPN `h2`) next to HTTP/1.1 over TLS; false forces HTTP/1.1.
    pub http2: bool,
}

impl Config {
    /// HTTPS, no anonymous access, auto-approved kubelet CSRs.
    pub fn tls() -> Config {
        Config {
            tls: true,
            history_limit: 1000,
            bookmark_interval: Duration::from_millis(500),
            default_watch_timeout: Duration::from_secs(300),
            csr_approval: CsrApproval::Auto,
            expired: ExpiredMode::ErrorEvent,
            namespaces: vec![
                "default".into(),
                "kube-system".into(),
                "kube-node-lease".into(),
            ],
            anonymous: None,
            seed: 0x5eed_1234_abcd,
            http2: true,
        }
    }

    /// Plain HTTP where requests without credentials act as cluster admin.
    pub fn plain() -> Config {
        Config {
            tls: false,
            anonymous: Some(User::admin()),
            ..Config::tls()
        }
    }
}

/// Why the server did not start.
#[derive(Debug)]
pub enum StartError {
    /// Certificates could not be made.
    Pki(PkiError),
    /// The listener could not be bound.
    Bind(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Pki(e) => write!(f, "starting API test server: {e}"),
            StartError::Bind(e) => write!(f, "starting API test server: bind 127.0.0.1:0: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// An API call made directly by a test (as admin unless said otherwise) that failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// HTTP status the server would have sent.
    pub code: u16,
    /// The Status body.
    pub status: Value,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = self
            .status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("");
        write!(f, "API call failed with {}: {msg}", self.code)
    }
}

impl std::error::Error for CallError {}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// A running server; dropping it stops it and removes its certificates.
pub struct ApiServer {
    shared: Arc<Shared>,
    pki: Arc<Pki>,
    tls: bool,
}

/// Starts a server on 127.0.0.1 with an ephemeral port.
pub fn start(cfg: Config) -> Result<ApiServer, StartError> {
    ApiServer::start(cfg)
}

impl ApiServer {
    /// Starts a server on 127.0.0.1 with an ephemeral port.
    pub fn start(cfg: Config) -> Result<ApiServer, StartError> {
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "tinylet-apiserver-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        let pki = Arc::new(Pki::generate(&dir).map_err(StartError::Pki)?);
        let tls = if cfg.tls {
            let base = pki.server_config().map_err(StartError::Pki)?;
            if cfg.http2 {
                let mut both = (*base).clone();
                both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(Arc::new(both))
            } else {
                Some(base)
            }
        } else {
            None
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let started = Instant::now();
        let api = Api {
            store: Mutex::new(Store::new(cfg.history_limit)),
            changed: Condvar::new(),
            pki: Arc::clone(&pki),
            csr_approval: Mutex::new(cfg.csr_approval),
            expired: Mutex::new(cfg.expired),
            tokens: Mutex::new(HashMap::new()),
            bookmark_interval: Mutex::new(cfg.bookmark_interval),
            first_added: Mutex::new(HashMap::new()),
            default_watch_timeout: cfg.default_watch_timeout,
            rand: Mutex::new(cfg.seed | 1),
        };
        let shared = Arc::new(Shared::new(
            api,
            FaultInjector::new(cfg.seed),
            Arc::new(Stats::new(started)),
            tls,
            cfg.anonymous.clone(),
            addr,
        ));
        let srv = ApiServer {
            shared,
            pki,
            tls: cfg.tls,
        };
        for ns in &cfg.namespaces {
            srv.ensure_namespace(ns);
        }
        server::listen(&srv.shared, listener);
        Ok(srv)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `https://127.0.0.1:PORT` or `http://...`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.shared.addr
        )
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The CA certificate (PEM) that signed the server and client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Mints a client certificate: CN=`cn`, one O per `orgs` entry.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<ClientCredentials, PkiError> {
        self.pki.client_cert(cn, orgs)
    }

    /// Credentials of node `node` (CN=system:node:NODE, O=system:nodes).
    pub fn node_cert(&self, node: &str) -> Result<ClientCredentials, PkiError> {
        self.pki
            .client_cert(&format!("system:node:{node}"), &["system:nodes"])
    }

    /// Credentials of a bootstrap client (O=system:bootstrappers).
    pub fn bootstrap_cert(&self, name: &str) -> Result<ClientCredentials, PkiError> {
        self.pki.client_cert(
            &format!("system:bootstrap:{name}"),
            &["system:bootstrappers"],
        )
    }

    /// Admin credentials (O=system:masters).
    pub fn admin_cert(&self) -> Result<ClientCredentials, PkiError> {
        self.pki.client_cert("admin", &["system:masters"])
    }

    /// Maps a bearer token to a user.
    pub fn add_token(&self, token: &str, user: User) {
        lock(&self.shared.api.tokens).insert(token.to_string(), user);
    }

    /// A bearer token for node `node`.
    pub fn node_token(&self, node: &str) -> String {
        let t = format!("node-token-{node}");
        self.add_token(&t, User::node(node));
        t
    }

    /// A bearer token for the admin.
    pub fn admin_token(&self) -> String {
        let t = "admin-token".to_string();
        self.add_token(&t, User::admin());
        t
    }

    /// Registers bootstrap token `id.secret` (user system:bootstrap:ID, group
    /// system:bootstrappers) and returns it.
    pub fn add_bootstrap_token(&self, id: &str, secret: &str) -> String {
        let t = format!("{id}.{secret}");
        self.add_token(&t, User::bootstrap(id));
        t
    }

    /// The fault injector.
    pub fn faults(&self) -> &FaultInjector {
        &self.shared.faults
    }

    /// Counters, bytes and the request log.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Serves one request directly (no socket, no faults, not counted) as `user`.
    pub fn call_as(
        &self,
        user: &User,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, q),
            None => (path, ""),
        };
        let head = http::RequestHead {
            method: method.into(),
            target: format!("{path}?{query}"),
            version: "HTTP/1.1".into(),
            headers: vec![],
        };
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        match self.shared.api.handle(
            user,
            method,
            &head.path(),
            &head.query(),
            &handler::RequestMeta {
                content_type,
                user_agent: "tinylet-test",
            },
            &body,
        ) {
            handler::Reply::Json { code, body } => (code, body),
            handler::Reply::Text(code, t) => (code, Value::String(t)),
            handler::Reply::Watch(_) => (
                400,
                handler::status(
                    400,
                    "BadRequest",
                    "watch is not available as a direct call",
                    None,
                ),
            ),
        }
    }

    fn admin(
        &self,
        method: &str,
        path: &str,
        ct: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        match self.call_as(&User::admin(), method, path, ct, body) {
            (code, v) if code < 300 => Ok(v),
            (code, status) => Err(CallError { code, status }),
        }
    }

    /// Creates an object as admin: `create("/api/v1/namespaces/default/pods", pod)`.
    pub fn create(&self, collection: &str, obj: Value) -> Result<Value, CallError> {
        self.admin("POST", collection, "application/json", Some(&obj))
    }

    /// Reads an object as admin.
    pub fn get(&self, path: &str) -> Result<Value, CallError> {
        self.admin("GET", path, "", None)
    }

    /// Lists as admin (path may carry a query).
    pub fn list(&self, path: &str) -> Result<Value, CallError> {
        self.admin("GET", path, "", None)
    }

    /// Replaces an object as admin (PUT).
    pub fn update(&self, path: &str, obj: Value) -> Result<Value, CallError> {
        self.admin("PUT", path, "application/json", Some(&obj))
    }

    /// JSON-merge-patches an object as admin (use ".../status" for the status).
    pub fn merge_patch(&self, path: &str, patch: Value) -> Result<Value, CallError> {
        self.admin("PATCH", path, "application/merge-patch+json", Some(&patch))
    }

    /// Patches as admin with any patch content type (merge, strategic merge, JSON patch).
    pub fn patch(&self, path: &str, content_type: &str, patch: Value) -> Result<Value, CallError> {
        self.admin("PATCH", path, content_type, Some(&patch))
    }

    /// Binds a pod to a node as the scheduler does (pods/NAME/binding).
    pub fn bind_pod(&self, ns: &str, name: &str, node: &str) -> Result<Value, CallError> {
        let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        self.admin(
            "POST",
            &format!("/api/v1/namespaces/{ns}/pods/{name}/binding"),
            "application/json",
            Some(&b),
        )
    }

    /// Deletes as admin with an optional grace period.
    pub fn delete(&self, path: &str, grace: Option<i64>) -> Result<Value, CallError> {
        let opts = grace
            .map(|g| json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": g}));
        self.admin("DELETE", path, "application/json", opts.as_ref())
    }

    /// A pod as stored, if it exists.
    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        let st = lock(&self.shared.api.store);
        st.get(store::kind_id("", "pods"), ns, name).cloned()
    }

    /// A pod's `.status`, if the pod exists.
    pub fn pod_status(&self, ns: &str, name: &str) -> Option<Value> {
        self.pod(ns, name).and_then(|p| p.get("status").cloned())
    }

    /// A node as stored.
    pub fn node(&self, name: &str) -> Option<Value> {
        let st = lock(&self.shared.api.store);
        st.get(store::kind_id("", "nodes"), "", name).cloned()
    }

    /// A node lease (kube-node-lease/NAME) as stored.
    pub fn lease(&self, name: &str) -> Option<Value> {
        let st = lock(&self.shared.api.store);
        st.get(
            store::kind_id("coordination.k8s.io", "leases"),
            "kube-node-lease",
            name,
        )
        .cloned()
    }

    /// Waits until `pred` holds, re-checking after every write to the store (no polling
    /// sleeps); false if `timeout` passes first.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&ApiServer) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.resource_version();
            if pred(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let st = lock(&self.shared.api.store);
            if st.rv() != seen {
                continue;
            }
            let _ = self.shared.api.changed.wait_timeout(st, deadline - now);
        }
    }

    /// Waits until pod `ns/name` reports `status.phase == phase`.
    pub fn wait_for_pod_phase(&self, ns: &str, name: &str, phase: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| {
            s.pod_status(ns, name)
                .is_some_and(|st| st.get("phase").and_then(Value::as_str) == Some(phase))
        })
    }

    /// Approves CSR `name` and signs it (status.certificate).
    pub fn approve_csr(&self, name: &str) -> Result<Value, String> {
        let r = {
            let mut st = lock(&self.shared.api.store);
            self.shared.api.approve_locked(&mut st, name, false)
        };
        self.shared.api.changed.notify_all();
        r
    }

    /// Denies CSR `name`.
    pub fn deny_csr(&self, name: &str) -> Result<Value, String> {
        let r = {
            let mut st = lock(&self.shared.api.store);
            self.shared.api.deny_locked(&mut st, name)
        };
        self.shared.api.changed.notify_all();
        r
    }

    /// Changes the CSR approval policy.
    pub fn set_csr_approval(&self, mode: CsrApproval) {
        *lock(&self.shared.api.csr_approval) = mode;
    }

    /// Changes how too-old watches are refused.
    pub fn set_expired_mode(&self, mode: ExpiredMode) {
        *lock(&self.shared.api.expired) = mode;
    }

    /// When the ADDED event of the object with `uid` was first written to a watch stream.
    pub fn first_added_at(&self, uid: &str) -> Option<Instant> {
        lock(&self.shared.api.first_added).get(uid).copied()
    }

    /// Changes the BOOKMARK interval for watches started from now on.
    pub fn set_bookmark_interval(&self, d: Duration) {
        *lock(&self.shared.api.bookmark_interval) = d;
    }

    /// Changes how many watch events are kept.
    pub fn set_history_limit(&self, n: usize) {
        lock(&self.shared.api.store).set_history_limit(n);
    }

    /// Forgets all watch history: a watch from any older RV gets 410, running watches
    /// behind the current RV get the ERROR event.
    pub fn compact(&self) {
        lock(&self.shared.api.store).compact();
        self.shared.api.changed.notify_all();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.api.store).rv()
    }

    /// Creates namespace `ns` with ServiceAccount "default" and ConfigMap "kube-root-ca.crt".
    pub fn ensure_namespace(&self, ns: &str) {
        let _ = self.create("/api/v1/namespaces", json!({"metadata": {"name": ns}}));
        let _ = self.create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"metadata": {"name": "default"}}),
        );
        let _ = self.create(
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": self.ca_pem()}}),
        );
    }

    /// Takes the server DOWN: connections are refused and open ones (watches too) killed.
    pub fn down(&self) {
        server::down(&self.shared);
    }

    /// Brings the server back UP on the same address.
    pub fn up(&self) -> io::Result<()> {
        server::up(&self.shared)
    }

    /// Whether the server is DOWN.
    pub fn is_down(&self) -> bool {
        self.shared.is_down()
    }

    /// DOWN now, UP again after `d` (from a helper thread that lives at most `d`).
    pub fn down_for(&self, d: Duration) {
        self.down();
        let s = Arc::clone(&self.shared);
        let _ = std::thread::Builder::new()
            .name("apiserver-down-for".into())
            .spawn(move || {
                std::thread::sleep(d);
                let _ = server::up(&s);
            });
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        server::shutdown(&self.shared);
        // Connection threads may outlive the handle briefly; the files go now regardless.
        self.pki.remove_files();
    }
}
