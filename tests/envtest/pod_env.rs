//! What a pod sees of its container config, checked end to end against a real kube-apiserver
//! and the bed's containerd: envFrom, Service link variables, resourceFieldRef (env and
//! downwardAPI volume), subPathExpr refusals, and termination messages. Pods write what they
//! see into a hostPath under the agent's `out` dir; refusals and termination messages are read
//! from the pod status at the server. Every wait is bounded.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};

use tinylet::k8s::quantity::{parse_millis, parse_units};

use super::agent::Agent;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::scenarios::{join, pod_path, poll, OnFailure, LIMIT};

/// A pod bound to the agent's node, with no API access volume (none of these pods talks to the
/// API, and the fork's extra configMap stays out of the way), `/out` on the host and the
/// given containers; `restartPolicy` as given.
fn pod(a: &Agent, name: &str, restart: &str, containers: Value, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 2,
            "containers": containers,
            "volumes": [
                {"name": "out", "hostPath": {"path": a.out.join(name).display().to_string(),
                                             "type": "DirectoryOrCreate"}},
            ],
        }
    });
    if let (Some(spec), Some(more)) = (p["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            if k == "volumes" {
                let vols = spec["volumes"].as_array_mut().unwrap();
                vols.extend(v.as_array().cloned().unwrap_or_default());
            } else {
                spec.insert(k.clone(), v.clone());
            }
        }
    }
    p
}

/// A busybox container running `script` (then sleeping until stopped when `linger`).
fn container(a: &Agent, name: &str, script: &str, linger: bool) -> Value {
    let script = if linger {
        format!("trap 'exit 0' TERM; {script}; sleep 3600 & wait")
    } else {
        script.to_string()
    };
    json!({
        "name": name, "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
    })
}

/// Writes the container's environment as it was given (the shell would drop names that are
/// not identifiers, such as `1st`) to /out/env, one `K=V` a line.
const DUMP_ENV: &str =
    "tr '\\0' '\\n' < /proc/1/environ > /out/env.tmp && mv /out/env.tmp /out/env";

/// `env` output as a map (one `K=V` a line; values here have no newlines).
fn env_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(c: &dyn Cluster, ns: &str, what: &str, obj: Value) -> Value {
    c.create(&format!("/api/v1/namespaces/{ns}/{what}"), obj)
        .unwrap_or_else(|e| panic!("create {what} in {ns}: {e:?}"))
}

