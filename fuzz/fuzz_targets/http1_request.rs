//! Request heads: the parser, then everything a server does with a parsed head.
//! The first byte picks tight limits half of the time, so the limit paths get exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::{parse_request, query, HeadLimits};
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
    match parse_request(input, &limits) {
        Ok(Some((head, n))) => {
            assert!(n <= input.len() && n <= limits.max_head_bytes);
            assert!(head.headers.len() <= limits.max_headers);
            // Parsing only the head gives the same answer.
            assert_eq!(
                parse_request(&input[..n], &limits),
                Ok(Some((head.clone(), n)))
            );
            let _ = head.body_framing();
            let _ = head.keep_alive();
            let _ = head.path();
            if let Some(q) = head.query() {
                let _ = query::pairs(q);
            }
            if handshake::is_upgrade_request(&head) {
                let _ = handshake::check_request(&head);
            }
        }
        Ok(None) => assert!(input.len() <= limits.max_head_bytes),
        Err(e) => assert!(matches!(e.status(), 400 | 431)),
    }
});
