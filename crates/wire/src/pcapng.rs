//! Capture files: pcapng (draft-ietf-opsawg-pcapng) blocks, including Decryption Secrets
//! Blocks, read and written; and classic libpcap files read, so tcpdump's and Wireshark's
//! files open too.
//!
//! [`Reader`] is sans-IO like the rest of the crate: hand it the unread bytes, get one
//! [`Block`] and how many bytes it used, or `None` when the next block is not complete yet.
//! It keeps the per-section state a file needs (byte order, each interface's timestamp
//! resolution), so packet timestamps come out in nanoseconds whatever the file used.
//! Block sizes are bounded by [`MAX_BLOCK_BYTES`], so a corrupt length cannot make a caller
//! buffer gigabytes waiting for a block that never completes.

use thiserror::Error;

/// pcapng Section Header Block type; also the first four bytes of every pcapng file.
pub const SECTION_HEADER: u32 = 0x0A0D_0D0A;
/// Interface Description Block type.
pub const INTERFACE_DESCRIPTION: u32 = 0x0000_0001;
/// Simple Packet Block type.
pub const SIMPLE_PACKET: u32 = 0x0000_0003;
/// Enhanced Packet Block type.
pub const ENHANCED_PACKET: u32 = 0x0000_0006;
/// Decryption Secrets Block type.
pub const DECRYPTION_SECRETS: u32 = 0x0000_000A;
/// Secrets type of a DSB holding an NSS key log (`TLSK`), which Wireshark uses to decrypt TLS.
pub const SECRETS_TLS_KEY_LOG: u32 = 0x544C_534B;

/// Link type: Ethernet (what `lo` gives on Linux).
pub const LINKTYPE_ETHERNET: u16 = 1;
/// Link type: raw IPv4/IPv6 packets without a link header.
pub const LINKTYPE_RAW: u16 = 101;
/// Link type: Linux "cooked" capture v1 (`tshark -i any`).
pub const LINKTYPE_LINUX_SLL: u16 = 113;

/// Largest block accepted, in bytes. 16 MiB is far above any real packet (snap lengths top
/// out at 256 KiB) or key log; a larger length field means a corrupt file.
pub const MAX_BLOCK_BYTES: usize = 16 << 20;

const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;

/// A file that cannot be decoded from this point on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PcapError {
    /// The first bytes are neither pcapng nor classic pcap.
    #[error("not a pcap or pcapng file (first bytes {0:02x?})")]
    UnknownFormat([u8; 4]),
    /// A block before the first Section Header Block.
    #[error("pcapng block before the section header")]
    NoSection,
    /// A Section Header Block with an unknown byte-order magic or version.
    #[error("bad section header: {0}")]
    BadSection(&'static str),
    /// A block length that is too small, not a multiple of 4, or differs from its trailer.
    #[error("corrupt block length at a block of type {block_type:#x}: {reason}")]
    BadLength {
        /// The block's type field.
        block_type: u32,
        /// What was wrong.
        reason: &'static str,
    },
    /// A block larger than [`MAX_BLOCK_BYTES`].
    #[error("block of {len} bytes exceeds the {MAX_BLOCK_BYTES}-byte limit")]
    TooLarge {
        /// The length field.
        len: u64,
    },
    /// A field inside a block points past the block's end.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A packet names an interface no Interface Description Block declared.
    #[error("packet on undeclared interface {0}")]
    UnknownInterface(u32),
}

/// One captured packet, from an Enhanced or Simple Packet Block or a classic pcap record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Index of the interface (0 for Simple Packet Blocks and classic pcap).
    pub interface_id: u32,
    /// Link type of that interface (e.g. [`LINKTYPE_ETHERNET`]).
    pub link_type: u16,
    /// Capture time in nanoseconds since the Unix epoch (0 for Simple Packet Blocks).
    pub timestamp_ns: u64,
    /// Length of the packet on the wire; more than `data.len()` when the capture cut it.
    pub original_len: u32,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
}

/// What an Interface Description Block declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// Link type of its packets.
    pub link_type: u16,
    /// Most bytes captured per packet (0: no limit).
    pub snap_len: u32,
    /// Timestamp units per second (10^6 unless `if_tsresol` says otherwise).
    pub units_per_second: u64,
}

