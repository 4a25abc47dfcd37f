#![no_main]
use libfuzzer_sys::fuzz_target;

// Arbitrary bytes as nf_tables messages: batches, kernel replies and dumps, every Repr decoder.
fuzz_target!(|data: &[u8]| {
    let _ = tinylet::netlink::nftables::parse_any(data);
});
