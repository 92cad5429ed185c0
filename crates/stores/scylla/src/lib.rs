//! The scale-out backend: links in ScyllaDB (or any CQL engine: the tests run Apache
//! Cassandra 5.0, which speaks the same protocol), for deployments that outgrow one
//! PostgreSQL. Its own crate, so that only a build that asks for it compiles the driver.
//!
//! One [`scylla`] session per process: it keeps connections to every node (every shard
//! on ScyllaDB) and routes each statement to a replica of its partition (token-aware:
//! the partition key is bound, never inlined). Every statement is prepared once at
//! [`ScyllaStore::connect`]; those that may safely run twice are marked idempotent, so
//! the driver may retry them or send a speculative copy.
//!
//! Consistency: `LOCAL_QUORUM` for reads and writes by default (a majority of the local
//! datacenter's replicas: a read sees every acknowledged write, and one replica down
//! changes nothing); `LOCAL_SERIAL` for lightweight transactions and for the reads that
//! settle one.
//!
//! # Layout
//!
//! - [`migrate`]: the keyspace and the versioned CQL schema, applied by `shortener migrate`;
//! - `links`: [`LinkStore`](shortener_core::LinkStore): creation by `INSERT ... IF NOT
//!   EXISTS`, with the LWT ambiguity rule; expiry as a TTL; the paged listing; exact
//!   click budgets by conditional updates;
//! - `stats`: [`StatsStore`](shortener_core::stats::StatsStore): per-source partial
//!   aggregates in two versions, committed by moving the source's position.
//!
//! The data model, its queries and partition sizes: docs/scylla.md.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use shortener_core::StoreError;

mod keys;
mod links;
pub mod migrate;
mod stats;

pub use links::{EXPIRED_GRACE, LIST_BUCKETS, bucket};
pub use stats::MONTH_DAYS;

/// How to reach the cluster, and what to ask of it.
#[derive(Debug, Clone)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`; the driver discovers the rest of the cluster.
    pub nodes: Vec<String>,
    /// The keyspace holding the tables.
    pub keyspace: String,
    /// `CREATE KEYSPACE`'s replication, as CQL: for example
    /// `{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}`.
    pub replication: String,
    /// Reads and writes.
    pub consistency: Consistency,
    /// Lightweight transactions and the reads that settle them.
    pub serial_consistency: SerialConsistency,
    /// Longest wait for one statement.
    pub request_timeout: Duration,
    /// Longest wait for a lightweight transaction (four round trips on Cassandra, three
    /// on ScyllaDB). When it passes, the outcome is unknown; see `links`.
    pub lwt_timeout: Duration,
    /// Longest wait for the first connection.
    pub connect_timeout: Duration,
    /// After this long without an answer, an idempotent statement is also sent to
    /// another replica, and the first answer wins (speculative execution): a slow
    /// replica (a GC pause, a compaction) stops setting the tail latency, at the price
    /// of extra load. `None`: off.
    pub speculative_after: Option<Duration>,
}

/// The prepared statements, each prepared once per process.
struct Statements {
    insert: PreparedStatement,
    index: PreparedStatement,
    get: PreparedStatement,
    get_serial: PreparedStatement,
    budget: PreparedStatement,
    claim: PreparedStatement,
    delete: PreparedStatement,
    unindex: PreparedStatement,
    page: PreparedStatement,
    index_owned: PreparedStatement,
    unindex_owned: PreparedStatement,
    page_owned: PreparedStatement,
}

/// Links in a CQL keyspace.
pub struct ScyllaStore {
    session: Session,
    statements: Statements,
    stats: stats::StatsStatements,
}

impl ScyllaStore {
    /// Connects to the cluster and prepares every statement; the keyspace must exist
    /// and be migrated (`shortener migrate`), which [`ScyllaStore::check_schema`] checks.
    pub async fn connect(options: &ScyllaOptions) -> Result<Arc<Self>, StoreError> {
        let session = session(options).await?;
        session
            .use_keyspace(&options.keyspace, true)
            .await
            .map_err(backend)?;
        let statements = links::prepare(&session, options).await?;
        let stats = stats::prepare(&session, options, links::serial_read(options)).await?;
        Ok(Arc::new(Self {
            session,
            statements,
            stats,
        }))
    }

    /// Fails unless the keyspace holds exactly the schema this build expects.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        migrate::check(&self.session).await
    }
}

/// How a statement may be run: what the driver may do with it, and how long it waits.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Safe to run twice: the driver may retry it or send a speculative copy.
    Idempotent,
    /// A lightweight transaction: never retried blindly, waits `lwt_timeout`.
    Lwt,
    /// A plain write that must not run twice (none yet are).
    #[allow(dead_code)]
    Once,
}

/// Prepares `cql` once, with the options' consistency levels and the kind's timeout.
async fn prepare(
    session: &Session,
    options: &ScyllaOptions,
    cql: impl Into<String>,
    kind: Kind,
) -> Result<PreparedStatement, StoreError> {
    let mut prepared = session.prepare(cql.into()).await.map_err(backend)?;
    prepared.set_consistency(options.consistency);
    prepared.set_serial_consistency(Some(options.serial_consistency));
    prepared.set_is_idempotent(matches!(kind, Kind::Idempotent));
    prepared.set_request_timeout(Some(match kind {
        Kind::Lwt => options.lwt_timeout,
        Kind::Idempotent | Kind::Once => options.request_timeout,
    }));
    Ok(prepared)
}

impl ScyllaOptions {
    /// Options for one development node (SimpleStrategy, one replica), with this
    /// module's default consistency and 10 s timeouts: what tests and tools use.
    pub fn single_node(nodes: Vec<String>, keyspace: &str) -> Self {
        Self {
            nodes,
            keyspace: keyspace.to_owned(),
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            request_timeout: Duration::from_secs(10),
            lwt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            speculative_after: None,
        }
    }
}

/// A session on `options.nodes`, with no keyspace chosen.
async fn session(options: &ScyllaOptions) -> Result<Session, StoreError> {
    let mut profile = ExecutionProfile::builder();
    if let Some(after) = options.speculative_after {
        profile = profile.speculative_execution_policy(Some(Arc::new(
            SimpleSpeculativeExecutionPolicy {
                max_retry_count: 1,
                retry_interval: after,
            },
        )));
    }
    SessionBuilder::new()
        .known_nodes(&options.nodes)
        .connection_timeout(options.connect_timeout)
        .default_execution_profile_handle(profile.build().into_handle())
        .build()
        .await
        .map_err(backend)
}

/// Any driver failure: the cluster is unreachable, overloaded or refused the statement.
fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused("scylla", error)
}

fn corrupt(code: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        code: code.to_owned(),
        reason: reason.to_string(),
    }
}
