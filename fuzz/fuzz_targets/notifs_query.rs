//! `/notifs` query strings: the story's level letter and message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_hub::story::{parse_notifs_query, story_message};
use protolab_hub::{Notification, PublicationLimits};

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let limits = PublicationLimits::default();
    if let Ok(publication) = parse_notifs_query(&query, &limits) {
        assert!(publication.validate(&limits).is_ok());
        assert!(!publication.body.trim().is_empty());
        // the message the story's page gets back is the letter and the body as given
        let notification = Notification {
            channel: publication.channel,
            offset: 1,
            epoch: "e".to_owned(),
            level: publication.level,
            title: publication.title,
            body: publication.body.clone(),
            data: None,
            time_ms: 0,
        };
        let message = story_message(&notification);
        assert_eq!(&message[1..], publication.body);
    }
});
