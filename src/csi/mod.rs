//! The node side of CSI: plugin registration through `<root-dir>/plugins_registry/`, the
//! client of a driver's Identity/Node services, and the stage/publish and
//! unpublish/unstage of a pod's CSI volumes (inline ephemeral ones and PersistentVolumeClaims
//! bound to CSI PersistentVolumes).
//!
//! Owns: the `pluginregistration.v1` and `csi.v1` messages ([`proto`]), the client over the
//! CRI client's gRPC stack ([`client`]), the registered drivers ([`registry`], sans-I/O, and
//! [`watcher`], its thread), and the volume requests and mounts ([`volume`]). It must not read
//! the API for pods or decide when a pod starts: the runtime's volume manager calls it, with
//! the API objects the agent's volume data source fetched.

pub mod client;
pub mod objects;
pub mod proto;
pub mod registry;
pub mod stats;
pub mod volume;
pub mod watcher;

pub use client::{CsiClient, CsiError};
