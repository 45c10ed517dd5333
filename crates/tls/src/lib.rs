//! Local certificate authority, leaf certificates and TLS configuration for the lab.
//!
//! The principal type is [`Store`], the state directory holding the CA ([`Ca`]) and the leaves
//! it issued ([`Leaf`]). [`server_config`] and [`client_config`] turn those into rustls
//! configurations; [`check`] explains in plain words why a client rejects a certificate;
//! [`trust`] tells clients to trust the CA, or installs it.
//!
//! ```no_run
//! # fn main() -> protolab_tls::Result<()> {
//! let store = protolab_tls::Store::open("/tmp/protolab-state");
//! let leaf = store.leaf_for(&["localhost".into(), "127.0.0.1".into(), "::1".into()])?;
//! let config = protolab_tls::server_config(&leaf, &[b"http/1.1"])?;
//! # let _ = config; Ok(()) }
//! ```
//!
//! Certificates from an ACME CA are stored here too ([`Store::save_acme_cert`]) and served
//! through a replaceable [`CertSlot`]; the ACME protocol itself is the `cli` crate's.
//!
//! Not here: sockets for serving (the `server` crate), reading environment variables or choosing
//! the state directory (the `cli` crate passes it in).

pub mod ca;
pub mod check;
mod config;
mod error;
pub mod inspect;
pub mod keylog;
pub mod record;
mod store;
pub mod stream;
pub mod trust;

pub use ca::{Ca, Leaf, Name};
pub use check::{
    check_chain, check_pem_file, check_remote, describe_handshake_error, Diagnosis, Problem,
};
pub use config::{
    certified_key, client_config, client_config_with, provider, read_pem_certs, server_config,
    server_config_slot, server_config_sni, server_config_with, CertSlot, Options, Roots, VERSIONS,
};
pub use error::{Error, Result};
pub use inspect::CertInfo;
pub use store::{file_stem, InitOutcome, IssuedLeaf, Store, REUSE_MIN_REMAINING};

/// Re-exported because [`ca::leaf_params`] and [`Ca::sign`] speak rcgen's types.
pub use rcgen;
/// Re-exported so callers name the same rustls version this crate was built with.
pub use rustls;
