#!/usr/bin/env bash
# Sizing the PostgreSQL pool: L1 misses served by PostgreSQL (the workload that needs
# connections; creates use one at a time, see docs/postgres.md) through instances that
# differ only in store.postgres.pool_size, measured in turn within each round.
#
#   scripts/bench-pg-pool.sh                      # pools of 1 2 4 8 16 32, 3 rounds of 10 s
#   POOLS="4 16" ROUNDS=5 scripts/bench-pg-pool.sh
#
# One database with CODES links; each instance has an L1 of ~30 entries, so nearly every
# request is a primary-key read. Services on CPU 0 (one loaded at a time), wrk and
# PostgreSQL on CPU 1. Reports req/s, p50, p99 and the service's CPU per request,
# medians, with ratios to the first pool size.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
CODES=${CODES:-10000}
POOLS=${POOLS:-1 2 4 8 16 32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TINY_L1=8192   # bytes: about 30 entries

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source scripts/lib/wrk.sh
source scripts/lib/servers.sh

bench_with_postgres postgres

names=()
declare -A port admin pid
base=18381
for size in $POOLS; do
    name="pool-$size"
    names+=("$name")
    port[$name]=$base
    admin[$name]=$((base + 1000))
    base=$((base + 1))
    APP__HTTP__LISTEN="127.0.0.1:${port[$name]}" APP__ADMIN__LISTEN="127.0.0.1:${admin[$name]}" \
        APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="$pg_url" \
        APP__STORE__POSTGRES__POOL_SIZE="$size" APP__CACHE__MAX_CAPACITY_BYTES=$TINY_L1 \
        APP__CLICKS__ENABLED=false RUST_LOG=error \
        taskset -c "$SERVER_CPU" target/release/shortener serve & pids+=($!)
    pid[$name]=$!
done
for name in "${names[@]}"; do wait_http "http://127.0.0.1:${port[$name]}/healthz"; done

echo "creating $CODES links (shared by every instance)..."
first=${port[${names[0]}]}
create() { # alias
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$first/api/v1/links" -H 'content-type: application/json' \
        -d "{\"url\":\"https://example.com/landing?campaign=pool&n=$1\",\"alias\":\"$1\"}"
}
export -f create; export first
seq 0 $((CODES - 1)) | xargs -P 16 -I{} bash -c "create bench-{}"

target_url() { echo "http://127.0.0.1:${port[$1]}/"; }
target_script() { echo scripts/random-codes.lua; }
export CODES CODE_PREFIX=bench-

echo "machine: $(nproc) CPUs, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION --latency -s scripts/random-codes.lua; services CPU $SERVER_CPU, wrk + PostgreSQL CPU $CLIENT_CPU; $CODES codes"
rounds_and_medians req/s

echo "store operations and pool waits that failed (whole run):"
for name in "${names[@]}"; do
    curl -s "http://127.0.0.1:${admin[$name]}/metrics" |
        grep -E '^shortener_(cache_requests_total|store_errors_total)' | grep -v ' 0$' | sed "s/^/  $name: /"
done
