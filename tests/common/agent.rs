//! Driving a real `tinylet run` against the bed's containerd: a private root dir, manifest dir
//! and log dir per test, the agent as a child process, `tinylet status --json` polling, and a
//! guard that removes every pod the test started (even when an assert failed). Included with
//! `#[path]` by tests/agent_static.rs and benches/boot.rs, next to common/cri_bed.rs.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cri_bed::{stop_child, unmount_below, Bed};

#[allow(unused_imports)]
pub use super::cri_bed::{one_agent, OneAgent};

/// The pods' namespace in every manifest under tests/data/agent.
pub const NAMESPACE: &str = "agent-test";

/// One test's agent environment; dropping it stops the agent and removes its pods and files.
/// Its config keeps only the memory eviction threshold: the disk signals would follow the
/// shared machine's disk, and a test's pods must not be evicted for that.
pub struct AgentEnv {
    pub bed: Bed,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub manifests: PathBuf,
    pub logs: PathBuf,
    pub config: PathBuf,
    pub node: String,
    pub agent: Option<Child>,
    /// `-v` of every agent started (2 in tests: debug lines help a failure report).
    pub verbosity: u8,
    starts: u32,
}

impl AgentEnv {
    /// A fresh environment under the bed's scratch dir, for the binary `bin`.
    pub fn new(bed: Bed, bin: &Path, test: &str) -> AgentEnv {
        let dir = bed
            .dir
            .join("scratch")
            .join(format!("agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let manifests = dir.join("manifests");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 podLogsDir: {}\n\
                 evictionHard: {{memory.available: 100Mi}}\n",
                logs.display()
            ),
        )
        .unwrap();
        AgentEnv {
            bin: bin.to_path_buf(),
            dir,
            root,
            manifests,
            logs,
            config,
            node: format!("at{}", std::process::id()),
            agent: None,
            verbosity: 2,
            starts: 0,
            bed,
        }
    }

