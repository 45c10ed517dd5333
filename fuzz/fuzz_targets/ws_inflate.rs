//! The permessage-deflate inflater under a size limit, differentially: a message fed whole
//! and fed in two pieces at an input-chosen point inflates to the same bytes, or fails both
//! times, the output never exceeds the limit, and its allocation never grows past it.
//! Then a compress/inflate round trip of the same bytes with the chosen window.
//!
//! Input layout: `[flags, limit_hi, limit_lo, split, compressed...]`; flags bits 0–2 pick
//! the window (8 + n, capped at 15), bit 3 no context takeover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::ws::deflate::{Deflater, InflateError, Inflater};

fn inflate(
    inflater: &mut Inflater,
    pieces: &[&[u8]],
    limit: usize,
) -> (Vec<u8>, Result<(), InflateError>) {
    let mut out = Vec::new();
    let mut result = Ok(());
    for piece in pieces {
        result = inflater.inflate(piece, &mut out, limit);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = inflater.finish(&mut out, limit);
    }
    assert!(out.len() <= limit, "{} > {limit}", out.len());
    assert!(out.capacity() <= limit, "allocated {} > {limit}", out.capacity());
    (out, result)
}

fuzz_target!(|data: &[u8]| {
    let [flags, hi, lo, split, compressed @ ..] = data else {
        return;
    };
    let bits = (8 + (flags & 0x7)).min(15);
    let no_context_takeover = flags & 0x8 != 0;
    let limit = usize::from(u16::from_be_bytes([*hi, *lo])) * 4;
    let at = compressed.len() * usize::from(*split) / 255;
    let whole = inflate(
        &mut Inflater::new(bits, no_context_takeover),
        &[compressed],
        limit,
    );
    let (a, b) = compressed.split_at(at);
    let split = inflate(&mut Inflater::new(bits, no_context_takeover), &[a, b], limit);
    // What an error leaves in the buffer is unspecified (the connection is closed anyway).
    assert_eq!(whole.1.is_ok(), split.1.is_ok(), "{:?} / {:?}", whole.1, split.1);
    if whole.1.is_ok() {
        assert_eq!(whole.0, split.0);
    }

    // Whatever we compress, twice over one context, inflates back.
    let mut deflater = Deflater::new(bits, no_context_takeover, u32::from(flags >> 4) % 10);
    let mut inflater = Inflater::new(bits, no_context_takeover);
    for _ in 0..2 {
        let mut wire = Vec::new();
        deflater.compress(compressed, &mut wire).expect("compress");
        let (back, result) = inflate(&mut inflater, &[&wire], compressed.len());
        assert_eq!(result, Ok(()));
        assert_eq!(back, compressed);
    }
});
