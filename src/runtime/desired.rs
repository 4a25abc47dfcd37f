//! Pure translation of API Pods into the reconcile engine's desired model.
//!
//! The engine sees only what drives the lifecycle (containers, images, pull policies, probes,
//! restart policy, grace, spec hashes); everything else stays with the Pod for the CRI config
//! builders in [`super::spec`].

use std::time::Duration;

use crate::k8s::pod::{
    Container, ImagePullPolicy, IntOrString, Pod, Probe, ProbeHandler as ApiHandler,
    RestartPolicy as ApiRestart,
};
use crate::manifest::identity::{fnv1a_128_hex, write_canonical_json};
use crate::reconcile::model::{
    Deletion, DesiredContainer, DesiredPod, HttpScheme, ProbeHandler, ProbeSpec, PullPolicy,
    RestartPolicy,
};

/// A pod the engine cannot run as written (the probe or policy is named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredError {
    pub pod: String,
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for DesiredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}: {}: {}", self.pod, self.field, self.reason)
    }
}

impl std::error::Error for DesiredError {}

/// Hash of one container's spec: any change restarts that container (not its siblings).
pub fn container_hash(c: &Container) -> String {
    let value = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
    let mut text = String::new();
    write_canonical_json(&value, &mut text);
    fnv1a_128_hex(text.as_bytes())
}

/// The engine's view of `pod`. `pod_hash` is the pod-level spec hash (a change replaces the
/// whole pod: sandbox and all containers).
pub fn desired_pod(pod: &Pod, pod_hash: &str) -> Result<DesiredPod, DesiredError> {
    let m = &pod.metadata;
    let mut d = DesiredPod::new(&m.uid, &m.namespace, &m.name, pod_hash);
    d.restart_policy = match pod.spec.restart_policy() {
        Some(ApiRestart::Always) | None => RestartPolicy::Always,
        Some(ApiRestart::OnFailure) => RestartPolicy::OnFailure,
        Some(ApiRestart::Never) => RestartPolicy::Never,
    };
    d.termination_grace = pod.spec.termination_grace_period();
    d.host_network = pod.spec.host_network;
    let convert = |c: &Container, field: &str| desired_container(pod, c, field);
    d.init_containers = pod
        .spec
        .init_containers
        .iter()
        .map(|c| convert(c, "initContainers"))
        .collect::<Result<_, _>>()?;
    d.containers = pod
        .spec
        .containers
        .iter()
        .map(|c| convert(c, "containers"))
        .collect::<Result<_, _>>()?;
    if m.deletion_timestamp.is_some() {
        let grace = m
            .deletion_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(d.termination_grace);
        d.deletion = Some(Deletion { grace });
    }
    Ok(d)
}

fn desired_container(
    pod: &Pod,
    c: &Container,
    list: &str,
) -> Result<DesiredContainer, DesiredError> {
    let mut d = DesiredContainer::new(&c.name, &c.image, &container_hash(c));
    d.pull_policy = match c.image_pull_policy() {
        ImagePullPolicy::Always => PullPolicy::Always,
        ImagePullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
        ImagePullPolicy::Never => PullPolicy::Never,
    };
    let probe = |p: &Option<Probe>, kind: &str| -> Result<Option<ProbeSpec>, DesiredError> {
        match p {
            None => Ok(None),
            Some(p) => probe_spec(c, p).map(Some).map_err(|reason| DesiredError {
                pod: pod.key(),
                field: format!("spec.{list}[{}].{kind}", c.name),
                reason,
            }),
        }
    };
    d.liveness = probe(&c.liveness_probe, "livenessProbe")?;
    d.readiness = probe(&c.readiness_probe, "readinessProbe")?;
    d.startup = probe(&c.startup_probe, "startupProbe")?;
    Ok(d)
}

/// Resolves a probe port: a number, or the name of one of the container's ports.
fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .find(|cp| cp.name == *s)
                .and_then(|cp| u16::try_from(cp.container_port).ok())
                .ok_or_else(|| format!("port {s:?} names no port of the container"))
        }
    }
}

