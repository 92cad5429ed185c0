//! The keyspace and the schema, versioned in the repository
//! (`crates/stores/scylla/migrations/`), applied in order by `shortener migrate`.
//!
//! CQL has no transactions around DDL, so every statement is written to be safe to run
//! again (`IF NOT EXISTS`), and a migration's row in `schema_migrations` is written after
//! its statements: a migration interrupted half-way is applied again, whole. The driver
//! waits for every node to agree on the schema before the next migration.

use scylla::client::session::Session;
use scylla::value::CqlTimestamp;
use shortener_core::StoreError;

use crate::{ScyllaOptions, backend, session};

/// Every migration: (version, description, CQL). Append only; never edit a released one.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "links and their listing",
        include_str!("../migrations/0001_links.cql"),
    ),
    (
        2,
        "statistics: per-source partial aggregates in two versions",
        include_str!("../migrations/0002_stats.cql"),
    ),
    (
        3,
        "API keys and link owners",
        include_str!("../migrations/0003_owners_and_keys.cql"),
    ),
];

/// The schema version this build reads and writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     int PRIMARY KEY,
    description text,
    applied_at  timestamp
)";

/// Creates the keyspace (with `options.replication`) if it does not exist, then applies
/// the migrations it has not had yet; returns their versions.
pub async fn run(options: &ScyllaOptions) -> Result<Vec<i32>, StoreError> {
    let keyspace = identifier(&options.keyspace)?;
    let session = session(options).await?;
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
                options.replication
            ),
            &[],
        )
        .await
        .map_err(backend)?;
    session.await_schema_agreement().await.map_err(backend)?;
    session
        .use_keyspace(keyspace, true)
        .await
        .map_err(backend)?;
    session
        .query_unpaged(CREATE_TABLE, &[])
        .await
        .map_err(backend)?;
    session.await_schema_agreement().await.map_err(backend)?;
    let done = applied(&session).await?;
    let mut now_applied = Vec::new();
    for &(version, description, cql) in MIGRATIONS {
        if done.contains(&version) {
            continue;
        }
        for statement in statements(cql) {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(backend)?;
        }
        session.await_schema_agreement().await.map_err(backend)?;
        let at = CqlTimestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1_000);
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (version, description, at),
            )
            .await
            .map_err(backend)?;
        tracing::info!(version, description, "migration applied");
        now_applied.push(version);
    }
    Ok(now_applied)
}

/// Fails unless the keyspace's newest migration is [`LATEST`].
pub(crate) async fn check(session: &Session) -> Result<(), StoreError> {
    let newest = applied(session)
        .await
        .ok()
        .and_then(|v| v.into_iter().max());
    match newest {
        Some(LATEST) => Ok(()),
        Some(version) if version > LATEST => Err(StoreError::backend(format!(
            "the keyspace's schema is version {version}, newer than this build's {LATEST}: run a newer build"
        ))),
        _ => Err(StoreError::backend(format!(
            "the keyspace's schema is not current (this build needs version {LATEST}): run `shortener migrate`"
        ))),
    }
}

/// The versions recorded in `schema_migrations`.
async fn applied(session: &Session) -> Result<Vec<i32>, StoreError> {
    let rows = session
        .query_unpaged("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(backend)?
        .into_rows_result()
        .map_err(backend)?;
    rows.rows::<(i32,)>()
        .map_err(backend)?
        .map(|row| row.map(|(v,)| v).map_err(backend))
        .collect()
}

/// The statements of a migration file: `;`-separated, `--` comment lines dropped.
fn statements(cql: &str) -> impl Iterator<Item = String> + '_ {
    let text: String = cql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

/// `name` if it is a plain CQL identifier (letters, digits, `_`; not starting with a
/// digit): a keyspace name goes into DDL, where it cannot be bound.
fn identifier(name: &str) -> Result<&str, StoreError> {
    let plain = !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(name)
    } else {
        Err(StoreError::backend(format!(
            "store.scylla.keyspace `{name}` must be letters, digits and _, at most 48, not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_statements_without_comments() {
        let statements: Vec<String> = statements(MIGRATIONS[0].2).collect();
        assert_eq!(statements.len(), 2, "{statements:?}");
        assert!(
            statements
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
    }

    #[test]
    fn a_keyspace_name_is_a_plain_identifier() {
        assert!(identifier("shortener_1").is_ok());
        for bad in ["", "1st", "a-b", "x; DROP KEYSPACE y", &"k".repeat(49)] {
            assert!(identifier(bad).is_err(), "{bad}");
        }
    }
}
