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

mod suites;

use ring::aead;
use thiserror::Error;

use super::keylog::Secrets;
use super::{content_type, Record};
use suites::{expand_label, prf, Cipher};
pub use suites::{suite, Suite};

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
mod tests;
