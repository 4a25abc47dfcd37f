//! The soak: one `tinylet run` left alone for a long time under everything an edge node lives
//! through, on a containerd of its own (tests/common/private_runtime.rs: an hour on the shared
//! bed would hold its agent lock) and the project's API test server behind the flaky-link
//! relay (tests/apiserver/relay.rs):
//! - a static pod whose container exits 1 three seconds after each start (restart back-off);
//! - static manifests churning: every 20 s one is added, rewritten (new spec) or removed;
//! - API pods: one created every 30 s and deleted 75 s later;
//! - an image pulled from the bed's loopback registry for a pod that lives 60 s of every
//!   150 s, and collected in between (image GC thresholds that any disk crosses);
//! - the link, every 180 s: 20 s cut hard (connections closed, new ones refused), 40 s with
//!   10 % of requests reset and half of them delayed, 15 s black-holed (silent, never closed).
//!
//! Runs under ten minutes go through these cycles three times as fast. RSS, fds and threads
//! are judged flat (last window's means within 10 % + 1 MiB, +5 fds, +3 threads of the first
//! window's) only for runs of 40 minutes or more, over 10-minute windows; shorter runs print
//! the means of their first and last thirds.
//!
//! Every 10 s the agent's VmRSS, open fds and threads are read from /proc. At the end the link
//! heals and, within a bounded settle time, every pod that should exist must be running (the
//! crash-looping one present) and every deleted one gone: "lost" pods are the expected ones
//! missing, "leftovers" the deleted ones still there. `panicked` in the agent's log counts
//! panics. Included with `#[path]` by benches/soak.rs (the hour) and tests/soak.rs (the short
//! CI run).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::apiserver::relay::Relay;
use super::apiserver::{Fault, RuleId, Trigger};
use super::cri_bed::Bed;
use super::podsync::Env;
use super::private_runtime::PrivateRuntime;

/// Set by SIGINT/SIGTERM (when the caller installs [`install_stop_handler`]): the run ends
/// early and cleans up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end the run early (it still settles, reports and cleans up).
pub fn install_stop_handler() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { sigaction(sig, &act) } {
            eprintln!("soak: cannot catch {sig}: {e}");
        }
    }
}

/// One reading of the agent's process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the agent started.
    pub t: u64,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
}

/// Means of one window of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Means {
    pub rss_kib: f64,
    pub fds: f64,
    pub threads: f64,
    pub n: usize,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub ran: Duration,
    pub samples: Vec<Sample>,
    /// Width of the first and last windows compared.
    pub window: Duration,
    pub first: Means,
    pub last: Means,
    pub panics: usize,
    /// Expected pods not running after the settle time.
    pub lost: Vec<String>,
    /// Deleted pods still at the runtime or the server after the settle time.
    pub leftovers: Vec<String>,
    /// Set if the agent exited during the run.
    pub agent_exit: Option<String>,
    pub static_changes: u32,
    pub api_created: u32,
    pub api_deleted: u32,
    pub pull_pods: u32,
    pub link_cycles: u32,
    pub faults_injected: u64,
    pub crash_restarts: u64,
    pub images_collected: usize,
    pub images_pulled: usize,
}

impl Report {
    /// Whether RSS, fds and threads stayed flat: the last window's means within 10 % (+1 MiB)
    /// of the first's for RSS, +5 fds and +3 threads.
    pub fn flat(&self) -> bool {
        self.first.n > 0
            && self.last.n > 0
            && self.last.rss_kib <= self.first.rss_kib * 1.10 + 1024.0
            && self.last.fds <= self.first.fds + 5.0
            && self.last.threads <= self.first.threads + 3.0
    }

    /// Whether the run was long enough to judge a trend (40 minutes: two 10-minute windows
    /// with the middle of the run between them); shorter runs print the means only.
    pub fn judged(&self) -> bool {
        self.ran >= Duration::from_secs(40 * 60)
    }

    /// Flat (when judged), no panics, no lost pods, no leftovers, agent still running.
    pub fn pass(&self) -> bool {
        (self.flat() || !self.judged())
            && self.panics == 0
            && self.lost.is_empty()
            && self.leftovers.is_empty()
            && self.agent_exit.is_none()
    }

