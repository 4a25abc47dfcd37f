//! Pods from the API server: the pod watch of this node, admission into the desired set, the
//! flash copy for offline autonomy, pod status reports, deletion confirmation and mirror pods
//! for static pods.
//!
//! Threads: the watch runs a blocking [`ListWatch`] on a thread of its own and forwards events
//! over a channel; a writer thread sends everything the node tells the server (status PATCHes,
//! final DELETEs, mirror pods, token refreshes, Events through the client-go style correlator
//! in `eventcorrelator`) from a latest-wins queue, so an outage leaves at
//! most one pending request per object and catches up with one request each. The agent loop
//! owns [`ApiSide`] and is the only place that touches the engine. This module does not talk to
//! the runtime and never reads the status subresource.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{
    ApiError, Backoff, BackoffConfig, Client, ClientConfig, Informer, InformerConfig,
    InformerEvent, Kubeconfig, ListParams, ListWatch, XorShift64,
};
use crate::config::AgentConfig;
use crate::k8s::pod::Pod;
use crate::k8s::status::DeleteOptions;
use crate::manifest::identity::spec_hash;
use crate::reconcile::{PodPhase, PodStatus};
use crate::runtime::spec::HostFacts;
use crate::runtime::volumes::VolumeManager;
use crate::store::{RecordKind, Store};

use super::apivolumes::{ApiVolumes, Refresh, TokenKey};
use super::eventcorrelator::{Correlated, CorrelatorConfig, EventCorrelator};
use super::podevents::{EventRecorder, PodEvent};
use super::podstatus::{build_status, prune, HostAddrs, ReportClock, StatusMemory};
use super::AgentError;
use crate::k8s::events::Event;

/// The annotation that marks a mirror pod; its value is the static pod's config hash.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// How long boot waits for the first pod list before deciding the API is unreachable.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Period of the token refresh check.
const TOKEN_CHECK: Duration = Duration::from_secs(5);
/// Runtime name in container IDs.
const RUNTIME: &str = "containerd";

/// What the pod watch reports to the agent loop.
#[derive(Debug, Clone)]
pub enum ApiEvent {
    /// The complete set of this node's pods after a (re-)list.
    Resync(Vec<Pod>),
    /// A pod was added or changed.
    Applied(Pod),
    /// A pod is gone from the server.
    Deleted(Pod),
    /// The first list failed: the API server cannot be reached now.
    Unreachable,
}

/// What the writer thread reports back.
#[derive(Debug, Clone)]
pub enum Report {
    /// A token of this pod was refreshed: re-run its volume preparation.
    TokenRefreshed(String),
}

/// An API pod as kept in the flash store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredApiPod {
    /// The pod as last admitted (status dropped).
    pub pod: Pod,
    /// Hash of its spec.
    pub spec_hash: String,
}

/// Whether `pod` is a mirror pod (never run: it only shows a static pod to the cluster).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.contains_key(MIRROR_ANNOTATION)
}

