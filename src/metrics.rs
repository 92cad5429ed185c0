//! Metric names, descriptions and the Prometheus recorder: the metrics *interface*.
//!
//! Every metric the service emits is named here and nowhere else, following
//! `shortener_<subsystem>_<name>_<unit>[_total]`. Labels are low-cardinality by rule: a
//! route *template* (`/{code}`), a status code, a cache result, a store operation; never
//! a code, a URL or a client address, which would make every link its own time series.
//!
//! Hot paths do not look metrics up by name per event (a registry lookup hashes the name
//! and labels on every call); they resolve handles once and keep them (see
//! `http::middleware::metrics` and `cache`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests answered, by `route` template and `status`.
pub const HTTP_REQUESTS: &str = "shortener_http_requests_total";
/// HTTP request latency (first byte of headers parsed to response ready), by route and status.
pub const HTTP_REQUEST_DURATION: &str = "shortener_http_request_duration_seconds";
/// Requests refused by the overload guards, by `reason` (`concurrency`, `timeout`,
/// `body_timeout`, `body_too_large` when declared over the limit) and, for
/// `concurrency`, by `budget` (`redirect`, `api`, `api_connection`: past one
/// connection's share of the API budget).
pub const HTTP_REJECTED: &str = "shortener_http_rejected_total";
/// Requests answered 429 by a rate limit, by `limit` (`api_client`, `api_key`,
/// `redirect_miss`, `cached_redirect`).
pub const RATE_LIMITED: &str = "shortener_rate_limited_total";
/// Management requests refused before their handler, by `reason` (`missing_key`,
/// `malformed_key`, `unknown_key`, `key_revoked`, `insufficient_scope`). Never labelled
/// by key: a label is not a place for a credential, nor for unbounded cardinality.
pub const AUTH_REFUSED: &str = "shortener_auth_refused_total";
/// Open client connections on the public listener.
pub const HTTP_CONNECTIONS: &str = "shortener_http_connections";
/// Connections the server closed at a deadline, by `reason` (`first_request_timeout`,
/// `http2_idle`, `drain`, `write_timeout`). HTTP/1's header timeout is hyper's and is not counted here.
pub const HTTP_CONNECTIONS_CLOSED: &str = "shortener_http_connections_closed_total";
/// Connections closed at accept because `http.max_connections` were open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "shortener_http_connections_refused_total";
/// Failed `accept` calls, by `kind` (`fd_exhausted`: EMFILE/ENFILE/ENOBUFS/ENOMEM, the
/// loop backs off; `connection`: a connection that failed before it was accepted).
pub const HTTP_ACCEPT_ERRORS: &str = "shortener_http_accept_errors_total";
/// Redirect cache lookups, by `result`: `hit`, `negative_hit` (known-unknown code), `miss`.
pub const CACHE_REQUESTS: &str = "shortener_cache_requests_total";
/// Store operation latency, by `op` (`get`, `insert`, `insert_batch`, `claim_click`, `delete`, `list`, `ping`).
pub const STORE_OPERATION_DURATION: &str = "shortener_store_operation_duration_seconds";
/// Store operations that failed, by `op`.
pub const STORE_ERRORS: &str = "shortener_store_errors_total";
/// Stored rows a listing skipped because they could not be decoded (each row also
/// logged once per process, with its code).
pub const STORE_CORRUPT_ROWS: &str = "shortener_store_corrupt_rows_skipped_total";
/// Creates that shared one durable commit (group commit).
pub const STORE_GROUP_SIZE: &str = "shortener_store_group_size";
/// Links created.
pub const LINKS_CREATED: &str = "shortener_links_created_total";
/// Generated codes that were already taken and had to be redrawn.
pub const CODE_COLLISIONS: &str = "shortener_code_collisions_total";

