//! kube-proxy: Services and EndpointSlices to a load-balancer backend (IPVS).
//!
//! Layers: `source` (manifests → a [`source::Model`]), `desired` (model → desired
//! [`table::State`], sans I/O), `diff` (two states → ops, sans I/O), `backend` (the
//! [`backend::Backend`] seam, the IPVS backend and the syncer), `schedule` (when the loop
//! syncs, sans I/O), `heap` (the allocator's policy), `cmd` (the `tinylet proxy` and
//! `tinylet ipvs` commands). Wire formats belong to `netlink`, not here.

pub mod apisource;
pub mod backend;
pub mod cmd;
pub mod desired;
pub mod diff;
pub mod heap;
pub mod nft;
pub mod schedule;
pub mod source;
pub mod table;

use std::fmt;

pub use cmd::{ipvs_main, proxy_main};

/// Why a proxy step failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel side failed.
    Netlink(crate::netlink::Error),
    /// A manifest could not be read or parsed.
    Source {
        /// File or directory.
        path: String,
        /// What was wrong.
        what: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Netlink(e) => e.fmt(f),
            Error::Source { path, what } => write!(f, "read manifests {path}: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Netlink(e) => Some(e),
            Error::Source { .. } => None,
        }
    }
}

impl From<crate::netlink::Error> for Error {
    fn from(e: crate::netlink::Error) -> Self {
        Error::Netlink(e)
    }
}

#[cfg(test)]
mod tests;
