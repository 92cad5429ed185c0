//! [`KeyStore`] in the embedded file: one table, id -> the key's versioned JSON
//! (`shortener_core::access::encode_key`), committed durably like every write.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use shortener_core::StoreError;
use shortener_core::access::{KeyRecord, KeyStore, decode_key, encode_key};
use time::OffsetDateTime;

use crate::{RedbStore, backend};

/// id -> JSON key record.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys_v1");

/// Creates the table in a new or older file.
pub(crate) fn create_table(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(KEYS).map_err(backend)?;
    Ok(())
}

#[async_trait]
impl KeyStore for RedbStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let (id, bytes) = (key.id.clone(), encode_key(key));
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut table = txn.open_table(KEYS).map_err(backend)?;
                if table.get(id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::backend(format!("key id {id} is taken")));
                }
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(KEYS).map_err(backend)?;
            let row = table.get(id.as_str()).map_err(backend)?;
            row.map(|bytes| decode_key(&id, bytes.value())).transpose()
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(KEYS).map_err(backend)?;
            let rows = table.range::<&str>(..).map_err(backend)?;
            rows.map(|row| {
                let (id, bytes) = row.map_err(backend)?;
                decode_key(id.value(), bytes.value())
            })
            .collect()
        })
        .await
    }

    async fn revoke_key(&self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let found = {
                let mut table = txn.open_table(KEYS).map_err(backend)?;
                let key = match table.get(id.as_str()).map_err(backend)? {
                    Some(bytes) => Some(decode_key(&id, bytes.value())?),
                    None => None,
                };
                match key {
                    Some(mut key) => {
                        key.revoked_at = key.revoked_at.or(Some(at));
                        table
                            .insert(id.as_str(), encode_key(&key).as_slice())
                            .map_err(backend)?;
                        true
                    }
                    None => false,
                }
            };
            txn.commit().map_err(backend)?;
            Ok(found)
        })
        .await
    }
}
