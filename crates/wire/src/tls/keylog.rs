//! NSS key log files (`SSLKEYLOGFILE`, draft-ietf-tls-keylogfile): the secrets that decrypt
//! captured TLS, filed by the ClientHello's random.
//!
//! [`KeyLog::parse`] reads the text format — one `<label> <client_random hex> <secret hex>`
//! per line, `#` comments and blank lines allowed — and returns the secrets it understood plus
//! one [`KeyLogError`] per bad line (with its line number), so one mangled line never hides
//! the rest. Labels this crate does not use (`EXPORTER_SECRET`, early-data secrets) are
//! accepted and ignored.

use std::collections::HashMap;

use thiserror::Error;

/// Most bytes of key log text [`KeyLog::parse`] reads; the rest is reported, not parsed.
/// A line is ~200 bytes, so this is about 300,000 connections' worth.
pub const MAX_KEYLOG_BYTES: usize = 64 << 20;

/// The secrets logged for one connection. TLS 1.2 needs `master_secret`; TLS 1.3 needs the
/// handshake secrets for the encrypted handshake and the `*_traffic_0` ones for data.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// `CLIENT_RANDOM`: the TLS 1.2 master secret (48 bytes).
    pub master_secret: Option<Vec<u8>>,
    /// `CLIENT_HANDSHAKE_TRAFFIC_SECRET`.
    pub client_handshake: Option<Vec<u8>>,
    /// `SERVER_HANDSHAKE_TRAFFIC_SECRET`.
    pub server_handshake: Option<Vec<u8>>,
    /// `CLIENT_TRAFFIC_SECRET_0`.
    pub client_traffic: Option<Vec<u8>>,
    /// `SERVER_TRAFFIC_SECRET_0`.
    pub server_traffic: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    /// Says which secrets are present, never their bytes: reports and logs must not leak keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let has = |s: &Option<Vec<u8>>| s.is_some();
        f.debug_struct("Secrets")
            .field("master_secret", &has(&self.master_secret))
            .field("client_handshake", &has(&self.client_handshake))
            .field("server_handshake", &has(&self.server_handshake))
            .field("client_traffic", &has(&self.client_traffic))
            .field("server_traffic", &has(&self.server_traffic))
            .finish()
    }
}

/// A line of a key log that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("key log line {line}: {reason}")]
pub struct KeyLogError {
    /// 1-based line number (0 for a problem with the whole text).
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Secrets from one or more key logs, by client random.
#[derive(Debug, Clone, Default)]
pub struct KeyLog {
    by_random: HashMap<[u8; 32], Secrets>,
}

impl KeyLog {
    /// An empty key log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses NSS key log text. Good lines are kept; each bad line (unknown shape, bad hex,
    /// wrong length) gives one error. Text past [`MAX_KEYLOG_BYTES`] is refused with one error.
    pub fn parse(text: &[u8]) -> (Self, Vec<KeyLogError>) {
        let mut log = Self::new();
        let errors = log.add(text);
        (log, errors)
    }

    /// Adds the secrets in `text` (see [`KeyLog::parse`]); later lines win over earlier ones.
    pub fn add(&mut self, text: &[u8]) -> Vec<KeyLogError> {
        let mut errors = Vec::new();
        let text = if text.len() > MAX_KEYLOG_BYTES {
            errors.push(KeyLogError {
                line: 0,
                reason: format!(
                    "key log larger than {} MiB; the rest is ignored",
                    MAX_KEYLOG_BYTES >> 20
                ),
            });
            &text[..MAX_KEYLOG_BYTES]
        } else {
            text
        };
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            if let Err(reason) = self.add_line(raw) {
                errors.push(KeyLogError {
                    line: i + 1,
                    reason,
                });
            }
        }
        errors
    }