fn lock_set(m: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a pod has volumes whose content comes from the API or the pod's metadata and may
/// change while it runs (configMap, secret, downward API, projected).
fn has_live_volumes(pod: &Pod) -> bool {
    // CSI volumes too: a CSIDriver with requiresRepublish is published again at each refresh
    // (the others cost a look at the mount table).
    pod.spec.volumes.iter().any(|v| {
        v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some()
            || v.csi.is_some()
            || v.persistent_volume_claim.is_some()
    })
}

/// What the node keeps of a mirror pod seen at the server: (config hash, UID). A mirror pod
/// being deleted counts as having no hash, so it is replaced: the kubelet deletes a mirror
/// pod that has a deletion timestamp at once (grace 0, UID precondition) and creates it anew.
fn mirror_entry(pod: &Pod) -> (String, String) {
    let hash = if pod.metadata.deletion_timestamp.is_some() {
        String::new()
    } else {
        pod.metadata
            .annotations
            .get(MIRROR_ANNOTATION)
            .cloned()
            .unwrap_or_default()
    };
    (hash, pod.metadata.uid.clone())
}

fn terminal(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// The set of API pods admitted on this node (sans-I/O apart from the store it is handed).
#[derive(Debug, Default)]
pub struct ApiPods {
    /// Admitted pods by UID.
    pub pods: BTreeMap<String, StoredApiPod>,
    /// Mirror pods seen at the server: `namespace/name` → (config hash, UID).
    pub mirrors: BTreeMap<String, (String, String)>,
    /// A list has been seen since boot.
    pub synced: bool,
    /// Admitted pods whose record is not written yet (see [`ApiPods::store_pending`]).
    unstored: BTreeSet<String>,
}

/// What one event changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// The desired pod set changed.
    pub desired: bool,
    /// A mirror pod appeared or went.
    pub mirrors: bool,
}

impl ApiPods {
    /// The API pods kept in the flash store by an earlier run.
    pub fn stored(store: &mut Store) -> Vec<StoredApiPod> {
        let records = match store.list(RecordKind::ApiPod) {
            Ok(r) => r,
            Err(e) => {
                log::error!("store: listing API pods: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (key, bytes) in records {
            match serde_json::from_slice::<StoredApiPod>(&bytes) {
                Ok(p) => out.push(p),
                Err(e) => log::warn!("store record API pod {key}: not a pod ({e}); ignored"),
            }
        }
        out
    }

    /// Admits the stored pods as they were (offline boot).
    pub fn admit_stored(&mut self, stored: Vec<StoredApiPod>) {
        for p in stored {
            self.pods.insert(p.pod.metadata.uid.clone(), p);
        }
    }

    fn admit(&mut self, mut pod: Pod) -> bool {
        let uid = pod.metadata.uid.clone();
        if uid.is_empty() {
            return false;
        }
        if terminal(&pod) && !self.pods.contains_key(&uid) {
            return false;
        }
        pod.status = None;
        let hash = spec_hash(&pod.spec);
        let changed_spec = self.pods.get(&uid).map(|p| p.spec_hash.as_str()) != Some(&hash);
        let changed = self.pods.get(&uid).map(|p| &p.pod) != Some(&pod);
        let sp = StoredApiPod {
            pod,
            spec_hash: hash,
        };
        if changed_spec || (changed && sp.pod.metadata.deletion_timestamp.is_some()) {
            self.unstored.insert(uid.clone());
        }
        self.pods.insert(uid, sp);
        changed
    }

    /// Writes the records of pods admitted or changed since the last call. The agent calls it
    /// once their runtime calls are on their way, so the flash write is not on a pod's start
    /// path; only a crash in that window loses the record, and the next list brings it back.
    pub fn store_pending(&mut self, store: &mut Store) {
        for uid in std::mem::take(&mut self.unstored) {
            let Some(sp) = self.pods.get(&uid) else {
                continue;
            };
            match serde_json::to_vec(sp) {
                Ok(bytes) => {
                    if let Err(e) = store.put(RecordKind::ApiPod, &uid, &bytes) {
                        super::kubelet::store_failed(&format!("API pod {}", sp.pod.key()), &e);
                    }
                }
                Err(e) => log::error!("encode API pod {}: {e}", sp.pod.key()),
            }
        }
    }

    fn forget(&mut self, uid: &str, store: &mut Store) -> bool {
        self.unstored.remove(uid);
        if let Err(e) = store.delete(RecordKind::ApiPod, uid) {
            super::kubelet::store_failed(&format!("delete API pod {uid}"), &e);
        }
        self.pods.remove(uid).is_some()
    }

    /// Applies one watch event. A pod that went is deleted from the store at once; one whose
    /// spec changed is written by the next [`ApiPods::store_pending`].
    pub fn apply(&mut self, ev: ApiEvent, store: &mut Store) -> Changed {
        let mut ch = Changed::default();
        match ev {
            ApiEvent::Unreachable => {}
            ApiEvent::Applied(pod) => {
                if is_mirror(&pod) {
                    let entry = mirror_entry(&pod);
                    ch.mirrors = self.mirrors.insert(pod.key(), entry.clone()) != Some(entry);
                } else {
                    ch.desired = self.admit(pod);
                }
            }
            ApiEvent::Deleted(pod) => {
                if is_mirror(&pod) {
                    // Only this very mirror: its replacement may already be known.
                    let key = pod.key();
                    if self
                        .mirrors
                        .get(&key)
                        .is_some_and(|(_, uid)| *uid == pod.metadata.uid)
                    {
                        ch.mirrors = self.mirrors.remove(&key).is_some();
                    }
                } else {
                    ch.desired = self.forget(&pod.metadata.uid, store);
                }
            }
            ApiEvent::Resync(list) => {
                self.synced = true;
                let mut mirrors = BTreeMap::new();
                let mut seen = BTreeSet::new();
                for pod in list {
                    if is_mirror(&pod) {
                        mirrors.insert(pod.key(), mirror_entry(&pod));
                        continue;
                    }
                    seen.insert(pod.metadata.uid.clone());
                    ch.desired |= self.admit(pod);
                }
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|u| !seen.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    ch.desired |= self.forget(&uid, store);
                }
                // Records of pods neither admitted nor listed (e.g. not admitted at boot).
                for key in store.keys(RecordKind::ApiPod) {
                    if !self.pods.contains_key(&key) {
                        let _ = store.delete(RecordKind::ApiPod, &key);
                    }
                }
                ch.mirrors = mirrors != self.mirrors;
                self.mirrors = mirrors;
            }
        }
        ch
    }
}

/// Builds the API client from the node's kubeconfig (`--kubeconfig`, or the one TLS bootstrap
/// writes under the root dir). `None` when the node runs standalone, or while a bootstrap is
/// still waiting for its certificate: the agent then starts the API side later.
pub fn client(cfg: &AgentConfig) -> Result<Option<Client>, AgentError> {
    if cfg.kubeconfig.is_none() && cfg.bootstrap_kubeconfig.is_none() {
        return Ok(None);
    }
    let path = crate::node::bootstrap::kubeconfig_path(cfg);
    if !path.exists() && cfg.bootstrap_kubeconfig.is_some() {
        return Ok(None);
    }
    let cluster = Kubeconfig::load(&path, None)
        .map_err(|e| AgentError::Config(format!("kubeconfig {}: {e}", path.display())))?;
    let client = Client::new(&cluster, ClientConfig::default())
        .map_err(|e| AgentError::Config(format!("API client: {e}")))?;
    Ok(Some(client))
}

/// Starts the pod watch of `node` on its own thread.
pub fn spawn_watch(
    client: Client,
    node: &str,
    tx: smol::channel::Sender<ApiEvent>,
) -> Result<(), AgentError> {
    let params = ListParams::fields(&format!("spec.nodeName={node}"));
    let informer = Informer::new(InformerConfig::default(), |p: &Pod| &p.metadata);
    let mut lw = ListWatch::new(client, "/api/v1/pods", params, informer);
    std::thread::Builder::new()
        .name("pod-watch".into())
        .spawn(move || {
            let mut synced = false;
            let mut told = false;
            loop {
                let mut sleep = |d: Duration| {
                    if !synced && !told {
                        told = true;
                        if tx.send_blocking(ApiEvent::Unreachable).is_err() {
                            return false;
                        }
                    }
                    let end = Instant::now() + d;
                    while Instant::now() < end {
                        if tx.is_closed() {
                            return false;
                        }
                        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(200)));
                    }
                    !tx.is_closed()
                };
                let Some(ev) = lw.next_event(&mut sleep) else {
                    return;
                };
                // Pods go to the agent at once: what their volumes need is fetched while the
                // runtime creates their sandboxes.
                let out = match ev {
                    InformerEvent::Resync(pods) => {
                        synced = true;
                        ApiEvent::Resync(pods)
                    }
                    InformerEvent::Applied(p) => ApiEvent::Applied(p),
                    InformerEvent::Deleted(p) => ApiEvent::Deleted(p),
                };
                if tx.send_blocking(out).is_err() {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| AgentError::Config(format!("starting the pod watch thread: {e}")))
}

/// One request the node owes the server.
#[derive(Debug, Clone)]
pub enum Job {
    /// Merge-PATCH `pods/NAME/status`.
    Status {
        /// Namespace.
        ns: String,
        /// Pod name.
        name: String,
        /// The patch body.
        body: Value,
    },
    /// Final DELETE (grace 0, UID precondition) once the pod's containers are gone.
    ConfirmDelete {
        /// Namespace.
        ns: String,
        /// Pod name.
        name: String,
        /// Pod UID.
        uid: String,
    },
    /// Make the mirror pod of a static pod exist with this config hash.
    Mirror {
        /// The static pod.
        pod: Box<Pod>,
        /// Its config hash.
        hash: String,
        /// UID of an outdated mirror pod to delete first.
        replace: Option<String>,
    },
    /// Remove a mirror pod whose static pod is gone.
    DeleteMirror {
        /// Namespace.
        ns: String,
        /// Pod name.
        name: String,
        /// Its UID.
        uid: String,
    },
    /// Refresh a service account token.
    Token(TokenKey),
    /// Record a pod Event (advisory: dropped on failure).
    Event(Box<PodEvent>, u64),
}

impl Job {
    fn key(&self) -> String {
        match self {
            Job::Status { ns, name, .. } => format!("status/{ns}/{name}"),
            Job::ConfirmDelete { uid, .. } => format!("delete/{uid}"),
            Job::Mirror { pod, .. } => format!("mirror/{}", pod.key()),
            Job::DeleteMirror { ns, name, .. } => format!("mirror/{ns}/{name}"),
            Job::Token(k) => format!("token/{}/{}/{}", k.uid, k.audience, k.expiration),
            Job::Event(_, seq) => format!("zevent/{seq:020}"),
        }
    }
}

#[derive(Default)]
struct Queue {
    jobs: BTreeMap<String, Job>,
    hold_until: Option<Instant>,
    stop: bool,
}

/// The writer: a latest-wins queue drained by one thread.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<(Mutex<Queue>, Condvar)>,
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

enum Outcome {
    Done,
    Retry(Option<Duration>),
}

fn outcome<T>(what: &str, r: Result<T, ApiError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) if e.is_retryable() => {
            log::debug!("{what}: {e}; will retry");
            Outcome::Retry(e.retry_after)
        }
        Err(e) => {
            log::warn!("{what}: {e}");
            Outcome::Done
        }
    }
}

struct WriterThread {
    client: Client,
    correlator: EventCorrelator,
    node: String,
    node_uid: Option<String>,
    volumes: Arc<ApiVolumes>,
    reports: smol::channel::Sender<Report>,
}

impl WriterThread {
    fn run(&mut self, job: &Job) -> Outcome {
        match job {
            Job::Status { ns, name, body } => {
                let path = format!("/api/v1/namespaces/{ns}/pods/{name}/status");
                outcome(
                    &format!("status of pod {ns}/{name}"),
                    self.client.patch_merge::<Value, Value>(&path, body),
                )
            }
            Job::ConfirmDelete { ns, name, uid } => self.delete_exact("pod", ns, name, uid),
            Job::DeleteMirror { ns, name, uid } => self.delete_exact("mirror pod", ns, name, uid),
            Job::Mirror { pod, hash, replace } => self.mirror(pod, hash, replace.as_deref()),
            Job::Event(ev, _) => {
                self.send_event(ev);
                Outcome::Done
            }
            Job::Token(k) => match self.volumes.refresh(k) {
                Refresh::Refreshed => {
                    let _ = self
                        .reports
                        .send_blocking(Report::TokenRefreshed(k.uid.clone()));
                    Outcome::Done
                }
                Refresh::Retry => Outcome::Retry(None),
                Refresh::Dropped => Outcome::Done,
            },
        }
    }

    /// Sends one event through the correlator: a new object, a PATCH of the earlier one
    /// (re-created should it be gone), or nothing when the object's events are rate-limited.
    /// Events are advisory: a failure is logged and the event dropped.
    fn send_event(&mut self, ev: &PodEvent) {
        let collection = format!("/api/v1/namespaces/{}/events", ev.namespace);
        let sent = match self
            .correlator
            .correlate(ev.to_event(&self.node), Instant::now())
        {
            Correlated::Skip => return,
            Correlated::Create(e) => self.client.create::<_, Event>(&collection, &e),
            Correlated::Patch { mut event, patch } => {
                let path = format!("{collection}/{}", event.metadata.name);
                match self.client.patch_strategic::<_, Event>(&path, &patch) {
                    Err(e) if e.is_not_found() => {
                        event.metadata.resource_version.clear();
                        self.client.create::<_, Event>(&collection, &event)
                    }
                    r => r,
                }
            }
        };
        match sent {
            Ok(server) => self.correlator.sent(&server),
            Err(e) => log::debug!(
                "event {} for pod {}/{}: {e}",
                ev.reason,
                ev.namespace,
                ev.name
            ),
        }
    }

    /// The final DELETE of pod `ns/name` with a UID precondition: done when it is gone or
    /// already replaced by a pod of another UID.
    fn delete_exact(&self, what: &str, ns: &str, name: &str, uid: &str) -> Outcome {
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        let r = self
            .client
            .delete::<Value>(&path, &DeleteOptions::confirm_gone(uid));
        match r {
            Err(e) if e.is_not_found() || e.is_conflict() => Outcome::Done,
            r => outcome(&format!("delete {what} {ns}/{name}"), r),
        }
    }

    /// The node may read only pods bound to it, so what exists comes from the watch
    /// (`replace`), never from a GET of a name that may not exist.
    fn mirror(&mut self, pod: &Pod, hash: &str, replace: Option<&str>) -> Outcome {
        if self.node_uid.is_none() {
            let path = format!("/api/v1/nodes/{}", self.node);
            match self.client.get::<crate::k8s::node::Node>(&path) {
                Ok(n) => self.node_uid = Some(n.metadata.uid),
                // The Node is registered by another part of the agent: wait for it.
                Err(e) => {
                    log::debug!("mirror pods wait for the Node object: {e}");
                    return Outcome::Retry(Some(Duration::from_secs(5)));
                }
            }
        }
        let node_uid = self.node_uid.clone().unwrap_or_default();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}",
            pod.metadata.namespace, pod.metadata.name
        );
        if let Some(uid) = replace {
            let r = self
                .client
                .delete::<Value>(&path, &DeleteOptions::confirm_gone(uid));
            if let Err(e) = r {
                if !e.is_not_found() && !e.is_conflict() {
                    return outcome::<()>(&format!("replace mirror pod {}", pod.key()), Err(e));
                }
            }
        }
        let body = mirror_pod(pod, hash, &self.node, &node_uid);
        let collection = format!("/api/v1/namespaces/{}/pods", pod.metadata.namespace);
        match self.client.create::<Value, Value>(&collection, &body) {
            // Exists already: the watch shows it and a replacement is decided from there.
            Err(e) if e.is_conflict() => Outcome::Done,
            r => outcome(&format!("create mirror pod {}", pod.key()), r),
        }
    }
}

