//! Which TLS secrets go into a capture file: the NSS key log lines of the sessions whose
//! ClientHello the capture saw, so a key log that `protolab up --keylog` has been appending
//! to for days does not leak the secrets of unrelated connections into a file that gets
//! shared.

use std::collections::HashSet;

/// Length of a ClientHello random (RFC 8446 §4.1.2).
pub const RANDOM_LEN: usize = 32;

/// Most distinct ClientHello randoms remembered (32 bytes each, about 5 MiB at the limit).
/// Past it, [`select`] is told to keep every session, since it can no longer tell which ones
/// the capture holds.
pub const MAX_CLIENT_RANDOMS: usize = 100_000;

/// The ClientHello random in a TCP payload that starts a TLS handshake record
/// (RFC 8446 §5.1: type 22, then §4: handshake type 1, length, legacy_version, random), or
/// `None` for anything else. The random sits in the first 43 bytes, so a ClientHello split
/// across segments is still found in its first one.
pub fn client_hello_random(payload: &[u8]) -> Option<[u8; RANDOM_LEN]> {
    let head = payload.get(..11 + RANDOM_LEN)?;
    if head[0] != 22 || head[1] != 3 || head[5] != 1 {
        return None;
    }
    head[11..].try_into().ok()
}

/// The ClientHello randoms a capture saw.
#[derive(Debug, Clone, Default)]
pub struct ClientRandoms {
    seen: HashSet<[u8; RANDOM_LEN]>,
    overflowed: bool,
}

impl ClientRandoms {
    /// Remembers the random of `payload` if it starts a ClientHello.
    pub fn note(&mut self, payload: &[u8]) {
        let Some(random) = client_hello_random(payload) else {
            return;
        };
        if self.seen.len() < MAX_CLIENT_RANDOMS {
            self.seen.insert(random);
        } else if !self.seen.contains(&random) {
            self.overflowed = true;
        }
    }

    /// How many distinct ClientHellos were seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The part of a key log embedded in a capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The kept lines, each ending in `\n`.
    pub text: String,
    /// Distinct client randoms among the kept lines: TLS sessions the file can decrypt.
    pub sessions: usize,
    /// Distinct client randoms left out because the capture holds no ClientHello of theirs.
    pub unmatched: usize,
    /// Lines that are not `LABEL <64 hex digits> <hex>` (comments and blank lines excluded).
    pub malformed: usize,
}

/// Keeps the lines of `key_log` (NSS key log format) whose client random is in `randoms`, or
/// every well-formed line when `randoms` overflowed. Never fails: bytes that are not UTF-8 or
/// lines that are not key log lines are counted and skipped.
pub fn select(key_log: &[u8], randoms: &ClientRandoms) -> Selection {
    let mut out = Selection::default();
    let mut kept = HashSet::new();
    let mut skipped = HashSet::new();
    for line in key_log.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            out.malformed += 1;
            continue;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            out.malformed += 1;
            continue;
        };
        let Some(random) = decode_random(random) else {
            out.malformed += 1;
            continue;
        };
        let label_ok = label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !label_ok || secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.malformed += 1;
            continue;
        }
        if randoms.overflowed || randoms.seen.contains(&random) {
            kept.insert(random);
            out.text.push_str(line);
            out.text.push('\n');
        } else {
            skipped.insert(random);
        }
    }
    out.sessions = kept.len();
    out.unmatched = skipped.len();
    out
}

fn decode_random(hex: &str) -> Option<[u8; RANDOM_LEN]> {
    if hex.len() != 2 * RANDOM_LEN {
        return None;
    }
    let mut out = [0u8; RANDOM_LEN];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Splits `text` at line ends into chunks of at most `max` bytes, so a key log larger than
/// one pcapng block travels in several Decryption Secrets Blocks without cutting a line. A
/// single line longer than `max` is cut (it could not be a valid key log line).
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= max {
            out.push(rest);
            break;
        }
        let mut end = max;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let mut cut = rest[..end].rfind('\n').map_or(end, |i| i + 1);
        if cut == 0 {
            // `max` is smaller than the first character: take that character alone.
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(random: u8) -> Vec<u8> {
        let mut p = vec![22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];
        p.extend_from_slice(&[random; 32]);
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn only_the_sessions_the_capture_saw_are_kept() {
        let mut randoms = ClientRandoms::default();
        randoms.note(&hello(0xAA));
        randoms.note(&hello(0xAA));
        randoms.note(b"GET / HTTP/1.1\r\n");
        randoms.note(&hello(0xBB)[..30]);
        assert_eq!(randoms.len(), 1);
        let aa = "aa".repeat(32);
        let bb = "bb".repeat(32);
        let log = format!(
            "# comment\n\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {aa} 0102\nCLIENT_TRAFFIC_SECRET_0 {aa} 0304\r\nCLIENT_RANDOM {bb} 0506\nnot a line\nCLIENT_RANDOM {} 07\n",
            "zz".repeat(32)
        );
        let s = select(log.as_bytes(), &randoms);
        assert_eq!(
            s.text,
            format!(
                "CLIENT_HANDSHAKE_TRAFFIC_SECRET {aa} 0102\nCLIENT_TRAFFIC_SECRET_0 {aa} 0304\n"
            )
        );
        assert_eq!((s.sessions, s.unmatched, s.malformed), (1, 1, 2));
    }

    #[test]
    fn chunks_split_at_line_ends_and_lose_nothing() {
        let text = "aaaa\nbb\ncccccc\nd\n";
        let parts = chunks(text, 8);
        assert_eq!(parts, ["aaaa\nbb\n", "cccccc\n", "d\n"]);
        assert_eq!(chunks("0123456789", 4).concat(), "0123456789");
        assert!(chunks("", 4).is_empty());
    }
}
