//! Static pod manifests on a real filesystem: loading a directory and watching it change.
//!
//! Every test works in its own directory under the system temp dir and removes it afterwards.
//! Waits are bounded; the watcher's periodic rescan is set to an hour where a test must prove
//! that inotify (not the backstop) noticed a change.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tinylet::manifest::{load_dir, ManifestErrorKind, ManifestSet, ManifestWatcher, WatchOptions};

const NODE: &str = "edge-1";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "tinylet-manifest-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/manifests")
        .join(sub)
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: {image}\n"
    )
}

fn names(set: &ManifestSet) -> Vec<String> {
    set.pods
        .iter()
        .map(|p| p.pod.metadata.name.clone())
        .collect()
}

fn quiet_watch() -> WatchOptions {
    WatchOptions {
        debounce: Duration::from_millis(100),
        rescan_period: Duration::from_secs(3600),
        keep_last_good: false,
    }
}

/// Waits (at most `limit`) for a set satisfying `pred`; returns it with the time it took.
fn wait_for(
    w: &mut ManifestWatcher,
    limit: Duration,
    pred: impl Fn(&ManifestSet) -> bool,
) -> Option<(ManifestSet, Duration)> {
    let start = Instant::now();
    smol::block_on(async {
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            let next = async { Some(w.next().await) };
            let timeout = async {
                smol::Timer::after(left).await;
                None
            };
            let set = smol::future::or(next, timeout).await?;
            if pred(&set) {
                return Some((set, start.elapsed()));
            }
        }
    })
}

/// Bound for a change to be seen through inotify; the design target is ~100 ms, the bound
/// leaves room for a loaded build machine.
const NOTICE_LIMIT: Duration = Duration::from_secs(2);

#[test]
fn valid_data_dir_loads_every_pod() {
    let (pods, errors) = load_dir(&data("valid"), NODE);
    assert!(errors.is_empty(), "{errors:?}");
    let mut keys: Vec<String> = pods.iter().map(|p| p.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "default/sensor-gateway-edge-1",
            "edge/mosquitto-edge-1",
            "kube-system/etcd-edge-1"
        ]
    );
    let gw = pods
        .iter()
        .find(|p| p.key() == "default/sensor-gateway-edge-1")
        .unwrap();
    assert!(gw.pod.spec.init_containers[1].is_sidecar());
    for p in &pods {
        assert_eq!(p.pod.spec.node_name, NODE);
        assert_eq!(p.uid.len(), 32);
    }
}

#[test]
fn each_invalid_file_gets_one_error_naming_file_and_field_and_the_rest_load() {
    let expected: &[(&str, Option<&str>)] = &[
        (
            "bad-quantity.yaml",
            Some("spec.containers[0].resources.limits.memory"),
        ),
        ("bad-restart-policy.yaml", Some("spec.restartPolicy")),
        ("broken-syntax.json", None),
        ("configmap-volume.yaml", Some("spec.volumes[0].configMap")),
        ("broken-syntax.yaml", None),
        ("deployment.yaml", None),
        ("duplicate-containers.yaml", Some("spec.containers[1].name")),
        (
            "hostpath-without-path.yaml",
            Some("spec.volumes[0].hostPath.path"),
        ),
        ("no-image.yaml", Some("spec.containers[0].image")),
        ("no-name.yaml", Some("metadata.name")),
        (
            "probe-without-handler.yaml",
            Some("spec.containers[0].readinessProbe"),
        ),
        (
            "unknown-volume.yaml",
            Some("spec.containers[0].volumeMounts[0].name"),
        ),
        (
            "wrong-type.yaml",
            Some("spec.containers[0].ports[0].containerPort"),
        ),
    ];
    let dir = TempDir::new("invalid");
    for sub in ["valid", "invalid"] {
        for e in std::fs::read_dir(data(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let (pods, errors) = load_dir(dir.path(), NODE);
    assert_eq!(pods.len(), 3, "{errors:#?}");
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (file, field) in expected {
        let e = errors
            .iter()
            .find(|e| e.file == dir.path().join(file))
            .unwrap_or_else(|| panic!("no error for {file}"));
        assert_eq!(e.field.as_deref(), *field, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(file), "{msg}");
        if let Some(f) = field {
            assert!(msg.contains(f), "{msg}");
        }
        println!("{msg}");
    }
    let syntax = errors
        .iter()
        .find(|e| e.file.ends_with("broken-syntax.yaml"))
        .unwrap();
    assert!(matches!(
        syntax.kind,
        ManifestErrorKind::Syntax {
            line: Some(_),
            column: Some(_),
            ..
        }
    ));
}

#[test]
fn dotfiles_editor_files_and_subdirectories_are_ignored() {
    let dir = TempDir::new("ignored");
    dir.write("web.yaml", &pod("web", "nginx:1"));
    for name in [
        ".web.yaml",
        ".web.yaml.swp",
        ".#web.yaml",
        "web.yaml~",
        "#web.yaml#",
        "web.yaml.bak",
        "web.yaml.kate-swp",
        "4913",
        "README",
    ] {
        dir.write(name, &pod("web", "nginx:2"));
    }
    std::fs::create_dir(dir.path().join("nested.yaml")).unwrap();
    std::fs::write(
        dir.path().join("nested.yaml/inner.yaml"),
        pod("inner", "busybox"),
    )
    .unwrap();
    let (pods, errors) = load_dir(dir.path(), NODE);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].pod.spec.containers[0].image, "nginx:1");
}

#[test]
fn symlinks_are_followed_and_fifos_reported_not_read() {
    let dir = TempDir::new("special");
    let target = dir.path().join(".real");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("web.yaml"), pod("web", "nginx:1")).unwrap();
    std::os::unix::fs::symlink(target.join("web.yaml"), dir.path().join("web.yaml")).unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("pipe.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (pods, errors) = load_dir(dir.path(), NODE);
    assert_eq!(pods.len(), 1);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ManifestErrorKind::NotARegularFile);
}

