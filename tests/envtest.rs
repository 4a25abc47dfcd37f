//! The envtest-style suite: the same node scenarios (TLS bootstrap, pod lifecycle on the real
//! containerd, NodeRestriction, API outage) against the project's API test server in every
//! `cargo test`, and against a real kube-apiserver + etcd when environment variables name
//! their binaries (tests/envtest/README.md). The scenarios need the containerd test bed and
//! skip without it; the real-cluster tests also skip, with one line saying how to enable
//! them, when no binaries are named. One agent at a time (the shared agent lock).

#[path = "apiserver/mod.rs"]
mod apiserver;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/podsync.rs"]
mod podsync;

#[path = "envtest/agent.rs"]
mod agent;
#[path = "envtest/cluster.rs"]
mod cluster;
#[path = "envtest/csi.rs"]
mod csi;
#[path = "envtest/ephemeral.rs"]
mod ephemeral;
#[path = "envtest/eviction.rs"]
mod eviction;
#[path = "envtest/kubelet_api.rs"]
mod kubelet_api;
#[path = "envtest/kubelet_exec.rs"]
mod kubelet_exec;
#[path = "envtest/kubelet_stats.rs"]
mod kubelet_stats;
#[path = "envtest/pod_cgroups.rs"]
mod pod_cgroups;
#[path = "envtest/pod_env.rs"]
mod pod_env;
#[path = "envtest/pod_events.rs"]
mod pod_events;
#[path = "envtest/pod_status.rs"]
mod pod_status;
#[path = "envtest/real.rs"]
mod real;
#[path = "envtest/scenarios.rs"]
mod scenarios;
#[path = "envtest/serving_cert.rs"]
mod serving_cert;
#[path = "envtest/teardown.rs"]
mod teardown;
#[path = "envtest/volume_updates.rs"]
mod volume_updates;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cluster::{Cluster, ProjectCluster};
use cri_bed::Bed;
use real::{Assets, LaunchError, Plan, PlanFiles, RealCluster};

/// The API outage of scenario (d).
const OUTAGE: Duration = Duration::from_secs(20);

