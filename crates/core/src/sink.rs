//! The seam between recording clicks and analytics: [`EventSink`], the destination of
//! batches of click events, and [`SinkError`], which any sink can return.
//!
//! The service's batcher publishes to whatever sink `clicks.sink` names: the in-process
//! aggregating sink (`shortener-aggregation`) or the Kafka producer (`shortener-kafka`),
//! whose events the analytics consumer aggregates. The error names no implementation:
//! what went wrong below the sink is its `source()`.

use std::error::Error;

use async_trait::async_trait;

use crate::click::ClickEvent;

/// Why a batch could not be delivered. Its clicks are counted as dropped by the caller.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Where the sink delivers (a statistics store, a broker) refused or failed.
    #[error("the sink's destination failed")]
    Destination(#[source] Box<dyn Error + Send + Sync>),
    /// The sink itself failed (a bug: a panicked task).
    #[error("the sink failed")]
    Internal(#[source] Box<dyn Error + Send + Sync>),
    /// The sink was closed before the batch arrived.
    #[error("the sink is closed")]
    Closed,
}

/// A destination for batches of click events.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Delivers one batch. On `Ok` the sink owns the events and accounts for every one
    /// (delivered, or dropped with a reason); on `Err` the caller counts them dropped.
    async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError>;

    /// Delivers everything the sink still holds, then stops. Called once, at shutdown,
    /// after the last `publish`.
    async fn close(&self);
}
