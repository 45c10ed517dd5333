//! Local certificate authority and TLS configuration for the lab (work in progress).
