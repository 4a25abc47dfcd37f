//! `tinylet run --once`: when a single convergence is over, what it came to, and the report and
//! exit code a script gets. The decision is sans-I/O (pod statuses and a clock in, an
//! [`Outcome`] out); the agent loop asks it after every poll and prints what it returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::reconcile::status::ContainerStateView;
use crate::reconcile::{PodPhase, PodStatus};

/// Exit code: every desired pod started (or completed) and no manifest had errors.
pub const EXIT_CONVERGED: i32 = 0;
/// Exit code: the container runtime did not answer within the bound.
pub const EXIT_NO_RUNTIME: i32 = 3;
/// Exit code: the pods converged, but a manifest (or a pod in one) has errors.
pub const EXIT_MANIFEST_ERRORS: i32 = 4;
/// Exit code: pods did not start within the bound (or failed).
pub const EXIT_NOT_STARTED: i32 = 5;

/// How a `--once` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every desired pod runs (or completed); no errors.
    Converged { pods: usize },
    /// The runtime never answered; `last_error` is its last failure.
    NoRuntime {
        endpoint: String,
        waited: Duration,
        last_error: String,
    },
    /// The valid pods converged; `errors` manifests or pods could not be used.
    ManifestErrors { errors: Vec<String> },
    /// Pods that had not started when the bound ran out, or that failed: `NS/NAME (why)`.
    NotStarted {
        pods: Vec<String>,
        waited: Option<Duration>,
        errors: usize,
    },
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Converged { .. } => EXIT_CONVERGED,
            Outcome::NoRuntime { .. } => EXIT_NO_RUNTIME,
            Outcome::ManifestErrors { .. } => EXIT_MANIFEST_ERRORS,
            Outcome::NotStarted { .. } => EXIT_NOT_STARTED,
        }
    }

    /// A short machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Converged { .. } => "converged",
            Outcome::NoRuntime { .. } => "runtimeUnavailable",
            Outcome::ManifestErrors { .. } => "manifestErrors",
            Outcome::NotStarted { .. } => "podsNotStarted",
        }
    }

    /// One sentence for a person: what happened and, when it failed, why.
    pub fn reason(&self) -> String {
        match self {
            Outcome::Converged { pods } => format!("converged: {pods} pod(s) started"),
            Outcome::NoRuntime {
                endpoint,
                waited,
                last_error,
            } => format!(
                "the container runtime at {endpoint} did not answer within {}s: {last_error}",
                waited.as_secs()
            ),
            Outcome::ManifestErrors { errors } => format!(
                "the valid pods started, but {} manifest error(s): {}",
                errors.len(),
                errors.join("; ")
            ),
            Outcome::NotStarted {
                pods,
                waited,
                errors,
            } => {
                let when = match waited {
                    Some(w) => format!(" within {}s", w.as_secs()),
                    None => String::new(),
                };
                let also = if *errors > 0 {
                    format!("; also {errors} manifest error(s)")
                } else {
                    String::new()
                };
                format!(
                    "{} pod(s) did not start{when}: {}{also}",
                    pods.len(),
                    pods.join(", ")
                )
            }
        }
    }
}

/// What the agent loop knows after a poll.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// No runtime call in flight, no pod left to remove, and the manifest dir read.
    pub idle: bool,
    /// The engine's status of every desired pod.
    pub pods: &'a [PodStatus],
    /// Manifest files that failed to load.
    pub manifest_errors: &'a [String],
    /// Pods that could not be turned into a spec, by pod.
    pub pod_errors: &'a BTreeMap<String, String>,
    /// Now, and when `--once` gives up.
    pub now: Instant,
    pub deadline: Instant,
    /// The bound, for the report.
    pub timeout: Duration,
}

/// Whether a `--once` run is over, and how. `None`: keep converging.
///
/// A pod counts as started when every app container runs after its init containers completed,
/// or when it Succeeded; a Failed pod ends the wait at once (nothing more will happen to it
/// without a restart policy), as does the bound.
pub fn decide(p: &Progress) -> Option<Outcome> {
    let errors: Vec<String> = p
        .manifest_errors
        .iter()
        .cloned()
        .chain(
            p.pod_errors
                .iter()
                .map(|(pod, e)| format!("pod {pod}: {e}")),
        )
        .collect();
    let mut waiting = Vec::new();
    let mut failed = Vec::new();
    for pod in p.pods {
        match pod_progress(pod) {
            PodProgress::Started => {}
            PodProgress::Failed(why) => failed.push(format!("{} ({why})", key(pod))),
            PodProgress::Waiting(why) => waiting.push(format!("{} ({why})", key(pod))),
        }
    }
    if p.idle && waiting.is_empty() {
        if !failed.is_empty() {
            return Some(Outcome::NotStarted {
                pods: failed,
                waited: None,
                errors: errors.len(),
            });
        }
        if !errors.is_empty() {
            return Some(Outcome::ManifestErrors { errors });
        }
        return Some(Outcome::Converged { pods: p.pods.len() });
    }
    if p.now < p.deadline {
        return None;
    }
    failed.extend(waiting);
    if failed.is_empty() && !errors.is_empty() {
        return Some(Outcome::ManifestErrors { errors });
    }
    if failed.is_empty() {
        failed.push("(the agent was still removing pods or reading manifests)".into());
    }
    Some(Outcome::NotStarted {
        pods: failed,
        waited: Some(p.timeout),
        errors: errors.len(),
    })
}

