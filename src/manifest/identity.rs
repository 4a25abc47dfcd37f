//! Static pod identity: the deterministic UID, the name suffix, the annotations, and the spec
//! hash reconcile compares to notice edits.
//!
//! Both hashes are FNV-1a 128 over a canonical JSON text, written as 32 lowercase hex digits.
//! The canonical text is the manifest's JSON value with object keys sorted (byte order), no
//! whitespace, strings escaped as serde_json does, numbers as serde_json prints them. This makes
//! the hashes independent of formatting, comments, key order and YAML-vs-JSON, stable across
//! runs, platforms and releases (pinned by test vectors below), and changed by any edit of a
//! value. They are identifiers, not security: nothing here defends against a chosen collision.

use serde_json::Value;

use crate::k8s::pod::{Pod, PodSpec, Toleration};

/// The value of `kubernetes.io/config.source` for pods read from the manifest directory.
pub const CONFIG_SOURCE_FILE: &str = "file";
/// Annotation naming where a static pod came from.
pub const ANNOTATION_CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Whether `pod` was read from the manifest directory (a static pod).
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .get(ANNOTATION_CONFIG_SOURCE)
        .is_some_and(|v| v == CONFIG_SOURCE_FILE)
}

/// Annotation carrying the static pod's UID (its content hash).
pub const ANNOTATION_CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation the agent sets with the time it first saw the pod (not set by this module).
pub const ANNOTATION_CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// Annotation marking a mirror pod in the API server (set by whoever creates mirror pods).
pub const ANNOTATION_CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// Incremental FNV-1a 128-bit hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Fnv128(FNV128_OFFSET)
    }
}

impl Fnv128 {
    /// Feeds bytes into the hash.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(FNV128_PRIME);
        }
    }

    /// The hash as 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

/// FNV-1a 128 of `bytes` as 32 lowercase hex digits.
pub fn fnv1a_128_hex(bytes: &[u8]) -> String {
    let mut h = Fnv128::default();
    h.write(bytes);
    h.hex()
}

/// Writes `v` as canonical JSON (sorted keys, no whitespace) into `out`.
pub fn write_canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => push_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                if let Some(item) = map.get(k.as_str()) {
                    write_canonical_json(item, out);
                }
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // serde_json's string escaping is fixed by the JSON spec and its own tests; it cannot fail
    // for a &str, and the fallback keeps this total anyway.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => {
            out.push('"');
            out.push_str(&s.escape_default().to_string());
            out.push('"');
        }
    }
}

/// The static pod UID: FNV-1a 128 of `canonical(manifest) 0x00 source 0x00 node_name`.
pub fn static_pod_uid(manifest: &Value, source: &str, node_name: &str) -> String {
    let mut text = String::new();
    write_canonical_json(manifest, &mut text);
    let mut h = Fnv128::default();
    h.write(text.as_bytes());
    h.write(&[0]);
    h.write(source.as_bytes());
    h.write(&[0]);
    h.write(node_name.as_bytes());
    h.hex()
}

/// Hash of a pod spec as tinylet models it: changes when any modelled field changes.
///
/// FNV-1a 128 of the canonical JSON of the serialised [`PodSpec`]. Fields tinylet does not
/// model do not take part, so editing only those does not restart anything.
pub fn spec_hash(spec: &PodSpec) -> String {
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    let mut text = String::new();
    write_canonical_json(&value, &mut text);
    fnv1a_128_hex(text.as_bytes())
}

/// The static pod name: the manifest name, `-`, the lowercased node name.
pub fn static_pod_name(name: &str, node_name: &str) -> String {
    format!("{}-{}", name, node_name.to_lowercase())
}

