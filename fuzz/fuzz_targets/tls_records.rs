//! The record layer that carries lab TLS connections after the handshake
//! (`protolab_tls::record`): received bytes never panic it, whatever opens came from the key
//! (random bytes cannot), what is sealed opens back to itself in place across record
//! boundaries, and splitting handshake messages never reads past its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_tls::record::{self, content_type, Cipher, DirectionKeys, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = if mode & 1 == 0 {
        Version::Tls13
    } else {
        Version::Tls12
    };
    let cipher = Cipher::ALL[usize::from(mode >> 1) % Cipher::ALL.len()];
    let explicit = cipher.explicit_nonce(version);
    let key = vec![0x42; cipher.key_len()];
    let keys = || DirectionKeys::from_raw(cipher, &key, &[7; 12], explicit, 0).unwrap();

    // Received bytes, opened the way the stream opens them.
    let mut rx = keys();
    let mut buf = rest.to_vec();
    let (mut src, mut dst) = (0, 0);
    while let Ok(Some(len)) = record::record_len(version, &buf[src..]) {
        if buf.len() - src < len {
            break;
        }
        match record::open(version, &mut rx, &mut buf, dst, src, len) {
            Ok(opened) => {
                assert!(opened.len < len);
                dst += opened.len;
                src += len;
            }
            Err(_) => break,
        }
    }

    // The input as plaintexts (split at 0xff), sealed, then opened back in place.
    let mut tx = keys();
    let mut rx = keys();
    let pieces: Vec<&[u8]> = rest.split(|&b| b == 0xff).collect();
    let mut wire = Vec::new();
    for piece in &pieces {
        record::seal(version, &mut tx, &mut wire, content_type::APPLICATION_DATA, &[piece]).unwrap();
    }
    let (mut src, mut dst) = (0, 0);
    while src < wire.len() {
        let len = record::record_len(version, &wire[src..]).unwrap().unwrap();
        let opened = record::open(version, &mut rx, &mut wire, dst, src, len).unwrap();
        assert_eq!(opened.content_type, content_type::APPLICATION_DATA);
        dst += opened.len;
        src += len;
    }
    assert_eq!(wire[..dst], pieces.concat()[..]);

    let mut at = 0;
    while let Some((_, body, taken)) = record::next_handshake_message(&rest[at..]) {
        assert_eq!(taken, body.len() + 4);
        at += taken;
        assert!(at <= rest.len());
    }
});
