//! Messages on socket.io's Redis adapter channels, as the hub reads them from other socket.io
//! servers (npm `@socket.io/redis-adapter`), and the channel names they come on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::socketio::adapter_wire::{
    decode_broadcast, encode_broadcast, room_of_channel, DEFAULT_KEY, MAX_ADAPTER_MESSAGE,
    MAX_ROOMS,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(channel) = std::str::from_utf8(data) {
        if let Some(room) = room_of_channel(DEFAULT_KEY, channel) {
            assert!(channel.len() > room.len());
        }
    }
    if let Ok(broadcast) = decode_broadcast(data) {
        assert!(data.len() <= MAX_ADAPTER_MESSAGE);
        assert!(!broadcast.event.is_empty());
        assert!(broadcast.rooms.len() <= MAX_ROOMS && broadcast.except.len() <= MAX_ROOMS);
        // what the hub writes for one room and one argument reads back the same
        if let ([room], [arg]) = (broadcast.rooms.as_slice(), broadcast.args.as_slice()) {
            let written = encode_broadcast(&broadcast.uid, room, &broadcast.event, arg)
                .expect("a decoded broadcast encodes");
            let read = decode_broadcast(&written).expect("the hub's own message decodes");
            assert_eq!(read.event, broadcast.event);
            assert_eq!(read.rooms, broadcast.rooms);
            assert_eq!(&read.args, &broadcast.args);
        }
    }
});