#[test]
fn duplicate_pod_names_across_files_keep_the_first_and_name_both() {
    let dir = TempDir::new("dup");
    let a = dir.write("a.yaml", &pod("web", "nginx:1"));
    let b = dir.write("b.json", r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"x","image":"nginx:2"}]}}"#);
    let (pods, errors) = load_dir(dir.path(), NODE);
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].file, a);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, b);
    let msg = errors[0].to_string();
    assert!(
        msg.contains(&*a.to_string_lossy()) && msg.contains(&*b.to_string_lossy()),
        "{msg}"
    );
    // Another namespace is another pod.
    dir.write(
        "c.yaml",
        &pod("web", "nginx:3").replace("  name: web\n", "  name: web\n  namespace: other\n"),
    );
    let (pods, errors) = load_dir(dir.path(), NODE);
    assert_eq!((pods.len(), errors.len()), (2, 1));
}

#[test]
fn missing_directory_is_an_empty_set() {
    let (pods, errors) = load_dir(Path::new("/nonexistent/tinylet/manifests"), NODE);
    assert!(pods.is_empty() && errors.is_empty());
}

#[test]
fn watcher_sees_add_edit_rename_remove_and_invalid_files_promptly() {
    let dir = TempDir::new("watch");
    dir.write("a.yaml", &pod("a", "nginx:1"));
    let mut w = ManifestWatcher::new(dir.path(), NODE, quiet_watch()).unwrap();
    let (initial, _) = wait_for(&mut w, NOTICE_LIMIT, |_| true).expect("initial set");
    assert_eq!(names(&initial), ["a-edge-1"]);
    let uid_a = initial.pods[0].uid.clone();

    // Add.
    dir.write("b.yaml", &pod("b", "busybox:1"));
    let (set, took) = wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.len() == 2).expect("add seen");
    println!("add noticed after {took:?}");
    assert_eq!(names(&set), ["a-edge-1", "b-edge-1"]);

    // Edit: the UID follows the content.
    dir.write("a.yaml", &pod("a", "nginx:2"));
    let (set, took) = wait_for(&mut w, NOTICE_LIMIT, |s| {
        s.pods
            .iter()
            .any(|p| p.pod.spec.containers[0].image == "nginx:2")
    })
    .expect("edit seen");
    println!("edit noticed after {took:?}");
    let a = set
        .pods
        .iter()
        .find(|p| p.file.ends_with("a.yaml"))
        .unwrap();
    assert_ne!(a.uid, uid_a);

    // Invalid file next to valid ones: the others stay.
    dir.write(
        "c.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\nspec:\n  containers:\n  - name: app\n",
    );
    let (set, took) =
        wait_for(&mut w, NOTICE_LIMIT, |s| !s.errors.is_empty()).expect("invalid seen");
    println!("invalid file noticed after {took:?}");
    assert_eq!(set.pods.len(), 2);
    assert_eq!(
        set.errors[0].field.as_deref(),
        Some("spec.containers[0].image")
    );

    // Rename within the directory: same pod, new file.
    std::fs::rename(dir.path().join("b.yaml"), dir.path().join("b2.yaml")).unwrap();
    let (set, took) = wait_for(&mut w, NOTICE_LIMIT, |s| {
        s.pods.iter().any(|p| p.file.ends_with("b2.yaml"))
    })
    .expect("rename seen");
    println!("rename noticed after {took:?}");
    assert_eq!(names(&set), ["a-edge-1", "b-edge-1"]);

    // Rename out of the loaded names (disabling a manifest) removes the pod.
    std::fs::rename(
        dir.path().join("b2.yaml"),
        dir.path().join("b2.yaml.disabled"),
    )
    .unwrap();
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.len() == 1).expect("disable seen");
    assert_eq!(names(&set), ["a-edge-1"]);

    // Atomic replace from a dotfile, as editors and config tools do.
    let tmp = dir.write(".d.yaml.tmp", &pod("d", "busybox:2"));
    std::fs::rename(&tmp, dir.path().join("d.yaml")).unwrap();
    let (set, took) = wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.len() == 2).expect("mv seen");
    println!("atomic rename noticed after {took:?}");
    assert_eq!(names(&set), ["a-edge-1", "d-edge-1"]);

    // Remove.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let (set, took) = wait_for(&mut w, NOTICE_LIMIT, |s| {
        s.pods.len() == 1 && s.errors.is_empty()
    })
    .expect("remove seen");
    println!("remove noticed after {took:?}");
    assert_eq!(names(&set), ["d-edge-1"]);
}

