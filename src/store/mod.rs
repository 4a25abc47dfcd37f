//! Crash-safe, wear-friendly record store on flash.
//!
//! Owns the node's durable copy of the pods it runs: static pods imported from manifests (so
//! they start at boot even when the manifest directory mounts late) and pods admitted from the
//! API server (so they restart after an offline reboot). Records are keyed opaque bytes with a
//! [`RecordKind`]; this module never parses the values (callers store the pod as JSON) and
//! never talks to the API server, the runtime or the clock. It must not delete data it cannot
//! read: damaged records are moved to `quarantine/` for an operator to inspect.
//!
//! # Layout and the write protocol
//!
//! One file per record, `<dir>/<kind>.<escaped key>.rec` (see [`layout`]), each a
//! self-checking [`Record`] (magic, format version, length, CRC-32C, CBOR body). A `put`
//! writes `<name>.tmp`, fsyncs it, renames it over `<name>`, then fsyncs the directory; only
//! then does it return `Ok`. A `delete` unlinks and fsyncs the directory. An identical `put`
//! (same content hash, and the same bytes on re-read) writes nothing at all.
//!
//! # Why one file per record and not an append-only log
//!
//! - **Write volume (SD-card wear).** Pods change at admission rate, not per second, and
//!   identical writes are skipped, so the steady state writes zero bytes under either design.
//!   Per change, a file costs the record once plus the filesystem's metadata (an inode, a
//!   directory block, a journal commit: a few 4 KiB blocks) and two fsyncs. A log saves the
//!   metadata but still needs an fsync per acknowledged write, and must be compacted: copying
//!   every live record again to reclaim space, which is write amplification a file-per-record
//!   store never pays. At 1-100 records the log's saving is a handful of blocks per change.
//! - **Torn writes.** A committed record file is never written in place: a new value goes to a
//!   temporary file that becomes visible only by an atomic rename after its data is durable.
//!   A power cut mid-write therefore tears only the temporary file, which recovery deletes; the
//!   old value stays intact. A log must find and cut a torn tail on every open, and a crash
//!   during compaction needs a second protocol of its own.
//! - **Recovery cost.** Open reads each live record once (at most a few MB); a log replays
//!   its whole history since the last compaction.
//! - **Independence.** A record damaged by the medium (bit rot on a worn card) is quarantined
//!   alone and every other record still loads; in a log, damage in the middle can hide the
//!   records after it unless the format can resynchronise.
//!
//! The cost is one inode per record and a directory fsync per change, which the expected
//! write rate makes negligible.
//!
//! # Recovery on open
//!
//! Leftover `*.tmp` files are removed (they were never acknowledged). Every `*.rec` file is
//! decoded; one that is torn, corrupt, of an unknown format version, or stored under a name
//! that does not match its key is moved to `quarantine/` with a `log::warn!` naming the file
//! and the reason. Everything else loads.
//!
//! # Use
//!
//! `Store::open(<root-dir>/store)`, then `put`/`get`/`delete`/`list`/`keys`/`hash`. Calls
//! block on fsync (milliseconds on an SD card): run them off the executor (`smol::unblock`).
//! One process owns a store at a time (an exclusive `flock` on `<dir>/lock`).
//!
//! The fault injector in [`fault`] models what power loss leaves (unsynced names and data
//! lost, kept or torn) at every step of every operation; the tests drive the store through it.

pub mod crc;
pub mod fault;
pub mod fs;
pub mod layout;
pub mod record;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use fs::{Fs, OsFs};
pub use record::{content_hash, ContentHash, Record, RecordFault, RecordKind};

/// Everything that can go wrong in the store, naming the operation and the file or key.
#[derive(Debug)]
pub enum StoreError {
    /// A filesystem call failed.
    Io {
        /// What the store was doing.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The store directory has the wrong owner or mode, or cannot be written.
    Permissions {
        /// The directory refused.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Another process holds the store's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The OS reason.
        reason: String,
    },
    /// Bytes handed to [`Record::decode`] are not a valid record.
    Malformed {
        /// What is wrong with them.
        reason: RecordFault,
    },
    /// A stored record file could not be read back.
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: RecordFault,
    },
    /// A record to be written is invalid (empty or long key, value too large).
    InvalidRecord {
        /// The record's kind.
        kind: RecordKind,
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: RecordFault,
    },
    /// Two keys too long to spell out map to the same file name.
    NameCollision {
        /// The record's kind.
        kind: RecordKind,
        /// The key being written.
        key: String,
        /// The key already stored under that name.
        existing: String,
    },
}

