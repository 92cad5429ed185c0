//! Where batches of click events go.
//!
//! [`EventSink`] is the seam between recording and analytics. The in-process
//! [`AggregatingSink`] aggregates each batch (the pure `shortener_core::aggregate`) and
//! applies it to the [`StatsStore`] in one transaction. A Kafka producer will implement
//! the same trait, and the analytics consumer will run the same aggregation.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use shortener_core::StoreError;
use shortener_core::aggregate::Aggregator;
use shortener_core::click::ClickEvent;
use shortener_core::stats::StatsStore;

/// Why a batch could not be delivered. Its clicks are counted as dropped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The statistics store refused the batch.
    #[error("statistics store: {0}")]
    Store(#[from] StoreError),
    /// The aggregation task failed (a bug: it is pure code).
    #[error("aggregation failed: {0}")]
    Aggregation(String),
}

/// A destination for batches of click events.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Delivers one batch. On `Ok`, every event in it is accounted for downstream.
    async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError>;
}

/// Aggregates in process and applies to a [`StatsStore`].
pub struct AggregatingSink {
    /// Behind a mutex because it keeps memos across batches; only the batcher calls it,
    /// so the lock is never contended.
    aggregator: Arc<Mutex<Aggregator>>,
    stats: Arc<dyn StatsStore>,
}

impl AggregatingSink {
    /// A sink writing into `stats`.
    pub fn new(stats: Arc<dyn StatsStore>) -> Self {
        Self {
            aggregator: Arc::new(Mutex::new(Aggregator::new())),
            stats,
        }
    }
}

#[async_trait]
impl EventSink for AggregatingSink {
    async fn publish(&self, batch: Vec<ClickEvent>) -> Result<(), SinkError> {
        let aggregator = self.aggregator.clone();
        // ~0.4 ms per 1,000 events (benches/aggregate.rs): CPU work, so off the async workers.
        let aggregate = tokio::task::spawn_blocking(move || {
            aggregator
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .aggregate(&batch)
        })
        .await
        .map_err(|e| SinkError::Aggregation(e.to_string()))?;
        self.stats.apply(aggregate).await?;
        Ok(())
    }
}
