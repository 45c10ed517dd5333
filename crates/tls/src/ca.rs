//! The local certificate authority and the leaf certificates it issues.
//!
//! Profiles follow what browsers and the CA/Browser Forum baseline requirements accept for a
//! private root: the CA is `CA:TRUE, pathlen:0` with only `keyCertSign` and `cRLSign`; leaves
//! are `CA:FALSE`, carry every name as a subjectAltName (RFC 6125 §6.4.4: clients ignore the CN
//! when SANs are present), have `serverAuth` in extendedKeyUsage, and live at most 825 days
//! (Apple's limit for trusted TLS server certificates).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// How long a new CA is valid. Ten years: long enough that nobody re-trusts it mid-project.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// How long a new leaf is valid: 825 days is the longest validity Apple platforms (and so
/// Safari) accept for a TLS server certificate, whatever the root.
pub const LEAF_VALIDITY: Duration = Duration::days(825);

/// Certificates start an hour in the past so a peer whose clock lags a little still accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// The organisation in every protolab CA subject, so the CA is easy to spot in trust stores.
pub const CA_ORGANIZATION: &str = "protolab development CA";

/// The local CA: its certificate, its key, and where it is stored.
pub struct Ca {
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) cert_pem: String,
    pub(crate) key: KeyPair,
    /// rcgen signs with a `Certificate` value; rebuilt from the stored DER with the same
    /// subject and key identifier, so leaves chain to the stored certificate.
    pub(crate) issuer: rcgen::Certificate,
    pub(crate) cert_path: PathBuf,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Ca")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Generates a brand-new CA (ECDSA P-256). `owner` goes into the subject, e.g. `alice@laptop`,
    /// so two developers' CAs are told apart in a trust store. Nothing is written to disk.
    pub(crate) fn generate(owner: &str, cert_path: PathBuf) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ca_common_name(owner));
        dn.push(DnType::OrganizationName, CA_ORGANIZATION);
        if !owner.is_empty() {
            dn.push(DnType::OrganizationalUnitName, owner);
        }
        params.distinguished_name = dn;
        // pathlen 0: this CA signs leaves only, never another CA, so a leaked leaf key can never
        // mint certificates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        let cert_pem = cert.pem();
        Ok(Self {
            cert_der,
            cert_pem,
            key,
            issuer: cert,
            cert_path,
        })
    }

    /// Rebuilds a CA from its stored certificate and key. The caller has checked they match.
    pub(crate) fn from_parts(
        cert_der: CertificateDer<'static>,
        cert_pem: String,
        key: KeyPair,
        cert_path: PathBuf,
    ) -> Result<Self> {
        let params = CertificateParams::from_ca_cert_der(&cert_der)?;
        let issuer = params.self_signed(&key)?;
        Ok(Self {
            cert_der,
            cert_pem,
            key,
            issuer,
            cert_path,
        })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate (PEM text).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Where the CA certificate is stored (`<dir>/ca.pem`): the file to hand to clients
    /// (`curl --cacert`, `NODE_EXTRA_CA_CERTS`, ...).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues a leaf certificate for `names` (DNS names, `*.wildcards` or IP addresses), with a
    /// fresh ECDSA P-256 key. The first name becomes the CN. Nothing is written to disk; see
    /// [`Store::issue`](crate::Store::issue) for that.
    pub fn issue(&self, names: &[String]) -> Result<Leaf> {
        let now = OffsetDateTime::now_utc();
        self.issue_with_validity(names, now - BACKDATE, now - BACKDATE + LEAF_VALIDITY)
    }

    /// Like [`issue`](Self::issue) with an explicit validity window. Meant for tests and
    /// demonstrations (an expired certificate to show what clients say); real leaves should use
    /// [`issue`](Self::issue).
    pub fn issue_with_validity(
        &self,
        names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Leaf> {
        let mut params = leaf_params(names)?;
        params.not_before = not_before;
        params.not_after = not_after;
        self.sign(params)
    }

    /// Signs arbitrary leaf parameters with this CA. Used by tests to build deliberately broken
    /// certificates (client-only EKU, CA:TRUE leaves) signed by a real CA.
    pub fn sign(&self, params: CertificateParams) -> Result<Leaf> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Leaf {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path: None,
            key_path: None,
        })
    }
}

/// `protolab local CA alice@laptop` (or without the owner if none is known).
fn ca_common_name(owner: &str) -> String {
    if owner.is_empty() {
        "protolab local CA".to_owned()
    } else {
        format!("protolab local CA {owner}")
    }
}

