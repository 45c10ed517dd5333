//! The capture-file reader (pcapng and classic pcap), differentially: the file read from one
//! buffer and read from a buffer that grows in two steps must give the same blocks and the
//! same error, and nothing may panic or consume more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::pcapng::{Block, PcapError, Reader};

fn run(data: &[u8], cuts: &[usize]) -> (Vec<String>, Option<PcapError>) {
    let mut reader = Reader::new();
    let mut blocks = Vec::new();
    let mut at = 0;
    for &end in cuts {
        loop {
            match reader.next(&data[at..end]) {
                Ok(Some((block, used))) => {
                    assert!(used > 0 && at + used <= end);
                    if let Block::Packet(p) = &block {
                        assert!(p.data.len() <= used);
                    }
                    blocks.push(format!("{block:?}"));
                    at += used;
                }
                Ok(None) => break,
                Err(e) => return (blocks, Some(e)),
            }
        }
    }
    (blocks, None)
}

fuzz_target!(|input: &[u8]| {
    let [split, data @ ..] = input else { return };
    let at = data.len() * usize::from(*split) / 255;
    assert_eq!(run(data, &[data.len()]), run(data, &[at, data.len()]));
});
