//! A simulated filesystem that loses power: the store's fault injector.
//!
//! Owns an in-memory model of what is *written* (visible to running code) versus what is
//! *durable* (survives power loss): file contents become durable at fsync of the file, names
//! at fsync of their directory. A step budget stops the machine at any syscall or byte
//! boundary; [`SimFs::after_power_loss`] then builds the disk a reboot would find, under one of
//! several [`PowerLoss`] outcomes that real flash and filesystems produce. It must not be used
//! for anything but testing the store's crash safety; it does no real I/O.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use super::fs::{Entry, Fs};
use super::StoreError;

/// What a power cut preserves of the writes not yet made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Nothing unsynced survives: names and contents are as of their last fsync.
    LoseUnsynced,
    /// Everything written survives (what SIGKILL or an orderly stop leaves).
    KeepAll,
    /// Names survive but unsynced contents do not (journalled metadata, lost data blocks:
    /// the zero-length or stale file after a crash).
    MetadataOnly,
    /// Names survive and unsynced contents are torn: the first half written, the rest garbage.
    TornData,
}

impl PowerLoss {
    /// Every outcome, for exhaustive tests.
    pub const ALL: [PowerLoss; 4] = [
        PowerLoss::LoseUnsynced,
        PowerLoss::KeepAll,
        PowerLoss::MetadataOnly,
        PowerLoss::TornData,
    ];
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<OsString, usize>,
    durable: BTreeMap<OsString, usize>,
}

/// An in-memory filesystem with a power switch.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: Vec<Inode>,
    budget: Option<u64>,
    steps: u64,
    powered_off: bool,
    full: bool,
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p.to_path_buf(), n.to_os_string())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")),
    }
}

impl SimFs {
    /// An empty disk with no step limit.
    pub fn new() -> Self {
        SimFs::default()
    }

    /// Cuts the power after `steps` more steps (a syscall, or one byte of a write, is a step).
    pub fn set_budget(&mut self, steps: Option<u64>) {
        self.budget = steps;
    }

    /// Steps taken so far; run a workload unlimited once to learn how many crash points it has.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Makes the disk full (writes create the file, then fail with ENOSPC) or gives room back.
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// Whether the power has been cut.
    pub fn powered_off(&self) -> bool {
        self.powered_off
    }

    fn step(&mut self) -> io::Result<()> {
        if self.powered_off {
            return Err(power_lost());
        }
        if let Some(b) = self.budget {
            if self.steps >= b {
                self.powered_off = true;
                return Err(power_lost());
            }
        }
        self.steps += 1;
        Ok(())
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such directory"))
    }

