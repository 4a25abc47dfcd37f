//! Checks a decoded static pod before the agent accepts it; the first problem found is reported
//! with the dotted path of the field to blame.
//!
//! Only what would make the pod unrunnable or ambiguous is checked here; the API server's full
//! validation is not repeated. That includes references to API objects (ConfigMaps, Secrets,
//! ServiceAccount tokens, PVCs), which a static pod can never obtain.

use std::collections::BTreeSet;
use std::path::Path;

use crate::k8s::pod::{Container, ImagePullPolicy, Pod, Probe, Volume};
use crate::k8s::quantity::{self, ParsedQuantity};

use super::identity::static_pod_name;
use super::{ManifestError, ManifestErrorKind};

type Check = Result<(), (String, ManifestErrorKind)>;

fn missing(field: String) -> Check {
    Err((field, ManifestErrorKind::Missing))
}

fn invalid(field: String, value: &str, reason: &str) -> Check {
    Err((
        field,
        ManifestErrorKind::Invalid {
            value: value.to_string(),
            reason: reason.to_string(),
        },
    ))
}

/// Validates `pod` as read from `file`; `node_name` is needed to check the final name.
pub(super) fn validate_pod(pod: &Pod, file: &Path, node_name: &str) -> Result<(), ManifestError> {
    check_pod(pod, node_name).map_err(|(field, kind)| ManifestError::new(file, Some(field), kind))
}

