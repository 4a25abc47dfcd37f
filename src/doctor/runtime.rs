//! Container runtime checks over CRI: reachable (Version), ready (Status conditions), and its
//! CRI config compatible with tinylet (Status `verbose` info): cgroup driver, sandbox image
//! present, stream server on loopback. [`fetch`] makes the calls; [`check`] only reads answers.
//!
//! containerd's verbose Status puts its CRI plugin config, as JSON, under the info key
//! `config` (field names as in containerd's `PluginConfig`: `sandboxImage`,
//! `streamServerAddress`, `systemdCgroup`, `containerd.runtimes.<name>.options.SystemdCgroup`,
//! `cni.confDir`, `containerdRootDir`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::Finding;
use crate::config::{AgentConfig, CgroupDriver};
use crate::cri::proto::{StatusResponse, VersionResponse};
use crate::cri::{CriClient, CriOptions};

/// How long each CRI call may take: a runtime that needs longer is as good as down here.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The answers [`check`] reads; errors are the CRI client's message.
pub type Answers = (
    Result<VersionResponse, String>,
    Result<StatusResponse, String>,
    Option<Result<bool, String>>,
);

/// Version, verbose Status and whether the sandbox image is present.
pub fn fetch(cfg: &AgentConfig) -> Answers {
    let client = match CriClient::new(
        &cfg.container_runtime_endpoint,
        CriOptions {
            call_timeout: CALL_TIMEOUT,
            ..CriOptions::default()
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            let e = e.to_string();
            return (Err(e.clone()), Err(e), None);
        }
    };
    smol::block_on(async {
        let version = client.version().await.map_err(|e| e.to_string());
        if version.is_err() {
            return (version, Err("not asked: Version failed".into()), None);
        }
        let status = client.status(true).await.map_err(|e| e.to_string());
        let sandbox = match status.as_ref().ok().and_then(sandbox_image) {
            Some(image) => Some(
                client
                    .image_status(&image, false)
                    .await
                    .map(|r| r.image.is_some())
                    .map_err(|e| e.to_string()),
            ),
            None => None,
        };
        (version, status, sandbox)
    })
}

/// The CRI plugin config from a verbose Status, if the runtime reports one.
pub fn cri_config(status: &StatusResponse) -> Option<Value> {
    serde_json::from_str(status.info.get("config")?).ok()
}

