//! Adding and removing the TLS secrets a capture file carries: [`inject_secrets`] is what
//! `editcap --inject-secrets tls,KEYLOG` does (a Decryption Secrets Block before the packets,
//! so Wireshark and `inspect` decrypt without a separate key log); [`strip_secrets`] drops
//! every such block so the file can be shared without its keys.

use protolab_wire::pcapng::{self, Block, PcapError, Reader};
use thiserror::Error;

use crate::KeyLog;

/// Why a file could not be rewritten.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The input is not a readable capture.
    #[error("the input is not a usable capture: {0}")]
    Capture(#[from] PcapError),
    /// The input ends inside a block.
    #[error(
        "the input ends inside a block ({0} bytes left over); refusing to write a truncated copy"
    )]
    Truncated(usize),
    /// A big-endian pcapng section: our blocks are little-endian and cannot be mixed in.
    #[error(
        "the input has a big-endian pcapng section; convert it with `editcap -F pcapng` first"
    )]
    BigEndian,
    /// The key log has bad lines.
    #[error("the key log has {count} bad line(s), first: {first}")]
    BadKeyLog {
        /// How many.
        count: usize,
        /// The first, with its line number.
        first: String,
    },
    /// The input file is empty.
    #[error("the input file is empty")]
    Empty,
    /// The key log has no secrets at all.
    #[error("the key log holds no TLS secrets")]
    EmptyKeyLog,
}

/// Walks every block of `file`, handing each with its raw bytes to `each`.
fn blocks<'a>(
    file: &'a [u8],
    mut each: impl FnMut(&Block<'a>, &'a [u8]) -> Result<(), SecretsError>,
) -> Result<(), SecretsError> {
    let mut reader = Reader::new();
    let mut at = 0;
    while at < file.len() {
        let Some((block, used)) = reader.next(&file[at..])? else {
            return Err(SecretsError::Truncated(file.len() - at));
        };
        each(&block, &file[at..at + used])?;
        at += used;
    }
    if at == 0 {
        return Err(SecretsError::Empty);
    }
    Ok(())
}

fn is_pcapng(file: &[u8]) -> bool {
    file.starts_with(&pcapng::SECTION_HEADER.to_le_bytes())
}

/// A pcapng copy of `file` (pcapng or classic pcap) with `keylog` (NSS key log text) in a
/// Decryption Secrets Block at the start of every section, before any packet. The key log is
/// checked first: a bad line or an empty log is an error, not a silently useless file.
/// Existing blocks, secrets included, are kept byte for byte.
pub fn inject_secrets(file: &[u8], keylog: &[u8]) -> Result<Vec<u8>, SecretsError> {
    let (parsed, errors) = KeyLog::parse(keylog);
    if let Some(first) = errors.first() {
        return Err(SecretsError::BadKeyLog {
            count: errors.len(),
            first: first.to_string(),
        });
    }
    if parsed.is_empty() {
        return Err(SecretsError::EmptyKeyLog);
    }
    let mut out = Vec::with_capacity(file.len() + keylog.len() + 64);
    if is_pcapng(file) {
        blocks(file, |block, raw| {
            out.extend_from_slice(raw);
            if let Block::Section { big_endian } = block {
                if *big_endian {
                    return Err(SecretsError::BigEndian);
                }
                pcapng::write_secrets(&mut out, pcapng::SECRETS_TLS_KEY_LOG, keylog);
            }
            Ok(())
        })?;
    } else {
        // Classic pcap: one interface from the global header, then every record as an
        // Enhanced Packet Block.
        pcapng::write_section_header(&mut out);
        pcapng::write_secrets(&mut out, pcapng::SECRETS_TLS_KEY_LOG, keylog);
        blocks(file, |block, _| {
            match block {
                Block::Interface(i) => pcapng::write_interface(&mut out, i.link_type, i.snap_len),
                Block::Packet(p) => {
                    pcapng::write_packet(&mut out, 0, p.timestamp_ns, p.original_len, p.data)
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// A copy of the pcapng `file` without its Decryption Secrets Blocks, and how many it had.
/// A classic pcap file cannot hold secrets; it is returned as is with a count of 0.
pub fn strip_secrets(file: &[u8]) -> Result<(Vec<u8>, usize), SecretsError> {
    let mut out = Vec::with_capacity(file.len());
    let mut removed = 0;
    if !is_pcapng(file) {
        blocks(file, |_, _| Ok(()))?;
        return Ok((file.to_vec(), 0));
    }
    blocks(file, |block, raw| {
        if matches!(block, Block::Secrets { .. }) {
            removed += 1;
        } else {
            out.extend_from_slice(raw);
        }
        Ok(())
    })?;
    Ok((out, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "CLIENT_RANDOM 0707070707070707070707070707070707070707070707070707070707070707 cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\n";

    fn kinds(file: &[u8]) -> Vec<&'static str> {
        let mut out = Vec::new();
        blocks(file, |b, _| {
            out.push(match b {
                Block::Section { .. } => "section",
                Block::Interface(_) => "interface",
                Block::Packet(_) => "packet",
                Block::Secrets { .. } => "secrets",
                _ => "other",
            });
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn inject_then_strip_round_trips_pcapng_and_converts_pcap() {
        let mut file = Vec::new();
        pcapng::write_section_header(&mut file);
        pcapng::write_interface(&mut file, pcapng::LINKTYPE_RAW, 0);
        pcapng::write_packet(&mut file, 0, 5, 3, &[1, 2, 3]);
        let with = inject_secrets(&file, LOG.as_bytes()).unwrap();
        assert_eq!(kinds(&with), ["section", "secrets", "interface", "packet"]);
        let (without, removed) = strip_secrets(&with).unwrap();
        assert_eq!((without, removed), (file, 1));

        // Classic pcap (little-endian, microseconds, raw IP): one record.
        let mut pcap = vec![0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0];
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&65535u32.to_le_bytes());
        pcap.extend_from_slice(&101u32.to_le_bytes());
        pcap.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 9, 9, 9]);
        let with = inject_secrets(&pcap, LOG.as_bytes()).unwrap();
        assert_eq!(kinds(&with), ["section", "secrets", "interface", "packet"]);
        assert_eq!(strip_secrets(&pcap).unwrap().1, 0);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        assert!(matches!(
            inject_secrets(b"not a capture", LOG.as_bytes()),
            Err(SecretsError::Capture(_))
        ));
        let mut file = Vec::new();
        pcapng::write_section_header(&mut file);
        assert!(matches!(
            inject_secrets(&file, b"# nothing\n"),
            Err(SecretsError::EmptyKeyLog)
        ));
        let err = inject_secrets(&file, b"CLIENT_RANDOM zz zz\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(matches!(
            strip_secrets(&file[..file.len() - 2]),
            Err(SecretsError::Truncated(_))
        ));
        assert!(matches!(strip_secrets(b""), Err(SecretsError::Empty)));
    }
}
