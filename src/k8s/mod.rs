//! Hand-written, trimmed Kubernetes API types (core/v1, discovery/v1, ...).
