//! The node agent's main loop for pods: sources of desired pods (the flash store at boot, the
//! manifest directory) → the reconcile engine → the runtime executor → status.
//!
//! One thread runs this loop; runtime calls run as tasks on it and report back over a channel,
//! so the engine is only ever touched here. The loop sleeps until the engine's next wake-up,
//! the next relist, a manifest change, an action result, or a signal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smol::future::FutureExt;

use crate::config::{AgentConfig, EvictionThreshold};
use crate::cri::{CriClient, CriOptions};
use crate::k8s::pod::Pod;
use crate::manifest::{ManifestSet, ManifestWatcher, WatchOptions};
use crate::reconcile::eviction;
use crate::reconcile::from_pod::desired_pod;
use crate::reconcile::startclock::StartClock;
use crate::reconcile::{
    ActionId, ActionKind, ActionResult, Engine, EngineConfig, PodPhase, PodStatus,
};
use crate::runtime::executor::{Executor, PodEntry};
use crate::runtime::housekeeping::Schedule;
use crate::runtime::imagegc;
use crate::runtime::spec::{parse_resolv_conf, HostFacts};
use crate::runtime::volumes::OfflineData;
use crate::store::{RecordKind, Store};

use super::apipods::{ApiEvent, ApiSide, Report};
use super::once;
use super::status::StatusCell;
use super::AgentError;

/// How often the runtime is relisted as a backstop to action results.
const RELIST_PERIOD: Duration = Duration::from_secs(2);
/// The relist period while any pod is starting or stopping.
const FAST_RELIST_PERIOD: Duration = Duration::from_millis(250);

/// A static pod as kept in the flash store: enough to start it at boot without the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredPod {
    pod: Pod,
    spec_hash: String,
    file: String,
}

enum Wake {
    Manifests(ManifestSet),
    /// An action's result, with its pod's UID when the call is part of a start's timing.
    Result(ActionId, Option<String>, ActionResult),
    Api(Box<ApiEvent>),
    ApiReport(Report),
    Tick,
    Signal,
}

/// Options of one run that do not come from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Converge once (see [`super::once`]), print the report and return its exit code.
    pub once: bool,
    /// The bound on `once`, counted from the agent's start.
    pub once_timeout: Duration,
    /// `once` reports as JSON instead of a table.
    pub json: bool,
}

