//! Response heads: the parser, body framing for each kind of request, and the WebSocket
//! client's check of a 101 answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::{parse_response, HeadLimits};
use protolab_wire::ws::handshake;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let limits = if knob & 1 == 0 {
        HeadLimits::default()
    } else {
        HeadLimits {
            max_head_bytes: usize::from(knob) * 4,
            max_headers: usize::from(knob % 16),
        }
    };
    match parse_response(input, &limits) {
        Ok(Some((head, n))) => {
            assert!(n <= input.len() && n <= limits.max_head_bytes);
            assert_eq!(
                parse_response(&input[..n], &limits),
                Ok(Some((head.clone(), n)))
            );
            for method in ["GET", "HEAD", "CONNECT", "POST"] {
                let _ = head.body_framing(method);
            }
            let _ = handshake::check_response(&head, "dGhlIHNhbXBsZSBub25jZQ==");
        }
        Ok(None) => assert!(input.len() <= limits.max_head_bytes),
        Err(_) => {}
    }
});
