//! Positions (`EPOCH:OFFSET`) and SSE `Last-Event-ID`s. The input's first line is a
//! comma-separated channel list, the rest the id. An accepted position prints back as itself;
//! an accepted id gives one start per channel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::sse::parse_last_event_id;
use protolab_hub::{ChannelName, Position};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(position) = text.parse::<Position>() {
        let again: Position = position.to_string().parse().expect("a position prints as one");
        assert_eq!(again, position);
    }
    let (names, id) = text.split_once('\n').unwrap_or((text, ""));
    let channels: Vec<ChannelName> = names.split(',').filter_map(|n| n.parse().ok()).collect();
    if let Ok(starts) = parse_last_event_id(id, &channels) {
        assert_eq!(starts.len(), channels.len());
    }
});
