//! Sans-IO codecs for every network byte protolab reads or writes.
//!
//! The principal types are [`http1::RequestHead`] (parsed by [`http1::parse_request`]) and
//! [`ws::Decoder`], which turns bytes from a peer into whole [`ws::Message`]s while enforcing
//! RFC 6455's rules and the configured size limits. Encoding goes through [`ws::encode_frame`];
//! permessage-deflate (RFC 7692) negotiation and its codec through [`ws::deflate`].
//! Capture files go through [`pcapng::Reader`] (pcapng and classic pcap) and the
//! `pcapng::write_*` functions, Decryption Secrets Blocks included; captured frames through
//! [`net::decode_tcp`]; TLS records and hellos through [`tls::decode_record`] and
//! [`tls::parse_client_hello`], and their encrypted records through [`tls::decrypt::Decryptor`]
//! with secrets from a [`tls::keylog::KeyLog`].
//!
//! What this crate does *not* do: no sockets, no tokio, no files, no clocks. Every function takes
//! `&[u8]` and returns a value plus how many bytes it consumed, or says it needs more bytes.
//! Because the lab's servers, the load generator and the capture dissector share these codecs,
//! what protolab serves, measures and decodes agree by construction.

pub mod http1;
pub mod http2;
pub mod net;
pub mod pcapng;
pub mod proxy_v2;
pub mod sse;
pub mod tls;
pub mod ws;
