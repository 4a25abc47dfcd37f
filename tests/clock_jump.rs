//! Wall-clock shifts for the agent only: `tinylet run` under Debian's libfaketime (package
//! `faketime`, preloaded directly: the `faketime` command sets FAKETIME, which would override
//! the file; monotonic clock left alone; the shift read from a file on every clock read so the
//! test can make the clock jump while the agent runs), joined to the project's API test server on the
//! bed's containerd. The server keeps the real time, so what it records is the truth.
//!
//! Rules followed: timers (Lease cadence, retries) run on the monotonic clock, so a jump in
//! either direction leaves the Lease renewed within its duration (the node lifecycle
//! controller marks a node NotReady after leaseDurationSeconds without renewal); renewTime is
//! wall time and follows the clock at once; a certificate is never "expired" or rotated
//! because of a clock that was behind, and a node whose clock is behind its certificates'
//! notBefore waits for time sync instead of hammering the server.
//!
//! Skipped (passes without checking) when the bed or libfaketime is missing.

#[path = "apiserver/mod.rs"]
mod apiserver;
#[path = "common/cri_bed.rs"]
mod cri_bed;
#[path = "common/podsync.rs"]
mod podsync;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cri_bed::Bed;
use podsync::Env;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// An Env whose agent runs under faketime, the shift read from `<dir>/faketime` on every
/// clock read.
fn setup(test: &str) -> Option<(Env, PathBuf)> {
    if !Path::new(LIBFAKETIME).exists() {
        eprintln!("{test}: {LIBFAKETIME} missing (apt-get install faketime); skipped");
        return None;
    }
    let bed = Bed::get(test)?;
    let mut env = Env::new(bed, Path::new(env!("CARGO_BIN_EXE_tinylet")), test);
    let shift = env.dir.join("faketime");
    let wrapper = env.dir.join("tinylet-faketime");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport LD_PRELOAD={LIBFAKETIME} FAKETIME_TIMESTAMP_FILE={} \
             FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1\nexec {} \"$@\"\n",
            shift.display(),
            env.bin.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.bin = wrapper;
    Some((env, shift))
}

fn set_clock(file: &Path, spec: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{spec}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// The Lease's renewTime as the server stores it.
fn renew_time(env: &Env) -> Option<SystemTime> {
    let lease = env.srv.lease(&env.node)?;
    tinylet::k8s::coordination::parse_time(lease["spec"]["renewTime"].as_str()?)
}

/// Requests the server saw from the node's own identity.
fn node_requests(env: &Env) -> usize {
    let user = format!("system:node:{}", env.node);
    env.srv
        .stats()
        .log()
        .iter()
        .filter(|r| r.user == user)
        .count()
}

fn csr_creates(env: &Env) -> u64 {
    env.srv
        .stats()
        .count("create", "certificatesigningrequests.certificates.k8s.io")
}

/// Successful Lease writes the server saw, in server time since it started.
fn lease_writes(env: &Env) -> Vec<Duration> {
    let mut v: Vec<Duration> = env
        .srv
        .stats()
        .log()
        .into_iter()
        .filter(|r| {
            r.resource.starts_with("leases")
                && matches!(r.verb.as_str(), "patch" | "update" | "create")
                && (200..300).contains(&r.code)
        })
        .map(|r| r.at)
        .collect();
    v.sort();
    v
}

fn near(t: SystemTime, want: SystemTime, slack: Duration) -> bool {
    let d = t
        .duration_since(want)
        .or_else(|_| want.duration_since(t))
        .unwrap_or(Duration::MAX);
    d <= slack
}

#[test]
fn booted_in_1970_waits_for_time_sync_then_renews_with_the_real_time() {
    let Some((mut env, clock)) = setup("clock_1970") else {
        return;
    };
    // An RTC-less board: the clock starts at the epoch and runs from there.
    set_clock(&clock, "@1970-01-01 00:00:30");
    env.start();
    let msg = "system clock is 1970-01-01, certificates not valid yet — waiting for time sync";
    assert!(
        wait_for(Duration::from_secs(30), || env.log().contains(msg)),
        "{}",
        env.log()
    );
    // Waiting is local: no TLS handshake storm, no request reaches the server.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(node_requests(&env), 0, "{}", env.log());
    assert_eq!(csr_creates(&env), 0);

    // NTP arrives: the clock jumps 56 years forward.
    set_clock(&clock, "+0");
    assert!(
        wait_for(Duration::from_secs(40), || renew_time(&env).is_some_and(
            |t| near(t, SystemTime::now(), Duration::from_secs(60))
        )),
        "renewTime {:?}\n{}",
        env.srv.lease(&env.node),
        env.log()
    );
    // The jump made no certificate look old enough to rotate.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(csr_creates(&env), 0, "{}", env.log());
    env.stop();
}

#[test]
fn clock_jumping_back_two_hours_keeps_the_lease_cadence() {
    let Some((mut env, clock)) = setup("clock_back") else {
        return;
    };
    // Ahead by two hours (the certificates are valid for a day, so TLS still works).
    set_clock(&clock, "+2h");
    env.start();
    let ahead = Duration::from_secs(7200);
    assert!(
        wait_for(Duration::from_secs(40), || renew_time(&env).is_some_and(
            |t| near(t, SystemTime::now() + ahead, Duration::from_secs(60))
        )),
        "renewTime {:?}\n{}",
        env.srv.lease(&env.node),
        env.log()
    );
    // Time sync pulls the clock back two hours.
    set_clock(&clock, "+0");
    let jumped = lease_writes(&env).len();
    assert!(
        wait_for(Duration::from_secs(30), || renew_time(&env).is_some_and(
            |t| near(t, SystemTime::now(), Duration::from_secs(60))
        )),
        "renewTime {:?}\n{}",
        env.srv.lease(&env.node),
        env.log()
    );
    std::thread::sleep(Duration::from_secs(25));
    let writes = lease_writes(&env);
    assert!(writes.len() >= jumped + 2, "{writes:?}");
    let gap = writes
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // Within the 40 s Lease duration (and in fact the 10 s cadence): no timer waited on the
    // wall clock's two lost hours.
    assert!(gap < Duration::from_secs(40), "{writes:?}");
    assert_eq!(csr_creates(&env), 0);
    env.stop();
}
