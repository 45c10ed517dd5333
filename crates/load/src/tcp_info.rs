//! TCP counters of the load generator's own sockets: segments each way, retransmissions,
//! whether TCP timestamps are on. They are the kernel's `struct tcp_info` (what
//! `getsockopt(TCP_INFO)` returns), fetched over `NETLINK_SOCK_DIAG` (inet_diag with
//! `INET_DIAG_INFO`) by the socket's addresses, because that needs no unsafe code here.
//!
//! A lookup is one netlink request and answer on a socket kept per thread (a few
//! microseconds); callers sample a connection when it opened and before it closes, not per
//! message.

use std::cell::RefCell;
use std::net::SocketAddr;

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

/// What a capture would show of one socket so far, as the kernel counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Segments sent (SYN, data, pure ACKs, FIN; retransmissions included).
    pub segs_out: u64,
    /// Segments received.
    pub segs_in: u64,
    /// Payload bytes this side sent again (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Segments this side sent again (`tcpi_total_retrans`).
    pub total_retrans: u64,
    /// TCP timestamps were agreed: every segment's header carries 12 bytes of options.
    pub timestamps: bool,
}

impl TcpCounters {
    /// What changed between `earlier` and `self` (`timestamps` is `self`'s).
    #[must_use]
    pub fn since(self, earlier: Self) -> Self {
        Self {
            segs_out: self.segs_out.saturating_sub(earlier.segs_out),
            segs_in: self.segs_in.saturating_sub(earlier.segs_in),
            bytes_retrans: self.bytes_retrans.saturating_sub(earlier.bytes_retrans),
            total_retrans: self.total_retrans.saturating_sub(earlier.total_retrans),
            timestamps: self.timestamps,
        }
    }

    /// The sum of two counts (`timestamps` if either had them).
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            segs_out: self.segs_out + other.segs_out,
            segs_in: self.segs_in + other.segs_in,
            bytes_retrans: self.bytes_retrans + other.bytes_retrans,
            total_retrans: self.total_retrans + other.total_retrans,
            timestamps: self.timestamps || other.timestamps,
        }
    }

    /// Segments both ways.
    pub fn packets(self) -> u64 {
        self.segs_out + self.segs_in
    }
}

/// Link, IP and TCP header bytes of one data or ACK segment as a capture on loopback or a veth
/// shows it: Ethernet II (14), IPv4 (20) or IPv6 (40), TCP (20) plus timestamps (12) when on.
/// SYNs' longer options and SACK blocks under loss are not in it.
pub fn header_bytes_per_packet(ipv6: bool, timestamps: bool) -> u64 {
    14 + if ipv6 { 40 } else { 20 } + 20 + if timestamps { 12 } else { 0 }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const INET_DIAG_INFO: u16 = 2;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `sizeof(struct nlmsghdr)` and `sizeof(struct inet_diag_msg)`.
const NLMSG_HDR: usize = 16;
const INET_DIAG_MSG: usize = 72;
/// Offsets into `struct tcp_info` (include/uapi/linux/tcp.h), stable since each field came.
const TCPI_OPTIONS: usize = 5;
const TCPI_TOTAL_RETRANS: usize = 100;
const TCPI_SEGS_OUT: usize = 136;
const TCPI_SEGS_IN: usize = 140;
const TCPI_BYTES_RETRANS: usize = 208;
const TCPI_OPT_TIMESTAMPS: u8 = 1;

thread_local! {
    static DIAG: RefCell<Option<Socket>> = const { RefCell::new(None) };
}

/// The counters of the TCP socket bound to `local` and connected to `peer`, in this
/// process's network namespace; `None` if the kernel has no such socket (closed, in
/// TIME_WAIT) or no sock_diag.
pub fn read(local: SocketAddr, peer: SocketAddr) -> Option<TcpCounters> {
    let request = request(local, peer)?;
    DIAG.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
            socket.connect(&NetlinkAddr::new(0, 0)).ok()?;
            *slot = Some(socket);
        }
        let socket = slot.as_ref()?;
        let sent = socket.send(&request, 0);
        if sent.ok() != Some(request.len()) {
            // A socket in a bad state is rebuilt next time.
            *slot = None;
            return None;
        }
        let mut answer = Vec::with_capacity(2048);
        match socket.recv(&mut answer, 0) {
            Ok(_) => parse_answer(&answer),
            Err(_) => {
                *slot = None;
                None
            }
        }
    })
}

