//! Chunked bodies, differentially: the same input fed whole, and fed in pieces whose size
//! the first byte chooses, must end the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::{ChunkedDecoder, ChunkedError};

type Outcome = Result<(Vec<u8>, bool, usize), ChunkedError>;

fn run(input: &[u8], step: usize, limit: u64) -> Outcome {
    let mut dec = ChunkedDecoder::with_limit(limit);
    let mut buf = Vec::new();
    let mut body = Vec::new();
    let mut consumed = 0;
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        let ev = dec.decode(&buf, &mut body)?;
        assert!(ev.consumed <= buf.len());
        buf.drain(..ev.consumed);
        consumed += ev.consumed;
        if ev.done {
            return Ok((body, true, consumed));
        }
    }
    Ok((body, false, consumed))
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let limit = if knob & 0x80 != 0 {
        u64::from(knob & 0x7F)
    } else {
        1 << 20
    };
    let step = usize::from(knob & 0x0F) + 1;
    let whole = run(input, input.len(), limit);
    let split = run(input, step, limit);
    match (&whole, &split) {
        (Ok((b1, true, c1)), Ok((b2, true, c2))) => assert_eq!((b1, c1), (b2, c2)),
        (Ok((_, false, _)), Ok((_, false, _))) => {}
        (Err(e1), Err(e2)) => assert_eq!(e1, e2),
        other => panic!("splitting changed the outcome: {other:?}"),
    }
    if let Ok((body, _, _)) = &whole {
        assert!(body.len() as u64 <= limit);
    }
});
