//! The opening handshake: whatever upgrade request the server accepts, its own 101 answer
//! must satisfy a client that sent that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::{parse_request, parse_response, HeadLimits};
use protolab_wire::ws::handshake;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits::default();
    if let Ok(Some((head, _))) = parse_request(data, &limits) {
        let _ = handshake::is_upgrade_request(&head);
        if let Ok(up) = handshake::check_request(&head) {
            let mut out = Vec::new();
            // Offered protocols come from the peer and may hold anything, so echo only a
            // token-like one, as a real server would after matching its own list.
            let protocol = up
                .protocols
                .iter()
                .find(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .map(String::as_str);
            handshake::write_response(&mut out, &up.key, protocol, &[]);
            let (res, n) = parse_response(&out, &limits)
                .expect("our 101 parses")
                .expect("our 101 is complete");
            assert_eq!(n, out.len());
            assert_eq!(handshake::check_response(&res, &up.key), Ok(()));
        }
    }
    if let Ok(Some((head, _))) = parse_response(data, &limits) {
        let _ = handshake::check_response(&head, "dGhlIHNhbXBsZSBub25jZQ==");
    }
});
