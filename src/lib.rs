//! A high-performance URL shortener: the service library.
//!
//! The binary (`src/main.rs`) only parses the command line, loads [`config`], installs
//! [`telemetry`] and calls [`startup::Application`]. Reading order for newcomers:
//!
//! 1. [`startup`]: how the pieces are built and wired, and the shutdown sequence.
//! 2. [`http::server`] and [`http::middleware`]: the request path up to the router.
//! 3. `http::redirect` and [`service::LinkService::resolve`]: the redirect hot path.
//! 4. [`cache`]: single-flight, negative caching, ready-to-send entries.
//! 5. `shortener_core::store`: the storage contract and the embedded backend.

#[cfg(feature = "redis")]
pub mod breaker;
pub mod cache;
pub mod clicks;
pub mod config;
pub mod group_commit;
pub mod http;
pub mod l2;
pub mod metrics;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod store_metrics;
pub mod telemetry;
