//! Labels and annotations tinylet puts on sandboxes and containers, and how to read them back.
//!
//! The identity keys are the kubelet's, so `crictl` and other tools show familiar names; the
//! `tinylet.io/*` keys mark what tinylet owns and which spec created it (for adoption).

use std::collections::BTreeMap;

use super::model::{DesiredContainer, DesiredPod, PodRef};

/// Pod name label (kubelet key).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace label (kubelet key).
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID label (kubelet key).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name label (kubelet key).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marker on everything tinylet created; objects without it are never touched.
pub const MANAGED: &str = "tinylet.io/managed";
/// Value of the managed marker.
pub const MANAGED_VALUE: &str = "true";
/// Spec hash of the pod (on sandboxes) or of the container (on containers).
pub const SPEC_HASH: &str = "tinylet.io/spec-hash";
/// Restart count annotation (kubelet key).
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Termination grace annotation in seconds (kubelet key).
pub const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
/// On the sandboxes of critical pods (static, or a system-critical priority), which a graceful
/// node shutdown stops last, within `shutdownGracePeriodCriticalPods`.
pub const CRITICAL: &str = "tinylet.io/critical";

fn identity(pod: &PodRef) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(POD_NAME.to_string(), pod.name.clone());
    m.insert(POD_NAMESPACE.to_string(), pod.namespace.clone());
    m.insert(POD_UID.to_string(), pod.uid.clone());
    m.insert(MANAGED.to_string(), MANAGED_VALUE.to_string());
    m
}

/// Labels for a pod's sandbox. Merge the pod's own labels under these (these win).
pub fn sandbox_labels(pod: &DesiredPod) -> BTreeMap<String, String> {
    sandbox_labels_for(&pod.pod_ref(), &pod.spec_hash)
}

/// Sandbox labels from a pod identity and its spec hash.
pub(crate) fn sandbox_labels_for(pod: &PodRef, spec_hash: &str) -> BTreeMap<String, String> {
    let mut m = identity(pod);
    m.insert(SPEC_HASH.to_string(), spec_hash.to_string());
    m
}

/// Annotations for a pod's sandbox. Merge the pod's own annotations under these.
pub fn sandbox_annotations(pod: &DesiredPod) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(
        TERMINATION_GRACE.to_string(),
        pod.termination_grace.as_secs().to_string(),
    );
    if pod.critical {
        m.insert(CRITICAL.to_string(), "true".to_string());
    }
    m
}

/// Whether a sandbox's annotations mark a critical pod.
pub fn is_critical(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(CRITICAL).map(String::as_str) == Some("true")
}

/// Labels for one container of a pod.
pub fn container_labels(
    pod: &DesiredPod,
    container: &DesiredContainer,
) -> BTreeMap<String, String> {
    container_labels_for(&pod.pod_ref(), &container.name, &container.spec_hash)
}

/// Container labels from a pod identity, the container name and its spec hash.
pub(crate) fn container_labels_for(
    pod: &PodRef,
    container: &str,
    spec_hash: &str,
) -> BTreeMap<String, String> {
    let mut m = identity(pod);
    m.insert(CONTAINER_NAME.to_string(), container.to_string());
    m.insert(SPEC_HASH.to_string(), spec_hash.to_string());
    m
}

/// Annotations for one container instance.
pub fn container_annotations(pod: &DesiredPod, attempt: u32) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(RESTART_COUNT.to_string(), attempt.to_string());
    m.insert(
        TERMINATION_GRACE.to_string(),
        pod.termination_grace.as_secs().to_string(),
    );
    m
}

/// Whether tinylet created the object carrying these labels.
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED).map(String::as_str) == Some(MANAGED_VALUE)
}

/// The spec hash recorded on an object (label first, then annotation).
pub fn spec_hash<'a>(
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    labels
        .get(SPEC_HASH)
        .or_else(|| annotations.get(SPEC_HASH))
        .map(String::as_str)
}

/// A label's value, or "" when absent.
pub(crate) fn get<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map(String::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_and_container_sets() {
        let mut pod = DesiredPod::new("u1", "ns", "web", "h1");
        pod.termination_grace = std::time::Duration::from_secs(7);
        let c = DesiredContainer::new("app", "nginx", "ch");
        let s = sandbox_labels(&pod);
        assert_eq!(get(&s, POD_NAME), "web");
        assert_eq!(get(&s, POD_NAMESPACE), "ns");
        assert_eq!(get(&s, POD_UID), "u1");
        assert!(is_managed(&s));
        assert_eq!(spec_hash(&s, &BTreeMap::new()), Some("h1"));
        let l = container_labels(&pod, &c);
        assert_eq!(get(&l, CONTAINER_NAME), "app");
        assert_eq!(spec_hash(&l, &BTreeMap::new()), Some("ch"));
        let a = container_annotations(&pod, 3);
        assert_eq!(get(&a, RESTART_COUNT), "3");
        assert_eq!(get(&sandbox_annotations(&pod), TERMINATION_GRACE), "7");
    }

    #[test]
    fn unmanaged_and_annotation_fallback() {
        let mut l = BTreeMap::new();
        assert!(!is_managed(&l));
        l.insert(MANAGED.to_string(), "false".to_string());
        assert!(!is_managed(&l));
        let mut a = BTreeMap::new();
        a.insert(SPEC_HASH.to_string(), "x".to_string());
        assert_eq!(spec_hash(&l, &a), Some("x"));
        assert_eq!(get(&l, POD_UID), "");
    }
}
