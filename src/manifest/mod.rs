//! Static pod manifests: loading YAML/JSON files, static pod names and UIDs, watching the
//! manifest directory.
//!
//! Owns the path from "files in a directory" to "the desired set of static pods plus one clear
//! error per bad file". The decision part ([`load_files`], [`parse_manifest`]) is pure; reading
//! the directory ([`load_dir`]) and inotify ([`watch::ManifestWatcher`]) are thin I/O around it.
//! It must not start, stop or compare running pods (reconcile does) nor talk to the API server
//! (mirror pods belong to the API client).
//!
//! Which files are read follows the kubelet: entries whose name starts with `.` are ignored,
//! directories are not recursed into, symlinks are followed. tinylet additionally reads only
//! `*.yaml`, `*.yml` and `*.json`, so editor backups (`pod.yaml~`, `#pod.yaml#`) and
//! temporary files never become pods.

pub mod identity;
mod validate;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::k8s::pod::Pod;
use crate::k8s::quantity::QuantityError;

pub use identity::{spec_hash, static_pod_uid, CONFIG_SOURCE_FILE};
pub use watch::{keep_last_good, ManifestWatcher, RescanSchedule, WatchError, WatchOptions};

/// Largest manifest file read; a bigger one is reported instead of filling memory.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A pod defined by a manifest file, with its kubelet-style identity applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// The pod as the agent runs it (suffixed name, UID, annotations, nodeName set).
    pub pod: Pod,
    /// The file it was read from.
    pub file: PathBuf,
    /// The UID: a content hash of the manifest, source and node (see [`identity`]).
    pub uid: String,
    /// Hash of the spec, for reconcile to notice edits (see [`identity::spec_hash`]).
    pub spec_hash: String,
}

impl StaticPod {
    /// `namespace/name` of the static pod.
    pub fn key(&self) -> String {
        self.pod.key()
    }
}

/// The outcome of reading a manifest directory: every good pod and one error per bad file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestSet {
    /// Pods that loaded, in file name order.
    pub pods: Vec<StaticPod>,
    /// Files that did not load, in file name order.
    pub errors: Vec<ManifestError>,
}

/// File format of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// The format a file name implies, or `None` if tinylet does not read such files.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        if name.starts_with('.') {
            return None;
        }
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// A manifest file that did not load: the file, the field (if one is to blame), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// Dotted path of the offending field (`spec.containers[1].image`), if any.
    pub field: Option<String>,
    pub kind: ManifestErrorKind,
}

/// Why a manifest file did not load.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestErrorKind {
    /// The file or directory could not be read.
    Read { message: String },
    /// The file is larger than [`MAX_MANIFEST_BYTES`].
    TooLarge { size: u64 },
    /// The entry is neither a regular file nor a directory (FIFO, socket, device).
    NotARegularFile,
    /// YAML/JSON syntax error, with a 1-based position where the parser reports one.
    Syntax {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The file holds no document or not a mapping.
    NotAnObject,
    /// `apiVersion`/`kind` is not `v1`/`Pod`.
    UnsupportedKind { api_version: String, kind: String },
    /// A field has the wrong type for a Pod.
    Type { message: String },
    /// A required field is absent or empty.
    Missing,
    /// A field's value is not allowed.
    Invalid { value: String, reason: String },
    /// A name is used twice within the pod.
    Duplicate { name: String },
    /// A resource quantity does not parse.
    Quantity(QuantityError),
    /// Another file (loaded first, in name order) already defines a pod with this name.
    DuplicatePod { pod: String, first_file: PathBuf },
}

