//! inspect's text/event-stream decoder, differentially: a body fed whole and fed in pieces
//! whose size the first byte chooses must give the same events and comments (CR LF split
//! across pieces included), and previews stay within their limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_capture::{decode_event_stream, Event, PREVIEW_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, body)) = data.split_first() else {
        return;
    };
    let whole = decode_event_stream(&[body]);
    let pieces: Vec<&[u8]> = body.chunks(usize::from(knob) + 1).collect();
    assert_eq!(whole, decode_event_stream(&pieces));
    for e in &whole {
        match e {
            Event::SseEvent { data, .. } | Event::SseComment { text: data } => {
                // Lossy UTF-8 may widen a cut multi-byte sequence to U+FFFD (3 bytes).
                assert!(data.len() <= 3 * PREVIEW_BYTES);
            }
            _ => {}
        }
    }
});
