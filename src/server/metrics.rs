//! Prometheus text (format 0.0.4): `/metrics/resource`, the kubelet's resource metrics that
//! metrics-server reads (names, labels, HELP text with the stability level, as the kubelet's
//! `pkg/kubelet/metrics/collectors/resource_metrics.go` declares them), rendered from a
//! [`Summary`]; and `/metrics`, tinylet's own: pods and containers the node runs, restart
//! counts, kubelet API responses by code, how long a stats collection took (the runtime's
//! stats calls plus /proc and cgroup reads), runtime (CRI) call latency and errors by method,
//! record store writes and failures, and the in-process service proxy's sync time. Rendering
//! is pure; the counters are shared state the server, the runtime client, the store and the
//! proxy update (`crate::latency` histograms and atomics: no lock on their paths).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::stats::Summary;
use super::view::NodeView;
use crate::k8s::coordination::parse_time;

/// The Prometheus text content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value escaped for the text format (backslash, double quote, newline).
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line; `at` adds the sample's timestamp (ms), as the kubelet does.
fn sample(out: &mut String, name: &str, l: &[(&str, &str)], value: f64, at: Option<SystemTime>) {
    let _ = match at {
        Some(t) => writeln!(out, "{name}{} {value} {}", labels(l), ms(t)),
        None => writeln!(out, "{name}{} {value}", labels(l)),
    };
}