/// Runs the pod side of the agent until a signal (or, with `once`, until converged); the
/// process exit code.
pub async fn run(
    cfg: AgentConfig,
    started: Instant,
    ex: Rc<smol::LocalExecutor<'static>>,
    opts: RunOptions,
) -> Result<i32, AgentError> {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let node_name = cfg.node_name(&hostname);
    create_private_dir(&cfg.root_dir)?;
    let mut store =
        Store::open(cfg.root_dir.join("store")).map_err(|e| AgentError::Store(e.to_string()))?;

    // Boot from flash: the pods stored last time start before the manifest dir is read.
    let mut static_pods: BTreeMap<String, StoredPod> = BTreeMap::new();
    let records = store
        .list(RecordKind::StaticPod)
        .map_err(|e| AgentError::Store(e.to_string()))?;
    for (key, bytes) in records {
        match serde_json::from_slice::<StoredPod>(&bytes) {
            Ok(sp) => {
                static_pods.insert(key, sp);
            }
            Err(e) => log::warn!("store record static pod {key}: not a pod ({e}); ignored"),
        }
    }
    log::info!(
        "node {node_name}: {} static pod(s) from the flash store at {}",
        static_pods.len(),
        store.dir().display()
    );

    let host = host_facts(&cfg, &node_name);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_capacity = crate::node::host::parse_meminfo(&meminfo).0;
    let cri = CriClient::new(
        &cfg.container_runtime_endpoint,
        CriOptions {
            call_timeout: cfg.runtime_request_timeout,
            ..CriOptions::default()
        },
    )
    .map_err(|e| AgentError::Runtime(e.to_string()))?;
    let mut api = ApiSide::start(&cfg, &node_name, host.clone())?;
    let host_for_api = host.clone();
    let executor = Rc::new(Executor::new(
        cri.clone(),
        host,
        cfg.root_dir.join("pods"),
        volume_data(api.as_ref(), &cfg.root_dir),
        memory_capacity,
    ));
    executor.set_pod_pids_limit(cfg.pod_pids_limit);

    let status = StatusCell::default();
    let _status_task = match &cfg.status_socket {
        Some(path) => Some(
            super::status::serve(path, status.clone())
                .map_err(|e| AgentError::Status(e.to_string()))?,
        ),
        None => None,
    };

    // The kubelet API reads the agent through this view only; a server that cannot start
    // (certificate, taken port) is logged and the pods run on. A standalone node with no way to
    // authenticate anyone (no cluster, no client CA, anonymous off) does not listen at all.
    let server_view = crate::server::NodeView::default();
    let anyone_can_authenticate = cfg.kubeconfig.is_some()
        || cfg.bootstrap_kubeconfig.is_some()
        || cfg.kubelet_api.client_ca_file.is_some()
        || cfg.kubelet_api.anonymous_auth;
    let _server = if anyone_can_authenticate {
        crate::server::start(&cfg, &node_name, server_view.clone()).unwrap_or_else(|e| {
            log::error!("kubelet API not served: {e}");
            None
        })
    } else {
        log::info!("kubelet API not served: no cluster, client CA or anonymous access to authenticate anyone");
        None
    };
    let _healthz = crate::server::start_healthz(&cfg).unwrap_or_else(|e| {
        log::error!("healthz not served: {e}");
        None
    });
    let _log_rotation = crate::runtime::logrotate::spawn(
        cri.clone(),
        crate::runtime::logrotate::Policy::from_config(&cfg),
        cfg.pod_logs_dir.clone(),
        cfg.container_log_monitor_interval,
    );

    let mut watcher = match &cfg.static_pod_path {
        Some(dir) => Some(
            ManifestWatcher::new(
                dir.clone(),
                node_name.clone(),
                WatchOptions {
                    rescan_period: cfg.file_check_frequency,
                    ..WatchOptions::default()
                },
            )
            .map_err(|e| AgentError::Manifests(e.to_string()))?,
        ),
        None => None,
    };

    let signals = Signals::new()?;
    let mut notifier = super::notify::Notifier::from_env(Instant::now());
    notifier.status("waiting for the container runtime");
    let once_deadline = started + opts.once_timeout;
    let endpoint = &cfg.container_runtime_endpoint;
    let bound = opts.once.then_some(once_deadline);
    if let Some(last_error) = wait_for_runtime(&cri, endpoint, &signals, bound).await? {
        let outcome = once::Outcome::NoRuntime {
            endpoint: endpoint.clone(),
            waited: opts.once_timeout,
            last_error,
        };
        print!("{}", once::report("", &outcome, opts.json));
        return Ok(outcome.exit_code());
    }
    // Join the cluster (credentials, Node, Lease) on its own thread when a kubeconfig is set.
    let node = start_node(&cfg, &node_name, &cri).await;
    if let Err(e) = crate::csi::watcher::start(&cfg.root_dir, &node_name) {
        log::warn!("CSI plugin registration not watched: {e}");
    }
    // Ready as soon as the agent serves (runtime answered, status socket and API up), not once
    // the static pods run: a pod whose image cannot be pulled must not get the agent restarted.
    notifier.ready(&format!(
        "serving; starting {} static pod(s)",
        static_pods.len()
    ));

    let mut engine = Engine::new(EngineConfig::default());
    let mut manifest_errors: Vec<String> = Vec::new();
    let mut desired_errors: BTreeMap<String, String> = BTreeMap::new();
    if let Some(a) = api.as_mut() {
        a.settle(&mut store).await;
        tell_static_pods(a, &static_pods);
    }
    apply_desired(
        &mut engine,
        &executor,
        &static_pods,
        api.as_ref(),
        &mut desired_errors,
        &server_view,
    );
    let (tx, rx) = smol::channel::unbounded::<(ActionId, Option<String>, ActionResult)>();
    // When each pod reached the agent, and its runtime calls until it started.
    let mut start_clock = StartClock::default();
    let mut woke = Instant::now();
    let mut next_relist = Instant::now();
    let mut last_relist = Instant::now();
    let mut boot_logged = false;
    let mut housekeeping = Schedule::new(Instant::now());
    // Housekeeping passes spawned and not finished (`--once` waits for them).
    let housekeeping_busy = Rc::new(std::cell::Cell::new(0u32));
    // Image GC: first once the static pods have started (their images are in use by then) or
    // a minute after start, then every imagegc::PERIOD; one pass at a time.
    let image_gc = Rc::new(ImageGc {
        tracker: std::cell::RefCell::new(imagegc::Tracker::default()),
        policy: imagegc::Policy {
            high_percent: cfg.image_gc_high_threshold_percent,
            low_percent: cfg.image_gc_low_threshold_percent,
            min_age: cfg.image_minimum_gc_age,
            max_age: Some(cfg.image_maximum_gc_age).filter(|d| !d.is_zero()),
        },
        running: std::cell::Cell::new(false),
    });
    let mut next_image_gc = started + std::time::Duration::from_secs(60);
    // Eviction: a round every EVICTION_PERIOD over the measured signals.
    let eviction_thresholds = eviction_thresholds(&cfg);
    let mut eviction = eviction::Manager::new(EVICTION_TRANSITION, EVICTION_PERIOD * 3);
    let mut next_eviction = started + EVICTION_PERIOD;
    // `--once` must not settle before the manifest dir has been read at least once.
    let mut manifests_seen = watcher.is_none();

    loop {
        // After a TLS bootstrap the API side starts as soon as the credentials exist.
        if api.is_none() && node.as_ref().is_some_and(|n| n.cluster().is_some()) {
            match ApiSide::start(&cfg, &node_name, host_for_api.clone()) {
                Ok(Some(mut a)) => {
                    executor.set_volume_data(volume_data(Some(&a), &cfg.root_dir));
                    tell_static_pods(&mut a, &static_pods);
                    api = Some(a);
                }
                Ok(None) => {}
                Err(e) => log::warn!("API pods: {e}"),
            }
        }
        let now = Instant::now();
        if now >= next_relist {
            let taken_at = Instant::now();
            match executor.relist().await {
                Ok(obs) => engine.observe(obs, taken_at),
                Err(e) => log::warn!("relist: {e}"),
            }
            last_relist = Instant::now();
            next_relist = last_relist + RELIST_PERIOD;
        }
        start_clock.sync(engine.tracked_pods(), woke);
        let asked = executor.take_housekeeping_due();
        if housekeeping.due(Instant::now(), engine.tracked_pods().count(), asked) {
            spawn_housekeeping(&ex, &executor, engine.tracked_pods(), &housekeeping_busy);
        }
        let now = Instant::now();
        let actions = engine.poll(now);
        let spawned = !actions.is_empty();
        for action in actions {
            log::debug!(
                "pod {}/{}: {} {:?}",
                action.pod.namespace,
                action.pod.name,
                action.kind.name(),
                action.kind.target()
            );
            // Probes are not part of a start; every other call is timed.
            let timed = !matches!(action.kind, ActionKind::RunProbe { .. });
            let timed_uid = timed.then(|| action.pod.uid.clone());
            if timed {
                start_clock.call_started(&action.pod.uid, now);
            }
            let executor = executor.clone();
            let tx = tx.clone();
            ex.spawn(async move {
                let result = executor.run(&action).await;
                let failure = match &result {
                    ActionResult::Failed { message } | ActionResult::ConfigFailed { message } => {
                        Some(message.clone())
                    }
                    ActionResult::MountFailed { volume, message } => {
                        Some(format!("volume {volume:?}: {message}"))
                    }
                    _ => None,
                };
                if let Some(message) = failure {
                    log::warn!(
                        "pod {}/{}: {}: {message}",
                        action.pod.namespace,
                        action.pod.name,
                        action.kind.name()
                    );
                }
                let _ = tx.send((action.id, timed_uid, result)).await;
            })
            .detach();
        }
        if spawned {
            // Let the new actions send their runtime calls before the bookkeeping below: on a
            // pod's start path every call waits for the one before it.
            smol::future::yield_now().await;
        }
        if let Some(a) = api.as_mut() {
            a.store_pending(&mut store);
        }
        let pods = engine.status(now);
        time_started_pods(&pods, &mut start_clock, now);
        let events = engine.drain_events();
        if let Some(a) = api.as_mut() {
            a.record_events(events);
            a.after_poll(&pods, now, &|uid| engine.acting(uid));
        }
        // A pod whose start is in flight learns its progress from the CRI calls' results; a
        // relist then would only compete with them for the runtime (and hold up this loop).
        let converging = pods.iter().any(|p| !steady(p) && !engine.acting(&p.uid));
        if !boot_logged && boot_complete(manifests_seen, &pods, static_pods.len()) {
            boot_logged = true;
            next_image_gc = next_image_gc.min(now);
            notifier.status(&format!(
                "booted: {} static pod(s) started",
                static_pods.len()
            ));
            log::info!(
                "boot: all {} static pod(s) have their containers started, {} ms after start",
                static_pods.len(),
                started.elapsed().as_millis()
            );
        }
        if now >= next_eviction && !eviction_thresholds.is_empty() {
            next_eviction = now + EVICTION_PERIOD;
            let readings = eviction_readings(&cfg.root_dir, executor.image_fs_mount());
            let crossed = eviction::crossed(&eviction_thresholds, readings);
            let d = eviction.round(now, &crossed, &executor.eviction_candidates());
            if d.reclaim {
                // Disk: collect images first; the next round evicts if that was not enough.
                next_image_gc = now;
            }
            if let Some(e) = d.evict {
                if engine.evict(&e.uid, &e.message) {
                    log::warn!(
                        "eviction: pod {} evicted ({}): {}",
                        e.uid,
                        e.signal.as_str(),
                        e.message
                    );
                }
            }
        }
        if now >= next_image_gc {
            next_image_gc = now + imagegc::PERIOD;
            spawn_image_gc(&ex, &executor, &image_gc);
        }
        status.set(status_document(
            &node_name,
            &pods,
            &manifest_errors,
            &desired_errors,
            started,
            boot_logged,
        ));
        server_view.set_status(&pods);
        server_view.set_cluster(node.as_ref().and_then(|n| n.cluster()));
        if opts.once {
            let progress = once::Progress {
                idle: engine.outstanding() == 0
                    && housekeeping_busy.get() == 0
                    && engine.tracked_pods().count() == pods.len()
                    && manifests_seen,
                pods: &pods,
                manifest_errors: &manifest_errors,
                pod_errors: &desired_errors,
                now,
                deadline: once_deadline,
                timeout: opts.once_timeout,
            };
            if let Some(outcome) = once::decide(&progress) {
                print!("{}", once::report(&status.get(), &outcome, opts.json));
                return Ok(outcome.exit_code());
            }
        }
        // While pods are starting (init containers running, containers being created) the
        // runtime is relisted often so that exits are seen at once; at rest, rarely.
        if converging {
            next_relist = next_relist.min(last_relist + FAST_RELIST_PERIOD);
        }

        let mut wake_at = engine
            .next_wakeup()
            .map_or(next_relist, |w| w.min(next_relist))
            .min(next_image_gc);
        if !eviction_thresholds.is_empty() {
            wake_at = wake_at.min(next_eviction);
        }
        // Writes a full flash refused: retried on the store's own back-off.
        if store.retry_deferred(Instant::now()) > 0 {
            log::debug!("store: kept writes retried");
        }
        if store.deferred() > 0 {
            wake_at = wake_at.min(Instant::now() + Duration::from_secs(1));
        }
        if let Some(a) = &api {
            wake_at = wake_at.min(a.next_wakeup());
        }
        if opts.once {
            wake_at = wake_at.min(once_deadline);
        }
        notifier.tick(Instant::now());
        if let Some(ping) = notifier.next_ping() {
            wake_at = wake_at.min(ping);
        }
        let timer = async {
            smol::Timer::at(wake_at).await;
            Wake::Tick
        };
        let result = async {
            rx.recv()
                .await
                .map(|(id, uid, r)| Wake::Result(id, uid, r))
                .unwrap_or(Wake::Tick)
        };
        let manifests = async {
            match watcher.as_mut() {
                Some(w) => Wake::Manifests(w.next().await),
                None => std::future::pending().await,
            }
        };
        let signal = async {
            signals.wait().await;
            Wake::Signal
        };
        let api_wake = api_wakeup(api.as_ref());
        let wake = signal.or(result).or(api_wake).or(manifests).or(timer).await;
        woke = Instant::now();
        match wake {
            Wake::Signal => {
                notifier.stopping();
                if let Some(a) = api.as_mut() {
                    a.store_pending(&mut store);
                }
                log::info!(
                    "signal received: stopping, leaving {} pod(s) running (a restarted agent \
                     adopts them; an empty manifest dir and --once removes them)",
                    pods.len()
                );
                if let Some(p) = &cfg.status_socket {
                    let _ = std::fs::remove_file(p);
                }
                return Ok(0);
            }
            Wake::Result(id, uid, r) => {
                if let Some(uid) = uid {
                    start_clock.call_ended(&uid, woke);
                }
                if let Err(e) = engine.complete(id, r, Instant::now()) {
                    log::debug!("{e}");
                }
                // Drain whatever else finished meanwhile, so one poll sees all of it.
                while let Ok((id, uid, r)) = rx.try_recv() {
                    if let Some(uid) = uid {
                        start_clock.call_ended(&uid, Instant::now());
                    }
                    if let Err(e) = engine.complete(id, r, Instant::now()) {
                        log::debug!("{e}");
                    }
                }
            }
            Wake::Manifests(set) => {
                manifests_seen = true;
                // Each error once per change of its file: the set comes again whenever any
                // file changes, and an unchanged file's error is the same text.
                let errors: Vec<String> = set.errors.iter().map(|e| e.to_string()).collect();
                for e in errors.iter().filter(|e| !manifest_errors.contains(e)) {
                    log::error!("{e}");
                }
                manifest_errors = errors;
                let dir_ok = cfg.static_pod_path.as_deref().is_some_and(Path::is_dir);
                if dir_ok {
                    static_pods = import_manifests(&mut store, &set, &static_pods);
                    if let Some(a) = api.as_mut() {
                        tell_static_pods(a, &static_pods);
                    }
                    apply_desired(
                        &mut engine,
                        &executor,
                        &static_pods,
                        api.as_ref(),
                        &mut desired_errors,
                        &server_view,
                    );
                } else {
                    log::warn!(
                        "manifest dir is not readable: keeping the {} pod(s) from the flash store",
                        static_pods.len()
                    );
                }
            }
            Wake::Api(ev) => {
                if let Some(a) = api.as_mut() {
                    let mut changed = a.on_event(*ev, &mut store);
                    // Drain what else arrived, so a burst costs one desired-set update.
                    while let Ok(ev) = a.events.try_recv() {
                        changed |= a.on_event(ev, &mut store);
                    }
                    if changed {
                        apply_desired(
                            &mut engine,
                            &executor,
                            &static_pods,
                            Some(&*a),
                            &mut desired_errors,
                            &server_view,
                        );
                    }
                }
            }
            Wake::ApiReport(r) => {
                if let Some(a) = api.as_mut() {
                    a.on_report(r);
                }
            }
            Wake::Tick => {}
        }
    }
}

