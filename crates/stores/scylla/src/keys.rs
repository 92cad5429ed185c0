//! [`KeyStore`] in CQL: one row per key in `api_keys`, read by its id.
//!
//! Keys are rare and small (one row each, read once per key per cache period by each
//! instance), so plain statements at the configured consistency are enough: a new key
//! is written at LOCAL_QUORUM and read at LOCAL_QUORUM, so every instance of the data
//! centre sees it at once. Revocation keeps the row and sets `revoked_at`.

use async_trait::async_trait;
use scylla::value::CqlTimestamp;
use shortener_core::StoreError;
use shortener_core::access::{KeyRecord, KeyStore, key_from_parts};
use time::OffsetDateTime;

use crate::{ScyllaStore, backend};

const COLUMNS: &str = "id, owner, scopes, hash, created_at, revoked_at";

type KeyRow = (
    String,
    String,
    i8,
    Vec<u8>,
    CqlTimestamp,
    Option<CqlTimestamp>,
);

fn decode(row: KeyRow) -> Result<KeyRecord, StoreError> {
    let (id, owner, scopes, hash, created, revoked) = row;
    key_from_parts(
        &id,
        &owner,
        u8::try_from(scopes).unwrap_or(0),
        &hash,
        created.0,
        revoked.map(|t| t.0),
    )
}

fn millis(at: OffsetDateTime) -> CqlTimestamp {
    CqlTimestamp((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl ScyllaStore {
    async fn key_rows(&self, cql: String, id: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let result = match id {
            Some(id) => self.session.query_unpaged(cql, (id,)).await,
            None => self.session.query_unpaged(cql, &[]).await,
        }
        .map_err(backend)?
        .into_rows_result()
        .map_err(backend)?;
        result
            .rows::<KeyRow>()
            .map_err(backend)?
            .map(|row| row.map_err(backend).and_then(decode))
            .collect()
    }
}

#[async_trait]
impl KeyStore for ScyllaStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.session
            .query_unpaged(
                format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"),
                (
                    key.id.as_str(),
                    key.owner.as_str(),
                    key.scopes.bits() as i8,
                    key.hash.to_vec(),
                    millis(key.created_at),
                    key.revoked_at.map(millis),
                ),
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let cql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?");
        Ok(self.key_rows(cql, Some(id)).await?.pop())
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        // A full scan of a table of a few keys; sorted here (partitions come in token order).
        let mut keys = self
            .key_rows(format!("SELECT {COLUMNS} FROM api_keys"), None)
            .await?;
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    async fn revoke_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let Some(key) = self.get_key(id).await? else {
            return Ok(false);
        };
        if key.revoked_at.is_none() {
            self.session
                .query_unpaged(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                    (millis(at), id),
                )
                .await
                .map_err(backend)?;
        }
        Ok(true)
    }
}
