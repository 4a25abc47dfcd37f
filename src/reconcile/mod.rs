//! Pod lifecycle engine: desired pods + observed runtime state + probe results + a clock → actions.
//!
//! This module owns the kubelet's pod semantics as a sans-I/O state machine: sandbox first,
//! init containers one at a time (native sidecars included), restart policies with the
//! CrashLoopBackOff curve, image pull policies with ImagePullBackOff, liveness/readiness/startup
//! probes, graceful termination, replacement on spec change, orphan cleanup, and adoption of
//! running pods after an agent restart. It must not do I/O, spawn threads, read the clock or
//! know CRI messages: adapters translate into [`model`] (see [`from_pod`] for API pods) and
//! out of [`action`]; per-pod workers execute the actions and report results back.
//!
//! Driving it (every call takes the current `Instant`; nothing happens between calls):
//! 1. [`Engine::set_desired`] (or `upsert_pod`/`remove_pod`) whenever the desired set changes;
//! 2. [`Engine::observe`] with each runtime relist, stamped with when the relist was sent;
//! 3. [`Engine::poll`] → [`Action`]s. Actions of one poll may run concurrently (the engine only
//!    issues several for one pod when they are independent: stops, removals, probes);
//! 4. [`Engine::complete`] with exactly one [`ActionResult`] per action id, then poll again;
//! 5. sleep until [`Engine::next_wakeup`] or the next input, whichever comes first.
//!
//! The engine acts only once it has seen both a desired set and a relist, so a restarted
//! agent adopts what is running instead of killing or duplicating it. Objects are recognised
//! by the labels in [`labels`]; containers log to the paths in [`logs`].

pub mod action;
pub mod backoff;
pub mod engine;
pub mod eviction;
pub mod from_pod;
pub mod labels;
pub mod logs;
pub mod model;
mod pod;
mod pod_status;
pub mod probe;
pub mod startclock;
pub mod status;

#[cfg(test)]
mod tests;

pub use action::{Action, ActionId, ActionKind, ActionResult, ReconcileError};
pub use engine::{Engine, EngineConfig};
pub use model::{DesiredContainer, DesiredPod, Observed, PodRef};
pub use status::{PodPhase, PodStatus};
