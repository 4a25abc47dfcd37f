//! Graceful node shutdown: `tinylet shutdown`, the node's part of a system shutdown or reboot.
//!
//! The kubelet's `shutdownGracePeriod` / `shutdownGracePeriodCriticalPods`: when the system
//! goes down, the pods of this node are stopped the way a deletion stops them (SIGTERM, up to
//! the pod's `terminationGracePeriodSeconds`, then SIGKILL; the sandbox last), the regular pods
//! first with `shutdownGracePeriod - shutdownGracePeriodCriticalPods` as their bound, then the
//! critical ones (static pods and system-critical priorities, as the kubelet ranks them) with
//! `shutdownGracePeriodCriticalPods`. A zero `shutdownGracePeriod` turns it off, as upstream.
//!
//! The agent itself never does this: stopping or restarting it (or upgrading the package)
//! leaves every container running. The package's `tinylet-shutdown.service` runs this command
//! as its `ExecStop=`, which systemd calls at shutdown after the agent stopped and before
//! containerd stops; with `--only-at-system-shutdown` the command first asks systemd whether
//! the system is going down (`systemctl is-system-running` says `stopping`) and otherwise
//! touches nothing, so stopping that unit by hand or from a maintainer script is harmless.
//!
//! [`plan`] is pure: it reads the runtime's lists and decides what to stop with which grace.
//! [`stop`] makes the CRI calls.

use std::collections::BTreeMap;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use crate::cli::ShutdownFlags;
use crate::config::{self, AgentConfig};
use crate::cri::proto::{
    Container, ContainerFilter, ContainerState, PodSandbox, PodSandboxFilter, PodSandboxState,
};
use crate::cri::{CriClient, CriError, CriOptions};
use crate::reconcile::labels;
use crate::reconcile::model::DEFAULT_TERMINATION_GRACE;

/// How long each CRI call other than a container's stop may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The two bounds of a shutdown, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `shutdownGracePeriod`: the whole shutdown; zero turns graceful shutdown off.
    pub total: Duration,
    /// `shutdownGracePeriodCriticalPods`: the part kept for the critical pods (≤ total).
    pub critical: Duration,
}

impl Budget {
    /// The budget the configuration sets.
    pub fn from_config(cfg: &AgentConfig) -> Budget {
        Budget {
            total: cfg.shutdown_grace_period,
            critical: cfg.shutdown_grace_period_critical_pods,
        }
    }

    /// Whether graceful shutdown is on at all.
    pub fn enabled(&self) -> bool {
        !self.total.is_zero()
    }

    /// The bound of the regular pods' phase.
    pub fn regular(&self) -> Duration {
        self.total.saturating_sub(self.critical)
    }
}

/// One pod to stop, with the grace its containers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodStop {
    /// The sandbox.
    pub sandbox_id: String,
    /// `namespace/name`.
    pub name: String,
    /// Static or system-critical: stopped in the second phase.
    pub critical: bool,
    /// min(the pod's terminationGracePeriodSeconds, its phase's bound).
    pub grace: Duration,
    /// The pod's containers that still run, as (id, name).
    pub containers: Vec<(String, String)>,
}

/// The pods of both phases, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stopped first.
    pub regular: Vec<PodStop>,
    /// Stopped once the regular pods are gone.
    pub critical: Vec<PodStop>,
}

impl Plan {
    /// How many pods the plan stops.
    pub fn len(&self) -> usize {
        self.regular.len() + self.critical.len()
    }

    /// Whether there is nothing to stop.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The grace a pod asked for, from its sandbox's annotation (the default when missing).
fn pod_grace(annotations: &BTreeMap<String, String>) -> Duration {
    annotations
        .get(labels::TERMINATION_GRACE)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TERMINATION_GRACE)
}