impl ManifestError {
    pub(crate) fn new(file: &Path, field: Option<String>, kind: ManifestErrorKind) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            field,
            kind,
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "static pod manifest {}: ", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        match &self.kind {
            ManifestErrorKind::Read { message } => write!(f, "cannot read: {message}"),
            ManifestErrorKind::TooLarge { size } => write!(
                f,
                "file is {size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have"
            ),
            ManifestErrorKind::NotARegularFile => f.write_str("not a regular file"),
            ManifestErrorKind::Syntax {
                line,
                column,
                message,
            } => {
                f.write_str("syntax error")?;
                let mut message = message.clone();
                if let (Some(l), Some(c)) = (line, column) {
                    write!(f, " at line {l} column {c}")?;
                    // The parsers repeat the position inside their message.
                    message = message.replace(&format!(" at line {l} column {c}"), "");
                }
                write!(f, ": {message}")
            }
            ManifestErrorKind::NotAnObject => {
                f.write_str("expected one Pod object (a mapping), found none")
            }
            ManifestErrorKind::UnsupportedKind { api_version, kind } => write!(
                f,
                "only apiVersion v1 kind Pod is supported, found apiVersion {api_version:?} kind {kind:?}"
            ),
            ManifestErrorKind::Type { message } => write!(f, "{message}"),
            ManifestErrorKind::Missing => f.write_str("required field is missing or empty"),
            ManifestErrorKind::Invalid { value, reason } if value.is_empty() => {
                f.write_str(reason)
            }
            ManifestErrorKind::Invalid { value, reason } => write!(f, "{value:?}: {reason}"),
            ManifestErrorKind::Duplicate { name } => write!(f, "duplicate name {name:?}"),
            ManifestErrorKind::Quantity(e) => write!(f, "{e}"),
            ManifestErrorKind::DuplicatePod { pod, first_file } => write!(
                f,
                "pod {pod} is already defined by {}; this file is ignored",
                first_file.display()
            ),
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ManifestErrorKind::Quantity(e) => Some(e),
            _ => None,
        }
    }
}

/// Decodes, validates and names one manifest. Never panics, whatever the bytes.
pub fn parse_manifest(
    file: &Path,
    format: Format,
    bytes: &[u8],
    node_name: &str,
) -> Result<StaticPod, ManifestError> {
    let err = |field: Option<&str>, kind| ManifestError::new(file, field.map(str::to_string), kind);
    let value: Value = match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| {
            err(
                None,
                ManifestErrorKind::Syntax {
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: e.to_string(),
                },
            )
        })?,
        Format::Yaml => serde_yaml_ng::from_slice(bytes).map_err(|e| {
            let loc = e.location();
            err(
                None,
                ManifestErrorKind::Syntax {
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    message: e.to_string(),
                },
            )
        })?,
    };
    let Value::Object(top) = &value else {
        return Err(err(None, ManifestErrorKind::NotAnObject));
    };
    let text_of = |key: &str| match top.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    };
    let (api_version, kind) = (text_of("apiVersion"), text_of("kind"));
    if kind.is_none() {
        return Err(err(Some("kind"), ManifestErrorKind::Missing));
    }
    if api_version.is_none() {
        return Err(err(Some("apiVersion"), ManifestErrorKind::Missing));
    }
    if api_version.as_deref() != Some("v1") || kind.as_deref() != Some("Pod") {
        return Err(err(
            None,
            ManifestErrorKind::UnsupportedKind {
                api_version: api_version.unwrap_or_default(),
                kind: kind.unwrap_or_default(),
            },
        ));
    }
    let mut pod: Pod = match serde_json::from_value(value.clone()) {
        Ok(p) => p,
        Err(e) => return Err(type_error(file, bytes, &e)),
    };
    validate::validate_pod(&pod, file, node_name)?;
    let uid = identity::static_pod_uid(&value, CONFIG_SOURCE_FILE, node_name);
    identity::apply_static_identity(&mut pod, &uid, node_name);
    let spec_hash = identity::spec_hash(&pod.spec);
    Ok(StaticPod {
        pod,
        file: file.to_path_buf(),
        uid,
        spec_hash,
    })
}

/// Builds the error for a field of the wrong type, naming the field when it can be found.
///
/// serde_json does not track where in a value an error happened; serde_yaml_ng does, and a JSON
/// document is YAML, so the bytes are decoded once more that way only to recover the path.
fn type_error(file: &Path, bytes: &[u8], e: &serde_json::Error) -> ManifestError {
    let (field, message) = match serde_yaml_ng::from_slice::<Pod>(bytes) {
        Err(ye) => {
            let text = ye.to_string();
            match text.split_once(": ") {
                Some((path, rest)) if looks_like_field_path(path) => {
                    (Some(path.to_string()), rest.to_string())
                }
                _ => (None, e.to_string()),
            }
        }
        Ok(_) => (None, e.to_string()),
    };
    ManifestError::new(file, field, ManifestErrorKind::Type { message })
}

