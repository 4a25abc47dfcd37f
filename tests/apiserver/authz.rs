//! Who a request is (users from client certificates and bearer tokens) and what it may do:
//! the Node authorizer and NodeRestriction admission as a kubelet meets them, plus bootstrap
//! users (CSRs only) and an all-powerful admin.
//!
//! It reads the store to find relationships (pods bound to a node and what they reference)
//! but never changes it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pki::Subject;
use super::store::{self, kind, KindId, Selector, Store};

/// Annotation that marks a mirror pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name (e.g. `system:node:n1`).
    pub name: String,
    /// Groups (e.g. `system:nodes`).
    pub groups: Vec<String>,
}

impl User {
    /// A cluster admin (`system:masters`).
    pub fn admin() -> User {
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// The node user for `node`.
    pub fn node(node: &str) -> User {
        User {
            name: format!("system:node:{node}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        }
    }

    /// The user of bootstrap token `token_id`.
    pub fn bootstrap(token_id: &str) -> User {
        User {
            name: format!("system:bootstrap:{token_id}"),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
        }
    }

    /// The unauthenticated user.
    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }

    /// The user a client certificate names.
    pub fn from_subject(s: &Subject) -> User {
        let mut groups = s.organizations.clone();
        groups.push("system:authenticated".into());
        User {
            name: s.common_name.clone().unwrap_or_default(),
            groups,
        }
    }

    fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The node name if this is a node user (both the name and the group must say so).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group("system:nodes") {
            return None;
        }
        self.name
            .strip_prefix("system:node:")
            .filter(|n| !n.is_empty())
    }

    /// Member of `system:masters`.
    pub fn is_admin(&self) -> bool {
        self.in_group("system:masters")
    }

    /// Member of `system:bootstrappers`.
    pub fn is_bootstrapper(&self) -> bool {
        self.in_group("system:bootstrappers")
    }
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug)]
pub struct Attrs<'a> {
    /// get, list, watch, create, update, patch, delete.
    pub verb: &'a str,
    /// Resource type.
    pub kind: KindId,
    /// Namespace ("" for cluster scope or all namespaces).
    pub ns: &'a str,
    /// Object name ("" for collections).
    pub name: &'a str,
    /// Subresource ("" for the main resource).
    pub sub: &'a str,
    /// Selectors of a list/watch.
    pub selector: &'a Selector,
    /// Request body of a create.
    pub body: Option<&'a Value>,
}

/// Names of things pods reference, by kind.
#[derive(Debug, Default)]
struct Refs {
    configmaps: BTreeSet<String>,
    secrets: BTreeSet<String>,
    serviceaccounts: BTreeSet<String>,
    pvcs: BTreeSet<String>,
}

fn collect_refs(pod: &Value, refs: &mut Refs) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    refs.serviceaccounts.insert(sa.to_string());
    let name_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = v.get("configMap").and_then(|c| name_of(c, "name")) {
            refs.configmaps.insert(n);
        }
        if let Some(n) = v.get("secret").and_then(|c| name_of(c, "secretName")) {
            refs.secrets.insert(n);
        }
        if let Some(n) = v
            .get("persistentVolumeClaim")
            .and_then(|c| name_of(c, "claimName"))
        {
            refs.pvcs.insert(n);
        }
        let sources = v
            .get("projected")
            .and_then(|p| p.get("sources"))
            .and_then(Value::as_array);
        for s in sources.into_iter().flatten() {
            if let Some(n) = s.get("configMap").and_then(|c| name_of(c, "name")) {
                refs.configmaps.insert(n);
            }
            if let Some(n) = s.get("secret").and_then(|c| name_of(c, "name")) {
                refs.secrets.insert(n);
            }
        }
    }
    for s in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = name_of(s, "name") {
            refs.secrets.insert(n);
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for e in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = e.get("configMapRef").and_then(|r| name_of(r, "name")) {
                    refs.configmaps.insert(n);
                }
                if let Some(n) = e.get("secretRef").and_then(|r| name_of(r, "name")) {
                    refs.secrets.insert(n);
                }
            }
            for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                let from = e.get("valueFrom").unwrap_or(&Value::Null);
                if let Some(n) = from.get("configMapKeyRef").and_then(|r| name_of(r, "name")) {
                    refs.configmaps.insert(n);
                }
                if let Some(n) = from.get("secretKeyRef").and_then(|r| name_of(r, "name")) {
                    refs.secrets.insert(n);
                }
            }
        }
    }
}

/// Whether `pod` is bound to `node`.
pub fn bound_to(pod: &Value, node: &str) -> bool {
    store::str_at(pod, &["spec", "nodeName"]) == Some(node)
}

fn node_refs(store: &Store, node: &str, ns: &str) -> Refs {
    let mut refs = Refs::default();
    for pod in store.list(store::kind_id("", "pods"), Some(ns)) {
        if bound_to(pod, node) {
            collect_refs(pod, &mut refs);
        }
    }
    refs
}

const NO_RELATION: &str = "no relationship found between node and this object";

