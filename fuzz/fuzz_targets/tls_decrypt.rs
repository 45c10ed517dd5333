//! TLS record decryption. The first byte picks a suite; the rest is a list of records. Each
//! record is either random bytes (must fail cleanly: a tag never verifies by chance) or a
//! plaintext the target seals itself with the same key schedule, so the fuzzer reaches the
//! inner content type, padding, Finished and KeyUpdate handling. Sealed records must open to
//! exactly what was sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::tls::decode_record;
use protolab_wire::tls::decrypt::{suite, Decryptor, Sender};
use protolab_wire::tls::keylog::Secrets;
use ring::{aead, hkdf};

const SUITES: [(u16, usize, &aead::Algorithm); 3] = [
    (0x1301, 32, &aead::AES_128_GCM),
    (0x1302, 48, &aead::AES_256_GCM),
    (0x1303, 32, &aead::CHACHA20_POLY1305),
];

fn expand_label(hash_len: usize, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let alg = if hash_len == 48 { hkdf::HKDF_SHA384 } else { hkdf::HKDF_SHA256 };
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(6 + label.len() as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let mut out = vec![0; len];
    hkdf::Prk::new_less_safe(alg, secret)
        .expand(&[&info], Len(len))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

struct Sealer {
    secret: Vec<u8>,
    seq: u64,
    handshake: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let (id, hash_len, alg) = SUITES[usize::from(mode) % 3];
    if suite(id).is_none() {
        return;
    }
    // Handshake and application secrets are equal, so after a Finished only the sequence
    // number restarts; a KeyUpdate derives the next secret.
    let secrets = Secrets {
        client_handshake: Some(vec![1; hash_len]),
        client_traffic: Some(vec![1; hash_len]),
        server_handshake: Some(vec![2; hash_len]),
        server_traffic: Some(vec![2; hash_len]),
        ..Secrets::default()
    };
    let Ok(mut d) = Decryptor::new(0x0304, id, &secrets, &[0; 32], &[0; 32]) else {
        panic!("TLS 1.3 suites build from full secrets");
    };
    let mut sealers = [1u8, 2].map(|b| Sealer { secret: vec![b; hash_len], seq: 0, handshake: true });
    let mut out = Vec::new();
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        let from = if ctl & 1 == 0 { Sender::Client } else { Sender::Server };
        let s = &mut sealers[usize::from(ctl & 1)];
        out.clear();
        if ctl & 2 == 0 {
            // Random bytes as an application data record.
            let mut r = vec![23, 3, 3];
            r.extend_from_slice(&(body.len() as u16).to_be_bytes());
            r.extend_from_slice(body);
            let Ok(Some((record, _))) = decode_record(&r) else { continue };
            let _ = d.open(from, &record, &mut out);
            // A failed open still used a sequence number.
            s.seq += 1;
            continue;
        }
        let inner_type = [22, 23, 21][usize::from(ctl >> 2) % 3];
        let mut plain = body.to_vec();
        plain.push(inner_type);
        plain.extend(std::iter::repeat_n(0, usize::from(ctl >> 5)));
        let key = expand_label(hash_len, &s.secret, b"key", alg.key_len());
        let iv = expand_label(hash_len, &s.secret, b"iv", 12);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&iv);
        for (b, q) in nonce[4..].iter_mut().zip(s.seq.to_be_bytes()) {
            *b ^= q;
        }
        let mut header = vec![23, 3, 3];
        header.extend_from_slice(&((plain.len() + 16) as u16).to_be_bytes());
        let sealing = aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).unwrap());
        sealing
            .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(&header), &mut plain)
            .unwrap();
        s.seq += 1;
        header.extend_from_slice(&plain);
        let Ok(Some((record, _))) = decode_record(&header) else { continue };
        match d.open(from, &record, &mut out) {
            Ok(opened) => {
                assert_eq!(opened.content_type, inner_type);
                assert_eq!(out, body);
                if opened.rekeyed {
                    if !s.handshake {
                        s.secret = expand_label(hash_len, &s.secret, b"traffic upd", hash_len);
                    }
                    s.handshake = false;
                    s.seq = 0;
                }
            }
            Err(e) => panic!("a record sealed with the right keys failed: {e}"),
        }
    }
});
