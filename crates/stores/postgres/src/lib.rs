//! The shared backend: links and statistics in PostgreSQL, so that several instances of
//! the service (and, later, the analytics consumer) work on one source of truth.
//!
//! Its own crate, so that the embedded default build never compiles a database driver:
//! the service depends on it only with its `postgres` feature.
//!
//! Driver and pool: `tokio-postgres` with `deadpool-postgres`. Every statement is
//! prepared once per connection and cached (`prepare_cached`); the pool bounds the
//! connections an instance opens (PostgreSQL pays a process per connection), and every
//! wait (for a connection, for a statement) has a deadline, so that a stopped database
//! turns into errors the service can answer with, not hung requests.
//!
//! # Layout
//!
//! - [`migrate`]: the versioned schema, applied by `shortener migrate`;
//! - `links`: [`LinkStore`](shortener_core::LinkStore) (insert-if-absent, get, delete,
//!   list with totals);
//! - `stats`: [`StatsStore`](shortener_core::stats::StatsStore) (batches applied once, in
//!   one transaction; bounded range reads);
//! - [`rebuild`]: fresh statistics tables beside the live ones, switched in by one
//!   transaction (`analytics replay`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use shortener_core::StoreError;
use tokio_postgres::NoTls;

mod keys;
mod links;
pub mod migrate;
pub mod rebuild;
mod stats;

/// How to reach the database, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL or key-value string, e.g. `postgres://user@host:5432/db`.
    pub url: String,
    /// Most connections this handle opens.
    pub pool_size: usize,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for a free connection from the pool.
    pub acquire_timeout: Duration,
    /// Longest a statement may run (PostgreSQL's `statement_timeout`).
    pub statement_timeout: Duration,
}

/// Links and statistics in one PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    closed: AtomicBool,
    /// Statements sent, for tests that count round trips (a listing is one).
    statements: AtomicU64,
}

impl PostgresStore {
    /// A store on `options.url`. Connections are opened on first use, so this fails only
    /// for a malformed URL; [`PostgresStore::check_schema`] is the start-up check.
    pub fn connect(options: &PostgresOptions) -> Result<Arc<Self>, StoreError> {
        Self::connect_in(options, None)
    }

    /// [`PostgresStore::connect`], with unqualified table names resolved in `schema`
    /// first (`search_path`): how a rebuild writes its fresh tables with the same code.
    fn connect_in(
        options: &PostgresOptions,
        schema: Option<&str>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(backend)?;
        config.connect_timeout(options.connect_timeout);
        let mut server_options = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        );
        if let Some(schema) = schema {
            server_options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(server_options);
        if config.get_application_name().is_none() {
            config.application_name("shortener");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection returned to the pool is reused without a round trip to
                // test it; a broken one fails its next statement and is dropped.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(backend)?;
        Ok(Arc::new(Self {
            pool,
            closed: AtomicBool::new(false),
            statements: AtomicU64::new(0),
        }))
    }

    /// Fails unless the database holds exactly the schema this build expects (the
    /// service checks at start-up; `shortener migrate` brings a database up to date).
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        migrate::check(&client).await
    }

    /// Applies the migrations this database has not had yet; returns their versions.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut client = self.client().await?;
        migrate::run(&mut client).await
    }

    /// Statements sent so far by this handle.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// A pooled connection, or why there is none.
    async fn client(&self) -> Result<Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(backend)
    }

    /// Counts `n` statements about to be sent.
    fn sent(&self, n: u64) {
        self.statements.fetch_add(n, Ordering::Relaxed);
    }

    fn close_pool(&self) {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
    }
}

/// Any driver or pool failure: the database is unreachable, overloaded or refused the
/// statement. The service answers these with 503 `store_unavailable`.
fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused("postgres", error)
}

/// The (total, human, bot) columns starting at `first` (bigint; never negative).
fn counts_at(row: &tokio_postgres::Row, first: usize) -> shortener_core::aggregate::Counts {
    let count = |i| u64::try_from(row.get::<_, i64>(first + i)).unwrap_or(0);
    shortener_core::aggregate::Counts {
        total: count(0),
        human: count(1),
        bot: count(2),
    }
}

fn corrupt(code: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        code: code.to_owned(),
        reason: reason.to_string(),
    }
}