/// How often the eviction manager measures (the kubelet's monitoring interval).
const EVICTION_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);
/// How long pressure stays reported after its signal cleared (evictionPressureTransitionPeriod).
const EVICTION_TRANSITION: std::time::Duration = std::time::Duration::from_secs(300);

/// `evictionHard` as eviction signals (unknown signals were refused when the config loaded).
fn eviction_thresholds(cfg: &AgentConfig) -> Vec<(eviction::Signal, eviction::Value)> {
    cfg.eviction_hard
        .iter()
        .filter_map(|(name, t)| {
            let s = eviction::Signal::parse(name)?;
            Some(match t {
                EvictionThreshold::Quantity(q) => (s, eviction::Value::Quantity(*q)),
                EvictionThreshold::Percent { milli_percent } => {
                    (s, eviction::Value::MilliPercent(*milli_percent))
                }
            })
        })
        .collect()
}

/// Measures the eviction signals now: memory from /proc/meminfo, nodefs from the root dir's
/// filesystem, imagefs from the runtime's image filesystem (when it told where that is).
fn eviction_readings(
    root_dir: &std::path::Path,
    image_mount: Option<String>,
) -> impl Fn(eviction::Signal) -> Option<eviction::Reading> {
    use crate::server::stats::statvfs;
    use eviction::{Reading, Signal};
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (total, available) = crate::node::host::parse_meminfo(&meminfo);
    let memory = (total > 0).then_some(Reading {
        available,
        capacity: total,
    });
    let nodefs = statvfs(root_dir);
    let imagefs = image_mount.and_then(|m| statvfs(std::path::Path::new(&m)));
    let bytes = |f: crate::server::stats::FsInfo| Reading {
        available: f.available,
        capacity: f.capacity,
    };
    move |s| match s {
        Signal::MemoryAvailable => memory,
        Signal::NodefsAvailable => nodefs.map(bytes),
        Signal::NodefsInodesFree => nodefs.filter(|f| f.inodes > 0).map(|f| Reading {
            available: f.inodes_free,
            capacity: f.inodes,
        }),
        Signal::ImagefsAvailable => imagefs.map(bytes),
    }
}

