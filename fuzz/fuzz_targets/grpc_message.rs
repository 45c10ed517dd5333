//! gRPC Length-Prefixed-Messages as the load client reads them from response bodies: any
//! bytes give a message inside the input, "incomplete" or an error, never a panic, and never
//! a message over the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_load::grpc_frame::{next_message, PREFIX};

fuzz_target!(|data: &[u8]| {
    let limit = usize::from(data.first().copied().unwrap_or(0)) * 64;
    if let Ok(Some((message, used))) = next_message(data, limit) {
        assert!(message.len() <= limit);
        assert_eq!(used, PREFIX + message.len());
        assert!(used <= data.len());
    }
});
