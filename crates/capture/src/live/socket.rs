//! The AF_PACKET socket, through safe wrappers only: `socket2` creates it and attaches the
//! BPF filter, `nix` receives with the link-layer address (interface, packet type) and the
//! kernel's nanosecond timestamp and drop counter as control messages.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, LinkAddr, MsgFlags};
use nix::sys::time::TimeSpec;
use protolab_wire::pcapng::{LINKTYPE_ETHERNET, LINKTYPE_RAW};
use socket2::{Domain, Protocol, Socket, Type};

use super::{bpf, CaptureError};

/// `ETH_P_ALL`: every protocol, as the socket's protocol in network byte order.
const ETH_P_ALL: u16 = 0x0003;
/// ARP hardware types (linux/if_arp.h) we capture on.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_NONE: u16 = 0xFFFE;
const ARPHRD_PPP: u16 = 512;

/// An interface found by name.
#[derive(Debug, Clone)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) index: u32,
    pub(crate) link_type: u16,
    pub(crate) loopback: bool,
}

/// The interfaces of this machine, by name, in index order.
pub(crate) fn interface_names() -> Vec<String> {
    let Ok(list) = nix::net::if_::if_nameindex() else {
        return Vec::new();
    };
    list.iter()
        .map(|i| i.name().to_string_lossy().into_owned())
        .collect()
}

/// Looks `name` up; an unknown name lists the ones that exist.
pub(crate) fn find_interface(name: &str) -> Result<Interface, CaptureError> {
    let unknown = || CaptureError::UnknownInterface {
        name: name.to_string(),
        available: interface_names(),
    };
    let list = nix::net::if_::if_nameindex().map_err(|e| CaptureError::Socket {
        what: "listing network interfaces",
        source: e.into(),
    })?;
    let found = list
        .iter()
        .find(|i| i.name().to_bytes() == name.as_bytes())
        .ok_or_else(unknown)?;
    let index = found.index();
    // The ARP hardware type says which link header frames carry. Read from sysfs, which
    // needs no privilege; if it is unreadable, Ethernet is by far the likeliest.
    let arp_type = std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .unwrap_or(ARPHRD_ETHER);
    let link_type = match arp_type {
        // lo has Ethernet headers with zero addresses.
        ARPHRD_ETHER | ARPHRD_LOOPBACK => LINKTYPE_ETHERNET,
        // tun, WireGuard, PPP: bare IP packets.
        ARPHRD_NONE | ARPHRD_PPP => LINKTYPE_RAW,
        other => {
            return Err(CaptureError::UnsupportedInterface {
                name: name.to_string(),
                arp_type: other,
            })
        }
    };
    Ok(Interface {
        name: name.to_string(),
        index,
        link_type,
        loopback: arp_type == ARPHRD_LOOPBACK,
    })
}

/// Opens the raw socket with the filter attached, nanosecond timestamps and the drop
/// counter turned on, and a receive buffer of `buffer_bytes`.
pub(crate) fn open(
    iface: &Interface,
    ports: &[u16],
    buffer_bytes: usize,
) -> Result<Socket, CaptureError> {
    let protocol = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::RAW, Some(protocol)).map_err(|e| {
        if matches!(
            e.raw_os_error(),
            Some(code) if code == nix::libc::EPERM || code == nix::libc::EACCES
        ) {
            CaptureError::NoPermission
        } else {
            CaptureError::Socket {
                what: "opening an AF_PACKET socket",
                source: e,
            }
        }
    })?;
    let program = bpf::program(iface.index, iface.loopback, ports);
    socket
        .attach_filter(&bpf::to_sock_filters(&program))
        .map_err(|e| CaptureError::Socket {
            what: "attaching the port filter",
            source: e,
        })?;
    let sockopt_error = |what| {
        move |e: nix::Error| CaptureError::Socket {
            what,
            source: e.into(),
        }
    };
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
        .map_err(sockopt_error("asking for nanosecond timestamps"))?;
    setsockopt(&socket, sockopt::RxqOvfl, &1).map_err(sockopt_error("asking for drop counts"))?;
    // SO_RCVBUF: the kernel caps this at net.core.rmem_max, root included (only
    // SO_RCVBUFFORCE, with CAP_NET_ADMIN, goes past it, and capturing needs nothing but
    // CAP_NET_RAW). A smaller buffer only means drops sooner under a burst, which the drop
    // counter reports.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    Ok(socket)
}

/// One received packet's metadata; its bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Length on the wire (more than the buffer when the snap length cut it).
    pub(crate) len: usize,
    pub(crate) ifindex: usize,
    pub(crate) pkttype: u8,
    pub(crate) timestamp_ns: Option<u64>,
    /// The socket's cumulative drop counter, when the kernel reported it.
    pub(crate) drops: Option<u32>,
}

/// Receives one packet without blocking; `Ok(None)` when none is queued.
pub(crate) fn receive(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> Result<Option<Received>, nix::Error> {
    let mut iov = [IoSliceMut::new(buf)];
    // MSG_TRUNC: return the packet's real length even when the buffer is shorter.
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    let msg = match recvmsg::<LinkAddr>(socket.as_raw_fd(), &mut iov, Some(cmsg), flags) {
        Ok(msg) => msg,
        Err(nix::Error::EAGAIN | nix::Error::EINTR) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut received = Received {
        len: msg.bytes,
        ifindex: msg.address.map_or(0, |a| a.ifindex()),
        pkttype: msg.address.map_or(0, |a| a.pkttype()),
        timestamp_ns: None,
        drops: None,
    };
    // A truncated control buffer only loses the timestamp or drop count, not the packet.
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmTimestampns(ts) => received.timestamp_ns = Some(nanos(ts)),
                ControlMessageOwned::RxqOvfl(n) => received.drops = Some(n),
                _ => {}
            }
        }
    }
    Ok(Some(received))
}

fn nanos(ts: TimeSpec) -> u64 {
    let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
    let nsec = u64::try_from(ts.tv_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Space for the control messages [`receive`] asks for.
pub(crate) fn cmsg_space() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec, u32)
}

/// The socket as a borrowed descriptor, for `poll`.
pub(crate) fn fd(socket: &Socket) -> BorrowedFd<'_> {
    socket.as_fd()
}
