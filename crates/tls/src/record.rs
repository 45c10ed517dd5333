//! The TLS record layer after the handshake, sans-IO: seal application data into records and
//! open received records in place, for TLS 1.3 and TLS 1.2 with the AEAD suites the lab offers
//! (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305).
//!
//! rustls negotiates the keys (see [`crate::stream`]); this module only applies them. Opening
//! writes the plaintext over the record's own header as it decrypts (the AEAD reads ahead of
//! where it writes), so records read into one buffer come out as one contiguous run of
//! plaintext with no copy. Sealing copies the plaintext once, into the output buffer, and
//! encrypts it there.
//!
//! The AEADs are aws-lc-rs's, not *ring*'s (which rustls' handshake and the rest of this
//! crate use): on this project's AVX-512 machines its AES-GCM seals a 16 KiB record 1.58x as
//! fast (10.4 against 6.6 GB/s for AES-128-GCM, 9.1 against 6.3 for AES-256-GCM), and a 16 KiB
//! WSS echo spends about a third of its server CPU in the cipher. The keys come from rustls as
//! bytes, so which library applies them is this module's business alone.
//!
//! Every length is checked before it is used: a record larger than the protocol allows, a
//! record too short for its tag, an unknown content type or a failed tag is a [`RecordError`]
//! naming the alert to send, never a panic.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use rustls::ConnectionTrafficSecrets;

/// Bytes of a record header: type, legacy version, length.
pub const HEADER_LEN: usize = 5;
/// Most plaintext one record may carry (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Most ciphertext a TLS 1.3 record may carry: plaintext, content type, padding and tag
/// (RFC 8446 §5.2).
const MAX_CIPHERTEXT_TLS13: usize = MAX_PLAINTEXT + 256;
/// Most ciphertext a TLS 1.2 record may carry (RFC 5246 §6.2.3).
const MAX_CIPHERTEXT_TLS12: usize = MAX_PLAINTEXT + 2048;
/// Largest record on the wire, header included: what a buffer must hold to open any record.
pub const MAX_RECORD: usize = HEADER_LEN + MAX_CIPHERTEXT_TLS12;
/// Bytes a sealed record adds to its plaintext at most (header, explicit nonce or inner content
/// type, tag): room to leave in an output buffer.
pub const MAX_OVERHEAD: usize = HEADER_LEN + 8 + TAG_LEN;
const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM carries 8 bytes of the nonce in each record (RFC 5288 §3).
const EXPLICIT_NONCE_LEN: usize = 8;

/// Content types (RFC 8446 §5.1).
pub mod content_type {
    /// `change_cipher_spec`.
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// `alert`.
    pub const ALERT: u8 = 21;
    /// `handshake`.
    pub const HANDSHAKE: u8 = 22;
    /// `application_data`.
    pub const APPLICATION_DATA: u8 = 23;
}

/// Alert descriptions this layer sends (RFC 8446 §6).
pub mod alert {
    /// `close_notify`.
    pub const CLOSE_NOTIFY: u8 = 0;
    /// `unexpected_message`.
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    /// `bad_record_mac`.
    pub const BAD_RECORD_MAC: u8 = 20;
    /// `record_overflow`.
    pub const RECORD_OVERFLOW: u8 = 22;
    /// `decode_error`.
    pub const DECODE_ERROR: u8 = 50;
    /// `internal_error`.
    pub const INTERNAL_ERROR: u8 = 80;
    /// `user_canceled`.
    pub const USER_CANCELED: u8 = 90;
    /// `no_renegotiation`.
    pub const NO_RENEGOTIATION: u8 = 100;
}

/// Why a record could not be opened or sealed, with the alert the peer should get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RecordError {
    /// The fatal alert to send (an [`alert`] description).
    pub alert: u8,
    /// What went wrong, in words.
    pub reason: String,
}

impl RecordError {
    fn new(alert: u8, reason: impl Into<String>) -> Self {
        Self {
            alert,
            reason: reason.into(),
        }
    }
}

/// Which record protection the connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.3: the real content type travels encrypted at the end of the plaintext.
    Tls13,
    /// TLS 1.2 with an AEAD suite.
    Tls12,
}

/// The record ciphers this layer applies: the AEADs of the suites the lab offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
}

