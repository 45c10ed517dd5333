//! Each hub process's one pub/sub listener: it feeds the process's hub with the notifications
//! any process published, and after every reconnect refills the hub's channels from the
//! streams, so a pub/sub message lost while it was away is still delivered, in order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::Shared;
use crate::broker::codec::decode_notification;
use crate::broker::BrokerError;
use crate::notification::ChannelName;

/// First wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a quiet listener checks that its connection still answers.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

/// Runs until the broker is dropped (which aborts it).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = listen(&shared, &mut backoff).await;
        shared.listening.send_replace(false);
        tracing::warn!(error = %error, retry_in = ?backoff, "Redis fan-out listener lost; reconnecting");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: subscribe, refill, then deliver until something fails.
async fn listen(shared: &Shared, backoff: &mut Duration) -> BrokerError {
    let connected = shared
        .call(
            "connecting the fan-out listener",
            shared.client.get_async_pubsub(),
        )
        .await;
    let (mut sink, mut messages) = match connected {
        Ok(pubsub) => pubsub.split(),
        Err(error) => return error,
    };
    if let Err(error) = shared
        .call(
            "SUBSCRIBE to the fan-out channel",
            sink.subscribe(shared.keys.fanout()),
        )
        .await
    {
        return error;
    }
    shared.listening.send_replace(true);
    *backoff = MIN_BACKOFF;
    // Subscribed first, refilled second: whatever was published in between arrives on both
    // paths, and the hub ignores the repeat.
    if let Err(error) = refill(shared).await {
        return error;
    }
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.reset();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return closed(shared);
                };
                match decode_notification(message.get_payload_bytes()) {
                    Ok(notification) => {
                        if let Err(error) = shared.accept(notification).await {
                            return error;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ignoring a fan-out message the hub did not write");
                    }
                }
            }
            _ = health.tick() => {
                if let Err(error) = shared.call("PING on the fan-out listener", sink.ping::<redis::Value>()).await {
                    return error;
                }
            }
        }
    }
}

fn closed(shared: &Shared) -> BrokerError {
    BrokerError::Unavailable {
        url: shared.url.clone(),
        operation: "the fan-out listener",
        reason: "the connection closed".to_owned(),
    }
}

/// Brings every channel this process's hub has up to where Redis stands.
async fn refill(shared: &Shared) -> Result<(), BrokerError> {
    let channels: Vec<ChannelName> = shared
        .hub
        .channels()
        .into_iter()
        .map(|info| info.channel)
        .collect();
    for channel in channels {
        if let Some(standing) = shared.position(&channel).await? {
            shared.catch_up(&channel, &standing).await?;
        }
    }
    Ok(())
}
