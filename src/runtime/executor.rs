//! Carries out the reconcile engine's actions through CRI and reports their results, and turns
//! a CRI relist into the engine's observed model.
//!
//! It keeps only caches of facts that never change for a given runtime object (a container's
//! start/finish times and exit code once known, a sandbox's IP), so a relist costs three list
//! calls plus one status call per container it has not seen before. It decides nothing: what to
//! do and when is the engine's business.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cri::proto::{
    ContainerFilter, CreateContainerRequest, ImageSpec, PodSandboxConfig, PodSandboxFilter,
    PullImageRequest, RunPodSandboxRequest,
};
use crate::cri::{CriClient, CriError};
use crate::k8s::pod::{Container, Pod};
use crate::reconcile::labels;
use crate::reconcile::model::{
    normalize_image, ContainerState, DesiredPod, HttpScheme, Observed, ObservedContainer,
    ObservedSandbox, ProbeHandler, PullPolicy, SandboxState,
};
use crate::reconcile::{Action, ActionKind, ActionResult};
use crate::runtime::cgroups;
use crate::runtime::env;
use crate::runtime::housekeeping::{self, Cleaned, Places};
use crate::runtime::imagegc;
use crate::runtime::probe::{self, HttpProbe, ProbeOutcome};
use crate::runtime::spec::{self, HostFacts};
use crate::runtime::termination;
use crate::runtime::volumes::{VolumeData, VolumeError, VolumeManager};

/// One pod the executor may act for: the API object and the engine's view of it.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub pod: Arc<Pod>,
    pub desired: DesiredPod,
}

#[derive(Debug, Clone, Default)]
struct ContainerFacts {
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    exit_code: Option<i32>,
    reason: Option<String>,
    /// The termination message, read once the container exited.
    message: Option<String>,
    image: String,
    image_ref: String,
    /// Where the runtime writes its log (for removing it with the container).
    log_path: String,
    complete: bool,
}

/// The pod's Service link variables from the Services its data source knows: the pod's
/// namespace's when `enableServiceLinks` (default true), and the master service.
fn service_env(pod: &Pod, data: &dyn VolumeData) -> BTreeMap<String, String> {
    let ns = pod.metadata.namespace.as_str();
    let links = pod.spec.enable_service_links != Some(false);
    let mut services = if links { data.services(ns) } else { Vec::new() };
    if !(links && ns == env::MASTER_NAMESPACE) {
        services.extend(data.service(env::MASTER_NAMESPACE, env::MASTER_SERVICE));
    }
    env::service_env(&services, ns, links)
}

/// A stamp that differs between calls: names one termination message file per instance.
fn unique_stamp() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}")
}

/// Executes actions for the pods it is told about.
pub struct Executor {
    cri: CriClient,
    host: HostFacts,
    volumes: VolumeManager,
    data: RefCell<Arc<dyn VolumeData>>,
    memory_capacity: u64,
    pods: RefCell<BTreeMap<String, PodEntry>>,
    container_facts: RefCell<BTreeMap<String, ContainerFacts>>,
    sandbox_ips: RefCell<BTreeMap<String, Option<String>>>,
    /// Normalised image name → the runtime's reference (imageID), from the last relist.
    image_refs: RefCell<BTreeMap<String, String>>,
    /// Pods whose volumes failed at their last sandbox attempt: their next attempt makes the
    /// volumes first, so a pod waiting for a missing configMap creates no sandboxes.
    volumes_failed: RefCell<BTreeSet<String>>,
    /// Where ended pods leave things (see [`housekeeping`]).
    places: Places,
    /// A pod's last sandbox went: its leftovers may be ready for housekeeping.
    housekeeping_due: Cell<bool>,
    /// A housekeeping pass is running (one at a time).
    housekeeping_running: Cell<bool>,
    /// `podPidsLimit` for pod cgroups (≤ 0: none).
    pod_pids_limit: Cell<i64>,
    /// Where the runtime keeps images (from ImageFsInfo), for the imagefs signal.
    image_fs_mount: RefCell<Option<String>>,
}

/// Why a container could not be created, for the engine's waiting reason.
enum CreateFailure {
    /// Its config cannot be assembled (CreateContainerConfigError).
    Config(String),
    /// A volume cannot be set up (FailedMount).
    Mount(VolumeError),
    /// Anything else (CreateContainerError).
    Other(String),
}

impl From<String> for CreateFailure {
    fn from(m: String) -> Self {
        CreateFailure::Other(m)
    }
}

