//! Link, network and transport headers of captured packets: Ethernet (with 802.1Q tags),
//! Linux cooked capture, BSD loopback and raw IP link types; IPv4 and IPv6; TCP.
//!
//! [`decode_tcp`] turns one captured frame into a [`TcpSegment`] — addresses, ports, sequence
//! numbers, flags and the payload slice — or says why it is not one. IP fragments, IPv6
//! extension headers other than the common ones, and non-TCP traffic are reported as
//! [`NetError::NotTcp`]-style errors so a dissector can count and skip them. IPv4 and TCP
//! checksums are not verified: loopback captures carry offloaded (unfilled) checksums.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::pcapng::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW};

/// Link type: BSD loopback (4-byte address family in host order), used by macOS `lo0`.
pub const LINKTYPE_NULL: u16 = 0;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IP_PROTO_TCP: u8 = 6;

/// Why a captured frame is not a TCP segment we can decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NetError {
    /// A link type this decoder does not know.
    #[error("unsupported link type {0}")]
    LinkType(u16),
    /// Shorter than the headers it claims.
    #[error("truncated {0} header")]
    Truncated(&'static str),
    /// Not IPv4 or IPv6 (ARP, LLDP ...).
    #[error("not IP (ethertype {0:#06x})")]
    NotIp(u16),
    /// IP, but another transport (UDP, ICMP ...) or an extension header we do not walk.
    #[error("not TCP (IP protocol {0})")]
    NotTcp(u8),
    /// A fragment of a larger IPv4 datagram; reassembly is not done here.
    #[error("IPv4 fragment")]
    Fragment,
    /// A header field with an impossible value (IHL < 5, data offset < 5, version mismatch).
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// TCP flags (RFC 9293 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN: the sender has finished sending.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// PSH: push.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment field is significant.
    pub const ACK: u8 = 0x10;

    /// Whether every bit of `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

/// A decoded TCP segment and the IP header fields a dissector needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Advertised window (unscaled).
    pub window: u16,
    /// Bytes of link-layer header, so byte accounting can split the layers.
    pub link_header_len: usize,
    /// Bytes of IP header (IPv4 options and IPv6 extension headers included).
    pub ip_header_len: usize,
    /// Bytes of TCP header (options included).
    pub tcp_header_len: usize,
    /// The payload, bounded by the IP length (Ethernet padding excluded).
    pub payload: &'a [u8],
}

/// Decodes a captured frame of `link_type` as IP carrying TCP.
pub fn decode_tcp(link_type: u16, frame: &[u8]) -> Result<TcpSegment<'_>, NetError> {
    let (ethertype, link_header_len) = link_header(link_type, frame)?;
    let ip = frame
        .get(link_header_len..)
        .ok_or(NetError::Truncated("link"))?;
    let (src, dst, ip_header_len, transport) = match ethertype {
        ETHERTYPE_IPV4 => ipv4(ip)?,
        ETHERTYPE_IPV6 => ipv6(ip)?,
        other => return Err(NetError::NotIp(other)),
    };
    let t = transport;
    if t.len() < 20 {
        return Err(NetError::Truncated("TCP"));
    }
    let tcp_header_len = usize::from(t[12] >> 4) * 4;
    if tcp_header_len < 20 {
        return Err(NetError::Malformed("TCP data offset"));
    }
    let payload = t
        .get(tcp_header_len..)
        .ok_or(NetError::Truncated("TCP options"))?;
    Ok(TcpSegment {
        src,
        dst,
        src_port: be16(t, 0),
        dst_port: be16(t, 2),
        seq: be32(t, 4),
        ack: be32(t, 8),
        flags: TcpFlags(t[13]),
        window: be16(t, 14),
        link_header_len,
        ip_header_len,
        tcp_header_len,
        payload,
    })
}

/// The ethertype (or its equivalent) of the frame and the link header's length.
fn link_header(link_type: u16, frame: &[u8]) -> Result<(u16, usize), NetError> {
    match link_type {
        LINKTYPE_ETHERNET => {
            if frame.len() < 14 {
                return Err(NetError::Truncated("Ethernet"));
            }
            let mut ethertype = be16(frame, 12);
            let mut len = 14;
            // 802.1Q (and stacked 802.1ad-style) tags: 4 bytes each, ethertype after them.
            while ethertype == ETHERTYPE_VLAN || ethertype == 0x88A8 {
                if frame.len() < len + 4 {
                    return Err(NetError::Truncated("VLAN tag"));
                }
                ethertype = be16(frame, len + 2);
                len += 4;
            }
            Ok((ethertype, len))
        }
        LINKTYPE_LINUX_SLL => {
            if frame.len() < 16 {
                return Err(NetError::Truncated("Linux cooked"));
            }
            Ok((be16(frame, 14), 16))
        }
        LINKTYPE_RAW => match frame.first().map(|b| b >> 4) {
            Some(4) => Ok((ETHERTYPE_IPV4, 0)),
            Some(6) => Ok((ETHERTYPE_IPV6, 0)),
            Some(_) => Err(NetError::Malformed("IP version")),
            None => Err(NetError::Truncated("IP")),
        },
        LINKTYPE_NULL => {
            let family = frame.get(..4).ok_or(NetError::Truncated("loopback"))?;
            // Host byte order of the capturing machine; AF_INET is 2 everywhere, AF_INET6
            // varies (10 Linux, 24 NetBSD, 28 FreeBSD, 30 macOS).
            let family = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let family = if family > 0xFFFF {
                family.swap_bytes()
            } else {
                family
            };
            match family {
                2 => Ok((ETHERTYPE_IPV4, 4)),
                10 | 24 | 28 | 30 => Ok((ETHERTYPE_IPV6, 4)),
                other => Err(NetError::NotIp(u16::try_from(other).unwrap_or(u16::MAX))),
            }
        }
        other => Err(NetError::LinkType(other)),
    }
}

