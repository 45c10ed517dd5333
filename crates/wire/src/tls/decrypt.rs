//! TLS record decryption from key-log secrets, for dissecting captures: TLS 1.3 (RFC 8446
//! §5.2–5.3, §7.1–7.3) and TLS 1.2 AEAD suites (RFC 5246 §5–6, RFC 5288 for AES-GCM,
//! RFC 7905 for ChaCha20-Poly1305).
//!
//! A [`Decryptor`] holds one connection's record keys. It is built from the negotiated version
//! and suite (the ServerHello), both randoms, and the [`Secrets`] a key log filed under the
//! client random; then every record after the hellos goes through [`Decryptor::open`] in
//! capture order, per sender. It follows the key schedule itself: TLS 1.3 handshake keys until
//! each side's Finished, then application keys, and the next generation after a KeyUpdate;
//! TLS 1.2 keys from each side's ChangeCipherSpec on.
//!
//! What it does not do: CBC or stream ciphers, TLS 1.3 0-RTT early data, or renegotiation;
//! the suites it knows are listed in [`suite`]. A record that fails authentication is an
//! error (wrong secrets, or a corrupted capture), never a panic.

use ring::{aead, hkdf, hmac};
use thiserror::Error;

use super::keylog::Secrets;
use super::{content_type, Record};

/// The AEAD tag length of every supported suite.
const TAG: usize = 16;

/// Why a connection or a record could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// A suite this decoder has no keys for (CBC, non-AEAD, unknown).
    #[error("cipher suite {0:#06x} is not supported for decryption (only AEAD suites are)")]
    UnsupportedSuite(u16),
    /// A version other than TLS 1.2 or 1.3.
    #[error("{0} cannot be decrypted (only TLS 1.2 and 1.3)")]
    UnsupportedVersion(String),
    /// The key log has no such secret for this connection.
    #[error("the key log has no {0} for this connection")]
    MissingSecret(&'static str),
    /// A secret whose length does not fit the suite's hash.
    #[error("the {0} has the wrong length for this cipher suite")]
    BadSecret(&'static str),
    /// A record too short to hold its nonce and tag.
    #[error("encrypted record of {0} bytes is too short")]
    ShortRecord(usize),
    /// The tag did not verify: wrong secrets or a corrupted record.
    #[error("record {seq} failed authentication (wrong secrets or a corrupted record)")]
    Authentication {
        /// The record's sequence number under its key.
        seq: u64,
    },
    /// A TLS 1.3 record whose plaintext is all padding.
    #[error("TLS 1.3 record without a content type")]
    NoContentType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }
    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Sha256 => hkdf::HKDF_SHA256,
            Self::Sha384 => hkdf::HKDF_SHA384,
        }
    }
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
    fn key_len(self) -> usize {
        self.algorithm().key_len()
    }
}

/// A cipher suite this module can decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// IANA number.
    pub id: u16,
    /// IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub name: &'static str,
    /// Whether it is a TLS 1.3 suite.
    pub tls13: bool,
    cipher: Cipher,
    hash: Hash,
}

/// The decryptable suite numbered `id`: the three TLS 1.3 suites, and the TLS 1.2 AES-GCM and
/// ChaCha20-Poly1305 suites with ECDHE, DHE or RSA key exchange.
pub fn suite(id: u16) -> Option<Suite> {
    use Cipher::{Aes128Gcm, Aes256Gcm, Chacha20Poly1305};
    use Hash::{Sha256, Sha384};
    let (name, tls13, cipher, hash) = match id {
        0x1301 => ("TLS_AES_128_GCM_SHA256", true, Aes128Gcm, Sha256),
        0x1302 => ("TLS_AES_256_GCM_SHA384", true, Aes256Gcm, Sha384),
        0x1303 => (
            "TLS_CHACHA20_POLY1305_SHA256",
            true,
            Chacha20Poly1305,
            Sha256,
        ),
        0xC02B => (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            false,
            Aes128Gcm,
            Sha256,
        ),
        0xC02C => (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            false,
            Aes256Gcm,
            Sha384,
        ),
        0xC02F => (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            false,
            Aes128Gcm,
            Sha256,
        ),
        0xC030 => (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            false,
            Aes256Gcm,
            Sha384,
        ),
        0x009C => ("TLS_RSA_WITH_AES_128_GCM_SHA256", false, Aes128Gcm, Sha256),
        0x009D => ("TLS_RSA_WITH_AES_256_GCM_SHA384", false, Aes256Gcm, Sha384),
        0x009E => (
            "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
            false,
            Aes128Gcm,
            Sha256,
        ),
        0x009F => (
            "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
            false,
            Aes256Gcm,
            Sha384,
        ),
        0xCCA8 => (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            false,
            Chacha20Poly1305,
            Sha256,
        ),
        0xCCA9 => (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            false,
            Chacha20Poly1305,
            Sha256,
        ),
        0xCCAA => (
            "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            false,
            Chacha20Poly1305,
            Sha256,
        ),
        _ => return None,
    };
    Some(Suite {
        id,
        name,
        tls13,
        cipher,
        hash,
    })
}