    fn add_line(&mut self, raw: &[u8]) -> Result<(), String> {
        let line = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8 text".to_string())?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err("expected `<label> <client_random> <secret>`".into());
        };
        let random = hex(random).ok_or("client random is not hex")?;
        let random: [u8; 32] = random
            .try_into()
            .map_err(|r: Vec<u8>| format!("client random is {} bytes, not 32", r.len()))?;
        let secret = hex(secret).ok_or("secret is not hex")?;
        let entry = self.by_random.entry(random).or_default();
        let slot = match label {
            "CLIENT_RANDOM" => {
                if secret.len() != 48 {
                    return Err(format!(
                        "CLIENT_RANDOM master secret is {} bytes, not 48",
                        secret.len()
                    ));
                }
                &mut entry.master_secret
            }
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut entry.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => &mut entry.client_traffic,
            "SERVER_TRAFFIC_SECRET_0" => &mut entry.server_traffic,
            // Valid labels this decoder has no use for.
            "EXPORTER_SECRET" | "CLIENT_EARLY_TRAFFIC_SECRET" | "EARLY_EXPORTER_SECRET" | "RSA" => {
                return Ok(())
            }
            other => return Err(format!("unknown label {other:?}")),
        };
        if !matches!(secret.len(), 32 | 48) {
            return Err(format!(
                "{label} secret is {} bytes, not 32 or 48",
                secret.len()
            ));
        }
        *slot = Some(secret);
        Ok(())
    }

    /// Adds every secret of `other`, which wins where both have one.
    pub fn merge(&mut self, other: &Self) {
        for (random, theirs) in &other.by_random {
            let ours = self.by_random.entry(*random).or_default();
            for (mine, new) in [
                (&mut ours.master_secret, &theirs.master_secret),
                (&mut ours.client_handshake, &theirs.client_handshake),
                (&mut ours.server_handshake, &theirs.server_handshake),
                (&mut ours.client_traffic, &theirs.client_traffic),
                (&mut ours.server_traffic, &theirs.server_traffic),
            ] {
                if new.is_some() {
                    mine.clone_from(new);
                }
            }
        }
    }

    /// The secrets logged for the connection whose ClientHello carried `client_random`.
    pub fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.by_random.get(client_random)
    }

    /// How many connections have secrets.
    pub fn len(&self) -> usize {
        self.by_random.len()
    }

    /// Whether there are no secrets at all.
    pub fn is_empty(&self) -> bool {
        self.by_random.is_empty()
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: &str = "0707070707070707070707070707070707070707070707070707070707070707";

    #[test]
    fn every_label_comments_blank_lines_and_bad_lines() {
        let secret32 = "ab".repeat(32);
        let secret48 = "cd".repeat(48);
        let text = format!(
            "# a comment\n\n\
             CLIENT_RANDOM {RANDOM} {secret48}\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {RANDOM} {secret32}\r\n\
             SERVER_HANDSHAKE_TRAFFIC_SECRET {RANDOM} {secret48}\n\
             CLIENT_TRAFFIC_SECRET_0 {RANDOM} {secret32}\n\
             SERVER_TRAFFIC_SECRET_0 {RANDOM} {secret32}\n\
             EXPORTER_SECRET {RANDOM} {secret32}\n\
             CLIENT_RANDOM {RANDOM}\n\
             CLIENT_RANDOM zz {secret48}\n\
             CLIENT_RANDOM abcd {secret48}\n\
             CLIENT_RANDOM {RANDOM} {secret32}\n\
             SOMETHING_ELSE {RANDOM} {secret32}\n\
             CLIENT_TRAFFIC_SECRET_0 {RANDOM} abc\n"
        );
        let (log, errors) = KeyLog::parse(text.as_bytes());
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [9, 10, 11, 12, 13, 14], "{errors:?}");
        assert!(errors[0].to_string().starts_with("key log line 9:"));
        assert!(errors[3].reason.contains("not 48"), "{errors:?}");
        let s = log.get(&[7; 32]).unwrap();
        assert_eq!(s.master_secret.as_deref(), Some(&[0xcd; 48][..]));
        assert_eq!(s.client_handshake.as_deref(), Some(&[0xab; 32][..]));
        assert_eq!(s.server_handshake.as_deref(), Some(&[0xcd; 48][..]));
        assert!(s.client_traffic.is_some() && s.server_traffic.is_some());
        assert!(
            !format!("{s:?}").contains("ab"),
            "Debug must not print secrets"
        );
        assert_eq!(log.len(), 1);
        assert!(log.get(&[8; 32]).is_none());
    }

    #[test]
    fn merge_keeps_both_and_prefers_the_newer() {
        let (mut a, _) = KeyLog::parse(
            format!("CLIENT_TRAFFIC_SECRET_0 {RANDOM} {}", "01".repeat(32)).as_bytes(),
        );
        let (b, _) = KeyLog::parse(
            format!(
                "CLIENT_TRAFFIC_SECRET_0 {RANDOM} {}\nSERVER_TRAFFIC_SECRET_0 {RANDOM} {}",
                "02".repeat(32),
                "03".repeat(32)
            )
            .as_bytes(),
        );
        a.merge(&b);
        let s = a.get(&[7; 32]).unwrap();
        assert_eq!(s.client_traffic.as_deref(), Some(&[2; 32][..]));
        assert_eq!(s.server_traffic.as_deref(), Some(&[3; 32][..]));
    }

    #[test]
    fn binary_garbage_is_errors_not_panics() {
        let (log, errors) = KeyLog::parse(&[0xff, 0xfe, b'\n', b' ', b'\n', 0]);
        assert!(log.is_empty());
        assert_eq!(errors.len(), 2);
    }
}