enum PodProgress {
    Started,
    Failed(String),
    Waiting(String),
}

fn key(p: &PodStatus) -> String {
    format!("{}/{}", p.namespace, p.name)
}

fn pod_progress(p: &PodStatus) -> PodProgress {
    match p.phase {
        PodPhase::Succeeded => return PodProgress::Started,
        PodPhase::Failed => return PodProgress::Failed("Failed".into()),
        PodPhase::Pending | PodPhase::Running => {}
    }
    if p.deleting {
        return PodProgress::Waiting("being removed".into());
    }
    let blocked = p
        .init_containers
        .iter()
        .chain(&p.containers)
        .find(|c| !matches!(c.state, ContainerStateView::Running { .. }));
    let all_running = !p.containers.is_empty()
        && p.containers
            .iter()
            .all(|c| matches!(c.state, ContainerStateView::Running { .. }));
    if p.conditions.initialized && all_running {
        return PodProgress::Started;
    }
    let why = match blocked {
        Some(c) => match &c.state {
            ContainerStateView::Waiting { reason, .. } => format!("{}: {reason}", c.name),
            ContainerStateView::Terminated { reason, .. } => format!("{}: {reason}", c.name),
            ContainerStateView::Running { .. } => c.name.clone(),
        },
        None => p.message.clone().unwrap_or_else(|| "Pending".into()),
    };
    PodProgress::Waiting(why)
}

