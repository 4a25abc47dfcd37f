//! Adapter from the API's `k8s::pod::Pod` to the engine's [`DesiredPod`].
//!
//! Applies the kubelet's defaults (through the `k8s::pod` helpers), resolves named probe
//! ports and computes the spec hashes that decide between replacing the pod, restarting one
//! container, or leaving things alone. It only reads the Pod; checking that a pod is valid is
//! the manifest loader's and the API server's business.

use std::fmt;
use std::time::Duration;

use crate::k8s::pod::{
    Container, ImagePullPolicy, IntOrString, Pod, PodSpec, Probe, ProbeHandler as K8sProbeHandler,
    RestartPolicy as K8sRestartPolicy,
};

use super::model::{
    Deletion, DesiredContainer, DesiredPod, HttpScheme, ProbeHandler, ProbeSpec, PullPolicy,
    RestartPolicy,
};

/// The kubelet's critical pods: static ones (read from a file, not the API) and those with a
/// system-critical priority.
pub fn is_critical(pod: &Pod) -> bool {
    use crate::reconcile::eviction::SYSTEM_CRITICAL_PRIORITY;
    let by_class = matches!(
        pod.spec.priority_class_name.as_str(),
        "system-node-critical" | "system-cluster-critical"
    );
    crate::manifest::identity::is_static(pod)
        || by_class
        || pod.spec.priority.unwrap_or(0) >= SYSTEM_CRITICAL_PRIORITY
}

/// Why a Pod cannot be turned into a desired pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromPodError {
    /// The pod has no UID (the engine's key).
    MissingUid {
        /// `namespace/name`.
        pod: String,
    },
    /// `spec.restartPolicy` is not Always, OnFailure or Never.
    BadRestartPolicy {
        /// `namespace/name`.
        pod: String,
        /// The value found.
        value: String,
    },
}

impl fmt::Display for FromPodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromPodError::MissingUid { pod } => {
                write!(
                    f,
                    "adapting pod {pod}: metadata.uid is empty; it cannot be tracked"
                )
            }
            FromPodError::BadRestartPolicy { pod, value } => write!(
                f,
                "adapting pod {pod}: spec.restartPolicy {value:?} is not Always, OnFailure or Never"
            ),
        }
    }
}

impl std::error::Error for FromPodError {}

/// The engine's view of a Pod: identity, restart policy, grace, containers, probes, deletion.
pub fn desired_pod(pod: &Pod) -> Result<DesiredPod, FromPodError> {
    let key = pod.key();
    if pod.metadata.uid.is_empty() {
        return Err(FromPodError::MissingUid { pod: key });
    }
    let restart_policy = match pod.spec.restart_policy() {
        Some(K8sRestartPolicy::Always) => RestartPolicy::Always,
        Some(K8sRestartPolicy::OnFailure) => RestartPolicy::OnFailure,
        Some(K8sRestartPolicy::Never) => RestartPolicy::Never,
        None => {
            return Err(FromPodError::BadRestartPolicy {
                pod: key,
                value: pod.spec.restart_policy.clone().unwrap_or_default(),
            })
        }
    };
    let termination_grace = pod.spec.termination_grace_period();
    // Deletion is marked by the timestamp; its grace may be shorter than the spec's.
    let deletion = pod.metadata.deletion_timestamp.as_ref().map(|_| Deletion {
        grace: pod
            .metadata
            .deletion_grace_period_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(termination_grace),
    });
    Ok(DesiredPod {
        uid: pod.metadata.uid.clone(),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        spec_hash: pod_spec_hash(&pod.spec),
        restart_policy,
        termination_grace,
        host_network: pod.spec.host_network,
        critical: is_critical(pod),
        init_containers: pod
            .spec
            .init_containers
            .iter()
            .map(|c| desired_container(c, true))
            .collect(),
        containers: pod
            .spec
            .containers
            .iter()
            .map(|c| desired_container(c, false))
            .collect(),
        ephemeral_containers: pod
            .spec
            .ephemeral_containers
            .iter()
            .map(|c| {
                // Ephemeral containers have no probes (the API server rejects them).
                let mut d = desired_container(c, false);
                d.liveness = None;
                d.readiness = None;
                d.startup = None;
                d
            })
            .collect(),
        deletion,
        active_deadline: pod
            .spec
            .active_deadline_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
    })
}

fn desired_container(c: &Container, init: bool) -> DesiredContainer {
    DesiredContainer {
        name: c.name.clone(),
        image: c.image.clone(),
        pull_policy: match c.image_pull_policy() {
            ImagePullPolicy::Always => PullPolicy::Always,
            ImagePullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
            ImagePullPolicy::Never => PullPolicy::Never,
        },
        spec_hash: container_hash(c),
        liveness: c.liveness_probe.as_ref().and_then(|p| probe_spec(p, c)),
        readiness: c.readiness_probe.as_ref().and_then(|p| probe_spec(p, c)),
        startup: c.startup_probe.as_ref().and_then(|p| probe_spec(p, c)),
        sidecar: init && c.is_sidecar(),
    }
}

