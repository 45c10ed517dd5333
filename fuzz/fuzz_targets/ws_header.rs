//! WebSocket frame headers: decoding, and re-encoding what decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::ws::{decode_header, write_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, n))) = decode_header(data) {
        assert!(n <= data.len() && n <= 14);
        assert!(n >= h.encoded_len());
        assert_eq!(h.payload_len >> 63, 0);
        // The shortest encoding decodes to the same header.
        let mut out = Vec::new();
        write_header(&mut out, &h);
        assert_eq!(out.len(), h.encoded_len());
        assert_eq!(decode_header(&out), Ok(Some((h, out.len()))));
    }
});
