//! Request heads: the parser, then everything a server does with a parsed head.
//! The first byte picks tight limits half of the time, so the limit paths get exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::{parse_request, parse_request_into, query, HeadLimits};
use protolab_wire::ws::handshake;

/// A request with more and longer fields than most inputs, parsed before each input.
const PREVIOUS: &[u8] = b"POST http://example.test/a/long/path?with=query HTTP/1.0\r\n\
Host: example.test\r\nX-One: 1111111111111111\r\nX-Two: 2\r\nX-Three: 3\r\n\r\n";

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
    let fresh = parse_request(input, &limits);
    // A keep-alive connection parses into the head of its previous request: what that head
    // held must not leak into the next one.
    let mut reused = parse_request(PREVIOUS, &HeadLimits::default())
        .ok()
        .flatten()
        .map(|(head, _)| head)
        .expect("the previous request parses");
    if let Ok(Some((head, n))) = &fresh {
        assert_eq!(parse_request_into(input, &limits, &mut reused), Ok(Some(*n)));
        assert_eq!(&reused, head);
    } else {
        assert_eq!(
            parse_request_into(input, &limits, &mut reused).map(|r| r.is_some()),
            fresh.as_ref().map(|r| r.is_some()).map_err(Clone::clone)
        );
    }
    match fresh {
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
            assert_eq!(head.path_and_query(), (head.path(), head.query()));
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