impl StoreError {
    /// Whether the medium refused the write for lack of room or because it is read-only
    /// (ENOSPC, EDQUOT, EROFS): a condition that passes, so the write is kept and retried.
    pub fn is_out_of_space(&self) -> bool {
        use nix::errno::Errno;
        match self {
            StoreError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(n) if n == Errno::ENOSPC as i32 || n == Errno::EDQUOT as i32 || n == Errno::EROFS as i32
            ),
            _ => false,
        }
    }
}

/// Writes the medium refused for lack of room, kept in memory (the latest intent per record)
/// and retried with back-off until they succeed.
#[derive(Debug, Default)]
struct Deferred {
    /// Record → the value to store (`None`: delete it).
    writes: BTreeMap<(RecordKind, String), Option<Vec<u8>>>,
    /// When the first of the current run of refusals happened.
    since: Option<std::time::Instant>,
    /// The current back-off.
    delay: std::time::Duration,
    /// When the next retry is due.
    next: Option<std::time::Instant>,
}

/// The first retry of a refused write comes after this; each failed retry doubles it.
const DEFER_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// Retries of refused writes are at most this far apart.
const DEFER_MAX: std::time::Duration = std::time::Duration::from_secs(60);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "store: {op} {}: {source}", path.display())
            }
            StoreError::Permissions { path, reason } => {
                write!(f, "store: refusing directory {}: {reason}", path.display())
            }
            StoreError::Locked { path, reason } => write!(
                f,
                "store: {} is locked by another process ({reason}); is another tinylet running?",
                path.display()
            ),
            StoreError::Malformed { reason } => write!(f, "store: decode record: {reason}"),
            StoreError::Corrupt { path, reason } => {
                write!(f, "store: read record {}: {reason}", path.display())
            }
            StoreError::InvalidRecord { kind, key, reason } => {
                write!(f, "store: write {kind} record {key:?}: {reason}")
            }
            StoreError::NameCollision {
                kind,
                key,
                existing,
            } => write!(
                f,
                "store: write {kind} record {key:?}: its file name is taken by key {existing:?}"
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Counters of what the store has done to the medium since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes handed to `write` (record files, temporary copies included).
    pub bytes_written: u64,
    /// Record files written.
    pub files_written: u64,
    /// fsync calls on files and directories.
    pub fsyncs: u64,
    /// Renames (commits and quarantine moves).
    pub renames: u64,
    /// Unlinks (deletes and leftover temporary files).
    pub unlinks: u64,
}

/// Record writes of every store in this process (for `/metrics`): puts that wrote, deletes
/// that removed, and those the medium refused. Identical puts write nothing and count nothing.
#[derive(Debug, Default)]
pub struct WriteCounts {
    pub puts: AtomicU64,
    pub put_failures: AtomicU64,
    pub deletes: AtomicU64,
    pub delete_failures: AtomicU64,
}

/// The process-wide [`WriteCounts`].
pub static WRITES: WriteCounts = WriteCounts {
    puts: AtomicU64::new(0),
    put_failures: AtomicU64::new(0),
    deletes: AtomicU64::new(0),
    delete_failures: AtomicU64::new(0),
};

/// What open found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Leftover temporary files removed.
    pub removed_temps: Vec<String>,
    /// Record files moved to quarantine: (original name, name in quarantine, reason).
    pub quarantined: Vec<(String, String, String)>,
    /// Records loaded.
    pub loaded: usize,
}

/// Whether a `put` touched the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The value was new or changed and is now durable.
    Written,
    /// The stored value was identical; nothing was written.
    Unchanged,
}

#[derive(Debug, Clone)]
struct IndexEntry {
    file: String,
    hash: ContentHash,
    len: usize,
}

/// The record store over a directory, on the real filesystem by default.
#[derive(Debug)]
pub struct Store<F: Fs = OsFs> {
    fs: F,
    dir: PathBuf,
    quarantine: PathBuf,
    index: BTreeMap<(RecordKind, String), IndexEntry>,
    stats: StoreStats,
    recovery: Recovery,
    deferred: Deferred,
}

impl Store<OsFs> {
    /// Opens (creating if needed) the store in `dir`, recovering from any crash.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Store::open_with(OsFs::new(), dir)
    }
}

fn io_at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// Whether a read error means the medium lost the data (then quarantine) rather than a
/// transient condition (then fail the open and let the caller retry).
fn is_media_error(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(e.raw_os_error(), Some(n) if n == Errno::EIO as i32 || n == Errno::EBADMSG as i32)
}