/// Turns a decoded manifest into the static pod the agent runs, as the kubelet does: namespace
/// `default` when absent, name suffixed with the node, UID and hash annotation from `uid`,
/// source annotation, `spec.nodeName`, and a toleration of every NoExecute taint so node
/// problems never evict a static pod.
pub fn apply_static_identity(pod: &mut Pod, uid: &str, node_name: &str) {
    if pod.metadata.namespace.is_empty() {
        pod.metadata.namespace = "default".to_string();
    }
    pod.metadata.name = static_pod_name(&pod.metadata.name, node_name);
    pod.metadata.uid = uid.to_string();
    pod.metadata.annotations.insert(
        ANNOTATION_CONFIG_SOURCE.to_string(),
        CONFIG_SOURCE_FILE.to_string(),
    );
    pod.metadata
        .annotations
        .insert(ANNOTATION_CONFIG_HASH.to_string(), uid.to_string());
    pod.spec.node_name = node_name.to_string();
    let tolerate_all_no_execute = Toleration {
        operator: "Exists".to_string(),
        effect: "NoExecute".to_string(),
        ..Default::default()
    };
    if !pod.spec.tolerations.contains(&tolerate_all_no_execute) {
        pod.spec.tolerations.push(tolerate_all_no_execute);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_128_reference_vectors() {
        assert_eq!(fnv1a_128_hex(b""), "6c62272e07bb014262b821756295c58d");
        assert_eq!(fnv1a_128_hex(b"a"), "d228cb696f1a8caf78912b704e4a8964");
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let a: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, "x\n"], "a": {"d": null, "c": true} }"#)
                .unwrap();
        let mut s = String::new();
        write_canonical_json(&a, &mut s);
        assert_eq!(s, r#"{"a":{"c":true,"d":null},"b":[1,2.5,"x\n"]}"#);
    }

    #[test]
    fn uid_is_pinned_and_ignores_formatting() {
        let json: Value = serde_json::from_str(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"nginx:1.27"}]}}"#,
        )
        .unwrap();
        let yaml: Value = serde_yaml_ng::from_str(
            "# comment\nkind: Pod\napiVersion: v1\nspec:\n  containers:\n  - image: nginx:1.27\n    name: c\nmetadata:\n  name: web\n",
        )
        .unwrap();
        let uid = static_pod_uid(&json, CONFIG_SOURCE_FILE, "pi-1");
        // Pinned: changing this value changes every static pod UID on upgrade.
        assert_eq!(uid, static_pod_uid(&yaml, CONFIG_SOURCE_FILE, "pi-1"));
        assert_eq!(uid.len(), 32);
        assert_eq!(uid, PINNED_UID);
        assert_ne!(uid, static_pod_uid(&json, CONFIG_SOURCE_FILE, "pi-2"));
        assert_ne!(uid, static_pod_uid(&json, "http", "pi-1"));
    }

    const PINNED_UID: &str = "f62d52a1cf6deb6a7257c71c0dbab39a";

    #[test]
    fn spec_hash_changes_with_the_spec_only() {
        let mut pod = Pod::default();
        pod.spec.containers.push(Default::default());
        let h1 = spec_hash(&pod.spec);
        pod.metadata.labels.insert("a".into(), "b".into());
        assert_eq!(spec_hash(&pod.spec), h1);
        pod.spec.containers[0].image = "x".into();
        assert_ne!(spec_hash(&pod.spec), h1);
        assert_eq!(spec_hash(&PodSpec::default()), SPEC_HASH_OF_EMPTY_SPEC);
    }

    const SPEC_HASH_OF_EMPTY_SPEC: &str = "fc4c7ad4853129e5311c0d67b6a76c8b";

    #[test]
    fn identity_follows_the_kubelet() {
        let mut pod = Pod::default();
        pod.metadata.name = "etcd".into();
        apply_static_identity(&mut pod, "0123", "Pi-Kitchen");
        assert_eq!(pod.metadata.name, "etcd-pi-kitchen");
        assert_eq!(pod.metadata.namespace, "default");
        assert_eq!(pod.metadata.uid, "0123");
        assert_eq!(pod.metadata.annotations[ANNOTATION_CONFIG_HASH], "0123");
        assert_eq!(pod.metadata.annotations[ANNOTATION_CONFIG_SOURCE], "file");
        assert_eq!(pod.spec.node_name, "Pi-Kitchen");
        assert_eq!(pod.spec.tolerations.len(), 1);
        apply_static_identity(&mut pod, "0123", "Pi-Kitchen");
        assert_eq!(pod.spec.tolerations.len(), 1);
    }
}
