//! The key log selection `protolab capture` embeds in its files: the input's first line is
//! treated as TCP payloads (ClientHellos to remember, split on 0xFF), the rest as an NSS key
//! log. Checks what holds for any input: only well-formed lines of remembered sessions are
//! kept, and the DSB chunks put back together are exactly the kept text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_capture::live::secrets::{chunks, client_hello_random, select, ClientRandoms};

fuzz_target!(|data: &[u8]| {
    let (payloads, key_log) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut randoms = ClientRandoms::default();
    for payload in payloads.split(|&b| b == 0xFF) {
        if let Some(random) = client_hello_random(payload) {
            assert_eq!(&payload[11..43], &random[..]);
        }
        randoms.note(payload);
    }
    let selection = select(key_log, &randoms);
    assert!(selection.sessions <= randoms.len());
    assert!(selection.text.is_empty() || selection.text.ends_with('\n'));
    let max = 1 + usize::from(data.first().copied().unwrap_or(0));
    let parts = chunks(&selection.text, max);
    // Selected text is ASCII, so no chunk is longer than `max`.
    assert!(parts.iter().all(|p| p.len() <= max));
    assert_eq!(parts.concat(), selection.text);
});