impl Cipher {
    /// Every cipher, for tests and fuzzing.
    pub const ALL: [Self; 3] = [Self::Aes128Gcm, Self::Aes256Gcm, Self::ChaCha20Poly1305];

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        self.algorithm().key_len()
    }

    /// Whether TLS 1.2 records carry part of the nonce (AES-GCM, RFC 5288 §3; ChaCha20 does
    /// not, RFC 7905 §2).
    pub fn explicit_nonce(self, version: Version) -> bool {
        version == Version::Tls12 && self != Self::ChaCha20Poly1305
    }

    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's traffic key, nonce base and record sequence number.
pub struct DirectionKeys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    /// TLS 1.2 AES-GCM: the record carries the last 8 nonce bytes.
    explicit_nonce: bool,
    seq: u64,
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DirectionKeys")
            .field("algorithm", self.key.algorithm())
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl DirectionKeys {
    /// Keys from what rustls extracted after the handshake, starting at sequence `seq`.
    pub fn new(
        version: Version,
        seq: u64,
        secrets: &ConnectionTrafficSecrets,
    ) -> Result<Self, RecordError> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (Cipher::Aes128Gcm, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (Cipher::Aes256Gcm, key.as_ref(), iv.as_ref())
            }
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::ChaCha20Poly1305, key.as_ref(), iv.as_ref())
            }
            _ => {
                return Err(RecordError::new(
                    alert::INTERNAL_ERROR,
                    "the negotiated cipher suite has no record layer here",
                ))
            }
        };
        Self::from_raw(cipher, key, iv, cipher.explicit_nonce(version), seq)
    }

    /// Keys from raw bytes (fuzzing and tests).
    pub fn from_raw(
        cipher: Cipher,
        key: &[u8],
        iv: &[u8],
        explicit_nonce: bool,
        seq: u64,
    ) -> Result<Self, RecordError> {
        let bad = || RecordError::new(alert::INTERNAL_ERROR, "traffic key of the wrong length");
        let key = LessSafeKey::new(UnboundKey::new(cipher.algorithm(), key).map_err(|_| bad())?);
        let iv: [u8; NONCE_LEN] = iv.try_into().map_err(|_| bad())?;
        Ok(Self {
            key,
            iv,
            explicit_nonce,
            seq,
        })
    }

    /// Records protected with these keys so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The per-record nonce: the IV with the sequence number XORed into its last 8 bytes
    /// (RFC 8446 §5.3; TLS 1.2 ChaCha20 and rustls' TLS 1.2 GCM sealing do the same).
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    fn next_seq(&mut self) -> Result<u64, RecordError> {
        let seq = self.seq;
        // RFC 8446 §5.3: the sequence number must not wrap.
        self.seq = seq
            .checked_add(1)
            .ok_or_else(|| RecordError::new(alert::INTERNAL_ERROR, "record sequence exhausted"))?;
        Ok(seq)
    }
}

/// A record opened in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The (inner, for TLS 1.3) content type.
    pub content_type: u8,
    /// Plaintext bytes now at the start of the opened region.
    pub len: usize,
}

/// The length of the whole record (header included) at the start of `buf`, once its header is
/// there; `Ok(None)` if fewer than [`HEADER_LEN`] bytes are. Checks the length against the
/// protocol's limit, so a caller can size its buffer from it.
pub fn record_len(version: Version, buf: &[u8]) -> Result<Option<usize>, RecordError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let max = match version {
        Version::Tls13 => MAX_CIPHERTEXT_TLS13,
        Version::Tls12 => MAX_CIPHERTEXT_TLS12,
    };
    if len > max {
        return Err(RecordError::new(
            alert::RECORD_OVERFLOW,
            format!("record of {len} bytes is over the {max}-byte limit"),
        ));
    }
    Ok(Some(HEADER_LEN + len))
}

