//! The proxy's WebSocket frame watcher: any bytes, split anywhere, never panic, and the
//! result does not depend on where the stream was split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::ws::FrameWatcher;

fuzz_target!(|data: &[u8]| {
    let mut whole = FrameWatcher::new();
    whole.feed(data);
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut parts = FrameWatcher::new();
    parts.feed(&data[..split]);
    parts.feed(&data[split..]);
    assert_eq!(whole.close_code(), parts.close_code());
    assert_eq!(whole.frames(), parts.frames());
    assert_eq!(whole.is_lost(), parts.is_lost());
    assert_eq!(whole.at_boundary(), parts.at_boundary());
});