/// An exact-match `SOCK_DIAG_BY_FAMILY` request for the socket `local` → `peer`, asking for
/// its `tcp_info`; `None` when the two addresses are not of one family.
fn request(local: SocketAddr, peer: SocketAddr) -> Option<Vec<u8>> {
    let family = match (local, peer) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => AF_INET6,
        _ => return None,
    };
    let addr16 = |a: SocketAddr| -> [u8; 16] {
        let mut out = [0u8; 16];
        match a {
            SocketAddr::V4(v4) => out[..4].copy_from_slice(&v4.ip().octets()),
            SocketAddr::V6(v6) => out = v6.ip().octets(),
        }
        out
    };
    let len = NLMSG_HDR + 56;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.push(family);
    m.push(IPPROTO_TCP);
    m.push(1 << (INET_DIAG_INFO - 1));
    m.push(0);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&peer.port().to_be_bytes());
    m.extend_from_slice(&addr16(local));
    m.extend_from_slice(&addr16(peer));
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    debug_assert_eq!(m.len(), len);
    Some(m)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the `tcp_info` out of the kernel's answer: one `inet_diag_msg` and its attributes.
/// Anything short, an error message or a missing attribute is `None`. Counters the running
/// kernel does not have (older than 4.19 for `tcpi_bytes_retrans`) read as 0.
pub fn parse_answer(answer: &[u8]) -> Option<TcpCounters> {
    let total = usize::try_from(u32_at(answer, 0)?).ok()?;
    let message = answer.get(..total)?;
    if u16_at(message, 4)? == NLMSG_ERROR || u16_at(message, 4)? != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let mut at = NLMSG_HDR + INET_DIAG_MSG;
    while at + 4 <= message.len() {
        let len = usize::from(u16_at(message, at)?);
        let kind = u16_at(message, at + 2)?;
        if len < 4 {
            return None;
        }
        let data = message.get(at + 4..at + len)?;
        if kind == INET_DIAG_INFO {
            let u64_or_0 = |off| u64_at(data, off).unwrap_or(0);
            return Some(TcpCounters {
                segs_out: u64::from(u32_at(data, TCPI_SEGS_OUT)?),
                segs_in: u64::from(u32_at(data, TCPI_SEGS_IN)?),
                bytes_retrans: u64_or_0(TCPI_BYTES_RETRANS),
                total_retrans: u64::from(u32_at(data, TCPI_TOTAL_RETRANS)?),
                timestamps: data.get(TCPI_OPTIONS)? & TCPI_OPT_TIMESTAMPS != 0,
            });
        }
        at += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn counts_the_segments_of_a_real_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let before = read(local, peer).expect("sock_diag knows an open socket");
        // The handshake: our SYN and ACK out, the SYN-ACK in.
        assert_eq!((before.segs_out, before.segs_in), (2, 1), "{before:?}");
        client.set_nodelay(true).unwrap();
        for _ in 0..5 {
            client.write_all(&[7u8; 100]).unwrap();
            let mut got = [0u8; 100];
            server.read_exact(&mut got).unwrap();
            server.write_all(&got).unwrap();
            client.read_exact(&mut got).unwrap();
        }
        let after = read(local, peer).unwrap().since(before);
        assert!(after.segs_out >= 5 && after.segs_in >= 5, "{after:?}");
        assert_eq!(after.bytes_retrans, 0);
        assert!(read(local, "127.0.0.1:1".parse().unwrap()).is_none());
    }

    #[test]
    fn short_or_foreign_answers_are_none() {
        assert_eq!(parse_answer(&[]), None);
        assert_eq!(parse_answer(&[200, 0, 0, 0, 20, 0]), None);
        let mut error = vec![0u8; 36];
        error[..4].copy_from_slice(&36u32.to_ne_bytes());
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_answer(&error), None);
    }
}
