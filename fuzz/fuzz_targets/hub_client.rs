//! What the hub's client side reads from the network: the first byte picks a publish answer
//! (the next two bytes its status, the rest its body) or a WebSocket message from the hub. Either
//! is read into a value or refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::client::{parse_hub_message, parse_publish_answer, HubMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        let (status, body) = match rest {
            [high, low, body @ ..] => (u16::from_be_bytes([*high, *low]), body),
            _ => return,
        };
        if parse_publish_answer(status, body).is_ok() {
            assert_eq!(status, 202, "only a 202 is accepted");
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(HubMessage::Notification(notification)) = parse_hub_message(text) {
            // a notification's position prints and reads back as itself
            let position = notification.position();
            if let Ok(again) = position.to_string().parse::<protolab_hub::Position>() {
                assert_eq!(again, position);
            }
        }
    }
});
