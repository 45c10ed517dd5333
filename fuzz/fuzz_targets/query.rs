//! Query strings: splitting and percent-decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::query;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let all = query::pairs(&s);
    if let Ok(pairs) = &all {
        // Decoding never grows a string.
        assert!(pairs.iter().all(|(k, v)| k.len() + v.len() <= s.len()));
    }
    // The lookup the echo endpoint uses agrees with the full split, errors included.
    let expected = all.map(|pairs| pairs.into_iter().find(|(k, _)| k == "msg").map(|(_, v)| v));
    let found = query::find(&s, "msg").map(|v| v.map(std::borrow::Cow::into_owned));
    assert_eq!(found, expected);
    let _ = query::decode_component(&s);
});
