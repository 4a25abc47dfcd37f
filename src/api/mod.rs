//! Kubernetes API client for flaky links: kubeconfig loading and writing, HTTPS requests with
//! bounded time and memory, list+watch with re-list and bookmarks, and retry back-off.
//!
//! Owns talking to the API server and nothing else: it does not decide what to do with pods,
//! nodes or leases (reconcile and the status reporters do), and it never disables TLS
//! verification. Pure logic (`backoff`, the watch decoder and informer state machine) is
//! sans-I/O, and so is `linkhealth`, the one signal all clients of a server share; `client`
//! (HTTP/1.1 through ureq), `h2link` (one HTTP/2 connection for single-object requests) and
//! the thin drivers in `watch` are the only places that touch sockets.

pub mod backoff;
pub mod client;
pub mod h2link;
pub mod kubeconfig;
pub mod linkhealth;
pub mod watch;

pub use backoff::{Backoff, BackoffConfig, RandomSource, XorShift64};
pub use client::{ApiError, ApiErrorKind, Client, ClientConfig, ListParams, WatchStream};
pub use kubeconfig::{
    write_cert_kubeconfig, Auth, Bearer, ClusterConfig, Kubeconfig, KubeconfigError,
};
pub use linkhealth::{LinkCursor, LinkHealth, LinkSignal};
pub use watch::{
    Action, EventDecoder, Informer, InformerConfig, InformerEvent, LineDecoder, ListWatch, Store,
    WatchDecodeError, WatchMode,
};
