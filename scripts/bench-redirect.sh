#!/usr/bin/env bash
# Redirect throughput and latency on loopback: the service's cached redirect against a
# bare hyper server answering a fixed 301 (the physical baseline), measured in the same
# run, interleaved, so machine noise hits both alike.
#
#   scripts/bench-redirect.sh            # 3 rounds of 10 s each, 64 connections
#   ROUNDS=40 DURATION=2s scripts/bench-redirect.sh   # what docs/benchmarks.md reports
#   ROUNDS=5 DURATION=20s CONNECTIONS=128 scripts/bench-redirect.sh
#   SERVICE_BIN=/tmp/shortener.before scripts/bench-redirect.sh   # an older build
#   EXTRA_ENV="APP__LINKS__FORWARD_QUERY=true" scripts/bench-redirect.sh
#   BROWSER=1 scripts/bench-redirect.sh   # requests carry a browser's User-Agent and Referer
#
# Servers are pinned to CPU 0 and wrk to CPU 1 (taskset), so they do not fight for a core.
# Per round it prints req/s, p50, p99, and the server's CPU time per request (from
# /proc/<pid>/stat: less sensitive than req/s to noise from other tenants of a shared VM).
# Then medians, and the ratios service/baseline: the median of the per-round throughput
# ratios (each round's two runs are adjacent in time, so they share the machine's mood;
# the order alternates between rounds) and the ratio of CPU per request. On a shared
# 2-CPU VM single rounds swing by +-15%: report ROUNDS=40 DURATION=2s or more.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18090}
SVC_PORT=${SVC_PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
APP__LIMITS__ENABLED=true   # the default config: cached redirects pass no limiter
source scripts/lib/wrk.sh

cargo build --release --quiet --bin shortener --example baseline-server
target=target/release
data=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$data"; }
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$target/examples/baseline-server" "127.0.0.1:$BASE_PORT" & pids+=($!)
baseline_pid=$!
env APP__HTTP__LISTEN="127.0.0.1:$SVC_PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    APP__STORE__PATH="$data/links.redb" RUST_LOG=warn ${EXTRA_ENV:-} \
    taskset -c "$SERVER_CPU" "${SERVICE_BIN:-$target/shortener}" serve & pids+=($!)
service_pid=$!
wait_http "http://127.0.0.1:$BASE_PORT/"
wait_http "http://127.0.0.1:$SVC_PORT/healthz"

curl -sf -o /dev/null -X POST "http://127.0.0.1:$SVC_PORT/api/v1/links" \
    -H 'content-type: application/json' \
    -d '{"url":"https://example.com/landing?campaign=bench","alias":"bench01"}'
curl -s -o /dev/null "http://127.0.0.1:$SVC_PORT/bench01"   # warm the cache

echo "machine: $(nproc) CPUs, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION --latency; server CPU $SERVER_CPU, wrk CPU $CLIENT_CPU"
printf "%-6s %-9s %11s %8s %8s %12s\n" round target "req/s" "p50 ms" "p99 ms" "CPU us/req"
: >"$data/baseline"; : >"$data/service"; : >"$data/ratio"
run_baseline() {
    read -r b_rps b_p50 b_p99 b_cpu < <(run baseline "http://127.0.0.1:$BASE_PORT/bench01" "$baseline_pid")
    printf "%-6s %-9s %11s %8s %8s %12s\n" "$round" baseline "$b_rps" "$b_p50" "$b_p99" "$b_cpu"
}
run_service() {
    read -r s_rps s_p50 s_p99 s_cpu < <(run service "http://127.0.0.1:$SVC_PORT/bench01" "$service_pid")
    printf "%-6s %-9s %11s %8s %8s %12s\n" "$round" service "$s_rps" "$s_p50" "$s_p99" "$s_cpu"
}
for round in $(seq "$ROUNDS"); do
    # Alternate who goes first (ABBA), so a drift in the machine's speed within a round
    # does not always favour the same side.
    if ((round % 2)); then run_baseline; run_service; else run_service; run_baseline; fi
    echo "$b_rps $b_p50 $b_p99 $b_cpu" >>"$data/baseline"; echo "$s_rps $s_p50 $s_p99 $s_cpu" >>"$data/service"
    awk -v s="$s_rps" -v b="$b_rps" 'BEGIN {printf "%.4f\n", s / b}' >>"$data/ratio"
done

echo "medians over $ROUNDS rounds:"
for who in baseline service; do
    for col in 1 2 3 4; do declare "m$col=$(awk -v c=$col '{print $c}' "$data/$who" | median)"; done
    printf "  %-8s req/s %9.0f   p50 %6.3f ms   p99 %6.3f ms   CPU %6.3f us/req\n" "$who" "$m1" "$m2" "$m3" "$m4"
    declare "cpu_$who=$m4"
done
printf "  ratio service/baseline, throughput (median of per-round ratios): %.3f\n" "$(median <"$data/ratio")"
awk -v s="$cpu_service" -v b="$cpu_baseline" 'BEGIN { printf "  ratio baseline/service, CPU per request:                         %.3f\n", b/s }'
