//! Opening the configured store: the one place that turns `[store]` settings into the
//! [`LinkStore`] and [`StatsStore`] a binary works with, and that migrates a store's
//! schema. The service and the analytics consumer both use it, so both open the
//! same store the same way, and a new backend adds one arm here, not one per binary.
//!
//! Each networked backend is behind its own cargo feature (`postgres`, `scylla`); the embedded
//! default compiles no database driver. A backend named in the settings but not
//! compiled in is refused with the feature to build it with.
//!
//! # Layout
//!
//! ```text
//! crates/storage/src/
//! ├── lib.rs        open, migrate, Stores, OpenError
//! ├── rebuild.rs    statistics rebuilt beside the live ones (analytics replay)
//! └── settings.rs   StoreSettings, PostgresSettings, StoreBackend ([store] of config)
//! ```

pub mod rebuild;
pub mod settings;

use std::sync::Arc;

use shortener_core::LinkStore;
use shortener_core::StoreError;
use shortener_core::access::KeyStore;
use shortener_core::stats::StatsStore;
use shortener_redb::RedbStore;

pub use settings::{PostgresSettings, ScyllaSettings, StoreBackend, StoreSettings};

/// The opened store in its two roles (one redb file or one database holds both).
#[derive(Clone)]
pub struct Stores {
    /// Links.
    pub links: Arc<dyn LinkStore>,
    /// Statistics.
    pub stats: Arc<dyn StatsStore>,
    /// API keys, beside the links they guard.
    pub keys: Arc<dyn KeyStore>,
}

/// Why a store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store refused (a missing directory, a database that is down, a schema that
    /// is not current: its message says what to do).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured backend is not compiled into this build.
    #[error("this build has no {0} backend: build it with `--features {0}`")]
    NotBuilt(&'static str),
    /// The backend cannot hold a rebuild beside its live statistics.
    #[error(
        "the {0} store cannot be rebuilt from the click topic: replay needs a shared store (postgres)"
    )]
    NoRebuild(&'static str),
}

/// Opens the configured store and checks it is usable (PostgreSQL: its schema is
/// current). The embedded file is opened on the blocking pool: opening may repair it.
pub async fn open(settings: &StoreSettings) -> Result<Stores, OpenError> {
    match settings.backend {
        StoreBackend::Embedded => {
            let (path, cache) = (settings.path.clone(), settings.page_cache_bytes);
            let store =
                tokio::task::spawn_blocking(move || RedbStore::open_with_cache(&path, cache))
                    .await
                    .map_err(|e| StoreError::caused("opening the embedded store", e))??;
            tracing::info!(path = %settings.path.display(), "embedded store opened");
            let store = Arc::new(store);
            Ok(Stores {
                links: store.clone(),
                keys: store.clone(),
                stats: store,
            })
        }
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres => {
            let store = connect_postgres(&settings.postgres)?;
            store.check_schema().await?;
            tracing::info!("postgres store connected, schema current");
            Ok(Stores {
                links: store.clone(),
                keys: store.clone(),
                stats: store,
            })
        }
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres => Err(OpenError::NotBuilt("postgres")),
        #[cfg(feature = "scylla")]
        StoreBackend::Scylla => {
            let store =
                shortener_scylla::ScyllaStore::connect(&scylla_options(&settings.scylla)).await?;
            store.check_schema().await?;
            tracing::info!(nodes = ?settings.scylla.nodes, keyspace = settings.scylla.keyspace, "scylla store connected, schema current");
            Ok(Stores {
                links: store.clone(),
                keys: store.clone(),
                stats: store,
            })
        }
        #[cfg(not(feature = "scylla"))]
        StoreBackend::Scylla => Err(OpenError::NotBuilt("scylla")),
    }
}

/// Brings the configured store's schema up to date and says what was applied. The
/// embedded store migrates itself when its file is opened.
pub async fn migrate(settings: &StoreSettings) -> Result<String, OpenError> {
    match settings.backend {
        StoreBackend::Embedded => Ok(
            "the embedded store needs no migrations: its tables are created and upgraded when the file is opened".into(),
        ),
        #[cfg(not(feature = "postgres"))]
        StoreBackend::Postgres => Err(OpenError::NotBuilt("postgres")),
        #[cfg(feature = "postgres")]
        StoreBackend::Postgres => {
            let store = connect_postgres(&settings.postgres)?;
            let applied = store.migrate().await?;
            Ok(match applied.as_slice() {
                [] => "the database schema is up to date".into(),
                versions => format!("applied migrations {versions:?}"),
            })
        }
        #[cfg(not(feature = "scylla"))]
        StoreBackend::Scylla => Err(OpenError::NotBuilt("scylla")),
        #[cfg(feature = "scylla")]
        StoreBackend::Scylla => {
            let applied = shortener_scylla::migrate::run(&scylla_options(&settings.scylla)).await?;
            Ok(match applied.as_slice() {
                [] => "the keyspace's schema is up to date".into(),
                versions => format!("applied migrations {versions:?}"),
            })
        }
    }
}

