#![no_main]
//! The kubelet API's request target, query options and request head parsers: any bytes, no
//! panic; a target that parses never yields a `.`/`..` segment or a control character.
use libfuzzer_sys::fuzz_target;
use tinylet::server::{http, logs, path};

fuzz_target!(|data: &[u8]| {
    let _ = http::parse_head(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = path::parse_target(text) {
            for s in &t.segments {
                assert!(s != "." && s != ".." && !s.contains('/'));
                assert!(!s.bytes().any(|b| b < 0x20 || b == 0x7f));
            }
            let _ = logs::LogOptions::from_query(&t, std::time::SystemTime::now());
        }
    }
    let mut d = logs::Decoder::default();
    let _ = d.feed(data);
    let _ = d.finish();
});