fn skip(line: &str) {
    // Straight to the stderr handle: libtest's capture would hide eprintln! on a pass.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The bed and a project server, or None (skip line printed).
fn project(test: &str) -> Option<(Bed, ProjectCluster)> {
    let bed = Bed::get(test)?;
    Some((bed, ProjectCluster::start()))
}

/// One real control plane at a time: four etcd + kube-apiserver pairs at once would only
/// wait for the agent lock while loading a small machine.
static ONE_CONTROL_PLANE: Mutex<()> = Mutex::new(());

/// The bed and a started real control plane (with the guard that serializes them), or None
/// (skip line printed).
fn real(test: &str) -> Option<(MutexGuard<'static, ()>, Bed, RealCluster)> {
    let Some(assets) = Assets::from_env() else {
        assert!(
            !Assets::requested(),
            "{test}: TEST_ASSET_KUBE_APISERVER/TEST_ASSET_ETCD or KUBEBUILDER_ASSETS is set but \
             does not name executable kube-apiserver and etcd files"
        );
        skip(&format!(
            "SKIPPED (no kube-apiserver/etcd): {test} — {}",
            real::HOW_TO_ENABLE
        ));
        return None;
    };
    let bed = Bed::get(test)?;
    let serial = ONE_CONTROL_PLANE.lock().unwrap_or_else(|p| p.into_inner());
    match RealCluster::start(&assets) {
        Ok(c) => Some((serial, bed, c)),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn project_bootstrap_registers_and_renews_lease() {
    let Some((bed, c)) = project("envtest_project_bootstrap") else {
        return;
    };
    scenarios::bootstrap(&c, bed);
}

#[test]
fn real_bootstrap_registers_and_renews_lease() {
    let Some((_serial, bed, c)) = real("envtest_real_bootstrap") else {
        return;
    };
    scenarios::bootstrap(&c, bed);
}

#[test]
fn project_pod_lifecycle_with_config_and_token_volumes() {
    let Some((bed, c)) = project("envtest_project_pod_lifecycle") else {
        return;
    };
    scenarios::pod_lifecycle(&c, bed);
}

#[test]
fn real_pod_lifecycle_with_config_and_token_volumes() {
    let Some((_serial, bed, c)) = real("envtest_real_pod_lifecycle") else {
        return;
    };
    scenarios::pod_lifecycle(&c, bed);
}

#[test]
fn project_node_restriction_refuses_other_nodes() {
    let Some((bed, c)) = project("envtest_project_node_restriction") else {
        return;
    };
    scenarios::node_restriction(&c, bed);
}

#[test]
fn real_node_restriction_refuses_other_nodes() {
    let Some((_serial, bed, c)) = real("envtest_real_node_restriction") else {
        return;
    };
    scenarios::node_restriction(&c, bed);
}

#[test]
fn project_outage_keeps_pod_and_lease_resumes() {
    let Some((bed, c)) = project("envtest_project_outage") else {
        return;
    };
    scenarios::outage(&c, bed, OUTAGE);
}

#[test]
fn real_outage_keeps_pod_and_lease_resumes() {
    let Some((_serial, bed, c)) = real("envtest_real_outage") else {
        return;
    };
    scenarios::outage(&c, bed, OUTAGE);
}

#[test]
fn real_deleted_pods_leave_nothing_behind() {
    let Some((_serial, bed, c)) = real("envtest_real_teardown") else {
        return;
    };
    teardown::deleted_pods_leave_nothing(&c, bed);
}

#[test]
fn real_pods_ended_while_down_and_orphans_are_cleaned() {
    let Some((_serial, bed, c)) = real("envtest_real_orphans") else {
        return;
    };
    teardown::ended_while_down_and_orphans(&c, bed);
}

#[test]
fn real_configmap_secret_and_label_updates_reach_running_pods() {
    let Some((_serial, bed, c)) = real("envtest_real_volume_updates") else {
        return;
    };
    volume_updates::updates_reach_running_pods(&c, bed);
}

#[test]
fn real_csi_volumes_from_the_hostpath_driver() {
    let Some((_serial, bed, c)) = real("envtest_real_csi") else {
        return;
    };
    csi::volumes_from_the_hostpath_driver(&c, bed);
}

#[test]
fn real_csi_claim_volume_back_after_an_offline_reboot() {
    let Some((_serial, bed, c)) = real("envtest_real_csi_offline_reboot") else {
        return;
    };
    csi::claim_volume_back_after_an_offline_reboot(&c, bed);
}

#[test]
fn real_ephemeral_container_runs_in_the_pod_and_is_reported() {
    let Some((_serial, bed, c)) = real("envtest_real_ephemeral") else {
        return;
    };
    ephemeral::ephemeral_container_runs_in_the_pod(&c, bed);
}

#[test]
fn real_pod_and_qos_cgroups_get_the_kubelet_values() {
    let Some((_serial, bed, c)) = real("envtest_real_pod_cgroups") else {
        return;
    };
    pod_cgroups::pod_cgroups_are_configured(&c, bed);
}

#[test]
fn real_memory_pressure_evicts_api_pods_not_static_ones() {
    let Some((_serial, bed, c)) = real("envtest_real_eviction") else {
        return;
    };
    eviction::memory_pressure_evicts_api_pods_not_static_ones(&c, bed);
}

// ---- what pods see of their container config (real control plane only) ----

#[test]
fn real_pod_env_from_service_links_and_resource_fields() {
    let Some((_serial, bed, c)) = real("envtest_real_pod_env") else {
        return;
    };
    pod_env::env_and_resources(&c, bed);
}

#[test]
fn real_pod_config_errors_are_create_container_config_errors() {
    let Some((_serial, bed, c)) = real("envtest_real_pod_config_errors") else {
        return;
    };
    pod_env::config_errors(&c, bed);
}

#[test]
fn real_pod_termination_messages() {
    let Some((_serial, bed, c)) = real("envtest_real_pod_termination") else {
        return;
    };
    pod_env::termination_messages(&c, bed);
}

#[test]
fn real_crash_loop_is_one_backoff_event_with_a_growing_count() {
    let Some((_serial, bed, c)) = real("envtest_real_crash_loop") else {
        return;
    };
    pod_events::crash_loop(&c, bed);
}

#[test]
fn real_liveness_failure_events_say_which_probe_and_why() {
    let Some((_serial, bed, c)) = real("envtest_real_liveness_events") else {
        return;
    };
    pod_events::liveness_failure(&c, bed);
}

#[test]
fn real_waiting_reasons_follow_the_kubelet() {
    let Some((_serial, bed, c)) = real("envtest_real_waiting_reasons") else {
        return;
    };
    pod_events::waiting_reasons(&c, bed);
}

// ---- pod and node status as the kubelet reports it (real control plane only) ----

#[test]
fn real_pod_status_host_ips() {
    let Some((_serial, bed, c)) = real("envtest_real_host_ips") else {
        return;
    };
    pod_status::host_ips(&c, bed);
}

#[test]
fn real_node_hostname_address_is_the_override() {
    let Some((_serial, bed, c)) = real("envtest_real_hostname_address") else {
        return;
    };
    pod_status::hostname_address(&c, bed);
}

#[test]
fn real_status_boot_complete_without_static_pods() {
    let Some((_serial, bed, c)) = real("envtest_real_boot_without_static_pods") else {
        return;
    };
    pod_status::status_boot_without_static_pods(&c, bed);
}

#[test]
fn real_init_container_status() {
    let Some((_serial, bed, c)) = real("envtest_real_init_container_status") else {
        return;
    };
    pod_status::init_container_status(&c, bed);
}

#[test]
fn real_active_deadline_fails_the_pod() {
    let Some((_serial, bed, c)) = real("envtest_real_active_deadline") else {
        return;
    };
    pod_status::active_deadline(&c, bed);
}

#[test]
fn real_mirror_pod_status_and_recreation() {
    let Some((_serial, bed, c)) = real("envtest_real_mirror_pods") else {
        return;
    };
    pod_status::mirror_pods(&c, bed);
}

// ---- the launcher's own checks (no binaries needed) ----

/// A fresh temp dir for one self-test, removed when the guard drops (also on panic).
fn scratch(tag: &str) -> cri_bed::Scratch {
    let d = std::env::temp_dir().join(format!("tinylet-envtest-self-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    cri_bed::Scratch(d)
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn assets_are_found_by_pair_or_by_directory() {
    let guard = scratch("assets");
    let d = &guard.0;
    let api = d.join("kube-apiserver");
    let etcd = d.join("etcd");
    assert_eq!(
        Assets::resolve(Some(api.clone().into()), Some(etcd.clone().into()), None),
        None,
        "missing files are no assets"
    );
    write_script(&api, "exit 0");
    write_script(&etcd, "exit 0");
    let want = Assets {
        kube_apiserver: api.clone(),
        etcd: etcd.clone(),
    };
    assert_eq!(
        Assets::resolve(Some(api.clone().into()), Some(etcd.clone().into()), None),
        Some(want.clone())
    );
    assert_eq!(
        Assets::resolve(None, None, Some(d.clone().into_os_string())),
        Some(want.clone())
    );
    // Half a pair falls back to the directory.
    assert_eq!(
        Assets::resolve(
            Some(api.clone().into()),
            None,
            Some(d.clone().into_os_string())
        ),
        Some(want)
    );
    assert_eq!(
        Assets::resolve(Some("".into()), Some("".into()), Some("".into())),
        None
    );
    // Not executable: not an asset.
    std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        Assets::resolve(None, None, Some(d.clone().into_os_string())),
        None
    );
}

#[test]
fn plan_has_the_documented_flags() {
    let d = Path::new("/tmp/x");
    let plan = Plan::new(
        &PlanFiles {
            dir: d,
            ca_cert: &d.join("ca.crt"),
            serving_cert: &d.join("s.crt"),
            serving_key: &d.join("s.key"),
            sa_key: &d.join("sa.key"),
            sa_pub: &d.join("sa.pub"),
        },
        [40001, 40002, 40003],
    );
    for f in [
        "--etcd-servers=http://127.0.0.1:40001",
        "--secure-port=40003",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--tls-cert-file=/tmp/x/s.crt",
        "--tls-private-key-file=/tmp/x/s.key",
        "--client-ca-file=/tmp/x/ca.crt",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--service-account-key-file=/tmp/x/sa.pub",
        "--service-account-signing-key-file=/tmp/x/sa.key",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        "--kubelet-client-certificate=/tmp/x/kubelet-client.crt",
        "--kubelet-client-key=/tmp/x/kubelet-client.key",
        "--kubelet-certificate-authority=/tmp/x/ca.crt",
        "--kubelet-preferred-address-types=Hostname",
    ] {
        assert!(
            plan.kube_apiserver.iter().any(|a| a == f),
            "{f} in {:?}",
            plan.kube_apiserver
        );
    }
    let issuer = plan
        .kube_apiserver
        .iter()
        .find_map(|a| a.strip_prefix("--service-account-issuer="))
        .unwrap();
    assert!(plan
        .kube_apiserver
        .contains(&format!("--api-audiences={issuer}")));
    for f in [
        "--data-dir=/tmp/x/etcd-data",
        "--listen-client-urls=http://127.0.0.1:40001",
        "--advertise-client-urls=http://127.0.0.1:40001",
        "--listen-peer-urls=http://127.0.0.1:40002",
        "--initial-advertise-peer-urls=http://127.0.0.1:40002",
        "--initial-cluster=envtest=http://127.0.0.1:40002",
    ] {
        assert!(plan.etcd.iter().any(|a| a == f), "{f} in {:?}", plan.etcd);
    }
    // Nothing but loopback.
    for a in plan.etcd.iter().chain(&plan.kube_apiserver) {
        assert!(
            !a.contains("//0.0.0.0") && !a.contains("=0.0.0.0") && !a.contains("localhost:"),
            "{a}"
        );
    }
}

/// A daemon that dies at once: the launch fails with its log, kills what it started and
/// leaves no temp dir behind.
#[test]
fn launch_failure_reports_the_log_and_cleans_up() {
    let guard = scratch("launch");
    let d = &guard.0;
    let etcd = d.join("etcd");
    let api = d.join("kube-apiserver");
    write_script(&etcd, "echo \"fake dying etcd $*\"; exit 3");
    write_script(&api, "echo fake apiserver; exit 4");
    let err = RealCluster::start(&Assets {
        kube_apiserver: api,
        etcd,
    })
    .err()
    .expect("a dead etcd is a launch error");
    match &err {
        LaunchError::Daemon { name, what, log } => {
            assert_eq!(*name, "etcd");
            assert!(what.contains("exited"), "{what}");
            assert!(log.contains("--initial-cluster-state=new"), "{log}");
            assert!(
                log.contains("--listen-client-urls=http://127.0.0.1:"),
                "{log}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("fake dying etcd"), "{err}");
    assert_eq!(
        leftovers_logging("fake dying etcd"),
        Vec::<String>::new(),
        "temp dir removed"
    );
}

/// A healthy etcd and a kube-apiserver that dies at once: the launch waits for etcd's
/// /health, reports the API server's exit with its log, kills the still-running etcd and
/// removes the temp dir. The fake etcd is a few lines of python3 (skipped without it).
#[test]
fn apiserver_exit_is_reported_and_healthy_etcd_killed() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        skip("SKIPPED (no python3 for the fake etcd): apiserver_exit_is_reported_and_healthy_etcd_killed");
        return;
    }
    let guard = scratch("apiexit");
    let d = &guard.0;
    let etcd = d.join("etcd");
    let api = d.join("kube-apiserver");
    let pidfile = d.join("etcd.pid");
    let py = [
        "import sys, http.server",
        "port = [a.rsplit(':', 1)[1] for a in sys.argv[1:] if a.startswith('--listen-client-urls=')][0]",
        "class H(http.server.BaseHTTPRequestHandler):",
        "    def do_GET(self):",
        "        b = b'{\"health\":\"true\",\"reason\":\"\"}'",
        "        self.send_response(200)",
        "        self.send_header('Content-Type', 'application/json')",
        "        self.send_header('Content-Length', str(len(b)))",
        "        self.end_headers()",
        "        self.wfile.write(b)",
        "    def log_message(self, *a):",
        "        pass",
        "print('fake etcd serving', flush=True)",
        "http.server.HTTPServer(('127.0.0.1', int(port)), H).serve_forever()",
        "",
    ]
    .join("\n");
    std::fs::write(d.join("etcd.py"), py).unwrap();
    write_script(
        &etcd,
        &format!(
            "echo $$ > {}; exec python3 {} \"$@\"",
            pidfile.display(),
            d.join("etcd.py").display()
        ),
    );
    write_script(&api, "echo \"fake apiserver $*\"; exit 4");
    let err = RealCluster::start(&Assets {
        kube_apiserver: api,
        etcd,
    })
    .err()
    .expect("a dead kube-apiserver is a launch error");
    match &err {
        LaunchError::Daemon { name, what, log } => {
            assert_eq!(*name, "kube-apiserver", "{err}");
            assert!(what.contains("exited"), "{what}");
            assert!(log.contains("--enable-bootstrap-token-auth=true"), "{log}");
            assert!(log.contains("--authorization-mode=Node,RBAC"), "{log}");
        }
        other => panic!("{other}"),
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(!alive, "etcd (pid {pid}) killed");
    assert_eq!(
        leftovers_logging("fake etcd serving"),
        Vec::<String>::new(),
        "temp dir removed"
    );
}

/// A real etcd (when `TEST_ASSET_ETCD` or `KUBEBUILDER_ASSETS` names one) accepts the
/// planned flags and answers /health on the picked port; a kube-apiserver that exits at once
/// is then reported, and etcd is stopped and its data dir removed.
#[test]
fn real_etcd_starts_with_the_planned_flags() {
    let Some(etcd) = Assets::etcd_from_env() else {
        skip("SKIPPED (no etcd): real_etcd_starts_with_the_planned_flags — set TEST_ASSET_ETCD");
        return;
    };
    // Alone: every real etcd's log names the member "envtest", so another control plane's
    // temp dir, alive while this one runs, would look like this one's leftover.
    let _serial = ONE_CONTROL_PLANE.lock().unwrap_or_else(|p| p.into_inner());
    let guard = scratch("realetcd");
    let api = guard.0.join("kube-apiserver");
    write_script(&api, "echo \"fake apiserver after a real etcd $*\"; exit 4");
    let err = RealCluster::start(&Assets {
        kube_apiserver: api,
        etcd,
    })
    .err()
    .expect("the fake kube-apiserver fails the launch");
    match &err {
        LaunchError::Daemon { name, log, .. } => {
            assert_eq!(*name, "kube-apiserver", "etcd came up first: {err}");
            assert!(log.contains("fake apiserver after a real etcd"), "{log}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        leftovers_logging("envtest"),
        Vec::<String>::new(),
        "temp dir (with etcd's data dir) removed"
    );
}

/// The launcher's API side (admin over TLS with a client certificate, bootstrap-token
/// Secret, CSR approval through `/approval`, openssl signing, certificate through `/status`)
/// run against the project server's socket, since no kube-apiserver is at hand.
#[test]
fn launcher_api_side_against_the_project_server() {
    use serde_json::json;
    use tinylet::node::x509::{pem_encode, GeneratedKey};
    let srv = apiserver::start(apiserver::Config {
        csr_approval: apiserver::CsrApproval::Manual,
        ..apiserver::Config::tls()
    })
    .unwrap();
    let admin = srv.admin_cert().unwrap();
    let c = RealCluster::attach(srv.addr(), srv.ca_pem(), &admin).unwrap();
    assert_eq!(c.url(), srv.url());

    c.ensure_namespace("envtest-attach").unwrap();
    c.ensure_namespace("envtest-attach").unwrap();
    let root = c
        .get("/api/v1/namespaces/envtest-attach/configmaps/kube-root-ca.crt")
        .unwrap();
    assert_eq!(root["data"]["ca.crt"], srv.ca_pem());
    assert!(c
        .get("/api/v1/namespaces/envtest-attach/serviceaccounts/default")
        .is_ok());
    let missing = c
        .get("/api/v1/namespaces/envtest-attach/configmaps/absent")
        .unwrap_err();
    assert_eq!(missing.code, 404, "{missing}");

    let token = c.bootstrap_token().unwrap();
    let (id, secret) = token.split_once('.').unwrap();
    let shape = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    assert!(shape(id, 6) && shape(secret, 16), "{token}");
    let s = c
        .get(&format!(
            "/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}"
        ))
        .unwrap();
    assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
    let field = |k: &str| -> String {
        match s["stringData"][k].as_str() {
            Some(v) => v.to_string(),
            None => String::from_utf8(
                apiserver::pki::base64_decode(s["data"][k].as_str().unwrap_or("")).unwrap(),
            )
            .unwrap(),
        }
    };
    assert_eq!(field("token-id"), id);
    assert_eq!(field("token-secret"), secret);
    assert_eq!(field("usage-bootstrap-authentication"), "true");
    assert!(field("auth-extra-groups").starts_with("system:bootstrappers:"));

    let key = GeneratedKey::generate().unwrap();
    let der = key
        .certificate_request("system:node:attach-1", &["system:nodes"])
        .unwrap();
    let pem = pem_encode("CERTIFICATE REQUEST", &der);
    c.create(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
               "metadata": {"name": "csr-attach"},
               "spec": {"request": apiserver::pki::base64_encode(pem.as_bytes()),
                        "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                        "usages": ["digital signature", "client auth"]}}),
    )
    .unwrap();
    c.approve_and_sign("csr-attach").unwrap();
    let csr = c
        .get("/apis/certificates.k8s.io/v1/certificatesigningrequests/csr-attach")
        .unwrap();
    let approved = csr["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["type"] == "Approved" && k["status"] == "True");
    assert!(approved, "{csr}");
    let cert =
        apiserver::pki::base64_decode(csr["status"]["certificate"].as_str().unwrap()).unwrap();
    let cert_der = apiserver::pki::pem_block(&cert, "CERTIFICATE").unwrap();
    let subject = apiserver::pki::cert_subject(&cert_der).unwrap();
    assert_eq!(subject.common_name.as_deref(), Some("system:node:attach-1"));
    assert_eq!(subject.organizations, ["system:nodes"]);
    // Issued by the harness's CA through /status (it replaced what the server signed).
    let guard = scratch("attach");
    let d = &guard.0;
    std::fs::write(d.join("ca.crt"), c.signer_ca_pem()).unwrap();
    std::fs::write(d.join("node.crt"), &cert).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(d.join("ca.crt"))
        .arg(d.join("node.crt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.node_forbidden("attach-1").is_none());
    // Without processes the outage switch is inert, and the calls still work.
    c.down();
    c.up();
    assert!(c.get("/api/v1/namespaces/envtest-attach").is_ok());
}

/// Launcher temp dirs of this process whose etcd log contains `marker` (other tests' dirs
/// may exist concurrently and are not counted).
fn leftovers_logging(marker: &str) -> Vec<String> {
    let prefix = format!("tinylet-envtest-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("etcd.log")).is_ok_and(|t| t.contains(marker))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn real_kubectl_logs_and_node_auth() {
    let Some((_serial, bed, c)) = real("envtest_real_kubelet_api") else {
        return;
    };
    kubelet_api::kubectl_logs_and_node_auth(&c, bed);
}

#[test]
fn real_kubectl_exec_attach_port_forward() {
    let Some((_serial, bed, c)) = real("envtest_real_kubelet_exec") else {
        return;
    };
    kubelet_exec::kubectl_exec_attach_port_forward(&c, bed);
}

#[test]
fn real_kubectl_stats_summary_and_metrics() {
    let Some((_serial, bed, c)) = real("envtest_real_kubelet_stats") else {
        return;
    };
    kubelet_stats::kubectl_stats_and_metrics(&c, bed);
}

#[test]
fn real_serving_certificate_bootstrap_and_rotation() {
    let Some((_serial, bed, c)) = real("envtest_real_serving_cert") else {
        return;
    };
    serving_cert::serving_certificate_bootstrap_and_rotation(&c, bed);
}

#[test]
fn real_container_logs_rotate_and_kubectl_reads_the_current_file() {
    let Some((_serial, bed, c)) = real("envtest_real_log_rotation") else {
        return;
    };
    kubelet_stats::container_logs_rotate(&c, bed);
}
