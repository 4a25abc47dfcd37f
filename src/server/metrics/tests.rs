use super::*;
use crate::server::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};
use crate::server::view::ContainerRun;

fn summary() -> Summary {
    let cpu = |ns: u64| {
        Some(CpuStats {
            time: "2024-05-01T12:00:00Z".into(),
            usage_nano_cores: None,
            usage_core_nano_seconds: Some(ns),
        })
    };
    let mem = |b: u64| {
        Some(MemoryStats {
            time: "2024-05-01T12:00:00Z".into(),
            working_set_bytes: Some(b),
            ..Default::default()
        })
    };
    Summary {
        node: NodeStats {
            node_name: "pi".into(),
            start_time: "2024-05-01T00:00:00Z".into(),
            cpu: cpu(2_500_000_000),
            memory: mem(1 << 20),
            ..Default::default()
        },
        pods: vec![PodStats {
            pod_ref: PodReference {
                name: "web".into(),
                namespace: "edge\"x".into(),
                uid: "u".into(),
            },
            start_time: "2024-05-01T11:00:00Z".into(),
            containers: vec![ContainerStats {
                name: "main".into(),
                start_time: "2024-05-01T11:00:01Z".into(),
                cpu: cpu(500_000_000),
                memory: mem(4096),
                ..Default::default()
            }],
            cpu: cpu(600_000_000),
            memory: mem(8192),
            ..Default::default()
        }],
    }
}

/// Names, labels (alphabetical: container, namespace, pod), HELP with the stability level and
/// TYPE lines as the kubelet's resource metrics collector declares them; sample timestamps in
/// milliseconds.
#[test]
fn resource_metrics_text_is_the_kubelets() {
    let text = resource(&summary(), false);
    let want = [
        "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "# TYPE container_cpu_usage_seconds_total counter",
        "container_cpu_usage_seconds_total{container=\"main\",namespace=\"edge\\\"x\",pod=\"web\"} 0.5 1714564800000",
        "# TYPE container_memory_working_set_bytes gauge",
        "container_memory_working_set_bytes{container=\"main\",namespace=\"edge\\\"x\",pod=\"web\"} 4096 1714564800000",
        "# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds",
        "container_start_time_seconds{container=\"main\",namespace=\"edge\\\"x\",pod=\"web\"} 1714561201 1714561201000",
        "# TYPE node_cpu_usage_seconds_total counter",
        "node_cpu_usage_seconds_total 2.5 1714564800000",
        "node_memory_working_set_bytes 1048576 1714564800000",
        "pod_cpu_usage_seconds_total{namespace=\"edge\\\"x\",pod=\"web\"} 0.6 1714564800000",
        "pod_memory_working_set_bytes{namespace=\"edge\\\"x\",pod=\"web\"} 8192 1714564800000",
        "# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
        "# TYPE scrape_error gauge",
        "scrape_error 0",
    ];
    for line in want {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(resource(&summary(), true)
        .lines()
        .any(|l| l == "scrape_error 1"));
    // Every family has HELP then TYPE, once; names are in order.
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 8);
}

#[test]
fn an_empty_summary_still_has_every_family() {
    let text = resource(&Summary::default(), true);
    assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 8);
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

