-- Version 1: links, and statistics rolled up per link per day.
--
-- Codes are compared byte by byte (COLLATE "C"): listing pages in the same order as the
-- embedded store, and a B-tree on text that needs no locale rules to compare keys.

CREATE TABLE links (
    code        text COLLATE "C" PRIMARY KEY,
    target      text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    -- The HTTP status of the redirect: 301, 302, 307 or 308.
    redirect    smallint    NOT NULL CHECK (redirect IN (301, 302, 307, 308)),
    max_clicks  bigint      CHECK (max_clicks > 0)
);

-- All-time counts per link: what a listing shows next to each link (one join, no N+1).
CREATE TABLE stats_totals (
    code  text COLLATE "C" PRIMARY KEY,
    total bigint NOT NULL,
    human bigint NOT NULL,
    bot   bigint NOT NULL
);

-- One row per link and UTC day (days since 1970-01-01): counts, the hours with clicks,
-- the unique-visitor sketch and the top-N tables, in the compact versioned encoding the
-- embedded store uses (shortener_core::encoding). A range query reads one primary-key
-- range: at most 93 rows for hours, 3,660 for days.
CREATE TABLE stats_days (
    code text COLLATE "C" NOT NULL,
    day  integer NOT NULL,
    body bytea   NOT NULL,
    PRIMARY KEY (code, day)
);

-- Replay protection: the last batch seq applied from each source (a process's
-- in-memory pipeline, later a Kafka partition). Written in the batch's transaction.
CREATE TABLE stats_sources (
    source text COLLATE "C" PRIMARY KEY,
    seq    bigint NOT NULL
);
