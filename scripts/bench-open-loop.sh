#!/usr/bin/env bash
# Latency at fixed request rates (open loop: no coordinated omission), clicks off and on,
# on the long-tail workload: Zipf(1.0) over N seeded links with a browser's headers.
# wrk's closed loop measures the queue its own connections build at saturation; this
# asks what users sending RATE requests a second would see.
#
#   scripts/bench-open-loop.sh                        # 100,000 links; 5k, 10k, 15k, 20k req/s
#   RATES="10000 20000" LINKS=1000000 ROUNDS=3 scripts/bench-open-loop.sh
#   SERVICE_BIN=/tmp/shortener.before TARGETS=clicks_on scripts/bench-open-loop.sh
#   EXTRA_ENV="APP__STATS__FLUSH_INTERVAL_MS=5000" scripts/bench-open-loop.sh
#
# Each run starts the service on a fresh copy of the seeded store (server on SERVER_CPU,
# the generator, benches/open_loop.rs, on CLIENT_CPU), sends WARMUP seconds of load that
# are not measured (moka fills from the store), then DURATION measured seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS=${LINKS:-100000}
RATES=${RATES:-5000 10000 15000 20000}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
source scripts/lib/wrk.sh       # wait_http
source scripts/lib/service.sh   # start_service, stop_server

cargo build --release --quiet --bin shortener --example open-loop --example seed-links
service=${SERVICE_BIN:-target/release/shortener}
data=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

target/release/examples/seed-links "$data/seed.redb" "$LINKS" L 2>/dev/null
echo "machine: $(nproc) CPUs, $(uname -r); $LINKS links, Zipf(1.0), browser headers, 64 connections; server CPU $SERVER_CPU, generator CPU $CLIENT_CPU; ${WARMUP}s warm-up, ${DURATION}s measured"
printf "%-6s %-11s %8s %9s %9s %9s %9s %9s\n" round target rate "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "max ms"
read -r -a targets <<<"${TARGETS:-clicks_off clicks_on}"
for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do
        for target in "${targets[@]}"; do
            start_service "$([ "$target" = clicks_on ] && echo true || echo false)"
            out=$(RATE=$rate DURATION=$DURATION WARMUP=$WARMUP LINKS=$LINKS \
                taskset -c "$CLIENT_CPU" target/release/examples/open-loop "127.0.0.1:$PORT")
            stop_server
            if ! grep -q " 0 errors, 0 not 3xx" <<<"$out"; then echo "$out" >&2; exit 1; fi
            read -r p50 p90 p99 p999 max < <(awk '/^latency/ {print $11, $13, $15, $17, $19}' <<<"$out")
            printf "%-6s %-11s %8s %9s %9s %9s %9s %9s\n" "$round" "$target" "$rate" "$p50" "$p90" "$p99" "$p999" "$max"
        done
    done
done