/// The image garbage collector's state between passes.
struct ImageGc {
    tracker: std::cell::RefCell<imagegc::Tracker>,
    policy: imagegc::Policy,
    running: std::cell::Cell<bool>,
}

/// Runs one image GC pass as a task of the loop, unless one still runs.
fn spawn_image_gc(ex: &smol::LocalExecutor<'static>, executor: &Rc<Executor>, gc: &Rc<ImageGc>) {
    if gc.running.replace(true) {
        return;
    }
    let executor = executor.clone();
    let gc = gc.clone();
    ex.spawn(async move {
        match executor.image_gc(&gc.tracker, &gc.policy).await {
            Ok(r) if !r.removed.is_empty() => log::info!(
                "image GC: removed {} image(s), {} bytes freed",
                r.removed.len(),
                r.freed
            ),
            Ok(_) => {}
            Err(e) => log::warn!("image GC: listing the runtime: {e}; nothing removed"),
        }
        gc.running.set(false);
    })
    .detach();
}

/// Runs one housekeeping pass as a task of the loop (see [`Executor::housekeeping`]).
fn spawn_housekeeping<'a>(
    ex: &smol::LocalExecutor<'static>,
    executor: &Rc<Executor>,
    tracked: impl Iterator<Item = &'a str>,
    busy: &Rc<std::cell::Cell<u32>>,
) {
    let tracked: BTreeSet<String> = tracked.map(String::from).collect();
    let executor = executor.clone();
    let busy = busy.clone();
    busy.set(busy.get() + 1);
    ex.spawn(async move {
        if let Err(e) = executor.housekeeping(&tracked).await {
            log::warn!("housekeeping: listing the runtime: {e}; nothing removed");
        }
        busy.set(busy.get().saturating_sub(1));
    })
    .detach();
}