/// The cluster IP the server gave a Service.
fn cluster_ip(c: &dyn Cluster, ns: &str, name: &str) -> String {
    let path = format!("/api/v1/namespaces/{ns}/services/{name}");
    poll(LIMIT, || {
        c.get_opt(&path)?["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("service {ns}/{name} has a cluster IP"))
}

/// envFrom, Service links and resourceFieldRef in one pod, and a second pod without links.
///
/// Upstream rules checked (kubelet `makeEnvironmentVariables`, `getServiceEnvVarMap`,
/// `pkg/kubelet/envvars`, `ExtractContainerResourceValue`, `MergeContainerResourceLimits`):
/// - envFrom sources in order with their prefix; `env` entries override them and may use
///   `$(VAR)` of envFrom and Service variables; an optional missing source is skipped; keys
///   are checked with the relaxed name rule of 1.32 (`1st` is a valid name);
/// - `{SVC}_SERVICE_HOST/_PORT/_PORT_{NAME}` and the Docker link variables for the Services of
///   the pod's namespace with a cluster IP (headless skipped), and for `kubernetes` in
///   `default` even with `enableServiceLinks: false`; explicit env wins;
/// - resourceFieldRef: ceil(value / divisor), CPU default divisor 1 (whole cores), node
///   allocatable for a limit the named container does not set, in env and downwardAPI files.
pub fn env_and_resources(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "podenv");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    create(
        c,
        &ns,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "envcfg"},
               "data": {"MODE": "from-configmap", "LEVEL": "3", "1st": "digit"}}),
    );
    create(
        c,
        &ns,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "envsec"},
               "stringData": {"user": "admin", "MODE": "from-secret"}}),
    );
    create(
        c,
        &ns,
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis-primary"},
               "spec": {"ports": [{"name": "tcp", "port": 6379},
                                  {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    );
    create(
        c,
        &ns,
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless"},
               "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
    );
    let master_ip = cluster_ip(c, "default", "kubernetes");
    let redis_ip = cluster_ip(c, &ns, "redis-primary");
    let node = join(c, &mut a);
    let alloc = &node["status"]["allocatable"];
    let alloc_mem = parse_units(alloc["memory"].as_str().unwrap()).unwrap();
    let alloc_cpu_m = parse_millis(alloc["cpu"].as_str().unwrap()).unwrap();

    let mut main = container(
        &a,
        "main",
        &format!("{DUMP_ENV}; for f in mem_limit free_cpu_m; do cat /etc/info/$f > /out/$f; done"),
        true,
    );
    main["resources"] = json!({"limits": {"cpu": "500m", "memory": "64Mi"},
                               "requests": {"cpu": "250m", "memory": "32Mi"}});
    main["envFrom"] = json!([
        {"configMapRef": {"name": "envcfg"}},
        {"prefix": "S_", "secretRef": {"name": "envsec"}},
        {"configMapRef": {"name": "not-there", "optional": true}},
    ]);
    let field = |res: &str, container: Option<&str>, divisor: Option<&str>| {
        let mut r = json!({"resource": res});
        if let Some(c) = container {
            r["containerName"] = json!(c);
        }
        if let Some(d) = divisor {
            r["divisor"] = json!(d);
        }
        json!({"resourceFieldRef": r})
    };
    main["env"] = json!([
        {"name": "MODE", "value": "from-env"},
        {"name": "URL", "value": "$(S_user)@$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
        {"name": "REDIS_PRIMARY_SERVICE_PORT", "value": "explicit"},
        {"name": "CPU_LIMIT_M", "valueFrom": field("limits.cpu", None, Some("1m"))},
        {"name": "CPU_REQUEST", "valueFrom": field("requests.cpu", None, None)},
        {"name": "MEM_LIMIT_MI", "valueFrom": field("limits.memory", None, Some("1Mi"))},
        {"name": "MEM_REQUEST", "valueFrom": field("requests.memory", None, None)},
        {"name": "FREE_CPU", "valueFrom": field("limits.cpu", Some("free"), None)},
        {"name": "FREE_MEM", "valueFrom": field("limits.memory", Some("free"), None)},
    ]);
    main["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "info", "mountPath": "/etc/info"}));
    let free = container(&a, "free", "true", true);
    let info = json!({"name": "info", "downwardAPI": {"items": [
        {"path": "mem_limit", "resourceFieldRef":
            {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "free_cpu_m", "resourceFieldRef":
            {"containerName": "free", "resource": "limits.cpu", "divisor": "1m"}},
    ]}});
    let p = pod(
        &a,
        "env",
        "Always",
        json!([main, free]),
        json!({"volumes": [info]}),
    );
    create(c, &ns, "pods", p);
    let nolinks = pod(
        &a,
        "nolinks",
        "Always",
        json!([container(&a, "main", DUMP_ENV, true)]),
        json!({"enableServiceLinks": false}),
    );
    create(c, &ns, "pods", nolinks);

    let env = env_map(&a.read_out("env", "env", LIMIT));
    let get = |k: &str| env.get(k).map(String::as_str);
    // envFrom, prefix, order and overrides.
    assert_eq!(get("MODE"), Some("from-env"), "{env:?}");
    assert_eq!(get("LEVEL"), Some("3"), "{env:?}");
    assert_eq!(get("1st"), Some("digit"), "{env:?}");
    assert_eq!(get("S_user"), Some("admin"), "{env:?}");
    assert_eq!(get("S_MODE"), Some("from-secret"), "{env:?}");
    assert_eq!(
        get("URL"),
        Some(format!("admin@{master_ip}:443").as_str()),
        "{env:?}"
    );
    // Service links: the master service and the namespace's own; headless skipped.
    assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some(master_ip.as_str()));
    assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
    assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    let master_url = format!("tcp://{master_ip}:443");
    assert_eq!(get("KUBERNETES_PORT"), Some(master_url.as_str()));
    assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some(master_url.as_str()));
    assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
    assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
    assert_eq!(
        get("KUBERNETES_PORT_443_TCP_ADDR"),
        Some(master_ip.as_str())
    );
    assert_eq!(get("REDIS_PRIMARY_SERVICE_HOST"), Some(redis_ip.as_str()));
    assert_eq!(
        get("REDIS_PRIMARY_SERVICE_PORT"),
        Some("explicit"),
        "explicit env wins"
    );
    assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_DNS"), Some("53"));
    assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_TCP"), Some("6379"));
    let redis_url = format!("tcp://{redis_ip}:6379");
    assert_eq!(get("REDIS_PRIMARY_PORT"), Some(redis_url.as_str()));
    let dns_url = format!("udp://{redis_ip}:53");
    assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP"), Some(dns_url.as_str()));
    assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP_PROTO"), Some("udp"));
    assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP_PORT"), Some("53"));
    assert_eq!(
        get("REDIS_PRIMARY_PORT_53_UDP_ADDR"),
        Some(redis_ip.as_str())
    );
    assert!(
        !env.keys().any(|k| k.starts_with("HEADLESS_")),
        "headless service skipped: {env:?}"
    );
    // resourceFieldRef in env: divisor, rounding up, node allocatable for unset limits.
    assert_eq!(get("CPU_LIMIT_M"), Some("500"));
    assert_eq!(get("CPU_REQUEST"), Some("1"));
    assert_eq!(get("MEM_LIMIT_MI"), Some("64"));
    assert_eq!(get("MEM_REQUEST"), Some((32u64 << 20).to_string().as_str()));
    assert_eq!(
        get("FREE_CPU"),
        Some(alloc_cpu_m.div_ceil(1000).to_string().as_str())
    );
    assert_eq!(get("FREE_MEM"), Some(alloc_mem.to_string().as_str()));
    // ... and in downwardAPI volume files.
    assert_eq!(a.read_out("env", "mem_limit", LIMIT), "64");
    assert_eq!(
        a.read_out("env", "free_cpu_m", LIMIT),
        alloc_cpu_m.to_string()
    );

    // enableServiceLinks: false keeps the master service's variables only.
    let env = env_map(&a.read_out("nolinks", "env", LIMIT));
    assert_eq!(
        env.get("KUBERNETES_SERVICE_HOST"),
        Some(&master_ip),
        "{env:?}"
    );
    assert!(!env.contains_key("REDIS_PRIMARY_SERVICE_HOST"), "{env:?}");
}

/// The waiting state of a pod's first container at the server, once it has a reason.
fn waiting(c: &dyn Cluster, ns: &str, name: &str, reason: &str) -> Value {
    let path = pod_path(ns, name);
    poll(LIMIT, || {
        let p = c.get_opt(&path)?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == reason).then_some(w)
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {ns}/{name} waits with {reason}; last seen: {}",
            c.get_opt(&path).unwrap_or_default()
        )
    })
}

/// Config errors refuse the container with CreateContainerConfigError, naming the culprit.
///
/// Upstream: kubelet `makeMounts` refuses a subPathExpr that expands to an absolute path
/// ("error SubPath `/tmp` must not be an absolute path") or contains `..` ("unable to
/// provision SubPath"); conformance "should fail substituting values in a volume subpath
/// with absolute path / with backticks" (the latter's value is `..`) wait for
/// CreateContainerConfigError. A missing envFrom source that is not optional fails the
/// container's config as well.
pub fn config_errors(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "cfgerr");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);
    let sub = |name: &str, value: &str| {
        let mut m = container(&a, "main", "true", true);
        m["env"] = json!([{"name": "POD_NAME", "value": value}]);
        m["volumeMounts"].as_array_mut().unwrap().push(
            json!({"name": "workdir1", "mountPath": "/logscontainer", "subPathExpr": "$(POD_NAME)"}),
        );
        pod(
            &a,
            name,
            "Never",
            json!([m]),
            json!({"volumes": [{"name": "workdir1", "emptyDir": {}}]}),
        )
    };
    create(c, &ns, "pods", sub("subpath-abs", "/tmp"));
    create(c, &ns, "pods", sub("subpath-up", ".."));
    let mut m = container(&a, "main", "true", true);
    m["envFrom"] = json!([{"configMapRef": {"name": "absent"}}]);
    create(
        c,
        &ns,
        "pods",
        pod(&a, "envfrom-missing", "Never", json!([m]), json!({})),
    );

    let w = waiting(c, &ns, "subpath-abs", "CreateContainerConfigError");
    let msg = w["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("volumeMount \"workdir1\"") && msg.contains("must not be an absolute path"),
        "{w}"
    );
    let w = waiting(c, &ns, "subpath-up", "CreateContainerConfigError");
    let msg = w["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("volumeMount \"workdir1\"") && msg.contains("must not contain '..'"),
        "{w}"
    );
    let w = waiting(c, &ns, "envfrom-missing", "CreateContainerConfigError");
    let msg = w["message"].as_str().unwrap_or_default();
    assert!(msg.contains("configMap \"absent\""), "{w}");
    // Refused before the runtime: no container exists for any of them.
    let made: Vec<_> = a.containers(&ns).into_iter().map(|(_, p, ..)| p).collect();
    assert!(made.is_empty(), "no containers created: {made:?}");
}

