//! Pod lifecycle engine: desired pods + observed runtime state + probe results + a clock → actions.
//!
//! This module owns the kubelet's pod semantics (sandbox first, init containers in order,
//! restart policies and back-off, image pull policies, probes, graceful termination,
//! replacement on spec change, orphan cleanup and adoption after a restart) as a sans-I/O
//! state machine. It must not do I/O, spawn threads, read the clock or know the CRI or the
//! Kubernetes API types: adapters on both sides translate into [`model`] and out of
//! [`action`], and per-pod workers execute the actions and report results back.

pub mod action;
pub mod backoff;
pub mod engine;
pub mod from_pod;
pub mod labels;
pub mod logs;
pub mod model;
mod pod;
mod pod_status;
pub mod probe;
pub mod status;

#[cfg(test)]
mod tests;

pub use action::{Action, ActionId, ActionKind, ActionResult, ReconcileError};
pub use engine::{Engine, EngineConfig};
pub use model::{DesiredContainer, DesiredPod, Observed, PodRef};
pub use status::{PodPhase, PodStatus};