/// Who sent a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The side that sent the ClientHello.
    Client,
    /// The other side.
    Server,
}

impl Sender {
    fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// What [`Decryptor::open`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The real content type (TLS 1.3's inner type for encrypted records).
    pub content_type: u8,
    /// Whether the record was encrypted (else its fragment was copied as is).
    pub decrypted: bool,
    /// Whether this record changed the sender's keys (its Finished, a KeyUpdate, or TLS 1.2's
    /// ChangeCipherSpec): later records use the next keys.
    pub rekeyed: bool,
}

/// The key, IV and sequence number of one direction under one secret.
struct RecordKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.3: the traffic secret, for the KeyUpdate that derives the next one.
    secret: Vec<u8>,
}

impl RecordKeys {
    fn new(cipher: Cipher, key: &[u8], iv: &[u8], secret: Vec<u8>) -> Option<Self> {
        let unbound = aead::UnboundKey::new(cipher.algorithm(), key).ok()?;
        let mut fixed = [0; 12];
        fixed.get_mut(..iv.len())?.copy_from_slice(iv);
        Some(Self {
            key: aead::LessSafeKey::new(unbound),
            iv: fixed,
            seq: 0,
            secret,
        })
    }

    /// Traffic key and IV from a TLS 1.3 traffic secret (RFC 8446 §7.3).
    fn tls13(suite: &Suite, secret: &[u8], what: &'static str) -> Result<Self, DecryptError> {
        if secret.len() != suite.hash.len() {
            return Err(DecryptError::BadSecret(what));
        }
        let key = expand_label(suite.hash, secret, b"key", suite.cipher.key_len());
        let iv = expand_label(suite.hash, secret, b"iv", 12);
        Self::new(suite.cipher, &key, &iv, secret.to_vec()).ok_or(DecryptError::BadSecret(what))
    }

    /// The per-record nonce: the IV XOR the sequence number, left-padded (RFC 8446 §5.3,
    /// RFC 7905 §2).
    fn xor_nonce(&self) -> aead::Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }
}

/// Walks handshake message boundaries across records without buffering bodies, to see when
/// a Finished or KeyUpdate ends.
#[derive(Debug, Default)]
struct MessageScanner {
    header: [u8; 4],
    header_have: usize,
    body_left: usize,
}

impl MessageScanner {
    /// Feeds handshake bytes; returns whether a message of type `wanted` completed.
    fn ends(&mut self, mut data: &[u8], wanted: &[u8]) -> bool {
        let mut found = false;
        while !data.is_empty() {
            if self.body_left == 0 {
                let n = (4 - self.header_have).min(data.len());
                self.header[self.header_have..self.header_have + n].copy_from_slice(&data[..n]);
                self.header_have += n;
                data = &data[n..];
                if self.header_have < 4 {
                    break;
                }
                self.body_left = (usize::from(self.header[1]) << 16)
                    | (usize::from(self.header[2]) << 8)
                    | usize::from(self.header[3]);
                if self.body_left > 0 {
                    continue;
                }
            } else {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                if self.body_left > 0 {
                    break;
                }
            }
            // A whole message ended here.
            found |= wanted.contains(&self.header[0]);
            self.header_have = 0;
        }
        found
    }
}

/// One direction's state.
struct Direction {
    /// Keys in use; `None` before TLS 1.2's ChangeCipherSpec.
    current: Option<RecordKeys>,
    /// Keys to switch to: TLS 1.3 application keys after Finished; TLS 1.2 keys after CCS.
    next: Option<RecordKeys>,
    /// TLS 1.3: still under handshake keys.
    handshake: bool,
    scanner: MessageScanner,
}

