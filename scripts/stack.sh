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
#   http://127.0.0.1:9099      Prometheus (targets: the instances' 9091-9093, the consumer's 9190)
#   .stack/admin.key           an admin key (the store's first)
#
# Needs nginx and prometheus (apt-get install -y nginx prometheus) besides what the tests
# need. Settings (environment, the same for up, status and down):
#   PROFILE=debug      debug builds (the default is release, for measuring)
#   BIN_DIR=dir        run the binaries already in dir (shortener, analytics, testkit);
#                      no build (tests/stack.rs, after cargo has built them)
#   INSTANCES=3        how many service instances
#   LIMITS_OFF=1       rate limits off (a load generator is one client)
#   EXTRA_ENV="K=V …"  more settings for every instance and the consumer
#   STACK_DIR=.stack   where the state, logs and data go
#   PORT_OFFSET=0      added to every port above, to run beside something on them
# The lab (scripts/lab-scaling.sh) and the smoke test (tests/stack.rs) drive it.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

# Absolute: nginx reads paths relative to its prefix, not to here.
STATE=$(realpath -m "${STACK_DIR:-.stack}")
PROFILE=${PROFILE:-release}
INSTANCES=${INSTANCES:-3}
OFFSET=${PORT_OFFSET:-0}
HTTP_PORT=$((8080 + OFFSET))     # nginx; instance i listens on HTTP_PORT + i
ADMIN_PORT=$((9090 + OFFSET))    # instance i's metrics on ADMIN_PORT + i
ANALYTICS_PORT=$((9190 + OFFSET))
PROMETHEUS_PORT=$((9099 + OFFSET))

started() { [ -f "$STATE/pids" ]; }

