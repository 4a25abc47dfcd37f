#![no_main]
//! Feeds bytes to the gRPC frame decoder in chunk sizes taken from the input itself.
use libfuzzer_sys::fuzz_target;
use tinylet::cri::grpc::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new(4096);
    let mut step = usize::from(seed % 17) + 1;
    let mut pos = 0;
    while pos < rest.len() {
        let end = (pos + step).min(rest.len());
        decoder.push(&rest[pos..end]);
        pos = end;
        step = step * 7 % 23 + 1;
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => assert!(message.len() <= 4096),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = decoder.finish();
});
