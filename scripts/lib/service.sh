# Shared by the long-tail load scripts: start the service on a fresh copy of the seeded
# store, and stop it. Source it after setting data (holding seed.redb), service, PORT,
# ADMIN_PORT, SERVER_CPU, pid and, optionally, EXTRA_ENV; and after lib/wrk.sh.

start_service() { # clicks_enabled; sets pid
    cp "$data/seed.redb" "$data/run.redb"
    env APP__HTTP__LISTEN="127.0.0.1:$PORT" APP__ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" \
        APP__STORE__PATH="$data/run.redb" APP__CLICKS__ENABLED="$1" \
        APP__CLICKS__TRUSTED_PROXIES=127.0.0.0/8 RUST_LOG=error ${EXTRA_ENV:-} \
        taskset -c "$SERVER_CPU" "$service" serve &
    pid=$!
    wait_http "http://127.0.0.1:$PORT/healthz"
}

stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
