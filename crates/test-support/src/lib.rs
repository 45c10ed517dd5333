//! Test helpers (work in progress).