/// One decoded block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Block<'a> {
    /// A section starts; interfaces are numbered from 0 again.
    Section {
        /// Whether the section is big-endian.
        big_endian: bool,
    },
    /// An interface is declared.
    Interface(Interface),
    /// A packet.
    Packet(Packet<'a>),
    /// Decryption secrets, e.g. an NSS key log ([`SECRETS_TLS_KEY_LOG`]).
    Secrets {
        /// Secrets type.
        secrets_type: u32,
        /// The secrets, unpadded.
        data: &'a [u8],
    },
    /// Any other block (name resolution, statistics, custom ...), skipped.
    Other {
        /// Its type field.
        block_type: u32,
    },
}

/// The file format, from its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pcapng,
    /// Classic pcap; `nanos` when timestamps are in nanoseconds, `big` for byte order.
    Pcap {
        big: bool,
        nanos: bool,
    },
}

/// Decodes a pcapng or classic pcap file block by block.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    format: Option<Format>,
    big_endian: bool,
    in_section: bool,
    interfaces: Vec<Interface>,
}

impl Reader {
    /// A reader at the start of a file.
    pub fn new() -> Self {
        Self::default()
    }

    /// The interfaces declared so far in the current section.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Decodes the next block at the start of `buf`: `Ok(None)` when more bytes are needed
    /// (never more than [`MAX_BLOCK_BYTES`] plus the header), otherwise the block and the
    /// number of bytes it used. A classic pcap file yields one [`Block::Interface`] for its
    /// global header and then [`Block::Packet`]s.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Block<'a>, usize)>, PcapError> {
        let format = match self.format {
            Some(f) => f,
            None => {
                let Some(magic) = buf.get(..4) else {
                    return Ok(None);
                };
                let magic: [u8; 4] = [magic[0], magic[1], magic[2], magic[3]];
                let f = match magic {
                    [0x0A, 0x0D, 0x0D, 0x0A] => Format::Pcapng,
                    [0xD4, 0xC3, 0xB2, 0xA1] => Format::Pcap {
                        big: false,
                        nanos: false,
                    },
                    [0xA1, 0xB2, 0xC3, 0xD4] => Format::Pcap {
                        big: true,
                        nanos: false,
                    },
                    [0x4D, 0x3C, 0xB2, 0xA1] => Format::Pcap {
                        big: false,
                        nanos: true,
                    },
                    [0xA1, 0xB2, 0x3C, 0x4D] => Format::Pcap {
                        big: true,
                        nanos: true,
                    },
                    other => return Err(PcapError::UnknownFormat(other)),
                };
                self.format = Some(f);
                f
            }
        };
        match format {
            Format::Pcapng => self.next_pcapng(buf),
            Format::Pcap { big, nanos } => self.next_pcap(buf, big, nanos),
        }
    }

    fn next_pcapng<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Block<'a>, usize)>, PcapError> {
        if buf.len() < 12 {
            return Ok(None);
        }
        let raw_type = read_u32(buf, 0, false);
        let big = if raw_type == SECTION_HEADER {
            // The byte-order magic decides how this section, its own length included, reads.
            match read_u32(buf, 8, false) {
                BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                _ => return Err(PcapError::BadSection("unknown byte-order magic")),
            }
        } else {
            if !self.in_section {
                return Err(PcapError::NoSection);
            }
            self.big_endian
        };
        let block_type = read_u32(buf, 0, big);
        let len = read_u32(buf, 4, big);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > MAX_BLOCK_BYTES {
            return Err(PcapError::TooLarge {
                len: u64::from(len),
            });
        }
        if len < 12 || !len.is_multiple_of(4) {
            let reason = if len < 12 {
                "shorter than 12 bytes"
            } else {
                "not a multiple of 4"
            };
            return Err(PcapError::BadLength { block_type, reason });
        }
        let Some(block) = buf.get(..len_usize) else {
            return Ok(None);
        };
        if read_u32(block, len_usize - 4, big) != len {
            return Err(PcapError::BadLength {
                block_type,
                reason: "trailing length differs",
            });
        }
        let body = &block[8..len_usize - 4];
        let decoded = match block_type {
            SECTION_HEADER => {
                let major = read_u16(body, 4, big).ok_or(PcapError::Truncated("section header"))?;
                if major != 1 {
                    return Err(PcapError::BadSection("unsupported major version"));
                }
                self.big_endian = big;
                self.in_section = true;
                self.interfaces.clear();
                Block::Section { big_endian: big }
            }
            INTERFACE_DESCRIPTION => {
                let link_type = read_u16(body, 0, big).ok_or(PcapError::Truncated("interface"))?;
                let snap_len =
                    read_u32_opt(body, 4, big).ok_or(PcapError::Truncated("interface"))?;
                let mut units_per_second = 1_000_000;
                for (code, value) in options(body.get(8..).unwrap_or(&[]), big) {
                    if code == OPT_IF_TSRESOL {
                        if let Some(&v) = value.first() {
                            units_per_second = tsresol(v);
                        }
                    }
                }
                let iface = Interface {
                    link_type,
                    snap_len,
                    units_per_second,
                };
                self.interfaces.push(iface);
                Block::Interface(iface)
            }
            ENHANCED_PACKET => {
                let field =
                    |at| read_u32_opt(body, at, big).ok_or(PcapError::Truncated("packet block"));
                let interface_id = field(0)?;
                let ts = (u64::from(field(4)?) << 32) | u64::from(field(8)?);
                let captured = usize::try_from(field(12)?).unwrap_or(usize::MAX);
                let original_len = field(16)?;
                let data = body
                    .get(20..20usize.saturating_add(captured))
                    .ok_or(PcapError::Truncated("packet data"))?;
                let iface = usize::try_from(interface_id)
                    .ok()
                    .and_then(|i| self.interfaces.get(i))
                    .ok_or(PcapError::UnknownInterface(interface_id))?;
                Block::Packet(Packet {
                    interface_id,
                    link_type: iface.link_type,
                    timestamp_ns: to_nanos(ts, iface.units_per_second),
                    original_len,
                    data,
                })
            }
            SIMPLE_PACKET => {
                let original_len =
                    read_u32_opt(body, 0, big).ok_or(PcapError::Truncated("simple packet"))?;
                let iface = self
                    .interfaces
                    .first()
                    .ok_or(PcapError::UnknownInterface(0))?;
                let mut captured = usize::try_from(original_len).unwrap_or(usize::MAX);
                if iface.snap_len != 0 {
                    captured = captured.min(usize::try_from(iface.snap_len).unwrap_or(usize::MAX));
                }
                let data = body
                    .get(4..4usize.saturating_add(captured))
                    .ok_or(PcapError::Truncated("simple packet data"))?;
                Block::Packet(Packet {
                    interface_id: 0,
                    link_type: iface.link_type,
                    timestamp_ns: 0,
                    original_len,
                    data,
                })
            }
            DECRYPTION_SECRETS => {
                let secrets_type =
                    read_u32_opt(body, 0, big).ok_or(PcapError::Truncated("secrets block"))?;
                let n = usize::try_from(
                    read_u32_opt(body, 4, big).ok_or(PcapError::Truncated("secrets block"))?,
                )
                .unwrap_or(usize::MAX);
                let data = body
                    .get(8..8usize.saturating_add(n))
                    .ok_or(PcapError::Truncated("secrets data"))?;
                Block::Secrets { secrets_type, data }
            }
            other => Block::Other { block_type: other },
        };
        Ok(Some((decoded, len_usize)))
    }

    fn next_pcap<'a>(
        &mut self,
        buf: &'a [u8],
        big: bool,
        nanos: bool,
    ) -> Result<Option<(Block<'a>, usize)>, PcapError> {
        if !self.in_section {
            // 24-byte global header: magic, version, thiszone, sigfigs, snaplen, network.
            if buf.len() < 24 {
                return Ok(None);
            }
            let snap_len = read_u32(buf, 16, big);
            // The link type is the low 16 bits; the upper bits carry FCS information.
            let link_type = (read_u32(buf, 20, big) & 0xFFFF) as u16;
            let units_per_second = if nanos { 1_000_000_000 } else { 1_000_000 };
            let iface = Interface {
                link_type,
                snap_len,
                units_per_second,
            };
            self.in_section = true;
            self.interfaces = vec![iface];
            return Ok(Some((Block::Interface(iface), 24)));
        }
        // 16-byte record header: seconds, sub-second units, captured length, original length.
        if buf.len() < 16 {
            return Ok(None);
        }
        let captured = read_u32(buf, 8, big);
        let captured_usize = usize::try_from(captured).unwrap_or(usize::MAX);
        if captured_usize > MAX_BLOCK_BYTES {
            return Err(PcapError::TooLarge {
                len: u64::from(captured),
            });
        }
        let Some(data) = buf.get(16..16 + captured_usize) else {
            return Ok(None);
        };
        let iface = self
            .interfaces
            .first()
            .copied()
            .ok_or(PcapError::UnknownInterface(0))?;
        let sub = u64::from(read_u32(buf, 4, big));
        let timestamp_ns = u64::from(read_u32(buf, 0, big))
            .saturating_mul(1_000_000_000)
            .saturating_add(if nanos {
                sub
            } else {
                sub.saturating_mul(1_000)
            });
        let packet = Packet {
            interface_id: 0,
            link_type: iface.link_type,
            timestamp_ns,
            original_len: read_u32(buf, 12, big),
            data,
        };
        Ok(Some((Block::Packet(packet), 16 + captured_usize)))
    }
}

