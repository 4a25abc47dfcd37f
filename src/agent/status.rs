//! The local status socket behind `tinylet status`: the running agent answers each connection
//! with one JSON document (its desired-versus-actual view) and closes it. The socket is a unix
//! socket, mode 0600, at a path the configuration names; nothing listens on the network.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use smol::io::AsyncWriteExt;

/// The latest status document, shared between the agent loop (writer) and the socket (reader).
#[derive(Clone, Default)]
pub struct StatusCell(Arc<Mutex<String>>);

impl StatusCell {
    /// Replaces the document.
    pub fn set(&self, json: String) {
        if let Ok(mut g) = self.0.lock() {
            *g = json;
        }
    }

    /// The current document.
    pub fn get(&self) -> String {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Errors of the status socket, naming the path.
#[derive(Debug)]
pub struct StatusError {
    pub path: PathBuf,
    pub what: String,
    /// Nothing could be reached at the path (no socket, or nobody listening).
    pub connect: bool,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status socket {}: {}", self.path.display(), self.what)
    }
}

impl std::error::Error for StatusError {}

/// Binds the socket (replacing a stale one) with mode 0600 and serves `cell` until dropped.
pub fn serve(path: &Path, cell: StatusCell) -> Result<smol::Task<()>, StatusError> {
    let err = |what: String| StatusError {
        path: path.to_path_buf(),
        what,
        connect: false,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("create parent dir: {e}")))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("remove stale socket: {e}"))),
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| err(format!("bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("chmod 0600: {e}")))?;
    let listener =
        smol::Async::new(listener).map_err(|e| err(format!("register with reactor: {e}")))?;
    Ok(smol::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let doc = cell.get();
            smol::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(doc.as_bytes()).await;
                let _ = stream.write_all(b"\n").await;
            })
            .detach();
        }
    }))
}

/// The socket of an agent whose `--root-dir` is `root` and that names no `--status-socket`.
pub fn default_socket(root: &Path) -> PathBuf {
    root.join("tinylet.sock")
}

/// Where `tinylet status` looks for an agent, in order: the socket or root dir it was given,
/// else the socket each built-in board profile gives an agent (the default profile's first).
pub fn candidate_sockets(socket: Option<&str>, root_dir: Option<&str>) -> Vec<PathBuf> {
    if let Some(s) = socket {
        return vec![PathBuf::from(s)];
    }
    if let Some(r) = root_dir {
        return vec![default_socket(Path::new(r))];
    }
    let mut names = vec![crate::config::DEFAULT_BOARD];
    names.extend(crate::config::board_names());
    let mut out: Vec<PathBuf> = Vec::new();
    for name in names {
        let flags = crate::config::FlagOverrides {
            board: Some(name.to_string()),
            ..Default::default()
        };
        let Ok(r) = crate::config::resolve_from(&flags, None) else {
            continue;
        };
        let path = r
            .config
            .status_socket
            .unwrap_or_else(|| default_socket(&r.config.root_dir));
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// The candidate to ask: the first that exists, else the first (whose error then says so).
pub fn pick_socket(candidates: &[PathBuf], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|p| exists(p))
        .or_else(|| candidates.first())
        .cloned()
}

/// What to tell someone whose `tinylet status` found no agent: which sockets were tried and
/// how to name another.
pub fn no_agent_hint(tried: &[PathBuf], err: &StatusError) -> String {
    let others: Vec<String> = tried
        .iter()
        .filter(|p| **p != err.path)
        .map(|p| p.display().to_string())
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(" (also tried {})", others.join(", "))
    };
    format!(
        "no agent answers at {}{also}: {}\n\
         point at a running `tinylet run` with --root-dir DIR (its socket is DIR/tinylet.sock) \
         or --status-socket PATH, as given to it",
        err.path.display(),
        err.what
    )
}