/// The CQL store's options from `[store.scylla]` (names validated at load).
#[cfg(feature = "scylla")]
fn scylla_options(s: &settings::ScyllaSettings) -> shortener_scylla::ScyllaOptions {
    use scylla::statement::{Consistency, SerialConsistency};
    use std::time::Duration;
    let consistency = match s.consistency.as_str() {
        "one" => Consistency::One,
        "local_one" => Consistency::LocalOne,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "each_quorum" => Consistency::EachQuorum,
        _ => Consistency::LocalQuorum,
    };
    shortener_scylla::ScyllaOptions {
        nodes: s.nodes.clone(),
        keyspace: s.keyspace.clone(),
        replication: s.replication.clone(),
        consistency,
        serial_consistency: if s.serial_consistency == "serial" {
            SerialConsistency::Serial
        } else {
            SerialConsistency::LocalSerial
        },
        request_timeout: Duration::from_millis(s.request_timeout_ms.get()),
        lwt_timeout: Duration::from_millis(s.lwt_timeout_ms.get()),
        connect_timeout: Duration::from_millis(s.connect_timeout_ms.get()),
        speculative_after: (s.speculative_after_ms > 0)
            .then(|| Duration::from_millis(s.speculative_after_ms)),
    }
}

#[cfg(feature = "postgres")]
fn connect_postgres(
    pg: &PostgresSettings,
) -> Result<Arc<shortener_postgres::PostgresStore>, StoreError> {
    shortener_postgres::PostgresStore::connect(&postgres_options(pg))
}

#[cfg(feature = "postgres")]
fn postgres_options(pg: &PostgresSettings) -> shortener_postgres::PostgresOptions {
    use std::time::Duration;
    shortener_postgres::PostgresOptions {
        url: pg.url.expose().to_owned(),
        pool_size: pg.pool_size.get(),
        connect_timeout: Duration::from_millis(pg.connect_timeout_ms.get()),
        acquire_timeout: Duration::from_millis(pg.acquire_timeout_ms.get()),
        statement_timeout: Duration::from_millis(pg.statement_timeout_ms.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(backend: StoreBackend, dir: &std::path::Path) -> StoreSettings {
        StoreSettings {
            backend,
            path: dir.join("links.redb"),
            page_cache_bytes: 1 << 20,
            max_group: std::num::NonZeroUsize::MIN,
            postgres: PostgresSettings {
                url: "postgres://nobody@127.0.0.1:1/none".into(),
                pool_size: std::num::NonZeroUsize::MIN,
                connect_timeout_ms: std::num::NonZeroU64::MIN,
                acquire_timeout_ms: std::num::NonZeroU64::MIN,
                statement_timeout_ms: std::num::NonZeroU64::MIN,
            },
            scylla: ScyllaSettings {
                nodes: vec!["127.0.0.1:1".into()],
                keyspace: "none".into(),
                replication: String::new(),
                consistency: "local_quorum".into(),
                serial_consistency: "local_serial".into(),
                request_timeout_ms: std::num::NonZeroU64::MIN,
                lwt_timeout_ms: std::num::NonZeroU64::MIN,
                connect_timeout_ms: std::num::NonZeroU64::MIN,
                speculative_after_ms: 0,
            },
        }
    }

    #[tokio::test]
    async fn the_embedded_store_opens_in_both_roles_and_needs_no_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = open(&settings(StoreBackend::Embedded, dir.path()))
            .await
            .expect("open");
        stores.links.ping().await.expect("links answer");
        assert!(
            stores
                .stats
                .applied("any")
                .await
                .expect("stats answer")
                .is_none()
        );
        let said = migrate(&settings(StoreBackend::Embedded, dir.path()))
            .await
            .expect("migrate");
        assert!(said.contains("needs no migrations"), "{said}");
    }

    #[cfg(not(feature = "scylla"))]
    #[tokio::test]
    async fn the_cql_backend_not_built_in_is_refused_with_the_feature_to_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = open(&settings(StoreBackend::Scylla, dir.path()))
            .await
            .err()
            .expect("not built");
        assert!(error.to_string().contains("--features scylla"), "{error}");
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_backend_not_built_in_is_refused_with_the_feature_to_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = open(&settings(StoreBackend::Postgres, dir.path()))
            .await
            .err()
            .expect("not built");
        assert!(error.to_string().contains("--features postgres"), "{error}");
    }

    #[tokio::test]
    async fn the_embedded_store_cannot_be_rebuilt_beside_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = rebuild::Rebuild::open(&settings(StoreBackend::Embedded, dir.path()))
            .await
            .err()
            .expect("refused");
        assert!(matches!(error, OpenError::NoRebuild("embedded")), "{error}");
        assert!(error.to_string().contains("shared store"), "{error}");
    }
}
