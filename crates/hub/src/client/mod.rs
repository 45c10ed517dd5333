//! The hub's client side: publishing over HTTP(S) ([`Publisher`]), a WebSocket subscriber that
//! resumes from its per-channel positions ([`subscribe`]), an on-disk spool of publications
//! not yet accepted ([`Spool`]), and the backoff both retry with ([`Backoff`]).
//!
//! Connections are plain TCP or rustls over TCP to the URL's host; the caller chooses what TLS
//! trusts (the lab's CA, the system roots) by handing in a rustls client config.

mod backoff;
mod publish;
mod spool;
mod stream;
mod subscribe;

pub use backoff::Backoff;
pub use publish::{parse_publish_answer, PublishError, Publisher};
pub use spool::{FilePosition, PushError, Spool, SpoolFull, SpoolOpened};
pub use stream::{ClientError, HubUrl};
pub use subscribe::{
    parse_hub_message, subscribe, HubMessage, SubscribeError, SubscriberEvent, SubscriptionRequest,
};

/// A fresh idempotency key: 128 random bits in hex, so a retried publication is delivered once.
pub fn idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    random_fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fills `bytes` from the system's random source (zeros in the unheard-of case it fails, which
/// only makes keys and jitter predictable, never unsafe).
pub(crate) fn random_fill(bytes: &mut [u8]) {
    use ring::rand::SecureRandom as _;
    if ring::rand::SystemRandom::new().fill(bytes).is_err() {
        bytes.fill(0);
    }
}
