//! May this user do this: the kubelet's request attributes (verb from the method, resource
//! `nodes`, name = node name, subresource from the path), the SubjectAccessReview body and
//! answer, the decision cache and the 403 message. Pure; the SAR call is the caller's.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::authn::User;
use super::cache::TtlCache;

/// What a request asks to do, in the kubelet's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: String,
    pub subresource: &'static str,
    /// The node name.
    pub name: String,
}

/// The verb of an HTTP method as the kubelet maps it (others: the method, lowercased).
pub fn verb(method: &str) -> String {
    match method {
        "GET" | "HEAD" => "get".into(),
        "POST" => "create".into(),
        "PUT" => "update".into(),
        "PATCH" => "patch".into(),
        "DELETE" => "delete".into(),
        m => m.to_ascii_lowercase(),
    }
}

/// `path` is `prefix` or below it (`/stats` and `/stats/summary`, not `/statsx`).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The subresource a path is authorized as: `/stats*`→stats, `/metrics*`→metrics,
/// `/logs*`→log, `/spec*`→spec, everything else (container logs, exec, pods, healthz)→proxy.
pub fn subresource(path: &str) -> &'static str {
    if under(path, "/stats") {
        "stats"
    } else if under(path, "/metrics") {
        "metrics"
    } else if under(path, "/logs") {
        "log"
    } else if under(path, "/spec") {
        "spec"
    } else {
        "proxy"
    }
}

/// The attributes of a request on node `node`.
pub fn attributes(method: &str, path: &str, node: &str) -> Attributes {
    Attributes {
        verb: verb(method),
        subresource: subresource(path),
        name: node.to_string(),
    }
}

/// The 403 body, in the kubelet's shape.
pub fn forbidden_message(user: &User, a: &Attributes) -> String {
    format!(
        "Forbidden (user={}, verb={}, resource=nodes, subresource(s)=[{}])",
        user.name, a.verb, a.subresource
    )
}

/// The SubjectAccessReview request body.
pub fn sar_body(user: &User, a: &Attributes) -> Value {
    json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user.name,
            "uid": user.uid,
            "groups": user.groups,
            "extra": user.extra,
            "resourceAttributes": {
                "verb": a.verb,
                "group": "",
                "version": "v1",
                "resource": "nodes",
                "subresource": a.subresource,
                "name": a.name,
            },
        },
    })
}

/// Whether a SubjectAccessReview answer allows (a malformed answer does not).
pub fn sar_allowed(answer: &Value) -> bool {
    answer["status"]["allowed"].as_bool() == Some(true)
        && answer["status"]["denied"].as_bool() != Some(true)
}

type DecisionKey = (String, String, Vec<String>, Attributes);

/// Decisions cached by user and attributes: allowed for `cacheAuthorizedTTL`, denied for
/// `cacheUnauthorizedTTL`.
#[derive(Debug)]
pub struct DecisionCache {
    cache: TtlCache<DecisionKey, bool>,
    allowed_ttl: Duration,
    denied_ttl: Duration,
}

fn key(user: &User, a: &Attributes) -> DecisionKey {
    let mut extra = Vec::new();
    for (k, vs) in &user.extra {
        extra.push(format!("{k}={}", vs.join(",")));
    }
    let mut groups = user.groups.clone();
    groups.extend(extra);
    (user.name.clone(), user.uid.clone(), groups, a.clone())
}

impl DecisionCache {
    /// A cache with the two TTLs.
    pub fn new(allowed_ttl: Duration, denied_ttl: Duration) -> Self {
        DecisionCache {
            cache: TtlCache::new(1024),
            allowed_ttl,
            denied_ttl,
        }
    }

    /// A cached decision.
    pub fn get(&mut self, user: &User, a: &Attributes, now: Instant) -> Option<bool> {
        self.cache.get(&key(user, a), now)
    }

    /// Keeps a decision for the TTL its outcome has.
    pub fn put(&mut self, user: &User, a: &Attributes, allowed: bool, now: Instant) {
        let ttl = if allowed {
            self.allowed_ttl
        } else {
            self.denied_ttl
        };
        self.cache.put(key(user, a), allowed, ttl, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_the_method() {
        // The kubelet's mapping (pkg/kubelet/server/auth.go): GET/HEAD→get, POST→create, ...
        for (m, v) in [
            ("GET", "get"),
            ("HEAD", "get"),
            ("POST", "create"),
            ("PUT", "update"),
            ("PATCH", "patch"),
            ("DELETE", "delete"),
            ("OPTIONS", "options"),
        ] {
            assert_eq!(verb(m), v);
        }
    }

    #[test]
    fn subresources_follow_the_path() {
        for (p, s) in [
            ("/stats", "stats"),
            ("/stats/summary", "stats"),
            ("/metrics", "metrics"),
            ("/metrics/resource", "metrics"),
            ("/logs/syslog", "log"),
            ("/spec/", "spec"),
            ("/containerLogs/default/web/app", "proxy"),
            ("/exec/default/web/app", "proxy"),
            ("/pods", "proxy"),
            ("/healthz", "proxy"),
            ("/statsx", "proxy"),
            ("/logsfoo", "proxy"),
        ] {
            assert_eq!(subresource(p), s, "{p}");
        }
    }

    #[test]
    fn forbidden_message_and_review_body() {
        let u = User {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..User::default()
        };
        let a = attributes("GET", "/containerLogs/a/b/c", "pi4");
        assert_eq!(
            forbidden_message(&u, &a),
            "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[proxy])"
        );
        let b = sar_body(&u, &a);
        assert_eq!(b["spec"]["user"], "bob");
        assert_eq!(b["spec"]["resourceAttributes"]["name"], "pi4");
        assert_eq!(b["spec"]["resourceAttributes"]["subresource"], "proxy");
        assert_eq!(b["spec"]["resourceAttributes"]["resource"], "nodes");
        assert!(sar_allowed(&json!({"status": {"allowed": true}})));
        assert!(!sar_allowed(&json!({"status": {"allowed": false}})));
        assert!(!sar_allowed(
            &json!({"status": {"allowed": true, "denied": true}})
        ));
        assert!(!sar_allowed(&json!("garbage")));
    }

    #[test]
    fn allowed_and_denied_have_their_own_ttls() {
        let t0 = Instant::now();
        let mut c = DecisionCache::new(Duration::from_secs(300), Duration::from_secs(30));
        let alice = User {
            name: "alice".into(),
            ..User::default()
        };
        let bob = User {
            name: "bob".into(),
            ..User::default()
        };
        let a = attributes("GET", "/pods", "n");
        c.put(&alice, &a, true, t0);
        c.put(&bob, &a, false, t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(c.get(&alice, &a, at(299)), Some(true));
        assert_eq!(c.get(&bob, &a, at(29)), Some(false));
        assert_eq!(c.get(&bob, &a, at(30)), None);
        assert_eq!(c.get(&alice, &a, at(300)), None);
        // Other attributes are another decision.
        assert_eq!(c.get(&alice, &attributes("GET", "/stats", "n"), t0), None);
    }
}
