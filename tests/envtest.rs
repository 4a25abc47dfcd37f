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
#[path = "envtest/real.rs"]
mod real;
#[path = "envtest/scenarios.rs"]
mod scenarios;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use cluster::ProjectCluster;
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

/// The bed and a started real control plane, or None (skip line printed).
fn real(test: &str) -> Option<(Bed, RealCluster)> {
    let Some(assets) = Assets::from_env() else {
        skip(&format!(
            "SKIPPED (no kube-apiserver/etcd): {test} — {}",
            real::HOW_TO_ENABLE
        ));
        return None;
    };
    let bed = Bed::get(test)?;
    match RealCluster::start(&assets) {
        Ok(c) => Some((bed, c)),
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
    let Some((bed, c)) = real("envtest_real_bootstrap") else {
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
    let Some((bed, c)) = real("envtest_real_pod_lifecycle") else {
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
    let Some((bed, c)) = real("envtest_real_node_restriction") else {
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
    let Some((bed, c)) = real("envtest_real_outage") else {
        return;
    };
    scenarios::outage(&c, bed, OUTAGE);
}

// ---- the launcher's own checks (no binaries needed) ----

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tinylet-envtest-self-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn assets_are_found_by_pair_or_by_directory() {
    let d = scratch("assets");
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
    let _ = std::fs::remove_dir_all(&d);
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
    let d = scratch("launch");
    let etcd = d.join("etcd");
    let api = d.join("kube-apiserver");
    write_script(&etcd, "echo \"fake etcd $*\"; exit 3");
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
    assert!(err.to_string().contains("fake etcd"), "{err}");
    assert_eq!(fake_leftovers(), Vec::<String>::new(), "temp dir removed");
    let _ = std::fs::remove_dir_all(&d);
}

/// Launcher temp dirs of this process whose etcd log is a fake's (other tests' dirs may
/// exist concurrently and are not counted).
fn fake_leftovers() -> Vec<String> {
    let prefix = format!("tinylet-envtest-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("etcd.log"))
                .is_ok_and(|t| t.contains("fake etcd"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
