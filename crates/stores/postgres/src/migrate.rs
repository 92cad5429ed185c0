//! The schema, versioned in the repository (`crates/stores/postgres/migrations/`), applied in
//! order by `shortener migrate`.
//!
//! Each migration runs in one transaction together with its row in `schema_migrations`,
//! so a migration is applied entirely or not at all. The transaction first takes an
//! advisory lock, so that two instances migrating at once (a rolling deploy) apply each
//! migration once: the second waits, then finds nothing left to do.

use shortener_core::StoreError;

use super::backend;

/// Every migration: (version, description, SQL). Append only; never edit a released one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "links and per-day statistics",
        include_str!("../migrations/0001_init.sql"),
    ),
    (
        2,
        "click budgets of max_clicks links",
        include_str!("../migrations/0002_click_budgets.sql"),
    ),
    (
        3,
        "API keys and link owners",
        include_str!("../migrations/0003_owners_and_keys.sql"),
    ),
];

/// The schema version this build reads and writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// An arbitrary key for `pg_advisory_xact_lock`: "shortener migrate".
const LOCK_KEY: i64 = 0x7368_6f72_7465_6e72;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)";

/// Applies what is missing; returns the versions applied now (empty when up to date).
pub(crate) async fn run(client: &mut tokio_postgres::Client) -> Result<Vec<i32>, StoreError> {
    let mut applied = Vec::new();
    for &(version, description, sql) in MIGRATIONS {
        let txn = client.transaction().await.map_err(backend)?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(backend)?;
        // Quiet: "already exists, skipping" is the normal case, not news.
        txn.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(backend)?;
        txn.batch_execute(CREATE_TABLE).await.map_err(backend)?;
        let done = txn
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(backend)?
            .is_some();
        if done {
            continue;
        }
        txn.batch_execute(sql).await.map_err(backend)?;
        txn.execute(
            "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
            &[&version, &description],
        )
        .await
        .map_err(backend)?;
        txn.commit().await.map_err(backend)?;
        tracing::info!(version, description, "migration applied");
        applied.push(version);
    }
    Ok(applied)
}

/// Fails with what to do unless the database is at [`LATEST`].
pub(crate) async fn check(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let exists = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(backend)?
        .get::<_, bool>(0);
    let version = if exists {
        client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(backend)?
            .get::<_, i32>(0)
    } else {
        0
    };
    match version {
        v if v == LATEST => Ok(()),
        v if v < LATEST => Err(StoreError::backend(format!(
            "the database schema is at version {v}, this build needs {LATEST}: run `shortener migrate`"
        ))),
        v => Err(StoreError::backend(format!(
            "the database schema is at version {v}, newer than this build knows ({LATEST}): upgrade the service"
        ))),
    }
}
