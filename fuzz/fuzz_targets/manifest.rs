#![no_main]
//! Arbitrary bytes as a YAML and as a JSON static pod manifest: decoding, validation and
//! identity must never panic, and an accepted pod must carry a well-formed identity.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tinylet::manifest::{parse_manifest, Format};

fuzz_target!(|data: &[u8]| {
    for (name, format) in [("fuzz.yaml", Format::Yaml), ("fuzz.json", Format::Json)] {
        if let Ok(sp) = parse_manifest(Path::new(name), format, data, "fuzz-node") {
            assert_eq!(sp.uid.len(), 32);
            assert_eq!(sp.pod.metadata.uid, sp.uid);
            assert!(sp.pod.metadata.name.ends_with("-fuzz-node"));
            assert!(!sp.pod.spec.containers.is_empty());
        }
    }
});
