//! The SSE app's paths: `GET /events` (a `text/event-stream` of the lab's numbered push events,
//! resumable with `Last-Event-ID`), `POST /echo?stream=ID` (answered as an event on that
//! stream), and the polling paths beside them, `GET /poll?after=ID` (answers at once) and
//! `GET /poll/long?after=ID` (held until the next event or a timeout), so push delivery over
//! SSE, long-polling and plain polling can be compared with the WS app's. The SSE app and the
//! HTTPS app serve them from one feed (`crate::events`).

mod poll;
pub(crate) mod stream;

use std::time::Duration;

use protolab_wire::http1::query;

pub(crate) use crate::events::Kind;
pub(crate) use poll::answer;

/// The `retry:` every stream starts with: how long a browser's `EventSource` waits before it
/// reconnects. A second brings a client back quickly after a lab restart without a storm.
const RETRY_MS: u64 = 1000;

/// Heartbeat interval when the client does not ask for one (`?heartbeat_ms=`): under
/// the 30–60 s after which proxies and load balancers commonly drop a silent connection.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// A whole number of milliseconds from query parameter `name`, within `range`.
pub(crate) fn millis_param(
    query: &str,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: Duration,
) -> Result<Duration, String> {
    match query::find(query, name) {
        Ok(None) => Ok(default),
        Ok(Some(value)) => match value.parse::<u64>() {
            Ok(ms) if range.contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "{name} must be a whole number of milliseconds from {} to {}, not `{value}`\n",
                range.start(),
                range.end()
            )),
        },
        Err(e) => Err(format!("bad query string: {e}\n")),
    }
}
