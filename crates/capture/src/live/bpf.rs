//! The classic BPF program attached to the capture socket, so the kernel hands us only the
//! packets we keep: everything else on the machine (other interfaces, other ports, the second
//! copy of every loopback packet) is dropped before it is copied to userspace, which keeps an
//! idle capture on a busy `lo` nearly free.
//!
//! Offsets are relative to the network header (`SKF_NET_OFF`) and the IP version comes from
//! the skb's protocol (`SKF_AD_PROTOCOL`), so one program serves every link type. The program
//! is only a pre-filter: the capture thread checks each packet again in userspace with
//! `protolab_wire::net::decode_tcp`, so a packet the kernel should have dropped never reaches
//! the file (e.g. one queued between `socket()` and attaching the filter).

use socket2::SockFilter;

// Instruction classes, sizes, modes and jump kinds (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;
const BPF_JEQ: u16 = 0x10;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;

/// Ancillary data: `SKF_AD_OFF` (-0x1000) plus the field.
const SKF_AD_PROTOCOL: u32 = 0xFFFF_F000;
const SKF_AD_PKTTYPE: u32 = 0xFFFF_F004;
const SKF_AD_IFINDEX: u32 = 0xFFFF_F008;
/// `SKF_NET_OFF` (-0x100000): loads relative to the network header.
const SKF_NET_OFF: u32 = 0xFFF0_0000;

/// What the program returns for a packet it keeps: "all of it".
pub(crate) const ACCEPT: u32 = u32::MAX;

/// `PACKET_OUTGOING`: a copy of a packet this host sent.
pub(crate) const PACKET_OUTGOING: u32 = 4;

/// Most ports one filter takes: jump offsets are 8 bits, and each port costs two
/// instructions (source and destination checks).
pub const MAX_PORTS: usize = 48;

/// Where a jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Accept,
    Drop,
    Label(usize),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Stmt(u16, u32),
    Jump(u16, u32, To, To),
    Label(usize),
}

const V4: usize = 0;
const V6: usize = 1;
const V6_EXT: usize = 2;

/// The program for one capture: packets on interface `ifindex`, without the outgoing copy
/// when `loopback`, TCP over IPv4 or IPv6 with one of `ports` on either side (any port when
/// empty). IPv6 packets with extension headers before TCP are passed
/// up for the userspace filter to walk.
/// `ports` must hold at most [`MAX_PORTS`] entries.
///
/// Accepted packets are passed whole ([`ACCEPT`]): a filter that returned the snap length
/// would have the kernel trim the packet before `recvmsg`, losing its original length. The
/// snap length is applied by the size of the receive buffer instead, with `MSG_TRUNC`
/// reporting the real length.
pub(crate) fn program(ifindex: u32, loopback: bool, ports: &[u16]) -> Vec<Insn> {
    use Op::{Jump, Label, Stmt};
    let ld = |size: u16, k: u32| Stmt(BPF_LD | size | BPF_ABS, k);
    let jeq = |k: u32, yes: To, no: To| Jump(BPF_JMP | BPF_JEQ | BPF_K, k, yes, no);
    let mut ops = vec![ld(BPF_W, SKF_AD_IFINDEX), jeq(ifindex, To::Next, To::Drop)];
    if loopback {
        // On lo every packet passes the tap twice, leaving and arriving: keep the arrival,
        // as tcpdump does.
        ops.extend([
            ld(BPF_W, SKF_AD_PKTTYPE),
            jeq(PACKET_OUTGOING, To::Drop, To::Next),
        ]);
    }
    ops.extend([
        ld(BPF_W, SKF_AD_PROTOCOL),
        jeq(0x0800, To::Label(V4), To::Next),
        jeq(0x86DD, To::Label(V6), To::Drop),
        // IPv4: TCP, first fragment only (later ones have no TCP header), header length in X.
        Label(V4),
        ld(BPF_B, SKF_NET_OFF + 9),
        jeq(6, To::Next, To::Drop),
        ld(BPF_H, SKF_NET_OFF + 6),
        Jump(BPF_JMP | BPF_JSET | BPF_K, 0x1FFF, To::Drop, To::Next),
        Stmt(BPF_LDX | BPF_B | BPF_MSH, SKF_NET_OFF),
        Stmt(BPF_LD | BPF_H | BPF_IND, SKF_NET_OFF),
    ]);
    port_checks(&mut ops, ports, To::Next);
    ops.push(Stmt(BPF_LD | BPF_H | BPF_IND, SKF_NET_OFF + 2));
    port_checks(&mut ops, ports, To::Drop);
    ops.extend([
        // IPv6: TCP right after the fixed 40-byte header.
        Label(V6),
        ld(BPF_B, SKF_NET_OFF + 6),
        jeq(6, To::Next, To::Label(V6_EXT)),
        ld(BPF_H, SKF_NET_OFF + 40),
    ]);
    port_checks(&mut ops, ports, To::Next);
    ops.push(ld(BPF_H, SKF_NET_OFF + 42));
    port_checks(&mut ops, ports, To::Drop);
    ops.extend([
        // Hop-by-hop, routing, fragment, destination options: let userspace walk them.
        Label(V6_EXT),
        jeq(0, To::Accept, To::Next),
        jeq(43, To::Accept, To::Next),
        jeq(44, To::Accept, To::Next),
        jeq(60, To::Accept, To::Drop),
    ]);
    assemble(&ops)
}

