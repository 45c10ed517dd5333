//! The polling side of a connection (`poll://`, `polls://`, `long-poll://`, `long-polls://`),
//! push workload only: `GET PATH?after=LAST` over one keep-alive HTTP/1.1 connection, the
//! lab's SSE app answering JSON `{"events":[{"id":…,"data":{…}}…],"last":ID,"gap":…,"reset":…}`
//! (`/poll` at once, `/poll/long` held until there is an event or `timeout_ms` passes: 204).
//!
//! Plain polling asks every [`Plan::poll_interval`] (the run's push interval), long polling
//! asks again as soon as an answer arrives. The first request carries no `after`: the lab then
//! starts at its newest event. Every event id must follow the last one seen (same epoch, next
//! sequence number) unless the answer reports a gap (events dropped from the lab's ring, their
//! number counted) or a reset (another feed): a repeated or skipped id is a protocol error.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use protolab_wire::http1::HeadLimits;
use protolab_wire::http1::{parse_response_with, write_request_head, BodyFraming, ChunkedDecoder};

use super::ws::Push;
use super::{bounded, Conn, Failure, Plan, Proto};
use crate::report::ErrorKind;

/// Largest answer body read: the lab's ring holds a bounded number of events, so a larger
/// answer is not the lab's; it is an error, not a buffer that grows without bound.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Longest a long poll asks the lab to hold a request (`timeout_ms`); shorter when the run's
/// request timeout is, so a held request ends in a 204 rather than in our timeout.
const MAX_HOLD: Duration = Duration::from_secs(25);

/// Where a polling connection is.
pub(super) struct Poller {
    long: bool,
    /// Plain polling: when the next request is due.
    next_due: Instant,
    /// Plain polling: time between requests.
    interval: Duration,
    /// Bound on one request and its answer.
    request_timeout: Duration,
    /// The URL's path and query; `after` (and `timeout_ms`) are appended.
    path: String,
    /// `Host` and the run's extra headers.
    fields: Vec<(String, String)>,
    /// The `last` of the latest answer; `None` until the first answer names one.
    last: Option<String>,
    /// Events of the latest answer not taken yet.
    queue: VecDeque<Push>,
}

fn protocol(what: String) -> Failure {
    Failure::new(ErrorKind::Protocol, what)
}

