#!/usr/bin/env bash
# A scan of unknown codes from one client, against another client's cached redirects:
# what the redirect-miss rate limit does for the store, and what the scan still costs
# the one CPU the server has.
#
#   scripts/bench-scan.sh                    # 3 rounds; 5,000 req/s of cached redirects
#   ROUNDS=5 RATE=10000 DURATION=10 scripts/bench-scan.sh
#
# The service (default limits; X-Forwarded-For trusted from loopback) runs on CPU 0. The
# user, benches/open_loop.rs at RATE requests a second (latency from each request's due
# time), asks for one cached link as client 0.0.0.1 (its generator's only address); the
# scanner, wrk with scripts/random-codes.lua over a million unknown codes as client
# 198.51.100.7, shares CPU 1 with it. Each round measures the user alone ("quiet"), then
# with the scanner ("scan"), and reports the user's p50/p99/p99.9, the scanner's
# requests, how many were answered 429, and the store reads the scan caused.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-5000}
DURATION=${DURATION:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18380}
ADMIN_PORT=${ADMIN_PORT:-19380}
APP__LIMITS__ENABLED=true   # the defaults: 100 misses/s, burst 200, per client
source scripts/lib/wrk.sh

cargo build --release --quiet --bin shortener --example open-loop
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    APP__STORE__PATH="$work/links.redb" APP__CLICKS__TRUSTED_PROXIES=127.0.0.0/8 RUST_LOG=error \
    taskset -c "$SERVER_CPU" target/release/shortener serve &
pid=$!
wait_http "http://127.0.0.1:$PORT/healthz"
curl -sf -o /dev/null -X POST "http://127.0.0.1:$PORT/api/v1/links" -H 'content-type: application/json' \
    -d '{"url":"https://example.com/landing","alias":"hot-link-0"}'

metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v s="$1" '$1 == s {print $2}' | sed 's/^$/0/'; }
user() { # -> "p50 p99 p99.9" of the user's requests
    local out
    out=$(RATE=$RATE DURATION=$DURATION WARMUP=2 LINKS=1 CLIENTS=1 CODE_PREFIX=hot-link- CONNECTIONS=16 \
        taskset -c "$CLIENT_CPU" target/release/examples/open-loop "127.0.0.1:$PORT")
    if ! grep -q " 0 errors, 0 not 3xx" <<<"$out"; then echo "$out" >&2; exit 1; fi
    awk '/^latency/ {print $11, $15, $17}' <<<"$out"
}

echo "machine: $(nproc) CPUs, $(uname -r); user: open loop at $RATE req/s on one cached link; scanner: wrk -c16 over 1,000,000 unknown codes; server CPU $SERVER_CPU, both clients CPU $CLIENT_CPU"
printf "%-6s %-6s %9s %9s %9s %12s %10s %12s\n" round phase "p50 ms" "p99 ms" "p99.9 ms" "scan req" "429" "store reads"
for round in $(seq "$ROUNDS"); do
    read -r p50 p99 p999 < <(user)
    printf "%-6s %-6s %9s %9s %9s %12s %10s %12s\n" "$round" quiet "$p50" "$p99" "$p999" - - -
    limited_before=$(metric 'shortener_rate_limited_total{limit="redirect_miss"}')
    reads_before=$(metric 'shortener_store_operation_duration_seconds_count{op="get"}')
    CODES=1000000 CODE_PREFIX=scan- taskset -c "$CLIENT_CPU" \
        wrk -t1 -c16 -d"$((DURATION + 2))s" -H "X-Forwarded-For: 198.51.100.7" -s scripts/random-codes.lua \
        "http://127.0.0.1:$PORT/" >"$work/scan" &
    scanner=$!
    read -r p50 p99 p999 < <(user)
    wait "$scanner"
    scanned=$(awk '/requests in/ {print $1}' "$work/scan")
    limited=$(awk -v a="$(metric 'shortener_rate_limited_total{limit="redirect_miss"}')" -v b="$limited_before" 'BEGIN {print a - b}')
    reads=$(awk -v a="$(metric 'shortener_store_operation_duration_seconds_count{op="get"}')" -v b="$reads_before" 'BEGIN {print a - b}')
    printf "%-6s %-6s %9s %9s %9s %12s %10s %12s\n" "$round" scan "$p50" "$p99" "$p999" "$scanned" "$limited" "$reads"
done
