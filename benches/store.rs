//! Store figures on the real disk under target/: write latency (two fsyncs), the cost of a
//! skipped identical write, open/recovery time, and bytes written per change and at steady
//! state (the upstream kubelet writes 98 KB/h at steady state, notes/anchors.md).
//!
//! Run: `cargo bench --bench store`. Prints figures; asserts nothing about time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tinylet::store::{PutOutcome, RecordKind, Store};

fn pod_json(i: usize, rev: usize, len: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i}\",\"namespace\":\"default\",\"resourceVersion\":\"{rev}\"}},\"spec\":{{\"containers\":[{{\"name\":\"c\",\"image\":\"busybox\",\"args\":\""
    )
    .into_bytes();
    while v.len() + 5 < len {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}]}}");
    v
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or_default()
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} n={:<5} p50 {:>9.1} µs  p99 {:>9.1} µs  max {:>9.1} µs",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    const PODS: usize = 100;
    const POD_LEN: usize = 4096;

    let mut store = Store::open(&dir).expect("open store");
    let mut first = Vec::new();
    for i in 0..PODS {
        let v = pod_json(i, 1, POD_LEN);
        let t = Instant::now();
        store
            .put(RecordKind::ApiPod, &format!("default/pod-{i}"), &v)
            .expect("put");
        first.push(t.elapsed());
    }
    report("put new 4 KB pod (write+fsync+rename+fsync dir)", first);
    let s = store.stats();
    println!(
        "  bytes written for {PODS} pods of {POD_LEN} B: {} ({:.1}% framing overhead), fsyncs {}",
        s.bytes_written,
        (s.bytes_written as f64 / (PODS * POD_LEN) as f64 - 1.0) * 100.0,
        s.fsyncs
    );

    let mut changed = Vec::new();
    for i in 0..PODS {
        let v = pod_json(i, 2, POD_LEN);
        let t = Instant::now();
        store
            .put(RecordKind::ApiPod, &format!("default/pod-{i}"), &v)
            .expect("put");
        changed.push(t.elapsed());
    }
    report("put changed 4 KB pod (replace)", changed);

    let before = store.stats();
    let mut same = Vec::new();
    for _ in 0..10 {
        for i in 0..PODS {
            let v = pod_json(i, 2, POD_LEN);
            let t = Instant::now();
            let out = store
                .put(RecordKind::ApiPod, &format!("default/pod-{i}"), &v)
                .expect("put");
            same.push(t.elapsed());
            assert_eq!(out, PutOutcome::Unchanged);
        }
    }
    report("put identical 4 KB pod (skipped)", same);
    let after = store.stats();
    println!(
        "  steady state: {} identical puts wrote {} bytes, {} fsyncs (upstream kubelet: 98 KB/h of log)",
        PODS * 10,
        after.bytes_written - before.bytes_written,
        after.fsyncs - before.fsyncs
    );

    let big = pod_json(0, 3, 300_000);
    let mut bigs = Vec::new();
    for rev in 0..20 {
        let mut v = big.clone();
        v.push(b'0' + (rev % 10) as u8);
        let t = Instant::now();
        store.put(RecordKind::StaticPod, "big", &v).expect("put");
        bigs.push(t.elapsed());
    }
    report("put changed 300 KB value", bigs);

    let mut gets = Vec::new();
    for i in 0..PODS {
        let t = Instant::now();
        let _ = store
            .get(RecordKind::ApiPod, &format!("default/pod-{i}"))
            .expect("get");
        gets.push(t.elapsed());
    }
    report("get 4 KB pod (read + CRC + decode)", gets);
    drop(store);

    let mut opens = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let s = Store::open(&dir).expect("reopen");
        opens.push(t.elapsed());
        assert_eq!(s.len(), PODS + 1);
    }
    report("open with 101 records (recovery scan)", opens);

    let mut deletes = Vec::new();
    let mut store = Store::open(&dir).expect("reopen");
    for i in 0..PODS {
        let t = Instant::now();
        store
            .delete(RecordKind::ApiPod, &format!("default/pod-{i}"))
            .expect("delete");
        deletes.push(t.elapsed());
    }
    report("delete (unlink+fsync dir)", deletes);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