#[test]
fn own_metrics_count_pods_containers_responses_and_collections() {
    let view = NodeView::default();
    let pod: crate::k8s::pod::Pod = serde_json::from_str(
        r#"{"metadata":{"name":"web","namespace":"edge","uid":"u1"},
            "spec":{"containers":[{"name":"a","image":"i"},{"name":"b","image":"i"}]}}"#,
    )
    .unwrap();
    view.set_pods(vec![std::sync::Arc::new(pod)]);
    view.put_container(
        "u1",
        "a",
        ContainerRun {
            attempt: 3,
            running: true,
        },
    );
    view.put_container(
        "u1",
        "b",
        ContainerRun {
            attempt: 0,
            running: false,
        },
    );
    let c = Counters::default();
    c.response(200);
    c.response(200);
    c.response(403);
    c.collected(Duration::from_millis(20), false);
    c.collected(Duration::from_secs(3), true);
    let text = own(&view, &c);
    for line in [
        "tinylet_pods 1",
        "tinylet_containers{state=\"running\"} 1",
        "tinylet_containers{state=\"not_running\"} 1",
        "tinylet_container_restarts{container=\"a\",namespace=\"edge\",pod=\"web\"} 3",
        "tinylet_kubelet_api_responses_total{code=\"200\"} 2",
        "tinylet_kubelet_api_responses_total{code=\"403\"} 1",
        "tinylet_stats_collect_duration_seconds_bucket{le=\"0.01\"} 0",
        "tinylet_stats_collect_duration_seconds_bucket{le=\"0.025\"} 1",
        "tinylet_stats_collect_duration_seconds_bucket{le=\"1\"} 1",
        "tinylet_stats_collect_duration_seconds_bucket{le=\"+Inf\"} 2",
        "tinylet_stats_collect_duration_seconds_count 2",
        "tinylet_stats_collect_errors_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// Runtime calls by method (only methods called appear), store writes and proxy syncs come
/// from the process-wide recorders; other tests record into them too, so counts are lower
/// bounds here.
#[test]
fn own_metrics_carry_runtime_store_and_proxy_figures() {
    let slot = crate::cri::metrics::index("ImageFsInfo");
    crate::cri::metrics::record(slot, Duration::from_millis(2), false);
    crate::cri::metrics::record(slot, Duration::from_secs(60), true);
    crate::proxy::backend::SYNC_DURATION.record(Duration::from_millis(30), false);
    let text = own(&NodeView::default(), &Counters::default());
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"))
    };
    let op = "operation_type=\"ImageFsInfo\"";
    assert!(
        value(&format!(
            "tinylet_runtime_operations_duration_seconds_bucket{{{op},le=\"0.0025\"}}"
        )) >= 1.0
    );
    let inf = value(&format!(
        "tinylet_runtime_operations_duration_seconds_bucket{{{op},le=\"+Inf\"}}"
    ));
    let le30 = value(&format!(
        "tinylet_runtime_operations_duration_seconds_bucket{{{op},le=\"30\"}}"
    ));
    assert!(inf >= le30 + 1.0, "the 60 s call is above every bound");
    assert!(value(&format!("tinylet_runtime_operations_errors_total{{{op}}}")) >= 1.0);
    assert!(value("tinylet_proxy_sync_duration_seconds_count") >= 1.0);
    for name in [
        "tinylet_store_writes_total{operation=\"put\"}",
        "tinylet_store_write_failures_total{operation=\"delete\"}",
    ] {
        assert!(value(name) >= 0.0);
    }
}

/// `promtool check metrics` accepts both texts (the Prometheus project's own linter). Under
/// CI=true a missing promtool fails the test; elsewhere the check is skipped with a note.
#[test]
fn promtool_accepts_both_texts() {
    let Some(promtool) = crate::server::metrics::tests::promtool() else {
        return;
    };
    let view = NodeView::default();
    let c = Counters::default();
    c.response(200);
    c.collected(Duration::from_millis(3), false);
    let version = crate::cri::metrics::index("Version");
    crate::cri::metrics::record(version, Duration::from_micros(700), false);
    crate::proxy::backend::SYNC_DURATION.record(Duration::from_millis(4), false);
    for text in [resource(&summary(), false), own(&view, &c)] {
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// promtool's path: `PROMTOOL`, else /usr/bin/promtool (Debian's `prometheus` package).
pub fn promtool() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("PROMTOOL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/promtool".into());
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "promtool is missing: {} does not exist (apt-get install prometheus, or set PROMTOOL)",
        p.display()
    );
    eprintln!(
        "promtool not found at {}: check skipped outside CI",
        p.display()
    );
    None
}
