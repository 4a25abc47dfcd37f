//! Builds the core/v1 `PodStatus` the API server is told about from the engine's status view.
//!
//! Pure (sans-I/O): the caller passes the wall clock and the monotonic instant the view was
//! taken at. Owns the memory that keeps a report stable between calls (condition transition
//! times, container start/finish stamps converted to wall-clock time once), so an unchanged pod
//! yields a byte-identical document and no PATCH. It must not send anything itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::k8s::coordination::format_time;
use crate::k8s::pod::Pod;
use crate::reconcile::status::{ContainerStateView, ContainerStatus, PodStatus};
use crate::reconcile::PodPhase;

/// Per-pod memory that keeps timestamps stable from one report to the next.
#[derive(Debug, Clone, Default)]
pub struct StatusMemory {
    start_time: Option<String>,
    /// Condition type → (status, lastTransitionTime).
    conditions: BTreeMap<&'static str, (bool, String)>,
    /// Stamps by a key naming the container instance and the event (start, finish, last).
    stamps: BTreeMap<String, String>,
}

impl StatusMemory {
    /// Memory seeded from what the server already holds, so that a restarted agent reporting an
    /// unchanged pod keeps the server's transition times and start time.
    pub fn from_server(pod: &Pod) -> Self {
        let mut m = StatusMemory::default();
        let Some(st) = &pod.status else {
            return m;
        };
        m.start_time.clone_from(&st.start_time);
        for c in &st.conditions {
            let Some(t) = &c.last_transition_time else {
                continue;
            };
            if let Some(ty) = CONDITIONS.iter().find(|ty| **ty == c.type_) {
                m.conditions.insert(ty, (c.status == "True", t.clone()));
            }
        }
        for cs in st
            .container_statuses
            .iter()
            .chain(st.init_container_statuses.iter())
        {
            let id = cs.container_id.clone();
            if let Some(s) = &cs.state {
                if let Some(r) = &s.running {
                    if let Some(t) = &r.started_at {
                        m.stamps.insert(format!("{id}/start"), t.clone());
                    }
                }
            }
        }
        m
    }

    /// The pod's `status.startTime` as reported (or as the server had it), if known yet.
    pub fn start_time(&self) -> Option<&str> {
        self.start_time.as_deref()
    }
}

const CONDITIONS: [&str; 4] = ["PodScheduled", "Initialized", "ContainersReady", "Ready"];

/// The wall-clock time of a monotonic instant, relative to a pair of clocks read together.
fn wall_of(at: Instant, now: Instant, now_wall: SystemTime) -> SystemTime {
    if at <= now {
        now_wall
            .checked_sub(now.duration_since(at))
            .unwrap_or(now_wall)
    } else {
        now_wall + at.duration_since(now)
    }
}

/// `containerd://ID` as the kubelet reports it (ids from the runtime carry no scheme).
pub fn container_id_uri(runtime: &str, id: &str) -> String {
    if id.contains("://") || id.is_empty() {
        id.to_string()
    } else {
        format!("{runtime}://{id}")
    }
}

fn phase_name(p: PodPhase) -> &'static str {
    match p {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
    }
}

/// The clocks and host facts one report is made with.
#[derive(Debug, Clone, Copy)]
pub struct ReportClock {
    /// Monotonic instant the engine's view was taken at.
    pub now: Instant,
    /// Wall clock read at the same moment.
    pub now_wall: SystemTime,
}

/// The node's addresses as a pod status shows them: `hostIP`/`hostIPs` of every pod, and
/// `podIP`/`podIPs` of a `hostNetwork` pod.
#[derive(Debug, Clone, Copy)]
pub struct HostAddrs<'a> {
    /// The node's IPs, primary first, at most one per family (see `node::register::host_ips`).
    pub ips: &'a [String],
    /// Whether this pod runs in the host's network namespace.
    pub host_network: bool,
}

