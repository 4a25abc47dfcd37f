//! The `tinylet` binary's command line as a user meets it: every command's `--help`, the
//! wording of the errors a first run hits, and `run --once` against a runtime that is not there.
//! None of these needs the test bed; the agent they start works in its own temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tinylet");

fn tinylet(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tinylet")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A private temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tinylet-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the command to its end, killing it after `limit`: exit code (`None` if killed), stdout
/// and stderr.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String, String) {
    let dir = TempDir::new("out");
    let out = std::fs::File::create(dir.0.join("out")).unwrap();
    let err = std::fs::File::create(dir.0.join("err")).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn tinylet");
    let t0 = Instant::now();
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |n: &str| std::fs::read_to_string(dir.0.join(n)).unwrap_or_default();
    (code, read("out"), read("err"))
}

#[test]
fn every_command_prints_its_own_help_and_succeeds() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &[
                "tinylet [run]",
                "tinylet status",
                "tinylet proxy",
                "tinylet ipvs",
            ],
        ),
        (&["help"], &["tinylet status"]),
        (
            &["run", "--help"],
            &[
                "usage: tinylet run",
                "--root-dir DIR",
                "(default /var/lib/tinylet)",
                "--pod-manifest-path DIR",
                "(default /etc/tinylet/manifests)",
                "(default unix:///run/containerd/containerd.sock)",
                "--status-socket PATH",
                "(default ROOT-DIR/tinylet.sock)",
                "--once-timeout DURATION",
                "raspberry-pi-4",
                "generic-aarch64-gateway",
                "exit codes of --once",
            ],
        ),
        (
            &["status", "--help"],
            &[
                "usage: tinylet status",
                "--root-dir DIR",
                "--status-socket PATH",
                "--json",
            ],
        ),
        (
            &["proxy", "--help"],
            &[
                "usage: tinylet proxy",
                "--proxy-manifest-path",
                "(default rr)",
            ],
        ),
        (
            &["ipvs", "--help"],
            &["tinylet ipvs list", "tinylet ipvs flush"],
        ),
        (&["help", "status"], &["usage: tinylet status"]),
    ];
    for (args, wanted) in cases {
        let out = tinylet(args);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "tinylet {args:?} failed: {stdout}{}",
            text(&out.stderr)
        );
        for w in *wanted {
            assert!(
                stdout.contains(w),
                "tinylet {args:?} lacks {w:?}:\n{stdout}"
            );
        }
    }
}

#[test]
fn a_wrong_flag_names_it_and_the_help_to_read_with_exit_2() {
    let out = tinylet(&["status", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--bogus") && err.contains("tinylet status --help"),
        "{err}"
    );
}

#[test]
fn status_without_an_agent_says_where_it_looked_and_how_to_point_elsewhere() {
    let dir = TempDir::new("status");
    let root = dir.0.display().to_string();
    let out = tinylet(&["status", "--root-dir", &root]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let socket = dir.0.join("tinylet.sock");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(
        err.contains("--root-dir DIR") && err.contains("--status-socket PATH"),
        "{err}"
    );
}

#[test]
fn a_tcp_runtime_endpoint_is_refused_as_unsupported() {
    let dir = TempDir::new("tcp");
    let root = dir.0.join("root").display().to_string();
    let out = tinylet(&[
        "run",
        "--root-dir",
        &root,
        "--container-runtime-endpoint",
        "tcp://127.0.0.1:1",
        "--once",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("only unix:// endpoints are supported"),
        "{err}"
    );
    assert!(!err.contains("is containerd running"), "{err}");
}

fn once_args(dir: &Path, endpoint: &str) -> Vec<String> {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    vec![
        "run".into(),
        "--root-dir".into(),
        dir.join("root").display().to_string(),
        "--pod-manifest-path".into(),
        manifests.display().to_string(),
        "--container-runtime-endpoint".into(),
        endpoint.into(),
        "--hostname-override".into(),
        "cli-test".into(),
        "--once".into(),
        "--once-timeout".into(),
        "2s".into(),
    ]
}

#[test]
fn once_without_a_runtime_gives_up_at_its_bound_with_exit_3() {
    let dir = TempDir::new("noruntime");
    let endpoint = format!("unix://{}/absent.sock", dir.0.display());
    let (code, stdout, stderr) = run_bounded(
        Command::new(BIN).args(once_args(&dir.0, &endpoint)),
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("result: exit 3"), "{stdout}");
    assert!(stdout.contains(&endpoint), "{stdout}");

    let mut args = once_args(&dir.0, &endpoint);
    args.push("--json".into());
    let (code, stdout, _) = run_bounded(Command::new(BIN).args(args), Duration::from_secs(60));
    assert_eq!(code, Some(3));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    assert_eq!(v["once"]["result"], "runtimeUnavailable");
    assert_eq!(v["once"]["exitCode"], 3);
}
