//! Phase, conditions and container states of a pod record, by the kubelet's counting rules.

use std::time::{Duration, Instant};

use super::model::{
    ContainerState, DesiredContainer, DesiredPod, ObservedContainer, PodRef, RestartPolicy,
};
use super::pod::{ContainerMemory, PhaseCount, PodRecord, Scope};
use super::status::{
    reason, BackoffView, ContainerStateView, ContainerStatus, PodConditions, PodPhase, PodStatus,
};

/// How long a failed pull is shown as ErrImagePull before its back-off shows as
/// ImagePullBackOff. The kubelet reports the result of its last pod sync: the sync whose pull
/// failed reports ErrImagePull (with the error), and a pod whose sync failed is synced again
/// after the pod worker's back-off of 10 s, which then finds the image back-off and reports
/// ImagePullBackOff until the next pull.
pub(super) const ERR_IMAGE_PULL_SHOWN: Duration = Duration::from_secs(10);

/// Whether the status shows the image back-off rather than the failed pull itself.
fn pull_backing_off(m: &ContainerMemory, now: Instant) -> bool {
    let shown_over = m
        .pull
        .last()
        .and_then(|l| l.checked_add(ERR_IMAGE_PULL_SHOWN))
        .is_some_and(|t| now >= t);
    shown_over && m.pull.active(now)
}