/// Brings the flash store in line with the manifest set; writes only what changed. Pods whose
/// file failed to load keep their stored version (a half-written edit never stops a pod).
fn import_manifests(
    store: &mut Store,
    set: &ManifestSet,
    old: &BTreeMap<String, StoredPod>,
) -> BTreeMap<String, StoredPod> {
    let mut next: BTreeMap<String, StoredPod> = BTreeMap::new();
    for sp in &set.pods {
        let stored = StoredPod {
            pod: sp.pod.clone(),
            spec_hash: sp.spec_hash.clone(),
            file: sp.file.display().to_string(),
        };
        next.insert(sp.uid.clone(), stored);
    }
    let broken: Vec<String> = set
        .errors
        .iter()
        .map(|e| e.file.display().to_string())
        .collect();
    for (uid, sp) in old {
        if !next.contains_key(uid)
            && broken.contains(&sp.file)
            && !next.values().any(|n| n.file == sp.file)
        {
            next.insert(uid.clone(), sp.clone());
        }
    }
    for (uid, sp) in &next {
        match serde_json::to_vec(sp) {
            Ok(bytes) => {
                if let Err(e) = store.put(RecordKind::StaticPod, uid, &bytes) {
                    store_failed(&format!("static pod {}", sp.pod.key()), &e);
                }
            }
            Err(e) => log::error!("encode static pod {}: {e}", sp.pod.key()),
        }
    }
    for uid in store.keys(RecordKind::StaticPod) {
        if !next.contains_key(&uid) {
            if let Err(e) = store.delete(RecordKind::StaticPod, &uid) {
                store_failed(&format!("delete static pod {uid}"), &e);
            }
        }
    }
    next
}

