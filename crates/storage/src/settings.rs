//! `[store]` of a binary's configuration: which backend, and each backend's settings
//! (config/default.toml documents every field with its unit and trade-off).

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use serde::Deserialize;
use shortener_core::secret::Secret;

/// `[store]`: where links are persisted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    pub path: PathBuf,
    pub page_cache_bytes: usize,
    pub max_group: NonZeroUsize,
    pub postgres: PostgresSettings,
    pub scylla: ScyllaSettings,
}

/// `[store.scylla]`: the scale-out backend (see config/default.toml for each field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ScyllaSettings {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub replication: String,
    pub consistency: String,
    pub serial_consistency: String,
    pub request_timeout_ms: NonZeroU64,
    pub lwt_timeout_ms: NonZeroU64,
    pub connect_timeout_ms: NonZeroU64,
    pub speculative_after_ms: u64,
}

/// `[store.postgres]`: the shared backend (see config/default.toml for each field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PostgresSettings {
    pub url: Secret,
    pub pool_size: NonZeroUsize,
    pub connect_timeout_ms: NonZeroU64,
    pub acquire_timeout_ms: NonZeroU64,
    pub statement_timeout_ms: NonZeroU64,
}

/// Which [`shortener_core::LinkStore`] to open. Read from a string, so that a wrong
/// name is answered with the valid ones (serde's own message names a Rust enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreBackend {
    /// The redb file at `store.path`.
    Embedded,
    /// The PostgreSQL database at `store.postgres.url` (a build with the `postgres`
    /// feature), shared by any number of instances.
    Postgres,
    /// The ScyllaDB (CQL) cluster at `store.scylla.nodes` (a build with the `scylla`
    /// feature), for deployments that outgrow one machine.
    Scylla,
}

impl TryFrom<String> for StoreBackend {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "embedded" => Ok(Self::Embedded),
            "postgres" => Ok(Self::Postgres),
            "scylla" => Ok(Self::Scylla),
            _ => Err(format!(
                "unknown store backend `{name}`: expected `embedded`, `postgres` or `scylla`"
            )),
        }
    }
}

impl StoreSettings {
    /// The checks its types cannot express: `(key, reason)` of the first that fails.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.page_cache_bytes < 1 << 20 {
            return Err(("store.page_cache_bytes", "must be at least 1 MiB"));
        }
        if self.backend == StoreBackend::Postgres && self.postgres.url.expose().is_empty() {
            return Err((
                "store.postgres.url",
                "must be set when store.backend = \"postgres\"",
            ));
        }
        if self.backend == StoreBackend::Scylla && self.scylla.nodes.is_empty() {
            return Err((
                "store.scylla.nodes",
                "must name at least one node when store.backend = \"scylla\"",
            ));
        }
        if ![
            "one",
            "local_one",
            "quorum",
            "local_quorum",
            "all",
            "each_quorum",
        ]
        .contains(&self.scylla.consistency.as_str())
        {
            return Err((
                "store.scylla.consistency",
                "must be one, local_one, quorum, local_quorum, each_quorum or all",
            ));
        }
        if !["serial", "local_serial"].contains(&self.scylla.serial_consistency.as_str()) {
            return Err((
                "store.scylla.serial_consistency",
                "must be serial or local_serial",
            ));
        }
        Ok(())
    }
}
