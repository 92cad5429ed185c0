# Shared by the scripts that need a throwaway PostgreSQL (Debian's postgresql package):
# a cluster in a directory of its own, on a loopback port, with fsync and synchronous
# commit on (the defaults), stopped by stop_postgres. PostgreSQL refuses to run as root,
# so as root its binaries run as the package's postgres user.

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() { # dir port [cpu] -> prints the URL of database "shortener"
    [ -n "$PG_BIN" ] || { echo "PostgreSQL not found: apt-get install -y postgresql" >&2; exit 1; }
    mkdir -p "$1"; chmod a+x "$(dirname "$1")"; [ "$(id -u)" -ne 0 ] || chown postgres "$1"
    as_pg "$PG_BIN/initdb" -D "$1/data" -A trust -U postgres >/dev/null
    as_pg taskset -c "${3:-0-$(($(nproc) - 1))}" "$PG_BIN/pg_ctl" -D "$1/data" -l "$1/log" \
        -o "-p $2 -k $1 -c listen_addresses=127.0.0.1" -w start >/dev/null
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$2" -U postgres shortener
    echo "postgres://postgres@127.0.0.1:$2/shortener"
}

stop_postgres() { as_pg "$PG_BIN/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true; }

migrated_postgres() { # dir port cpu shortener-binary -> prints the URL, schema applied
    local url
    url=$(start_postgres "$1" "$2" "$3")
    APP__STORE__BACKEND=postgres APP__STORE__POSTGRES__URL="$url" RUST_LOG=error "$4" migrate >/dev/null
    echo "$url"
}

# For the benchmark scripts: builds the service with the given features, makes $data (a
# temporary directory) and $pids (children to kill), removes all three on exit, and
# starts a migrated cluster in $data/pg on $PG_PORT pinned to $CLIENT_CPU: sets $pg_url.
bench_with_postgres() { # cargo-features
    cargo build --release --quiet --features "$1" --bin shortener
    data=$(mktemp -d)
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; stop_postgres "$data/pg"; rm -rf "$data"' EXIT
    pg_url=$(migrated_postgres "$data/pg" "$PG_PORT" "$CLIENT_CPU" target/release/shortener)
}
