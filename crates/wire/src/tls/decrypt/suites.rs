//! The cipher suites the decoder knows, and the key derivation their hashes drive:
//! HKDF-Expand-Label for TLS 1.3 (RFC 8446 §7.1) and the TLS 1.2 PRF (RFC 5246 §5).

use ring::{aead, hkdf, hmac};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub(super) fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }
    pub(super) fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Self::Sha256 => hkdf::HKDF_SHA256,
            Self::Sha384 => hkdf::HKDF_SHA384,
        }
    }
    pub(super) fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    pub(super) fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aead::AES_128_GCM,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
    pub(super) fn key_len(self) -> usize {
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
    pub(super) cipher: Cipher,
    pub(super) hash: Hash,
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

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
pub(super) fn expand_label(hash: Hash, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
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
pub(super) fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[&[u8]], len: usize) -> Vec<u8> {
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
