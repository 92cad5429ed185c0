//! Cross-instance invalidation: every instance listens on one Redis pub/sub channel and
//! evicts the codes announced there from its in-process cache (L1).
//!
//! Pub/sub is fire-and-forget: a message published while an instance's subscription is
//! down is lost for that instance. So whenever the subscription is (re)established, the
//! instance *first* subscribes and *then* clears its whole L1: anything published before
//! the subscription is covered by the clear, anything after is received. The same clear
//! happens if the task falls behind the client's message buffer. If Redis stays away,
//! the L1 TTL (`cache.ttl_s`) is the bound on staleness, since a message can then neither
//! be sent nor received.

use std::future::Future;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use shortener_core::ShortCode;
use tokio::sync::broadcast::error::RecvError;

use crate::cache::LinkCache;
use crate::metrics::{INVALIDATIONS, L1_CLEARS};

/// Pause between failed attempts to subscribe on a live connection.
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(100);

/// Runs until `shutdown` resolves: keeps `subscriber` subscribed to `channel` and applies
/// what arrives to `cache`. Spawn it; it ends with the subscriber's connection closed.
pub async fn run(
    subscriber: SubscriberClient,
    channel: String,
    cache: LinkCache,
    shutdown: impl Future<Output = ()>,
) {
    let received = metrics::counter!(INVALIDATIONS, "direction" => "received");
    let cleared_subscribed = metrics::counter!(L1_CLEARS, "reason" => "subscribed");
    let cleared_lagged = metrics::counter!(L1_CLEARS, "reason" => "lagged");
    // Both receivers exist before connecting, so the first connection is seen too.
    let mut messages = subscriber.message_rx();
    let mut connections = subscriber.reconnect_rx();
    subscriber.connect();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            connected = connections.recv() => {
                if matches!(connected, Err(RecvError::Closed)) {
                    break;
                }
                // Connected (or reconnected, possibly several times: lagged is the same).
                let subscribe = subscribe(&subscriber, &channel);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = subscribe => {}
                }
                cache.clear();
                cleared_subscribed.increment(1);
                tracing::info!(%channel, "subscribed to invalidations; L1 cleared");
            }
            message = messages.recv() => match message {
                Ok(message) if &*message.channel == channel.as_str() => {
                    let code = message.value.as_str().and_then(|c| ShortCode::parse(&c).ok());
                    let Some(code) = code else {
                        tracing::warn!("ignoring a malformed invalidation message");
                        continue;
                    };
                    cache.invalidate(&code).await;
                    received.increment(1);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    cache.clear();
                    cleared_lagged.increment(1);
                    tracing::warn!(missed, "invalidation listener fell behind; L1 cleared");
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
    let _ = subscriber.quit().await;
}

/// Subscribes, retrying on a live connection until it works. (If the connection drops
/// meanwhile, the next connection event subscribes again anyway.)
async fn subscribe(subscriber: &SubscriberClient, channel: &str) {
    loop {
        match subscriber.subscribe(channel).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "subscribing to invalidations failed; retrying");
                tokio::time::sleep(RESUBSCRIBE_EVERY).await;
            }
        }
    }
}
