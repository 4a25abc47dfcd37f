//! The routes: `/healthz`, `/pods`, `/containerLogs/{ns}/{pod}/{container}`. Each reads the
//! agent through the [`NodeView`] only. Error bodies use the kubelet's wording.

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use super::conn::TlsConn;
use super::http;
use super::logs::LogOptions;
use super::logstream;
use super::path::Target;
use super::view::NodeView;
use crate::runtime::spec;

/// What a route answered: keep the connection for another request or not.
pub type Keep = bool;

/// Dispatches an authorized GET.
pub async fn route(
    conn: &mut TlsConn,
    target: &Target,
    view: &NodeView,
    pod_logs_dir: &Path,
    keep: bool,
) -> std::io::Result<Keep> {
    let segs: Vec<&str> = target.segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["healthz"] => {
            conn.write_all(&http::response(
                200,
                "text/plain; charset=utf-8",
                b"ok",
                keep,
            ))
            .await?;
            Ok(keep)
        }
        ["pods"] => {
            let items: Vec<serde_json::Value> = view
                .pods()
                .iter()
                .filter_map(|p| serde_json::to_value(&**p).ok())
                .collect();
            let list =
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
            let body = serde_json::to_vec(&list).unwrap_or_default();
            conn.write_all(&http::response(200, "application/json", &body, keep))
                .await?;
            Ok(keep)
        }
        ["containerLogs", ns, pod, container] => {
            container_logs(conn, target, view, pod_logs_dir, ns, pod, container, keep).await
        }
        _ => {
            conn.write_all(&http::text(404, "404 page not found", keep))
                .await?;
            Ok(keep)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn container_logs(
    conn: &mut TlsConn,
    target: &Target,
    view: &NodeView,
    pod_logs_dir: &Path,
    ns: &str,
    pod_name: &str,
    container: &str,
    keep: bool,
) -> std::io::Result<Keep> {
    let opts = match LogOptions::from_query(target, SystemTime::now()) {
        Ok(o) => o,
        Err(why) => {
            log::debug!("kubelet API: container logs {ns}/{pod_name}/{container}: {why}");
            conn.write_all(&http::text(422, r#"{"message": "Invalid request."}"#, keep))
                .await?;
            return Ok(keep);
        }
    };
    let Some(pod) = view.pod(ns, pod_name) else {
        let msg = format!("pod {pod_name:?} does not exist");
        conn.write_all(&http::text(404, &msg, keep)).await?;
        return Ok(keep);
    };
    let in_spec = pod
        .spec
        .containers
        .iter()
        .chain(&pod.spec.init_containers)
        .any(|c| c.name == container);
    if !in_spec {
        let msg = format!("container {container:?} not found in pod {pod_name:?}");
        conn.write_all(&http::text(404, &msg, keep)).await?;
        return Ok(keep);
    }
    let uid = pod.metadata.uid.clone();
    // The layout the executor gives the runtime: <podLogsDir>/<ns>_<name>_<uid>/<container>/.
    let root = pod_logs_dir.display().to_string();
    let pod_dir = std::path::PathBuf::from(spec::pod_log_dir(&pod, &root));
    let dir = pod_dir.join(container);
    let run = view.container(&uid, container);
    let attempt = run.as_ref().map_or(0, |r| r.attempt);
    let file = match logstream::pick(&logstream::attempts(&dir), attempt, opts.previous) {
        Ok(a) => a.map(|a| pod_dir.join(spec::container_log_path(container, a))),
        Err(logstream::NoPrevious) => {
            let msg = format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            );
            conn.write_all(&http::text(400, &msg, keep)).await?;
            return Ok(keep);
        }
    };
    let (view, uid, name) = (view.clone(), uid.clone(), container.to_string());
    let running = move || {
        view.container(&uid, &name)
            .is_some_and(|r| r.running && r.attempt == attempt)
    };
    logstream::stream(conn, file, &opts, running).await?;
    Ok(keep)
}
