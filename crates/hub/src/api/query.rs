//! The `GET /api/history` query: a plain parser over the query string, so it can be fuzzed.

use crate::history::Since;
use crate::notification::{ChannelName, InvalidField, Position};

/// A parsed `/api/history` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// `channel=` (required).
    pub channel: ChannelName,
    /// `since=start` or `since=EPOCH:OFFSET`; absent means everything history holds.
    pub since: Since,
    /// `limit=` (1 to the history size; default 100, capped there).
    pub limit: usize,
    /// `token=`: a subscriber JWT, for clients that cannot set headers.
    pub token: Option<String>,
}

/// Parses `query` (the part after `?`). Each parameter at most once; unknown ones are refused,
/// so a misspelt `sinse=` does not silently read from the start.
pub fn parse_history_query(query: &str, max_limit: usize) -> Result<HistoryQuery, InvalidField> {
    let mut channel = None;
    let mut since = None;
    let mut limit = None;
    let mut token = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let (slot, name): (&mut Option<String>, &'static str) = match key.as_ref() {
            "channel" => (&mut channel, "channel"),
            "since" => (&mut since, "since"),
            "limit" => (&mut limit, "limit"),
            "token" => (&mut token, "token"),
            _ => {
                return Err(InvalidField::new(
                    "query",
                    format!("unknown parameter {key:?}; use channel, since, limit, token"),
                ))
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(InvalidField::new(name, "given more than once"));
        }
    }
    let channel: ChannelName = channel
        .ok_or_else(|| InvalidField::new("channel", "missing; add ?channel=NAME"))?
        .parse()?;
    let since = match since.as_deref() {
        None | Some("start") => Since::Start,
        Some(position) => Since::Position(
            position
                .parse::<Position>()
                .map_err(|e| InvalidField::new("since", format!("{}; or `start`", e.reason)))?,
        ),
    };
    let limit = match limit {
        None => 100.min(max_limit),
        Some(limit) => {
            let limit: usize =
                limit.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                    InvalidField::new("limit", "must be a whole number, 1 or more")
                })?;
            limit.min(max_limit)
        }
    };
    Ok(HistoryQuery {
        channel,
        since,
        limit,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries() {
        let q = parse_history_query("channel=ops&since=ab12:7&limit=5000", 1000).expect("valid");
        assert_eq!(q.channel.as_str(), "ops");
        assert_eq!(q.limit, 1000);
        assert!(matches!(
            q.since,
            Since::Position(Position { offset: 7, .. })
        ));
        assert_eq!(
            parse_history_query("channel=ops", 1000)
                .expect("valid")
                .since,
            Since::Start
        );
        for (bad, field) in [
            ("", "channel"),
            ("channel=ops&channel=x", "channel"),
            ("channel=ops&sinse=1", "query"),
            ("channel=ops&since=7", "since"),
            ("channel=ops&limit=0", "limit"),
            ("channel=ops&limit=-1", "limit"),
            ("channel=a%20b", "channel"),
        ] {
            assert_eq!(
                parse_history_query(bad, 1000).expect_err(bad).field,
                field,
                "{bad}"
            );
        }
    }
}
