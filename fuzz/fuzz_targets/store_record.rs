#![no_main]
//! Any bytes given to the record decoder: it must return, never panic, and whatever it accepts
//! must survive an encode/decode round trip unchanged.
use libfuzzer_sys::fuzz_target;
use tinylet::store::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = Record::decode(data) {
        let bytes = rec.encode().ok();
        let back = bytes.as_deref().map(Record::decode);
        assert!(matches!(back, Some(Ok(ref r)) if *r == rec));
    }
});
