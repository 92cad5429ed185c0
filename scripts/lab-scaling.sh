#!/usr/bin/env bash
# The scaling lab (docs/labs/scaling.md): the local stack (scripts/stack.sh) with 1 and
# then 3 instances behind nginx, and for each: cached redirects of one hot link, redirects
# spread over many links (most miss the in-process cache: Redis, then PostgreSQL), and
# creates. For every run it prints requests/s, p50, p99 and the CPU each process used
# (nginx, the instances, PostgreSQL, Redis, Kafka, the consumer), so that the bottleneck
# can be read off, and writes the numbers to $OUT (a CSV) for scripts/plot-lab.py.
#
#   scripts/lab-scaling.sh                  # release build; 10 s per run
#   DURATION=5s LINKS=20000 scripts/lab-scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
LINKS=${LINKS:-20000}
OUT=${OUT:-bench-results/lab-scaling.csv}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
echo "instances,workload,rps,p50_ms,p99_ms,cpu_nginx,cpu_service,cpu_postgres,cpu_redis,cpu_kafka,cpu_consumer" >"$OUT"

ticks() { # pids... -> summed utime+stime
    local total=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}
tree() { # pid -> it and its descendants
    local pid=$1 child
    echo "$pid"
    for child in $(pgrep -P "$pid"); do tree "$child"; done
}
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'; }

run() { # instances workload url [lua]
    local groups=() name pids before=() after=() out i
    # CPU groups: nginx, service instances, then the kit's servers and the consumer.
    declare -A members
    members[nginx]=$(pgrep -f "nginx: " | tr '\n' ' ')
    members[service]=$(pgrep -f "shortener serve" | tr '\n' ' ')
    members[postgres]=$(for p in $(pgrep -f "testkit up postgres"); do tree "$p"; done | tr '\n' ' ')
    members[redis]=$(for p in $(pgrep -f "testkit up redis"); do tree "$p"; done | tr '\n' ' ')
    members[kafka]=$(for p in $(pgrep -f "testkit up kafka"); do tree "$p"; done | tr '\n' ' ')
    members[consumer]=$(pgrep -f "analytics run" | tr '\n' ' ')
    groups=(nginx service postgres redis kafka consumer)
    for name in "${groups[@]}"; do
        # shellcheck disable=SC2086
        before+=("$(ticks ${members[$name]})")
    done
    out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency ${4:+-s "$4"} "$3")
    for name in "${groups[@]}"; do
        # shellcheck disable=SC2086
        after+=("$(ticks ${members[$name]})")
    done
    local seconds rps p50 p99 cpu=()
    seconds=$(echo "$DURATION" | tr -d s)
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
    for i in "${!groups[@]}"; do
        cpu+=("$(awk -v t=$((after[i] - before[i])) -v hz="$(getconf CLK_TCK)" -v s="$seconds" 'BEGIN {printf "%.2f", t / hz / s}')")
    done
    if grep -q "Non-2xx or 3xx" <<<"$out"; then echo "errors in $2:" >&2; echo "$out" >&2; exit 1; fi
    printf "%-9s %-10s %9s %8s %8s   nginx %s service %s postgres %s redis %s kafka %s consumer %s (cores)\n" \
        "$1" "$2" "$rps" "$p50" "$p99" "${cpu[@]}"
    echo "$1,$2,$rps,$p50,$p99,$(IFS=,; echo "${cpu[*]}")" >>"$OUT"
}

echo "machine: $(nproc) CPUs, $(uname -r); wrk -t2 -c$CONNECTIONS -d$DURATION through nginx; $LINKS links"
printf "%-9s %-10s %9s %8s %8s\n" instances workload "req/s" "p50 ms" "p99 ms"
for instances in 1 3; do
    # A small in-process cache (1 MB, ~1,250 links) so that the spread workload misses it
    # and shows the Redis tier and the store.
    INSTANCES=$instances LIMITS_OFF=1 EXTRA_ENV="APP__CACHE__MAX_CAPACITY_BYTES=1000000" \
        scripts/stack.sh up >/dev/null
    trap 'scripts/stack.sh down' EXIT
    key=$(cat .stack/admin.key)
    # The links: created through the API (group commit), aliases lab-0 ... lab-(LINKS-1).
    sed "s|\\[\"Content-Type\"\\] = \"application/json\"|&, [\"Authorization\"] = \"Bearer $key\"|" \
        scripts/create-links.lua >.stack/create.lua
    seq 0 $((LINKS - 1)) | xargs -P 16 -I{} curl -s -o /dev/null -X POST http://127.0.0.1:8080/api/v1/links \
        -H "authorization: Bearer $key" -H 'content-type: application/json' \
        -d '{"url":"https://example.com/lab/{}","alias":"lab-{}"}'
    curl -s -o /dev/null http://127.0.0.1:8080/lab-0
    run "$instances" cached http://127.0.0.1:8080/lab-0
    export CODES=$LINKS CODE_PREFIX=lab-
    run "$instances" spread http://127.0.0.1:8080/ scripts/random-codes.lua
    run "$instances" creates http://127.0.0.1:8080/ .stack/create.lua
    scripts/stack.sh down
    trap - EXIT
done
echo "written: $OUT"
