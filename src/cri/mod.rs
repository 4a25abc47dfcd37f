//! Trimmed CRI client (runtime.v1) over gRPC/h2c on a unix socket.
//!
//! Owns everything between the agent and containerd's CRI plugin: the message types
//! ([`proto`], [`proto_stats`]), sans-I/O gRPC framing and status handling ([`grpc`]), the smol-to-h2 socket
//! adapter ([`transport`]) and the client with deadlines and reconnects ([`client`]).
//! It must not decide *what* to run (that is `reconcile`), interpret Kubernetes objects, or
//! retry with back-off on its own beyond re-sending a request that provably never arrived.

pub mod client;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod proto;
pub mod proto_stats;
pub mod proto_stream;
pub mod transport;

#[cfg(test)]
pub(crate) mod fake_runtime;

pub use client::{CriClient, CriOptions, CRI_API_VERSION};
pub use error::{CriError, ErrorKind, GrpcCode};
