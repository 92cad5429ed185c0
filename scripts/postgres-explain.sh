#!/usr/bin/env bash
# The plan of every hot PostgreSQL query, on a table of a million links: what
# docs/postgres.md shows. Starts a throwaway cluster (Debian's postgresql package),
# applies the migrations with `shortener migrate`, seeds it with SQL, then runs each
# statement as the driver does (prepared, with parameters) under
# EXPLAIN (ANALYZE, BUFFERS). Writes are rolled back, so every plan sees the same data.
# Last, the partitioning measurement: the same range read and a month of retention on
# stats_days as it is and partitioned by month.
#
#   scripts/postgres-explain.sh                 # 1,000,000 links
#   LINKS=100000 scripts/postgres-explain.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS=${LINKS:-1000000}
source scripts/lib/servers.sh

cargo build --release --quiet --features postgres --bin shortener
data=$(mktemp -d)
cleanup() { stop_servers; rm -rf "$data"; }
trap cleanup EXIT
migrated_postgres url "" target/release/shortener
sql() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "PostgreSQL $(sql -At -c 'SHOW server_version'); seeding $LINKS links..."
# Codes: 12 hex digits of md5(i), as random as generated codes. Every 10th link has
# max_clicks and all-time totals; 100,000 links have 3 days of statistics, and link
# 'hot90days' has 90 (bodies of 200 random-ish bytes, about what a busy day encodes to).
sql <<SQL
INSERT INTO links (code, target, created_at, redirect, max_clicks)
SELECT substr(md5(i::text), 1, 12), 'https://example.com/landing/' || i, now(), 302,
       CASE WHEN i % 10 = 0 THEN 1000 END
FROM generate_series(1, $LINKS) i
ON CONFLICT DO NOTHING;
INSERT INTO links (code, target, created_at, redirect) VALUES ('hot90days', 'https://example.com/hot', now(), 302);
INSERT INTO stats_totals (code, total, human, bot)
SELECT code, 10, 9, 1 FROM links WHERE max_clicks IS NOT NULL;
INSERT INTO stats_days (code, day, body)
SELECT code, 20400 + d, decode(repeat(md5(code || d), 6), 'hex')
FROM (SELECT code FROM links ORDER BY code LIMIT 100000) l, generate_series(0, 2) d;
INSERT INTO stats_days (code, day, body)
SELECT 'hot90days', 20310 + d, decode(repeat(md5(d::text), 6), 'hex') FROM generate_series(0, 89) d;
INSERT INTO stats_sources VALUES ('instance-a', 41);
VACUUM ANALYZE;
SQL
sql -At -c "SELECT 'relation sizes: ' || string_agg(t || ' ' || pg_size_pretty(pg_total_relation_size(t)), ', ')
            FROM unnest(array['links', 'stats_totals', 'stats_days']) t"
some=$(sql -At -c "SELECT code FROM links WHERE max_clicks IS NOT NULL ORDER BY code OFFSET $((LINKS / 20)) LIMIT 1")
# EXECUTE takes no subqueries: array parameters are spelled out as literals.
literal() { sql -At -c "SELECT ($1)::text"; }
group=$(literal "SELECT array_agg('grp' || i ORDER BY 'grp' || i) FROM generate_series(1, 64) i")
days=$(literal "SELECT array_agg(code ORDER BY code) FROM (SELECT code FROM stats_days WHERE day = 20402 ORDER BY code LIMIT 500) s")

explain() { # title, statements (PREPARE ...; then EXPLAIN ... EXECUTE ...)
    echo
    echo "### $1"
    echo
    sql -c "BEGIN" -c "$2" -c "ROLLBACK" | sed -n '/QUERY PLAN/,$p' | sed '/^(.* rows\?)$/d'
}

explain "get (redirect on an L1 miss; GET /api/v1/links/{code})" "
PREPARE q(text) AS SELECT code, target, created_at, expires_at, redirect, max_clicks FROM links WHERE code = \$1;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$some');"

explain "insert-if-absent (one create)" "
PREPARE q(text, text, timestamptz, timestamptz, smallint, bigint) AS
INSERT INTO links (code, target, created_at, expires_at, redirect, max_clicks)
VALUES (\$1, \$2, \$3, \$4, \$5, \$6) ON CONFLICT (code) DO NOTHING;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('newcode01', 'https://example.com/new', now(), NULL, 302, NULL);"

explain "batch insert (group commit: 64 creates, one statement)" "
PREPARE q(text[], text[], timestamptz[], timestamptz[], smallint[], bigint[]) AS
INSERT INTO links (code, target, created_at, expires_at, redirect, max_clicks)
SELECT * FROM unnest(\$1::text[], \$2::text[], \$3::timestamptz[], \$4::timestamptz[], \$5::smallint[], \$6::bigint[])
ON CONFLICT (code) DO NOTHING RETURNING code;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$group', '$group', array_fill(now(), array[64]),
  array_fill(NULL::timestamptz, array[64]), array_fill(302::smallint, array[64]),
  array_fill(NULL::bigint, array[64]));"

explain "claim one click of a max_clicks link" "
PREPARE q(text) AS UPDATE links SET clicks_used = clicks_used + 1
WHERE code = \$1 AND clicks_used < max_clicks RETURNING clicks_used;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$some');"