/// GET redirects answered: each one is a click to record.
pub const REDIRECTS: &str = "shortener_redirects_total";
/// Clicks taken off the queue by the batcher.
pub const CLICKS_RECORDED: &str = "shortener_clicks_recorded_total";
/// Clicks lost, by `reason`: `queue_full`, `closed` (shutting down), `sink_error`.
pub const CLICKS_DROPPED: &str = "shortener_clicks_dropped_total";
/// Clicks given to Kafka's producer, by `outcome` (`delivered`; `refused` at hand-over,
/// `reason` `queue_full` or `other`; `failed` after it, `reason` `timeout`, `shutdown`
/// or `error`). `clicks.sink = "kafka"` only.
pub const KAFKA_CLICKS: &str = "shortener_kafka_clicks_total";
/// From a click to the broker's acknowledgement of it.
pub const KAFKA_DELIVERY_DURATION: &str = "shortener_kafka_delivery_seconds";
/// Clicks the producer holds: queued, or sent and not yet acknowledged.
pub const KAFKA_IN_FLIGHT: &str = "shortener_kafka_in_flight_clicks";
/// Produce requests sent to the brokers (librdkafka's statistics).
pub const KAFKA_PRODUCE_REQUESTS: &str = "shortener_kafka_produce_requests_total";
/// Bytes the producer sent to the brokers (librdkafka's statistics).
pub const KAFKA_BYTES_SENT: &str = "shortener_kafka_sent_bytes_total";
/// Messages per batch, averaged over the last statistics interval.
pub const KAFKA_BATCH_MESSAGES: &str = "shortener_kafka_batch_messages";
/// Bytes per batch, averaged over the last statistics interval.
pub const KAFKA_BATCH_BYTES: &str = "shortener_kafka_batch_bytes";
/// Clicks applied to statistics.
pub const CLICKS_AGGREGATED: &str = "shortener_clicks_aggregated_total";
/// Click batches flushed to the sink.
pub const CLICK_BATCHES: &str = "shortener_click_batches_total";
/// Events per flushed batch.
pub const CLICK_BATCH_SIZE: &str = "shortener_click_batch_size";
/// Time to deliver one batch to the sink (in process: aggregating it into memory; the
/// store write is `STATS_WRITE_DURATION`).
pub const CLICK_FLUSH_DURATION: &str = "shortener_click_flush_duration_seconds";
/// Now minus the oldest click not yet flushed, in seconds (0 when none waits).
pub const CLICK_AGGREGATION_LAG: &str = "shortener_click_aggregation_lag_seconds";
/// Clicks aggregated in memory and not yet written to the stats store.
pub const STATS_PENDING_CLICKS: &str = "shortener_stats_pending_clicks";
/// Link-days aggregated in memory and not yet written (bounded by `stats.max_pending_cells`).
pub const STATS_PENDING_CELLS: &str = "shortener_stats_pending_cells";
/// Time of one stats write (one store transaction), by `result` (`ok`, `error`).
pub const STATS_WRITE_DURATION: &str = "shortener_stats_write_duration_seconds";
/// Link-days per stats write.
pub const STATS_WRITE_CELLS: &str = "shortener_stats_write_cells";
/// Times the batcher waited because in-memory aggregates were full (the store is behind).
pub const STATS_BACKPRESSURE: &str = "shortener_stats_backpressure_total";

/// Second-level (Redis) cache lookups, by `result`: `hit`, `negative_hit`, `miss`,
/// `error`, `timeout`, `skipped` (breaker open: Redis not asked).
pub const L2_REQUESTS: &str = "shortener_l2_requests_total";
/// Redis command latency, by `command` (`get`, `set`, `del`, `publish`, `claim`).
pub const REDIS_COMMAND_DURATION: &str = "shortener_redis_command_duration_seconds";
/// The Redis circuit breaker: 0 closed, 1 half-open, 2 open.
pub const REDIS_BREAKER_STATE: &str = "shortener_redis_breaker_state";
/// Circuit breaker state changes, by `to` (`closed`, `half_open`, `open`).
pub const REDIS_BREAKER_TRANSITIONS: &str = "shortener_redis_breaker_transitions_total";
/// Cross-instance invalidations, by `direction`: `sent` (published here), `received`.
pub const INVALIDATIONS: &str = "shortener_invalidations_total";
/// Whole-L1 clears, by `reason`: `subscribed` (the invalidation channel was (re)joined:
/// messages may have been missed), `lagged` (this instance fell behind the channel).
pub const L1_CLEARS: &str = "shortener_l1_clears_total";

/// Batch-size buckets: from a trickle to a full default batch (`clicks.batch_max`).
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];

/// Link-days per stats write: one hot link to a long tail's worth.
const CELL_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1_000.0, 10_000.0, 50_000.0, 100_000.0, 500_000.0,
];