/// One connection's record decryption (see the module docs).
pub struct Decryptor {
    suite: Suite,
    dirs: [Direction; 2],
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("suite", &self.suite.name)
            .finish_non_exhaustive()
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(hash: Hash, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    // HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>.
    let full_len = 6 + label.len();
    let mut info = Vec::with_capacity(4 + full_len);
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full_len as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let prk = hkdf::Prk::new_less_safe(hash.hkdf(), secret);
    let mut out = vec![0; len];
    // Only fails for lengths over 255 × hash length; ours are at most 48.
    if let Ok(okm) = prk.expand(&[&info], Len(len)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// The TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed) cut to `len` bytes.
fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[&[u8]], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(hash.hmac(), secret);
    let mut label_seed = label.to_vec();
    for s in seed {
        label_seed.extend_from_slice(s);
    }
    let mut out = Vec::with_capacity(len + hash.len());
    let mut a = hmac::sign(&key, &label_seed); // A(1)
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(&label_seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, a.as_ref());
    }
    out.truncate(len);
    out
}

impl Decryptor {
    /// Keys for a connection that negotiated `version` (0x0303 or 0x0304) and `suite_id`,
    /// from the `secrets` logged under its client random. TLS 1.2 also needs both randoms.
    pub fn new(
        version: u16,
        suite_id: u16,
        secrets: &Secrets,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Result<Self, DecryptError> {
        let suite = suite(suite_id).ok_or(DecryptError::UnsupportedSuite(suite_id))?;
        match (version, suite.tls13) {
            (0x0304, true) => Self::tls13(suite, secrets),
            (0x0303, false) => Self::tls12(suite, secrets, client_random, server_random),
            (0x0303 | 0x0304, _) => Err(DecryptError::UnsupportedSuite(suite_id)),
            (v, _) => Err(DecryptError::UnsupportedVersion(super::version_name(v))),
        }
    }

    fn tls13(suite: Suite, secrets: &Secrets) -> Result<Self, DecryptError> {
        let get = |s: &Option<Vec<u8>>, what| s.clone().ok_or(DecryptError::MissingSecret(what));
        let dir = |hs: &'static str, hs_secret, app: &'static str, app_secret| {
            Ok::<_, DecryptError>(Direction {
                current: Some(RecordKeys::tls13(&suite, &get(hs_secret, hs)?, hs)?),
                next: Some(RecordKeys::tls13(&suite, &get(app_secret, app)?, app)?),
                handshake: true,
                scanner: MessageScanner::default(),
            })
        };
        Ok(Self {
            dirs: [
                dir(
                    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                    &secrets.client_handshake,
                    "CLIENT_TRAFFIC_SECRET_0",
                    &secrets.client_traffic,
                )?,
                dir(
                    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                    &secrets.server_handshake,
                    "SERVER_TRAFFIC_SECRET_0",
                    &secrets.server_traffic,
                )?,
            ],
            suite,
        })
    }

    fn tls12(
        suite: Suite,
        secrets: &Secrets,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Result<Self, DecryptError> {
        let what = "CLIENT_RANDOM master secret";
        let master = secrets
            .master_secret
            .as_deref()
            .ok_or(DecryptError::MissingSecret(what))?;
        // AEAD suites have no MAC keys: client key, server key, client IV, server IV
        // (RFC 5246 §6.3); the GCM IV is the 4-byte salt (RFC 5288 §3), ChaCha's the whole
        // 12-byte IV (RFC 7905 §2).
        let key_len = suite.cipher.key_len();
        let iv_len = if suite.cipher == Cipher::Chacha20Poly1305 {
            12
        } else {
            4
        };
        let block = prf(
            suite.hash,
            master,
            b"key expansion",
            &[server_random, client_random],
            2 * (key_len + iv_len),
        );
        let (keys, ivs) = block.split_at(2 * key_len);
        let dir = |i: usize| {
            let keys = RecordKeys::new(
                suite.cipher,
                &keys[i * key_len..(i + 1) * key_len],
                &ivs[i * iv_len..(i + 1) * iv_len],
                Vec::new(),
            )
            .ok_or(DecryptError::BadSecret(what))?;
            Ok::<_, DecryptError>(Direction {
                current: None,
                next: Some(keys),
                handshake: false,
                scanner: MessageScanner::default(),
            })
        };
        Ok(Self {
            dirs: [dir(0)?, dir(1)?],
            suite,
        })
    }

    /// The negotiated suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Opens one record sent by `from`, appending its plaintext to `out` (records that are not
    /// encrypted, like the hellos or TLS 1.3's compatibility ChangeCipherSpec, are appended as
    /// they are). On an error nothing is appended; the sequence number still advances, so one
    /// corrupted record does not break the ones after it.
    pub fn open(
        &mut self,
        from: Sender,
        record: &Record<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Opened, DecryptError> {
        let tls13 = self.suite.tls13;
        let dir = &mut self.dirs[from.index()];
        let encrypted = if tls13 {
            record.content_type == content_type::APPLICATION_DATA
        } else {
            dir.current.is_some()
        };
        let Some(keys) = dir.current.as_mut().filter(|_| encrypted) else {
            out.extend_from_slice(record.fragment);
            let ccs = record.content_type == content_type::CHANGE_CIPHER_SPEC;
            let rekeyed = !tls13 && ccs && dir.next.is_some();
            if rekeyed {
                dir.current = dir.next.take();
            }
            return Ok(Opened {
                content_type: record.content_type,
                decrypted: false,
                rekeyed,
            });
        };
        let fragment = record.fragment;
        let start = out.len();
        let content_type = record.content_type;
        // TLS 1.3 and ChaCha20 in TLS 1.2: IV XOR sequence number, no explicit nonce.
        let (nonce, body) = if tls13 || self.suite.cipher == Cipher::Chacha20Poly1305 {
            (keys.xor_nonce(), fragment)
        } else {
            // GCM: salt (4) ‖ explicit nonce (8, first in the fragment) (RFC 5288 §3).
            let Some((explicit, rest)) = fragment.split_at_checked(8) else {
                keys.seq = keys.seq.wrapping_add(1);
                return Err(DecryptError::ShortRecord(fragment.len()));
            };
            let mut nonce = keys.iv;
            nonce[4..].copy_from_slice(explicit);
            (aead::Nonce::assume_unique_for_key(nonce), rest)
        };
        if body.len() < TAG {
            keys.seq = keys.seq.wrapping_add(1);
            return Err(DecryptError::ShortRecord(fragment.len()));
        }
        let mut aad = [0u8; 13];
        let aad: &[u8] = if tls13 {
            // The record header as sent (RFC 8446 §5.2).
            aad[0] = record.content_type;
            aad[1..3].copy_from_slice(&record.version.to_be_bytes());
            aad[3..5].copy_from_slice(&(fragment.len() as u16).to_be_bytes());
            &aad[..5]
        } else {
            // seq_num ‖ type ‖ version ‖ plaintext length (RFC 5246 §6.2.3.3).
            aad[..8].copy_from_slice(&keys.seq.to_be_bytes());
            aad[8] = content_type;
            aad[9..11].copy_from_slice(&record.version.to_be_bytes());
            aad[11..13].copy_from_slice(&((body.len() - TAG) as u16).to_be_bytes());
            &aad[..]
        };
        let seq = keys.seq;
        keys.seq = keys.seq.wrapping_add(1);
        out.extend_from_slice(body);
        let opened = keys
            .key
            .open_in_place(nonce, aead::Aad::from(aad), &mut out[start..])
            .map(|plain| plain.len());
        let Ok(plain_len) = opened else {
            out.truncate(start);
            return Err(DecryptError::Authentication { seq });
        };
        out.truncate(start + plain_len);
        let mut real_type = content_type;
        if tls13 {
            // TLSInnerPlaintext: content ‖ type ‖ zeros (RFC 8446 §5.2).
            let Some(at) = out[start..].iter().rposition(|&b| b != 0) else {
                out.truncate(start);
                return Err(DecryptError::NoContentType);
            };
            real_type = out[start + at];
            out.truncate(start + at);
        }
        let mut rekeyed = false;
        if tls13 && real_type == content_type::HANDSHAKE {
            // Finished (20) ends the handshake keys; KeyUpdate (24) the current application
            // keys. Both must end their record (RFC 8446 §5.1), so the switch is after it.
            let wanted: &[u8] = if dir.handshake { &[20] } else { &[24] };
            if dir.scanner.ends(&out[start..], wanted) {
                rekeyed = true;
                if dir.handshake {
                    dir.handshake = false;
                    dir.current = dir.next.take();
                } else if let Some(current) = dir.current.as_ref() {
                    let secret = expand_label(
                        self.suite.hash,
                        &current.secret,
                        b"traffic upd",
                        self.suite.hash.len(),
                    );
                    dir.current = RecordKeys::tls13(&self.suite, &secret, "updated secret").ok();
                }
            }
        }
        Ok(Opened {
            content_type: real_type,
            decrypted: true,
            rekeyed,
        })
    }
}

#[cfg(test)]
mod tests {
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
}