/// The first configMap or secret a container's env refers to (not optionally) that does not
/// exist, worded as the kubelet's configMap/secret manager reports it: `configmap "NAME" not
/// found` (a missing key in an existing object is reported by `spec::container_env`).
fn missing_env_object(pod: &Pod, c: &Container, data: &dyn VolumeData) -> Option<String> {
    let ns = &pod.metadata.namespace;
    c.env
        .iter()
        .filter(|e| e.value.is_none())
        .filter_map(|e| e.value_from.as_ref())
        .find_map(|src| {
            if let Some(k) = src.config_map_key_ref.as_ref() {
                let missing = k.optional != Some(true) && data.config_map(ns, &k.name).is_none();
                return missing.then(|| format!("configmap \"{}\" not found", k.name));
            }
            let k = src.secret_key_ref.as_ref()?;
            let missing = k.optional != Some(true) && data.secret(ns, &k.name).is_none();
            missing.then(|| format!("secret \"{}\" not found", k.name))
        })
}

/// A volume that cannot be set up, as the engine reports it (a FailedMount event).
fn mount_failed(err: VolumeError) -> ActionResult {
    ActionResult::MountFailed {
        volume: err.volume,
        message: err.reason,
    }
}

/// What an exec probe printed, bounded (an event message, not a log).
fn exec_output(stdout: &[u8], stderr: &[u8]) -> String {
    const MAX: usize = 1024;
    let mut out = stdout.to_vec();
    out.extend_from_slice(stderr);
    out.truncate(MAX);
    String::from_utf8_lossy(&out).into_owned()
}

fn wall(ns: i64) -> Option<SystemTime> {
    (ns > 0).then(|| UNIX_EPOCH + Duration::from_nanos(ns as u64))
}

/// Converts a wall-clock stamp into the monotonic clock the engine uses.
fn to_instant(t: SystemTime, now: Instant, now_wall: SystemTime) -> Instant {
    match now_wall.duration_since(t) {
        Ok(ago) => now.checked_sub(ago).unwrap_or(now),
        Err(e) => now + e.duration(),
    }
}

/// What an image garbage collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageGcReport {
    /// The image filesystem as measured (None: could not be measured).
    pub usage: Option<imagegc::Usage>,
    /// Bytes the pass had to free to reach the low threshold.
    pub to_free: u64,
    /// Bytes freed.
    pub freed: u64,
    /// Ids of the removed images.
    pub removed: Vec<String>,
}

/// The sandbox image of the runtime, from its verbose status (containerd reports its CRI
/// config as JSON under `config`, with `sandboxImage`).
fn sandbox_image(info: &BTreeMap<String, String>) -> Option<String> {
    let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
    config
        .get("sandboxImage")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(String::from)
}

impl Executor {
    /// An executor over `cri`; volumes live under `pods_root`.
    pub fn new(
        cri: CriClient,
        host: HostFacts,
        pods_root: PathBuf,
        data: Arc<dyn VolumeData>,
        memory_capacity: u64,
    ) -> Self {
        let places = Places {
            pods_root: pods_root.clone(),
            logs_root: PathBuf::from(&host.pod_logs_root),
            cgroup_root: host.cgroup_root.clone(),
            cgroup_fs: PathBuf::from("/sys/fs/cgroup"),
        };
        Executor {
            cri,
            host,
            places,
            housekeeping_due: Cell::new(false),
            housekeeping_running: Cell::new(false),
            pod_pids_limit: Cell::new(-1),
            image_fs_mount: RefCell::new(None),
            volumes: VolumeManager::new(pods_root),
            data: RefCell::new(data),
            memory_capacity,
            pods: RefCell::new(BTreeMap::new()),
            container_facts: RefCell::new(BTreeMap::new()),
            sandbox_ips: RefCell::new(BTreeMap::new()),
            image_refs: RefCell::new(BTreeMap::new()),
            volumes_failed: RefCell::new(BTreeSet::new()),
        }
    }

    /// Sets `podPidsLimit`, the pids.max of every pod cgroup (≤ 0: none).
    pub fn set_pod_pids_limit(&self, limit: i64) {
        self.pod_pids_limit.set(limit);
    }

    /// Configures the pod's cgroup and the QoS levels before its sandbox is created (see
    /// [`cgroups`]). A failure is logged: the pod still runs, as it did without them.
    fn apply_pod_cgroup(&self, pod: &Pod) {
        let v = cgroups::pod_values(pod, self.pod_pids_limit.get());
        let burstable = cgroups::burstable_shares(self.pods.borrow().values().map(|e| &*e.pod));
        if let Err(e) = cgroups::apply(
            &self.places.cgroup_fs,
            &self.host.cgroup_root,
            pod,
            &v,
            burstable,
        ) {
            log::warn!("pod {}: pod cgroup: {e}", pod.key());
        }
    }

    /// Replaces the source of configMap/secret/token data (when the API side starts late).
    pub fn set_volume_data(&self, data: Arc<dyn VolumeData>) {
        *self.data.borrow_mut() = data;
    }

    fn volume_data(&self) -> Arc<dyn VolumeData> {
        self.data.borrow().clone()
    }

    /// The CRI client (for callers that need runtime facts).
    pub fn cri(&self) -> &CriClient {
        &self.cri
    }