/// Ok if `user` may do `a`; Err(reason) for a 403.
pub fn authorize(user: &User, a: &Attrs<'_>, store: &Store) -> Result<(), String> {
    if user.is_admin() {
        return Ok(());
    }
    let k = kind(a.kind);
    let read = matches!(a.verb, "get" | "list" | "watch");
    if let Some(node) = user.node_name() {
        return authorize_node(node, a, store);
    }
    if user.is_bootstrapper() {
        if k.resource == "certificatesigningrequests"
            && (read || a.verb == "create")
            && a.sub.is_empty()
        {
            return Ok(());
        }
        return Err("bootstrap users may only create and read CertificateSigningRequests".into());
    }
    Err("no rule grants this".into())
}

fn authorize_node(node: &str, a: &Attrs<'_>, store: &Store) -> Result<(), String> {
    let k = kind(a.kind);
    let read = matches!(a.verb, "get" | "list" | "watch");
    let single_name = |sel: &Selector| sel.field_eq("metadata.name").map(str::to_string);
    match (k.group, k.resource) {
        ("", "nodes") => {
            if a.sub == "status" && a.verb == "get" {
                return Err("nodes may not read the status subresource".into());
            }
            if read && a.sub.is_empty() {
                return Ok(());
            }
            let target = match a.verb {
                "create" => a
                    .body
                    .and_then(|b| store::str_at(b, &["metadata", "name"]))
                    .unwrap_or(""),
                _ => a.name,
            };
            if target == node {
                Ok(())
            } else {
                Err(format!(
                    "node {node:?} is not allowed to modify node {target:?}"
                ))
            }
        }
        ("coordination.k8s.io", "leases") => {
            let target = match a.verb {
                "create" => a
                    .body
                    .and_then(|b| store::str_at(b, &["metadata", "name"]))
                    .unwrap_or(""),
                "list" | "watch" => {
                    return Err(
                        "can only access lease with the same name as the requesting node".into(),
                    )
                }
                _ => a.name,
            };
            if a.ns == "kube-node-lease" && target == node {
                Ok(())
            } else {
                Err("can only access node lease with the same name as the requesting node".into())
            }
        }
        ("", "pods") => match a.verb {
            "list" | "watch" => {
                if a.selector.field_eq("spec.nodeName") == Some(node) {
                    Ok(())
                } else {
                    Err("can only list/watch pods with spec.nodeName field selector".into())
                }
            }
            "create" => {
                let body = a.body.unwrap_or(&Value::Null);
                let mirror = body
                    .get("metadata")
                    .and_then(|m| m.get("annotations"))
                    .and_then(|an| an.get(MIRROR_ANNOTATION))
                    .is_some();
                if !mirror {
                    return Err(format!("pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"));
                }
                if !bound_to(body, node) {
                    return Err(format!(
                        "node {node:?} can only create pods with spec.nodeName set to itself"
                    ));
                }
                let owners = body
                    .get("metadata")
                    .and_then(|m| m.get("ownerReferences"))
                    .and_then(Value::as_array);
                for o in owners.into_iter().flatten() {
                    if o.get("kind").and_then(Value::as_str) != Some("Node")
                        || o.get("name").and_then(Value::as_str) != Some(node)
                    {
                        return Err(format!("node {node:?} can only create pods with an owner reference set to itself"));
                    }
                }
                Ok(())
            }
            verb => {
                if a.sub == "status" && verb == "get" {
                    return Err("nodes may not read the pod status subresource".into());
                }
                if matches!(verb, "update" | "patch") && a.sub != "status" {
                    return Err("nodes may only update the status of pods".into());
                }
                match store.get(a.kind, a.ns, a.name) {
                    Some(p) if bound_to(p, node) => Ok(()),
                    _ => Err(NO_RELATION.into()),
                }
            }
        },
        ("", "configmaps")
        | ("", "secrets")
        | ("", "serviceaccounts")
        | ("", "persistentvolumeclaims") => {
            let name = match a.verb {
                "get" => Some(a.name.to_string()),
                "list" | "watch" => single_name(a.selector),
                "create" if k.resource == "serviceaccounts" && a.sub == "token" => {
                    Some(a.name.to_string())
                }
                _ => None,
            };
            let Some(name) = name else {
                return Err(format!(
                    "nodes may not {} {} without naming one object",
                    a.verb, k.resource
                ));
            };
            let refs = node_refs(store, node, a.ns);
            let set = match k.resource {
                "configmaps" => &refs.configmaps,
                "secrets" => &refs.secrets,
                "persistentvolumeclaims" => &refs.pvcs,
                _ => &refs.serviceaccounts,
            };
            if set.contains(&name) {
                Ok(())
            } else {
                Err(NO_RELATION.into())
            }
        }
        ("", "events") | ("events.k8s.io", "events") => {
            if matches!(a.verb, "create" | "update" | "patch") {
                Ok(())
            } else {
                Err("nodes may only write events".into())
            }
        }
        ("", "services") | ("discovery.k8s.io", "endpointslices") if read => Ok(()),
        ("certificates.k8s.io", "certificatesigningrequests")
            if (read || a.verb == "create") && a.sub.is_empty() =>
        {
            Ok(())
        }
        _ => Err("no rule grants this to nodes".into()),
    }
}
