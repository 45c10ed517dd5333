//! TLS on the wire (RFC 8446, RFC 5246): record headers, and the hello messages' fields a
//! dissector shows — SNI, ALPN and offered versions from the ClientHello; the chosen version
//! and cipher suite from the ServerHello.
//!
//! [`decode_record`] splits a byte stream into records; [`parse_client_hello`] and
//! [`parse_server_hello`] read the plaintext handshake message at the start of a handshake
//! record's payload. [`keylog::KeyLog`] reads NSS key logs, and [`decrypt::Decryptor`] opens
//! TLS 1.2 and 1.3 AEAD records with their secrets.

use thiserror::Error;

pub mod decrypt;
pub mod keylog;

/// Record content types (RFC 8446 §5.1).
pub mod content_type {
    /// change_cipher_spec (20).
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    /// alert (21).
    pub const ALERT: u8 = 21;
    /// handshake (22).
    pub const HANDSHAKE: u8 = 22;
    /// application_data (23).
    pub const APPLICATION_DATA: u8 = 23;
}

/// Largest record fragment: 2^14 plus the most expansion TLS 1.2 allows (RFC 5246 §6.2.3).
pub const MAX_FRAGMENT: usize = (1 << 14) + 2048;

/// Bytes that are not TLS, or a hello that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A content type outside 20–24, or a version byte other than 3: not TLS.
    #[error("not a TLS record (type {content_type}, version {version:#06x})")]
    NotTls {
        /// The first byte.
        content_type: u8,
        /// The version field.
        version: u16,
    },
    /// A record longer than [`MAX_FRAGMENT`].
    #[error("TLS record of {0} bytes exceeds the maximum")]
    RecordTooLarge(usize),
    /// The handshake message is not the expected hello.
    #[error("expected a {0}")]
    WrongMessage(&'static str),
    /// A length field pointing past its container.
    #[error("truncated {0}")]
    Truncated(&'static str),
}

/// One record's header and fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Content type (see [`content_type`]).
    pub content_type: u8,
    /// Legacy record version (0x0301 in a first ClientHello, 0x0303 after).
    pub version: u16,
    /// The fragment (encrypted, for application data).
    pub fragment: &'a [u8],
}

/// Decodes the record at the start of `buf`: `Ok(None)` until it is complete.
pub fn decode_record(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, TlsError> {
    if buf.len() < 5 {
        // Reject non-TLS early on whatever is there, so a dissector can fall back to HTTP.
        if let (Some(&t), Some(&major)) = (buf.first(), buf.get(1)) {
            if !(20..=24).contains(&t) || major != 3 {
                return Err(TlsError::NotTls {
                    content_type: t,
                    version: u16::from(major) << 8,
                });
            }
        }
        return Ok(None);
    }
    let content_type = buf[0];
    let version = u16::from_be_bytes([buf[1], buf[2]]);
    if !(20..=24).contains(&content_type) || buf[1] != 3 {
        return Err(TlsError::NotTls {
            content_type,
            version,
        });
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_FRAGMENT {
        return Err(TlsError::RecordTooLarge(len));
    }
    let Some(fragment) = buf.get(5..5 + len) else {
        return Ok(None);
    };
    Ok(Some((
        Record {
            content_type,
            version,
            fragment,
        },
        5 + len,
    )))
}

/// What a ClientHello offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// `legacy_version` (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The client random: the key a key log files this connection's secrets under.
    pub random: [u8; 32],
    /// server_name (SNI), if sent.
    pub server_name: Option<String>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<String>,
    /// supported_versions, in order (e.g. 0x0304 for TLS 1.3); empty if absent.
    pub supported_versions: Vec<u16>,
    /// Cipher suites offered, in order.
    pub cipher_suites: Vec<u16>,
}

/// What a ServerHello chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    /// The negotiated version: supported_versions if present (TLS 1.3), else `legacy_version`.
    pub version: u16,
    /// The chosen cipher suite.
    pub cipher_suite: u16,
    /// Whether this is a HelloRetryRequest (RFC 8446 §4.1.3), not a real ServerHello.
    pub hello_retry_request: bool,
    /// The server random (TLS 1.2 key expansion mixes it in).
    pub random: [u8; 32],
}

/// The special random of a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// A bounds-checked reader over a handshake message.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        if self.buf.len() < n {
            return Err(TlsError::Truncated(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, TlsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TlsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], TlsError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], TlsError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// The body of the handshake message of `msg_type` at the start of `fragment`.
fn handshake_body<'a>(
    fragment: &'a [u8],
    msg_type: u8,
    name: &'static str,
) -> Result<&'a [u8], TlsError> {
    let mut c = Cursor {
        buf: fragment,
        what: name,
    };
    if c.u8()? != msg_type {
        return Err(TlsError::WrongMessage(name));
    }
    let len = c.take(3)?;
    let len = (usize::from(len[0]) << 16) | (usize::from(len[1]) << 8) | usize::from(len[2]);
    c.take(len)
}

/// Iterates `(type, data)` over an extensions block.
fn extensions(mut c: Cursor<'_>) -> Result<Vec<(u16, &[u8])>, TlsError> {
    let mut out = Vec::new();
    while !c.buf.is_empty() {
        let kind = c.u16()?;
        let data = c.vec16()?;
        out.push((kind, data));
    }
    Ok(out)
}