/// The mirror pod of a static pod: same name, labels and spec, annotated with the config hash
/// and owned by the Node.
pub fn mirror_pod(pod: &Pod, hash: &str, node: &str, node_uid: &str) -> Value {
    let mut annotations = pod.metadata.annotations.clone();
    annotations.insert(MIRROR_ANNOTATION.into(), hash.into());
    annotations.insert("kubernetes.io/config.hash".into(), hash.into());
    annotations.insert("kubernetes.io/config.source".into(), "file".into());
    let mut spec = serde_json::to_value(&pod.spec).unwrap_or_else(|_| json!({}));
    spec["nodeName"] = json!(node);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.metadata.name,
            "namespace": pod.metadata.namespace,
            "labels": pod.metadata.labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                "controller": true,
            }],
        },
        "spec": spec,
    })
}

impl Writer {
    /// Starts the writer thread.
    pub fn start(
        client: Client,
        node: &str,
        volumes: Arc<ApiVolumes>,
        reports: smol::channel::Sender<Report>,
    ) -> Result<Writer, AgentError> {
        let w = Writer {
            shared: Arc::new((Mutex::new(Queue::default()), Condvar::new())),
        };
        let shared = w.shared.clone();
        let mut t = WriterThread {
            client,
            correlator: EventCorrelator::new(CorrelatorConfig::default()),
            node: node.to_string(),
            node_uid: None,
            volumes,
            reports,
        };
        std::thread::Builder::new()
            .name("api-writer".into())
            .spawn(move || {
                let mut backoff = Backoff::new(BackoffConfig::default());
                let mut rng = XorShift64::from_entropy();
                loop {
                    let job = {
                        let (m, cv) = &*shared;
                        let mut q = lock(m);
                        loop {
                            if q.stop {
                                return;
                            }
                            let now = Instant::now();
                            let held = q.hold_until.filter(|t| *t > now);
                            if held.is_none() {
                                let first = q.jobs.keys().next().cloned();
                                if let Some(k) = first {
                                    if let Some(job) = q.jobs.remove(&k) {
                                        break job;
                                    }
                                }
                            }
                            let wait = held.map_or(Duration::from_secs(60), |t| t - now);
                            q = match cv.wait_timeout(q, wait) {
                                Ok((g, _)) => g,
                                Err(p) => p.into_inner().0,
                            };
                        }
                    };
                    match t.run(&job) {
                        Outcome::Done => backoff.on_success(Instant::now()),
                        Outcome::Retry(after) => {
                            let now = Instant::now();
                            let delay = backoff.on_failure(now, after, &mut rng);
                            let (m, _) = &*shared;
                            let mut q = lock(m);
                            // A newer request for the same object supersedes this one.
                            q.jobs.entry(job.key()).or_insert(job);
                            q.hold_until = Some(now + delay.max(Duration::from_millis(100)));
                        }
                    }
                }
            })
            .map_err(|e| AgentError::Config(format!("starting the API writer thread: {e}")))?;
        Ok(w)
    }

