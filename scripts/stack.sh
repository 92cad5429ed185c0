#!/usr/bin/env bash
# The topology of docker-compose.yml from local processes, on loopback: PostgreSQL,
# Redis and Kafka from the test kit (crates/testkit), three service instances behind
# nginx, the analytics consumer, and Prometheus with the SLO rules.
#
#   scripts/stack.sh up        # builds, starts everything, prints the URLs and the admin key
#   scripts/stack.sh status    # what answers
#   scripts/stack.sh down      # stops everything and deletes its data (.stack/)
#
#   http://127.0.0.1:8080      the service, through nginx (round robin over 8081-8083)
#   http://127.0.0.1:9099      Prometheus (targets: the three instances, the consumer)
#   .stack/admin.key           an admin key (the store's first)
#
# Needs nginx and prometheus (apt-get install -y nginx prometheus) besides what the tests
# need. PROFILE=debug uses debug builds (what CI has already built); the default is
# release, for measuring. INSTANCES (3) sets how many instances; LIMITS_OFF=1 turns rate
# limits off (a load generator is one client); EXTRA_ENV="K=V ..." adds settings. The
# lab (scripts/lab-scaling.sh) drives it.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.stack
PROFILE=${PROFILE:-release}
INSTANCES=${INSTANCES:-3}

started() { [ -f "$STATE/pids" ]; }

up() {
    started && { echo "already up (scripts/stack.sh down first)" >&2; exit 1; }
    for tool in nginx prometheus; do
        command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y nginx prometheus" >&2; exit 1; }
    done
    local flags=()
    [ "$PROFILE" = release ] && flags=(--release)
    cargo build -q "${flags[@]}" --features postgres,redis,kafka --bin shortener
    cargo build -q "${flags[@]}" -p shortener-analytics --bin analytics
    cargo build -q -p shortener-testkit --bin testkit
    local bin="target/$PROFILE"
    mkdir -p "$STATE"
    : >"$STATE/pids"
    # The kit's servers: each prints its address, then runs until SIGTERM.
    for server in postgres redis kafka; do
        setsid target/debug/testkit up "$server" >"$STATE/$server.addr" 2>"$STATE/$server.log" &
        echo $! >>"$STATE/pids"
    done
    for server in postgres redis kafka; do
        until [ -s "$STATE/$server.addr" ]; do sleep 0.2; done
    done
    cat >"$STATE/env" <<EOF
APP__STORE__BACKEND=postgres
APP__STORE__POSTGRES__URL=$(cat "$STATE/postgres.addr")
APP__REDIS__URL=$(cat "$STATE/redis.addr")
APP__KAFKA__BROKERS=$(cat "$STATE/kafka.addr")
APP__CLICKS__SINK=kafka
APP__CLICKS__TRUSTED_PROXIES=127.0.0.1/32
APP__AUTH__BOOTSTRAP_KEY_FILE=
RUST_LOG=warn
EOF
    if [ "${LIMITS_OFF:-0}" = 1 ]; then echo "APP__LIMITS__ENABLED=false" >>"$STATE/env"; fi
    # EXTRA_ENV: more settings for every instance and the consumer ("K=V K=V").
    for setting in ${EXTRA_ENV:-}; do echo "$setting" >>"$STATE/env"; done
    local env
    mapfile -t env <"$STATE/env"
    env "${env[@]}" "$bin/shortener" migrate >/dev/null
    env "${env[@]}" "$bin/analytics" topics create >/dev/null
    env "${env[@]}" "$bin/shortener" keys create --owner admin --scopes admin >"$STATE/admin.key" 2>/dev/null
    local upstream=""
    for i in $(seq "$INSTANCES"); do
        env "${env[@]}" APP__HTTP__LISTEN="127.0.0.1:$((8080 + i))" APP__ADMIN__LISTEN="127.0.0.1:$((9090 + i))" \
            setsid "$bin/shortener" serve >"$STATE/shortener-$i.log" 2>&1 &
        echo $! >>"$STATE/pids"
        upstream+="        server 127.0.0.1:$((8080 + i));"$'\n'
    done
    env "${env[@]}" APP__ANALYTICS__LISTEN=127.0.0.1:9190 setsid "$bin/analytics" run >"$STATE/analytics.log" 2>&1 &
    echo $! >>"$STATE/pids"
    mkdir -p "$STATE/nginx"
    cat >"$STATE/nginx/nginx.conf" <<EOF
pid $PWD/$STATE/nginx/nginx.pid;
error_log $PWD/$STATE/nginx/error.log warn;
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $PWD/$STATE/nginx/body;
    proxy_temp_path $PWD/$STATE/nginx/proxy;
    fastcgi_temp_path $PWD/$STATE/nginx/fastcgi;
    uwsgi_temp_path $PWD/$STATE/nginx/uwsgi;
    scgi_temp_path $PWD/$STATE/nginx/scgi;
    upstream shortener {
$upstream        keepalive 64;
    }
    server {
        listen 127.0.0.1:8080;
        location / {
            proxy_pass http://shortener;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
    nginx -p "$PWD/$STATE/nginx" -c "$PWD/$STATE/nginx/nginx.conf"
    setsid prometheus --config.file=config/prometheus/prometheus.yml --web.listen-address=127.0.0.1:9099 \
        --storage.tsdb.path="$STATE/prometheus" >"$STATE/prometheus.log" 2>&1 &
    echo $! >>"$STATE/pids"
    for url in http://127.0.0.1:8080/readyz http://127.0.0.1:9190/readyz http://127.0.0.1:9099/-/ready; do
        for _ in $(seq 300); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done
    done
    status
    echo "admin key: $STATE/admin.key"
}

status() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz || true)
    echo "service via nginx  http://127.0.0.1:8080  readyz $code"
    for i in $(seq "$INSTANCES"); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((8080 + i))/readyz" || true)
        echo "instance $i         http://127.0.0.1:$((8080 + i))  readyz $code, metrics :$((9090 + i))"
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9190/readyz || true)
    echo "analytics          http://127.0.0.1:9190  readyz $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9099/-/ready || true)
    echo "prometheus         http://127.0.0.1:9099  ready $code"
}

down() {
    [ -f "$STATE/nginx/nginx.pid" ] && nginx -p "$PWD/$STATE/nginx" -c "$PWD/$STATE/nginx/nginx.conf" -s quit 2>/dev/null || true
    if started; then
        # The service and the consumer first (they drain), then the servers.
        tac "$STATE/pids" | while read -r pid; do kill "$pid" 2>/dev/null || true; done
        tac "$STATE/pids" | while read -r pid; do
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        done
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    up) up ;;
    status) status ;;
    down) down ;;
    *) echo "usage: scripts/stack.sh up|status|down" >&2; exit 2 ;;
esac
