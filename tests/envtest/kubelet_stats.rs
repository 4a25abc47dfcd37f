//! Resource stats as metrics-server reads them: the real kubectl, as a scraper user the real
//! kube-apiserver's RBAC allows `get` on `nodes/stats` and `nodes/metrics` only (the rules
//! metrics-server's ClusterRole grants), straight to the node's kubelet port, as metrics-server
//! scrapes kubelets. Each request is authorized by SubjectAccessReview against that API
//! server. `kubectl get --raw /stats/summary` decodes into the kubelet's stats/v1alpha1 field
//! names (k8s.io/kubelet/pkg/apis/stats/v1alpha1 types.go, spelled out below, unknown names
//! refused) with the busybox pod and its container at non-zero memory; `/metrics/resource` and
//! `/metrics` pass `promtool check metrics`; the same user is refused `/pods` (subresource
//! proxy), and a user without rules is refused in the kubelet's words.
//!
//! Not through `/api/v1/nodes/NODE/proxy/...`: the API server proxies only to global unicast
//! node addresses (it answers "address not allowed" for loopback), and these tests keep their
//! traffic on loopback.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::agent::Agent;
use super::apiserver::client::TestClient;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::kubelet_api::{admin_kubectl, serve_kubelet_api, Kubectl, ServedApi};
use super::real::RealCluster;
use super::scenarios::{pod, pod_path, poll, wait_ready, OnFailure, LIMIT};

