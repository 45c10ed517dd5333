//! One answer of the lab's `/poll` or `/poll/long` read into the pushes it carries:
//! `{"events":[{"id":"EPOCH-SEQ","data":{…,"sent_at_us":N}}…],"last":ID,"gap":{"missed":N},"reset":B}`.
//!
//! Kept apart from the polling client (`client/poll.rs`) so the bytes a server sends can be
//! fuzzed without a connection (`fuzz/fuzz_targets/poll_answer.rs`). The body is bounded by the
//! client before it gets here; serde_json bounds nesting at 128 levels.

use serde::Deserialize;

/// The lab's answer to a poll.
#[derive(Deserialize)]
struct Answer {
    events: Vec<PolledEvent>,
    last: String,
    gap: Option<Gap>,
    #[serde(default)]
    reset: bool,
}

#[derive(Deserialize)]
struct PolledEvent {
    id: String,
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Gap {
    missed: u64,
}

/// What an answer gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// Events carrying `sent_at_us`, in order.
    pub pushes: Vec<PolledPush>,
    /// Events without `sent_at_us` (not the lab's pushes), skipped.
    pub skipped: u64,
    /// Events the lab says fell out of its ring before this answer.
    pub missed: u64,
    /// Whether the answer held no event.
    pub empty: bool,
    /// The id to ask `after` next.
    pub last: String,
}

/// One pushed event of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolledPush {
    /// When the lab sent it (µs since the Unix epoch, the lab's clock).
    pub sent_at_us: u64,
    /// Its `data` as JSON text, in bytes.
    pub payload: usize,
}

/// Reads `body`, the answer to a poll after `previous` (the last id seen, `None` before the
/// first answer). Every event must follow the one before it (same epoch, next sequence
/// number) unless the answer reports a gap or a reset; the error says what is wrong.
pub fn read(body: &[u8], previous: Option<&str>) -> Result<Polled, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("a poll's answer is not the lab's JSON: {e}"))?;
    let mut previous = previous.map(str::to_owned);
    let missed = answer.gap.as_ref().map_or(0, |g| g.missed);
    if answer.gap.is_some() || answer.reset {
        previous = None;
    }
    let empty = answer.events.is_empty();
    let mut pushes = Vec::with_capacity(answer.events.len());
    let mut skipped = 0;
    for event in answer.events {
        if let Some(last) = &previous {
            if !follows(last, &event.id) {
                return Err(format!(
                    "event {} came after {last}: a poll repeated or skipped events without reporting a gap",
                    event.id
                ));
            }
        }
        previous = Some(event.id);
        match event
            .data
            .get("sent_at_us")
            .and_then(serde_json::Value::as_u64)
        {
            Some(sent_at_us) => pushes.push(PolledPush {
                sent_at_us,
                payload: event.data.to_string().len(),
            }),
            None => skipped += 1,
        }
    }
    if let Some(last) = &previous {
        if *last != answer.last && !answer.reset {
            return Err(format!(
                "a poll's answer ends at event {last} but names {} as its last",
                answer.last
            ));
        }
    }
    Ok(Polled {
        pushes,
        skipped,
        missed,
        empty,
        last: answer.last,
    })
}

/// `EPOCH-SEQ` as the lab's feed writes event ids.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

/// Whether `next` is the event right after `last`: the same epoch, the next sequence number.
fn follows(last: &str, next: &str) -> bool {
    match (parse_id(last), parse_id(next)) {
        (Some((e1, s1)), Some((e2, s2))) => e1 == e2 && s1.checked_add(1) == Some(s2),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_within_an_epoch_only() {
        assert!(follows("1733-41", "1733-42"));
        assert!(!follows("1733-41", "1733-41"));
        assert!(!follows("1733-41", "1733-43"));
        assert!(!follows("1733-41", "1734-42"));
        assert!(!follows("x", "1733-42"));
    }

    #[test]
    fn answers_are_checked_for_order_and_gaps() {
        let body = br#"{"events":[{"id":"7-2","data":{"sent_at_us":5}},{"id":"7-3","data":{}}],"last":"7-3"}"#;
        let polled = read(body, Some("7-1")).unwrap();
        assert_eq!(
            polled.pushes,
            [PolledPush {
                sent_at_us: 5,
                payload: 16
            }]
        );
        assert_eq!(
            (polled.skipped, polled.empty, polled.last.as_str()),
            (1, false, "7-3")
        );
        let err = read(body, Some("7-2")).unwrap_err();
        assert!(err.contains("came after 7-2"), "{err}");
        let gap = br#"{"events":[{"id":"7-9","data":{}}],"last":"7-9","gap":{"missed":6}}"#;
        assert_eq!(read(gap, Some("7-2")).unwrap().missed, 6);
        let lying = br#"{"events":[{"id":"7-2","data":{}}],"last":"7-5"}"#;
        assert!(read(lying, Some("7-1")).unwrap_err().contains("names 7-5"));
        assert!(read(b"{\"events\":", None)
            .unwrap_err()
            .contains("not the lab's JSON"));
    }
}