/// The parameters of a normal protolab leaf for `names`, validity left at rcgen's default.
pub fn leaf_params(names: &[String]) -> Result<CertificateParams> {
    let sans = parse_names(names)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // CN = first name, like mkcert; clients match on SANs only, the CN is for humans.
    dn.push(DnType::CommonName, names[0].trim());
    dn.push(DnType::OrganizationName, "protolab development certificate");
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    // ExplicitNoCa writes basicConstraints CA:FALSE rather than omitting the extension, so no
    // client can mistake the leaf for a CA.
    params.is_ca = IsCa::ExplicitNoCa;
    // The leaf key is ECDSA: it signs handshakes and can encipher nothing. keyEncipherment
    // belongs to RSA key transport; RFC 5480 §3 lists what an EC key's keyUsage may hold,
    // and strict validators (and testssl.sh) flag it.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// A 128-bit random serial (RFC 5280 §4.1.2.2 wants unique, positive, at most 20 octets; CA/B
/// Forum wants at least 64 random bits).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Rustls(rustls::Error::FailedToGetRandomBytes))?;
    // Clear the top bit so the DER INTEGER stays positive without a padding byte.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// A name to certify, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    /// A DNS name, lower-cased, possibly `*.`-prefixed.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Name {
    /// Parses one name: an IPv4/IPv6 address (brackets allowed) or a DNS name (RFC 1035
    /// letters-digits-hyphen labels, optionally a `*` first label).
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidName {
            name: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let name = raw.trim();
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        let unbracketed = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let dns = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if dns.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        if dns.contains("://") || dns.contains('/') {
            return Err(invalid("it looks like a URL; give only the host name"));
        }
        if dns.contains(':') {
            return Err(invalid("it contains `:`; give the host without a port"));
        }
        let labels: Vec<&str> = dns.split('.').collect();
        for (i, label) in labels.iter().enumerate() {
            if *label == "*" {
                if i != 0 {
                    return Err(invalid("a wildcard `*` may only be the whole first label"));
                }
                if labels.len() < 3 {
                    return Err(invalid(
                        "a wildcard needs at least two labels after it (`*.example.test`); browsers reject `*.test`",
                    ));
                }
                continue;
            }
            if label.is_empty() {
                return Err(invalid("it has an empty label (`..` or a leading dot)"));
            }
            if label.len() > 63 {
                return Err(invalid("a label is longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(invalid(
                    "only letters, digits, `-` and `.` are allowed (punycode `xn--` for non-ASCII)",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a label cannot start or end with `-`"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                "it looks like an IP address but is not a valid one",
            ));
        }
        Ok(Self::Dns(dns))
    }

    /// Whether a certificate SAN `san` (as found in a certificate) covers this name exactly.
    /// Wildcards are compared literally: a `*.example.test` request is covered by the same
    /// wildcard only, which is what reuse needs.
    pub(crate) fn matches_san(&self, san: &Self) -> bool {
        self == san
    }
}

/// Parses every name into a SAN; rejects an empty list and bad names.
fn parse_names(names: &[String]) -> Result<Vec<SanType>> {
    if names.is_empty() {
        return Err(Error::NoNames);
    }
    let mut sans = Vec::with_capacity(names.len());
    for raw in names {
        let san = match Name::parse(raw)? {
            Name::Ip(ip) => SanType::IpAddress(ip),
            Name::Dns(dns) => {
                SanType::DnsName(dns.clone().try_into().map_err(|_| Error::InvalidName {
                    name: raw.clone(),
                    reason: "not an IA5 string".to_owned(),
                })?)
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// A leaf certificate with its key, ready for [`server_config`](crate::server_config).
pub struct Leaf {
    /// The chain to present: the leaf first, then the CA that signed it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// The leaf certificate as PEM.
    pub cert_pem: String,
    /// The private key as PEM (PKCS#8).
    pub key_pem: String,
    /// Where the certificate is stored, if it is.
    pub cert_path: Option<PathBuf>,
    /// Where the key is stored, if it is.
    pub key_path: Option<PathBuf>,
}

impl Clone for Leaf {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
        }
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("chain_len", &self.chain.len())
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The leaf certificate itself (first in the chain).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The leaf plus the chain as one PEM text (leaf first), for servers that want a full chain
    /// file.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }
}

/// PEM-encodes `der` with the given label (RFC 7468), 64 columns.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            Name::parse("LocalHost.").unwrap(),
            Name::Dns("localhost".into())
        );
        assert_eq!(
            Name::parse("::1").unwrap(),
            Name::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Name::parse("[::1]").unwrap(),
            Name::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            Name::parse("*.example.test").unwrap(),
            Name::Dns("*.example.test".into())
        );
        for bad in [
            "",
            "  ",
            "*.test",
            "a.*.test",
            "foo..bar",
            "-a.test",
            "a_b.test",
            "1.2.3.999",
            "http://x",
            "host:80",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn pem_roundtrip() {
        use rustls::pki_types::pem::PemObject as _;
        for len in 1..10 {
            let der: Vec<u8> = (0..len).map(|i: u8| i.wrapping_mul(37)).collect();
            let pem = pem_encode("CERTIFICATE", &der);
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), der.as_slice());
        }
    }
}