    /// The figures, for humans.
    pub fn print(&self) {
        let w = self.window.as_secs();
        println!("\nsoak: {} s under churn", self.ran.as_secs());
        println!(
            "  static manifest changes {}, API pods created {} / deleted {}, pull pods {}, link \
             cycles {} ({} request faults), crash-loop restarts {}, images pulled {} / collected {}",
            self.static_changes,
            self.api_created,
            self.api_deleted,
            self.pull_pods,
            self.link_cycles,
            self.faults_injected,
            self.crash_restarts,
            self.images_pulled,
            self.images_collected,
        );
        println!(
            "  {:<22} {:>14} {:>14}",
            "",
            format!("first {w} s"),
            format!("last {w} s")
        );
        println!(
            "  {:<22} {:>14.1} {:>14.1}",
            "RSS (MiB)",
            self.first.rss_kib / 1024.0,
            self.last.rss_kib / 1024.0
        );
        println!(
            "  {:<22} {:>14.1} {:>14.1}",
            "open fds", self.first.fds, self.last.fds
        );
        println!(
            "  {:<22} {:>14.1} {:>14.1}",
            "threads", self.first.threads, self.last.threads
        );
        println!(
            "  {:<22} {:>14} {:>14}",
            "samples", self.first.n, self.last.n
        );
        println!(
            "  panics {}, lost pods {} {:?}, leftovers {} {:?}, agent {}",
            self.panics,
            self.lost.len(),
            self.lost,
            self.leftovers.len(),
            self.leftovers,
            self.agent_exit.as_deref().unwrap_or("running")
        );
        println!(
            "soak verdict: {} (flat {}, panics {}, lost {}, leftovers {})",
            if self.pass() { "PASS" } else { "FAIL" },
            if self.judged() {
                self.flat().to_string()
            } else {
                "not judged: run under 40 min".into()
            },
            self.panics,
            self.lost.len(),
            self.leftovers.len()
        );
    }
}

/// The means of the samples whose time falls in `[from, to)`.
pub fn means(samples: &[Sample], from: u64, to: u64) -> Means {
    let w: Vec<&Sample> = samples.iter().filter(|s| s.t >= from && s.t < to).collect();
    if w.is_empty() {
        return Means::default();
    }
    let n = w.len() as f64;
    Means {
        rss_kib: w.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n,
        fds: w.iter().map(|s| s.fds as f64).sum::<f64>() / n,
        threads: w.iter().map(|s| s.threads as f64).sum::<f64>() / n,
        n: w.len(),
    }
}

/// The comparison window: 10 minutes for runs of 40 minutes or more, else a third of the run.
pub fn window(run: Duration) -> Duration {
    if run >= Duration::from_secs(40 * 60) {
        Duration::from_secs(600)
    } else {
        run / 3
    }
}

