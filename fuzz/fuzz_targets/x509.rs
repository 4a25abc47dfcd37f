#![no_main]
//! The DER/PEM readers behind certificate expiry checks and CSR subjects: any bytes, no panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tinylet::node::x509::parse_certificate(data);
    let _ = tinylet::node::x509::parse_request_subject(data);
    let _ = tinylet::node::x509::first_certificate(data);
});