    /// Replaces the set of pods the executor may act for.
    pub fn set_pods(&self, pods: impl IntoIterator<Item = PodEntry>) {
        let map = pods
            .into_iter()
            .map(|e| (e.pod.metadata.uid.clone(), e))
            .collect::<BTreeMap<_, _>>();
        self.volumes_failed
            .borrow_mut()
            .retain(|uid| map.contains_key(uid));
        *self.pods.borrow_mut() = map;
    }

    fn entry(&self, uid: &str) -> Option<PodEntry> {
        self.pods.borrow().get(uid).cloned()
    }

    /// Lists what the runtime has that tinylet manages, as the engine's observed model.
    pub async fn relist(&self) -> Result<Observed, CriError> {
        let selector: BTreeMap<String, String> = [(
            labels::MANAGED.to_string(),
            labels::MANAGED_VALUE.to_string(),
        )]
        .into();
        let sandboxes = self
            .cri
            .list_pod_sandbox(Some(PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }))
            .await?
            .items;
        let containers = self
            .cri
            .list_containers(Some(ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }))
            .await?
            .containers;
        let images = self.cri.list_images(None).await?.images;
        let now = Instant::now();
        let now_wall = SystemTime::now();

        let mut observed = Observed::default();
        let mut refs = BTreeMap::new();
        for img in images {
            // What the status reports as imageID: the repo digest when the image came from a
            // registry, its content id otherwise (as the kubelet shows them).
            let r = img.repo_digests.first().cloned().unwrap_or(img.id);
            for name in img.repo_tags.iter().chain(img.repo_digests.iter()) {
                refs.insert(normalize_image(name), r.clone());
            }
            observed.images.extend(img.repo_tags);
            observed.images.extend(img.repo_digests);
        }
        *self.image_refs.borrow_mut() = refs;
        let live_sandboxes: BTreeSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
        self.sandbox_ips
            .borrow_mut()
            .retain(|id, _| live_sandboxes.contains(id));
        for s in sandboxes {
            let ready = s.state == crate::cri::proto::PodSandboxState::SandboxReady as i32;
            let ip = if ready {
                self.sandbox_ip(&s.id).await
            } else {
                None
            };
            observed.sandboxes.push(ObservedSandbox {
                attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                id: s.id,
                labels: s.labels,
                annotations: s.annotations,
                state: if ready {
                    SandboxState::Ready
                } else {
                    SandboxState::NotReady
                },
                ip,
            });
        }
        let live: BTreeSet<String> = containers.iter().map(|c| c.id.clone()).collect();
        self.container_facts
            .borrow_mut()
            .retain(|id, _| live.contains(id));
        for c in containers {
            use crate::cri::proto::ContainerState as Cs;
            let state = match c.state {
                x if x == Cs::ContainerCreated as i32 => ContainerState::Created,
                x if x == Cs::ContainerRunning as i32 => ContainerState::Running,
                x if x == Cs::ContainerExited as i32 => ContainerState::Exited,
                _ => ContainerState::Unknown,
            };
            let facts = self.container_facts(&c.id, state).await;
            observed.containers.push(ObservedContainer {
                sandbox_id: c.pod_sandbox_id,
                attempt: c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                labels: c.labels,
                annotations: c.annotations,
                state,
                image: if facts.image.is_empty() {
                    c.image.map(|i| i.image).unwrap_or_default()
                } else {
                    facts.image.clone()
                },
                image_ref: facts.image_ref.clone(),
                exit_code: facts.exit_code,
                reason: facts.reason.clone(),
                message: facts.message.clone(),
                started_at: facts.started_at.map(|t| to_instant(t, now, now_wall)),
                finished_at: facts.finished_at.map(|t| to_instant(t, now, now_wall)),
                id: c.id,
            });
        }
        Ok(observed)
    }

    async fn sandbox_ip(&self, id: &str) -> Option<String> {
        if let Some(ip) = self.sandbox_ips.borrow().get(id) {
            return ip.clone();
        }
        let st = self.cri.pod_sandbox_status(id, false).await.ok()?.status?;
        let ip = st.network.map(|n| n.ip).filter(|ip| !ip.is_empty());
        self.sandbox_ips
            .borrow_mut()
            .insert(id.to_string(), ip.clone());
        ip
    }

    /// Start/finish times and exit code: asked once per container state, then cached.
    async fn container_facts(&self, id: &str, state: ContainerState) -> ContainerFacts {
        if let Some(f) = self.container_facts.borrow().get(id) {
            let running_known = state == ContainerState::Running && f.started_at.is_some();
            if f.complete || running_known {
                return f.clone();
            }
        }
        let Ok(resp) = self.cri.container_status(id, false).await else {
            return ContainerFacts::default();
        };
        let Some(st) = resp.status else {
            return ContainerFacts::default();
        };
        let exited = state == ContainerState::Exited;
        let f = ContainerFacts {
            started_at: wall(st.started_at),
            finished_at: if exited { wall(st.finished_at) } else { None },
            exit_code: exited.then_some(st.exit_code),
            reason: (exited && !st.reason.is_empty()).then(|| st.reason.clone()),
            message: if exited {
                termination::read_message(
                    &st.annotations,
                    &st.mounts,
                    st.exit_code,
                    &st.reason,
                    &st.log_path,
                )
            } else {
                None
            },
            image: st.image.map(|i| i.image).unwrap_or_default(),
            image_ref: st.image_ref,
            log_path: st.log_path,
            complete: exited,
        };
        self.container_facts
            .borrow_mut()
            .insert(id.to_string(), f.clone());
        f
    }

    fn sandbox_config(&self, e: &PodEntry, attempt: u32) -> PodSandboxConfig {
        spec::sandbox_config(
            &e.pod,
            attempt,
            &self.host,
            labels::sandbox_labels(&e.desired),
            labels::sandbox_annotations(&e.desired),
        )
    }

    /// Executes one action and returns its result for the engine.
    pub async fn run(&self, action: &Action) -> ActionResult {
        let uid = &action.pod.uid;
        let failed = |message: String| ActionResult::Failed { message };
        match &action.kind {
            ActionKind::PullImage { image, .. } => {
                let req = PullImageRequest {
                    image: Some(ImageSpec {
                        image: image.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                match self.cri.pull_image(&req).await {
                    Ok(_) => ActionResult::Done,
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::RunSandbox { attempt, .. } => {
                let Some(e) = self.entry(uid) else {
                    return failed(format!("pod {} is no longer desired", action.pod.uid));
                };
                // Volumes are made on a worker thread: fetching their data may wait for the
                // API server, and the agent loop must not.
                let prepare = {
                    let (volumes, pod) = (self.volumes.clone(), e.pod.clone());
                    let (host, data) = (self.host.clone(), self.volume_data());
                    move || {
                        data.warm(&pod);
                        volumes.prepare(&pod, &host, "", data.as_ref())
                    }
                };
                let note = |r: &Result<_, _>| {
                    let mut failed_set = self.volumes_failed.borrow_mut();
                    match r {
                        Ok(_) => failed_set.remove(uid),
                        Err(_) => failed_set.insert(uid.clone()),
                    };
                };
                // After a volume failure the volumes come first: no sandbox until they work.
                let prepare = if self.volumes_failed.borrow().contains(uid) {
                    let r = smol::unblock(prepare).await;
                    note(&r);
                    if let Err(err) = r {
                        return mount_failed(err);
                    }
                    None
                } else {
                    Some(prepare)
                };
                let config = self.sandbox_config(&e, *attempt);
                self.apply_pod_cgroup(&e.pod);
                if let Err(err) = std::fs::create_dir_all(&config.log_directory) {
                    return failed(format!("create log dir {}: {err}", config.log_directory));
                }
                let req = RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                };
                // The sandbox needs none of the volumes: they are made while the runtime
                // creates it (in its own process), off the pod's start path. A volume that
                // cannot be made takes the new sandbox down again.
                let volumes = async {
                    match prepare {
                        Some(f) => {
                            let r = smol::unblock(f).await;
                            note(&r);
                            r
                        }
                        None => Ok(BTreeMap::new()),
                    }
                };
                let created = match smol::future::zip(self.cri.run_pod_sandbox(&req), volumes).await
                {
                    (Ok(r), Err(err)) => {
                        let _ = self.cri.stop_pod_sandbox(&r.pod_sandbox_id).await;
                        let _ = self.cri.remove_pod_sandbox(&r.pod_sandbox_id).await;
                        return mount_failed(err);
                    }
                    (Err(_), Err(err)) => return mount_failed(err),
                    (r, Ok(_)) => r,
                };
                match created {
                    Ok(r) => {
                        // The pod IP is asked for here only when an image pull may come
                        // first (the status shows the IP meanwhile); otherwise the first
                        // CreateContainer asks for it alongside its own call.
                        let ip = if self.may_pull(&e) {
                            self.sandbox_ip(&r.pod_sandbox_id).await
                        } else {
                            None
                        };
                        ActionResult::SandboxCreated {
                            sandbox_id: r.pod_sandbox_id,
                            pod_ip: ip,
                        }
                    }
                    Err(err) => failed(err.to_string()),
                }
            }
            ActionKind::CreateContainer {
                sandbox_id,
                container,
                init,
                attempt,
                ..
            } => match self
                .create_container(uid, sandbox_id, container, *init, *attempt)
                .await
            {
                Ok((id, image_ref, pod_ip, warnings)) => ActionResult::ContainerCreated {
                    container_id: id,
                    image_ref,
                    pod_ip,
                    warnings: warnings
                        .into_iter()
                        .map(|w| ("InvalidEnvironmentVariableNames".to_string(), w))
                        .collect(),
                },
                Err(CreateFailure::Other(m)) => failed(m),
                Err(CreateFailure::Config(message)) => ActionResult::ConfigFailed { message },
                Err(CreateFailure::Mount(err)) => mount_failed(err),
            },
            ActionKind::StartContainer { container_id, .. } => {
                match self.cri.start_container(container_id).await {
                    Ok(_) => ActionResult::Done,
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::StopContainer {
                container_id,
                grace,
                ..
            } => {
                let secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
                match self.cri.stop_container(container_id, secs).await {
                    Ok(_) => ActionResult::Done,
                    Err(e) if e.is_not_found() => ActionResult::Done,
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::RemoveContainer { container_id } => {
                // The log goes with its container: the engine keeps the latest instance and
                // the one before it (`kubectl logs -p`), so their logs are all that stay.
                let log = self.log_path(container_id).await;
                match self.cri.remove_container(container_id).await {
                    Ok(_) => {
                        self.remove_log(log);
                        ActionResult::Done
                    }
                    Err(e) if e.is_not_found() => {
                        self.remove_log(log);
                        ActionResult::Done
                    }
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::StopSandbox { sandbox_id } => {
                match self.cri.stop_pod_sandbox(sandbox_id).await {
                    Ok(_) => ActionResult::Done,
                    Err(e) if e.is_not_found() => ActionResult::Done,
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::RemoveSandbox { sandbox_id } => {
                match self.cri.remove_pod_sandbox(sandbox_id).await {
                    Ok(_) => {
                        self.after_sandbox_removed(uid);
                        ActionResult::Done
                    }
                    Err(e) if e.is_not_found() => {
                        self.after_sandbox_removed(uid);
                        ActionResult::Done
                    }
                    Err(e) => failed(e.to_string()),
                }
            }
            ActionKind::RunProbe {
                container_id,
                handler,
                timeout,
                pod_ip,
                ..
            } => {
                self.probe(uid, container_id, handler, *timeout, pod_ip.as_deref())
                    .await
            }
        }
    }

    /// Whether one of the pod's containers may need an image pull before it is created.
    fn may_pull(&self, e: &PodEntry) -> bool {
        let refs = self.image_refs.borrow();
        let d = &e.desired;
        d.init_containers
            .iter()
            .chain(d.containers.iter())
            .chain(d.ephemeral_containers.iter())
            .any(|c| {
                c.pull_policy == PullPolicy::Always
                    || !refs.contains_key(&normalize_image(&c.image))
            })
    }

    /// Once a pod that is no longer desired lost its last sandbox, its host state may go:
    /// the next housekeeping pass looks.
    fn after_sandbox_removed(&self, uid: &str) {
        if !self.pods.borrow().contains_key(uid) {
            self.housekeeping_due.set(true);
        }
    }

    /// Whether a sandbox removal asked for housekeeping since the last call.
    pub fn take_housekeeping_due(&self) -> bool {
        self.housekeeping_due.replace(false)
    }

    /// The log file of a container, from the cached facts or the runtime.
    async fn log_path(&self, container_id: &str) -> Option<String> {
        let cached = self
            .container_facts
            .borrow()
            .get(container_id)
            .map(|f| f.log_path.clone());
        let path = match cached {
            Some(p) => p,
            None => {
                self.cri
                    .container_status(container_id, false)
                    .await
                    .ok()?
                    .status?
                    .log_path
            }
        };
        (!path.is_empty()).then_some(path)
    }

    /// Removes a removed container's log file, if it lies under the pod logs root.
    fn remove_log(&self, path: Option<String>) {
        let Some(path) = path else { return };
        let p = PathBuf::from(&path);
        let inside = p.starts_with(&self.places.logs_root)
            && !p.components().any(|c| c == std::path::Component::ParentDir);
        if inside {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("removing container log {path}: {e}");
                }
            }
        }
    }

    /// The pods eviction may choose from, with their memory use read from their cgroups now.
    /// Static pods and system-critical ones are exempt.
    pub fn eviction_candidates(&self) -> Vec<crate::reconcile::eviction::Candidate> {
        use crate::reconcile::eviction::{Candidate, SYSTEM_CRITICAL_PRIORITY};
        self.pods
            .borrow()
            .values()
            .map(|e| {
                let pod = &e.pod;
                let priority = pod.spec.priority.unwrap_or(0);
                let is_static = crate::manifest::identity::is_static(pod);
                Candidate {
                    uid: e.desired.uid.clone(),
                    name: format!("{}/{}", e.desired.namespace, e.desired.name),
                    exempt: is_static || priority >= SYSTEM_CRITICAL_PRIORITY,
                    priority,
                    memory_usage: crate::server::stats::read_cgroup(
                        &self.places.cgroup_fs,
                        &crate::runtime::cgroups::pod_path(pod, &self.places.cgroup_root),
                    )
                    .and_then(|u| u.working_set())
                    .unwrap_or(0),
                    memory_request: crate::runtime::cgroups::memory_request(pod),
                    disk_usage: 0,
                    disk_request: 0,
                }
            })
            .collect()
    }

    /// The image filesystem's mount point as the runtime last reported it (image GC asks).
    pub fn image_fs_mount(&self) -> Option<String> {
        self.image_fs_mount.borrow().clone()
    }

    /// One image garbage collection pass (see [`imagegc`]): lists images and every container
    /// of the runtime, measures the image filesystem, and removes what the policy picks. A
    /// removal that fails is logged and the rest go on.
    pub async fn image_gc(
        &self,
        tracker: &RefCell<imagegc::Tracker>,
        policy: &imagegc::Policy,
    ) -> Result<ImageGcReport, CriError> {
        let images: Vec<imagegc::Image> = self
            .cri
            .list_images(None)
            .await?
            .images
            .into_iter()
            .map(|i| imagegc::Image {
                names: i
                    .repo_tags
                    .iter()
                    .chain(i.repo_digests.iter())
                    .cloned()
                    .collect(),
                id: i.id,
                size: i.size,
                pinned: i.pinned,
            })
            .collect();
        let containers = self.cri.list_containers(None).await?.containers;
        let refs = containers.iter().flat_map(|c| {
            [c.image_ref.clone()]
                .into_iter()
                .chain(c.image.as_ref().map(|s| s.image.clone()))
        });
        let used = imagegc::in_use(&images, refs);
        // The sandbox image is the runtime's to choose: read it from its config each pass.
        let sandbox = match self.cri.status(true).await {
            Ok(st) => sandbox_image(&st.info),
            Err(e) => {
                log::debug!("image GC: runtime status: {e}");
                None
            }
        };
        let usage = match self.cri.image_fs_info().await {
            Ok(info) => info
                .image_filesystems
                .first()
                .and_then(|f| f.fs_id.as_ref())
                .map(|id| id.mountpoint.clone())
                .filter(|m| !m.is_empty())
                .inspect(|m| *self.image_fs_mount.borrow_mut() = Some(m.clone())),
            Err(e) => {
                log::debug!("image GC: image filesystem info: {e}");
                None
            }
        }
        .and_then(|mount| crate::server::stats::statvfs(std::path::Path::new(&mount)))
        .filter(|f| f.capacity > 0)
        .map(|f| imagegc::Usage {
            capacity: f.capacity,
            available: f.available,
        });
        let now = Instant::now();
        let plan = {
            let mut t = tracker.borrow_mut();
            t.observe(now, &images, &used);
            let protected: Vec<String> = sandbox.into_iter().collect();
            t.plan(now, &images, &used, &protected, usage, policy)
        };
        let mut report = ImageGcReport {
            usage,
            to_free: plan.to_free,
            ..Default::default()
        };
        for v in &plan.remove {
            match self.cri.remove_image(&v.id).await {
                Ok(_) => {
                    let why = match v.reason {
                        imagegc::Reason::Space => format!(
                            "image filesystem {}% used (high threshold {}%)",
                            usage.map(|u| u.percent()).unwrap_or(0),
                            policy.high_percent
                        ),
                        imagegc::Reason::Unused(d) => {
                            format!("unused for {}s (imageMaximumGCAge)", d.as_secs())
                        }
                    };
                    log::info!(
                        "image GC: removed image {} ({}, {} bytes): {why}",
                        v.name,
                        v.id,
                        v.size
                    );
                    report.removed.push(v.id.clone());
                    report.freed += v.size;
                }
                Err(e) => log::warn!("image GC: removing image {} ({}): {e}", v.name, v.id),
            }
        }
        if plan.to_free > 0 && plan.freed < plan.to_free {
            log::warn!(
                "image GC: wanted to free {} bytes, only {} bytes of images are unused and old enough",
                plan.to_free,
                plan.freed
            );
        }
        Ok(report)
    }

    /// One housekeeping pass: the pod directories, log directories and cgroups that belong to
    /// no pod the agent knows (desired, `tracked` by the engine) and none the runtime still
    /// has a sandbox or container of are removed, one log line per pod. Nothing is removed
    /// when the runtime cannot be listed. Returns the pods cleaned (`None` if a pass was
    /// already running).
    pub async fn housekeeping(
        &self,
        tracked: &BTreeSet<String>,
    ) -> Result<Option<Vec<(String, Cleaned)>>, CriError> {
        if self.housekeeping_running.replace(true) {
            // Asked again while one runs: the next loop turn runs another.
            self.housekeeping_due.set(true);
            return Ok(None);
        }
        let r = self.housekeeping_pass(tracked).await;
        self.housekeeping_running.set(false);
        r.map(Some)
    }

    async fn housekeeping_pass(
        &self,
        tracked: &BTreeSet<String>,
    ) -> Result<Vec<(String, Cleaned)>, CriError> {
        let sandboxes = self.cri.list_pod_sandbox(None).await?.items;
        let containers = self.cri.list_containers(None).await?.containers;
        let mut known = tracked.clone();
        known.extend(self.pods.borrow().keys().cloned());
        for s in &sandboxes {
            known.extend(s.labels.get(labels::POD_UID).cloned());
            known.extend(s.metadata.as_ref().map(|m| m.uid.clone()));
        }
        for c in &containers {
            known.extend(c.labels.get(labels::POD_UID).cloned());
        }
        // From here on nothing awaits: the scan and the removals see one consistent view.
        let places = self.places.clone();
        let mut cleaned = Vec::new();
        for (uid, left) in housekeeping::orphans(housekeeping::scan(&places), &known) {
            let done = housekeeping::clean(&uid, &left, &self.volumes);
            if done.complete() {
                log::info!("pod {uid}: ended; cleaned up after it: {done}");
            } else {
                log::warn!("pod {uid}: ended; cleaning up after it: {done}");
            }
            cleaned.push((uid, done));
        }
        if !cleaned.is_empty() {
            housekeeping::remove_empty_qos_levels(&places.cgroup_fs, &places.cgroup_root);
        }
        Ok(cleaned)
    }

    async fn create_container(
        &self,
        uid: &str,
        sandbox_id: &str,
        name: &str,
        init: bool,
        attempt: u32,
    ) -> Result<(String, String, Option<String>, Vec<String>), CreateFailure> {
        let e = self
            .entry(uid)
            .ok_or_else(|| format!("pod {uid} is no longer desired"))?;
        // An app container's name may also be an ephemeral container's: names are unique
        // across all three lists of a pod (the API server validates it).
        let spec = &e.pod.spec;
        let c = if init {
            spec.init_containers.iter().find(|c| c.name == name)
        } else {
            (spec.containers.iter())
                .chain(spec.ephemeral_containers.iter())
                .find(|c| c.name == name)
        }
        .ok_or_else(|| format!("pod {}: no container {name:?}", e.pod.key()))?;
        let dc = e
            .desired
            .init_containers
            .iter()
            .chain(e.desired.containers.iter())
            .chain(e.desired.ephemeral_containers.iter())
            .find(|d| d.name == name)
            .ok_or_else(|| format!("pod {}: container {name:?} not in the model", e.pod.key()))?;
        // The sandbox's IP, if not known yet, is asked for first when this container's config
        // needs it, else alongside the create call (and handed to the engine with its result).
        let cached_ip = || self.sandbox_ips.borrow().get(sandbox_id).cloned().flatten();
        let mut known_ip = cached_ip();
        if known_ip.is_none() && spec::uses_pod_ip(&e.pod, c) {
            known_ip = self.sandbox_ip(sandbox_id).await;
        }
        let learn_ip = known_ip.is_none();
        let pod_ip = known_ip.unwrap_or_default();
        let volumes = self
            .volumes
            .prepare(&e.pod, &self.host, &pod_ip, self.volume_data().as_ref())
            .map_err(CreateFailure::Mount)?;
        let data = self.volume_data();
        if let Some(m) = missing_env_object(&e.pod, c, data.as_ref()) {
            return Err(CreateFailure::Config(m));
        }
        let ns = e.pod.metadata.namespace.clone();
        let object = |kind: &str, obj: &str| match kind {
            "configmap" => data.config_map(&ns, obj),
            _ => data.secret(&ns, obj),
        };
        // Listing Services may wait for the link (the sandbox step warmed the cache, but it
        // expires): off the agent loop.
        let services = {
            let (pod, data) = (e.pod.clone(), data.clone());
            smol::unblock(move || service_env(&pod, data.as_ref())).await
        };
        let sources = spec::EnvSources {
            pod_ip: &pod_ip,
            object: &object,
            services: &services,
        };
        // A config the kubelet cannot assemble is reported in its own words: the reason
        // alone, without the field path.
        let config_error = |e: spec::SpecError| CreateFailure::Config(e.reason);
        let env = spec::container_env(&e.pod, c, &self.host, &sources).map_err(config_error)?;
        for w in &env.warnings {
            log::warn!("pod {} container {name}: {w}", e.pod.key());
        }
        let warnings = env.warnings;
        let resources =
            spec::container_resources(&e.pod, c, self.memory_capacity).map_err(config_error)?;
        let mut annotations = labels::container_annotations(&e.desired, attempt);
        let (message_path, message_policy) = termination::path_and_policy(c);
        annotations.insert(termination::PATH_ANNOTATION.into(), message_path.clone());
        annotations.insert(termination::POLICY_ANNOTATION.into(), message_policy);
        let mut config = spec::container_config(
            &e.pod,
            c,
            attempt,
            env.vars,
            &volumes,
            resources,
            labels::container_labels(&e.desired, dc),
            annotations,
        )
        .map_err(config_error)?;
        let stamp = format!("{attempt}-{}", unique_stamp());
        let message_mount =
            termination::prepare(&self.volumes.pod_dir(uid), name, &message_path, &stamp)
                .map_err(|m| format!("pod {}: container {name:?}: {m}", e.pod.key()))?;
        config.mounts.push(message_mount);
        let sandbox_config = self.sandbox_config(&e, 0);
        let log_dir = PathBuf::from(&sandbox_config.log_directory).join(name);
        std::fs::create_dir_all(&log_dir)
            .map_err(|err| format!("create log dir {}: {err}", log_dir.display()))?;
        let req = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let image_ref = self
            .image_refs
            .borrow()
            .get(&normalize_image(&c.image))
            .cloned()
            .unwrap_or_default();
        let ip = async {
            if learn_ip {
                self.sandbox_ip(sandbox_id).await
            } else {
                None
            }
        };
        let (created, _) = smol::future::zip(self.cri.create_container(&req), ip).await;
        // The IP as known now, however it was learned: the engine takes it if it had none.
        let ip = cached_ip();
        created
            .map(|r| (r.container_id, image_ref, ip, warnings))
            .map_err(|e| CreateFailure::Other(e.to_string()))
    }

    async fn probe(
        &self,
        uid: &str,
        container_id: &str,
        handler: &ProbeHandler,
        timeout: Duration,
        pod_ip: Option<&str>,
    ) -> ActionResult {
        let host_network = self
            .entry(uid)
            .map(|e| e.desired.host_network)
            .unwrap_or(false);
        let target = |h: &str| -> String {
            if !h.is_empty() {
                h.to_string()
            } else if host_network {
                "127.0.0.1".to_string()
            } else {
                pod_ip.unwrap_or("127.0.0.1").to_string()
            }
        };
        let outcome = match handler {
            ProbeHandler::Exec { command } => {
                let cmd: Vec<&str> = command.iter().map(String::as_str).collect();
                let secs = i64::try_from(timeout.as_secs().max(1)).unwrap_or(1);
                match self.cri.exec_sync(container_id, &cmd, secs).await {
                    Ok(r) if r.exit_code == 0 => ProbeOutcome::Success,
                    // The kubelet's probe output for a failed exec probe is what the
                    // command printed (stdout, then stderr).
                    Ok(r) => ProbeOutcome::Failure(exec_output(&r.stdout, &r.stderr)),
                    Err(e) => ProbeOutcome::Failure(e.to_string()),
                }
            }
            ProbeHandler::HttpGet {
                host,
                port,
                path,
                scheme,
                headers,
            } => {
                if *scheme == HttpScheme::Https {
                    ProbeOutcome::Failure("HTTPS probes are not supported by tinylet".into())
                } else {
                    let p = HttpProbe {
                        host: target(host),
                        port: *port,
                        path: path.clone(),
                        headers: headers.clone(),
                    };
                    probe::http_get(&p, timeout).await
                }
            }
            ProbeHandler::TcpSocket { host, port } => {
                probe::tcp(&target(host), *port, timeout).await
            }
            ProbeHandler::Grpc { .. } => {
                ProbeOutcome::Failure("gRPC probes are not supported by tinylet".into())
            }
        };
        match outcome {
            ProbeOutcome::Success => ActionResult::ProbeSucceeded,
            ProbeOutcome::Failure(message) => ActionResult::ProbeFailed { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_converts_to_monotonic() {
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let ten_ago = now_wall - Duration::from_secs(10);
        let i = to_instant(ten_ago, now, now_wall);
        assert_eq!(now.duration_since(i), Duration::from_secs(10));
        let ahead = to_instant(now_wall + Duration::from_secs(2), now, now_wall);
        assert_eq!(ahead.duration_since(now), Duration::from_secs(2));
        assert_eq!(wall(0), None);
        assert!(wall(-5).is_none());
    }

    /// Only configMap "cfg" exists.
    struct OneConfigMap;

    impl VolumeData for OneConfigMap {
        fn config_map(&self, _: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            (name == "cfg").then(BTreeMap::new)
        }
        fn secret(&self, _: &str, _: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            None
        }
        fn service_account_token(&self, _: &Pod, _: &str, _: i64) -> Option<String> {
            None
        }
    }

    // kubelet (makeEnvironmentVariables): an env source object that does not exist fails the
    // container with its manager's NotFound error, unless the reference is optional.
    #[test]
    fn env_objects_that_do_not_exist_are_named_as_the_kubelet_does() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [
                {"name": "A", "value": "literal"},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
                {"name": "C", "valueFrom":
                    {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "D", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
                {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "k"}}},
            ]}]}
        }))
        .unwrap();
        let c = &pod.spec.containers[0];
        assert_eq!(
            missing_env_object(&pod, c, &OneConfigMap).as_deref(),
            Some(r#"secret "sec" not found"#)
        );
        let mut only_cm = pod.clone();
        only_cm.spec.containers[0].env.remove(3);
        let c = &only_cm.spec.containers[0];
        assert_eq!(
            missing_env_object(&only_cm, c, &OneConfigMap).as_deref(),
            Some(r#"configmap "later" not found"#)
        );
        only_cm.spec.containers[0].env.pop();
        let c = &only_cm.spec.containers[0];
        assert_eq!(missing_env_object(&only_cm, c, &OneConfigMap), None);
    }
}
