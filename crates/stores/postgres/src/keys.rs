//! [`KeyStore`] on PostgreSQL: the `api_keys` table, one row per key by its id.
//!
//! Revocation keeps the row (a listing shows when a key was revoked) and sets
//! `revoked_at` once: `coalesce` keeps the first revocation time.

use async_trait::async_trait;
use shortener_core::StoreError;
use shortener_core::access::{KeyRecord, KeyStore, key_from_parts};
use shortener_core::instant::unix_ms;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{PostgresStore, backend};

const INSERT: &str = "INSERT INTO api_keys (id, owner, scopes, hash, created_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6)";
const GET: &str =
    "SELECT id, owner, scopes, hash, created_at, revoked_at FROM api_keys WHERE id = $1";
const LIST: &str =
    "SELECT id, owner, scopes, hash, created_at, revoked_at FROM api_keys ORDER BY id";
const REVOKE: &str = "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1";

fn decode(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: String = row.try_get(0).map_err(backend)?;
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt {
        code: format!("key {id}"),
        reason: e.to_string(),
    };
    let owner: String = row.try_get(1).map_err(corrupt)?;
    let scopes: i16 = row.try_get(2).map_err(corrupt)?;
    let hash: Vec<u8> = row.try_get(3).map_err(corrupt)?;
    let created: OffsetDateTime = row.try_get(4).map_err(corrupt)?;
    let revoked: Option<OffsetDateTime> = row.try_get(5).map_err(corrupt)?;
    key_from_parts(
        &id,
        &owner,
        u8::try_from(scopes).unwrap_or(0),
        &hash,
        unix_ms(created),
        revoked.map(unix_ms),
    )
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.sent(1);
        client
            .execute(
                INSERT,
                &[
                    &key.id,
                    &key.owner.as_str(),
                    &i16::from(key.scopes.bits()),
                    &key.hash.as_slice(),
                    &key.created_at,
                    &key.revoked_at,
                ],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(GET).await.map_err(backend)?;
        self.sent(1);
        let row = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(backend)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        self.sent(1);
        let rows = client.query(LIST, &[]).await.map_err(backend)?;
        rows.iter().map(decode).collect()
    }

    async fn revoke_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let client = self.client().await?;
        self.sent(1);
        let updated = client.execute(REVOKE, &[&id, &at]).await.map_err(backend)?;
        Ok(updated == 1)
    }
}