/// VmRSS (KiB), open fds and threads of process `pid`.
fn sample(pid: u32, t: u64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        t,
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// Retries an admin call to the server (the injected faults hit it too).
fn retry<T, E: std::fmt::Debug>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> Option<T> {
    let mut last = None;
    for _ in 0..10 {
        match f() {
            Ok(v) => return Some(v),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("soak: {what} failed: {last:?}");
    None
}

fn static_manifest(ns: &str, name: &str, image: &str, script: &str, gen: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  hostNetwork: true\n  containers:\n    - name: main\n      \
         image: {image}\n      command: [\"sh\", \"-c\", \"{script}\"]\n      \
         env: [{{name: GENERATION, value: \"{gen}\"}}]\n"
    )
}

fn api_pod(env: &Env, name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": env.ns},
        "spec": {
            "nodeName": env.node,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        }
    })
}

/// `tinylet status --json` of the agent under test.
fn status(env: &Env) -> Option<Value> {
    let out = Command::new(&env.bin)
        .args(["status", "--json", "--root-dir"])
        .arg(&env.root)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Pods in the status document: name → phase.
fn status_pods(doc: &Value, ns: &str) -> BTreeMap<String, String> {
    doc["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["namespace"] == ns)
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["phase"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// Runs the soak for `duration` with the agent binary `bin` (copied to a private path first, so
/// rebuilding it meanwhile changes nothing). None (a skip line printed) without the test bed.
pub fn run(test: &str, duration: Duration, bin: &Path) -> Option<Report> {
    let bed = Bed::get(test)?;
    let images = PathBuf::from(
        std::env::var("TINYLET_BED_LIB").unwrap_or_else(|_| "/var/lib/tinylet-bed".into()),
    )
    .join("images");
    // The pull image is not imported: the first pull is a real one from the registry.
    let rt = PrivateRuntime::start("soak", &images, &["pause", "busybox"]);
    let agent_bin = rt.lib.join("tinylet");
    std::fs::copy(bin, &agent_bin).expect("copying the agent binary");
    let private = Bed {
        endpoint: rt.endpoint(),
        test_image: bed.test_image.clone(),
        pull_image: bed.pull_image.clone(),
        registry: bed.registry.clone(),
        // The agent lock and scratch dirs are the private runtime's: nobody else waits on them.
        dir: rt.lib.clone(),
    };
    let mut env = Env::new(private, &agent_bin, test);
    let relay = Relay::start(env.srv.addr()).expect("relay");
    let creds = env.srv.node_cert(&env.node).expect("node certificate");
    tinylet::api::write_cert_kubeconfig(
        &env.kubeconfig,
        &relay.url(),
        &env.dir.join("ca.crt"),
        &creds.cert_path,
        &creds.key_path,
    )
    .expect("kubeconfig");
    let mut cfg = std::fs::read_to_string(&env.config).expect("agent config");
    cfg.push_str(
        "imageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\nimageMinimumGCAge: 0s\n",
    );
    std::fs::write(&env.config, cfg).expect("agent config");

    let ns = env.ns.clone();
    let node = env.node.clone();
    let image = env.bed.test_image.clone();
    let pull_image = env.bed.pull_image.clone();
    let put = |env: &Env, file: &str, text: &str| {
        let tmp = env.dir.join(format!(".{file}.tmp"));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, env.manifests.join(file));
        }
    };
    put(
        &env,
        "crash.yaml",
        &static_manifest(&ns, "crash", &image, "sleep 3; exit 1", 1),
    );
    // Static pods: name → generation.
    let mut statics: BTreeMap<String, u32> = BTreeMap::new();
    let sleeper = "trap 'exit 0' TERM; sleep 3600 & wait";
    for i in 0..2 {
        let name = format!("st-{i}");
        put(
            &env,
            &format!("{name}.yaml"),
            &static_manifest(&ns, &name, &image, sleeper, 1),
        );
        statics.insert(name, 1);
    }
    let mut next_static = 2u32;
    env.start();
    let t0 = Instant::now();
    let mut report = Report::default();

    // API pods alive: name → created at (s); names deleted.
    let mut api: BTreeMap<String, u64> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut puller: Option<String> = None;
    let mut faults: Vec<RuleId> = Vec::new();
    // Runs shorter than ten minutes go through the same cycles three times as fast, so that a
    // CI run still sees every phase (samples stay every 10 s).
    let scale = if duration >= Duration::from_secs(600) {
        3
    } else {
        1
    };
    let p = |secs: u64| (secs * scale / 3).max(1);
    let (mut next_sample, mut next_churn, mut next_api, mut next_pull, mut next_link) =
        (10u64, p(20), p(10), p(5), p(60));
    let mut link_phase = 0u32;
    let mut step = 0u32;
    let mut api_n = 0u32;
    let delete = |env: &Env, name: &str| {
        retry(&format!("deleting pod {name}"), || {
            env.srv
                .delete(&format!("/api/v1/namespaces/{}/pods/{name}", env.ns), None)
        })
        .is_some()
    };
    while t0.elapsed() < duration && !STOP.load(Ordering::SeqCst) {
        let t = t0.elapsed().as_secs();
        if let Some(Ok(Some(st))) = env.agent.as_mut().map(|c| c.try_wait()) {
            report.agent_exit = Some(format!("exited at {t} s: {st}"));
            break;
        }
        if t >= next_sample {
            next_sample += 10;
            if let Some(s) = env.agent.as_ref().and_then(|c| sample(c.id(), t)) {
                println!(
                    "t={:>5}s rss={:>7} KiB fds={:>4} threads={:>3}",
                    s.t, s.rss_kib, s.fds, s.threads
                );
                report.samples.push(s);
            }
        }
        if t >= next_churn {
            next_churn += p(20);
            step += 1;
            let oldest = statics.keys().next().cloned();
            match step % 3 {
                0 if statics.len() < 4 => {
                    let name = format!("st-{next_static}");
                    next_static += 1;
                    put(
                        &env,
                        &format!("{name}.yaml"),
                        &static_manifest(&ns, &name, &image, sleeper, 1),
                    );
                    statics.insert(name, 1);
                }
                2 if statics.len() > 1 => {
                    if let Some(name) = oldest {
                        let _ = std::fs::remove_file(env.manifests.join(format!("{name}.yaml")));
                        statics.remove(&name);
                        deleted.insert(format!("{name}-{node}"));
                    }
                }
                _ => {
                    // Rewrite one (round robin): a new spec, so the pod is replaced.
                    let k = step as usize % statics.len().max(1);
                    if let Some((name, gen)) = statics.iter_mut().nth(k) {
                        *gen += 1;
                        let text = static_manifest(&ns, name, &image, sleeper, *gen);
                        put(&env, &format!("{name}.yaml"), &text);
                    }
                }
            }
            report.static_changes += 1;
        }
        if t >= next_api {
            next_api += p(30);
            let name = format!("api-{api_n}");
            api_n += 1;
            let pod = api_pod(&env, &name, &image);
            if retry(&format!("creating pod {name}"), || {
                env.srv
                    .create(&format!("/api/v1/namespaces/{ns}/pods"), pod.clone())
            })
            .is_some()
            {
                api.insert(name, t);
                report.api_created += 1;
            }
            let old: Vec<String> = api
                .iter()
                .filter(|(_, at)| t >= **at + p(75))
                .map(|(n, _)| n.clone())
                .collect();
            for name in old {
                if delete(&env, &name) {
                    api.remove(&name);
                    deleted.insert(name);
                    report.api_deleted += 1;
                }
            }
        }
        if t >= next_pull {
            next_pull += if puller.is_some() { p(90) } else { p(60) };
            if let Some(name) = puller.take() {
                if delete(&env, &name) {
                    deleted.insert(name);
                } else {
                    puller = Some(name);
                }
            } else {
                let name = format!("pull-{}", report.pull_pods);
                let pod = api_pod(&env, &name, &pull_image);
                if retry(&format!("creating pod {name}"), || {
                    env.srv
                        .create(&format!("/api/v1/namespaces/{ns}/pods"), pod.clone())
                })
                .is_some()
                {
                    puller = Some(name);
                    report.pull_pods += 1;
                }
            }
        }
        if t >= next_link {
            // 60 s clean, 20 s cut, 40 s faults, 15 s black hole, 45 s clean.
            match link_phase % 4 {
                0 => {
                    relay.cut();
                    next_link += p(20);
                }
                1 => {
                    relay.restore();
                    faults.push(
                        env.srv
                            .faults()
                            .add(Fault::Reset, Trigger::Probability(0.1)),
                    );
                    faults.push(env.srv.faults().add(
                        Fault::Delay(Duration::from_millis(300)),
                        Trigger::Probability(0.5),
                    ));
                    next_link += p(40);
                }
                2 => {
                    for f in faults.drain(..) {
                        env.srv.faults().remove(f);
                    }
                    relay.black_hole();
                    next_link += p(15);
                }
                _ => {
                    relay.heal();
                    report.link_cycles += 1;
                    next_link += p(105);
                }
            }
            link_phase += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    report.ran = t0.elapsed();
    for f in faults.drain(..) {
        env.srv.faults().remove(f);
    }
    relay.heal();
    relay.restore();
    report.faults_injected = env.srv.faults().injected();

    // Settle: the link is good again; every expected pod runs and every deleted one is gone.
    let mut expected: BTreeSet<String> = statics.keys().map(|n| format!("{n}-{node}")).collect();
    expected.extend(api.keys().cloned());
    expected.extend(puller.iter().cloned());
    let crash = format!("crash-{node}");
    let settle = Instant::now();
    loop {
        let doc = status(&env).unwrap_or_default();
        let pods = status_pods(&doc, &ns);
        report.lost = expected
            .iter()
            .filter(|n| pods.get(*n).map(String::as_str) != Some("Running"))
            .cloned()
            .collect();
        if !pods.contains_key(&crash) {
            report.lost.push(crash.clone());
        }
        let sandboxes: BTreeSet<String> = env.sandboxes().into_iter().map(|s| s.1).collect();
        let at_server: BTreeSet<String> = env
            .srv
            .list(&format!("/api/v1/namespaces/{ns}/pods"))
            .ok()
            .and_then(|l| {
                l["items"].as_array().map(|items| {
                    items
                        .iter()
                        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                        .collect()
                })
            })
            .unwrap_or_default();
        report.leftovers = deleted
            .iter()
            .filter(|n| {
                // A removed static pod's name may come back later with a new manifest.
                !expected.contains(*n) && (sandboxes.contains(*n) || at_server.contains(*n))
            })
            .cloned()
            .collect();
        if (report.lost.is_empty() && report.leftovers.is_empty())
            || settle.elapsed() > Duration::from_secs(180)
        {
            report.crash_restarts = doc["pods"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == crash.as_str())
                .and_then(|p| p["containers"][0]["restartCount"].as_u64())
                .unwrap_or(0);
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = env.log();
    report.panics = log.matches("panicked").count();
    report.images_collected = log.matches("image GC: removed image").count();
    report.images_pulled = env
        .srv
        .list(&format!("/api/v1/namespaces/{ns}/events"))
        .ok()
        .map(|l| {
            l["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    e["reason"] == "Pulled" && !e["message"].to_string().contains("already present")
                })
                .count()
        })
        .unwrap_or(0);
    if report.agent_exit.is_none() {
        if let Some(Ok(Some(st))) = env.agent.as_mut().map(|c| c.try_wait()) {
            report.agent_exit = Some(format!("exited during the settle: {st}"));
        }
    }
    let w = window(report.ran);
    let end = report.ran.as_secs();
    report.window = w;
    report.first = means(&report.samples, 0, w.as_secs());
    report.last = means(&report.samples, end.saturating_sub(w.as_secs()), end + 1);
    if !report.pass() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "soak: agent log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    drop(relay);
    drop(env);
    drop(rt);
    Some(report)
}
