//! Link/IP/TCP header decoding over every supported link type: never a panic, and a decoded
//! segment's header lengths and payload always fit inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::net::{decode_tcp, LINKTYPE_NULL};
use protolab_wire::pcapng::{LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW};

fuzz_target!(|input: &[u8]| {
    let [selector, frame @ ..] = input else { return };
    let link = [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_NULL][usize::from(*selector % 4)];
    if let Ok(s) = decode_tcp(link, frame) {
        let headers = s.link_header_len + s.ip_header_len + s.tcp_header_len;
        assert!(headers + s.payload.len() <= frame.len());
        assert!(s.tcp_header_len >= 20 && s.ip_header_len >= 20);
    }
});
