#!/usr/bin/env bash
# The long tail: Zipf(1.0) redirects over N seeded links with a browser's headers and a
# million distinct client addresses, against the bare hyper baseline (same Lua script,
# so the same load-client cost), the service with clicks off, and with clicks on.
#
#   scripts/bench-longtail.sh                              # 100,000 links, 3 rounds of 10 s
#   LINKS_LIST="10000 100000 1000000" ROUNDS=5 scripts/bench-longtail.sh
#   EXTRA_ENV="APP__STATS__FLUSH_INTERVAL_MS=5000" scripts/bench-longtail.sh
#   TARGETS="clicks_on" SERVICE_BIN=/tmp/shortener.before scripts/bench-longtail.sh
#   BACKEND=postgres TARGETS="clicks_off clicks_on" scripts/bench-longtail.sh
#
# BACKEND=postgres runs the service on a throwaway PostgreSQL (Debian's postgresql
# package, on CLIENT_CPU) instead of a redb file: links seeded with SQL, statistics
# tables emptied before each run, bytes per click from pg_total_relation_size.
#
# SINK=kafka (implies BACKEND=postgres) sends clicks_on's clicks through the Kafka sink:
# the test kit's broker and `analytics run` on CLIENT_CPU aggregate them. A run settles
# when every recorded click has an outcome and the statistics hold every delivered one;
# "dropped" is then every click not delivered (queue full here or in the producer,
# failed), and bytes per click are the statistics' bytes over the clicks written.
#
# Each service run starts from a fresh copy of the seeded store, warms up for WARMUP,
# then wrk measures for DURATION. After it, the script waits until every recorded click
# is in the store (recorded = aggregated + dropped{sink_error}) and reports, per run:
# req/s, p99, clicks dropped (queue_full), bytes of statistics per aggregated click
# (GET /storage on the admin port: the statistics tables' B-tree bytes), and the peak
# RSS (VmHWM), and the server's CPU time per request. Then medians per target.
# TARGETS="clicks_off clicks_on" skips the baseline. Server on SERVER_CPU, wrk on CLIENT_CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

LINKS_LIST=${LINKS_LIST:-100000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19090}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq not found: apt-get install -y jq" >&2; exit 1; }
source scripts/lib/wrk.sh

cargo build --release --quiet --bin shortener --example baseline-server --example seed-links
bin=target/release
service=${SERVICE_BIN:-$bin/shortener}   # e.g. a copy of an older build, for before/after
data=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"; }
trap cleanup EXIT

metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2; f=1} END {if (!f) print 0}'; }

source scripts/lib/service.sh   # start_service, stop_server

[ "${SINK:-in_process}" = kafka ] && BACKEND=postgres
if [ "${BACKEND:-embedded}" = postgres ]; then
    source scripts/lib/servers.sh
    cargo build --release --quiet --features "postgres${SINK:+,kafka}" --bin shortener
    trap 'stop_servers; cleanup' EXIT
    migrated_postgres pg_url "$CLIENT_CPU" "$service"
    pg() { psql "$pg_url" -X -q -c "$1"; }
    sink_env=""
    if [ "${SINK:-}" = kafka ]; then
        cargo build --release --quiet -p shortener-analytics
        server_up kafka_addr kafka "$CLIENT_CPU"
        APP__KAFKA__BROKERS="$kafka_addr" RUST_LOG=error target/release/analytics topics create
        APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="$pg_url" APP__KAFKA__BROKERS="$kafka_addr" \
            APP__ANALYTICS__LISTEN=127.0.0.1:$((ADMIN_PORT + 100)) RUST_LOG=error \
            taskset -c "$CLIENT_CPU" target/release/analytics run &
        consumer=$!
        trap 'kill "$consumer"; wait "$consumer"; stop_servers; cleanup' EXIT
        sink_env="APP__CLICKS__SINK=kafka APP__KAFKA__BROKERS=$kafka_addr"
    fi
    seed_links() { # count prefix
        pg "TRUNCATE links; INSERT INTO links (code, target, created_at, redirect)
            SELECT '$2' || i, 'https://example.com/landing/' || i, now(), 302 FROM generate_series(0, $1 - 1) i"
        pg "VACUUM ANALYZE links"
    }
    start_service() { # clicks_enabled; sets pid
        pg "TRUNCATE stats_totals, stats_days, stats_sources"
        env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
            APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="$pg_url" APP__CLICKS__ENABLED="$1" \
            APP__CLICKS__TRUSTED_PROXIES=127.0.0.0/8 RUST_LOG=error ${EXTRA_ENV:-} $([ "$1" = true ] && echo "$sink_env") \
            taskset -c "$SERVER_CPU" "$service" serve &
        pid=$!
        wait_http "http://127.0.0.1:$PORT/healthz"
    }
else
    seed_links() { "$bin/examples/seed-links" "$data/seed.redb" "$1" "$2" 2>/dev/null; }
fi