explain "list: a page of 100 links after a cursor, with totals (one statement)" "
PREPARE q(text, bigint) AS SELECT l.code, l.target, l.created_at, l.expires_at, l.redirect, l.max_clicks,
  coalesce(t.total, 0), coalesce(t.human, 0), coalesce(t.bot, 0)
FROM links l LEFT JOIN stats_totals t ON t.code = l.code AND t.code > \$1
WHERE l.code > \$1 ORDER BY l.code LIMIT \$2;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('8', 100);"

explain "delete (the link, then its totals and days, in one transaction)" "
PREPARE a(text) AS DELETE FROM links WHERE code = \$1;
PREPARE b(text) AS DELETE FROM stats_totals WHERE code = \$1;
PREPARE c(text) AS DELETE FROM stats_days WHERE code = \$1;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE a('$some');
EXPLAIN (ANALYZE, BUFFERS) EXECUTE b('$some');
EXPLAIN (ANALYZE, BUFFERS) EXECUTE c('$some');"

explain "stats batch, 1: claim the batch id (a replay updates 0 rows and rolls back)" "
PREPARE q(text, bigint) AS INSERT INTO stats_sources (source, seq) VALUES (\$1, \$2)
ON CONFLICT (source) DO UPDATE SET seq = EXCLUDED.seq WHERE stats_sources.seq < EXCLUDED.seq;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('instance-a', 42);"

explain "stats batch, 2: add 500 links' totals" "
PREPARE q(text[], bigint[], bigint[], bigint[]) AS INSERT INTO stats_totals (code, total, human, bot)
SELECT * FROM unnest(\$1::text[], \$2::bigint[], \$3::bigint[], \$4::bigint[])
ON CONFLICT (code) DO UPDATE SET total = stats_totals.total + EXCLUDED.total,
  human = stats_totals.human + EXCLUDED.human, bot = stats_totals.bot + EXCLUDED.bot;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$days', array_fill(3::bigint, array[500]),
  array_fill(2::bigint, array[500]), array_fill(1::bigint, array[500]));"

explain "stats batch, 3: insert the missing day rows (500 link-days, in key order)" "
PREPARE q(text[], integer[]) AS INSERT INTO stats_days (code, day, body)
SELECT code, day, '\\x'::bytea FROM unnest(\$1::text[], \$2::integer[]) AS k (code, day)
ORDER BY code, day ON CONFLICT (code, day) DO NOTHING;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$days', array_fill(20403, array[500]));"

explain "stats batch, 4: lock the batch's day rows in key order" "
PREPARE q(text[], integer[]) AS SELECT d.code, d.day, d.body
FROM stats_days d JOIN unnest(\$1::text[], \$2::integer[]) AS k (code, day)
  ON d.code = k.code AND d.day = k.day
ORDER BY d.code, d.day FOR UPDATE OF d;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$days', array_fill(20402, array[500]));"

explain "stats batch, 5: write the merged day rows back" "
PREPARE q(text[], integer[], bytea[]) AS UPDATE stats_days d SET body = u.body
FROM unnest(\$1::text[], \$2::integer[], \$3::bytea[]) AS u (code, day, body)
WHERE d.code = u.code AND d.day = u.day;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE q('$days', array_fill(20402, array[500]),
  array_fill('\\x0102'::bytea, array[500]));"

explain "stats read: totals, and 90 days of one link" "
PREPARE a(text) AS SELECT total, human, bot FROM stats_totals WHERE code = \$1;
PREPARE b(text, integer, integer) AS SELECT day, body FROM stats_days
WHERE code = \$1 AND day >= \$2 AND day < \$3 ORDER BY day;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE a('$some');
EXPLAIN (ANALYZE, BUFFERS) EXECUTE b('hot90days', 20310, 20400);"

echo
echo "### partitioning stats_days by month: the same 90-day read, and dropping a month"
echo
sql <<'SQL'
CREATE TABLE days_by_month (LIKE stats_days INCLUDING ALL) PARTITION BY RANGE (day);
DO $$ BEGIN
  FOR m IN 0..5 LOOP
    EXECUTE format('CREATE TABLE days_m%s PARTITION OF days_by_month FOR VALUES FROM (%s) TO (%s)',
                   m, 20310 + 30 * m, 20340 + 30 * m);
  END LOOP;
END $$;
INSERT INTO days_by_month SELECT * FROM stats_days;
VACUUM ANALYZE days_by_month;
SQL
explain "90 days of one link, partitioned by month" "
PREPARE b(text, integer, integer) AS SELECT day, body FROM days_by_month
WHERE code = \$1 AND day >= \$2 AND day < \$3 ORDER BY day;
EXPLAIN (ANALYZE, BUFFERS) EXECUTE b('hot90days', 20310, 20400);"
echo
echo "retention: removing the month that holds the 300,000 rows of days 20400-20402"
echo "(timed, then rolled back), DELETE on the plain table, then DROP of the partition:"
sql -c "BEGIN" -c '\timing on' -c "DELETE FROM stats_days WHERE day >= 20400 AND day < 20430" -c "ROLLBACK" | grep -m1 -E "^Time"
sql -c "BEGIN" -c '\timing on' -c "DROP TABLE days_m3" -c "ROLLBACK" | grep -m1 -E "^Time"