fn check_pod(pod: &Pod, node_name: &str) -> Check {
    let meta = &pod.metadata;
    if meta.name.is_empty() {
        return missing("metadata.name".into());
    }
    let full = static_pod_name(&meta.name, node_name);
    if !is_dns_subdomain(&full) {
        return invalid(
            "metadata.name".into(),
            &meta.name,
            &format!("the static pod name {full:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253)"),
        );
    }
    if !meta.namespace.is_empty() && !is_dns_label(&meta.namespace) {
        return invalid(
            "metadata.namespace".into(),
            &meta.namespace,
            "must be a lowercase RFC 1123 label",
        );
    }
    let spec = &pod.spec;
    if spec.restart_policy().is_none() {
        return invalid(
            "spec.restartPolicy".into(),
            spec.restart_policy.as_deref().unwrap_or_default(),
            "must be Always, OnFailure or Never",
        );
    }
    let mut volume_names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if v.name.is_empty() {
            return missing(format!("{at}.name"));
        }
        if !volume_names.insert(v.name.as_str()) {
            return Err((
                format!("{at}.name"),
                ManifestErrorKind::Duplicate {
                    name: v.name.clone(),
                },
            ));
        }
        let kinds = v.source_kinds();
        if kinds.is_empty() {
            return invalid(
                at,
                &v.name,
                "no supported volume source (hostPath, emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim, csi)",
            );
        }
        if kinds.len() > 1 {
            return invalid(
                at,
                &v.name,
                &format!("more than one volume source: {}", kinds.join(", ")),
            );
        }
        check_volume_refs(v, &at)?;
        if let Some(hp) = &v.host_path {
            if hp.path.is_empty() {
                return missing(format!("{at}.hostPath.path"));
            }
            if !hp.path.starts_with('/') {
                return invalid(format!("{at}.hostPath.path"), &hp.path, "must be absolute");
            }
        }
        if let Some(limit) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            quantity::parse_units(limit.as_str()).map_err(|e| {
                (
                    format!("{at}.emptyDir.sizeLimit"),
                    ManifestErrorKind::Quantity(e),
                )
            })?;
        }
    }
    if spec.containers.is_empty() {
        return missing("spec.containers".into());
    }
    let mut container_names = BTreeSet::new();
    let lists = [
        ("spec.initContainers", &spec.init_containers),
        ("spec.containers", &spec.containers),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{list}[{i}]");
            check_container(c, &at, &volume_names)?;
            if let Some(rp) = c.restart_policy.as_deref() {
                if list != "spec.initContainers" || rp != "Always" {
                    return invalid(
                        format!("{at}.restartPolicy"),
                        rp,
                        "only init containers may set a restart policy, and only Always (a sidecar)",
                    );
                }
            }
            if !container_names.insert(c.name.as_str()) {
                return Err((
                    format!("{at}.name"),
                    ManifestErrorKind::Duplicate {
                        name: c.name.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

fn check_container(c: &Container, at: &str, volumes: &BTreeSet<&str>) -> Check {
    if c.name.is_empty() {
        return missing(format!("{at}.name"));
    }
    if !is_dns_label(&c.name) {
        return invalid(
            format!("{at}.name"),
            &c.name,
            "must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63)",
        );
    }
    if c.image.trim().is_empty() {
        return missing(format!("{at}.image"));
    }
    if let Some(p) = c.image_pull_policy.as_deref() {
        if ImagePullPolicy::parse(p).is_none() {
            return invalid(
                format!("{at}.imagePullPolicy"),
                p,
                "must be Always, IfNotPresent or Never",
            );
        }
    }
    for (kind, map) in [
        ("limits", &c.resources.limits),
        ("requests", &c.resources.requests),
    ] {
        for (resource, q) in map {
            let field = format!("{at}.resources.{kind}.{resource}");
            let parsed = match resource.as_str() {
                "cpu" => quantity::parse_millis(q.as_str()).map(|_| ()),
                "memory" | "ephemeral-storage" => quantity::parse_units(q.as_str()).map(|_| ()),
                r if r.starts_with("hugepages-") => quantity::parse_units(q.as_str()).map(|_| ()),
                _ => ParsedQuantity::parse(q.as_str()).and_then(|p| {
                    if p.negative {
                        Err(quantity::QuantityError::Negative {
                            text: q.as_str().to_string(),
                        })
                    } else {
                        Ok(())
                    }
                }),
            };
            parsed.map_err(|e| (field, ManifestErrorKind::Quantity(e)))?;
        }
    }
    for (j, p) in c.ports.iter().enumerate() {
        let pat = format!("{at}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            return invalid(
                format!("{pat}.containerPort"),
                &p.container_port.to_string(),
                "must be 1-65535",
            );
        }
        if let Some(hp) = p.host_port {
            if !(1..=65535).contains(&hp) {
                return invalid(
                    format!("{pat}.hostPort"),
                    &hp.to_string(),
                    "must be 1-65535",
                );
            }
        }
        if !matches!(p.protocol(), "TCP" | "UDP" | "SCTP") {
            return invalid(
                format!("{pat}.protocol"),
                p.protocol(),
                "must be TCP, UDP or SCTP",
            );
        }
    }
    for (j, e) in c.env.iter().enumerate() {
        if let Some(from) = &e.value_from {
            let at = format!("{at}.env[{j}].valueFrom");
            if from.config_map_key_ref.is_some() {
                return api_object_ref(format!("{at}.configMapKeyRef"));
            }
            if from.secret_key_ref.is_some() {
                return api_object_ref(format!("{at}.secretKeyRef"));
            }
        }
    }
    if !c.env_from.is_empty() {
        return api_object_ref(format!("{at}.envFrom"));
    }
    for (j, m) in c.volume_mounts.iter().enumerate() {
        let mat = format!("{at}.volumeMounts[{j}]");
        if m.name.is_empty() {
            return missing(format!("{mat}.name"));
        }
        if !volumes.contains(m.name.as_str()) {
            return invalid(
                format!("{mat}.name"),
                &m.name,
                "no volume with this name in spec.volumes",
            );
        }
        if m.mount_path.is_empty() {
            return missing(format!("{mat}.mountPath"));
        }
    }
    for (name, probe) in c.probes() {
        check_probe(probe, &format!("{at}.{name}"))?;
    }
    if let Some(lc) = &c.lifecycle {
        for (name, h) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
            if let Some(h) = h {
                let n = h.handler_count();
                if n != 1 {
                    return invalid(
                        format!("{at}.lifecycle.{name}"),
                        &n.to_string(),
                        "a lifecycle hook needs exactly one handler (exec, httpGet, tcpSocket or sleep)",
                    );
                }
            }
        }
    }
    Ok(())
}

/// Why a static pod may not name API objects: the API server lets a node read only the objects
/// of pods it was scheduled, and refuses a mirror pod that references any, so such a pod could
/// never start (the kubelet leaves it stuck in ContainerCreating).
const NO_API_OBJECTS: &str = "static pods cannot reference ConfigMaps, Secrets, ServiceAccount tokens or PersistentVolumeClaims (the API server never lets the node read them for a static pod); use a hostPath instead";

fn api_object_ref(field: String) -> Check {
    invalid(field, "", NO_API_OBJECTS)
}

fn check_volume_refs(v: &Volume, at: &str) -> Check {
    if v.config_map.is_some() {
        return api_object_ref(format!("{at}.configMap"));
    }
    if v.secret.is_some() {
        return api_object_ref(format!("{at}.secret"));
    }
    if v.persistent_volume_claim.is_some() {
        return api_object_ref(format!("{at}.persistentVolumeClaim"));
    }
    if let Some(p) = &v.projected {
        for (k, src) in p.sources.iter().enumerate() {
            let sat = format!("{at}.projected.sources[{k}]");
            if src.config_map.is_some() {
                return api_object_ref(format!("{sat}.configMap"));
            }
            if src.secret.is_some() {
                return api_object_ref(format!("{sat}.secret"));
            }
            if src.service_account_token.is_some() {
                return api_object_ref(format!("{sat}.serviceAccountToken"));
            }
        }
    }
    Ok(())
}

fn check_probe(p: &Probe, at: &str) -> Check {
    match p.handler_count() {
        0 => invalid(
            at.to_string(),
            "",
            "probe has no handler (set one of exec, httpGet, tcpSocket, grpc)",
        ),
        1 => {
            if let Some(e) = &p.exec {
                if e.command.is_empty() {
                    return missing(format!("{at}.exec.command"));
                }
            }
            Ok(())
        }
        n => invalid(
            at.to_string(),
            &n.to_string(),
            "probe has more than one handler",
        ),
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}
