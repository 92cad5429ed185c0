-- Version 3: API keys, and the owner of each link.
--
-- A link belongs to the owner of the key that created it; links made before keys (or
-- in open mode) have none, and only admin keys see them. A listing for one owner is a
-- range scan of (owner, code), in code order like the listing of every link.
ALTER TABLE links ADD COLUMN owner text;
CREATE INDEX links_owner_code ON links (owner, code) WHERE owner IS NOT NULL;

-- The keys: the secret is never stored, only its keyed BLAKE3 hash (32 bytes).
CREATE TABLE api_keys (
    id         text        PRIMARY KEY,
    owner      text        NOT NULL,
    scopes     smallint    NOT NULL,
    hash       bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