/// `tinylet status`: asks the agent, prints its table (or JSON); the process exit code.
pub fn client_main(flags: &crate::cli::StatusFlags) -> i32 {
    let tried = candidate_sockets(flags.status_socket.as_deref(), flags.root_dir.as_deref());
    let Some(socket) = pick_socket(&tried, |p| p.exists()) else {
        eprintln!("tinylet status: no status socket to try; give --root-dir or --status-socket");
        return 1;
    };
    let doc = match fetch(&socket) {
        Ok(d) => d,
        Err(e) if e.connect => {
            eprintln!("tinylet status: {}", no_agent_hint(&tried, &e));
            return 1;
        }
        Err(e) => {
            eprintln!("tinylet status: {e}");
            return 1;
        }
    };
    if flags.json {
        println!("{}", doc.trim());
        return 0;
    }
    match serde_json::from_str::<serde_json::Value>(&doc) {
        Ok(v) => {
            print!("{}", render_table(&v));
            0
        }
        Err(e) => {
            eprintln!(
                "tinylet status: the agent at {} answered something that is not JSON: {e}",
                socket.display()
            );
            1
        }
    }
}

/// Reads one status document from a running agent (bounded to 16 MiB).
pub fn fetch(path: &Path) -> Result<String, StatusError> {
    let err = |what: String| StatusError {
        path: path.to_path_buf(),
        what,
        connect: false,
    };
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| StatusError {
        connect: true,
        ..err(match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("connect: {e} (a stale socket: the agent that made it has stopped)")
            }
            _ => format!("connect: {e}"),
        })
    })?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = s.flush();
    let mut buf = Vec::new();
    (&mut s)
        .take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| err(format!("read: {e}")))?;
    String::from_utf8(buf).map_err(|_| err("answer is not UTF-8".into()))
}

