//! `tinylet doctor`: a preflight of the device, run where the agent would run, with the same
//! configuration `tinylet run` would resolve.
//!
//! Each check yields a [`Finding`]: a verdict (ok, warn, fail), what was seen, and the fix. The
//! checks are functions over an injected root path (`/` on the device, a fake /proc and /sys
//! tree in tests) or over numbers and answers already fetched; the I/O that fetches them
//! (statvfs, the CRI calls, the API server GET) stays in [`collect`] and the `runtime` and
//! `apiserver` fetchers. Doctor only reads: it creates no directory, socket, cgroup or file.
//!
//! A `fail` means the agent cannot run pods on this device as configured; a `warn` means it can,
//! but something will bite later (no NTP, little space, a missing optional module).

pub mod apiserver;
pub mod host;
pub mod kernel;
pub mod runtime;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::cli::DoctorFlags;
use crate::config::{self, AgentConfig};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine as it is.
    Ok,
    /// Not applicable to this configuration (e.g. the API server on a standalone node).
    Skip,
    /// The agent runs, but something should be fixed.
    Warn,
    /// The agent cannot run pods as configured.
    Fail,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Skip => "skip",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable dotted name (`kernel.cgroups`, `runtime.cri`, ...) for fleet tooling.
    pub check: &'static str,
    pub verdict: Verdict,
    /// What was seen.
    pub detail: String,
    /// What to do about it; empty when nothing is to be done.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Finding {
    /// A passing check.
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    /// A check that does not apply here.
    pub fn skip(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Skip,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    /// A warning with its fix.
    pub fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    /// A failure with its fix.
    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// Every finding of one run, and what it ran against.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub node: String,
    pub board: String,
    pub config_file: Option<PathBuf>,
    pub container_runtime_endpoint: String,
    pub root_dir: PathBuf,
    pub checks: Vec<Finding>,
    /// How long the checks took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Report {
    /// The worst verdict of all checks.
    pub fn worst(&self) -> Verdict {
        self.checks
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// 0 when the node can work (warnings allowed), 1 when any check failed.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.worst() == Verdict::Fail)
    }

    fn count(&self, v: Verdict) -> usize {
        self.checks.iter().filter(|f| f.verdict == v).count()
    }

    /// The report as one JSON document (checks, counts, `ready`).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert(
                "summary".into(),
                serde_json::json!({
                    "ok": self.count(Verdict::Ok),
                    "skip": self.count(Verdict::Skip),
                    "warn": self.count(Verdict::Warn),
                    "fail": self.count(Verdict::Fail),
                }),
            );
            m.insert("ready".into(), (self.worst() != Verdict::Fail).into());
        }
        let mut s = v.to_string();
        s.push('\n');
        s
    }

    /// The report as a table for a terminal: one line per check, its fix indented below.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "node {} (board {}, runtime {}, root {})",
            self.node,
            self.board,
            self.container_runtime_endpoint,
            self.root_dir.display()
        );
        let width = self.checks.iter().map(|f| f.check.len()).max().unwrap_or(0);
        for f in &self.checks {
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                f.verdict.word(),
                f.check,
                f.detail
            );
            if !f.fix.is_empty() {
                let _ = writeln!(out, "{:<4}  {:<width$}  fix: {}", "", "", f.fix);
            }
        }
        let _ = writeln!(
            out,
            "{} ok, {} warn, {} fail, {} skipped: {} ({} ms)",
            self.count(Verdict::Ok),
            self.count(Verdict::Warn),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip),
            if self.worst() == Verdict::Fail {
                "this node cannot run pods as configured"
            } else {
                "this node can run pods"
            },
            self.elapsed_ms
        );
        out
    }
}

