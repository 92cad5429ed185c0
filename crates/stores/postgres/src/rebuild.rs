//! Statistics rebuilt beside the live ones, then switched in by one transaction: how
//! `analytics replay` recomputes the statistics from the click topic (after the bot list
//! changes, or to check the live numbers) while the API keeps serving the old ones.
//!
//! The rebuilt tables live in the schema `stats_rebuild`, created like the live ones.
//! They are written by the same code as the live tables: the rebuild's connections put
//! that schema alone on their `search_path`, so every unqualified table name resolves
//! there. Their positions (`stats_sources`) are the replay's own, so a replay stopped
//! half-way resumes where its writes end.
//!
//! [`Rebuild::switch`] swaps them in when they have applied exactly what the live tables
//! have, partition by partition:
//!
//! 1. `LOCK stats_sources IN SHARE MODE` waits for the live writers' open transactions
//!    and holds off new ones (a writer claims its batch in `stats_sources` first);
//! 2. the positions are compared; if the live writers have moved on, nothing changes
//!    and the replay reads on to the new positions ([`Switch::Behind`]);
//! 3. the live `stats_totals` and `stats_days` (and their indexes) are renamed
//!    `*_before_rebuild`, replacing an earlier rebuild's, and the rebuilt tables move
//!    into the live schema. `stats_sources` stays: both hold the same positions.
//!
//! A live writer that waited on the lock then writes into the new tables: PostgreSQL
//! re-resolves a prepared statement's table names when DDL has touched them.

use std::collections::BTreeMap;
use std::sync::Arc;

use shortener_core::StoreError;
use shortener_core::stats::StatsStore;

use crate::{PostgresOptions, PostgresStore, backend};

/// The schema the rebuilt tables are written in until they are switched in.
pub const SCHEMA: &str = "stats_rebuild";

/// The tables a rebuild replaces (the positions table is compared, not replaced).
const REPLACED: [&str; 2] = ["stats_totals", "stats_days"];

/// What [`Rebuild::switch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    /// The rebuilt tables are the live ones now; the old ones are `*_before_rebuild`.
    Switched,
    /// The live writers have applied more than the rebuild (or other sources): nothing
    /// changed. Read on to the live positions and try again.
    Behind,
}

/// The live store and the rebuild beside it.
pub struct Rebuild {
    live: Arc<PostgresStore>,
    fresh: Arc<PostgresStore>,
    /// The schema the live tables are in (`current_schema()` of a live connection).
    live_schema: String,
}

impl Rebuild {
    /// Opens the live store (its schema must be current) and the rebuild beside it,
    /// creating the rebuild's tables if they do not exist yet; existing ones are kept,
    /// so that a replay resumes.
    pub async fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        let live = PostgresStore::connect(options)?;
        live.check_schema().await?;
        let client = live.client().await?;
        let live_schema: String = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(backend)?
            .get(0);
        let mut ddl = format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA};");
        for table in REPLACED.iter().chain(&["stats_sources"]) {
            ddl.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} (LIKE {}.{table} INCLUDING ALL);",
                ident(&live_schema)
            ));
        }
        client.batch_execute(&ddl).await.map_err(backend)?;
        live.sent(1);
        let fresh = PostgresStore::connect_in(options, Some(SCHEMA))?;
        Ok(Self {
            live,
            fresh,
            live_schema,
        })
    }

    /// The live statistics: their positions are what the rebuild must reach.
    pub fn live(&self) -> Arc<dyn StatsStore> {
        self.live.clone()
    }

    /// The rebuilt statistics, written like the live ones.
    pub fn fresh(&self) -> Arc<dyn StatsStore> {
        self.fresh.clone()
    }

    /// Switches the rebuilt tables in if their positions for every source starting
    /// with `prefix` equal the live ones (see the module docs).
    pub async fn switch(&self, prefix: &str) -> Result<Switch, StoreError> {
        let mut client = self.live.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let live = ident(&self.live_schema);
        // Quiet: `DROP ... IF EXISTS` of an absent table is a notice, not news.
        tx.batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             LOCK TABLE {live}.stats_sources IN SHARE MODE"
        ))
        .await
        .map_err(backend)?;
        let positions = |schema: String| {
            let tx = &tx;
            async move {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT source, seq FROM {schema}.stats_sources
                             WHERE left(source, length($1)) = $1"
                        ),
                        &[&prefix],
                    )
                    .await
                    .map_err(backend)?;
                Ok::<_, StoreError>(
                    rows.iter()
                        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                        .collect::<BTreeMap<_, _>>(),
                )
            }
        };
        let (live_positions, rebuilt) = (
            positions(live.clone()).await?,
            positions(SCHEMA.into()).await?,
        );
        if live_positions != rebuilt {
            tx.rollback().await.map_err(backend)?;
            return Ok(Switch::Behind);
        }
        let mut ddl = String::new();
        for table in REPLACED {
            let old = format!("{table}_before_rebuild");
            ddl.push_str(&format!(
                "DROP TABLE IF EXISTS {live}.{old};
                 ALTER TABLE {live}.{table} RENAME TO {old};
                 ALTER INDEX {live}.{table}_pkey RENAME TO {old}_pkey;
                 ALTER TABLE {SCHEMA}.{table} SET SCHEMA {live};"
            ));
        }
        ddl.push_str(&format!("DROP SCHEMA {SCHEMA} CASCADE;"));
        tx.batch_execute(&ddl).await.map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.live.sent(4);
        Ok(Switch::Switched)
    }

    /// Closes both pools.
    pub fn close(&self) {
        self.live.close_pool();
        self.fresh.close_pool();
    }
}

/// `name` as a quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
