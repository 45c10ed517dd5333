//! The `protolab` command line (work in progress).
