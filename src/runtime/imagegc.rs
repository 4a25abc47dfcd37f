//! Image garbage collection: which images to remove from the runtime when the image filesystem
//! fills, and which have gone unused for too long.
//!
//! The kubelet's rules (`imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`,
//! `imageMinimumGCAge`, `imageMaximumGCAge`): when the image filesystem's usage reaches the high
//! threshold, images are removed until it is back under the low one, least recently used
//! first (then the first detected first); an image younger than the minimum age is never
//! removed; with a maximum age, an image unused for longer goes whatever the usage. An image
//! any container uses (running or exited: a restart and `kubectl logs -p` need it), the sandbox
//! image and images the runtime pins are never candidates.
//!
//! [`Tracker`] keeps when each image was first seen and last used, on the monotonic clock the
//! caller hands in (a wall clock jump never makes an image old); [`Tracker::plan`] is the
//! decision, pure. The CRI calls around it live in the executor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::reconcile::model::normalize_image;

/// How often a pass runs when nothing else asks (the kubelet's ImageGCPeriod).
pub const PERIOD: Duration = Duration::from_secs(300);

/// The configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Usage (percent of capacity) at which a space pass starts.
    pub high_percent: u8,
    /// Usage (percent) a space pass brings the filesystem back to.
    pub low_percent: u8,
    /// Images seen for less than this are never removed.
    pub min_age: Duration,
    /// Images unused for longer than this are removed whatever the usage (`None`: off).
    pub max_age: Option<Duration>,
}

/// One image as the runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The runtime's image id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Exempt from collection (CRI `pinned`).
    pub pinned: bool,
    /// Its tags and digests.
    pub names: Vec<String>,
}

/// The image filesystem's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Capacity.
    pub capacity: u64,
    /// Available to unprivileged writers.
    pub available: u64,
}

impl Usage {
    /// Used share in whole percent (rounded down, as the kubelet computes it).
    pub fn percent(&self) -> u64 {
        if self.capacity == 0 {
            return 0;
        }
        let used = self.capacity.saturating_sub(self.available);
        (used as u128 * 100 / self.capacity as u128) as u64
    }
}

/// Why an image is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Unused for longer than `imageMaximumGCAge`.
    Unused(Duration),
    /// Usage reached the high threshold.
    Space,
}

/// One image to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// Image id.
    pub id: String,
    /// A readable name for logs (its first tag, else the id).
    pub name: String,
    /// Bytes it frees.
    pub size: u64,
    /// Why.
    pub reason: Reason,
}

/// A pass's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Images to remove, in order.
    pub remove: Vec<Victim>,
    /// Bytes the space pass had to free (0 when under the high threshold).
    pub to_free: u64,
    /// Bytes the chosen space victims free; below `to_free` means the pass cannot reach the
    /// low threshold (everything left is in use, pinned or too young).
    pub freed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    first_seen: Instant,
    last_used: Option<Instant>,
}

/// When each image was first seen and last seen in use.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    records: BTreeMap<String, Record>,
}

/// The ids of the images `refs` (containers' image references: ids, tags or digests) name.
pub fn in_use(
    images: &[Image],
    refs: impl IntoIterator<Item = impl AsRef<str>>,
) -> BTreeSet<String> {
    let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
    for img in images {
        by_name.insert(img.id.clone(), &img.id);
        for n in &img.names {
            by_name.insert(normalize_image(n), &img.id);
        }
    }
    let mut out = BTreeSet::new();
    for r in refs {
        let r = r.as_ref();
        if r.is_empty() {
            continue;
        }
        if let Some(id) = by_name.get(r).or_else(|| by_name.get(&normalize_image(r))) {
            out.insert((*id).to_string());
        }
    }
    out
}

impl Tracker {
    /// Records a listing taken at `now`: new images are first seen now, images in `used` are
    /// last used now, and images that went away are forgotten.
    pub fn observe(&mut self, now: Instant, images: &[Image], used: &BTreeSet<String>) {
        let present: BTreeSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        for img in images {
            let r = self.records.entry(img.id.clone()).or_insert(Record {
                first_seen: now,
                last_used: None,
            });
            if used.contains(&img.id) {
                r.last_used = Some(now);
            }
        }
    }

