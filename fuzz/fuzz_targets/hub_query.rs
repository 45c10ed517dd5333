//! The hub's query strings: `/api/history?channel=&since=&limit=` and
//! `/connection/sse?channel=...`. Accepted queries are within their limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::api::parse_history_query;
use protolab_hub::sse::parse_sse_query;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = parse_history_query(text, 1000) {
        assert!((1..=1000).contains(&query.limit));
    }
    if let Ok(query) = parse_sse_query(text, 4) {
        assert!(!query.channels.is_empty() && query.channels.len() <= 4);
    }
});
