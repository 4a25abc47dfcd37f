//! Replies of plugin-registration sockets and CSI drivers: arbitrary bytes as every message
//! the agent decodes from them (GetInfo's PluginInfo, NodeGetInfo, NodeGetCapabilities, ...).
//! Decoding may fail but must never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tinylet::csi::proto::decode_every_reply(data);
});
