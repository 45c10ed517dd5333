//! A poll's answer as the load client reads it: any bytes give pushes or an error, never a
//! panic; every push comes from an event of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_load::poll_answer::read;

fuzz_target!(|data: &[u8]| {
    let (previous, body) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 => (Some("7-1"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    if let Ok(polled) = read(body, previous) {
        assert!(polled.pushes.len() as u64 + polled.skipped <= body.len() as u64);
        assert_eq!(polled.empty, polled.pushes.is_empty() && polled.skipped == 0);
    }
});
