#![no_main]
use libfuzzer_sys::fuzz_target;

// Arbitrary bytes as netlink datagrams: framing, attributes, and every reply decoder.
fuzz_target!(|data: &[u8]| {
    let _ = tinylet::netlink::parse_any(data);
});
