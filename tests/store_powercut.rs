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
//! `src/store/tests.rs` (`power_cut_at_every_step_keeps_acknowledged_writes`), and real power
//! cuts by `cross/vm/powercut.sh`: the same child writes on ext4 in a QEMU guest that is
//! killed, and `powercut_vm_verify` checks the disk in the next boot with the checks below.
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
const VERIFY_DIR: &str = "TINYLET_STORE_POWERCUT_VERIFY";
const VERIFY_MODEL: &str = "TINYLET_STORE_POWERCUT_MODEL";
const VERIFY_LOG: &str = "TINYLET_STORE_POWERCUT_LOG";
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

/// What every key should hold: the sequence number of its value, or absent.
type Model = [Option<u64>; KEYS];

fn apply(model: &mut Model, op: Op) {
    match op {
        Op::Put(i, seq) => model[i] = Some(seq),
        Op::Del(i) => model[i] = None,
    }
}

/// A writer's report replayed onto the model.
#[derive(Debug, Default, PartialEq)]
struct Replay {
    /// Operations started (`@@try`).
    tried: u64,
    /// Operations acknowledged (`@@ok`), now in the model.
    acked: u64,
    /// The operation started but not acknowledged when the writer died.
    pending: Option<Op>,
    /// The highest sequence number written.
    max_seq: u64,
    /// Whether the writer got past `Store::open`.
    ready: bool,
}

/// Applies the acknowledged operations of a writer's report (lines from `@@`) to `model`.
fn replay(model: &mut Model, lines: &[String]) -> Result<Replay, String> {
    let mut r = Replay::default();
    for line in lines {
        if let Some(op) = parse(line) {
            if r.pending.is_some() {
                return Err(format!("two operations in flight at {line:?}"));
            }
            if let Op::Put(_, seq) = op {
                r.max_seq = r.max_seq.max(seq);
            }
            r.tried += 1;
            r.pending = Some(op);
        } else if line == "@@ok" {
            let op = r.pending.take().ok_or("@@ok without @@try")?;
            apply(model, op);
            r.acked += 1;
        } else if line == "@@ready" {
            r.ready = true;
        }
    }
    Ok(r)
}

/// Where the operation in flight at the cut ended up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flight {
    /// No operation was in flight, or it would not have changed anything.
    Moot,
    /// The store holds the state before it.
    Old,
    /// The store holds its result (it became durable but was not acknowledged).
    New,
}

/// Checks the store's contents after a cut (`got[i]`: key i's value; `len`: records in the
/// store) against the acknowledged `model` and the operation in flight, and moves the model to
/// what the store holds. An error names an acknowledged write that is missing or wrong.
fn reconcile(
    model: &mut Model,
    pending: Option<Op>,
    got: &[Option<Vec<u8>>],
    len: usize,
) -> Result<Flight, String> {
    let mut with_flight = *model;
    if let Some(op) = pending {
        apply(&mut with_flight, op);
    }
    let mut flight = Flight::Moot;
    for i in 0..KEYS {
        let got = got.get(i).cloned().flatten();
        let matches = |seq: Option<u64>| got == seq.map(value_of);
        if matches(model[i]) {
            if with_flight[i] != model[i] {
                flight = Flight::Old;
            }
        } else if matches(with_flight[i]) {
            flight = Flight::New;
            model[i] = with_flight[i];
        } else {
            return Err(format!(
                "key {i} holds {:?} bytes starting {:?}; acknowledged seq {:?}, in flight {:?}",
                got.as_ref().map(Vec::len),
                got.as_ref()
                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()),
                model[i],
                pending
            ));
        }
    }
    let expected = model.iter().filter(|m| m.is_some()).count();
    if len != expected {
        return Err(format!(
            "the store holds {len} records, {expected} expected: extra or lost records"
        ));
    }
    Ok(flight)
}

/// `@@model next=N S0 S1 ...` (S: a sequence number or `-`), as the VM verifier prints it.
fn format_model(model: &Model, next_seq: u64) -> String {
    let mut line = format!("@@model next={next_seq}");
    for m in model {
        match m {
            Some(seq) => line.push_str(&format!(" {seq}")),
            None => line.push_str(" -"),
        }
    }
    line
}

fn parse_model(line: &str) -> Option<(Model, u64)> {
    let mut w = line.split_whitespace();
    if w.next()? != "@@model" {
        return None;
    }
    let next_seq = w.next()?.strip_prefix("next=")?.parse().ok()?;
    let mut model: Model = [None; KEYS];
    for slot in model.iter_mut() {
        *slot = match w.next()? {
            "-" => None,
            n => Some(n.parse().ok()?),
        };
    }
    w.next().is_none().then_some((model, next_seq))
}

/// The lines of a writer's report, from `@@` on (libtest prints its own text in front of the
/// first one).
fn report_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.find("@@").map(|at| l[at..].trim_end().to_string()))
        .collect()
}

