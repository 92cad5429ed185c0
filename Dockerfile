# One image for the service, the analytics consumer and the CLIs (migrate, keys, topics).
#
#   docker build -t shortener .
#   docker run --rm shortener shortener --help
#
# Not built on the project's development machines (they have no Docker engine); the
# build steps are the same commands CI runs (`cargo build --release --locked`).

# --- build: the workspace with every backend and the Kafka client ---------------------
FROM rust:1.95.0-slim-bookworm AS build
# librdkafka is built from its bundled C sources (gcc, make, perl for its configure);
# jemalloc needs make too.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make perl pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features postgres,redis,kafka,scylla --bin shortener \
 && cargo build --release --locked -p shortener-analytics --features scylla \
 && strip target/release/shortener target/release/analytics

# --- runtime: the two binaries, a non-root user, nothing else --------------------------
FROM debian:bookworm-slim AS runtime
# curl only for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home shortener
COPY --from=build /src/target/release/shortener /src/target/release/analytics /usr/local/bin/
USER shortener
WORKDIR /data
# Listen on every interface inside the container; the compose file binds ports to
# loopback on the host. The embedded store, if used, lives in the /data volume.
ENV APP__HTTP__LISTEN=0.0.0.0:8080 \
    APP__ADMIN__LISTEN=0.0.0.0:9090 \
    APP__ANALYTICS__LISTEN=0.0.0.0:9190
EXPOSE 8080 9090 9190
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || curl -fsS http://127.0.0.1:9190/readyz || exit 1
CMD ["shortener", "serve"]