// stats/v1alpha1, as upstream names the JSON fields (all optional there but the names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Summary {
    node: NodeStats,
    pods: Vec<PodStats>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeStats {
    #[serde(rename = "nodeName")]
    node_name: String,
    #[serde(rename = "systemContainers", default)]
    system_containers: Vec<ContainerStats>,
    #[serde(rename = "startTime")]
    start_time: String,
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
    network: Option<NetworkStats>,
    fs: Option<FsStats>,
    runtime: Option<RuntimeStats>,
    rlimit: Option<RlimitStats>,
    swap: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeStats {
    #[serde(rename = "imageFs")]
    image_fs: Option<FsStats>,
    #[serde(rename = "containerFs")]
    container_fs: Option<FsStats>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RlimitStats {
    time: String,
    maxpid: Option<i64>,
    curproc: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodReference {
    name: String,
    namespace: String,
    uid: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PodStats {
    #[serde(rename = "podRef")]
    pod_ref: PodReference,
    #[serde(rename = "startTime")]
    start_time: String,
    containers: Vec<ContainerStats>,
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
    network: Option<NetworkStats>,
    volume: Option<serde_json::Value>,
    #[serde(rename = "ephemeral-storage")]
    ephemeral_storage: Option<FsStats>,
    process_stats: Option<ProcessStats>,
    swap: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessStats {
    process_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerStats {
    name: String,
    #[serde(rename = "startTime")]
    start_time: String,
    cpu: Option<CpuStats>,
    memory: Option<MemoryStats>,
    accelerators: Option<serde_json::Value>,
    rootfs: Option<FsStats>,
    logs: Option<FsStats>,
    #[serde(rename = "userDefinedMetrics")]
    user_defined_metrics: Option<serde_json::Value>,
    swap: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuStats {
    time: String,
    #[serde(rename = "usageNanoCores")]
    usage_nano_cores: Option<u64>,
    #[serde(rename = "usageCoreNanoSeconds")]
    usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryStats {
    time: String,
    #[serde(rename = "availableBytes")]
    available_bytes: Option<u64>,
    #[serde(rename = "usageBytes")]
    usage_bytes: Option<u64>,
    #[serde(rename = "workingSetBytes")]
    working_set_bytes: Option<u64>,
    #[serde(rename = "rssBytes")]
    rss_bytes: Option<u64>,
    #[serde(rename = "pageFaults")]
    page_faults: Option<u64>,
    #[serde(rename = "majorPageFaults")]
    major_page_faults: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkStats {
    time: String,
    name: Option<String>,
    #[serde(rename = "rxBytes")]
    rx_bytes: Option<u64>,
    #[serde(rename = "rxErrors")]
    rx_errors: Option<u64>,
    #[serde(rename = "txBytes")]
    tx_bytes: Option<u64>,
    #[serde(rename = "txErrors")]
    tx_errors: Option<u64>,
    #[serde(default)]
    interfaces: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FsStats {
    time: String,
    #[serde(rename = "availableBytes")]
    available_bytes: Option<u64>,
    #[serde(rename = "capacityBytes")]
    capacity_bytes: Option<u64>,
    #[serde(rename = "usedBytes")]
    used_bytes: Option<u64>,
    #[serde(rename = "inodesFree")]
    inodes_free: Option<u64>,
    inodes: Option<u64>,
    #[serde(rename = "inodesUsed")]
    inodes_used: Option<u64>,
}

/// promtool (Debian's `prometheus` package); under CI=true its absence fails the test.
fn promtool() -> Option<PathBuf> {
    let p = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "promtool is missing: {} does not exist (apt-get install prometheus, or set PROMTOOL); \
         the metrics end-to-end test needs it",
        p.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "promtool not found at {}: `promtool check metrics` skipped outside CI",
        p.display()
    );
    None
}

fn promtool_check(promtool: &PathBuf, what: &str, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics on {what}: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn kubectl_stats_and_metrics(c: &RealCluster, bed: Bed) {
    let promtool = promtool();
    let mut a = Agent::new(bed, c, "kstats");
    let _dump = OnFailure::new(c, &a);
    let ServedApi { port, ns, .. } = serve_kubelet_api(c, &mut a);
    let admin = admin_kubectl(c, &a, &ns);
    // The scraper: a user with metrics-server's rules on nodes, and a kubeconfig pointing at
    // the kubelet port.
    let role = format!("tinylet-envtest:{ns}:scraper");
    c.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [{"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"],
                       "verbs": ["get"]}],
        }),
    )
    .unwrap();
    c.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "metrics-scraper"}],
        }),
    )
    .unwrap();
    let scraper = c.pki().client_cert("metrics-scraper", &[]).unwrap();
    let kubeconfig = a.dir.join("scraper.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: s\nclusters:\n- name: node\n  \
             cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
             contexts:\n- name: s\n  context: {{cluster: node, user: s}}\nusers:\n- name: s\n  \
             user:\n    client-certificate: {}\n    client-key: {}\n",
            c.ca_cert_path().display(),
            scraper.cert_path.display(),
            scraper.key_path.display()
        ),
    )
    .unwrap();
    let k = Kubectl {
        kubeconfig,
        ..admin_kubectl(c, &a, &ns)
    };
    // Some memory the container really touches: 4 MiB held in a shell variable.
    let script = "x=$(head -c 4194304 /dev/zero | tr '\\0' a); echo ${#x} > /out/len";
    c.create(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod(&a, &ns, "busy", script),
    )
    .unwrap();
    wait_ready(c, &ns, "busy");

    let raw = |path: &str| k.ok(&["get", "--raw", path]);
    // The first scrape is the CPU baseline; a later one (≥ 1 s) has the node's usageNanoCores.
    let summary = poll(LIMIT, || {
        let text = raw("/stats/summary");
        let s: Summary = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("summary in the upstream field names: {e}\n{text}"));
        let pod = s.pods.iter().find(|p| p.pod_ref.name == "busy")?;
        let c = pod.containers.iter().find(|c| c.name == "main")?;
        let mem = c.memory.as_ref()?.working_set_bytes?;
        let rate = s.node.cpu.as_ref()?.usage_nano_cores;
        (mem > 0 && rate.is_some()).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the summary lists busy/main with memory: {}",
            raw("/stats/summary")
        )
    });
    assert_eq!(summary.node.node_name, a.node);
    let node_mem = summary.node.memory.as_ref().expect("node memory");
    assert!(node_mem.working_set_bytes.unwrap_or(0) > 0, "{node_mem:?}");
    assert!(
        summary
            .node
            .cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds)
            .unwrap_or(0)
            > 0
    );
    let fs = summary.node.fs.as_ref().expect("node fs");
    assert!(
        fs.capacity_bytes.unwrap_or(0) > 0 && fs.available_bytes.is_some(),
        "{fs:?}"
    );
    // Only this node's pods: the shared runtime's other sandboxes are not reported.
    assert!(
        summary.pods.iter().all(|p| p.pod_ref.namespace == ns),
        "{:?}",
        summary.pods
    );
    let pod = summary
        .pods
        .iter()
        .find(|p| p.pod_ref.name == "busy")
        .unwrap();
    let uid = admin.ok(&["get", "pod", "busy", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(pod.pod_ref.uid, uid);
    let main = pod.containers.iter().find(|c| c.name == "main").unwrap();
    let mem = main.memory.as_ref().unwrap();
    assert!(mem.working_set_bytes.unwrap_or(0) > 0, "{mem:?}");
    assert!(mem.usage_bytes.unwrap_or(0) > 0, "{mem:?}");
    assert!(
        main.cpu
            .as_ref()
            .and_then(|c| c.usage_core_nano_seconds)
            .unwrap_or(0)
            > 0
    );
    assert!(
        pod.memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .unwrap_or(0)
            > 0,
        "{pod:?}"
    );
    assert!(main.logs.is_some() && main.rootfs.is_some(), "{main:?}");

    let resource = raw("/metrics/resource");
    let line = |name: &str, labels: &str| -> Option<f64> {
        resource.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(labels)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    let labels = format!("{{container=\"main\",namespace=\"{ns}\",pod=\"busy\"}}");
    assert!(
        line("container_memory_working_set_bytes", &labels).unwrap_or(0.0) > 0.0,
        "{resource}"
    );
    assert!(
        line("container_cpu_usage_seconds_total", &labels).is_some(),
        "{resource}"
    );
    assert!(
        line("container_start_time_seconds", &labels).unwrap_or(0.0) > 0.0,
        "{resource}"
    );
    assert!(
        line("node_memory_working_set_bytes", " ").unwrap_or(0.0) > 0.0,
        "{resource}"
    );
    assert!(
        line("node_cpu_usage_seconds_total", " ").unwrap_or(0.0) > 0.0,
        "{resource}"
    );
    let pod_labels = format!("{{namespace=\"{ns}\",pod=\"busy\"}}");
    assert!(
        line("pod_memory_working_set_bytes", &pod_labels).unwrap_or(0.0) > 0.0,
        "{resource}"
    );
    assert_eq!(line("scrape_error", " "), Some(0.0), "{resource}");
    let own = raw("/metrics");
    assert!(own.lines().any(|l| l.starts_with("tinylet_pods ")), "{own}");
    assert!(
        own.lines()
            .any(|l| l.starts_with("tinylet_kubelet_api_responses_total{code=\"200\"}")),
        "{own}"
    );
    if let Some(p) = &promtool {
        promtool_check(p, "/metrics/resource", &resource);
        promtool_check(p, "/metrics", &own);
    }

    // The kubelet's SubjectAccessReview mapping: /stats* → stats, /metrics* → metrics, the
    // rest → proxy, which the scraper may not use.
    let (ok, _, err) = k.run(&["get", "--raw", "/pods"]);
    assert!(!ok && err.contains("Forbidden"), "{err}");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let nobody = c.pki().client_cert("nobody", &[]).unwrap();
    for (path, sub) in [
        ("/stats/summary", "stats"),
        ("/metrics/resource", "metrics"),
        ("/metrics", "metrics"),
    ] {
        let mut t = TestClient::tls(addr, &c.ca_pem(), Some(&nobody))
            .unwrap()
            .with_timeout(Duration::from_secs(15));
        let r = t.request("GET", path, None, b"").unwrap();
        assert_eq!(
            (r.code, String::from_utf8_lossy(&r.body).trim()),
            (
                403,
                &*format!(
                    "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[{sub}])"
                )
            )
        );
    }

    let _ = c.delete(
        &format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{role}"),
        None,
    );
    let _ = c.delete(
        &format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}"),
        None,
    );
    c.delete(&pod_path(&ns, "busy"), None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "busy")).is_none()));
}