/// Logs a failed store write. A full or read-only medium was reported once by the store,
/// which keeps the write and retries it: only a debug line here, so a full flash does not
/// flood the log with one error per pod and change.
pub(crate) fn store_failed(what: &str, e: &crate::store::StoreError) {
    if e.is_out_of_space() {
        log::debug!("store {what}: {e} (kept, retried)");
    } else {
        log::error!("store {what}: {e}");
    }
}

/// The executor's source of configMap/secret/token data: the API when there is one, else
/// what is kept on flash under `root_dir` (CSIDriver objects).
fn volume_data(
    api: Option<&ApiSide>,
    root_dir: &std::path::Path,
) -> Arc<dyn crate::runtime::volumes::VolumeData> {
    match api {
        Some(a) => a.volumes.clone(),
        None => Arc::new(OfflineData::load(root_dir)),
    }
}

/// The next API event or writer report (never, without an API server).
async fn api_wakeup(api: Option<&ApiSide>) -> Wake {
    let Some(a) = api else {
        return std::future::pending().await;
    };
    let ev = async {
        match a.events.recv().await {
            Ok(ev) => Wake::Api(Box::new(ev)),
            Err(_) => std::future::pending().await,
        }
    };
    let rep = async {
        match a.reports.recv().await {
            Ok(r) => Wake::ApiReport(r),
            Err(_) => std::future::pending().await,
        }
    };
    ev.or(rep).await
}

/// Tells the API side which static pods exist (it keeps their mirror pods).
fn tell_static_pods(api: &mut ApiSide, static_pods: &BTreeMap<String, StoredPod>) {
    api.set_static_pods(
        static_pods
            .values()
            .map(|sp| (&sp.pod, sp.pod.metadata.uid.as_str())),
    );
}

/// API pods join the static pods in one desired set (same engine, same executor).
fn apply_api_pods(
    entries: &mut Vec<PodEntry>,
    api: Option<&ApiSide>,
    errors: &mut BTreeMap<String, String>,
) {
    let Some(a) = api else {
        return;
    };
    for (pod, _) in a.desired() {
        match desired_pod(pod) {
            Ok(d) => entries.push(PodEntry {
                pod: Arc::new(pod.clone()),
                desired: d,
            }),
            Err(e) => {
                log::error!("{e} (from the API server)");
                errors.insert(pod.key(), e.to_string());
            }
        }
    }
}

