//! The API server check: reachable with the kubeconfig's CA (GET /version) and the identity
//! accepted (a SelfSubjectReview says who the server thinks we are). Skipped on a standalone
//! node (no kubeconfig, no bootstrap kubeconfig). [`check`] does the two requests through the
//! agent's own API client; [`judge`] only reads their answers.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::Finding;
use crate::api::{ApiError, Client, ClientConfig, Kubeconfig};
use crate::config::AgentConfig;

const CHECK: &str = "apiserver";

/// The SelfSubjectReview collection (authentication.k8s.io/v1, GA in Kubernetes 1.28).
const REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// Reaches the API server with the kubeconfig the agent would use.
pub fn check(cfg: &AgentConfig) -> Finding {
    let (path, which) = match (&cfg.kubeconfig, &cfg.bootstrap_kubeconfig) {
        (None, None) => {
            return Finding::skip(
                CHECK,
                "standalone node: no --kubeconfig or bootstrap kubeconfig",
            )
        }
        (Some(k), _) if k.exists() => (k.clone(), "kubeconfig"),
        (_, Some(b)) => (b.clone(), "bootstrap kubeconfig"),
        (Some(k), None) => {
            return Finding::fail(
                CHECK,
                format!("kubeconfig {} does not exist", k.display()),
                "copy the device's kubeconfig there, or give --bootstrap-kubeconfig for TLS \
                 bootstrap",
            )
        }
    };
    let source = format!("{which} {}", path.display());
    let cluster = match Kubeconfig::load(&path, None) {
        Ok(c) => c,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("{source}: {e}"),
                "fix the kubeconfig (server, certificate-authority-data, user credentials)",
            )
        }
    };
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        http2: false,
        ..ClientConfig::default()
    };
    let client = match Client::new(&cluster, config) {
        Ok(c) => c,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("{source}: {e}"),
                "fix the kubeconfig's CA or client certificate (PEM)",
            )
        }
    };
    let version = client.get::<Value>("/version");
    let review = version.is_ok().then(|| {
        client.create::<Value, Value>(
            REVIEWS,
            &serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
            }),
        )
    });
    judge(&source, &cluster.server, &path, version, review)
}

/// The finding from the answers to GET /version and the SelfSubjectReview.
pub fn judge(
    source: &str,
    server: &str,
    path: &Path,
    version: Result<Value, ApiError>,
    review: Option<Result<Value, ApiError>>,
) -> Finding {
    let version = match version {
        Ok(v) => v
            .get("gitVersion")
            .and_then(Value::as_str)
            .unwrap_or("unknown version")
            .to_string(),
        Err(e) if e.code() == Some(401) => {
            return Finding::fail(
                CHECK,
                format!("{server} rejects the credentials of {source}: {e}"),
                "renew the device's client certificate or token (or delete the kubeconfig so \
                 the bootstrap kubeconfig is used again)",
            )
        }
        Err(e) if e.code().is_some() => {
            return Finding::warn(
                CHECK,
                format!("{server} answered /version with an error: {e}"),
                "check the API server's health (`kubectl get --raw /readyz`)",
            )
        }
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("cannot reach {server} with {source}: {e}"),
                format!(
                    "check the network path to {server}, the clock, and that {}'s \
                     certificate-authority-data is the cluster's CA",
                    path.display()
                ),
            )
        }
    };
    match review {
        Some(Ok(v)) => {
            let user = v
                .pointer("/status/userInfo/username")
                .and_then(Value::as_str)
                .unwrap_or("an unnamed user");
            Finding::ok(CHECK, format!("{server} ({version}) as {user}"))
        }
        Some(Err(e)) if e.code() == Some(401) => Finding::fail(
            CHECK,
            format!("{server} ({version}) rejects the credentials of {source}: {e}"),
            "renew the device's client certificate or token",
        ),
        Some(Err(e)) if e.code() == Some(403) && source.starts_with("bootstrap") => Finding::ok(
            CHECK,
            format!("{server} ({version}); the bootstrap identity may not review itself (403), as expected"),
        ),
        Some(Err(e)) => Finding::ok(
            CHECK,
            format!("{server} ({version}); identity not confirmed: {e}"),
        ),
        None => Finding::ok(CHECK, format!("{server} ({version})")),
    }
}