fn time(s: &str) -> Option<SystemTime> {
    parse_time(s)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `/metrics/resource` from a summary; `scrape_error` is 1 when the collection had problems.
pub fn resource(summary: &Summary, scrape_error: bool) -> String {
    let mut out = String::new();
    let pods = &summary.pods;
    let containers = || {
        pods.iter().flat_map(|p| {
            p.containers
                .iter()
                .map(move |c| (c, p.pod_ref.namespace.as_str(), p.pod_ref.name.as_str()))
        })
    };
    // Families in name order, as client_golang writes them.
    family(
        &mut out,
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    for (c, ns, pod) in containers() {
        let Some((cpu, u)) = c
            .cpu
            .as_ref()
            .and_then(|x| Some((x, x.usage_core_nano_seconds?)))
        else {
            continue;
        };
        let l = [
            ("container", c.name.as_str()),
            ("namespace", ns),
            ("pod", pod),
        ];
        sample(
            &mut out,
            "container_cpu_usage_seconds_total",
            &l,
            seconds(u),
            time(&cpu.time),
        );
    }
    family(
        &mut out,
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        "gauge",
    );
    for (c, ns, pod) in containers() {
        let Some((m, w)) = c
            .memory
            .as_ref()
            .and_then(|x| Some((x, x.working_set_bytes?)))
        else {
            continue;
        };
        let l = [
            ("container", c.name.as_str()),
            ("namespace", ns),
            ("pod", pod),
        ];
        sample(
            &mut out,
            "container_memory_working_set_bytes",
            &l,
            w as f64,
            time(&m.time),
        );
    }
    family(
        &mut out,
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        "gauge",
    );
    for (c, ns, pod) in containers() {
        if let Some(t) = time(&c.start_time) {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let l = [
                ("container", c.name.as_str()),
                ("namespace", ns),
                ("pod", pod),
            ];
            sample(&mut out, "container_start_time_seconds", &l, secs, Some(t));
        }
    }
    let node = &summary.node;
    family(
        &mut out,
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    if let Some((cpu, u)) = node
        .cpu
        .as_ref()
        .and_then(|x| Some((x, x.usage_core_nano_seconds?)))
    {
        sample(
            &mut out,
            "node_cpu_usage_seconds_total",
            &[],
            seconds(u),
            time(&cpu.time),
        );
    }
    family(
        &mut out,
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        "gauge",
    );
    if let Some((m, w)) = node
        .memory
        .as_ref()
        .and_then(|x| Some((x, x.working_set_bytes?)))
    {
        sample(
            &mut out,
            "node_memory_working_set_bytes",
            &[],
            w as f64,
            time(&m.time),
        );
    }
    family(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    for p in pods {
        if let Some(u) = p.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds) {
            let l = [
                ("namespace", p.pod_ref.namespace.as_str()),
                ("pod", p.pod_ref.name.as_str()),
            ];
            let at = p.cpu.as_ref().and_then(|c| time(&c.time));
            sample(&mut out, "pod_cpu_usage_seconds_total", &l, seconds(u), at);
        }
    }
    family(
        &mut out,
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        "gauge",
    );
    for p in pods {
        if let Some(w) = p.memory.as_ref().and_then(|m| m.working_set_bytes) {
            let l = [
                ("namespace", p.pod_ref.namespace.as_str()),
                ("pod", p.pod_ref.name.as_str()),
            ];
            let at = p.memory.as_ref().and_then(|m| time(&m.time));
            sample(&mut out, "pod_memory_working_set_bytes", &l, w as f64, at);
        }
    }
    family(
        &mut out,
        "scrape_error",
        "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    sample(
        &mut out,
        "scrape_error",
        &[],
        if scrape_error { 1.0 } else { 0.0 },
        None,
    );
    out
}

/// Upper bounds (seconds) of the stats collection histogram.
pub const COLLECT_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; COLLECT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    responses: BTreeMap<u16, u64>,
    collect: Histogram,
    collect_errors: u64,
}

/// The server's own counters (cheap to update, read on `/metrics`).
#[derive(Debug, Default)]
pub struct Counters(Mutex<Inner>);

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One response with status `code` was written.
    pub fn response(&self, code: u16) {
        *self.lock().responses.entry(code).or_default() += 1;
    }

    /// One stats collection took `took` (and had problems or not).
    pub fn collected(&self, took: Duration, failed: bool) {
        let mut g = self.lock();
        let secs = took.as_secs_f64();
        for (i, le) in COLLECT_BUCKETS.iter().enumerate() {
            if secs <= *le {
                if let Some(c) = g.collect.counts.get_mut(i) {
                    *c += 1;
                }
            }
        }
        g.collect.count += 1;
        g.collect.sum += secs;
        if failed {
            g.collect_errors += 1;
        }
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines (the family lines are the caller's).
fn histogram(out: &mut String, name: &str, l: &[(&str, &str)], s: &crate::latency::Snapshot) {
    let bucket = format!("{name}_bucket");
    for (le, n) in &s.buckets {
        let le = le.to_string();
        let mut with = l.to_vec();
        with.push(("le", &le));
        sample(out, &bucket, &with, *n as f64, None);
    }
    let mut with = l.to_vec();
    with.push(("le", "+Inf"));
    sample(out, &bucket, &with, s.count as f64, None);
    sample(out, &format!("{name}_sum"), l, s.sum_seconds, None);
    sample(out, &format!("{name}_count"), l, s.count as f64, None);
}

/// Runtime calls by method, record store writes and proxy syncs of this process.
fn process_metrics(out: &mut String) {
    let ops: Vec<(&str, crate::latency::Snapshot)> = crate::cri::metrics::called()
        .map(|(m, h)| (m, h.snapshot()))
        .collect();
    family(
        out,
        "tinylet_runtime_operations_duration_seconds",
        "Duration of runtime (CRI) calls by method, as the caller waits for them",
        "histogram",
    );
    for (m, s) in &ops {
        let l = [("operation_type", *m)];
        histogram(out, "tinylet_runtime_operations_duration_seconds", &l, s);
    }
    family(
        out,
        "tinylet_runtime_operations_errors_total",
        "Runtime (CRI) calls that failed, by method",
        "counter",
    );
    for (m, s) in &ops {
        let l = [("operation_type", *m)];
        sample(
            out,
            "tinylet_runtime_operations_errors_total",
            &l,
            s.errors as f64,
            None,
        );
    }
    use std::sync::atomic::Ordering::Relaxed;
    let w = &crate::store::WRITES;
    family(
        out,
        "tinylet_store_writes_total",
        "Records written (put) or removed (delete) durably in the node's store",
        "counter",
    );
    for (op, n) in [("delete", &w.deletes), ("put", &w.puts)] {
        let n = n.load(Relaxed) as f64;
        sample(
            out,
            "tinylet_store_writes_total",
            &[("operation", op)],
            n,
            None,
        );
    }
    family(
        out,
        "tinylet_store_write_failures_total",
        "Store writes the medium refused (full, read-only or failing)",
        "counter",
    );
    for (op, n) in [("delete", &w.delete_failures), ("put", &w.put_failures)] {
        let n = n.load(Relaxed) as f64;
        let l = [("operation", op)];
        sample(out, "tinylet_store_write_failures_total", &l, n, None);
    }
    let sync = crate::proxy::backend::SYNC_DURATION.snapshot();
    family(
        out,
        "tinylet_proxy_sync_duration_seconds",
        "Duration of the in-process service proxy's rule syncs (read, diff, apply)",
        "histogram",
    );
    histogram(out, "tinylet_proxy_sync_duration_seconds", &[], &sync);
    family(
        out,
        "tinylet_proxy_sync_errors_total",
        "Service proxy syncs that failed or left rules unapplied",
        "counter",
    );
    sample(
        out,
        "tinylet_proxy_sync_errors_total",
        &[],
        sync.errors as f64,
        None,
    );
}

/// `/metrics`: tinylet's own metrics from the node view and the server's counters.
pub fn own(view: &NodeView, counters: &Counters) -> String {
    let mut out = String::new();
    let pods = view.pods();
    let mut restarts = Vec::new();
    let (mut running, mut not_running) = (0u64, 0u64);
    for p in &pods {
        for c in p.spec.init_containers.iter().chain(&p.spec.containers) {
            if let Some(run) = view.container(&p.metadata.uid, &c.name) {
                if run.running {
                    running += 1;
                } else {
                    not_running += 1;
                }
                restarts.push((
                    p.metadata.namespace.clone(),
                    p.metadata.name.clone(),
                    c.name.clone(),
                    run.attempt,
                ));
            }
        }
    }
    restarts.sort();
    let g = counters.lock();
    family(
        &mut out,
        "tinylet_containers",
        "Containers of this node's pods by state, as last seen",
        "gauge",
    );
    sample(
        &mut out,
        "tinylet_containers",
        &[("state", "not_running")],
        not_running as f64,
        None,
    );
    sample(
        &mut out,
        "tinylet_containers",
        &[("state", "running")],
        running as f64,
        None,
    );
    family(
        &mut out,
        "tinylet_container_restarts",
        "Restart count of each container of this node's pods",
        "gauge",
    );
    for (ns, pod, c, n) in &restarts {
        let l = [
            ("container", c.as_str()),
            ("namespace", ns.as_str()),
            ("pod", pod.as_str()),
        ];
        sample(
            &mut out,
            "tinylet_container_restarts",
            &l,
            f64::from(*n),
            None,
        );
    }
    family(
        &mut out,
        "tinylet_kubelet_api_responses_total",
        "Responses of the kubelet API by HTTP status code",
        "counter",
    );
    for (code, n) in &g.responses {
        sample(
            &mut out,
            "tinylet_kubelet_api_responses_total",
            &[("code", &code.to_string())],
            *n as f64,
            None,
        );
    }
    family(&mut out, "tinylet_pods", "Pods this node runs", "gauge");
    sample(&mut out, "tinylet_pods", &[], pods.len() as f64, None);
    family(
        &mut out,
        "tinylet_stats_collect_duration_seconds",
        "Time to collect resource stats (runtime stats calls, /proc and cgroup reads)",
        "histogram",
    );
    for (le, n) in COLLECT_BUCKETS.iter().zip(g.collect.counts) {
        sample(
            &mut out,
            "tinylet_stats_collect_duration_seconds_bucket",
            &[("le", &le.to_string())],
            n as f64,
            None,
        );
    }
    let count = g.collect.count as f64;
    sample(
        &mut out,
        "tinylet_stats_collect_duration_seconds_bucket",
        &[("le", "+Inf")],
        count,
        None,
    );
    sample(
        &mut out,
        "tinylet_stats_collect_duration_seconds_sum",
        &[],
        g.collect.sum,
        None,
    );
    sample(
        &mut out,
        "tinylet_stats_collect_duration_seconds_count",
        &[],
        count,
        None,
    );
    family(
        &mut out,
        "tinylet_stats_collect_errors_total",
        "Stats collections that could not read everything",
        "counter",
    );
    sample(
        &mut out,
        "tinylet_stats_collect_errors_total",
        &[],
        g.collect_errors as f64,
        None,
    );
    drop(g);
    process_metrics(&mut out);
    out
}

#[cfg(test)]
mod tests;
