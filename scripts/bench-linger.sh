#!/usr/bin/env bash
# The batching trade-off of kafka.linger_ms (lesson 8.2), against the test kit's real
# broker, PostgreSQL and the analytics consumer. For each linger value, a fresh service
# (clicks.sink = "kafka", on SERVER_CPU) and two phases of long-tail redirects (Zipf over
# LINKS codes, browser headers):
#   closed loop (wrk, CONNECTIONS connections, WRK_DURATION): the most clicks a second
#     the service produces, with produce requests a second and bytes per request;
#   open loop (benches/open_loop.rs at RATE for DURATION s, sleeping between requests
#     rather than spinning, so that it leaves the consumer its share of the core; its
#     requests are then up to 1 ms late, nothing next to these delays): requests a second
#     and bytes per request at a steady rate, and the delays: click to the broker's
#     acknowledgement (shortener_kafka_delivery_seconds) and click to written statistics
#     (analytics_click_to_stats_seconds), p50 and p99 from the histograms.
# Broker, PostgreSQL, consumer and load generator share CLIENT_CPU.
#
#   scripts/bench-linger.sh                                # 0 1 5 20 100 ms
#   LINGERS="0 5 100" RATE=5000 scripts/bench-linger.sh > /tmp/linger.txt
#   python3 scripts/plot-linger.py /tmp/linger.txt docs/img/linger.png
#
# The last lines ("csv,...") are the table for scripts/plot-linger.py.
set -euo pipefail
cd "$(dirname "$0")/.."

LINGERS=${LINGERS:-0 1 5 20 100}
LINKS=${LINKS:-10000}
RATE=${RATE:-10000}
DURATION=${DURATION:-10}
WRK_DURATION=${WRK_DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}
CONSUMER_PORT=${CONSUMER_PORT:-19190}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source scripts/lib/wrk.sh
source scripts/lib/servers.sh
cargo build --release --quiet --features kafka,postgres --bin shortener --example open-loop
cargo build --release --quiet -p shortener-analytics
data=$(mktemp -d)
pid="" consumer=""
trap 'for p in $pid $consumer; do kill "$p" && wait "$p"; done; stop_servers; rm -rf "$data"' EXIT

kafka_stack_up "$CLIENT_CPU" "$LINKS"
env RUST_LOG=${CONSUMER_RUST_LOG:-error} APP__ANALYTICS__LISTEN="127.0.0.1:$CONSUMER_PORT" taskset -c "$CLIENT_CPU" target/release/analytics run 2>"${CONSUMER_LOG:-/dev/null}" &
consumer=$!
wait_http "http://127.0.0.1:$CONSUMER_PORT/readyz"

scrape() { # file
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1.service"
    curl -s "http://127.0.0.1:$CONSUMER_PORT/metrics" >"$1.consumer"
}
diffed() { # before after kind name [q] (kind: counter | quantile)
    local side=service
    [[ $4 == analytics_* ]] && side=consumer
    python3 scripts/lib/promdiff.py "$1.$side" "$2.$side" "$3" "$4" ${5:-}
}
per_second() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.0f", n / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", b ? a / b : 0}'; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
written() { psql "$pg_url" -X -A -t -c "SELECT coalesce(sum(total), 0) FROM stats_totals"; }
# Waits until the consumer has written every click this service instance delivered
# (the statistics held $base clicks when it started).
settle() {
    local delivered written
    for _ in $(seq 300); do
        delivered=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "shortener_kafka_clicks_total{outcome=\"delivered\",reason=\"\"}" {print $2}')
        written=$(($(written) - base))
        [ "${delivered:-0}" = "$written" ] && return 0
        sleep 0.2
    done
    echo "the consumer did not catch up: $written of $delivered" >&2
    exit 1
}