/// Runs every check for `cfg` on the host whose /proc and /sys are under `root`.
pub fn collect(cfg: &AgentConfig, root: &Path, node_name: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let release = kernel::release(root);
    out.push(kernel::version(&release));
    let evidence = kernel::Evidence::read(root, &release);
    out.push(kernel::namespaces(root));
    out.push(kernel::cgroups(root, &release));
    out.push(kernel::overlayfs(&evidence));
    out.push(kernel::cni_modules(&evidence));
    out.push(kernel::proxy_modules(cfg.proxy_mode, &evidence));

    let (version, status, sandbox) = runtime::fetch(cfg);
    out.extend(runtime::check(
        &cfg.container_runtime_endpoint,
        &version,
        status.as_ref(),
        sandbox.as_ref(),
        cfg.cgroup_driver,
    ));
    let cni_dir = status
        .as_ref()
        .ok()
        .and_then(runtime::cni_conf_dir)
        .unwrap_or_else(|| PathBuf::from("/etc/cni/net.d"));
    out.push(host::cni_config(&cni_dir));

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    out.push(host::clock(now, build_year(), host::ntp_synchronised(root)));
    out.push(host::disk(
        "disk.root-dir",
        &cfg.root_dir,
        host::statvfs(&cfg.root_dir),
        cfg,
    ));
    let image_fs = status
        .as_ref()
        .ok()
        .and_then(runtime::containerd_root)
        .unwrap_or_else(|| PathBuf::from("/var/lib/containerd"));
    out.push(host::disk(
        "disk.image-fs",
        &image_fs,
        host::statvfs(&image_fs),
        cfg,
    ));
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    out.push(host::memory(&meminfo, cfg));
    out.push(host::node_name(node_name));
    out.push(apiserver::check(cfg));
    out
}

/// The year of the commit this binary was built from (a floor for the clock).
fn build_year() -> i64 {
    env!("TINYLET_BUILD_YEAR").parse().unwrap_or(2025)
}

/// `tinylet doctor`.
pub fn doctor_main(flags: DoctorFlags) -> i32 {
    let started = Instant::now();
    crate::logging::init(flags.run.verbosity.unwrap_or(0));
    let resolved = match config::resolve(&crate::agent::overrides(&flags.run)) {
        Ok(r) => r,
        Err(e) => {
            let report = Report {
                node: String::new(),
                board: flags.run.board.clone().unwrap_or_default(),
                config_file: flags.run.config.as_ref().map(PathBuf::from),
                container_runtime_endpoint: String::new(),
                root_dir: PathBuf::new(),
                checks: vec![Finding::fail(
                    "config",
                    e.to_string(),
                    "correct the config file or flag named above; `tinylet run --help` lists them",
                )],
                elapsed_ms: 0,
            };
            print_report(&report, flags.json);
            return report.exit_code();
        }
    };
    let cfg = resolved.config;
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let node = cfg.node_name(&hostname);
    let mut checks = vec![config_finding(&cfg, &resolved.warnings)];
    checks.extend(collect(&cfg, Path::new("/"), &node));
    let report = Report {
        node,
        board: cfg.board.clone(),
        config_file: cfg.config_file.clone(),
        container_runtime_endpoint: cfg.container_runtime_endpoint.clone(),
        root_dir: cfg.root_dir.clone(),
        checks,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    print_report(&report, flags.json);
    report.exit_code()
}

fn print_report(report: &Report, json: bool) {
    if json {
        print!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
}

/// The configuration resolved; fields it ignored are a warning.
fn config_finding(cfg: &AgentConfig, warnings: &[config::ConfigWarning]) -> Finding {
    let source = match &cfg.config_file {
        Some(p) => format!("{} on board {}", p.display(), cfg.board),
        None => format!("no config file, board {}", cfg.board),
    };
    if warnings.is_empty() {
        return Finding::ok("config", source);
    }
    let list: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    Finding::warn(
        "config",
        format!("{source}; {}", list.join("; ")),
        "remove or correct the ignored fields",
    )
}

#[cfg(test)]
mod tests;
