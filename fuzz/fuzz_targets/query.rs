//! Query strings: splitting and percent-decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::query;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(pairs) = query::pairs(&s) {
        // Decoding never grows a string.
        assert!(pairs.iter().all(|(k, v)| k.len() + v.len() <= s.len()));
    }
    let _ = query::decode_component(&s);
});
