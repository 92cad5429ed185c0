//! Who is calling: API keys checked against the store, remembered briefly, and the
//! [`Caller`] every management operation is asked on behalf of.
//!
//! A bearer token is split into its public id and its secret; the id finds the key (in
//! this instance's memory, else the store), and the secret's keyed hash must match
//! (`shortener_core::access`). Verified keys, and ids that do not exist, are remembered
//! for `auth.key_cache_ttl_ms`, so an authenticated request costs one hash and no store
//! read; a revocation made here takes effect at once, one made on another instance
//! within that time.
//!
//! Tokens never reach a log line or a metric label: errors name the key id at most.

use std::sync::Arc;
use std::time::Duration;

use shortener_config::{AuthMode, AuthSettings};
use shortener_core::access::{IssuedKey, KeyHasher, KeyRecord, KeyStore, is_key_id, split_token};
use shortener_core::{Link, Owner, Scopes, StoreError};
use time::OffsetDateTime;

/// On whose behalf an operation runs.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's owner; `None` only in open mode.
    pub owner: Option<Owner>,
    /// What the key may do.
    pub scopes: Scopes,
    /// The key's id (for the per-key rate limit); `None` in open mode.
    pub key_id: Option<String>,
}

impl Caller {
    /// Open mode (`auth.mode = "open"`): no key, every scope, no owner.
    pub fn open() -> Self {
        Self {
            owner: None,
            scopes: Scopes::ADMIN,
            key_id: None,
        }
    }

    /// Whether this caller may see and act on `link`: its owner, or an admin.
    pub fn sees(&self, link: &Link) -> bool {
        self.scopes.is_admin() || (self.owner.is_some() && link.owner == self.owner)
    }

    /// The owner whose links a listing shows: everyone's for an admin.
    pub fn listing_owner(&self) -> Option<&Owner> {
        if self.scopes.is_admin() {
            None
        } else {
            self.owner.as_ref()
        }
    }
}

/// Why a request was not authenticated. The HTTP layer maps each to a 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("this endpoint needs an API key: send `Authorization: Bearer <key>`")]
    Missing,
    /// Not `Bearer sk_...`, or a token of the wrong shape.
    #[error("the Authorization header is not `Bearer <key>` with a key of this service")]
    Malformed,
    /// No such key, or the secret does not match.
    #[error("unknown API key")]
    Unknown,
    /// The key was revoked.
    #[error("this API key was revoked")]
    Revoked,
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks tokens and manages keys.
pub struct Keys {
    mode: AuthMode,
    store: Arc<dyn KeyStore>,
    hasher: KeyHasher,
    /// id -> the key as last read (`None`: no such id), for `auth.key_cache_ttl_ms`.
    cache: moka::future::Cache<String, Option<Arc<KeyRecord>>>,
}

/// Ids remembered at most (a flood of random ids costs bounded memory).
const CACHED_IDS: u64 = 100_000;

impl Keys {
    /// Keys over `store`, as `[auth]` says.
    pub fn new(settings: &AuthSettings, store: Arc<dyn KeyStore>) -> Self {
        Self {
            mode: settings.mode,
            store,
            hasher: KeyHasher::new(settings.pepper.expose()),
            cache: moka::future::Cache::builder()
                .max_capacity(CACHED_IDS)
                .time_to_live(Duration::from_millis(settings.key_cache_ttl_ms.get()))
                .build(),
        }
    }

    /// Whether keys are asked for at all.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller behind an `Authorization` header value (`None`: no header).
    pub async fn authenticate(&self, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        if self.mode == AuthMode::Open {
            return Ok(Caller::open());
        }
        let header = header.ok_or(AuthError::Missing)?;
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(AuthError::Malformed)?;
        let (id, secret) = split_token(token).ok_or(AuthError::Malformed)?;
        let key = self.key(id).await?.ok_or(AuthError::Unknown)?;
        if !self.hasher.verify(&key, secret) {
            return Err(AuthError::Unknown);
        }
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        Ok(Caller {
            owner: Some(key.owner.clone()),
            scopes: key.scopes,
            key_id: Some(key.id.clone()),
        })
    }

    async fn key(&self, id: &str) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(cached) = self.cache.get(id).await {
            return Ok(cached);
        }
        let key = self.store.get_key(id).await?.map(Arc::new);
        self.cache.insert(id.to_owned(), key.clone()).await;
        Ok(key)
    }

    /// Makes, stores and returns a key (its token is shown once, by the caller).
    pub async fn create(&self, owner: Owner, scopes: Scopes) -> Result<IssuedKey, StoreError> {
        let issued = self.hasher.issue(owner, scopes, OffsetDateTime::now_utc());
        self.store.insert_key(&issued.record).await?;
        Ok(issued)
    }

    /// Every key, revoked ones included.
    pub async fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_keys().await
    }

    /// Revokes a key; `false` if there is none with this id. Effective on this instance
    /// at once.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        if !is_key_id(id) {
            return Ok(false);
        }
        let found = self.store.revoke_key(id, OffsetDateTime::now_utc()).await?;
        self.cache.invalidate(id).await;
        Ok(found)
    }

    /// At first start, with keys asked for and none stored: an admin key, written to
    /// `path` (created, never overwritten, mode 0600). `Ok(false)` when keys exist.
    pub async fn bootstrap(&self, path: &std::path::Path) -> Result<bool, BootstrapError> {
        if self.mode == AuthMode::Open || !self.store.list_keys().await?.is_empty() {
            return Ok(false);
        }
        let owner = Owner::parse("admin").map_err(|_| BootstrapError::Owner)?;
        let issued = self.create(owner, Scopes::ADMIN).await?;
        write_secret_file(path, &issued.token).map_err(|source| BootstrapError::File {
            path: path.to_owned(),
            source,
        })?;
        tracing::warn!(
            path = %path.display(),
            key_id = issued.record.id,
            "no API key existed: an admin key was created and written to this file (mode 0600); keep it somewhere safe and delete the file"
        );
        Ok(true)
    }
}

/// Why the first admin key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file could not be written.
    #[error("writing the first admin key to {path} (it must not exist yet): {source}")]
    File {
        /// `auth.bootstrap_key_file`.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Unreachable: "admin" is a valid owner.
    #[error("the bootstrap owner is invalid")]
    Owner,
}

fn write_secret_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
