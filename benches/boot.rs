//! `tinylet run` with static pods over the bed's real containerd: boot time next to the same CRI
//! calls issued directly, memory with 0/10/20 pods, and the idle cost (CPU, bytes written) with
//! 10 pods over a window. Prints figures next to the upstream kubelet's; asserts nothing.
//!
//!   cargo bench --bench boot
//!   TINYLET_IDLE_SECS=600 (default) sets the idle window; TINYLET_BOOT_REPS=3 the repetitions.
//!
//! The agent measured is target/release/tinylet as `cargo build --release` makes it (the
//! shipped profile); the bench runs that build first. Root and the bed (tests/bed/up.sh) are
//! needed, else the bench says SKIPPED. It holds the agent lock of tests/common/agent.rs, so
//! it never runs next to the agent tests.

#[path = "../tests/common/agent.rs"]
mod agent;
#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use agent::*;
use cri_bed::*;
use tinylet::cri::CriClient;

/// Upstream kubelet figures (shared/notes/anchors.md).
const ANCHOR_BOOT5: &str = "upstream 1.10 s (start -> 5 static pods' containers running)";
const ANCHOR_RSS: &str = "upstream 81.9 MB (0 pods) / 90.0 MB (10 pods)";
const ANCHOR_CPU: &str = "upstream 46-51 CPU-s/hour = 7.7-8.5 CPU-s per 10 min";
const ANCHOR_DISK: &str = "upstream 98 KB/h";
const ANCHOR_BINARY: &str = "upstream 77,693,080 B";

fn context(what: &str) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "context [{what}]: {} loadavg {} cpus {cpus}",
        tinylet::k8s::coordination::format_time(SystemTime::now()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// target/release/tinylet as the release profile builds it. `cargo bench` leaves its own
/// bench-profile build (unstripped, unwinding) at that path, so the release build is redone
/// here (only a re-link or copy when up to date); bounded, and reported if it fails.
fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/tinylet");
    println!("cargo build --release --bin tinylet (the binary measured)");
    let child = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "--bin", "tinylet"])
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let built = match child {
        Ok(mut c) => {
            let t0 = Instant::now();
            loop {
                match c.try_wait() {
                    Ok(Some(st)) => break st.success(),
                    Ok(None) if t0.elapsed() < Duration::from_secs(1800) => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break false;
                    }
                }
            }
        }
        Err(_) => false,
    };
    if !built {
        println!(
            "WARNING: release build failed; measuring whatever {} is",
            bin.display()
        );
    }
    assert!(bin.exists(), "no {}", bin.display());
    bin
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn write_sleepers(env: &AgentEnv, n: usize) {
    for i in 0..n {
        let name = format!("s{i:02}");
        env.put_manifest(
            &format!("{name}.yaml"),
            &env.template("bench-sleeper.yaml", &[("POD", &name)]),
        );
    }
}

fn all_running(doc: &serde_json::Value, n: usize) -> bool {
    let pods = doc["pods"].as_array().map_or(&[][..], Vec::as_slice);
    pods.len() == n
        && pods.iter().all(|p| {
            p["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["state"].get("running").is_some()))
        })
}

/// The agent's own "boot: all N static pod(s) ... X ms after start" figure.
fn boot_ms_from_log(log: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains("boot: all "))?;
    let before = line.split(" ms after start").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

/// One agent boot with `n` fresh manifests: (agent's own figure, spawn → status shows all).
fn agent_boot(bed: Bed, bin: &Path, n: usize, rep: usize) -> (f64, f64) {
    let mut env = AgentEnv::new(bed, bin, &format!("boot-n{n}-r{rep}"));
    env.verbosity = 0;
    write_sleepers(&env, n);
    let t0 = Instant::now();
    env.start();
    let seen = env
        .wait_status(Duration::from_secs(120), |d| all_running(d, n))
        .map(|_| t0.elapsed().as_secs_f64() * 1e3)
        .unwrap_or(f64::NAN);
    let own = (0..50)
        .find_map(|_| {
            let v = boot_ms_from_log(&env.agent_log());
            if v.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            v
        })
        .unwrap_or(f64::NAN);
    (own, seen)
    // Dropping env stops the agent and removes the pods.
}

/// RunPodSandbox + CreateContainer + StartContainer for one hostNetwork busybox pod.
async fn start_direct(client: &CriClient, image: &str, name: &str) -> SandboxGuard {
    let cfg = sandbox_config(name, true, &[("tinylet.bench", "boot")]);
    let sb = SandboxGuard::run(client, cfg).await;
    let id = sb
        .create(container_config("sleep", image, "exec sleep 3600"))
        .await;
    client.start_container(&id).await.unwrap();
    sb
}

/// The same CRI calls as a boot of `n` pods, issued directly: (sequential ms, concurrent ms).
fn direct_cri(bed: &Bed, n: usize, rep: usize) -> (f64, f64) {
    let client = bed.client();
    let image = bed.test_image.clone();
    let seq = smol::block_on(async {
        let t0 = Instant::now();
        let mut guards = Vec::new();
        for i in 0..n {
            guards
                .push(start_direct(&client, &image, &unique(&format!("bseq{n}r{rep}p{i}"))).await);
        }
        (t0.elapsed().as_secs_f64() * 1e3, guards)
    });
    // The guards remove the pods with calls of their own: outside the executor.
    drop(seq.1);
    let seq = seq.0;
    let ex = Rc::new(smol::LocalExecutor::new());
    let conc = smol::block_on(ex.run(async {
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let client = client.clone();
                let image = image.clone();
                let name = unique(&format!("bcon{n}r{rep}p{i}"));
                ex.spawn(async move { start_direct(&client, &image, &name).await })
            })
            .collect();
        let mut guards = Vec::new();
        for t in tasks {
            guards.push(t.await);
        }
        (t0.elapsed().as_secs_f64() * 1e3, guards)
    }));
    drop(conc.1);
    let conc = conc.0;
    (seq, conc)
}

