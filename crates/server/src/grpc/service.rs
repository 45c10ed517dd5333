//! The `protolab.lab.v1.Lab` service: unary and bidirectional echo, and server push.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::lab_server::Lab;
use super::proto::{EchoReply, EchoRequest, PushMessage, PushRequest};
use crate::cancel::CancelToken;

/// Shortest push interval a client may ask for: a client can make the lab send 100 messages a
/// second per call, not a busy loop.
pub(crate) const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Longest push interval a client may ask for.
pub(crate) const MAX_PUSH_INTERVAL: Duration = Duration::from_secs(3600);

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service's state, shared by every call of the listener.
#[derive(Debug, Clone)]
pub(crate) struct LabService {
    /// Interval of `Push` when the request asks for 0.
    pub(crate) push_interval: Duration,
    /// A bidirectional stream that receives nothing for this long ends.
    pub(crate) idle_timeout: Duration,
    /// Fired when the lab begins shutting down: streams end with UNAVAILABLE.
    pub(crate) graceful: CancelToken,
}

fn shutting_down() -> Status {
    Status::unavailable("the lab is shutting down; reconnect to another instance or later")
}

#[tonic::async_trait]
impl Lab for LabService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let payload = request.into_inner().payload;
        Ok(Response::new(EchoReply { payload }))
    }

    type EchoStreamStream = ReplyStream<EchoReply>;

    async fn echo_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        let state = (request.into_inner(), self.clone());
        let replies = futures_util::stream::unfold(Some(state), |state| async move {
            let (mut inbound, service) = state?;
            let next = tokio::select! {
                biased;
                () = service.graceful.cancelled() => return Some((Err(shutting_down()), None)),
                next = tokio::time::timeout(service.idle_timeout, inbound.message()) => next,
            };
            match next {
                Ok(Ok(Some(message))) => Some((
                    Ok(EchoReply {
                        payload: message.payload,
                    }),
                    Some((inbound, service)),
                )),
                // The client half-closed: the call ends with OK.
                Ok(Ok(None)) => None,
                // Oversize or undecodable message, reset stream: tonic's status says which.
                Ok(Err(status)) => Some((Err(size_limit_status(status)), None)),
                Err(_) => Some((
                    Err(Status::deadline_exceeded(format!(
                        "no message for {:?} (the lab's idle timeout, --idle-timeout)",
                        service.idle_timeout
                    ))),
                    None,
                )),
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    type PushStream = ReplyStream<PushMessage>;

    async fn push(
        &self,
        request: Request<PushRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let PushRequest { interval_ms, count } = request.into_inner();
        let interval = if interval_ms == 0 {
            self.push_interval
        } else {
            Duration::from_millis(u64::from(interval_ms))
        };
        if !(MIN_PUSH_INTERVAL..=MAX_PUSH_INTERVAL).contains(&interval) {
            return Err(Status::invalid_argument(format!(
                "interval_ms {interval_ms} is out of range: ask for {} to {} ms, or 0 for the lab's interval",
                MIN_PUSH_INTERVAL.as_millis(),
                MAX_PUSH_INTERVAL.as_millis()
            )));
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        // A client that reads slowly gets fewer messages, not a burst of missed ones.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let graceful = self.graceful.clone();
        let pushes = futures_util::stream::unfold(
            Some((ticker, graceful, 0_u64)),
            move |state| async move {
                let (mut ticker, graceful, sent) = state?;
                if count != 0 && sent >= u64::from(count) {
                    return None;
                }
                tokio::select! {
                    biased;
                    () = graceful.cancelled() => Some((Err(shutting_down()), None)),
                    _ = ticker.tick() => {
                        let seq = sent + 1;
                        let message = PushMessage { seq, unix_ms: unix_millis() };
                        Some((Ok(message), Some((ticker, graceful, seq))))
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(pushes)))
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// tonic's OUT_OF_RANGE for a message over the size limit as RESOURCE_EXHAUSTED (see
/// `policy::CallPolicy`); in this service no other OUT_OF_RANGE arises.
fn size_limit_status(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange {
        Status::resource_exhausted(status.message().to_owned())
    } else {
        status
    }
}
