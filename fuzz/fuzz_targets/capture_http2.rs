//! inspect's HTTP/2 decoder (frames, HPACK, gRPC prefixes), differentially: a connection's
//! bytes fed whole per direction and fed in pieces whose size the first byte chooses must
//! give the same events. The second byte picks where the client's bytes end; a preface is
//! put in front half of the time so the frame decoder is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_capture::{decode_http2, Dir};

fuzz_target!(|data: &[u8]| {
    let [knob, split, rest @ ..] = data else {
        return;
    };
    let at = usize::from(*split).min(rest.len()) * rest.len() / 256;
    let mut client = Vec::new();
    if knob & 0x80 != 0 {
        client.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    }
    client.extend_from_slice(&rest[..at.min(rest.len())]);
    let server = &rest[at.min(rest.len())..];
    let whole = decode_http2(&[(Dir::ToServer, &client), (Dir::ToClient, server)]);
    let step = usize::from(knob & 0x7f) + 1;
    let mut pieces: Vec<(Dir, &[u8])> = client.chunks(step).map(|p| (Dir::ToServer, p)).collect();
    pieces.extend(server.chunks(step).map(|p| (Dir::ToClient, p)));
    let split = decode_http2(&pieces);
    assert_eq!(whole, split);
});
