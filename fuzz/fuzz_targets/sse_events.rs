//! Event streams, differentially: the same input fed whole and fed in pieces whose size the
//! first byte chooses must give the same events, or the same error; what is held stays within the
//! limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::sse::{Event, Limits, Parser, SseError};

fn run(input: &[u8], step: usize, limits: Limits) -> Result<(Vec<Event>, usize), SseError> {
    let mut parser = Parser::new(limits);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let d = parser.decode(&buf)?;
            assert!(d.consumed <= buf.len());
            buf.drain(..d.consumed);
            match d.event {
                Some(e) => {
                    assert!(e.data.len() <= limits.max_event * 3);
                    events.push(e);
                }
                None => {
                    // No event: what is left is one partial line at most, within the limit
                    // (plus a partial BOM or a CR's LF).
                    assert!(buf.len() <= limits.max_line + 3);
                    break;
                }
            }
        }
    }
    Ok((events, buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: usize::from(knob >> 4) * 8 + 1,
        max_event: usize::from(knob >> 4) * 16 + 1,
    };
    let step = usize::from(knob & 0x0F) + 1;
    let whole = run(input, input.len(), limits);
    let split = run(input, step, limits);
    match (&whole, &split) {
        (Ok((a, _)), Ok((b, _))) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        other => panic!("splitting changed the outcome: {other:?}"),
    }
});