/// Parses the ClientHello at the start of a handshake record's fragment (RFC 8446 §4.1.2).
/// A hello split across records must be joined by the caller first.
pub fn parse_client_hello(fragment: &[u8]) -> Result<ClientHello, TlsError> {
    let body = handshake_body(fragment, 1, "ClientHello")?;
    let mut c = Cursor {
        buf: body,
        what: "ClientHello",
    };
    let mut hello = ClientHello {
        legacy_version: c.u16()?,
        ..ClientHello::default()
    };
    hello.random.copy_from_slice(c.take(32)?);
    c.vec8()?; // legacy_session_id
    let suites = c.vec16()?;
    hello.cipher_suites = suites
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    c.vec8()?; // legacy_compression_methods
    if c.buf.is_empty() {
        return Ok(hello); // no extensions (pre-TLS 1.2 style)
    }
    let exts = Cursor {
        buf: c.vec16()?,
        what: "ClientHello extensions",
    };
    for (kind, data) in extensions(exts)? {
        let mut d = Cursor {
            buf: data,
            what: "ClientHello extension",
        };
        match kind {
            0 => {
                // server_name_list: (name_type u8, HostName vec16)*; type 0 is host_name.
                let mut list = Cursor {
                    buf: d.vec16()?,
                    what: "server_name",
                };
                while !list.buf.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 && hello.server_name.is_none() {
                        hello.server_name = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            16 => {
                let mut list = Cursor {
                    buf: d.vec16()?,
                    what: "ALPN",
                };
                while !list.buf.is_empty() {
                    hello
                        .alpn
                        .push(String::from_utf8_lossy(list.vec8()?).into_owned());
                }
            }
            43 => {
                let versions = d.vec8()?;
                hello.supported_versions = versions
                    .chunks_exact(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// Parses the ServerHello at the start of a handshake record's fragment (RFC 8446 §4.1.3).
pub fn parse_server_hello(fragment: &[u8]) -> Result<ServerHello, TlsError> {
    let body = handshake_body(fragment, 2, "ServerHello")?;
    let mut c = Cursor {
        buf: body,
        what: "ServerHello",
    };
    let legacy_version = c.u16()?;
    let random = c.take(32)?;
    c.vec8()?; // legacy_session_id_echo
    let cipher_suite = c.u16()?;
    c.u8()?; // legacy_compression_method
    let mut version = legacy_version;
    if !c.buf.is_empty() {
        let exts = Cursor {
            buf: c.vec16()?,
            what: "ServerHello extensions",
        };
        for (kind, data) in extensions(exts)? {
            if kind == 43 {
                let mut d = Cursor {
                    buf: data,
                    what: "supported_versions",
                };
                version = d.u16()?;
            }
        }
    }
    let mut server_random = [0; 32];
    server_random.copy_from_slice(random);
    Ok(ServerHello {
        version,
        cipher_suite,
        hello_retry_request: random == HRR_RANDOM,
        random: server_random,
    })
}

/// A readable name for a protocol version (`TLS 1.3`), or its hex value.
pub fn version_name(version: u16) -> String {
    match version {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("{v:#06x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_hello() -> Vec<u8> {
        let mut exts = Vec::new();
        let sni = b"localhost";
        let mut list = vec![0u8];
        list.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        list.extend_from_slice(sni);
        let mut ext = (list.len() as u16).to_be_bytes().to_vec();
        ext.extend_from_slice(&list);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        exts.extend_from_slice(&ext);
        let alpn = [0u8, 9, 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'];
        exts.extend_from_slice(&16u16.to_be_bytes());
        exts.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
        exts.extend_from_slice(&alpn);
        exts.extend_from_slice(&[0, 43, 0, 5, 4, 3, 4, 3, 3]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut msg = vec![1, 0, 0, 0];
        msg[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        record.extend_from_slice(&msg);
        record
    }

    #[test]
    fn client_hello_fields() {
        let bytes = client_hello();
        let (record, used) = decode_record(&bytes).unwrap().unwrap();
        assert_eq!(
            (record.content_type, record.version, used),
            (22, 0x0301, bytes.len())
        );
        let hello = parse_client_hello(record.fragment).unwrap();
        assert_eq!(hello.server_name.as_deref(), Some("localhost"));
        assert_eq!(hello.alpn, ["http/1.1"]);
        assert_eq!(hello.supported_versions, [0x0304, 0x0303]);
        assert_eq!(hello.cipher_suites, [0x1301, 0x1302]);
        assert_eq!(hello.random, [7; 32]);
        assert!(parse_server_hello(record.fragment).is_err());
    }

    #[test]
    fn partial_records_wait_and_garbage_is_not_tls() {
        let bytes = client_hello();
        for end in 0..bytes.len() {
            assert_eq!(decode_record(&bytes[..end]), Ok(None), "prefix {end}");
        }
        assert!(matches!(
            decode_record(b"GET / HTTP/1.1\r\n"),
            Err(TlsError::NotTls { .. })
        ));
        assert!(matches!(decode_record(b"G"), Ok(None)));
        assert!(matches!(decode_record(b"GE"), Err(TlsError::NotTls { .. })));
        assert!(matches!(
            decode_record(&[23, 3, 3, 0xFF, 0xFF]),
            Err(TlsError::RecordTooLarge(_))
        ));
    }

    #[test]
    fn truncated_hellos_are_errors_not_panics() {
        let bytes = client_hello();
        let fragment = &bytes[5..];
        for end in 0..fragment.len() {
            assert!(
                parse_client_hello(&fragment[..end]).is_err(),
                "prefix {end}"
            );
            let _ = parse_server_hello(&fragment[..end]);
        }
    }
}