fn apply_desired(
    engine: &mut Engine,
    executor: &Executor,
    pods: &BTreeMap<String, StoredPod>,
    api: Option<&ApiSide>,
    errors: &mut BTreeMap<String, String>,
    view: &crate::server::NodeView,
) {
    errors.clear();
    let mut entries = Vec::new();
    apply_api_pods(&mut entries, api, errors);
    for sp in pods.values() {
        match desired_pod(&sp.pod) {
            Ok(d) => entries.push(PodEntry {
                pod: Arc::new(sp.pod.clone()),
                desired: d,
            }),
            Err(e) => {
                log::error!("{e} (from {})", sp.file);
                errors.insert(sp.pod.key(), e.to_string());
            }
        }
    }
    engine.set_desired(entries.iter().map(|e| e.desired.clone()));
    // Deadlines count from the start time the server kept from before a restart.
    if let Some(a) = api {
        for (uid, at) in a.active_since(Instant::now()) {
            engine.note_active_since(&uid, at);
        }
    }
    view.set_pods(entries.iter().map(|e| e.pod.clone()).collect());
    executor.set_pods(entries);
}

/// Logs where the start time of each pod that now has all its containers running went.
fn time_started_pods(pods: &[PodStatus], clock: &mut StartClock, now: Instant) {
    use crate::reconcile::status::ContainerStateView;
    for p in pods {
        if !clock.tracks(&p.uid) {
            continue;
        }
        let running = p.conditions.initialized
            && !p.containers.is_empty()
            && p.containers
                .iter()
                .all(|c| matches!(c.state, ContainerStateView::Running { .. }));
        if !running {
            continue;
        }
        if let Some(b) = clock.started(&p.uid, now) {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            log::info!(
                "pod {}/{}: all containers started {:.1} ms after it reached the agent: \
                 {:.1} ms in {} runtime call(s), {:.1} ms the agent's own",
                p.namespace,
                p.name,
                ms(b.total),
                ms(b.runtime),
                b.calls,
                ms(b.own())
            );
        }
    }
}

/// A pod at rest: running with every container up, or finished.
fn steady(p: &PodStatus) -> bool {
    use crate::reconcile::status::ContainerStateView;
    match p.phase {
        PodPhase::Succeeded | PodPhase::Failed => true,
        PodPhase::Pending => false,
        PodPhase::Running => {
            !p.deleting
                && p.conditions.initialized
                && p.containers.iter().all(|c| {
                    matches!(c.state, ContainerStateView::Running { .. }) || c.backoff.is_some()
                })
        }
    }
}

/// Boot is complete once the manifest dir was read (or there is none) and every static pod
/// has its containers started; with no static pods at all, as soon as the dir was read.
fn boot_complete(manifests_seen: bool, pods: &[PodStatus], static_pods: usize) -> bool {
    manifests_seen && (static_pods == 0 || all_started(pods, static_pods))
}

fn all_started(pods: &[PodStatus], expected: usize) -> bool {
    pods.len() >= expected
        && pods.iter().all(|p| {
            p.phase == PodPhase::Succeeded
                || (p.conditions.initialized
                    && p.containers.iter().all(|c| {
                        matches!(
                            c.state,
                            crate::reconcile::status::ContainerStateView::Running { .. }
                        )
                    }))
        })
}

fn status_document(
    node: &str,
    pods: &[PodStatus],
    manifest_errors: &[String],
    desired_errors: &BTreeMap<String, String>,
    started: Instant,
    booted: bool,
) -> String {
    let doc = serde_json::json!({
        "node": node,
        "uptimeSecs": started.elapsed().as_secs(),
        "booted": booted,
        "pods": pods,
        "manifestErrors": manifest_errors,
        "podErrors": desired_errors,
    });
    doc.to_string()
}

fn host_facts(cfg: &AgentConfig, node_name: &str) -> HostFacts {
    HostFacts {
        node_name: node_name.to_string(),
        // The node's primary IP, as its Node reports it (`--node-ip`, else detected).
        host_ip: crate::node::register::host_ips(
            &cfg.node_ips,
            crate::node::register::detect_node_ip(),
        )
        .first()
        .map(|ip| ip.to_string())
        .unwrap_or_default(),
        cluster_dns: cfg.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
        cluster_domain: cfg.cluster_domain.clone(),
        host_dns: parse_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        cgroup_root: if cfg.cgroup_root.is_empty() || cfg.cgroup_root == "/" {
            "/kubepods".to_string()
        } else {
            format!("{}/kubepods", cfg.cgroup_root.trim_end_matches('/'))
        },
        pod_logs_root: cfg.pod_logs_dir.display().to_string(),
        allocatable: node_allocatable(cfg, node_name),
    }
}

