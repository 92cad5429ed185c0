# Shared by the load scripts in scripts/: run wrk pinned to a CPU and turn its output
# into numbers. Source it after setting CONNECTIONS, DURATION and CLIENT_CPU.

# The load scripts measure the service, not its access control: the management API in
# open mode (allowed on loopback only) and no rate limits (a load generator is one
# client). A script that measures the default config sets APP__LIMITS__ENABLED=true.
export APP__AUTH__MODE=open APP__LIMITS__ENABLED=${APP__LIMITS__ENABLED:-false}

wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# wrk's latency lines look like "50%  312.00us"; normalise to milliseconds.
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 }; printf "%.3f", v }'; }

# BROWSER=1 sends what a browser following a shared link sends (wrk sends neither header
# by default), so the click path handles real header values: capping, copying, parsing.
WRK_HEADERS=()
if [ "${BROWSER:-0}" = 1 ]; then
    WRK_HEADERS=(-H "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
                 -H "Referer: https://news.example.com/articles/2026/11/some-story?utm_source=feed")
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime
TICKS=$(getconf CLK_TCK)

run() { # name url pid [wrk lua script] -> "rps p50 p99 cpu_us_per_request"
    local out rps p50 p99 requests before after
    before=$(cpu_ticks "$3")
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${WRK_HEADERS[@]}" ${4:+-s "$4"} "$2")
    after=$(cpu_ticks "$3")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    if grep -q "Non-2xx or 3xx" <<<"$out"; then echo "$1: errors in run:" >&2; echo "$out" >&2; exit 1; fi
    echo "$rps $p50 $p99 $(awk -v t=$((after - before)) -v hz="$TICKS" -v n="$requests" 'BEGIN {printf "%.3f", t / hz * 1e6 / n}')"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }


# Rounds over several running targets, measured in turn within each round so that the
# machine's drift hits them alike, then their medians and throughput ratios to the
# first. The caller sets `names` (the targets, the baseline first), `pid` (name -> the
# server's pid), `data` (a directory for the rows) and defines `target_url NAME` and
# `target_script NAME` (a wrk Lua script, or nothing).
rounds_and_medians() { # throughput-label
    local name round rps p50 p99 cpu base col m1 m2 m3 m4
    printf "%-6s %-11s %11s %8s %8s %12s\n" round target "$1" "p50 ms" "p99 ms" "CPU us/req"
    for name in "${names[@]}"; do : >"$data/$name"; done
    for round in $(seq "$ROUNDS"); do
        for name in "${names[@]}"; do
            read -r rps p50 p99 cpu < <(run "$name" "$(target_url "$name")" "${pid[$name]}" "$(target_script "$name")")
            printf "%-6s %-11s %11s %8s %8s %12s\n" "$round" "$name" "$rps" "$p50" "$p99" "$cpu"
            echo "$rps $p50 $p99 $cpu" >>"$data/$name"
        done
    done
    echo "medians over $ROUNDS rounds (ratio: throughput / ${names[0]}'s):"
    base=$(awk '{print $1}' "$data/${names[0]}" | median)
    for name in "${names[@]}"; do
        for col in 1 2 3 4; do
            declare "m$col=$(awk -v c=$col '{print $c}' "$data/$name" | median)"
        done
        printf "  %-11s %s %9.0f   p50 %6.3f ms   p99 %6.3f ms   CPU %6.3f us/req   ratio %.3f\n" \
            "$name" "$1" "$m1" "$m2" "$m3" "$m4" "$(awk -v a="$m1" -v b="$base" 'BEGIN {print a / b}')"
    done
}
