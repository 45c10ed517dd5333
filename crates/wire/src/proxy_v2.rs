//! The PROXY protocol, version 2 (HAProxy's `proxy-protocol.txt`, §2.2): the binary header a
//! proxy sends first on a backend connection so the backend learns the client's address.
//!
//! ```text
//! 12 bytes signature \r\n\r\n\0\r\nQUIT\n
//!  1 byte  version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//!  1 byte  family (high nibble: 1 INET, 2 INET6) | transport (low nibble: 1 STREAM)
//!  2 bytes length of what follows, big-endian
//!  addresses: src, dst, src port, dst port (12 bytes for INET, 36 for INET6), then TLVs
//! ```

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Largest header accepted by [`decode`]: 16 fixed bytes plus a length field of at most this
/// much. The spec allows 65535; real headers with a few TLVs stay far below 1 KiB, and a
/// bound keeps a receiver from buffering 64 KiB on a stranger's say-so.
pub const MAX_PAYLOAD: usize = 2048;

/// What a decoded header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `PROXY` over TCP: the client's address and the address it connected to.
    Proxy {
        /// The client (source) address.
        src: SocketAddr,
        /// The address the client connected to (the proxy's listener).
        dst: SocketAddr,
    },
    /// `LOCAL` (e.g. a health check from the proxy itself), or a family/transport this decoder
    /// does not report (UNIX sockets, UDP): the receiver uses the real connection's addresses.
    Local,
}

/// Why bytes are not a PROXY v2 header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The first 12 bytes are not the signature.
    #[error("not a PROXY protocol v2 header (bad signature)")]
    Signature,
    /// Version nibble other than 2, or a command other than LOCAL/PROXY.
    #[error("unsupported PROXY protocol version or command byte {0:#04x}")]
    Version(u8),
    /// The length field is larger than [`MAX_PAYLOAD`].
    #[error("PROXY v2 header announces {0} bytes, more than the {MAX_PAYLOAD} accepted")]
    TooLarge(usize),
    /// The length field is too short for the announced address family.
    #[error("PROXY v2 header too short for its address family")]
    Truncated,
}

/// Appends a `PROXY` header for a TCP connection from `src` to `dst`. Mixed families are sent
/// as IPv6 (IPv4 mapped), as HAProxy does.
pub fn encode(out: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) {
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Decodes a v2 header at the start of `buf`. `Ok(None)`: more bytes needed (never more than
/// 16 + [`MAX_PAYLOAD`] in all); `Ok(Some((header, consumed)))` otherwise, TLVs skipped.
pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let sig_len = buf.len().min(SIGNATURE.len());
    if buf[..sig_len] != SIGNATURE[..sig_len] {
        return Err(Error::Signature);
    }
    let Some(&[ver_cmd, fam, l0, l1]) = buf.get(12..16) else {
        return Ok(None);
    };
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0F > 1 {
        return Err(Error::Version(ver_cmd));
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len > MAX_PAYLOAD {
        return Err(Error::TooLarge(len));
    }
    let Some(payload) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let consumed = 16 + len;
    if ver_cmd & 0x0F == 0 {
        return Ok(Some((Header::Local, consumed)));
    }
    let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
    let header = match fam {
        0x11 => {
            let a: [u8; 12] = payload
                .get(..12)
                .and_then(|s| s.try_into().ok())
                .ok_or(Error::Truncated)?;
            let ip = |at: usize| IpAddr::from([a[at], a[at + 1], a[at + 2], a[at + 3]]);
            Header::Proxy {
                src: SocketAddr::new(ip(0), port(8)),
                dst: SocketAddr::new(ip(4), port(10)),
            }
        }
        0x21 => {
            let a: [u8; 36] = payload
                .get(..36)
                .and_then(|s| s.try_into().ok())
                .ok_or(Error::Truncated)?;
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&a[at..at + 16]);
                IpAddr::from(o)
            };
            Header::Proxy {
                src: SocketAddr::new(ip(0), port(32)),
                dst: SocketAddr::new(ip(16), port(34)),
            }
        }
        _ => Header::Local,
    };
    Ok(Some((header, consumed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6_and_waits_for_more() {
        let cases: [(SocketAddr, SocketAddr); 2] = [
            (
                "192.0.2.1:5000".parse().unwrap(),
                "127.0.0.1:8443".parse().unwrap(),
            ),
            (
                "[2001:db8::1]:5000".parse().unwrap(),
                "[::1]:80".parse().unwrap(),
            ),
        ];
        for (src, dst) in cases {
            let mut out = Vec::new();
            encode(&mut out, src, dst);
            for cut in 0..out.len() {
                assert_eq!(decode(&out[..cut]), Ok(None), "cut at {cut}");
            }
            out.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let (h, n) = decode(&out).unwrap().unwrap();
            assert_eq!(h, Header::Proxy { src, dst });
            assert_eq!(&out[n..n + 3], b"GET");
        }
    }

    #[test]
    fn mixed_families_go_as_mapped_v6() {
        let mut out = Vec::new();
        let src: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let dst: SocketAddr = "[::1]:2".parse().unwrap();
        encode(&mut out, src, dst);
        assert_eq!(out[13], 0x21);
        let Header::Proxy { src: got, .. } = decode(&out).unwrap().unwrap().0 else {
            panic!("not PROXY");
        };
        assert_eq!(got.ip(), IpAddr::V6("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn rejects_what_is_not_a_header() {
        assert_eq!(decode(b"GET / HTTP/1.1"), Err(Error::Signature));
        let mut bad = SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert_eq!(decode(&bad), Err(Error::Version(0x31)));
        let mut big = SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(decode(&big), Err(Error::TooLarge(0xffff)));
        let mut short = SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(decode(&short), Err(Error::Truncated));
    }
}