wait_ready() { # url what: waits up to 60 s
    for _ in $(seq 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.2
    done
    echo "$2 did not get ready at $1 (logs in $STATE/)" >&2
    return 1
}

up() {
    started && { echo "already up (scripts/stack.sh down first)" >&2; exit 1; }
    for tool in nginx prometheus; do
        command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y nginx prometheus" >&2; exit 1; }
    done
    local bin=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/$PROFILE}
    if [ -z "${BIN_DIR:-}" ]; then
        local flags=()
        [ "$PROFILE" = release ] && flags=(--release)
        cargo build -q "${flags[@]}" --features postgres,redis,kafka --bin shortener
        cargo build -q "${flags[@]}" -p shortener-analytics --bin analytics
        cargo build -q "${flags[@]}" -p shortener-testkit --bin testkit
    fi
    mkdir -p "$STATE"
    : >"$STATE/pids"
    # Whatever fails from here on, nothing is left running.
    trap 'echo "scripts/stack.sh up failed; stopping what started" >&2; down' ERR
    # The kit's servers: each prints its address, then runs until SIGTERM.
    for server in postgres redis kafka; do
        setsid "$bin/testkit" up "$server" >"$STATE/$server.addr" 2>"$STATE/$server.log" &
        echo $! >>"$STATE/pids"
    done
    # Up to 5 minutes: the first start on a machine downloads Kafka's jars.
    for server in postgres redis kafka; do
        for _ in $(seq 1500); do [ -s "$STATE/$server.addr" ] && break; sleep 0.2; done
        [ -s "$STATE/$server.addr" ] || { echo "$server did not start: $STATE/$server.log" >&2; false; }
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
    for setting in ${EXTRA_ENV:-}; do echo "$setting" >>"$STATE/env"; done
    local env
    mapfile -t env <"$STATE/env"
    env "${env[@]}" "$bin/shortener" migrate >/dev/null
    env "${env[@]}" "$bin/analytics" topics create >/dev/null
    env "${env[@]}" "$bin/shortener" keys create --owner admin --scopes admin >"$STATE/admin.key" 2>/dev/null
    local upstream="" targets=""
    for i in $(seq "$INSTANCES"); do
        env "${env[@]}" APP__HTTP__LISTEN="127.0.0.1:$((HTTP_PORT + i))" APP__ADMIN__LISTEN="127.0.0.1:$((ADMIN_PORT + i))" \
            setsid "$bin/shortener" serve >"$STATE/shortener-$i.log" 2>&1 &
        echo $! >>"$STATE/pids"
        upstream+="        server 127.0.0.1:$((HTTP_PORT + i));"$'\n'
        targets+="${targets:+, }\"127.0.0.1:$((ADMIN_PORT + i))\""
    done
    env "${env[@]}" APP__ANALYTICS__LISTEN="127.0.0.1:$ANALYTICS_PORT" setsid "$bin/analytics" run >"$STATE/analytics.log" 2>&1 &
    echo $! >>"$STATE/pids"
    # nginx takes an upstream it cannot reach out of rotation for 10 s: start it once the
    # instances answer.
    for i in $(seq "$INSTANCES"); do wait_ready "http://127.0.0.1:$((HTTP_PORT + i))/readyz" "instance $i"; done
    mkdir -p "$STATE/nginx"
    cat >"$STATE/nginx/nginx.conf" <<EOF
pid $STATE/nginx/nginx.pid;
error_log $STATE/nginx/error.log warn;
worker_processes 1;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $STATE/nginx/body;
    proxy_temp_path $STATE/nginx/proxy;
    fastcgi_temp_path $STATE/nginx/fastcgi;
    uwsgi_temp_path $STATE/nginx/uwsgi;
    scgi_temp_path $STATE/nginx/scgi;
    upstream shortener {
$upstream        keepalive 64;
    }
    server {
        listen 127.0.0.1:$HTTP_PORT;
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
    nginx -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf"
    # config/prometheus/prometheus.yml, with this stack's targets and the rules' full path.
    sed -e "s|\[\"127.0.0.1:9091\", \"127.0.0.1:9092\", \"127.0.0.1:9093\"\]|[$targets]|" \
        -e "s|\"127.0.0.1:9190\"|\"127.0.0.1:$ANALYTICS_PORT\"|" \
        -e "s|- slo-rules.yml|- $PWD/config/prometheus/slo-rules.yml|" \
        config/prometheus/prometheus.yml >"$STATE/prometheus.yml"
    setsid prometheus --config.file="$STATE/prometheus.yml" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --storage.tsdb.path="$STATE/prometheus" >"$STATE/prometheus.log" 2>&1 &
    echo $! >>"$STATE/pids"
    wait_ready "http://127.0.0.1:$HTTP_PORT/readyz" "the service (through nginx)"
    wait_ready "http://127.0.0.1:$ANALYTICS_PORT/readyz" "the analytics consumer"
    wait_ready "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "Prometheus"
    trap - ERR
    status
    echo "admin key: $STATE/admin.key"
}

status() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz" || true)
    echo "service via nginx  http://127.0.0.1:$HTTP_PORT  readyz $code"
    for i in $(seq "$INSTANCES"); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((HTTP_PORT + i))/readyz" || true)
        echo "instance $i         http://127.0.0.1:$((HTTP_PORT + i))  readyz $code, metrics :$((ADMIN_PORT + i))"
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ANALYTICS_PORT/readyz" || true)
    echo "analytics          http://127.0.0.1:$ANALYTICS_PORT  readyz $code"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" || true)
    echo "prometheus         http://127.0.0.1:$PROMETHEUS_PORT  ready $code"
}

down() {
    if [ -f "$STATE/nginx/nginx.pid" ]; then
        local nginx_pid
        nginx_pid=$(cat "$STATE/nginx/nginx.pid")
        kill -QUIT "$nginx_pid" 2>/dev/null || true   # what nginx -s quit sends
        for _ in $(seq 100); do kill -0 "$nginx_pid" 2>/dev/null || break; sleep 0.1; done
    fi
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