/// Accepts when A is one of `ports` (always when there are none), else goes to `miss`.
fn port_checks(ops: &mut Vec<Op>, ports: &[u16], miss: To) {
    if ports.is_empty() {
        ops.push(Op::Jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            0,
            To::Accept,
            To::Accept,
        ));
        return;
    }
    for (i, &port) in ports.iter().enumerate() {
        let no = if i + 1 == ports.len() { miss } else { To::Next };
        ops.push(Op::Jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(port),
            To::Accept,
            no,
        ));
    }
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// The form `SO_ATTACH_FILTER` takes.
pub(crate) fn to_sock_filters(program: &[Insn]) -> Vec<SockFilter> {
    program
        .iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect()
}

/// Resolves labels into forward offsets and appends the accept and drop returns.
fn assemble(ops: &[Op]) -> Vec<Insn> {
    let mut index = Vec::new();
    let mut labels = [0usize; 3];
    for op in ops {
        match op {
            Op::Label(l) => labels[*l] = index.len(),
            _ => index.push(*op),
        }
    }
    let accept = index.len();
    let drop = accept + 1;
    let offset = |from: usize, to: To| -> u8 {
        let target = match to {
            To::Next => from + 1,
            To::Accept => accept,
            To::Drop => drop,
            To::Label(l) => labels[l],
        };
        // MAX_PORTS keeps every program short enough for 8-bit forward jumps.
        u8::try_from(target - from - 1).unwrap_or(u8::MAX)
    };
    let ret = |k| Insn {
        code: BPF_RET | BPF_K,
        jt: 0,
        jf: 0,
        k,
    };
    let mut out: Vec<Insn> = index
        .iter()
        .enumerate()
        .map(|(i, op)| match *op {
            Op::Stmt(code, k) => Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Op::Jump(code, k, yes, no) => Insn {
                code,
                jt: offset(i, yes),
                jf: offset(i, no),
                k,
            },
            // Labels were removed above.
            Op::Label(_) => ret(0),
        })
        .collect();
    out.push(ret(ACCEPT));
    out.push(ret(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel knows about a packet besides its bytes.
    struct Meta {
        ifindex: u32,
        pkttype: u32,
        protocol: u32,
        net: usize,
    }

    /// A classic BPF interpreter for the instructions [`program`] uses, so the filter's
    /// logic is checked here and not only by capturing as root.
    fn run(program: &[Insn], meta: &Meta, frame: &[u8]) -> u32 {
        let load = |k: u32, size: usize| -> Option<u32> {
            let at = match k {
                SKF_AD_PROTOCOL => return Some(meta.protocol),
                SKF_AD_PKTTYPE => return Some(meta.pkttype),
                SKF_AD_IFINDEX => return Some(meta.ifindex),
                k if k >= SKF_NET_OFF => meta.net + (k - SKF_NET_OFF) as usize,
                k => k as usize,
            };
            let b = frame.get(at..at + size)?;
            Some(b.iter().fold(0u32, |v, &x| v << 8 | u32::from(x)))
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            let size = match i.code & 0x18 {
                BPF_H => 2,
                BPF_B => 1,
                _ => 4,
            };
            match i.code & 0x07 {
                BPF_RET => return i.k,
                BPF_LD if i.code & 0xE0 == BPF_IND => {
                    let Some(v) = load(i.k.wrapping_add(x), size) else {
                        return 0;
                    };
                    a = v;
                }
                BPF_LD => {
                    let Some(v) = load(i.k, size) else { return 0 };
                    a = v;
                }
                BPF_LDX => {
                    let Some(v) = load(i.k, 1) else { return 0 };
                    x = (v & 0x0F) * 4;
                }
                BPF_JMP => {
                    let hit = match i.code & 0xF0 {
                        BPF_JEQ => a == i.k,
                        BPF_JSET => a & i.k != 0,
                        other => panic!("jump {other:#x}"),
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                other => panic!("class {other:#x}"),
            }
        }
    }

    fn ethernet(ipv6: bool, src_port: u16, dst_port: u16, fragment: u16) -> (Meta, Vec<u8>) {
        let mut f = vec![0u8; 12];
        let protocol = if ipv6 { 0x86DD } else { 0x0800 };
        f.extend_from_slice(&(protocol as u16).to_be_bytes());
        if ipv6 {
            f.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, 6, 64]);
            f.extend_from_slice(&[0; 32]);
        } else {
            // IHL 6: one word of options, so the TCP header is found through X.
            f.extend_from_slice(&[0x46, 0, 0, 44, 0, 1]);
            f.extend_from_slice(&fragment.to_be_bytes());
            f.extend_from_slice(&[64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 1, 1, 0, 0]);
        }
        f.extend_from_slice(&src_port.to_be_bytes());
        f.extend_from_slice(&dst_port.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        let meta = Meta {
            ifindex: 1,
            pkttype: 0,
            protocol,
            net: 14,
        };
        (meta, f)
    }

    #[test]
    fn the_filter_keeps_tcp_on_the_ports_and_interface_and_drops_the_rest() {
        let p = program(1, true, &[3002, 3003]);
        for ipv6 in [false, true] {
            let (meta, f) = ethernet(ipv6, 51000, 3003, 0);
            assert_eq!(run(&p, &meta, &f), ACCEPT, "to the port, ipv6 {ipv6}");
            let (meta, f) = ethernet(ipv6, 3002, 51000, 0);
            assert_eq!(run(&p, &meta, &f), ACCEPT, "from the port, ipv6 {ipv6}");
            let (meta, f) = ethernet(ipv6, 51000, 3004, 0);
            assert_eq!(run(&p, &meta, &f), 0, "another port, ipv6 {ipv6}");
            let (mut meta, f) = ethernet(ipv6, 51000, 3003, 0);
            meta.pkttype = PACKET_OUTGOING;
            assert_eq!(run(&p, &meta, &f), 0, "outgoing copy on lo");
            let (mut meta, f) = ethernet(ipv6, 51000, 3003, 0);
            meta.ifindex = 2;
            assert_eq!(run(&p, &meta, &f), 0, "another interface");
        }
        let (meta, f) = ethernet(false, 51000, 3003, 0x2000);
        assert_eq!(run(&p, &meta, &f), ACCEPT, "first fragment, more to come");
        let (meta, f) = ethernet(false, 51000, 3003, 0x0010);
        assert_eq!(run(&p, &meta, &f), 0, "later fragment");
        let (mut meta, mut f) = ethernet(false, 51000, 3003, 0);
        f[14 + 9] = 17;
        assert_eq!(run(&p, &meta, &f), 0, "UDP");
        meta.protocol = 0x0806;
        assert_eq!(run(&p, &meta, &f), 0, "ARP");
        let (meta, mut f) = ethernet(true, 51000, 3004, 0);
        f[14 + 6] = 0;
        assert_eq!(
            run(&p, &meta, &f),
            ACCEPT,
            "IPv6 extension header: userspace decides"
        );

        // Outgoing packets are kept off loopback; every port passes with no ports given.
        let any = program(7, false, &[]);
        let (mut meta, f) = ethernet(false, 1, 2, 0);
        meta.ifindex = 7;
        meta.pkttype = PACKET_OUTGOING;
        assert_eq!(run(&any, &meta, &f), ACCEPT);
    }

    #[test]
    fn the_longest_program_keeps_every_jump_in_range() {
        let ports: Vec<u16> = (1..=MAX_PORTS as u16).collect();
        let p = program(1, true, &ports);
        assert_eq!(p.len(), 4 * MAX_PORTS + 24);
        for (i, insn) in p.iter().enumerate() {
            if insn.code & 0x07 == BPF_JMP {
                assert!(i + 1 + usize::from(insn.jt.max(insn.jf)) < p.len());
                assert!(insn.jt < u8::MAX && insn.jf < u8::MAX, "at {i}");
            }
        }
        // The last port of every group still reaches the accept return.
        let (meta, f) = ethernet(true, 1, MAX_PORTS as u16, 0);
        assert_eq!(run(&p, &meta, &f), ACCEPT);
    }
}