fn ipv4(ip: &[u8]) -> Result<(IpAddr, IpAddr, usize, &[u8]), NetError> {
    if ip.len() < 20 {
        return Err(NetError::Truncated("IPv4"));
    }
    if ip[0] >> 4 != 4 {
        return Err(NetError::Malformed("IPv4 version"));
    }
    let header_len = usize::from(ip[0] & 0x0F) * 4;
    if header_len < 20 {
        return Err(NetError::Malformed("IPv4 header length"));
    }
    let flags_fragment = be16(ip, 6);
    // More-fragments set, or a non-zero offset: part of a larger datagram.
    if flags_fragment & 0x2000 != 0 || flags_fragment & 0x1FFF != 0 {
        return Err(NetError::Fragment);
    }
    if ip[9] != IP_PROTO_TCP {
        return Err(NetError::NotTcp(ip[9]));
    }
    // Total length 0 appears with TSO on some captures; fall back to what was captured.
    let total = match usize::from(be16(ip, 2)) {
        0 => ip.len(),
        n => n.min(ip.len()),
    };
    let transport = ip
        .get(header_len..total)
        .ok_or(NetError::Truncated("IPv4 options"))?;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    Ok((src.into(), dst.into(), header_len, transport))
}

fn ipv6(ip: &[u8]) -> Result<(IpAddr, IpAddr, usize, &[u8]), NetError> {
    if ip.len() < 40 {
        return Err(NetError::Truncated("IPv6"));
    }
    if ip[0] >> 4 != 6 {
        return Err(NetError::Malformed("IPv6 version"));
    }
    let payload_len = usize::from(be16(ip, 4));
    let end = (40 + payload_len).min(ip.len());
    let mut next = ip[6];
    let mut at = 40;
    // Walk hop-by-hop (0), routing (43) and destination options (60) headers; stop at TCP.
    while matches!(next, 0 | 43 | 60) {
        let ext = ip
            .get(at..at + 2)
            .ok_or(NetError::Truncated("IPv6 extension"))?;
        next = ext[0];
        at += (usize::from(ext[1]) + 1) * 8;
    }
    if next != IP_PROTO_TCP {
        return Err(NetError::NotTcp(next));
    }
    let transport = ip
        .get(at..end)
        .ok_or(NetError::Truncated("IPv6 extension"))?;
    let addr = |o: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[o..o + 16]);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Ok((addr(8), addr(24), at, transport))
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp(payload: &[u8], frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (40 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1]);
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0x0b, 0xba, 0, 0, 0, 5, 0, 0, 0, 9, 0x50, 0x18, 0x01, 0x00, 0, 0, 0, 0,
        ]);
        f.extend_from_slice(payload);
        f.extend_from_slice(&[0xEE; 6]); // Ethernet padding must not leak into the payload
        f
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let frame = ipv4_tcp(b"hello", 0x4000);
        let s = decode_tcp(LINKTYPE_ETHERNET, &frame).unwrap();
        assert_eq!((s.src_port, s.dst_port, s.seq, s.ack), (40000, 3002, 5, 9));
        assert_eq!(s.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(s.flags.has(TcpFlags::ACK | TcpFlags::PSH) && !s.flags.has(TcpFlags::SYN));
        assert_eq!(s.payload, b"hello");
        assert_eq!(
            (s.link_header_len, s.ip_header_len, s.tcp_header_len),
            (14, 20, 20)
        );
    }

    #[test]
    fn fragments_and_other_protocols_are_named() {
        assert_eq!(
            decode_tcp(LINKTYPE_ETHERNET, &ipv4_tcp(b"x", 0x2000)),
            Err(NetError::Fragment)
        );
        let mut udp = ipv4_tcp(b"x", 0);
        udp[14 + 9] = 17;
        assert_eq!(
            decode_tcp(LINKTYPE_ETHERNET, &udp),
            Err(NetError::NotTcp(17))
        );
        let mut arp = ipv4_tcp(b"x", 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            decode_tcp(LINKTYPE_ETHERNET, &arp),
            Err(NetError::NotIp(0x0806))
        );
        assert_eq!(decode_tcp(999, &arp), Err(NetError::LinkType(999)));
    }

    #[test]
    fn raw_ipv6_with_a_destination_options_header() {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(8u16 + 20 + 2).to_be_bytes());
        p.extend_from_slice(&[60, 64]);
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&[
            0x0b, 0xbb, 0x9c, 0x41, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        p.extend_from_slice(b"hi");
        let s = decode_tcp(LINKTYPE_RAW, &p).unwrap();
        assert_eq!(
            (s.src_port, s.ip_header_len, s.payload),
            (3003, 48, &b"hi"[..])
        );
        assert!(s.flags.has(TcpFlags::SYN));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let frame = ipv4_tcp(b"hello", 0);
        for end in 0..54 {
            assert!(
                decode_tcp(LINKTYPE_ETHERNET, &frame[..end]).is_err(),
                "prefix {end}"
            );
        }
        for link in [LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_NULL] {
            for end in 0..frame.len() {
                let _ = decode_tcp(link, &frame[..end]);
            }
        }
    }
}