/// Go's `%s` of a `[]string`, as the kubelet's condition messages print container lists.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// Builds `status` for the pod (a JSON object ready to be the `status` of a merge patch).
///
/// The kubelet's rules followed here: every pod reports the node's IPs as `hostIP`/`hostIPs`,
/// and a `hostNetwork` pod the same as `podIP`/`podIPs`; a False Initialized condition has
/// reason ContainersNotInitialized and the message `containers with incomplete status: [..]`,
/// a False ContainersReady/Ready has ContainersNotReady and `containers with unready status:
/// [..]`, or PodFailed/PodCompleted once the pod is terminal.
pub fn build_status(
    view: &PodStatus,
    host: HostAddrs<'_>,
    runtime: &str,
    clock: ReportClock,
    mem: &mut StatusMemory,
) -> Value {
    let now_text = format_time(clock.now_wall);
    let start = mem
        .start_time
        .get_or_insert_with(|| now_text.clone())
        .clone();
    let flags = [
        true,
        view.conditions.initialized,
        view.conditions.containers_ready,
        view.conditions.ready,
    ];
    let mut conditions = Vec::with_capacity(CONDITIONS.len());
    for (ty, status) in CONDITIONS.iter().zip(flags) {
        let entry = mem
            .conditions
            .entry(ty)
            .or_insert_with(|| (status, now_text.clone()));
        if entry.0 != status {
            *entry = (status, now_text.clone());
        }
        let mut c = json!({
            "type": ty,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": entry.1,
        });
        let terminal = match view.phase {
            PodPhase::Failed => Some("PodFailed"),
            PodPhase::Succeeded => Some("PodCompleted"),
            _ => None,
        };
        let unready = &view.conditions.unready;
        match *ty {
            "ContainersReady" | "Ready" if !status => match terminal {
                Some(r) => c["reason"] = json!(r),
                None => {
                    c["reason"] = json!("ContainersNotReady");
                    if !unready.is_empty() {
                        c["message"] = json!(format!(
                            "containers with unready status: {}",
                            go_list(unready)
                        ));
                    }
                }
            },
            "Initialized" if !status => {
                c["reason"] = json!("ContainersNotInitialized");
                let incomplete = &view.conditions.incomplete_init;
                if !incomplete.is_empty() {
                    c["message"] = json!(format!(
                        "containers with incomplete status: {}",
                        go_list(incomplete)
                    ));
                }
            }
            _ => {}
        }
        conditions.push(c);
    }
    let mut containers = Vec::new();
    for c in &view.containers {
        containers.push(container_status(c, runtime, clock, mem));
    }
    let mut inits = Vec::new();
    for c in &view.init_containers {
        inits.push(container_status(c, runtime, clock, mem));
    }
    let mut ephemeral = Vec::new();
    for c in &view.ephemeral_containers {
        ephemeral.push(container_status(c, runtime, clock, mem));
    }
    let mut out = Map::new();
    out.insert("phase".into(), json!(phase_name(view.phase)));
    out.insert("conditions".into(), Value::Array(conditions));
    let ip_list = |ips: &[String]| -> Value {
        Value::Array(ips.iter().map(|ip| json!({ "ip": ip })).collect())
    };
    if let Some(first) = host.ips.first() {
        out.insert("hostIP".into(), json!(first));
        out.insert("hostIPs".into(), ip_list(host.ips));
    }
    match view.pod_ip.as_deref().filter(|ip| !ip.is_empty()) {
        Some(ip) => {
            out.insert("podIP".into(), json!(ip));
            out.insert("podIPs".into(), json!([{ "ip": ip }]));
        }
        None if host.host_network => {
            if let Some(first) = host.ips.first() {
                out.insert("podIP".into(), json!(first));
                out.insert("podIPs".into(), ip_list(host.ips));
            }
        }
        None => {}
    }
    out.insert("startTime".into(), json!(start));
    out.insert("containerStatuses".into(), Value::Array(containers));
    out.insert("initContainerStatuses".into(), Value::Array(inits));
    if !ephemeral.is_empty() {
        out.insert("ephemeralContainerStatuses".into(), Value::Array(ephemeral));
    }
    if let Some(r) = &view.reason {
        out.insert("reason".into(), json!(r));
    }
    if let Some(m) = &view.message {
        out.insert("message".into(), json!(m));
    }
    Value::Object(out)
}

