//! Data of API-backed volumes (configMap, secret, projected serviceAccountToken) for the
//! runtime's volume writer, through a cache.
//!
//! Owns the cache and the requests that fill it: GET of the configMaps and secrets a pod
//! references (the node may read only those) and TokenRequest for bound service account
//! tokens. Tokens are due for refresh at 80% of their life; the agent loop asks which are due
//! and re-runs volume preparation after a refresh so the atomic writer swaps them in. A cached
//! value outlives a failed refresh, so a link that drops never empties a volume. ConfigMaps are
//! also kept in one file (mode 0600, in the private root dir) so that pods can start from flash
//! after a reboot with the API unreachable. Secrets and service account tokens are never
//! written to disk: a token lives in memory and in its pod's tmpfs volume only (the volume
//! writer reuses that one while the API cannot give a new one). It must not write volume files
//! (the runtime's volume manager does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::api::{ApiError, Client};
use crate::k8s::configmap::{ByteString, ConfigMap, Secret};
use crate::k8s::pod::Pod;
use crate::k8s::service::Service;
use crate::runtime::env::{MASTER_NAMESPACE, MASTER_SERVICE};
use crate::runtime::volumes::VolumeData;

/// ConfigMaps and secrets are re-read after this long unless the agent sets another age (its
/// `syncFrequency`, the period at which running pods' volumes are refreshed).
pub const OBJECT_TTL: Duration = Duration::from_secs(60);
/// After a failed request, cache misses do not block on the link for this long.
const OFFLINE_HOLD: Duration = Duration::from_secs(10);
/// How long a reader waits for another thread's fetch of the same object before fetching it
/// itself.
const FETCH_WAIT: Duration = Duration::from_secs(15);

type Data = BTreeMap<String, Vec<u8>>;

/// Identity of one token: a pod instance, an audience and a lifetime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct TokenKey {
    /// Pod UID the token is bound to.
    pub uid: String,
    /// Audience ("" for the API server's default).
    pub audience: String,
    /// Requested lifetime in seconds.
    pub expiration: i64,
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    fetched: Instant,
    lifetime: Duration,
    pod: Pod,
}

#[derive(Default)]
struct Cache {
    config_maps: BTreeMap<(String, String), (Data, Instant)>,
    secrets: BTreeMap<(String, String), (Data, Instant)>,
    tokens: BTreeMap<TokenKey, Token>,
    offline_until: Option<Instant>,
    /// Objects and tokens some thread is fetching now.
    inflight: BTreeSet<String>,
    /// Services by namespace (or `namespace/name` for one), for Service link variables (see
    /// [`ApiVolumes::cached_services`]).
    services: BTreeMap<String, (Vec<Service>, Instant)>,
}

/// Result of a token refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A new token is cached.
    Refreshed,
    /// The link failed: try again later.
    Retry,
    /// Nothing to refresh any more.
    Dropped,
}

/// The API-backed [`VolumeData`] source.
pub struct ApiVolumes {
    client: Client,
    cache: Mutex<Cache>,
    /// How long a fetched configMap or secret is served before it is read again.
    ttl: Duration,
    keep: Option<PathBuf>,
    /// Fetched data not yet written to `keep` (see [`ApiVolumes::keep_fetched`]).
    unkept: std::sync::atomic::AtomicBool,
    /// Signalled whenever a fetch ends (see [`ApiVolumes::claim`]).
    fetch_done: Condvar,
    /// Claims' PersistentVolumes and CSIDriver objects for CSI volumes.
    csi: crate::csi::objects::ApiObjects,
}

/// The right to fetch one object; dropping it lets waiting readers look at the cache again.
struct Claim<'a> {
    owner: &'a ApiVolumes,
    key: Option<String>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.owner.lock().inflight.remove(&key);
            self.owner.fetch_done.notify_all();
        }
    }
}

/// What survives a reboot: configMaps (stale when read back, so they are only used while the
/// API cannot give fresh ones). Never a secret or a token.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Kept {
    config_maps: Vec<(String, String, BTreeMap<String, ByteString>)>,
}