/// One byte more than the largest valid record, so an oversized file is read only that far
/// and still rejected.
const READ_LIMIT: u64 = (record::HEADER_LEN + record::MAX_BODY_LEN + 1) as u64;

impl<F: Fs> Store<F> {
    /// Opens the store in `dir` over the given filesystem, recovering from any crash.
    pub fn open_with(mut fs: F, dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let quarantine = dir.join(layout::QUARANTINE_DIR);
        fs.prepare_dir(&dir)?;
        fs.lock(&dir)?;
        fs.prepare_dir(&quarantine)?;
        let mut store = Store {
            fs,
            dir,
            quarantine,
            index: BTreeMap::new(),
            stats: StoreStats::default(),
            recovery: Recovery::default(),
            deferred: Deferred::default(),
        };
        store.recover()?;
        Ok(store)
    }

    fn recover(&mut self) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        let mut entries = self
            .fs
            .list_dir(&dir)
            .map_err(io_at("list store directory", &dir))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut removed = false;
        for entry in entries {
            let Some(name) = entry.name.to_str().map(str::to_string) else {
                log::warn!(
                    "store: ignoring {}: name is not UTF-8",
                    dir.join(&entry.name).display()
                );
                continue;
            };
            if entry.is_dir {
                if name != layout::QUARANTINE_DIR {
                    log::warn!(
                        "store: ignoring unexpected directory {}",
                        dir.join(&name).display()
                    );
                }
                continue;
            }
            if name == layout::LOCK_FILE {
                continue;
            }
            let path = dir.join(&name);
            if layout::is_temp(&name) {
                // Never acknowledged: its put returned an error or never returned.
                self.fs
                    .remove_file(&path)
                    .map_err(io_at("remove leftover temporary file", &path))?;
                self.stats.unlinks += 1;
                log::info!("store: removed unfinished write {}", path.display());
                self.recovery.removed_temps.push(name);
                removed = true;
                continue;
            }
            if !layout::is_record(&name) {
                log::warn!("store: ignoring unexpected file {}", path.display());
                continue;
            }
            let bytes = match self.fs.read_file(&path, READ_LIMIT) {
                Ok(b) => b,
                Err(e) if is_media_error(&e) => {
                    self.quarantine_file(&name, &format!("unreadable: {e}"))?;
                    continue;
                }
                Err(e) => return Err(io_at("read record", &path)(e)),
            };
            match Record::decode_fault(&bytes) {
                Err(fault) => self.quarantine_file(&name, &fault.to_string())?,
                Ok(rec) => {
                    let expected = layout::record_file_name(rec.kind, &rec.key);
                    if expected != name {
                        let why = format!(
                            "holds {} record {:?}, which belongs in {expected}",
                            rec.kind, rec.key
                        );
                        self.quarantine_file(&name, &why)?;
                        continue;
                    }
                    self.index.insert(
                        (rec.kind, rec.key),
                        IndexEntry {
                            file: name,
                            hash: rec.hash,
                            len: rec.value.len(),
                        },
                    );
                    self.recovery.loaded += 1;
                }
            }
        }
        if removed {
            self.fs
                .sync_dir(&dir)
                .map_err(io_at("fsync store directory", &dir))?;
            self.stats.fsyncs += 1;
        }
        log::info!(
            "store: opened {} with {} records ({} unfinished writes removed, {} files quarantined)",
            dir.display(),
            self.recovery.loaded,
            self.recovery.removed_temps.len(),
            self.recovery.quarantined.len()
        );
        Ok(())
    }

    fn quarantine_file(&mut self, name: &str, reason: &str) -> Result<(), StoreError> {
        let from = self.dir.join(name);
        let qdir = self.quarantine.clone();
        let taken = self
            .fs
            .list_dir(&qdir)
            .map_err(io_at("list quarantine directory", &qdir))?;
        let is_taken = |n: &str| taken.iter().any(|e| e.name.to_str() == Some(n));
        let mut target = name.to_string();
        let mut n = 1u32;
        while is_taken(&target) {
            target = format!("{name}.{n}");
            n = n.saturating_add(1);
        }
        let to = qdir.join(&target);
        self.fs
            .rename(&from, &to)
            .map_err(io_at("move damaged record to quarantine", &from))?;
        self.stats.renames += 1;
        // Destination first: a cut between the two syncs leaves a copy in both places (moved
        // again on the next open), never in neither.
        self.fs
            .sync_dir(&qdir)
            .map_err(io_at("fsync quarantine directory", &qdir))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_at("fsync store directory", &from))?;
        self.stats.fsyncs += 2;
        log::warn!(
            "store: quarantined record file {}: {reason}; moved to {}",
            from.display(),
            to.display()
        );
        self.recovery
            .quarantined
            .push((name.to_string(), target, reason.to_string()));
        Ok(())
    }

    /// Stores `value` under `key`; returns once it survives power loss. Writes nothing if the
    /// stored value is identical. When the medium is full or read-only the error is returned
    /// and the write is also kept and retried by [`Store::retry_deferred`] (a later put or
    /// delete of the same record replaces it); the first refusal of a run is logged once.
    pub fn put(
        &mut self,
        kind: RecordKind,
        key: &str,
        value: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let r = self.put_now(kind, key, value);
        self.note(kind, key, Some(value), r.as_ref().err());
        match &r {
            Ok(PutOutcome::Written) => WRITES.puts.fetch_add(1, Ordering::Relaxed),
            Ok(PutOutcome::Unchanged) => 0,
            Err(_) => WRITES.put_failures.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// Remembers or forgets a refused write of one record.
    fn note(
        &mut self,
        kind: RecordKind,
        key: &str,
        value: Option<&[u8]>,
        err: Option<&StoreError>,
    ) {
        let slot = (RecordKind::from_code(kind.code()), key.to_string());
        match err {
            None => {
                self.deferred.writes.remove(&slot);
            }
            Some(e) if e.is_out_of_space() => {
                self.deferred.writes.insert(slot, value.map(<[u8]>::to_vec));
                if self.deferred.since.is_none() {
                    let now = std::time::Instant::now();
                    log::warn!("{e}; pods keep running, the write is kept in memory and retried");
                    self.deferred.since = Some(now);
                    self.deferred.delay = DEFER_FIRST;
                    self.deferred.next = Some(now + DEFER_FIRST);
                }
            }
            Some(_) => {}
        }
    }

    /// How many refused writes wait for room.
    pub fn deferred(&self) -> usize {
        self.deferred.writes.len()
    }

    /// Retries the refused writes when their back-off is due at `now`; returns how many went
    /// through. When all have, the catch-up is logged once; while the medium still refuses,
    /// the back-off doubles (up to a minute) and nothing more is logged.
    pub fn retry_deferred(&mut self, now: std::time::Instant) -> usize {
        if self.deferred.writes.is_empty() || self.deferred.next.is_some_and(|n| now < n) {
            return 0;
        }
        let pending = std::mem::take(&mut self.deferred.writes);
        let total = pending.len();
        let mut done = 0;
        let mut refused = BTreeMap::new();
        for ((kind, key), value) in pending {
            let r = match &value {
                Some(v) => self.put_now(kind, &key, v).map(|_| ()),
                None => self.delete_now(kind, &key).map(|_| ()),
            };
            match r {
                Ok(()) => done += 1,
                Err(e) if e.is_out_of_space() => {
                    refused.insert((kind, key), value);
                }
                Err(e) => {
                    // Not a space problem: the caller's next write of it reports it.
                    log::error!("store: retrying a kept write: {e}");
                }
            }
        }
        self.deferred.writes = refused;
        if self.deferred.writes.is_empty() {
            if let Some(since) = self.deferred.since.take() {
                log::info!(
                    "store: room again; {total} kept write(s) caught up after {} s",
                    now.saturating_duration_since(since).as_secs()
                );
            }
            self.deferred.next = None;
            self.deferred.delay = DEFER_FIRST;
        } else {
            self.deferred.delay = (self.deferred.delay * 2).clamp(DEFER_FIRST, DEFER_MAX);
            self.deferred.next = Some(now + self.deferred.delay);
        }
        done
    }

    fn put_now(
        &mut self,
        kind: RecordKind,
        key: &str,
        value: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let kind = RecordKind::from_code(kind.code());
        let hash = content_hash(value);
        let slot = (kind, key.to_string());
        let file = layout::record_file_name(kind, key);
        match self.index.get(&slot) {
            Some(e) if e.hash == hash && e.len == value.len() => {
                // Reads cost no flash wear; comparing bytes makes a hash collision harmless.
                if let Ok(Some(stored)) = self.read_value(kind, key, &e.file.clone()) {
                    if stored == value {
                        return Ok(PutOutcome::Unchanged);
                    }
                }
            }
            Some(_) => {}
            None => {
                if let Some(((_, existing), _)) = self.index.iter().find(|(_, e)| e.file == file) {
                    return Err(StoreError::NameCollision {
                        kind,
                        key: key.to_string(),
                        existing: existing.clone(),
                    });
                }
            }
        }
        let bytes = Record {
            kind,
            key: key.to_string(),
            hash,
            value: value.to_vec(),
        }
        .encode()?;
        let tmp = self.dir.join(layout::temp_file_name(&file));
        let path = self.dir.join(&file);
        if let Err(e) = self.fs.write_file_synced(&tmp, &bytes) {
            self.discard_temp(&tmp);
            return Err(io_at("write and fsync temporary record", &tmp)(e));
        }
        self.stats.bytes_written += bytes.len() as u64;
        self.stats.files_written += 1;
        self.stats.fsyncs += 1;
        if let Err(e) = self.fs.rename(&tmp, &path) {
            self.discard_temp(&tmp);
            return Err(io_at("rename record into place", &path)(e));
        }
        self.stats.renames += 1;
        // The name now holds the new value for every reader, durable or not yet.
        self.index.insert(
            slot,
            IndexEntry {
                file,
                hash,
                len: value.len(),
            },
        );
        let dir = self.dir.clone();
        self.fs
            .sync_dir(&dir)
            .map_err(io_at("fsync store directory after writing", &path))?;
        self.stats.fsyncs += 1;
        Ok(PutOutcome::Written)
    }

    fn discard_temp(&mut self, tmp: &Path) {
        // Best effort: a leftover is removed on the next open anyway.
        if self.fs.remove_file(tmp).is_ok() {
            self.stats.unlinks += 1;
        }
    }

    /// Removes the record; returns once the removal survives power loss. `Ok(false)` if there
    /// was none (nothing is written then).
    pub fn delete(&mut self, kind: RecordKind, key: &str) -> Result<bool, StoreError> {
        let r = self.delete_now(kind, key);
        self.note(kind, key, None, r.as_ref().err());
        match &r {
            Ok(true) => WRITES.deletes.fetch_add(1, Ordering::Relaxed),
            Ok(false) => 0,
            Err(_) => WRITES.delete_failures.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    fn delete_now(&mut self, kind: RecordKind, key: &str) -> Result<bool, StoreError> {
        let kind = RecordKind::from_code(kind.code());
        let slot = (kind, key.to_string());
        let Some(entry) = self.index.get(&slot) else {
            return Ok(false);
        };
        let path = self.dir.join(&entry.file);
        match self.fs.remove_file(&path) {
            Ok(()) => self.stats.unlinks += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at("remove record", &path)(e)),
        }
        self.index.remove(&slot);
        let dir = self.dir.clone();
        self.fs
            .sync_dir(&dir)
            .map_err(io_at("fsync store directory after removing", &path))?;
        self.stats.fsyncs += 1;
        Ok(true)
    }

    fn read_value(
        &mut self,
        kind: RecordKind,
        key: &str,
        file: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(file);
        let bytes = match self.fs.read_file(&path, READ_LIMIT) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at("read record", &path)(e)),
        };
        let rec = Record::decode_fault(&bytes).map_err(|reason| StoreError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        if rec.kind != kind || rec.key != key {
            return Err(StoreError::Corrupt {
                path,
                reason: RecordFault::BadKey,
            });
        }
        Ok(Some(rec.value))
    }

    /// The stored value for `key`, read back and checked.
    pub fn get(&mut self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let kind = RecordKind::from_code(kind.code());
        let Some(file) = self
            .index
            .get(&(kind, key.to_string()))
            .map(|e| e.file.clone())
        else {
            return Ok(None);
        };
        self.read_value(kind, key, &file)
    }

    /// The content hash of the stored value, without reading it (to skip identical puts).
    pub fn hash(&self, kind: RecordKind, key: &str) -> Option<ContentHash> {
        let kind = RecordKind::from_code(kind.code());
        self.index.get(&(kind, key.to_string())).map(|e| e.hash)
    }

    /// The keys stored for a kind, in order.
    pub fn keys(&self, kind: RecordKind) -> Vec<String> {
        let kind = RecordKind::from_code(kind.code());
        self.index
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Every (key, value) of a kind, in key order.
    pub fn list(&mut self, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for key in self.keys(kind) {
            if let Some(v) = self.get(kind, &key)? {
                out.push((key, v));
            }
        }
        Ok(out)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// What the store has written since open.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// What open found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The filesystem under the store (tests fill the simulated disk).
    #[cfg(test)]
    pub(crate) fn fs_mut(&mut self) -> &mut F {
        &mut self.fs
    }

    /// Gives back the filesystem (tests inspect a simulated disk after a power cut).
    pub fn into_fs(self) -> F {
        self.fs
    }
}

#[cfg(test)]
mod tests;
