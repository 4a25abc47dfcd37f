//! What the engine asks the outside world to do, and what comes back.
//!
//! Every action carries an [`ActionId`]; the executor reports exactly one [`ActionResult`]
//! per id through `Engine::complete`. Actions of one pod are meant for that pod's worker.

use std::fmt;
use std::time::Duration;

use super::model::{PodRef, ProbeHandler, ProbeKind};

/// Identifies one emitted action until its result is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionId(pub u64);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One thing to do for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Report the result under this id.
    pub id: ActionId,
    /// The pod it is for (orphans are named from their labels).
    pub pod: PodRef,
    /// What to do.
    pub kind: ActionKind,
}

/// The operations, close to the CRI calls that carry them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// Pull an image for a container. Result: `Done` or `Failed`.
    PullImage {
        /// Container needing it.
        container: String,
        /// Image reference as in the spec.
        image: String,
    },
    /// Create and start the pod sandbox (labels: `labels::sandbox_labels`).
    /// Result: `SandboxCreated` or `Failed`.
    RunSandbox {
        /// Sandbox metadata attempt.
        attempt: u32,
        /// Pod spec hash to label it with.
        spec_hash: String,
    },
    /// Create a container (labels: `labels::container_labels`, log path:
    /// `logs::container_log_relpath(container, attempt)`). Result: `ContainerCreated` or `Failed`.
    CreateContainer {
        /// Sandbox to create it in.
        sandbox_id: String,
        /// Container name in the pod spec.
        container: String,
        /// Whether it is an init container.
        init: bool,
        /// Container metadata attempt (= restart count).
        attempt: u32,
        /// Container spec hash to label it with.
        spec_hash: String,
    },
    /// Start a created container. Result: `Done` or `Failed`.
    StartContainer {
        /// Runtime id.
        container_id: String,
        /// Container name.
        container: String,
    },
    /// Stop a container, SIGTERM then SIGKILL after `grace`. Result: `Done` or `Failed`.
    StopContainer {
        /// Runtime id.
        container_id: String,
        /// Container name (empty for unnamed orphans).
        container: String,
        /// Grace period before the kill.
        grace: Duration,
    },
    /// Remove a stopped container. Result: `Done` or `Failed`.
    RemoveContainer {
        /// Runtime id.
        container_id: String,
    },
    /// Stop a sandbox (tears down its network). Result: `Done` or `Failed`.
    StopSandbox {
        /// Runtime id.
        sandbox_id: String,
    },
    /// Remove a stopped sandbox. Result: `Done` or `Failed`.
    RemoveSandbox {
        /// Runtime id.
        sandbox_id: String,
    },
    /// Run one probe, failing it after `timeout`. Result: `ProbeSucceeded` or `ProbeFailed`
    /// (`Failed` also counts as a probe failure).
    RunProbe {
        /// Container name.
        container: String,
        /// Runtime id (for exec probes).
        container_id: String,
        /// Which probe.
        kind: ProbeKind,
        /// What to run.
        handler: ProbeHandler,
        /// Time limit.
        timeout: Duration,
        /// Pod IP, the target when the handler's host is empty.
        pod_ip: Option<String>,
    },
}

impl ActionKind {
    /// The runtime object this action works on, if it names one.
    pub fn target(&self) -> Option<&str> {
        match self {
            ActionKind::StartContainer { container_id, .. }
            | ActionKind::StopContainer { container_id, .. }
            | ActionKind::RemoveContainer { container_id }
            | ActionKind::RunProbe { container_id, .. } => Some(container_id),
            ActionKind::StopSandbox { sandbox_id } | ActionKind::RemoveSandbox { sandbox_id } => {
                Some(sandbox_id)
            }
            ActionKind::PullImage { .. }
            | ActionKind::RunSandbox { .. }
            | ActionKind::CreateContainer { .. } => None,
        }
    }

    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::PullImage { .. } => "PullImage",
            ActionKind::RunSandbox { .. } => "RunSandbox",
            ActionKind::CreateContainer { .. } => "CreateContainer",
            ActionKind::StartContainer { .. } => "StartContainer",
            ActionKind::StopContainer { .. } => "StopContainer",
            ActionKind::RemoveContainer { .. } => "RemoveContainer",
            ActionKind::StopSandbox { .. } => "StopSandbox",
            ActionKind::RemoveSandbox { .. } => "RemoveSandbox",
            ActionKind::RunProbe { .. } => "RunProbe",
        }
    }
}

/// The outcome of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// Succeeded, nothing to report (pull, start, stop, remove).
    Done,
    /// `RunSandbox` succeeded.
    SandboxCreated {
        /// Runtime id of the new sandbox.
        sandbox_id: String,
        /// Pod IP, if known.
        pod_ip: Option<String>,
    },
    /// `CreateContainer` succeeded.
    ContainerCreated {
        /// Runtime id of the new container.
        container_id: String,
        /// The runtime's reference of the image it runs (imageID), if already known.
        image_ref: String,
        /// The pod IP, when it was learned alongside (the sandbox step left it out).
        pod_ip: Option<String>,
        /// (reason, message) of what was skipped on the way, to report as Warning events
        /// (e.g. `InvalidEnvironmentVariableNames` for envFrom keys that are not valid names).
        warnings: Vec<(String, String)>,
    },
    /// `RunProbe` passed.
    ProbeSucceeded,
    /// `RunProbe` failed or timed out.
    ProbeFailed {
        /// Why, for the status view.
        message: String,
    },
    /// Any action failed.
    Failed {
        /// The error, for the status view.
        message: String,
    },
    /// `CreateContainer` failed before the runtime was asked: the container's config cannot be
    /// assembled from the pod spec and what it refers to (a missing configMap or secret key in
    /// `env`, an invalid subPathExpr, ...): the kubelet's `CreateContainerConfigError`, retried
    /// with back-off.
    ConfigFailed {
        /// The kubelet's wording, e.g. `couldn't find key K in ConfigMap ns/name`.
        message: String,
    },
    /// `RunSandbox` or `CreateContainer` failed because a volume cannot be set up (its
    /// configMap or secret is missing, ...): a `FailedMount` event while the pod stays
    /// `ContainerCreating`, retried with back-off.
    MountFailed {
        /// The volume's name in the pod spec.
        volume: String,
        /// Why, e.g. `configmap "name" not found`.
        message: String,
    },
}

/// Errors the engine reports when fed results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconcileError {
    /// A result for an id the engine never issued or already completed.
    UnknownAction {
        /// The id.
        id: ActionId,
    },
    /// A result of the wrong shape for its action; it was treated as a failure.
    MismatchedResult {
        /// The id.
        id: ActionId,
        /// The action's name.
        action: &'static str,
        /// Pod UID.
        pod: String,
    },
}

impl fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileError::UnknownAction { id } => {
                write!(f, "completing action {id}: no such action outstanding (stale or duplicate result; ignored)")
            }
            ReconcileError::MismatchedResult { id, action, pod } => write!(
                f,
                "completing {action} {id} of pod {pod}: result does not fit the action (treated as a failure)"
            ),
        }
    }
}

impl std::error::Error for ReconcileError {}
