#!/usr/bin/env bash
# The PostgreSQL driver choice, measured: benches/pg-driver (tokio-postgres + deadpool
# against sqlx) on a throwaway PostgreSQL (Debian's postgresql package). The benchmark
# on CPU 0, PostgreSQL on CPU 1.
#
#   scripts/bench-pg-driver.sh
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/servers.sh

cargo build --release --quiet -p pg-driver
data=$(mktemp -d)
cleanup() { stop_servers; rm -rf "$data"; }
trap cleanup EXIT
server_up url postgres 1
echo "PostgreSQL on CPU 1, the benchmark on CPU 0; $(nproc) CPUs"
DATABASE_URL="$url" taskset -c 0 target/release/pg-driver
