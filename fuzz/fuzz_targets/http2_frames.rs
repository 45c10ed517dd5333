//! HTTP/2 frame boundaries, differentially: a byte stream fed whole and fed in pieces whose
//! size the first byte chooses must yield the same frame headers and end at the same place.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http2::{FrameHeader, FrameTracker, FRAME_HEADER_LEN};

fn run(input: &[u8], step: usize) -> (Vec<FrameHeader>, bool) {
    let mut tracker = FrameTracker::new();
    let mut seen = Vec::new();
    for piece in input.chunks(step.max(1)) {
        tracker.feed(piece, |h| seen.push(h));
    }
    (seen, tracker.at_boundary())
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len());
    let split = run(input, usize::from(knob) + 1);
    assert_eq!(whole, split);
    // Every header reported is one decodable at its offset, and no more are reported than
    // 9-byte headers fit.
    assert!(whole.0.len() <= input.len() / FRAME_HEADER_LEN);
    if let Some(first) = whole.0.first() {
        assert_eq!(FrameHeader::decode(input), Some(*first));
        assert!(first.stream_id < 1 << 31 && first.length < 1 << 24);
    }
});
