//! The engine's input model: what should run (desired) and what the runtime shows (observed).
//!
//! These types are deliberately independent of the Kubernetes API types and of the CRI
//! messages: adapters on either side translate into them, so the engine stays small and
//! testable. Times are monotonic `Instant`s; callers convert the runtime's wall-clock stamps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Kubelet default probe period.
pub const DEFAULT_PROBE_PERIOD: Duration = Duration::from_secs(10);
/// Kubelet default probe timeout.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Kubelet default probe failure threshold.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Kubelet default termination grace period.
pub const DEFAULT_TERMINATION_GRACE: Duration = Duration::from_secs(30);

/// Pod restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart every container that exits (the Kubernetes default).
    Always,
    /// Restart only containers that exit with a non-zero code.
    OnFailure,
    /// Never restart; the pod ends Succeeded or Failed.
    Never,
}

/// Image pull policy of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Pull before every container creation.
    Always,
    /// Pull only when the image is absent.
    IfNotPresent,
    /// Never pull; an absent image is an error (`ErrImageNeverPull`).
    Never,
}

/// The three probe kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// Failure restarts the container.
    Liveness,
    /// Drives the container's ready flag.
    Readiness,
    /// Gates liveness and readiness until it first succeeds.
    Startup,
}

/// HTTP scheme of an httpGet probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpScheme {
    /// Plain HTTP.
    Http,
    /// HTTPS without certificate verification (as the kubelet does).
    Https,
}

/// How a probe is carried out; executing it is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeHandler {
    /// Run a command in the container; exit 0 is success.
    Exec {
        /// argv of the command.
        command: Vec<String>,
    },
    /// GET a URL; a status in 200..400 is success. An empty host means the pod IP.
    HttpGet {
        /// Host to connect to; empty means the pod IP.
        host: String,
        /// TCP port.
        port: u16,
        /// Request path.
        path: String,
        /// http or https.
        scheme: HttpScheme,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection; connecting is success. An empty host means the pod IP.
    TcpSocket {
        /// Host to connect to; empty means the pod IP.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// gRPC health check (grpc.health.v1) against the pod IP; SERVING is success.
    Grpc {
        /// TCP port.
        port: u16,
        /// Service name sent in the request, if any.
        service: Option<String>,
    },
}

/// One probe of one container, with the kubelet's timing knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to run.
    pub handler: ProbeHandler,
    /// Delay after the container started before the first probe.
    pub initial_delay: Duration,
    /// Interval between probes.
    pub period: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// Consecutive successes needed to count as passing.
    pub success_threshold: u32,
    /// Consecutive failures needed to count as failing.
    pub failure_threshold: u32,
}

impl ProbeSpec {
    /// A probe with the kubelet defaults (delay 0, period 10 s, timeout 1 s, 1 success, 3 failures).
    pub fn new(handler: ProbeHandler) -> Self {
        ProbeSpec {
            handler,
            initial_delay: Duration::ZERO,
            period: DEFAULT_PROBE_PERIOD,
            timeout: DEFAULT_PROBE_TIMEOUT,
            success_threshold: 1,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
        }
    }

    /// The period, never zero: a zero period from a bad manifest must not spin the loop.
    pub(crate) fn effective_period(&self) -> Duration {
        if self.period.is_zero() {
            DEFAULT_PROBE_PERIOD
        } else {
            self.period
        }
    }
}

/// One container the pod should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredContainer {
    /// Container name, unique within the pod.
    pub name: String,
    /// Image reference as written in the spec.
    pub image: String,
    /// When to pull the image.
    pub pull_policy: PullPolicy,
    /// Stable hash of this container's spec; a change restarts the container.
    pub spec_hash: String,
    /// Liveness probe.
    pub liveness: Option<ProbeSpec>,
    /// Readiness probe.
    pub readiness: Option<ProbeSpec>,
    /// Startup probe.
    pub startup: Option<ProbeSpec>,
    /// A native sidecar (an init container with restartPolicy Always): started in init order,
    /// the next init container waits only until it has started, and it keeps running (and is
    /// always restarted) until the app containers are done. Ignored for app containers.
    pub sidecar: bool,
}

impl DesiredContainer {
    /// A container with no probes and the IfNotPresent pull policy.
    pub fn new(name: &str, image: &str, spec_hash: &str) -> Self {
        DesiredContainer {
            name: name.to_string(),
            image: image.to_string(),
            pull_policy: PullPolicy::IfNotPresent,
            spec_hash: spec_hash.to_string(),
            liveness: None,
            readiness: None,
            startup: None,
            sidecar: false,
        }
    }

    /// The probe of the given kind, if any.
    pub fn probe(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Startup => self.startup.as_ref(),
        }
    }
}

/// A graceful deletion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    /// Grace period given to each container's stop.
    pub grace: Duration,
}