/// A pod as the kubelet names it in messages (`format.Pod`): `NAME_NAMESPACE(UID)`.
pub(super) fn kubelet_pod_name(pod: &PodRef) -> String {
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

/// A whole-second duration as Go prints it (`10s`, `2m40s`, `5m0s`), as in kubelet messages.
pub(super) fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

impl PodRecord {
    pub(super) fn phase_count(&self, d: &DesiredPod, spec: &DesiredContainer) -> PhaseCount {
        let mem = self.mem.get(&spec.name);
        match self.latest(&spec.name, Scope::Spec(&d.spec_hash)) {
            Some(c) => match c.state {
                ContainerState::Running => PhaseCount::Running,
                ContainerState::Exited => {
                    let killed = mem.is_some_and(|m| m.killed.as_deref() == Some(c.id.as_str()));
                    PhaseCount::Exited {
                        success: c.exit_code == Some(0) && !killed,
                    }
                }
                ContainerState::Created | ContainerState::Unknown if c.attempt > 0 => {
                    PhaseCount::Restarting
                }
                ContainerState::Created | ContainerState::Unknown => PhaseCount::NeverRan,
            },
            None if mem.is_some_and(|m| m.next_attempt > 0) => PhaseCount::Restarting,
            None => PhaseCount::NeverRan,
        }
    }

    pub(super) fn initialized(&self, d: &DesiredPod) -> bool {
        let scope = Scope::Spec(&d.spec_hash);
        d.containers
            .iter()
            .any(|c| !self.instances(&c.name, scope).is_empty())
            || d.init_containers.iter().all(|ic| {
                self.latest(&ic.name, scope).is_some_and(|c| {
                    if ic.sidecar {
                        return c.state == ContainerState::Running;
                    }
                    c.state == ContainerState::Exited
                        && c.exit_code == Some(0)
                        && self
                            .mem
                            .get(&ic.name)
                            .is_none_or(|m| m.killed.as_deref() != Some(c.id.as_str()))
                })
            })
    }

    /// The phase by the kubelet's counting rules, ignoring a recorded terminal phase.
    pub(super) fn compute_phase(&self, d: &DesiredPod) -> PodPhase {
        if !self.initialized(d) {
            let init_failed = d.restart_policy == RestartPolicy::Never
                && d.init_containers.iter().filter(|ic| !ic.sidecar).any(|ic| {
                    self.latest(&ic.name, Scope::Spec(&d.spec_hash))
                        .is_some_and(|c| {
                            c.state == ContainerState::Exited && c.exit_code != Some(0)
                        })
                });
            return if init_failed {
                PodPhase::Failed
            } else {
                PodPhase::Pending
            };
        }
        if d.containers.is_empty() {
            return PodPhase::Pending;
        }
        let (mut never, mut running, mut failed) = (0, 0, 0);
        for spec in &d.containers {
            match self.phase_count(d, spec) {
                PhaseCount::NeverRan => never += 1,
                PhaseCount::Running | PhaseCount::Restarting => running += 1,
                PhaseCount::Exited { success } => {
                    if !success {
                        failed += 1
                    }
                }
            }
        }
        if never > 0 {
            PodPhase::Pending
        } else if running > 0 {
            PodPhase::Running
        } else {
            match d.restart_policy {
                RestartPolicy::Always => PodPhase::Running,
                _ if failed == 0 => PodPhase::Succeeded,
                RestartPolicy::OnFailure => PodPhase::Running,
                RestartPolicy::Never => PodPhase::Failed,
            }
        }
    }

    pub(super) fn terminated_view(c: &ObservedContainer, now: Instant) -> ContainerStateView {
        let reason = c.reason.clone().unwrap_or_else(|| {
            if c.exit_code == Some(0) {
                reason::COMPLETED.to_string()
            } else {
                reason::ERROR.to_string()
            }
        });
        ContainerStateView::Terminated {
            exit_code: c.exit_code,
            reason,
            finished_secs_ago: c
                .finished_at
                .map(|f| now.saturating_duration_since(f).as_secs()),
            message: c.message.clone(),
        }
    }

    pub(super) fn container_status(
        &self,
        d: &DesiredPod,
        spec: &DesiredContainer,
        init: bool,
        now: Instant,
    ) -> ContainerStatus {
        let mem = self.mem.get(&spec.name);
        let instances = self.instances(&spec.name, Scope::Spec(&d.spec_hash));
        let latest = instances.first().copied();
        let previous = instances.get(1).copied();
        let waiting = mem.and_then(|m| {
            let (reason, message) = m.waiting.clone()?;
            if reason == reason::ERR_IMAGE_PULL && pull_backing_off(m, now) {
                let message = format!("Back-off pulling image \"{}\"", spec.image);
                return Some((reason::IMAGE_PULL_BACK_OFF, Some(message)));
            }
            Some((reason, message))
        });
        let waiting_view = |default: &str| {
            let (reason, message) = waiting
                .clone()
                .unwrap_or((reason::CONTAINER_CREATING, None));
            let reason = if waiting.is_none() { default } else { reason };
            ContainerStateView::Waiting {
                reason: reason.to_string(),
                message,
            }
        };
        let mut last_instance = previous.filter(|c| c.state == ContainerState::Exited);
        let state = match latest {
            Some(c) => match c.state {
                ContainerState::Running => ContainerStateView::Running {
                    running_for_secs: c
                        .started_at
                        .map_or(0, |s| now.saturating_duration_since(s).as_secs()),
                },
                ContainerState::Created => waiting_view(reason::CONTAINER_CREATING),
                ContainerState::Unknown => ContainerStateView::Waiting {
                    reason: reason::CONTAINER_STATUS_UNKNOWN.to_string(),
                    message: None,
                },
                ContainerState::Exited if waiting.is_some() => {
                    last_instance = Some(c);
                    waiting_view(reason::CONTAINER_CREATING)
                }
                ContainerState::Exited => Self::terminated_view(c, now),
            },
            // The kubelet's default for a container the runtime does not know yet:
            // PodInitializing in a pod with init containers (for its init and app containers
            // alike), ContainerCreating otherwise.
            None if !d.init_containers.is_empty() => waiting_view(reason::POD_INITIALIZING),
            None => waiting_view(reason::CONTAINER_CREATING),
        };
        let last_state = last_instance.map(|c| Self::terminated_view(c, now));
        let running = latest.filter(|c| c.state == ContainerState::Running);
        let probes = running.and_then(|c| {
            mem.and_then(|m| m.probes.as_ref())
                .filter(|s| s.instance == c.id)
        });
        let started = running.is_some() && probes.map_or(spec.startup.is_none(), |s| s.started);
        // A regular init container is ready once it exited 0 (the kubelet's prober manager
        // marks terminated-with-0 init containers ready); sidecars and app containers by their
        // probes while running.
        let completed = latest.is_some_and(|c| {
            c.state == ContainerState::Exited
                && c.exit_code == Some(0)
                && mem.is_none_or(|m| m.killed.as_deref() != Some(c.id.as_str()))
        });
        let ready = if init && !spec.sidecar {
            completed
        } else {
            running.is_some()
                && probes.map_or(spec.startup.is_none() && spec.readiness.is_none(), |s| {
                    s.ready()
                })
        };
        let backoff = mem
            .and_then(|m| m.backoff_until)
            .filter(|(until, _)| now < *until)
            .map(|(until, delay)| BackoffView {
                until: Some(until),
                delay_secs: delay.as_secs(),
                remaining_secs: until.saturating_duration_since(now).as_secs(),
            });
        let restart_count = match latest {
            Some(c) => c.attempt,
            None => mem.map_or(0, |m| m.next_attempt.saturating_sub(1)),
        };
        ContainerStatus {
            name: spec.name.clone(),
            image: spec.image.clone(),
            image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
            container_id: latest.map(|c| c.id.clone()),
            state,
            last_state,
            ready,
            started,
            restart_count,
            backoff,
            last_error: mem.and_then(|m| m.last_error.clone()),
            started_at: latest.and_then(|c| c.started_at),
            finished_at: latest.and_then(|c| c.finished_at),
            last_container_id: last_instance.map(|c| c.id.clone()),
            last_started_at: last_instance.and_then(|c| c.started_at),
            last_finished_at: last_instance.and_then(|c| c.finished_at),
        }
    }

    pub(super) fn status(&self, d: &DesiredPod, now: Instant) -> PodStatus {
        let initialized = self.initialized(d);
        let init_containers: Vec<ContainerStatus> = d
            .init_containers
            .iter()
            .map(|c| self.container_status(d, c, true, now))
            .collect();
        let containers: Vec<ContainerStatus> = d
            .containers
            .iter()
            .map(|c| self.container_status(d, c, false, now))
            .collect();
        let phase = self.terminal.unwrap_or_else(|| self.compute_phase(d));
        let sidecars_ready = d
            .init_containers
            .iter()
            .zip(init_containers.iter())
            .all(|(spec, st): (&DesiredContainer, &ContainerStatus)| !spec.sidecar || st.ready);
        let containers_ready =
            !containers.is_empty() && containers.iter().all(|c| c.ready) && sidecars_ready;
        let deleting = d.deletion.is_some();
        // What the Initialized condition names while False: regular init containers not
        // complete, sidecars not started.
        let incomplete_init: Vec<String> = if initialized {
            Vec::new()
        } else {
            d.init_containers
                .iter()
                .zip(init_containers.iter())
                .filter(|(spec, st)| if spec.sidecar { !st.started } else { !st.ready })
                .map(|(spec, _)| spec.name.clone())
                .collect()
        };
        let unready: Vec<String> = d
            .init_containers
            .iter()
            .zip(init_containers.iter())
            .filter(|(spec, st)| spec.sidecar && !st.ready)
            .map(|(_, st)| st.name.clone())
            .chain(
                containers
                    .iter()
                    .filter(|st| !st.ready)
                    .map(|st| st.name.clone()),
            )
            .collect();
        // A pod failed for a reason keeps that reason's message, whatever teardown says.
        let message = match self.reason {
            Some(reason::DEADLINE_EXCEEDED) => Some(reason::DEADLINE_EXCEEDED_MESSAGE.to_string()),
            _ => self.message.clone(),
        };
        PodStatus {
            uid: d.uid.clone(),
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            spec_hash: d.spec_hash.clone(),
            phase,
            conditions: PodConditions {
                initialized,
                containers_ready,
                ready: containers_ready && phase == PodPhase::Running && !deleting,
                incomplete_init,
                unready,
            },
            pod_ip: self
                .current_sandbox(&d.spec_hash)
                .and_then(|s| s.ip.clone()),
            deleting,
            terminated: deleting && self.view_empty() && self.inflight.is_empty(),
            reason: self.reason.map(str::to_string),
            message,
            init_containers,
            containers,
            ephemeral_containers: d
                .ephemeral_containers
                .iter()
                .map(|c| {
                    // The kubelet reports ephemeral containers unready and unstarted: no probe
                    // ever runs for them.
                    let mut st = self.container_status(d, c, false, now);
                    st.ready = false;
                    st.started = false;
                    // Gone with an earlier sandbox and not run again: the kubelet's words
                    // for a container it can no longer find.
                    let ran = self.mem.get(&c.name).is_some_and(|m| m.next_attempt > 0);
                    if st.container_id.is_none() && ran {
                        st.state = ContainerStateView::Terminated {
                            exit_code: Some(137),
                            reason: reason::CONTAINER_STATUS_UNKNOWN.to_string(),
                            finished_secs_ago: None,
                            message: Some(
                                "The container could not be located when the pod was terminated"
                                    .to_string(),
                            ),
                        };
                        st.backoff = None;
                    }
                    st
                })
                .collect(),
        }
    }
}