fn looks_like_field_path(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-[]/".contains(&b))
}

/// Turns the contents of a manifest directory into the desired set: pure, no I/O.
///
/// `files` are (path, bytes) pairs; they are processed in file name order, so when two files
/// define the same pod the one whose name sorts first wins and the other gets a
/// [`ManifestErrorKind::DuplicatePod`] naming both (the kubelet keeps the first it sees too).
pub fn load_files(files: &[(PathBuf, Vec<u8>)], node_name: &str) -> ManifestSet {
    let mut order: Vec<&(PathBuf, Vec<u8>)> = files.iter().collect();
    order.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    let mut set = ManifestSet::default();
    for (path, bytes) in order {
        let Some(format) = Format::from_path(path) else {
            continue;
        };
        match parse_manifest(path, format, bytes, node_name) {
            Ok(sp) => {
                let key = sp.key();
                if let Some(first) = set.pods.iter().find(|p| p.key() == key) {
                    set.errors.push(ManifestError::new(
                        path,
                        Some("metadata.name".to_string()),
                        ManifestErrorKind::DuplicatePod {
                            pod: key,
                            first_file: first.file.clone(),
                        },
                    ));
                } else {
                    set.pods.push(sp);
                }
            }
            Err(e) => set.errors.push(e),
        }
    }
    set
}

/// Reads the manifest directory and loads every pod in it; each bad file yields one error and
/// does not stop the others. A missing directory is an empty set, as for the kubelet.
pub fn load_dir(dir: &Path, node_name: &str) -> (Vec<StaticPod>, Vec<ManifestError>) {
    let set = scan_dir(dir, node_name);
    (set.pods, set.errors)
}

/// [`load_dir`] returning a [`ManifestSet`].
pub fn scan_dir(dir: &Path, node_name: &str) -> ManifestSet {
    let (files, mut read_errors) = read_manifest_files(dir);
    let mut set = load_files(&files, node_name);
    if !read_errors.is_empty() {
        set.errors.append(&mut read_errors);
        set.errors.sort_by(|a, b| a.file.cmp(&b.file));
    }
    set
}

fn read_error(path: &Path, e: &std::io::Error) -> ManifestError {
    ManifestError::new(
        path,
        None,
        ManifestErrorKind::Read {
            message: e.to_string(),
        },
    )
}

/// Reads every file tinylet would load from `dir`, with the errors of those it could not read.
fn read_manifest_files(dir: &Path) -> (Vec<(PathBuf, Vec<u8>)>, Vec<ManifestError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::debug!("static pod path {} does not exist", dir.display());
            return (files, errors);
        }
        Err(e) => {
            errors.push(read_error(dir, &e));
            return (files, errors);
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(read_error(dir, &e));
                continue;
            }
        };
        let path = entry.path();
        if Format::from_path(&path).is_none() {
            continue;
        }
        // metadata() follows symlinks, as the kubelet's os.Stat does.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                errors.push(read_error(&path, &e));
                continue;
            }
        };
        if meta.is_dir() {
            log::debug!("not recursing into {}", path.display());
            continue;
        }
        if !meta.is_file() {
            errors.push(ManifestError::new(
                &path,
                None,
                ManifestErrorKind::NotARegularFile,
            ));
            continue;
        }
        if meta.len() > MAX_MANIFEST_BYTES {
            errors.push(ManifestError::new(
                &path,
                None,
                ManifestErrorKind::TooLarge { size: meta.len() },
            ));
            continue;
        }
        match read_bounded(&path) {
            Ok(bytes) => files.push((path, bytes)),
            Err(e) => errors.push(e),
        }
    }
    (files, errors)
}

/// Reads at most [`MAX_MANIFEST_BYTES`] (the file may grow after it was checked).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ManifestError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| read_error(path, &e))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, &e))?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError::new(
            path,
            None,
            ManifestErrorKind::TooLarge { size },
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
