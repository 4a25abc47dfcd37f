//! Watching the manifest directory: inotify for promptness, a periodic rescan as a backstop.
//!
//! [`RescanSchedule`] is the pure timing rule (when is a rescan due); [`ManifestWatcher`] is the
//! thin inotify + timer shell around it that re-reads the directory with
//! [`super::scan_dir`] and hands out the whole desired set whenever it changed. A burst of
//! events (an editor writing, a `mv` into place) is coalesced into one rescan at most
//! `debounce` after the first event, so a change is seen well within a second.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::{scan_dir, Format, ManifestErrorKind, ManifestSet};

/// Timing of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Delay from the first change event to the rescan, to coalesce bursts (100 ms).
    pub debounce: Duration,
    /// Rescan period when nothing is signalled (20 s, the kubelet's fileCheckFrequency).
    pub rescan_period: Duration,
    /// When a file that loaded before stops loading (half-written, typo), keep handing out its
    /// last good pod, with the error, instead of dropping it. Off by default, as in the kubelet.
    pub keep_last_good: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(100),
            rescan_period: Duration::from_secs(20),
            keep_last_good: false,
        }
    }
}

/// When the next rescan is due: `debounce` after the first unhandled change, or one rescan
/// period after the last scan, whichever is earlier. Pure; the caller passes the time in.
#[derive(Debug, Clone)]
pub struct RescanSchedule {
    options: WatchOptions,
    changed_at: Option<Instant>,
    last_scan: Option<Instant>,
}

impl RescanSchedule {
    /// A schedule whose first scan is due immediately.
    pub fn new(options: WatchOptions) -> Self {
        RescanSchedule {
            options,
            changed_at: None,
            last_scan: None,
        }
    }

    /// Records a change notification. Later events of a burst do not push the rescan back, so
    /// a steady stream of writes cannot starve it.
    pub fn on_change(&mut self, now: Instant) {
        if self.changed_at.is_none() {
            self.changed_at = Some(now);
        }
    }

    /// The instant the next rescan is due (`None` on a fresh schedule means "now").
    pub fn deadline(&self) -> Option<Instant> {
        let last = self.last_scan?;
        let periodic = last.checked_add(self.options.rescan_period);
        let debounced = self
            .changed_at
            .and_then(|t| t.checked_add(self.options.debounce));
        match (periodic, debounced) {
            (Some(p), Some(d)) => Some(p.min(d)),
            (p, d) => p.or(d),
        }
    }

    /// Whether a rescan is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        match (self.last_scan, self.deadline()) {
            (None, _) => true,
            (Some(_), Some(deadline)) => now >= deadline,
            (Some(_), None) => false,
        }
    }

    /// Records that a rescan happened at `now`; pending changes are covered by it.
    pub fn scanned(&mut self, now: Instant) {
        self.last_scan = Some(now);
        self.changed_at = None;
    }
}

/// Carries over from `previous` the pod of every file that now fails to load, unless that
/// pod is defined by another file now or the failure is a duplicate name.
pub fn keep_last_good(previous: &ManifestSet, mut current: ManifestSet) -> ManifestSet {
    let mut carried = Vec::new();
    for e in &current.errors {
        if matches!(e.kind, ManifestErrorKind::DuplicatePod { .. }) {
            continue;
        }
        let Some(old) = previous.pods.iter().find(|p| p.file == e.file) else {
            continue;
        };
        if !current.pods.iter().any(|p| p.key() == old.key()) {
            carried.push(old.clone());
        }
    }
    if !carried.is_empty() {
        current.pods.extend(carried);
        current
            .pods
            .sort_by(|a, b| a.file.file_name().cmp(&b.file.file_name()));
    }
    current
}

/// Whether an inotify event for `name` in the manifest directory can change the desired set.
pub fn is_relevant_name(name: &OsStr) -> bool {
    Format::from_path(Path::new(name)).is_some()
}

/// The watcher could not be set up.
#[derive(Debug)]
pub enum WatchError {
    /// inotify_init failed (limit of instances reached, no kernel support).
    Init(Errno),
    /// Registering the inotify descriptor with the reactor failed.
    Register(std::io::Error),
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Init(e) => write!(f, "manifest watcher: inotify_init: {e}"),
            WatchError::Register(e) => write!(f, "manifest watcher: registering inotify: {e}"),
        }
    }
}