/// Renders a status document as the table `tinylet status` prints: one line per pod, one
/// indented line per container, then manifest errors.
pub fn render_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {}  up {}s  boot {}",
        s(v, "node"),
        v.get("uptimeSecs").and_then(|x| x.as_u64()).unwrap_or(0),
        if v.get("booted").and_then(|x| x.as_bool()).unwrap_or(false) {
            "complete"
        } else {
            "in progress"
        }
    );
    let _ = writeln!(
        out,
        "{:<44} {:<10} {:<6} {:<9} {:<14} MESSAGE",
        "POD", "PHASE", "READY", "RESTARTS", "SPEC"
    );
    let empty = Vec::new();
    for p in v.get("pods").and_then(|x| x.as_array()).unwrap_or(&empty) {
        let containers = p
            .get("containers")
            .and_then(|x| x.as_array())
            .unwrap_or(&empty);
        let inits = p
            .get("initContainers")
            .and_then(|x| x.as_array())
            .unwrap_or(&empty);
        let ready = containers
            .iter()
            .filter(|c| c.get("ready").and_then(|x| x.as_bool()) == Some(true))
            .count();
        let restarts: u64 = containers
            .iter()
            .chain(inits)
            .filter_map(|c| c.get("restartCount").and_then(|x| x.as_u64()))
            .sum();
        let phase = p
            .get("phase")
            .map(|x| x.as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let hash: String = s(p, "specHash").chars().take(12).collect();
        let _ = writeln!(
            out,
            "{:<44} {:<10} {:<6} {:<9} {:<14} {}",
            format!("{}/{}", s(p, "namespace"), s(p, "name")),
            phase,
            format!("{ready}/{}", containers.len()),
            restarts,
            hash,
            s(p, "message")
        );
        for (kind, c) in inits
            .iter()
            .map(|c| ("init", c))
            .chain(containers.iter().map(|c| ("", c)))
        {
            let state = c.get("state").cloned().unwrap_or_default();
            let state_text = match state.as_object().and_then(|o| o.iter().next()) {
                Some((k, d)) => {
                    let exit = d
                        .get("exitCode")
                        .and_then(|x| x.as_i64())
                        .map(|n| format!(", exit {n}"))
                        .unwrap_or_default();
                    let detail = d
                        .get("reason")
                        .and_then(|x| x.as_str())
                        .map(|r| format!("{r}{exit}"))
                        .or_else(|| {
                            d.get("runningForSecs")
                                .and_then(|x| x.as_u64())
                                .map(|n| format!("{n}s"))
                        });
                    match detail {
                        Some(dt) => format!("{k}({dt})"),
                        None => k.clone(),
                    }
                }
                None => "unknown".into(),
            };
            let backoff = c
                .get("backoff")
                .and_then(|b| b.get("remainingSecs"))
                .and_then(|x| x.as_u64())
                .map(|n| format!(" back-off {n}s"))
                .unwrap_or_default();
            let err = c
                .get("lastError")
                .and_then(|x| x.as_str())
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<42} {:<24} ready={} restarts={}{backoff}{err}",
                format!(
                    "{}{}",
                    if kind.is_empty() { "" } else { "init:" },
                    s(c, "name")
                ),
                state_text,
                c.get("ready").and_then(|x| x.as_bool()).unwrap_or(false),
                c.get("restartCount").and_then(|x| x.as_u64()).unwrap_or(0),
            );
        }
    }
    for e in v
        .get("manifestErrors")
        .and_then(|x| x.as_array())
        .unwrap_or(&empty)
    {
        let _ = writeln!(out, "manifest error: {}", e.as_str().unwrap_or(""));
    }
    if let Some(m) = v.get("podErrors").and_then(|x| x.as_object()) {
        for (k, e) in m {
            let _ = writeln!(out, "pod error: {k}: {}", e.as_str().unwrap_or(""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_camel_case_container_states() {
        let doc = serde_json::json!({
            "node": "n1",
            "pods": [{
                "namespace": "default", "name": "web", "phase": "Running", "specHash": "abc",
                "initContainers": [],
                "containers": [
                    {"name": "a", "ready": true, "restartCount": 0,
                     "state": {"running": {"runningForSecs": 42}}},
                    {"name": "b", "ready": false, "restartCount": 2,
                     "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
                ]
            }]
        });
        let t = render_table(&doc);
        assert!(t.contains("running(42s)"), "{t}");
        assert!(t.contains("terminated(Error, exit 1)"), "{t}");
    }

    #[test]
    fn status_looks_where_the_flags_or_the_board_profiles_say() {
        assert_eq!(
            candidate_sockets(Some("/s.sock"), Some("/r")),
            vec![PathBuf::from("/s.sock")]
        );
        assert_eq!(
            candidate_sockets(None, Some("/r")),
            vec![PathBuf::from("/r/tinylet.sock")]
        );
        let all = candidate_sockets(None, None);
        // The default profile's socket first, then the other profiles' distinct ones.
        assert_eq!(all[0], PathBuf::from("/var/lib/tinylet/tinylet.sock"));
        assert!(
            all.contains(&PathBuf::from("/run/tinylet/status.sock")),
            "{all:?}"
        );
        let mut dedup = all.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
        let second = all[1].clone();
        assert_eq!(pick_socket(&all, |p| p == second), Some(second.clone()));
        assert_eq!(pick_socket(&all, |_| false), Some(all[0].clone()));
        assert_eq!(pick_socket(&[], |_| true), None);
    }

    #[test]
    fn no_agent_names_the_sockets_tried_and_the_flags() {
        let tried = vec![PathBuf::from("/a/tinylet.sock"), PathBuf::from("/b.sock")];
        let e = StatusError {
            path: tried[0].clone(),
            what: "connect: No such file or directory".into(),
            connect: true,
        };
        let h = no_agent_hint(&tried, &e);
        assert!(
            h.contains("/a/tinylet.sock") && h.contains("also tried /b.sock"),
            "{h}"
        );
        assert!(
            h.contains("--root-dir DIR") && h.contains("--status-socket PATH"),
            "{h}"
        );
    }

    #[test]
    fn serves_the_latest_document_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("tl-status-{}", std::process::id()));
        let path = dir.join("s.sock");
        let cell = StatusCell::default();
        cell.set("{\"pods\":[]}".into());
        smol::block_on(async {
            let _task = serve(&path, cell.clone()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let p = path.clone();
            let doc = smol::unblock(move || fetch(&p)).await.unwrap();
            assert_eq!(doc.trim(), "{\"pods\":[]}");
            cell.set("{\"pods\":[1]}".into());
            let p = path.clone();
            let doc = smol::unblock(move || fetch(&p)).await.unwrap();
            assert_eq!(doc.trim(), "{\"pods\":[1]}");
        });
        let e = fetch(&dir.join("absent.sock")).unwrap_err();
        assert!(e.to_string().contains("absent.sock"));
        assert!(e.connect);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
