//! Notifications as the Redis broker writes them (pub/sub messages and stream entries): the
//! notification's JSON, offset and epoch first, put together by the publish script.

use serde::Serialize;

use crate::notification::{ChannelName, InvalidField, Level, Notification, Position, Publication};

/// Largest message read back from Redis, in bytes: a publication at its largest
/// ([`crate::PublicationLimits`]' defaults, about 21 KiB) with room for JSON escaping.
pub const MAX_MESSAGE_LEN: usize = 128 * 1024;

/// The notification without its offset and epoch, which the publish script adds.
#[derive(Serialize)]
pub(crate) struct Unnumbered<'a> {
    channel: &'a ChannelName,
    level: Level,
    title: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
    time_ms: u64,
}

impl<'a> Unnumbered<'a> {
    pub(crate) fn new(publication: &'a Publication, time_ms: u64) -> Self {
        Self {
            channel: &publication.channel,
            level: publication.level,
            title: &publication.title,
            body: &publication.body,
            data: publication.data.as_ref(),
            time_ms,
        }
    }
}

/// Reads a notification the broker wrote, refusing anything larger than [`MAX_MESSAGE_LEN`]
/// or with an epoch a client could not send back as a [`Position`].
pub fn decode_notification(bytes: &[u8]) -> Result<Notification, InvalidField> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(InvalidField::new(
            "notification",
            format!(
                "is {} bytes, at most {MAX_MESSAGE_LEN} allowed",
                bytes.len()
            ),
        ));
    }
    let notification: Notification = serde_json::from_slice(bytes)
        .map_err(|e| InvalidField::new("notification", e.to_string()))?;
    let position = notification.position().to_string();
    if position.parse::<Position>().as_ref() != Ok(&notification.position()) {
        return Err(InvalidField::new(
            "epoch",
            "must be 1 to 64 ASCII letters or digits",
        ));
    }
    if notification.offset == 0 {
        return Err(InvalidField::new("offset", "must be at least 1"));
    }
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_script_writes_reads_back() {
        let publication: Publication =
            serde_json::from_str(r#"{"channel":"ops","level":"error","body":"disk \"full\""}"#)
                .expect("valid publication");
        let json = serde_json::to_string(&Unnumbered::new(&publication, 7)).expect("json");
        // what publish.lua does
        let message = format!(r#"{{"offset":3,"epoch":"ab12",{}"#, &json[1..]);
        let notification = decode_notification(message.as_bytes()).expect("decodes");
        assert_eq!(notification.offset, 3);
        assert_eq!(notification.epoch, "ab12");
        assert_eq!(notification.body, "disk \"full\"");
        assert_eq!(notification.time_ms, 7);
        for bad in [
            &b"{}"[..],
            br#"{"offset":0,"epoch":"ab","channel":"o","level":"info","title":"","body":"","time_ms":1}"#,
            br#"{"offset":1,"epoch":"a:b","channel":"o","level":"info","title":"","body":"","time_ms":1}"#,
            &[b' '; MAX_MESSAGE_LEN + 1],
        ] {
            assert!(decode_notification(bad).is_err());
        }
    }
}
