//! Hand-written, trimmed Kubernetes API types (core/v1, discovery/v1, coordination/v1,
//! certificates/v1, events/v1, storage.k8s.io/v1).
//!
//! Only the fields tinylet reads or writes are modelled. Decoding is lenient the way the API
//! server's clients must be: unknown fields are ignored and missing fields take their defaults,
//! so a newer server never breaks an older agent. Validation of what a field means belongs to
//! the consumers (manifest loading, reconcile, proxy), not here.

pub mod certificates;
pub mod configmap;
pub mod coordination;
pub mod discovery;
pub mod events;
pub mod list;
pub mod meta;
pub mod node;
pub mod pod;
pub mod protobuf;
pub mod quantity;
pub mod service;
pub mod status;
pub mod storage;
