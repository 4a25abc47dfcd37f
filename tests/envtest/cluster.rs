//! What a scenario needs from a cluster, whichever one runs: admin JSON calls, the URL and CA,
//! bootstrap tokens, the CSR approver+signer, an outage switch and failure diagnostics; and
//! the project's API test server behind that interface (`ProjectCluster`).
//!
//! Scenarios see only `&dyn Cluster`, so the same code runs against tests/apiserver in every
//! `cargo test` and against a real kube-apiserver when its binaries are named (see real.rs).
//! Nothing here knows about containerd or the agent process.
#![allow(dead_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::apiserver::{self, ApiServer, CsrApproval, User};

/// An admin call that did not succeed: the HTTP code (0 when no answer came) and the body.
#[derive(Debug, Clone)]
pub struct CallError {
    /// HTTP status, 0 for a transport failure.
    pub code: u16,
    /// The Status body, or a string describing the transport failure.
    pub body: Value,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = self
            .body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string());
        write!(f, "admin API call failed ({}): {msg}", self.code)
    }
}

impl std::error::Error for CallError {}

/// A cluster the scenarios run against.
pub trait Cluster {
    /// "project" or "real", for messages and names.
    fn kind(&self) -> &'static str;
    /// `https://127.0.0.1:PORT`.
    fn url(&self) -> String;
    /// The CA that signed the serving certificate and signs client certificates.
    fn ca_pem(&self) -> String;
    /// One request as cluster admin; codes >= 300 are errors.
    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError>;
    /// A fresh bootstrap token `ID.SECRET` the server accepts (user system:bootstrap:ID).
    fn bootstrap_token(&self) -> Result<String, String>;
    /// Approves CSR `name` and issues its certificate, as kube-controller-manager would.
    fn approve_and_sign(&self, name: &str) -> Result<(), String>;
    /// Takes the API away (connections fail or hang) until `up`.
    fn down(&self);
    /// Brings the API back on the same address.
    fn up(&self);
    /// Requests made as `system:node:NODE` or by a bootstrap identity that got 403, when the
    /// server can tell (the project server logs every request; a real one does not).
    fn node_forbidden(&self, node: &str) -> Option<Vec<String>>;
    /// Server-side logs and state worth printing when a scenario fails.
    fn diagnostics(&self) -> String;

    /// Re-checks `pred` until it holds or `timeout` passes.
    fn wait_until(&self, timeout: Duration, pred: &mut dyn FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// POST to a collection.
    fn create(&self, collection: &str, obj: Value) -> Result<Value, CallError> {
        self.call("POST", collection, "application/json", Some(&obj))
    }
    /// GET one object or a list.
    fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call("GET", path, "", None)
    }
    /// GET, with 404 (or any failure) as None.
    fn get_opt(&self, path: &str) -> Option<Value> {
        self.get(path).ok()
    }
    /// PUT a whole object (also to subresources such as `/status` and `/approval`).
    fn put(&self, path: &str, obj: Value) -> Result<Value, CallError> {
        self.call("PUT", path, "application/json", Some(&obj))
    }
    /// JSON merge patch.
    fn merge_patch(&self, path: &str, patch: Value) -> Result<Value, CallError> {
        self.call("PATCH", path, "application/merge-patch+json", Some(&patch))
    }
    /// DELETE with an optional grace period.
    fn delete(&self, path: &str, grace: Option<i64>) -> Result<Value, CallError> {
        let opts = grace
            .map(|g| json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": g}));
        self.call("DELETE", path, "application/json", opts.as_ref())
    }
    /// Creates namespace `ns` with ServiceAccount `default` and ConfigMap `kube-root-ca.crt`
    /// (what the namespace's controllers would add); existing objects are kept.
    fn ensure_namespace(&self, ns: &str) -> Result<(), CallError> {
        let ok = |r: Result<Value, CallError>| match r {
            Err(e) if e.code != 409 => Err(e),
            _ => Ok(()),
        };
        ok(self.create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        ))?;
        ok(self.create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        ))?;
        ok(self.create(
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"},
                   "data": {"ca.crt": self.ca_pem()}}),
        ))
    }
}

/// A name part unique in this process and unlikely to repeat across runs: [a-z0-9]{len}.
pub fn random_token_part(len: usize) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHA[(x % ALPHA.len() as u64) as usize])
        })
        .collect()
}

/// The project's API test server as a `Cluster`, with CSR approval left to the harness so
/// the scenario drives it exactly as it must against a real cluster.
pub struct ProjectCluster {
    /// The server; scenarios reach it only through the trait.
    pub srv: ApiServer,
}

impl ProjectCluster {
    /// Starts a TLS server with manual CSR approval.
    pub fn start() -> ProjectCluster {
        let cfg = apiserver::Config {
            csr_approval: CsrApproval::Manual,
            ..apiserver::Config::tls()
        };
        ProjectCluster {
            srv: apiserver::start(cfg).expect("start the project API test server"),
        }
    }
}

impl Cluster for ProjectCluster {
    fn kind(&self) -> &'static str {
        "project"
    }

    fn url(&self) -> String {
        self.srv.url()
    }

    fn ca_pem(&self) -> String {
        self.srv.ca_pem().to_string()
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        match self
            .srv
            .call_as(&User::admin(), method, path, content_type, body)
        {
            (code, v) if code < 300 => Ok(v),
            (code, body) => Err(CallError { code, body }),
        }
    }

    fn bootstrap_token(&self) -> Result<String, String> {
        Ok(self
            .srv
            .add_bootstrap_token(&random_token_part(6), &random_token_part(16)))
    }

    fn approve_and_sign(&self, name: &str) -> Result<(), String> {
        self.srv.approve_csr(name).map(|_| ())
    }

    fn down(&self) {
        self.srv.down();
    }

    fn up(&self) {
        if let Err(e) = self.srv.up() {
            panic!("bringing the project API server back up: {e}");
        }
    }

    fn node_forbidden(&self, node: &str) -> Option<Vec<String>> {
        let me = format!("system:node:{node}");
        Some(
            self.srv
                .stats()
                .log()
                .into_iter()
                .filter(|r| r.code == 403)
                .filter(|r| r.user == me || r.user.starts_with("system:bootstrap:"))
                .map(|r| format!("{} {} as {}", r.method, r.target, r.user))
                .collect(),
        )
    }

    fn diagnostics(&self) -> String {
        let log = self.srv.stats().log();
        let skip = log.len().saturating_sub(60);
        let mut out = String::from("project API server, last requests:\n");
        for r in log.iter().skip(skip) {
            out.push_str(&format!(
                "  {:>8.3}s {} {} {} -> {}\n",
                r.at.as_secs_f64(),
                r.user,
                r.method,
                r.target,
                r.code
            ));
        }
        out
    }

    fn wait_until(&self, timeout: Duration, pred: &mut dyn FnMut() -> bool) -> bool {
        // Woken by every store write instead of polling.
        self.srv.wait_until(timeout, |_| pred())
    }
}