fn probe_spec(c: &Container, p: &Probe) -> Result<ProbeSpec, String> {
    let handler = match p.handler() {
        Some(ApiHandler::Exec(e)) => ProbeHandler::Exec {
            command: e.command.clone(),
        },
        Some(ApiHandler::HttpGet(h)) => ProbeHandler::HttpGet {
            host: h.host.clone(),
            port: port(c, &h.port)?,
            path: if h.path.is_empty() {
                "/".into()
            } else {
                h.path.clone()
            },
            scheme: if h.scheme().eq_ignore_ascii_case("HTTPS") {
                HttpScheme::Https
            } else {
                HttpScheme::Http
            },
            headers: h
                .http_headers
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
        },
        Some(ApiHandler::TcpSocket(t)) => ProbeHandler::TcpSocket {
            host: t.host.clone(),
            port: port(c, &t.port)?,
        },
        Some(ApiHandler::Grpc(_)) => return Err("grpc probes are not supported by tinylet".into()),
        None => return Err("a probe needs exactly one handler".into()),
    };
    let mut s = ProbeSpec::new(handler);
    s.initial_delay = p.initial_delay();
    s.period = p.period();
    s.timeout = p.timeout();
    s.success_threshold = p.success_threshold();
    s.failure_threshold = p.failure_threshold();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn converts_policies_probes_and_hashes() {
        let p = pod(r#"{"metadata":{"name":"w","namespace":"d","uid":"u"},
          "spec":{"restartPolicy":"OnFailure","terminationGracePeriodSeconds":5,
            "initContainers":[{"name":"i","image":"busybox:1"}],
            "containers":[{"name":"c","image":"busybox","ports":[{"name":"http","containerPort":8080}],
              "readinessProbe":{"httpGet":{"port":"http","path":"/ready"},"periodSeconds":2,"failureThreshold":1},
              "livenessProbe":{"tcpSocket":{"port":8080},"initialDelaySeconds":3},
              "startupProbe":{"exec":{"command":["true"]}}}]}}"#);
        let d = desired_pod(&p, "h").unwrap();
        assert_eq!(d.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(d.termination_grace, Duration::from_secs(5));
        assert_eq!(d.init_containers[0].pull_policy, PullPolicy::IfNotPresent);
        let c = &d.containers[0];
        assert_eq!(
            c.pull_policy,
            PullPolicy::Always,
            "untagged image means :latest"
        );
        let r = c.readiness.as_ref().unwrap();
        assert!(
            matches!(&r.handler, ProbeHandler::HttpGet { port: 8080, path, .. } if path == "/ready")
        );
        assert_eq!((r.period, r.failure_threshold), (Duration::from_secs(2), 1));
        assert_eq!(
            c.liveness.as_ref().unwrap().initial_delay,
            Duration::from_secs(3)
        );
        assert!(c.startup.is_some());
        assert_ne!(d.containers[0].spec_hash, d.init_containers[0].spec_hash);
    }

    #[test]
    fn container_hash_changes_only_with_that_container() {
        let a = pod(
            r#"{"spec":{"containers":[{"name":"a","image":"x:1"},{"name":"b","image":"y:1"}]}}"#,
        );
        let mut b = a.clone();
        b.spec.containers[1].image = "y:2".into();
        assert_eq!(
            container_hash(&a.spec.containers[0]),
            container_hash(&b.spec.containers[0])
        );
        assert_ne!(
            container_hash(&a.spec.containers[1]),
            container_hash(&b.spec.containers[1])
        );
    }

    #[test]
    fn bad_probes_name_the_field() {
        let p = pod(
            r#"{"metadata":{"name":"w","namespace":"d"},"spec":{"containers":[{"name":"c","image":"i",
            "livenessProbe":{"httpGet":{"port":"nope"}}}]}}"#,
        );
        let e = desired_pod(&p, "h").unwrap_err();
        assert_eq!(e.field, "spec.containers[c].livenessProbe");
        let p = pod(
            r#"{"spec":{"containers":[{"name":"c","image":"i","readinessProbe":{"grpc":{"port":1}}}]}}"#,
        );
        assert!(desired_pod(&p, "h").unwrap_err().reason.contains("grpc"));
    }

    #[test]
    fn deletion_carries_the_grace() {
        let p = pod(
            r#"{"metadata":{"name":"w","deletionTimestamp":"2026-01-01T00:00:00Z","deletionGracePeriodSeconds":7},
            "spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        );
        assert_eq!(
            desired_pod(&p, "h").unwrap().deletion.unwrap().grace,
            Duration::from_secs(7)
        );
    }
}