/// One pod that should run on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPod {
    /// Pod UID; the engine's key.
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Hash of the whole pod spec; a change replaces the pod (stop old, start new).
    pub spec_hash: String,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// terminationGracePeriodSeconds.
    pub termination_grace: Duration,
    /// Whether the sandbox shares the host's network namespace.
    pub host_network: bool,
    /// A static pod or one with a system-critical priority: a graceful node shutdown stops
    /// it last (recorded on its sandbox, where `tinylet shutdown` reads it).
    pub critical: bool,
    /// Init containers, run one at a time in order.
    pub init_containers: Vec<DesiredContainer>,
    /// App containers.
    pub containers: Vec<DesiredContainer>,
    /// Ephemeral containers (`kubectl debug`): created once in the running pod's sandbox after
    /// its app containers have started, never restarted, no probes; they do not count for
    /// the phase or readiness, and adding one never replaces the pod.
    pub ephemeral_containers: Vec<DesiredContainer>,
    /// Set once deletion was requested.
    pub deletion: Option<Deletion>,
    /// `activeDeadlineSeconds`: how long the pod may be active on the node, counted from when
    /// it first reached the engine (its `status.startTime`); past it the pod is failed.
    pub active_deadline: Option<Duration>,
}

impl DesiredPod {
    /// A pod with restart policy Always, the default grace and no containers.
    pub fn new(uid: &str, namespace: &str, name: &str, spec_hash: &str) -> Self {
        DesiredPod {
            uid: uid.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec_hash: spec_hash.to_string(),
            restart_policy: RestartPolicy::Always,
            termination_grace: DEFAULT_TERMINATION_GRACE,
            host_network: false,
            critical: false,
            init_containers: Vec::new(),
            containers: Vec::new(),
            ephemeral_containers: Vec::new(),
            deletion: None,
            active_deadline: None,
        }
    }

    /// The pod's identity as carried in actions.
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            uid: self.uid.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// Identity of a pod as named in actions (also for orphans known only from labels).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodRef {
    /// Pod UID.
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
}

/// Sandbox state as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Running with its network set up.
    Ready,
    /// Stopped or dead.
    NotReady,
}

/// Container state as the runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited (see the exit code).
    Exited,
    /// The runtime does not know; treated as running-but-suspect and stopped.
    Unknown,
}

/// One sandbox from a runtime relist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSandbox {
    /// Runtime id.
    pub id: String,
    /// Labels (identity, managed marker, spec hash).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Sandbox attempt number from its metadata.
    pub attempt: u32,
    /// Ready or not.
    pub state: SandboxState,
    /// Pod IP, if the runtime reports one.
    pub ip: Option<String>,
}

/// One container from a runtime relist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    /// Runtime id.
    pub id: String,
    /// Id of the sandbox it lives in.
    pub sandbox_id: String,
    /// Labels (identity, container name, managed marker, spec hash).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Attempt number from its metadata; the restart count.
    pub attempt: u32,
    /// Runtime state.
    pub state: ContainerState,
    /// Image reference it runs.
    pub image: String,
    /// The runtime's content-addressed reference of that image (the status' imageID); empty
    /// when the runtime did not say.
    pub image_ref: String,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// Runtime's reason for the exit (e.g. OOMKilled), if any.
    pub reason: Option<String>,
    /// Its termination message once exited, if any.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Option<Instant>,
    /// When it finished.
    pub finished_at: Option<Instant>,
}

/// One runtime relist: sandboxes, containers and present images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// All sandboxes (unmanaged ones are ignored by the engine).
    pub sandboxes: Vec<ObservedSandbox>,
    /// All containers (unmanaged ones are ignored by the engine).
    pub containers: Vec<ObservedContainer>,
    /// Image references present on the node (any spelling; they are normalised).
    pub images: BTreeSet<String>,
}

/// Normalises an image reference the way the runtime names it, so `nginx` and
/// `docker.io/library/nginx:latest` compare equal.
pub fn normalize_image(image: &str) -> String {
    let image = image.trim();
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A first path component with a dot, a colon or "localhost" is a registry host.
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let last = path.rsplit('/').next().unwrap_or("");
    let tagged = last.contains(':');
    let mut out = format!("{domain}/{path}");
    if !tagged && digest.is_none() {
        out.push_str(":latest");
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_normalise() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            normalize_image("nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize_image("docker.io/library/nginx:latest"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(normalize_image("user/app"), "docker.io/user/app:latest");
        assert_eq!(normalize_image("ghcr.io/o/app:v1"), "ghcr.io/o/app:v1");
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalize_image("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
        // Garbage never panics.
        for s in ["", "/", "@", ":", "a/b/c:", "::@@//"] {
            let _ = normalize_image(s);
        }
    }

    #[test]
    fn probe_defaults_match_the_kubelet() {
        let p = ProbeSpec::new(ProbeHandler::TcpSocket {
            host: String::new(),
            port: 80,
        });
        assert_eq!(p.initial_delay, Duration::ZERO);
        assert_eq!(p.period, Duration::from_secs(10));
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.success_threshold, 1);
        assert_eq!(p.failure_threshold, 3);
    }
}