impl std::error::Error for WatchError {}

const WATCH_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_ONLYDIR);

/// Watches a manifest directory and yields the desired set of static pods whenever it changes.
pub struct ManifestWatcher {
    dir: PathBuf,
    node_name: String,
    options: WatchOptions,
    schedule: RescanSchedule,
    inotify: smol::Async<Inotify>,
    watch: Option<WatchDescriptor>,
    last: Option<ManifestSet>,
}

impl ManifestWatcher {
    /// Sets up inotify on `dir`. The directory need not exist yet: it is watched from the first
    /// rescan that finds it.
    pub fn new(
        dir: impl Into<PathBuf>,
        node_name: impl Into<String>,
        options: WatchOptions,
    ) -> Result<Self, WatchError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(WatchError::Init)?;
        let inotify = smol::Async::new(inotify).map_err(WatchError::Register)?;
        Ok(ManifestWatcher {
            dir: dir.into(),
            node_name: node_name.into(),
            options,
            schedule: RescanSchedule::new(options),
            inotify,
            watch: None,
            last: None,
        })
    }

    /// The directory being watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most recent set handed out, if any.
    pub fn current(&self) -> Option<&ManifestSet> {
        self.last.as_ref()
    }

    /// Waits until the desired set differs from the last one returned (the first call returns
    /// the initial set at once) and returns it. Cancel-safe: dropping the future loses no
    /// change, as pending events stay queued in the kernel and the schedule keeps its state.
    pub async fn next(&mut self) -> ManifestSet {
        loop {
            let now = Instant::now();
            if self.schedule.is_due(now) {
                self.schedule.scanned(now);
                self.ensure_watch();
                let set = self.scan();
                if self.last.as_ref() != Some(&set) {
                    self.last = Some(set.clone());
                    return set;
                }
                continue;
            }
            // No deadline only when the period is too large to represent: wait for events alone.
            let timer = || match self.schedule.deadline() {
                Some(d) => smol::Timer::at(d),
                None => smol::Timer::never(),
            };
            let readable = async {
                // A reactor error would spin; fall back to the deadline instead.
                if self.inotify.readable().await.is_err() {
                    timer().await;
                }
                true
            };
            let timed_out = async {
                timer().await;
                false
            };
            if smol::future::or(readable, timed_out).await {
                self.drain_events(Instant::now());
            }
        }
    }

    /// Rescans now and returns the set, whether or not it changed.
    pub fn rescan_now(&mut self) -> ManifestSet {
        let now = Instant::now();
        self.schedule.scanned(now);
        self.ensure_watch();
        let set = self.scan();
        self.last = Some(set.clone());
        set
    }

    fn scan(&self) -> ManifestSet {
        let set = scan_dir(&self.dir, &self.node_name);
        match (&self.last, self.options.keep_last_good) {
            (Some(prev), true) => keep_last_good(prev, set),
            _ => set,
        }
    }

    fn ensure_watch(&mut self) {
        if self.watch.is_some() {
            return;
        }
        match self.inotify.get_ref().add_watch(&self.dir, WATCH_MASK) {
            Ok(wd) => self.watch = Some(wd),
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(e) => log::warn!(
                "cannot watch static pod path {}: {e}; relying on periodic rescans",
                self.dir.display()
            ),
        }
    }

    fn drain_events(&mut self, now: Instant) {
        // Bounded: a queue holds at most max_queued_events; the cap guards against a livelock
        // if events arrive as fast as they are read.
        for _ in 0..64 {
            let events = match self.inotify.get_ref().read_events() {
                Ok(ev) => ev,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("reading inotify events for {}: {e}", self.dir.display());
                    self.schedule.on_change(now);
                    return;
                }
            };
            for ev in events {
                let dir_gone = ev.mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED,
                );
                if dir_gone {
                    // Only the current watch counts: a late event of a watch already replaced
                    // (directory deleted and recreated) must not drop the new one.
                    if self.watch == Some(ev.wd) {
                        self.watch = None;
                        if !ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                            let _ = self.inotify.get_ref().rm_watch(ev.wd);
                        }
                    }
                    self.schedule.on_change(now);
                } else if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)
                    || ev.name.as_deref().is_some_and(is_relevant_name)
                {
                    self.schedule.on_change(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_manifest, StaticPod};
    use super::*;

    fn opts() -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(100),
            rescan_period: Duration::from_secs(20),
            keep_last_good: false,
        }
    }

    #[test]
    fn first_scan_is_immediate_then_periodic() {
        let t0 = Instant::now();
        let mut s = RescanSchedule::new(opts());
        assert!(s.is_due(t0));
        assert_eq!(s.deadline(), None);
        s.scanned(t0);
        assert!(!s.is_due(t0 + Duration::from_secs(19)));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_secs(20)));
        assert!(s.is_due(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn an_unrepresentable_period_means_no_periodic_rescan() {
        let t0 = Instant::now();
        let mut s = RescanSchedule::new(WatchOptions {
            rescan_period: Duration::MAX,
            ..opts()
        });
        s.scanned(t0);
        assert_eq!(s.deadline(), None);
        assert!(!s.is_due(t0 + Duration::from_secs(3600)));
        s.on_change(t0);
        assert_eq!(s.deadline(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn a_burst_is_coalesced_and_cannot_starve_the_rescan() {
        let t0 = Instant::now();
        let mut s = RescanSchedule::new(opts());
        s.scanned(t0);
        let first = t0 + Duration::from_secs(1);
        s.on_change(first);
        for ms in (10..100).step_by(10) {
            s.on_change(first + Duration::from_millis(ms));
            assert!(!s.is_due(first + Duration::from_millis(ms)));
        }
        assert_eq!(s.deadline(), Some(first + Duration::from_millis(100)));
        assert!(s.is_due(first + Duration::from_millis(100)));
        s.scanned(first + Duration::from_millis(100));
        assert_eq!(
            s.deadline(),
            Some(first + Duration::from_millis(100) + Duration::from_secs(20))
        );
    }

    fn static_pod(file: &str, name: &str, image: &str) -> StaticPod {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: {image}}}]\n"
        );
        parse_manifest(Path::new(file), Format::Yaml, text.as_bytes(), "n").unwrap()
    }

    #[test]
    fn keep_last_good_carries_only_pods_of_files_that_now_fail() {
        let a = static_pod("/m/a.yaml", "a", "x:1");
        let b = static_pod("/m/b.yaml", "b", "x:1");
        let previous = ManifestSet {
            pods: vec![a.clone(), b.clone()],
            errors: vec![],
        };
        let broken_a =
            parse_manifest(Path::new("/m/a.yaml"), Format::Yaml, b"kind: [", "n").unwrap_err();
        let current = ManifestSet {
            pods: vec![b.clone()],
            errors: vec![broken_a.clone()],
        };
        let kept = keep_last_good(&previous, current);
        assert_eq!(kept.pods, vec![a.clone(), b.clone()]);
        assert_eq!(kept.errors, vec![broken_a]);
        // A removed file is not an error: its pod goes.
        let current = ManifestSet {
            pods: vec![b.clone()],
            errors: vec![],
        };
        assert_eq!(keep_last_good(&previous, current).pods, vec![b.clone()]);
        // If another file now defines the same pod, that one wins.
        let a_moved = static_pod("/m/c.yaml", "a", "x:2");
        let broken_a = parse_manifest(Path::new("/m/a.yaml"), Format::Yaml, b"{", "n").unwrap_err();
        let current = ManifestSet {
            pods: vec![b.clone(), a_moved.clone()],
            errors: vec![broken_a],
        };
        assert_eq!(keep_last_good(&previous, current).pods, vec![b, a_moved]);
    }

    #[test]
    fn relevant_names() {
        for n in ["a.yaml", "b.yml", "c.json", "D.YAML"] {
            assert!(is_relevant_name(OsStr::new(n)), "{n}");
        }
        for n in [
            ".a.yaml",
            ".a.yaml.swp",
            "a.yaml~",
            "#a.yaml#",
            "4913",
            "a.yaml.bak",
            "a.yaml.kate-swp",
            "..data",
        ] {
            assert!(!is_relevant_name(OsStr::new(n)), "{n}");
        }
    }
}
