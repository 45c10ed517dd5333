//! Decryption against RFC 8448's key schedule and against records sealed here with known
//! secrets: every suite, key switches after Finished, KeyUpdate and ChangeCipherSpec, and the
//! errors for missing secrets and unknown suites.

use super::suites::Hash;
use super::*;

/// Seals like a TLS 1.3 sender: inner type + padding, header as AAD.
fn seal13(keys: &mut RecordKeys, inner_type: u8, plain: &[u8], pad: usize) -> Vec<u8> {
    let mut body = plain.to_vec();
    body.push(inner_type);
    body.extend(std::iter::repeat_n(0, pad));
    let len = (body.len() + TAG) as u16;
    let mut header = vec![23, 3, 3];
    header.extend_from_slice(&len.to_be_bytes());
    keys.key
        .seal_in_place_append_tag(keys.xor_nonce(), aead::Aad::from(&header), &mut body)
        .unwrap();
    keys.seq += 1;
    header.extend_from_slice(&body);
    header
}

fn record(bytes: &[u8]) -> Record<'_> {
    super::super::decode_record(bytes).unwrap().unwrap().0
}

#[test]
fn hkdf_expand_label_matches_rfc_8448() {
    // RFC 8448 §3 (simple 1-RTT): server handshake traffic secret → write key and IV.
    let secret = hex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38");
    assert_eq!(
        expand_label(Hash::Sha256, &secret, b"key", 16),
        hex("3fce516009c21727d0f2e4e86ee403bc")
    );
    assert_eq!(
        expand_label(Hash::Sha256, &secret, b"iv", 12),
        hex("5d313eb2671276ee13000b30")
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn tls13_switches_keys_after_finished_and_key_update_for_every_suite() {
    for id in [0x1301, 0x1302, 0x1303] {
        let s = suite(id).unwrap();
        let n = s.hash.len();
        let secrets = Secrets {
            client_handshake: Some(vec![1; n]),
            server_handshake: Some(vec![2; n]),
            client_traffic: Some(vec![3; n]),
            server_traffic: Some(vec![4; n]),
            ..Secrets::default()
        };
        let mut d = Decryptor::new(0x0304, id, &secrets, &[0; 32], &[0; 32]).unwrap();
        let mut server_hs = RecordKeys::tls13(&s, &[2; 48][..n], "").unwrap();
        let mut server_app = RecordKeys::tls13(&s, &[4; 48][..n], "").unwrap();
        let mut out = Vec::new();
        // EncryptedExtensions split over two records, then Finished.
        let ee = [8u8, 0, 0, 2, 0, 0];
        let r = seal13(&mut server_hs, 22, &ee[..3], 0);
        let o = d.open(Sender::Server, &record(&r), &mut out).unwrap();
        assert_eq!((o.content_type, o.rekeyed), (22, false));
        let r = seal13(&mut server_hs, 22, &ee[3..], 5);
        d.open(Sender::Server, &record(&r), &mut out).unwrap();
        let mut fin = vec![20u8, 0, 0, n as u8];
        fin.extend(std::iter::repeat_n(9, n));
        let r = seal13(&mut server_hs, 22, &fin, 0);
        assert!(
            d.open(Sender::Server, &record(&r), &mut out)
                .unwrap()
                .rekeyed
        );
        assert_eq!(out[..ee.len()], ee);
        out.clear();
        let r = seal13(&mut server_app, 23, b"hello", 3);
        let o = d.open(Sender::Server, &record(&r), &mut out).unwrap();
        assert_eq!((o.content_type, &out[..]), (23, &b"hello"[..]));
        // KeyUpdate (update_not_requested), then data under the next generation.
        let r = seal13(&mut server_app, 22, &[24, 0, 0, 1, 0], 0);
        assert!(
            d.open(Sender::Server, &record(&r), &mut out)
                .unwrap()
                .rekeyed
        );
        let next = expand_label(s.hash, &[4; 48][..n], b"traffic upd", n);
        let mut server_app1 = RecordKeys::tls13(&s, &next, "").unwrap();
        out.clear();
        let r = seal13(&mut server_app1, 23, b"after update", 0);
        d.open(Sender::Server, &record(&r), &mut out).unwrap();
        assert_eq!(out, b"after update");
        // A flipped byte fails authentication, and the record after it still opens.
        let mut bad = seal13(&mut server_app1, 23, b"x", 0);
        bad[7] ^= 1;
        assert_eq!(
            d.open(Sender::Server, &record(&bad), &mut out),
            Err(DecryptError::Authentication { seq: 1 })
        );
        out.clear();
        let r = seal13(&mut server_app1, 23, b"y", 0);
        d.open(Sender::Server, &record(&r), &mut out).unwrap();
        assert_eq!(out, b"y");
        // Compatibility ChangeCipherSpec passes through.
        let o = d
            .open(Sender::Client, &record(&[20, 3, 3, 0, 1, 1]), &mut out)
            .unwrap();
        assert!(!o.decrypted);
    }
}

#[test]
fn tls12_gcm_and_chacha_after_change_cipher_spec() {
    for id in [0xC02B, 0xC02C, 0xCCA9] {
        let s = suite(id).unwrap();
        let secrets = Secrets {
            master_secret: Some(vec![5; 48]),
            ..Secrets::default()
        };
        let (cr, sr) = ([1; 32], [2; 32]);
        let mut d = Decryptor::new(0x0303, id, &secrets, &cr, &sr).unwrap();
        // Seal as the client would, from the same key block.
        let key_len = s.cipher.key_len();
        let iv_len = if s.cipher == Cipher::Chacha20Poly1305 {
            12
        } else {
            4
        };
        let block = prf(
            s.hash,
            &[5; 48],
            b"key expansion",
            &[&sr, &cr],
            2 * (key_len + iv_len),
        );
        let mut keys = RecordKeys::new(
            s.cipher,
            &block[..key_len],
            &block[2 * key_len..2 * key_len + iv_len],
            Vec::new(),
        )
        .unwrap();
        let mut out = Vec::new();
        let o = d
            .open(
                Sender::Client,
                &record(&[22, 3, 3, 0, 2, 0xAA, 0xBB]),
                &mut out,
            )
            .unwrap();
        assert!(!o.decrypted && !o.rekeyed);
        assert!(
            d.open(Sender::Client, &record(&[20, 3, 3, 0, 1, 1]), &mut out)
                .unwrap()
                .rekeyed
        );
        for (seq, plain) in [(0u64, &b"finished!"[..]), (1, b"GET / HTTP/1.1\r\n\r\n")] {
            let ctype = if seq == 0 { 22 } else { 23 };
            let mut aad = seq.to_be_bytes().to_vec();
            aad.extend_from_slice(&[ctype, 3, 3]);
            aad.extend_from_slice(&(plain.len() as u16).to_be_bytes());
            let (nonce, explicit) = if s.cipher == Cipher::Chacha20Poly1305 {
                (keys.xor_nonce(), Vec::new())
            } else {
                let mut n = keys.iv;
                n[4..].copy_from_slice(&(seq + 100).to_be_bytes());
                (
                    aead::Nonce::assume_unique_for_key(n),
                    (seq + 100).to_be_bytes().to_vec(),
                )
            };
            let mut body = plain.to_vec();
            keys.key
                .seal_in_place_append_tag(nonce, aead::Aad::from(&aad), &mut body)
                .unwrap();
            keys.seq += 1;
            let mut frag = explicit;
            frag.extend_from_slice(&body);
            let mut r = vec![ctype, 3, 3];
            r.extend_from_slice(&(frag.len() as u16).to_be_bytes());
            r.extend_from_slice(&frag);
            out.clear();
            let o = d.open(Sender::Client, &record(&r), &mut out).unwrap();
            assert_eq!((o.content_type, &out[..]), (ctype, plain), "{}", s.name);
        }
        // The server's direction has not seen its ChangeCipherSpec: passed through.
        out.clear();
        let o = d
            .open(Sender::Server, &record(&[23, 3, 3, 0, 1, 7]), &mut out)
            .unwrap();
        assert!(!o.decrypted);
    }
}

#[test]
fn missing_secrets_and_unknown_suites_are_errors() {
    let none = Secrets::default();
    assert_eq!(
        Decryptor::new(0x0304, 0x1301, &none, &[0; 32], &[0; 32]).err(),
        Some(DecryptError::MissingSecret(
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
        ))
    );
    assert_eq!(
        Decryptor::new(0x0303, 0xC02F, &none, &[0; 32], &[0; 32]).err(),
        Some(DecryptError::MissingSecret("CLIENT_RANDOM master secret"))
    );
    assert_eq!(
        Decryptor::new(0x0303, 0x002F, &none, &[0; 32], &[0; 32]).err(),
        Some(DecryptError::UnsupportedSuite(0x002F))
    );
    let short = Secrets {
        client_handshake: Some(vec![0; 48]),
        ..Secrets::default()
    };
    assert_eq!(
        Decryptor::new(0x0304, 0x1301, &short, &[0; 32], &[0; 32]).err(),
        Some(DecryptError::BadSecret("CLIENT_HANDSHAKE_TRAFFIC_SECRET"))
    );
}