/// What to stop: every sandbox tinylet created that is ready or still has a running
/// container, with its running containers. Objects without tinylet's marker are never
/// touched. Pure.
pub fn plan(sandboxes: &[PodSandbox], containers: &[Container], budget: &Budget) -> Plan {
    let mut out = Plan::default();
    for s in sandboxes.iter().filter(|s| labels::is_managed(&s.labels)) {
        let mut running: Vec<(String, String)> = containers
            .iter()
            .filter(|c| {
                c.pod_sandbox_id == s.id
                    && labels::is_managed(&c.labels)
                    && (c.state == ContainerState::ContainerRunning as i32
                        || c.state == ContainerState::ContainerUnknown as i32)
            })
            .map(|c| {
                let name = c
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| labels::get(&c.labels, labels::CONTAINER_NAME).into());
                (c.id.clone(), name)
            })
            .collect();
        running.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        if s.state != PodSandboxState::SandboxReady as i32 && running.is_empty() {
            continue;
        }
        let critical = labels::is_critical(&s.annotations);
        let bound = if critical {
            budget.critical
        } else {
            budget.regular()
        };
        let name = format!(
            "{}/{}",
            labels::get(&s.labels, labels::POD_NAMESPACE),
            labels::get(&s.labels, labels::POD_NAME)
        );
        let stop = PodStop {
            sandbox_id: s.id.clone(),
            name,
            critical,
            grace: pod_grace(&s.annotations).min(bound),
            containers: running,
        };
        if critical {
            out.critical.push(stop);
        } else {
            out.regular.push(stop);
        }
    }
    for v in [&mut out.regular, &mut out.critical] {
        v.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| a.sandbox_id.cmp(&b.sandbox_id))
        });
    }
    out
}

/// Whether `systemctl is-system-running`'s answer means the system is going down.
pub fn system_stopping(state: &str) -> bool {
    state.trim() == "stopping"
}

/// What became of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerOutcome {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The grace it was given.
    pub grace: Duration,
    /// How long the stop took.
    pub took: Duration,
    /// Its exit code once stopped, when the runtime reported one.
    pub exit_code: Option<i32>,
    /// The stop's error, if any.
    pub error: Option<String>,
}

impl ContainerOutcome {
    /// One line for the journal.
    pub fn line(&self) -> String {
        let how = match (&self.error, self.exit_code) {
            (Some(e), _) => format!("failed: {e}"),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "stopped".to_string(),
        };
        format!(
            "{} container {}: {how} after {:.1} s of {} s grace",
            self.pod,
            self.container,
            self.took.as_secs_f64(),
            self.grace.as_secs()
        )
    }
}

/// The whole shutdown's result.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Each container stopped, in the order they finished within each phase.
    pub containers: Vec<ContainerOutcome>,
    /// Sandboxes that would not stop, as (pod, error).
    pub sandbox_errors: Vec<(String, String)>,
    /// Pods stopped.
    pub pods: usize,
}

impl Outcome {
    /// Whether every stop succeeded.
    pub fn clean(&self) -> bool {
        self.sandbox_errors.is_empty() && self.containers.iter().all(|c| c.error.is_none())
    }
}

/// Stops the pods of `budget`'s plan through `client`: the regular pods together, then the
/// critical ones together; in each pod its containers together with the pod's grace, then
/// the sandbox. `select` narrows the sandboxes considered (the command takes all of them).
pub async fn stop(
    client: &CriClient,
    budget: &Budget,
    select: impl Fn(&PodSandbox) -> bool,
) -> Result<Outcome, CriError> {
    let managed: BTreeMap<String, String> = [(
        labels::MANAGED.to_string(),
        labels::MANAGED_VALUE.to_string(),
    )]
    .into();
    let sandboxes = client
        .list_pod_sandbox(Some(PodSandboxFilter {
            label_selector: managed.clone(),
            ..Default::default()
        }))
        .await?
        .items;
    let sandboxes: Vec<PodSandbox> = sandboxes.into_iter().filter(|s| select(s)).collect();
    let containers = client
        .list_containers(Some(ContainerFilter {
            label_selector: managed,
            ..Default::default()
        }))
        .await?
        .containers;
    let plan = plan(&sandboxes, &containers, budget);
    let mut outcome = Outcome {
        pods: plan.len(),
        ..Default::default()
    };
    for phase in [plan.regular, plan.critical] {
        let tasks: Vec<_> = phase
            .into_iter()
            .map(|pod| smol::spawn(stop_pod(client.clone(), pod)))
            .collect();
        for t in tasks {
            let (containers, sandbox_error) = t.await;
            outcome.containers.extend(containers);
            outcome.sandbox_errors.extend(sandbox_error);
        }
    }
    Ok(outcome)
}

