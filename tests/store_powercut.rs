//! Power-cut test of the store on a real disk: a child process writes, rewrites and deletes
//! records in a loop and is SIGKILLed at random moments, hundreds of times; after each kill
//! the store is reopened and every acknowledged operation must be there.
//!
//! The child is this test binary re-executed with `--exact powercut_child`; it reports each
//! operation on stdout before calling the store (`@@try`) and after the call returned `Ok`
//! (`@@ok`), so the parent knows what was acknowledged and what was in flight.
//!
//! SIGKILL keeps the page cache, so this checks the protocol against process death; torn
//! writes as a real power cut leaves them are covered by the simulated disk in
//! `src/store/tests.rs` (`power_cut_at_every_step_keeps_acknowledged_writes`).
//!
//! Knobs: `TINYLET_POWERCUT_CYCLES` (default 500), `TINYLET_POWERCUT_SEED` (default: clock).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tinylet::store::{RecordKind, Store};

const CHILD_DIR: &str = "TINYLET_STORE_POWERCUT_CHILD";
const CHILD_SEQ: &str = "TINYLET_STORE_POWERCUT_SEQ";
const CHILD_SEED: &str = "TINYLET_STORE_POWERCUT_CHILD_SEED";
const KEYS: usize = 8;
/// Upper bound on one child's operations, so a child that is never killed still ends.
const MAX_CHILD_OPS: u64 = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn kind_of(i: usize) -> RecordKind {
    if i % 2 == 0 {
        RecordKind::StaticPod
    } else {
        RecordKind::ApiPod
    }
}

fn key_of(i: usize) -> String {
    format!("default/pod-{i}")
}

/// The value written with sequence number `seq`: JSON-like, 100 B to 4 KB, every 16th up to
/// 300 KB so that kills also land inside long writes.
fn value_of(seq: u64) -> Vec<u8> {
    let mut r = Rng(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = if seq % 16 == 0 {
        4096 + r.below(300_000) as usize
    } else {
        100 + r.below(4000) as usize
    };
    let mut v = format!("{{\"seq\":{seq},\"pad\":\"").into_bytes();
    while v.len() < len {
        v.push(b'a' + (r.below(26) as u8));
    }
    v.extend_from_slice(b"\"}");
    v
}

/// Child mode: runs only when re-executed by the parent test; otherwise passes at once.
#[test]
fn powercut_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut seq: u64 = std::env::var(CHILD_SEQ).unwrap().parse().unwrap();
    let mut rng = Rng(std::env::var(CHILD_SEED).unwrap().parse::<u64>().unwrap() | 1);
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut store = Store::open(PathBuf::from(dir)).unwrap();
    writeln!(out, "@@ready").unwrap();
    out.flush().unwrap();
    for _ in 0..MAX_CHILD_OPS {
        let i = rng.below(KEYS as u64) as usize;
        if rng.below(10) < 7 {
            seq += 1;
            let v = value_of(seq);
            writeln!(out, "@@try put {i} {seq}").unwrap();
            out.flush().unwrap();
            store.put(kind_of(i), &key_of(i), &v).unwrap();
        } else {
            writeln!(out, "@@try del {i}").unwrap();
            out.flush().unwrap();
            store.delete(kind_of(i), &key_of(i)).unwrap();
        }
        writeln!(out, "@@ok").unwrap();
        out.flush().unwrap();
    }
}

/// Kills and reaps the child if the parent fails half-way, so no process outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Put(usize, u64),
    Del(usize),
}

fn parse(line: &str) -> Option<Op> {
    let mut w = line.split_whitespace();
    match (w.next()?, w.next()?, w.next()?.parse().ok()?) {
        ("@@try", "put", i) => Some(Op::Put(i, w.next()?.parse().ok()?)),
        ("@@try", "del", i) => Some(Op::Del(i)),
        _ => None,
    }
}

fn apply(model: &mut [Option<u64>; KEYS], op: Op) {
    match op {
        Op::Put(i, seq) => model[i] = Some(seq),
        Op::Del(i) => model[i] = None,
    }
}

