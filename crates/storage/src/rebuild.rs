//! Statistics rebuilt beside the live ones and switched in at once (`analytics
//! replay`), for the backends that can: a shared store, which the replay writes while
//! the live consumers and the API go on with the live tables. The embedded file has one
//! owner, the service, and is refused.

use std::sync::Arc;

use shortener_core::StoreError;
use shortener_core::stats::StatsStore;

use crate::{OpenError, StoreBackend, StoreSettings};

/// What [`Rebuild::switch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The rebuilt statistics are the live ones now; the old ones are kept aside.
    Switched,
    /// The live writers have applied more than the rebuild: nothing changed. Read on to
    /// the live positions and try again.
    Behind,
}

/// A rebuild in progress on the configured store.
pub enum Rebuild {
    /// Fresh tables beside the live ones (`shortener_postgres::rebuild`).
    #[cfg(feature = "postgres")]
    Postgres(shortener_postgres::rebuild::Rebuild),
}

impl Rebuild {
    /// Opens the live statistics and a rebuild beside them (resuming one left
    /// unfinished).
    pub async fn open(settings: &StoreSettings) -> Result<Self, OpenError> {
        match settings.backend {
            StoreBackend::Embedded => Err(OpenError::NoRebuild("embedded")),
            #[cfg(feature = "postgres")]
            StoreBackend::Postgres => Ok(Self::Postgres(
                shortener_postgres::rebuild::Rebuild::open(&crate::postgres_options(
                    &settings.postgres,
                ))
                .await?,
            )),
            #[cfg(not(feature = "postgres"))]
            StoreBackend::Postgres => Err(OpenError::NotBuilt("postgres")),
            StoreBackend::Scylla => Err(OpenError::NoRebuild("scylla")),
        }
    }

    /// The live statistics: their positions are what the rebuild must reach.
    pub fn live(&self) -> Arc<dyn StatsStore> {
        match *self {
            #[cfg(feature = "postgres")]
            Self::Postgres(ref rebuild) => rebuild.live(),
        }
    }

    /// The statistics being rebuilt.
    pub fn fresh(&self) -> Arc<dyn StatsStore> {
        match *self {
            #[cfg(feature = "postgres")]
            Self::Postgres(ref rebuild) => rebuild.fresh(),
        }
    }

    /// Switches the rebuilt statistics in if they have applied exactly what the live
    /// ones have from every source starting with `prefix`.
    #[cfg_attr(not(feature = "postgres"), expect(unused_variables))]
    pub async fn switch(&self, prefix: &str) -> Result<Switch, StoreError> {
        match *self {
            #[cfg(feature = "postgres")]
            Self::Postgres(ref rebuild) => Ok(match rebuild.switch(prefix).await? {
                shortener_postgres::rebuild::Switch::Switched => Switch::Switched,
                shortener_postgres::rebuild::Switch::Behind => Switch::Behind,
            }),
        }
    }

    /// Closes its connections.
    pub fn close(&self) {
        match *self {
            #[cfg(feature = "postgres")]
            Self::Postgres(ref rebuild) => rebuild.close(),
        }
    }
}