    /// How many images are tracked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no image is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// What to remove at `now`. `used` are the ids in use, `protected` names the sandbox
    /// image (any of its names or its id); `usage` is `None` when the filesystem could not be
    /// measured (then only the maximum age applies).
    pub fn plan(
        &self,
        now: Instant,
        images: &[Image],
        used: &BTreeSet<String>,
        protected: &[String],
        usage: Option<Usage>,
        policy: &Policy,
    ) -> Plan {
        let protected_ids = in_use(images, protected);
        let mut candidates: Vec<(&Image, Record)> = images
            .iter()
            .filter(|i| !i.pinned && !used.contains(&i.id) && !protected_ids.contains(&i.id))
            .filter_map(|i| self.records.get(&i.id).map(|r| (i, *r)))
            .collect();
        // Least recently used first; never used sorts before used; then first seen first.
        candidates.sort_by_key(|(i, r)| (r.last_used, r.first_seen, i.id.clone()));

        let mut plan = Plan::default();
        let mut taken: BTreeSet<&str> = BTreeSet::new();
        if let Some(max) = policy.max_age.filter(|d| !d.is_zero()) {
            for (img, r) in &candidates {
                let idle = now.saturating_duration_since(r.last_used.unwrap_or(r.first_seen));
                if idle > max {
                    taken.insert(&img.id);
                    plan.remove.push(victim(img, Reason::Unused(idle)));
                }
            }
        }
        let Some(usage) = usage else {
            return plan;
        };
        // 100 % turns the space pass off (the kubelet's convention).
        if policy.high_percent >= 100 || usage.percent() < u64::from(policy.high_percent) {
            return plan;
        }
        // Free enough for the available space to reach (100 - low) % of the capacity.
        let want_available =
            (usage.capacity as u128 * u128::from(100 - policy.low_percent.min(100)) / 100) as u64;
        plan.to_free = want_available.saturating_sub(usage.available);
        // What the age pass already frees counts.
        plan.freed = plan.remove.iter().map(|v| v.size).sum();
        for (img, r) in &candidates {
            if plan.freed >= plan.to_free {
                break;
            }
            if taken.contains(img.id.as_str()) {
                continue;
            }
            if now.saturating_duration_since(r.first_seen) < policy.min_age {
                continue;
            }
            plan.freed = plan.freed.saturating_add(img.size);
            plan.remove.push(victim(img, Reason::Space));
        }
        plan
    }
}

