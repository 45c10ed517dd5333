//! `Sec-WebSocket-Extensions` and permessage-deflate negotiation: any field value parses or
//! fails cleanly; whatever a server accepts from it, the server's own response reads back as
//! the same parameters, and a client with the browser's offer either accepts the value as a
//! response or refuses it, never panics.
//!
//! Input layout: `[policy, value...]`; policy bits pick the server's window limits and
//! context-takeover settings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::ws::deflate::{negotiate, parse_extensions, read_response, Offer, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let [policy, value @ ..] = data else {
        return;
    };
    let config = ServerConfig {
        server_max_window_bits: 8 + (policy & 0x7),
        client_max_window_bits: 8 + ((policy >> 3) & 0x7),
        server_no_context_takeover: policy & 0x40 != 0,
        client_no_context_takeover: policy & 0x80 != 0,
    };
    let _ = parse_extensions(value);
    if let Some(accepted) = negotiate([value], &config) {
        let params = accepted.params;
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!((8..=15).contains(&params.client_max_window_bits));
        assert!(params.server_max_window_bits <= config.server_max_window_bits);
        assert!(params.client_max_window_bits <= config.client_max_window_bits);
        assert_eq!(
            read_response([accepted.response.as_bytes()]),
            Ok(Some(params)),
            "{}",
            accepted.response
        );
    }
    if let Ok(Some(params)) = Offer::browser().accept_response([value]) {
        assert_eq!(read_response([value]), Ok(Some(params)));
    }
});