    fn lookup(&self, path: &Path) -> io::Result<usize> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.live.get(&name).copied())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    /// Puts a file on the disk as already durable (to stage damaged or stray files).
    pub fn plant(&mut self, path: &Path, data: &[u8]) {
        let Ok((dir, name)) = split(path) else {
            return;
        };
        let ino = self.inodes.len();
        self.inodes.push(Inode {
            live: data.to_vec(),
            durable: data.to_vec(),
        });
        let d = self.dirs.entry(dir).or_default();
        d.live.insert(name.clone(), ino);
        d.durable.insert(name, ino);
    }

    /// The current (running-system) contents of a file, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let ino = self.lookup(path).ok()?;
        self.inodes.get(ino).map(|i| i.live.clone())
    }

    /// The names currently in a directory.
    pub fn names(&self, dir: &Path) -> Vec<String> {
        self.dirs
            .get(dir)
            .map(|d| {
                d.live
                    .keys()
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The disk a reboot finds after the power was cut now, under `how`. The result has no
    /// budget and everything on it is durable.
    pub fn after_power_loss(&self, how: PowerLoss) -> SimFs {
        let mut out = SimFs::new();
        let mut remap: BTreeMap<usize, usize> = BTreeMap::new();
        for (path, dir) in &self.dirs {
            let names = match how {
                PowerLoss::LoseUnsynced => &dir.durable,
                _ => &dir.live,
            };
            let mut nd = Dir::default();
            for (name, &ino) in names {
                let Some(inode) = self.inodes.get(ino) else {
                    continue;
                };
                let new_ino = *remap.entry(ino).or_insert_with(|| {
                    let data = match how {
                        PowerLoss::KeepAll => inode.live.clone(),
                        PowerLoss::LoseUnsynced | PowerLoss::MetadataOnly => inode.durable.clone(),
                        PowerLoss::TornData if inode.live == inode.durable => inode.live.clone(),
                        PowerLoss::TornData => {
                            let half = inode.live.len() / 2;
                            let mut d = inode.live.get(..half).unwrap_or_default().to_vec();
                            d.resize(inode.live.len(), 0x5A);
                            d
                        }
                    };
                    out.inodes.push(Inode {
                        live: data.clone(),
                        durable: data,
                    });
                    out.inodes.len() - 1
                });
                nd.live.insert(name.clone(), new_ino);
                nd.durable.insert(name.clone(), new_ino);
            }
            out.dirs.insert(path.clone(), nd);
        }
        out
    }
}

impl Fs for SimFs {
    fn prepare_dir(&mut self, dir: &Path) -> Result<(), StoreError> {
        self.step().map_err(|source| StoreError::Io {
            op: "create store directory",
            path: dir.to_path_buf(),
            source,
        })?;
        // Directory creation is treated as immediately durable: the store fsyncs the parent
        // after creating it, and the model has no parent to lose it from.
        self.dirs.entry(dir.to_path_buf()).or_default();
        Ok(())
    }

    fn lock(&mut self, _dir: &Path) -> Result<(), StoreError> {
        Ok(())
    }

    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<Entry>> {
        self.step()?;
        let d = self
            .dirs
            .get(dir)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such directory"))?;
        let mut out: Vec<Entry> = d
            .live
            .keys()
            .map(|name| Entry {
                name: name.clone(),
                is_dir: false,
            })
            .collect();
        for sub in self.dirs.keys() {
            if sub.parent() == Some(dir) {
                if let Some(n) = sub.file_name() {
                    out.push(Entry {
                        name: n.to_os_string(),
                        is_dir: true,
                    });
                }
            }
        }
        Ok(out)
    }

    fn read_file(&mut self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        self.step()?;
        let ino = self.lookup(path)?;
        let live = self
            .inodes
            .get(ino)
            .map(|i| i.live.as_slice())
            .unwrap_or_default();
        let n = usize::try_from(limit).unwrap_or(usize::MAX).min(live.len());
        Ok(live.get(..n).unwrap_or_default().to_vec())
    }

    fn write_file_synced(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.step()?;
        let (dir, name) = split(path)?;
        let ino = match self.lookup(path) {
            Ok(ino) => ino,
            Err(_) => {
                self.inodes.push(Inode::default());
                let ino = self.inodes.len() - 1;
                self.dir_mut(&dir)?.live.insert(name, ino);
                ino
            }
        };
        if let Some(i) = self.inodes.get_mut(ino) {
            i.live.clear();
        }
        if self.full {
            return Err(io::Error::from_raw_os_error(
                nix::errno::Errno::ENOSPC as i32,
            ));
        }
        for &b in data {
            self.step()?;
            if let Some(i) = self.inodes.get_mut(ino) {
                i.live.push(b);
            }
        }
        self.step()?;
        if let Some(i) = self.inodes.get_mut(ino) {
            i.durable = i.live.clone();
        }
        Ok(())
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        let ino = self.lookup(from)?;
        let (fdir, fname) = split(from)?;
        let (tdir, tname) = split(to)?;
        self.dir_mut(&tdir)?;
        self.dir_mut(&fdir)?.live.remove(&fname);
        self.dir_mut(&tdir)?.live.insert(tname, ino);
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.step()?;
        let d = self.dir_mut(dir)?;
        d.durable = d.live.clone();
        Ok(())
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.lookup(path)?;
        let (dir, name) = split(path)?;
        self.dir_mut(&dir)?.live.remove(&name);
        Ok(())
    }
}
