//! Usage of published CSI volumes for `/stats/summary`, as the kubelet reports it for drivers
//! with the GET_VOLUME_STATS node capability: NodeGetVolumeStats on the published path.
//!
//! Kept off the request path: a scrape reads only the cache ([`volume_usage`]); a stale or
//! missing entry starts one background refresh for that volume (never two at once), bounded
//! by [`DEADLINE`], so a hung driver delays only its own figures. [`usage_of`] and [`due`] are
//! pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::client::CsiClient;
use super::proto::{NodeGetVolumeStatsResponse, UsageUnit};
use super::registry;

/// How long a reading is served before it is taken again (the kubelet's volume stats
/// period is one minute too).
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Deadline of one NodeGetVolumeStats call.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// One volume's usage (bytes and inodes), when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub time: SystemTime,
    pub available_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub inodes_free: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
}

fn non_negative(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// The usage in a NodeGetVolumeStats answer (BYTES and INODES entries; a negative figure is
/// left out). `None` when the answer has neither. Pure.
pub fn usage_of(r: &NodeGetVolumeStatsResponse, time: SystemTime) -> Option<Usage> {
    let mut u = Usage {
        time,
        available_bytes: None,
        capacity_bytes: None,
        used_bytes: None,
        inodes_free: None,
        inodes: None,
        inodes_used: None,
    };
    let mut any = false;
    for e in &r.usage {
        if e.unit == UsageUnit::Bytes as i32 {
            u.available_bytes = non_negative(e.available);
            u.capacity_bytes = non_negative(e.total);
            u.used_bytes = non_negative(e.used);
            any = true;
        } else if e.unit == UsageUnit::Inodes as i32 {
            u.inodes_free = non_negative(e.available);
            u.inodes = non_negative(e.total);
            u.inodes_used = non_negative(e.used);
            any = true;
        }
    }
    any.then_some(u)
}

/// Whether a volume whose last reading ended at `fetched` (never: `None`) is due for another
/// at `now`, unless one is running (`busy`). Pure.
pub fn due(fetched: Option<Instant>, busy: bool, now: Instant) -> bool {
    !busy && fetched.is_none_or(|t| now.saturating_duration_since(t) >= MAX_AGE)
}

#[derive(Default)]
struct Entry {
    usage: Option<Usage>,
    fetched: Option<Instant>,
    busy: bool,
}

static CACHE: Mutex<BTreeMap<PathBuf, Entry>> = Mutex::new(BTreeMap::new());

fn cache() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, Entry>> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The last usage read of the CSI volume published at `vol_dir`
/// (`pods/<uid>/volumes/kubernetes.io~csi/<name>`); starts a background reading when the
/// last one is older than [`MAX_AGE`]. `None` until a first reading arrived, or when the
/// driver does not report volume stats.
pub fn volume_usage(vol_dir: &Path) -> Option<Usage> {
    let now = Instant::now();
    let mut c = cache();
    let e = c.entry(vol_dir.to_path_buf()).or_default();
    let out = e.usage;
    if due(e.fetched, e.busy, now) {
        e.busy = true;
        drop(c);
        let dir = vol_dir.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("csi-stats".into())
            .spawn(move || refresh(&dir));
        if spawned.is_err() {
            if let Some(e) = cache().get_mut(vol_dir) {
                e.busy = false;
            }
        }
    }
    out
}

fn refresh(dir: &Path) {
    let usage = read(dir);
    let mut c = cache();
    // Volumes that are gone are forgotten here, so the cache follows the node's volumes.
    c.retain(|p, _| p.exists());
    if let Some(e) = c.get_mut(dir) {
        e.usage = usage;
        e.fetched = Some(Instant::now());
        e.busy = false;
    }
}

fn read(dir: &Path) -> Option<Usage> {
    let d = super::volume::vol_data(dir)?;
    let driver = registry::global().driver(&d.driver_name).cloned()?;
    if !driver.volume_stats {
        return None;
    }
    let target = dir.join("mount").display().to_string();
    let client = CsiClient::new(&driver.name, &driver.endpoint);
    let call = client.node_get_volume_stats(&d.volume_handle, &target);
    let deadline = async {
        smol::Timer::after(DEADLINE).await;
        None
    };
    let r = smol::block_on(smol::future::or(async { Some(call.await) }, deadline));
    match r {
        Some(Ok(r)) => usage_of(&r, SystemTime::now()),
        Some(Err(e)) => {
            log::debug!("CSI volume stats of {}: {e}", dir.display());
            None
        }
        None => {
            log::debug!(
                "CSI volume stats of {}: no answer within {DEADLINE:?}",
                dir.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csi::proto::VolumeUsage;

    /// CSI's NodeGetVolumeStats reports BYTES and INODES entries (available, total, used);
    /// the kubelet maps them to availableBytes/capacityBytes/usedBytes and
    /// inodesFree/inodes/inodesUsed.
    #[test]
    fn usage_from_the_answer() {
        let t = SystemTime::UNIX_EPOCH;
        let r = NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: 10,
                    total: 30,
                    used: 20,
                    unit: UsageUnit::Bytes as i32,
                },
                VolumeUsage {
                    available: 5,
                    total: 7,
                    used: -1,
                    unit: UsageUnit::Inodes as i32,
                },
            ],
        };
        let u = usage_of(&r, t).unwrap();
        assert_eq!(
            (u.available_bytes, u.capacity_bytes, u.used_bytes),
            (Some(10), Some(30), Some(20))
        );
        assert_eq!(
            (u.inodes_free, u.inodes, u.inodes_used),
            (Some(5), Some(7), None)
        );
        assert!(usage_of(&NodeGetVolumeStatsResponse { usage: vec![] }, t).is_none());
        let now = Instant::now();
        assert!(due(None, false, now));
        assert!(!due(None, true, now));
        assert!(!due(Some(now), false, now));
        if let Some(old) = now.checked_sub(MAX_AGE) {
            assert!(due(Some(old), false, now));
        }
    }

    /// A volume directory without a published record gives nothing and never blocks.
    #[test]
    fn unknown_volume_reads_nothing() {
        let dir = std::env::temp_dir().join(format!("tinylet-csi-stats-{}", std::process::id()));
        assert!(volume_usage(&dir).is_none());
        assert!(read(&dir).is_none());
    }
}
