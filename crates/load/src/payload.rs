//! What the echo messages carry. Content does not change the bytes of uncompressed protocols,
//! but it decides everything for permessage-deflate: a repeated alphabet compresses to
//! nothing and random bytes not at all, so compression is measured on JSON records whose
//! values change from message to message.

use serde::{Deserialize, Serialize};

/// The content of echo messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// `abc…xyzabc…`, the same every message. Cheap to check; fine wherever content does not
    /// matter (no compression).
    #[default]
    Alphabet,
    /// A JSON array of trade-like records (`{"seq":…,"user":"…","side":"buy",…}`) cut to the
    /// size, with new values in every WebSocket message (a seeded generator, so runs repeat).
    /// HTTP sends the first message each time. About what a dashboard or chat feed sends:
    /// permessage-deflate with context takeover saves most of it, without takeover less.
    Json,
}

impl Payload {
    /// `alphabet` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alphabet => "alphabet",
            Self::Json => "json",
        }
    }

    /// Writes message number `seq` of `size` bytes into `out` (cleared first).
    pub fn fill(self, out: &mut Vec<u8>, size: usize, seq: u64) {
        out.clear();
        match self {
            Self::Alphabet => out.extend((0..size).map(|i| b'a' + (i % 26) as u8)),
            Self::Json => json(out, size, seq),
        }
    }
}

const USERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
const SYMBOLS: [&str; 8] = [
    "BTC-EUR", "ETH-EUR", "AAPL", "MSFT", "ACME", "EURUSD", "GOLD", "OIL",
];
const WORDS: [&str; 16] = [
    "filled", "partial", "order", "limit", "market", "cancel", "update", "price", "moved", "above",
    "below", "average", "session", "open", "close", "alert",
];

/// JSON records from a SplitMix64 stream seeded by `seq`, cut to exactly `size` bytes.
fn json(out: &mut Vec<u8>, size: usize, seq: u64) {
    use std::io::Write as _;
    let mut rng = SplitMix(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
    let mut record = 0u64;
    out.push(b'[');
    while out.len() < size {
        if record > 0 {
            out.push(b',');
        }
        let pick = |rng: &mut SplitMix, n: usize| (rng.next() % n as u64) as usize;
        let user = USERS[pick(&mut rng, USERS.len())];
        let symbol = SYMBOLS[pick(&mut rng, SYMBOLS.len())];
        let (w1, w2) = (
            WORDS[pick(&mut rng, WORDS.len())],
            WORDS[pick(&mut rng, WORDS.len())],
        );
        let side = if rng.next().is_multiple_of(2) {
            "buy"
        } else {
            "sell"
        };
        let price = rng.next() % 1_000_000;
        let qty = 1 + rng.next() % 500;
        let ts = 1_718_000_000_000 + seq * 37 + record * 3;
        // Writing to a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"seq\":{},\"ts\":{ts},\"user\":\"{user}\",\"symbol\":\"{symbol}\",\"side\":\"{side}\",\"price\":{}.{:02},\"qty\":{qty},\"note\":\"{w1} {w2}\"}}",
            seq * 1000 + record,
            price / 100,
            price % 100,
        );
        record += 1;
    }
    out.truncate(size.saturating_sub(1));
    if size > 0 {
        out.push(b']');
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_messages_differ() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for size in [0, 1, 2, 31, 32, 1000, 16 * 1024] {
            Payload::Json.fill(&mut a, size, 1);
            Payload::Json.fill(&mut b, size, 2);
            assert_eq!((a.len(), b.len()), (size, size));
            if size > 40 {
                assert_ne!(a, b);
            }
            Payload::Alphabet.fill(&mut a, size, 1);
            assert_eq!(a.len(), size);
        }
        // Whole records are real JSON: a 1 KiB message starts with a complete object.
        Payload::Json.fill(&mut a, 1024, 7);
        let text = std::str::from_utf8(&a).unwrap();
        let first = &text[1..text.find('}').unwrap() + 1];
        let v: serde_json::Value = serde_json::from_str(first).unwrap();
        assert_eq!(v["seq"], 7000);
        // The same seed gives the same message.
        Payload::Json.fill(&mut b, 1024, 7);
        assert_eq!(a, b);
    }
}