/// A probe without exactly one handler is dropped (the loader rejects such pods).
fn probe_spec(p: &Probe, c: &Container) -> Option<ProbeSpec> {
    let handler = match p.handler()? {
        K8sProbeHandler::Exec(e) => ProbeHandler::Exec {
            command: e.command.clone(),
        },
        K8sProbeHandler::HttpGet(h) => ProbeHandler::HttpGet {
            host: h.host.clone(),
            port: resolve_port(&h.port, c),
            path: if h.path.is_empty() {
                "/".to_string()
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
        K8sProbeHandler::TcpSocket(t) => ProbeHandler::TcpSocket {
            host: t.host.clone(),
            port: resolve_port(&t.port, c),
        },
        K8sProbeHandler::Grpc(g) => ProbeHandler::Grpc {
            port: u16::try_from(g.port).unwrap_or(0),
            service: g.service.clone(),
        },
    };
    Some(ProbeSpec {
        handler,
        initial_delay: p.initial_delay(),
        period: p.period(),
        timeout: p.timeout(),
        success_threshold: p.success_threshold(),
        failure_threshold: p.failure_threshold(),
    })
}

/// A number, a numeric string, or the name of one of the container's ports. Anything else
/// becomes port 0, which fails every probe (as the kubelet fails an unresolvable port).
fn resolve_port(port: &IntOrString, c: &Container) -> u16 {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .find(|p| !p.name.is_empty() && p.name == *s)
                .map_or(0, |p| p.container_port),
        },
    };
    u16::try_from(n).unwrap_or(0)
}