#[test]
fn store_survives_500_sigkills() {
    let cycles: u64 = std::env::var("TINYLET_POWERCUT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let seed: u64 = std::env::var("TINYLET_POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("powercut: seed {seed} (TINYLET_POWERCUT_SEED={seed} repeats the random choices)");
    let mut rng = Rng(seed | 1);
    // A real disk under target/, never tmpfs, so fsync means something.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-powercut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();

    let mut model: [Option<u64>; KEYS] = [None; KEYS];
    let mut next_seq: u64 = 0;
    let (mut acked, mut in_flight_old, mut in_flight_new, mut during_open) = (0u64, 0, 0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "--exact",
                    "powercut_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, &dir)
                .env(CHILD_SEQ, next_seq.to_string())
                .env(CHILD_SEED, rng.next().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test powercut_child ... " in front of the first report.
                let Some(at) = line.find("@@") else { continue };
                if tx.send(line[at..].to_string()).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        // One cycle in ten is killed early, often inside Store::open's recovery.
        let early = rng.below(10) == 0;
        if early {
            std::thread::sleep(Duration::from_micros(rng.below(5_000)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = rx
                    .recv_timeout(left)
                    .expect("child did not report ready within 20 s");
                let ready = line == "@@ready";
                lines.push(line);
                if ready {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        }
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        assert!(
            status.signal() == Some(9) || status.success(),
            "cycle {cycle}: child failed: {status:?}; last lines {:?}",
            lines.iter().rev().take(5).collect::<Vec<_>>()
        );
        if !lines.iter().any(|l| l == "@@ready") {
            during_open += 1;
        }

        // Replay the child's report: acknowledged ops change the model; one may be in flight.
        let mut pending: Option<Op> = None;
        for line in &lines {
            if let Some(op) = parse(line) {
                assert!(pending.is_none(), "cycle {cycle}: two ops in flight");
                if let Op::Put(_, seq) = op {
                    next_seq = next_seq.max(seq);
                }
                pending = Some(op);
            } else if line == "@@ok" {
                let op = pending.take().expect("ok without try");
                apply(&mut model, op);
                acked += 1;
            }
        }

        let mut store = Store::open(&dir).unwrap();
        assert!(
            store.recovery().quarantined.is_empty(),
            "cycle {cycle}: process death must never damage a record: {:?}",
            store.recovery().quarantined
        );
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "cycle {cycle}: temporary files survived open: {leftovers:?}"
        );
        let mut with_flight = model;
        if let Some(op) = pending {
            apply(&mut with_flight, op);
        }
        for i in 0..KEYS {
            let got = store.get(kind_of(i), &key_of(i)).unwrap();
            let matches = |seq: Option<u64>| got == seq.map(value_of);
            if matches(model[i]) {
                if with_flight[i] != model[i] {
                    in_flight_old += 1;
                }
            } else if matches(with_flight[i]) {
                in_flight_new += 1;
                model[i] = with_flight[i];
            } else {
                panic!(
                    "cycle {cycle}: key {i} holds {:?} bytes starting {:?}; acknowledged seq {:?}, in flight {:?}",
                    got.as_ref().map(Vec::len),
                    got.as_ref().map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()),
                    model[i],
                    pending
                );
            }
        }
        let expected_keys = (0..KEYS).filter(|&i| model[i].is_some()).count();
        assert_eq!(
            store.len(),
            expected_keys,
            "cycle {cycle}: extra or lost records"
        );
    }
    let elapsed = started.elapsed();
    println!(
        "powercut: {cycles} SIGKILLs in {:.1} s ({:.1} ms/cycle); {acked} acknowledged ops verified; \
         in-flight op found old {in_flight_old}x, new {in_flight_new}x; {during_open} kills before ready",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / cycles as f64
    );
    assert!(
        cycles < 500 || acked > 0,
        "the children never acknowledged anything"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
