# Throwaway servers for the scripts, from the project's test kit: `testkit up <server>`
# (crates/testkit/src/main.rs) starts PostgreSQL, Redis, Kafka or Cassandra by the same
# recipe the tests use, on a free loopback port, and stops it (deleting its directory)
# when killed. Scripts call stop_servers from their EXIT trap.

cargo build --quiet -p shortener-testkit --bin testkit
testkit_pids=()

server_up() { # variable server [cpus]: starts server, pinned to cpus; sets variable to its address
    local out pid
    out=$(mktemp)
    taskset -c "${3:-0-$(($(nproc) - 1))}" target/debug/testkit up "$2" >"$out" &
    pid=$!
    testkit_pids+=("$pid")
    until [ -s "$out" ]; do
        kill -0 "$pid" 2>/dev/null || { echo "testkit up $2 failed" >&2; rm -f "$out"; exit 1; }
        sleep 0.1
    done
    printf -v "$1" '%s' "$(head -n 1 "$out")"
    rm -f "$out"
}

stop_servers() {
    [ ${#testkit_pids[@]} -gt 0 ] || return 0
    kill "${testkit_pids[@]}" 2>/dev/null || true
    wait "${testkit_pids[@]}" 2>/dev/null || true
}

migrated_postgres() { # variable cpus shortener-binary: a PostgreSQL with the schema applied
    server_up "$1" postgres "$2"
    APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="${!1}" RUST_LOG=error "$3" migrate >/dev/null
}

# For the benchmark scripts: builds the service with the given features, makes $data (a
# temporary directory) and $pids (children to kill), removes all three on exit, and
# starts a migrated PostgreSQL pinned to $CLIENT_CPU: sets $pg_url.
bench_with_postgres() { # cargo-features
    cargo build --release --quiet --features "$1" --bin shortener
    data=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; stop_servers; rm -rf "$data"' EXIT
    migrated_postgres pg_url "$CLIENT_CPU" target/release/shortener
}

# For the Kafka scripts: the test kit's broker and a migrated PostgreSQL pinned to cpus,
# links L0..L(count-1) seeded, the topics created, and the stack's settings exported
# (APP__STORE__*, APP__KAFKA__BROKERS; RUST_LOG=error). Sets kafka_addr and pg_url.
kafka_stack_up() { # cpus links
    command -v psql >/dev/null || { echo "psql not found: apt-get install -y postgresql-client" >&2; exit 1; }
    server_up kafka_addr kafka "$1"
    migrated_postgres pg_url "$1" target/release/shortener
    psql "$pg_url" -X -q -c "INSERT INTO links (code, target, created_at, redirect)
        SELECT 'L' || i, 'https://example.com/landing/' || i, now(), 302 FROM generate_series(0, $2 - 1) i"
    export APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="$pg_url" APP__KAFKA__BROKERS="$kafka_addr" RUST_LOG=error
    target/release/analytics topics create
}
