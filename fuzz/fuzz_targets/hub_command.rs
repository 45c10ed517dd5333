//! The hub's WebSocket subscriber commands (`{"type":"subscribe",...}`): any text gives a
//! command or a refusal with a 400/413 code, never a panic; what is accepted is within limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::protocol::{parse_command, Command};
use protolab_hub::ChannelName;

const MAX_CHANNELS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_command(text, MAX_CHANNELS) {
        Ok(Command::Subscribe { channels, .. }) => {
            assert!(!channels.is_empty() && channels.len() <= MAX_CHANNELS);
            for (channel, _) in channels {
                assert_eq!(channel.as_str().parse::<ChannelName>().ok(), Some(channel));
            }
        }
        Ok(Command::Unsubscribe { channels, .. }) => {
            assert!(!channels.is_empty() && channels.len() <= MAX_CHANNELS);
        }
        Ok(Command::Ping { .. }) => {}
        Err(err) => assert!(err.code == 400 || err.code == 413),
    }
});
