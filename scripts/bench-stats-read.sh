#!/usr/bin/env bash
# Stats read latency of one busy link (1,000,000 clicks over 90 days) on each backend:
# the embedded store, then a throwaway PostgreSQL (Debian's postgresql package). See
# benches/stats_read.rs. Pinned: the example on CPU 0, PostgreSQL on CPU 1.
#
#   scripts/bench-stats-read.sh
#   READS=5000 scripts/bench-stats-read.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/servers.sh

cargo build --release --quiet --features postgres --bin shortener --example stats-read
data=$(mktemp -d)
cleanup() { stop_servers; rm -rf "$data"; }
trap cleanup EXIT
migrated_postgres url 1 target/release/shortener

taskset -c 0 target/release/examples/stats-read
PG_URL="$url" taskset -c 0 target/release/examples/stats-read
