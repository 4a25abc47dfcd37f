#![no_main]
//! Decodes arbitrary bytes as every CRI response message and as a status message text.
use libfuzzer_sys::fuzz_target;
use tinylet::cri::grpc::percent_decode;
use tinylet::cri::proto::decode_every_response;

fuzz_target!(|data: &[u8]| {
    let _ = decode_every_response(data);
    let _ = tinylet::cri::proto_stats::decode_every_response(data);
    let _ = percent_decode(data);
});
