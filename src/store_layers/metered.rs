//! A [`LinkStore`] decorator that times every operation and counts failures.
//!
//! Decorating (rather than timing inside each backend or inside the service) keeps the
//! backends free of metrics and gives every backend, present and future, the same
//! `shortener_store_*` series. Tests use the same seam to count store reads.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Counter, Histogram};
use shortener_core::{
    ClickClaim, InsertOutcome, Link, LinkStore, ListPage, Owner, ShortCode, StoreError,
};

use crate::metrics::{STORE_ERRORS, STORE_OPERATION_DURATION};

/// Handles for one operation, resolved once at construction.
struct OpMeters {
    duration: Histogram,
    errors: Counter,
}

impl OpMeters {
    fn new(op: &'static str) -> Self {
        Self {
            duration: metrics::histogram!(STORE_OPERATION_DURATION, "op" => op),
            errors: metrics::counter!(STORE_ERRORS, "op" => op),
        }
    }

    fn record<T>(&self, started: Instant, result: &Result<T, StoreError>) {
        self.finish(started, result.is_err());
    }

    fn finish(&self, started: Instant, failed: bool) {
        self.duration.record(started.elapsed().as_secs_f64());
        if failed {
            self.errors.increment(1);
        }
    }
}

/// Wraps any store with latency and error metrics.
pub struct MeteredStore {
    inner: Arc<dyn LinkStore>,
    get: OpMeters,
    insert: OpMeters,
    insert_batch: OpMeters,
    claim_click: OpMeters,
    delete: OpMeters,
    ping: OpMeters,
    list: OpMeters,
}

impl MeteredStore {
    /// Decorates `inner`.
    pub fn new(inner: Arc<dyn LinkStore>) -> Self {
        Self {
            inner,
            get: OpMeters::new("get"),
            insert: OpMeters::new("insert"),
            insert_batch: OpMeters::new("insert_batch"),
            claim_click: OpMeters::new("claim_click"),
            delete: OpMeters::new("delete"),
            ping: OpMeters::new("ping"),
            list: OpMeters::new("list"),
        }
    }
}

#[async_trait]
impl LinkStore for MeteredStore {
    async fn insert_if_absent(&self, link: &Link) -> Result<InsertOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.insert_if_absent(link).await;
        self.insert.record(started, &result);
        result
    }

    async fn insert_batch(&self, links: &[Link]) -> Vec<Result<InsertOutcome, StoreError>> {
        let started = Instant::now();
        let outcomes = self.inner.insert_batch(links).await;
        // One operation, failed if any of its links failed.
        self.insert_batch
            .finish(started, outcomes.iter().any(Result::is_err));
        outcomes
    }

    fn keeps_click_budgets(&self) -> bool {
        self.inner.keeps_click_budgets()
    }

    async fn claim_click(&self, code: &ShortCode) -> Result<ClickClaim, StoreError> {
        let started = Instant::now();
        let result = self.inner.claim_click(code).await;
        self.claim_click.record(started, &result);
        result
    }

    async fn get(&self, code: &ShortCode) -> Result<Option<Link>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(code).await;
        self.get.record(started, &result);
        result
    }

    async fn delete(&self, code: &ShortCode) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(code).await;
        self.delete.record(started, &result);
        result
    }

    async fn list(
        &self,
        after: Option<ShortCode>,
        limit: usize,
        owner: Option<&Owner>,
    ) -> Result<ListPage, StoreError> {
        let started = Instant::now();
        let result = self.inner.list(after, limit, owner).await;
        self.list.record(started, &result);
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.ping().await;
        self.ping.record(started, &result);
        result
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}
