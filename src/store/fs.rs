//! The few filesystem operations the store needs, behind a trait so a simulated power cut can
//! stand in for the disk (see `fault`).
//!
//! Owns the syscalls: open/write/fsync/rename/unlink, directory permissions and the lock. It
//! must not decide anything about records; the store does that.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{access, geteuid, AccessFlags};

use super::StoreError;

/// One directory entry as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name within its directory.
    pub name: OsString,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The filesystem operations the store is built from.
///
/// Every mutation the store acknowledges is made of these calls, so a fake implementation can
/// stop between any two of them (or inside a write) and show what a power cut leaves behind.
pub trait Fs {
    /// Makes `dir` an existing, private (0700), writable directory owned by us, creating it if
    /// missing; refuses with [`StoreError::Permissions`] otherwise.
    fn prepare_dir(&mut self, dir: &Path) -> Result<(), StoreError>;
    /// Takes an exclusive lock for `dir` (held until the `Fs` is dropped).
    fn lock(&mut self, dir: &Path) -> Result<(), StoreError>;
    /// The entries of `dir`.
    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<Entry>>;
    /// The contents of a file, at most `limit` bytes of it (so a huge stray file cannot
    /// exhaust memory; the decoder then reports it as too long).
    fn read_file(&mut self, path: &Path, limit: u64) -> io::Result<Vec<u8>>;
    /// Creates or truncates `path` (mode 0600), writes `data` and fsyncs it.
    fn write_file_synced(&mut self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Renames a file, replacing `to` atomically.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs a directory so renames and unlinks in it are durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Unlinks a file.
    fn remove_file(&mut self, path: &Path) -> io::Result<()>;
}

/// A borrowed filesystem works too, so a test keeps its simulated disk after a failed open.
impl<T: Fs + ?Sized> Fs for &mut T {
    fn prepare_dir(&mut self, dir: &Path) -> Result<(), StoreError> {
        (**self).prepare_dir(dir)
    }
    fn lock(&mut self, dir: &Path) -> Result<(), StoreError> {
        (**self).lock(dir)
    }
    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<Entry>> {
        (**self).list_dir(dir)
    }
    fn read_file(&mut self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        (**self).read_file(path, limit)
    }
    fn write_file_synced(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        (**self).write_file_synced(path, data)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        (**self).rename(from, to)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        (**self).sync_dir(dir)
    }
    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        (**self).remove_file(path)
    }
}

/// The real filesystem.
#[derive(Debug, Default)]
pub struct OsFs {
    lock: Option<Flock<File>>,
}

impl OsFs {
    /// A handle on the real filesystem.
    pub fn new() -> Self {
        OsFs::default()
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Fs for OsFs {
    fn prepare_dir(&mut self, dir: &Path) -> Result<(), StoreError> {
        match fs::metadata(dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| io_err("create store directory", dir, e))?;
                // Make the new directory's own name durable before records go into it.
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    self.sync_dir(parent)
                        .map_err(|e| io_err("fsync parent of new store directory", parent, e))?;
                }
            }
            Err(e) => return Err(io_err("stat store directory", dir, e)),
        }
        let meta = fs::metadata(dir).map_err(|e| io_err("stat store directory", dir, e))?;
        let refuse = |reason: String| StoreError::Permissions {
            path: dir.to_path_buf(),
            reason,
        };
        if !meta.is_dir() {
            return Err(refuse("exists but is not a directory".into()));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "mode {mode:04o} lets group/others in; pod specs may hold secrets (chmod 700 it)"
            )));
        }
        let me = geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "owned by uid {}, but tinylet runs as uid {me}",
                meta.uid()
            )));
        }
        access(
            dir,
            AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK,
        )
        .map_err(|e| {
            refuse(format!(
                "not writable ({e}); is the filesystem read-only or the mode too strict?"
            ))
        })?;
        Ok(())
    }

    fn lock(&mut self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(super::layout::LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err("open store lock", &path, e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => {
                self.lock = Some(l);
                Ok(())
            }
            Err((_, errno)) => Err(StoreError::Locked {
                path,
                reason: errno.to_string(),
            }),
        }
    }

    fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            out.push(Entry {
                name: e.file_name(),
                is_dir: e.file_type()?.is_dir(),
            });
        }
        Ok(out)
    }

    fn read_file(&mut self, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(path)?.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn write_file_synced(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data)?;
        // fdatasync suffices: the size is data, and the name is made durable by the dir fsync.
        f.sync_data()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove_file(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// Replaces one file outside the record store (kubeconfig, client key and certificate, cached
/// tokens) crash-safely with mode 0600: a hidden temporary file in the same directory, its mode
/// forced (a stale one keeps its old mode), synced, renamed over `path`, directory synced; the
/// temporary file is removed if any step fails.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod write_private_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_mode_0600_even_over_a_stale_world_readable_tmp() {
        let dir = std::env::temp_dir().join(format!("tinylet-wp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let stale = dir.join(".token.tmp");
        fs::write(&stale, b"old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!stale.exists());
        write_private(&path, b"rotated").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"rotated");
        assert!(write_private(Path::new("/"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
