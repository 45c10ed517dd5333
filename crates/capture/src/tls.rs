//! TLS inside one connection: the hellos, and record decryption once the key log has this
//! connection's secrets. Plaintext application data goes back to the dissector, which decodes
//! it exactly as it decodes a connection without TLS.

use protolab_wire::tls::decrypt::{Decryptor, Sender};
use protolab_wire::tls::keylog::KeyLog;
use protolab_wire::tls::{self, content_type, Record, ServerHello};
use serde::Serialize;

use crate::event::Event;
use crate::flow::{Dir, Note};

/// A connection whose TLS records were decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decrypted {
    /// Negotiated version, e.g. `TLS 1.3`.
    pub version: String,
    /// Negotiated cipher suite's IANA name.
    pub cipher_suite: String,
    /// Records decrypted [to server, to client].
    pub records: [u64; 2],
}

#[derive(Debug, Default)]
enum Keys {
    /// Not needed yet (no encrypted record so far).
    #[default]
    Pending,
    Ready(Box<Decryptor>),
    /// No secrets, or an unsupported suite: a note said why; records stay opaque.
    Unavailable,
}

/// Where a record's bytes go in the cost summary.
#[derive(Debug, Default)]
pub(crate) struct RecordBytes {
    /// Plaintext application data appended to the caller's buffer.
    pub(crate) app: usize,
    /// TLS's own bytes: headers, handshake, alerts, AEAD overhead.
    pub(crate) tls: usize,
    /// Application data left encrypted.
    pub(crate) encrypted: usize,
}

/// The TLS state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Session {
    client_random: Option<[u8; 32]>,
    server_hello: Option<ServerHello>,
    /// A HelloRetryRequest was seen: the client's second hello comes next.
    retry: bool,
    keys: Keys,
    /// A record in this direction failed to open; the rest of it stays opaque.
    failed: [bool; 2],
    pub(crate) decrypted: Option<Decrypted>,
}

fn arrow(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "→",
        Dir::ToClient => "←",
    }
}

impl Session {
    /// Handles one whole record sent in `dir`: appends decrypted application data to `plain`
    /// and says where its bytes went.
    pub(crate) fn record(
        &mut self,
        dir: Dir,
        record: &Record<'_>,
        keylog: &KeyLog,
        plain: &mut Vec<u8>,
        events: &mut Vec<Event>,
        notes: &mut Vec<Note>,
    ) -> RecordBytes {
        // Header and fragment: what the record took on the wire.
        let used = 5 + record.fragment.len();
        let opaque = |events: &mut Vec<Event>, decrypted| {
            events.push(Event::TlsRecord {
                dir,
                content_type: record.content_type,
                len: record.fragment.len(),
                decrypted,
            });
            if record.content_type == content_type::APPLICATION_DATA {
                RecordBytes {
                    encrypted: used,
                    ..RecordBytes::default()
                }
            } else {
                RecordBytes {
                    tls: used,
                    ..RecordBytes::default()
                }
            }
        };
        if record.content_type == content_type::HANDSHAKE && self.hello(dir, record, events) {
            return RecordBytes {
                tls: used,
                ..RecordBytes::default()
            };
        }
        let needs_keys = matches!(
            record.content_type,
            content_type::APPLICATION_DATA | content_type::CHANGE_CIPHER_SPEC
        );
        if needs_keys && matches!(self.keys, Keys::Pending) {
            self.keys = self.make_keys(keylog, events, notes);
        }
        let i = dir.index();
        let Keys::Ready(decryptor) = &mut self.keys else {
            return opaque(events, false);
        };
        if self.failed[i] {
            return opaque(events, false);
        }
        let sender = match dir {
            Dir::ToServer => Sender::Client,
            Dir::ToClient => Sender::Server,
        };
        let start = plain.len();
        match decryptor.open(sender, record, plain) {
            Ok(opened) if opened.decrypted => {
                if let Some(d) = self.decrypted.as_mut() {
                    d.records[i] += 1;
                }
                if opened.content_type == content_type::APPLICATION_DATA {
                    let app = plain.len() - start;
                    return RecordBytes {
                        app,
                        tls: used - app,
                        encrypted: 0,
                    };
                }
                events.push(Event::TlsRecord {
                    dir,
                    content_type: opened.content_type,
                    len: plain.len() - start,
                    decrypted: true,
                });
                plain.truncate(start);
                RecordBytes {
                    tls: used,
                    ..RecordBytes::default()
                }
            }
            Ok(_) => {
                plain.truncate(start);
                opaque(events, false)
            }
            Err(e) => {
                self.failed[i] = true;
                notes.push(Note::Tls {
                    dir: Some(dir),
                    reason: format!(
                        "{} {e} — the rest of this direction is shown encrypted",
                        arrow(dir)
                    ),
                });
                opaque(events, false)
            }
        }
    }

    /// Reads a plaintext ClientHello or ServerHello; false if `record` is neither.
    fn hello(&mut self, dir: Dir, record: &Record<'_>, events: &mut Vec<Event>) -> bool {
        match dir {
            Dir::ToServer if self.client_random.is_none() || self.retry => {
                let Ok(h) = tls::parse_client_hello(record.fragment) else {
                    return false;
                };
                self.retry = false;
                self.client_random = Some(h.random);
                events.push(Event::TlsClientHello {
                    server_name: h.server_name,
                    alpn: h.alpn,
                    versions: h
                        .supported_versions
                        .iter()
                        .map(|&v| tls::version_name(v))
                        .collect(),
                });
                true
            }
            Dir::ToClient if self.server_hello.is_none() => {
                let Ok(h) = tls::parse_server_hello(record.fragment) else {
                    return false;
                };
                if h.hello_retry_request {
                    self.retry = true;
                } else {
                    self.server_hello = Some(h);
                }
                events.push(Event::TlsServerHello {
                    version: tls::version_name(h.version),
                    cipher_suite: h.cipher_suite,
                });
                true
            }
            _ => false,
        }
    }

    fn make_keys(
        &mut self,
        keylog: &KeyLog,
        events: &mut Vec<Event>,
        notes: &mut Vec<Note>,
    ) -> Keys {
        let mut unavailable = |reason: String| {
            notes.push(Note::Tls { dir: None, reason });
            Keys::Unavailable
        };
        let (Some(random), Some(hello)) = (self.client_random, self.server_hello) else {
            return unavailable(
                "the capture has no ClientHello and ServerHello for this connection, so its secrets cannot be found — records shown encrypted"
                    .into(),
            );
        };
        if keylog.is_empty() {
            return unavailable(
                "no TLS secrets (the file has no Decryption Secrets Block and no --keylog was given) — records shown encrypted".into(),
            );
        }
        let Some(secrets) = keylog.get(&random) else {
            return unavailable(
                "no key-log secret for this ClientHello's random — records shown encrypted".into(),
            );
        };
        match Decryptor::new(
            hello.version,
            hello.cipher_suite,
            secrets,
            &random,
            &hello.random,
        ) {
            Ok(d) => {
                let version = tls::version_name(hello.version);
                let cipher_suite = d.suite().name.to_string();
                events.push(Event::TlsDecrypted {
                    version: version.clone(),
                    cipher_suite: cipher_suite.clone(),
                });
                self.decrypted = Some(Decrypted {
                    version,
                    cipher_suite,
                    records: [0; 2],
                });
                Keys::Ready(Box::new(d))
            }
            Err(e) => unavailable(format!("{e} — records shown encrypted")),
        }
    }
}
