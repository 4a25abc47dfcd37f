//! The runtime side of the pod lifecycle: carries out the reconcile engine's actions through
//! CRI, prepares volumes on the host, and runs probes. It decides nothing itself.

pub mod cgroups;
pub mod env;
pub mod executor;
pub mod housekeeping;
pub mod imagegc;
pub mod logrotate;
pub mod probe;
pub mod spec;
pub mod termination;
pub mod volumes;