/// The rotated copies of `0.log` in a container's log directory.
fn rotated(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("0.log."))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The first line's counter of a `line N ...` log, checking every line is whole.
fn first_line_number(text: &str) -> u64 {
    let mut first = None;
    for l in text.lines() {
        if l == "last-line" {
            continue;
        }
        let n = l
            .strip_prefix("line ")
            .and_then(|r| r.split_once(' '))
            .filter(|(_, pad)| *pad == PAD)
            .and_then(|(n, _)| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("a whole log line: {l:?}"));
        first.get_or_insert(n);
    }
    first.unwrap_or_else(|| panic!("no lines in {text:?}"))
}

const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// Container log rotation as the kubelet does it (container_log_manager.go): a container
/// writing ~20 KB/s with `containerLogMaxSize: 32Ki` and `containerLogMaxFiles: 3` has its log
/// renamed to `0.log.<timestamp>` and reopened by the runtime, never more than 2 rotated files
/// kept; `kubectl logs` reads the current file (whole lines, the oldest ones rotated away),
/// and after a restart `kubectl logs -p` reads the previous instance's current file.
pub fn container_logs_rotate(c: &RealCluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "klogrot");
    let _dump = OnFailure::new(c, &a);
    let mut cfg = std::fs::read_to_string(&a.config).unwrap();
    cfg.push_str(
        "containerLogMaxSize: 32Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 3s\n",
    );
    std::fs::write(&a.config, cfg).unwrap();
    let ServedApi { ns, .. } = serve_kubelet_api(c, &mut a);
    let k = admin_kubectl(c, &a, &ns);
    let out_dir = a.out.join("chatty");
    std::fs::create_dir_all(&out_dir).unwrap();
    let script = format!(
        "trap 'exit 0' TERM; \
         if [ -e /out/ran ]; then echo second-run; while true; do sleep 0.2; done; fi; \
         touch /out/ran; i=0; p={PAD}; \
         while [ ! -e /out/stop ]; do i=$((i+1)); echo \"line $i $p\"; \
           if [ $((i % 20)) = 0 ]; then sleep 0.1; fi; done; \
         echo last-line; exit 1"
    );
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chatty", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
            }],
            "volumes": [{"name": "out", "hostPath": {"path": out_dir.display().to_string()}}],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    wait_ready(c, &ns, "chatty");
    let uid = k.ok(&["get", "pod", "chatty", "-o", "jsonpath={.metadata.uid}"]);
    let log_dir = a
        .dir
        .join("logs")
        .join(format!("{ns}_chatty_{uid}"))
        .join("main");

    // Rotations happen, and at most MaxFiles-1 = 2 rotated files are ever there.
    let mut seen = std::collections::BTreeSet::new();
    let enough = poll(LIMIT, || {
        let now = rotated(&log_dir);
        assert!(now.len() <= 2, "at most 2 rotated files: {now:?}");
        seen.extend(now);
        (seen.len() >= 3).then_some(())
    });
    assert!(
        enough.is_some(),
        "three rotations within {LIMIT:?}: {seen:?} in {}",
        log_dir.display()
    );
    let current = std::fs::metadata(log_dir.join("0.log")).map_or(0, |m| m.len());
    assert!(current < 1 << 20, "the current log stays small: {current}");
    // kubectl logs: the current file, whole lines, the first ones rotated away. Just after
    // a rotation the current file is new and may hold nothing yet: read until it has lines.
    let text = poll(LIMIT, || {
        let text = k.ok(&["logs", "chatty"]);
        (!text.is_empty()).then_some(text)
    })
    .expect("the current log file has lines");
    assert!(
        first_line_number(&text) > 1,
        "{}",
        &text[..text.len().min(300)]
    );

    // After a restart, -p reads the first instance's current file, up to its last line.
    std::fs::write(out_dir.join("stop"), b"").unwrap();
    let now = poll(LIMIT, || {
        let (ok, out, _) = k.run(&["logs", "chatty"]);
        (ok && out.contains("second-run")).then_some(out)
    })
    .expect("the restarted container logs its second run");
    assert_eq!(now, "second-run\n");
    let previous = k.ok(&["logs", "-p", "chatty"]);
    assert!(
        previous.ends_with("last-line\n"),
        "{}",
        &previous[previous.len().saturating_sub(300)..]
    );
    assert!(first_line_number(&previous) > 1);

    c.delete(&pod_path(&ns, "chatty"), None).unwrap();
    assert!(c.wait_until(LIMIT, &mut || c.get_opt(&pod_path(&ns, "chatty")).is_none()));
}