/// One pod: its containers with its grace, together, then its sandbox.
async fn stop_pod(
    client: CriClient,
    pod: PodStop,
) -> (Vec<ContainerOutcome>, Option<(String, String)>) {
    let grace_secs = i64::try_from(pod.grace.as_secs()).unwrap_or(i64::MAX);
    let tasks: Vec<_> = pod
        .containers
        .iter()
        .cloned()
        .map(|(id, name)| {
            let client = client.clone();
            let pod_name = pod.name.clone();
            let grace = pod.grace;
            smol::spawn(async move {
                let started = Instant::now();
                let result = client.stop_container(&id, grace_secs).await;
                let took = started.elapsed();
                let exit_code = match &result {
                    Ok(_) => client
                        .container_status(&id, false)
                        .await
                        .ok()
                        .and_then(|r| r.status)
                        .filter(|s| s.state == ContainerState::ContainerExited as i32)
                        .map(|s| s.exit_code),
                    Err(_) => None,
                };
                ContainerOutcome {
                    pod: pod_name,
                    container: name,
                    grace,
                    took,
                    exit_code,
                    error: result.err().map(|e| e.to_string()),
                }
            })
        })
        .collect();
    let mut done = Vec::with_capacity(tasks.len());
    for t in tasks {
        done.push(t.await);
    }
    let sandbox_error = client
        .stop_pod_sandbox(&pod.sandbox_id)
        .await
        .err()
        .map(|e| (pod.name.clone(), e.to_string()));
    (done, sandbox_error)
}

