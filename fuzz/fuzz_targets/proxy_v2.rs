//! PROXY protocol v2 headers: decoding never panics, stays within its bound, and what it
//! reports as PROXY re-encodes to a header that decodes to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::proxy_v2::{decode, encode, Header, MAX_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, n))) = decode(data) {
        assert!(n <= data.len() && n <= 16 + MAX_PAYLOAD);
        if let Header::Proxy { src, dst } = header {
            let mut out = Vec::new();
            encode(&mut out, src, dst);
            assert_eq!(decode(&out), Ok(Some((header, out.len()))));
        }
    }
});
