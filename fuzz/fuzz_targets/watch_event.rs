#![no_main]
//! Feeds arbitrary bytes, in chunks whose size the input chooses, to the watch stream decoder
//! and decodes every line as an untyped WatchEvent: it must never panic and never hold more
//! than the line limit plus one chunk.
use libfuzzer_sys::fuzz_target;
use tinylet::api::watch::{EventDecoder, RawObject};

const MAX_LINE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let mut decoder = EventDecoder::<RawObject>::new(MAX_LINE);
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(decoder.buffered() <= MAX_LINE + chunk);
    }
    let _ = decoder.finish();
});