fn encode_kept(c: &Cache) -> Kept {
    Kept {
        config_maps: c
            .config_maps
            .iter()
            .map(|((ns, name), (d, _))| {
                let d = d
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                    .collect();
                (ns.clone(), name.clone(), d)
            })
            .collect(),
    }
}

/// Whether a keep file holds tokens (written by an older version).
fn has_tokens(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("tokens").cloned())
        .is_some()
}

fn config_map_data(cm: ConfigMap) -> Data {
    let mut d: Data = cm
        .data
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    d.extend(cm.binary_data.into_iter().map(|(k, v)| (k, v.0)));
    d
}

fn secret_data(s: Secret) -> Data {
    let mut d: Data = s.data.into_iter().map(|(k, v)| (k, v.0)).collect();
    d.extend(s.string_data.into_iter().map(|(k, v)| (k, v.into_bytes())));
    d
}

/// The TokenRequest body for a token bound to `pod`.
pub fn token_request(pod: &Pod, audience: &str, expiration: i64) -> Value {
    let audiences: Vec<&str> = if audience.is_empty() {
        vec![]
    } else {
        vec![audience]
    };
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1", "kind": "Pod",
                "name": pod.metadata.name, "uid": pod.metadata.uid,
            },
        },
    })
}

/// The service account a pod runs as.
pub fn service_account(pod: &Pod) -> &str {
    if pod.spec.service_account_name.is_empty() {
        "default"
    } else {
        &pod.spec.service_account_name
    }
}

/// Whether a token fetched at `fetched` for `lifetime` is due for refresh at `now` (80%).
pub fn refresh_due(fetched: Instant, lifetime: Duration, now: Instant) -> bool {
    now >= fetched + lifetime.mul_f64(0.8)
}

impl ApiVolumes {
    /// A source reading through `client`; with `keep`, configMaps are also kept in that file
    /// and read back from it now. A file an older version wrote with tokens in it is rewritten
    /// at once without them.
    pub fn new(client: Client, keep: Option<PathBuf>, ttl: Duration) -> Self {
        let mut cache = Cache::default();
        let mut legacy_tokens = false;
        if let Some(path) = &keep {
            if let Ok(bytes) = std::fs::read(path) {
                legacy_tokens = has_tokens(&bytes);
                match serde_json::from_slice::<Kept>(&bytes) {
                    Ok(k) => {
                        let long_ago = Instant::now().checked_sub(ttl).unwrap_or_else(Instant::now);
                        for (ns, name, d) in k.config_maps {
                            let d = d.into_iter().map(|(k, v)| (k, v.0)).collect();
                            cache.config_maps.insert((ns, name), (d, long_ago));
                        }
                    }
                    Err(e) => log::warn!("{}: not volume data ({e}); ignored", path.display()),
                }
            }
        }
        let csi_keep = keep
            .as_ref()
            .map(|p| p.with_file_name(crate::csi::objects::KEEP_FILE));
        // The node's CSINode object is written with the same credentials.
        crate::csi::watcher::set_api_client(client.clone());
        let v = ApiVolumes {
            csi: crate::csi::objects::ApiObjects::new(client.clone(), csi_keep),
            client,
            cache: Mutex::new(cache),
            ttl,
            keep,
            unkept: std::sync::atomic::AtomicBool::new(false),
            fetch_done: Condvar::new(),
        };
        if legacy_tokens {
            v.persist();
        }
        v
    }

