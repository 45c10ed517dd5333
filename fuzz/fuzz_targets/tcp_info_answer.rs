//! The kernel's sock_diag answer the load generator reads its sockets' TCP counters from:
//! any bytes give counters or `None`, never a panic, and never more retransmitted segments
//! than segments sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_load::tcp_info::parse_answer;

fuzz_target!(|data: &[u8]| {
    if let Some(counters) = parse_answer(data) {
        let _ = counters.packets();
        let _ = counters.since(counters).plus(counters);
    }
});