    /// Queues a job; a pending job for the same object is replaced.
    pub fn push(&self, job: Job) {
        let (m, cv) = &*self.shared;
        lock(m).jobs.insert(job.key(), job);
        cv.notify_one();
    }

    /// Jobs waiting.
    pub fn pending(&self) -> usize {
        lock(&self.shared.0).jobs.len()
    }

    /// Stops the thread after its current request.
    pub fn stop(&self) {
        let (m, cv) = &*self.shared;
        lock(m).stop = true;
        cv.notify_all();
    }
}

/// Everything the agent loop keeps for the API side.
pub struct ApiSide {
    /// Pod watch events.
    pub events: smol::channel::Receiver<ApiEvent>,
    /// Writer reports.
    pub reports: smol::channel::Receiver<Report>,
    /// The volume data source (shared with the executor).
    pub volumes: Arc<ApiVolumes>,
    /// Admitted pods.
    pub pods: ApiPods,
    writer: Writer,
    host: HostFacts,
    /// The node's IPs for pod statuses (`hostIPs`, and `podIPs` of hostNetwork pods).
    host_ips: Vec<String>,
    volume_manager: VolumeManager,
    offline_autonomy: bool,
    memory: BTreeMap<String, StatusMemory>,
    last_sent: BTreeMap<String, Value>,
    confirmed: BTreeSet<String>,
    mirrors_wanted: BTreeMap<String, (Pod, String)>,
    next_token_check: Instant,
    recorder: EventRecorder,
    event_seq: u64,
    /// Pods whose report waits for their runtime calls in flight: since when.
    held: BTreeMap<String, Instant>,
    /// Events of those pods, sent with their report.
    held_events: Vec<PodEvent>,
    /// Running pods' configMap, secret, downward API and projected volumes are rewritten
    /// every `refresh_period` (the kubelet's `syncFrequency`), so updates at the server reach
    /// them; the atomic writer swaps only what changed.
    refresh_period: Duration,
    next_refresh: Instant,
    /// Pods whose volumes are rewritten at the next poll (labels changed, token refreshed).
    refresh_now: BTreeSet<String>,
    /// Pods whose rewrite is running on a worker thread.
    refreshing: Arc<std::sync::Mutex<BTreeSet<String>>>,
}