/// Opens the record that starts at `buf[src..]` (its whole length as [`record_len`] gave) and
/// writes its plaintext to `buf[dst..]`, `dst <= src`.
pub fn open(
    version: Version,
    keys: &mut DirectionKeys,
    buf: &mut [u8],
    dst: usize,
    src: usize,
    record: usize,
) -> Result<Opened, RecordError> {
    let end = src
        .checked_add(record)
        .filter(|&end| end <= buf.len() && dst <= src && record >= HEADER_LEN)
        .ok_or_else(|| RecordError::new(alert::INTERNAL_ERROR, "record outside the buffer"))?;
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[src..src + HEADER_LEN]);
    let outer_type = header[0];
    let fragment = record - HEADER_LEN;
    let short = || RecordError::new(alert::DECODE_ERROR, "record too short for its tag");
    match version {
        Version::Tls13 => {
            if outer_type != content_type::APPLICATION_DATA {
                return Err(RecordError::new(
                    alert::UNEXPECTED_MESSAGE,
                    format!("unprotected record of type {outer_type} after the handshake"),
                ));
            }
            if fragment < TAG_LEN + 1 {
                return Err(short());
            }
            let nonce = Nonce::assume_unique_for_key(keys.nonce());
            let plain = keys
                .key
                .open_within(
                    nonce,
                    Aad::from(header),
                    &mut buf[dst..end],
                    src + HEADER_LEN - dst..,
                )
                .map_err(|_| bad_mac())?;
            // The real type is the last non-zero byte; zeros after it are padding.
            let Some(type_at) = plain.iter().rposition(|&b| b != 0) else {
                return Err(RecordError::new(
                    alert::UNEXPECTED_MESSAGE,
                    "record with no content type",
                ));
            };
            let content_type = plain[type_at];
            keys.next_seq()?;
            Ok(Opened {
                content_type,
                len: type_at,
            })
        }
        Version::Tls12 => {
            if !matches!(
                outer_type,
                content_type::ALERT | content_type::HANDSHAKE | content_type::APPLICATION_DATA
            ) {
                return Err(RecordError::new(
                    alert::UNEXPECTED_MESSAGE,
                    format!("record of type {outer_type} after the handshake"),
                ));
            }
            let explicit = if keys.explicit_nonce {
                EXPLICIT_NONCE_LEN
            } else {
                0
            };
            let len = fragment.checked_sub(explicit + TAG_LEN).ok_or_else(short)?;
            let mut nonce = keys.nonce();
            if keys.explicit_nonce {
                let at = src + HEADER_LEN;
                nonce[4..].copy_from_slice(&buf[at..at + EXPLICIT_NONCE_LEN]);
            }
            let aad = tls12_aad(keys.seq, outer_type, len);
            keys.key
                .open_within(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut buf[dst..end],
                    src + HEADER_LEN + explicit - dst..,
                )
                .map_err(|_| bad_mac())?;
            keys.next_seq()?;
            Ok(Opened {
                content_type: outer_type,
                len,
            })
        }
    }
}

fn bad_mac() -> RecordError {
    RecordError::new(
        alert::BAD_RECORD_MAC,
        "a record failed its integrity check (corrupted, or not from this session)",
    )
}

/// TLS 1.2 additional data: sequence, type, version, plaintext length (RFC 5246 §6.2.3.3).
fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&[3, 3]);
    // len ≤ MAX_CIPHERTEXT_TLS12, which fits in u16.
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Seals `pieces` (at most [`MAX_PLAINTEXT`] bytes together) as one record of `content_type`
/// appended to `out`.
pub fn seal(
    version: Version,
    keys: &mut DirectionKeys,
    out: &mut Vec<u8>,
    content_type: u8,
    pieces: &[&[u8]],
) -> Result<(), RecordError> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    if len > MAX_PLAINTEXT {
        return Err(RecordError::new(
            alert::INTERNAL_ERROR,
            "plaintext over one record",
        ));
    }
    let start = out.len();
    out.reserve(len + MAX_OVERHEAD);
    let nonce = keys.nonce();
    match version {
        Version::Tls13 => {
            let fragment = len + 1 + TAG_LEN;
            let header = record_header(content_type::APPLICATION_DATA, fragment);
            out.extend_from_slice(&header);
            for piece in pieces {
                out.extend_from_slice(piece);
            }
            out.push(content_type);
            let tag = keys
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(header),
                    &mut out[start + HEADER_LEN..],
                )
                .map_err(|_| RecordError::new(alert::INTERNAL_ERROR, "sealing failed"))?;
            out.extend_from_slice(tag.as_ref());
        }
        Version::Tls12 => {
            let explicit = if keys.explicit_nonce {
                EXPLICIT_NONCE_LEN
            } else {
                0
            };
            let header = record_header(content_type, explicit + len + TAG_LEN);
            out.extend_from_slice(&header);
            if keys.explicit_nonce {
                out.extend_from_slice(&nonce[4..]);
            }
            let body = out.len();
            for piece in pieces {
                out.extend_from_slice(piece);
            }
            let aad = tls12_aad(keys.seq, content_type, len);
            let tag = keys
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    &mut out[body..],
                )
                .map_err(|_| RecordError::new(alert::INTERNAL_ERROR, "sealing failed"))?;
            out.extend_from_slice(tag.as_ref());
        }
    }
    keys.next_seq()?;
    Ok(())
}

