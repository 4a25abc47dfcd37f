//! What `tinylet run` writes to stderr, against the bed's real containerd: klog-style lines,
//! an invalid manifest reported once per change of its file (not again whenever another file
//! changes), and a shutdown that says what happens to the pods and when it is done.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use agent::*;

fn errors(doc: &Value) -> Vec<String> {
    doc["manifestErrors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `Lmmdd hh:mm:ss.uuuuuu PID target] `, as klog writes it (thread id there, pid here).
fn is_klog_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() > 30
        && b"EWIDT".contains(&b[0])
        && digits(1..5)
        && b[5] == b' '
        && digits(6..8)
        && b[8] == b':'
        && digits(9..11)
        && b[11] == b':'
        && digits(12..14)
        && b[14] == b'.'
        && digits(15..21)
        && b[21] == b' '
        && line.contains("] ")
}

#[test]
fn an_unchanged_invalid_manifest_is_logged_once_and_shutdown_says_what_happens() {
    let Some(mut h) = setup("an_unchanged_invalid_manifest_is_logged_once") else {
        return;
    };
    let t = &mut h.env;
    t.put_manifest("stays-bad.yaml", &t.template("invalid.yaml", &[]));
    t.put_manifest("changes.yaml", "{ not yaml: [");
    t.start();
    let first = t.wait_status(Duration::from_secs(30), |d| errors(d).len() == 2);
    assert!(
        first.is_some(),
        "two manifest errors expected:\n{}",
        t.agent_log()
    );
    // Another file's error changes: the set is handed over again with both errors in it.
    t.put_manifest("changes.yaml", &t.template("invalid.yaml", &[]));
    let second = t.wait_status(Duration::from_secs(30), |d| {
        errors(d)
            .iter()
            .any(|e| e.contains("changes.yaml") && e.contains("image"))
    });
    assert!(
        second.is_some(),
        "the changed error was not seen:\n{}",
        t.agent_log()
    );
    let status = t.stop(Signal::SIGTERM);
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    let log = t.agent_log();

    let unchanged: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with('E') && l.contains("stays-bad.yaml"))
        .collect();
    assert_eq!(
        unchanged.len(),
        1,
        "logged {} times:\n{log}",
        unchanged.len()
    );
    let changing = log
        .lines()
        .filter(|l| l.starts_with('E') && l.contains("changes.yaml"))
        .count();
    assert_eq!(
        changing, 2,
        "one line per version of the changed file:\n{log}"
    );

    for line in log.lines() {
        assert!(is_klog_line(line), "not a klog-style line: {line:?}");
    }
    assert!(
        log.contains("stopping, leaving 0 pod(s) running"),
        "no stopping line:\n{log}"
    );
    assert!(
        log.lines().last().is_some_and(|l| l.ends_with("] stopped")),
        "the last line is not `stopped`:\n{log}"
    );
}