/// The report of a finished `--once` run: the status document with the outcome added under
/// `once` (`--json`), or the status table and a closing `result:` line. `doc` is the agent's
/// status document (empty when the runtime never answered).
pub fn report(doc: &str, outcome: &Outcome, json: bool) -> String {
    let summary = serde_json::json!({
        "result": outcome.name(),
        "exitCode": outcome.exit_code(),
        "reason": outcome.reason(),
    });
    let parsed = serde_json::from_str::<serde_json::Value>(doc).ok();
    if json {
        let mut v = match parsed {
            Some(serde_json::Value::Object(m)) => serde_json::Value::Object(m),
            _ => serde_json::json!({}),
        };
        v["once"] = summary;
        return format!("{v}\n");
    }
    let mut out = parsed
        .map(|v| super::status::render_table(&v))
        .unwrap_or_default();
    let code = outcome.exit_code();
    if code == EXIT_CONVERGED {
        out.push_str(&format!("result: {}\n", outcome.reason()));
    } else {
        out.push_str(&format!("result: exit {code}: {}\n", outcome.reason()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::status::{ContainerStatus, PodConditions};

    fn container(name: &str, state: ContainerStateView) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: "img".into(),
            image_id: String::new(),
            container_id: None,
            state,
            last_state: None,
            ready: false,
            started: false,
            restart_count: 0,
            backoff: None,
            last_error: None,
            started_at: None,
            finished_at: None,
            last_container_id: None,
            last_started_at: None,
            last_finished_at: None,
        }
    }

    fn running() -> ContainerStateView {
        ContainerStateView::Running {
            running_for_secs: 1,
        }
    }

    fn waiting(reason: &str) -> ContainerStateView {
        ContainerStateView::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    fn pod(name: &str, phase: PodPhase, initialized: bool, c: ContainerStateView) -> PodStatus {
        PodStatus {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            spec_hash: "h".into(),
            phase,
            conditions: PodConditions {
                initialized,
                ..Default::default()
            },
            pod_ip: None,
            deleting: false,
            terminated: false,
            reason: None,
            message: None,
            init_containers: Vec::new(),
            ephemeral_containers: Vec::new(),
            containers: vec![container("c", c)],
        }
    }

    static NO_POD_ERRORS: BTreeMap<String, String> = BTreeMap::new();

    fn progress<'a>(
        idle: bool,
        pods: &'a [PodStatus],
        errors: &'a [String],
        late: bool,
    ) -> Progress<'a> {
        let now = Instant::now();
        let timeout = Duration::from_secs(60);
        Progress {
            idle,
            pods,
            manifest_errors: errors,
            pod_errors: &NO_POD_ERRORS,
            now,
            deadline: if late { now } else { now + timeout },
            timeout,
        }
    }

    #[test]
    fn running_pods_and_no_errors_converge_with_exit_0() {
        let pods = [pod("web", PodPhase::Running, true, running())];
        let o = decide(&progress(true, &pods, &[], false)).unwrap();
        assert_eq!(o, Outcome::Converged { pods: 1 });
        assert_eq!(o.exit_code(), 0);
        // No pods at all (an empty manifest dir) is converged too: that is how pods are removed.
        assert_eq!(
            decide(&progress(true, &[], &[], false)),
            Some(Outcome::Converged { pods: 0 })
        );
    }

    #[test]
    fn keeps_waiting_while_busy_or_starting_and_before_the_bound() {
        let ok = [pod("web", PodPhase::Running, true, running())];
        assert_eq!(decide(&progress(false, &ok, &[], false)), None);
        let starting = [pod(
            "web",
            PodPhase::Pending,
            true,
            waiting("ContainerCreating"),
        )];
        assert_eq!(decide(&progress(true, &starting, &[], false)), None);
    }

    #[test]
    fn the_bound_ends_the_wait_with_exit_5_naming_the_pods() {
        let pods = [
            pod("web", PodPhase::Pending, true, waiting("ErrImagePull")),
            pod("ok", PodPhase::Running, true, running()),
        ];
        let o = decide(&progress(true, &pods, &[], true)).unwrap();
        assert_eq!(o.exit_code(), EXIT_NOT_STARTED);
        let r = o.reason();
        assert!(r.contains("default/web (c: ErrImagePull)"), "{r}");
        assert!(r.contains("within 60s"), "{r}");
        assert!(!r.contains("default/ok"), "{r}");
        // Still busy at the bound counts as not started too.
        let o = decide(&progress(false, &pods[1..], &[], true)).unwrap();
        assert_eq!(o.exit_code(), EXIT_NOT_STARTED);
    }

    #[test]
    fn a_failed_pod_ends_the_wait_at_once() {
        let pods = [pod(
            "job",
            PodPhase::Failed,
            true,
            ContainerStateView::Terminated {
                exit_code: Some(1),
                reason: "Error".into(),
                finished_secs_ago: None,
                message: None,
            },
        )];
        let o = decide(&progress(true, &pods, &[], false)).unwrap();
        assert_eq!(o.exit_code(), EXIT_NOT_STARTED);
        assert!(
            o.reason().contains("default/job (Failed)"),
            "{}",
            o.reason()
        );
    }

    #[test]
    fn manifest_errors_exit_4_once_the_valid_pods_run() {
        let pods = [pod("web", PodPhase::Running, true, running())];
        let errors = vec!["/m/bad.yaml: spec.containers[0].image: required".to_string()];
        let o = decide(&progress(true, &pods, &errors, false)).unwrap();
        assert_eq!(o.exit_code(), EXIT_MANIFEST_ERRORS);
        assert!(o.reason().contains("bad.yaml"), "{}", o.reason());
        // A pod whose spec cannot be used counts the same.
        let mut pod_errors = BTreeMap::new();
        pod_errors.insert("default/x".to_string(), "bad port".to_string());
        let mut p = progress(true, &pods, &[], false);
        p.pod_errors = &pod_errors;
        let o = decide(&p).unwrap();
        assert_eq!(o.exit_code(), EXIT_MANIFEST_ERRORS);
        assert!(
            o.reason().contains("pod default/x: bad port"),
            "{}",
            o.reason()
        );
        // At the bound with every valid pod up, the errors are still the reason.
        let o = decide(&progress(false, &pods, &errors, true)).unwrap();
        assert_eq!(o.exit_code(), EXIT_MANIFEST_ERRORS);
    }

    #[test]
    fn completed_pods_count_as_started() {
        let pods = [pod(
            "job",
            PodPhase::Succeeded,
            true,
            ContainerStateView::Terminated {
                exit_code: Some(0),
                reason: "Completed".into(),
                finished_secs_ago: None,
                message: None,
            },
        )];
        assert_eq!(
            decide(&progress(true, &pods, &[], false)).map(|o| o.exit_code()),
            Some(0)
        );
    }

    #[test]
    fn report_is_a_table_and_result_line_or_json_with_the_outcome() {
        let doc = r#"{"node":"n","pods":[],"manifestErrors":[]}"#;
        let o = Outcome::Converged { pods: 0 };
        let t = report(doc, &o, false);
        assert!(t.starts_with("node n"), "{t}");
        assert!(t.ends_with("result: converged: 0 pod(s) started\n"), "{t}");
        let j: serde_json::Value = serde_json::from_str(&report(doc, &o, true)).unwrap();
        assert_eq!(j["node"], "n");
        assert_eq!(j["once"]["result"], "converged");
        assert_eq!(j["once"]["exitCode"], 0);
        let o = Outcome::NoRuntime {
            endpoint: "unix:///x.sock".into(),
            waited: Duration::from_secs(5),
            last_error: "connect: No such file or directory".into(),
        };
        let t = report("", &o, false);
        assert_eq!(
            t,
            "result: exit 3: the container runtime at unix:///x.sock did not answer within 5s: \
             connect: No such file or directory\n"
        );
        let j: serde_json::Value = serde_json::from_str(&report("", &o, true)).unwrap();
        assert_eq!(j["once"]["exitCode"], 3);
        assert_eq!(j["once"]["result"], "runtimeUnavailable");
    }
}