echo "machine: $(nproc) CPUs, $(uname -r); $LINKS links, Zipf(1.0), browser headers; service CPU $SERVER_CPU; broker, PostgreSQL, consumer and load CPU $CLIENT_CPU"
echo "closed loop: wrk -t1 -c$CONNECTIONS -d$WRK_DURATION; open loop: $RATE req/s for $DURATION s"
printf "%-6s | %9s %9s %9s | %9s %9s | %9s %9s | %9s %9s\n" linger "max clk/s" "req/s" "B/req" "req/s" "B/req" "ack p50" "ack p99" "stats p50" "stats p99"
csv=()
for linger in $LINGERS; do
    base=$(written)
    env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
        APP__CLICKS__SINK=kafka APP__KAFKA__LINGER_MS="$linger" APP__KAFKA__STATISTICS_INTERVAL_MS=500 \
        APP__CLICKS__TRUSTED_PROXIES=127.0.0.0/8 ${EXTRA_ENV:-} \
        taskset -c "$SERVER_CPU" target/release/shortener serve &
    pid=$!
    wait_http "http://127.0.0.1:$PORT/healthz"
    # Closed loop: throughput. The statistics arrive every 500 ms: wait them out.
    LINKS=$LINKS DURATION=3s run warmup "http://127.0.0.1:$PORT/" "$pid" scripts/zipf-codes.lua >/dev/null
    settle; sleep 1; scrape "$data/a"
    read -r max_rps _ _ _ < <(DURATION=$WRK_DURATION LINKS=$LINKS run closed "http://127.0.0.1:$PORT/" "$pid" scripts/zipf-codes.lua)
    settle; sleep 1; scrape "$data/b"
    seconds=${WRK_DURATION%s}
    requests=$(diffed "$data/a" "$data/b" counter shortener_kafka_produce_requests_total)
    bytes=$(diffed "$data/a" "$data/b" counter shortener_kafka_sent_bytes_total)
    closed_rps=$(per_second "$requests" "$seconds") closed_bpr=$(ratio "$bytes" "$requests")
    # Open loop: the steady rate, and the delays.
    RATE=$RATE DURATION=$DURATION WARMUP=0 LINKS=$LINKS SPIN_US=0 taskset -c "$CLIENT_CPU" \
        target/release/examples/open-loop "127.0.0.1:$PORT" >"$data/open.txt"
    grep -q " 0 errors, 0 not 3xx" "$data/open.txt" || { cat "$data/open.txt" >&2; exit 1; }
    settle; sleep 1; scrape "$data/c"
    requests=$(diffed "$data/b" "$data/c" counter shortener_kafka_produce_requests_total)
    bytes=$(diffed "$data/b" "$data/c" counter shortener_kafka_sent_bytes_total)
    open_rps=$(per_second "$requests" "$DURATION") open_bpr=$(ratio "$bytes" "$requests")
    ack50=$(ms "$(diffed "$data/b" "$data/c" quantile shortener_kafka_delivery_seconds 0.5)")
    ack99=$(ms "$(diffed "$data/b" "$data/c" quantile shortener_kafka_delivery_seconds 0.99)")
    st50=$(ms "$(diffed "$data/b" "$data/c" quantile analytics_click_to_stats_seconds 0.5)")
    st99=$(ms "$(diffed "$data/b" "$data/c" quantile analytics_click_to_stats_seconds 0.99)")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    printf "%-6s | %9.0f %9s %9s | %9s %9s | %9s %9s | %9s %9s\n" "$linger" "$max_rps" "$closed_rps" "$closed_bpr" "$open_rps" "$open_bpr" "$ack50" "$ack99" "$st50" "$st99"
    csv+=("csv,$linger,$max_rps,$closed_rps,$closed_bpr,$open_rps,$open_bpr,$ack50,$ack99,$st50,$st99")
done
echo "(max clk/s: closed-loop redirects a second, each one click produced; req/s and B/req: produce requests a second and bytes sent per request; delays in ms)"
echo "csv,linger_ms,max_clicks_per_s,closed_requests_per_s,closed_bytes_per_request,open_requests_per_s,open_bytes_per_request,ack_p50_ms,ack_p99_ms,stats_p50_ms,stats_p99_ms"
printf '%s\n' "${csv[@]}"
