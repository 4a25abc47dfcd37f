//! One `tinylet run` that joins a `Cluster` with nothing but a bootstrap kubeconfig, on the
//! bed's containerd: its directories, config file (short Lease cadence), process, log, and
//! CRI look-ups of the test's pods. Dropping it stops the agent and removes its pods, mounts
//! and files. It holds the agent lock shared with every other agent test.
//!
//! Generic over the cluster (tests/common/podsync.rs is tied to the project server); it never
//! talks to the API itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tinylet::k8s::configmap::base64_encode;

use super::cluster::Cluster;
use super::cri_bed::{
    one_agent, read_nonempty, remove_namespace_pods, stop_child, unmount_below, Bed, OneAgent,
};

/// The node Lease lasts 4 s, so it is renewed every second (a quarter, as the kubelet does).
const LEASE_SECONDS: u32 = 4;

/// A test's agent. Field order matters for drop: the agent and pods go first, then the lock.
/// The tests' hard eviction thresholds: memory only. The disk signals would follow the shared
/// machine's disk (other tenants fill it), and a test's pods must not be evicted for that; the
/// eviction test replaces this line.
pub const EVICTION_HARD: &str = "evictionHard: {memory.available: 100Mi}\n";

pub struct Agent {
    pub bed: Bed,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub manifests: PathBuf,
    pub out: PathBuf,
    pub kubeconfig: PathBuf,
    pub bootstrap_kubeconfig: PathBuf,
    pub cert_dir: PathBuf,
    pub config: PathBuf,
    /// Node name (also the pods' namespace prefix).
    pub node: String,
    /// The bootstrap token id the agent authenticates with first.
    pub token_id: String,
    /// Flags added to `tinylet run` (after the standard ones).
    pub extra_args: Vec<String>,
    child: Option<Child>,
    starts: u32,
    _lock: OneAgent,
}

impl Agent {
    /// Directories, config and a bootstrap kubeconfig with a fresh token from `cluster`; the
    /// agent is not started yet.
    pub fn new(bed: Bed, cluster: &dyn Cluster, test: &str) -> Agent {
        let lock = one_agent(&bed);
        let pid = std::process::id();
        let short: String = test
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect::<String>()
            .to_lowercase();
        let node = format!(
            "et{pid}{short}{}",
            cluster.kind().chars().next().unwrap_or('x')
        );
        let dir = bed
            .dir
            .join("scratch")
            .join(format!("envtest-{}-{test}-{pid}", cluster.kind()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let manifests = dir.join("manifests");
        let out = dir.join("out");
        let logs = dir.join("logs");
        let cert_dir = dir.join("pki");
        for d in [&manifests, &out, &logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        let token = cluster.bootstrap_token().expect("a bootstrap token");
        let token_id = token.split('.').next().unwrap_or("").to_string();
        let bootstrap_kubeconfig = dir.join("bootstrap.conf");
        std::fs::write(
            &bootstrap_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: boot\nclusters:\n- name: envtest\n  \
                 cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: boot\n  \
                 context: {{cluster: envtest, user: bootstrap}}\nusers:\n- name: bootstrap\n  user:\n    \
                 token: {token}\n",
                cluster.url(),
                base64_encode(cluster.ca_pem().as_bytes())
            ),
        )
        .unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 podLogsDir: {}\nnodeLeaseDurationSeconds: {LEASE_SECONDS}\n\
                 nodeStatusUpdateFrequency: 1s\n{EVICTION_HARD}",
                logs.display()
            ),
        )
        .unwrap();
        Agent {
            bed,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_tinylet")),
            kubeconfig: dir.join("kubelet.conf"),
            dir,
            root,
            manifests,
            out,
            bootstrap_kubeconfig,
            cert_dir,
            config,
            node,
            token_id,
            extra_args: Vec::new(),
            child: None,
            starts: 0,
            _lock: lock,
        }
    }

    /// Starts `tinylet run` in the background.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "an agent is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let p = |p: &Path| p.display().to_string();
        let args = vec![
            "run".to_string(),
            "--config".into(),
            p(&self.config),
            "--root-dir".into(),
            p(&self.root),
            "--pod-manifest-path".into(),
            p(&self.manifests),
            "--container-runtime-endpoint".into(),
            self.bed.endpoint.clone(),
            "--hostname-override".into(),
            self.node.clone(),
            "--bootstrap-kubeconfig".into(),
            p(&self.bootstrap_kubeconfig),
            "--kubeconfig".into(),
            p(&self.kubeconfig),
            "--cert-dir".into(),
            p(&self.cert_dir),
            "-v".into(),
            "2".into(),
        ];
        let args: Vec<String> = args.into_iter().chain(self.extra_args.clone()).collect();
        let child = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("agent-{n}.log"))
    }

    /// The current agent's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// Whether the agent process is still alive.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, reaped within 10 s (then SIGKILL).
    /// The running agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, reaped: the agent gets no chance to tidy up.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, nix::sys::signal::Signal::SIGKILL);
        }
    }

    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Containers of pods in namespace `ns`: (id, pod name, state, attempt).
    pub fn containers(&self, ns: &str) -> Vec<(String, String, i32, u32)> {
        let client = self.bed.client();
        smol::block_on(async {
            let Ok(list) = client.list_containers(None).await else {
                return Vec::new();
            };
            list.containers
                .into_iter()
                .filter(|c| {
                    c.labels
                        .get("io.kubernetes.pod.namespace")
                        .map(String::as_str)
                        == Some(ns)
                })
                .map(|c| {
                    let pod = c
                        .labels
                        .get("io.kubernetes.pod.name")
                        .cloned()
                        .unwrap_or_default();
                    let attempt = c.metadata.map(|m| m.attempt).unwrap_or_default();
                    (c.id, pod, c.state, attempt)
                })
                .collect()
        })
    }

    /// Ids of running containers (CONTAINER_RUNNING = 1) of pod `ns/name`.
    pub fn running_ids(&self, ns: &str, name: &str) -> Vec<String> {
        self.containers(ns)
            .into_iter()
            .filter(|(_, p, st, _)| p == name && *st == 1)
            .map(|(id, ..)| id)
            .collect()
    }

    /// Removes the pods of namespace `ns` straight via CRI (cleanup after a failure).
    pub fn force_remove_pods(&self, ns: &str) {
        remove_namespace_pods(&self.bed, ns);
    }

    /// A file a pod wrote into its output dir, waited for (empty if it never came).
    pub fn read_out(&self, pod: &str, file: &str, limit: Duration) -> String {
        read_nonempty(&self.out.join(pod).join(file), limit)
    }

    /// The namespace used for this agent's pods (one per agent, so cleanup can find them).
    pub fn namespace(&self) -> String {
        format!("{}-ns", self.node)
    }

    fn unmount_leftovers(&self) {
        unmount_below(&self.dir);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        self.force_remove_pods(&self.namespace());
        self.unmount_leftovers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