/// The sandbox (pause) image the runtime starts every pod with.
pub fn sandbox_image(status: &StatusResponse) -> Option<String> {
    let v = cri_config(status)?;
    v.get("sandboxImage")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The CNI config directory the runtime reads.
pub fn cni_conf_dir(status: &StatusResponse) -> Option<PathBuf> {
    let v = cri_config(status)?;
    v.pointer("/cni/confDir")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// containerd's root, where images and snapshots live (the image filesystem).
pub fn containerd_root(status: &StatusResponse) -> Option<PathBuf> {
    let v = cri_config(status)?;
    v.get("containerdRootDir")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Whether the runtime's default runc runtime uses the systemd cgroup driver.
pub fn uses_systemd_cgroup(config: &Value) -> bool {
    let default = config
        .pointer("/containerd/defaultRuntimeName")
        .and_then(Value::as_str)
        .unwrap_or("runc");
    let options = config
        .pointer(&format!(
            "/containerd/runtimes/{default}/options/SystemdCgroup"
        ))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let legacy = config
        .get("systemdCgroup")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    options || legacy
}

/// Every runtime finding from the answers.
pub fn check(
    endpoint: &str,
    version: &Result<VersionResponse, String>,
    status: Result<&StatusResponse, &String>,
    sandbox: Option<&Result<bool, String>>,
    driver: CgroupDriver,
) -> Vec<Finding> {
    let v = match version {
        Ok(v) => v,
        Err(e) => {
            return vec![Finding::fail(
                "runtime.cri",
                format!("no answer from {endpoint}: {e}"),
                "start containerd (`systemctl enable --now containerd`) or point \
                 --container-runtime-endpoint / containerRuntimeEndpoint at its socket",
            )];
        }
    };
    let mut out = vec![Finding::ok(
        "runtime.cri",
        format!(
            "{} {} (CRI {}) at {endpoint}",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        ),
    )];
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            out.push(Finding::fail(
                "runtime.status",
                format!("Status failed: {e}"),
                "look at containerd's log (`journalctl -u containerd`)",
            ));
            return out;
        }
    };
    out.push(conditions(status));
    let Some(config) = cri_config(status) else {
        out.push(Finding::warn(
            "runtime.config",
            "the runtime reports no CRI config in its verbose status (not containerd?): \
             cgroup driver, sandbox image and stream server not checked",
            "use containerd 1.6 or newer with its CRI plugin",
        ));
        return out;
    };
    out.push(cgroup_driver(&config, driver));
    out.push(sandbox_finding(&config, sandbox));
    out.push(stream_server(&config));
    out
}

fn conditions(status: &StatusResponse) -> Finding {
    const CHECK: &str = "runtime.status";
    let conds = status
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let find = |t: &str| conds.iter().find(|c| c.condition_type == t);
    match (find("RuntimeReady"), find("NetworkReady")) {
        (Some(r), _) if !r.status => Finding::fail(
            CHECK,
            format!("RuntimeReady is false: {} {}", r.reason, r.message),
            "look at containerd's log (`journalctl -u containerd`)",
        ),
        (_, Some(n)) if !n.status => Finding::warn(
            CHECK,
            format!(
                "NetworkReady is false ({}: {}): only hostNetwork pods can run",
                n.reason, n.message
            ),
            "install containernetworking-plugins and a CNI config (see cni.config)",
        ),
        (None, _) => Finding::warn(
            CHECK,
            "the runtime reports no RuntimeReady condition",
            "use containerd 1.6 or newer",
        ),
        _ => Finding::ok(CHECK, "RuntimeReady and NetworkReady"),
    }
}

fn cgroup_driver(config: &Value, driver: CgroupDriver) -> Finding {
    const CHECK: &str = "runtime.cgroup-driver";
    let systemd = uses_systemd_cgroup(config);
    match (driver, systemd) {
        (CgroupDriver::Cgroupfs, false) => Finding::ok(CHECK, "cgroupfs, as tinylet"),
        (CgroupDriver::Cgroupfs, true) => Finding::fail(
            CHECK,
            "containerd uses the systemd cgroup driver; tinylet manages cgroups with cgroupfs",
            "set `SystemdCgroup = false` under \
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options] \
             (the tinylet package's drop-in does) and restart containerd",
        ),
    }
}

fn sandbox_finding(config: &Value, present: Option<&Result<bool, String>>) -> Finding {
    const CHECK: &str = "runtime.sandbox-image";
    let image = config
        .get("sandboxImage")
        .and_then(Value::as_str)
        .unwrap_or("");
    if image.is_empty() {
        return Finding::fail(
            CHECK,
            "containerd names no sandbox image",
            "set sandbox_image in containerd's CRI config",
        );
    }
    match present {
        Some(Ok(true)) => Finding::ok(CHECK, format!("{image} present")),
        Some(Ok(false)) => Finding::warn(
            CHECK,
            format!("{image} is not present: the first pod pulls it (and fails offline)"),
            format!(
                "pull or import it now: `ctr -n k8s.io images pull {image}` (or `ctr -n k8s.io \
                 images import` on a device without a registry)"
            ),
        ),
        Some(Err(e)) => Finding::warn(
            CHECK,
            format!("{image}: ImageStatus failed: {e}"),
            "look at containerd's log",
        ),
        None => Finding::warn(CHECK, format!("{image}: not checked"), ""),
    }
}

fn stream_server(config: &Value) -> Finding {
    const CHECK: &str = "runtime.stream-server";
    let address = config
        .get("streamServerAddress")
        .and_then(Value::as_str)
        .unwrap_or("");
    let port = config
        .get("streamServerPort")
        .and_then(Value::as_str)
        .unwrap_or("");
    let loopback = address
        .parse::<std::net::IpAddr>()
        .is_ok_and(|a| a.is_loopback())
        || address == "localhost";
    if loopback {
        Finding::ok(
            CHECK,
            format!("exec/attach/port-forward on {address}:{port}"),
        )
    } else {
        let shown = if address.is_empty() {
            "all addresses"
        } else {
            address
        };
        Finding::warn(
            CHECK,
            format!(
                "the exec/attach stream server listens on {shown}:{port}: anyone who can reach \
                 the device may use a stream URL"
            ),
            "set stream_server_address = \"127.0.0.1\" in containerd's CRI config (the tinylet \
             package's drop-in does)",
        )
    }
}