/// Longest a starting pod's status and events wait for its runtime calls to return: a start
/// takes ~0.1 s, and the writes it would send meanwhile (an intermediate status, Pulled and
/// Created events) compete with the runtime for the node's CPUs; a long image pull still
/// reports after this.
const HOLD_WHILE_ACTING: Duration = Duration::from_secs(1);

impl ApiSide {
    /// Starts the watch and writer threads (None without a kubeconfig).
    pub fn start(
        cfg: &AgentConfig,
        node: &str,
        host: HostFacts,
    ) -> Result<Option<ApiSide>, AgentError> {
        let Some(client) = client(cfg)? else {
            return Ok(None);
        };
        let volumes = Arc::new(ApiVolumes::new(
            client.clone(),
            Some(cfg.root_dir.join("api-volume-data.json")),
            cfg.sync_frequency,
        ));
        let (etx, erx) = smol::channel::unbounded();
        let (rtx, rrx) = smol::channel::unbounded();
        spawn_watch(client.clone(), node, etx)?;
        let writer = Writer::start(client, node, volumes.clone(), rtx)?;
        log::info!("API pods: watching pods bound to node {node}");
        Ok(Some(ApiSide {
            events: erx,
            reports: rrx,
            volumes,
            pods: ApiPods::default(),
            writer,
            host,
            host_ips: crate::node::register::host_ips(
                &cfg.node_ips,
                crate::node::register::detect_node_ip(),
            )
            .iter()
            .map(|ip| ip.to_string())
            .collect(),
            volume_manager: VolumeManager::new(cfg.root_dir.join("pods")),
            offline_autonomy: cfg.offline_autonomy,
            memory: BTreeMap::new(),
            last_sent: BTreeMap::new(),
            confirmed: BTreeSet::new(),
            held: BTreeMap::new(),
            held_events: Vec::new(),
            mirrors_wanted: BTreeMap::new(),
            next_token_check: Instant::now() + TOKEN_CHECK,
            refresh_period: cfg.sync_frequency.max(Duration::from_secs(1)),
            next_refresh: Instant::now() + cfg.sync_frequency,
            refresh_now: BTreeSet::new(),
            refreshing: Arc::default(),
            recorder: EventRecorder::new(Instant::now()),
            event_seq: 0,
        }))
    }