/// `systemctl is-system-running`'s answer, or None without systemd.
fn system_state() -> Option<String> {
    let out = Process::new("systemctl")
        .arg("is-system-running")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `tinylet shutdown`.
pub fn shutdown_main(flags: ShutdownFlags) -> i32 {
    let started = Instant::now();
    crate::logging::init(flags.run.verbosity.unwrap_or(0));
    if flags.only_at_system_shutdown {
        match system_state() {
            Some(s) if system_stopping(&s) => {}
            state => {
                println!(
                    "tinylet shutdown: the system is not shutting down ({}): pods left running",
                    state.as_deref().unwrap_or("no systemd")
                );
                return 0;
            }
        }
    }
    let cfg = match config::resolve(&crate::agent::overrides(&flags.run)) {
        Ok(r) => r.config,
        Err(e) => {
            eprintln!("tinylet shutdown: {e}");
            return 2;
        }
    };
    let mut budget = Budget::from_config(&cfg);
    if let Some(d) = flags.grace_period {
        budget.total = d;
        budget.critical = budget.critical.min(d);
    }
    if !budget.enabled() {
        println!(
            "tinylet shutdown: shutdownGracePeriod is 0 (graceful node shutdown off): pods left to the runtime"
        );
        return 0;
    }
    let client = match CriClient::new(
        &cfg.container_runtime_endpoint,
        CriOptions {
            call_timeout: CALL_TIMEOUT,
            ..CriOptions::default()
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tinylet shutdown: {e}");
            return 1;
        }
    };
    println!(
        "tinylet shutdown: stopping this node's pods (shutdownGracePeriod {} s, {} s of it for critical pods)",
        budget.total.as_secs(),
        budget.critical.as_secs()
    );
    let outcome = match smol::block_on(stop(&client, &budget, |_| true)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tinylet shutdown: {e}");
            return 1;
        }
    };
    for c in &outcome.containers {
        println!("tinylet shutdown: {}", c.line());
    }
    for (pod, e) in &outcome.sandbox_errors {
        println!("tinylet shutdown: {pod} sandbox: failed: {e}");
    }
    println!(
        "tinylet shutdown: stopped {} pod(s) in {:.1} s",
        outcome.pods,
        started.elapsed().as_secs_f64()
    );
    if outcome.clean() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::proto::ContainerMetadata;

    fn budget(total: u64, critical: u64) -> Budget {
        Budget {
            total: Duration::from_secs(total),
            critical: Duration::from_secs(critical),
        }
    }

    fn sandbox(
        id: &str,
        name: &str,
        grace: Option<u64>,
        critical: bool,
        ready: bool,
    ) -> PodSandbox {
        let mut s = PodSandbox {
            id: id.into(),
            state: if ready {
                PodSandboxState::SandboxReady
            } else {
                PodSandboxState::SandboxNotready
            } as i32,
            ..Default::default()
        };
        s.labels
            .insert(labels::MANAGED.into(), labels::MANAGED_VALUE.into());
        s.labels.insert(labels::POD_NAMESPACE.into(), "ns".into());
        s.labels.insert(labels::POD_NAME.into(), name.into());
        if let Some(g) = grace {
            s.annotations
                .insert(labels::TERMINATION_GRACE.into(), g.to_string());
        }
        if critical {
            s.annotations.insert(labels::CRITICAL.into(), "true".into());
        }
        s
    }

    fn container(id: &str, sandbox: &str, name: &str, state: ContainerState) -> Container {
        let mut c = Container {
            id: id.into(),
            pod_sandbox_id: sandbox.into(),
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            state: state as i32,
            ..Default::default()
        };
        c.labels
            .insert(labels::MANAGED.into(), labels::MANAGED_VALUE.into());
        c
    }

    #[test]
    fn budget_splits_and_zero_is_off() {
        assert!(!budget(0, 0).enabled());
        assert_eq!(budget(30, 10).regular(), Duration::from_secs(20));
        assert_eq!(budget(10, 10).regular(), Duration::ZERO);
        assert_eq!(budget(5, 10).regular(), Duration::ZERO);
    }

    #[test]
    fn grace_is_the_pods_capped_by_its_phase() {
        let sb = [
            sandbox("s1", "short", Some(5), false, true),
            sandbox("s2", "long", Some(120), false, true),
            sandbox("s3", "default", None, false, true),
            sandbox("s4", "static", Some(60), true, true),
        ];
        let p = plan(&sb, &[], &budget(30, 10));
        let grace: Vec<(&str, u64)> = p
            .regular
            .iter()
            .chain(&p.critical)
            .map(|s| (s.name.as_str(), s.grace.as_secs()))
            .collect();
        // The default grace (30 s) is capped at the regular phase's 20 s.
        assert_eq!(
            grace,
            [
                ("ns/default", 20),
                ("ns/long", 20),
                ("ns/short", 5),
                ("ns/static", 10)
            ]
        );
        assert!(p.critical.iter().all(|s| s.critical));
        assert!(p.regular.iter().all(|s| !s.critical));
    }

    #[test]
    fn only_managed_and_live_pods_with_their_running_containers() {
        let mut foreign = sandbox("s9", "foreign", Some(5), false, true);
        foreign.labels.remove(labels::MANAGED);
        let sb = [
            sandbox("s1", "web", Some(5), false, true),
            // Sandbox already down but a container still runs: still stopped.
            sandbox("s2", "half", Some(5), false, false),
            // Down with nothing running: nothing to do.
            sandbox("s3", "gone", Some(5), false, false),
            foreign,
        ];
        let mut unmanaged = container("c9", "s1", "sidecar", ContainerState::ContainerRunning);
        unmanaged.labels.clear();
        let cs = [
            container("c2", "s1", "b", ContainerState::ContainerRunning),
            container("c1", "s1", "a", ContainerState::ContainerRunning),
            container("c3", "s1", "done", ContainerState::ContainerExited),
            container("c4", "s2", "x", ContainerState::ContainerRunning),
            container("c5", "s3", "y", ContainerState::ContainerExited),
            container("c6", "s9", "z", ContainerState::ContainerRunning),
            unmanaged,
        ];
        let p = plan(&sb, &cs, &budget(30, 0));
        assert!(p.critical.is_empty());
        let got: Vec<(&str, Vec<&str>)> = p
            .regular
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.containers.iter().map(|c| c.1.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(got, [("ns/half", vec!["x"]), ("ns/web", vec!["a", "b"])]);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn all_budget_to_critical_pods_kills_regular_ones_at_once() {
        let sb = [
            sandbox("s1", "app", Some(30), false, true),
            sandbox("s2", "dns", Some(30), true, true),
        ];
        let p = plan(&sb, &[], &budget(30, 30));
        assert_eq!(p.regular[0].grace, Duration::ZERO);
        assert_eq!(p.critical[0].grace, Duration::from_secs(30));
    }

    #[test]
    fn bad_grace_annotation_falls_back_to_the_default() {
        let mut s = sandbox("s1", "odd", None, false, true);
        s.annotations
            .insert(labels::TERMINATION_GRACE.into(), "soon".into());
        let p = plan(&[s], &[], &budget(600, 0));
        assert_eq!(p.regular[0].grace, DEFAULT_TERMINATION_GRACE);
    }

    #[test]
    fn only_stopping_counts_as_shutting_down() {
        assert!(system_stopping("stopping\n"));
        for s in [
            "running",
            "degraded",
            "starting",
            "maintenance",
            "offline",
            "",
        ] {
            assert!(!system_stopping(s), "{s}");
        }
    }

    #[test]
    fn outcome_lines() {
        let mut c = ContainerOutcome {
            pod: "default/web".into(),
            container: "web".into(),
            grace: Duration::from_secs(20),
            took: Duration::from_millis(1500),
            exit_code: Some(0),
            error: None,
        };
        assert_eq!(
            c.line(),
            "default/web container web: exit code 0 after 1.5 s of 20 s grace"
        );
        c.error = Some("deadline".into());
        assert!(c.line().contains("failed: deadline"));
    }
}
