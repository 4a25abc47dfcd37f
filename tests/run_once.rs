//! `tinylet run --once` against the bed's real containerd: the exit code a script sees when
//! the pods converge and when a manifest is invalid. One agent at a time (agents on one
//! containerd remove each other's pods); the environment's guard removes every pod started.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::time::Duration;

use agent::*;

/// The bound of each run; the harness kills the agent only well after it.
const BOUND: &str = "60s";
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn once_exits_0_when_the_pods_converge_and_prints_a_table() {
    let Some(h) = setup("once_exits_0_when_the_pods_converge") else {
        return;
    };
    let t = &h.env;
    t.put_manifest(
        "one.yaml",
        &t.template("sleeper.yaml", &[("POD", "one"), ("GEN", "1")]),
    );
    let (code, out) = t.run_once_with(LIMIT, &["--once-timeout", BOUND]);
    let log = std::fs::read_to_string(t.dir.join("once.log")).unwrap_or_default();
    assert_eq!(code, Some(0), "stdout:\n{out}\nlog:\n{log}");
    assert!(out.contains(&t.pod_name("one")), "{out}");
    assert!(out.contains("Running"), "{out}");
    assert!(out.contains("result: converged: 1 pod(s) started"), "{out}");
}

#[test]
fn once_exits_4_when_a_manifest_is_invalid() {
    let Some(h) = setup("once_exits_4_when_a_manifest_is_invalid") else {
        return;
    };
    let t = &h.env;
    t.put_manifest(
        "fine.yaml",
        &t.template("sleeper.yaml", &[("POD", "fine"), ("GEN", "1")]),
    );
    t.put_manifest("invalid.yaml", &t.template("invalid.yaml", &[]));
    let (code, out) = t.run_once_with(LIMIT, &["--once-timeout", BOUND, "--json"]);
    let log = std::fs::read_to_string(t.dir.join("once.log")).unwrap_or_default();
    assert_eq!(code, Some(4), "stdout:\n{out}\nlog:\n{log}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON report");
    assert_eq!(v["once"]["result"], "manifestErrors", "{v}");
    let reason = v["once"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("invalid.yaml"), "{reason}");
    // The valid pod was started all the same.
    assert!(pod_running(&v, &t.pod_name("fine")), "{v}");
}
