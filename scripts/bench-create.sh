#!/usr/bin/env bash
# Durable creates under load, on loopback: group commit against one commit per create,
# for both backends, measured in turn within each round so machine noise hits them alike.
#
#   embedded-1   redb, store.max_group = 1 (one fsync per create: the old behaviour)
#   embedded     redb, group commit (store.max_group default)
#   postgres-1   PostgreSQL, store.max_group = 1 (one INSERT and WAL flush per create)
#   postgres     PostgreSQL, group commit (one multi-row INSERT per group)
#   embedded-key redb, group commit, with API keys (auth.mode = "keys"): each create
#                carries `Authorization: Bearer` and is checked (the others run in the
#                scripts' open mode)
#
#   scripts/bench-create.sh                    # 3 rounds of 10 s, 64 connections
#   ROUNDS=5 DURATION=5s scripts/bench-create.sh
#   NAMES="embedded embedded-key" scripts/bench-create.sh   # the cost of a key check
#
# Each request POSTs a distinct URL (scripts/create-links.lua); codes are generated. The
# service runs on CPU 0, wrk and PostgreSQL on CPU 1. Reports creates/s, p50, p99 and the
# service's CPU per create, medians, and ratios to embedded-1; and the group sizes seen.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
source scripts/lib/wrk.sh
source scripts/lib/servers.sh

bench_with_postgres postgres

read -r -a names <<<"${NAMES:-embedded-1 embedded postgres-1 postgres}"
declare -A port admin pid env
port=([embedded-1]=18281 [embedded]=18282 [postgres-1]=18283 [postgres]=18284 [embedded-key]=18285)
env=(
    [embedded-1]="APP__STORE__MAX_GROUP=1"
    [embedded]=""
    [postgres-1]="APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL=$pg_url APP__STORE__MAX_GROUP=1"
    [postgres]="APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL=$pg_url"
    [embedded-key]="APP__AUTH__MODE=keys APP__AUTH__BOOTSTRAP_KEY_FILE=$data/admin.key"
)
for name in "${names[@]}"; do
    admin[$name]=$((port[$name] + 1000))
    # shellcheck disable=SC2086 # env[...] is a list of assignments
    env APP__HTTP__LISTEN="127.0.0.1:${port[$name]}" APP__ADMIN__LISTEN="127.0.0.1:${admin[$name]}" \
        APP__STORE__PATH="$data/$name.redb" APP__CLICKS__ENABLED=false RUST_LOG=error ${env[$name]} \
        taskset -c "$SERVER_CPU" target/release/shortener serve & pids+=($!)
    pid[$name]=$!
done
for name in "${names[@]}"; do wait_http "http://127.0.0.1:${port[$name]}/healthz"; done

echo "machine: $(nproc) CPUs, $(uname -r); wrk -t1 -c$CONNECTIONS -d$DURATION --latency -s scripts/create-links.lua; services CPU $SERVER_CPU, wrk + PostgreSQL CPU $CLIENT_CPU"
target_url() { echo "http://127.0.0.1:${port[$1]}/"; }
# embedded-key's creates carry the admin key its first start wrote.
if [ -f "$data/admin.key" ]; then
    sed "s|\[\"Content-Type\"\] = \"application/json\"|&, [\"Authorization\"] = \"Bearer $(cat "$data/admin.key")\"|" \
        scripts/create-links.lua >"$data/create-links-key.lua"
fi
target_script() { case $1 in embedded-key) echo "$data/create-links-key.lua" ;; *) echo scripts/create-links.lua ;; esac; }
rounds_and_medians creates/s

echo "group sizes (whole run: commits, creates, creates per commit):"
for name in "${names[@]}"; do
    curl -s "http://127.0.0.1:${admin[$name]}/metrics" | awk -v n="$name" '
        /^shortener_store_group_size_count/ {c=$2} /^shortener_store_group_size_sum/ {s=$2}
        END {printf "  %-11s %9d %10d %8.1f\n", n, c, s, (c ? s / c : 0)}'
done
