//! Names inside the store directory: which file holds which record, and what is a leftover.
//!
//! Owns the mapping from (kind, key) to a file name; it does no I/O. Names are readable where
//! possible (an operator can `ls` the store and see pod names) and never contain a path
//! separator, whatever the key.

use super::record::{content_hash, RecordKind};

/// Suffix of a committed record file.
pub const RECORD_SUFFIX: &str = ".rec";
/// Suffix of a record still being written; such files are removed on open.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Subdirectory where unreadable records are moved, never deleted.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Lock file that keeps two agents from writing one store.
pub const LOCK_FILE: &str = "lock";

/// Longest escaped key kept readable; longer keys are named by a hash so the name stays well
/// under the 255-byte limit of ext4, f2fs and vfat.
const MAX_READABLE: usize = 180;

fn keeps(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// The file name of the record for `key` of `kind`: `<kind>.<escaped key>.rec`, or
/// `<kind>.~<hash>.rec` for keys too long to spell out.
pub fn record_file_name(kind: RecordKind, key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escaped = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if keeps(b) {
            escaped.push(char::from(b));
        } else {
            escaped.push('%');
            escaped.push(char::from(HEX[usize::from(b >> 4)]));
            escaped.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    if escaped.len() > MAX_READABLE {
        // '~' is always escaped above, so hashed names never equal readable ones.
        format!(
            "{}.~{}{RECORD_SUFFIX}",
            kind.tag(),
            content_hash(key.as_bytes())
        )
    } else {
        format!("{}.{escaped}{RECORD_SUFFIX}", kind.tag())
    }
}

/// The temporary name a record file is written under before it is renamed into place.
pub fn temp_file_name(record_file: &str) -> String {
    format!("{record_file}{TEMP_SUFFIX}")
}

/// Whether a name is a leftover temporary file.
pub fn is_temp(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
}

/// Whether a name is a committed record file.
pub fn is_record(name: &str) -> bool {
    name.ends_with(RECORD_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_names() {
        assert_eq!(
            record_file_name(RecordKind::ApiPod, "kube-system/coredns"),
            "api.kube-system%2Fcoredns.rec"
        );
        assert_eq!(
            record_file_name(RecordKind::StaticPod, "9f1c0c4e-2f1b"),
            "static.9f1c0c4e-2f1b.rec"
        );
        assert_eq!(
            record_file_name(RecordKind::StaticPod, "../x"),
            "static...%2Fx.rec"
        );
        assert_eq!(
            record_file_name(RecordKind::Unknown(7), "%~ é"),
            "kind7.%25%7E%20%C3%A9.rec"
        );
    }

    #[test]
    fn long_keys_are_hashed_and_short() {
        let long = "n".repeat(400);
        let name = record_file_name(RecordKind::ApiPod, &long);
        assert!(name.starts_with("api.~"));
        assert!(name.len() < 40);
        assert_ne!(name, record_file_name(RecordKind::ApiPod, &"n".repeat(401)));
        assert!(is_record(&name));
        assert!(is_temp(&temp_file_name(&name)));
        assert!(!is_record(&temp_file_name(&name)));
    }

    #[test]
    fn names_never_contain_separators() {
        for key in ["/", "a/b/c", "\0", "..", "x\ny"] {
            let n = record_file_name(RecordKind::StaticPod, key);
            assert!(
                !n.contains('/') && !n.contains('\0') && !n.contains('\n'),
                "{n}"
            );
        }
    }
}
