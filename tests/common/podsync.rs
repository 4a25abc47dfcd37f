//! One `tinylet run` joined to the project's API test server over TLS, on the bed's real
//! containerd: node credentials, kubeconfig, root/log/manifest dirs, the agent lock shared with
//! the other agent tests (agents on one containerd remove each other's pods), CRI look-ups of
//! this test's pods, and a guard that stops the agent and removes every pod, mount and file.
//! Included with `#[path]` by tests/agent_api.rs and benches/podstart.rs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::apiserver::{self, ApiServer};
use super::cri_bed::{read_nonempty, remove_namespace_pods, stop_child, unmount_below, Bed};

#[allow(unused_imports)]
pub use super::cri_bed::{one_agent, OneAgent};

/// A test's server, agent and directories. Field order matters for drop: the agent and pods
/// go first (in `Drop`), then the lock.
pub struct Env {
    pub bed: Bed,
    pub srv: ApiServer,
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub manifests: PathBuf,
    pub out: PathBuf,
    pub kubeconfig: PathBuf,
    pub config: PathBuf,
    pub node: String,
    pub ns: String,
    pub agent: Option<Child>,
    pub extra_args: Vec<String>,
    starts: u32,
    _lock: OneAgent,
}

impl Env {
    /// Server up, namespace and Node created, credentials written; the agent not started yet.
    pub fn new(bed: Bed, bin: &Path, test: &str) -> Env {
        let lock = one_agent(&bed);
        let pid = std::process::id();
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let node = format!("ps{pid}{}", short.to_lowercase());
        let ns = format!("ps{pid}");
        let dir = bed
            .dir
            .join("scratch")
            .join(format!("podsync-{test}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let manifests = dir.join("manifests");
        let out = dir.join("out");
        let logs = dir.join("logs");
        for d in [&manifests, &out, &logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        let srv = apiserver::start(apiserver::Config::tls()).unwrap();
        srv.ensure_namespace(&ns);
        srv.create(
            "/api/v1/nodes",
            json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
        )
        .unwrap();
        let creds = srv.node_cert(&node).unwrap();
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, srv.ca_pem()).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        tinylet::api::write_cert_kubeconfig(
            &kubeconfig,
            &srv.url(),
            &ca,
            &creds.cert_path,
            &creds.key_path,
        )
        .unwrap();
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
        Env {
            bed,
            srv,
            bin: bin.to_path_buf(),
            dir,
            root,
            manifests,
            out,
            kubeconfig,
            config,
            node,
            ns,
            agent: None,
            extra_args: Vec::new(),
            starts: 0,
            _lock: lock,
        }
    }

    /// Starts `tinylet run` in the background.
    pub fn start(&mut self) {
        assert!(self.agent.is_none(), "an agent is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let mut args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--root-dir".into(),
            self.root.display().to_string(),
            "--pod-manifest-path".into(),
            self.manifests.display().to_string(),
            "--container-runtime-endpoint".into(),
            self.bed.endpoint.clone(),
            "--hostname-override".into(),
            self.node.clone(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--offline-autonomy=true".into(),
            "-v".into(),
            "2".into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let child = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("agent-{n}.log"))
    }

    /// The current agent's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// SIGTERM, reaped within 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(child) = self.agent.take() {
            stop_child(child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// A pod running `script` in busybox, bound to this node, with the output dir at /out.
    pub fn pod(&self, name: &str, script: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "nodeName": self.node,
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "main", "image": self.bed.test_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", format!("trap 'exit 0' TERM; {script}; sleep 3600 & wait")],
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                }],
                "volumes": [{"name": "out", "hostPath": {"path": self.out.join(name).display().to_string(), "type": "DirectoryOrCreate"}}],
            }
        })
    }

    /// Creates a pod at the server (as admin).
    pub fn create_pod(&self, pod: Value) -> Value {
        self.srv
            .create(&format!("/api/v1/namespaces/{}/pods", self.ns), pod)
            .unwrap()
    }

    /// Waits for the pod's status to satisfy `check`; panics with the agent log.
    pub fn wait_pod(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) {
        let ok = self
            .srv
            .wait_until(limit, |s| s.pod(&self.ns, name).is_some_and(|p| check(&p)));
        if !ok {
            panic!(
                "timed out after {limit:?} waiting for {what}\npod: {}\nagent log:\n{}",
                self.srv
                    .pod(&self.ns, name)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                self.log()
            );
        }
    }

    /// Waits until the pod is Running with condition Ready True at the server.
    pub fn wait_ready(&self, name: &str, limit: Duration) {
        self.wait_pod(name, limit, "Running and Ready", ready);
    }

    /// Containers of this test's pods in containerd: id → (pod name, container, state, attempt).
    pub fn containers(&self) -> BTreeMap<String, (String, String, i32, u32)> {
        let client = self.bed.client();
        smol::block_on(async {
            let list = client.list_containers(None).await.unwrap();
            list.containers
                .into_iter()
                .filter(|c| c.labels.get("io.kubernetes.pod.namespace") == Some(&self.ns))
                .map(|c| {
                    let pod = c
                        .labels
                        .get("io.kubernetes.pod.name")
                        .cloned()
                        .unwrap_or_default();
                    let (name, attempt) =
                        c.metadata.map(|m| (m.name, m.attempt)).unwrap_or_default();
                    (c.id, (pod, name, c.state, attempt))
                })
                .collect()
        })
    }

    /// Running containers of pod `name` (CONTAINER_RUNNING = 1): their ids.
    pub fn running_ids(&self, name: &str) -> Vec<String> {
        self.containers()
            .into_iter()
            .filter(|(_, (p, _, st, _))| p == name && *st == 1)
            .map(|(id, _)| id)
            .collect()
    }

    /// Sandboxes of this test's pods: (id, pod name).
    pub fn sandboxes(&self) -> Vec<(String, String)> {
        let client = self.bed.client();
        smol::block_on(async {
            let list = client.list_pod_sandbox(None).await.unwrap();
            list.items
                .into_iter()
                .filter_map(|s| {
                    let m = s.metadata.as_ref()?;
                    (m.namespace == self.ns).then(|| (s.id.clone(), m.name.clone()))
                })
                .collect()
        })
    }

    /// Removes this test's pods straight via CRI (what a reboot does to containers).
    pub fn force_remove_pods(&self) {
        remove_namespace_pods(&self.bed, &self.ns);
    }

    /// Unmounts what is left mounted below the test's directory (tmpfs volumes).
    pub fn unmount_leftovers(&self) {
        unmount_below(&self.dir);
    }

    /// A file a pod wrote into its output dir, waited for (empty if it never came).
    pub fn read_out(&self, pod: &str, file: &str, limit: Duration) -> String {
        read_nonempty(&self.out.join(pod).join(file), limit)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
        self.force_remove_pods();
        self.unmount_leftovers();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds a volume `cfg` of configMap `name` to `pod`, mounted at /etc/cfg in its first container.
pub fn mount_config_map(pod: &mut Value, name: &str) {
    pod["spec"]["volumes"]
        .as_array_mut()
        .expect("the test pod has a volume list")
        .push(json!({"name": "cfg", "configMap": {"name": name}}));
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .expect("the test pod has a mount list")
        .push(json!({"name": "cfg", "mountPath": "/etc/cfg"}));
}

/// Phase Running and condition Ready True.
pub fn ready(p: &Value) -> bool {
    let st = &p["status"];
    st["phase"] == "Running"
        && st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