fn stamp(
    mem: &mut StatusMemory,
    key: String,
    at: Option<Instant>,
    fallback_ago: Option<u64>,
    clock: ReportClock,
) -> Option<String> {
    if let Some(s) = mem.stamps.get(&key) {
        return Some(s.clone());
    }
    let wall = match (at, fallback_ago) {
        (Some(at), _) => wall_of(at, clock.now, clock.now_wall),
        (None, Some(ago)) => clock
            .now_wall
            .checked_sub(Duration::from_secs(ago))
            .unwrap_or(clock.now_wall),
        (None, None) => return None,
    };
    let text = format_time(wall);
    mem.stamps.insert(key, text.clone());
    Some(text)
}

fn container_status(
    c: &ContainerStatus,
    runtime: &str,
    clock: ReportClock,
    mem: &mut StatusMemory,
) -> Value {
    let id = c
        .container_id
        .as_deref()
        .map(|i| container_id_uri(runtime, i))
        .unwrap_or_default();
    let state = match &c.state {
        ContainerStateView::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({ "waiting": w })
        }
        ContainerStateView::Running { .. } => {
            let started = stamp(mem, format!("{id}/start"), c.started_at, None, clock);
            json!({ "running": { "startedAt": started } })
        }
        ContainerStateView::Terminated {
            exit_code,
            reason,
            finished_secs_ago,
            message,
        } => {
            let started = stamp(mem, format!("{id}/start"), c.started_at, None, clock);
            let finished = stamp(
                mem,
                format!("{id}/finish"),
                c.finished_at,
                *finished_secs_ago,
                clock,
            );
            let mut t = json!({
                "exitCode": exit_code.unwrap_or(0),
                "reason": reason,
                "startedAt": started,
                "finishedAt": finished,
                "containerID": id,
            });
            if let Some(m) = message {
                t["message"] = json!(m);
            }
            json!({ "terminated": t })
        }
    };
    let last = match &c.last_state {
        Some(ContainerStateView::Terminated {
            exit_code,
            reason,
            finished_secs_ago,
            message,
        }) => {
            // The kubelet reports the previous instance in full: exit code, reason, when it
            // started and finished, and its container ID.
            let key = format!("{}/{}/last", c.name, c.restart_count);
            let finished = stamp(
                mem,
                key.clone(),
                c.last_finished_at,
                *finished_secs_ago,
                clock,
            );
            let started = stamp(mem, format!("{key}-start"), c.last_started_at, None, clock);
            let mut t = json!({
                "exitCode": exit_code.unwrap_or(0),
                "reason": reason,
                "startedAt": started,
                "finishedAt": finished,
            });
            if let Some(m) = message {
                t["message"] = json!(m);
            }
            if let Some(id) = c.last_container_id.as_deref() {
                t["containerID"] = json!(container_id_uri(runtime, id));
            }
            json!({ "terminated": t })
        }
        _ => json!({}),
    };
    let mut v = json!({
        "name": c.name,
        "state": state,
        "lastState": last,
        "ready": c.ready,
        "started": c.started,
        "restartCount": c.restart_count,
        "image": c.image,
        "imageID": c.image_id,
    });
    if !id.is_empty() {
        v["containerID"] = json!(id);
    }
    v
}