    /// Writes the whole cache to the keep file (which covers anything fetched before).
    fn persist(&self) {
        let Some(path) = &self.keep else {
            return;
        };
        self.unkept
            .store(false, std::sync::atomic::Ordering::Release);
        let kept = encode_kept(&self.lock());
        match serde_json::to_vec(&kept) {
            Ok(bytes) => {
                if let Err(e) = crate::store::fs::write_private(path, &bytes) {
                    log::warn!("keeping volume data in {}: {e}", path.display());
                }
            }
            Err(e) => log::warn!("encoding volume data: {e}"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Claims the fetch of `key`. If another thread is fetching it, waits (bounded) for that
    /// fetch to end and returns `None`: the caller reads the cache again. With `wait` false
    /// (the caller already waited once and found nothing) it fetches alongside.
    fn claim(&self, key: String, wait: bool) -> Option<Claim<'_>> {
        let mut c = self.lock();
        if !c.inflight.contains(&key) {
            c.inflight.insert(key.clone());
            return Some(Claim {
                owner: self,
                key: Some(key),
            });
        }
        if !wait {
            return Some(Claim {
                owner: self,
                key: None,
            });
        }
        let deadline = Instant::now() + FETCH_WAIT;
        while c.inflight.contains(&key) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            c = match self.fetch_done.wait_timeout(c, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        None
    }

    fn may_try(&self, now: Instant) -> bool {
        self.lock().offline_until.is_none_or(|t| now >= t)
    }

    fn note(&self, r: &Result<impl Sized, ApiError>) {
        let mut c = self.lock();
        match r {
            Err(e) if e.is_retryable() => {
                c.offline_until = Some(Instant::now() + OFFLINE_HOLD);
            }
            _ => c.offline_until = None,
        }
    }

    fn object(&self, secret: bool, ns: &str, name: &str, mut force: bool) -> Option<Data> {
        let key = (ns.to_string(), name.to_string());
        let gate = format!("{}/{ns}/{name}", if secret { "secret" } else { "cm" });
        let mut waited = false;
        loop {
            let now = Instant::now();
            let cached = {
                let c = self.lock();
                let map = if secret { &c.secrets } else { &c.config_maps };
                map.get(&key).cloned()
            };
            if let Some((d, at)) = &cached {
                if !force && now < *at + self.ttl {
                    return Some(d.clone());
                }
            }
            if !self.may_try(now) {
                return cached.map(|(d, _)| d);
            }
            let Some(_claim) = self.claim(gate.clone(), !waited) else {
                // Another thread just fetched it: that answer is as fresh as a forced one.
                waited = true;
                force = false;
                continue;
            };
            return self.fetch_object(secret, ns, name, key, cached);
        }
    }

    fn fetch_object(
        &self,
        secret: bool,
        ns: &str,
        name: &str,
        key: (String, String),
        cached: Option<(Data, Instant)>,
    ) -> Option<Data> {
        let fetched = if secret {
            let path = format!("/api/v1/namespaces/{ns}/secrets/{name}");
            let r = self.client.get::<Secret>(&path);
            self.note(&r);
            r.map(secret_data)
        } else {
            let path = format!("/api/v1/namespaces/{ns}/configmaps/{name}");
            let r = self.client.get::<ConfigMap>(&path);
            self.note(&r);
            r.map(config_map_data)
        };
        match fetched {
            Ok(d) => {
                let changed = {
                    let mut c = self.lock();
                    let map = if secret {
                        &mut c.secrets
                    } else {
                        &mut c.config_maps
                    };
                    let old = map.insert(key, (d.clone(), Instant::now()));
                    old.map(|o| o.0) != Some(d.clone())
                };
                if changed && !secret {
                    self.unkept
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                Some(d)
            }
            Err(e) => {
                log::warn!("volume data: {e}");
                if e.is_not_found() {
                    // Deleted at the server: the pod's volume follows.
                    let mut c = self.lock();
                    let map = if secret {
                        &mut c.secrets
                    } else {
                        &mut c.config_maps
                    };
                    map.remove(&key);
                    return None;
                }
                cached.map(|(d, _)| d)
            }
        }
    }

    fn fetch_token(&self, pod: &Pod, key: &TokenKey) -> Result<Token, ApiError> {
        let path = format!(
            "/api/v1/namespaces/{}/serviceaccounts/{}/token",
            pod.metadata.namespace,
            service_account(pod)
        );
        let body = token_request(pod, &key.audience, key.expiration);
        let r = self.client.create::<Value, Value>(&path, &body);
        self.note(&r);
        let v = r?;
        let value = v
            .pointer("/status/token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if value.is_empty() {
            return Err(ApiError::new(
                "POST",
                &path,
                crate::api::ApiErrorKind::Decode {
                    what: "TokenRequest".into(),
                    message: "no status.token".into(),
                },
            ));
        }
        let requested = Duration::from_secs(u64::try_from(key.expiration).unwrap_or(3600));
        // The server may shorten the lifetime; trust its expiry when it is sane.
        let lifetime = v
            .pointer("/status/expirationTimestamp")
            .and_then(Value::as_str)
            .and_then(crate::k8s::coordination::parse_time)
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .filter(|d| !d.is_zero() && *d <= requested + Duration::from_secs(60))
            .unwrap_or(requested);
        Ok(Token {
            value,
            fetched: Instant::now(),
            lifetime,
            pod: pod.clone(),
        })
    }

    /// Writes what was fetched since the last write to the keep file, if anything (fetches
    /// only mark the cache unkept: one write covers a pod's whole prefetch).
    fn keep_fetched(&self) {
        if self.unkept.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.persist();
        }
    }

    /// Fetches what `pod`'s volumes and env reference that is not cached yet. The executor
    /// calls it (as [`VolumeData::warm`]) on a worker thread while the runtime creates the
    /// pod's sandbox, so neither the agent loop nor container creation waits for the link.
    /// It reaches the keep file with the caller's [`ApiVolumes::keep_fetched`].
    fn prefetch(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = &pod.metadata.namespace;
        for v in &pod.spec.volumes {
            if let Some(c) = &v.config_map {
                let _ = self.object(false, ns, &c.name, false);
            }
            if let Some(s) = &v.secret {
                let _ = self.object(true, ns, &s.secret_name, false);
            }
            if let Some(p) = &v.projected {
                for src in &p.sources {
                    if let Some(c) = &src.config_map {
                        let _ = self.object(false, ns, &c.name, false);
                    }
                    if let Some(s) = &src.secret {
                        let _ = self.object(true, ns, &s.name, false);
                    }
                    if let Some(t) = &src.service_account_token {
                        let _ = self.token(pod, &t.audience, t.expiration_seconds.unwrap_or(3600));
                    }
                }
            }
        }
        for c in pod.spec.all_containers() {
            for e in &c.env {
                if let Some(src) = &e.value_from {
                    if let Some(r) = &src.config_map_key_ref {
                        let _ = self.object(false, ns, &r.name, false);
                    }
                    if let Some(r) = &src.secret_key_ref {
                        let _ = self.object(true, ns, &r.name, false);
                    }
                }
            }
            for e in &c.env_from {
                if let Some(r) = &e.config_map_ref {
                    let _ = self.object(false, ns, &r.name, false);
                }
                if let Some(r) = &e.secret_ref {
                    let _ = self.object(true, ns, &r.name, false);
                }
            }
        }
    }

    /// Tokens due for refresh at `now`.
    pub fn due(&self, now: Instant) -> Vec<TokenKey> {
        self.lock()
            .tokens
            .iter()
            .filter(|(_, t)| refresh_due(t.fetched, t.lifetime, now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Refreshes one token.
    pub fn refresh(&self, key: &TokenKey) -> Refresh {
        let pod = match self.lock().tokens.get(key) {
            Some(t) => t.pod.clone(),
            None => return Refresh::Dropped,
        };
        match self.fetch_token(&pod, key) {
            Ok(t) => {
                self.lock().tokens.insert(key.clone(), t);
                Refresh::Refreshed
            }
            Err(e) if e.is_retryable() => {
                log::warn!("token refresh for pod {}: {e}", pod.key());
                Refresh::Retry
            }
            Err(e) => {
                // The pod or its service account is gone: the token goes with it.
                log::warn!("token refresh for pod {}: {e}; token dropped", pod.key());
                self.lock().tokens.remove(key);
                Refresh::Dropped
            }
        }
    }

    /// Drops cached tokens of pods no longer admitted.
    pub fn retain_pods(&self, uids: &dyn Fn(&str) -> bool) {
        self.lock().tokens.retain(|k, _| uids(&k.uid));
    }
}

impl VolumeData for ApiVolumes {
    fn link_down(&self) -> bool {
        !self.may_try(Instant::now())
    }

    fn warm(&self, pod: &Pod) {
        self.prefetch(pod);
        self.prefetch_services(pod);
        self.keep_fetched();
    }

    fn services(&self, namespace: &str) -> Vec<Service> {
        self.namespace_services(namespace)
    }

    fn service(&self, namespace: &str, name: &str) -> Option<Service> {
        self.one_service(namespace, name)
    }

    fn persistent_volume(
        &self,
        namespace: &str,
        claim: &str,
    ) -> Result<crate::k8s::storage::PersistentVolume, String> {
        self.csi
            .persistent_volume(namespace, claim, self.link_down())
    }

    fn csi_driver(&self, name: &str) -> Option<crate::k8s::storage::CsiDriver> {
        self.csi.csi_driver(name, self.link_down())
    }

    fn volume_attachment(&self, name: &str) -> Option<crate::k8s::storage::VolumeAttachment> {
        self.csi.volume_attachment(name)
    }

    fn config_map(&self, namespace: &str, name: &str) -> Option<Data> {
        let d = self.object(false, namespace, name, false);
        self.keep_fetched();
        d
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Data> {
        let d = self.object(true, namespace, name, false);
        self.keep_fetched();
        d
    }

    fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: i64,
    ) -> Option<String> {
        let t = self.token(pod, audience, expiration_seconds);
        self.keep_fetched();
        t
    }
}

impl ApiVolumes {
    /// The pod's token for `audience`: the cached one while valid, else a new one, else the
    /// last one while the API cannot give another.
    fn token(&self, pod: &Pod, audience: &str, expiration_seconds: i64) -> Option<String> {
        let key = TokenKey {
            uid: pod.metadata.uid.clone(),
            audience: audience.to_string(),
            expiration: expiration_seconds,
        };
        let gate = format!("token/{}/{}/{}", key.uid, key.audience, key.expiration);
        let mut waited = false;
        let (stale, _claim) = loop {
            let now = Instant::now();
            let stale = {
                let c = self.lock();
                let t = c.tokens.get(&key);
                // A token past its refresh point is still valid until its end; the refresher
                // replaces it, and volume preparation never blocks on the link for it.
                if let Some(t) = t.filter(|t| now < t.fetched + t.lifetime) {
                    return Some(t.value.clone());
                }
                t.map(|t| t.value.clone())
            };
            if !self.may_try(now) {
                // Offline: the last token is better than a pod that cannot start.
                return stale;
            }
            match self.claim(gate.clone(), !waited) {
                Some(c) => break (stale, c),
                None => waited = true,
            }
        };
        match self.fetch_token(pod, &key) {
            Ok(t) => {
                let v = t.value.clone();
                self.lock().tokens.insert(key, t);
                Some(v)
            }
            Err(e) => {
                log::warn!("token for pod {}: {e}", pod.key());
                stale
            }
        }
    }
}

impl ApiVolumes {
    /// Fetches, ahead of container creation, the Services a pod's Service link variables need:
    /// its namespace's when `enableServiceLinks` (default true), and the master service
    /// `default/kubernetes` alone otherwise. Only namespaces that have pods are ever listed.
    fn prefetch_services(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let ns = pod.metadata.namespace.as_str();
        let links = pod.spec.enable_service_links != Some(false);
        if links {
            let _ = self.namespace_services(ns);
        }
        if !(links && ns == MASTER_NAMESPACE) {
            let _ = self.one_service(MASTER_NAMESPACE, MASTER_SERVICE);
        }
    }

    /// The Services of `ns` (one list per namespace per [`OBJECT_TTL`]).
    fn namespace_services(&self, ns: &str) -> Vec<Service> {
        self.cached_services(
            ns.to_string(),
            &format!("/api/v1/namespaces/{ns}/services"),
            true,
        )
    }

    /// One Service (one GET per [`OBJECT_TTL`]); `None` if it does not exist or was never
    /// read.
    fn one_service(&self, ns: &str, name: &str) -> Option<Service> {
        let path = format!("/api/v1/namespaces/{ns}/services/{name}");
        self.cached_services(format!("{ns}/{name}"), &path, false)
            .into_iter()
            .next()
    }

    /// Services under `key` in the cache (a namespace, or `namespace/name` for one Service):
    /// fresh for [`OBJECT_TTL`], the last answer while the API cannot give a new one (a pod
    /// then starts with the Services it saw before), none if it never could. Nodes may read
    /// Services (the Node authorizer's node rules allow get/list/watch on them).
    fn cached_services(&self, key: String, path: &str, list: bool) -> Vec<Service> {
        let gate = format!("services/{key}");
        let mut waited = false;
        loop {
            let now = Instant::now();
            let cached = self.lock().services.get(&key).cloned();
            if let Some((items, at)) = &cached {
                if now < *at + OBJECT_TTL {
                    return items.clone();
                }
            }
            if !self.may_try(now) {
                return cached.map(|(l, _)| l).unwrap_or_default();
            }
            let Some(_claim) = self.claim(gate.clone(), !waited) else {
                waited = true;
                continue;
            };
            let r = if list {
                let r = self
                    .client
                    .list::<Service>(path, &crate::api::ListParams::default());
                self.note(&r);
                r.map(|l| l.items)
            } else {
                let r = self.client.get::<Service>(path);
                self.note(&r);
                match r {
                    Err(e) if e.is_not_found() => Ok(Vec::new()),
                    r => r.map(|s| vec![s]),
                }
            };
            return match r {
                Ok(items) => {
                    self.lock()
                        .services
                        .insert(key, (items.clone(), Instant::now()));
                    items
                }
                Err(e) => {
                    log::warn!("services for pod environments: {e}");
                    cached.map(|(l, _)| l).unwrap_or_default()
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_eighty_percent() {
        let t0 = Instant::now();
        let life = Duration::from_secs(3600);
        assert!(!refresh_due(t0, life, t0 + Duration::from_secs(2879)));
        assert!(refresh_due(t0, life, t0 + Duration::from_secs(2880)));
    }

    #[test]
    fn token_request_binds_the_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u1"},
            "spec": {"containers": [], "serviceAccountName": "sa"}
        }))
        .unwrap();
        let b = token_request(&pod, "", 3607);
        assert_eq!(b["spec"]["expirationSeconds"], 3607);
        assert_eq!(b["spec"]["boundObjectRef"]["uid"], "u1");
        assert_eq!(b["spec"]["audiences"], json!([]));
        assert_eq!(service_account(&pod), "sa");
        let b = token_request(&pod, "vault", 600);
        assert_eq!(b["spec"]["audiences"], json!(["vault"]));
    }

    /// Tokens never reach the keep file: the kubelet keeps them in memory and in the pod's
    /// tmpfs only. A file from an older version that held them is recognised for rewriting.
    #[test]
    fn keep_file_holds_config_maps_and_never_tokens() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u1"},
            "spec": {"containers": []}
        }))
        .unwrap();
        let mut c = Cache::default();
        c.config_maps.insert(
            ("d".into(), "cfg".into()),
            ([("k".to_string(), b"v".to_vec())].into(), Instant::now()),
        );
        c.tokens.insert(
            TokenKey {
                uid: "u1".into(),
                audience: String::new(),
                expiration: 3600,
            },
            Token {
                value: "eyJhbGciOiJSUzI1NiJ9.SECRET-TOKEN.sig".into(),
                fetched: Instant::now(),
                lifetime: Duration::from_secs(3600),
                pod,
            },
        );
        let bytes = serde_json::to_vec(&encode_kept(&c)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("SECRET-TOKEN"), "{text}");
        assert!(!text.contains("u1"), "{text}");
        assert!(text.contains("cfg"), "{text}");
        assert!(!has_tokens(&bytes));
        assert!(has_tokens(br#"{"configMaps":[],"tokens":[]}"#));
        assert!(!has_tokens(b"not json"));
    }

    #[test]
    fn data_conversions() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "data": {"a": "x"}, "binaryData": {"b": "eQ=="}
        }))
        .unwrap();
        let d = config_map_data(cm);
        assert_eq!(d["a"], b"x");
        assert_eq!(d["b"], b"y");
        let s: Secret = serde_json::from_value(json!({"data": {"k": "dg=="}})).unwrap();
        assert_eq!(secret_data(s)["k"], b"v");
    }
}