/// The first whole handshake message in `buf` — its type, its body, and the bytes it takes
/// (RFC 8446 §4: a type byte and a 24-bit length) — or `None` while it is not all there.
pub fn next_handshake_message(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let [kind, a, b, c, rest @ ..] = buf else {
        return None;
    };
    let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
    let body = rest.get(..len)?;
    Some((*kind, body, 4 + len))
}

fn record_header(content_type: u8, fragment: usize) -> [u8; HEADER_LEN] {
    // fragment ≤ MAX_PLAINTEXT + MAX_OVERHEAD, which fits in u16.
    let [hi, lo] = (fragment as u16).to_be_bytes();
    // Legacy version 0x0303 (TLS 1.2) in every record of both versions (RFC 8446 §5.1).
    [content_type, 3, 3, hi, lo]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(version: Version, cipher: Cipher) -> (DirectionKeys, DirectionKeys) {
        let key = vec![7u8; cipher.key_len()];
        let iv = [9u8; NONCE_LEN];
        let explicit = cipher.explicit_nonce(version);
        (
            DirectionKeys::from_raw(cipher, &key, &iv, explicit, 0).unwrap(),
            DirectionKeys::from_raw(cipher, &key, &iv, explicit, 0).unwrap(),
        )
    }

    #[test]
    fn sealed_records_open_contiguously_in_place() {
        for version in [Version::Tls13, Version::Tls12] {
            for cipher in Cipher::ALL {
                let (mut tx, mut rx) = pair(version, cipher);
                let messages: Vec<Vec<u8>> = [0usize, 1, 100, MAX_PLAINTEXT]
                    .iter()
                    .map(|&n| (0..n).map(|i| (i % 251) as u8).collect())
                    .collect();
                let mut wire = Vec::new();
                for m in &messages {
                    seal(
                        version,
                        &mut tx,
                        &mut wire,
                        content_type::APPLICATION_DATA,
                        &[m],
                    )
                    .unwrap();
                }
                let (mut src, mut dst) = (0, 0);
                while src < wire.len() {
                    let len = record_len(version, &wire[src..]).unwrap().unwrap();
                    let opened = open(version, &mut rx, &mut wire, dst, src, len).unwrap();
                    assert_eq!(opened.content_type, content_type::APPLICATION_DATA);
                    dst += opened.len;
                    src += len;
                }
                assert_eq!(wire[..dst], messages.concat()[..], "{version:?} {cipher:?}");
                assert_eq!(rx.seq(), 4);
            }
        }
    }

    #[test]
    fn a_flipped_bit_a_replay_or_an_oversized_record_is_refused() {
        for version in [Version::Tls13, Version::Tls12] {
            let (mut tx, mut rx) = pair(version, Cipher::Aes128Gcm);
            let mut wire = Vec::new();
            seal(
                version,
                &mut tx,
                &mut wire,
                content_type::APPLICATION_DATA,
                &[b"hello"],
            )
            .unwrap();
            let mut flipped = wire.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            let err = open(version, &mut rx, &mut flipped, 0, 0, wire.len()).unwrap_err();
            assert_eq!(err.alert, alert::BAD_RECORD_MAC);
            let mut copy = wire.clone();
            open(version, &mut rx, &mut copy, 0, 0, wire.len()).unwrap();
            // A record opens once: the sequence number moved on, so a replay fails.
            let mut replay = wire.clone();
            let err = open(version, &mut rx, &mut replay, 0, 0, wire.len()).unwrap_err();
            assert_eq!(err.alert, alert::BAD_RECORD_MAC);
        }
        let huge = [23, 3, 3, 0xff, 0xff];
        assert_eq!(
            record_len(Version::Tls13, &huge).unwrap_err().alert,
            alert::RECORD_OVERFLOW
        );
        assert_eq!(record_len(Version::Tls13, &huge[..4]), Ok(None));
    }

    #[test]
    fn tls13_carries_the_inner_type_and_strips_padding() {
        let (mut tx, mut rx) = pair(Version::Tls13, Cipher::Aes128Gcm);
        let mut wire = Vec::new();
        seal(
            Version::Tls13,
            &mut tx,
            &mut wire,
            content_type::ALERT,
            &[&[1, 0]],
        )
        .unwrap();
        assert_eq!(
            wire[0],
            content_type::APPLICATION_DATA,
            "outer type hides the inner"
        );
        let len = wire.len();
        let opened = open(Version::Tls13, &mut rx, &mut wire, 0, 0, len).unwrap();
        assert_eq!(
            opened,
            Opened {
                content_type: content_type::ALERT,
                len: 2
            }
        );
        assert_eq!(&wire[..2], &[1, 0]);
    }
}