/// FNV-1a (64 bit): a stable, dependency-free fingerprint for change detection (not security).
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Hash of the pod spec minus what can change in place: container images (an image update
/// restarts that one container, through its own hash), `activeDeadlineSeconds`, tolerations
/// and ephemeral containers (added to a running pod, they join its sandbox). Any other change
/// replaces the pod.
pub fn pod_spec_hash(spec: &PodSpec) -> String {
    let mut s = spec.clone();
    for c in s.init_containers.iter_mut().chain(s.containers.iter_mut()) {
        c.image.clear();
    }
    s.active_deadline_seconds = None;
    s.tolerations.clear();
    s.ephemeral_containers.clear();
    // Struct fields serialise in declaration order and maps are ordered: the bytes are stable.
    fnv1a64(&serde_json::to_vec(&s).unwrap_or_default())
}

/// Hash of one container's spec; a change restarts that container.
pub fn container_hash(c: &Container) -> String {
    fnv1a64(&serde_json::to_vec(c).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::pod::ContainerPort;

    fn pod_from(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: edge, uid: u-1}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 12
  hostNetwork: true
  initContainers:
  - name: proxy
    image: envoy:1.30
    restartPolicy: Always
  - name: setup
    image: busybox
  containers:
  - name: app
    image: nginx:1.27
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /healthz, port: http, scheme: HTTPS, httpHeaders: [{name: X, value: y}]}
      periodSeconds: 5
      failureThreshold: 7
    readinessProbe:
      tcpSocket: {port: "9090"}
    startupProbe:
      exec: {command: [cat, /ready]}
      initialDelaySeconds: 3
"#;

    #[test]
    fn adapts_identity_policies_and_probes() {
        let d = desired_pod(&pod_from(WEB)).unwrap();
        assert_eq!(
            (d.uid.as_str(), d.namespace.as_str(), d.name.as_str()),
            ("u-1", "edge", "web")
        );
        assert_eq!(d.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(d.termination_grace, Duration::from_secs(12));
        assert!(d.host_network);
        assert!(d.deletion.is_none());
        assert!(d.init_containers[0].sidecar);
        assert!(!d.init_containers[1].sidecar);
        // Untagged image: Always; tagged: IfNotPresent (the API server's defaulting).
        assert_eq!(d.init_containers[1].pull_policy, PullPolicy::Always);
        let app = &d.containers[0];
        assert_eq!(app.pull_policy, PullPolicy::IfNotPresent);
        let l = app.liveness.as_ref().unwrap();
        assert_eq!(
            l.handler,
            ProbeHandler::HttpGet {
                host: String::new(),
                port: 8080,
                path: "/healthz".into(),
                scheme: HttpScheme::Https,
                headers: vec![("X".into(), "y".into())],
            }
        );
        assert_eq!((l.period, l.failure_threshold), (Duration::from_secs(5), 7));
        assert_eq!(l.timeout, Duration::from_secs(1));
        let r = app.readiness.as_ref().unwrap();
        assert_eq!(
            r.handler,
            ProbeHandler::TcpSocket {
                host: String::new(),
                port: 9090
            }
        );
        assert_eq!(r.period, Duration::from_secs(10));
        let s = app.startup.as_ref().unwrap();
        assert_eq!(s.initial_delay, Duration::from_secs(3));
        assert!(matches!(&s.handler, ProbeHandler::Exec { command } if command.len() == 2));
    }

    #[test]
    fn static_and_system_critical_pods_are_critical() {
        let mut p = pod_from(WEB);
        assert!(!desired_pod(&p).unwrap().critical);
        p.spec.priority = Some(1_000_000);
        assert!(!is_critical(&p));
        p.spec.priority = Some(2_000_001_000);
        assert!(is_critical(&p));
        p.spec.priority = None;
        p.spec.priority_class_name = "system-node-critical".into();
        assert!(is_critical(&p));
        p.spec.priority_class_name = String::new();
        p.metadata
            .annotations
            .insert("kubernetes.io/config.source".into(), "file".into());
        assert!(desired_pod(&p).unwrap().critical);
        p.metadata
            .annotations
            .insert("kubernetes.io/config.source".into(), "api".into());
        assert!(!is_critical(&p));
    }

    #[test]
    fn deletion_uses_the_deletion_grace() {
        let mut p = pod_from(WEB);
        p.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(
            desired_pod(&p).unwrap().deletion,
            Some(Deletion {
                grace: Duration::from_secs(12)
            })
        );
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(
            desired_pod(&p).unwrap().deletion.unwrap().grace,
            Duration::ZERO
        );
        p.metadata.deletion_grace_period_seconds = Some(-5);
        assert_eq!(
            desired_pod(&p).unwrap().deletion.unwrap().grace,
            Duration::ZERO
        );
    }

    #[test]
    fn hashes_separate_in_place_changes_from_replacements() {
        let p = pod_from(WEB);
        let d = desired_pod(&p).unwrap();
        assert_eq!(d.spec_hash, desired_pod(&p).unwrap().spec_hash, "stable");
        // New image: same pod hash, that container's hash changes.
        let mut q = p.clone();
        q.spec.containers[0].image = "nginx:1.28".into();
        let dq = desired_pod(&q).unwrap();
        assert_eq!(dq.spec_hash, d.spec_hash);
        assert_ne!(dq.containers[0].spec_hash, d.containers[0].spec_hash);
        assert_eq!(
            dq.init_containers[0].spec_hash,
            d.init_containers[0].spec_hash
        );
        // An ephemeral container joins the running pod: same pod hash, carried in the model
        // without probes. The kubelet keeps the sandbox and app containers of a pod whose
        // spec.ephemeralContainers grew (ephemeral containers are not part of its hash).
        let mut e = p.clone();
        let mut debug = p.spec.containers[0].clone();
        debug.name = "debugger".into();
        e.spec.ephemeral_containers.push(debug);
        let de = desired_pod(&e).unwrap();
        assert_eq!(de.spec_hash, d.spec_hash);
        assert_eq!(de.containers, d.containers);
        assert_eq!(de.ephemeral_containers.len(), 1);
        assert_eq!(de.ephemeral_containers[0].name, "debugger");
        assert!(de.ephemeral_containers[0].liveness.is_none());
        assert!(de.ephemeral_containers[0].readiness.is_none());
        // Anything else in the spec: a new pod hash.
        let mut r = p.clone();
        r.spec.containers[0].env.push(Default::default());
        assert_ne!(desired_pod(&r).unwrap().spec_hash, d.spec_hash);
        // Metadata is not part of either.
        let mut m = p.clone();
        m.metadata.labels.insert("a".into(), "b".into());
        assert_eq!(desired_pod(&m).unwrap(), d);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut p = pod_from(WEB);
        p.spec.restart_policy = Some("Sometimes".into());
        let e = desired_pod(&p).unwrap_err();
        assert!(e.to_string().contains("Sometimes"), "{e}");
        p.metadata.uid.clear();
        assert!(matches!(
            desired_pod(&p),
            Err(FromPodError::MissingUid { .. })
        ));
        // Empty pods and odd probes adapt without panicking.
        let empty = Pod {
            metadata: crate::k8s::meta::ObjectMeta {
                uid: "x".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(desired_pod(&empty).unwrap().containers.is_empty());
    }

    #[test]
    fn named_and_out_of_range_ports() {
        let mut c = Container::default();
        c.ports.push(ContainerPort {
            name: "metrics".into(),
            container_port: 9100,
            ..Default::default()
        });
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &c),
            9100
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), 81);
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), 0);
        assert_eq!(resolve_port(&IntOrString::Int(70000), &c), 0);
        assert_eq!(resolve_port(&IntOrString::Int(-1), &c), 0);
    }

    #[test]
    fn adapted_pod_runs_in_the_engine() {
        use crate::reconcile::{Engine, EngineConfig};
        let d = desired_pod(&pod_from(WEB)).unwrap();
        let mut e = Engine::new(EngineConfig::default());
        let now = std::time::Instant::now();
        e.set_desired(vec![d]);
        e.observe(Default::default(), now);
        let a = e.poll(now);
        assert!(matches!(
            a[0].kind,
            crate::reconcile::ActionKind::RunSandbox { .. }
        ));
    }
}
