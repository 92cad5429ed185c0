#!/usr/bin/env bash
# The Redis second level under load, on loopback: four service instances, measured in
# turn within each round so machine noise hits them alike.
#
#   hit-local   L1 hit, no Redis configured          (one hot link)
#   hit-redis   L1 hit, Redis configured             (one hot link: Redis must not matter)
#   miss-redis  L1 miss served by Redis              (CODES links, an L1 of ~30 entries)
#   miss-store  L1 miss served by the embedded store (same, no Redis)
#   miss-pg     L1 miss served by PostgreSQL          (same, no Redis)
#   miss-scylla L1 miss served by the CQL store, with SCYLLA=1 (the test kit's
#               Cassandra 5.0 on CPU 1; a build with --features scylla)
#
#   scripts/bench-l2.sh                       # 3 rounds of 10 s, 64 connections
#   ROUNDS=5 CODES=20000 scripts/bench-l2.sh
#
# Click recording is off in all four: with thousands of distinct links, each statistics
# flush rewrites thousands of per-link rows, and that (not the cache) would dominate.
# Services on CPU 0 (one loaded at a time), wrk, redis-server and PostgreSQL on CPU 1. Reports req/s,
# p50, p99 and the service's CPU per request, medians, and ratios to hit-local; and the
# L1/L2 counters of the miss instances, so the miss share is measured, not assumed.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
CODES=${CODES:-10000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TINY_L1=8192   # bytes: about 30 entries

for tool in wrk redis-server; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y $tool" >&2; exit 1; }
done
source scripts/lib/wrk.sh
source scripts/lib/servers.sh

features=postgres,redis
[ "${SCYLLA:-0}" = 1 ] && features+=,scylla
bench_with_postgres "$features"

server_up redis_url redis "$CLIENT_CPU"

names=(hit-local hit-redis miss-redis miss-store miss-pg)
declare -A port admin pid env
port=([hit-local]=18181 [hit-redis]=18182 [miss-redis]=18183 [miss-store]=18184 [miss-pg]=18185)
env=(
    [hit-local]=""
    [hit-redis]="APP__REDIS__URL=$redis_url APP__REDIS__KEY_PREFIX=hit:"
    [miss-redis]="APP__REDIS__URL=$redis_url APP__REDIS__KEY_PREFIX=miss: APP__CACHE__MAX_CAPACITY_BYTES=$TINY_L1"
    [miss-store]="APP__CACHE__MAX_CAPACITY_BYTES=$TINY_L1"
    [miss-pg]="APP__CACHE__MAX_CAPACITY_BYTES=$TINY_L1 APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL=$pg_url"
)
if [ "${SCYLLA:-0}" = 1 ]; then
    server_up cql_node cassandra "$CLIENT_CPU"
    names+=(miss-scylla)
    port[miss-scylla]=18186
    env[miss-scylla]="APP__CACHE__MAX_CAPACITY_BYTES=$TINY_L1 APP__STORE__BACKEND=scylla APP__STORE__SCYLLA__NODES=$cql_node APP__STORE__SCYLLA__KEYSPACE=bench"
    # shellcheck disable=SC2086
    env ${env[miss-scylla]} RUST_LOG=error target/release/shortener migrate >/dev/null
fi
for name in "${names[@]}"; do
    admin[$name]=$((port[$name] + 1000))
    # shellcheck disable=SC2086 # env[...] is a list of assignments
    env APP__HTTP__LISTEN="127.0.0.1:${port[$name]}" APP__ADMIN__LISTEN="127.0.0.1:${admin[$name]}" \
        APP__STORE__PATH="$data/$name.redb" APP__CLICKS__ENABLED=false RUST_LOG=error ${env[$name]} \
        taskset -c "$SERVER_CPU" target/release/shortener serve & pids+=($!)
    pid[$name]=$!
done
for name in "${names[@]}"; do wait_http "http://127.0.0.1:${port[$name]}/healthz"; done

create() { # port alias
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$1/api/v1/links" -H 'content-type: application/json' \
        -d "{\"url\":\"https://example.com/landing?campaign=bench&n=$2\",\"alias\":\"$2\"}"
}
for name in hit-local hit-redis; do create "${port[$name]}" bench01; curl -s -o /dev/null "http://127.0.0.1:${port[$name]}/bench01"; done
echo "creating $CODES links on each miss instance..."
export -f create
for name in "${names[@]}"; do
    [[ $name == miss-* ]] || continue
    seq 0 $((CODES - 1)) | xargs -P 16 -I{} bash -c "create ${port[$name]} bench-{}"
done

target_url() { case $1 in hit-*) echo "http://127.0.0.1:${port[$1]}/bench01" ;; *) echo "http://127.0.0.1:${port[$1]}/" ;; esac; }
target_script() { case $1 in miss-*) echo scripts/random-codes.lua ;; *) echo "" ;; esac; }
export CODES CODE_PREFIX=bench-

echo "machine: $(nproc) CPUs, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION --latency; services CPU $SERVER_CPU, wrk + redis CPU $CLIENT_CPU; $CODES codes"
rounds_and_medians req/s

echo "cache counters of the miss instances (whole run):"
for name in "${names[@]}"; do
    [[ $name == miss-* ]] || continue
    curl -s "http://127.0.0.1:${admin[$name]}/metrics" |
        grep -E '^shortener_(cache_requests_total|l2_requests_total|redis_breaker_state)' |
        grep -v ' 0$' | sed "s/^/  $name: /"
done
