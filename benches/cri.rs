//! CRI client figures over the bed's real containerd: Version round trip and pod start-up.
//! `cargo bench --bench cri` (root, bed up); prints figures, asserts nothing about speed.

#[path = "../tests/common/cri_bed.rs"]
mod cri_bed;

use std::time::{Duration, Instant, SystemTime};

use cri_bed::*;

const VERSION_CALLS: usize = 1000;
const PODS: usize = 20;
const REFERENCE: &str = "0.33-0.38 s per pod (shared/notes/runtime.md)";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    percentile(v, 0.5)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn pods(bed: &Bed, host_network: bool) {
    let client = bed.client();
    let mode = if host_network {
        "host network"
    } else {
        "pod network (CNI)"
    };
    let mut guards = Vec::with_capacity(PODS);
    let (mut total, mut run, mut create, mut start) = (vec![], vec![], vec![], vec![]);
    let tag = if host_network {
        "bench-host"
    } else {
        "bench-cni"
    };
    for i in 0..PODS {
        let name = format!("{}-{i}", unique(tag));
        let t0 = Instant::now();
        let sandbox = SandboxGuard::run(&client, sandbox_config(&name, host_network, &[])).await;
        let t1 = Instant::now();
        let id = sandbox
            .create(container_config("app", &bed.test_image, "exec sleep 3600"))
            .await;
        let t2 = Instant::now();
        client.start_container(&id).await.unwrap();
        let t3 = Instant::now();
        run.push(t1 - t0);
        create.push(t2 - t1);
        start.push(t3 - t2);
        total.push(t3 - t0);
        guards.push(sandbox);
    }
    let sum: Duration = total.iter().sum();
    println!(
        "pod start, {mode}, {PODS} pods: RunPodSandbox+CreateContainer+StartContainer median {} \
         (RunPodSandbox {}, CreateContainer {}, StartContainer {}; {PODS} in sequence {:.2} s) \
         | reference {REFERENCE}",
        ms(median(&mut total)),
        ms(median(&mut run)),
        ms(median(&mut create)),
        ms(median(&mut start)),
        sum.as_secs_f64()
    );
    let t = Instant::now();
    drop(guards);
    println!(
        "  cleanup of {PODS} pods (stop+remove): {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cri bench: {} | loadavg {} | cpus {}",
        tinylet::k8s::coordination::format_time(SystemTime::now()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let Some(bed) = Bed::get("bench cri") else {
        return;
    };
    let client = bed.client();
    smol::block_on(async {
        for _ in 0..20 {
            client.version().await.unwrap();
        }
        let mut times = Vec::with_capacity(VERSION_CALLS);
        for _ in 0..VERSION_CALLS {
            let t = Instant::now();
            client.version().await.unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        let sum: Duration = times.iter().sum();
        println!(
            "Version round trip over {VERSION_CALLS} calls (one reused h2c connection): p50 {} \
             p99 {} mean {} max {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(sum / VERSION_CALLS as u32),
            ms(percentile(&times, 1.0))
        );
        pods(&bed, false).await;
        pods(&bed, true).await;
    });
}
