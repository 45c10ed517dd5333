//! Reassembly and dissection end to end. Half the inputs are raw file bytes; the other half
//! become a valid pcapng of TCP segments between two endpoints whose direction, sequence
//! offset, flags and payload come from the input, so the fuzzer reaches the reassembler
//! (retransmits, reordering, holes, wraps) and the HTTP/TLS/WebSocket dissectors. With bit 1
//! of the first byte set, a key log with secrets for the all-zero client random is passed
//! too, so ClientHellos with that random reach the decryption set-up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_capture::{inspect, inspect_with, Filter, InspectOptions, KeyLog};
use protolab_wire::pcapng;

fn frame(to_server: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (sport, dport) = if to_server { (40000u16, 3002u16) } else { (3002, 40000) };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let _ = inspect(rest, &Filter::default());
        return;
    }
    let mut file = Vec::new();
    pcapng::write_section_header(&mut file);
    pcapng::write_interface(&mut file, pcapng::LINKTYPE_ETHERNET, 0);
    let mut next = [1000u32, 5000u32];
    for (i, chunk) in rest.chunks(48).enumerate() {
        let [ctl, off, flags, payload @ ..] = chunk else { break };
        let d = usize::from(ctl & 1);
        // Mostly in order; sometimes back (retransmit) or ahead (hole / reordering).
        let seq = next[d].wrapping_add(u32::from(*off).wrapping_sub(if ctl & 2 == 0 { u32::from(*off) } else { 8 }));
        next[d] = seq.wrapping_add(payload.len() as u32);
        let f = frame(d == 0, seq, *flags & 0x1F, payload);
        pcapng::write_packet(&mut file, 0, i as u64 * 1000, f.len() as u32, &f);
    }
    let report = if mode & 2 == 0 {
        inspect(&file, &Filter::default())
    } else {
        let zero = "00".repeat(32);
        let text = format!(
            "CLIENT_RANDOM {zero} {}\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {zero} {}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {zero} {}\nCLIENT_TRAFFIC_SECRET_0 {zero} {}\nSERVER_TRAFFIC_SECRET_0 {zero} {}\n",
            "01".repeat(48), "02".repeat(32), "03".repeat(32), "04".repeat(32), "05".repeat(32)
        );
        let options = InspectOptions { keylog: KeyLog::parse(text.as_bytes()).0, ..InspectOptions::default() };
        inspect_with(&file, &options)
    };
    assert!(report.file_error.is_none());
});
