//! tinylet: a small Kubernetes node agent (kubelet + kube-proxy) for edge and ARM devices.
//!
//! The modules follow the data flow:
//! sources of desired state (`manifest`, `api`, `store`) → `reconcile` (sans-I/O) →
//! runtime (`cri`) and kernel (`netlink` via `proxy`) → status back out.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod cri;
pub mod csi;
pub mod doctor;
pub mod k8s;
pub mod latency;
pub mod logging;
pub mod manifest;
pub mod netlink;
pub mod node;
pub mod proxy;
pub mod reconcile;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod store;

/// `tinylet --version`: version, target triple and git commit.
pub fn version_line() -> String {
    format!(
        "tinylet {} ({}, commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("TINYLET_TARGET"),
        env!("TINYLET_GIT_COMMIT")
    )
}
