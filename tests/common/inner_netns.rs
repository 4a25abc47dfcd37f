//! Tests that program the host kernel's nf_tables inside a network namespace of their own: the
//! test binary re-runs one of its ignored tests under `unshare -n` (the namespace dies with
//! that process, pass or fail) with `TINYLET_NFT_INNER=1`, and checks afterwards that the
//! host's own ruleset did not change.

#![allow(dead_code)]

use std::process::Command;

/// The host's ruleset as the real `nft` prints it (empty when nft is missing).
pub fn host_ruleset() -> String {
    Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// True inside the re-run (the inner test does its work only then).
pub fn is_inner() -> bool {
    std::env::var("TINYLET_NFT_INNER").as_deref() == Ok("1")
}

/// Runs the ignored test `inner` of this binary in a fresh network namespace and asserts it
/// passed (it prints `INNER OK` at its end) and left the host's ruleset alone. Prints a
/// SKIPPED line instead when the namespace cannot be made.
pub fn run_inner(inner: &str) {
    let before = host_ruleset();
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .arg("-n")
        .arg(&exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TINYLET_NFT_INNER", "1")
        .output()
        .expect("running unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if !out.status.success() && stderr.contains("unshare failed") {
        println!("SKIPPED (cannot create a network namespace: no CAP_SYS_ADMIN/CAP_NET_ADMIN)");
        return;
    }
    assert!(out.status.success(), "inner test {inner} failed");
    assert!(
        stdout.contains("INNER OK"),
        "inner test {inner} did not run"
    );
    assert_eq!(host_ruleset(), before, "the host's ruleset changed");
}