# One measured run: prints "rps p99 dropped bytes_per_click rss_mb cpu_us_per_request
# write_us_per_cell" (the last: stats store write time per link-day written).
measure() { # target
    local rps p99 cpu dropped bytes_per_click="-" rss per_cell="-"
    local url="http://127.0.0.1:$PORT/"
    case $1 in
        baseline)
            taskset -c "$SERVER_CPU" "$bin/examples/baseline-server" "127.0.0.1:$PORT" & pid=$!
            wait_http "$url" ;;
        clicks_off) start_service false ;;
        clicks_on) start_service true ;;
    esac
    DURATION=$WARMUP run warmup "$url" "$pid" scripts/zipf-codes.lua >/dev/null
    read -r rps _ p99 cpu < <(run "$1" "$url" "$pid" scripts/zipf-codes.lua)
    rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    dropped=0
    if [ "$1" = clicks_on ] && [ "${SINK:-}" = kafka ]; then
        local recorded accounted written delivered
        for _ in $(seq 1200); do   # every recorded click has an outcome, every delivered one is written
            recorded=$(metric shortener_clicks_recorded_total)
            delivered=$(metric 'shortener_kafka_clicks_total{outcome="delivered",reason=""}')
            accounted=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 ~ /^shortener_kafka_clicks_total/ || $1 ~ /^shortener_clicks_dropped_total/ {s += $2} END {printf "%d", s}')
            written=$(psql "$pg_url" -X -A -t -c "SELECT coalesce(sum(total), 0) FROM stats_totals")
            [ "$recorded" = "$accounted" ] && [ "$written" = "$delivered" ] && break
            sleep 0.1
        done
        dropped=$((recorded - written))
        bytes=$(curl -s "http://127.0.0.1:$ADMIN_PORT/storage" | jq .stats_bytes)
        bytes_per_click=$(awk -v b="$bytes" -v n="$written" 'BEGIN {printf "%.1f", b / n}')
        rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    elif [ "$1" = clicks_on ]; then
        for _ in $(seq 600); do   # the stats writer runs every stats.flush_interval_ms
            recorded=$(metric shortener_clicks_recorded_total)
            settled=$(awk -v a="$(metric shortener_clicks_aggregated_total)" \
                -v b="$(metric 'shortener_clicks_dropped_total{reason="sink_error"}')" 'BEGIN {print a + b}')
            [ "$recorded" = "$settled" ] && break
            sleep 0.1
        done
        dropped=$(metric 'shortener_clicks_dropped_total{reason="queue_full"}')
        bytes=$(curl -s "http://127.0.0.1:$ADMIN_PORT/storage" | jq .stats_bytes)
        bytes_per_click=$(awk -v b="$bytes" -v n="$(metric shortener_clicks_aggregated_total)" 'BEGIN {printf "%.1f", b / n}')
        rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
        per_cell=$(awk -v t="$(metric 'shortener_stats_write_duration_seconds_sum{result="ok"}')" \
            -v n="$(metric shortener_stats_write_cells_sum)" 'BEGIN {printf "%.1f", n ? t * 1e6 / n : 0}')
    fi
    stop_server
    echo "$rps $p99 $dropped $bytes_per_click $rss $cpu $per_cell"
}

echo "backend: ${BACKEND:-embedded}; clicks: ${SINK:-in_process}; machine: $(nproc) CPUs, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up), Zipf(1.0), browser headers; server CPU $SERVER_CPU, wrk CPU $CLIENT_CPU"
for links in $LINKS_LIST; do
    rm -f "$data/seed.redb"
    LINKS_SEED_START=$(date +%s.%N)
    seed_links "$links" L
    echo
    echo "== $links links (seeded in $(awk -v s="$LINKS_SEED_START" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s)"
    printf "%-6s %-11s %10s %8s %10s %8s %8s %8s %9s\n" round target "req/s" "p99 ms" dropped "B/click" "RSS MB" "CPU us" "us/cell"
    read -r -a targets <<<"${TARGETS:-baseline clicks_off clicks_on}"
    for target in "${targets[@]}"; do : >"$data/$target"; done
    for round in $(seq "$ROUNDS"); do
        # Rotate the order each round so drift in the machine's speed is spread evenly.
        for i in "${!targets[@]}"; do
            target=${targets[$(((i + round) % ${#targets[@]}))]}
            line=$(LINKS=$links measure "$target")
            echo "$line" >>"$data/$target"
            printf "%-6s %-11s %10s %8s %10s %8s %8s %8s %9s\n" "$round" "$target" $line
        done
    done
    echo "medians:"
    for target in "${targets[@]}"; do
        m() { awk -v c="$1" '{print $c}' "$data/$target" | median; }
        printf "  %-11s req/s %8.0f   p99 %6.2f ms   dropped %8s   B/click %6s   RSS %5s MB   CPU %6.2f us/req\n" \
            "$target" "$(m 1)" "$(m 2)" "$(m 3)" "$([ "$target" = clicks_on ] && m 4 || echo -)" "$(m 5)" "$(m 6)"
        declare "rps_$target=$(m 1)"
    done
    awk -v on="${rps_clicks_on:-0}" -v off="${rps_clicks_off:-0}" -v b="${rps_baseline:-0}" \
        'BEGIN {if (off) printf "  clicks on / clicks off: %.3f", on / off; if (b) printf "   clicks off / baseline: %.3f", off / b; print ""}'
done