    /// Waits (bounded) for the first list, so running API pods are not taken for orphans at
    /// boot; if the API is unreachable, admits the pods kept in flash (offline autonomy).
    pub async fn settle(&mut self, store: &mut Store) {
        use smol::future::FutureExt;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let ev = async { self.events.recv().await.ok() }
                .or(async {
                    smol::Timer::at(deadline).await;
                    None
                })
                .await;
            match ev {
                Some(ApiEvent::Unreachable) | None => {
                    self.go_offline(store);
                    return;
                }
                Some(ev @ ApiEvent::Resync(_)) => {
                    self.on_event(ev, store);
                    return;
                }
                Some(ev) => {
                    self.on_event(ev, store);
                }
            }
        }
    }

    fn go_offline(&mut self, store: &mut Store) {
        if self.pods.synced {
            return;
        }
        if !self.offline_autonomy {
            log::warn!("API server unreachable at boot; offline autonomy is off: no API pods");
            return;
        }
        let stored = ApiPods::stored(store);
        log::info!(
            "API server unreachable at boot: starting {} API pod(s) from the flash store",
            stored.len()
        );
        for p in &stored {
            self.memory
                .entry(p.pod.metadata.uid.clone())
                .or_insert_with(|| StatusMemory::from_server(&p.pod));
        }
        self.pods.admit_stored(stored);
        self.recorder.set_pods(self.event_pods());
    }

    fn event_pods(&self) -> BTreeMap<String, (String, String)> {
        self.pods
            .pods
            .iter()
            .map(|(u, p)| {
                let m = &p.pod.metadata;
                (u.clone(), (m.namespace.clone(), m.name.clone()))
            })
            .collect()
    }

    /// The engine's events since the last call (those of API pods become Events).
    pub fn record_events(&mut self, events: Vec<crate::reconcile::status::PodEvent>) {
        if !events.is_empty() {
            self.recorder
                .record(Instant::now(), SystemTime::now(), events);
        }
    }

    /// Writes the flash records of pods admitted since the last call.
    pub fn store_pending(&mut self, store: &mut Store) {
        self.pods.store_pending(store);
    }

    /// Applies a watch event; true if the desired pod set changed.
    pub fn on_event(&mut self, ev: ApiEvent, store: &mut Store) -> bool {
        if matches!(ev, ApiEvent::Unreachable) {
            self.go_offline(store);
            return !self.pods.pods.is_empty();
        }
        // Seed status memory from the server's view of newly seen pods.
        // A mirror pod's status is its static pod's: kept under the static pod's UID, which
        // is the mirror's config hash.
        let seed = |p: &Pod, mem: &mut BTreeMap<String, StatusMemory>| {
            let key = if is_mirror(p) {
                mirror_entry(p).0
            } else {
                p.metadata.uid.clone()
            };
            if !key.is_empty() {
                mem.entry(key)
                    .or_insert_with(|| StatusMemory::from_server(p));
            }
        };
        match &ev {
            ApiEvent::Applied(p) => {
                seed(p, &mut self.memory);
                self.note_metadata(p);
            }
            ApiEvent::Resync(list) => list.iter().for_each(|p| {
                seed(p, &mut self.memory);
                self.note_metadata(p);
            }),
            _ => {}
        }
        let ch = self.pods.apply(ev, store);
        let live = &self.pods.pods;
        // Static pods report onto their mirror pods: their memory is kept by static UID,
        // what was sent by mirror UID.
        let statics: BTreeSet<&str> = self
            .mirrors_wanted
            .values()
            .map(|(_, h)| h.as_str())
            .chain(self.pods.mirrors.values().map(|(h, _)| h.as_str()))
            .collect();
        let mirrors: BTreeSet<&str> = self
            .pods
            .mirrors
            .values()
            .map(|(_, u)| u.as_str())
            .collect();
        self.memory
            .retain(|u, _| live.contains_key(u) || statics.contains(u.as_str()));
        self.last_sent
            .retain(|u, _| live.contains_key(u) || mirrors.contains(u.as_str()));
        self.confirmed.retain(|u| live.contains_key(u));
        let uids: BTreeSet<String> = live.keys().cloned().collect();
        self.volumes.retain_pods(&|u| uids.contains(u));
        if ch.mirrors {
            self.sync_mirrors();
        }
        if ch.desired {
            self.recorder.set_pods(self.event_pods());
        }
        ch.desired
    }

    /// A pod whose labels or annotations changed at the server has its downward API files
    /// rewritten at once (they are what those files show).
    fn note_metadata(&mut self, p: &Pod) {
        if let Some(old) = self.pods.pods.get(&p.metadata.uid) {
            let m = &old.pod.metadata;
            if m.labels != p.metadata.labels || m.annotations != p.metadata.annotations {
                self.refresh_now.insert(p.metadata.uid.clone());
            }
        }
    }

    /// Rewrites the API-backed volumes of running pods that are due (all of them every
    /// refresh period, some at once), each on a worker thread: fetching may wait for the
    /// link, and the agent loop must not. A pod with runtime calls in flight waits for the
    /// next turn (its container start prepares the volumes itself).
    fn refresh_volumes(
        &mut self,
        views: &[PodStatus],
        now: Instant,
        acting: &dyn Fn(&str) -> bool,
    ) {
        let all = now >= self.next_refresh;
        if all {
            self.next_refresh = now + self.refresh_period;
        }
        if !all && self.refresh_now.is_empty() {
            return;
        }
        for v in views {
            let due = all || self.refresh_now.contains(&v.uid);
            if !due || v.phase != PodPhase::Running || v.deleting || acting(&v.uid) {
                continue;
            }
            let Some(sp) = self.pods.pods.get(&v.uid) else {
                continue;
            };
            if !has_live_volumes(&sp.pod) || !lock_set(&self.refreshing).insert(v.uid.clone()) {
                continue;
            }
            self.refresh_now.remove(&v.uid);
            let pod = sp.pod.clone();
            let (vm, host, data) = (
                self.volume_manager.clone(),
                self.host.clone(),
                self.volumes.clone(),
            );
            let ip = v.pod_ip.clone().unwrap_or_default();
            let refreshing = self.refreshing.clone();
            smol::unblock(move || {
                if let Err(e) = vm.prepare(&pod, &host, &ip, data.as_ref()) {
                    log::warn!("refreshing volumes: {e}");
                }
                lock_set(&refreshing).remove(&pod.metadata.uid);
            })
            .detach();
        }
        // Pods that went or stopped running need no rewrite any more.
        self.refresh_now
            .retain(|u| views.iter().any(|v| &v.uid == u && !v.deleting));
    }

    /// The admitted pods, for the desired set.
    pub fn desired(&self) -> impl Iterator<Item = (&Pod, &str)> {
        self.pods
            .pods
            .values()
            .map(|p| (&p.pod, p.spec_hash.as_str()))
    }

    /// Tells the API side which static pods exist (`namespace/name` → pod, config hash).
    pub fn set_static_pods<'a>(&mut self, pods: impl Iterator<Item = (&'a Pod, &'a str)>) {
        let wanted: BTreeMap<String, (Pod, String)> = pods
            .map(|(p, h)| (p.key(), (p.clone(), h.to_string())))
            .collect();
        if wanted.keys().eq(self.mirrors_wanted.keys())
            && wanted
                .values()
                .zip(self.mirrors_wanted.values())
                .all(|(a, b)| a.1 == b.1)
        {
            return;
        }
        self.mirrors_wanted = wanted;
        self.sync_mirrors();
    }

    fn sync_mirrors(&mut self) {
        for (key, (pod, hash)) in &self.mirrors_wanted {
            let seen = self.pods.mirrors.get(key);
            if seen.map(|s| &s.0) != Some(hash) {
                self.writer.push(Job::Mirror {
                    pod: Box::new(pod.clone()),
                    hash: hash.clone(),
                    replace: seen.map(|s| s.1.clone()),
                });
            }
        }
        if !self.pods.synced {
            return;
        }
        for (key, (_, uid)) in &self.pods.mirrors {
            if !self.mirrors_wanted.contains_key(key) {
                if let Some((ns, name)) = key.split_once('/') {
                    self.writer.push(Job::DeleteMirror {
                        ns: ns.into(),
                        name: name.into(),
                        uid: uid.clone(),
                    });
                }
            }
        }
    }

    /// After each engine poll: status reports, deletion confirmations, token refreshes. A pod
    /// that is not being deleted and for which `acting` says runtime calls are in flight (a
    /// start) has its report and events held until they return, at most
    /// [`HOLD_WHILE_ACTING`].
    pub fn after_poll(&mut self, views: &[PodStatus], now: Instant, acting: &dyn Fn(&str) -> bool) {
        let clock = ReportClock {
            now,
            now_wall: SystemTime::now(),
        };
        self.held
            .retain(|uid, _| views.iter().any(|v| &v.uid == uid));
        let mut holding = BTreeSet::new();
        for v in views {
            let Some(sp) = self.pods.pods.get(&v.uid) else {
                self.report_mirror(v, clock);
                continue;
            };
            let pod = &sp.pod;
            let mem = self.memory.entry(v.uid.clone()).or_default();
            prune(mem, v, RUNTIME);
            // Only starts are held: a stopping pod's Killing and final status go at once.
            if acting(&v.uid) && !v.deleting {
                let since = *self.held.entry(v.uid.clone()).or_insert(now);
                if now < since + HOLD_WHILE_ACTING {
                    holding.insert(v.uid.clone());
                    continue;
                }
            } else {
                self.held.remove(&v.uid);
            }
            let host = HostAddrs {
                ips: &self.host_ips,
                host_network: pod.spec.host_network,
            };
            let status = build_status(v, host, RUNTIME, clock, mem);
            if self.last_sent.get(&v.uid) != Some(&status) {
                self.writer.push(Job::Status {
                    ns: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    body: json!({ "status": status }),
                });
                self.last_sent.insert(v.uid.clone(), status);
            }
            if pod.metadata.deletion_timestamp.is_some()
                && v.terminated
                && self.confirmed.insert(v.uid.clone())
            {
                self.writer.push(Job::ConfirmDelete {
                    ns: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: v.uid.clone(),
                });
            }
        }
        self.held_events.extend(self.recorder.take());
        let (send, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held_events)
            .into_iter()
            .partition(|e| !holding.contains(&e.uid));
        self.held_events = keep;
        for ev in send {
            self.event_seq += 1;
            self.writer.push(Job::Event(Box::new(ev), self.event_seq));
        }
        if now >= self.next_token_check {
            self.next_token_check = now + TOKEN_CHECK;
            for k in self.volumes.due(now) {
                self.writer.push(Job::Token(k));
            }
        }
        self.refresh_volumes(views, now, acting);
    }

    /// Reports a static pod's status on its mirror pod, as the kubelet does: only onto the
    /// mirror of this very static pod (its config hash) that is not being deleted, with the
    /// mirror's UID as a precondition so a replaced mirror is never written by mistake.
    fn report_mirror(&mut self, v: &PodStatus, clock: ReportClock) {
        let key = format!("{}/{}", v.namespace, v.name);
        let Some((pod, hash)) = self.mirrors_wanted.get(&key) else {
            return;
        };
        let Some((seen_hash, mirror_uid)) = self.pods.mirrors.get(&key) else {
            return;
        };
        if *hash != v.uid || seen_hash != hash {
            return;
        }
        let mem = self.memory.entry(v.uid.clone()).or_default();
        prune(mem, v, RUNTIME);
        let host = HostAddrs {
            ips: &self.host_ips,
            host_network: pod.spec.host_network,
        };
        let status = build_status(v, host, RUNTIME, clock, mem);
        if self.last_sent.get(mirror_uid) == Some(&status) {
            return;
        }
        self.writer.push(Job::Status {
            ns: v.namespace.clone(),
            name: v.name.clone(),
            body: json!({ "metadata": { "uid": mirror_uid }, "status": status }),
        });
        self.last_sent.insert(mirror_uid.clone(), status);
    }

    /// When the loop must wake for the API side next.
    pub fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        self.held
            .values()
            .map(|since| *since + HOLD_WHILE_ACTING)
            .filter(|end| *end > now)
            .fold(self.next_token_check.min(self.next_refresh), Instant::min)
    }

    /// A token of pod `uid` changed: its volumes are rewritten at the next poll (the atomic
    /// writer swaps the new token in).
    pub fn on_report(&mut self, r: Report) {
        match r {
            Report::TokenRefreshed(uid) => {
                if let Some(sp) = self.pods.pods.get(&uid) {
                    log::info!("pod {}: service account token refreshed", sp.pod.key());
                    self.refresh_now.insert(uid);
                }
            }
        }
    }

    /// The start times (`status.startTime`) known for admitted pods, as monotonic instants
    /// relative to `now`: the server's, for pods that were running before an agent restart.
    pub fn active_since(&self, now: Instant) -> Vec<(String, Instant)> {
        let now_wall = SystemTime::now();
        self.pods
            .pods
            .keys()
            .filter_map(|uid| {
                let text = self.memory.get(uid)?.start_time()?;
                let wall = crate::k8s::coordination::parse_time(text)?;
                let ago = now_wall.duration_since(wall).unwrap_or_default();
                Some((uid.clone(), now.checked_sub(ago).unwrap_or(now)))
            })
            .collect()
    }

    /// Requests waiting to be sent (for status output).
    pub fn pending(&self) -> usize {
        self.writer.pending()
    }
}

