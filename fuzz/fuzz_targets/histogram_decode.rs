//! The histograms `protolab merge` reads from bench reports (HDR V2, base64). Arbitrary bytes
//! go in both as the text itself and base64-encoded (so the V2 reader sees every byte
//! pattern); whatever decodes re-encodes to text that decodes to the same statistics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_load::histogram::{decode, encode, summarize};

fuzz_target!(|data: &[u8]| {
    let as_base64 = encode_base64(data);
    let texts = [std::str::from_utf8(data).ok(), Some(as_base64.as_str())];
    for text in texts.into_iter().flatten() {
        if let Ok(hist) = decode(text) {
            let again = decode(&encode(&hist)).expect("what decode read, encode writes readably");
            assert_eq!(summarize(&again), summarize(&hist));
        }
    }
});

/// Standard base64, padded (the fuzz crate keeps its dependencies to the crates it fuzzes).
fn encode_base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}
