//! A high-performance URL shortener: the service library.
//!
//! The binary (`src/main.rs`) only parses the command line, loads [`config`], installs
//! [`telemetry`] and calls [`startup::Application`].
//!
//! # Layout
//!
//! Each folder is one room of the request path, in the order a redirect walks through
//! them; the files at the top level build, watch and stop the rooms.
//!
//! ```text
//! src/
//! ├── http/            the transport, the only module that knows hyper
//! │   ├── server.rs        accept loop, connection cap
//! │   ├── connection.rs    one connection's deadlines and drain
//! │   ├── write_deadline.rs  the socket, cut when the client stops reading
//! │   ├── adapter.rs       the tower stack as a hyper service
//! │   ├── middleware/      metrics, request id, trace, load shed, deadline, body limit
//! │   ├── app.rs, router.rs  dispatch by route
//! │   ├── redirect.rs      the hot path
//! │   ├── api.rs           the JSON API
//! │   ├── error.rs         one error envelope, logged with its causes
//! │   └── admin.rs         /metrics on its own listener
//! ├── service.rs       LinkService: the rules, knowing no HTTP
//! ├── cache/           the tiers a lookup meets before the store
//! │   ├── front.rs         per-thread table of hot links
//! │   ├── l1.rs            moka: single-flight, negative entries, byte bound
//! │   └── l2/              Redis: redis, invalidation, breaker (absent: feature off)
//! ├── store_layers/    what wraps the backend: metered.rs, group_commit.rs
//! ├── clicks/          what a redirect leaves behind: the recorder (clicks.rs), batcher,
//! │                    client_ip, intern (the sink is crates/aggregation)
//! ├── metrics.rs       every metric name and the recorder
//! └── startup.rs       build, wire, run, stop in order
//! ```
//!
//! Signals, the ordered shutdown of background tasks and logging are `crates/process`
//! (re-exported here as `shutdown` and `telemetry`), shared with the analytics consumer.
//!
//! The backends are crates of their own (`crates/stores/redb`, `crates/stores/postgres`),
//! and what the service shares with the analytics consumer is `shortener_core` and
//! `shortener_aggregation`.
//!
//! # Reading order
//!
//! 1. [`startup`]: how the pieces are built and wired, and the shutdown sequence.
//! 2. [`http::server`] and [`http::middleware`]: the request path up to the router.
//! 3. `http::redirect` and [`service::LinkService::resolve`]: the redirect hot path.
//! 4. [`cache`]: the tiers, then `shortener_core::store`: the storage contract.
//!
//! The fast path (the front table, answering without a future, the hand-written adapter)
//! is a set of refinements on top of that plain design; each of those modules opens with
//! the plain version it replaces and the measurement that justified it.

pub mod cache;
pub mod clicks;
/// The configuration tree, shared with the analytics consumer (`crates/config`).
pub use shortener_config as config;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod service;
pub mod startup;
pub mod store_layers;

// Shared with the analytics consumer: signals, ordered shutdown, logging.
pub use shortener_process::{shutdown, telemetry};