/// Node allocatable as the Node reports it: what `resourceFieldRef` gives for unset limits.
fn node_allocatable(cfg: &AgentConfig, node_name: &str) -> crate::runtime::env::Allocatable {
    use crate::k8s::quantity::Quantity;
    let settings = crate::node::register::NodeSettings::from_config(cfg, node_name, "");
    let info = crate::node::host::HostInfo::read(&cfg.root_dir);
    let (_, alloc) = crate::node::register::resources(&settings, &info);
    let get = |k: &str, millis: bool| {
        let q = Quantity::new(alloc.get(k).map(String::as_str).unwrap_or("0"));
        let v = if millis { q.to_millis() } else { q.to_units() };
        v.unwrap_or(0)
    };
    crate::runtime::env::Allocatable {
        cpu_millis: get("cpu", true),
        memory: get("memory", false),
        ephemeral_storage: get("ephemeral-storage", false),
    }
}

fn create_private_dir(dir: &PathBuf) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AgentError::RootDir(format!("{}: {e}", dir.display())))?;
    let mode = std::fs::metadata(dir)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::RootDir(format!("{}: chmod 0700: {e}", dir.display())))?;
    }
    Ok(())
}

/// Waits for the runtime to answer, with a back-off from 0.5 s to 10 s, logging each failure.
/// With a `deadline` (`--once`) it gives up then: `Some(last failure)`.
async fn wait_for_runtime(
    cri: &CriClient,
    endpoint: &str,
    signals: &Signals,
    deadline: Option<Instant>,
) -> Result<Option<String>, AgentError> {
    let mut delay = Duration::from_millis(500);
    let mut last_error = String::from("no answer");
    loop {
        let call = async { Some(cri.version().await) };
        let Some(answer) = call.or(expired(deadline)).await else {
            return Ok(Some(last_error));
        };
        match answer {
            Ok(v) => {
                log::info!(
                    "container runtime {} {} (CRI {}) at {endpoint}",
                    v.runtime_name,
                    v.runtime_version,
                    v.runtime_api_version
                );
                return Ok(None);
            }
            Err(e) => {
                log::warn!("waiting for the container runtime: {e}; retrying in {delay:?}");
                last_error = e.to_string();
            }
        }
        let stop = async {
            signals.wait().await;
            Some(true)
        };
        let sleep = async {
            smol::Timer::after(delay).await;
            Some(false)
        };
        match stop.or(sleep).or(expired(deadline)).await {
            Some(true) => return Err(AgentError::Interrupted),
            Some(false) => {}
            None => return Ok(Some(last_error)),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// `None` at `deadline`; never without one.
async fn expired<T>(deadline: Option<Instant>) -> Option<T> {
    match deadline {
        Some(d) => smol::Timer::at(d).await,
        None => std::future::pending().await,
    };
    None
}

/// Starts the node side when `--kubeconfig` or `--bootstrap-kubeconfig` is set. A failure is
/// logged, never fatal: pods from the store and the manifest dir run without the API.
async fn start_node(
    cfg: &AgentConfig,
    node_name: &str,
    cri: &CriClient,
) -> Option<crate::node::NodeHandle> {
    if cfg.kubeconfig.is_none() && cfg.bootstrap_kubeconfig.is_none() {
        return None;
    }
    let runtime = match cri.version().await {
        Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
        Err(_) => String::new(),
    };
    match crate::node::start(cfg, node_name, &runtime) {
        Ok(h) => Some(h),
        Err(e) => {
            log::error!("node {node_name}: not joining the cluster: {e}");
            None
        }
    }
}

/// SIGTERM and SIGINT as an async event (signalfd; the signals are blocked for every thread).
pub struct Signals {
    fd: Option<smol::Async<nix::sys::signalfd::SignalFd>>,
}

impl Signals {
    fn new() -> Result<Self, AgentError> {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        // Already blocked process-wide by `block_signals` before any thread started.
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| AgentError::Signals(e.to_string()))?;
        let fd = smol::Async::new(fd).map_err(|e| AgentError::Signals(e.to_string()))?;
        Ok(Signals { fd: Some(fd) })
    }

    async fn wait(&self) {
        let Some(fd) = &self.fd else {
            return std::future::pending().await;
        };
        loop {
            match fd
                .read_with(|s| {
                    // Drain one siginfo record; the fd is non-blocking, so this never blocks.
                    let mut buf = [0u8; 128];
                    nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(s), &mut buf)
                        .map_err(std::io::Error::from)
                })
                .await
            {
                Ok(n) if n > 0 => return,
                _ => smol::Timer::after(Duration::from_millis(100)).await,
            };
        }
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts afterwards, so
/// they are delivered to the agent's signalfd. Call first thing in `main`.
pub fn block_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no static pods, boot is complete as soon as the manifest dir was read; with some,
    /// once each has its containers started.
    #[test]
    fn boot_completes_without_static_pods() {
        assert!(boot_complete(true, &[], 0));
        assert!(!boot_complete(false, &[], 0), "manifest dir not read yet");
        assert!(!boot_complete(true, &[], 1), "a static pod not started");
    }
}
