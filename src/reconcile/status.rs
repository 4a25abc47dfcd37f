//! The engine's status view of each pod: plain serialisable data for `tinylet status` and the
//! API pod status. Times are durations relative to the instant the view was taken.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Kubernetes waiting reasons the engine reports.
pub mod reason {
    /// Being created (also while its image is pulled).
    pub const CONTAINER_CREATING: &str = "ContainerCreating";
    /// App container waiting for init containers.
    pub const POD_INITIALIZING: &str = "PodInitializing";
    /// Waiting out the restart back-off.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// The last pull failed.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// Waiting out the pull back-off.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// Pull policy Never and the image is absent.
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    /// Creating the container failed.
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    /// The container's config could not be made (a missing configMap or secret key, an
    /// invalid subPathExpr).
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    /// The runtime cannot tell the container's state.
    pub const CONTAINER_STATUS_UNKNOWN: &str = "ContainerStatusUnknown";
    /// Exit 0.
    pub const COMPLETED: &str = "Completed";
    /// Non-zero exit.
    pub const ERROR: &str = "Error";
    /// Starting the container failed.
    pub const START_ERROR: &str = "StartError";
    /// Pod-level reason: the pod outlived its `activeDeadlineSeconds` (the kubelet's spelling).
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The pod-level message that goes with [`DEADLINE_EXCEEDED`] (the kubelet's wording).
    pub const DEADLINE_EXCEEDED_MESSAGE: &str =
        "Pod was active on the node longer than the specified deadline";
    /// Pod-level reason: the node ran short of a resource and evicted the pod.
    pub const EVICTED: &str = "Evicted";
}

/// Pod phase (Kubernetes semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// Not all containers are running yet.
    Pending,
    /// Containers are running (or restarting).
    Running,
    /// All containers exited 0 and will not restart.
    Succeeded,
    /// At least one container failed and will not restart.
    Failed,
}

/// The pod conditions the kubelet owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodConditions {
    /// All init containers completed successfully.
    pub initialized: bool,
    /// All app containers are ready.
    pub containers_ready: bool,
    /// The pod is ready to serve.
    pub ready: bool,
    /// Init containers not yet complete (regular ones not exited 0, sidecars not started), in
    /// spec order: what the Initialized condition's message names while it is False.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete_init: Vec<String>,
    /// Sidecars and app containers that are not ready, in spec order: what the
    /// ContainersReady condition's message names while it is False.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unready: Vec<String>,
}

/// A container's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ContainerStateView {
    /// Not running; why.
    Waiting {
        /// Kubernetes reason (ContainerCreating, CrashLoopBackOff, ErrImagePull, ...).
        reason: String,
        /// Detail.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Running.
    Running {
        /// Seconds since it started.
        running_for_secs: u64,
    },
    /// Exited.
    Terminated {
        /// Exit code, if known.
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Completed, Error, OOMKilled, ...
        reason: String,
        /// Seconds since it finished, if known.
        #[serde(skip_serializing_if = "Option::is_none")]
        finished_secs_ago: Option<u64>,
        /// The termination message (file or log tail), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// A back-off a container is waiting out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffView {
    /// Current delay of the curve.
    pub delay_secs: u64,
    /// Time left until the next attempt.
    pub remaining_secs: u64,
    /// When the next attempt is due (not serialised: monotonic clock).
    #[serde(skip)]
    pub until: Option<Instant>,
}

/// Status of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Container name.
    pub name: String,
    /// Image from the spec.
    pub image: String,
    /// The runtime's reference of the image the latest instance runs ("" until known).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Runtime id of the latest instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Current state.
    pub state: ContainerStateView,
    /// The previous instance's termination, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerStateView>,
    /// Readiness.
    pub ready: bool,
    /// Startup probe passed (or none) and running.
    pub started: bool,
    /// Restart count (the latest instance's attempt number).
    pub restart_count: u32,
    /// Back-off being waited out, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffView>,
    /// Last error seen for this container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the latest instance started (not serialised: monotonic clock). Convert once to
    /// wall-clock time for the API status so repeated reports do not drift.
    #[serde(skip)]
    pub started_at: Option<Instant>,
    /// When the latest instance finished (not serialised).
    #[serde(skip)]
    pub finished_at: Option<Instant>,
    /// Runtime id of the instance `last_state` describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_container_id: Option<String>,
    /// When the instance `last_state` describes started (not serialised: monotonic clock).
    #[serde(skip)]
    pub last_started_at: Option<Instant>,
    /// When the instance `last_state` describes finished (not serialised).
    #[serde(skip)]
    pub last_finished_at: Option<Instant>,
}

/// Status of one desired pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Pod UID.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Desired spec hash.
    pub spec_hash: String,
    /// Phase.
    pub phase: PodPhase,
    /// Conditions.
    pub conditions: PodConditions,
    /// Pod IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// Deletion was requested.
    pub deleting: bool,
    /// Deletion requested and every container and sandbox is gone: safe to confirm.
    pub terminated: bool,
    /// Pod-level reason in CamelCase (e.g. DeadlineExceeded), when the pod was failed for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Last pod-level error (sandbox, teardown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Init containers in spec order.
    pub init_containers: Vec<ContainerStatus>,
    /// App containers in spec order.
    pub containers: Vec<ContainerStatus>,
    /// Ephemeral containers in spec order (never ready, never restarted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_containers: Vec<ContainerStatus>,
}

impl ContainerStateView {
    /// The waiting reason, if waiting.
    pub fn waiting_reason(&self) -> Option<&str> {
        match self {
            ContainerStateView::Waiting { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Severity of a pod event (the API's Event `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// Progress.
    Normal,
    /// Something went wrong.
    Warning,
}

/// A kubelet-style event about a pod (Pulling, Created, Started, Killing, BackOff, Unhealthy…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEvent {
    /// The pod it is about.
    pub pod: super::model::PodRef,
    /// Container it is about, if any (the API's `involvedObject.fieldPath`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// CamelCase reason, as the kubelet spells it.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_state_fields_are_camel_case_like_the_rest() {
        let running = ContainerStateView::Running {
            running_for_secs: 7,
        };
        let j = serde_json::to_value(&running).unwrap();
        assert_eq!(j, serde_json::json!({"running": {"runningForSecs": 7}}));
        let term = ContainerStateView::Terminated {
            exit_code: Some(1),
            reason: "Error".into(),
            finished_secs_ago: Some(3),
            message: None,
        };
        let j = serde_json::to_value(&term).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedSecsAgo": 3}})
        );
        let back: ContainerStateView = serde_json::from_value(j).unwrap();
        assert_eq!(back, term);
    }
}
