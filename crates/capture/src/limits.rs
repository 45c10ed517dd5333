//! The dissector's bounds, shared by every layer's decoder (`dissect`, `h2`, `sse`).

/// Most payload bytes shown per WebSocket frame, HTTP/2 debug text or SSE event.
pub const PREVIEW_BYTES: usize = 64;

/// Most application bytes buffered per direction while waiting for a whole HTTP head,
/// WebSocket frame or HTTP/2 frame; past it the direction is reported undecodable and skipped.
pub const MAX_MESSAGE_BUFFER: usize = 16 << 20;