/// (VmHWM, VmRSS) in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// utime + stime in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks as f64 / hz
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Every file under `dir`: path → (size, mtime ns).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            out.insert(p, (m.len(), mtime));
        }
    }
    out
}

fn settle(env: &AgentEnv, n: usize) {
    env.wait_status(Duration::from_secs(120), |d| all_running(d, n))
        .unwrap_or_else(|| panic!("{n} pods did not start:\n{}", env.agent_log()));
    // Let the fast relists of the start-up end and the allocator reach its steady state.
    std::thread::sleep(Duration::from_secs(5));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(bed) = Bed::get("boot bench") else {
        return;
    };
    let bin = release_binary();
    let reps = env_num("TINYLET_BOOT_REPS", 3) as usize;
    let idle_secs = env_num("TINYLET_IDLE_SECS", 600);
    let size = std::fs::metadata(&bin).map_or(0, |m| m.len());
    println!("binary {}: {size} B ({ANCHOR_BINARY})", bin.display());

    // Boot.
    context("boot");
    let _lock = one_agent(&bed);
    for n in [1usize, 5, 20] {
        let (mut own, mut seen, mut seq, mut conc) = (vec![], vec![], vec![], vec![]);
        for rep in 0..reps {
            let (o, s) = agent_boot(Bed::get("boot bench").unwrap(), &bin, n, rep);
            own.push(o);
            seen.push(s);
            let (a, b) = direct_cri(&bed, n, rep);
            seq.push(a);
            conc.push(b);
        }
        let (o, s, a, b) = (
            median(&mut own),
            median(&mut seen),
            median(&mut seq),
            median(&mut conc),
        );
        println!(
            "boot N={n:<2} (median of {reps}): agent {o:.0} ms (own log; {s:.0} ms spawn -> status \
             shows all running) | direct CRI {a:.0} ms sequential, {b:.0} ms concurrent | \
             agent - concurrent CRI = {:+.0} ms{}",
            o - b,
            if n == 5 {
                format!(" (target <= +100 ms; {ANCHOR_BOOT5})")
            } else {
                String::new()
            }
        );
        println!("  runs agent {own:.0?} seen {seen:.0?} seq {seq:.0?} conc {conc:.0?}");
    }

    // Memory with 0, 10, 20 pods, then the idle window with 10.
    context("memory");
    let mut env = AgentEnv::new(bed, &bin, "boot-steady");
    env.verbosity = 0;
    env.start();
    settle(&env, 0);
    let pid = env.agent_pid().unwrap();
    let (hwm, rss) = memory_kb(pid);
    println!(
        "memory 0 pods: VmHWM {:.1} MB VmRSS {:.1} MB ({ANCHOR_RSS})",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    write_sleepers(&env, 10);
    settle(&env, 10);
    let (hwm, rss) = memory_kb(pid);
    println!(
        "memory 10 pods: VmHWM {:.1} MB VmRSS {:.1} MB (target <= 8 MB; {ANCHOR_RSS})",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );

    context(&format!("idle {idle_secs} s, 10 pods"));
    let files0 = listing(&env.root);
    let (cpu0, wb0) = (cpu_secs(pid), write_bytes(pid));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let window = t0.elapsed().as_secs_f64();
    let (cpu1, wb1) = (cpu_secs(pid), write_bytes(pid));
    let files1 = listing(&env.root);
    let changed: Vec<&PathBuf> = files1
        .iter()
        .filter(|(p, v)| files0.get(*p) != Some(v))
        .map(|(p, _)| p)
        .chain(files0.keys().filter(|p| !files1.contains_key(*p)))
        .collect();
    let cpu = cpu1 - cpu0;
    println!(
        "idle 10 pods over {window:.0} s: CPU {cpu:.2} s = {:.2} CPU-s per 10 min (target <= 3; \
         {ANCHOR_CPU})",
        cpu * 600.0 / window
    );
    println!(
        "idle 10 pods over {window:.0} s: write_bytes {} B = {:.0} B/h; files under root-dir \
         changed/added/removed: {} (target 0; {ANCHOR_DISK})",
        wb1 - wb0,
        (wb1 - wb0) as f64 * 3600.0 / window,
        changed.len()
    );
    for p in changed.iter().take(10) {
        println!("  changed: {}", p.display());
    }
    context("idle end");

    write_sleepers(&env, 20);
    settle(&env, 20);
    let (hwm, rss) = memory_kb(pid);
    println!(
        "memory 20 pods: VmHWM {:.1} MB VmRSS {:.1} MB",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    drop(env);
}