fn victim(img: &Image, reason: Reason) -> Victim {
    Victim {
        id: img.id.clone(),
        name: img.names.first().cloned().unwrap_or_else(|| img.id.clone()),
        size: img.size,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, size: u64, name: &str) -> Image {
        Image {
            id: id.into(),
            size,
            pinned: false,
            names: vec![name.into()],
        }
    }

    fn policy() -> Policy {
        Policy {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
            max_age: None,
        }
    }

    const GB: u64 = 1 << 30;

    #[test]
    fn in_use_matches_ids_tags_and_short_names() {
        let images = vec![
            img("sha256:a", 1, "docker.io/library/busybox:latest"),
            img("sha256:b", 1, "registry.local/app:1"),
            img("sha256:c", 1, "registry.local/other:1"),
        ];
        let used = in_use(&images, ["busybox", "sha256:b", "", "unknown:1"]);
        assert_eq!(
            used,
            BTreeSet::from(["sha256:a".to_string(), "sha256:b".to_string()])
        );
    }

    #[test]
    fn below_the_high_threshold_nothing_goes() {
        let t0 = Instant::now();
        let images = vec![img("a", GB, "a:1")];
        let mut t = Tracker::default();
        t.observe(t0, &images, &BTreeSet::new());
        let usage = Usage {
            capacity: 100 * GB,
            available: 16 * GB, // 84 % used
        };
        let p = t.plan(
            t0 + Duration::from_secs(3600),
            &images,
            &BTreeSet::new(),
            &[],
            Some(usage),
            &policy(),
        );
        assert!(p.remove.is_empty());
        assert_eq!(p.to_free, 0);
        // A high threshold of 100 % turns the space pass off, even on a full disk.
        let off = Policy {
            high_percent: 100,
            ..policy()
        };
        let full = Usage {
            capacity: 100 * GB,
            available: 0,
        };
        let p = t.plan(
            t0 + Duration::from_secs(3600),
            &images,
            &BTreeSet::new(),
            &[],
            Some(full),
            &off,
        );
        assert!(p.remove.is_empty());
    }

    #[test]
    fn at_the_high_threshold_frees_down_to_the_low_one_lru_first() {
        let t0 = Instant::now();
        let images = vec![
            img("old", 3 * GB, "old:1"),
            img("used-long-ago", 3 * GB, "ula:1"),
            img("recent", 3 * GB, "recent:1"),
            img("running", 3 * GB, "running:1"),
        ];
        let mut t = Tracker::default();
        // All seen at t0; "used-long-ago" used at t0, "recent" used at t0+10m.
        t.observe(t0, &images, &BTreeSet::from(["used-long-ago".to_string()]));
        t.observe(
            t0 + Duration::from_secs(600),
            &images,
            &BTreeSet::from(["recent".to_string(), "running".to_string()]),
        );
        let used = BTreeSet::from(["running".to_string()]);
        let usage = Usage {
            capacity: 100 * GB,
            available: 15 * GB, // 85 % used → free 5 GB to reach 20 % available
        };
        let p = t.plan(
            t0 + Duration::from_secs(700),
            &images,
            &used,
            &[],
            Some(usage),
            &policy(),
        );
        assert_eq!(p.to_free, 5 * GB);
        let ids: Vec<&str> = p.remove.iter().map(|v| v.id.as_str()).collect();
        // Never used first, then the least recently used; two images reach 6 GB ≥ 5 GB.
        assert_eq!(ids, ["old", "used-long-ago"]);
        assert!(p.remove.iter().all(|v| v.reason == Reason::Space));
        assert_eq!(p.freed, 6 * GB);
    }

    #[test]
    fn young_pinned_and_sandbox_images_are_never_taken() {
        let t0 = Instant::now();
        let mut pinned = img("pinned", GB, "pinned:1");
        pinned.pinned = true;
        let images = vec![
            pinned,
            img("pause", GB, "registry.local/pause:3.9"),
            img("young", GB, "young:1"),
            img("ripe", GB, "ripe:1"),
        ];
        let mut t = Tracker::default();
        // "young" appears 200 s after the others.
        let mut without_young = images.clone();
        without_young.remove(2);
        t.observe(t0, &without_young, &BTreeSet::new());
        t.observe(t0 + Duration::from_secs(200), &images, &BTreeSet::new());
        let usage = Usage {
            capacity: 10 * GB,
            available: 0,
        };
        let p = t.plan(
            t0 + Duration::from_secs(250),
            &images,
            &BTreeSet::new(),
            &["registry.local/pause:3.9".to_string()],
            Some(usage),
            &policy(),
        );
        let ids: Vec<&str> = p.remove.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["ripe"]);
        assert!(p.freed < p.to_free, "the rest is protected");
    }

    #[test]
    fn maximum_age_removes_idle_images_whatever_the_usage() {
        let t0 = Instant::now();
        let images = vec![img("idle", GB, "idle:1"), img("busy", GB, "busy:1")];
        let mut t = Tracker::default();
        t.observe(t0, &images, &BTreeSet::from(["busy".to_string()]));
        let mut p = policy();
        p.max_age = Some(Duration::from_secs(3600));
        let at = t0 + Duration::from_secs(3601);
        let none_used = BTreeSet::new();
        // Without a usage reading the age rule still applies.
        let plan = t.plan(at, &images, &none_used, &[], None, &p);
        let ids: Vec<&str> = plan.remove.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["idle", "busy"]);
        // An image in use now is never taken, however long ago it was last seen used.
        let plan = t.plan(
            at,
            &images,
            &BTreeSet::from(["busy".to_string()]),
            &[],
            None,
            &p,
        );
        let ids: Vec<&str> = plan.remove.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["idle"]);
        assert!(
            matches!(plan.remove[0].reason, Reason::Unused(d) if d > Duration::from_secs(3600))
        );
        // Off when zero.
        p.max_age = Some(Duration::ZERO);
        assert!(t
            .plan(at, &images, &none_used, &[], None, &p)
            .remove
            .is_empty());
    }

    #[test]
    fn forgotten_images_start_over() {
        let t0 = Instant::now();
        let images = vec![img("a", GB, "a:1")];
        let mut t = Tracker::default();
        t.observe(t0, &images, &BTreeSet::new());
        t.observe(t0 + Duration::from_secs(300), &[], &BTreeSet::new());
        assert!(t.is_empty());
        t.observe(t0 + Duration::from_secs(400), &images, &BTreeSet::new());
        let usage = Usage {
            capacity: 10 * GB,
            available: 0,
        };
        // Re-pulled 100 s ago: younger than the minimum age.
        let p = t.plan(
            t0 + Duration::from_secs(500),
            &images,
            &BTreeSet::new(),
            &[],
            Some(usage),
            &policy(),
        );
        assert!(p.remove.is_empty());
    }

    #[test]
    fn odd_readings_never_panic() {
        let t = Tracker::default();
        let p = policy();
        for usage in [
            Usage {
                capacity: 0,
                available: 0,
            },
            Usage {
                capacity: 1,
                available: u64::MAX,
            },
            Usage {
                capacity: u64::MAX,
                available: 0,
            },
        ] {
            let _ = usage.percent();
            let _ = t.plan(Instant::now(), &[], &BTreeSet::new(), &[], Some(usage), &p);
        }
    }
}