#[test]
fn watcher_ignores_dotfiles_and_swap_files() {
    let dir = TempDir::new("watch-ignore");
    dir.write("a.yaml", &pod("a", "nginx:1"));
    let mut w = ManifestWatcher::new(dir.path(), NODE, quiet_watch()).unwrap();
    wait_for(&mut w, NOTICE_LIMIT, |_| true).expect("initial set");
    dir.write(".a.yaml.swp", "binary swap");
    dir.write("a.yaml~", &pod("z", "nginx:9"));
    dir.write(".hidden.yaml", &pod("h", "nginx:9"));
    // Nothing relevant changed, so no new set may be produced.
    assert!(wait_for(&mut w, Duration::from_millis(500), |_| true).is_none());
    assert_eq!(names(w.current().unwrap()), ["a-edge-1"]);
}

#[test]
fn watcher_picks_up_a_directory_created_later_and_recreated() {
    let parent = TempDir::new("watch-late");
    let dir = parent.path().join("manifests");
    let opts = WatchOptions {
        debounce: Duration::from_millis(50),
        rescan_period: Duration::from_millis(200),
        keep_last_good: false,
    };
    let mut w = ManifestWatcher::new(&dir, NODE, opts).unwrap();
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |_| true).expect("initial set");
    assert!(set.pods.is_empty() && set.errors.is_empty());
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), pod("a", "nginx:1")).unwrap();
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.len() == 1).expect("late dir");
    assert_eq!(names(&set), ["a-edge-1"]);
    // Delete and recreate the directory: the watch must follow.
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.is_empty()).expect("dir removal seen");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("b.yaml"), pod("b", "nginx:1")).unwrap();
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |s| s.pods.len() == 1).expect("recreated");
    assert_eq!(names(&set), ["b-edge-1"]);
}

#[test]
fn watcher_can_keep_the_last_good_pod_of_a_file_that_breaks() {
    let dir = TempDir::new("watch-keep");
    dir.write("a.yaml", &pod("a", "nginx:1"));
    let opts = WatchOptions {
        keep_last_good: true,
        ..quiet_watch()
    };
    let mut w = ManifestWatcher::new(dir.path(), NODE, opts).unwrap();
    let (initial, _) = wait_for(&mut w, NOTICE_LIMIT, |_| true).expect("initial set");
    dir.write("a.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n");
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |s| !s.errors.is_empty()).expect("breakage seen");
    assert_eq!(set.pods, initial.pods);
    dir.write("a.yaml", &pod("a", "nginx:2"));
    let (set, _) = wait_for(&mut w, NOTICE_LIMIT, |s| s.errors.is_empty()).expect("fix seen");
    assert_eq!(set.pods[0].pod.spec.containers[0].image, "nginx:2");
}
