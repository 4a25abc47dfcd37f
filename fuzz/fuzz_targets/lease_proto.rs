#![no_main]
//! Decodes arbitrary bytes (behind the `k8s\0` magic, so the fuzzer reaches the envelope) as a
//! protobuf Lease, as any object's metadata (PartialObjectMetadata answers) and as a protobuf
//! Status: never a panic; a Lease that decodes must survive encode → decode unchanged, and its
//! metadata must read the same through the metadata-only decoder.
use libfuzzer_sys::fuzz_target;
use tinylet::k8s::protobuf::{decode_lease, decode_metadata, decode_status, encode_lease, MAGIC};

fuzz_target!(|data: &[u8]| {
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(data);
    if let Ok(lease) = decode_lease(&body) {
        let again = decode_lease(&encode_lease(&lease)).expect("re-encoded lease decodes");
        assert_eq!(again, lease);
        let (kind, meta) = decode_metadata(&body).expect("a Lease has metadata");
        assert_eq!(kind, "Lease");
        assert_eq!(meta, lease.metadata);
    }
    let _ = decode_metadata(&body);
    let _ = decode_status(&body);
    let _ = decode_lease(data);
});
