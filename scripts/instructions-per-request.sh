#!/usr/bin/env bash
# User-space instructions per cached redirect, for the service and for the bare hyper
# baseline, counted by valgrind's callgrind: deterministic where wall-clock load runs on
# this shared VM are not (the same build gives the same count to within ~1%), so it
# resolves changes of a few percent that wrk cannot. Kernel time (the TCP stack, ~70% of
# a request's CPU) is not counted; it is the same for both servers.
#
#   scripts/instructions-per-request.sh                        # service (clicks on) + baseline
#   EXTRA_ENV="APP__CLICKS__ENABLED=false" scripts/instructions-per-request.sh
#   BROWSER=1 scripts/instructions-per-request.sh              # with a browser's User-Agent
#                                                              # and Referer (see lib/wrk.sh)
#   SERVICE_BIN=/tmp/shortener.before scripts/instructions-per-request.sh   # an older build
#   KEEP=/tmp/cg scripts/instructions-per-request.sh           # keep the profiles for
#                                                              # callgrind_annotate
#
# Each server runs under callgrind (~50x slower); after a warm-up, the counters are zeroed,
# wrk sends requests for DURATION seconds over 8 connections, and the counters are dumped:
# instructions in that window / requests in that window (background work such as the click
# batcher included, as it should be).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6}
PORT=${PORT:-18181}
ADMIN_PORT=${ADMIN_PORT:-19181}

APP__LIMITS__ENABLED=true   # the default config: cached redirects pass no limiter
source scripts/lib/wrk.sh   # for WRK_HEADERS

for tool in valgrind callgrind_control wrk; do
    command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y valgrind wrk" >&2; exit 1; }
done

cargo build --release --quiet --bin shortener --example baseline-server
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Under valgrind a server takes seconds to start.
wait_up() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

measure() { # name url -> "name requests instructions instructions/request"
    local name=$1 url=$2 requests profile instructions
    wait_up "$url"
    wrk -t1 -c8 -d2s "${WRK_HEADERS[@]}" "$url" >/dev/null     # warm up: the cache, lazily built state
    callgrind_control --zero "$pid" >/dev/null
    requests=$(wrk -t1 -c8 -d"${DURATION}s" "${WRK_HEADERS[@]}" "$url" | awk '/requests in/ {print $1}')
    callgrind_control --dump "$pid" >/dev/null
    sleep 0.5
    profile=$(ls -t "$work"/callgrind.out.* | head -1)
    instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$profile")
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$profile" "$KEEP/$name.callgrind"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    echo "$name $requests $instructions $((instructions / requests))"
}

env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    APP__STORE__PATH="$work/links.redb" RUST_LOG=error ${EXTRA_ENV:-} \
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
    "${SERVICE_BIN:-target/release/shortener}" serve 2>"$work/service.log" &
pid=$!
wait_up "http://127.0.0.1:$PORT/healthz"
# 409: a shared store (EXTRA_ENV naming PostgreSQL) kept it from an earlier run.
created=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/api/v1/links" \
    -H 'content-type: application/json' \
    -d '{"url":"https://example.com/landing?campaign=bench","alias":"bench01"}')
case $created in 201|409) ;; *) echo "creating the link answered $created" >&2; exit 1 ;; esac
read -r _ s_requests s_instr s_per < <(measure service "http://127.0.0.1:$PORT/bench01")

valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
    target/release/examples/baseline-server "127.0.0.1:$PORT" 2>"$work/baseline.log" &
pid=$!
read -r _ b_requests b_instr b_per < <(measure baseline "http://127.0.0.1:$PORT/bench01")

printf "%-9s %10s %15s %12s\n" target requests instructions "per request"
printf "%-9s %10s %15s %12s\n" service "$s_requests" "$s_instr" "$s_per"
printf "%-9s %10s %15s %12s\n" baseline "$b_requests" "$b_instr" "$b_per"
awk -v s="$s_per" -v b="$b_per" 'BEGIN { printf "our code adds %d instructions per request (%.2fx the baseline)\n", s - b, s / b }'
