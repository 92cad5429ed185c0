#!/usr/bin/env bash
# Resident memory of the service idle, at the peak of a connection flood, and after it:
# does the memory the flood took come back? (Freed memory that the allocator keeps is not
# a leak, but it is memory the machine does not have.) docs/benchmarks.md, "Memory after
# a connection flood", has the results per allocator.
#
#   scripts/rss-after-flood.sh                              # the release build (jemalloc)
#   CARGO_FLAGS=--no-default-features scripts/rss-after-flood.sh   # glibc's malloc
#   CARGO_FLAGS="--no-default-features --features mimalloc" scripts/rss-after-flood.sh
#   SERVICE_BIN=/tmp/shortener.x scripts/rss-after-flood.sh # a build made elsewhere
#   CONNECTIONS=8000 STREAMS=64 ROUNDS=3 scripts/rss-after-flood.sh
#
# Each round opens CONNECTIONS connections at once (half HTTP/1.1, half HTTP/2 with
# STREAMS requests each, scripts/connection-flood.py), holds them until all are answered,
# closes them, and reads VmRSS SETTLE seconds later. VmHWM is the peak.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18281}
ADMIN_PORT=${ADMIN_PORT:-19281}
CONNECTIONS=${CONNECTIONS:-8000}
STREAMS=${STREAMS:-64}
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-5}

if [ -z "${SERVICE_BIN:-}" ]; then
    # shellcheck disable=SC2086 # CARGO_FLAGS is a list of flags
    cargo build --release --quiet --bin shortener ${CARGO_FLAGS:-}
    SERVICE_BIN=target/release/shortener
fi
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

kib() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$pid/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

env APP__AUTH__MODE=open APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
    APP__STORE__PATH="$work/links.redb" RUST_LOG=error "$SERVICE_BIN" serve &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
# A little traffic first, so lazily built state is not counted as the flood's.
python3 scripts/connection-flood.py "127.0.0.1:$PORT" 100 4 >/dev/null
sleep 1
echo "idle: $(mib "$(kib VmRSS)") MiB"
for round in $(seq "$ROUNDS"); do
    flood=$(python3 scripts/connection-flood.py "127.0.0.1:$PORT" "$CONNECTIONS" "$STREAMS")
    sleep "$SETTLE"
    echo "round $round: $flood; peak $(mib "$(kib VmHWM)") MiB, ${SETTLE}s after: $(mib "$(kib VmRSS)") MiB"
done