/// Group-commit sizes: from a lone create to a full default group (`store.max_group`).
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Latency buckets in seconds: fine-grained below 1 ms where cached redirects live, then
/// coarse up to the request timeout. Chosen so the p99 SLO (2 ms) is a bucket boundary.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How often histogram samples are folded into buckets. The exporter keeps raw samples
/// until then, so this bounds memory (about 8 bytes per request between passes) and the
/// length of each pass: at 120k requests/s, one second of samples takes well under a
/// millisecond to fold, where five seconds' worth showed up in the p99.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the global Prometheus recorder once per process and returns its handle.
/// Later calls return the same handle (tests start many servers in one process).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    // A mutex, not a `OnceLock`, because installing can fail and must happen once even
    // when two servers start concurrently.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(CLICK_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STORE_GROUP_SIZE.into()), GROUP_SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(STATS_WRITE_CELLS.into()), CELL_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    describe();
    spawn_upkeep(handle.clone());
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Folds samples on a dedicated OS thread, for the life of the process (the recorder is
/// process-global too). Not a tokio task: a pass is CPU work that would stall every
/// connection on its worker; on its own thread the OS scheduler interleaves it.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start metrics upkeep; histograms will grow until scraped");
    }
}

fn describe() {
    describe_counter!(
        REDIRECTS,
        Unit::Count,
        "GET redirects answered (clicks to record)."
    );
    describe_counter!(
        CLICKS_RECORDED,
        Unit::Count,
        "Clicks taken off the click queue by the batcher."
    );
    describe_counter!(
        CLICKS_DROPPED,
        Unit::Count,
        "Clicks lost, by reason (queue_full, closed, sink_error)."
    );
    describe_counter!(
        CLICKS_AGGREGATED,
        Unit::Count,
        "Clicks applied to statistics."
    );
    describe_counter!(CLICK_BATCHES, Unit::Count, "Click batches flushed.");
    describe_counter!(
        KAFKA_CLICKS,
        Unit::Count,
        "Clicks given to the Kafka producer, by outcome (delivered, refused, failed) and reason."
    );
    describe_histogram!(
        KAFKA_DELIVERY_DURATION,
        Unit::Seconds,
        "From a click to the broker's acknowledgement."
    );
    describe_gauge!(
        KAFKA_IN_FLIGHT,
        Unit::Count,
        "Clicks held by the Kafka producer, queued or awaiting acknowledgement."
    );
    describe_counter!(
        KAFKA_PRODUCE_REQUESTS,
        Unit::Count,
        "Produce requests sent to the brokers (librdkafka statistics, every kafka.statistics_interval_ms)."
    );
    describe_counter!(
        KAFKA_BYTES_SENT,
        Unit::Bytes,
        "Bytes sent to the brokers, all request kinds (librdkafka statistics)."
    );
    describe_gauge!(
        KAFKA_BATCH_MESSAGES,
        Unit::Count,
        "Messages per batch sent, averaged over the last statistics interval."
    );
    describe_gauge!(
        KAFKA_BATCH_BYTES,
        Unit::Bytes,
        "Bytes per batch sent, averaged over the last statistics interval."
    );
    describe_gauge!(
        STATS_PENDING_CLICKS,
        Unit::Count,
        "Clicks aggregated in memory, not yet written to the stats store."
    );
    describe_gauge!(
        STATS_PENDING_CELLS,
        Unit::Count,
        "Link-days aggregated in memory, not yet written to the stats store."
    );
    describe_histogram!(
        STATS_WRITE_DURATION,
        Unit::Seconds,
        "Time of one stats store write, by result."
    );
    describe_histogram!(
        STATS_WRITE_CELLS,
        Unit::Count,
        "Link-days written per stats store write."
    );
    describe_counter!(
        STATS_BACKPRESSURE,
        Unit::Count,
        "Times the click batcher waited for the stats writer."
    );
    describe_histogram!(
        CLICK_BATCH_SIZE,
        Unit::Count,
        "Events per flushed click batch."
    );
    describe_histogram!(
        CLICK_FLUSH_DURATION,
        Unit::Seconds,
        "Time to deliver one click batch."
    );
    describe_gauge!(
        CLICK_AGGREGATION_LAG,
        Unit::Seconds,
        "Now minus the oldest click not yet flushed."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route template and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route template and status."
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests answered 429 by a rate limit, by limit."
    );
    describe_counter!(
        AUTH_REFUSED,
        Unit::Count,
        "Management requests refused by authentication or scope, by reason."
    );
    describe_counter!(
        HTTP_REJECTED,
        Unit::Count,
        "Requests refused by overload guards, by reason."
    );
    describe_gauge!(
        HTTP_CONNECTIONS,
        Unit::Count,
        "Open connections on the public listener."
    );
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED,
        Unit::Count,
        "Connections closed at a deadline, by reason."
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections closed at accept because http.max_connections were open."
    );
    describe_counter!(
        HTTP_ACCEPT_ERRORS,
        Unit::Count,
        "Failed accept calls, by kind."
    );
    describe_counter!(
        CACHE_REQUESTS,
        Unit::Count,
        "Redirect cache lookups, by result (hit, negative_hit, miss)."
    );
    describe_histogram!(
        STORE_OPERATION_DURATION,
        Unit::Seconds,
        "Link store operation latency, by op."
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Link store operations that failed, by op."
    );
    describe_counter!(
        STORE_CORRUPT_ROWS,
        Unit::Count,
        "Stored rows a listing skipped because they could not be decoded."
    );
    describe_histogram!(
        STORE_GROUP_SIZE,
        Unit::Count,
        "Creates committed together by one durable write (group commit)."
    );
    describe_counter!(LINKS_CREATED, Unit::Count, "Links created.");
    describe_counter!(
        L2_REQUESTS,
        Unit::Count,
        "Redis (L2) cache lookups by result: hit, negative_hit, miss, error, timeout, skipped."
    );
    describe_histogram!(
        REDIS_COMMAND_DURATION,
        Unit::Seconds,
        "Redis command latency by command."
    );
    describe_gauge!(
        REDIS_BREAKER_STATE,
        "Redis circuit breaker: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        REDIS_BREAKER_TRANSITIONS,
        Unit::Count,
        "Redis circuit breaker state changes by target state."
    );
    describe_counter!(
        INVALIDATIONS,
        Unit::Count,
        "Cross-instance cache invalidations, sent and received."
    );
    describe_counter!(
        L1_CLEARS,
        Unit::Count,
        "Whole in-process cache clears, by reason (subscribed, lagged)."
    );
    describe_counter!(
        CODE_COLLISIONS,
        Unit::Count,
        "Generated codes that collided and were redrawn."
    );
}
/// The aggregating sink's handles, under this service's names (the engine crate counts,
/// this module names).
pub fn aggregation_meters() -> shortener_aggregation::Meters {
    shortener_aggregation::Meters {
        aggregated: metrics::counter!(CLICKS_AGGREGATED),
        dropped: metrics::counter!(CLICKS_DROPPED, "reason" => "sink_error"),
        backpressure: metrics::counter!(STATS_BACKPRESSURE),
        pending_clicks: metrics::gauge!(STATS_PENDING_CLICKS),
        pending_cells: metrics::gauge!(STATS_PENDING_CELLS),
        write_ok: metrics::histogram!(STATS_WRITE_DURATION, "result" => "ok"),
        write_error: metrics::histogram!(STATS_WRITE_DURATION, "result" => "error"),
        write_cells: metrics::histogram!(STATS_WRITE_CELLS),
    }
}

/// The Kafka producer's handles, under this service's names.
#[cfg(feature = "kafka")]
pub fn producer_meters() -> shortener_kafka::producer::ProducerMeters {
    let clicks = |outcome: &'static str, reason: &'static str| metrics::counter!(KAFKA_CLICKS, "outcome" => outcome, "reason" => reason);
    shortener_kafka::producer::ProducerMeters {
        delivered: clicks("delivered", ""),
        refused_queue_full: clicks("refused", "queue_full"),
        refused_other: clicks("refused", "other"),
        failed_timeout: clicks("failed", "timeout"),
        failed_shutdown: clicks("failed", "shutdown"),
        failed_error: clicks("failed", "error"),
        delivery_latency: metrics::histogram!(KAFKA_DELIVERY_DURATION),
        in_flight: metrics::gauge!(KAFKA_IN_FLIGHT),
        produce_requests: metrics::counter!(KAFKA_PRODUCE_REQUESTS),
        bytes_sent: metrics::counter!(KAFKA_BYTES_SENT),
        batch_messages: metrics::gauge!(KAFKA_BATCH_MESSAGES),
        batch_bytes: metrics::gauge!(KAFKA_BATCH_BYTES),
    }
}