/// Forgets stamps of container instances no longer in the view, so memory stays bounded.
pub fn prune(mem: &mut StatusMemory, view: &PodStatus, runtime: &str) {
    let live: Vec<String> = view
        .containers
        .iter()
        .chain(view.init_containers.iter())
        .chain(view.ephemeral_containers.iter())
        .filter_map(|c| c.container_id.as_deref())
        .map(|i| container_id_uri(runtime, i))
        .collect();
    let names: Vec<String> = view
        .containers
        .iter()
        .chain(view.init_containers.iter())
        .chain(view.ephemeral_containers.iter())
        .map(|c| format!("{}/{}/last", c.name, c.restart_count))
        .collect();
    mem.stamps.retain(|k, _| {
        names.iter().any(|n| k.starts_with(n.as_str()))
            || live.iter().any(|id| {
                k.strip_prefix(id.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::status::PodConditions;

    const NO_HOST: HostAddrs<'static> = HostAddrs {
        ips: &[],
        host_network: false,
    };

    fn host() -> HostAddrs<'static> {
        HostAddrs {
            ips: HOST_IPS.as_slice(),
            host_network: false,
        }
    }

    static HOST_IPS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["192.168.1.2".to_string()]);

    fn view(ready: bool) -> PodStatus {
        PodStatus {
            uid: "u".into(),
            namespace: "d".into(),
            name: "p".into(),
            spec_hash: "h".into(),
            phase: PodPhase::Running,
            conditions: PodConditions {
                initialized: true,
                containers_ready: ready,
                ready,
                ..PodConditions::default()
            },
            pod_ip: Some("10.0.0.5".into()),
            deleting: false,
            terminated: false,
            reason: None,
            message: None,
            init_containers: vec![],
            ephemeral_containers: vec![],
            containers: vec![ContainerStatus {
                name: "c".into(),
                image: "busybox:1".into(),
                image_id: "sha256:5b0f".into(),
                container_id: Some("abc".into()),
                state: ContainerStateView::Running {
                    running_for_secs: 3,
                },
                last_state: Some(ContainerStateView::Terminated {
                    exit_code: Some(1),
                    reason: "Error".into(),
                    finished_secs_ago: Some(5),
                    message: None,
                }),
                ready,
                started: true,
                restart_count: 1,
                backoff: None,
                last_error: None,
                started_at: None,
                finished_at: None,
                last_container_id: None,
                last_started_at: None,
                last_finished_at: None,
            }],
        }
    }

    #[test]
    fn stable_until_something_changes() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut v = view(false);
        v.containers[0].started_at = Some(t0);
        let mut mem = StatusMemory::default();
        let c0 = ReportClock {
            now: t0,
            now_wall: w0,
        };
        let a = build_status(&v, host(), "containerd", c0, &mut mem);
        assert_eq!(a["phase"], "Running");
        assert_eq!(a["podIP"], "10.0.0.5");
        assert_eq!(a["containerStatuses"][0]["containerID"], "containerd://abc");
        assert_eq!(a["containerStatuses"][0]["imageID"], "sha256:5b0f");
        assert_eq!(a["containerStatuses"][0]["restartCount"], 1);
        assert_eq!(
            a["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
        assert_eq!(a["conditions"][3]["type"], "Ready");
        assert_eq!(a["conditions"][3]["status"], "False");
        // Seconds later with the same view: identical document (no drift, no PATCH).
        let c1 = ReportClock {
            now: t0 + Duration::from_millis(2500),
            now_wall: w0 + Duration::from_millis(2500),
        };
        v.containers[0].state = ContainerStateView::Running {
            running_for_secs: 5,
        };
        let b = build_status(&v, host(), "containerd", c1, &mut mem);
        assert_eq!(a, b);
        // Readiness flips: only the transition times of the flipped conditions move.
        let mut r = v.clone();
        r.conditions.containers_ready = true;
        r.conditions.ready = true;
        r.containers[0].ready = true;
        let c = build_status(&r, host(), "containerd", c1, &mut mem);
        assert_ne!(b, c);
        assert_eq!(c["conditions"][3]["status"], "True");
        assert_eq!(
            c["conditions"][0]["lastTransitionTime"],
            a["conditions"][0]["lastTransitionTime"]
        );
        assert_ne!(
            c["conditions"][3]["lastTransitionTime"],
            a["conditions"][3]["lastTransitionTime"]
        );
    }

    /// The termination message goes to `state.terminated.message` and
    /// `lastState.terminated.message` (core/v1 ContainerStateTerminated), absent when empty.
    #[test]
    fn termination_messages_are_reported() {
        let t0 = Instant::now();
        let clock = ReportClock {
            now: t0,
            now_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        let mut v = view(false);
        let a = build_status(
            &v,
            host(),
            "containerd",
            clock,
            &mut StatusMemory::default(),
        );
        let last = &a["containerStatuses"][0]["lastState"]["terminated"];
        assert!(last.get("message").is_none(), "{last}");
        v.containers[0].last_state = Some(ContainerStateView::Terminated {
            exit_code: Some(1),
            reason: "Error".into(),
            finished_secs_ago: Some(5),
            message: Some("first run failed".into()),
        });
        v.containers[0].state = ContainerStateView::Terminated {
            exit_code: Some(0),
            reason: "Completed".into(),
            finished_secs_ago: Some(1),
            message: Some("DONE".into()),
        };
        let b = build_status(
            &v,
            host(),
            "containerd",
            clock,
            &mut StatusMemory::default(),
        );
        let cs = &b["containerStatuses"][0];
        assert_eq!(cs["state"]["terminated"]["message"], "DONE");
        assert_eq!(cs["lastState"]["terminated"]["message"], "first run failed");
    }

    // kubelet: lastState.terminated of a restarted container carries the previous instance's
    // startedAt, finishedAt, exitCode, reason and containerID (kubectl describe prints the
    // start as "Started:"; a null one reads as year 1).
    #[test]
    fn last_state_reports_the_previous_instance_in_full() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut v = view(false);
        v.containers[0].last_container_id = Some("old".into());
        v.containers[0].last_started_at = t0.checked_sub(Duration::from_secs(9));
        v.containers[0].last_finished_at = t0.checked_sub(Duration::from_secs(5));
        let mut mem = StatusMemory::default();
        let clock = ReportClock {
            now: t0,
            now_wall: w0,
        };
        let s = build_status(&v, NO_HOST, "containerd", clock, &mut mem);
        let last = &s["containerStatuses"][0]["lastState"]["terminated"];
        assert_eq!(last["startedAt"], format_time(w0 - Duration::from_secs(9)));
        assert_eq!(last["finishedAt"], format_time(w0 - Duration::from_secs(5)));
        assert_eq!(last["exitCode"], 1);
        assert_eq!(last["reason"], "Error");
        assert_eq!(last["containerID"], "containerd://old");
        // Stable in later reports, and kept by pruning while the instance is the last one.
        prune(&mut mem, &v, "containerd");
        let later = ReportClock {
            now: t0 + Duration::from_millis(1500),
            now_wall: w0 + Duration::from_millis(1500),
        };
        assert_eq!(build_status(&v, NO_HOST, "containerd", later, &mut mem), s);
    }

    #[test]
    fn server_memory_keeps_times() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            "status": {"startTime": "2026-01-01T00:00:00Z",
              "conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": "2026-01-01T00:00:01Z"}],
              "containerStatuses": [{"name": "c", "containerID": "containerd://abc", "ready": false,
                "restartCount": 1, "image": "busybox:1",
                "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}}}]}
        }))
        .unwrap();
        let mut mem = StatusMemory::from_server(&pod);
        let clock = ReportClock {
            now: Instant::now(),
            now_wall: SystemTime::now(),
        };
        let s = build_status(&view(false), NO_HOST, "containerd", clock, &mut mem);
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(
            s["conditions"][3]["lastTransitionTime"],
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:02Z"
        );
        assert!(s.get("hostIP").is_none());
    }

    /// Upstream (kubelet generateAPIPodStatus): every pod's hostIP/hostIPs are the node's
    /// IPs, and a hostNetwork pod, which has no IP of its own, gets them as podIP/podIPs.
    #[test]
    fn host_ips_on_every_pod_and_pod_ips_of_host_network_pods() {
        let clock = ReportClock {
            now: Instant::now(),
            now_wall: SystemTime::now(),
        };
        let ips = vec!["192.0.2.2".to_string(), "2001:db8::2".to_string()];
        let mut v = view(true);
        let mut mem = StatusMemory::default();
        let host = HostAddrs {
            ips: &ips,
            host_network: false,
        };
        let s = build_status(&v, host, "containerd", clock, &mut mem);
        assert_eq!(s["hostIP"], "192.0.2.2");
        assert_eq!(
            s["hostIPs"],
            json!([{"ip": "192.0.2.2"}, {"ip": "2001:db8::2"}])
        );
        assert_eq!(s["podIP"], "10.0.0.5", "the sandbox's own IP");
        v.pod_ip = None;
        let host = HostAddrs {
            ips: &ips,
            host_network: true,
        };
        let s = build_status(&v, host, "containerd", clock, &mut mem);
        assert_eq!(s["podIP"], "192.0.2.2");
        assert_eq!(s["podIPs"], s["hostIPs"]);
        let host = HostAddrs {
            ips: &ips,
            host_network: false,
        };
        let s = build_status(&v, host, "containerd", clock, &mut mem);
        assert!(s.get("podIP").is_none(), "no IP yet is no IP: {s}");
    }

    /// Upstream (status/generate.go): a False Initialized condition has reason
    /// ContainersNotInitialized and the message "containers with incomplete status: [..]" (Go's
    /// %s of a []string: space separated, in brackets); a False ContainersReady/Ready has
    /// ContainersNotReady and "containers with unready status: [..]", or PodFailed once the pod
    /// failed. A pod-level reason and message go out as they are.
    #[test]
    fn condition_reasons_and_messages_name_the_containers() {
        let clock = ReportClock {
            now: Instant::now(),
            now_wall: SystemTime::now(),
        };
        let mut v = view(false);
        v.phase = PodPhase::Pending;
        v.conditions.initialized = false;
        v.conditions.incomplete_init = vec!["init2".into()];
        v.conditions.unready = vec!["c".into(), "d".into()];
        let mut mem = StatusMemory::default();
        let s = build_status(&v, NO_HOST, "containerd", clock, &mut mem);
        let cond = |s: &Value, t: &str| -> Value {
            s["conditions"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["type"] == t).cloned())
                .unwrap_or(Value::Null)
        };
        let init = cond(&s, "Initialized");
        assert_eq!(init["status"], "False");
        assert_eq!(init["reason"], "ContainersNotInitialized");
        assert_eq!(
            init["message"],
            "containers with incomplete status: [init2]"
        );
        for t in ["ContainersReady", "Ready"] {
            let c = cond(&s, t);
            assert_eq!(c["reason"], "ContainersNotReady", "{c}");
            assert_eq!(c["message"], "containers with unready status: [c d]", "{c}");
        }
        v.phase = PodPhase::Failed;
        v.reason = Some("DeadlineExceeded".into());
        v.message = Some("Pod was active on the node longer than the specified deadline".into());
        let s = build_status(&v, NO_HOST, "containerd", clock, &mut mem);
        assert_eq!(s["phase"], "Failed");
        assert_eq!(s["reason"], "DeadlineExceeded");
        assert_eq!(
            s["message"],
            "Pod was active on the node longer than the specified deadline"
        );
        assert_eq!(cond(&s, "Ready")["reason"], "PodFailed");
        assert!(cond(&s, "Ready").get("message").is_none());
    }

    #[test]
    fn prune_drops_gone_instances() {
        let mut mem = StatusMemory::default();
        let clock = ReportClock {
            now: Instant::now(),
            now_wall: SystemTime::now(),
        };
        let mut v = view(true);
        v.containers[0].started_at = Some(clock.now);
        build_status(&v, NO_HOST, "containerd", clock, &mut mem);
        assert!(mem.stamps.contains_key("containerd://abc/start"));
        v.containers[0].container_id = Some("def".into());
        prune(&mut mem, &v, "containerd");
        assert!(!mem.stamps.contains_key("containerd://abc/start"));
        assert!(mem.stamps.contains_key("c/1/last"));
    }
}
