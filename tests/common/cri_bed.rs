//! The real-containerd test bed as the CRI tests see it: env file, skip rule, pod builders and
//! cleanup guards. Included with `#[path]` by tests/cri_real.rs and benches/cri.rs.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tinylet::cri::proto::*;
use tinylet::cri::{CriClient, CriOptions};

/// Values from /run/tlbed/env.
pub struct Bed {
    pub endpoint: String,
    pub test_image: String,
    pub pull_image: String,
    pub registry: String,
    pub dir: PathBuf,
}

impl Bed {
    /// Reads the bed's env file, or prints the loud skip line and returns None.
    pub fn get(test: &str) -> Option<Bed> {
        let path = std::env::var("TINYLET_BED_ENV").unwrap_or_else(|_| "/run/tlbed/env".into());
        let root = nix::unistd::Uid::effective().is_root();
        let text = std::fs::read_to_string(&path).ok().filter(|_| root);
        let Some(text) = text else {
            // Straight to the stderr handle: libtest's capture would hide eprintln! on a pass.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (no test bed): {test} — run tests/bed/up.sh"
            );
            return None;
        };
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| vars.get(k).map(|v| v.to_string()).unwrap_or_default();
        Some(Bed {
            endpoint: get("TINYLET_CRI_ENDPOINT"),
            test_image: get("TINYLET_TEST_IMAGE"),
            pull_image: get("TINYLET_PULL_IMAGE"),
            registry: get("TINYLET_REGISTRY"),
            dir: PathBuf::from(get("TINYLET_BED_DIR")),
        })
    }

    pub fn client(&self) -> CriClient {
        let opts = CriOptions {
            call_timeout: Duration::from_secs(60),
            pull_timeout: Duration::from_secs(120),
            ..CriOptions::default()
        };
        CriClient::new(&self.endpoint, opts).unwrap()
    }

    /// A fresh scratch directory for one test, removed by the returned guard.
    pub fn scratch(&self, name: &str) -> Scratch {
        let dir = self.dir.join("scratch").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

/// Removes a scratch directory on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique object name for this test and process.
pub fn unique(test: &str) -> String {
    format!("{}-{}", test.replace('_', "-"), std::process::id())
}

/// Sandbox config; `host_network` skips CNI for speed.
pub fn sandbox_config(name: &str, host_network: bool, labels: &[(&str, &str)]) -> PodSandboxConfig {
    let uid = format!("uid-{name}");
    let mode = if host_network {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: uid.clone(),
            namespace: "tinylet-test".into(),
            attempt: 0,
        }),
        // A host network namespace has no private UTS namespace: hostname must stay empty.
        hostname: if host_network {
            String::new()
        } else {
            name.to_owned()
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: mode as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    target_id: String::new(),
                }),
                ..Default::default()
            }),
            sysctls: BTreeMap::new(),
        }),
        ..Default::default()
    }
}

/// Container config running `sh -c script` from the test image.
pub fn container_config(name: &str, image: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.to_owned()],
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption {
                    pid: NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Stops and removes a sandbox (and so its containers) on drop, even after a failed assert.
pub struct SandboxGuard {
    pub client: CriClient,
    pub id: String,
    pub config: PodSandboxConfig,
}

impl SandboxGuard {
    pub async fn run(client: &CriClient, config: PodSandboxConfig) -> SandboxGuard {
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = client.run_pod_sandbox(&req).await.unwrap().pod_sandbox_id;
        SandboxGuard {
            client: client.clone(),
            id,
            config,
        }
    }

    /// Creates a container in this sandbox; returns its id.
    pub async fn create(&self, config: ContainerConfig) -> String {
        let req = CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        self.client
            .create_container(&req)
            .await
            .unwrap()
            .container_id
    }
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let client = self.client.clone();
        let id = self.id.clone();
        smol::block_on(async move {
            // Removing the sandbox alone leaves containers behind in some runtimes: be explicit.
            let filter = ContainerFilter {
                pod_sandbox_id: id.clone(),
                ..Default::default()
            };
            if let Ok(list) = client.list_containers(Some(filter)).await {
                for c in list.containers {
                    let _ = client.remove_container(&c.id).await;
                }
            }
            // NotFound: the test already removed it.
            match client.stop_pod_sandbox(&id).await {
                Err(e) if !e.is_not_found() => eprintln!("cleanup: {e}"),
                _ => {}
            }
            match client.remove_pod_sandbox(&id).await {
                Err(e) if !e.is_not_found() => eprintln!("cleanup: {e}"),
                _ => {}
            }
        });
    }
}

/// Polls `check` every 50 ms until it returns Some or `limit` passes (bounded wait).
pub async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check().await {
            return Some(v);
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    None
}

/// Agents on one containerd remove each other's pods: only one may run at a time.
static ONE_AGENT: Mutex<()> = Mutex::new(());

/// The process-wide mutex and an flock in the bed's dir (other test binaries wait too).
pub struct OneAgent {
    _file: Option<nix::fcntl::Flock<std::fs::File>>,
    _guard: MutexGuard<'static, ()>,
}

/// Takes the agent lock (poison ignored: a failed test must not block the others).
pub fn one_agent(bed: &Bed) -> OneAgent {
    let guard = ONE_AGENT.lock().unwrap_or_else(|p| p.into_inner());
    let _ = std::fs::create_dir_all(bed.dir.join("scratch"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(bed.dir.join("scratch/.tinylet-agent.lock"))
        .ok()
        .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
    OneAgent {
        _file: file,
        _guard: guard,
    }
}

/// Sends `sig` to an agent process and reaps it within 10 s (then SIGKILL); its exit status
/// if it exited by itself.
pub fn stop_child(
    mut child: std::process::Child,
    sig: nix::sys::signal::Signal,
) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, sig);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Unmounts (lazily, deepest first) whatever is still mounted below `dir`, e.g. tmpfs volumes
/// an agent left; returns the mount points.
pub fn unmount_below(dir: &std::path::Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    points
}

/// The content of `path` once it exists and is not empty, waited for up to `limit` ("" if it
/// never came): how tests read what a container wrote to a hostPath.
pub fn read_nonempty(path: &std::path::Path, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if !s.is_empty() {
                return s;
            }
        }
        if t0.elapsed() > limit {
            return String::new();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops and removes every container and sandbox of pods in namespace `ns` straight via CRI
/// (what a reboot does to them; also the last resort of cleanup guards).
pub fn remove_namespace_pods(bed: &Bed, ns: &str) {
    let client = bed.client();
    smol::block_on(async {
        if let Ok(list) = client.list_containers(None).await {
            for c in list.containers {
                if c.labels
                    .get("io.kubernetes.pod.namespace")
                    .map(String::as_str)
                    == Some(ns)
                {
                    let _ = client.stop_container(&c.id, 0).await;
                    let _ = client.remove_container(&c.id).await;
                }
            }
        }
        if let Ok(list) = client.list_pod_sandbox(None).await {
            for s in list.items {
                if s.metadata.as_ref().is_some_and(|m| m.namespace == ns) {
                    let _ = client.stop_pod_sandbox(&s.id).await;
                    let _ = client.remove_pod_sandbox(&s.id).await;
                }
            }
        }
    });
}