/// `if_tsresol`: high bit clear means 10^-v seconds, set means 2^-v (RFC draft §4.2).
fn tsresol(v: u8) -> u64 {
    let exp = u32::from(v & 0x7F);
    let units = if v & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        2u64.checked_pow(exp)
    };
    units.unwrap_or(u64::MAX).max(1)
}

fn to_nanos(ts: u64, units_per_second: u64) -> u64 {
    let ns = u128::from(ts) * 1_000_000_000 / u128::from(units_per_second.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Iterates the options of a block body: `(code, value)` until `opt_endofopt` or the end.
/// Malformed trailing options are ignored: options never affect packet bytes.
fn options(mut body: &[u8], big: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = read_u16(body, 0, big)?;
        let len = usize::from(read_u16(body, 2, big)?);
        if code == OPT_END {
            return None;
        }
        let value = body.get(4..4 + len)?;
        body = body.get(4 + pad4(len)..).unwrap_or(&[]);
        Some((code, value))
    })
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Reads a u32 that the caller has bounds-checked.
fn read_u32(buf: &[u8], at: usize, big: bool) -> u32 {
    read_u32_opt(buf, at, big).unwrap_or(0)
}

fn read_u32_opt(buf: &[u8], at: usize, big: bool) -> Option<u32> {
    let b: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn read_u16(buf: &[u8], at: usize, big: bool) -> Option<u16> {
    let b: [u8; 2] = buf.get(at..at + 2)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

// --- writing (little-endian, nanosecond timestamps) ---

fn block(out: &mut Vec<u8>, block_type: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&block_type.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    out.resize(start + 8 + pad4(out.len() - start - 8), 0);
    let len = u32::try_from(out.len() - start + 4).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
}

/// Appends a Section Header Block (little-endian, version 1.0, unknown section length).
pub fn write_section_header(out: &mut Vec<u8>) {
    block(out, SECTION_HEADER, |b| {
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
    });
}

/// Appends an Interface Description Block with nanosecond timestamps (`if_tsresol` = 9).
pub fn write_interface(out: &mut Vec<u8>, link_type: u16, snap_len: u32) {
    block(out, INTERFACE_DESCRIPTION, |b| {
        b.extend_from_slice(&link_type.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&snap_len.to_le_bytes());
        b.extend_from_slice(&OPT_IF_TSRESOL.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[9, 0, 0, 0]);
        b.extend_from_slice(&[0; 4]); // opt_endofopt
    });
}

/// Appends an Enhanced Packet Block for an interface written by [`write_interface`]
/// (timestamps in nanoseconds). Packets over [`MAX_BLOCK_BYTES`] are cut to fit, as a snap
/// length would, with `original_len` kept.
pub fn write_packet(
    out: &mut Vec<u8>,
    interface_id: u32,
    timestamp_ns: u64,
    original_len: u32,
    data: &[u8],
) {
    let data = &data[..data.len().min(MAX_BLOCK_BYTES - 64)];
    block(out, ENHANCED_PACKET, |b| {
        b.extend_from_slice(&interface_id.to_le_bytes());
        b.extend_from_slice(&((timestamp_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(timestamp_ns as u32).to_le_bytes());
        b.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(&original_len.to_le_bytes());
        b.extend_from_slice(data);
    });
}

/// Appends a Decryption Secrets Block. Wireshark applies secrets to the packets after the
/// block, so write key logs before the packets they decrypt.
pub fn write_secrets(out: &mut Vec<u8>, secrets_type: u32, data: &[u8]) {
    let data = &data[..data.len().min(MAX_BLOCK_BYTES - 64)];
    block(out, DECRYPTION_SECRETS, |b| {
        b.extend_from_slice(&secrets_type.to_le_bytes());
        b.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
        b.extend_from_slice(data);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Vec<Block<'_>>, PcapError> {
        let mut reader = Reader::new();
        let mut at = 0;
        let mut blocks = Vec::new();
        while let Some((block, used)) = reader.next(&bytes[at..])? {
            blocks.push(block);
            at += used;
        }
        assert_eq!(at, bytes.len(), "every byte consumed");
        Ok(blocks)
    }

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        write_section_header(&mut out);
        write_interface(&mut out, LINKTYPE_ETHERNET, 262_144);
        write_secrets(&mut out, SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM 00 11\n");
        write_packet(&mut out, 0, 1_795_000_000_123_456_789, 60, &[0xAB; 54]);
        out
    }

    #[test]
    fn written_blocks_read_back() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let blocks = read_all(&bytes).unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[0], Block::Section { big_endian: false });
        assert_eq!(
            blocks[1],
            Block::Interface(Interface {
                link_type: 1,
                snap_len: 262_144,
                units_per_second: 1_000_000_000
            })
        );
        assert_eq!(
            blocks[2],
            Block::Secrets {
                secrets_type: SECRETS_TLS_KEY_LOG,
                data: b"CLIENT_RANDOM 00 11\n"
            }
        );
        let Block::Packet(p) = &blocks[3] else {
            panic!("{:?}", blocks[3])
        };
        assert_eq!(
            (p.timestamp_ns, p.original_len, p.data.len(), p.link_type),
            (1_795_000_000_123_456_789, 60, 54, 1)
        );
    }

    #[test]
    fn every_prefix_asks_for_more_and_never_errs() {
        let bytes = sample();
        let mut reader = Reader::new();
        let mut at = 0;
        for end in 0..=bytes.len() {
            while let Some((_, used)) = reader.next(&bytes[at..end]).unwrap() {
                at += used;
            }
        }
        assert_eq!(at, bytes.len());
    }

    #[test]
    fn big_endian_sections_and_microsecond_default() {
        // Hand-built big-endian SHB, IDB without options (µs), EPB.
        let mut out = Vec::new();
        let mut be_block = |t: u32, body: &[u8]| {
            let len = 12 + body.len() as u32;
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(&len.to_be_bytes());
        };
        let mut shb = BYTE_ORDER_MAGIC.to_be_bytes().to_vec();
        shb.extend_from_slice(&[0, 1, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_be_bytes());
        be_block(SECTION_HEADER, &shb);
        be_block(INTERFACE_DESCRIPTION, &[0, 101, 0, 0, 0, 0, 0xFF, 0xFF]);
        let mut epb = Vec::new();
        for v in [0u32, 0, 2_500_000, 4, 4] {
            epb.extend_from_slice(&v.to_be_bytes());
        }
        epb.extend_from_slice(&[0x45, 0, 0, 4]);
        be_block(ENHANCED_PACKET, &epb);
        let blocks = read_all(&out).unwrap();
        assert_eq!(blocks[0], Block::Section { big_endian: true });
        let Block::Packet(p) = &blocks[2] else {
            panic!()
        };
        assert_eq!(
            (p.timestamp_ns, p.link_type, p.data),
            (2_500_000_000, LINKTYPE_RAW, &[0x45, 0, 0, 4][..])
        );
    }

    #[test]
    fn classic_pcap_reads_as_one_interface_and_packets() {
        let mut out = Vec::new();
        out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
        out.extend_from_slice(&[2, 0, 4, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        for v in [7u32, 250, 3, 3] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&[1, 2, 3]);
        let blocks = read_all(&out).unwrap();
        let Block::Packet(p) = &blocks[1] else {
            panic!()
        };
        assert_eq!((p.timestamp_ns, p.data), (7_000_250_000, &[1, 2, 3][..]));
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let good = sample();
        assert!(matches!(
            Reader::new().next(b"GIF89a.."),
            Err(PcapError::UnknownFormat(_))
        ));
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        assert!(matches!(
            Reader::new().next(&bad),
            Err(PcapError::TooLarge { .. })
        ));
        let mut bad = good;
        bad[4..8].copy_from_slice(&30u32.to_le_bytes());
        assert!(matches!(
            Reader::new().next(&bad),
            Err(PcapError::BadLength { .. })
        ));
        // A packet on an interface that was never declared.
        let mut out = Vec::new();
        write_section_header(&mut out);
        write_packet(&mut out, 3, 0, 1, &[0]);
        assert!(matches!(
            read_all(&out),
            Err(PcapError::UnknownInterface(3))
        ));
        // A captured length pointing past the block.
        let mut out = Vec::new();
        write_section_header(&mut out);
        write_interface(&mut out, 1, 0);
        let at = out.len();
        write_packet(&mut out, 0, 0, 4, &[1, 2, 3, 4]);
        out[at + 8 + 12..at + 8 + 16].copy_from_slice(&4000u32.to_le_bytes());
        assert!(matches!(read_all(&out), Err(PcapError::Truncated(_))));
    }
}
