//! A build with nothing changed does nothing: two consecutive `cargo build` runs on this
//! checkout, and the second must find the crate fresh. With the release profile's fat LTO a
//! needless rebuild costs a full link each time, so a build script that watches a file it (or
//! git) rewrites on every run is a real regression. The dev profile keeps the test cheap: the
//! build script and its watched paths are the same in every profile.

use std::process::Command;

/// Runs `cargo build -v` on the checkout and returns its stderr (where cargo reports).
fn cargo_build(cargo: &str) -> String {
    let out = Command::new(cargo)
        .args(["build", "-v", "--offline", "--bin", "tinylet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cargo build failed:\n{stderr}");
    stderr
}

#[test]
fn second_build_without_changes_rebuilds_nothing() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if Command::new(&cargo).arg("--version").output().is_err() {
        eprintln!("cargo not found: skipping the rebuild check");
        return;
    }
    // The first build brings the crate up to date with whatever the checkout holds now.
    cargo_build(&cargo);
    let second = cargo_build(&cargo);
    let rebuilt: Vec<&str> = second
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("Compiling tinylet ")
                || l.starts_with("Dirty tinylet ")
                || l.starts_with("Running `") && l.contains("build-script-build")
        })
        .collect();
    assert!(
        rebuilt.is_empty(),
        "the second build rebuilt the crate:\n{}\nfull output:\n{second}",
        rebuilt.join("\n")
    );
    assert!(
        second
            .lines()
            .any(|l| l.trim_start().starts_with("Fresh tinylet ")),
        "cargo did not report the crate fresh:\n{second}"
    );
}
