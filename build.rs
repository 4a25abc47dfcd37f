//! Records the target triple and git commit for `tinylet --version`. Generates no code.
//!
//! A build with nothing changed must not rerun this script (with fat LTO a rerun costs a full
//! release link), so it reads git without writing anything: `git rev-parse` only reads, and the
//! dirty check runs with `GIT_OPTIONAL_LOCKS=0`, which stops `git status` from refreshing
//! `.git/index` as a side effect. It watches the files a commit or checkout rewrites (HEAD, the
//! ref HEAD names, packed-refs, HEAD's reflog), never the index, plus the compiled-in sources
//! whose state the `-dirty` suffix describes.
use std::path::{Path, PathBuf};
use std::process::Command;

/// The paths compiled into the binary; `-dirty` means one of them differs from the commit.
const SOURCES: &[&str] = &["src", "boards", "build.rs", "Cargo.toml", "Cargo.lock"];

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A file inside the git dir (`--git-path` resolves worktrees' per-worktree and shared files).
fn git_path(name: &str) -> Option<PathBuf> {
    git(&["rev-parse", "--git-path", name]).map(PathBuf::from)
}

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TINYLET_TARGET={target}");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend_from_slice(SOURCES);
    let dirty = commit != "unknown" && git(&status).is_some();
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=TINYLET_GIT_COMMIT={commit}{suffix}");
    // The commit's year: `tinylet doctor` calls a clock earlier than the code it runs wrong.
    // Taken from the commit (not the build machine's clock) so a rebuild gives the same binary.
    let year = git(&["log", "-1", "--format=%cd", "--date=format:%Y"]).unwrap_or_default();
    println!("cargo:rustc-env=TINYLET_BUILD_YEAR={year}");

    // Only existing files are watched: cargo reruns a script on every build while a watched
    // path is missing. A commit on a branch whose ref lives only in packed-refs creates the
    // loose ref and appends to logs/HEAD, which is watched.
    let mut watched: Vec<PathBuf> = ["HEAD", "packed-refs", "logs/HEAD"]
        .iter()
        .filter_map(|n| git_path(n))
        .collect();
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git_path(&head_ref));
    }
    for p in watched.iter().filter(|p| Path::new(p).is_file()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
    }
    println!("cargo:rerun-if-env-changed=TARGET");
}
