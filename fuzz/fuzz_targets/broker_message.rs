//! Notifications as the Redis broker reads them back from pub/sub and its streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::broker::{decode_notification, MAX_MESSAGE_LEN};
use protolab_hub::Position;

fuzz_target!(|data: &[u8]| {
    if let Ok(notification) = decode_notification(data) {
        assert!(data.len() <= MAX_MESSAGE_LEN);
        assert!(notification.offset >= 1);
        // whatever is delivered can be sent back by a client as its position
        let written = notification.position().to_string();
        assert_eq!(written.parse::<Position>(), Ok(notification.position()));
    }
});
