#!/usr/bin/env bash
# The analytics consumer end to end: consumed from the real broker, decoded, aggregated
# and written to PostgreSQL with its offsets. The clicks are real ones: the service
# (clicks.sink = "kafka") redirects a long tail (Zipf over LINKS codes, browser headers,
# many client addresses) for PRODUCE_SECONDS with the consumer stopped; then
# `analytics run` starts, pinned alone to SERVER_CPU, and works through the backlog.
# Reported: events, wall time, the consumer's CPU time (utime + stime), events a second
# of wall time and per CPU-second (one core), and PostgreSQL's CPU meanwhile.
#
#   scripts/bench-consumer.sh
#   LINKS=1000000 PRODUCE_SECONDS=20 scripts/bench-consumer.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS=${LINKS:-100000}
PRODUCE_SECONDS=${PRODUCE_SECONDS:-10}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
CONSUMER_PORT=${CONSUMER_PORT:-19190}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source scripts/lib/wrk.sh
source scripts/lib/servers.sh
cargo build --release --quiet --features kafka,postgres --bin shortener
cargo build --release --quiet -p shortener-analytics
pid="" consumer=""
trap 'for p in $pid $consumer; do kill "$p" && wait "$p"; done; stop_servers' EXIT

kafka_stack_up "$CLIENT_CPU" "$LINKS"

# The backlog: real redirects, their clicks produced (a long linger: produced fast).
env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    APP__CLICKS__SINK=kafka APP__KAFKA__LINGER_MS=100 APP__CLICKS__TRUSTED_PROXIES=127.0.0.0/8 \
    taskset -c "$SERVER_CPU" target/release/shortener serve &
pid=$!
wait_http "http://127.0.0.1:$PORT/healthz"
LINKS=$LINKS DURATION=${PRODUCE_SECONDS}s run produce "http://127.0.0.1:$PORT/" "$pid" scripts/zipf-codes.lua >/dev/null
service_metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2; f=1} END {if (!f) print 0}'; }
until [ "$(service_metric shortener_kafka_in_flight_clicks)" = 0 ]; do sleep 0.2; done
produced=$(service_metric 'shortener_kafka_clicks_total{outcome="delivered",reason=""}')
kill "$pid"; wait "$pid" || true; pid=""
written() { psql "$pg_url" -X -A -t -c "SELECT coalesce(sum(total), 0) FROM stats_totals"; }

# The consumer, alone on SERVER_CPU.
pg_before=$(for p in $(pgrep postgres); do cpu_ticks "$p"; done | awk '{s += $1} END {print s + 0}')
started=$(date +%s.%N)
RUST_LOG=${CONSUMER_RUST_LOG:-error} APP__ANALYTICS__LISTEN="127.0.0.1:$CONSUMER_PORT" taskset -c "$SERVER_CPU" target/release/analytics run 2>"${CONSUMER_LOG:-/dev/null}" &
consumer=$!
wait_http "http://127.0.0.1:$CONSUMER_PORT/readyz"
until [ "$(written)" = "$produced" ]; do sleep 0.1; done
ticks=$(cpu_ticks "$consumer")
curl -s "http://127.0.0.1:$CONSUMER_PORT/metrics" >"${METRICS_OUT:-/dev/null}"
consumer_metric() { curl -s "http://127.0.0.1:$CONSUMER_PORT/metrics" | awk -v m="$1" '$1 == m {s += $2} END {print s + 0}'; }
writes=$(consumer_metric 'analytics_writes_total')
cells=$(consumer_metric 'analytics_write_cells_sum')
write_s=$(consumer_metric 'analytics_write_duration_seconds_sum{outcome="ok"}')
ended=$(date +%s.%N)
pg_after=$(for p in $(pgrep postgres); do cpu_ticks "$p"; done | awk '{s += $1} END {print s + 0}')
events=$(written)
awk -v n="$events" -v s="$started" -v e="$ended" -v t="$ticks" -v hz="$TICKS" -v pg=$((pg_after - pg_before)) -v w="$writes" -v c="$cells" -v ws="$write_s" 'BEGIN {
    cpu = t / hz
    printf "%d events; %.1f s wall (from the start of analytics run to the last click written, the group join included); consumer CPU %.2f s; PostgreSQL CPU %.2f s\n", n, e - s, cpu, pg / hz
    printf "%.0f events/s of wall time; %.0f events per consumer CPU-second (%.2f us per event)\n", n / (e - s), n / cpu, cpu * 1e6 / n
    printf "%d writes of %d link-days in all, %.1f s writing (%.1f us per link-day)\n", w, c, ws, c ? ws * 1e6 / c : 0
}'
