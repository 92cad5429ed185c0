//! The key management API (admin keys only): make a key, list keys, revoke one.
//!
//! A new key's token is in the 201 answer and nowhere else: not in a log line, not in a
//! listing, not in the store (which keeps its hash). Lose it and make another.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use shortener_core::access::KeyRecord;
use shortener_core::{Owner, Scopes};
use time::OffsetDateTime;

use super::api::{read_json, serialize};
use super::app::HandlerState;
use super::error::{ApiError, BoxError, empty};
use crate::service::keys::Caller;

/// `POST /api/v1/keys` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    owner: String,
    scopes: Vec<String>,
}

/// A key as listings show it (never its secret).
#[derive(Serialize)]
struct KeyResponse<'a> {
    id: &'a str,
    owner: &'a str,
    scopes: Vec<&'static str>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

impl<'a> From<&'a KeyRecord> for KeyResponse<'a> {
    fn from(key: &'a KeyRecord) -> Self {
        Self {
            id: &key.id,
            owner: key.owner.as_str(),
            scopes: key.scopes.names(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// The 201 answer: the key, and its token, shown this once.
#[derive(Serialize)]
struct CreatedKey<'a> {
    #[serde(flatten)]
    key: KeyResponse<'a>,
    token: &'a str,
}

#[derive(Serialize)]
struct KeyList<'a> {
    keys: Vec<KeyResponse<'a>>,
}

/// `POST /api/v1/keys`: 201 with the new key and its token.
pub async fn create<B>(
    state: &HandlerState,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (_, request) = read_json::<CreateKeyRequest, B>(state, req).await?;
    let invalid = |code, e: shortener_core::access::AccessError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    };
    let owner = Owner::parse(&request.owner).map_err(|e| invalid("invalid_owner", e))?;
    let scopes = Scopes::from_names(request.scopes.iter().map(String::as_str))
        .map_err(|e| invalid("invalid_scopes", e))?;
    let issued = state
        .keys
        .create(owner, scopes)
        .await
        .map_err(unavailable)?;
    tracing::info!(key_id = issued.record.id, owner = %issued.record.owner, "API key created");
    let body = CreatedKey {
        key: KeyResponse::from(&issued.record),
        token: &issued.token,
    };
    serialize(StatusCode::CREATED, &body)
}

/// `GET /api/v1/keys`: every key, revoked ones included, without secrets.
pub async fn list(state: &HandlerState) -> Result<Response<Full<Bytes>>, ApiError> {
    let keys = state.keys.list().await.map_err(unavailable)?;
    let body = KeyList {
        keys: keys.iter().map(KeyResponse::from).collect(),
    };
    serialize(StatusCode::OK, &body)
}

/// `DELETE /api/v1/keys/{id}`: 204; the key stops working on this instance at once, on
/// others within `auth.key_cache_ttl_ms`. A key cannot revoke itself (409): the last
/// admin key would lock every administrator out (`shortener keys revoke` can).
pub async fn revoke(
    state: &HandlerState,
    id: &str,
    caller: &Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if caller.key_id.as_deref() == Some(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "revoking_own_key",
            "a key cannot revoke itself: use another admin key, or `shortener keys revoke`",
        ));
    }
    let found = state.keys.revoke(id).await.map_err(unavailable)?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no API key with this id",
        ));
    }
    tracing::info!(key_id = id, "API key revoked");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The key store failed: 503, the cause to the log.
fn unavailable(e: shortener_core::StoreError) -> ApiError {
    ApiError::internal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e)
}