/// The terminated state of a pod's first container at the server, once it has one.
fn terminated(c: &dyn Cluster, ns: &str, name: &str) -> Value {
    let path = pod_path(ns, name);
    poll(LIMIT, || {
        let p = c.get_opt(&path)?;
        let t = p["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        t.is_object().then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "pod {ns}/{name} terminated; last seen: {}",
            c.get_opt(&path).unwrap_or_default()
        )
    })
}

/// Termination messages reach `state.terminated.message`.
///
/// Upstream (kuberuntime `makeMounts`/`getTerminationMessage`, conformance "Container Runtime
/// blackbox test on terminated container"): a non-root container writes a custom path and
/// its content is the message ("DONE"); with FallbackToLogsOnError a failed container with an
/// empty file reports its log's tail ("DONE" from `echo -n DONE; false`); a successful one
/// does not fall back.
pub fn termination_messages(c: &dyn Cluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "termmsg");
    let _dump = OnFailure::new(c, &a);
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    join(c, &mut a);

    let mut file = container(
        &a,
        "main",
        "/bin/echo -n DONE > /dev/termination-custom-log",
        false,
    );
    file["terminationMessagePath"] = json!("/dev/termination-custom-log");
    file["securityContext"] = json!({"runAsUser": 1000});
    create(
        c,
        &ns,
        "pods",
        pod(&a, "term-file", "Never", json!([file]), json!({})),
    );

    let mut fallback = container(&a, "main", "/bin/echo -n DONE; /bin/false", false);
    fallback["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    create(
        c,
        &ns,
        "pods",
        pod(&a, "term-fallback", "Never", json!([fallback]), json!({})),
    );

    let mut ok = container(&a, "main", "/bin/echo -n LOG", false);
    ok["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    create(
        c,
        &ns,
        "pods",
        pod(&a, "term-ok", "Never", json!([ok]), json!({})),
    );

    let t = terminated(c, &ns, "term-file");
    assert_eq!(t["exitCode"], 0, "{t}");
    assert_eq!(t["message"], "DONE", "{t}");
    let t = terminated(c, &ns, "term-fallback");
    assert_eq!(t["exitCode"], 1, "{t}");
    assert_eq!(t["message"], "DONE", "{t}");
    let t = terminated(c, &ns, "term-ok");
    assert_eq!(t["exitCode"], 0, "{t}");
    assert!(t.get("message").is_none(), "no fallback on success: {t}");
}