impl Drop for ApiSide {
    fn drop(&mut self) {
        self.writer.stop();
        self.events.close();
        self.reports.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": "1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": image}]},
            "status": {"phase": "Pending"}
        }))
        .unwrap()
    }

    fn store(name: &str) -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("tinylet-apipods-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Store::open(&dir).unwrap(), dir)
    }

    #[test]
    fn store_written_on_spec_change_only() {
        let (mut st, dir) = store("spec");
        let mut a = ApiPods::default();
        assert!(
            a.apply(ApiEvent::Applied(pod("u1", "p", "x:1")), &mut st)
                .desired
        );
        assert!(
            st.get(RecordKind::ApiPod, "u1").unwrap().is_none(),
            "written after the pod's runtime calls are sent"
        );
        a.store_pending(&mut st);
        let rec = st.get(RecordKind::ApiPod, "u1").unwrap().unwrap();
        // Status churn and resourceVersion bumps: no new record, no desired change.
        let mut p = pod("u1", "p", "x:1");
        p.status = None;
        p.metadata.resource_version = "2".into();
        let ch = a.apply(ApiEvent::Applied(p), &mut st);
        a.store_pending(&mut st);
        assert_eq!(st.get(RecordKind::ApiPod, "u1").unwrap().unwrap(), rec);
        let _ = ch;
        // A spec change rewrites it.
        a.apply(ApiEvent::Applied(pod("u1", "p", "x:2")), &mut st);
        a.store_pending(&mut st);
        assert_ne!(st.get(RecordKind::ApiPod, "u1").unwrap().unwrap(), rec);
        // Resync without it: gone from the set and the store.
        assert!(a.apply(ApiEvent::Resync(vec![]), &mut st).desired);
        assert!(st.get(RecordKind::ApiPod, "u1").unwrap().is_none());
        // Admitted and gone before its record was written: nothing is written.
        a.apply(ApiEvent::Applied(pod("u3", "q", "x:1")), &mut st);
        a.apply(ApiEvent::Deleted(pod("u3", "q", "x:1")), &mut st);
        a.store_pending(&mut st);
        assert!(st.get(RecordKind::ApiPod, "u3").unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mirrors_and_terminal_pods_are_not_run() {
        let (mut st, dir) = store("mirror");
        let mut a = ApiPods::default();
        let mut m = pod("m1", "static-n1", "x:1");
        m.metadata
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "h1".into());
        let ch = a.apply(ApiEvent::Resync(vec![m.clone()]), &mut st);
        assert!(ch.mirrors && !ch.desired);
        assert_eq!(a.mirrors["default/static-n1"].0, "h1");
        let mut done = pod("u2", "done", "x:1");
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        assert!(!a.apply(ApiEvent::Applied(done), &mut st).desired);
        assert!(a.pods.is_empty());
        assert!(a.apply(ApiEvent::Deleted(m), &mut st).mirrors);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A mirror pod being deleted is stale: its entry has no hash, so the static pod's mirror
    /// is replaced (deleted at once, then created anew) as the kubelet does.
    #[test]
    fn terminating_mirror_is_stale() {
        let (mut st, dir) = store("mirrordel");
        let mut a = ApiPods::default();
        let mut m = pod("m1", "static-n1", "x:1");
        m.metadata
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "h1".into());
        a.apply(ApiEvent::Applied(m.clone()), &mut st);
        assert_eq!(a.mirrors["default/static-n1"], ("h1".into(), "m1".into()));
        m.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        let ch = a.apply(ApiEvent::Applied(m.clone()), &mut st);
        assert!(ch.mirrors && !ch.desired);
        assert_eq!(a.mirrors["default/static-n1"], (String::new(), "m1".into()));
        a.apply(ApiEvent::Resync(vec![m]), &mut st);
        assert_eq!(a.mirrors["default/static-n1"].0, "");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn stored_pods_come_back() {
        let (mut st, dir) = store("offline");
        let mut a = ApiPods::default();
        a.apply(ApiEvent::Applied(pod("u1", "p", "x:1")), &mut st);
        a.store_pending(&mut st);
        let stored = ApiPods::stored(&mut st);
        assert_eq!(stored.len(), 1);
        let mut b = ApiPods::default();
        b.admit_stored(stored);
        assert_eq!(b.pods["u1"].spec_hash, a.pods["u1"].spec_hash);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn mirror_pod_shape() {
        let p = pod("s1", "web-n1", "x:1");
        let m = mirror_pod(&p, "h", "n1", "nuid");
        assert_eq!(m["metadata"]["annotations"][MIRROR_ANNOTATION], "h");
        assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(m["metadata"]["ownerReferences"][0]["uid"], "nuid");
        assert_eq!(m["spec"]["nodeName"], "n1");
    }
}
