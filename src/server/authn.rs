//! Who is asking: the user of a request from its verified client certificate, its bearer
//! token (TokenReview, cached), or anonymous when allowed. The decision is pure
//! ([`decide`]); the TokenReview call is behind a closure so tests need no API server.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cache::TtlCache;
use crate::node::x509::CertInfo;

/// Every authenticated user is also in this group (the kubelet's authenticator adds it).
pub const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated (or anonymous) user, as SubjectAccessReview takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The anonymous user (only when `authentication.anonymous.enabled`).
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..User::default()
        }
    }

    fn with_authenticated_group(mut self) -> User {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }
}

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn user_from_certificate(info: &CertInfo) -> Option<User> {
    let name = info.common_name.clone().filter(|n| !n.is_empty())?;
    Some(
        User {
            name,
            groups: info.organizations.clone(),
            ..User::default()
        }
        .with_authenticated_group(),
    )
}

/// The bearer token of an `Authorization` header value, if it is one.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the TLS layer found about the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCert {
    /// None offered.
    None,
    /// Chains to the client CA; its subject.
    Verified(CertInfo),
    /// Offered but not verified (other CA, expired, no CA configured, unreadable).
    Rejected(String),
}

/// The authentication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthnPolicy {
    pub token_webhook: bool,
    pub anonymous: bool,
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    User(User),
    /// 401, with the reason for the log.
    Unauthorized(String),
    /// A bearer token to review before deciding.
    ReviewToken(String),
}

/// Decides from the certificate and the Authorization header. Like the kubelet's union
/// authenticator: a presented certificate that fails verification is an error (401), not a
/// fall-through; a token is reviewed only when the webhook is enabled.
pub fn decide(peer: &PeerCert, authorization: Option<&str>, policy: AuthnPolicy) -> Authn {
    match peer {
        PeerCert::Verified(info) => {
            return match user_from_certificate(info) {
                Some(u) => Authn::User(u),
                None => Authn::Unauthorized("client certificate without a common name".into()),
            }
        }
        PeerCert::Rejected(why) => {
            return Authn::Unauthorized(format!("client certificate: {why}"))
        }
        PeerCert::None => {}
    }
    if let Some(token) = authorization.and_then(bearer_token) {
        if policy.token_webhook {
            return Authn::ReviewToken(token.to_string());
        }
        return Authn::Unauthorized("bearer token given but token review is disabled".into());
    }
    if policy.anonymous {
        return Authn::User(User::anonymous());
    }
    Authn::Unauthorized("no credentials (anonymous access is disabled)".into())
}

/// The TokenReview request body.
pub fn token_review_body(token: &str) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    })
}

/// The user of a TokenReview answer, or why the token was not accepted.
pub fn token_review_user(answer: &Value) -> Result<User, String> {
    let status = &answer["status"];
    if status["authenticated"].as_bool() != Some(true) {
        let err = status["error"]
            .as_str()
            .unwrap_or("token not authenticated");
        return Err(err.to_string());
    }
    let u = &status["user"];
    let name = u["username"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err("token review answered without a user name".into());
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let extra = u["extra"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
        .unwrap_or_default();
    Ok(User {
        name,
        uid: u["uid"].as_str().unwrap_or_default().to_string(),
        groups: strings(&u["groups"]),
        extra,
    }
    .with_authenticated_group())
}

/// Token answers by the token's SHA-256 (the token itself is not kept), for `cacheTTL`.
#[derive(Debug)]
pub struct TokenCache {
    cache: TtlCache<[u8; 32], Result<User, String>>,
    ttl: Duration,
}

fn digest(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl TokenCache {
    /// Answers kept for `ttl` (`authentication.webhook.cacheTTL`).
    pub fn new(ttl: Duration) -> Self {
        TokenCache {
            cache: TtlCache::new(1024),
            ttl,
        }
    }

    /// A cached answer for the token.
    pub fn get(&mut self, token: &str, now: Instant) -> Option<Result<User, String>> {
        self.cache.get(&digest(token), now)
    }

    /// Keeps an answer (a review that could not be made is not an answer: do not cache it).
    pub fn put(&mut self, token: &str, answer: Result<User, String>, now: Instant) {
        self.cache.put(digest(token), answer, self.ttl, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn cert(cn: Option<&str>, orgs: &[&str]) -> CertInfo {
        CertInfo {
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
            common_name: cn.map(String::from),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: vec![],
            ip_addresses: vec![],
        }
    }

    const SECURE: AuthnPolicy = AuthnPolicy {
        token_webhook: true,
        anonymous: false,
    };

    #[test]
    fn certificate_user_and_groups() {
        let d = decide(
            &PeerCert::Verified(cert(Some("kube-apiserver-kubelet-client"), &["a"])),
            Some("Bearer ignored"),
            SECURE,
        );
        let Authn::User(u) = d else { panic!("{d:?}") };
        assert_eq!(u.name, "kube-apiserver-kubelet-client");
        assert_eq!(u.groups, ["a", AUTHENTICATED]);
        assert!(matches!(
            decide(&PeerCert::Verified(cert(None, &[])), None, SECURE),
            Authn::Unauthorized(_)
        ));
    }

    #[test]
    fn a_rejected_certificate_is_401_even_with_a_token() {
        let d = decide(
            &PeerCert::Rejected("unknown issuer".into()),
            Some("Bearer t"),
            SECURE,
        );
        assert!(matches!(d, Authn::Unauthorized(m) if m.contains("unknown issuer")));
    }

    #[test]
    fn tokens_and_anonymous_follow_the_policy() {
        assert_eq!(
            decide(&PeerCert::None, Some("Bearer abc"), SECURE),
            Authn::ReviewToken("abc".into())
        );
        let no_webhook = AuthnPolicy {
            token_webhook: false,
            anonymous: true,
        };
        assert!(matches!(
            decide(&PeerCert::None, Some("Bearer abc"), no_webhook),
            Authn::Unauthorized(_)
        ));
        assert_eq!(
            decide(&PeerCert::None, None, no_webhook),
            Authn::User(User::anonymous())
        );
        // Anonymous is off by default: no credentials → 401.
        assert!(matches!(
            decide(&PeerCert::None, Some("Basic Zm9v"), SECURE),
            Authn::Unauthorized(_)
        ));
        assert_eq!(bearer_token("bearer  x "), Some("x"));
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn token_review_answers() {
        let ok = json!({"status": {"authenticated": true, "user": {
            "username": "system:serviceaccount:default:sa", "uid": "u1",
            "groups": ["system:serviceaccounts"], "extra": {"k": ["v"]}}}});
        let u = token_review_user(&ok).unwrap();
        assert_eq!(u.name, "system:serviceaccount:default:sa");
        assert_eq!(u.groups, ["system:serviceaccounts", AUTHENTICATED]);
        assert_eq!(u.extra["k"], ["v"]);
        let no = json!({"status": {"authenticated": false, "error": "expired"}});
        assert_eq!(token_review_user(&no), Err("expired".into()));
        assert!(token_review_user(&json!({})).is_err());
        assert_eq!(token_review_body("t")["spec"]["token"], "t");
    }

    #[test]
    fn token_answers_are_cached_for_the_ttl() {
        let t0 = Instant::now();
        let mut c = TokenCache::new(Duration::from_secs(120));
        c.put("tok", Err("no".into()), t0);
        assert_eq!(
            c.get("tok", t0 + Duration::from_secs(119)),
            Some(Err("no".into()))
        );
        assert_eq!(c.get("tok", t0 + Duration::from_secs(120)), None);
        assert_eq!(c.get("other", t0), None);
    }
}