#[test]
fn replay_and_reconcile_find_a_lost_write() {
    let lines = report_lines(
        "test powercut_child ... @@ready\n@@try put 1 5\n@@ok\n@@try del 2\n@@ok\n@@try put 3 6\n",
    );
    let mut model: Model = [None; KEYS];
    model[2] = Some(4);
    let r = replay(&mut model, &lines).unwrap();
    assert_eq!((r.tried, r.acked, r.max_seq, r.ready), (3, 2, 6, true));
    assert_eq!(r.pending, Some(Op::Put(3, 6)));
    let mut got: Vec<Option<Vec<u8>>> = vec![None; KEYS];
    got[1] = Some(value_of(5));
    // The put in flight may or may not have landed; both are fine.
    assert_eq!(
        reconcile(&mut model.clone(), r.pending, &got, 1),
        Ok(Flight::Old)
    );
    got[3] = Some(value_of(6));
    let mut m = model;
    assert_eq!(reconcile(&mut m, r.pending, &got, 2), Ok(Flight::New));
    assert_eq!(m[3], Some(6));
    // An acknowledged put that is gone, or holds another value, is a loss.
    got[1] = None;
    assert!(reconcile(&mut model.clone(), r.pending, &got, 1).is_err());
    got[1] = Some(value_of(4));
    assert!(reconcile(&mut model.clone(), r.pending, &got, 2).is_err());
    // So is an acknowledged delete that came back.
    got[1] = Some(value_of(5));
    got[2] = Some(value_of(4));
    assert!(reconcile(&mut model.clone(), r.pending, &got, 3).is_err());
    assert!(replay(&mut model.clone(), &report_lines("@@ok\n")).is_err());
}

#[test]
fn model_lines_round_trip() {
    let mut model: Model = [None; KEYS];
    model[0] = Some(17);
    model[7] = Some(3);
    let line = format_model(&model, 42);
    assert_eq!(line, "@@model next=42 17 - - - - - - 3");
    assert_eq!(parse_model(&line), Some((model, 42)));
    assert_eq!(parse_model("@@model next=1 - -"), None);
    assert_eq!(parse_model("@@model next=x - - - - - - - -"), None);
}

/// Verifier mode of the VM power-cut run (`cross/vm/powercut.sh`); otherwise passes at once.
/// Reads the model before the cut (`@@model` line, or none for an empty store) and the
/// writer's console output, opens the store, checks it, and prints one `@@verify` line with the
/// counts and the new `@@model` line for the next cut. Fails on a lost acknowledged write, an
/// unreadable (quarantined) record or a temporary file left behind.
#[test]
fn powercut_vm_verify() {
    let Some(dir) = std::env::var_os(VERIFY_DIR) else {
        return;
    };
    let model_text = std::env::var_os(VERIFY_MODEL)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let (mut model, mut next_seq) = model_text
        .lines()
        .find_map(parse_model)
        .unwrap_or(([None; KEYS], 0));
    let log = std::fs::read_to_string(std::env::var_os(VERIFY_LOG).expect("no writer log"))
        .expect("read the writer log");
    let r = replay(&mut model, &report_lines(&log)).expect("writer report");
    next_seq = next_seq.max(r.max_seq);

    let mut store = Store::open(PathBuf::from(&dir)).expect("open the store after the cut");
    let quarantined = store.recovery().quarantined.clone();
    let removed_temps = store.recovery().removed_temps.len();
    let unreadable = quarantined.len();
    let leftovers = std::fs::read_dir(&dir)
        .expect("list the store")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    let mut got = Vec::new();
    let mut failures = Vec::new();
    for i in 0..KEYS {
        match store.get(kind_of(i), &key_of(i)) {
            Ok(v) => got.push(v),
            Err(e) => {
                failures.push(format!("key {i}: {e}"));
                got.push(None);
            }
        }
    }
    let flight = reconcile(&mut model, r.pending, &got, store.len()).unwrap_or_else(|e| {
        failures.push(e);
        Flight::Moot
    });
    if unreadable > 0 {
        failures.push(format!("unreadable records quarantined: {quarantined:?}"));
    }
    if leftovers > 0 {
        failures.push(format!("{leftovers} temporary files survived open"));
    }
    let flight = match (r.pending, flight) {
        (None, _) => "none",
        (Some(_), Flight::Old) => "old",
        (Some(_), Flight::New) => "new",
        (Some(_), Flight::Moot) => "moot",
    };
    println!(
        "@@verify tried={} acked={} ready={} in_flight={flight} records={} temps_removed={} \
         unreadable={unreadable} result={}",
        r.tried,
        r.acked,
        u8::from(r.ready),
        store.len(),
        removed_temps,
        if failures.is_empty() { "ok" } else { "LOST" }
    );
    println!("{}", format_model(&model, next_seq));
    assert!(failures.is_empty(), "after the power cut: {failures:?}");
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

    let mut model: Model = [None; KEYS];
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
        let r = replay(&mut model, &lines).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        next_seq = next_seq.max(r.max_seq);
        acked += r.acked;

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
        let got: Vec<Option<Vec<u8>>> = (0..KEYS)
            .map(|i| store.get(kind_of(i), &key_of(i)).unwrap())
            .collect();
        match reconcile(&mut model, r.pending, &got, store.len()) {
            Ok(Flight::Old) => in_flight_old += 1,
            Ok(Flight::New) => in_flight_new += 1,
            Ok(Flight::Moot) => {}
            Err(e) => panic!("cycle {cycle}: {e}"),
        }
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
