//! The lab's servers (work in progress).