impl Conn {
    /// Makes this connection a polling one; the first request goes out on the first push asked.
    pub(super) fn start_polling(&mut self, plan: &Plan) {
        let mut fields = vec![
            ("Host".to_owned(), plan.target.authority()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        fields.extend(plan.headers.iter().cloned());
        self.proto = Proto::Poll(Box::new(Poller {
            long: plan.target.scheme.is_long_poll(),
            next_due: Instant::now(),
            interval: plan.poll_interval,
            request_timeout: plan.request_timeout,
            path: plan.target.path.clone(),
            fields,
            last: None,
            queue: VecDeque::new(),
        }));
    }

    /// Events taken from answers and not handed out yet.
    pub(super) fn polled_ahead(&self) -> usize {
        match &self.proto {
            Proto::Poll(poller) => poller.queue.len() + self.buf.len(),
            _ => self.buf.len(),
        }
    }

    /// The next polled event carrying `sent_at_us`, its delay counted to when the answer that
    /// brought it was read; polls until an answer brings one.
    pub(super) async fn poll_next_push(&mut self, deadline: Instant) -> Result<Push, Failure> {
        loop {
            let Proto::Poll(poller) = &mut self.proto else {
                return Err(protocol("not a polling connection".into()));
            };
            if let Some(push) = poller.queue.pop_front() {
                return Ok(push);
            }
            if !poller.long {
                // On schedule, without catching up in a burst after a slow answer.
                let due = poller.next_due;
                poller.next_due = due.max(Instant::now()) + poller.interval;
                if due > Instant::now() {
                    if due >= deadline {
                        tokio::time::sleep_until(deadline.into()).await;
                        return Err(Failure::new(
                            ErrorKind::Timeout,
                            "timed out waiting for the next poll",
                        ));
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            let bound = deadline.min(Instant::now() + poller.request_timeout);
            bounded(bound, "waiting for a poll's answer", self.poll_once()).await?;
        }
    }

    /// One request and its answer; the answer's events go to the queue.
    async fn poll_once(&mut self) -> Result<(), Failure> {
        let Proto::Poll(poller) = &self.proto else {
            return Err(protocol("not a polling connection".into()));
        };
        let mut query = Vec::new();
        if let Some(last) = &poller.last {
            query.push(format!("after={last}"));
        }
        if poller.long {
            let hold = MAX_HOLD.min(poller.request_timeout / 2).as_millis().max(1);
            query.push(format!("timeout_ms={hold}"));
        }
        let mut path = poller.path.clone();
        if !query.is_empty() {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&query.join("&"));
        }
        let fields: Vec<(&str, &[u8])> = poller
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        self.out.clear();
        write_request_head(&mut self.out, "GET", &path, &fields);
        self.send_out("sending a poll").await?;
        self.extras.polls += 1;
        let body = self.read_poll_answer().await?;
        let Some(body) = body else {
            // A long poll held until its timeout with nothing new.
            self.extras.empty_polls += 1;
            return Ok(());
        };
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let Proto::Poll(poller) = &mut self.proto else {
            return Err(protocol("not a polling connection".into()));
        };
        let polled = crate::poll_answer::read(&body, poller.last.as_deref()).map_err(protocol)?;
        if polled.empty {
            self.extras.empty_polls += 1;
        }
        self.extras.missed += polled.missed;
        self.extras.skipped += polled.skipped;
        for push in polled.pushes {
            let delay = now_us.saturating_sub(u128::from(push.sent_at_us));
            poller.queue.push_back(Push {
                delay: Duration::from_micros(u64::try_from(delay).unwrap_or(u64::MAX)),
                payload: push.payload,
            });
        }
        poller.last = Some(polled.last);
        Ok(())
    }

    /// Reads an answer: 200 with a body (returned), or 204 (`None`).
    async fn read_poll_answer(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        let (head, mut pos) = loop {
            let parsed = parse_response_with(&self.buf, &HeadLimits::default(), |head| {
                (
                    head.status,
                    head.reason.to_owned(),
                    head.body_framing("GET"),
                )
            })
            .map_err(|e| protocol(format!("poll response head: {e}")))?;
            if let Some(parsed) = parsed {
                break parsed;
            }
            self.fill("reading a poll's answer").await?;
        };
        let (status, reason, framing) = head;
        if status != 200 && status != 204 {
            return Err(protocol(format!(
                "the poll was refused: status {status} {reason} (is the URL the SSE app's /poll or /poll/long?)"
            )));
        }
        let mut body = Vec::new();
        match framing.map_err(|e| protocol(format!("poll response framing: {e}")))? {
            BodyFraming::Empty => {}
            BodyFraming::ContentLength(n) => {
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= MAX_ANSWER)
                    .ok_or_else(|| {
                        protocol(format!(
                            "a {n}-byte poll answer, over the {MAX_ANSWER}-byte limit"
                        ))
                    })?;
                while self.buf.len() < pos + n {
                    self.fill("reading a poll's answer").await?;
                }
                body.extend_from_slice(&self.buf[pos..pos + n]);
                pos += n;
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::with_limit(MAX_ANSWER as u64);
                loop {
                    let step = decoder
                        .decode(&self.buf[pos..], &mut body)
                        .map_err(|e| protocol(format!("chunked poll answer: {e}")))?;
                    pos += step.consumed;
                    if step.done {
                        break;
                    }
                    self.fill("reading a poll's answer").await?;
                }
            }
            BodyFraming::UntilClose => {
                return Err(protocol(
                    "a poll's answer has no length, so its connection cannot be kept alive".into(),
                ))
            }
        }
        self.buf.drain(..pos);
        Ok((status == 200).then_some(body))
    }
}