    /// Reads tests/data/agent/`name` and fills in the placeholders.
    pub fn template(&self, name: &str, vars: &[(&str, &str)]) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/agent")
            .join(name);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text.replace("@IMAGE@", &self.bed.test_image);
        text = text.replace("@DIR@", &self.dir.display().to_string());
        for (k, v) in vars {
            text = text.replace(&format!("@{k}@"), v);
        }
        text
    }

    /// Writes a manifest file atomically (rename), as an editor or deploy tool would.
    pub fn put_manifest(&self, file: &str, text: &str) {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    /// Removes one manifest file.
    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// Removes every manifest file.
    pub fn clear_manifests(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.manifests) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// `name-node`: the pod name the agent gives a static pod.
    pub fn pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }

    fn run_args(&self, manifests: &Path) -> Vec<String> {
        vec![
            "run".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--root-dir".into(),
            self.root.display().to_string(),
            "--pod-manifest-path".into(),
            manifests.display().to_string(),
            "--container-runtime-endpoint".into(),
            self.bed.endpoint.clone(),
            "--hostname-override".into(),
            self.node.clone(),
            "-v".into(),
            self.verbosity.to_string(),
        ]
    }

    /// Starts `tinylet run` in the background with the test's manifest dir.
    pub fn start(&mut self) {
        let m = self.manifests.clone();
        self.start_with_manifests(&m);
    }

    /// Starts `tinylet run` in the background with another manifest dir (which may not exist).
    pub fn start_with_manifests(&mut self, manifests: &Path) {
        assert!(self.agent.is_none(), "an agent is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.agent_log_path(self.starts)).unwrap();
        let child = Command::new(&self.bin)
            .args(self.run_args(manifests))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    /// The stderr log of the n-th agent started (1-based).
    pub fn agent_log_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("agent-{n}.log"))
    }

    /// The current agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.agent_log_path(self.starts)).unwrap_or_default()
    }

    /// The running agent's pid.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(|c| c.id())
    }

    /// Sends `sig` to the agent and reaps it (bounded: SIGKILL after 10 s); its exit status
    /// if it exited by itself.
    pub fn stop(&mut self, sig: nix::sys::signal::Signal) -> Option<std::process::ExitStatus> {
        stop_child(self.agent.take()?, sig)
    }

    /// `tinylet status` (the table) from the running agent.
    pub fn status_table(&self) -> String {
        Command::new(&self.bin)
            .args(["status", "--root-dir"])
            .arg(&self.root)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Whether the background agent is still running.
    pub fn agent_alive(&mut self) -> bool {
        matches!(self.agent.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `tinylet run --once --json` (bounded by `limit`): its exit success and printed status.
    pub fn run_once(&self, limit: Duration) -> (bool, Option<Value>) {
        let (code, out) = self.run_once_with(limit, &["--json"]);
        (code == Some(0), serde_json::from_str(out.trim()).ok())
    }

    /// `tinylet run --once` with `extra` arguments (bounded by `limit`, then killed): its exit
    /// code (`None` if it had to be killed) and its stdout.
    pub fn run_once_with(&self, limit: Duration, extra: &[&str]) -> (Option<i32>, String) {
        let m = self.manifests.clone();
        let log = std::fs::File::create(self.dir.join("once.log")).unwrap();
        let mut child = Command::new(&self.bin)
            .args(self.run_args(&m))
            .arg("--once")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let t0 = Instant::now();
        let code = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st.code();
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (code, reader.join().unwrap_or_default())
    }

    /// One `tinylet status --json` document from the running agent, if it answers.
    pub fn status(&self) -> Option<Value> {
        let out = Command::new(&self.bin)
            .args(["status", "--json", "--root-dir"])
            .arg(&self.root)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Polls the status every 100 ms until `check` holds (returns that document) or `limit`.
    pub fn wait_status(&self, limit: Duration, check: impl Fn(&Value) -> bool) -> Option<Value> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(v) = self.status() {
                if check(&v) {
                    return Some(v);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Managed sandboxes of this environment's node name still in containerd: (id, pod name).
    pub fn runtime_pods(&self) -> Vec<(String, String)> {
        let client = self.bed.client();
        let suffix = format!("-{}", self.node);
        smol::block_on(async {
            let list = client.list_pod_sandbox(None).await.unwrap();
            list.items
                .into_iter()
                .filter_map(|s| {
                    let name = s.metadata.as_ref()?.name.clone();
                    let ns = s.metadata.as_ref()?.namespace.clone();
                    (ns == NAMESPACE && name.ends_with(&suffix)).then_some((s.id, name))
                })
                .collect()
        })
    }

    /// Containers (any state) of this environment's pods: (id, container name, sandbox id).
    pub fn runtime_containers(&self) -> Vec<(String, String, String)> {
        let sandboxes: Vec<String> = self.runtime_pods().into_iter().map(|p| p.0).collect();
        let client = self.bed.client();
        smol::block_on(async {
            let list = client.list_containers(None).await.unwrap();
            list.containers
                .into_iter()
                .filter(|c| sandboxes.contains(&c.pod_sandbox_id))
                .map(|c| {
                    let name = c.metadata.map(|m| m.name).unwrap_or_default();
                    (c.id, name, c.pod_sandbox_id)
                })
                .collect()
        })
    }

    /// Removes whatever the agent could not (the last resort of the guard), straight via CRI.
    pub fn force_remove_pods(&self) {
        let pods = self.runtime_pods();
        if pods.is_empty() {
            return;
        }
        eprintln!(
            "cleanup: the agent left {} pod(s); removing via CRI",
            pods.len()
        );
        let containers = self.runtime_containers();
        let client = self.bed.client();
        smol::block_on(async {
            for (id, _, _) in containers {
                let _ = client.stop_container(&id, 0).await;
                let _ = client.remove_container(&id).await;
            }
            for (id, _) in pods {
                let _ = client.stop_pod_sandbox(&id).await;
                let _ = client.remove_pod_sandbox(&id).await;
            }
        });
    }

    /// Unmounts anything left mounted below the environment's directory (tmpfs volumes).
    fn unmount_leftovers(&self) {
        for p in unmount_below(&self.dir) {
            eprintln!("cleanup: unmounted {p}");
        }
    }
}

/// Tmpfs mount points below `dir`, from /proc/self/mountinfo.
pub fn tmpfs_mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    mounts
        .lines()
        .filter(|l| l.contains(" - tmpfs "))
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

impl Drop for AgentEnv {
    fn drop(&mut self) {
        self.stop(nix::sys::signal::Signal::SIGTERM);
        self.clear_manifests();
        // The agent removes what it started: up to three bounded `--once` runs, then CRI.
        for _ in 0..3 {
            if self.runtime_pods().is_empty() {
                break;
            }
            let (ok, _) = self.run_once(Duration::from_secs(60));
            if !ok {
                eprintln!("cleanup: `tinylet run --once` did not settle");
            }
        }
        self.force_remove_pods();
        self.unmount_leftovers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pod named `name` (full name) in a status document.
pub fn pod<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc.get("pods")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
}

/// The container `c` (app or init) of pod `name`.
pub fn container<'a>(doc: &'a Value, name: &str, c: &str) -> Option<&'a Value> {
    let p = pod(doc, name)?;
    p.get("containers")?
        .as_array()?
        .iter()
        .chain(p.get("initContainers")?.as_array()?.iter())
        .find(|x| x.get("name").and_then(Value::as_str) == Some(c))
}

/// Whether container `c` of pod `name` is running.
pub fn running(doc: &Value, name: &str, c: &str) -> bool {
    container(doc, name, c)
        .and_then(|x| x.get("state")?.get("running"))
        .is_some()
}

/// Whether every app container of pod `name` is running and the pod is Running.
pub fn pod_running(doc: &Value, name: &str) -> bool {
    let Some(p) = pod(doc, name) else {
        return false;
    };
    let cs = p.get("containers").and_then(Value::as_array);
    p.get("phase").and_then(Value::as_str) == Some("Running")
        && cs.is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.get("state").and_then(|s| s.get("running")).is_some())
        })
}

/// A string field of a container.
pub fn cfield(doc: &Value, name: &str, c: &str, field: &str) -> Option<String> {
    container(doc, name, c)?
        .get(field)?
        .as_str()
        .map(String::from)
}

/// The restart count of a container.
pub fn restarts(doc: &Value, name: &str, c: &str) -> u64 {
    container(doc, name, c)
        .and_then(|x| x.get("restartCount")?.as_u64())
        .unwrap_or(0)
}

/// A test's environment and the agent lock, released after the environment is cleaned up
/// (field order: the environment drops first).
pub struct Held {
    pub env: AgentEnv,
    _lock: OneAgent,
}

impl std::ops::Deref for Held {
    type Target = AgentEnv;
    fn deref(&self) -> &AgentEnv {
        &self.env
    }
}

impl std::ops::DerefMut for Held {
    fn deref_mut(&mut self) -> &mut AgentEnv {
        &mut self.env
    }
}

/// The bed, the agent lock and a fresh environment for `test`, or None (skip line printed).
pub fn setup(test: &str) -> Option<Held> {
    let bed = Bed::get(test)?;
    let lock = one_agent(&bed);
    let env = AgentEnv::new(bed, Path::new(env!("CARGO_BIN_EXE_tinylet")), test);
    Some(Held { env, _lock: lock })
}
